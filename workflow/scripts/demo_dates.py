from osmlulc.demo.dates import write_demo_dates
from osmlulc.logs import run_logged

w, p = snakemake.wildcards, snakemake.params
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, tile=w.tile) as log:
    clear_bands = dict(zip(p.band_names, snakemake.input.bands))
    for date in write_demo_dates(dict(p.spec), w.tile, clear_bands, list(snakemake.output.products), seed=p.seed):
        log.info("%s: cloud %.3f, shadow %.3f, baseline %s, gain %.2f", date["product"], date["cloud"],
                 date["shadow"], date["baseline"], date["gain"])
