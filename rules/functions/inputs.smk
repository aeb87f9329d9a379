# Input functions and helpers of the rules in rules/inputs.smk (snakemake --lint: no rules and functions in one file).

from rasterio.warp import transform_bounds
from osmlulc.composite import product_input_files


def get_product(wildcards):
    """The tile's one Sentinel-2 product (tiles with several are composited, rule composite)."""
    return tile_products(wildcards.country, wildcards.tile)[0]


def remote_tile_grid(wildcards):
    """The tile's {crs, bounds} for a composite of STAC scenes (their reference band is checked against it), else None."""
    if country_cfg(wildcards.country)["source"] != "stac":
        return None
    return tile_grid(wildcards.country)[wildcards.tile]


def get_product_files(wildcards):
    """The files of the tile's one product (a band replaced inside the product folder makes the rules stale)."""
    return product_input_files(get_product(wildcards))


def get_composite_products(wildcards):
    """The paths of the products a composite reads (local sources; none for STAC, read from the manifest)."""
    source = country_cfg(wildcards.country)["source"]
    if source == "demo":
        return demo_products(wildcards.country, wildcards.tile)
    if source == "sentinel2":
        return tile_products(wildcards.country, wildcards.tile)
    return []


def get_composite_inputs(wildcards):
    """What a composite reads: the STAC manifest (rule search_scenes), the demo's dated products (folders
    made by rule demo_dates), or the files of the tile's local products (each file, not the product
    folder, whose mtime does not change when a band file inside it is replaced)."""
    source = country_cfg(wildcards.country)["source"]
    if source == "stac":
        return {"manifest": output_file(rules.search_scenes.output[0], country=wildcards.country, tile=wildcards.tile)}
    if source == "demo":
        return {"products": demo_products(wildcards.country, wildcards.tile)}
    products = tile_products(wildcards.country, wildcards.tile)
    return {"product_files": [f for p in products for f in product_input_files(p)]}


def get_composite_records(wildcards):
    """The composite records (composited and dropped products) of the country's composited tiles."""
    country = wildcards.country
    return [
        output_file(rules.composite.output.record, country=country, tile=t)
        for t in tiles_of(country)
        if composited(country, t)
    ]


def search_bbox(wildcards):
    """Where the search looks for the tile: a small lon/lat box at the tile's centre (items are kept by tile id)."""
    grid = tile_grid(wildcards.country)[wildcards.tile]
    left, bottom, right, top = grid["bounds"]
    cx, cy = (left + right) / 2, (bottom + top) / 2
    half = min(right - left, top - bottom) / 10
    return [round(v, 6) for v in transform_bounds(grid["crs"], "EPSG:4326", cx - half, cy - half, cx + half, cy + half)]


def get_tile_manifests(wildcards):
    """The STAC manifests of the country's tiles (for its STAC item), none for other sources."""
    if country_cfg(wildcards.country)["source"] != "stac":
        return []
    return expand(rules.search_scenes.output[0], country=wildcards.country, tile=tiles_of(wildcards.country))


def reflectance_offset(wildcards):
    return country_cfg(wildcards.country).get("reflectance_offset")


def tile_grid(country):
    """tile -> {crs, bounds} of every tile of the country (osmlulc.settings: demo, tile_grid or MGRS)."""
    return SETTINGS.tile_grid(country)


def checked_tile_grid(wildcards):
    """The configured footprint {crs, bounds} of the tile, or None if the country has no grid for it."""
    try:
        return tile_grid(wildcards.country).get(wildcards.tile)
    except KeyError:
        return None
