from osmlulc.logs import run_logged
from osmlulc.report import write_run_config

with run_logged(snakemake.log[0], snakemake.rule, country=snakemake.wildcards.country):
    write_run_config(snakemake.params.config, snakemake.output[0])
