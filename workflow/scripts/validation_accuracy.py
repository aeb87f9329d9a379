from osmlulc.assess import validation_accuracy
from osmlulc.classes import ClassTable
from osmlulc.logs import run_logged

i = snakemake.input
with run_logged(snakemake.log[0], snakemake.rule, country=snakemake.wildcards.country) as log:
    df = validation_accuracy(
        {m: i[m] for m in snakemake.params.models},
        {"spatial": i.spatial, "random": i.random},
        ClassTable.from_dict(snakemake.params.classes),
        snakemake.output.table,
        confusion_csv=snakemake.output.confusion,
    )
    log.info("\n%s", df.to_string())
