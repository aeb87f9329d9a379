"""Tests of the country-level postprocessing (footprints, mosaic, labels, sieve) on small synthetic rasters."""

from __future__ import annotations

import json
from pathlib import Path

import fiona
import fiona.transform
import numpy as np
import pyproj
import pytest
import rasterio
import rasterio.features
import shapely
import shapely.affinity
from affine import Affine
from shapely.geometry import Polygon, box, mapping

from osmlulc.footprints import clip_to_boundary, clip_to_footprint, own_footprints, tile_footprints_3035
from osmlulc.labels import transfer_labels
from osmlulc.mosaic import extract_land_use, merge_product, merge_tiles
from osmlulc.sieve import sieve
from osmlulc.classes import ClassTable
from osmlulc.io import InputError, raster_profile

TABLE = ClassTable.from_yaml(Path(__file__).resolve().parents[1] / "config" / "classes.yaml")
UTM = "EPSG:32632"
LAEA = "EPSG:3035"


def write_raster(path, data, *, crs, transform, nodata=0, colormap=True):
    """Write a (bands, rows, cols) or (rows, cols) array as a GeoTIFF."""
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    with rasterio.open(path, "w", driver="GTiff", crs=crs, transform=transform, width=data.shape[2],
                       height=data.shape[1], count=data.shape[0], dtype=data.dtype, nodata=nodata) as dst:
        dst.write(data)
        if colormap and data.dtype == np.uint8 and data.shape[0] == 1:
            dst.write_colormap(1, TABLE.colormap())
    return str(path)


def read(path):
    with rasterio.open(path) as src:
        return src.read(1), src.profile, src


def pixel_centres(transform, height, width):
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    x, y = transform @ (cols + 0.5, rows + 0.5)
    return np.asarray(x), np.asarray(y)


def blocky(height, width, block, seed):
    """Random class codes 1..12 constant over ``block`` x ``block`` squares."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, 13, size=(height // block + 1, width // block + 1), dtype=np.uint8)
    return np.kron(coarse, np.ones((block, block), dtype=np.uint8))[:height, :width]


# --------------------------------------------------------------------------- footprints


def test_tile_footprints_3035_densified_and_located():
    bounds = [499980.0, 5390220.0, 609780.0, 5500020.0]  # a real 109.8 km MGRS tile (32UNU-like)
    fp = tile_footprints_3035({"32UNU": {"crs": UTM, "bounds": bounds}})["32UNU"]
    assert isinstance(fp, Polygon) and fp.is_valid
    assert len(fp.exterior.coords) > 100  # edges were densified before reprojection
    to_laea = pyproj.Transformer.from_crs(UTM, LAEA, always_xy=True)
    corners = [to_laea.transform(x, y) for x, y in
               [(bounds[0], bounds[1]), (bounds[2], bounds[1]), (bounds[2], bounds[3]), (bounds[0], bounds[3])]]
    for corner in corners:
        assert fp.exterior.distance(shapely.Point(corner)) < 1e-6
    # An edge midpoint is on the densified outline too (the straight chord would miss it).
    mid = to_laea.transform((bounds[0] + bounds[2]) / 2, bounds[1])
    assert fp.exterior.distance(shapely.Point(mid)) < 0.01
    # Area changes only by the scale factors of the two projections (well under 1 %).
    assert fp.area == pytest.approx(109800.0**2, rel=0.01)


def test_own_footprints_split_overlap_at_midline():
    fps = {"B": box(6, 0, 16, 10), "A": box(0, 0, 10, 10)}
    own = own_footprints(fps)
    assert own["A"].symmetric_difference(box(0, 0, 8, 10)).area < 1e-9
    assert own["B"].symmetric_difference(box(8, 0, 16, 10)).area < 1e-9
    assert own["A"].intersection(own["B"]).area < 1e-9
    union = shapely.union_all(list(fps.values()))
    assert shapely.union_all(list(own.values())).symmetric_difference(union).area < 1e-9


def test_own_footprints_partition_of_many_tiles_is_exact_and_deterministic():
    # A 3 x 2 grid of overlapping, slightly rotated tiles (like reprojected MGRS tiles) plus a duplicate.
    fps = {}
    for i in range(3):
        for j in range(2):
            square = box(i * 90.0, j * 90.0, i * 90.0 + 110.0, j * 90.0 + 110.0)
            fps[f"T{i}{j}"] = shapely.affinity.rotate(square, 2.0 + i - j, origin="centroid")
    fps["T00dup"] = fps["T00"]
    own = own_footprints(fps)
    assert own == own_footprints(dict(reversed(list(fps.items()))))
    ids = sorted(own)
    for n, a in enumerate(ids):
        for b in ids[n + 1:]:
            assert own[a].intersection(own[b]).area < 1e-6, (a, b)
    union = shapely.union_all(list(fps.values()))
    assert shapely.union_all(list(own.values())).symmetric_difference(union).area < 1e-6
    assert own["T00dup"].area < 1e-9  # same centre: the smaller id keeps everything
    # Every point goes to the nearest centre among the tiles covering it.
    rng = np.random.default_rng(0)
    centres = {t: np.array(fps[t].centroid.coords[0]) for t in ids}
    for x, y in rng.uniform(-10, 300, size=(300, 2)):
        p = shapely.Point(x, y)
        covering = [t for t in ids if fps[t].contains(p)]
        if not covering:
            assert not any(own[t].contains(p) for t in ids)
            continue
        distances = sorted((np.hypot(*(centres[t] - (x, y))), t) for t in covering)
        if len(distances) > 1 and distances[1][0] - distances[0][0] < 1e-6:
            continue  # on a bisector
        assert own[distances[0][1]].contains(p)


# --------------------------------------------------------------------------- tile -> country


@pytest.mark.parametrize("nodata", [0, 255])  # the class table's nodata, not a fixed 0
def test_clip_to_footprint_zeroes_exactly_the_pixels_outside(tmp_path, nodata):
    table = ClassTable(TABLE.classes, nodata, TABLE.water)
    transform = Affine(10, 0, 500000, 0, -10, 5400000)
    data = blocky(48, 40, 6, seed=1)
    src = write_raster(tmp_path / "tile.tif", data, crs=UTM, transform=transform, nodata=nodata)
    triangle_utm = Polygon([(500033.3, 5399987.1), (500371.7, 5399702.9), (500061.9, 5399541.3)])
    to_laea = pyproj.Transformer.from_crs(UTM, LAEA, always_xy=True)
    triangle_3035 = shapely.transform(triangle_utm, lambda xy: np.column_stack(to_laea.transform(xy[:, 0], xy[:, 1])))
    dst = tmp_path / "clipped.tif"
    clip_to_footprint(src, triangle_3035, dst, table, block_size=16)
    out, profile, _ = read(dst)
    x, y = pixel_centres(transform, 48, 40)
    inside = shapely.contains_xy(triangle_utm, x, y)
    assert 100 < inside.sum() < inside.size - 100
    np.testing.assert_array_equal(out, np.where(inside, data, nodata))
    assert profile["crs"] == UTM and profile["transform"] == transform and profile["nodata"] == nodata
    with rasterio.open(dst) as ds:
        assert ds.colormap(1)[12][:3] == (0, 204, 242)


def test_merge_tiles_into_3035(tmp_path):
    # Two 600 m UTM tiles overlapping by 200 m; the second is nodata in the overlap (as after clipping).
    block = 6
    a = blocky(60, 60, block, seed=2)
    b = blocky(60, 60, block, seed=3)
    b[:, :20] = 0
    ta = Affine(10, 0, 500000, 0, -10, 5400000)
    tb = Affine(10, 0, 500400, 0, -10, 5400000)
    paths = [write_raster(tmp_path / "a.tif", a, crs=UTM, transform=ta),
             write_raster(tmp_path / "b.tif", b, crs=UTM, transform=tb)]
    dst = tmp_path / "mosaic.tif"
    merge_tiles(paths, dst, TABLE, crs=LAEA, resolution=10.0, chunk_size=32)  # several merge chunks
    with rasterio.open(dst) as ds:
        out = ds.read(1)
        assert ds.crs.to_epsg() == 3035 and ds.res == (10.0, 10.0)
        assert ds.transform.c % 10 == 0 and ds.transform.f % 10 == 0
        assert ds.nodata == 0 and ds.dtypes[0] == "uint8"
        assert ds.colormap(1)[8][:3] == (0, 166, 0) and ds.colormap(1)[12][:3] == (0, 204, 242)
        assert ds.profile["tiled"] and ds.compression.value == "DEFLATE"
        out_transform = ds.transform
    # Map every output pixel centre back into the tiles and compare where the answer is unambiguous
    # (more than one pixel away from a block edge of the blocky source pattern).
    x, y = pixel_centres(out_transform, *out.shape)
    to_utm = pyproj.Transformer.from_crs(LAEA, UTM, always_xy=True)
    ux, uy = to_utm.transform(x, y)
    checked = 0
    for data, transform in ((a, ta), (b, tb)):
        col, row = ~transform @ (ux, uy)
        in_tile = (col >= 0) & (col < 60) & (row >= 0) & (row < 60)
        rc, cc = np.floor(row).astype(int), np.floor(col).astype(int)
        interior = in_tile & ((row % block) > 1) & ((row % block) < block - 1) & \
            ((col % block) > 1) & ((col % block) < block - 1)
        expected = data[rc[interior], cc[interior]]
        valid = expected > 0
        np.testing.assert_array_equal(out[interior][valid], expected[valid])
        checked += valid.sum()
    assert checked > 1000
    # Outside both tiles there is only nodata.
    in_any = np.zeros(out.shape, bool)
    for transform in (ta, tb):
        col, row = ~transform @ (ux, uy)
        in_any |= (col >= -1) & (col < 61) & (row >= -1) & (row < 61)
    assert (out[~in_any] == 0).all() and (~in_any).sum() > 0
    assert set(np.unique(out[in_any])) <= set(range(13))


def test_merge_tiles_is_the_same_for_any_chunk_size_and_covers_given_bounds(tmp_path):
    """Our own chunk loop (no rasterio.merge memory-limit arithmetic); `bounds` widens the mosaic
    (a missing tile of a country is nodata), the tiles' pixels stay where they were."""
    a = blocky(60, 60, 6, seed=2)
    path = write_raster(tmp_path / "a.tif", a, crs=UTM, transform=Affine(10, 0, 500000, 0, -10, 5400000))
    mosaics = {}
    for chunk in (16, 48, 4096):
        merge_tiles([path], tmp_path / f"m{chunk}.tif", TABLE, crs=LAEA, resolution=10.0, chunk_size=chunk)
        with rasterio.open(tmp_path / f"m{chunk}.tif") as ds:
            mosaics[chunk] = (ds.read(1), ds.transform)
    for chunk in (48, 4096):
        np.testing.assert_array_equal(mosaics[chunk][0], mosaics[16][0])
        assert mosaics[chunk][1] == mosaics[16][1]
    out, transform = mosaics[16]
    wide = (transform.c - 1000, transform.f - 10 * out.shape[0] - 500, transform.c + 10 * out.shape[1], transform.f)
    merge_tiles([path], tmp_path / "wide.tif", TABLE, crs=LAEA, resolution=10.0, chunk_size=32, bounds=wide)
    with rasterio.open(tmp_path / "wide.tif") as ds:
        big = ds.read(1)
        assert ds.transform.c == transform.c - 1000 and ds.transform.f == transform.f
        assert big.shape == (out.shape[0] + 50, out.shape[1] + 100)
    np.testing.assert_array_equal(big[:out.shape[0], 100:], out)
    assert (big[out.shape[0]:] == 0).all() and (big[:, :100] == 0).all()


def write_boundary_geojson(path, polygon_3035):
    """A GeoJSON (EPSG:4326) of a polygon defined in EPSG:3035."""
    geom = fiona.transform.transform_geom(LAEA, "EPSG:4326", mapping(polygon_3035))
    schema = {"geometry": "Polygon", "properties": {"name": "str"}}
    with fiona.open(path, "w", driver="GeoJSON", crs="EPSG:4326", schema=schema) as dst:
        dst.write({"geometry": geom, "properties": {"name": "Demoland"}})
    return str(path)


def test_clip_to_boundary_crops_and_masks(tmp_path):
    transform = Affine(10, 0, 4200000, 0, -10, 2900000)
    data = blocky(50, 60, 5, seed=4)
    src = write_raster(tmp_path / "mosaic.tif", data, crs=LAEA, transform=transform)
    diamond = Polygon([(4200203.3, 2899876.1), (4200433.7, 2899701.2), (4200207.9, 2899552.4),
                       (4200066.6, 2899703.3)])
    dst = tmp_path / "clipped.tif"
    clip_to_boundary(src, write_boundary_geojson(tmp_path / "b.geojson", diamond), dst, TABLE, block_size=16)
    with rasterio.open(dst) as ds:
        out, out_transform = ds.read(1), ds.transform
        assert ds.colormap(1)[5][:3] == (255, 255, 168)
    # Cropped to the boundary's bounding box on the mosaic grid: cols 6..43, rows 12..44.
    assert out_transform == transform @ Affine.translation(6, 12)
    assert out.shape == (45 - 12, 44 - 6)
    x, y = pixel_centres(out_transform, *out.shape)
    inside = shapely.contains_xy(diamond, x, y)
    np.testing.assert_array_equal(out, np.where(inside, data[12:45, 6:44], 0))

    # A GeoPackage in the raster CRS works as well.
    gpkg = tmp_path / "b.gpkg"
    with fiona.open(gpkg, "w", driver="GPKG", crs=LAEA, schema={"geometry": "Polygon", "properties": {}}) as out_layer:
        out_layer.write({"geometry": mapping(diamond), "properties": {}})
    clip_to_boundary(src, gpkg, tmp_path / "clipped2.tif", TABLE)
    np.testing.assert_array_equal(read(tmp_path / "clipped2.tif")[0], out)


def test_clip_to_boundary_rejects_bad_boundaries(tmp_path):
    transform = Affine(10, 0, 4200000, 0, -10, 2900000)
    src = write_raster(tmp_path / "mosaic.tif", blocky(20, 20, 5, seed=5), crs=LAEA, transform=transform)
    far = write_boundary_geojson(tmp_path / "far.geojson", box(4300000, 2800000, 4300500, 2800500))
    with pytest.raises(InputError, match="does not overlap"):
        clip_to_boundary(src, far, tmp_path / "x.tif", TABLE)
    empty = tmp_path / "empty.geojson"
    empty.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": []}}]}))
    with pytest.raises(InputError, match="no polygon"):
        clip_to_boundary(src, empty, tmp_path / "x.tif", TABLE)
    no_features = tmp_path / "none.geojson"
    no_features.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    with pytest.raises(InputError, match="no polygon"):
        clip_to_boundary(src, no_features, tmp_path / "x.tif", TABLE)
    garbage = tmp_path / "garbage.geojson"
    garbage.write_text("not a vector file")
    with pytest.raises(InputError, match="garbage.geojson"):
        clip_to_boundary(src, garbage, tmp_path / "x.tif", TABLE)
    assert not (tmp_path / "x.tif").exists()


# --------------------------------------------------------------------------- labels and product


def test_transfer_labels_corine_onto_utm_tile_grid(tmp_path):
    # Label raster in EPSG:3035 (CORINE codes): west half 512 (water courses), east half 311 (forest),
    # a strip of unmapped code 999; the tile grid is a UTM 10-band stack with a nodata corner.
    grid_transform = Affine(10, 0, 500000, 0, -10, 5400000)
    stack = np.full((10, 40, 40), 1000, dtype=np.uint16)
    stack[:, :10, :10] = 0
    grid = write_raster(tmp_path / "stack.tif", stack, crs=UTM, transform=grid_transform)
    to_laea = pyproj.Transformer.from_crs(UTM, LAEA, always_xy=True)
    l, b, r, t = shapely.transform(box(499800, 5399400, 500600, 5400200),
                                   lambda xy: np.column_stack(to_laea.transform(xy[:, 0], xy[:, 1]))).bounds
    label_transform = Affine(10, 0, np.floor(l / 10) * 10, 0, -10, np.ceil(t / 10) * 10)
    lw, lh = int(np.ceil((r - l) / 10)) + 2, int(np.ceil((t - b) / 10)) + 2
    lx, _ = pixel_centres(label_transform, lh, lw)
    split = np.median(lx)
    corine = np.where(lx < split, 512, 311).astype(np.uint16)
    corine[:5] = 999
    label = write_raster(tmp_path / "clc.tif", corine, crs=LAEA, transform=label_transform, nodata=None)
    dst = tmp_path / "labels.tif"
    transfer_labels(label, grid, dst, TABLE, coding="corine", block_size=16)
    out, profile, _ = read(dst)
    assert profile["crs"] == UTM and profile["transform"] == grid_transform and out.shape == (40, 40)
    gx, gy = pixel_centres(grid_transform, 40, 40)
    cx, cy = to_laea.transform(gx, gy)
    lcol, lrow = ~label_transform @ (cx, cy)
    expected = np.where(cx < split, 12, 8)
    expected[lrow < 5] = 0  # 999 is no CORINE class of the table
    expected[:10, :10] = 0  # grid nodata
    clear = (np.abs(cx - split) > 15) & (np.abs(lrow - 5) > 1.5)
    assert clear.sum() > 1200 and {0, 8, 12} <= set(np.unique(out))
    np.testing.assert_array_equal(out[clear], expected[clear])


def test_transfer_labels_classes_coding_and_errors(tmp_path):
    transform = Affine(10, 0, 4200000, 0, -10, 2900000)
    labels = np.array([[1, 12, 13, 200], [0, 5, 255, 7]], dtype=np.uint8).repeat(5, 0).repeat(5, 1)
    label = write_raster(tmp_path / "labels.tif", labels, crs=LAEA, transform=transform, nodata=255)
    grid_data = np.ones((10, 20), dtype=np.uint8)
    grid_data[:, :5] = 0
    grid = write_raster(tmp_path / "grid.tif", grid_data, crs=LAEA, transform=transform)
    dst = tmp_path / "out.tif"
    transfer_labels(label, grid, dst, TABLE)
    expected = np.array([[0, 12, 0, 0], [0, 5, 0, 7]], dtype=np.uint8).repeat(5, 0).repeat(5, 1)
    np.testing.assert_array_equal(read(dst)[0], expected)
    far = write_raster(tmp_path / "far.tif", labels, crs=LAEA, transform=Affine(10, 0, 4400000, 0, -10, 2900000))
    with pytest.raises(InputError, match="does not overlap"):
        transfer_labels(far, grid, tmp_path / "x.tif", TABLE)
    with pytest.raises(ValueError, match="coding"):
        transfer_labels(label, grid, tmp_path / "x.tif", TABLE, coding="osm")
    assert not (tmp_path / "x.tif").exists()


def test_merge_product_prefers_labels_and_keeps_nodata(tmp_path):
    rng = np.random.default_rng(6)
    transform = Affine(10, 0, 4200000, 0, -10, 2900000)
    classified = rng.integers(1, 13, size=(37, 41), dtype=np.uint8)
    classified[rng.random(classified.shape) < 0.1] = 0
    labels = rng.integers(1, 13, size=classified.shape, dtype=np.uint8)
    labels[rng.random(labels.shape) < 0.5] = 0
    cls_path = write_raster(tmp_path / "cls.tif", classified, crs=LAEA, transform=transform)
    lab_path = write_raster(tmp_path / "lab.tif", labels, crs=LAEA, transform=transform)
    dst = tmp_path / "product.tif"
    merge_product(cls_path, lab_path, dst, TABLE, block_size=16)
    out = read(dst)[0]
    labelled = (labels > 0) & (classified > 0)
    np.testing.assert_array_equal(out[labelled], labels[labelled])
    np.testing.assert_array_equal(out[~labelled], classified[~labelled])
    assert (out[classified == 0] == 0).all()
    shifted = write_raster(tmp_path / "shifted.tif", labels, crs=LAEA, transform=transform @ Affine.translation(1, 0))
    with pytest.raises(InputError, match="not on the grid"):
        merge_product(cls_path, shifted, tmp_path / "x.tif", TABLE)


def test_extract_land_use_binary_layer(tmp_path):
    transform = Affine(10, 0, 4200000, 0, -10, 2900000)
    data = np.array([[12, 5, 0], [12, 12, 8]], dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    src = write_raster(tmp_path / "cls.tif", data, crs=LAEA, transform=transform)
    dst = tmp_path / "water.tif"
    extract_land_use(src, 12, dst, TABLE, block_size=16)
    with rasterio.open(dst) as ds:
        out = ds.read(1)
        assert ds.nodata == 255 and ds.dtypes[0] == "uint8"
        cmap = ds.colormap(1)
        assert cmap[1] == (0, 204, 242, 255) and cmap[0] == (211, 211, 211, 255)
    expected = np.array([[1, 0, 255], [1, 1, 0]], dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(InputError, match="not a class code"):
        extract_land_use(src, 13, tmp_path / "x.tif", TABLE)


# --------------------------------------------------------------------------- sieve


def test_sieve_removes_small_islands_only(tmp_path):
    transform = Affine(10, 0, 4200000, 0, -10, 2900000)
    data = np.full((40, 40), 5, dtype=np.uint8)
    data[5, 5:8] = 12                 # 3-pixel island: removed with size=5
    data[20:22, 20:25] = 12           # 10-pixel island: kept
    data[30:33, 2:6] = 0              # nodata: untouched
    data[33, 3] = 8                   # 1-pixel island next to nodata: merged into the background
    data[0, 39] = 0                   # nodata pixel surrounded by class 5: not filled
    src = tmp_path / "cls.tif"
    with rasterio.open(src, "w", **raster_profile(crs=LAEA, transform=transform, width=40, height=40,
                                                       nodata=0)) as dst:
        dst.write(data, 1)
        dst.write_colormap(1, TABLE.colormap())
        dst.update_tags(1, CLASS_12="water bodies")
        dst.update_tags(MODEL="rf")
    out_path = tmp_path / "sieved.tif"
    sieve(src, out_path, size=5, connectivity=8, halo=5, block_size=16)
    with rasterio.open(out_path) as ds:
        out = ds.read(1)
        assert ds.nodata == 0 and ds.colormap(1)[12][:3] == (0, 204, 242)
        assert ds.tags(1)["CLASS_12"] == "water bodies" and ds.tags()["MODEL"] == "rf"
    expected = data.copy()
    expected[5, 5:8] = 5
    expected[33, 3] = 5
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("connectivity", [4, 8])
def test_windowed_sieve_equals_whole_array_sieve(tmp_path, connectivity):
    # Large regions (20 x 20 squares of random classes), sprinkled with islands of 1..8 pixels
    # that each sit inside one region; a nodata rectangle; windows (16 px) smaller than the raster.
    rng = np.random.default_rng(8 + connectivity)
    size = 5
    data = blocky(90, 75, 20, seed=connectivity)
    for row in range(2, 86, 6):
        for col in range(2, 71, 6):
            background = data[row - 1:row + 4, col - 1:col + 4]
            if (background != background[0, 0]).any():
                continue  # keep islands away from region borders: one neighbour only
            shape = rng.random((3, 3)) < rng.uniform(0.1, 0.9)
            shape[1, 1] = True
            island_class = 1 + (int(background[0, 0]) % 12)
            data[row:row + 3, col:col + 3][shape] = island_class
    data[40:47, 10:19] = 0
    transform = Affine(10, 0, 4200000, 0, -10, 2900000)
    src = write_raster(tmp_path / "cls.tif", data, crs=LAEA, transform=transform)
    out_path = tmp_path / "sieved.tif"
    sieve(src, out_path, size=size, connectivity=connectivity, halo=size, block_size=16)
    whole = rasterio.features.sieve(data, size, mask=data > 0, connectivity=connectivity)
    out = read(out_path)[0]
    assert (whole != data).sum() > 20  # the sieve did remove islands
    np.testing.assert_array_equal(out, whole)
