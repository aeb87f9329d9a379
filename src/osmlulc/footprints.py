"""Tiles to country: tile ownership (footprints) and clips by a polygon (own footprint, country boundary).

1. :func:`tile_footprints_3035` / :func:`own_footprints`: neighbouring Sentinel-2 (MGRS) tiles
   overlap by about 10 km; every point is given to exactly one tile (the covering tile whose
   centre is nearest), so the mosaic does not depend on the merge order.
2. :func:`clip_to_footprint`: each classified tile keeps only the pixels of its own footprint.
3. :func:`clip_to_boundary`: the country mosaic (:mod:`osmlulc.mosaic`) is cropped and masked to the
   country boundary.

Every raster function works window by window, so memory does not grow with the country size.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pyproj
import rasterio
import rasterio.features
import shapely
from affine import Affine
from rasterio.transform import array_bounds
from rasterio.windows import Window
from shapely.geometry import Polygon, box

from osmlulc.boundaries import read_boundary
from osmlulc.classes import ClassTable
from osmlulc.io import (BLOCK_SIZE, InputError, atomic_output, block_windows, class_nodata, class_profile,
                        describe_class_raster, open_raster, require_crs)
from osmlulc.windows import covering_window

#: Target CRS of the tile footprints (the country products are in ETRS89-LAEA).
FOOTPRINT_CRS = "EPSG:3035"

#: Number of segments each footprint edge is cut into before reprojection, so the
#: reprojected outline follows the curved image of a straight UTM edge.
_SEGMENTS_PER_EDGE = 64


@functools.lru_cache(maxsize=64)
def _transformer(src_crs: str, dst_crs: str) -> pyproj.Transformer | None:
    """The (cached: building one costs ~0.1 s, a country has hundreds of tiles) transformer; None if the CRSs
    are equal."""
    if pyproj.CRS.from_user_input(src_crs) == pyproj.CRS.from_user_input(dst_crs):
        return None
    return pyproj.Transformer.from_crs(src_crs, dst_crs, always_xy=True)


def reproject_geometry(geometry, src_crs, dst_crs):
    """Reproject a shapely geometry, densifying it first so curved images of straight edges are followed."""
    transformer = _transformer(str(src_crs), str(dst_crs))
    if transformer is None:
        return geometry
    minx, miny, maxx, maxy = geometry.bounds
    max_segment = max(maxx - minx, maxy - miny) / _SEGMENTS_PER_EDGE
    if max_segment > 0:
        geometry = shapely.segmentize(geometry, max_segment)

    def transform_coords(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geometry, transform_coords)


def tile_footprints_3035(tile_grid: dict[str, dict]) -> dict[str, Polygon]:
    """Tile footprints in EPSG:3035 from ``{tile: {"crs": "EPSG:32632", "bounds": [l, b, r, t]}}``.

    The edges are densified before reprojection, so the footprint follows the (slightly
    curved) image of the UTM tile edges in the LAEA projection.
    """
    footprints = {}
    for tile, grid in tile_grid.items():
        left, bottom, right, top = (float(v) for v in grid["bounds"])
        if not (right > left and top > bottom):
            raise InputError(f"tile {tile}: bounds {grid['bounds']} are not [left, bottom, right, top]")
        footprints[tile] = reproject_geometry(box(left, bottom, right, top), grid["crs"], FOOTPRINT_CRS)
    return footprints


def _bisector_halfplanes(centre_a: np.ndarray, centre_b: np.ndarray, reach: float) -> tuple[Polygon, Polygon]:
    """The two half-planes (clipped to ``reach``) on either side of the bisector of two centres.

    Both polygons are built from the same two bisector points, so their shared edge is
    identical and the pieces cut from neighbouring tiles meet without gaps or overlaps.
    """
    direction = (centre_b - centre_a) / np.linalg.norm(centre_b - centre_a)
    normal = np.array([-direction[1], direction[0]])
    middle = (centre_a + centre_b) / 2
    p1, p2 = middle + normal * reach, middle - normal * reach
    towards_b = Polygon([p1, p1 + direction * reach, p2 + direction * reach, p2])
    towards_a = Polygon([p1, p1 - direction * reach, p2 - direction * reach, p2])
    return towards_a, towards_b


def own_footprints(footprints: dict[str, Polygon]) -> dict[str, Polygon]:
    """Split tile overlaps so every covered point belongs to exactly one tile.

    A point goes to the tile whose footprint contains it and whose centre (footprint
    centroid) is nearest: tile ``i`` loses, for every overlapping tile ``j``, the part of
    ``j``'s footprint on ``j``'s side of the bisector of the two centres.  Where two tiles
    cover a point, this is the Voronoi split of their centres; where a point is covered by
    one tile only, it stays with that tile even if another tile's centre is nearer.
    Tiles with coinciding centres are split by tile id (the smaller id wins), so the result
    is deterministic.  The results do not overlap and their union is the union of the inputs.
    """
    ids = sorted(footprints)
    centres = {t: np.array(footprints[t].centroid.coords[0]) for t in ids}
    union_bounds = shapely.union_all([footprints[t] for t in ids]).bounds
    reach = 4 * math.hypot(union_bounds[2] - union_bounds[0], union_bounds[3] - union_bounds[1]) + 1.0
    lost: dict[str, list] = {t: [] for t in ids}
    # Overlapping pairs from a spatial index (a country-scale config has over a thousand tiles),
    # in the order of a nested loop over the sorted ids.
    geometries = [footprints[t] for t in ids]
    first, second = shapely.STRtree(geometries).query(geometries, predicate="intersects")
    pairs = sorted((i, j) for i, j in zip(first.tolist(), second.tolist()) if i < j)
    for a, b in ((ids[i], ids[j]) for i, j in pairs):
        if np.allclose(centres[a], centres[b]):
            lost[b].append(footprints[a])  # same centre: the smaller id keeps the overlap
            continue
        towards_a, towards_b = _bisector_halfplanes(centres[a], centres[b], reach)
        lost[a].append(footprints[b].intersection(towards_b))
        lost[b].append(footprints[a].intersection(towards_a))
    own = {}
    for t in ids:
        geometry = footprints[t]
        if lost[t]:
            geometry = geometry.difference(shapely.union_all(lost[t]))
        own[t] = geometry
    return own


def outside_mask(geometry, transform: Affine, shape_: tuple[int, int]) -> np.ndarray:
    """Boolean mask, True where a pixel centre lies outside ``geometry`` (a prepared shapely geometry).

    Windows fully inside or outside are answered without rasterizing; otherwise only the part
    of the geometry within the window is rasterized (a country outline has many vertices).
    """
    height, width = shape_
    window_box = box(*array_bounds(height, width, transform))
    if geometry.contains(window_box):
        return np.zeros(shape_, dtype=bool)
    if not geometry.intersects(window_box):
        return np.ones(shape_, dtype=bool)
    part = shapely.clip_by_rect(geometry, *window_box.bounds)
    if part.is_empty:
        return np.ones(shape_, dtype=bool)
    return rasterio.features.geometry_mask([part], out_shape=shape_, transform=transform)


def clip_to_footprint(src_path, footprint_3035: Polygon, dst_path, table: ClassTable | None, *,
                      block_size: int = BLOCK_SIZE * 2) -> None:
    """Copy a classified tile, setting pixels whose centre lies outside its own footprint to nodata (0).

    The footprint (EPSG:3035) is densified and reprojected to the tile's CRS; the output is on
    the tile's own grid.  ``table`` None: a continuous uint8 layer (nodata 0, no colour table).
    """
    with open_raster(src_path, "classified tile") as src:
        require_crs(src, src_path, "classified tile")
        footprint = reproject_geometry(footprint_3035, FOOTPRINT_CRS, src.crs)
        shapely.prepare(footprint)
        profile = class_profile(src.crs, src.transform, src.width, src.height, table)
        with atomic_output(dst_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            describe_class_raster(dst, table, src)
            for window in block_windows(src.width, src.height, block_size):
                data = src.read(1, window=window)
                outside = outside_mask(footprint, src.window_transform(window), data.shape)
                data[outside] = class_nodata(table)
                dst.write(data, 1, window=window)



def clip_to_boundary(src_path, boundary_path, dst_path, table: ClassTable | None, *,
                     block_size: int = BLOCK_SIZE * 2) -> None:
    """Crop the mosaic to the boundary's bounding box and set pixels outside the boundary to nodata.

    The boundary is any OGR vector file (all its polygons are united), reprojected to the
    raster CRS.  A pixel is inside if its centre is.
    """
    with open_raster(src_path, "country mosaic") as src:
        require_crs(src, src_path, "country mosaic")
        boundary = read_boundary(boundary_path, src.crs)
        if not boundary.intersects(box(*src.bounds)):
            raise InputError(f"boundary {boundary_path} does not overlap the raster {src_path}; "
                             "check that it is the right country and has the right CRS")
        crop = covering_window(src.transform, src.width, src.height, boundary.bounds)
        if crop.width <= 0 or crop.height <= 0:
            raise InputError(f"boundary {boundary_path} does not overlap the raster {src_path}")
        crop_transform = src.window_transform(crop)
        profile = class_profile(src.crs, crop_transform, crop.width, crop.height, table)
        with atomic_output(dst_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            describe_class_raster(dst, table, src)
            for window in block_windows(crop.width, crop.height, block_size):
                src_window = Window(window.col_off + crop.col_off, window.row_off + crop.row_off,
                                    window.width, window.height)
                data = src.read(1, window=src_window)
                data[outside_mask(boundary, dst.window_transform(window), data.shape)] = class_nodata(table)
                dst.write(data, 1, window=window)
