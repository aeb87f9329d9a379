"""The demo landscape as vector geometry (UTM): zones, parcels, towns, roads, rivers, lakes, wetlands."""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely.ops import substring

from osmlulc.demo.spec import PIXEL_M, DemoSpec
from osmlulc.demo.surfaces import KIND_NAMES, ZONE_WEIGHTS, Landscape


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


def blob(rng, center: tuple[float, float], radius: float, roughness: float = 0.25, n_vertices: int = 96,
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


def random_points_in(rng, polygon, n: int) -> np.ndarray:
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
    town = shapely.make_valid(blob(rng, center, radius, roughness=0.3)).intersection(cell)
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
    through = random_points_in(rng, union, 1)[0]
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
    source = shapely.Point(random_points_in(rng, union, 1)[0])
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
            center = random_points_in(rng, tile.buffer(-1.5 * radius), 1)[0]
            lake = blob(rng, tuple(center), radius, roughness=0.35)
            if avoid is None or not lake.intersects(avoid):
                lakes.append(lake)
                area += lake.area
                break
    for _ in range(400):
        if area >= target_area:
            break
        # the last lake must not overshoot the target by much
        radius = min(rng.uniform(0.3, 1.0) * max_radius, max(100.0, math.sqrt(1.2 * (target_area - area) / np.pi)))
        center = random_points_in(rng, union, 1)[0]
        lake = blob(rng, tuple(center), radius, roughness=0.35)
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
            fringe = lake.buffer(rng.uniform(50, 150)).intersection(blob(rng, near, r * rng.uniform(0.7, 1.2)))
            wetlands.append(fringe)
    on_river = shapely.union_all(river_axes).intersection(union)
    n_marsh = max(1, int(on_river.length / 3000))
    for _ in range(n_marsh if not on_river.is_empty else 0):
        p = on_river.interpolate(rng.uniform(0, on_river.length))
        wetlands.append(blob(rng, (p.x, p.y), rng.uniform(100, 250)))
    return [shapely.make_valid(w) for w in wetlands]


def _main_roads(rng, towns: list, union, extent) -> list:
    """Main roads: a minimum spanning tree between the towns, plus roads leaving the area."""
    points = [t.representative_point().coords[0] for t in towns if t is not None]
    if not points:
        points = [tuple(random_points_in(rng, union, 1)[0])]
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
