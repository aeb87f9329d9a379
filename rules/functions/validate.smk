# Input functions and helpers of the rules in rules/validate.smk (snakemake --lint: no rules and functions in one file).

import sys
import time
from osmlulc.run_status import failures_in_logs, run_status, run_status_rst, write_run_status
from osmlulc.validate import check_record


def get_checked_inputs(wildcards):
    """The tile's band files (as the per-tile rules get them), the label raster and the boundary."""
    cfg = country_cfg(wildcards.country)
    record = {}
    if composited(wildcards.country, wildcards.tile):  # a composite of no readable product leaves the tile out
        record["composite_record"] = output_file(
            rules.composite.output.record, country=wildcards.country, tile=wildcards.tile
        )
    return {
        **record,
        "bands": [band_source(wildcards.country, wildcards.tile, b) for b in TILE_BANDS],
        # Countries labelled from an OSM extract (osm_pbf) have no label raster to check.
        **({"label_raster": cfg["label_raster"]} if "label_raster" in cfg else {}),
        "boundary": cfg["boundary"],
    }


def label_coding(wildcards):
    """osm: burn OSM areas (osmlulc.osm); classes / corine: the coding of a prepared label raster."""
    cfg = country_cfg(wildcards.country)
    return "osm" if "osm_pbf" in cfg else cfg["label_coding"]


def check_hints(wildcards):
    """Config keys a user fixes for this tile, named in the check's error line."""
    cc = wildcards.country
    return {
        "bands": f"countries.{cc}.bands",
        "tiles": f"countries.{cc}.tiles",
        "training_tiles": f"countries.{cc}.training_tiles",
    }


def checked_inputs_flag(wildcards):
    """The tile's input check record (rule check_inputs), on which its per-tile rules depend."""
    flag = output_file(rules.check_inputs.output[0], country=wildcards.country, tile=wildcards.tile)
    forget_missing_tile_record(flag)
    return flag


def get_check_records(wildcards):
    return expand(rules.check_inputs.output[0], country=wildcards.country, tile=tiles_of(wildcards.country))


def forget_missing_tile_record(flag):
    """Without allow_missing_tiles, a tile recorded missing by an earlier run is checked again (and fails):
    its record is deleted while the job graph is built, before Snakemake decides what to run; only when
    jobs are run here (not in a dry run, --lint, --report or a cluster job), so those change no file."""
    executes = workflow.executor_plugin is not None and not (workflow.dryrun or workflow.touch)
    if ALLOW_MISSING_TILES or not (executes and workflow.is_main_process):
        return
    if Path(flag).exists() and not check_record(flag)["ok"]:
        Path(flag).unlink()


def missing_user_files():
    """One line per file a user must provide for the countries of this run that does not exist.

    Snakemake cannot build its job graph around a missing input file; say which and what to do.
    """
    lines = []
    for cc in config["run_countries"]:
        cfg = country_cfg(cc)
        if cfg["source"] not in USER_FILE_SOURCES:
            continue
        for tile in cfg["tiles"]:
            for band in TILE_BANDS:
                path = band_source(cc, tile, band)
                if not Path(path).exists():
                    lines.append(
                        f"osmlulc: inputs (country={cc} tile={tile}): band {band} of tile {tile} is "
                        f"missing: {path} does not exist; download it or fix countries.{cc}.bands"
                    )
        for key in ("label_raster", "osm_pbf", "boundary"):
            if key in cfg and not Path(cfg[key]).exists():
                lines.append(
                    f"osmlulc: inputs (country={cc}): {key.replace('_', ' ')} {cfg[key]} does not "
                    f"exist; provide it or fix countries.{cc}.{key}"
                )
    return lines


def run_status_path(country):
    """The country's run status (written by the onsuccess / onerror handlers of rules/validate.smk, not a rule)."""
    return country_path("run_status.csv", country)


def write_run_status_of_run(started):
    """results/{country}/run_status.csv of every country of the run, for failures logged since ``started``."""
    rows = run_status({cc: tiles_of(cc) for cc in config["run_countries"]}, failures_in_logs("logs", started))
    for cc in config["run_countries"]:
        write_run_status([r for r in rows if r["country"] == cc], run_status_path(cc))
    failed = [r for r in rows if r["status"] in ("failed", "killed")]
    for r in failed:
        print(
            f"osmlulc: run status: {r['country']} {r['tile']}: {r['rule']} {r['status']}: {r['message']}",
            file=sys.stderr,
        )
