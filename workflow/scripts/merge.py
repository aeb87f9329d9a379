from osmlulc.classes import ClassTable
from osmlulc.logs import run_logged
from osmlulc.mosaic import merge_tiles

with run_logged(snakemake.log[0], snakemake.rule, country=snakemake.wildcards.country):
    merge_tiles(
        list(snakemake.input),
        snakemake.output[0],
        ClassTable.from_dict(snakemake.params.classes) if snakemake.params.get("categorical", True) else None,
        crs=snakemake.params.crs,
        resolution=snakemake.params.resolution,
        bounds=snakemake.params.bounds,
    )
