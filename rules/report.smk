# What a user looks at: quicklooks of the final products, confusion-matrix and training-curve plots,
# the run's configuration, and a STAC item per country. Outputs flagged with report() make up
# `snakemake --report report.html` (captions in report/).


REPORT_QUICKLOOK_PX = 1024
# The workflow's own report/ folder, also when the workflow is run through a symlinked Snakefile.
REPORT_DIR = WORKFLOW_ROOT / "report"
REPORT_PAGE = Path(".snakemake/osmlulc/workflow.rst")


rule quicklook:
    input:
        product_path("{product}"),
    output:
        report(
            report_path("{product}_quicklook.png"),
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
        logs("quicklook/{country}_{product}"),
    benchmark:
        benchmarks("quicklook/{country}_{product}")
    resources:
        mem_mb=scaled_mem_mb(1000),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/quicklook.py"


rule confusion_plot:
    input:
        accuracy_path("{assessment}_confusion.csv"),
    output:
        report(
            report_path("{assessment}_confusion.png"),
            caption="../report/confusion.rst",
            category="Accuracy",
            labels={"country": "{country}", "figure": "confusion matrices: {assessment}"},
        ),
    wildcard_constraints:
        assessment="validation|reference",
    params:
        version=code_version("confusion_plot"),
    log:
        logs("confusion_plot/{country}_{assessment}"),
    benchmark:
        benchmarks("confusion_plot/{country}_{assessment}")
    resources:
        mem_mb=scaled_mem_mb(1000),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/confusion_plot.py"


rule training_curves:
    input:
        rules.train_resnet.output.history,
    output:
        report(
            report_path("resnet_training.png"),
            caption="../report/training.rst",
            category="Training",
            labels={"country": "{country}", "figure": "ResNet training curves"},
        ),
    params:
        version=code_version("training_curves"),
    log:
        logs("training_curves/{country}"),
    benchmark:
        benchmarks("training_curves/{country}")
    resources:
        mem_mb=scaled_mem_mb(500),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/training_curves.py"


rule run_config:
    output:
        report(
            report_path("config.yaml"),
            caption="../report/config.rst",
            category="Configuration",
            labels={"country": "{country}", "file": "configuration of the run"},
        ),
    params:
        config=config,
        version=code_version("run_config"),
    log:
        logs("run_config/{country}"),
    benchmark:
        benchmarks("run_config/{country}")
    resources:
        mem_mb=scaled_mem_mb(500),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/run_config.py"


rule observations_histogram:
    input:
        rules.valid_observations_product.output[0],
    output:
        report(
            report_path("valid_observations_histogram.png"),
            caption="../report/valid_observations.rst",
            category="Products",
            labels={"country": "{country}", "figure": "valid observations per pixel"},
        ),
    params:
        version=code_version("observations_histogram"),
    log:
        logs("observations_histogram/{country}"),
    benchmark:
        benchmarks("observations_histogram/{country}")
    resources:
        mem_mb=scaled_mem_mb(500),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/observations_histogram.py"


rule product_coverage:
    input:
        unpack(get_missing_tiles_record),
        classified=rules.clip_boundary.output[0],
        product=rules.product_merge.output[0],
        boundary=get_boundary,
    output:
        report(
            report_path("product_coverage.csv"),
            caption="../report/product_coverage.rst",
            category="Products",
            labels={"country": "{country}", "table": "coverage: classified, filled from labels, nodata and why"},
        ),
    params:
        footprints=lambda w: own_footprints_wkt(w.country),
        pixel_area_m2=PRODUCT["resolution"] ** 2,
        version=code_version("product_coverage"),
    log:
        logs("product_coverage/{country}"),
    benchmark:
        benchmarks("product_coverage/{country}")
    resources:
        mem_mb=scaled_mem_mb(1000),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/product_coverage.py"


rule stac_item:
    input:
        unpack(get_missing_tiles_record),
        unpack(get_stac_item_inputs),
        classified=rules.sieve_classified.output[0],
        confidence=rules.confidence_product.output[0],
        land_use=expand(rules.sieve_land_use.output[0], code=PRODUCT["land_use"], allow_missing=True),
        # the country wildcard stays a wildcard
        quicklook=output_file(rules.quicklook.output[0], country="{country}", product="classified_sieved"),
    output:
        report(
            product_path("stac_item", ext="json"),
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
        logs("stac_item/{country}"),
    benchmark:
        benchmarks("stac_item/{country}")
    resources:
        mem_mb=scaled_mem_mb(500),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/stac_item.py"
