from osmlulc.classes import ClassTable
from osmlulc.logs import run_logged
from osmlulc.samples import SampleSettings, draw_samples

p = snakemake.params
with run_logged(snakemake.log[0], snakemake.rule, country=snakemake.wildcards.country):
    draw_samples(
        {t: (s, l) for t, s, l in zip(p.tiles, snakemake.input.stacks, snakemake.input.labels)},
        ClassTable.from_dict(snakemake.params.classes),
        SampleSettings(patch_size=p.patch_size, **p.settings),
        snakemake.output.train,
        snakemake.output.validation,
        snakemake.output.validation_random,
        segments=dict(zip(p.tiles, snakemake.input.get("segments", []))) or None,
        centroids=dict(zip(p.tiles, snakemake.input.get("centroids", []))) or None,
    )
