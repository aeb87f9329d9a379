# OSM labels on each tile grid, and balanced training / validation samples from the training tiles.


rule label_tile:
    input:
        labels=get_label_raster,
        grid="results/{country}/tiles/{tile}/stack_10m.tif",
    output:
        "results/{country}/tiles/{tile}/label.tif",
    params:
        coding=label_coding,
        version=code_version("transfer_labels"),
        classes=CLASS_TABLE,
    log:
        "logs/label_tile/{country}_{tile}.log",
    benchmark:
        "benchmarks/label_tile/{country}_{tile}.tsv"
    resources:
        mem_mb=scaled_mem_mb(1000),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/transfer_labels.py"


rule samples:
    input:
        unpack(get_training_tiles),
    output:
        train="results/{country}/samples/train.npz",
        validation="results/{country}/samples/validation.npz",
        validation_random="results/{country}/samples/validation_random.npz",
    params:
        tiles=lambda w: country_cfg(w.country)["training_tiles"],
        patch_size=PATCH_SIZE,
        settings=SAMPLE_SETTINGS,
        version=code_version("samples"),
        classes=CLASS_TABLE,
    log:
        "logs/samples/{country}.log",
    benchmark:
        "benchmarks/samples/{country}.tsv"
    resources:
        mem_mb=scaled_mem_mb(2000),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/samples.py"


rule sample_summary:
    input:
        **rules.samples.output,
    output:
        report(
            "results/{country}/samples/summary.csv",
            caption="../report/sample_summary.rst",
            category="Samples",
            labels={"country": "{country}", "table": "samples per class (absent classes marked)"},
        ),
    params:
        version=code_version("sample_summary"),
        classes=CLASS_TABLE,
    log:
        "logs/sample_summary/{country}.log",
    benchmark:
        "benchmarks/sample_summary/{country}.tsv"
    resources:
        mem_mb=scaled_mem_mb(1000),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/sample_summary.py"
