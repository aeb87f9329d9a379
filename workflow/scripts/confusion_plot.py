from osmlulc.logs import run_logged
from osmlulc.report import plot_confusion_matrices

w = snakemake.wildcards
titles = {"validation": "validation samples (OSM labels)", "reference": "against the reference raster"}
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, assessment=w.assessment):
    plot_confusion_matrices(snakemake.input[0], snakemake.output[0], title=f"{w.country}: {titles[w.assessment]}")
