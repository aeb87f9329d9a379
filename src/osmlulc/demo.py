"""Deterministic generator of an embedded demo "country" that exercises the whole method.

The demo replaces the downloads of a real run (Sentinel-2 L2A tiles, an OSM land-use
label raster, a country outline and a reference land-cover map) with synthetic but
realistic stand-ins, so the workflow can be run and tested end to end offline.

A landscape is defined once as vector geometry in UTM coordinates over the union of the
tiles (land-use zones from a coarse Voronoi partition: agricultural areas split into
field parcels of a few hectares, forest and scrub stands, pasture, towns with a street
grid, industrial blocks and parks; main roads; a meandering river with a tributary;
lakes with wetland fringes).  Every feature gets an id; each output grid is rasterized
to feature ids with :func:`rasterio.features.rasterize`, and class codes, OSM labels and
reflectances are looked up from the ids.  Textures and sensor noise are hash functions of
the global 10 m pixel position, so overlapping tiles agree exactly.

Outputs (see :func:`generate_demo_country`):

* per tile and band: a single-band uint16 GeoTIFF of surface reflectance x 10000
  (nodata 0, values >= 1), 10 m bands at 10 m, 20 m bands as 2 x 2 block means;
* per tile: the ground truth (uint8 class codes, nodata 0 where the bands are nodata);
* the ground truth on an EPSG:3035 10 m grid covering the union of tiles;
* an OSM-like label raster on the same grid: only part of the parcels, a few wrong;
* a GeoJSON country outline (EPSG:4326) that cuts through the tiles.

The ``spec`` dictionary (``demo:`` section of the config)::

    tile_size_px: 1098        # tile edge in 10 m pixels (real MGRS: 10980; 1:10 scale)
    tile_spacing_px: 1000     # grid step between neighbouring tiles (-> 98 px overlap)
    utm_epsg: 32632           # CRS of the tiles
    origin: [499980, 5400000] # upper-left (x, y) of the tile at grid position [0, 0]
    tiles: {32UNU: [0, 0], 32UPU: [1, 0], 32UNV: [0, 1]}
                              # tile id -> [column east, row north];
                              # tile upper-left = origin + (col, row) * spacing * 10 m
    bands: {B02: 10, B03: 10, B04: 10, B08: 10, B05: 20, B06: 20, B07: 20, B8A: 20,
            B11: 20, B12: 20} # band -> resolution in m (10 or 20)
    osm_coverage: 0.6         # fraction of land parcels present in the OSM label raster
    osm_wrong_fraction: 0.03  # fraction of included OSM land parcels with a wrong class
    nodata_corner: {tile: 32UPU, size_px: 150}
                              # triangle of this size in a corner of the tile is nodata

Optional keys: ``nodata_corner.corner`` (``upper_right`` (default), ``upper_left``,
``lower_left``, ``lower_right``), ``osm_water_coverage`` (0.95: lakes and rivers are
almost always mapped in OSM), ``osm_road_coverage`` (0.9), ``country_name`` ("Demoland"),
``osm_border_shift_px`` (0: OSM polygon borders wander from the true ones by up to this many px,
smoothly along each border, as hand-digitised polygons and a misregistered image do).

The OSM label is noisy the way real OSM land use is, so the demo can tell a good training
procedure from a bad one: parcels unmapped (whole areas mapped with less effort), a share
mis-tagged with a plausible wrong class, borders shifted by 1-2 px, and mixed pixels at every
border (the sensor's point-spread function blends neighbouring surfaces in the image).
"""

from __future__ import annotations

import json
import math
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
import pyproj
import rasterio
import rasterio.features
import rasterio.windows
import shapely
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from scipy.ndimage import gaussian_filter
from shapely.ops import substring

from osmlulc.classes import ClassTable
from osmlulc.io import atomic_output, block_windows, raster_profile, write_class_colormap

#: Pixel size of the tile grid (m).
PIXEL_M = 10.0
#: CRS of the country-wide truth and label rasters.
COUNTRY_CRS = "EPSG:3035"
#: Bands the demo can synthesize, in wavelength order.
BAND_ORDER = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")

#: Endmember surface reflectances (x 10000) for BAND_ORDER, close to typical Sentinel-2
#: L2A values of summer scenes in central Europe.
ENDMEMBERS = {
    "water_clear": (380, 480, 300, 240, 170, 150, 130, 120, 60, 45),
    "water_turbid": (520, 700, 580, 520, 330, 290, 260, 230, 100, 70),
    "broadleaf": (250, 500, 260, 850, 2500, 3200, 3450, 3550, 1700, 750),
    "conifer": (190, 360, 190, 580, 1550, 1950, 2150, 2250, 1050, 450),
    "crop": (320, 680, 350, 1050, 2950, 3750, 4050, 4150, 2150, 1000),
    "soil": (950, 1250, 1550, 1800, 2000, 2150, 2250, 2400, 3100, 2550),
    "grass": (380, 720, 480, 1150, 2450, 2950, 3150, 3250, 2300, 1250),
    "dry_grass": (600, 900, 1000, 1500, 2100, 2400, 2550, 2700, 3000, 2100),
    "scrub": (380, 650, 600, 1100, 1850, 2250, 2450, 2550, 2400, 1450),
    "roofs": (1000, 1100, 1200, 1350, 1550, 1700, 1800, 1850, 2150, 1900),
    "concrete": (1300, 1400, 1500, 1600, 1700, 1800, 1850, 1900, 2300, 2100),
    "asphalt": (700, 780, 850, 920, 1000, 1080, 1120, 1160, 1350, 1250),
    "wet_veg": (330, 560, 420, 850, 1600, 1900, 2000, 2050, 1400, 700),
}

#: Sensor noise standard deviation per band (reflectance x 10000).
SENSOR_NOISE = {"B02": 40, "B03": 40, "B04": 45, "B05": 50, "B06": 60, "B07": 60, "B08": 70, "B8A": 60, "B11": 60,
                "B12": 55}


@dataclass(frozen=True)
class FeatureKind:
    """How a kind of landscape feature looks: its class and its spectral mixture.

    A pixel's reflectance is ``(primary * (1 - f) + secondary * f) * (1 + tex * T1)`` with
    ``f = clip(f_parcel + f_amp * T2, 0, 1)``, ``f_parcel ~ U(f_lo, f_hi)`` per parcel and
    T1, T2 smooth noise fields; every parcel is also scaled by a brightness ~ N(1, bright_sd).
    """

    code: int
    primary: str
    secondary: str
    f_lo: float
    f_hi: float
    f_amp: float
    bright_sd: float
    tex: float


KINDS = {
    # arable parcels are drawn bimodally between green crop and bare soil (see _feature_params)
    "arable": FeatureKind(5, "crop", "soil", 0.0, 1.0, 0.10, 0.06, 0.05),
    "pasture": FeatureKind(7, "grass", "dry_grass", 0.0, 0.35, 0.12, 0.06, 0.05),
    "forest": FeatureKind(8, "broadleaf", "conifer", 0.0, 1.0, 0.12, 0.06, 0.08),
    "scrub": FeatureKind(9, "scrub", "dry_grass", 0.0, 0.5, 0.25, 0.07, 0.08),
    "urban": FeatureKind(1, "roofs", "grass", 0.2, 0.5, 0.25, 0.08, 0.10),
    "industrial": FeatureKind(2, "concrete", "asphalt", 0.0, 0.6, 0.15, 0.08, 0.06),
    "street": FeatureKind(2, "asphalt", "roofs", 0.0, 0.3, 0.10, 0.05, 0.04),
    "road": FeatureKind(2, "asphalt", "concrete", 0.0, 0.3, 0.10, 0.05, 0.04),
    "park": FeatureKind(4, "grass", "broadleaf", 0.2, 0.7, 0.30, 0.06, 0.06),
    "wetland": FeatureKind(11, "wet_veg", "water_turbid", 0.05, 0.35, 0.20, 0.06, 0.05),
    # lakes are mostly clearer than rivers, but the ranges overlap
    "lake": FeatureKind(12, "water_clear", "water_turbid", 0.0, 0.6, 0.10, 0.05, 0.03),
    "river": FeatureKind(12, "water_clear", "water_turbid", 0.2, 0.9, 0.10, 0.05, 0.03),
}
KIND_NAMES = tuple(KINDS)
WATER_KINDS = ("lake", "river")
ROAD_KINDS = ("street", "road")

#: Plausible OSM mislabelling: class -> classes it is confused with.
WRONG_CLASSES = {1: (2, 4), 2: (1,), 4: (7, 1), 5: (7,), 7: (5, 9), 8: (9,), 9: (8, 7), 11: (7, 9), 12: (11,)}

#: Land-use zone types and their share of the zones.
ZONE_WEIGHTS = {"agri": 0.38, "forest": 0.25, "pasture": 0.13, "scrub": 0.10, "urban": 0.14}

#: Extra margin (pixels) rendered around a tile so the PSF blur has no edge effects.
_MARGIN_PX = 4
#: Gaussian point-spread function of the sensor (pixels).
_PSF_SIGMA_PX = 0.4


@dataclass(frozen=True)
class DemoSpec:
    """Parsed and validated ``spec``."""

    size: int
    spacing: int
    crs: str
    origin: tuple[float, float]
    tiles: dict[str, tuple[int, int]]
    bands: dict[str, int]
    osm_coverage: float
    osm_wrong_fraction: float
    osm_water_coverage: float
    osm_road_coverage: float
    nodata_tile: str
    nodata_size: int
    nodata_corner: str
    country_name: str
    osm_border_shift_px: int = 0

    def tile_offset_px(self, tile: str) -> tuple[int, int]:
        """(column, row) of the tile's upper-left pixel on the global 10 m grid (rows grow southwards)."""
        col, row = self.tiles[tile]
        return col * self.spacing, -row * self.spacing

    def tile_ul(self, tile: str) -> tuple[float, float]:
        gx, gy = self.tile_offset_px(tile)
        return self.origin[0] + gx * PIXEL_M, self.origin[1] - gy * PIXEL_M

    def tile_bounds(self, tile: str) -> tuple[float, float, float, float]:
        left, top = self.tile_ul(tile)
        extent = self.size * PIXEL_M
        return left, top - extent, left + extent, top


def _parse_spec(spec: dict) -> DemoSpec:
    """Validate the demo spec with messages that name the offending key."""
    required = ("tile_size_px", "tile_spacing_px", "utm_epsg", "origin", "tiles", "bands", "osm_coverage",
                "osm_wrong_fraction", "nodata_corner")
    missing = [k for k in required if k not in spec]
    if missing:
        raise ValueError(f"demo spec: missing keys {missing}")
    size, spacing = int(spec["tile_size_px"]), int(spec["tile_spacing_px"])
    if size < 64 or spacing <= 0:
        raise ValueError(f"demo spec: need tile_size_px >= 64 and tile_spacing_px > 0, got {size} and {spacing}")
    tiles = {str(t): (int(cr[0]), int(cr[1])) for t, cr in dict(spec["tiles"]).items()}
    if not tiles:
        raise ValueError("demo spec: tiles is empty")
    bands = {str(b): int(r) for b, r in dict(spec["bands"]).items()}
    unknown = [b for b in bands if b not in BAND_ORDER]
    if unknown:
        raise ValueError(f"demo spec: unknown bands {unknown}; known: {list(BAND_ORDER)}")
    bad_res = {b: r for b, r in bands.items() if r not in (10, 20)}
    if bad_res:
        raise ValueError(f"demo spec: band resolutions must be 10 or 20 m, got {bad_res}")
    corner = dict(spec["nodata_corner"])
    if corner.get("tile") not in tiles:
        raise ValueError(f"demo spec: nodata_corner.tile {corner.get('tile')!r} is not one of the tiles {list(tiles)}")
    corner_name = str(corner.get("corner", "upper_right"))
    if corner_name not in ("upper_left", "upper_right", "lower_left", "lower_right"):
        raise ValueError(f"demo spec: nodata_corner.corner must be upper_left/upper_right/lower_left/lower_right, "
                         f"got {corner_name!r}")
    fractions = {k: float(spec.get(k, d)) for k, d in (("osm_coverage", None), ("osm_wrong_fraction", None),
                                                         ("osm_water_coverage", 0.95), ("osm_road_coverage", 0.9))}
    bad = {k: v for k, v in fractions.items() if not 0.0 <= v <= 1.0}
    if bad:
        raise ValueError(f"demo spec: fractions must be within 0..1, got {bad}")
    return DemoSpec(
        size=size, spacing=spacing, crs=f"EPSG:{int(spec['utm_epsg'])}",
        origin=(float(spec["origin"][0]), float(spec["origin"][1])), tiles=tiles, bands=bands,
        osm_coverage=fractions["osm_coverage"], osm_wrong_fraction=fractions["osm_wrong_fraction"],
        osm_water_coverage=fractions["osm_water_coverage"], osm_road_coverage=fractions["osm_road_coverage"],
        nodata_tile=str(corner["tile"]), nodata_size=int(corner.get("size_px", 0)), nodata_corner=corner_name,
        country_name=str(spec.get("country_name", "Demoland")),
        osm_border_shift_px=int(spec.get("osm_border_shift_px", 0)),
    )


def demo_tile_grid(spec: dict) -> dict[str, dict]:
    """tile id -> {"crs": "EPSG:<utm_epsg>", "bounds": [left, bottom, right, top]} (10 m grid) from the spec."""
    s = _parse_spec(spec)
    return {t: {"crs": s.crs, "bounds": [float(v) for v in s.tile_bounds(t)]} for t in s.tiles}


# --------------------------------------------------------------------------------------
# Landscape geometry
# --------------------------------------------------------------------------------------


@dataclass
class Landscape:
    """Landscape features in burn order (later features cover earlier ones).

    Feature ``i`` has raster id ``i + 1``; id 0 means "no feature".
    """

    geoms: np.ndarray  # shapely geometries, UTM
    kinds: np.ndarray  # index into KIND_NAMES
    zones: np.ndarray  # land-use zone of the feature (OSM mapping propensity is per zone)

    @property
    def codes(self) -> np.ndarray:
        kind_codes = np.array([KINDS[k].code for k in KIND_NAMES], dtype=np.uint8)
        return kind_codes[self.kinds]


class _FeatureList:
    """Accumulates features in burn order."""

    def __init__(self):
        self.geoms, self.kinds, self.zones = [], [], []

    def add(self, geoms, kinds, zone: int) -> None:
        geoms = np.atleast_1d(np.asarray(geoms, dtype=object))
        kinds = np.broadcast_to(np.asarray(kinds, dtype=object), geoms.shape)
        keep = _is_areal(geoms)
        self.geoms.extend(geoms[keep])
        self.kinds.extend(KIND_NAMES.index(k) for k in kinds[keep])
        self.zones.extend([zone] * int(keep.sum()))

    def landscape(self) -> Landscape:
        return Landscape(np.array(self.geoms, dtype=object), np.array(self.kinds, dtype=np.int16),
                         np.array(self.zones, dtype=np.int32))


def _is_areal(geoms: np.ndarray) -> np.ndarray:
    """Polygons and multipolygons of at least a square metre (drops slivers, lines and collections)."""
    type_ok = np.isin(shapely.get_type_id(geoms), (3, 6))
    return type_ok & (shapely.area(geoms) > 1.0)


def _rotate(geoms, angle: float, origin: tuple[float, float]):
    """Rotate geometries by ``angle`` radians (counter-clockwise) about ``origin``."""
    cos, sin = math.cos(angle), math.sin(angle)
    ox, oy = origin

    def rot(xy):
        x, y = xy[:, 0] - ox, xy[:, 1] - oy
        return np.column_stack([ox + cos * x - sin * y, oy + sin * x + cos * y])

    return shapely.transform(geoms, rot)


def _blob(rng, center: tuple[float, float], radius: float, roughness: float = 0.25, n_vertices: int = 96,
          n_harmonics: int = 8, decay: float = 1.0):
    """Irregular star-shaped polygon (lakes, towns, country outline) with mean radius ``radius``.

    The log-radius is a sum of harmonics k = 2..n_harmonics with amplitudes ~ roughness / k**decay
    (decay > 1 keeps many harmonics from turning the shape into a star).
    """
    theta = np.linspace(0, 2 * np.pi, n_vertices, endpoint=False)
    log_r = np.zeros_like(theta)
    for k in range(2, n_harmonics + 1):
        log_r += rng.normal(0, roughness / k ** decay) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    r = radius * np.exp(log_r - log_r.mean())
    return shapely.Polygon(np.column_stack([center[0] + r * np.cos(theta), center[1] + r * np.sin(theta)]))


def _random_points_in(rng, polygon, n: int) -> np.ndarray:
    """``n`` uniform random points inside ``polygon`` (rejection sampling on its bounds)."""
    if polygon.is_empty or polygon.area <= 0:
        raise ValueError("demo: cannot place random points in an empty polygon")
    minx, miny, maxx, maxy = polygon.bounds
    shapely.prepare(polygon)
    out = []
    while len(out) < n:
        xy = rng.uniform((minx, miny), (maxx, maxy), size=(max(16, 2 * n), 2))
        out.extend(xy[shapely.contains_xy(polygon, xy[:, 0], xy[:, 1])])
    return np.array(out[:n])


def _voronoi_cells(rng, polygon, spacing: float) -> np.ndarray:
    """Split ``polygon`` into Voronoi cells around jittered-grid seeds ``spacing`` apart."""
    minx, miny, maxx, maxy = polygon.bounds
    xs = np.arange(minx + spacing / 2, maxx, spacing)
    ys = np.arange(miny + spacing / 2, maxy, spacing)
    gx, gy = np.meshgrid(xs, ys)
    pts = np.column_stack([gx.ravel(), gy.ravel()]) + rng.uniform(-0.4, 0.4, (gx.size, 2)) * spacing
    if len(pts) < 2:
        return np.array([polygon], dtype=object)
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=polygon, ordered=True))
    cells = shapely.intersection(cells, polygon)
    return cells[_is_areal(cells)]


def _field_parcels(rng, polygon, width_m: tuple[float, float], length_m: tuple[float, float]) -> np.ndarray:
    """Split ``polygon`` into rectangular field parcels in strips of a random orientation."""
    angle = rng.uniform(0, np.pi)
    center = polygon.centroid.coords[0]
    minx, miny, maxx, maxy = _rotate(polygon, -angle, center).bounds
    boxes = []
    x = minx
    while x < maxx:
        w = rng.uniform(*width_m)
        y = miny - rng.uniform(0, length_m[1])  # staggered field ends between strips
        while y < maxy:
            h = rng.uniform(*length_m)
            boxes.append((x, y, x + w, y + h))
            y += h
        x += w
    boxes = _rotate(shapely.box(*np.array(boxes).T), angle, center)
    fields = shapely.intersection(boxes, polygon)
    return fields[_is_areal(fields)]


def _choose(rng, options: dict[str, float], n: int) -> np.ndarray:
    names = list(options)
    p = np.array([options[k] for k in names], dtype=float)
    return np.array(names, dtype=object)[rng.choice(len(names), size=n, p=p / p.sum())]


def _zone_types(rng, cells: np.ndarray, union) -> np.ndarray:
    """Zone type per cell; every type occurs at least once among cells that touch the tiles."""
    types = _choose(rng, ZONE_WEIGHTS, len(cells))
    inside = np.flatnonzero(shapely.intersects(cells, union))
    forced = rng.permutation(inside)[: len(ZONE_WEIGHTS)]
    for cell, zone_type in zip(forced, ZONE_WEIGHTS):
        types[cell] = zone_type
    return types


def _town(rng, cell, features: _FeatureList, zone: int):
    """A town in part of ``cell``: street area, building blocks (urban / industrial / parks)."""
    center = cell.representative_point().coords[0]
    radius = 0.4 * math.sqrt(cell.area)
    town = shapely.make_valid(_blob(rng, center, radius, roughness=0.3)).intersection(cell)
    if town.is_empty or town.area < 1e4:
        return None
    features.add([town], "street", zone)
    street = rng.uniform(8, 14)
    angle = rng.uniform(0, np.pi / 2)
    minx, miny, maxx, maxy = _rotate(town, -angle, center).bounds
    xs, ys = [minx], [miny]
    while xs[-1] < maxx:
        xs.append(xs[-1] + rng.uniform(70, 160))
    while ys[-1] < maxy:
        ys.append(ys[-1] + rng.uniform(70, 160))
    x0, y0 = np.meshgrid(xs[:-1], ys[:-1])
    x1, y1 = np.meshgrid(xs[1:], ys[1:])
    blocks = _rotate(shapely.box(x0.ravel(), y0.ravel(), x1.ravel() - street, y1.ravel() - street), angle, center)
    blocks = shapely.intersection(blocks, town)
    blocks = blocks[_is_areal(blocks)]
    # industry grows towards the outskirts; parks are scattered
    dist = shapely.distance(shapely.centroid(blocks), shapely.Point(center)) / radius
    u = rng.uniform(size=len(blocks))
    p_industrial = 0.03 + 0.25 * np.clip(dist, 0, 1)
    kinds = np.where(u < p_industrial, "industrial", np.where(u < p_industrial + 0.12, "park", "urban"))
    features.add(blocks, kinds.astype(object), zone)
    return town


def _meandering_line(rng, start, end, wavelength: tuple[float, float], swing: tuple[float, float], step: float = 10.0):
    """A meandering polyline from ``start`` to ``end``.

    The heading oscillates around the start-end direction (a sum of sines of random
    wavelengths, like a sine-generated curve, which is how real meanders are modelled);
    the integrated path is then sheared so that it ends exactly at ``end``.
    """
    dx, dy = end[0] - start[0], end[1] - start[1]
    length = math.hypot(dx, dy)
    direction = math.atan2(dy, dx)
    s = np.arange(0.0, 1.6 * length + step, step)  # meandering makes the path longer than the chord
    heading = np.full_like(s, direction)
    for k in range(1, 4):
        heading += rng.uniform(*swing) / k * np.sin(2 * np.pi * s / rng.uniform(*wavelength) * k ** 0.5
                                                    + rng.uniform(0, 2 * np.pi))
    x = np.concatenate([[0.0], np.cumsum(step * np.cos(heading))])
    y = np.concatenate([[0.0], np.cumsum(step * np.sin(heading))])
    # keep the part up to the chord length along the axis, then correct the end point
    along = x * math.cos(direction) + y * math.sin(direction)
    stop = int(np.argmax(along >= length)) if np.any(along >= length) else len(x) - 1
    x, y = x[: stop + 1], y[: stop + 1]
    w = np.linspace(0, 1, len(x))
    x = start[0] + x + w * (dx - x[-1])
    y = start[1] + y + w * (dy - y[-1])
    return shapely.LineString(np.column_stack([x, y]))


def _river(rng, union, extent):
    """A river crossing the whole area through a random point of the tiles (as a list of reaches),
    its centre line, and a tributary (or None)."""
    minx, miny, maxx, maxy = extent.bounds
    half = math.hypot(maxx - minx, maxy - miny)
    through = _random_points_in(rng, union, 1)[0]
    direction = rng.uniform(0, np.pi)
    ux, uy = math.cos(direction), math.sin(direction)
    upstream = _meandering_line(rng, through, (through[0] - half * ux, through[1] - half * uy), (700, 2000), (0.4, 0.9))
    downstream = _meandering_line(rng, through, (through[0] + half * ux, through[1] + half * uy), (700, 2000),
                                  (0.4, 0.9))
    axis = shapely.LineString(np.concatenate([np.asarray(upstream.coords)[::-1], np.asarray(downstream.coords)[1:]]))
    # reaches of 1-3 km are separate features: turbidity changes along a river
    half_width = rng.uniform(25, 40)
    cuts = np.cumsum(rng.uniform(1000, 3000, int(axis.length / 1000) + 2))
    cuts = np.concatenate([[0.0], cuts[cuts < axis.length], [axis.length]])
    reaches = [substring(axis, a, b) for a, b in zip(cuts[:-1], cuts[1:])]
    river = list(shapely.intersection(shapely.buffer(reaches, half_width, quad_segs=4), extent))
    # the tributary runs from a random point of the tiles to the river
    source = shapely.Point(_random_points_in(rng, union, 1)[0])
    tributary = None
    if source.distance(axis) > 300:
        mouth = axis.interpolate(axis.project(source))
        line = _meandering_line(rng, (source.x, source.y), (mouth.x, mouth.y), (300, 900), (0.3, 0.7))
        tributary = line.buffer(rng.uniform(10, 15), quad_segs=4).intersection(extent)
    return river, axis, tributary


def _lakes(rng, union, tiles: list, avoid, target_area: float, max_radius: float) -> list:
    """Irregular lakes (not on towns): one in every tile, then anywhere until ``target_area`` is reached."""
    lakes, area = [], 0.0
    # every tile gets a lake, so that each one has water to learn and test on
    for tile in tiles:
        for _ in range(20):
            radius = rng.uniform(0.4, 0.7) * max_radius
            center = _random_points_in(rng, tile.buffer(-1.5 * radius), 1)[0]
            lake = _blob(rng, tuple(center), radius, roughness=0.35)
            if avoid is None or not lake.intersects(avoid):
                lakes.append(lake)
                area += lake.area
                break
    for _ in range(400):
        if area >= target_area:
            break
        # the last lake must not overshoot the target by much
        radius = min(rng.uniform(0.3, 1.0) * max_radius, max(100.0, math.sqrt(1.2 * (target_area - area) / np.pi)))
        center = _random_points_in(rng, union, 1)[0]
        lake = _blob(rng, tuple(center), radius, roughness=0.35)
        if avoid is not None and lake.intersects(avoid):
            continue
        lakes.append(lake)
        area += lake.intersection(union).area
    return lakes


def _wetlands(rng, lakes: list, river_axes: list, union) -> list:
    """Wetland fringes on one side of about half the lakes, and marshes along the river."""
    wetlands = []
    for lake in lakes:
        if rng.uniform() < 0.55:
            r = math.sqrt(lake.area / np.pi)
            side = rng.uniform(0, 2 * np.pi)
            c = lake.centroid
            near = (c.x + r * math.cos(side), c.y + r * math.sin(side))
            fringe = lake.buffer(rng.uniform(50, 150)).intersection(_blob(rng, near, r * rng.uniform(0.7, 1.2)))
            wetlands.append(fringe)
    on_river = shapely.union_all(river_axes).intersection(union)
    n_marsh = max(1, int(on_river.length / 3000))
    for _ in range(n_marsh if not on_river.is_empty else 0):
        p = on_river.interpolate(rng.uniform(0, on_river.length))
        wetlands.append(_blob(rng, (p.x, p.y), rng.uniform(100, 250)))
    return [shapely.make_valid(w) for w in wetlands]


def _main_roads(rng, towns: list, union, extent) -> list:
    """Main roads: a minimum spanning tree between the towns, plus roads leaving the area."""
    points = [t.representative_point().coords[0] for t in towns if t is not None]
    if not points:
        points = [tuple(_random_points_in(rng, union, 1)[0])]
    xy = np.array(points)
    # Prim's algorithm: connect every town to its nearest already-connected town
    dist = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    connected, lines = [0], []
    while len(connected) < len(xy):
        others = np.setdiff1d(np.arange(len(xy)), connected)
        sub = dist[np.ix_(connected, others)]
        i, j = np.unravel_index(np.argmin(sub), sub.shape)
        lines.append([xy[connected[i]], xy[others[j]]])
        connected.append(int(others[j]))
    # through roads to the western and eastern edges of the area
    minx, miny, maxx, maxy = extent.bounds
    west, east = xy[np.argmin(xy[:, 0])], xy[np.argmax(xy[:, 0])]
    lines.append([(minx, west[1] + rng.uniform(-500, 500)), west])
    lines.append([east, (maxx, east[1] + rng.uniform(-500, 500))])
    width = rng.uniform(6, 8)
    roads = shapely.buffer(shapely.segmentize(shapely.linestrings(lines), 50), width, quad_segs=2)
    return list(shapely.intersection(roads, extent))


def build_landscape(s: DemoSpec, rng) -> tuple[Landscape, object]:
    """The landscape over the union of tiles (plus a margin); returns it and the tile union polygon."""
    union = shapely.union_all([shapely.box(*s.tile_bounds(t)) for t in s.tiles])
    margin = 500.0
    extent = shapely.box(*union.buffer(margin, join_style="mitre").bounds)
    tile_extent_m = s.size * PIXEL_M
    zone_spacing = float(np.clip(tile_extent_m / 3, 800, 1500))

    features = _FeatureList()
    cells = _voronoi_cells(rng, extent, zone_spacing)
    zone_types = _zone_types(rng, cells, union)
    towns = []
    for zone, (cell, zone_type) in enumerate(zip(cells, zone_types)):
        if zone_type in ("agri", "urban"):
            features.add([cell], "arable", zone)  # fallback under slivers between parcels
            fields = _field_parcels(rng, cell, (80, 220), (150, 400))
            features.add(fields, _choose(rng, {"arable": 0.8, "pasture": 0.2}, len(fields)), zone)
            if zone_type == "urban":
                towns.append(_town(rng, cell, features, zone))
        elif zone_type == "pasture":
            features.add([cell], "pasture", zone)
            fields = _field_parcels(rng, cell, (120, 300), (150, 450))
            features.add(fields, _choose(rng, {"pasture": 0.85, "arable": 0.15}, len(fields)), zone)
        elif zone_type == "forest":
            features.add([cell], "forest", zone)
            stands = _voronoi_cells(rng, cell, 350)
            features.add(stands, _choose(rng, {"forest": 0.88, "scrub": 0.12}, len(stands)), zone)
        else:  # scrub
            features.add([cell], "scrub", zone)
            stands = _voronoi_cells(rng, cell, 300)
            features.add(stands, _choose(rng, {"scrub": 0.75, "forest": 0.15, "pasture": 0.10}, len(stands)), zone)

    water_zone = len(cells)  # pseudo zones for features that span zones
    n_rivers = 1 + int(math.sqrt(union.area) / 12000)  # about one river per 12 km
    rivers, axes = [], []
    for _ in range(n_rivers):
        river, axis, tributary = _river(rng, union, extent)
        rivers += river + ([tributary] if tributary is not None else [])
        axes.append(axis)
    towns_union = shapely.union_all([t for t in towns if t is not None]) if any(t is not None for t in towns) else None
    water_target = rng.uniform(0.04, 0.06) * union.area - shapely.union_all(rivers).intersection(union).area
    tiles = [shapely.box(*s.tile_bounds(t)) for t in s.tiles]
    lakes = _lakes(rng, union, tiles, towns_union, water_target, max_radius=min(450.0, tile_extent_m / 6))
    features.add(_wetlands(rng, lakes, axes, union), "wetland", water_zone)
    features.add(_main_roads(rng, towns, union, extent), "road", water_zone + 1)
    features.add(lakes, "lake", water_zone)
    features.add(rivers, "river", water_zone)
    return features.landscape(), union


# --------------------------------------------------------------------------------------
# Per-feature attributes: spectra and OSM labels
# --------------------------------------------------------------------------------------


@dataclass
class FeatureParams:
    """Per-id lookup tables (index 0 = no feature)."""

    primary: np.ndarray  # (n + 1, n_bands) reflectance x 10000
    secondary: np.ndarray  # (n + 1, n_bands)
    f_base: np.ndarray  # (n + 1,)
    f_amp: np.ndarray
    tex: np.ndarray
    truth: np.ndarray  # (n + 1,) uint8 class code
    osm: np.ndarray  # (n + 1,) uint8 OSM label (0 = not mapped)


def _feature_params(rng, land: Landscape, bands: list[str], s: DemoSpec) -> FeatureParams:
    n = len(land.geoms)
    band_idx = [BAND_ORDER.index(b) for b in bands]
    em = {k: np.asarray(v, dtype=np.float64)[band_idx] for k, v in ENDMEMBERS.items()}
    kinds = [KINDS[KIND_NAMES[k]] for k in land.kinds]

    brightness = np.array([rng.normal(1.0, k.bright_sd) for k in kinds])
    jitter = 1.0 + rng.normal(0, 0.03, (n, len(bands)))  # per-parcel spectral shape variation
    scale = (brightness[:, None] * jitter)
    primary = np.array([em[k.primary] for k in kinds]).reshape(n, len(bands)) * scale
    secondary = np.array([em[k.secondary] for k in kinds]).reshape(n, len(bands)) * scale
    f_base = np.array([rng.uniform(k.f_lo, k.f_hi) for k in kinds])
    # arable parcels are either bare soil (ploughed, harvested) or a green crop
    arable = land.kinds == KIND_NAMES.index("arable")
    soil_like = rng.uniform(size=n) < 0.4
    f_base = np.where(arable, np.where(soil_like, rng.uniform(0.65, 1.0, n), rng.uniform(0.0, 0.35, n)), f_base)
    f_amp = np.array([k.f_amp for k in kinds])
    tex = np.array([k.tex for k in kinds])

    truth = land.codes
    osm = _osm_labels(rng, land, s)

    def with_nothing(a, fill=0):
        return np.concatenate([np.full((1,) + a.shape[1:], fill, dtype=a.dtype), a])

    return FeatureParams(with_nothing(primary), with_nothing(secondary), with_nothing(f_base), with_nothing(f_amp),
                         with_nothing(tex), with_nothing(truth.astype(np.uint8)), with_nothing(osm))


def _osm_labels(rng, land: Landscape, s: DemoSpec) -> np.ndarray:
    """OSM label per feature: whole parcels missing, a few with a plausible wrong class."""
    n = len(land.geoms)
    codes = land.codes
    kind_names = np.array(KIND_NAMES, dtype=object)[land.kinds]
    # mapping effort varies between areas (some villages mapped in detail, others not)
    zone_bias = rng.uniform(-0.25, 0.25, land.zones.max() + 1)
    p_land = np.clip(s.osm_coverage + zone_bias[land.zones], 0.02, 0.98)
    p = np.where(np.isin(kind_names, WATER_KINDS), s.osm_water_coverage,
                 np.where(np.isin(kind_names, ROAD_KINDS), s.osm_road_coverage, p_land))
    mapped = rng.uniform(size=n) < p
    wrong = mapped & ~np.isin(kind_names, WATER_KINDS) & (rng.uniform(size=n) < s.osm_wrong_fraction)
    pick = rng.uniform(size=n)
    osm = np.where(mapped, codes, 0).astype(np.uint8)
    for i in np.flatnonzero(wrong):
        options = WRONG_CLASSES[int(codes[i])]
        osm[i] = options[int(pick[i] * len(options))]
    return osm


# --------------------------------------------------------------------------------------
# Position-hashed noise: identical values wherever tiles overlap
# --------------------------------------------------------------------------------------

_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xC2B2AE3D27D4EB4F)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _hash_uniform(ix: np.ndarray, iy: np.ndarray, salt: np.uint64) -> np.ndarray:
    """Uniform [0, 1) values hashed from integer positions (splitmix64 finaliser)."""
    ux = np.asarray(ix, dtype=np.int64).astype(np.uint64)  # negative positions wrap, which is fine for hashing
    uy = np.asarray(iy, dtype=np.int64).astype(np.uint64)
    h = (ux * _K1) ^ (uy * _K2)
    h = h + salt
    h ^= h >> np.uint64(30)
    h *= _M1
    h ^= h >> np.uint64(27)
    h *= _M2
    h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _value_noise(gx: np.ndarray, gy: np.ndarray, scale: float, salt: np.uint64) -> np.ndarray:
    """Smooth value noise in [-1, 1] on the global pixel grid, lattice ``scale`` pixels apart."""
    fx, fy = gx / scale, gy / scale
    ix, iy = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
    tx, ty = fx - ix, fy - iy
    sx, sy = tx * tx * (3 - 2 * tx), ty * ty * (3 - 2 * ty)  # smoothstep: no lattice creases
    lx = np.arange(ix.min(), ix.max() + 2)
    ly = np.arange(iy.min(), iy.max() + 2)
    lattice = _hash_uniform(lx[None, :], ly[:, None], salt) * 2 - 1
    jx, jy = ix - lx[0], iy - ly[0]
    v00, v01 = lattice[np.ix_(jy, jx)], lattice[np.ix_(jy, jx + 1)]
    v10, v11 = lattice[np.ix_(jy + 1, jx)], lattice[np.ix_(jy + 1, jx + 1)]
    top = v00 + (v01 - v00) * sx[None, :]
    bottom = v10 + (v11 - v10) * sx[None, :]
    return top + (bottom - top) * sy[:, None]


def _texture(gx, gy, salts) -> np.ndarray:
    """Two-octave value noise scaled to a standard deviation of about 1."""
    t = _value_noise(gx, gy, 7.0, salts[0]) + 0.6 * _value_noise(gx, gy, 2.5, salts[1])
    return (t / 0.5).astype(np.float32)


def _gaussian_noise(gx, gy, salt: np.uint64) -> np.ndarray:
    """Standard normal noise per pixel (Box-Muller on two hashed uniforms)."""
    u1 = _hash_uniform(gx[None, :], gy[:, None], salt)
    u2 = _hash_uniform(gx[None, :], gy[:, None], salt ^ np.uint64(0x5DEECE66D))
    return (np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2 * np.pi * u2)).astype(np.float32)


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------


def _rasterize_ids(geoms: np.ndarray, tree: shapely.STRtree, bounds, transform, shape) -> np.ndarray:
    """Feature ids (burn order preserved) on a grid; 0 where no feature."""
    idx = np.sort(tree.query(shapely.box(*bounds)))
    if len(idx) == 0:
        return np.zeros(shape, dtype=np.int32)
    return rasterio.features.rasterize(zip(geoms[idx], (idx + 1).tolist()), out_shape=shape, transform=transform,
                                       fill=0, dtype="int32")


def _nodata_triangle(s: DemoSpec, tile: str, row_start: int = 0, row_stop: int | None = None) -> np.ndarray:
    """Boolean mask of the swath-edge triangle of the nodata tile (all False for other tiles), rows
    ``row_start:row_stop`` of the tile."""
    row_stop = s.size if row_stop is None else row_stop
    mask = np.zeros((row_stop - row_start, s.size), dtype=bool)
    if tile != s.nodata_tile or s.nodata_size <= 0:
        return mask
    r, c = np.arange(row_start, row_stop), np.arange(s.size)
    from_top = r[:, None] if s.nodata_corner.startswith("upper") else (s.size - 1 - r)[:, None]
    from_left = c[None, :] if s.nodata_corner.endswith("left") else (s.size - 1 - c)[None, :]
    return (from_top + from_left) < s.nodata_size


def _triangle_polygon(s: DemoSpec):
    """The nodata triangle as a UTM polygon (for the country-wide coverage mask)."""
    left, bottom, right, top = s.tile_bounds(s.nodata_tile)
    d = s.nodata_size * PIXEL_M
    x0, sx = (left, 1) if s.nodata_corner.endswith("left") else (right, -1)
    y0, sy = (top, -1) if s.nodata_corner.startswith("upper") else (bottom, 1)
    return shapely.Polygon([(x0, y0), (x0 + sx * d, y0), (x0, y0 + sy * d)])


def _block_mean_20m(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """2 x 2 block means of the valid 10 m pixels; 0 (nodata) where none of the four is valid."""
    h, w = values.shape
    ph, pw = h + h % 2, w + w % 2
    v = np.zeros((ph, pw), dtype=np.float64)
    c = np.zeros((ph, pw), dtype=np.float64)
    v[:h, :w] = np.where(valid, values, 0)
    c[:h, :w] = valid
    total = v.reshape(ph // 2, 2, pw // 2, 2).sum(axis=(1, 3))
    count = c.reshape(ph // 2, 2, pw // 2, 2).sum(axis=(1, 3))
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return np.where(count > 0, np.clip(np.rint(mean), 1, 65535), 0).astype(np.uint16)


def _to_uint16(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return np.where(valid, np.clip(np.rint(values), 1, 65535), 0).astype(np.uint16)


#: Rows of a tile rendered at once (even, so 20 m pixels never straddle two strips).
_RENDER_ROWS = 1024


def _render_tile(s: DemoSpec, tile: str, land: Landscape, tree, params: FeatureParams, bands: list[str], salts: dict,
                 band_paths: dict[str, str], truth_path: str, table: ClassTable) -> None:
    """Rasterize the landscape on one tile grid and write its bands and truth, in strips of rows.

    Each strip is rendered with a margin of :data:`_MARGIN_PX` rows and columns, wider than the
    point-spread blur reaches, so strips join seamlessly and memory does not grow with the tile.
    """
    m = _MARGIN_PX
    left, top = s.tile_ul(tile)
    gx0, gy0 = s.tile_offset_px(tile)
    n_cols = s.size + 2 * m
    gx = np.arange(gx0 - m, gx0 - m + n_cols, dtype=np.int64)
    outputs = {"truth": (truth_path, from_origin(left, top, PIXEL_M, PIXEL_M), s.size, "truth", table)}
    for band in bands:
        factor = s.bands[band] // 10
        size = -(-s.size // factor)
        outputs[band] = (band_paths[band], from_origin(left, top, factor * PIXEL_M, factor * PIXEL_M), size, band, None)

    with ExitStack() as stack:
        dst = {}
        for key, (path, transform, size, description, colour_table) in outputs.items():
            tmp = stack.enter_context(atomic_output(path))
            profile = raster_profile(crs=s.crs, transform=transform, width=size, height=size,
                                     dtype="uint8" if key == "truth" else "uint16", nodata=0)
            dst[key] = stack.enter_context(rasterio.open(tmp, "w", **profile))
            dst[key].set_band_description(1, description)
            if colour_table is not None:
                write_class_colormap(dst[key], colour_table)

        for row0 in range(0, s.size, _RENDER_ROWS):
            row1 = min(s.size, row0 + _RENDER_ROWS)
            n_rows = row1 - row0 + 2 * m
            strip_top = top - (row0 - m) * PIXEL_M
            strip_transform = from_origin(left - m * PIXEL_M, strip_top, PIXEL_M, PIXEL_M)
            strip_bounds = (left - m * PIXEL_M, strip_top - n_rows * PIXEL_M, left + (s.size + m) * PIXEL_M, strip_top)
            ids = _rasterize_ids(land.geoms, tree, strip_bounds, strip_transform, (n_rows, n_cols))
            gy = np.arange(gy0 + row0 - m, gy0 + row0 - m + n_rows, dtype=np.int64)
            frac = np.clip(params.f_base[ids] + params.f_amp[ids] * _texture(gx, gy, salts["mix"]), 0, 1)
            frac = frac.astype(np.float32)
            bright = (1 + params.tex[ids] * _texture(gx, gy, salts["bright"])).astype(np.float32)

            inner = (slice(m, m + row1 - row0), slice(m, m + s.size))
            valid = ~_nodata_triangle(s, tile, row0, row1)
            truth = np.where(valid, params.truth[ids[inner]], 0).astype(np.uint8)
            dst["truth"].write(truth, 1, window=rasterio.windows.Window(0, row0, s.size, row1 - row0))

            for b_i, band in enumerate(bands):
                pure = params.primary[:, b_i].astype(np.float32)[ids] * (1 - frac) + \
                    params.secondary[:, b_i].astype(np.float32)[ids] * frac
                # the sensor's point-spread function mixes neighbouring surfaces at edges
                blurred = gaussian_filter(pure * bright, _PSF_SIGMA_PX, mode="nearest")[inner]
                noisy = blurred + SENSOR_NOISE[band] * _gaussian_noise(gx[m:-m], gy[m:-m], salts["noise"][b_i])
                if s.bands[band] == 10:
                    values, row_off = _to_uint16(noisy, valid), row0
                else:
                    values, row_off = _block_mean_20m(noisy, valid), row0 // 2
                dst[band].write(values, 1, window=rasterio.windows.Window(0, row_off, values.shape[1], values.shape[0]))


def _country_grid(s: DemoSpec, union):
    """EPSG:3035 10 m grid, aligned to multiples of 10 m, covering the union of tiles."""
    left, bottom, right, top = transform_bounds(s.crs, COUNTRY_CRS, *union.bounds, densify_pts=51)
    left, bottom = math.floor(left / PIXEL_M) * PIXEL_M, math.floor(bottom / PIXEL_M) * PIXEL_M
    right, top = math.ceil(right / PIXEL_M) * PIXEL_M, math.ceil(top / PIXEL_M) * PIXEL_M
    width, height = int(round((right - left) / PIXEL_M)), int(round((top - bottom) / PIXEL_M))
    return from_origin(left, top, PIXEL_M, PIXEL_M), width, height


def _reproject_geoms(geoms, src_crs: str, dst_crs: str, max_segment: float = 100.0):
    """Reproject shapely geometries (densified so long edges follow the projection)."""
    tr = pyproj.Transformer.from_crs(src_crs, dst_crs, always_xy=True)
    return shapely.transform(shapely.segmentize(geoms, max_segment), lambda x, y: tr.transform(x, y), interleaved=False)


def _shifted_ids(geoms, tree, win, transform, shift_px: int, salts) -> np.ndarray:
    """Feature ids of a window read through a smooth displacement field of up to ``shift_px`` px.

    Each pixel takes the id found (dx, dy) px away, with dx, dy integer, smooth over ~25 px and
    hashed from the global grid position (identical in every block): borders wander by 1-2 px
    along their length, as the borders of hand-digitised OSM polygons do.
    """
    h, w = int(win.height), int(win.width)
    grown = rasterio.windows.Window(win.col_off - shift_px, win.row_off - shift_px, w + 2 * shift_px,
                                    h + 2 * shift_px)
    ids = _rasterize_ids(geoms, tree, rasterio.windows.bounds(grown, transform),
                         rasterio.windows.transform(grown, transform), (h + 2 * shift_px, w + 2 * shift_px))
    gx = np.arange(win.col_off, win.col_off + w, dtype=np.int64)
    gy = np.arange(win.row_off, win.row_off + h, dtype=np.int64)
    dx, dy = (np.clip(np.rint(1.5 * shift_px * _value_noise(gx, gy, 25.0, salt)), -shift_px, shift_px).astype(int)
              for salt in salts)
    rows, cols = np.indices((h, w))
    return ids[rows + shift_px + dy, cols + shift_px + dx]


def _write_country_rasters(s: DemoSpec, land: Landscape, params: FeatureParams, union, truth_path: str,
                           label_path: str, table: ClassTable, shift_salts=None) -> None:
    """Country-wide truth (0 outside the valid tile data) and OSM label, block by block.

    The OSM label's borders are shifted (:func:`_shifted_ids`) when ``s.osm_border_shift_px`` > 0.
    """
    transform, width, height = _country_grid(s, union)
    geoms = _reproject_geoms(land.geoms, s.crs, COUNTRY_CRS)
    tree = shapely.STRtree(geoms)
    covered = union
    if s.nodata_size > 0:
        others = [shapely.box(*s.tile_bounds(t)) for t in s.tiles if t != s.nodata_tile]
        covered = union.difference(shapely.difference(_triangle_polygon(s), shapely.union_all(others)))
    covered = _reproject_geoms(covered, s.crs, COUNTRY_CRS)
    profile = raster_profile(crs=COUNTRY_CRS, transform=transform, width=width, height=height, dtype="uint8", nodata=0)
    with atomic_output(truth_path) as truth_tmp, atomic_output(label_path) as label_tmp:
        with rasterio.open(truth_tmp, "w", **profile) as truth_dst, \
                rasterio.open(label_tmp, "w", **profile) as label_dst:
            for win in block_windows(width, height):
                win_transform = rasterio.windows.transform(win, transform)
                win_bounds = rasterio.windows.bounds(win, transform)
                shape = (int(win.height), int(win.width))
                ids = _rasterize_ids(geoms, tree, win_bounds, win_transform, shape)
                inside = rasterio.features.geometry_mask([covered], shape, win_transform, invert=True)
                truth_dst.write(np.where(inside, params.truth[ids], 0).astype(np.uint8), 1, window=win)
                if s.osm_border_shift_px > 0:
                    ids = _shifted_ids(geoms, tree, win, transform, s.osm_border_shift_px, shift_salts)
                label_dst.write(params.osm[ids], 1, window=win)
            truth_dst.set_band_description(1, "truth")
            label_dst.set_band_description(1, "osm_label")
            write_class_colormap(truth_dst, table)
            write_class_colormap(label_dst, table)


# --------------------------------------------------------------------------------------
# Country outline
# --------------------------------------------------------------------------------------


def _country_outline(rng, s: DemoSpec, union):
    """An irregular outline covering 60-85 % of the tile union that cuts through every tile.

    Tries random shapes, scaling each (bisection on its radius) to a drawn coverage, until
    none of the tiles and none of the union's sides lies wholly inside it.
    """
    tiles = [shapely.box(*s.tile_bounds(t)) for t in s.tiles]
    ext = union.exterior if union.geom_type == "Polygon" else shapely.union_all([p.exterior for p in union.geoms])
    coords = np.asarray(ext.coords) if ext.geom_type == "LinearRing" else None
    sides = ([shapely.LineString(coords[i:i + 2]) for i in range(len(coords) - 1)] if coords is not None
             else list(shapely.get_parts(ext)))
    size = math.sqrt(union.area)
    best = None
    for _ in range(40):
        c = union.centroid
        center = (c.x + rng.normal(0, 0.05) * size, c.y + rng.normal(0, 0.05) * size)
        unit = _blob(rng, (0.0, 0.0), 1.0, roughness=0.5, n_vertices=720, n_harmonics=60, decay=1.3)
        target = rng.uniform(0.65, 0.8)
        lo, hi = 0.05 * size, 2.0 * size
        for _ in range(40):
            r = (lo + hi) / 2
            shape = _scale_about(unit, r, center)
            if shape.intersection(union).area / union.area < target:
                lo = r
            else:
                hi = r
        shape = _scale_about(unit, (lo + hi) / 2, center)
        ok = not any(shape.contains(t) for t in tiles) and not any(shape.contains(side) for side in sides)
        if ok:
            best = shape
            break
        if best is None:
            best = shape
    # a small exclave, as many countries have one
    for xy in _random_points_in(rng, union, 50):
        island = _blob(rng, tuple(xy), 0.04 * size, roughness=0.3)
        if island.distance(best) > 0.02 * size and union.contains(island):
            return shapely.MultiPolygon([best, island])
    return best


def _scale_about(unit_shape, factor: float, center) -> object:
    """``unit_shape`` (centred on 0, 0) scaled by ``factor`` and moved to ``center``."""
    return shapely.transform(unit_shape, lambda xy: xy * factor + np.asarray(center))


def _write_boundary(path: str, outline, s: DemoSpec) -> None:
    """GeoJSON FeatureCollection in EPSG:4326 (RFC 7946 coordinate order lon, lat)."""
    geo = _reproject_geoms(outline, s.crs, "EPSG:4326", max_segment=200.0)
    geo = shapely.set_precision(geo, 1e-7)
    collection = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {"name": s.country_name},
                      "geometry": shapely.geometry.mapping(geo)}],
    }
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(collection))


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------


def generate_demo_country(spec: dict, table: ClassTable, *, band_paths: dict[str, dict[str, str]],
                          truth_tile_paths: dict[str, str], truth_country_path: str,
                          label_path: str, boundary_path: str, seed: int) -> None:
    """Write the demo tiles' bands and truth, the country truth and OSM label rasters and the outline.

    ``band_paths[tile][band]`` and ``truth_tile_paths[tile]`` name the per-tile outputs for every
    tile of ``spec``.  Same ``spec`` and ``seed`` give identical files.
    """
    s = _parse_spec(spec)
    missing_codes = sorted({k.code for k in KINDS.values()} - set(table.codes.tolist()))
    if missing_codes:
        raise ValueError(f"demo: class table lacks the codes {missing_codes} the demo landscape uses")
    for tile in s.tiles:
        if tile not in truth_tile_paths or tile not in band_paths:
            raise ValueError(f"demo: no output path for tile {tile} in band_paths / truth_tile_paths")
        lacking = [b for b in s.bands if b not in band_paths[tile]]
        if lacking:
            raise ValueError(f"demo: no output path for bands {lacking} of tile {tile}")

    rng = np.random.default_rng(seed)
    bands = list(s.bands)
    salt_values = rng.integers(0, 2**63, size=4 + len(bands), dtype=np.uint64)
    salts = {"mix": salt_values[0:2], "bright": salt_values[2:4], "noise": salt_values[4:]}
    land, union = build_landscape(s, rng)
    params = _feature_params(rng, land, bands, s)
    outline = _country_outline(rng, s, union)

    tree = shapely.STRtree(land.geoms)
    for tile in s.tiles:
        _render_tile(s, tile, land, tree, params, bands, salts, band_paths[tile], truth_tile_paths[tile], table)
    # Own generator for the border shifts: the landscape and images stay those of the seed.
    shift_salts = np.random.default_rng([seed, 1]).integers(0, 2**63, size=2, dtype=np.uint64)
    _write_country_rasters(s, land, params, union, truth_country_path, label_path, table, shift_salts)
    _write_boundary(boundary_path, outline, s)


# --------------------------------------------------------------------------------------
# Dated products with synthetic clouds (demo.dates > 0): the input of the composite
# --------------------------------------------------------------------------------------

#: Top-of-cloud reflectance x 10000 per band: bright and flat in the visible and NIR, darker in the SWIR.
CLOUD_REFLECTANCE = {"B02": 7600, "B03": 7400, "B04": 7300, "B05": 7300, "B06": 7300, "B07": 7400, "B08": 7400,
                     "B8A": 7400, "B11": 4800, "B12": 3300}
#: Shadows: how much of the direct light reaches the ground, and where they fall (px, from the cloud).
SHADOW_FACTOR = 0.45
SHADOW_SHIFT_PX = (18, 12)
#: Lattice spacings (px) of the two octaves of the cloud field.
CLOUD_SCALES_PX = (70.0, 23.0)
#: First acquisition, days between acquisitions, and the radiometry of each date.
FIRST_DATE = "2020-06-05"
DATE_STEP_DAYS = 10
#: Illumination / phenology gain of date k (cycled): surfaces are not exactly alike from date to date.
DATE_GAINS = (1.0, 0.97, 1.03, 0.99)
#: Processing baseline of date k (cycled): 04.00 products carry BOA_ADD_OFFSET -1000 in their metadata.
DATE_BASELINES = ("02.14", "04.00")


def demo_date_names(spec: dict, tile: str) -> list[str]:
    """Folder names of the tile's dated products (ESA-like: S2A_MSIL2A_<date>T103031_N<baseline>_R108_T<tile>)."""
    import datetime

    n = int(spec.get("dates", 0))
    first = datetime.date.fromisoformat(FIRST_DATE)
    names = []
    for k in range(n):
        day = (first + datetime.timedelta(days=k * DATE_STEP_DAYS)).strftime("%Y%m%d")
        baseline = DATE_BASELINES[k % len(DATE_BASELINES)].replace(".", "")
        names.append(f"S2{'AB'[k % 2]}_MSIL2A_{day}T103031_N{baseline}_R108_T{tile}_{day}T120000")
    return names


def _cloud_field(gx: np.ndarray, gy: np.ndarray, salts) -> np.ndarray:
    """Smooth cloud field on the global grid (overlapping tiles see the same clouds)."""
    coarse = _value_noise(gx, gy, CLOUD_SCALES_PX[0], salts[0])
    return coarse + 0.45 * _value_noise(gx, gy, CLOUD_SCALES_PX[1], salts[1])


def _cloud_threshold(cover: float, salts) -> float:
    """Field value above which a pixel is cloud, so that about ``cover`` of any large area is (tile independent)."""
    g = np.arange(0, 2048, 2, dtype=np.int64)
    return float(np.quantile(_cloud_field(g, g, salts), 1 - cover)) if cover > 0 else np.inf


def _mtd_msil2a(baseline: str, offset: int) -> str:
    """A minimal MTD_MSIL2A.xml shaped like ESA's: level, baseline, quantification, BOA offsets, nodata."""
    physical = [b if b == "B8A" else f"B{int(b[1:])}" for b in
                ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")]
    offsets = "" if not offset else "<BOA_ADD_OFFSET_VALUES_LIST>" + "".join(
        f'<BOA_ADD_OFFSET band_id="{i}">{offset}</BOA_ADD_OFFSET>' for i in range(13)) + "</BOA_ADD_OFFSET_VALUES_LIST>"
    spectral = "".join(f'<Spectral_Information bandId="{i}" physicalBand="{p}"/>' for i, p in enumerate(physical))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">'
            f"<n1:General_Info><Product_Info><PROCESSING_LEVEL>Level-2A</PROCESSING_LEVEL>"
            f"<PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE></Product_Info><Product_Image_Characteristics>"
            "<Special_Values><SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT><SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX>"
            "</Special_Values><QUANTIFICATION_VALUES_LIST><BOA_QUANTIFICATION_VALUE unit=\"none\">10000"
            f"</BOA_QUANTIFICATION_VALUE></QUANTIFICATION_VALUES_LIST>{offsets}"
            f"<Spectral_Information_List>{spectral}</Spectral_Information_List></Product_Image_Characteristics>"
            "</n1:General_Info></n1:Level-2A_User_Product>\n")


def write_demo_dates(spec: dict, tile: str, clear_bands: dict[str, str], product_dirs: list[str], *,
                     seed: int) -> list[dict]:
    """The tile's dated L2A products (folders of band GeoTIFFs, SCL, MTD_MSIL2A.xml) from its cloud-free bands.

    Date k is the clear surface times a gain (:data:`DATE_GAINS`) under clouds of a smooth random
    field covering about ``spec["cloud_cover"]`` of the area (semi-transparent edges) and their
    shadows; its SCL marks clouds (9 opaque, 8 thin), shadows (3), nodata (0), else 4 (vegetation,
    the demo does not classify further).  Baseline 04.00 dates add 1000 to the DNs and list the
    -1000 offset.  Clouds follow the global pixel grid, so overlapping tiles agree.  Returns per
    date the share of cloud and shadow.
    """
    s = _parse_spec(spec)
    cover = float(spec.get("cloud_cover", 0.3))
    gx0, gy0 = s.tile_offset_px(tile)
    left, top = s.tile_ul(tile)
    summary = []
    for k, folder in enumerate(product_dirs):
        rng = np.random.default_rng([seed, 7919, k])   # the same clouds for every tile of a date
        salts = rng.integers(0, 2**63, size=2, dtype=np.uint64)
        threshold = _cloud_threshold(cover, salts)
        baseline = DATE_BASELINES[k % len(DATE_BASELINES)]
        add = 1000 if baseline >= "04.00" else 0
        gain = DATE_GAINS[k % len(DATE_GAINS)]
        name = folder.rstrip("/").rsplit("/", 1)[-1]
        day = name.split("_")[2][:8]
        with atomic_output(folder) as tmp:
            tmp.mkdir()
            counts = {"cloud": 0, "shadow": 0}
            with ExitStack() as stack:
                srcs = {b: stack.enter_context(rasterio.open(p)) for b, p in clear_bands.items()}
                dsts = {}
                for band, src in srcs.items():
                    profile = raster_profile(crs=src.crs, transform=src.transform, width=src.width,
                                             height=src.height, dtype="uint16", nodata=0)
                    dsts[band] = stack.enter_context(rasterio.open(tmp / f"T{tile}_{day}_{band}.tif", "w", **profile))
                    dsts[band].set_band_description(1, band)
                scl_size = -(-s.size // 2)
                dsts["SCL"] = stack.enter_context(rasterio.open(tmp / f"T{tile}_{day}_SCL.tif", "w", **raster_profile(
                    crs=s.crs, transform=from_origin(left, top, 2 * PIXEL_M, 2 * PIXEL_M), width=scl_size,
                    height=scl_size, dtype="uint8", nodata=None)))
                for window in block_windows(s.size, s.size, 1024):
                    r0, c0, h, w = window.row_off, window.col_off, window.height, window.width
                    gx = np.arange(gx0 + c0, gx0 + c0 + w, dtype=np.int64)
                    gy = np.arange(gy0 + r0, gy0 + r0 + h, dtype=np.int64)
                    sx, sy = SHADOW_SHIFT_PX
                    alpha = np.clip((_cloud_field(gx, gy, salts) - threshold) / 0.08 + 0.5, 0, 1)
                    shade = np.clip((_cloud_field(gx - sx, gy - sy, salts) - threshold) / 0.08 + 0.5, 0, 1)
                    shadow = (shade > 0) & (alpha == 0)
                    valid = np.ones((h, w), bool)
                    for band, src in srcs.items():
                        f = s.bands[band] // 10
                        win = rasterio.windows.Window(c0 // f, r0 // f, -(-w // f), -(-h // f))
                        clear = src.read(1, window=win).astype(np.float32)
                        a = alpha[::f, ::f] if f == 1 else _block_mean_20m(alpha * 1000, np.ones_like(valid)) / 1000.0
                        sh = shadow[::f, ::f]
                        surface = clear * gain * np.where(sh, SHADOW_FACTOR, 1.0)
                        values = surface * (1 - a) + CLOUD_REFLECTANCE[band] * a
                        ok = clear > 0
                        if f == 1:
                            valid &= ok
                        dn = np.where(ok, np.clip(np.rint(values), 1, 65535 - add) + add, 0).astype(np.uint16)
                        dsts[band].write(dn, 1, window=win)
                    scl = np.where(alpha >= 0.5, 9, np.where(alpha > 0, 8, np.where(shadow, 3, 4)))
                    scl = np.where(valid, scl, 0).astype(np.uint8)
                    counts["cloud"] += int(((alpha > 0) & valid).sum())
                    counts["shadow"] += int((shadow & valid).sum())
                    # SCL at 20 m: the most severe class of the four 10 m pixels (clouds over shadows over clear).
                    ph, pw = h + h % 2, w + w % 2
                    padded = np.zeros((ph, pw), np.uint8)
                    padded[:h, :w] = scl
                    blocks = padded.reshape(ph // 2, 2, pw // 2, 2)
                    rank = np.array([0, 0, 0, 2, 1, 1, 1, 1, 3, 4, 0, 0], np.uint8)[blocks]
                    quads = blocks.transpose(0, 2, 1, 3).reshape(ph // 2, pw // 2, 4)
                    worst = rank.transpose(0, 2, 1, 3).reshape(ph // 2, pw // 2, 4).argmax(axis=2)
                    best = np.take_along_axis(quads, worst[..., None], axis=2)[..., 0]
                    dsts["SCL"].write(best, 1, window=rasterio.windows.Window(c0 // 2, r0 // 2, best.shape[1],
                                                                             best.shape[0]))
            (tmp / "MTD_MSIL2A.xml").write_text(_mtd_msil2a(baseline, -add))
        total = float(s.size * s.size)
        summary.append({"product": name, "cloud": counts["cloud"] / total, "shadow": counts["shadow"] / total,
                        "baseline": baseline, "gain": gain})
    return summary
