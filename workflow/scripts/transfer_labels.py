from osmlulc.classes import ClassTable
from osmlulc.logs import run_logged
from osmlulc.labels import labels_onto_grid

with run_logged(snakemake.log[0], snakemake.rule, **dict(snakemake.wildcards.items())):
    labels_onto_grid(
        snakemake.input.labels,
        snakemake.input.grid,
        snakemake.output[0],
        ClassTable.from_dict(snakemake.params.classes),
        coding=snakemake.params.coding,
    )
