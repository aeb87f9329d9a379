from osmlulc.classes import ClassTable
from osmlulc.logs import run_logged
from osmlulc.sklearn_models import train_sklearn

w, p = snakemake.wildcards, snakemake.params
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, model=w.model) as log:
    result = train_sklearn(
        w.model,
        snakemake.input.train,
        snakemake.input.validation,
        ClassTable.from_dict(snakemake.params.classes),
        dict(p.settings),
        p.seed,
        snakemake.output.model,
        index_definitions=p.index_definitions,
    )
    log.info("result: %s", result)
