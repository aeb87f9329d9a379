from osmlulc.logs import run_logged
from osmlulc.validate import tiles_passed

with run_logged(snakemake.log[0], snakemake.rule, country=snakemake.wildcards.country):
    tiles_passed(dict(zip(snakemake.params.tiles, snakemake.input.records)), snakemake.output[0])
