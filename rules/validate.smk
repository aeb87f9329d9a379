# Input checks before the expensive rules: every tile's bands, label raster and boundary are checked
# by a cheap per-tile rule whose result every per-tile rule depends on (so a bad tile fails in
# seconds, not after training), files that users must provide are checked for existence when the
# workflow loads, and a run-status table per country (run_status_path: run_status.csv) lists failed tiles.


CHECKS = config["checks"]
# Sources whose band, label and boundary files the user provides (others are made by rules).
USER_FILE_SOURCES = ("rasters",)


rule check_inputs:
    input:
        unpack(get_checked_inputs),
    output:
        tile_path("inputs_ok.json"),
    params:
        band_names=TILE_BANDS,
        resolution={b: BANDS["resolution"][b] for b in TILE_BANDS},
        reference=BANDS["reference"],
        label_coding=label_coding,
        training=lambda w: w.tile in country_cfg(w.country)["training_tiles"],
        grid=checked_tile_grid,
        hints=check_hints,
        min_valid_fraction=CHECKS["min_valid_fraction"],
        # what a bad tile's check does, never what a good tile's writes: not recorded (switching reruns nothing)
        allow_missing_tiles=Unversioned(ALLOW_MISSING_TILES),
        version=code_version("check_inputs"),
        classes=CLASS_TABLE,
    log:
        logs("check_inputs/{country}_{tile}"),
    benchmark:
        benchmarks("check_inputs/{country}_{tile}")
    resources:
        mem_mb=scaled_mem_mb(500),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/check_inputs.py"


# product.allow_missing_tiles: which tiles passed their check, known once every check ran; the country
# products are built from those (rules/common.smk: product_tiles_of). Only in the DAG when it is true.
checkpoint tiles_passed:
    input:
        records=get_check_records,
    output:
        country_path("tiles_passed.json"),
    params:
        tiles=lambda w: tiles_of(w.country),
        version=code_version("tiles_passed"),
    log:
        logs("tiles_passed/{country}"),
    benchmark:
        benchmarks("tiles_passed/{country}")
    resources:
        mem_mb=scaled_mem_mb(500),
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/tiles_passed.py"


_MISSING = missing_user_files()
if _MISSING:
    print("\n".join(_MISSING), file=sys.stderr)
    raise SystemExit(1)


# Run status for the report: which tiles passed their input check, which rule failed where.
_RUN_STARTED = time.time()


onsuccess:
    write_run_status_of_run(_RUN_STARTED)
    write_report_description()


onerror:
    write_run_status_of_run(_RUN_STARTED)
    write_report_description()
