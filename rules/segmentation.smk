# SNIC superpixels on the RGB composite, with a centroid per superpixel.

SEGMENTATION = config["segmentation"]


rule snic:
    input:
        stack=rules.combine.output[0],
    output:
        segments=tile_path("snic_segments.tif"),
        centroids=tile_path("snic_centroids.gpkg"),
    params:
        rgb_bands=[STACK_ORDER.index(b) + 1 for b in SEGMENTATION["rgb_bands"]],
        spacing=SEGMENTATION["spacing_px"],
        method=SEGMENTATION["method"],
        compactness=SEGMENTATION["compactness" if SEGMENTATION["method"] == "snic" else "slic_compactness"],
        colour_space=SEGMENTATION["colour_space"],
        block_size=SEGMENTATION["block_size_px"],
        version=code_version("snic"),
    log:
        logs("snic/{country}_{tile}"),
    benchmark:
        benchmarks("snic/{country}_{tile}")
    threads: SEGMENTATION["threads"]
    resources:
        mem_mb=scaled_mem_mb(1000, per_thread_mb=600),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/snic.py"
