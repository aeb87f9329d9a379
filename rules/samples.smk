# OSM labels on each tile grid, and balanced training / validation samples from the training tiles.


def get_label_raster(wildcards):
    return country_cfg(wildcards.country)["label_raster"]


rule label_tile:
    input:
        labels=get_label_raster,
        grid="results/{country}/tiles/{tile}/stack_10m.tif",
    output:
        "results/{country}/tiles/{tile}/label.tif",
    params:
        coding=lambda w: country_cfg(w.country).get("label_coding", "classes"),
        version=VERSION,
    log:
        "logs/label_tile/{country}_{tile}.log",
    benchmark:
        "benchmarks/label_tile/{country}_{tile}.tsv"
    resources:
        mem_mb=1000,
    script:
        "../workflow/scripts/transfer_labels.py"


rule samples:
    input:
        unpack(get_training_tiles),
    output:
        train="results/{country}/samples/train.npz",
        validation="results/{country}/samples/validation.npz",
    params:
        tiles=lambda w: country_cfg(w.country)["training_tiles"],
        patch_size=PATCH_SIZE,
        settings=config["samples"],
        version=VERSION,
    log:
        "logs/samples/{country}.log",
    benchmark:
        "benchmarks/samples/{country}.tsv"
    resources:
        mem_mb=2000,
    script:
        "../workflow/scripts/samples.py"
