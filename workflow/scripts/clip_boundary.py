from osmlulc.classes import ClassTable
from osmlulc.footprints import clip_to_boundary
from osmlulc.logs import run_logged

with run_logged(snakemake.log[0], snakemake.rule, country=snakemake.wildcards.country):
    clip_to_boundary(snakemake.input.mosaic, snakemake.input.boundary, snakemake.output[0],
                     ClassTable.from_dict(snakemake.params.classes))
