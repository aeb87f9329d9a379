from osmlulc.logs import run_logged
from osmlulc.report import quicklook

w = snakemake.wildcards
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, product=w.product):
    quicklook(
        snakemake.input[0],
        snakemake.output[0],
        title=f"{w.country}: {w.product.replace('_', ' ')}",
        kind=snakemake.params.kind,
        max_size=snakemake.params.max_size,
    )
