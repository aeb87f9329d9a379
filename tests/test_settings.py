"""osmlulc.settings without Snakemake: the config validated with the schema's defaults, every cross-check's
one-line error, and the derived settings (what rules/common.smk reads)."""

import copy
import os

import pytest
import yaml

from conftest import ROOT
from osmlulc.settings import ConfigError, Unversioned, load_settings

SCHEMA = os.path.join(ROOT, "config", "schema.yaml")


@pytest.fixture(autouse=True)
def in_workflow_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the config's paths (classes, osm_classes) are relative to the workflow root


def demo_config():
    with open(os.path.join(ROOT, "config", "config.yaml")) as f:
        return yaml.safe_load(f)


def merged(config, change):
    """``change`` merged into ``config`` key by key, as Snakemake merges a --configfile."""
    config = copy.deepcopy(config)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = merged(config[key], value)
        else:
            config[key] = value
    return config


def error_line(change):
    with pytest.raises(ConfigError) as err:
        load_settings(merged(demo_config(), change), SCHEMA)
    line = str(err.value)
    assert "\n" not in line
    return line


def test_member_maps_follow_the_accuracy_rows():
    """The ensemble's one pass writes its members' rasters where the accuracy rows need them (issue 24)."""
    config = demo_config()
    assert "reference" in config["countries"]["XD"]
    assert load_settings(config, SCHEMA).member_maps == ["resnet", "logreg"]  # auto: the demo has a reference
    assert load_settings(merged(demo_config(), {"prediction": {"member_maps": False}}), SCHEMA).member_maps == []
    without_reference = demo_config()
    del without_reference["countries"]["XD"]["reference"]
    assert load_settings(without_reference, SCHEMA).member_maps == []
    assert load_settings(merged(without_reference, {"prediction": {"member_maps": True}}), SCHEMA).member_maps \
        == ["resnet", "logreg"]
    no_ensemble = {"models": {"enabled": ["resnet", "logreg"]}, "product": {"model": "resnet"}}
    assert load_settings(merged(demo_config(), no_ensemble), SCHEMA).member_maps == []


def test_ensemble_superpixels_where_a_run_classifies_the_ensemble_per_superpixel():
    """The one pass sums the ensemble's probabilities per superpixel (and so waits for the superpixels) where the
    accuracy rows or the product classify the ensemble per superpixel (issue 24)."""
    assert load_settings(demo_config(), SCHEMA).ensemble_superpixels  # the demo has a reference
    without_reference = demo_config()
    del without_reference["countries"]["XD"]["reference"]
    assert not load_settings(without_reference, SCHEMA).ensemble_superpixels
    assert load_settings(merged(without_reference, {"product": {"mode": "superpixel"}}), SCHEMA).ensemble_superpixels
    assert not load_settings(merged(demo_config(), {"prediction": {"modes": ["pixel"]}}), SCHEMA).ensemble_superpixels
    no_ensemble = {"models": {"enabled": ["resnet", "logreg"]}, "product": {"model": "resnet"}}
    assert not load_settings(merged(demo_config(), no_ensemble), SCHEMA).ensemble_superpixels


def test_demo_config_settings():
    config = demo_config()
    s = load_settings(config, SCHEMA)
    assert config["composite"]["method"] == "median"  # the schema's defaults are filled in, in place
    assert s.tile_bands == list(dict.fromkeys([s.bands["reference"], *s.stack_order]))
    assert s.resampled_bands == [b for b in s.stack_order if s.bands["resolution"][b] != 10]
    assert s.trained_models == [m for m in s.models if m != "ensemble"]
    assert s.patch_size >= s.model_patch >= 1
    assert s.demo_countries == ["XD"]
    assert s.class_table["water"] == 12 and s.classes.water == 12
    grid = s.tile_grid("XD")
    assert set(grid) == set(s.tiles("XD")) and s.tile_grid("XD") is grid
    footprints = s.own_footprints("XD")
    bounds = s.country_bounds("XD")
    assert all(bounds[0] <= p.bounds[0] and p.bounds[2] <= bounds[2] for p in footprints.values())
    with pytest.raises(AttributeError):
        s.patch_size = 3  # frozen


def test_sample_settings_without_chip_models_have_no_chips():
    config = merged(demo_config(), {"samples": {"chip_px": 5}})
    assert load_settings(config, SCHEMA).sample_settings["chip_px"] == 5  # the ResNet trains on chips
    config = merged(demo_config(), {"samples": {"chip_px": 5}, "models": {"enabled": ["rf"]},
                                    "product": {"model": "rf"}})
    assert load_settings(config, SCHEMA).sample_settings["chip_px"] == 1


def test_validation_samples_look_for_gaps_as_far_as_the_water_decision_does():
    assert load_settings(demo_config(), SCHEMA).sample_settings["gap_reach_px"] == 0   # near_gap.px 0: off
    near = {"models": {"ensemble": {"water": {"near_gap": {"px": 32}}}}}
    assert load_settings(merged(demo_config(), near), SCHEMA).sample_settings["gap_reach_px"] == 32
    no_index = merged(near, {"models": {"ensemble": {"water": {"index": "none"}}}})
    assert load_settings(merged(demo_config(), no_index), SCHEMA).sample_settings["gap_reach_px"] == 0
    no_ensemble = merged(near, {"models": {"enabled": ["resnet", "rf"]}, "product": {"model": "rf"}})
    assert load_settings(merged(demo_config(), no_ensemble), SCHEMA).sample_settings["gap_reach_px"] == 0


def test_stac_and_http_settings_merge_the_country_overrides_key_by_key():
    country = {"name": "S", "source": "stac", "tiles": ["32UNU"], "training_tiles": ["32UNU"], "boundary": "b",
               "label_raster": "l", "period": {"start": "2023-05-01", "end": "2023-08-31"},
               "stac": {"max_cloud_cover": 10, "http": {"retries": 9}}}
    s = load_settings(merged(demo_config(), {"run_countries": ["XS"], "countries": {"XS": country}}), SCHEMA)
    assert s.stac("XS")["max_cloud_cover"] == 10 and s.stac("XS")["collection"] == "sentinel-2-l2a"
    assert s.http("XS") == {"timeout_s": 60, "connect_timeout_s": 10, "retries": 9, "retry_delay_s": 1,
                            "search_deadline_s": 600}
    assert s.stac("XS")["http"] == s.http("XS")
    search = s.stac_search("XS")
    assert "http" not in search and set(search["assets"]) == set(s.tile_bands) | {"SCL"}
    assert Unversioned(1) == Unversioned(1)


def test_the_top_level_stac_gets_the_schemas_defaults_and_a_countrys_stac_none():
    """The defaults live in config/schema.yaml, for the top-level stac only (a country's stac says what it
    overrides): a top-level stac naming only its url is complete after validation."""
    config = demo_config()
    config["stac"] = {"url": "https://stac.example/v1", "http": {"retries": 1}}
    s = load_settings(config, SCHEMA)
    assert s.config["stac"]["http"] == {"timeout_s": 60, "connect_timeout_s": 10, "retries": 1,
                                        "retry_delay_s": 1, "search_deadline_s": 600}
    assert s.config["stac"]["search_limit"] == 2000 and s.config["stac"]["offset"] == "metadata"
    assert s.country("XD")["stac"] == {}


_TILE = "32UNU"
_RASTERS = {"name": "Testland", "source": "rasters", "tiles": [_TILE], "training_tiles": [_TILE],
            "bands": "data/{tile}/{band}.tif", "label_raster": "data/label.tif", "boundary": "data/boundary.geojson"}


@pytest.mark.parametrize("change, line", [
    ({"bands": {"stack_order": ["B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B13"]}},
     "bands.stack_order[9] = 'B13' is not one of B01, B02"),
    ({"product": {"crs": "EPSG:4326"}}, "product.crs = 'EPSG:4326': 'EPSG:3035' was expected"),
    ({"run_countries": ["XT"], "countries": {"XT": {**_RASTERS, "reference": {"tile": "t.tif"}}}},
     "countries.XT.reference: 'country' is a required property"),
], ids=["unknown-band", "product-crs", "reference-tile-only"])
def test_schema_violation_is_one_line(change, line):
    assert error_line(change).startswith(line)


_STAC = {"name": "S", "source": "stac", "tiles": ["32UNU"], "training_tiles": ["32UNU"], "boundary": "b.geojson",
         "label_raster": "l.tif", "period": {"start": "2023-05-01", "end": "2023-08-31"},
         "stac": {"url": "http://stac.example/v1"}}
_SECOND_DEMO = {"name": "Second demo", "source": "demo", "tiles": [_TILE], "training_tiles": [_TILE],
                "bands": "resources/demo/XE/{tile}_{band}.tif", "label_raster": "x.tif", "boundary": "b.geojson"}


@pytest.mark.parametrize("change, line", [
    ({"bands": {"reference": "B01"}}, "band B01 has no entry in bands.resolution"),
    ({"segmentation": {"rgb_bands": ["B04", "B03", "B01"]}}, "band B01 is not in bands.stack_order ["),
    ({"bands": {"reference": "B05"}}, "the reference band B05 must be a 10 m band"),
    ({"product": {"land_use": [12, 40]}},
     "product.land_use code 40 is not in the class table [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]; "
     "use a code of config/classes.yaml"),
    ({"bands": {"indices": {"x": ["B02", "B01"]}}}, "bands.indices.x uses band B01, which is not in bands.stack_order"),
    ({"models": {"enabled": ["ensemble"]}}, "models.enabled names only the ensemble; enable the models it is made of"),
    ({"models": {"enabled": ["resnet", "svm", "ensemble"]}, "product": {"model": "ensemble"}},
     "models.ensemble.members names logreg, which is not in models.enabled ['resnet', 'svm', 'ensemble']"),
    ({"models": {"ensemble": {"members": {"resnet": 0, "logreg": 0}}}},
     "models.ensemble.members: the weights sum to 0; give a member a positive weight"),
    ({"models": {"svm": {"indices": ["ndsi"]}}}, "models.svm.indices names ndsi, which bands.indices does not define"),
    ({"models": {"resnet": {"dilations": [1, 2]}}}, "models.resnet.dilations has 2 rates for"),
    ({"product": {"sieve": {"halo_px": 5}}}, "product.sieve.halo_px = 5 is below product.sieve.size"),
    ({"samples": {"validation_buffer_px": 3}}, "samples.validation_buffer_px = 3 is below patch_size // 2 + 1 = 16"),
    ({"countries": {"XE": _SECOND_DEMO}}, "countries.XE.source = demo: only one demo country (XD) is generated"),
    ({"product": {"mode": "superpixel"}, "prediction": {"modes": ["pixel"]}},
     "product.model/mode must be among models.enabled and prediction.modes"),
    ({"run_countries": ["XX"]}, "run_countries names XX, which has no entry in countries"),
    ({"countries": {"XD": {"training_tiles": ["32UNU", "33UUP"]}}},
     "countries.XD.training_tiles ['33UUP'] are not in its tiles"),
    ({"models": {"logreg": {"windows_px": [5, 14]}}},
     "models.logreg.windows_px = [5, 14]: window sizes must be odd and at least 3 px, got [14]"),
    ({"countries": {"XD": {"label_raster": "config/classes.yaml"}}},
     "countries.XD: demo output config/classes.yaml (label) is not under resources/demo/"),
    ({"run_countries": ["XS"], "countries": {"XS": _STAC}},
     "countries.XS: STAC API http://stac.example/v1 is not an https:// URL"),
    ({"run_countries": ["XT"], "countries": {"XT": {**_RASTERS, "tiles": ["32UNU", "61UNU"]}}},
     "countries.XT.tiles: tile 61UNU: UTM zone 61 is not in 1..60"),
], ids=["band-without-resolution", "rgb-band-not-stacked", "reference-not-10m", "unknown-class-code",
        "index-band-not-stacked", "only-ensemble", "ensemble-member-not-enabled", "ensemble-weights-0",
"model-index-undefined", "dilations-per-block", "sieve-halo-below-size",
        "validation-buffer-below-patch", "second-demo-country", "product-mode-not-enabled", "unknown-run-country",
        "training-tile-not-a-tile", "even-window", "demo-output-outside-resources-demo", "stac-url-http",
        "tile-id-off-the-mgrs-grid"])
def test_cross_check_is_one_line_naming_the_key(change, line):
    assert error_line(change).startswith(line)


def test_original_resnet_depth_is_9n_plus_2():
    config = demo_config()
    config["models"]["resnet"]["architecture"] = "original"
    config["models"]["resnet"].setdefault("original", {})["depth"] = 21
    with pytest.raises(ConfigError, match=r"^models.resnet.original.depth must be 9 n \+ 2, got 21$"):
        load_settings(config, SCHEMA)


def test_water_index_must_be_defined():
    config = demo_config()
    config["models"]["ensemble"]["water"]["index"] = "mndwi"
    config["bands"]["indices"] = {"ndwi": ["B03", "B08"]}
    for model in ("resnet", "svm", "rf", "logreg"):
        config["models"][model]["indices"] = []
    with pytest.raises(ConfigError, match=r"^models.ensemble.water.index mndwi is not defined in bands.indices$"):
        load_settings(config, SCHEMA)
