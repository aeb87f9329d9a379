# Accuracy assessment: every model on the validation samples (spatial and random split), every model x mode
# against the reference raster of each tile (with the NDWI > 0 / MNDWI > 0 water rules on the same pixels),
# and the country products against the country reference. Tables are flagged for `snakemake --report`.


rule validation_accuracy:
    input:
        unpack(get_models),
        spatial="results/{country}/samples/validation.npz",
        random="results/{country}/samples/validation_random.npz",
    output:
        table=report(
            "results/{country}/accuracy/{country}_validation_accuracy.csv",
            caption="../report/validation_accuracy.rst",
            category="Accuracy",
            labels={"country": "{country}", "table": "validation samples: spatial vs random split"},
        ),
        confusion="results/{country}/accuracy/{country}_validation_confusion.csv",
    params:
        models=MODELS,
        version=code_version("validation_accuracy"),
        classes=CLASS_TABLE,
    log:
        "logs/validation_accuracy/{country}.log",
    benchmark:
        "benchmarks/validation_accuracy/{country}.tsv"
    resources:
        mem_mb=scaled_mem_mb(2000),
    conda:
        TENSORFLOW_CPU_ENV
    script:
        "../workflow/scripts/validation_accuracy.py"


rule tile_confusion:
    input:
        predictions=expand("results/{{country}}/tiles/{{tile}}/classified_{model}_{mode}.tif", model=MODELS, mode=MODES),
        reference=get_reference_tile,
        stack="results/{country}/tiles/{tile}/stack_10m.tif",
    output:
        "results/{country}/accuracy/tiles/{tile}_confusion.npz",
    params:
        names=expand("{model}_{mode}", model=MODELS, mode=MODES),
        water_indices=WATER_INDICES,
        version=code_version("tile_confusion"),
        classes=CLASS_TABLE,
    log:
        "logs/tile_confusion/{country}_{tile}.log",
    benchmark:
        "benchmarks/tile_confusion/{country}_{tile}.tsv"
    resources:
        mem_mb=scaled_mem_mb(1000),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/tile_confusion.py"


rule accuracy:
    input:
        tiles=get_tile_confusions,
        classified="results/{country}/{country}_10m_3035_classified_clipped.tif",
        labels="results/{country}/{country}_10m_3035_label.tif",
        product="results/{country}/{country}_10m_3035_product.tif",
        product_sieved="results/{country}/{country}_10m_3035_classified_sieved.tif",
        reference=get_reference_country,
    output:
        table=report(
            "results/{country}/accuracy/{country}_accuracy.csv",
            caption="../report/accuracy.rst",
            category="Accuracy",
            labels={"country": "{country}", "table": "against the reference: models, water indices, products"},
        ),
        areas=report(
            "results/{country}/accuracy/{country}_area_estimates.csv",
            caption="../report/area_estimates.rst",
            category="Accuracy",
            labels={"country": "{country}", "table": "area-adjusted accuracy and class areas (Olofsson et al. 2014)"},
        ),
        confusion="results/{country}/accuracy/{country}_reference_confusion.csv",
    params:
        product_model=f"{PRODUCT['model']}_{PRODUCT['mode']}",
        version=code_version("accuracy"),
        classes=CLASS_TABLE,
    log:
        "logs/accuracy/{country}.log",
    benchmark:
        "benchmarks/accuracy/{country}.tsv"
    resources:
        mem_mb=scaled_mem_mb(1000),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/accuracy.py"
