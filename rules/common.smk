# Config loading and validation, wildcard constraints, and the input functions (get_*) of all rules.

import json
import sys
from pathlib import Path

import jsonschema
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

import osmlulc
from osmlulc.classes import ClassTable
from osmlulc.demo import demo_tile_grid
from osmlulc.io import InputError, atomic_output
from osmlulc.mgrs import tile_grid as mgrs_tile_grid
from osmlulc.models import sample_patch_size
from osmlulc.post import own_footprints, tile_footprints_3035
from osmlulc.validate import config_error_line


def stop_on_config_error(message):
    """End the run at load time with one line (no traceback): the config is wrong, not the code."""
    print(f"osmlulc: config: {message}", file=sys.stderr)
    raise SystemExit(1)


try:
    validate(config, schema="../config/schema.yaml")
except WorkflowError as err:
    # Snakemake prints the whole schema and instance; name the key, the value and the rule instead.
    if not isinstance(err.__context__, jsonschema.ValidationError):
        raise
    stop_on_config_error(config_error_line(err.__context__))

CLASSES = ClassTable.from_yaml(config["classes"])
BANDS = config["bands"]
STACK_ORDER = BANDS["stack_order"]
RESAMPLED_BANDS = [b for b in STACK_ORDER if BANDS["resolution"][b] != 10]
MODELS = config["models"]["enabled"]
MODES = config["prediction"]["modes"]
PRODUCT = config["product"]
RESNET = config["models"]["resnet"]
# Samples carry the largest patch any model needs (odd, centred on the sample pixel): the ResNet's
# follows from its architecture (dense: depth and kernel size; original: its patch_size); SVM and RF need 1.
PATCH_SIZE = sample_patch_size(RESNET) if "resnet" in MODELS else 1
# Outputs depend on the library's code: its version is a param of the rules, so an upgrade reruns them.
VERSION = osmlulc.__version__
# Software environments of the rule groups (conda: directives; used with --software-deployment-method
# conda, ignored otherwise). Paths are relative to rules/.
RASTER_ENV = "../envs/raster.yaml"
TENSORFLOW_CPU_ENV = "../envs/tensorflow-cpu.yaml"
TENSORFLOW_GPU_ENV = "../envs/tensorflow-gpu.yaml"


def _check_config():
    """Cross-field checks that a JSON schema cannot express; one line per problem."""
    for band in STACK_ORDER + [BANDS["reference"], BANDS["green"], BANDS["nir"]]:
        if band not in BANDS["resolution"]:
            raise ValueError(f"config: band {band} has no entry in bands.resolution")
    for band in [BANDS["green"], BANDS["nir"]] + config["segmentation"]["rgb_bands"]:
        if band not in STACK_ORDER:
            raise ValueError(f"config: band {band} is not in bands.stack_order {STACK_ORDER}")
    if BANDS["resolution"][BANDS["reference"]] != 10:
        raise ValueError(f"config: the reference band {BANDS['reference']} must be a 10 m band")
    codes = set(int(c) for c in CLASSES.codes)
    for code in PRODUCT["land_use"]:
        if code not in codes:
            raise ValueError(f"config: product.land_use code {code} is not in the class table {sorted(codes)}; "
                             f"use a code of {config['classes']}")
    if RESNET.get("architecture") == "original" and (RESNET["original"]["depth"] - 2) % 9:
        raise ValueError(f"config: models.resnet.original.depth must be 9 n + 2, got {RESNET['original']['depth']}")
    if PRODUCT["model"] not in MODELS or PRODUCT["mode"] not in MODES:
        raise ValueError("config: product.model/mode must be among models.enabled and prediction.modes")
    for cc in config["run_countries"]:
        if cc not in config["countries"]:
            raise ValueError(f"config: run_countries names {cc}, which has no entry in countries")
        country = config["countries"][cc]
        extra = set(country["training_tiles"]) - set(country["tiles"])
        if extra:
            raise ValueError(f"config: countries.{cc}.training_tiles {sorted(extra)} are not in its tiles")
        if country["source"] == "demo" and "demo" not in config:
            raise ValueError(f"config: country {cc} has source demo but there is no demo section")
        if country["source"] != "demo":
            try:  # Sentinel-2 tile geometry follows from the tile id where tile_grid does not give it
                mgrs_tile_grid([t for t in country["tiles"] if t not in country.get("tile_grid", {})])
            except InputError as err:
                raise ValueError(f"config: countries.{cc}.tiles: {err}") from None


try:
    _check_config()
except ValueError as err:
    stop_on_config_error(str(err).removeprefix("config: "))


wildcard_constraints:
    country=r"[A-Z]{2}",
    tile=r"\d{2}[A-Z]{3}",
    band=r"B\d[\dA]",
    model="|".join(["resnet", "svm", "rf"]),
    mode=r"pixel|superpixel",
    code=r"\d+",


def country_cfg(country):
    return config["countries"][country]


def tiles_of(country):
    return country_cfg(country)["tiles"]


def tile_dir(wildcards):
    return f"results/{wildcards.country}/tiles/{wildcards.tile}"


def band_source(country, tile, band):
    cfg = country_cfg(country)
    if cfg["source"] == "sentinel2":  # the band as read from the tile's product (rule sentinel2_band)
        return f"results/{country}/tiles/{tile}/bands/{band}.tif"
    return cfg["bands"].format(tile=tile, band=band)


def get_valid_mask(wildcards):
    """Cloud / shadow / snow mask of a Sentinel-2 product (rule sentinel2_mask); other sources have none."""
    if country_cfg(wildcards.country)["source"] == "sentinel2":
        return {"mask": f"results/{wildcards.country}/tiles/{wildcards.tile}/valid_mask.tif"}
    return {}


def get_band(wildcards):
    return band_source(wildcards.country, wildcards.tile, wildcards.band)


def get_reference_band(wildcards):
    return band_source(wildcards.country, wildcards.tile, BANDS["reference"])


def get_stack_bands(wildcards):
    """Bands of the stack in config order: 10 m bands as given, the others resampled to 10 m."""
    return [
        band_source(wildcards.country, wildcards.tile, b)
        if b not in RESAMPLED_BANDS
        else f"results/{wildcards.country}/tiles/{wildcards.tile}/bands_10m/{b}.tif"
        for b in STACK_ORDER
    ]


def get_training_tiles(wildcards):
    tiles = country_cfg(wildcards.country)["training_tiles"]
    return {
        "stacks": expand("results/{country}/tiles/{tile}/stack_10m.tif", country=wildcards.country, tile=tiles),
        "labels": expand("results/{country}/tiles/{tile}/label.tif", country=wildcards.country, tile=tiles),
    }


def model_path(country, model):
    """A model named in the country config is reused (its training is skipped); otherwise the one trained here."""
    existing = country_cfg(country).get("models", {}).get(model)
    if existing:
        return existing
    suffix = "keras" if model == "resnet" else "joblib"
    return f"results/{country}/models/{model}.{suffix}"


def get_model(wildcards):
    return model_path(wildcards.country, wildcards.model)


def demo_spec():
    """The demo generator's spec: config["demo"] plus the native resolution of the stacked bands."""
    return {**config["demo"], "bands": {b: BANDS["resolution"][b] for b in STACK_ORDER}}


_TILE_GRIDS = {}


def tile_grid(country):
    """tile -> {crs, bounds} of every tile of the country: the demo's, the config's tile_grid, or from the tile ids (MGRS)."""
    if country not in _TILE_GRIDS:
        cfg = country_cfg(country)
        if cfg["source"] == "demo":
            _TILE_GRIDS[country] = demo_tile_grid(demo_spec())
        else:
            _TILE_GRIDS[country] = {**mgrs_tile_grid(cfg["tiles"]), **cfg.get("tile_grid", {})}
    return _TILE_GRIDS[country]


_OWN_FOOTPRINTS = {}


def own_footprint_wkt(wildcards):
    """The part of the tile that is its own (overlaps with neighbours split at the midline), EPSG:3035 WKT."""
    country = wildcards.country
    if country not in _OWN_FOOTPRINTS:
        grid = {t: g for t, g in tile_grid(country).items() if t in tiles_of(country)}
        _OWN_FOOTPRINTS[country] = {t: p.wkt for t, p in own_footprints(tile_footprints_3035(grid)).items()}
    return _OWN_FOOTPRINTS[country][wildcards.tile]


def product_tile(country, tile):
    return f"results/{country}/tiles/{tile}/classified_{PRODUCT['model']}_{PRODUCT['mode']}.tif"


def country_product(country, name):
    return f"results/{country}/{country}_10m_3035_{name}.tif"


def has_reference(country):
    return "reference" in country_cfg(country)


def all_targets():
    targets = []
    for country in config["run_countries"]:
        targets.append(country_product(country, "classified_sieved"))
        targets += [country_product(country, f"lu{code}_sieved") for code in PRODUCT["land_use"]]
        targets += expand("results/{country}/tiles/{tile}/ndwi.tif", country=country, tile=tiles_of(country))
        targets.append(f"results/{country}/accuracy/{country}_validation_accuracy.csv")
        targets.append(f"results/{country}/samples/summary.csv")  # per-class counts; absent classes
        if has_reference(country):
            targets.append(f"results/{country}/accuracy/{country}_accuracy.csv")
        targets += report_targets(country)  # rules/report.smk: quicklooks, plots, config, STAC item
    return targets
