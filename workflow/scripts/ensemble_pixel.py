from osmlulc.classes import ClassTable
from osmlulc.logs import run_logged
from osmlulc.predict import blend_tile_probabilities

w, p = snakemake.wildcards, snakemake.params
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, tile=w.tile):
    blend_tile_probabilities(
        {m: snakemake.input[m] for m in p.weights},
        dict(p.weights),
        ClassTable.from_config(snakemake.config),
        snakemake.output.classified,
        snakemake.output.probabilities,
        block_size=p.block_size,
    )
