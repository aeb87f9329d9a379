# Country products: extent clip per tile, mosaic in EPSG:3035, clip by the boundary, label transfer,
# product merge (OSM label where present, prediction elsewhere), land-use extraction, sieve.

SIEVE = PRODUCT["sieve"]


rule clip_extent:
    input:
        lambda w: product_tile(w.country, w.tile),
    output:
        tile_path("classified_clipped.tif"),
    params:
        footprint=own_footprint_wkt,
        version=code_version("clip_extent"),
        classes=CLASS_TABLE,
    log:
        logs("clip_extent/{country}_{tile}"),
    benchmark:
        benchmarks("clip_extent/{country}_{tile}")
    resources:
        mem_mb=scaled_mem_mb(500),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/clip_extent.py"


rule merge:
    input:
        get_clipped_tiles,
    output:
        product_path("classified"),
    params:
        crs=PRODUCT["crs"],
        resolution=PRODUCT["resolution"],
        bounds=country_tiles_bounds,
        version=code_version("merge"),
        classes=CLASS_TABLE,
    log:
        logs("merge/{country}"),
    benchmark:
        benchmarks("merge/{country}")
    resources:
        mem_mb=scaled_mem_mb(2000),
        # a country mosaic: the time grows with the tiles' size
        runtime=scaled_runtime(30, per_input_min=0.05),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/merge.py"


rule clip_boundary:
    input:
        mosaic=rules.merge.output[0],
        boundary=get_boundary,
    output:
        product_path("classified_clipped"),
    params:
        version=code_version("clip_boundary"),
        classes=CLASS_TABLE,
    log:
        logs("clip_boundary/{country}"),
    benchmark:
        benchmarks("clip_boundary/{country}")
    resources:
        mem_mb=scaled_mem_mb(1000),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/clip_boundary.py"


rule label_transfer:
    input:
        unpack(get_missing_tiles_record),
        labels=get_label_raster,
        grid=rules.clip_boundary.output[0],
        boundary=get_boundary,
    output:
        product_path("label"),
    params:
        coding=label_coding,
        # product.fill_gaps_with_labels: labels also where the classification has a gap (inside the
        # boundary, outside missing tiles), so product_merge can fill it
        fill_gaps=PRODUCT["fill_gaps_with_labels"],
        footprints=lambda w: own_footprints_wkt(w.country),
        version=code_version("transfer_country_labels"),
        classes=CLASS_TABLE,
    log:
        logs("label_transfer/{country}"),
    benchmark:
        benchmarks("label_transfer/{country}")
    resources:
        mem_mb=scaled_mem_mb(1000),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/transfer_country_labels.py"


rule product_merge:
    input:
        classified=rules.clip_boundary.output[0],
        labels=rules.label_transfer.output[0],
    output:
        product_path("product"),
    params:
        fill_gaps=PRODUCT["fill_gaps_with_labels"],
        version=code_version("product_merge"),
        classes=CLASS_TABLE,
    log:
        logs("product_merge/{country}"),
    benchmark:
        benchmarks("product_merge/{country}")
    resources:
        mem_mb=scaled_mem_mb(1000),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/product_merge.py"


rule extract_land_use:
    input:
        rules.product_merge.output[0],
    output:
        product_path("lu{code}"),
    params:
        version=code_version("extract_land_use"),
        classes=CLASS_TABLE,
    log:
        logs("extract_land_use/{country}_lu{code}"),
    benchmark:
        benchmarks("extract_land_use/{country}_lu{code}")
    resources:
        mem_mb=scaled_mem_mb(500),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/extract_land_use.py"


rule sieve_classified:
    input:
        rules.product_merge.output[0],
    output:
        product_path("classified_sieved"),
    params:
        sieve=SIEVE,
        version=code_version("sieve"),
    log:
        logs("sieve_classified/{country}"),
    benchmark:
        benchmarks("sieve_classified/{country}")
    resources:
        mem_mb=scaled_mem_mb(1000),
        # a country mosaic: the time grows with the tiles' size
        runtime=scaled_runtime(60, per_input_min=0.1),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/sieve.py"


rule sieve_land_use:
    input:
        rules.extract_land_use.output[0],
    output:
        product_path("lu{code}_sieved"),
    params:
        sieve=SIEVE,
        version=code_version("sieve"),
    log:
        logs("sieve_land_use/{country}_lu{code}"),
    benchmark:
        benchmarks("sieve_land_use/{country}_lu{code}")
    resources:
        mem_mb=scaled_mem_mb(1000),
        # a country mosaic: the time grows with the tiles' size
        runtime=scaled_runtime(60, per_input_min=0.1),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/sieve.py"


# Confidence layer beside the product: the product model's maximum class probability (percent, 0 = nodata),
# through the same extent clip, mosaic and boundary clip as the classification, published as a COG.


rule tile_confidence:
    # Confidence of the product's prediction, clipped to the tile's own extent in the same job
    # (one job per tile fewer than computing and clipping apart; the unclipped layer is scratch).
    input:
        unpack(get_confidence_inputs),
    output:
        tile_path("confidence_clipped.tif"),
    params:
        footprint=own_footprint_wkt,
        version=code_version("tile_confidence"),
    log:
        logs("tile_confidence/{country}_{tile}"),
    benchmark:
        benchmarks("tile_confidence/{country}_{tile}")
    resources:
        mem_mb=scaled_mem_mb(1000),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/tile_confidence.py"


rule merge_confidence:
    input:
        get_clipped_confidence_tiles,
    output:
        product_path("confidence_mosaic"),
    params:
        crs=PRODUCT["crs"],
        resolution=PRODUCT["resolution"],
        bounds=country_tiles_bounds,
        categorical=False,
        version=code_version("merge"),
        classes=CLASS_TABLE,
    log:
        logs("merge_confidence/{country}"),
    benchmark:
        benchmarks("merge_confidence/{country}")
    resources:
        mem_mb=scaled_mem_mb(2000),
        # a country mosaic: the time grows with the tiles' size
        runtime=scaled_runtime(30, per_input_min=0.05),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/merge.py"


rule confidence_product:
    input:
        mosaic=rules.merge_confidence.output[0],
        boundary=get_boundary,
    output:
        product_path("confidence"),
    params:
        version=code_version("confidence_product"),
    log:
        logs("confidence_product/{country}"),
    benchmark:
        benchmarks("confidence_product/{country}")
    resources:
        mem_mb=scaled_mem_mb(1000),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/confidence_product.py"


# Input quality beside the product: the number of valid (cloud-free) observations per pixel of the
# composites, through the same extent clip, mosaic and boundary clip, published as a COG
# (0 = no valid observation, or outside the country).


rule tile_valid_observations:
    input:
        rules.composite.output.valid_observations,
    output:
        tile_path("valid_observations_clipped.tif"),
    params:
        footprint=own_footprint_wkt,
        version=code_version("clip_extent_continuous"),
    log:
        logs("tile_valid_observations/{country}_{tile}"),
    benchmark:
        benchmarks("tile_valid_observations/{country}_{tile}")
    resources:
        mem_mb=scaled_mem_mb(500),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/clip_extent_continuous.py"


rule merge_valid_observations:
    input:
        get_clipped_valid_observation_tiles,
    output:
        product_path("valid_observations_mosaic"),
    params:
        crs=PRODUCT["crs"],
        resolution=PRODUCT["resolution"],
        categorical=False,
        bounds=country_tiles_bounds,
        version=code_version("merge"),
        classes=CLASS_TABLE,
    log:
        logs("merge_valid_observations/{country}"),
    benchmark:
        benchmarks("merge_valid_observations/{country}")
    resources:
        mem_mb=scaled_mem_mb(2000),
        runtime=scaled_runtime(30, per_input_min=0.05),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/merge.py"


rule valid_observations_product:
    input:
        mosaic=rules.merge_valid_observations.output[0],
        boundary=get_boundary,
    output:
        product_path("valid_observations"),
    params:
        version=code_version("confidence_product"),
    log:
        logs("valid_observations_product/{country}"),
    benchmark:
        benchmarks("valid_observations_product/{country}")
    resources:
        mem_mb=scaled_mem_mb(1000),
    conda:
        RASTER_ENV
    script:
        # the confidence layer's script: boundary clip of a continuous layer, published as a COG
        "../workflow/scripts/confidence_product.py"
