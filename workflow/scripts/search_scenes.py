from osmlulc.logs import run_logged
from osmlulc.stac import search_tile

w, p = snakemake.wildcards, snakemake.params
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, tile=w.tile):
    search_tile({**p.stac, "http": p.http.value}, p.period, w.tile, p.bbox, snakemake.output[0])
