# The embedded demo country: Sentinel-2-like tiles, OSM-like labels, ground truth and a boundary,
# generated deterministically from config["demo"].

if DEMO_COUNTRIES:

    rule demo_data:
        output:
            **demo_outputs(DEMO_COUNTRIES[0]),
        params:
            country=DEMO_COUNTRIES[0],
            spec=demo_spec(),
            band_pattern=lambda w: country_cfg(DEMO_COUNTRIES[0])["bands"],
            reference=lambda w: country_cfg(DEMO_COUNTRIES[0]).get("reference", {}),
            version=code_version("demo_data"),
            classes=CLASS_TABLE,
        log:
            "logs/demo_data/demo_data.log",
        benchmark:
            "benchmarks/demo_data/demo_data.tsv"
        resources:
            mem_mb=scaled_mem_mb(3000),
        conda:
            RASTER_ENV
        script:
            "../workflow/scripts/demo_data.py"
