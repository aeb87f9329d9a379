"""Tests of the embedded demo country generator (osmlulc.demo)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyproj
import pytest
import rasterio
import shapely
from shapely.geometry import shape

from osmlulc.classes import ClassTable
from osmlulc.demo.country import generate_demo_country
from osmlulc.demo.spec import demo_tile_grid

CLASSES_YAML = Path(__file__).resolve().parents[1] / "config" / "classes.yaml"
BANDS = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B05": 20, "B06": 20, "B07": 20, "B8A": 20, "B11": 20, "B12": 20}
SIZE, SPACING, NODATA_PX = 256, 233, 40
SPEC = {
    "tile_size_px": SIZE,
    "tile_spacing_px": SPACING,
    "utm_epsg": 32632,
    "origin": [499980, 5400000],
    "tiles": {"32UNU": [0, 0], "32UPU": [1, 0], "32UNV": [0, 1]},
    "bands": BANDS,
    "osm_coverage": 0.6,
    "osm_wrong_fraction": 0.03,
    "nodata_corner": {"tile": "32UPU", "size_px": NODATA_PX},
}
WATER = 12


def _generate(out: Path, seed: int = 7, spec: dict = SPEC) -> dict:
    paths = {
        "band_paths": {t: {b: str(out / t / f"{b}.tif") for b in spec["bands"]} for t in spec["tiles"]},
        "truth_tile_paths": {t: str(out / t / "truth.tif") for t in spec["tiles"]},
        "truth_country_path": str(out / "truth_3035.tif"),
        "label_path": str(out / "osm_label.tif"),
        "boundary_path": str(out / "boundary.geojson"),
    }
    generate_demo_country(spec, ClassTable.from_yaml(CLASSES_YAML), seed=seed, **paths)
    return paths


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return _generate(tmp_path_factory.mktemp("demo"))


def _read(path):
    with rasterio.open(path) as src:
        return src.read(1)


def _tile_stack(paths: dict, tile: str) -> np.ndarray:
    """(pixels, bands) with the 20 m bands repeated onto the 10 m grid."""
    layers = []
    for band, res in BANDS.items():
        a = _read(paths["band_paths"][tile][band])
        if res == 20:
            a = a.repeat(2, axis=0).repeat(2, axis=1)[:SIZE, :SIZE]
        layers.append(a)
    return np.stack(layers, axis=-1).reshape(-1, len(BANDS)).astype(np.float32)


def test_tile_grid_follows_the_spec():
    grid = demo_tile_grid(SPEC)
    assert set(grid) == set(SPEC["tiles"])
    assert grid["32UNU"] == {"crs": "EPSG:32632", "bounds": [499980.0, 5400000.0 - 2560, 499980.0 + 2560, 5400000.0]}
    # 32UPU is one step east, 32UNV one step north
    assert grid["32UPU"]["bounds"] == [499980.0 + 2330, 5400000.0 - 2560, 499980.0 + 2330 + 2560, 5400000.0]
    assert grid["32UNV"]["bounds"] == [499980.0, 5400000.0 + 2330 - 2560, 499980.0 + 2560, 5400000.0 + 2330]


def test_bad_spec_is_rejected():
    with pytest.raises(ValueError, match="nodata_corner.tile"):
        demo_tile_grid({**SPEC, "nodata_corner": {"tile": "33XXX", "size_px": 10}})
    with pytest.raises(ValueError, match="unknown bands"):
        demo_tile_grid({**SPEC, "bands": {"B99": 10}})


def test_band_files_have_the_tile_grid(demo):
    grid = demo_tile_grid(SPEC)
    for tile, bands in demo["band_paths"].items():
        left, bottom, right, top = grid[tile]["bounds"]
        for band, path in bands.items():
            res = BANDS[band]
            with rasterio.open(path) as src:
                assert src.crs == rasterio.crs.CRS.from_epsg(32632)
                assert src.count == 1 and src.dtypes[0] == "uint16" and src.nodata == 0
                assert src.res == (res, res)
                # 20 m bands: same upper-left corner, ceil(size / 2) pixels
                assert (src.transform.c, src.transform.f) == (left, top)
                assert src.width == src.height == -(-SIZE // (res // 10))
                assert src.descriptions[0] == band
                data = src.read(1)
            valid = data[data > 0]
            assert valid.min() >= 1 and valid.max() < 10000


def test_truth_tiles_match_bands_and_nodata_corner(demo):
    table = ClassTable.from_yaml(CLASSES_YAML)
    for tile, path in demo["truth_tile_paths"].items():
        with rasterio.open(path) as src:
            assert src.dtypes[0] == "uint8" and src.nodata == 0 and (src.width, src.height) == (SIZE, SIZE)
            assert src.colormap(1)[5] == (*table.classes[4].colour, 255)
            truth = src.read(1)
        b02 = _read(demo["band_paths"][tile]["B02"])
        np.testing.assert_array_equal(truth == 0, b02 == 0)
        rows, cols = np.indices(truth.shape)
        corner = rows + (SIZE - 1 - cols) < NODATA_PX  # upper-right triangle
        if tile == "32UPU":
            assert corner.sum() == NODATA_PX * (NODATA_PX + 1) // 2
            np.testing.assert_array_equal(truth == 0, corner)
            for band in BANDS:
                a = _read(demo["band_paths"][tile][band])
                assert a[0, -1] == 0 and a[-1, 0] > 0
        else:
            assert (truth > 0).all()
    classes = set().union(*(np.unique(_read(p)).tolist() for p in demo["truth_tile_paths"].values()))
    assert {1, 2, 4, 5, 7, 8, 9, 11, 12} <= classes


def test_tiles_agree_in_their_overlap(demo):
    # 32UNU's eastern columns are 32UPU's western ones; its northern rows are 32UNV's southern ones
    overlap = SIZE - SPACING
    pairs = [("32UNU", np.s_[:, SPACING:], "32UPU", np.s_[:, :overlap]),
             ("32UNU", np.s_[:overlap, :], "32UNV", np.s_[SPACING:, :])]
    for a, sa, b, sb in pairs:
        ta, tb = _read(demo["truth_tile_paths"][a])[sa], _read(demo["truth_tile_paths"][b])[sb]
        both = (ta > 0) & (tb > 0)
        assert both.sum() > 0.9 * ta.size
        np.testing.assert_array_equal(ta[both], tb[both])
        for band, res in BANDS.items():
            if res == 10:
                va = _read(demo["band_paths"][a][band])[sa]
                vb = _read(demo["band_paths"][b][band])[sb]
                np.testing.assert_array_equal(va[both], vb[both])


def test_country_truth_and_osm_label(demo):
    with rasterio.open(demo["truth_country_path"]) as t, rasterio.open(demo["label_path"]) as lab:
        assert t.crs == lab.crs == rasterio.crs.CRS.from_epsg(3035)
        assert t.transform == lab.transform and t.shape == lab.shape and t.res == (10, 10)
        assert t.transform.c % 10 == 0 and t.transform.f % 10 == 0
        assert t.dtypes[0] == lab.dtypes[0] == "uint8" and t.nodata == lab.nodata == 0
        assert lab.colormap(1)[WATER][:3] == (0, 204, 242)
        truth, label = t.read(1), lab.read(1)
    # valid truth covers the tile union minus the nodata corner (10 m pixels ~ 100 m2 each)
    union = shapely.union_all([shapely.box(*g["bounds"]) for g in demo_tile_grid(SPEC).values()])
    expected_px = union.area / 100 - NODATA_PX ** 2 / 2
    assert abs((truth > 0).sum() / expected_px - 1) < 0.02
    water_fraction = (truth == WATER).sum() / (truth > 0).sum()
    assert 0.02 < water_fraction < 0.1
    land = (truth > 0) & (truth != WATER)
    coverage = (label[land] > 0).mean()
    assert 0.4 <= coverage <= 0.8
    # water is almost always mapped
    assert (label[truth == WATER] > 0).mean() > 0.8
    both = (truth > 0) & (label > 0)
    agreement = (truth[both] == label[both]).mean()
    assert 0.9 <= agreement < 1.0


def test_boundary_cuts_through_the_tiles(demo):
    collection = json.loads(Path(demo["boundary_path"]).read_text())
    (feature,) = collection["features"]
    assert feature["properties"]["name"]
    outline = shape(feature["geometry"])
    assert outline.geom_type in ("Polygon", "MultiPolygon") and outline.is_valid
    # lon/lat near the demo origin (about 9 E, 48.7 N)
    minx, miny, maxx, maxy = outline.bounds
    assert 8 < minx < maxx < 10 and 48 < miny < maxy < 50
    to_utm = pyproj.Transformer.from_crs(4326, 32632, always_xy=True)
    utm = shapely.transform(outline, lambda x, y: to_utm.transform(x, y), interleaved=False)
    tiles = [shapely.box(*g["bounds"]) for g in demo_tile_grid(SPEC).values()]
    union = shapely.union_all(tiles)
    assert 0.55 < utm.intersection(union).area / union.area < 0.9
    assert all(utm.intersects(t) for t in tiles)
    assert not all(utm.contains(t) for t in tiles)


def test_same_seed_same_bytes_other_seed_differs(demo, tmp_path):
    again = _generate(tmp_path / "again")
    files = [demo["truth_country_path"], demo["label_path"], demo["boundary_path"]]
    files += list(demo["truth_tile_paths"].values())
    files += [p for bands in demo["band_paths"].values() for p in bands.values()]
    twin = [again["truth_country_path"], again["label_path"], again["boundary_path"]]
    twin += list(again["truth_tile_paths"].values())
    twin += [p for bands in again["band_paths"].values() for p in bands.values()]
    for a, b in zip(files, twin):
        assert Path(a).read_bytes() == Path(b).read_bytes(), a
    other = _generate(tmp_path / "other", seed=8, spec={**SPEC, "tiles": {"32UNU": [0, 0]},
                                                        "nodata_corner": {"tile": "32UNU", "size_px": 10}})
    assert not np.array_equal(_read(other["truth_tile_paths"]["32UNU"]), _read(demo["truth_tile_paths"]["32UNU"]))


def test_classes_are_separable_but_not_trivially(demo):
    from sklearn.ensemble import RandomForestClassifier

    x_train, y_train = _tile_stack(demo, "32UNU"), _read(demo["truth_tile_paths"]["32UNU"]).ravel()
    x_test, y_test = _tile_stack(demo, "32UNV"), _read(demo["truth_tile_paths"]["32UNV"]).ravel()
    pick = np.random.default_rng(0).choice(np.flatnonzero(y_train > 0), 2000, replace=False)
    forest = RandomForestClassifier(n_estimators=30, random_state=0, n_jobs=1).fit(x_train[pick], y_train[pick])
    valid = y_test > 0
    predicted = forest.predict(x_test[valid])
    accuracy = (predicted == y_test[valid]).mean()
    assert 0.7 < accuracy < 0.99
    water = y_test[valid] == WATER
    assert (predicted[water] == WATER).mean() > 0.9
