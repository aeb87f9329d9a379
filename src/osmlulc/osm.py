"""Label rasters straight from an OpenStreetMap extract (``.osm.pbf``, e.g. a Geofabrik country file).

Two steps:

1. :func:`extract_landuse` reads the areas (``multipolygons`` layer of GDAL's OSM driver, through
   pyogrio) whose tags the OSM class table (``config/osm_classes.yaml``, :class:`OsmClassTable`)
   maps to a class: ``landuse=*``, ``natural=*``, ``leisure=*``, ``water=*``, ``waterway=riverbank``
   ... (keys without a column of their own are parsed from the driver's ``other_tags``).  Closed
   ways with those keys are read as areas.  Each area gets its class and priority; invalid
   geometries are repaired, broken ones (rings cut by the extract's edge) dropped.  The result is
   a GeoPackage with a spatial index (EPSG:4326), read once per country.
2. :func:`rasterize_landuse` burns those areas onto a grid (a tile's stack, the country mosaic)
   window by window: for each window only the areas intersecting it are read (spatial index),
   reprojected to the grid CRS, clipped to the window and burnt in priority order, so memory is
   bounded by the window, not the country.  A pixel takes the class of the area with the highest
   priority covering its centre; on equal priority the smaller area wins (usually the more
   specific feature drawn inside a larger one), then the one first in the extract.  Pixels where the grid is
   nodata are nodata (0).

The sea is not an area in OSM (only its coastline is mapped), so it stays unlabelled here and is
left to the classifier.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.errors
import pyproj
import rasterio
import rasterio.features
import shapely
import yaml
from rasterio.transform import array_bounds

from osmlulc.classes import ClassTable
from osmlulc.io import BLOCK_SIZE, InputError, atomic_output, block_windows, open_raster, raster_profile, \
    write_class_colormap

log = logging.getLogger("osmlulc")

#: Layer of GDAL's OSM driver with the areas (closed ways and multipolygon relations).
AREA_LAYER = "multipolygons"
#: Layer name and CRS of the extracted land-use GeoPackage.
LANDUSE_LAYER = "landuse"
LANDUSE_CRS = "EPSG:4326"

_HSTORE_PAIR = re.compile(r'"((?:[^"\\]|\\.)*)"=>"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class OsmRule:
    key: str
    value: str | None   # None: any value
    code: int
    priority: int

    @property
    def tag(self) -> str:
        return f"{self.key}={self.value if self.value is not None else '*'}"


@dataclass(frozen=True)
class OsmClassTable:
    """OSM tag -> (class code, priority), from ``config/osm_classes.yaml``."""

    rules: tuple[OsmRule, ...]

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, classes: ClassTable) -> "OsmClassTable":
        with open(path) as f:
            return cls.from_dict(yaml.safe_load(f), classes, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, classes: ClassTable, source: str = "OSM class table") -> "OsmClassTable":
        codes = set(classes.codes.tolist())
        rules, seen = [], set()
        for entry in data.get("tags") or []:
            tag = str(entry["tag"])
            if "=" not in tag:
                raise ValueError(f"{source}: tag {tag!r} must be key=value or key=*")
            key, value = (part.strip() for part in tag.split("=", 1))
            code, priority = int(entry["class"]), int(entry["priority"])
            if code not in codes:
                raise ValueError(f"{source}: tag {tag} maps to class {code}, which is not in the class table "
                                 f"{sorted(codes)}")
            if (key, value) in seen:
                raise ValueError(f"{source}: tag {tag} is listed twice")
            seen.add((key, value))
            rules.append(OsmRule(key, None if value == "*" else value, code, priority))
        if not rules:
            raise ValueError(f"{source}: no tags")
        return cls(tuple(rules))

    @property
    def keys(self) -> list[str]:
        return sorted({r.key for r in self.rules})

    def classify(self, tags: dict[str, str]) -> OsmRule | None:
        """The matching rule with the highest priority (first listed on ties), or None."""
        best = None
        for rule in self.rules:
            value = tags.get(rule.key)
            if value is None or (rule.value is not None and value != rule.value):
                continue
            if best is None or rule.priority > best.priority:
                best = rule
        return best


def parse_hstore(text: str | None) -> dict[str, str]:
    """The ``other_tags`` column of GDAL's OSM driver (``"k"=>"v","k2"=>"v2"``) as a dict."""
    if not text:
        return {}
    return {k.replace('\\"', '"'): v.replace('\\"', '"') for k, v in _HSTORE_PAIR.findall(text)}


# --------------------------------------------------------------------------- PBF -> GeoPackage


def _osm_config_file(table: OsmClassTable, directory: str) -> str:
    """GDAL's osmconf.ini with the table's tags added to ``closed_ways_are_polygons``.

    By default the driver reads closed ways tagged e.g. only ``water=lake`` or
    ``waterway=riverbank`` as lines; every tag the table maps must be read as an area.
    """
    default = Path(pyogrio.get_gdal_data_path() or "") / "osmconf.ini"
    if not default.exists():
        raise InputError(f"GDAL's osmconf.ini is not at {default}; reinstall pyogrio")
    lines = default.read_text().splitlines()
    extra = [r.key if r.value is None else f"{r.key}={r.value}" for r in table.rules]
    for i, line in enumerate(lines):
        if line.startswith("closed_ways_are_polygons="):
            present = line.split("=", 1)[1].split(",")
            lines[i] = "closed_ways_are_polygons=" + ",".join(present + [e for e in extra if e not in present])
    path = os.path.join(directory, "osmconf.ini")
    Path(path).write_text("\n".join(lines) + "\n")
    return path


def _polygonal(geometry):
    """The areal part of a repaired geometry as a (Multi)Polygon, or None."""
    if geometry is None or geometry.is_empty:
        return None
    if not geometry.is_valid:
        geometry = shapely.make_valid(geometry)
    if geometry.geom_type in ("Polygon", "MultiPolygon"):
        return geometry
    parts = [p for p in shapely.get_parts(geometry) if p.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else None


def _sql_quote(text: str) -> str:
    return text.replace("'", "''")


def extract_landuse(pbf_path, dst_path, osm_table: OsmClassTable) -> dict[int, int]:
    """Mapped OSM areas of an extract -> GeoPackage (osm_id, osm_tag, class, priority; EPSG:4326).

    Returns the number of areas per class code.
    """
    pbf_path = Path(pbf_path)
    if not pbf_path.exists():
        raise InputError(f"OSM extract {pbf_path} does not exist; download it (e.g. from download.geofabrik.de)")
    with tempfile.TemporaryDirectory() as scratch:
        config_file = _osm_config_file(osm_table, scratch)
        previous = pyogrio.get_gdal_config_option("OGR_GEOMETRY_ACCEPT_UNCLOSED_RING")
        # Rings cut open at the extract's edge are dropped instead of being closed by a straight line.
        pyogrio.set_gdal_config_options({"OGR_GEOMETRY_ACCEPT_UNCLOSED_RING": "NO"})
        try:
            fields = list(pyogrio.read_info(pbf_path, layer=AREA_LAYER, CONFIG_FILE=config_file)["fields"])
            own_columns = [k for k in osm_table.keys if k in fields]
            in_other_tags = [k for k in osm_table.keys if k not in fields]
            conditions = [f'"{k}" IS NOT NULL' for k in own_columns]
            conditions += [f"other_tags LIKE '%\"{_sql_quote(k)}\"=>%'" for k in in_other_tags]
            columns = ["osm_id", "osm_way_id"] + own_columns + (["other_tags"] if "other_tags" in fields else [])
            meta, _, wkb, values = pyogrio.raw.read(pbf_path, layer=AREA_LAYER, columns=columns,
                                                    where=" OR ".join(conditions), CONFIG_FILE=config_file)
        except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as err:
            raise InputError(f"OSM extract {pbf_path} cannot be read as .osm.pbf ({err}); re-download it") from None
        finally:
            pyogrio.set_gdal_config_options({"OGR_GEOMETRY_ACCEPT_UNCLOSED_RING": previous})
    names = list(meta["fields"])
    column = {name: values[names.index(name)] for name in names}
    geometries = shapely.from_wkb(wkb, on_invalid="ignore")
    kept_wkb, osm_ids, tags, codes, priorities = [], [], [], [], []
    dropped = 0
    for i, geometry in enumerate(geometries):
        feature_tags = {k: column[k][i] for k in own_columns if column[k][i]}
        if "other_tags" in column:
            feature_tags = {**parse_hstore(column["other_tags"][i]), **feature_tags}
        rule = osm_table.classify(feature_tags)
        if rule is None:
            continue
        area = _polygonal(geometry)
        if area is None:
            dropped += 1
            continue
        way = column["osm_way_id"][i]
        osm_ids.append(f"way/{way}" if way else f"relation/{column['osm_id'][i]}")
        kept_wkb.append(shapely.to_wkb(area))
        tags.append(rule.tag)
        codes.append(rule.code)
        priorities.append(rule.priority)
    if not kept_wkb:
        raise InputError(f"OSM extract {pbf_path} has no area with a tag of the OSM class table "
                         f"({', '.join(osm_table.keys)}); check that it is an extract of the country")
    with atomic_output(dst_path) as tmp:
        pyogrio.raw.write(
            tmp, np.array(kept_wkb, dtype=object),
            [np.array(osm_ids, dtype=object), np.array(tags, dtype=object),
             np.array(codes, dtype=np.int32), np.array(priorities, dtype=np.int32)],
            ["osm_id", "osm_tag", "class", "priority"],
            layer=LANDUSE_LAYER, driver="GPKG", geometry_type="MultiPolygon", promote_to_multi=True,
            crs=LANDUSE_CRS)
    counts = dict(zip(*np.unique(codes, return_counts=True)))
    log.info("%s: %d mapped areas (%d with broken geometry dropped); per class %s", pbf_path, len(codes), dropped,
             {int(k): int(v) for k, v in counts.items()})
    return {int(k): int(v) for k, v in counts.items()}


# --------------------------------------------------------------------------- GeoPackage -> raster


def _window_areas(landuse_path, to_grid: pyproj.Transformer, to_lonlat: pyproj.Transformer, bounds):
    """Areas intersecting ``bounds`` (grid CRS), reprojected to the grid CRS, with class, priority, area, id."""
    lonlat_bounds = to_lonlat.transform_bounds(*bounds, densify_pts=21)
    meta, fids, wkb, values = pyogrio.raw.read(landuse_path, layer=LANDUSE_LAYER, columns=["class", "priority"],
                                               bbox=lonlat_bounds, return_fids=True)
    if len(wkb) == 0:
        return None
    geometries = shapely.from_wkb(wkb)

    def project(xy: np.ndarray) -> np.ndarray:
        x, y = to_grid.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    # Reprojected whole, so an area gets the same coordinates in every window it touches.
    geometries = shapely.transform(geometries, project)
    names = list(meta["fields"])
    return (geometries, values[names.index("class")].astype(np.int64),
            values[names.index("priority")].astype(np.int64), shapely.area(geometries), fids.astype(np.int64))


def burn_order(priority: np.ndarray, area: np.ndarray, fid: np.ndarray) -> np.ndarray:
    """Indices in burning order: later ones overwrite earlier ones.

    Low priority first; within a priority the larger area first (so the smaller one wins),
    then the later one in the extract first (so the first one wins).
    """
    return np.lexsort((-fid, -area, priority))


def rasterize_landuse(landuse_path, grid_path, dst_path, table: ClassTable, *,
                      block_size: int = BLOCK_SIZE * 2) -> None:
    """Burn the extracted OSM areas onto the grid of ``grid_path``, window by window (module docstring)."""
    try:
        info = pyogrio.read_info(landuse_path, layer=LANDUSE_LAYER)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as err:
        raise InputError(f"OSM land use {landuse_path} cannot be read ({err}); rerun rule osm_landuse") from None
    valid_code = table.index_of_code() >= 0
    with open_raster(grid_path, "grid raster") as grid:
        if grid.crs is None:
            raise InputError(f"grid raster {grid_path} has no CRS")
        to_grid = pyproj.Transformer.from_crs(info["crs"], grid.crs.to_wkt(), always_xy=True)
        to_lonlat = pyproj.Transformer.from_crs(grid.crs.to_wkt(), info["crs"], always_xy=True)
        extract_bounds = to_grid.transform_bounds(*info["total_bounds"], densify_pts=21)
        left, bottom, right, top = grid.bounds
        if not (extract_bounds[0] < right and left < extract_bounds[2]
                and extract_bounds[1] < top and bottom < extract_bounds[3]):
            raise InputError(f"OSM land use {landuse_path} does not overlap the grid of {grid_path}; "
                             "check that osm_pbf is the extract of this country")
        profile = raster_profile(crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                                 dtype="uint8", nodata=table.nodata)
        with atomic_output(dst_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            write_class_colormap(dst, table)
            for window in block_windows(grid.width, grid.height, block_size):
                shape_ = (window.height, window.width)
                valid = grid.read_masks(1, window=window) > 0
                labels = np.full(shape_, table.nodata, dtype=np.uint8)
                transform = grid.window_transform(window)
                bounds = array_bounds(window.height, window.width, transform)
                found = _window_areas(landuse_path, to_grid, to_lonlat, bounds) if valid.any() else None
                if found is not None:
                    geometries, codes, priority, area, fid = found
                    # Clip to the window plus a pixel, so huge areas cost only their part in the window.
                    margin = abs(transform.a)
                    clipped = shapely.clip_by_rect(geometries, bounds[0] - margin, bounds[1] - margin,
                                                   bounds[2] + margin, bounds[3] + margin)
                    order = [i for i in burn_order(priority, area, fid)
                             if not clipped[i].is_empty and valid_code[codes[i]]]
                    if order:
                        labels = rasterio.features.rasterize(
                            ((clipped[i], int(codes[i])) for i in order), out_shape=shape_, transform=transform,
                            fill=table.nodata, dtype="uint8")
                labels[~valid] = table.nodata
                dst.write(labels, 1, window=window)


def labels_onto_grid(source, grid_path, dst_path, table: ClassTable, *, coding: str,
                     block_size: int = BLOCK_SIZE * 2) -> None:
    """The label raster on a grid, from whichever label source the country has.

    ``coding="osm"``: ``source`` is the GeoPackage of :func:`extract_landuse`; ``"classes"`` or
    ``"corine"``: a prepared label raster (:func:`osmlulc.post.transfer_labels`).
    """
    if coding == "osm":
        rasterize_landuse(source, grid_path, dst_path, table, block_size=block_size)
    else:
        from osmlulc.post import transfer_labels

        transfer_labels(source, grid_path, dst_path, table, coding=coding, block_size=block_size)
