# SNIC superpixels on the RGB composite, with a centroid per superpixel.

SNIC = SETTINGS.snic  # the segmentation section, rgb_bands as stack band numbers


rule snic:
    input:
        stack=rules.combine.output[0],
    output:
        segments=tile_path("snic_segments.tif"),
        centroids=tile_path("snic_centroids.gpkg"),
    params:
        rgb_bands=SNIC["rgb_bands"],
        spacing=SNIC["spacing"],
        method=SNIC["method"],
        compactness=SNIC["compactness"],
        colour_space=SNIC["colour_space"],
        block_size=SNIC["block_size"],
        version=code_version("snic"),
    log:
        logs("snic/{country}_{tile}"),
    benchmark:
        benchmarks("snic/{country}_{tile}")
    threads: SNIC["threads"]
    resources:
        mem_mb=scaled_mem_mb(1000, per_thread_mb=600),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/snic.py"
