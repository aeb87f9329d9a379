import shapely

from osmlulc.classes import ClassTable
from osmlulc.logs import run_logged
from osmlulc.footprints import clip_to_footprint

w = snakemake.wildcards
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, tile=w.tile):
    clip_to_footprint(
        snakemake.input[0],
        shapely.from_wkt(snakemake.params.footprint),
        snakemake.output[0],
        ClassTable.from_dict(snakemake.params.classes),
    )
