from osmlulc.features import resample_to_grid
from osmlulc.logs import run_logged

w = snakemake.wildcards
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, tile=w.tile, band=w.band):
    resample_to_grid(
        snakemake.input.band,
        snakemake.input.reference,
        snakemake.output[0],
        band_resolution=snakemake.params.band_resolution,
        resampling=snakemake.params.resampling,
    )
