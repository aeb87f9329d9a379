# Config loading and validation, wildcard constraints, and the settings and input functions (get_*) of
# every stage (one section per rules/*.smk below), so the stage files hold rules only.

import dataclasses
import json
import os
import sys
from pathlib import Path

import jsonschema
from snakemake.exceptions import WorkflowError
from rasterio.warp import transform_bounds
from snakemake.utils import validate

from osmlulc import provenance
from osmlulc import resources as job_resources
from osmlulc.classes import ClassTable
from osmlulc.demo.dates import demo_date_names
from osmlulc.demo.spec import check_demo_outputs, demo_output_paths, demo_tile_grid
from osmlulc.hrefs import HrefPolicy, check_api_url
from osmlulc.model_files import reused_model
from osmlulc.io import InputError, atomic_output
from osmlulc.mgrs import tile_grid as mgrs_tile_grid
from osmlulc.resnet import sample_patch_size
from osmlulc.sklearn_models import SKLEARN_KINDS, pixel_model_patch_size
from osmlulc.footprints import own_footprints, tile_footprints_3035
from osmlulc.composite import product_input_files, resolve_products
from osmlulc.coverage import coverage_rst
from osmlulc.run_status import failures_in_logs, run_status, run_status_rst, write_run_status
from osmlulc.validate import check_record, config_error_line


def stop_on_config_error(message):
    """End the run at load time with one line (no traceback): the config is wrong, not the code."""
    print(f"osmlulc: config: {message}", file=sys.stderr)
    raise SystemExit(1)


try:
    # set_default: the schema's defaults are filled into the config (nested objects and arrays too), so the
    # rules and scripts read every key with a default as config[...]; defaults live in the schema only.
    validate(config, schema="../config/schema.yaml", set_default=True)
except WorkflowError as err:
    # Snakemake prints the whole schema and instance; name the key, the value and the rule instead.
    if not isinstance(err.__context__, jsonschema.ValidationError):
        raise
    stop_on_config_error(config_error_line(err.__context__))

# Every job's scripts inherit this; it bounds GDAL's block cache below the rules' mem_mb.
os.environ.update(GDAL_CACHEMAX=str(config["gdal_cache_mb"]))
CLASSES = ClassTable.from_yaml(config["classes"])
BANDS = config["bands"]
STACK_ORDER = BANDS["stack_order"]
RESAMPLED_BANDS = [b for b in STACK_ORDER if BANDS["resolution"][b] != 10]
MODELS = config["models"]["enabled"]
MODES = config["prediction"]["modes"]
PRODUCT = config["product"]
RESNET = config["models"]["resnet"]
# Models trained here (the ensemble is made of them) and the ensemble's members -> weights.
TRAINED_MODELS = [m for m in MODELS if m != "ensemble"]
ENSEMBLE = config["models"]["ensemble"]["members"]
# Samples carry the largest patch any model needs (odd, centred on the sample pixel): the ResNet's
# follows from its architecture (dense: depth and kernel size; original: its patch_size); SVM, RF and the
# logistic regression need their largest context window (models.<m>.windows_px), else 1.
# Label chips (samples.chip_px) widen the samples by chip_px - 1 for the models that train on every chip
# pixel (the ResNet, and the pixel models with chip_pixels), so each chip pixel has its patch.
CHIP_MODELS = [m for m in TRAINED_MODELS if m == "resnet" or config["models"][m].get("chip_pixels")]


def model_sample_patch(model):
    if model == "resnet":
        return sample_patch_size(RESNET)
    try:
        return pixel_model_patch_size(config["models"][model])
    except ValueError as err:
        stop_on_config_error(f"models.{model}.windows_px = {config['models'][model]['windows_px']}: {err}")


MODEL_PATCH = max(model_sample_patch(m) for m in TRAINED_MODELS) if TRAINED_MODELS else 1
PATCH_SIZE = max([model_sample_patch(m) + config["samples"]["chip_px"] - 1 for m in CHIP_MODELS] + [MODEL_PATCH])
# The samples rule's settings: label chips only serve the models that train on them.
SAMPLE_SETTINGS = dict(config["samples"], **({} if CHIP_MODELS else {"chip_px": 1}))
# The class table is a param (its content, as the code reads it) of every rule whose script reads it,
# so editing config/classes.yaml reruns those rules (and a comment-only edit reruns nothing).
CLASS_TABLE = dataclasses.asdict(CLASSES)
# The root of the workflow (Snakefile, rules/, workflow/scripts/), also when run through symlinks.
WORKFLOW_ROOT = Path(workflow.current_basedir).resolve().parent


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
            raise ValueError(
                f"config: product.land_use code {code} is not in the class table {sorted(codes)}; "
                f"use a code of {config['classes']}"
            )
    index_definitions = BANDS["indices"]
    for name, pair in index_definitions.items():
        for band in pair:
            if band not in STACK_ORDER:
                raise ValueError(f"config: bands.indices.{name} uses band {band}, which is not in bands.stack_order")
    if not TRAINED_MODELS:
        raise ValueError("config: models.enabled names only the ensemble; enable the models it is made of")
    for model in ENSEMBLE:
        if "ensemble" in MODELS and model not in MODELS:
            raise ValueError(
                f"config: models.ensemble.members names {model}, which is not in models.enabled {MODELS}; "
                "enable it or drop it from the ensemble"
            )
    if "ensemble" in MODELS and sum(ENSEMBLE.values()) <= 0:
        raise ValueError("config: models.ensemble.members: the weights sum to 0; give a member a positive weight")
    water_index = config["models"]["ensemble"]["water"]["index"]
    if "ensemble" in MODELS and water_index != "none" and water_index not in index_definitions:
        raise ValueError(f"config: models.ensemble.water.index {water_index} is not defined in bands.indices")
    for model in ("resnet", *SKLEARN_KINDS):
        for name in config["models"][model]["indices"]:
            if name not in index_definitions:
                raise ValueError(
                    f"config: models.{model}.indices names {name}, which bands.indices does not define "
                    f"({sorted(index_definitions)})"
                )
    dilations = RESNET.get("dilations")
    if dilations is not None and len(dilations) != RESNET["n_blocks"]:
        raise ValueError(
            f"config: models.resnet.dilations has {len(dilations)} rates for "
            f"{RESNET['n_blocks']} blocks (models.resnet.n_blocks); give one per block"
        )
    if RESNET["architecture"] == "original" and (RESNET["original"]["depth"] - 2) % 9:
        raise ValueError(f"config: models.resnet.original.depth must be 9 n + 2, got {RESNET['original']['depth']}")
    if PRODUCT["sieve"]["halo_px"] < PRODUCT["sieve"]["size"]:
        raise ValueError(
            f"config: product.sieve.halo_px = {PRODUCT['sieve']['halo_px']} is below product.sieve.size "
            f"= {PRODUCT['sieve']['size']}: the windowed sieve would be inexact; set halo_px >= size"
        )
    buffer = config["samples"]["validation_buffer_px"]
    # Validation samples are scored on the model's own patch (label chips only widen training samples).
    if MODEL_PATCH > 1 and buffer < MODEL_PATCH // 2 + 1:
        raise ValueError(
            f"config: samples.validation_buffer_px = {buffer} is below patch_size // 2 + 1 = "
            f"{MODEL_PATCH // 2 + 1} (patch {MODEL_PATCH} px): training pixels would leak into validation "
            f"patches; set it to at least {MODEL_PATCH // 2 + 1}"
        )
    demo_countries = [cc for cc, c in config["countries"].items() if c["source"] == "demo"]
    if len(demo_countries) > 1:
        kept = next((cc for cc in config["run_countries"] if cc in demo_countries), demo_countries[0])
        extra = sorted(set(demo_countries) - {kept})[0]
        raise ValueError(
            f"config: countries.{extra}.source = demo: only one demo country ({kept}) is generated "
            f"(rule demo_data), no rule makes {extra}'s inputs; use source rasters or sentinel2"
        )
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
        if country["source"] == "stac":
            try:  # the API's answers are data: https unless the config opts in (osmlulc.hrefs)
                stac_cfg = {**config["stac"], **country["stac"]}
                check_api_url(stac_cfg["url"], HrefPolicy.from_settings(stac_cfg))
            except InputError as err:
                raise ValueError(f"config: countries.{cc}: {err}") from None
        if country["source"] == "demo":
            try:  # the demo rule writes these paths, so only under resources/demo/
                check_demo_outputs(cc, demo_output_paths(country, config["demo"]["tiles"], STACK_ORDER))
            except InputError as err:
                raise ValueError(f"config: {err}") from None
        if country["source"] != "demo":
            try:  # Sentinel-2 tile geometry follows from the tile id where tile_grid does not give it
                mgrs_tile_grid([t for t in country["tiles"] if t not in country["tile_grid"]])
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
    model="|".join(["resnet", *SKLEARN_KINDS, "ensemble"]),
    mode=r"pixel|superpixel",
    code=r"\d+",


def country_cfg(country):
    return config["countries"][country]


def tiles_of(country):
    return country_cfg(country)["tiles"]


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


def band_source(country, tile, band):
    cfg = country_cfg(country)
    if composited(country, tile):  # the band of the tile's multi-date composite (rule composite)
        return composite_path(band, country, tile)
    if cfg["source"] == "sentinel2":  # the band as read from the tile's product (rule sentinel2_band)
        return band_path(band, country, tile)
    return cfg["bands"].format(tile=tile, band=band)


def get_valid_mask(wildcards):
    """Cloud / shadow / snow mask of a Sentinel-2 product (rule sentinel2_mask) or of a composite (pixels
    with at least one valid observation); other sources have none."""
    if composited(wildcards.country, wildcards.tile):
        return {"mask": output_file(rules.composite.output.valid_mask, country=wildcards.country, tile=wildcards.tile)}
    if country_cfg(wildcards.country)["source"] == "sentinel2":
        return {"mask": output_file(rules.sentinel2_mask.output[0], country=wildcards.country, tile=wildcards.tile)}
    return {}


def get_resampled_band_sources(wildcards):
    """The tile's bands that are resampled to 10 m, in RESAMPLED_BANDS order."""
    return [band_source(wildcards.country, wildcards.tile, b) for b in RESAMPLED_BANDS]


def get_reference_band(wildcards):
    return band_source(wildcards.country, wildcards.tile, BANDS["reference"])


def get_stack_bands(wildcards):
    """Bands of the stack in config order: 10 m bands as given, the others resampled to 10 m."""
    return [
        (
            band_source(wildcards.country, wildcards.tile, b)
            if b not in RESAMPLED_BANDS
            else resampled_band_path(b, wildcards.country, wildcards.tile)
        )
        for b in STACK_ORDER
    ]


def get_training_tiles(wildcards):
    """Stacks and label rasters of the training tiles; their superpixels too for superpixel sampling."""
    tiles = country_cfg(wildcards.country)["training_tiles"]
    inputs = {
        "stacks": expand(rules.combine.output[0], country=wildcards.country, tile=tiles),
        "labels": expand(rules.label_tile.output[0], country=wildcards.country, tile=tiles),
    }
    if config["samples"]["method"] == "superpixel":
        for name in ("segments", "centroids"):
            inputs[name] = expand(rules.snic.output[name], country=wildcards.country, tile=tiles)
    return inputs


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


def reused_model_file(wildcards):
    """The file named in the country config for a reused model (rule verify_model)."""
    return reused_model(country_cfg(wildcards.country)["models"][wildcards.model])[0]


def get_ensemble_members(wildcards):
    return {m: model_path(wildcards.country, m) for m in ENSEMBLE}


def get_ensemble_probabilities(wildcards):
    """The members' probability rasters of the tile (rule predict_pixel of each member)."""
    return {
        m: output_file(
            rules.predict_pixel.output.probabilities, country=wildcards.country, tile=wildcards.tile, model=m
        )
        for m in ENSEMBLE
    }


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
            _TILE_GRIDS[country] = {**mgrs_tile_grid(cfg["tiles"]), **cfg["tile_grid"]}
    return _TILE_GRIDS[country]


_OWN_FOOTPRINTS = {}


def own_footprints_wkt(country):
    """Tile -> the part of the tile that is its own (overlaps with neighbours split at the midline), EPSG:3035 WKT."""
    if country not in _OWN_FOOTPRINTS:
        grid = {t: g for t, g in tile_grid(country).items() if t in tiles_of(country)}
        _OWN_FOOTPRINTS[country] = {t: p.wkt for t, p in own_footprints(tile_footprints_3035(grid)).items()}
    return _OWN_FOOTPRINTS[country]


def own_footprint_wkt(wildcards):
    return own_footprints_wkt(wildcards.country)[wildcards.tile]


# product.allow_missing_tiles: the country products are built from the tiles whose inputs passed their
# check (checkpoint tiles_passed, rules/validate.smk); the others are nodata and listed as missing.
ALLOW_MISSING_TILES = PRODUCT["allow_missing_tiles"]


def tiles_passed_record(country):
    return output_file(rules.tiles_passed.output[0], country=country)


def product_tiles_of(country):
    """The tiles that make the country products: all, or with allow_missing_tiles those that passed their check."""
    if not ALLOW_MISSING_TILES:
        return tiles_of(country)
    with open(checkpoints.tiles_passed.get(country=country).output[0]) as f:
        return json.load(f)["passed"]


def product_tile(country, tile):
    return classified_path(PRODUCT["model"], PRODUCT["mode"], country, tile)


def has_reference(country):
    return "reference" in country_cfg(country)


def all_targets(wildcards=None):
    """Everything `snakemake` builds. The input function of the `all` rule, as with allow_missing_tiles the
    tiles of the products are known once their checks ran."""
    targets = []
    for country in config["run_countries"]:
        targets.append(output_file(rules.sieve_classified.output[0], country=country))
        targets += expand(rules.sieve_land_use.output[0], country=country, code=PRODUCT["land_use"])
        targets += expand(rules.ndwi.output[0], country=country, tile=product_tiles_of(country))
        targets.append(output_file(rules.validation_accuracy.output.table, country=country))
        targets.append(output_file(rules.sample_summary.output[0], country=country))  # per-class counts
        if has_reference(country):
            targets.append(output_file(rules.accuracy.output.table, country=country))
        targets += report_targets(country)  # rules/report.smk: quicklooks, plots, config, STAC item
    return targets


# ---- settings and functions of rules/accuracy.smk ----------------------------------------------------

# Water index rules compared with the models' water class: name -> (band a, band b) of (a - b) / (a + b) > 0.
WATER_INDICES = {"ndwi": (BANDS["green"], BANDS["nir"])}
if BANDS.get("swir1") in STACK_ORDER:
    WATER_INDICES["mndwi"] = (BANDS["green"], BANDS["swir1"])


def get_reference_tile(wildcards):
    return country_cfg(wildcards.country)["reference"]["tile"].format(tile=wildcards.tile)


def get_models(wildcards):
    return {m: model_path(wildcards.country, m) for m in MODELS}


def get_tile_confusions(wildcards):
    return expand(rules.tile_confusion.output[0], country=wildcards.country, tile=product_tiles_of(wildcards.country))


def get_reference_country(wildcards):
    return country_cfg(wildcards.country)["reference"]["country"]


# ---- settings and functions of rules/demo.smk --------------------------------------------------------

DEMO_COUNTRIES = [cc for cc, c in config["countries"].items() if c["source"] == "demo"]  # one (_check_config)


def demo_outputs(country):
    return demo_output_paths(country_cfg(country), config["demo"]["tiles"], STACK_ORDER)


def demo_products(country, tile):
    """The demo tile's dated products (rule demo_dates), one folder per date."""
    return [f"resources/demo/{country}/products/{tile}/{name}" for name in demo_date_names(config["demo"], tile)]


def demo_clear_bands(country, tile):
    """The demo tile's cloud-free bands (made by rule demo_data) as band -> path, from which its dated products are made."""
    return {b: country_cfg(country)["bands"].format(tile=tile, band=b) for b in COMPOSITE_BANDS}


# ---- settings and functions of rules/inputs.smk ------------------------------------------------------

SENTINEL2 = config["sentinel2"]
OSM_CLASSES = config["osm_classes"]


COMPOSITE = config["composite"]
# Bands a composite writes: every band a tile's chain reads (the reference band and the stack).
COMPOSITE_BANDS = list(dict.fromkeys([BANDS["reference"], *STACK_ORDER]))


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


def get_product(wildcards):
    """The tile's one Sentinel-2 product (tiles with several are composited, rule composite)."""
    return tile_products(wildcards.country, wildcards.tile)[0]


def remote_tile_grid(wildcards):
    """The tile's {crs, bounds} for a composite of STAC scenes (their reference band is checked against it), else None."""
    if country_cfg(wildcards.country)["source"] != "stac":
        return None
    return tile_grid(wildcards.country)[wildcards.tile]


def get_product_files(wildcards):
    """The files of the tile's one product (a band replaced inside the product folder makes the rules stale)."""
    return product_input_files(get_product(wildcards))


def get_composite_products(wildcards):
    """The paths of the products a composite reads (local sources; none for STAC, read from the manifest)."""
    source = country_cfg(wildcards.country)["source"]
    if source == "demo":
        return demo_products(wildcards.country, wildcards.tile)
    if source == "sentinel2":
        return tile_products(wildcards.country, wildcards.tile)
    return []


def get_composite_inputs(wildcards):
    """What a composite reads: the STAC manifest (rule search_scenes), the demo's dated products (folders
    made by rule demo_dates), or the files of the tile's local products (each file, not the product
    folder, whose mtime does not change when a band file inside it is replaced)."""
    source = country_cfg(wildcards.country)["source"]
    if source == "stac":
        return {"manifest": output_file(rules.search_scenes.output[0], country=wildcards.country, tile=wildcards.tile)}
    if source == "demo":
        return {"products": demo_products(wildcards.country, wildcards.tile)}
    products = tile_products(wildcards.country, wildcards.tile)
    return {"product_files": [f for p in products for f in product_input_files(p)]}


def get_composite_records(wildcards):
    """The composite records (composited and dropped products) of the country's composited tiles."""
    country = wildcards.country
    return [
        output_file(rules.composite.output.record, country=country, tile=t)
        for t in tiles_of(country)
        if composited(country, t)
    ]


def stac_settings(country):
    """The country's STAC search: the stac section of the config with the country's stac overrides;
    only the assets of the bands a composite reads (and SCL)."""
    settings = {**config["stac"], **country_cfg(country)["stac"]}
    assets = settings["assets"]
    needed = COMPOSITE_BANDS + ["SCL"]
    missing = [b for b in needed if b not in assets]
    if missing:
        raise ValueError(f"config: stac.assets has no asset key for band(s) {missing}")
    # http (time-outs, retries) is read by the scripts from the config: it changes how, not what is read.
    settings.pop("http", None)
    return {**settings, "assets": {b: assets[b] for b in needed}}


def search_bbox(wildcards):
    """Where the search looks for the tile: a small lon/lat box at the tile's centre (items are kept by tile id)."""
    grid = tile_grid(wildcards.country)[wildcards.tile]
    left, bottom, right, top = grid["bounds"]
    cx, cy = (left + right) / 2, (bottom + top) / 2
    half = min(right - left, top - bottom) / 10
    return [round(v, 6) for v in transform_bounds(grid["crs"], "EPSG:4326", cx - half, cy - half, cx + half, cy + half)]


def get_tile_manifests(wildcards):
    """The STAC manifests of the country's tiles (for its STAC item), none for other sources."""
    if country_cfg(wildcards.country)["source"] != "stac":
        return []
    return expand(rules.search_scenes.output[0], country=wildcards.country, tile=tiles_of(wildcards.country))


def reflectance_offset(wildcards):
    return country_cfg(wildcards.country).get("reflectance_offset")


# ---- settings and functions of rules/postprocessing.smk ----------------------------------------------

SIEVE = PRODUCT["sieve"]


def get_boundary(wildcards):
    return country_cfg(wildcards.country)["boundary"]


def get_clipped_tiles(wildcards):
    return expand(rules.clip_extent.output[0], country=wildcards.country, tile=product_tiles_of(wildcards.country))


_COUNTRY_BOUNDS = {}


def country_tiles_bounds(wildcards):
    """EPSG:3035 bounds of the own footprints of all the country's tiles: the mosaic's extent, also where
    a tile is missing (allow_missing_tiles: its area is nodata)."""
    country = wildcards.country
    if country not in _COUNTRY_BOUNDS:
        grid = {t: g for t, g in tile_grid(country).items() if t in tiles_of(country)}
        footprints = list(own_footprints(tile_footprints_3035(grid)).values())
        bounds = [p.bounds for p in footprints]
        _COUNTRY_BOUNDS[country] = [
            min(b[0] for b in bounds),
            min(b[1] for b in bounds),
            max(b[2] for b in bounds),
            max(b[3] for b in bounds),
        ]
    return _COUNTRY_BOUNDS[country]


def get_missing_tiles_record(wildcards):
    """With allow_missing_tiles, the record of the tiles left out (for the STAC item); else nothing."""
    return {"tiles_passed": tiles_passed_record(wildcards.country)} if ALLOW_MISSING_TILES else {}


def get_confidence_inputs(wildcards):
    tile = dict(country=wildcards.country, tile=wildcards.tile)
    inputs = {"probabilities": output_file(rules.predict_pixel.output.probabilities, model=PRODUCT["model"], **tile)}
    if PRODUCT["mode"] == "superpixel":
        inputs["segments"] = output_file(rules.snic.output.segments, **tile)
    return inputs


def get_clipped_confidence_tiles(wildcards):
    return expand(rules.tile_confidence.output[0], country=wildcards.country, tile=product_tiles_of(wildcards.country))


def has_valid_observations(country):
    """Whether every tile of the country is a composite, so the country gets a valid-observations layer."""
    return all(composited(country, t) for t in tiles_of(country))


def get_clipped_valid_observation_tiles(wildcards):
    return expand(rules.tile_valid_observations.output[0], country=wildcards.country, tile=tiles_of(wildcards.country))


# ---- settings and functions of rules/report.smk ------------------------------------------------------

REPORT_QUICKLOOK_PX = 1024
# The workflow's own report/ folder, also when the workflow is run through a symlinked Snakefile.
REPORT_DIR = WORKFLOW_ROOT / "report"


def report_description():
    """The report's front page: report/workflow.rst plus the run status of the last run (failed tiles).

    The status is written by the onsuccess/onerror handlers (rules/validate.smk), not by a rule,
    so it is added here when the workflow loads for `snakemake --report`.
    """
    page = Path(".snakemake/osmlulc/workflow.rst")
    status = run_status_rst({cc: run_status_path(cc) for cc in config["run_countries"]})
    # the share of each country the products classify, fill from labels or leave nodata, and why
    coverage = {cc: output_file(rules.product_coverage.output[0], country=cc) for cc in config["run_countries"]}
    status = f"{coverage_rst(coverage)}\n{status}"
    text = (REPORT_DIR / "workflow.rst").read_text()
    # raw: a message from a log must not be read as a Jinja template.
    with atomic_output(page) as tmp:
        tmp.write_text(f"{text}\n\n{{% raw %}}\n{status}\n{{% endraw %}}\n")
    return str(page.resolve())


def quicklook_products(country):
    """Final products that get a quicklook: product name -> kind (classes or continuous)."""
    products = {"classified_sieved": "classes", "confidence": "continuous"}
    products.update({f"lu{code}_sieved": "classes" for code in PRODUCT["land_use"]})
    if has_valid_observations(country):
        products["valid_observations"] = "continuous"
    return products


def get_stac_item_inputs(wildcards):
    """Optional inputs of a country's STAC item: its valid-observations layer and the tiles' STAC manifests."""
    inputs = {"manifests": get_tile_manifests(wildcards), "composite_records": get_composite_records(wildcards)}
    if has_valid_observations(wildcards.country):
        inputs["valid_observations"] = output_file(
            rules.valid_observations_product.output[0], country=wildcards.country
        )
    return inputs


def trains_resnet(country):
    return "resnet" in MODELS and not country_cfg(country)["models"].get("resnet")


def report_targets(country):
    """Everything of a country that the report shows, and the STAC item."""
    targets = [output_file(rules.quicklook.output[0], country=country, product=p) for p in quicklook_products(country)]
    targets += [
        output_file(rules.confusion_plot.output[0], country=country, assessment="validation"),
        output_file(rules.run_config.output[0], country=country),
        output_file(rules.stac_item.output[0], country=country),
        output_file(rules.product_coverage.output[0], country=country),
    ]
    if has_reference(country):
        targets.append(output_file(rules.confusion_plot.output[0], country=country, assessment="reference"))
    if has_valid_observations(country):
        targets.append(output_file(rules.observations_histogram.output[0], country=country))
    if trains_resnet(country):
        targets.append(output_file(rules.training_curves.output[0], country=country))
    return targets


# ---- settings and functions of rules/samples.smk -----------------------------------------------------


def get_label_raster(wildcards):
    """The labels a label raster is made from: the OSM areas of the extract (osm_pbf) or the prepared raster."""
    cfg = country_cfg(wildcards.country)
    if "osm_pbf" in cfg:
        return output_file(rules.osm_landuse.output[0], country=wildcards.country)
    return cfg["label_raster"]


def label_coding(wildcards):
    """osm: burn OSM areas (osmlulc.osm); classes / corine: the coding of a prepared label raster."""
    cfg = country_cfg(wildcards.country)
    return "osm" if "osm_pbf" in cfg else cfg["label_coding"]


# ---- settings and functions of rules/validate.smk ----------------------------------------------------

CHECKS = config["checks"]
# Bands of a tile that the check reads: the stack bands and the reference band.
CHECKED_BANDS = list(dict.fromkeys([BANDS["reference"], *STACK_ORDER]))
# Sources whose band, label and boundary files the user provides (others are made by rules).
USER_FILE_SOURCES = ("rasters",)


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
    return output_file(rules.check_inputs.output[0], country=wildcards.country, tile=wildcards.tile)


def get_check_records(wildcards):
    return expand(rules.check_inputs.output[0], country=wildcards.country, tile=tiles_of(wildcards.country))


def forget_missing_tile_records():
    """Without allow_missing_tiles, a tile recorded missing by an earlier run is checked again (and fails)."""
    if ALLOW_MISSING_TILES:
        return
    for cc in config["run_countries"]:
        for tile in tiles_of(cc):
            flag = Path(output_file(rules.check_inputs.output[0], country=cc, tile=tile))
            if flag.exists() and not check_record(flag)["ok"]:
                flag.unlink()


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
            for band in CHECKED_BANDS:
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
