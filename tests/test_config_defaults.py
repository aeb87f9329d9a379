"""Config defaults live in config/schema.yaml only: rules/common.smk validates with set_default=True, and
the rules and scripts read those keys as config[...]. These tests pin that the defaults are filled in,
inside nested objects too, with the values the code used to supply itself."""

import copy
import os

import yaml
from snakemake.utils import validate

from conftest import ROOT

SCHEMA = os.path.join(ROOT, "config", "schema.yaml")


def validated(config):
    config = copy.deepcopy(config)
    validate(config, SCHEMA, set_default=True)
    return config


def demo_config():
    with open(os.path.join(ROOT, "config", "config.yaml")) as f:
        return yaml.safe_load(f)


def test_defaults_are_filled_in_nested_objects():
    config = demo_config()
    for key in ("osm_classes", "gdal_cache_mb", "sentinel2", "composite", "checks"):
        config.pop(key, None)
    for key in ("chip_px", "method", "validation_buffer_px", "min_valid_share"):
        config["samples"].pop(key, None)
    for key in ("choose_weights", "water"):
        config["models"]["ensemble"].pop(key, None)
    config["prediction"].pop("gaps", None)
    for key in ("architecture", "indices"):
        config["models"]["resnet"].pop(key, None)
    config["models"]["svm"].pop("indices", None)
    config["bands"].pop("indices", None)
    config["prediction"].pop("rotations", None)
    config["segmentation"].pop("colour_space", None)
    config["product"].pop("allow_missing_tiles", None)
    config["demo"].pop("dates", None)
    country = config["countries"]["XD"]
    for key in ("label_coding", "models", "tile_grid", "stac"):
        country.pop(key, None)

    config = validated(config)

    # the values rules/*.smk and workflow/scripts/sentinel2_mask.py supplied with .get() before
    assert config["osm_classes"] == "config/osm_classes.yaml"
    assert config["sentinel2"]["scl_mask_classes"] == [0, 1, 3, 8, 9, 10, 11]
    assert config["sentinel2"]["l1c_cloud_mask"] == "s2cloudless"
    assert config["sentinel2"]["mask_buffer_px"] == 0
    assert config["sentinel2"]["s2cloudless"] == {"threshold": 0.4, "average_over": 4, "dilation_size": 2,
                                                  "resolution": 60}
    assert "l1c_cloud_screen" not in config["sentinel2"]  # optional: off unless given
    assert config["composite"] == {"method": "median", "memory_mb": 1000, "drop_unreadable_products": True}
    assert config["checks"]["min_valid_fraction"] == 0.0
    assert config["samples"]["chip_px"] == 1
    assert config["samples"]["method"] == "pixel"
    assert config["samples"]["validation_buffer_px"] == 0
    assert config["models"]["resnet"]["architecture"] == "dense"
    assert config["models"]["resnet"]["indices"] == [] and config["models"]["svm"]["indices"] == []
    assert config["bands"]["indices"] == {}
    assert config["prediction"]["rotations"] == 1
    assert config["prediction"]["gaps"] == {"fill": True, "valid_windows": True}
    assert config["samples"]["min_valid_share"] == 1.0
    assert config["models"]["ensemble"]["choose_weights"] == []
    assert config["models"]["ensemble"]["water"] == {"index": "ndwi", "recall_margin": 0.01, "criterion": "recall",
                                                     "thresholds": [0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005,
                                                                    0.002],
                                                     "near_gap": {"px": 0, "z": 2.0, "min_samples": 200},
                                                     "pixel_model": {"enabled": True, "C": 1.0,
                                                                     "indices": ["ndvi", "ndwi", "mndwi", "ndbi"],
                                                                     "max_train_pixels": 200000,
                                                                     "thresholds": [0.999, 0.998, 0.995, 0.99, 0.98,
                                                                                    0.95, 0.9, 0.8, 0.7, 0.6, 0.5]}}
    assert config["segmentation"]["colour_space"] == "lab"
    assert config["product"]["allow_missing_tiles"] is False
    assert config["demo"]["dates"] == 0
    country = config["countries"]["XD"]
    assert country["label_coding"] == "classes"
    assert country["models"] == {} and country["tile_grid"] == {} and country["stac"] == {}


def test_given_values_are_kept():
    config = demo_config()
    config["sentinel2"] = {"s2cloudless": {"threshold": 0.6}}
    config["countries"]["XD"]["tile_grid"] = {"32UNU": {"crs": "EPSG:32632", "bounds": [0, 0, 1, 1]}}
    config = validated(config)
    assert config["sentinel2"]["s2cloudless"] == {"threshold": 0.6, "average_over": 4, "dilation_size": 2,
                                                  "resolution": 60}
    assert config["countries"]["XD"]["tile_grid"] == {"32UNU": {"crs": "EPSG:32632", "bounds": [0, 0, 1, 1]}}


def test_optional_keys_without_a_default_stay_absent():
    config = demo_config()
    country = config["countries"]["XD"]
    country.pop("reference", None)
    country.pop("period", None)
    config["bands"].pop("swir1", None)
    config["models"]["resnet"].pop("dilations", None)
    config = validated(config)
    assert "reference" not in config["countries"]["XD"]  # has_reference() reads its presence
    assert "period" not in config["countries"]["XD"]
    assert "swir1" not in config["bands"] and "dilations" not in config["models"]["resnet"]
