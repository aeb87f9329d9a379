"""Pixel windows and grids, on rasterio's own helpers (one set, used by every stage).

* :func:`grown_window` / :func:`core_slices`: a block grown by a halo (cut at the raster edge) and
  where the block lies in an array read for the grown window (sieve, masks, prediction);
* :func:`covering_window`: the whole-pixel window of a grid that covers some bounds (mosaic, crop);
* :func:`aligned_grid`: a grid with edges on multiples of the resolution covering some bounds;
* :func:`bounds_overlap`: whether two bounding boxes share an area.
"""

from __future__ import annotations

import math
from typing import Iterable

from affine import Affine
from rasterio.coords import disjoint_bounds
from rasterio.warp import aligned_target
from rasterio.windows import Window, from_bounds

#: Tolerance (pixels) that keeps an edge already on the grid from being pushed one pixel out.
EDGE_TOLERANCE = 1e-6


def grown_window(window: Window, halo: int, width: int, height: int) -> Window:
    """``window`` grown by ``halo`` pixels on every side, cut to a ``width`` x ``height`` raster."""
    bounds = Window(0, 0, width, height)
    return Window(window.col_off - halo, window.row_off - halo, window.width + 2 * halo,
                  window.height + 2 * halo).intersection(bounds)


def core_slices(window: Window, grown: Window) -> tuple[slice, slice]:
    """Rows and columns of ``window`` inside an array read for ``grown`` (a window around it)."""
    rows = slice(window.row_off - grown.row_off, window.row_off - grown.row_off + window.height)
    cols = slice(window.col_off - grown.col_off, window.col_off - grown.col_off + window.width)
    return rows, cols


def covering_window(transform: Affine, width: int, height: int, bounds, *, tolerance: float = 0.0) -> Window:
    """The smallest whole-pixel window of the grid (transform, width, height) covering ``bounds``, cut to the grid.

    ``tolerance`` (pixels): an edge closer than that to a pixel edge is taken to be on it. The window
    is empty (width or height <= 0) if the bounds miss the grid.
    """
    left, bottom, right, top = bounds
    window = from_bounds(left, bottom, right, top, transform=transform)
    col0 = max(0, math.floor(window.col_off + tolerance))
    row0 = max(0, math.floor(window.row_off + tolerance))
    col1 = min(width, math.ceil(window.col_off + window.width - tolerance))
    row1 = min(height, math.ceil(window.row_off + window.height - tolerance))
    return Window(col0, row0, col1 - col0, row1 - row0)


def aligned_grid(bounds, resolution: float, *, tolerance: float = EDGE_TOLERANCE) -> tuple[Affine, int, int]:
    """Grid (transform, width, height) whose edges are multiples of ``resolution`` and which covers ``bounds``.

    :func:`rasterio.warp.aligned_target` of the bounds shrunk by ``tolerance`` pixels on every side,
    so an edge already on the grid (up to round-off) stays where it is.
    """
    left, bottom, right, top = bounds
    pad = tolerance * resolution
    inner = Affine(right - left - 2 * pad, 0.0, left + pad, 0.0, -(top - bottom - 2 * pad), top - pad)
    return aligned_target(inner, 1, 1, resolution)


def bounds_overlap(a: Iterable[float], b: Iterable[float]) -> bool:
    """True if two (left, bottom, right, top) boxes share an area (boxes that only touch do not)."""
    a, b = tuple(a), tuple(b)
    touching = a[0] == b[2] or b[0] == a[2] or a[1] == b[3] or b[1] == a[3]
    return not disjoint_bounds(a, b) and not touching
