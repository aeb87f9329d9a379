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


#: Whether the ensemble's one pass also sums its probabilities per superpixel (its superpixel classes and, in
#: superpixel mode, the product's confidence are made of those sums): only where a run classifies the ensemble
#: per superpixel, as the pass then waits for the tile's superpixels.
ENSEMBLE_SUPERPIXELS = SETTINGS.ensemble_superpixels


def ensemble_pass_outputs():
    """The outputs of the ensemble_pixel rule made of the probabilities it writes, so that nothing reads those
    again: the pixel confidence, and with ENSEMBLE_SUPERPIXELS the per-superpixel probability sums."""
    outputs = {"confidence": tile_path("confidence_ensemble.tif")}
    if ENSEMBLE_SUPERPIXELS:
        outputs["segment_sums"] = tile_path("segment_probability_sums_ensemble.npz")
    return outputs


def get_model(wildcards):
    return model_path(wildcards.country, wildcards.model)


def get_ensemble_inputs(wildcards):
    """The ensemble's file (weights, water decision), its members' model files and, with ENSEMBLE_SUPERPIXELS,
    the tile's superpixels."""
    inputs = {"ensemble": model_path(wildcards.country, "ensemble"), **get_ensemble_members(wildcards)}
    if ENSEMBLE_SUPERPIXELS:
        inputs["segments"] = output_file(rules.snic.output.segments, country=wildcards.country, tile=wildcards.tile)
    return inputs


def get_superpixel_inputs(wildcards):
    """The tile's superpixels and the model's probabilities; for the ensemble (with ENSEMBLE_SUPERPIXELS) what
    its one pass wrote instead: the per-superpixel sums, and the pixel confidence (0: no probabilities)."""
    tile = dict(country=wildcards.country, tile=wildcards.tile)
    inputs = {"segments": output_file(rules.snic.output.segments, **tile)}
    if wildcards.model == "ensemble" and ENSEMBLE_SUPERPIXELS:
        inputs["segment_sums"] = output_file(rules.ensemble_pixel.output.segment_sums, **tile)
        inputs["confidence"] = output_file(rules.ensemble_pixel.output.confidence, **tile)
    else:
        inputs["probabilities"] = output_file(rules.predict_pixel.output.probabilities, model=wildcards.model, **tile)
    return inputs
