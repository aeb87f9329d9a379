"""Bad inputs: each gives one line naming the file, the tile and what to do, and leaves no partial output.

Unit tests of osmlulc.validate.check_tile_inputs (the rule check_inputs) on a small generated demo
tile with one defect each, and workflow tests: several bad tiles in one `snakemake --keep-going`
run (the good tile still completes; run_status.csv lists the failed ones), missing files and config
schema violations at load time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml

from conftest import linked_workflow
from osmlulc.demo.country import generate_demo_country
from osmlulc.demo.spec import demo_tile_grid
from osmlulc.io import InputError, to_cog
from osmlulc.validate import TileInputs, check_tile_inputs
from placeholders import touch_placeholder_inputs

BANDS = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B05": 20, "B06": 20, "B07": 20, "B8A": 20, "B11": 20, "B12": 20}
TILE = "32UNU"
SPEC = {"tile_size_px": 128, "tile_spacing_px": 120, "utm_epsg": 32632, "origin": [499980, 5400000],
        "tiles": {TILE: [0, 0]}, "bands": BANDS, "osm_coverage": 0.6, "osm_wrong_fraction": 0.03,
        "nodata_corner": {"tile": TILE, "size_px": 0}}
GRID = demo_tile_grid(SPEC)[TILE]


@pytest.fixture(scope="module")
def source(tmp_path_factory, table):
    """A good one-tile demo country: bands, OSM label raster (EPSG:3035), boundary (GeoJSON)."""
    out = tmp_path_factory.mktemp("good")
    generate_demo_country(SPEC, table, seed=3,
                          band_paths={TILE: {b: str(out / TILE / f"{b}.tif") for b in BANDS}},
                          truth_tile_paths={TILE: str(out / "truth.tif")},
                          truth_country_path=str(out / "truth_3035.tif"),
                          label_path=str(out / "label.tif"), boundary_path=str(out / "boundary.geojson"))
    return out


@pytest.fixture
def country(source, tmp_path):
    """A fresh copy of the good country to break."""
    shutil.copytree(source, tmp_path / "in")
    return tmp_path / "in"


def tile_inputs(root: Path, **changes) -> TileInputs:
    fields = dict(country="XT", tile=TILE, bands={b: str(root / TILE / f"{b}.tif") for b in BANDS}, resolution=BANDS,
                  reference="B02", label_raster=str(root / "label.tif"), boundary=str(root / "boundary.geojson"),
                  training=True, grid=GRID,
                  hints={"bands": "countries.XT.bands", "tiles": "countries.XT.tiles",
                         "training_tiles": "countries.XT.training_tiles"})
    fields.update(changes)
    return TileInputs(**fields)


def rewrite(path: Path, transform=None, data=None, **profile_changes) -> None:
    """Rewrite a raster with other data / profile values (CRS, resolution, ...)."""
    with rasterio.open(path) as src:
        profile, values = src.profile, src.read(1)
    profile.update(profile_changes)
    if transform is not None:
        profile["transform"] = transform
    values = values if data is None else data(values)
    profile.update(width=values.shape[1], height=values.shape[0])
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values, 1)


def assert_fails(inputs: TileInputs, table, out: Path, *patterns: str, **kw) -> str:
    """The check fails with one line matching every pattern, and leaves no output and no temporary file."""
    dst = out / "results" / "inputs_ok.json"
    with pytest.raises(InputError) as info:
        check_tile_inputs(inputs, table, dst, **kw)
    message = str(info.value)
    assert "\n" not in message
    for pattern in patterns:
        assert pattern in message, (pattern, message)
    assert not dst.exists()
    assert not list((out / "results").glob("*")) if (out / "results").exists() else True
    return message


def test_good_tile_passes_and_writes_its_summary(country, table, tmp_path):
    dst = tmp_path / "ok" / "inputs_ok.json"
    summary = check_tile_inputs(tile_inputs(country), table, dst)
    written = json.loads(dst.read_text())
    assert written == json.loads(json.dumps(summary))
    assert set(written["bands"]) == set(BANDS)
    assert written["crs"] == "EPSG:32632" and written["bounds"] == GRID["bounds"]
    assert written["bands"]["B05"]["resolution"] == [20.0, 20.0]
    assert 0.99 < written["bands"]["B02"]["valid_fraction"] <= 1.0
    assert written["has_labels"] and written["boundary_overlap"]


def test_corrupt_band(country, table, tmp_path):
    (country / TILE / "B07.tif").write_bytes(b"this is an HTML error page, not a GeoTIFF")
    assert_fails(tile_inputs(country), table, tmp_path, "band B07 of tile 32UNU", "B07.tif cannot be read",
                 "re-download")


def test_truncated_geotiff(country, table, tmp_path):
    path = country / TILE / "B11.tif"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    message = assert_fails(tile_inputs(country), table, tmp_path, "band B11 of tile 32UNU", "B11.tif")
    # whether the cut leaves the header readable depends on where GDAL wrote it: either line tells what to do
    assert "cannot be read" in message and "re-download" in message or \
        "is damaged or truncated" in message and "download it again" in message, message


def test_truncated_cog_fails_on_its_data_not_on_open(country, table, tmp_path):
    # A COG has its header first: a cut-off download opens fine and fails only when its blocks are read.
    cog = country / TILE / "B03_cog.tif"
    to_cog(country / TILE / "B03.tif", cog)
    cog.write_bytes(cog.read_bytes()[: int(cog.stat().st_size * 0.6)])
    with rasterio.open(cog) as src:
        assert src.width == 128
    bands = {**tile_inputs(country).bands, "B03": str(cog)}
    assert_fails(tile_inputs(country, bands=bands), table, tmp_path,
                 "band B03 of tile 32UNU: ", "B03_cog.tif is damaged or truncated", "download it again")


def test_truncated_jp2(country, table, tmp_path):
    jp2 = country / TILE / "B12.jp2"
    with rasterio.open(country / TILE / "B12.tif") as src:
        profile = dict(driver="JP2OpenJPEG", width=src.width, height=src.height, count=1, dtype="uint16",
                       crs=src.crs, transform=src.transform, nodata=0)
        data = src.read(1)
    with rasterio.open(jp2, "w", **profile) as dst:
        dst.write(data, 1)
    bands = {**tile_inputs(country).bands, "B12": str(jp2)}
    check_tile_inputs(tile_inputs(country, bands=bands), table, tmp_path / "jp2_ok.json")  # the whole JP2 is fine
    jp2.write_bytes(jp2.read_bytes()[: int(jp2.stat().st_size * 0.6)])
    assert_fails(tile_inputs(country, bands=bands), table, tmp_path, "band B12 of tile 32UNU", "B12.jp2")


def test_missing_band(country, table, tmp_path):
    (country / TILE / "B8A.tif").unlink()
    assert_fails(tile_inputs(country), table, tmp_path, "band B8A of tile 32UNU is missing", "B8A.tif does not exist",
                 "download it or fix countries.XT.bands")


def test_band_in_another_crs(country, table, tmp_path):
    rewrite(country / TILE / "B05.tif", crs="EPSG:32633")
    assert_fails(tile_inputs(country), table, tmp_path, "B05.tif is in EPSG:32633", "reference band is in EPSG:32632",
                 "use the file of this tile")


def test_band_at_an_unexpected_resolution(country, table, tmp_path):
    # A 60 m file given for a 20 m band (e.g. from the R60m folder of a product).
    rewrite(country / TILE / "B06.tif", transform=rasterio.transform.from_origin(499980, 5400000, 60, 60),
            data=lambda v: v[::3, ::3])
    assert_fails(tile_inputs(country), table, tmp_path, "B06.tif has a 60 x 60 m pixel size; expected 20 m",
                 "bands.resolution")


def test_band_of_another_tile(country, table, tmp_path):
    rewrite(country / TILE / "B04.tif", transform=rasterio.transform.from_origin(509780, 5400000, 10, 10))
    assert_fails(tile_inputs(country), table, tmp_path, "band B04 of tile 32UNU", "is it a file of another tile?")


def test_reference_band_off_the_tile_grid(country, table, tmp_path):
    other = {"crs": GRID["crs"], "bounds": [600000.0, 5300000.0, 601280.0, 5301280.0]}
    assert_fails(tile_inputs(country, grid=other), table, tmp_path, "not the footprint", "of tile 32UNU")
    assert_fails(tile_inputs(country, grid={**GRID, "crs": "EPSG:32633"}), table, tmp_path,
                 "but tile 32UNU is in EPSG:32633")


@pytest.mark.parametrize("what", ["nodata", "cloud"])
def test_tile_all_nodata_or_all_cloud(country, table, tmp_path, what):
    # Masked clouds are nodata in the bands: both look the same to the workflow.
    for band in BANDS:
        rewrite(country / TILE / f"{band}.tif", data=np.zeros_like)
    assert_fails(tile_inputs(country), table, tmp_path, "tile 32UNU has no valid pixels in band B02",
                 "remove the tile from countries.XT.tiles")


def test_tile_with_too_few_valid_pixels(country, table, tmp_path):
    def mostly_cloud(v):
        v = v.copy()
        v[:, 10:] = 0
        return v
    rewrite(country / TILE / "B02.tif", data=mostly_cloud)
    assert_fails(tile_inputs(country), table, tmp_path, "tile 32UNU has only 7.81% valid pixels",
                 "checks.min_valid_fraction = 0.5", min_valid_fraction=0.5)
    check_tile_inputs(tile_inputs(country), table, tmp_path / "ok.json")  # default: some valid pixels suffice


def test_one_band_all_nodata(country, table, tmp_path):
    rewrite(country / TILE / "B08.tif", data=np.zeros_like)
    assert_fails(tile_inputs(country), table, tmp_path, "band B08 of tile 32UNU", "is all nodata", "download it again")


def test_training_tile_without_labelled_pixel(country, table, tmp_path):
    rewrite(country / "label.tif", data=np.zeros_like)
    assert_fails(tile_inputs(country), table, tmp_path, "training tile 32UNU has no labelled pixel", "label.tif",
                 "countries.XT.training_tiles")
    # A tile that is only predicted needs no labels.
    check_tile_inputs(tile_inputs(country, training=False), table, tmp_path / "ok.json")


def test_labels_in_another_coding_count_as_unlabelled(country, table, tmp_path):
    # Class codes read as CORINE codes map to nothing: the user chose the wrong label_coding.
    assert_fails(tile_inputs(country, label_coding="corine"), table, tmp_path, "label_coding corine")


def test_label_raster_that_does_not_overlap(country, table, tmp_path):
    with rasterio.open(country / "label.tif") as src:
        far = src.transform * rasterio.Affine.translation(0, -100000)
    rewrite(country / "label.tif", transform=far)
    assert_fails(tile_inputs(country), table, tmp_path, "label raster", "label.tif does not overlap tile 32UNU",
                 "right CRS")


def test_corrupt_label_raster(country, table, tmp_path):
    (country / "label.tif").write_bytes(b"\x00" * 100)
    assert_fails(tile_inputs(country), table, tmp_path, "label raster (tile 32UNU)", "label.tif cannot be read")


def test_boundary_that_does_not_overlap(country, table, tmp_path):
    far = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": {
        "type": "Polygon", "coordinates": [[[20, 60], [20.1, 60], [20.1, 60.1], [20, 60.1], [20, 60]]]}}]}
    (country / "boundary.geojson").write_text(json.dumps(far))
    assert_fails(tile_inputs(country), table, tmp_path, "tile 32UNU does not overlap the country boundary",
                 "boundary.geojson", "remove it from countries.XT.tiles")


@pytest.mark.parametrize("content, pattern", [
    ({"type": "FeatureCollection", "features": []}, "contains no polygon with an area"),
    ({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": {
        "type": "Polygon", "coordinates": [[[9, 48], [9.1, 48], [9, 48]]]}}]}, "contains no polygon with an area"),
    ({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": {
        "type": "LineString", "coordinates": [[9, 48], [9.1, 48.1]]}}]}, "contains no polygon with an area"),
    ("{not json", "cannot be read as a vector file"),
], ids=["empty", "degenerate-ring", "line", "unreadable"])
def test_empty_or_invalid_boundary(country, table, tmp_path, content, pattern):
    path = country / "boundary.geojson"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    assert_fails(tile_inputs(country), table, tmp_path, "boundary", "boundary.geojson", pattern)


def test_self_intersecting_boundary_is_repaired(country, table, tmp_path):
    # A bow-tie covering the tile: made valid (two triangles), not rejected.
    with rasterio.open(country / TILE / "B02.tif") as src:
        left, bottom, right, top = rasterio.warp.transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    bowtie = [[left, bottom], [right, top], [right, bottom], [left, top], [left, bottom]]
    (country / "boundary.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [bowtie]}}]}))
    assert check_tile_inputs(tile_inputs(country), table, tmp_path / "ok.json")["boundary_overlap"]


# --------------------------------------------------------------------------- through snakemake

#: Tile id -> what is wrong with it (32UNU is fine).
BAD_TILES = {"32UNA": "corrupt", "32UNB": "crs", "32UNC": "nodata", "32UND": "resolution"}


def snakemake(workdir: Path, *args, timeout=900):
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout)


def workflow_dir(tmp_path: Path) -> Path:
    return linked_workflow(tmp_path / "run")


def country_config(workdir: Path, source: Path, tiles: list[str]) -> Path:
    """A `source: rasters` country XT whose tiles are copies of the good tile (same grid), then broken."""
    data = workdir / "data"
    for tile in tiles:
        shutil.copytree(source / TILE, data / tile)
    shutil.copy(source / "label.tif", data / "label.tif")
    shutil.copy(source / "boundary.geojson", data / "boundary.geojson")
    config = {"run_countries": ["XT"], "countries": {"XT": {
        "name": "Testland", "source": "rasters", "tiles": tiles, "training_tiles": [TILE],
        "bands": "data/{tile}/{band}.tif", "label_raster": "data/label.tif", "boundary": "data/boundary.geojson",
        "tile_grid": {t: GRID for t in tiles}}}}
    path = workdir / "xt.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def break_tile(tile_dir: Path, how: str) -> None:
    if how == "corrupt":
        (tile_dir / "B07.tif").write_bytes(b"<html>503 Service Unavailable</html>")
    elif how == "crs":
        rewrite(tile_dir / "B05.tif", crs="EPSG:32633")
    elif how == "nodata":
        for band in BANDS:
            rewrite(tile_dir / f"{band}.tif", data=np.zeros_like)
    elif how == "resolution":
        rewrite(tile_dir / "B06.tif", transform=rasterio.transform.from_origin(499980, 5400000, 60, 60),
                data=lambda v: v[::3, ::3])


@pytest.mark.integration
def test_bad_tiles_fail_alone_in_their_check_and_are_listed(source, tmp_path):
    workdir = workflow_dir(tmp_path)
    tiles = [TILE, *BAD_TILES]
    config = country_config(workdir, source, tiles)
    for tile, how in BAD_TILES.items():
        break_tile(workdir / "data" / tile, how)
    targets = [f"results/XT/tiles/{t}/stack_10m.tif" for t in tiles]
    result = snakemake(workdir, "--configfile", str(config), "--keep-going", *targets)
    assert result.returncode != 0
    expected = {"32UNA": "band B07 of tile 32UNA data/32UNA/B07.tif cannot be read",
                "32UNB": "data/32UNB/B05.tif is in EPSG:32633, but the tile's reference band is in EPSG:32632",
                "32UNC": "tile 32UNC has no valid pixels in band B02",
                "32UND": "data/32UND/B06.tif has a 60 x 60 m pixel size; expected 20 m"}
    for tile, text in expected.items():
        # Each job's own log, not snakemake's stderr, where the lines of parallel jobs interleave.
        log = (workdir / "logs" / "check_inputs" / f"XT_{tile}.log").read_text()
        mine = [line for line in log.splitlines() if f"osmlulc: check_inputs (country=XT tile={tile}):" in line]
        assert len(mine) == 1 and text in mine[0], (tile, log)
    # The good tile went on to its stack; the bad ones stopped at their check and left nothing behind.
    results = workdir / "results" / "XT" / "tiles"
    assert (results / TILE / "stack_10m.tif").exists()
    for tile in BAD_TILES:
        assert not list((results / tile).rglob("*")) if (results / tile).exists() else True
    assert not [p for p in (workdir / "results").rglob("*") if ".tmp" in p.name or ".scratch" in p.name]
    assert not (workdir / "logs" / "resample" / "XT_32UNA.log").exists()  # nothing of a bad tile ran
    status = pd.read_csv(workdir / "results" / "XT" / "run_status.csv", keep_default_na=False).set_index("tile")
    assert status.loc[TILE, "status"] == "ok"
    for tile, text in expected.items():
        assert status.loc[tile, "status"] == "failed" and status.loc[tile, "rule"] == "check_inputs"
        assert text in status.loc[tile, "message"]
    # The report's front page lists the failed tiles of the last run. Snakemake builds a report only
    # of existing outputs, so after a failed run it is asked for the part that was built.
    report = snakemake(workdir, "--configfile", str(config), "--report", "report.html",
                       f"results/XT/tiles/{TILE}/stack_10m.tif")
    assert report.returncode == 0, report.stderr[-3000:]
    html = (workdir / "report.html").read_text(errors="replace")
    assert "Run status" in html and "1 tile(s) passed their input check, 4 failed" in html
    for tile in BAD_TILES:
        assert f"{tile}: rule" in html, tile


@pytest.mark.integration
def test_missing_files_stop_the_run_at_load_with_one_line_each(source, tmp_path):
    workdir = workflow_dir(tmp_path)
    config = country_config(workdir, source, [TILE])
    (workdir / "data" / TILE / "B8A.tif").unlink()
    (workdir / "data" / "boundary.geojson").unlink()
    result = snakemake(workdir, "--configfile", str(config), "-n")
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("osmlulc:")]
    assert lines == [
        "osmlulc: inputs (country=XT tile=32UNU): band B8A of tile 32UNU is missing: data/32UNU/B8A.tif does not "
        "exist; download it or fix countries.XT.bands",
        "osmlulc: inputs (country=XT): boundary data/boundary.geojson does not exist; provide it or fix "
        "countries.XT.boundary",
    ]
    assert not (workdir / "results").exists()


@pytest.mark.integration
@pytest.mark.parametrize("change, line", [
    ({"bands": {"stack_order": ["B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B13"]}},
     "osmlulc: config: bands.stack_order[9] = 'B13' is not one of B01, B02, B03, B04, B05, B06, B07, B08, B8A, "
     "B09, B10, B11, B12 (Sentinel-2 band name); fix it in the config file"),
    ({"countries": {"XD": {"tiles": ["32UNU", "32UPU", "32unv"]}}},
     "osmlulc: config: countries.XD.tiles[2] = '32unv' is malformed: it must match "
     "^[0-9]{2}[C-HJ-NP-X][A-HJ-NP-Z][A-HJ-NP-V]$ (Sentinel-2 MGRS tile id, e.g. 32UNU); fix it in the config file"),
    ({"product": {"land_use": [12, 40]}},
     "osmlulc: config: product.land_use code 40 is not in the class table [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]; "
     "use a code of config/classes.yaml"),
], ids=["unknown-band", "malformed-tile-id", "unknown-class-code"])
def test_config_schema_violation_is_one_line(tmp_path, change, line):
    workdir = workflow_dir(tmp_path)
    (workdir / "bad.yaml").write_text(yaml.safe_dump(change))
    result = snakemake(workdir, "--configfile", "bad.yaml", "-n")
    assert result.returncode == 1
    errors = [x for x in result.stderr.splitlines() if x.startswith("osmlulc:")]
    assert len(errors) == 1 and errors[0].startswith(line), errors
    assert "Traceback" not in result.stderr and "Failed validating" not in result.stderr
    assert not (workdir / "results").exists()


#: A `reference` with only `tile`: a real country (no demo) whose config forgot the country raster.
_REFERENCE_TILE_ONLY = {"run_countries": ["XT"], "countries": {"XT": {
    "name": "Testland", "source": "rasters", "tiles": [TILE], "training_tiles": [TILE],
    "bands": "data/{tile}/{band}.tif", "label_raster": "data/label.tif", "boundary": "data/boundary.geojson",
    "reference": {"tile": "data/{tile}_truth.tif"}}}}
_SECOND_DEMO = {"countries": {"XE": {"name": "Second demo", "source": "demo", "tiles": [TILE], "training_tiles": [TILE],
                                     "bands": "resources/demo/XE/{tile}_{band}.tif", "label_raster": "x.tif",
                                     "boundary": "b.geojson"}}}
#: A STAC country whose API is plain http, without stac.allow_insecure_http (issue 26).
_HTTP_STAC = {"run_countries": ["XS"], "countries": {"XS": {
    "name": "S", "source": "stac", "tiles": ["32UNU"], "training_tiles": ["32UNU"], "boundary": "b.geojson",
    "label_raster": "l.tif", "period": {"start": "2023-05-01", "end": "2023-08-31"},
    "stac": {"url": "http://stac.example/v1"}}}}


@pytest.mark.integration
@pytest.mark.parametrize("change, line", [
    (_REFERENCE_TILE_ONLY, "osmlulc: config: countries.XT.reference: 'country' is a required property"),
    ({"product": {"crs": "EPSG:4326"}}, "osmlulc: config: product.crs = 'EPSG:4326': 'EPSG:3035' was expected"),
    ({"product": {"resolution": 20}}, "osmlulc: config: product.resolution = 20: 10 was expected"),
    ({"product": {"sieve": {"halo_px": 0}}}, "osmlulc: config: product.sieve.halo_px = 0: 0 is less than the minimum"),
    ({"product": {"sieve": {"halo_px": 5}}}, "osmlulc: config: product.sieve.halo_px = 5 is below product.sieve.size"),
    ({"samples": {"validation_buffer_px": 3}},
     "osmlulc: config: samples.validation_buffer_px = 3 is below patch_size // 2 + 1 = 16"),
    (_SECOND_DEMO, "osmlulc: config: countries.XE.source = demo: only one demo country (XD) is generated"),
    ({"models": {"enabled": ["resnet", "svm", "ensemble"]}, "product": {"model": "ensemble"}},
     "osmlulc: config: models.ensemble.members names logreg, which is not in models.enabled"),
    ({"models": {"logreg": {"windows_px": [5, 14]}}},
     "osmlulc: config: models.logreg.windows_px = [5, 14]: window sizes must be odd and at least 3 px, got [14]"),
    ({"countries": {"XD": {"label_raster": "config/classes.yaml"}}},
     "osmlulc: config: countries.XD: demo output config/classes.yaml (label) is not under resources/demo/"),
    (_HTTP_STAC, "osmlulc: config: countries.XS: STAC API http://stac.example/v1 is not an https:// URL"),
], ids=["reference-tile-only", "product-crs", "product-resolution", "sieve-halo-0", "sieve-halo-below-size",
        "validation-buffer-below-patch", "second-demo-country", "ensemble-member-not-enabled", "even-window",
        "demo-output-outside-resources-demo", "stac-url-http"])
def test_inconsistent_config_is_one_line_naming_the_key(tmp_path, change, line):
    workdir = workflow_dir(tmp_path)
    (workdir / "bad.yaml").write_text(yaml.safe_dump(change))
    result = snakemake(workdir, "--configfile", "bad.yaml", "-n")
    assert result.returncode == 1, result.stderr[-3000:]
    errors = [x for x in result.stderr.splitlines() if x.startswith("osmlulc:")]
    assert len(errors) == 1 and errors[0].startswith(line), errors
    assert "Traceback" not in result.stderr and "Exception" not in result.stderr
    assert not (workdir / "results").exists()


def test_class_without_training_sample_is_listed_as_absent(tmp_path, table):
    from osmlulc.samples import SampleSettings, draw_samples, write_sample_summary

    from conftest import write_raster

    # Labels of two classes only (water 12 and arable land 5): every other class of the table has no sample.
    labels = np.zeros((60, 60), np.uint8)
    labels[:, :30], labels[:, 30:] = 12, 5
    stack = np.stack([np.full((60, 60), 100 + b, np.uint16) for b in range(3)])
    tiles = {TILE: (write_raster(tmp_path / "stack.tif", stack), write_raster(tmp_path / "label.tif", labels))}
    settings = SampleSettings(patch_size=3, per_class=40, validation_per_class=10, split_block_px=10,
                              validation_fraction=0.3, seed=1)
    paths = {"train": tmp_path / "train.npz", "validation": tmp_path / "validation.npz"}
    summary = draw_samples(tiles, table, settings, paths["train"], paths["validation"])
    rows = write_sample_summary(paths, table, tmp_path / "summary.csv")
    written = pd.read_csv(tmp_path / "summary.csv").set_index("code")
    assert list(written.index) == table.codes.tolist()  # the full class table, absent classes included
    assert written.loc[12, "train"] == summary["train"][12] == 40 and written.loc[5, "train"] == 40
    assert written.loc[5, "name"] == table.name(5)
    assert set(written.index[written["absent"]]) == set(table.codes.tolist()) - {5, 12}
    assert (written.loc[written["absent"], ["train", "validation"]] == 0).all().all()
    assert len(rows) == len(table)


def test_placeholder_inputs_for_a_dry_run_leave_existing_files_alone(tmp_path):
    country = {"bands": "data/{tile}/{tile}_{band}.jp2", "tiles": ["32UNU", "32UPU"], "label_raster": "data/label.tif"}
    (tmp_path / "data" / "32UNU").mkdir(parents=True)
    (tmp_path / "data" / "32UNU" / "32UNU_B02.jp2").write_bytes(b"real data")
    created = touch_placeholder_inputs(tmp_path, country, ["B02", "B05"])
    assert sorted(p.relative_to(tmp_path).as_posix() for p in created) == [
        "data/32UNU/32UNU_B05.jp2", "data/32UPU/32UPU_B02.jp2", "data/32UPU/32UPU_B05.jp2", "data/label.tif"]
    assert (tmp_path / "data" / "32UNU" / "32UNU_B02.jp2").read_bytes() == b"real data"
    assert all(p.stat().st_size == 0 for p in created)
