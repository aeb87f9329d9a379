# Per-tile prediction of every model: per pixel (dense, windowed; GPU rule on the cluster for the ResNet)
# and per superpixel (mean pixel probability inside each SNIC superpixel: no second classifier pass).


rule predict_pixel:
    input:
        stack="results/{country}/tiles/{tile}/stack_10m.tif",
        model=get_model,
    output:
        classified="results/{country}/tiles/{tile}/classified_{model}_pixel.tif",
        probabilities="results/{country}/tiles/{tile}/probabilities_{model}.tif",
    params:
        block_size=config["prediction"]["block_size_px"],
        version=VERSION,
    log:
        "logs/predict_pixel/{country}_{tile}_{model}.log",
    benchmark:
        "benchmarks/predict_pixel/{country}_{tile}_{model}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
    script:
        "../workflow/scripts/predict_pixel.py"


rule predict_superpixel:
    input:
        probabilities="results/{country}/tiles/{tile}/probabilities_{model}.tif",
        segments="results/{country}/tiles/{tile}/snic_segments.tif",
    output:
        "results/{country}/tiles/{tile}/classified_{model}_superpixel.tif",
    params:
        version=VERSION,
    log:
        "logs/predict_superpixel/{country}_{tile}_{model}.log",
    benchmark:
        "benchmarks/predict_superpixel/{country}_{tile}_{model}.tsv"
    resources:
        mem_mb=2000,
    script:
        "../workflow/scripts/predict_superpixel.py"
