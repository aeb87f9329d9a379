from osmlulc.classes import ClassTable
from osmlulc.logs import run_logged
from osmlulc.samples import write_sample_summary

with run_logged(snakemake.log[0], snakemake.rule, country=snakemake.wildcards.country):
    write_sample_summary(dict(snakemake.input.items()), ClassTable.from_dict(snakemake.params.classes),
                         snakemake.output[0])
