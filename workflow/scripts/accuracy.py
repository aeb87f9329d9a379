from osmlulc.assess import country_accuracy
from osmlulc.classes import ClassTable
from osmlulc.logs import run_logged

i = snakemake.input
with run_logged(snakemake.log[0], snakemake.rule, country=snakemake.wildcards.country) as log:
    df = country_accuracy(
        list(i.tiles),
        {
            f"prediction ({snakemake.params.product_model})": i.classified,
            "osm labels": i.labels,
            "product": i.product,
            "product sieved": i.product_sieved,
        },
        i.reference,
        ClassTable.from_dict(snakemake.params.classes),
        snakemake.output.table,
        mask_path=i.classified,
        confusion_csv=snakemake.output.confusion,
        areas_csv=snakemake.output.areas,
    )
    log.info("\n%s", df.to_string())
