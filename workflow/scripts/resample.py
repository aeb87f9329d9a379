from osmlulc.features import resample_to_grid
from osmlulc.logs import run_logged

w, p = snakemake.wildcards, snakemake.params
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, tile=w.tile) as log:
    for band, source, target, resolution in zip(p.band_names, snakemake.input.bands, snakemake.output,
                                                p.band_resolutions):
        resample_to_grid(source, snakemake.input.reference, target, band_resolution=resolution,
                         resampling=p.resampling)
        log.info("%s: %s -> %s", band, source, target)
