# Input checks before the expensive rules: every tile's bands, label raster and boundary are checked
# by a cheap per-tile rule whose result every per-tile rule depends on (so a bad tile fails in
# seconds, not after training), files that users must provide are checked for existence when the
# workflow loads, and a run-status table (results/{country}/run_status.csv) lists failed tiles.

import sys
import time

from osmlulc.validate import failures_in_logs, run_status, run_status_rst, write_run_status

CHECKS = config["checks"]
# Bands of a tile that the check reads: the stack bands and the reference band.
CHECKED_BANDS = list(dict.fromkeys([BANDS["reference"], *STACK_ORDER]))
# Sources whose band, label and boundary files the user provides (others are made by rules).
USER_FILE_SOURCES = ("rasters",)


def get_checked_inputs(wildcards):
    """The tile's band files (as the per-tile rules get them), the label raster and the boundary."""
    cfg = country_cfg(wildcards.country)
    return {
        "bands": [band_source(wildcards.country, wildcards.tile, b) for b in CHECKED_BANDS],
        # Countries labelled from an OSM extract (osm_pbf) have no label raster to check.
        **({"label_raster": cfg["label_raster"]} if "label_raster" in cfg else {}),
        "boundary": cfg["boundary"],
    }


def checked_tile_grid(wildcards):
    """The configured footprint {crs, bounds} of the tile, or None if the country has no grid for it."""
    try:
        return tile_grid(wildcards.country).get(wildcards.tile)
    except KeyError:
        return None


def check_hints(wildcards):
    """Config keys a user fixes for this tile, named in the check's error line."""
    cc = wildcards.country
    return {
        "bands": f"countries.{cc}.bands",
        "tiles": f"countries.{cc}.tiles",
        "training_tiles": f"countries.{cc}.training_tiles",
    }


def checked_inputs_flag(wildcards):
    return f"results/{wildcards.country}/tiles/{wildcards.tile}/inputs_ok.json"


rule check_inputs:
    input:
        unpack(get_checked_inputs),
    output:
        "results/{country}/tiles/{tile}/inputs_ok.json",
    params:
        band_names=CHECKED_BANDS,
        resolution={b: BANDS["resolution"][b] for b in CHECKED_BANDS},
        reference=BANDS["reference"],
        label_coding=lambda w: country_cfg(w.country).get("label_coding", "classes"),
        training=lambda w: w.tile in country_cfg(w.country)["training_tiles"],
        grid=checked_tile_grid,
        hints=check_hints,
        min_valid_fraction=CHECKS["min_valid_fraction"],
        version=VERSION,
    log:
        "logs/check_inputs/{country}_{tile}.log",
    benchmark:
        "benchmarks/check_inputs/{country}_{tile}.tsv"
    resources:
        mem_mb=500,
    conda:
        RASTER_ENV
    script:
        "../workflow/scripts/check_inputs.py"


def _missing_user_files():
    """One line per file a user must provide for the countries of this run that does not exist.

    Snakemake cannot build its job graph around a missing input file; say which and what to do.
    """
    lines = []
    for cc in config["run_countries"]:
        cfg = country_cfg(cc)
        if cfg["source"] not in USER_FILE_SOURCES:
            continue
        for tile in cfg["tiles"]:
            for band in CHECKED_BANDS:
                path = band_source(cc, tile, band)
                if not Path(path).exists():
                    lines.append(f"osmlulc: inputs (country={cc} tile={tile}): band {band} of tile {tile} is "
                                 f"missing: {path} does not exist; download it or fix countries.{cc}.bands")
        for key in ("label_raster", "osm_pbf", "boundary"):
            if key in cfg and not Path(cfg[key]).exists():
                lines.append(f"osmlulc: inputs (country={cc}): {key.replace('_', ' ')} {cfg[key]} does not "
                             f"exist; provide it or fix countries.{cc}.{key}")
    return lines


_MISSING = _missing_user_files()
if _MISSING:
    print("\n".join(_MISSING), file=sys.stderr)
    raise SystemExit(1)


# Run status for the report: which tiles passed their input check, which rule failed where.
_RUN_STARTED = time.time()


def _write_run_status():
    rows = run_status({cc: tiles_of(cc) for cc in config["run_countries"]}, failures_in_logs("logs", _RUN_STARTED))
    for cc in config["run_countries"]:
        write_run_status([r for r in rows if r["country"] == cc], f"results/{cc}/run_status.csv")
    failed = [r for r in rows if r["status"] == "failed"]
    for r in failed:
        print(f"osmlulc: run status: {r['country']} {r['tile']}: {r['rule']} failed: {r['message']}", file=sys.stderr)


onsuccess:
    _write_run_status()


onerror:
    _write_run_status()
