"""Minimum mapping unit: a block-wise sieve with a halo (see :func:`sieve`)."""

from __future__ import annotations

import os

import rasterio
import rasterio.features

from osmlulc.io import BLOCK_SIZE, atomic_output, block_windows, open_raster, raster_profile
from osmlulc.logs import progress
from osmlulc.windows import core_slices, grown_window


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
                grown = grown_window(core, halo, src.width, src.height)
                data = src.read(1, window=grown)
                valid = src.read_masks(1, window=grown) > 0
                sieved = rasterio.features.sieve(data, size, mask=valid, connectivity=connectivity)
                sieved[~valid] = data[~valid]  # nodata stays exactly as it was
                rows, cols = core_slices(core, grown)
                dst.write(sieved[rows, cols], 1, window=core)
