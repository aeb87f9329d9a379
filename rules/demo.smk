# The embedded demo country: Sentinel-2-like tiles, OSM-like labels, ground truth and a boundary,
# generated deterministically from config["demo"].


DEMO_COUNTRIES = SETTINGS.demo_countries  # at most one (osmlulc.settings)


if DEMO_COUNTRIES:

    rule demo_data:
        output:
            **demo_outputs(DEMO_COUNTRIES[0]),
        params:
            country=DEMO_COUNTRIES[0],
            spec=SETTINGS.demo_spec(),
            band_pattern=lambda w: country_cfg(DEMO_COUNTRIES[0])["bands"],
            reference=lambda w: country_cfg(DEMO_COUNTRIES[0]).get("reference", {}),
            version=code_version("demo_data"),
            classes=CLASS_TABLE,
        log:
            "logs/demo_data/demo_data.log",
        benchmark:
            benchmarks("demo_data/demo_data")
        resources:
            mem_mb=scaled_mem_mb(3000),
        conda:
            RASTER_ENV
        script:
            "../workflow/scripts/demo_data.py"

    rule demo_dates:
        # demo.dates > 0: dated products per tile with synthetic clouds, shadows and their SCL, made from
        # the tile's cloud-free bands; rule composite turns them back into one cloud-free set of bands.
        input:
            bands=lambda w: list(demo_clear_bands(w.country, w.tile).values()),
        output:
            products=[directory(p) for p in demo_products("{country}", "{tile}")],
        params:
            spec=SETTINGS.demo_spec(),
            band_names=TILE_BANDS,
            seed=config["demo"]["seed"],
            version=code_version("demo_dates"),
        log:
            "logs/demo_dates/{country}_{tile}.log",
        benchmark:
            benchmarks("demo_dates/{country}_{tile}")
        resources:
            mem_mb=scaled_mem_mb(1500),
        conda:
            RASTER_ENV
        script:
            "../workflow/scripts/demo_dates.py"
