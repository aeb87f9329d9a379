# OSM labels on each tile grid, and balanced training / validation samples from the training tiles.


rule label_tile:
    input:
        labels=get_label_raster,
        grid=rules.combine.output[0],
    output:
        tile_path("label.tif"),
    params:
        coding=label_coding,
        version=code_version("transfer_labels"),
        classes=CLASS_TABLE,
    log:
        logs("label_tile/{country}_{tile}"),
    benchmark:
        benchmarks("label_tile/{country}_{tile}")
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
        train=country_path("samples/train.npz"),
        validation=country_path("samples/validation.npz"),
        validation_random=country_path("samples/validation_random.npz"),
    params:
        tiles=lambda w: country_cfg(w.country)["training_tiles"],
        patch_size=SETTINGS.patch_size,
        settings=SETTINGS.sample_settings,
        version=code_version("samples"),
        classes=CLASS_TABLE,
    log:
        logs("samples/{country}"),
    benchmark:
        benchmarks("samples/{country}")
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
            country_path("samples/summary.csv"),
            caption="../report/sample_summary.rst",
            category="Samples",
            labels={"country": "{country}", "table": "samples per class (absent classes marked)"},
        ),
    params:
        version=code_version("sample_summary"),
        classes=CLASS_TABLE,
    log:
        logs("sample_summary/{country}"),
    benchmark:
        benchmarks("sample_summary/{country}")
    resources:
        mem_mb=scaled_mem_mb(1000),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/sample_summary.py"
