# Per-tile features: 20 m bands resampled to 10 m, the 10-band stack, NDWI.


rule resample:
    # One job per tile for its six 20 m bands: per-band jobs made 45 % of a country's DAG and
    # a Slurm job each for a few seconds of work (benchmarks/benchmark_dag.py).
    input:
        bands=get_resampled_band_sources,
        reference=get_reference_band,
        # rules/validate.smk: a bad tile fails there, in seconds. Not ancient(): when the check reruns
        # (a band was replaced), snakemake does not look at this job's own inputs any more, only at
        # the edge from the check; an ancient edge would leave the tile's chain stale (tests/test_dag.py).
        checked=checked_inputs_flag,
    output:
        [resampled_band_path(band) for band in RESAMPLED_BANDS],
    params:
        band_names=RESAMPLED_BANDS,
        band_resolutions=[BANDS["resolution"][b] for b in RESAMPLED_BANDS],
        resampling=BANDS["resampling"],
        version=code_version("resample"),
    log:
        logs("resample/{country}_{tile}"),
    benchmark:
        benchmarks("resample/{country}_{tile}")
    resources:
        mem_mb=scaled_mem_mb(500),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/resample.py"


rule combine:
    input:
        unpack(get_valid_mask),
        bands=get_stack_bands,
        checked=checked_inputs_flag,
    output:
        tile_path("stack_10m.tif"),
    params:
        band_names=STACK_ORDER,
        version=code_version("combine"),
    log:
        logs("combine/{country}_{tile}"),
    benchmark:
        benchmarks("combine/{country}_{tile}")
    resources:
        mem_mb=scaled_mem_mb(1000),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/combine.py"


rule ndwi:
    input:
        stack=rules.combine.output[0],
    output:
        tile_path("ndwi.tif"),
    params:
        green=BANDS["green"],
        nir=BANDS["nir"],
        version=code_version("ndwi"),
    log:
        logs("ndwi/{country}_{tile}"),
    benchmark:
        benchmarks("ndwi/{country}_{tile}")
    resources:
        mem_mb=scaled_mem_mb(500),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/ndwi.py"
