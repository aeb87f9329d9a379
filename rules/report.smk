# What a user looks at: quicklooks of the final products, confusion-matrix and training-curve plots,
# the run's configuration, and a STAC item per country. Outputs flagged with report() make up
# `snakemake --report report.html` (captions in report/).


rule quicklook:
    input:
        "results/{country}/{country}_10m_3035_{product}.tif",
    output:
        report(
            "results/{country}/report/{country}_{product}_quicklook.png",
            caption="../report/quicklook.rst",
            category="Products",
            labels={"country": "{country}", "product": "{product}"},
        ),
    wildcard_constraints:
        product=r"classified_sieved|lu\d+_sieved|confidence|valid_observations",
    params:
        kind=lambda w: quicklook_products(w.country)[w.product],
        max_size=REPORT_QUICKLOOK_PX,
        version=code_version("quicklook"),
    log:
        "logs/quicklook/{country}_{product}.log",
    benchmark:
        "benchmarks/quicklook/{country}_{product}.tsv"
    resources:
        mem_mb=scaled_mem_mb(1000),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/quicklook.py"


rule confusion_plot:
    input:
        "results/{country}/accuracy/{country}_{assessment}_confusion.csv",
    output:
        report(
            "results/{country}/report/{country}_{assessment}_confusion.png",
            caption="../report/confusion.rst",
            category="Accuracy",
            labels={"country": "{country}", "figure": "confusion matrices: {assessment}"},
        ),
    wildcard_constraints:
        assessment="validation|reference",
    params:
        version=code_version("confusion_plot"),
    log:
        "logs/confusion_plot/{country}_{assessment}.log",
    benchmark:
        "benchmarks/confusion_plot/{country}_{assessment}.tsv"
    resources:
        mem_mb=scaled_mem_mb(1000),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/confusion_plot.py"


rule training_curves:
    input:
        "results/{country}/models/resnet_history.csv",
    output:
        report(
            "results/{country}/report/{country}_resnet_training.png",
            caption="../report/training.rst",
            category="Training",
            labels={"country": "{country}", "figure": "ResNet training curves"},
        ),
    params:
        version=code_version("training_curves"),
    log:
        "logs/training_curves/{country}.log",
    benchmark:
        "benchmarks/training_curves/{country}.tsv"
    resources:
        mem_mb=scaled_mem_mb(500),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/training_curves.py"


rule run_config:
    output:
        report(
            "results/{country}/report/{country}_config.yaml",
            caption="../report/config.rst",
            category="Configuration",
            labels={"country": "{country}", "file": "configuration of the run"},
        ),
    params:
        config=config,
        version=code_version("run_config"),
    log:
        "logs/run_config/{country}.log",
    benchmark:
        "benchmarks/run_config/{country}.tsv"
    resources:
        mem_mb=scaled_mem_mb(500),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/run_config.py"


rule observations_histogram:
    input:
        "results/{country}/{country}_10m_3035_valid_observations.tif",
    output:
        report(
            "results/{country}/report/{country}_valid_observations_histogram.png",
            caption="../report/valid_observations.rst",
            category="Products",
            labels={"country": "{country}", "figure": "valid observations per pixel"},
        ),
    params:
        version=code_version("observations_histogram"),
    log:
        "logs/observations_histogram/{country}.log",
    benchmark:
        "benchmarks/observations_histogram/{country}.tsv"
    resources:
        mem_mb=scaled_mem_mb(500),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/observations_histogram.py"


rule stac_item:
    input:
        unpack(get_missing_tiles_record),
        unpack(get_stac_item_inputs),
        classified="results/{country}/{country}_10m_3035_classified_sieved.tif",
        confidence="results/{country}/{country}_10m_3035_confidence.tif",
        land_use=expand("results/{{country}}/{{country}}_10m_3035_lu{code}_sieved.tif", code=PRODUCT["land_use"]),
        quicklook="results/{country}/report/{country}_classified_sieved_quicklook.png",
    output:
        report(
            "results/{country}/{country}_10m_3035_stac_item.json",
            caption="../report/stac.rst",
            category="Products",
            labels={"country": "{country}", "product": "STAC item"},
        ),
    params:
        name=lambda w: country_cfg(w.country)["name"],
        period=lambda w: country_cfg(w.country).get("period"),
        land_use=PRODUCT["land_use"],
        product=PRODUCT,
        composite=COMPOSITE,
        version=code_version("stac_item"),
        classes=CLASS_TABLE,
    log:
        "logs/stac_item/{country}.log",
    benchmark:
        "benchmarks/stac_item/{country}.tsv"
    resources:
        mem_mb=scaled_mem_mb(500),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/stac_item.py"
