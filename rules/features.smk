# Per-tile features: 20 m bands resampled to 10 m, the 10-band stack, NDWI.


rule resample:
    input:
        band=get_band,
        reference=get_reference_band,
    output:
        "results/{country}/tiles/{tile}/bands_10m/{band}.tif",
    params:
        band_resolution=lambda w: BANDS["resolution"][w.band],
        resampling=BANDS["resampling"],
        version=VERSION,
    log:
        "logs/resample/{country}_{tile}_{band}.log",
    benchmark:
        "benchmarks/resample/{country}_{tile}_{band}.tsv"
    resources:
        mem_mb=500,
    script:
        "../workflow/scripts/resample.py"


rule combine:
    input:
        bands=get_stack_bands,
    output:
        "results/{country}/tiles/{tile}/stack_10m.tif",
    params:
        band_names=STACK_ORDER,
        version=VERSION,
    log:
        "logs/combine/{country}_{tile}.log",
    benchmark:
        "benchmarks/combine/{country}_{tile}.tsv"
    resources:
        mem_mb=1000,
    script:
        "../workflow/scripts/combine.py"


rule ndwi:
    input:
        stack="results/{country}/tiles/{tile}/stack_10m.tif",
    output:
        "results/{country}/tiles/{tile}/ndwi.tif",
    params:
        green=BANDS["green"],
        nir=BANDS["nir"],
        version=VERSION,
    log:
        "logs/ndwi/{country}_{tile}.log",
    benchmark:
        "benchmarks/ndwi/{country}_{tile}.tsv"
    resources:
        mem_mb=500,
    script:
        "../workflow/scripts/ndwi.py"
