"""Country products: the mosaic of the clipped tiles, the OSMLULC product and the binary land-use layers.

The chain, per country: tiles clipped to their own footprints (:mod:`osmlulc.footprints`) ->
:func:`merge_tiles` (warped nearest onto one EPSG:3035 grid and merged) -> clip to the country boundary
(:func:`osmlulc.footprints.clip_to_boundary`) -> labels onto the same grid (:mod:`osmlulc.labels`) ->
:func:`merge_product` (the OSM labels take precedence over the classification) -> :func:`extract_land_use`
(binary layers, e.g. water) and the minimum mapping unit (:mod:`osmlulc.sieve`).

Every raster function works window by window, so memory does not grow with the country size.
"""

from __future__ import annotations

from contextlib import ExitStack

import numpy as np
import rasterio
import rasterio.errors
import rasterio.warp
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from osmlulc.classes import ClassTable
from osmlulc.footprints import FOOTPRINT_CRS
from osmlulc.io import (BLOCK_SIZE, InputError, atomic_output, block_windows, class_nodata, class_profile,
                        describe_class_raster, open_raster, raster_profile, require_crs, same_grid,
                        write_class_colormap)
from osmlulc.logs import progress
from osmlulc.windows import EDGE_TOLERANCE, aligned_grid, covering_window

#: Edge (pixels) of the chunks merge_tiles writes; a multiple of the GeoTIFF block
#: size, so no compressed block is written twice (which would bloat the file).
MERGE_CHUNK = 8 * BLOCK_SIZE

#: Colour of the "other class" value (0) of a binary land-use layer: light grey.
_OTHER_COLOUR = (211, 211, 211, 255)

#: Value of a binary land-use layer where the source is nodata.
BINARY_NODATA = 255



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
    nodata = class_nodata(table)
    with ExitStack() as stack:
        sources = [stack.enter_context(open_raster(p, "classified tile")) for p in src_paths]
        tile_bounds = []
        for src, path in zip(sources, src_paths):
            require_crs(src, path, "classified tile")
            tile_bounds.append(rasterio.warp.transform_bounds(src.crs, crs, *src.bounds, densify_pts=64))
        union = (min(b[0] for b in tile_bounds), min(b[1] for b in tile_bounds),
                 max(b[2] for b in tile_bounds), max(b[3] for b in tile_bounds))
        if bounds is not None:
            union = (min(union[0], bounds[0]), min(union[1], bounds[1]),
                     max(union[2], bounds[2]), max(union[3], bounds[3]))
        transform, width, height = aligned_grid(union, resolution)
        placed = []  # (vrt, its window in the mosaic)
        for src, tile_bound in zip(sources, tile_bounds):
            place = covering_window(transform, width, height, tile_bound, tolerance=EDGE_TOLERANCE)
            vrt = stack.enter_context(WarpedVRT(
                src, crs=crs, transform=window_transform(place, transform), width=place.width, height=place.height,
                resampling=Resampling.nearest, src_nodata=src.nodata if src.nodata is not None else 0,
                nodata=nodata))
            placed.append((vrt, place))
        profile = class_profile(crs, transform, width, height, table)
        with atomic_output(dst_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            describe_class_raster(dst, table, sources[0])
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



def merge_product(classified_path, label_path, dst_path, table: ClassTable, *, fill_gaps: bool = False,
                  block_size: int = BLOCK_SIZE * 2) -> None:
    """The OSMLULC product: the OSM label where there is one, the classification elsewhere.

    Both rasters must be on the same grid (see :func:`transfer_labels`).  The product is nodata wherever
    the classification is nodata, unless ``fill_gaps``: then a label fills it (``product.fill_gaps_with_labels``;
    the label raster holds labels only where the product may have them, :func:`osmlulc.coverage.product_area`).
    """
    valid_code = table.index_of_code() >= 0
    with open_raster(classified_path, "classification") as cls, open_raster(label_path, "label raster") as label:
        if not same_grid(cls, label):
            raise InputError(f"label raster {label_path} is not on the grid of {classified_path}; "
                             "run transfer_labels onto it first")
        profile = class_profile(cls.crs, cls.transform, cls.width, cls.height, table)
        with atomic_output(dst_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            write_class_colormap(dst, table)
            for window in block_windows(cls.width, cls.height, block_size):
                classified = cls.read(1, window=window)
                labels = label.read(1, window=window)
                labelled = valid_code[labels]
                product = np.where(labelled, labels, classified).astype(np.uint8)
                gap = classified == table.nodata
                product[gap & ~labelled if fill_gaps else gap] = table.nodata
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
