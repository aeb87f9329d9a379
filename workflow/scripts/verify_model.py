from osmlulc.logs import run_logged
from osmlulc.model_files import verified_copy

w, p = snakemake.wildcards, snakemake.params
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, model=w.model):
    verified_copy(snakemake.input[0], p.sha256, snakemake.output[0])
