# Input functions and helpers of the rules in rules/training.smk (snakemake --lint: no rules and functions in one file).


def reused_model_file(wildcards):
    """The file named in the country config for a reused model (rule verify_model)."""
    return reused_model(country_cfg(wildcards.country)["models"][wildcards.model])[0]


def get_ensemble_members(wildcards):
    return {m: model_path(wildcards.country, m) for m in ENSEMBLE}
