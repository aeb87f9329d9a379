from osmlulc.features import stack_bands
from osmlulc.logs import run_logged

w = snakemake.wildcards
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, tile=w.tile):
    stack_bands(snakemake.input.bands, snakemake.params.band_names, snakemake.output[0],
                valid_mask=snakemake.input.get("mask"))
