# Settings (config validated with the schema's defaults and cross-checked by osmlulc.settings), the rules'
# shared helpers (code versions, resources, conda environments), wildcard constraints and path helpers.
# Each stage's input functions are in its own rules/*.smk, above its rules.

import json
import os
import sys
from pathlib import Path

from osmlulc import provenance
from osmlulc import resources as job_resources
from osmlulc.composite import resolve_products
from osmlulc.model_files import reused_model
from osmlulc.settings import ConfigError, Unversioned, load_settings
from osmlulc.sklearn_models import SKLEARN_KINDS


def stop_on_config_error(message):
    """End the run at load time with one line (no traceback): the config is wrong, not the code."""
    print(f"osmlulc: config: {message}", file=sys.stderr)
    raise SystemExit(1)


# The root of the workflow (Snakefile, rules/, workflow/scripts/), also when run through symlinks.
WORKFLOW_ROOT = Path(workflow.current_basedir).resolve().parent

try:
    # The schema's defaults are filled into the config (nested objects and arrays too), so rules read every
    # key with a default as config[...]; defaults live in the schema only. Cross-checks: osmlulc.settings.
    SETTINGS = load_settings(config, WORKFLOW_ROOT / "config" / "schema.yaml")
except ConfigError as err:
    stop_on_config_error(str(err))

# Every job's scripts inherit this; it bounds GDAL's block cache below the rules' mem_mb.
os.environ.update(GDAL_CACHEMAX=str(config["gdal_cache_mb"]))
BANDS = SETTINGS.bands
STACK_ORDER = SETTINGS.stack_order
RESAMPLED_BANDS = SETTINGS.resampled_bands
# Bands of a tile that its check and its composite read: the reference band and the stack bands.
TILE_BANDS = SETTINGS.tile_bands
MODELS = SETTINGS.models
MODES = SETTINGS.modes
PRODUCT = SETTINGS.product
ENSEMBLE = SETTINGS.ensemble
# The class table is a param (its content, as the code reads it) of every rule whose script reads it,
# so editing config/classes.yaml reruns those rules (and a comment-only edit reruns nothing).
CLASS_TABLE = SETTINGS.class_table


def code_version(script):
    """The `version` param of a rule: the package version plus a hash of the package modules its script
    uses (osmlulc.provenance), so a change of the library's code reruns exactly the rules that run it."""
    return provenance.code_version(WORKFLOW_ROOT / "workflow" / "scripts" / f"{script}.py")


def scaled_mem_mb(base, per_input_mb=0.0, per_thread_mb=0.0):
    """`mem_mb` of a rule: grows with the job's attempt (a retry after an out-of-memory kill asks for more)
    and with the size of its input files and its threads (osmlulc.resources.memory_mb)."""

    def mem_mb(wildcards, input, threads, attempt):
        return job_resources.memory_mb(
            base,
            attempt,
            input_mb=job_resources.input_size_mb(input),
            per_input_mb=per_input_mb,
            threads=threads,
            per_thread_mb=per_thread_mb,
        )

    return mem_mb


def scaled_runtime(base, per_input_min=0.0):
    """`runtime` (minutes) of a rule: grows with the job's attempt and the size of its input files."""

    def runtime(wildcards, input, attempt):
        return job_resources.runtime_min(
            base, attempt, input_mb=job_resources.input_size_mb(input), per_input_min=per_input_min
        )

    return runtime


# Software environments of the rule groups, for their conda directives (used with
# --software-deployment-method conda, ignored otherwise). Paths are relative to rules/.
RASTER_ENV = "../envs/raster.yaml"
TENSORFLOW_CPU_ENV = "../envs/tensorflow-cpu.yaml"
TENSORFLOW_GPU_ENV = "../envs/tensorflow-gpu.yaml"


wildcard_constraints:
    country=r"[A-Z]{2}",
    tile=r"\d{2}[A-Z]{3}",
    band=r"B\d[\dA]",
    model="|".join(["resnet", *SKLEARN_KINDS, "ensemble"]),
    mode=r"pixel|superpixel",
    code=r"\d+",


def country_cfg(country):
    return SETTINGS.country(country)


def tiles_of(country):
    return SETTINGS.tiles(country)


# ---- paths ---------------------------------------------------------------------------------------------
# Every file the workflow writes is named once, in the output of the rule that makes it, with one of these
# helpers (one per kind of path, as PyPSA-Eur's resources(), logs(), benchmarks()). Other rules refer to
# it as rules.<name>.output; input functions fill such a pattern in with output_file() or expand().
# Arguments left out stay wildcards, so by default each helper gives a pattern.


def tile_path(name, country="{country}", tile="{tile}"):
    """A file of one tile: results/{country}/tiles/{tile}/<name>."""
    return f"results/{country}/tiles/{tile}/{name}"


def country_path(name, country="{country}"):
    """A file of one country: results/{country}/<name>."""
    return f"results/{country}/{name}"


def product_path(name, country="{country}", ext="tif"):
    """A country product (EPSG:3035, 10 m; named as the original method's): {country}_10m_3035_<name>.tif."""
    return country_path(f"{country}_10m_3035_{name}.{ext}", country)


def accuracy_path(name, country="{country}"):
    """A table of the country's accuracy assessment: results/{country}/accuracy/{country}_<name>."""
    return country_path(f"accuracy/{country}_{name}", country)


def report_path(name, country="{country}"):
    """A figure or file of the country's report: results/{country}/report/{country}_<name>."""
    return country_path(f"report/{country}_{name}", country)


def logs(name):
    """A job's log: logs/<rule>/<wildcards>.log."""
    return f"logs/{name}.log"


def benchmarks(name):
    """A job's benchmark: logs/benchmarks/<rule>/<wildcards>.tsv (run output, beside the logs; benchmarks/ is
    the source folder of the benchmark scripts)."""
    return f"logs/benchmarks/{name}.tsv"


def output_file(pattern, **wildcards):
    """One file of an output pattern (rules.<name>.output...): its wildcards filled in, flags (report) off."""
    return str(pattern).format(**wildcards)


# Families of files (one per band, or per model and mode), named through one helper by the rules that write
# them and by those that read them.


def band_path(band, country="{country}", tile="{tile}"):
    """A band read from the tile's Sentinel-2 product (rule sentinel2_band)."""
    return tile_path(f"bands/{band}.tif", country, tile)


def resampled_band_path(band, country="{country}", tile="{tile}"):
    """A band resampled to 10 m (rule resample)."""
    return tile_path(f"bands_10m/{band}.tif", country, tile)


def composite_path(name, country="{country}", tile="{tile}", ext="tif"):
    """A band, the valid mask or the record (products.json) of the tile's multi-date composite (rule composite)."""
    return tile_path(f"composite/{name}.{ext}", country, tile)


def classified_path(model="{model}", mode="{mode}", country="{country}", tile="{tile}"):
    """A tile classified by one model, per pixel (rule predict_pixel) or per superpixel (predict_superpixel)."""
    return tile_path(f"classified_{model}_{mode}.tif", country, tile)


# ---- shared by several stages ----------------------------------------------------------------------


def tile_products(country, tile):
    """The tile's Sentinel-2 products (source sentinel2), in order: `products` as a {tile} pattern (may
    glob several) or a tile -> path (pattern) or list of paths mapping."""
    products = country_cfg(country)["products"]
    if isinstance(products, dict):
        if tile not in products:
            raise ValueError(f"config: countries.{country}.products has no entry for tile {tile}")
        products = products[tile]
    return resolve_products(products, tile)


def composited(country, tile):
    """Whether the tile's bands come from a multi-date composite: imagery from STAC, several
    products of a sentinel2 tile, or the demo's dates."""
    source = country_cfg(country)["source"]
    if source == "stac":
        return True
    if source == "sentinel2":
        return len(tile_products(country, tile)) > 1
    return source == "demo" and config["demo"]["dates"] > 0


def band_source(country, tile, band):
    cfg = country_cfg(country)
    if composited(country, tile):  # the band of the tile's multi-date composite (rule composite)
        return composite_path(band, country, tile)
    if cfg["source"] == "sentinel2":  # the band as read from the tile's product (rule sentinel2_band)
        return band_path(band, country, tile)
    return cfg["bands"].format(tile=tile, band=band)


def model_path(country, model):
    """A model named in the country config is reused (its training is skipped; with a sha256, the copy
    rule verify_model checked); otherwise the one trained here."""
    existing = country_cfg(country)["models"].get(model)
    if existing:
        path, sha256 = reused_model(existing)
        if sha256 is None:
            return path
        return output_file(rules.verify_model.output[0], country=country, model=model, ext=Path(path).suffix[1:])
    if model == "resnet":
        return output_file(rules.train_resnet.output.model, country=country)
    if model == "ensemble":
        return output_file(rules.ensemble_model.output[0], country=country)
    return output_file(rules.train_sklearn.output.model, country=country, model=model)


# product.allow_missing_tiles: the country products are built from the tiles whose inputs passed their
# check (checkpoint tiles_passed, rules/validate.smk); the others are nodata and listed as missing.
ALLOW_MISSING_TILES = SETTINGS.allow_missing_tiles


def tiles_passed_record(country):
    return output_file(rules.tiles_passed.output[0], country=country)


def product_tiles_of(country):
    """The tiles that make the country products: all, or with allow_missing_tiles those that passed their check."""
    if not ALLOW_MISSING_TILES:
        return tiles_of(country)
    with open(checkpoints.tiles_passed.get(country=country).output[0]) as f:
        return json.load(f)["passed"]


def has_reference(country):
    return "reference" in country_cfg(country)
