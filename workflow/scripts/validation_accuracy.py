from osmlulc.assess import validation_accuracy
from osmlulc.classes import ClassTable
from osmlulc.logs import run_logged

with run_logged(snakemake.log[0], snakemake.rule, country=snakemake.wildcards.country) as log:
    df = validation_accuracy(
        {m: snakemake.input[m] for m in snakemake.params.models},
        snakemake.input.validation,
        ClassTable.from_yaml(snakemake.config["classes"]),
        snakemake.output[0],
    )
    log.info("\n%s", df.to_string())
