# Accuracy assessment: every model on the held-out validation samples, every model x mode against the
# reference raster of each tile, and the country products against the country reference.


def get_reference_tile(wildcards):
    return country_cfg(wildcards.country)["reference"]["tile"].format(tile=wildcards.tile)


def get_models(wildcards):
    return {m: model_path(wildcards.country, m) for m in MODELS}


def get_tile_confusions(wildcards):
    return expand(
        "results/{country}/accuracy/tiles/{tile}_confusion.npz", country=wildcards.country, tile=tiles_of(wildcards.country)
    )


def get_reference_country(wildcards):
    return country_cfg(wildcards.country)["reference"]["country"]


rule validation_accuracy:
    input:
        unpack(get_models),
        validation="results/{country}/samples/validation.npz",
    output:
        "results/{country}/accuracy/{country}_validation_accuracy.csv",
    params:
        models=MODELS,
        version=VERSION,
    log:
        "logs/validation_accuracy/{country}.log",
    benchmark:
        "benchmarks/validation_accuracy/{country}.tsv"
    resources:
        mem_mb=2000,
    script:
        "../workflow/scripts/validation_accuracy.py"


rule tile_confusion:
    input:
        predictions=expand("results/{{country}}/tiles/{{tile}}/classified_{model}_{mode}.tif", model=MODELS, mode=MODES),
        reference=get_reference_tile,
    output:
        "results/{country}/accuracy/tiles/{tile}_confusion.npz",
    params:
        names=expand("{model}_{mode}", model=MODELS, mode=MODES),
        version=VERSION,
    log:
        "logs/tile_confusion/{country}_{tile}.log",
    benchmark:
        "benchmarks/tile_confusion/{country}_{tile}.tsv"
    resources:
        mem_mb=1000,
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
        "results/{country}/accuracy/{country}_accuracy.csv",
    params:
        product_model=f"{PRODUCT['model']}_{PRODUCT['mode']}",
        version=VERSION,
    log:
        "logs/accuracy/{country}.log",
    benchmark:
        "benchmarks/accuracy/{country}.tsv"
    resources:
        mem_mb=1000,
    script:
        "../workflow/scripts/accuracy.py"
