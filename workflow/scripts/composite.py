from osmlulc.composite import composite_products
from osmlulc.logs import run_logged

w, i, o, p = snakemake.wildcards, snakemake.input, snakemake.output, snakemake.params
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, tile=w.tile):
    composite_products(
        w.tile,
        manifest=i.get("manifest"),
        products=p.products,
        offset=p.offset,
        http=p.http.value,
        stac_settings=p.stac.value,
        tile_grid=p.tile_grid,
        bands=p.bands,
        reference_band=p.reference,
        band_outputs=dict(zip(p.bands, o.bands)),
        valid_observations=o.valid_observations,
        valid_mask=o.valid_mask,
        method=p.method,
        memory_mb=p.memory_mb,
        mask_settings=p.settings,
        record=o.record,
        drop_unreadable=p.drop_unreadable,
        # product.allow_missing_tiles: a tile of no readable product is all nodata, left out by its check
        missing_grid=p.grid if p.allow_missing_tiles.value else None,
    )
