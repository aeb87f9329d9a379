"""Label rasters straight from an OpenStreetMap extract (``.osm.pbf``, e.g. a Geofabrik country file).

Two steps:

1. :func:`extract_landuse` reads the areas (``multipolygons`` layer of GDAL's OSM driver, through
   pyogrio) whose tags the OSM class table (``config/osm_classes.yaml``, :class:`OsmClassTable`)
   maps to a class: ``landuse=*``, ``natural=*``, ``leisure=*``, ``water=*``, ``waterway=riverbank``
   ... (keys without a column of their own are parsed from the driver's ``other_tags``).  Closed
   ways with those keys are read as areas.  Each area gets its class and priority; invalid
   geometries are repaired, broken ones (rings cut by the extract's edge) dropped.  The result is
   a GeoPackage with a spatial index (EPSG:4326), read once per country.
2. :func:`osmlulc.labels.rasterize_landuse` burns those areas onto a grid, window by window.

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
import shapely
import yaml

from osmlulc.classes import ClassTable
from osmlulc.io import InputError, atomic_output

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
