from osmlulc.features import ndwi
from osmlulc.logs import run_logged

w = snakemake.wildcards
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, tile=w.tile):
    ndwi(snakemake.input.stack, snakemake.output[0], green_band=snakemake.params.green, nir_band=snakemake.params.nir)
