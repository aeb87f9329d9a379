# Real inputs: Sentinel-2 products (SAFE directory, zipped SAFE, folder of band files) turned into
# per-band reflectance GeoTIFFs and a cloud / shadow / snow mask per tile; several products of a tile
# (local, or found through a STAC API and read over HTTP) composited into one cloud-free set of
# band files; OSM extracts (.osm.pbf) turned into the country's mapped land-use areas, from which
# every label raster is burnt.


SENTINEL2 = config["sentinel2"]
OSM_CLASSES = config["osm_classes"]
COMPOSITE = config["composite"]


rule sentinel2_band:
    input:
        product=get_product_files,
    output:
        band_path("{band}"),
    params:
        product=get_product,
        resolution=lambda w: BANDS["resolution"][w.band],
        offset=reflectance_offset,
        version=code_version("sentinel2_band"),
    log:
        logs("sentinel2_band/{country}_{tile}_{band}"),
    benchmark:
        benchmarks("sentinel2_band/{country}_{tile}_{band}")
    resources:
        mem_mb=scaled_mem_mb(500),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/sentinel2_band.py"


rule sentinel2_mask:
    input:
        product=get_product_files,
    output:
        tile_path("valid_mask.tif"),
    params:
        product=get_product,
        reference=BANDS["reference"],
        reference_resolution=lambda w: BANDS["resolution"][BANDS["reference"]],
        settings=SENTINEL2,
        offset=reflectance_offset,
        version=code_version("sentinel2_mask"),
    log:
        logs("sentinel2_mask/{country}_{tile}"),
    benchmark:
        benchmarks("sentinel2_mask/{country}_{tile}")
    resources:
        mem_mb=scaled_mem_mb(1000),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/sentinel2_mask.py"


rule osm_landuse:
    input:
        pbf=lambda w: country_cfg(w.country)["osm_pbf"],
        table=OSM_CLASSES,
    output:
        country_path("labels/{country}_osm_landuse.gpkg"),
    params:
        version=code_version("osm_landuse"),
        classes=CLASS_TABLE,
    log:
        logs("osm_landuse/{country}"),
    benchmark:
        benchmarks("osm_landuse/{country}")
    resources:
        # The mapped areas of the whole extract are held once (a large country: several GB).
        mem_mb=scaled_mem_mb(8000, per_input_mb=3),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/osm_landuse.py"


rule search_scenes:
    # A STAC search per tile, pinned in a manifest: no version param, so a rerun (or a library upgrade)
    # reads the same scenes; only a change of the search settings below searches again.
    output:
        tile_path("stac_manifest.json"),
    params:
        stac=lambda w: SETTINGS.stac_search(w.country),
        period=lambda w: country_cfg(w.country)["period"],
        bbox=search_bbox,
        # time-outs and retries change how, not what is read: not recorded, so changing them reruns nothing
        http=lambda w: Unversioned(SETTINGS.http(w.country)),
    log:
        logs("search_scenes/{country}_{tile}"),
    benchmark:
        benchmarks("search_scenes/{country}_{tile}")
    resources:
        mem_mb=scaled_mem_mb(500),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/search_scenes.py"


rule composite:
    input:
        unpack(get_composite_inputs),
    output:
        bands=[composite_path(band) for band in TILE_BANDS],
        valid_mask=composite_path("valid_mask"),
        valid_observations=tile_path("valid_observations.tif"),
        # the products composited and those dropped (unreadable), with the reason
        record=composite_path("products", ext="json"),
    params:
        products=get_composite_products,
        drop_unreadable=COMPOSITE["drop_unreadable_products"],
        grid=checked_tile_grid,
        bands={b: BANDS["resolution"][b] for b in TILE_BANDS},
        reference=BANDS["reference"],
        method=COMPOSITE["method"],
        memory_mb=COMPOSITE["memory_mb"],
        settings=SENTINEL2,
        offset=reflectance_offset,
        tile_grid=remote_tile_grid,
        # how (HTTP time-outs, the href policy) and what a failure does, never what a good tile gets: not recorded
        http=lambda w: Unversioned(SETTINGS.http(w.country)),
        stac=lambda w: Unversioned(SETTINGS.stac(w.country)),
        allow_missing_tiles=Unversioned(ALLOW_MISSING_TILES),
        version=code_version("composite"),
    log:
        logs("composite/{country}_{tile}"),
    benchmark:
        benchmarks("composite/{country}_{tile}")
    threads: 1
    resources:
        # Observations in flight are bounded by composite.memory_mb; GDAL's cache and the open products on top.
        mem_mb=lambda w, attempt: int(COMPOSITE["memory_mb"] * 1.5 * attempt) + 500,
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/composite.py"
