"""Country-level postprocessing: tile ownership, mosaic, boundary clip, label transfer, product, sieve.

The chain, per country:

1. :func:`tile_footprints_3035` / :func:`own_footprints`: neighbouring Sentinel-2 (MGRS) tiles
   overlap by about 10 km; every point is given to exactly one tile (the covering tile whose
   centre is nearest), so the mosaic does not depend on the merge order.
2. :func:`clip_to_footprint`: each classified tile keeps only the pixels of its own footprint.
3. :func:`merge_tiles`: the clipped tiles are warped (nearest) onto one EPSG:3035 grid and merged.
4. :func:`clip_to_boundary`: the mosaic is cropped and masked to the country boundary.
5. :func:`transfer_labels` / :func:`merge_product`: the OSM labels are put onto the same grid and
   take precedence over the classification (the OSMLULC product).
6. :func:`sieve` and :func:`extract_land_use`: minimum mapping unit and binary layers (water).

Every raster function works window by window, so memory does not grow with the country size.
"""

from __future__ import annotations

import functools
import math
import os
from contextlib import ExitStack
from typing import Iterable

import fiona
import fiona.errors
import fiona.transform
import numpy as np
import pyproj
import rasterio
import rasterio.features
import rasterio.errors
import rasterio.warp
import rasterio.windows
import shapely
from affine import Affine
from rasterio.enums import Resampling
from rasterio.transform import array_bounds
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from shapely.geometry import Polygon, box, shape

from osmlulc.classes import ClassTable
from osmlulc.logs import progress
from osmlulc.io import (
    BLOCK_SIZE,
    InputError,
    atomic_output,
    block_windows,
    open_raster,
    raster_profile,
    same_grid,
    write_class_colormap,
)

#: Target CRS of the tile footprints (the country products are in ETRS89-LAEA).
FOOTPRINT_CRS = "EPSG:3035"

#: Number of segments each footprint edge is cut into before reprojection, so the
#: reprojected outline follows the curved image of a straight UTM edge.
_SEGMENTS_PER_EDGE = 64

#: Edge (pixels) of the chunks merge_tiles writes; a multiple of the GeoTIFF block
#: size, so no compressed block is written twice (which would bloat the file).
MERGE_CHUNK = 8 * BLOCK_SIZE

#: Colour of the "other class" value (0) of a binary land-use layer: light grey.
_OTHER_COLOUR = (211, 211, 211, 255)

#: Value of a binary land-use layer where the source is nodata.
BINARY_NODATA = 255


# --------------------------------------------------------------------------- geometry helpers


@functools.lru_cache(maxsize=64)
def _transformer(src_crs: str, dst_crs: str) -> pyproj.Transformer | None:
    """The (cached: building one costs ~0.1 s, a country has hundreds of tiles) transformer; None if the CRSs
    are equal."""
    if pyproj.CRS.from_user_input(src_crs) == pyproj.CRS.from_user_input(dst_crs):
        return None
    return pyproj.Transformer.from_crs(src_crs, dst_crs, always_xy=True)


def _reproject_geometry(geometry, src_crs, dst_crs):
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
        footprints[tile] = _reproject_geometry(box(left, bottom, right, top), grid["crs"], FOOTPRINT_CRS)
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


def _outside_mask(geometry, transform: Affine, shape_: tuple[int, int]) -> np.ndarray:
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


def _read_boundary(boundary_path: str | os.PathLike, dst_crs):
    """The union of all (multi)polygons of a vector file, reprojected to ``dst_crs``."""
    try:
        with fiona.open(boundary_path) as layer:
            if layer.crs is None or not layer.crs:
                raise InputError(f"boundary {boundary_path} has no CRS; save it with one (e.g. EPSG:4326)")
            geometries = []
            for feature in layer:
                if feature.geometry is None:
                    continue
                projected = fiona.transform.transform_geom(layer.crs, dst_crs.to_wkt(), feature.geometry)
                geometries.append(shape(projected))
    except (fiona.errors.FionaError, fiona.errors.DriverError, OSError) as err:
        raise InputError(f"boundary {boundary_path} cannot be read as a vector file ({err})") from None
    # Repair self-intersections etc. and keep only the areal parts.
    polygons = [shapely.make_valid(g) for g in geometries if not g.is_empty]
    polygonal = [p for g in polygons for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")]
    boundary = shapely.union_all(polygonal) if polygonal else Polygon()
    if boundary.is_empty or boundary.area <= 0:
        raise InputError(f"boundary {boundary_path} contains no polygon with an area; it must be the country outline")
    shapely.prepare(boundary)
    return boundary


# --------------------------------------------------------------------------- raster helpers


def _class_profile(crs, transform, width: int, height: int, table: ClassTable | None) -> dict:
    """Creation profile of a uint8 class-code raster (nodata: the table's) or continuous layer (table None: 0)."""
    return raster_profile(crs=crs, transform=transform, width=width, height=height, dtype="uint8",
                          nodata=_nodata(table))


def _apply_lut(values: np.ndarray, lut: np.ndarray, nodata: int) -> np.ndarray:
    """``lut[values]`` as uint8, ``nodata`` for values outside the lookup range or not whole numbers."""
    if values.dtype.kind == "f":
        whole = np.isfinite(values) & (np.floor(values) == values)
        values = np.where(whole, values, -1).astype(np.int64)
    inside = (values >= 0) & (values < len(lut))
    out = np.full(values.shape, nodata, dtype=np.uint8)
    out[inside] = lut[values[inside].astype(np.int64)]
    return out


def _class_code_lut(table: ClassTable) -> np.ndarray:
    """Lookup array: value -> the value if it is a class code, else nodata."""
    lut = np.full(256, table.nodata, dtype=np.uint8)
    lut[table.codes] = table.codes
    return lut


def label_lookup(table: ClassTable, coding: str) -> np.ndarray:
    """Lookup array from label raster values to class codes (nodata where unmapped), for ``coding``.

    ``classes``: the values are class codes; ``corine``: CORINE level-3 codes.
    """
    if coding == "classes":
        return _class_code_lut(table)
    if coding == "corine":
        return table.corine_lookup()
    raise ValueError(f"unknown label coding {coding!r}; use 'classes' or 'corine'")


def _nodata(table: ClassTable | None) -> int:
    """Nodata of a class raster, or 0 for a continuous uint8 layer (``table`` None, e.g. the confidence)."""
    return table.nodata if table is not None else 0


def _describe(dst, table: ClassTable | None, src) -> None:
    """Class colour table and names for a class raster; for a continuous layer, the source's band description
    and tags."""
    if table is not None:
        write_class_colormap(dst, table)
    else:
        dst.set_band_description(1, src.descriptions[0] or "")
        dst.update_tags(1, **src.tags(1))


def _require_crs(src, path, what: str) -> None:
    if src.crs is None:
        raise InputError(f"{what} {path} has no CRS")


def _bounds_overlap(a: Iterable[float], b: Iterable[float]) -> bool:
    al, ab, ar, at = a
    bl, bb, br, bt = b
    return al < br and bl < ar and ab < bt and bb < at


# --------------------------------------------------------------------------- tile -> country


def clip_to_footprint(src_path, footprint_3035: Polygon, dst_path, table: ClassTable | None, *,
                      block_size: int = BLOCK_SIZE * 2) -> None:
    """Copy a classified tile, setting pixels whose centre lies outside its own footprint to nodata (0).

    The footprint (EPSG:3035) is densified and reprojected to the tile's CRS; the output is on
    the tile's own grid.  ``table`` None: a continuous uint8 layer (nodata 0, no colour table).
    """
    with open_raster(src_path, "classified tile") as src:
        _require_crs(src, src_path, "classified tile")
        footprint = _reproject_geometry(footprint_3035, FOOTPRINT_CRS, src.crs)
        shapely.prepare(footprint)
        profile = _class_profile(src.crs, src.transform, src.width, src.height, table)
        with atomic_output(dst_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            _describe(dst, table, src)
            for window in block_windows(src.width, src.height, block_size):
                data = src.read(1, window=window)
                outside = _outside_mask(footprint, src.window_transform(window), data.shape)
                data[outside] = _nodata(table)
                dst.write(data, 1, window=window)


def _aligned_grid(bounds, resolution: float) -> tuple[Affine, int, int]:
    """Grid whose edges are multiples of ``resolution`` and which covers ``bounds``."""
    left, bottom, right, top = bounds
    # A tiny tolerance keeps an edge already on the grid from being pushed one pixel out.
    eps = 1e-6
    left = math.floor(left / resolution + eps) * resolution
    bottom = math.floor(bottom / resolution + eps) * resolution
    right = math.ceil(right / resolution - eps) * resolution
    top = math.ceil(top / resolution - eps) * resolution
    width = int(round((right - left) / resolution))
    height = int(round((top - bottom) / resolution))
    return Affine(resolution, 0.0, left, 0.0, -resolution, top), width, height


def _subgrid(transform: Affine, width: int, height: int, bounds) -> tuple[Affine, int, int]:
    """The smallest sub-grid of (transform, width, height) that covers ``bounds``."""
    left, bottom, right, top = bounds
    inverse = ~transform
    col0, row0 = inverse @ (left, top)
    col1, row1 = inverse @ (right, bottom)
    eps = 1e-6
    col0, row0 = max(0, math.floor(col0 + eps)), max(0, math.floor(row0 + eps))
    col1, row1 = min(width, math.ceil(col1 - eps)), min(height, math.ceil(row1 - eps))
    return transform @ Affine.translation(col0, row0), col1 - col0, row1 - row0


def merge_tiles(src_paths: list[str], dst_path, table: ClassTable | None, *, crs: str = FOOTPRINT_CRS,
                resolution: float = 10.0, chunk_size: int = MERGE_CHUNK, bounds=None) -> None:
    """Mosaic classified tiles onto one ``crs`` grid at ``resolution``, aligned to multiples of it.

    Each tile is warped with nearest neighbour through a :class:`WarpedVRT` onto its part of the
    output grid; the mosaic is written chunk by chunk (``chunk_size`` x ``chunk_size`` pixels, our own
    loop, not rasterio.merge's memory-limit arithmetic), so it is never in memory. The first valid value
    wins where tiles overlap; after :func:`clip_to_footprint` the valid parts of the tiles do not
    overlap anyway. ``bounds`` (in ``crs``): the extent of the mosaic, e.g. of all tiles of a country
    when some are missing (their area is nodata); default the union of the tiles.
    ``table`` None: a continuous uint8 layer (nodata 0, no colour table).
    """
    if not src_paths:
        raise ValueError("merge_tiles: no tiles to merge")
    nodata = _nodata(table)
    with ExitStack() as stack:
        sources = [stack.enter_context(open_raster(p, "classified tile")) for p in src_paths]
        tile_bounds = []
        for src, path in zip(sources, src_paths):
            _require_crs(src, path, "classified tile")
            tile_bounds.append(rasterio.warp.transform_bounds(src.crs, crs, *src.bounds, densify_pts=64))
        union = (min(b[0] for b in tile_bounds), min(b[1] for b in tile_bounds),
                 max(b[2] for b in tile_bounds), max(b[3] for b in tile_bounds))
        if bounds is not None:
            union = (min(union[0], bounds[0]), min(union[1], bounds[1]),
                     max(union[2], bounds[2]), max(union[3], bounds[3]))
        transform, width, height = _aligned_grid(union, resolution)
        placed = []  # (vrt, column and row offset of the vrt in the mosaic)
        for src, tile_bound in zip(sources, tile_bounds):
            vrt_transform, vrt_width, vrt_height = _subgrid(transform, width, height, tile_bound)
            col_off, row_off = (~transform) @ (vrt_transform.c, vrt_transform.f)
            vrt = stack.enter_context(WarpedVRT(
                src, crs=crs, transform=vrt_transform, width=vrt_width, height=vrt_height,
                resampling=Resampling.nearest, src_nodata=src.nodata if src.nodata is not None else 0,
                nodata=nodata))
            placed.append((vrt, Window(int(round(col_off)), int(round(row_off)), vrt_width, vrt_height)))
        profile = _class_profile(crs, transform, width, height, table)
        with atomic_output(dst_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            _describe(dst, table, sources[0])
            for window in progress(list(block_windows(width, height, chunk_size)), "mosaic chunks"):
                chunk = np.full((window.height, window.width), nodata, dtype=np.uint8)
                for vrt, place in placed:
                    try:
                        overlap = window.intersection(place)
                    except rasterio.errors.WindowError:  # disjoint
                        continue
                    data = vrt.read(1, window=Window(overlap.col_off - place.col_off, overlap.row_off - place.row_off,
                                                     overlap.width, overlap.height))
                    rows = slice(overlap.row_off - window.row_off, overlap.row_off - window.row_off + overlap.height)
                    cols = slice(overlap.col_off - window.col_off, overlap.col_off - window.col_off + overlap.width)
                    target = chunk[rows, cols]
                    fill = (target == nodata) & (data != nodata)  # the first valid value wins
                    target[fill] = data[fill]
                dst.write(chunk, 1, window=window)


def _crop_window(src, geometry) -> Window:
    """Pixel window of ``src`` covering the bounding box of ``geometry`` (whole pixels, inside the raster)."""
    left, bottom, right, top = geometry.bounds
    inverse = ~src.transform
    col0, row0 = inverse @ (left, top)
    col1, row1 = inverse @ (right, bottom)
    col0, row0 = max(0, math.floor(col0)), max(0, math.floor(row0))
    col1, row1 = min(src.width, math.ceil(col1)), min(src.height, math.ceil(row1))
    return Window(col0, row0, col1 - col0, row1 - row0)


def clip_to_boundary(src_path, boundary_path, dst_path, table: ClassTable | None, *,
                     block_size: int = BLOCK_SIZE * 2) -> None:
    """Crop the mosaic to the boundary's bounding box and set pixels outside the boundary to nodata.

    The boundary is any OGR vector file (all its polygons are united), reprojected to the
    raster CRS.  A pixel is inside if its centre is.
    """
    with open_raster(src_path, "country mosaic") as src:
        _require_crs(src, src_path, "country mosaic")
        boundary = _read_boundary(boundary_path, src.crs)
        if not boundary.intersects(box(*src.bounds)):
            raise InputError(f"boundary {boundary_path} does not overlap the raster {src_path}; "
                             "check that it is the right country and has the right CRS")
        crop = _crop_window(src, boundary)
        if crop.width <= 0 or crop.height <= 0:
            raise InputError(f"boundary {boundary_path} does not overlap the raster {src_path}")
        crop_transform = src.window_transform(crop)
        profile = _class_profile(src.crs, crop_transform, crop.width, crop.height, table)
        with atomic_output(dst_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            _describe(dst, table, src)
            for window in block_windows(crop.width, crop.height, block_size):
                src_window = Window(window.col_off + crop.col_off, window.row_off + crop.row_off,
                                    window.width, window.height)
                data = src.read(1, window=src_window)
                data[_outside_mask(boundary, dst.window_transform(window), data.shape)] = _nodata(table)
                dst.write(data, 1, window=window)


# --------------------------------------------------------------------------- labels and product


def transfer_labels(label_path, grid_path, dst_path, table: ClassTable, *, coding: str = "classes",
                    block_size: int = BLOCK_SIZE * 2) -> None:
    """Put a label raster (any CRS) onto the grid of ``grid_path`` (nearest neighbour), as class codes.

    ``coding="classes"``: the label values are class codes (other values become nodata);
    ``coding="corine"``: they are CORINE level-3 codes, remapped with ``table.corine_lookup()``.
    Pixels where the grid raster's first band is nodata become nodata.
    """
    lut = label_lookup(table, coding)
    with open_raster(label_path, "label raster") as label, open_raster(grid_path, "grid raster") as grid:
        _require_crs(label, label_path, "label raster")
        _require_crs(grid, grid_path, "grid raster")
        label_bounds = rasterio.warp.transform_bounds(label.crs, grid.crs, *label.bounds, densify_pts=64)
        if not _bounds_overlap(label_bounds, grid.bounds):
            raise InputError(f"label raster {label_path} does not overlap the grid of {grid_path}")
        # Outside the label raster the VRT yields its nodata, which the lookup maps to nodata.
        fill = label.nodata if label.nodata is not None else 0
        profile = _class_profile(grid.crs, grid.transform, grid.width, grid.height, table)
        with WarpedVRT(label, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                       resampling=Resampling.nearest, nodata=fill) as vrt, \
                atomic_output(dst_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            write_class_colormap(dst, table)
            for window in block_windows(grid.width, grid.height, block_size):
                codes = _apply_lut(vrt.read(1, window=window), lut, table.nodata)
                codes[grid.read_masks(1, window=window) == 0] = table.nodata
                dst.write(codes, 1, window=window)


def merge_product(classified_path, label_path, dst_path, table: ClassTable, *,
                  block_size: int = BLOCK_SIZE * 2) -> None:
    """The OSMLULC product: the OSM label where there is one, the classification elsewhere.

    Both rasters must be on the same grid (see :func:`transfer_labels`); the product is
    nodata wherever the classification is nodata.
    """
    valid_code = table.index_of_code() >= 0
    with open_raster(classified_path, "classification") as cls, open_raster(label_path, "label raster") as label:
        if not same_grid(cls, label):
            raise InputError(f"label raster {label_path} is not on the grid of {classified_path}; "
                             "run transfer_labels onto it first")
        profile = _class_profile(cls.crs, cls.transform, cls.width, cls.height, table)
        with atomic_output(dst_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            write_class_colormap(dst, table)
            for window in block_windows(cls.width, cls.height, block_size):
                classified = cls.read(1, window=window)
                labels = label.read(1, window=window)
                product = np.where(valid_code[labels], labels, classified).astype(np.uint8)
                product[classified == table.nodata] = table.nodata
                dst.write(product, 1, window=window)


def extract_land_use(src_path, code: int, dst_path, table: ClassTable, *, block_size: int = BLOCK_SIZE * 2) -> None:
    """Binary layer of one land use: 1 where src == code, 0 for other classes, 255 where src is nodata.

    The colour table has two entries: 0 light grey, 1 the class colour.
    """
    code = int(code)
    if code not in set(table.codes.tolist()):
        raise InputError(f"land use {code} is not a class code of the class table ({table.codes.tolist()})")
    colour = (*table.classes[int(table.index_of_code()[code])].colour, 255)
    with open_raster(src_path, "classification") as src:
        nodata = src.nodata if src.nodata is not None else table.nodata
        profile = raster_profile(crs=src.crs, transform=src.transform, width=src.width, height=src.height,
                                 dtype="uint8", nodata=BINARY_NODATA)
        with atomic_output(dst_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            dst.write_colormap(1, {0: _OTHER_COLOUR, 1: colour})
            dst.update_tags(1, CLASS_0=f"not {table.name(code)}", CLASS_1=table.name(code))
            for window in block_windows(src.width, src.height, block_size):
                data = src.read(1, window=window)
                binary = (data == code).astype(np.uint8)
                binary[data == nodata] = BINARY_NODATA
                dst.write(binary, 1, window=window)


def sieve(src_path, dst_path, *, size: int, connectivity: int, halo: int, block_size: int = BLOCK_SIZE * 2) -> None:
    """Minimum mapping unit: merge connected regions of fewer than ``size`` pixels into a neighbour.

    :func:`rasterio.features.sieve` (GDAL) runs on each block grown by ``halo`` pixels on
    every side (cut at the raster edge) and only the block's core is written, so memory is
    bounded by (block + 2 halo)^2.  Nodata pixels are masked: never changed, never a fill.

    Exactness: with ``halo >= size`` a region that touches the core and is cut by the halo
    edge still has at least ``halo + 1 >= size`` pixels inside the window, so it is kept,
    and every region smaller than ``size`` lies wholly inside the window, so it is removed:
    the set of removed regions is the same as for a sieve of the whole raster.  The value a
    removed region takes (its largest neighbour) is judged inside the window, so it can
    differ from a whole-raster sieve only when two neighbours are both cut by the halo edge,
    or for chains of adjacent small regions longer than the halo.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"sieve: connectivity must be 4 or 8, got {connectivity}")
    if size < 1 or halo < 0:
        raise ValueError(f"sieve: size must be >= 1 and halo >= 0, got size={size}, halo={halo}")
    with open_raster(src_path, "classification") as src:
        profile = raster_profile(crs=src.crs, transform=src.transform, width=src.width, height=src.height,
                                 dtype=src.dtypes[0], nodata=src.nodata)
        try:
            colormap = src.colormap(1)
        except ValueError:
            colormap = None
        with atomic_output(dst_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            if colormap:
                dst.write_colormap(1, colormap)
            dst.update_tags(**src.tags())
            dst.update_tags(1, **src.tags(1))
            for core in progress(list(block_windows(src.width, src.height, block_size)),
                                 f"sieve {os.path.basename(str(src_path))}"):
                col0, row0 = max(0, core.col_off - halo), max(0, core.row_off - halo)
                col1 = min(src.width, core.col_off + core.width + halo)
                row1 = min(src.height, core.row_off + core.height + halo)
                grown = Window(col0, row0, col1 - col0, row1 - row0)
                data = src.read(1, window=grown)
                valid = src.read_masks(1, window=grown) > 0
                sieved = rasterio.features.sieve(data, size, mask=valid, connectivity=connectivity)
                sieved[~valid] = data[~valid]  # nodata stays exactly as it was
                rows = slice(core.row_off - row0, core.row_off - row0 + core.height)
                cols = slice(core.col_off - col0, core.col_off - col0 + core.width)
                dst.write(sieved[rows, cols], 1, window=core)
