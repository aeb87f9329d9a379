from osmlulc.logs import run_logged
from osmlulc.predict import tile_confidence

w = snakemake.wildcards
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, tile=w.tile):
    tile_confidence(
        snakemake.input.probabilities,
        snakemake.output[0],
        segments_path=snakemake.input.get("segments"),
    )
