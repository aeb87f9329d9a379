# Input functions and helpers of the rules in rules/samples.smk (snakemake --lint: no rules and functions in one file).


def get_training_tiles(wildcards):
    """Stacks and label rasters of the training tiles; their superpixels too for superpixel sampling."""
    tiles = country_cfg(wildcards.country)["training_tiles"]
    inputs = {
        "stacks": expand(rules.combine.output[0], country=wildcards.country, tile=tiles),
        "labels": expand(rules.label_tile.output[0], country=wildcards.country, tile=tiles),
    }
    if config["samples"]["method"] == "superpixel":
        for name in ("segments", "centroids"):
            inputs[name] = expand(rules.snic.output[name], country=wildcards.country, tile=tiles)
    return inputs


def get_label_raster(wildcards):
    """The labels a label raster is made from: the OSM areas of the extract (osm_pbf) or the prepared raster."""
    cfg = country_cfg(wildcards.country)
    if "osm_pbf" in cfg:
        return output_file(rules.osm_landuse.output[0], country=wildcards.country)
    return cfg["label_raster"]
