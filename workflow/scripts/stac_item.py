from osmlulc.classes import ClassTable
from osmlulc.logs import run_logged
from osmlulc.report import country_stac_item, dropped_products
from osmlulc.validate import missing_tiles
from osmlulc.stac import acquisitions

i, p, w = snakemake.input, snakemake.params, snakemake.wildcards
with run_logged(snakemake.log[0], snakemake.rule, country=w.country):
    country_stac_item(
        w.country,
        p.name,
        {"classified": i.classified, "confidence": i.confidence,
         **({"valid_observations": i.valid_observations} if "valid_observations" in i.keys() else {}),
         **{f"lu{code}": path for code, path in zip(p.land_use, i.land_use)}},
        ClassTable.from_dict(snakemake.params.classes),
        snakemake.output[0],
        quicklook_png=i.quicklook,
        period=p.period,
        extra_properties={"osmlulc:version": p.version, "osmlulc:model": p.product["model"],
                          "osmlulc:mode": p.product["mode"],
                          # product.allow_missing_tiles: tiles left out (nodata in the products)
                          "osmlulc:missing_tiles": missing_tiles(i.get("tiles_passed")),
                          # products left out of the composites (unreadable): tile, product, reason
                          "osmlulc:dropped_products": dropped_products(list(i.composite_records)),
                          **({"osmlulc:composite_method": p.composite["method"]}
                             if "valid_observations" in i.keys() else {})},
        source_items=acquisitions(list(i.manifests)),
    )
