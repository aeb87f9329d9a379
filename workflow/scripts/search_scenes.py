from osmlulc.logs import run_logged
from osmlulc.stac import http_settings, search_tile

w, p = snakemake.wildcards, snakemake.params
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, tile=w.tile):
    search_tile({**p.stac, "http": http_settings(snakemake.config, w.country)}, p.period, w.tile, p.bbox,
                snakemake.output[0])
