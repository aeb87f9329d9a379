"""Sentinel-2 tiles (MGRS 100 km squares): tile geometry from the tile id, and the tiles covering a country.

A Sentinel-2 L1C/L2A tile is named after an MGRS grid square, e.g. ``32UNU``: UTM zone ``32``,
latitude band ``U``, 100 km column letter ``N`` and row letter ``U``.  The letters follow the
MGRS "AA" lettering (the one used with WGS84):

* column letters repeat every three zones: zones 1, 4, ... use ``A``-``H``, zones 2, 5, ...
  ``J``-``R``, zones 3, 6, ... ``S``-``Z`` (``I`` and ``O`` are never used), for eastings
  100 000 to 800 000 m;
* row letters ``A``-``V`` (20 letters) cycle every 2 000 km of northing, starting at northing 0
  with ``A`` in odd zones and with ``F`` in even zones; the latitude band says which cycle.

The tile is a 109.8 km square (10980 px at 10 m) whose upper-left corner is the square's
upper-left corner moved outwards onto the 60 m grid of the UTM zone (x floored, y ceiled to a
multiple of 60 m): e.g. 32UNU = [499980, 5290200, 609780, 5400000] in EPSG:32632,
31TGK = [699960, 4890240, 809760, 5000040] in EPSG:32631.  So neighbouring tiles overlap by
9.8 km (plus up to 60 m of rounding).

:func:`tiles_intersecting` finds the tiles whose MGRS cell (the 100 km square cut to its zone
and latitude band: the cells tile the globe without overlap) intersects a boundary, which is
the smallest set of Sentinel-2 tiles covering it.  The zone exceptions of Norway (32V) and
Svalbard (31X-37X) are honoured.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from functools import lru_cache

import numpy as np
import pyproj
import shapely
from shapely.geometry import Polygon, box

from osmlulc.io import InputError

#: Latitude band letters from 80 S northwards; every band is 8 degrees, X is 12 (72-84 N).
BAND_LETTERS = "CDEFGHJKLMNPQRSTUVWX"
#: Row letters of the 100 km squares (cycle of 2 000 km).
ROW_LETTERS = "ABCDEFGHJKLMNPQRSTUV"
#: Column letters per zone set (zone % 3 == 1, 2, 0).
COLUMN_SETS = {1: "ABCDEFGH", 2: "JKLMNPQR", 0: "STUVWXYZ"}

SQUARE_M = 100_000.0
TILE_M = 109_800.0
#: The grid of the coarsest Sentinel-2 band (60 m): tile corners lie on it.
GRID_M = 60.0
_ROW_CYCLE_M = 2_000_000.0
_TILE_RE = re.compile(r"^(\d{2})([C-HJ-NP-X])([A-HJ-NP-Z])([A-HJ-NP-V])$")


def parse_tile(tile: str) -> tuple[int, str, str, str]:
    """(zone, band, column letter, row letter) of a tile id such as ``32UNU`` (a leading ``T`` is accepted)."""
    tile_id = tile[1:] if len(tile) == 6 and tile[0] == "T" else tile
    match = _TILE_RE.match(tile_id)
    if not match:
        raise InputError(f"tile {tile}: not a Sentinel-2 / MGRS tile id like 32UNU (zone, band, two letters)")
    zone = int(match.group(1))
    band, column, row = match.group(2), match.group(3), match.group(4)
    if not 1 <= zone <= 60:
        raise InputError(f"tile {tile}: UTM zone {zone} is not in 1..60")
    if column not in COLUMN_SETS[zone % 3]:
        raise InputError(
            f"tile {tile}: column letter {column} is not used in zone {zone} (letters {COLUMN_SETS[zone % 3]})"
        )
    return zone, band, column, row


def band_latitudes(band: str) -> tuple[float, float]:
    """(south, north) latitude of a latitude band."""
    south = -80.0 + 8.0 * BAND_LETTERS.index(band)
    return south, (84.0 if band == "X" else south + 8.0)


def zone_longitudes(zone: int, band: str) -> tuple[float, float] | None:
    """(west, east) longitude of a zone within a band (Norway and Svalbard exceptions); None where it does not exist."""
    west = -180.0 + 6.0 * (zone - 1)
    east = west + 6.0
    if band == "V" and zone == 31:
        return 0.0, 3.0
    if band == "V" and zone == 32:
        return 3.0, 12.0
    if band == "X":
        if zone in (32, 34, 36):
            return None
        special = {31: (0.0, 9.0), 33: (9.0, 21.0), 35: (21.0, 33.0), 37: (33.0, 42.0)}
        if zone in special:
            return special[zone]
    return west, east


def utm_epsg(zone: int, band: str) -> int:
    """EPSG code of the WGS84 / UTM zone of a band (north for bands N and above, south below)."""
    return (32600 if band >= "N" else 32700) + zone


def tile_crs(tile: str) -> str:
    zone, band, _, _ = parse_tile(tile)
    return f"EPSG:{utm_epsg(zone, band)}"


@lru_cache(maxsize=None)
def _to_utm(zone: int, band: str) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs("EPSG:4326", f"EPSG:{utm_epsg(zone, band)}", always_xy=True)


@lru_cache(maxsize=None)
def _to_lonlat(zone: int, band: str) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(f"EPSG:{utm_epsg(zone, band)}", "EPSG:4326", always_xy=True)


def _cell_lonlat_box(zone: int, band: str) -> tuple[float, float, float, float] | None:
    lons = zone_longitudes(zone, band)
    if lons is None:
        return None
    south, north = band_latitudes(band)
    return lons[0], south, lons[1], north


@lru_cache(maxsize=None)
def _band_utm_extent(zone: int, band: str) -> tuple[float, float, float, float]:
    """UTM bounds of the zone x band cell, from its densified outline."""
    west, south, east, north = _cell_lonlat_box(zone, band)
    outline = shapely.segmentize(box(west, south, east, north), 0.05)
    x, y = _to_utm(zone, band).transform(*np.asarray(outline.exterior.coords).T)
    return float(np.min(x)), float(np.min(y)), float(np.max(x)), float(np.max(y))


def square_origin(tile: str) -> tuple[float, float]:
    """(easting, northing) of the lower-left corner of the tile's 100 km MGRS square, in its UTM zone."""
    zone, band, column, row = parse_tile(tile)
    if _cell_lonlat_box(zone, band) is None:
        raise InputError(f"tile {tile}: zone {zone} does not exist in latitude band {band} (Svalbard exception)")
    easting = (COLUMN_SETS[zone % 3].index(column) + 1) * SQUARE_M
    row_offset = 5 if zone % 2 == 0 else 0
    northing = ((ROW_LETTERS.index(row) - row_offset) % 20) * SQUARE_M
    # The latitude band picks the 2 000 km cycle: the lowest square that reaches into the band.
    band_bottom = math.floor(_band_utm_extent(zone, band)[1] / SQUARE_M) * SQUARE_M
    northing += math.ceil((band_bottom - northing) / _ROW_CYCLE_M) * _ROW_CYCLE_M
    return easting, northing


def square_tile_id(zone: int, band: str, easting: float, northing: float) -> str:
    """Tile id of the 100 km square with lower-left corner (easting, northing) in ``zone``."""
    column = COLUMN_SETS[zone % 3][int(round(easting / SQUARE_M)) - 1]
    row_offset = 5 if zone % 2 == 0 else 0
    row = ROW_LETTERS[(int(round(northing / SQUARE_M)) + row_offset) % 20]
    return f"{zone:02d}{band}{column}{row}"


def tile_bounds(tile: str) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of the Sentinel-2 tile in its UTM CRS (:func:`tile_crs`)."""
    easting, northing = square_origin(tile)
    left = math.floor(easting / GRID_M) * GRID_M
    top = math.ceil((northing + SQUARE_M) / GRID_M) * GRID_M
    return left, top - TILE_M, left + TILE_M, top


def tile_grid(tiles) -> dict[str, dict]:
    """``{tile: {"crs": "EPSG:326zz", "bounds": [left, bottom, right, top]}}``, the config's ``tile_grid`` format."""
    return {t: {"crs": tile_crs(t), "bounds": [float(v) for v in tile_bounds(t)]} for t in tiles}


def _square_lonlat(zone: int, band: str, easting: float, northing: float) -> Polygon:
    square = shapely.segmentize(box(easting, northing, easting + SQUARE_M, northing + SQUARE_M), SQUARE_M / 16)
    lon, lat = _to_lonlat(zone, band).transform(*np.asarray(square.exterior.coords).T)
    return Polygon(np.column_stack([lon, lat]))


def mgrs_cells(bounds: tuple[float, float, float, float]):
    """Yield (zone, band, easting, northing, cell polygon in lon/lat) of every MGRS cell meeting a lon/lat box.

    A cell is a 100 km square (lower-left corner easting, northing) cut to its zone and latitude
    band; together the cells cover the globe between 80 S and 84 N without overlap.
    """
    west, south, east, north = bounds
    south, north = max(south, -80.0), min(north, 84.0)
    if south >= north:
        return
    bands = [b for b in BAND_LETTERS if band_latitudes(b)[1] > south and band_latitudes(b)[0] < north]
    # One zone of margin on either side: the Norway / Svalbard zones reach beyond their nominal 6 degrees.
    first_zone, last_zone = int((west + 180) // 6) + 1, int((east + 180) // 6) + 1
    zones = range(max(1, first_zone - 1), min(60, last_zone + 1) + 1)
    query = box(west, south, east, north)
    for band in bands:
        for zone in zones:
            cell_box = _cell_lonlat_box(zone, band)
            if cell_box is None or not box(*cell_box).intersects(query):
                continue
            zone_box = box(*cell_box)
            x0, y0, x1, y1 = _band_utm_extent(zone, band)
            for column in range(max(1, math.floor(x0 / SQUARE_M)), min(8, math.ceil(x1 / SQUARE_M) - 1) + 1):
                for row in range(math.floor(y0 / SQUARE_M), math.ceil(y1 / SQUARE_M)):
                    easting, northing = column * SQUARE_M, row * SQUARE_M
                    cell = _square_lonlat(zone, band, easting, northing).intersection(zone_box)
                    if cell.is_empty or cell.area == 0 or not cell.intersects(query):
                        continue
                    yield zone, band, easting, northing, cell


def tiles_intersecting(boundary_lonlat) -> list[str]:
    """Sorted ids of the Sentinel-2 tiles whose MGRS square intersects a (multi)polygon in lon/lat (EPSG:4326).

    A square cut by a latitude band boundary (e.g. the 100 km square at 48 N that is cell 32UNU
    north of it and 32TNU south of it) is one tile, named after the band that holds most of it
    (32UNU): the two names would have the same footprint and the same pixels.
    """
    if boundary_lonlat.is_empty:
        raise InputError("the boundary is empty; it must be a country outline in lon/lat")
    shapely.prepare(boundary_lonlat)
    found = set()
    for zone, band, easting, northing, cell in mgrs_cells(boundary_lonlat.bounds):
        if boundary_lonlat.intersects(cell):
            found.add(square_tile_id(zone, _majority_band(zone, band, easting, northing), easting, northing))
    return sorted(found)


def _majority_band(zone: int, band: str, easting: float, northing: float) -> str:
    """The latitude band (this one or a neighbour) that holds most of a 100 km square of the zone."""
    square = _square_lonlat(zone, band, easting, northing)
    i = BAND_LETTERS.index(band)
    areas = {}
    for candidate in BAND_LETTERS[max(0, i - 1):i + 2]:
        cell_box = _cell_lonlat_box(zone, candidate)
        if cell_box is not None and utm_epsg(zone, candidate) == utm_epsg(zone, band):
            areas[candidate] = square.intersection(box(*cell_box)).area
    return max(areas, key=areas.get)


def read_boundary_lonlat(path):
    """The union of the polygons of a vector file (any CRS), in lon/lat."""
    from osmlulc.boundaries import read_boundary  # CRS check, repair, one geometry (fiona, imported when needed)

    return read_boundary(path, pyproj.CRS.from_epsg(4326))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="osmlulc-tiles",
        description="Sentinel-2 (MGRS) tiles whose cell intersects a country boundary, as YAML for "
                    "config/countries/<CC>.yaml.",
    )
    parser.add_argument("boundary", help="vector file (GeoJSON, GeoPackage, ...) with the country outline, any CRS")
    parser.add_argument("--grid", action="store_true",
                        help="also print the tile_grid (UTM CRS and bounds of each tile)")
    args = parser.parse_args(argv)
    try:
        tiles = tiles_intersecting(read_boundary_lonlat(args.boundary))
    except InputError as err:
        print(f"osmlulc-tiles: {err}", file=sys.stderr)
        return 1
    print(f"# {len(tiles)} Sentinel-2 tiles intersecting {args.boundary} (osmlulc-tiles)")
    print("tiles: [" + ", ".join(tiles) + "]")
    if args.grid:
        print("tile_grid:")
        for tile, grid in tile_grid(tiles).items():
            bounds = ", ".join(f"{v:.0f}" for v in grid["bounds"])
            print(f"  {tile}: {{crs: \"{grid['crs']}\", bounds: [{bounds}]}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
