from osmlulc.classes import ClassTable
from osmlulc.logs import run_logged
from osmlulc.predict import predict_tile_pixels

w = snakemake.wildcards
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, tile=w.tile, model=w.model):
    predict_tile_pixels(
        snakemake.input.stack,
        snakemake.input.model,
        ClassTable.from_dict(snakemake.params.classes),
        snakemake.output.classified,
        snakemake.output.probabilities,
        block_size=snakemake.params.block_size,
        rotations=snakemake.params.rotations,
        fill_gaps=snakemake.params.gaps["fill"],
        valid_windows=snakemake.params.gaps["valid_windows"],
        threads=snakemake.threads,
    )
