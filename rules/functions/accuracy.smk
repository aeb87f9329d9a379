# Input functions and helpers of the rules in rules/accuracy.smk (snakemake --lint: no rules and functions in one file).


def get_reference_tile(wildcards):
    return country_cfg(wildcards.country)["reference"]["tile"].format(tile=wildcards.tile)


def get_models(wildcards):
    return {m: model_path(wildcards.country, m) for m in MODELS}


def get_tile_confusions(wildcards):
    return expand(rules.tile_confusion.output[0], country=wildcards.country, tile=product_tiles_of(wildcards.country))


def get_reference_country(wildcards):
    return country_cfg(wildcards.country)["reference"]["country"]
