from osmlulc.logs import run_logged
from osmlulc.sentinel2 import open_product, write_band

w, p = snakemake.wildcards, snakemake.params
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, tile=w.tile, band=w.band):
    product = open_product(p.product, w.tile, offset=p.offset)
    write_band(product, w.band, snakemake.output[0], resolution=p.resolution)
