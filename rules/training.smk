# Training of the classifiers: Keras ResNet (GPU rule on the cluster), SVM, random forest and logistic
# regression, and the ensemble's model file (its members and weights).


MODEL_CFG = config["models"]


rule train_resnet:
    input:
        train=rules.samples.output.train,
        validation=rules.samples.output.validation,
    output:
        model=country_path("models/resnet.keras"),
        history=country_path("models/resnet_history.csv"),
    params:
        settings=MODEL_CFG["resnet"],
        index_definitions=BANDS["indices"],
        seed=MODEL_CFG["seed"],
        version=code_version("train_resnet"),
        classes=CLASS_TABLE,
    log:
        logs("train_resnet/{country}"),
    benchmark:
        benchmarks("train_resnet/{country}")
    threads: 2
    resources:
        mem_mb=scaled_mem_mb(6000, per_input_mb=4),
    conda:
        TENSORFLOW_GPU_ENV
    script:
        "../workflow/scripts/train_resnet.py"


rule train_sklearn:
    input:
        train=rules.samples.output.train,
        validation=rules.samples.output.validation,
    output:
        model=country_path("models/{model}.joblib"),
    wildcard_constraints:
        model="|".join(SKLEARN_KINDS),
    params:
        settings=lambda w: MODEL_CFG[w.model],
        index_definitions=BANDS["indices"],
        seed=MODEL_CFG["seed"],
        version=code_version("train_sklearn"),
        classes=CLASS_TABLE,
    log:
        logs("train_{model}/{country}"),
    benchmark:
        benchmarks("train_{model}/{country}")
    threads: 2
    resources:
        mem_mb=scaled_mem_mb(4000, per_input_mb=4),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/train_sklearn.py"


rule ensemble_model:
    # The members' weights and the water decision are chosen on the spatial validation samples
    # (osmlulc.selection): the benchmark reports them on folds no choice looked at.
    input:
        unpack(get_ensemble_members),
        validation=rules.samples.output.validation,
        train=rules.samples.output.train,  # the pixel water model's training pixels
    output:
        country_path("models/ensemble.json"),
    params:
        settings=MODEL_CFG["ensemble"],
        seed=MODEL_CFG["seed"],
        index_definitions=BANDS["indices"],
        rotations=config["prediction"]["rotations"],
        version=code_version("ensemble_model"),
        classes=CLASS_TABLE,
    log:
        logs("ensemble_model/{country}"),
    benchmark:
        benchmarks("ensemble_model/{country}")
    resources:
        mem_mb=scaled_mem_mb(500),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/ensemble_model.py"


rule verify_model:
    # A reused model with a sha256 in the config: prediction loads this verified copy, never the file itself.
    input:
        reused_model_file,
    output:
        country_path("models/verified/{model}.{ext}"),
    wildcard_constraints:
        ext="keras|joblib",
    params:
        sha256=lambda w: reused_model(country_cfg(w.country)["models"][w.model])[1],
        version=code_version("verify_model"),
    log:
        logs("verify_model/{country}_{model}_{ext}"),
    benchmark:
        benchmarks("verify_model/{country}_{model}_{ext}")
    resources:
        mem_mb=scaled_mem_mb(500, per_input_mb=1),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/verify_model.py"
