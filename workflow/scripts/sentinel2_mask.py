from osmlulc.logs import run_logged
from osmlulc.sentinel2 import open_product
from osmlulc.sentinel2_masks import write_valid_mask

w, p = snakemake.wildcards, snakemake.params
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, tile=w.tile) as log:
    screen = p.settings.get("l1c_cloud_screen")
    masked = write_valid_mask(
        open_product(p.product, w.tile, offset=p.offset),
        snakemake.output[0],
        reference_band=p.reference,
        reference_resolution=p.reference_resolution,
        scl_classes=p.settings["scl_mask_classes"],
        l1c_detector=p.settings["l1c_cloud_mask"],
        l1c_screen=screen if screen and screen["enabled"] else None,
        s2cloudless=p.settings["s2cloudless"],
        buffer_px=p.settings["mask_buffer_px"],
    )
    log.info("masked fraction of the tile by reason: %s", {k: round(v, 4) for k, v in masked.items()})
