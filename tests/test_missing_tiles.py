"""product.allow_missing_tiles: one bad tile of the (small) demo does not block the country products.

The products are built from the tiles whose inputs passed their check; the bad tile is nodata in them and
listed in run_status.csv, the report's front page and the STAC item. Once the tile is fixed, the next
run rebuilds only that tile and the country products.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import rasterio.features

from conftest import linked_workflow, workflow_settings

BAD = "32UNV"  # not a training tile of the demo
BAND = f"resources/demo/XD/tiles/{BAD}/{BAD}_B07.tif"


def _snakemake(workdir, *args):
    cmd = [sys.executable, "-m", "snakemake", *args, "--cores", "2", "--configfile", "config_small.yaml",
           "missing.yaml"]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=1800)


def _jobs_run(output: str) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job a run printed."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        match = re.match(r"(?:local)?rule (\w+):", block)
        if match:
            wildcards = re.search(r"\n\s+wildcards: (.*)", block)
            jobs.append((match.group(1), dict(kv.split("=", 1) for kv in wildcards.group(1).split(", "))
                         if wildcards else {}))
    return jobs


def _status(workdir) -> dict:
    with open(workdir / "results" / "XD" / "run_status.csv", newline="") as f:
        return {r["tile"]: r for r in csv.DictReader(f)}


def _bad_tile_pixels(workdir, mosaic) -> np.ndarray:
    """The mosaic's pixels inside the bad tile's own footprint (50 m in from its edges)."""
    own = workflow_settings("config_small.yaml", workdir=workdir).own_footprints("XD")[BAD].buffer(-50)
    with rasterio.open(mosaic) as src:
        inside = rasterio.features.geometry_mask([own], out_shape=src.shape, transform=src.transform, invert=True)
        assert inside.sum() > 1000
        return src.read(1)[inside]


@pytest.mark.integration
def test_one_bad_tile_is_nodata_and_listed_and_its_fix_rebuilds_only_it(tmp_path):
    workdir = linked_workflow(tmp_path / "run", small_config=True)
    # One clear image per tile (demo.dates 0): the band file is then what check_inputs reads. A product of
    # a composited tile that cannot be read stops the composite rule, before any check (see docs/bad-inputs.md).
    (workdir / "missing.yaml").write_text("product:\n  allow_missing_tiles: true\ndemo:\n  dates: 0\n")
    # The demo's inputs, then one band of one tile replaced by what a failed download leaves.
    made = _snakemake(workdir, "resources/demo/XD/XD_boundary.geojson")
    assert made.returncode == 0, made.stderr[-3000:]
    band = workdir / BAND
    good_band = tmp_path / "B07.tif"
    shutil.copy(band, good_band)
    band.unlink()
    band.write_bytes(b"<html>503 Service Unavailable</html>")

    first = _snakemake(workdir)
    assert first.returncode == 0, first.stderr[-5000:]
    results = workdir / "results" / "XD"
    status = _status(workdir)
    assert status[BAD]["status"] == "missing" and status[BAD]["rule"] == "check_inputs", status[BAD]
    assert "B07" in status[BAD]["message"] and "cannot be read" in status[BAD]["message"]
    assert "nodata in the country products" in status[BAD]["message"]
    assert {status[t]["status"] for t in ("32UNU", "32UPU")} == {"ok"}
    # The products exist; the bad tile's area is nodata in them, the others are classified.
    assert (_bad_tile_pixels(workdir, results / "XD_10m_3035_classified.tif") == 0).all()
    with rasterio.open(results / "XD_10m_3035_classified_sieved.tif") as src:
        assert (src.read(1) > 0).mean() > 0.3
    assert not (results / "tiles" / BAD / "stack_10m.tif").exists()  # nothing of the bad tile ran
    item = json.loads((results / "XD_10m_3035_stac_item.json").read_text())
    assert item["properties"]["osmlulc:missing_tiles"] == [BAD]
    report = _snakemake(workdir, "--report", "report.html")
    assert report.returncode == 0, report.stderr[-3000:]
    html = (workdir / "report.html").read_text(errors="replace")
    assert f"{BAD}: rule" in html and "failed, tile missing" in html

    # The tile is fixed: only its chain and the country products run again.
    band.unlink()
    shutil.copy(good_band, band)
    second = _snakemake(workdir)
    assert second.returncode == 0, second.stderr[-5000:]
    jobs = _jobs_run(second.stdout + second.stderr)
    rules = {rule for rule, _ in jobs}
    assert {w["tile"] for _, w in jobs if "tile" in w} == {BAD}
    assert {"check_inputs", "resample", "combine", "ensemble_pixel", "clip_extent", "merge",
            "sieve_classified", "stac_item"} <= rules, rules
    assert not rules & {"demo_data", "samples", "train_resnet", "train_sklearn"}, rules
    assert _status(workdir)[BAD]["status"] == "ok"
    assert (_bad_tile_pixels(workdir, results / "XD_10m_3035_classified.tif") > 0).mean() > 0.9
    item = json.loads((results / "XD_10m_3035_stac_item.json").read_text())
    assert item["properties"]["osmlulc:missing_tiles"] == []
