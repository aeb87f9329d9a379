"""Label rasters on a grid, from whichever label source a country has.

* an OSM extract (:mod:`osmlulc.osm` turns the ``.osm.pbf`` into a GeoPackage of classed areas):
  :func:`rasterize_landuse` burns those areas onto a grid (a tile's stack, the country mosaic)
  window by window: for each window only the areas intersecting it are read (spatial index),
  reprojected to the grid CRS, clipped to the window and burnt in priority order, so memory is
  bounded by the window, not the country.  A pixel takes the class of the area with the highest
  priority covering its centre; on equal priority the smaller area wins (usually the more specific
  feature drawn inside a larger one), then the one first in the extract.  Pixels where the grid is
  nodata are nodata (0).
* a prepared label raster of class codes or CORINE codes: :func:`transfer_labels` (nearest neighbour,
  any CRS, through :func:`label_lookup`).

:func:`labels_onto_grid` picks one by the label coding (``osm``, ``classes``, ``corine``).
"""

from __future__ import annotations

import numpy as np
import pyogrio
import pyogrio.errors
import pyproj
import rasterio
import rasterio.features
import rasterio.warp
import shapely
from rasterio.enums import Resampling
from rasterio.transform import array_bounds
from rasterio.vrt import WarpedVRT

from osmlulc.classes import ClassTable
from osmlulc.footprints import outside_mask
from osmlulc.io import (BLOCK_SIZE, InputError, atomic_output, block_windows, class_profile, open_raster,
                        raster_profile, require_crs, write_class_colormap)
from osmlulc.osm import LANDUSE_LAYER
from osmlulc.windows import bounds_overlap


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


def rasterize_landuse(landuse_path, grid_path, dst_path, table: ClassTable, *, area=None,
                      block_size: int = BLOCK_SIZE * 2) -> None:
    """Burn the extracted OSM areas onto the grid of ``grid_path``, window by window (module docstring).
    ``area``: see :func:`labelled_area`."""
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
        if not bounds_overlap(extract_bounds, grid.bounds):
            raise InputError(f"OSM land use {landuse_path} does not overlap the grid of {grid_path}; "
                             "check that osm_pbf is the extract of this country")
        profile = raster_profile(crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                                 dtype="uint8", nodata=table.nodata)
        with atomic_output(dst_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            write_class_colormap(dst, table)
            for window in block_windows(grid.width, grid.height, block_size):
                shape_ = (window.height, window.width)
                valid = labelled_area(grid, window, area)
                labels = np.full(shape_, table.nodata, dtype=np.uint8)
                transform = grid.window_transform(window)
                bounds = array_bounds(window.height, window.width, transform)
                found = _window_areas(landuse_path, to_grid, to_lonlat, bounds) if valid.any() else None
                if found is not None:
                    geometries, codes, priority, sizes, fid = found   # sizes: the areas' areas
                    # Clip to the window plus a pixel, so huge areas cost only their part in the window.
                    margin = abs(transform.a)
                    clipped = shapely.clip_by_rect(geometries, bounds[0] - margin, bounds[1] - margin,
                                                   bounds[2] + margin, bounds[3] + margin)
                    order = [i for i in burn_order(priority, sizes, fid)
                             if not clipped[i].is_empty and valid_code[codes[i]]]
                    if order:
                        labels = rasterio.features.rasterize(
                            ((clipped[i], int(codes[i])) for i in order), out_shape=shape_, transform=transform,
                            fill=table.nodata, dtype="uint8")
                labels[~valid] = table.nodata
                dst.write(labels, 1, window=window)



def labelled_area(grid, window, area=None) -> np.ndarray:
    """Where a label raster on ``grid`` has labels, in ``window``: where the grid has data (``area`` None),
    or inside ``area`` (a prepared shapely geometry in the grid's CRS), whatever the grid holds there.
    The country product passes the area it covers, so labels also exist in its gaps
    (``product.fill_gaps_with_labels``, :func:`osmlulc.coverage.product_area`)."""
    if area is None:
        return grid.read_masks(1, window=window) > 0
    return ~outside_mask(area, grid.window_transform(window), (window.height, window.width))


def labels_onto_grid(source, grid_path, dst_path, table: ClassTable, *, coding: str, area=None,
                     block_size: int = BLOCK_SIZE * 2) -> None:
    """The label raster on a grid, from whichever label source the country has.

    ``coding="osm"``: ``source`` is the GeoPackage of :func:`extract_landuse`; ``"classes"`` or
    ``"corine"``: a prepared label raster (:func:`transfer_labels`).
    """
    if coding == "osm":
        rasterize_landuse(source, grid_path, dst_path, table, area=area, block_size=block_size)
    else:
        transfer_labels(source, grid_path, dst_path, table, coding=coding, area=area, block_size=block_size)


def transfer_labels(label_path, grid_path, dst_path, table: ClassTable, *, coding: str = "classes", area=None,
                    block_size: int = BLOCK_SIZE * 2) -> None:
    """Put a label raster (any CRS) onto the grid of ``grid_path`` (nearest neighbour), as class codes.

    ``coding="classes"``: the label values are class codes (other values become nodata);
    ``coding="corine"``: they are CORINE level-3 codes, remapped with ``table.corine_lookup()``.
    Pixels where the grid raster's first band is nodata become nodata (``area``: see :func:`labelled_area`).
    """
    lut = label_lookup(table, coding)
    with open_raster(label_path, "label raster") as label, open_raster(grid_path, "grid raster") as grid:
        require_crs(label, label_path, "label raster")
        require_crs(grid, grid_path, "grid raster")
        label_bounds = rasterio.warp.transform_bounds(label.crs, grid.crs, *label.bounds, densify_pts=64)
        if not bounds_overlap(label_bounds, grid.bounds):
            raise InputError(f"label raster {label_path} does not overlap the grid of {grid_path}")
        # Outside the label raster the VRT yields its nodata, which the lookup maps to nodata.
        fill = label.nodata if label.nodata is not None else 0
        profile = class_profile(grid.crs, grid.transform, grid.width, grid.height, table)
        with WarpedVRT(label, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                       resampling=Resampling.nearest, nodata=fill) as vrt, \
                atomic_output(dst_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            write_class_colormap(dst, table)
            for window in block_windows(grid.width, grid.height, block_size):
                codes = _apply_lut(vrt.read(1, window=window), lut, table.nodata)
                codes[~labelled_area(grid, window, area)] = table.nodata
                dst.write(codes, 1, window=window)
