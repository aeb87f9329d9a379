"""Unreadable products in a national run (issue 23), on the small demo with its dated products.

* One of a tile's dates truncated: the tile is composited from the others, and the product is listed
  as dropped in run_status.csv, the report's front page and the STAC item (``osmlulc:dropped_products``).
* Every date of another tile truncated, with ``product.allow_missing_tiles``: the country products are
  built without that tile (nodata, listed missing), and rebuilt with it once its products are fixed.
* Without ``allow_missing_tiles``, the tile with a dropped date still passes (composite and input check).
"""

from __future__ import annotations

import json

import pytest
import rasterio

from test_missing_tiles import _bad_tile_pixels, _jobs_run, _snakemake, _status
from conftest import linked_workflow

DROPPED_TILE = "32UPU"   # a training tile: one of its dates is truncated
BAD = "32UNV"            # every date truncated (not a training tile)


def _products(workdir, tile):
    return sorted((workdir / "resources" / "demo" / "XD" / "products" / tile).iterdir())


def _truncate(path, share=0.05):
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data[:int(len(data) * share)])


def _prepare(workdir, extra: str):
    (workdir / "missing.yaml").write_text(extra)
    made = _snakemake(workdir, "--until", "demo_dates")
    assert made.returncode == 0, made.stderr[-3000:]


@pytest.mark.integration
def test_a_truncated_date_is_dropped_and_a_tile_of_none_readable_is_left_out_then_rebuilt(tmp_path):
    workdir = linked_workflow(tmp_path / "run", small_config=True)
    _prepare(workdir, "product:\n  allow_missing_tiles: true\n")
    dropped = _products(workdir, DROPPED_TILE)[1]
    _truncate(next(dropped.glob("*_B05.tif")))
    for product in _products(workdir, BAD):
        _truncate(next(product.glob("*_B02.tif")))

    first = _snakemake(workdir)
    assert first.returncode == 0, first.stderr[-5000:]
    results = workdir / "results" / "XD"
    status = _status(workdir)
    assert status[DROPPED_TILE]["status"] == "ok" and status[DROPPED_TILE]["rule"] == "composite"
    assert f"1 of 4 products dropped (cannot be read): {dropped.name}" in status[DROPPED_TILE]["message"]
    assert status[BAD]["status"] == "missing" and "no product of the tile can be read" in status[BAD]["message"]
    assert status["32UNU"] == {**status["32UNU"], "status": "ok", "rule": "", "message": ""}
    record = json.loads((results / "tiles" / DROPPED_TILE / "composite" / "products.json").read_text())
    assert [d["product"] for d in record["dropped"]] == [str(dropped.relative_to(workdir))] and record["ok"]
    with rasterio.open(results / "tiles" / DROPPED_TILE / "valid_observations.tif") as src:
        assert src.read(1).max() == 3   # three dates left
    assert (_bad_tile_pixels(workdir, results / "XD_10m_3035_classified.tif") == 0).all()
    item = json.loads((results / "XD_10m_3035_stac_item.json").read_text())
    assert item["properties"]["osmlulc:missing_tiles"] == [BAD]
    listed = {(d["tile"], d["product"].rsplit("/", 1)[-1]) for d in item["properties"]["osmlulc:dropped_products"]}
    assert (DROPPED_TILE, dropped.name) in listed and {t for t, _ in listed} == {DROPPED_TILE, BAD}
    report = _snakemake(workdir, "--report", "report.html")
    assert report.returncode == 0, report.stderr[-3000:]
    html = (workdir / "report.html").read_text(errors="replace")
    assert "products dropped (cannot be read)" in html and f"{BAD}: rule" in html

    # The bad tile's products fixed (made again, as a new download would be): its chain and the country
    # products run again, nothing of the other tiles.
    second = _snakemake(workdir, "--forcerun", *[str(p.relative_to(workdir)) for p in _products(workdir, BAD)])
    assert second.returncode == 0, second.stderr[-5000:]
    jobs = _jobs_run(second.stdout + second.stderr)
    rules = {rule for rule, _ in jobs}
    assert {w["tile"] for _, w in jobs if "tile" in w} == {BAD}, jobs
    assert {"demo_dates", "composite", "check_inputs", "merge", "sieve_classified", "stac_item"} <= rules, rules
    assert not rules & {"demo_data", "samples", "train_resnet", "train_sklearn"}, rules
    assert _status(workdir)[BAD]["status"] == "ok"
    assert (_bad_tile_pixels(workdir, results / "XD_10m_3035_classified.tif") > 0).mean() > 0.9
    item = json.loads((results / "XD_10m_3035_stac_item.json").read_text())
    assert item["properties"]["osmlulc:missing_tiles"] == []
    assert {d["tile"] for d in item["properties"]["osmlulc:dropped_products"]} == {DROPPED_TILE}


@pytest.mark.integration
def test_without_allow_missing_tiles_a_dropped_date_does_not_stop_the_tile(tmp_path):
    workdir = linked_workflow(tmp_path / "run", small_config=True)
    _prepare(workdir, "product:\n  allow_missing_tiles: false\n")
    dropped = _products(workdir, DROPPED_TILE)[2]
    _truncate(next(dropped.glob("*_SCL.tif")), 0.3)
    tile = workdir / "results" / "XD" / "tiles" / DROPPED_TILE
    run = _snakemake(workdir, str((tile / "stack_10m.tif").relative_to(workdir)))
    assert run.returncode == 0, run.stderr[-5000:]
    record = json.loads((tile / "composite" / "products.json").read_text())
    assert record["ok"] and [d["product"].rsplit("/", 1)[-1] for d in record["dropped"]] == [dropped.name]
    assert json.loads((tile / "inputs_ok.json").read_text()).get("ok", True)
    log = (workdir / "logs" / "composite" / f"XD_{DROPPED_TILE}.log").read_text()
    assert sum(f"dropped product {dropped.relative_to(workdir)}" in line for line in log.splitlines()) == 1
