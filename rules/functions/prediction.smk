# Input functions and helpers of the rules in rules/prediction.smk (snakemake --lint: no rules and functions in one file).

#: Ensemble members whose own rasters the ensemble_pixel job writes in its one pass (prediction.member_maps);
#: their predict_pixel(_resnet) jobs never run (ruleorder in rules/prediction.smk).
MEMBER_MAPS = SETTINGS.member_maps


def member_map_outputs():
    """The extra outputs of the ensemble_pixel rule (classified_<member> and probabilities_<member>) of the members in
    MEMBER_MAPS, at the paths rule predict_pixel would write them."""
    outputs = {}
    for member in MEMBER_MAPS:
        outputs[f"classified_{member}"] = classified_path(model=member, mode="pixel")
        outputs[f"probabilities_{member}"] = tile_path(f"probabilities_{member}.tif")
    return outputs


def get_model(wildcards):
    return model_path(wildcards.country, wildcards.model)


def get_ensemble_inputs(wildcards):
    """The ensemble's file (weights, water decision) and its members' model files."""
    return {"ensemble": model_path(wildcards.country, "ensemble"), **get_ensemble_members(wildcards)}
