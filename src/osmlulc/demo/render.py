"""Rendering of the demo landscape: per-tile bands and truth, the country-wide truth and OSM label."""

from __future__ import annotations

import math
from contextlib import ExitStack

import numpy as np
import pyproj
import rasterio
import rasterio.features
import rasterio.windows
import shapely
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from scipy.ndimage import gaussian_filter

from osmlulc.classes import ClassTable
from osmlulc.demo.noise import gaussian_noise, texture, value_noise
from osmlulc.demo.spec import COUNTRY_CRS, PIXEL_M, DemoSpec
from osmlulc.demo.surfaces import SENSOR_NOISE, FeatureParams, Landscape
from osmlulc.io import atomic_output, block_windows, raster_profile, write_class_colormap

#: Extra margin (pixels) rendered around a tile so the PSF blur has no edge effects.
_MARGIN_PX = 4
#: Gaussian point-spread function of the sensor (pixels).
_PSF_SIGMA_PX = 0.4


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


def block_mean_20m(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
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


def render_tile(s: DemoSpec, tile: str, land: Landscape, tree, params: FeatureParams, bands: list[str], salts: dict,
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
            frac = np.clip(params.f_base[ids] + params.f_amp[ids] * texture(gx, gy, salts["mix"]), 0, 1)
            frac = frac.astype(np.float32)
            bright = (1 + params.tex[ids] * texture(gx, gy, salts["bright"])).astype(np.float32)

            inner = (slice(m, m + row1 - row0), slice(m, m + s.size))
            valid = ~_nodata_triangle(s, tile, row0, row1)
            truth = np.where(valid, params.truth[ids[inner]], 0).astype(np.uint8)
            dst["truth"].write(truth, 1, window=rasterio.windows.Window(0, row0, s.size, row1 - row0))

            for b_i, band in enumerate(bands):
                pure = params.primary[:, b_i].astype(np.float32)[ids] * (1 - frac) + \
                    params.secondary[:, b_i].astype(np.float32)[ids] * frac
                # the sensor's point-spread function mixes neighbouring surfaces at edges
                blurred = gaussian_filter(pure * bright, _PSF_SIGMA_PX, mode="nearest")[inner]
                noisy = blurred + SENSOR_NOISE[band] * gaussian_noise(gx[m:-m], gy[m:-m], salts["noise"][b_i])
                if s.bands[band] == 10:
                    values, row_off = _to_uint16(noisy, valid), row0
                else:
                    values, row_off = block_mean_20m(noisy, valid), row0 // 2
                dst[band].write(values, 1, window=rasterio.windows.Window(0, row_off, values.shape[1], values.shape[0]))


def _country_grid(s: DemoSpec, union):
    """EPSG:3035 10 m grid, aligned to multiples of 10 m, covering the union of tiles."""
    left, bottom, right, top = transform_bounds(s.crs, COUNTRY_CRS, *union.bounds, densify_pts=51)
    left, bottom = math.floor(left / PIXEL_M) * PIXEL_M, math.floor(bottom / PIXEL_M) * PIXEL_M
    right, top = math.ceil(right / PIXEL_M) * PIXEL_M, math.ceil(top / PIXEL_M) * PIXEL_M
    width, height = int(round((right - left) / PIXEL_M)), int(round((top - bottom) / PIXEL_M))
    return from_origin(left, top, PIXEL_M, PIXEL_M), width, height


def reproject_geoms(geoms, src_crs: str, dst_crs: str, max_segment: float = 100.0):
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
    dx, dy = (np.clip(np.rint(1.5 * shift_px * value_noise(gx, gy, 25.0, salt)), -shift_px, shift_px).astype(int)
              for salt in salts)
    rows, cols = np.indices((h, w))
    return ids[rows + shift_px + dy, cols + shift_px + dx]


def write_country_rasters(s: DemoSpec, land: Landscape, params: FeatureParams, union, truth_path: str,
                           label_path: str, table: ClassTable, shift_salts=None) -> None:
    """Country-wide truth (0 outside the valid tile data) and OSM label, block by block.

    The OSM label's borders are shifted (:func:`_shifted_ids`) when ``s.osm_border_shift_px`` > 0.
    """
    transform, width, height = _country_grid(s, union)
    geoms = reproject_geoms(land.geoms, s.crs, COUNTRY_CRS)
    tree = shapely.STRtree(geoms)
    covered = union
    if s.nodata_size > 0:
        others = [shapely.box(*s.tile_bounds(t)) for t in s.tiles if t != s.nodata_tile]
        covered = union.difference(shapely.difference(_triangle_polygon(s), shapely.union_all(others)))
    covered = reproject_geoms(covered, s.crs, COUNTRY_CRS)
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
