from osmlulc.classes import ClassTable
from osmlulc.logs import run_logged
from osmlulc.mosaic import merge_product

with run_logged(snakemake.log[0], snakemake.rule, country=snakemake.wildcards.country):
    merge_product(snakemake.input.classified, snakemake.input.labels, snakemake.output[0],
                  ClassTable.from_dict(snakemake.params.classes),
                  fill_gaps=snakemake.params.fill_gaps)
