# Input functions and helpers of the rules in rules/postprocessing.smk (snakemake --lint: no rules and functions in one file).


def get_boundary(wildcards):
    return country_cfg(wildcards.country)["boundary"]


def get_clipped_tiles(wildcards):
    return expand(rules.clip_extent.output[0], country=wildcards.country, tile=product_tiles_of(wildcards.country))


def country_tiles_bounds(wildcards):
    """EPSG:3035 bounds of the own footprints of all the country's tiles: the mosaic's extent, also where
    a tile is missing (allow_missing_tiles: its area is nodata)."""
    return SETTINGS.country_bounds(wildcards.country)


def get_missing_tiles_record(wildcards):
    """With allow_missing_tiles, the record of the tiles left out (for the STAC item); else nothing."""
    return {"tiles_passed": tiles_passed_record(wildcards.country)} if ALLOW_MISSING_TILES else {}


def get_confidence_inputs(wildcards):
    """The product model's probabilities (and superpixels); for the ensemble what its one pass wrote instead: the
    pixel confidence (and in superpixel mode the per-superpixel sums)."""
    tile = dict(country=wildcards.country, tile=wildcards.tile)
    superpixel = PRODUCT["mode"] == "superpixel"
    if PRODUCT["model"] == "ensemble":
        inputs = {"confidence": output_file(rules.ensemble_pixel.output.confidence, **tile)}
        if superpixel:
            inputs["segment_sums"] = output_file(rules.ensemble_pixel.output.segment_sums, **tile)
    else:
        inputs = {
            "probabilities": output_file(rules.predict_pixel.output.probabilities, model=PRODUCT["model"], **tile)
        }
    if superpixel:
        inputs["segments"] = output_file(rules.snic.output.segments, **tile)
    return inputs


def get_clipped_confidence_tiles(wildcards):
    return expand(rules.tile_confidence.output[0], country=wildcards.country, tile=product_tiles_of(wildcards.country))


def has_valid_observations(country):
    """Whether every tile of the country is a composite, so the country gets a valid-observations layer."""
    return all(composited(country, t) for t in tiles_of(country))


def get_clipped_valid_observation_tiles(wildcards):
    return expand(rules.tile_valid_observations.output[0], country=wildcards.country, tile=tiles_of(wildcards.country))


def product_tile(country, tile):
    return classified_path(PRODUCT["model"], PRODUCT["mode"], country, tile)


def own_footprint_wkt(wildcards):
    """The part of the tile that is its own (overlaps with neighbours split at the midline), EPSG:3035 WKT."""
    return SETTINGS.own_footprints(wildcards.country)[wildcards.tile].wkt


def own_footprints_wkt(country):
    """Tile -> its own footprint (EPSG:3035 WKT), every tile of the country."""
    return {tile: footprint.wkt for tile, footprint in SETTINGS.own_footprints(country).items()}
