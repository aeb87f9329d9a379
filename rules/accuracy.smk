# Accuracy assessment: every model on the validation samples (spatial and random split), every model x mode
# against the reference raster of each tile (with the NDWI > 0 / MNDWI > 0 water rules on the same pixels),
# and the country products against the country reference. Tables are flagged for `snakemake --report`.


# Water index rules compared with the models' water class: name -> (band a, band b) of (a - b) / (a + b) > 0.
WATER_INDICES = SETTINGS.water_indices


rule validation_accuracy:
    input:
        unpack(get_models),
        spatial=rules.samples.output.validation,
        random=rules.samples.output.validation_random,
    output:
        table=report(
            accuracy_path("validation_accuracy.csv"),
            caption="../report/validation_accuracy.rst",
            category="Accuracy",
            labels={"country": "{country}", "table": "validation samples: spatial vs random split"},
        ),
        confusion=accuracy_path("validation_confusion.csv"),
    params:
        models=MODELS,
        version=code_version("validation_accuracy"),
        classes=CLASS_TABLE,
    log:
        logs("validation_accuracy/{country}"),
    benchmark:
        benchmarks("validation_accuracy/{country}")
    resources:
        mem_mb=scaled_mem_mb(2000),
    conda:
        TENSORFLOW_CPU_ENV
    script:
        "../workflow/scripts/validation_accuracy.py"


rule tile_confusion:
    input:
        predictions=expand(classified_path(), model=MODELS, mode=MODES, allow_missing=True),
        reference=get_reference_tile,
        stack=rules.combine.output[0],
    output:
        country_path("accuracy/tiles/{tile}_confusion.npz"),
    params:
        names=expand("{model}_{mode}", model=MODELS, mode=MODES),
        water_indices=WATER_INDICES,
        version=code_version("tile_confusion"),
        classes=CLASS_TABLE,
    log:
        logs("tile_confusion/{country}_{tile}"),
    benchmark:
        benchmarks("tile_confusion/{country}_{tile}")
    resources:
        mem_mb=scaled_mem_mb(1000),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/tile_confusion.py"


rule accuracy:
    input:
        tiles=get_tile_confusions,
        classified=rules.clip_boundary.output[0],
        labels=rules.label_transfer.output[0],
        product=rules.product_merge.output[0],
        product_sieved=rules.sieve_classified.output[0],
        reference=get_reference_country,
    output:
        table=report(
            accuracy_path("accuracy.csv"),
            caption="../report/accuracy.rst",
            category="Accuracy",
            labels={"country": "{country}", "table": "against the reference: models, water indices, products"},
        ),
        areas=report(
            accuracy_path("area_estimates.csv"),
            caption="../report/area_estimates.rst",
            category="Accuracy",
            labels={"country": "{country}", "table": "area-adjusted accuracy and class areas (Olofsson et al. 2014)"},
        ),
        confusion=accuracy_path("reference_confusion.csv"),
    params:
        product_model=f"{PRODUCT['model']}_{PRODUCT['mode']}",
        version=code_version("accuracy"),
        classes=CLASS_TABLE,
    log:
        logs("accuracy/{country}"),
    benchmark:
        benchmarks("accuracy/{country}")
    resources:
        mem_mb=scaled_mem_mb(1000),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/accuracy.py"
