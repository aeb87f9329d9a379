from osmlulc.classes import ClassTable
from osmlulc.logs import run_logged
from osmlulc.resnet_training import train_resnet

p = snakemake.params
with run_logged(snakemake.log[0], snakemake.rule, country=snakemake.wildcards.country) as log:
    result = train_resnet(
        snakemake.input.train,
        snakemake.input.validation,
        ClassTable.from_dict(snakemake.params.classes),
        p.settings,
        p.seed,
        snakemake.output.model,
        snakemake.output.history,
        index_definitions=p.index_definitions,
    )
    log.info("result: %s", result)
