"""The demo country outline and the entry point :func:`generate_demo_country`."""

from __future__ import annotations

import json
import math

import numpy as np
import shapely

from osmlulc.classes import ClassTable
from osmlulc.demo.landscape import blob, build_landscape, random_points_in
from osmlulc.demo.render import render_tile, reproject_geoms, write_country_rasters
from osmlulc.demo.spec import DemoSpec, parse_spec
from osmlulc.demo.surfaces import KINDS, feature_params
from osmlulc.io import atomic_output


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
        unit = blob(rng, (0.0, 0.0), 1.0, roughness=0.5, n_vertices=720, n_harmonics=60, decay=1.3)
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
    for xy in random_points_in(rng, union, 50):
        island = blob(rng, tuple(xy), 0.04 * size, roughness=0.3)
        if island.distance(best) > 0.02 * size and union.contains(island):
            return shapely.MultiPolygon([best, island])
    return best


def _scale_about(unit_shape, factor: float, center) -> object:
    """``unit_shape`` (centred on 0, 0) scaled by ``factor`` and moved to ``center``."""
    return shapely.transform(unit_shape, lambda xy: xy * factor + np.asarray(center))


def _write_boundary(path: str, outline, s: DemoSpec) -> None:
    """GeoJSON FeatureCollection in EPSG:4326 (RFC 7946 coordinate order lon, lat)."""
    geo = reproject_geoms(outline, s.crs, "EPSG:4326", max_segment=200.0)
    geo = shapely.set_precision(geo, 1e-7)
    collection = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {"name": s.country_name},
                      "geometry": shapely.geometry.mapping(geo)}],
    }
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(collection))



def generate_demo_country(spec: dict, table: ClassTable, *, band_paths: dict[str, dict[str, str]],
                          truth_tile_paths: dict[str, str], truth_country_path: str,
                          label_path: str, boundary_path: str, seed: int) -> None:
    """Write the demo tiles' bands and truth, the country truth and OSM label rasters and the outline.

    ``band_paths[tile][band]`` and ``truth_tile_paths[tile]`` name the per-tile outputs for every
    tile of ``spec``.  Same ``spec`` and ``seed`` give identical files.
    """
    s = parse_spec(spec)
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
    params = feature_params(rng, land, bands, s)
    outline = _country_outline(rng, s, union)

    tree = shapely.STRtree(land.geoms)
    for tile in s.tiles:
        render_tile(s, tile, land, tree, params, bands, salts, band_paths[tile], truth_tile_paths[tile], table)
    # Own generator for the border shifts: the landscape and images stay those of the seed.
    shift_salts = np.random.default_rng([seed, 1]).integers(0, 2**63, size=2, dtype=np.uint64)
    write_country_rasters(s, land, params, union, truth_country_path, label_path, table, shift_salts)
    _write_boundary(boundary_path, outline, s)
