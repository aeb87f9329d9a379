from osmlulc.classes import ClassTable
from osmlulc.classifiers import read_ensemble
from osmlulc.logs import run_logged
from osmlulc.predict import blend_tile_probabilities

w, p = snakemake.wildcards, snakemake.params
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, tile=w.tile):
    _, weights, water = read_ensemble(snakemake.input.ensemble)
    blend_tile_probabilities(
        {m: snakemake.input[m] for m in weights},
        weights,
        ClassTable.from_dict(p.classes),
        snakemake.output.classified,
        snakemake.output.probabilities,
        block_size=p.block_size,
        water=water,
        stack_path=snakemake.input.stack,
    )
