# Per-tile prediction of every model: per pixel (dense, windowed; GPU rule on the cluster for the ResNet),
# the ensemble (the product's model) in one pass over its members, block by block, and per superpixel
# (mean pixel probability inside each SNIC superpixel: no second classifier pass).


# The ensemble's one pass writes the rasters of the members in MEMBER_MAPS too: those never predict twice.
ruleorder: ensemble_pixel > predict_pixel_resnet
ruleorder: ensemble_pixel > predict_pixel


rule predict_pixel:
    input:
        stack=rules.combine.output[0],
        model=get_model,
    output:
        classified=classified_path(mode="pixel"),
        probabilities=tile_path("probabilities_{model}.tif"),
    wildcard_constraints:
        model="|".join(SKLEARN_KINDS),  # the ResNet: rule predict_pixel_resnet; the ensemble: ensemble_pixel
    params:
        block_size=config["prediction"]["block_size_px"],
        rotations=config["prediction"]["rotations"],
        gaps=config["prediction"]["gaps"],
        version=code_version("predict_pixel"),
        classes=CLASS_TABLE,
    log:
        logs("predict_pixel/{country}_{tile}_{model}"),
    benchmark:
        benchmarks("predict_pixel/{country}_{tile}_{model}")
    threads: 2
    resources:
        mem_mb=scaled_mem_mb(4000),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/predict_pixel.py"


# The ResNet's pixel prediction is the same rule under its own name, so that a cluster profile can
# send it (and only it) to a GPU partition (profiles/bwcluster: set-resources).
use rule predict_pixel as predict_pixel_resnet with:
    wildcard_constraints:
        model="resnet",
    conda:
        TENSORFLOW_GPU_ENV


rule ensemble_pixel:
    # One pass: per block the stack is read once, every member predicts it, the blend and the water decision
    # are written (osmlulc.predict.predict_tile_product), and from the same blocks the pixel confidence and the
    # per-superpixel probability sums, so that rules tile_confidence and predict_superpixel (ensemble) do not
    # read the probabilities again: nothing does in a run, so they are temp() (--notemp keeps them). It runs the
    # ResNet, so the cluster profile sends it to a GPU partition as predict_pixel_resnet.
    input:
        unpack(get_ensemble_inputs),
        stack=rules.combine.output[0],
    output:
        **member_map_outputs(),
        **ensemble_pass_outputs(),
        classified=classified_path(model="ensemble", mode="pixel"),
        probabilities=temp(tile_path("probabilities_ensemble.tif")),
    params:
        members=list(ENSEMBLE),
        member_maps=MEMBER_MAPS,
        block_size=config["prediction"]["block_size_px"],
        rotations=config["prediction"]["rotations"],
        gaps=config["prediction"]["gaps"],
        version=code_version("ensemble_pixel"),
        classes=CLASS_TABLE,
    log:
        logs("ensemble_pixel/{country}_{tile}"),
    benchmark:
        benchmarks("ensemble_pixel/{country}_{tile}")
    threads: 2
    resources:
        mem_mb=scaled_mem_mb(4000),
    conda:
        TENSORFLOW_GPU_ENV
    script:
        "../workflow/scripts/ensemble_pixel.py"


rule predict_superpixel:
    # From the model's probabilities; for the ensemble from the per-superpixel sums of its one pass.
    input:
        unpack(get_superpixel_inputs),
    output:
        classified_path(mode="superpixel"),
    params:
        version=code_version("predict_superpixel"),
        classes=CLASS_TABLE,
    log:
        logs("predict_superpixel/{country}_{tile}_{model}"),
    benchmark:
        benchmarks("predict_superpixel/{country}_{tile}_{model}")
    resources:
        mem_mb=scaled_mem_mb(2000),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/predict_superpixel.py"
