# Real inputs: Sentinel-2 products (SAFE directory, zipped SAFE, folder of band files) turned into
# per-band reflectance GeoTIFFs and a cloud / shadow / snow mask per tile; OSM extracts (.osm.pbf)
# turned into the country's mapped land-use areas, from which every label raster is burnt.

from osmlulc.osm import OsmClassTable

# A wrong OSM tag table (unknown class, malformed tag) fails when the workflow loads, not mid-run.
if any("osm_pbf" in country_cfg(cc) for cc in config["run_countries"]):
    OsmClassTable.from_yaml(OSM_CLASSES, CLASSES)


rule sentinel2_band:
    input:
        product=get_product,
    output:
        "results/{country}/tiles/{tile}/bands/{band}.tif",
    params:
        resolution=lambda w: BANDS["resolution"][w.band],
        offset=reflectance_offset,
        version=code_version("sentinel2_band"),
    log:
        "logs/sentinel2_band/{country}_{tile}_{band}.log",
    benchmark:
        "benchmarks/sentinel2_band/{country}_{tile}_{band}.tsv"
    resources:
        mem_mb=scaled_mem_mb(500),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/sentinel2_band.py"


rule sentinel2_mask:
    input:
        product=get_product,
    output:
        "results/{country}/tiles/{tile}/valid_mask.tif",
    params:
        reference=BANDS["reference"],
        reference_resolution=lambda w: BANDS["resolution"][BANDS["reference"]],
        settings=SENTINEL2,
        offset=reflectance_offset,
        version=code_version("sentinel2_mask"),
    log:
        "logs/sentinel2_mask/{country}_{tile}.log",
    benchmark:
        "benchmarks/sentinel2_mask/{country}_{tile}.tsv"
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
        "results/{country}/labels/{country}_osm_landuse.gpkg",
    params:
        version=code_version("osm_landuse"),
        classes=CLASS_TABLE,
    log:
        "logs/osm_landuse/{country}.log",
    benchmark:
        "benchmarks/osm_landuse/{country}.tsv"
    resources:
        # The mapped areas of the whole extract are held once (a large country: several GB).
        mem_mb=scaled_mem_mb(8000, per_input_mb=3),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/osm_landuse.py"
