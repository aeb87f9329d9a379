from osmlulc.assess import tile_confusions
from osmlulc.classes import ClassTable
from osmlulc.logs import run_logged

w = snakemake.wildcards
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, tile=w.tile):
    tile_confusions(
        dict(zip(snakemake.params.names, snakemake.input.predictions)),
        snakemake.input.reference,
        ClassTable.from_dict(snakemake.params.classes),
        snakemake.output[0],
        stack_path=snakemake.input.stack,
        water_indices=snakemake.params.water_indices,
    )
