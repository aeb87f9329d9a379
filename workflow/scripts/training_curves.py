from osmlulc.logs import run_logged
from osmlulc.report import plot_training_history

w = snakemake.wildcards
with run_logged(snakemake.log[0], snakemake.rule, country=w.country):
    plot_training_history(snakemake.input[0], snakemake.output[0], title=f"{w.country}: ResNet training")
