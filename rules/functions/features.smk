# Input functions and helpers of the rules in rules/features.smk (snakemake --lint: no rules and functions in one file).


def get_valid_mask(wildcards):
    """Cloud / shadow / snow mask of a Sentinel-2 product (rule sentinel2_mask) or of a composite (pixels
    with at least one valid observation); other sources have none."""
    if composited(wildcards.country, wildcards.tile):
        return {"mask": output_file(rules.composite.output.valid_mask, country=wildcards.country, tile=wildcards.tile)}
    if country_cfg(wildcards.country)["source"] == "sentinel2":
        return {"mask": output_file(rules.sentinel2_mask.output[0], country=wildcards.country, tile=wildcards.tile)}
    return {}


def get_resampled_band_sources(wildcards):
    """The tile's bands that are resampled to 10 m, in RESAMPLED_BANDS order."""
    return [band_source(wildcards.country, wildcards.tile, b) for b in RESAMPLED_BANDS]


def get_reference_band(wildcards):
    return band_source(wildcards.country, wildcards.tile, BANDS["reference"])


def get_stack_bands(wildcards):
    """Bands of the stack in config order: 10 m bands as given, the others resampled to 10 m."""
    return [
        (
            band_source(wildcards.country, wildcards.tile, b)
            if b not in RESAMPLED_BANDS
            else resampled_band_path(b, wildcards.country, wildcards.tile)
        )
        for b in STACK_ORDER
    ]
