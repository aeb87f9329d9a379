"""The workflow's settings: the config validated against ``config/schema.yaml`` (its defaults filled in),
cross-checked, and turned into frozen values that the rules read (``rules/common.smk``).

:func:`load_settings` does what ``rules/common.smk`` did at load time, without Snakemake: validation with
the schema's defaults filled in (as ``snakemake.utils.validate(config, schema, set_default=True)``: nested
objects and arrays too, in place, so every key with a default is present), the cross-field checks a JSON
schema cannot express, and the derived values (band lists, patch sizes, sample settings, tile grids and
footprints, STAC search and HTTP settings). Every problem is one :class:`ConfigError` line naming the key.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from osmlulc.classes import ClassTable
from osmlulc.demo.spec import check_demo_outputs, demo_output_paths, demo_tile_grid
from osmlulc.footprints import own_footprints, tile_footprints_3035
from osmlulc.hrefs import HrefPolicy, check_api_url
from osmlulc.io import InputError
from osmlulc.mgrs import tile_grid as mgrs_tile_grid
from osmlulc.resnet import sample_patch_size
from osmlulc.sklearn_models import SKLEARN_KINDS, pixel_model_patch_size
from osmlulc.stac import http_settings, stac_config


class ConfigError(ValueError):
    """A wrong workflow config, in one line naming the key (without the ``osmlulc: config:`` prefix)."""


@dataclass(frozen=True)
class Unversioned:
    """A rule param that is not part of the job's record: Snakemake records params of builtin types
    only, so changing ``value`` reruns nothing. For settings that change how inputs are read (HTTP
    time-outs) or what a failure does, never what a good job writes."""

    value: Any


def snic_settings(segmentation: dict, stack_order: list) -> dict:
    """Rule snic's settings from the config's ``segmentation`` section: the RGB bands as 1-based band numbers
    of the stack, the compactness of the chosen method, and the rest as
    :func:`osmlulc.segmentation.segment_tile` names them."""
    method = segmentation["method"]
    return {"rgb_bands": [stack_order.index(b) + 1 for b in segmentation["rgb_bands"]],
            "spacing": segmentation["spacing_px"], "method": method,
            "compactness": segmentation["compactness" if method == "snic" else "slic_compactness"],
            "colour_space": segmentation["colour_space"], "block_size": segmentation["block_size_px"],
            "threads": segmentation["threads"]}


def validate_config(config: dict, schema_path: str | os.PathLike) -> None:
    """Validate ``config`` against the schema, filling in the schema's defaults in place; raise
    :class:`ConfigError` with one line (:func:`osmlulc.validate.config_error_line`) on the first violation."""
    from jsonschema import Draft202012Validator, validators
    from referencing import Registry, Resource

    from osmlulc.validate import config_error_line

    with open(schema_path) as f:
        schema = yaml.safe_load(f)
    schema["$id"] = Path(schema_path).resolve().as_uri()
    registry = Registry().with_resource(uri=schema["$id"], resource=Resource.from_contents(schema))
    validate_properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        # As snakemake.utils.validate(set_default=True) (the jsonschema FAQ's recipe): a missing key gets the
        # schema's default before its object is validated, so defaults inside defaults are filled in too.
        for name, subschema in properties.items():
            if "default" in subschema:
                instance.setdefault(name, subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    filling = validators.extend(Draft202012Validator, {"properties": set_defaults})
    for error in filling(schema, registry=registry).iter_errors(config):
        raise ConfigError(config_error_line(error))


@dataclass(frozen=True)
class Settings:
    """What the rules read from the (validated) config, derived once."""

    config: dict
    classes: ClassTable
    #: The class table as a rule param (its content, so editing config/classes.yaml reruns its readers).
    class_table: dict
    bands: dict
    stack_order: list
    #: Stack bands not at 10 m (resampled, rule resample), in stack order.
    resampled_bands: list
    #: Bands of a tile that the checks and composites read: the reference band and the stack.
    tile_bands: list
    models: list
    modes: list
    #: Models trained here (the ensemble is made of them); the ensemble's members -> weights.
    trained_models: list
    ensemble: dict
    #: Members whose own rasters the ensemble's one prediction pass writes (prediction.member_maps).
    member_maps: list
    #: Whether the ensemble's one pass sums its probabilities per superpixel (for its superpixel classes).
    ensemble_superpixels: bool
    #: Models that train on every chip pixel (the ResNet, and pixel models with chip_pixels).
    chip_models: list
    #: The largest patch any model needs (validation samples are scored on it).
    model_patch: int
    #: The samples' patch: model_patch, widened by samples.chip_px - 1 for the chip models.
    patch_size: int
    #: The samples rule's settings: label chips only serve the models that train on them.
    sample_settings: dict
    #: Water index rules compared with the models' water class: name -> (band a, band b).
    water_indices: dict
    demo_countries: list
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def product(self) -> dict:
        return self.config["product"]

    @property
    def allow_missing_tiles(self) -> bool:
        return self.config["product"]["allow_missing_tiles"]

    @property
    def run_countries(self) -> list:
        return self.config["run_countries"]

    @property
    def snic(self) -> dict:
        """Rule snic's settings (:func:`snic_settings`)."""
        return snic_settings(self.config["segmentation"], self.stack_order)

    def country(self, code: str) -> dict:
        return self.config["countries"][code]

    def tiles(self, code: str) -> list:
        return self.country(code)["tiles"]

    def demo_spec(self) -> dict:
        """The demo generator's spec: config["demo"] plus the native resolution of the stacked bands."""
        return {**self.config["demo"], "bands": {b: self.bands["resolution"][b] for b in self.stack_order}}

    def tile_grid(self, code: str) -> dict:
        """tile -> {crs, bounds} of every tile of the country: the demo's, the config's tile_grid, or from
        the tile ids (MGRS)."""
        key = ("tile_grid", code)
        if key not in self._cache:
            cfg = self.country(code)
            if cfg["source"] == "demo":
                self._cache[key] = demo_tile_grid(self.demo_spec())
            else:
                self._cache[key] = {**mgrs_tile_grid(cfg["tiles"]), **cfg["tile_grid"]}
        return self._cache[key]

    def own_footprints(self, code: str) -> dict:
        """tile -> the part of the tile that is its own (overlaps split at the midline), EPSG:3035 polygon,
        of the country's tiles; computed once per country."""
        key = ("own_footprints", code)
        if key not in self._cache:
            grid = {t: g for t, g in self.tile_grid(code).items() if t in self.tiles(code)}
            self._cache[key] = own_footprints(tile_footprints_3035(grid))
        return self._cache[key]

    def country_bounds(self, code: str) -> list:
        """EPSG:3035 bounds of the own footprints of all the country's tiles: the mosaic's extent, also
        where a tile is missing (allow_missing_tiles: its area is nodata)."""
        bounds = [p.bounds for p in self.own_footprints(code).values()]
        return [min(b[0] for b in bounds), min(b[1] for b in bounds),
                max(b[2] for b in bounds), max(b[3] for b in bounds)]

    def stac(self, code: str) -> dict:
        """The country's STAC settings: the config's stac section with the country's overrides (key by key)."""
        return stac_config(self.config["stac"], self.country(code)["stac"])

    def stac_search(self, code: str) -> dict:
        """The country's STAC search (rule search_scenes): its STAC settings without http (which changes how,
        not what is read) and only the assets of the bands a composite reads (and SCL)."""
        settings = self.stac(code)
        assets = settings["assets"]
        needed = self.tile_bands + ["SCL"]
        missing = [b for b in needed if b not in assets]
        if missing:
            raise ValueError(f"config: stac.assets has no asset key for band(s) {missing}")
        settings.pop("http", None)
        return {**settings, "assets": {b: assets[b] for b in needed}}

    def http(self, code: str) -> dict:
        """Retries and time-outs of the country's HTTP reads: stac.http with the country's overrides."""
        return http_settings(self.config["stac"], self.country(code)["stac"])


def _check_resnet(resnet: dict) -> None:
    """The ResNet's architecture checks, before its patch size is derived from it."""
    dilations = resnet.get("dilations")
    if dilations is not None and len(dilations) != resnet["n_blocks"]:
        raise ConfigError(f"models.resnet.dilations has {len(dilations)} rates for {resnet['n_blocks']} blocks "
                          "(models.resnet.n_blocks); give one per block")
    if resnet["architecture"] == "original" and (resnet["original"]["depth"] - 2) % 9:
        raise ConfigError(f"models.resnet.original.depth must be 9 n + 2, got {resnet['original']['depth']}")


def _model_patch(config: dict, model: str) -> int:
    if model == "resnet":
        return sample_patch_size(config["models"]["resnet"])
    try:
        return pixel_model_patch_size(config["models"][model])
    except ValueError as err:
        raise ConfigError(f"models.{model}.windows_px = {config['models'][model]['windows_px']}: {err}") from None


def _reference_run(config: dict) -> bool:
    """Whether a run country has a reference: its accuracy rows need every model x mode's rasters."""
    return any("reference" in config["countries"].get(cc, {}) for cc in config["run_countries"])


def _member_maps(config: dict, models: list) -> list:
    """The ensemble members whose classified and probability rasters rule ensemble_pixel writes beside the
    ensemble's (prediction.member_maps; auto: when a run country has a reference, whose accuracy rows need
    every model's rasters)."""
    wanted = config["prediction"]["member_maps"]
    if wanted == "auto":
        wanted = _reference_run(config)
    if "ensemble" not in models or not wanted:
        return []
    return [m for m in config["models"]["ensemble"]["members"] if m in models]


def near_gap_reach(config: dict, models: list) -> int:
    """How far (px) the validation samples look for a gap: the ensemble's water decision near gaps
    (models.ensemble.water.near_gap.px), 0 without one."""
    water = config["models"]["ensemble"].get("water") or {}
    if "ensemble" not in models or water.get("index", "none") == "none":
        return 0
    return int((water.get("near_gap") or {}).get("px", 0))


def _ensemble_superpixels(config: dict, models: list) -> bool:
    """Whether a run classifies the ensemble per superpixel (the product's mode, or the accuracy rows of a
    reference), so that its one pass (rule ensemble_pixel) reads the superpixels and sums its probabilities in
    each; otherwise the pass needs no superpixels (none are segmented for it)."""
    if "ensemble" not in models or "superpixel" not in config["prediction"]["modes"]:
        return False
    product = config["product"]
    return (product["model"], product["mode"]) == ("ensemble", "superpixel") or _reference_run(config)


def derive(config: dict) -> Settings:
    """The settings of a validated config (defaults filled in); no cross-checks (:func:`check`)."""
    classes = ClassTable.from_yaml(config["classes"])
    _check_resnet(config["models"]["resnet"])
    bands = config["bands"]
    stack_order = bands["stack_order"]
    models = config["models"]["enabled"]
    trained = [m for m in models if m != "ensemble"]
    chip_models = [m for m in trained if m == "resnet" or config["models"][m].get("chip_pixels")]
    model_patch = max(_model_patch(config, m) for m in trained) if trained else 1
    chip_px = config["samples"]["chip_px"]
    patch_size = max([_model_patch(config, m) + chip_px - 1 for m in chip_models] + [model_patch])
    water_indices = {"ndwi": (bands["green"], bands["nir"])}
    if bands.get("swir1") in stack_order:
        water_indices["mndwi"] = (bands["green"], bands["swir1"])
    return Settings(
        config=config,
        classes=classes,
        class_table=dataclasses.asdict(classes),
        bands=bands,
        stack_order=stack_order,
        resampled_bands=[b for b in stack_order if bands["resolution"][b] != 10],
        tile_bands=list(dict.fromkeys([bands["reference"], *stack_order])),
        models=models,
        modes=config["prediction"]["modes"],
        trained_models=trained,
        ensemble=config["models"]["ensemble"]["members"],
        member_maps=_member_maps(config, models),
        ensemble_superpixels=_ensemble_superpixels(config, models),
        chip_models=chip_models,
        model_patch=model_patch,
        patch_size=patch_size,
        sample_settings=dict(config["samples"], **({} if chip_models else {"chip_px": 1}),
                             gap_reach_px=near_gap_reach(config, models)),
        water_indices=water_indices,
        demo_countries=[cc for cc, c in config["countries"].items() if c["source"] == "demo"],
    )


def check(s: Settings) -> None:
    """Cross-field checks that a JSON schema cannot express; a :class:`ConfigError` line per problem."""
    config, bands, stack_order, product = s.config, s.bands, s.stack_order, s.product
    for band in stack_order + [bands["reference"], bands["green"], bands["nir"]]:
        if band not in bands["resolution"]:
            raise ConfigError(f"band {band} has no entry in bands.resolution")
    for band in [bands["green"], bands["nir"]] + config["segmentation"]["rgb_bands"]:
        if band not in stack_order:
            raise ConfigError(f"band {band} is not in bands.stack_order {stack_order}")
    if bands["resolution"][bands["reference"]] != 10:
        raise ConfigError(f"the reference band {bands['reference']} must be a 10 m band")
    codes = set(int(c) for c in s.classes.codes)
    for code in product["land_use"]:
        if code not in codes:
            raise ConfigError(f"product.land_use code {code} is not in the class table {sorted(codes)}; "
                              f"use a code of {config['classes']}")
    index_definitions = bands["indices"]
    for name, pair in index_definitions.items():
        for band in pair:
            if band not in stack_order:
                raise ConfigError(f"bands.indices.{name} uses band {band}, which is not in bands.stack_order")
    if not s.trained_models:
        raise ConfigError("models.enabled names only the ensemble; enable the models it is made of")
    for model in s.ensemble:
        if "ensemble" in s.models and model not in s.models:
            raise ConfigError(f"models.ensemble.members names {model}, which is not in models.enabled {s.models}; "
                              "enable it or drop it from the ensemble")
    if "ensemble" in s.models and sum(s.ensemble.values()) <= 0:
        raise ConfigError("models.ensemble.members: the weights sum to 0; give a member a positive weight")
    water_index = config["models"]["ensemble"]["water"]["index"]
    if "ensemble" in s.models and water_index != "none" and water_index not in index_definitions:
        raise ConfigError(f"models.ensemble.water.index {water_index} is not defined in bands.indices")
    for model in ("resnet", *SKLEARN_KINDS):
        for name in config["models"][model]["indices"]:
            if name not in index_definitions:
                raise ConfigError(f"models.{model}.indices names {name}, which bands.indices does not define "
                                  f"({sorted(index_definitions)})")
    sieve = product["sieve"]
    if sieve["halo_px"] < sieve["size"]:
        raise ConfigError(f"product.sieve.halo_px = {sieve['halo_px']} is below product.sieve.size = "
                          f"{sieve['size']}: the windowed sieve would be inexact; set halo_px >= size")
    buffer = config["samples"]["validation_buffer_px"]
    # Validation samples are scored on the model's own patch (label chips only widen training samples).
    if s.model_patch > 1 and buffer < s.model_patch // 2 + 1:
        need = s.model_patch // 2 + 1
        raise ConfigError(f"samples.validation_buffer_px = {buffer} is below patch_size // 2 + 1 = {need} "
                          f"(patch {s.model_patch} px): training pixels would leak into validation patches; "
                          f"set it to at least {need}")
    if len(s.demo_countries) > 1:
        kept = next((cc for cc in config["run_countries"] if cc in s.demo_countries), s.demo_countries[0])
        extra = sorted(set(s.demo_countries) - {kept})[0]
        raise ConfigError(f"countries.{extra}.source = demo: only one demo country ({kept}) is generated "
                          f"(rule demo_data), no rule makes {extra}'s inputs; use source rasters or sentinel2")
    if product["model"] not in s.models or product["mode"] not in s.modes:
        raise ConfigError("product.model/mode must be among models.enabled and prediction.modes")
    for cc in config["run_countries"]:
        _check_country(s, cc)


def _check_country(s: Settings, cc: str) -> None:
    config = s.config
    if cc not in config["countries"]:
        raise ConfigError(f"run_countries names {cc}, which has no entry in countries")
    country = config["countries"][cc]
    extra = set(country["training_tiles"]) - set(country["tiles"])
    if extra:
        raise ConfigError(f"countries.{cc}.training_tiles {sorted(extra)} are not in its tiles")
    if country["source"] == "demo" and "demo" not in config:
        raise ConfigError(f"country {cc} has source demo but there is no demo section")
    if country["source"] == "stac":
        try:  # the API's answers are data: https unless the config opts in (osmlulc.hrefs)
            stac = s.stac(cc)
            check_api_url(stac["url"], HrefPolicy.from_settings(stac))
        except InputError as err:
            raise ConfigError(f"countries.{cc}: {err}") from None
    if country["source"] == "demo":
        try:  # the demo rule writes these paths, so only under resources/demo/
            check_demo_outputs(cc, demo_output_paths(country, config["demo"]["tiles"], s.stack_order))
        except InputError as err:
            raise ConfigError(str(err)) from None
    else:
        try:  # Sentinel-2 tile geometry follows from the tile id where tile_grid does not give it
            mgrs_tile_grid([t for t in country["tiles"] if t not in country["tile_grid"]])
        except InputError as err:
            raise ConfigError(f"countries.{cc}.tiles: {err}") from None


def load_settings(config: dict, schema_path: str | os.PathLike) -> Settings:
    """Validate ``config`` (defaults filled in, in place), cross-check it and derive the settings.

    Raises :class:`ConfigError` (one line) for a wrong config. A wrong OSM tag table (unknown class,
    malformed tag) of a run country labelled from an OSM extract fails here too, not mid-run.
    """
    validate_config(config, schema_path)
    settings = derive(config)
    check(settings)
    if any("osm_pbf" in settings.country(cc) for cc in config["run_countries"]):
        from osmlulc.osm import OsmClassTable

        OsmClassTable.from_yaml(config["osm_classes"], settings.classes)
    return settings


def _merge(config: dict, change: dict) -> None:
    """``change`` merged into ``config`` key by key, in place (as Snakemake merges a ``--configfile``)."""
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            _merge(config[key], value)
        else:
            config[key] = value


def workflow_settings(root: str | os.PathLike, *configfiles: str | os.PathLike) -> Settings:
    """The settings of the workflow in folder ``root``, without Snakemake (benchmarks, tests): its
    ``config/config.yaml`` with ``configfiles`` (relative to ``root``) merged over it, as ``snakemake
    --configfile`` does, and :func:`load_settings` with its ``config/schema.yaml``; the config's paths are
    read relative to ``root``, as the workflow reads them."""
    from contextlib import chdir

    with chdir(root):
        config = yaml.safe_load(Path("config/config.yaml").read_text())
        for path in configfiles:
            _merge(config, yaml.safe_load(Path(path).read_text()))
        return load_settings(config, "config/schema.yaml")
