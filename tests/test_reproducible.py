"""Reproducibility: two runs of the small demo give byte-identical classified products on CPU.

Seeds are in the config (demo.seed, samples.seed, models.seed), TensorFlow op determinism is on for
training and prediction, and no GeoTIFF carries a time stamp.  The first run is the session's shared
run (conftest.small_demo_run); this module makes a second one in its own temp dir.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import rasterio

from conftest import run_small_demo

pytestmark = pytest.mark.integration
COUNTRY = "XD"
PRODUCTS = [f"{COUNTRY}_10m_3035_{name}.tif" for name in ("classified", "classified_clipped", "label", "product",
                                                           "lu12", "classified_sieved", "lu12_sieved")]


@pytest.fixture(scope="module")
def second_run(tmp_path_factory):
    return run_small_demo(tmp_path_factory.mktemp("demo_again"))


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def classified_files(workdir):
    """Every class raster of a run: per-tile predictions of every model and mode, clipped tiles, country products."""
    results = workdir / "results" / COUNTRY
    tiles = sorted(p.relative_to(results) for p in (results / "tiles").glob("*/classified_*.tif"))
    return tiles + [Path(name) for name in PRODUCTS]


def test_two_runs_give_byte_identical_classified_products(small_demo_run, second_run):
    first, second = small_demo_run / "results" / COUNTRY, second_run / "results" / COUNTRY
    files = classified_files(small_demo_run)
    assert len([f for f in files if f.parts[0] == "tiles"]) == 3 * (5 * 2 + 1)  # 3 tiles x (5 models x 2 modes + clip)
    # The superpixels too (left out of the cross-environment digests: tests/product_digests.py).
    files += sorted(p.relative_to(first) for p in first.glob("tiles/*/snic_segments.tif"))
    assert len([f for f in files if f.name == "snic_segments.tif"]) == 3
    different = [str(f) for f in files if digest(first / f) != digest(second / f)]
    assert not different, different
    # The samples the models were trained on are the same arrays too (an .npz zip holds its write time,
    # so compare contents, not bytes).
    for split in ("train", "validation"):
        with np.load(first / "samples" / f"{split}.npz") as a, np.load(second / "samples" / f"{split}.npz") as b:
            assert sorted(a.files) == sorted(b.files)
            for key in a.files:
                assert np.array_equal(a[key], b[key]), (split, key)


def test_products_carry_no_time_stamp(small_demo_run):
    results = small_demo_run / "results" / COUNTRY
    for name in PRODUCTS:
        with rasterio.open(results / name) as src:
            assert "TIFFTAG_DATETIME" not in src.tags(), name
            for band in range(1, src.count + 1):
                assert not any("DATETIME" in key for key in src.tags(band)), name
