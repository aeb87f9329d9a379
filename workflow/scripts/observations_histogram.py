from osmlulc.logs import run_logged
from osmlulc.report import plot_observation_histogram

w = snakemake.wildcards
with run_logged(snakemake.log[0], snakemake.rule, country=w.country):
    plot_observation_histogram(snakemake.input[0], snakemake.output[0],
                               title=f"{w.country}: valid (cloud-free) observations per pixel")
