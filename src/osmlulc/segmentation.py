"""SNIC superpixels (Achanta & Süsstrunk 2017) and their centroids, tile by tile in blocks.

SNIC ("Superpixels and Polygons using Simple Non-Iterative Clustering") grows every
superpixel from a seed of a regular grid with one priority queue: the queue always
hands out the (pixel, superpixel) candidate with the smallest distance

    d² = ||c - c_k||² + (compactness / spacing)² · ||x - x_k||²

between the pixel's colour ``c`` / position ``x`` and the *running* mean colour ``c_k`` /
position ``x_k`` of superpixel ``k``.  A popped pixel that is still free joins ``k``,
updates its centroid and pushes its free 4-neighbours.  One pass, no iterations.

The kernel is compiled with numba; the priority queue is a binary heap kept in a uint64
array, with equal distances ordered by pixel index, so the result depends on nothing but
the input.  :func:`segment_tile` runs it on a Sentinel-2 stack block by block.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import islice

import numba
import numpy as np
import pyogrio.raw
import rasterio
import shapely
from skimage.color import rgb2lab
from skimage.segmentation import relabel_sequential, slic

from osmlulc.io import (BLOCK_SIZE, REFLECTANCE_SCALE, InputError, atomic_output, block_windows, open_raster,
                        raster_profile)

#: Reflectance shown as full brightness: land surfaces rarely exceed ~0.3 in the visible
#: bands, so ``reflectance / 0.3`` (clipped to 0..1) spreads them over the colour range
#: that CIELAB was designed for instead of leaving them in the darkest third.
WHITE_REFLECTANCE = 0.3
#: Colour spaces :func:`segment_tile` can segment in.
COLOUR_SPACES = ("lab", "rgb")
#: Superpixel algorithms :func:`segment_tile` offers.
METHODS = ("snic", "slic")

#: Largest image (pixels) one :func:`snic` call takes: queue entries keep the pixel index
#: in 32 bits and labels are int32.
_MAX_PIXELS = 2**31 - 1

# 4-neighbourhood (as in the reference implementation): row and column offsets.
_NEIGHBOUR_DROW = np.array([-1, 0, 1, 0], dtype=np.int64)
_NEIGHBOUR_DCOL = np.array([0, -1, 0, 1], dtype=np.int64)


# --------------------------------------------------------------------------------------
# numba kernel: binary heap in arrays + SNIC region growing
# --------------------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True)
def _sift_up(heap, i, entry):
    """Put ``entry`` into the hole at ``i`` of the min-heap, moving larger parents down into it."""
    while i > 0:
        parent = (i - 1) >> 1
        if entry < heap[parent]:
            heap[i] = heap[parent]
            i = parent
        else:
            break
    heap[i] = entry


@numba.njit(cache=True, nogil=True)
def _heap_push(heap, size, entry):
    """Insert ``entry`` into the uint64 min-heap ``heap[:size]``; return the new size."""
    _sift_up(heap, size, entry)
    return size + 1


@numba.njit(cache=True, nogil=True)
def _heap_pop(heap, size):
    """Remove the smallest entry of ``heap[:size]``; return (it, new size).  ``size`` must be > 0."""
    top = heap[0]
    size -= 1
    if size > 0:
        # Bottom-up deletion (Floyd): move the smaller child up into the hole all the way to
        # a leaf, then sift the former last entry up from there.  The last entry is usually
        # among the largest, so this saves about half the comparisons of a plain sift-down.
        entry = heap[size]
        i = 0
        child = 1
        while child < size:
            if child + 1 < size and heap[child + 1] < heap[child]:
                child += 1
            heap[i] = heap[child]
            i = child
            child = 2 * i + 1
        _sift_up(heap, i, entry)
    return top, size


@numba.njit(cache=True, nogil=True)
def _grown(array, capacity):
    """A copy of ``array`` (1-D or 2-D, along axis 0) with room for ``capacity`` rows."""
    out = np.zeros((capacity,) + array.shape[1:], dtype=array.dtype)
    out[: array.shape[0]] = array
    return out


@numba.njit(cache=True, nogil=True)
def _seed_pixels(valid, seed_rows, seed_cols, cell_rows, cell_cols):
    """Flat index of each grid seed, moved to the valid pixel of its cell nearest the cell's seed
    point when the seed point itself is nodata; -1 for a cell without any valid pixel."""
    height, width = valid.shape
    n_rows = seed_rows.shape[0]
    n_cols = seed_cols.shape[0]
    seeds = np.full(n_rows * n_cols, -1, dtype=np.int64)
    for i in range(n_rows):
        for j in range(n_cols):
            r0, c0 = seed_rows[i], seed_cols[j]
            if valid[r0, c0]:
                seeds[i * n_cols + j] = r0 * width + c0
                continue
            best = -1
            best_d = np.inf
            for r in range(cell_rows[i], cell_rows[i + 1]):
                for c in range(cell_cols[j], cell_cols[j + 1]):
                    if valid[r, c]:
                        d = (r - r0) ** 2 + (c - c0) ** 2
                        if d < best_d:  # strict: the first pixel in raster order wins ties
                            best_d = d
                            best = r * width + c
            seeds[i * n_cols + j] = best
    return seeds


@numba.njit(cache=True, nogil=True)
def _snic_kernel(features, valid, seeds, spatial_weight):
    """SNIC region growing on ``features`` (H, W, C); returns int32 labels (0 = not segmented).

    ``seeds`` holds flat pixel indexes (-1 = no seed).  After the grid seeds are exhausted,
    any valid pixel still free (a valid patch cut off from every seed by nodata) starts a
    new superpixel of its own, so every valid pixel ends up labelled.

    Queue: SNIC queues (distance, pixel, superpixel) candidates and lets the closest one
    take a free pixel.  Here a candidate no closer than one already queued for the same
    pixel is dropped at once (it could only be popped after the pixel is taken), so per
    free pixel the queued candidate that matters is always the one in ``best_key`` /
    ``best_owner``.  A queue entry then only needs (distance, pixel), packed into one uint64
    ``float32 bits of d² << 32 | pixel``: non-negative float32 bit patterns sort like the
    floats, so one integer comparison orders by distance and breaks ties by pixel index
    (deterministic).  The result is SNIC's, with half the queue memory and fewer operations.
    """
    height, width, n_channels = features.shape
    n_pixels = height * width
    colour = features.reshape(n_pixels, n_channels)
    is_valid = valid.reshape(n_pixels)
    labels = np.zeros(n_pixels, dtype=np.int32)
    low32 = np.uint64(0xFFFFFFFF)
    shift = np.uint64(32)

    # Per-superpixel sums (index = label); grown when nodata-isolated patches add labels.
    capacity = seeds.shape[0] + 16
    colour_sum = np.zeros((capacity, n_channels), dtype=np.float64)
    row_sum = np.zeros(capacity, dtype=np.float64)
    col_sum = np.zeros(capacity, dtype=np.float64)
    count = np.zeros(capacity, dtype=np.int64)
    mean_colour = np.zeros(n_channels, dtype=np.float64)

    # Closest queued candidate per free pixel: its distance (float32, viewed as uint32 bits
    # for the queue entry) and the superpixel that queued it.
    best_key = np.full(n_pixels, np.inf, dtype=np.float32)
    best_bits = best_key.view(np.uint32)
    best_owner = np.zeros(n_pixels, dtype=np.int32)

    # The queue starts at a quarter of the image (the frontier is far smaller) and doubles when full.
    heap_capacity = max(n_pixels // 4, seeds.shape[0]) + 64
    heap = np.empty(heap_capacity, dtype=np.uint64)
    size = 0

    n_labels = 0
    for s in range(seeds.shape[0]):
        if seeds[s] >= 0:
            n_labels += 1
            best_key[seeds[s]] = 0.0
            best_owner[seeds[s]] = n_labels
            size = _heap_push(heap, size, np.uint64(seeds[s]))

    next_free = 0  # raster-order scan position for free pixels cut off from every seed
    while True:
        if size == 0:
            while next_free < n_pixels and (not is_valid[next_free] or labels[next_free] != 0):
                next_free += 1
            if next_free == n_pixels:
                break
            n_labels += 1
            best_key[next_free] = 0.0
            best_owner[next_free] = n_labels
            size = _heap_push(heap, size, np.uint64(next_free))
        entry, size = _heap_pop(heap, size)
        pixel = np.int64(entry & low32)
        if labels[pixel] != 0:
            continue  # already taken by a closer superpixel: a stale candidate
        k = np.int64(best_owner[pixel])
        labels[pixel] = k

        if k >= capacity:
            capacity *= 2
            colour_sum = _grown(colour_sum, capacity)
            row_sum = _grown(row_sum, capacity)
            col_sum = _grown(col_sum, capacity)
            count = _grown(count, capacity)
        row = pixel // width
        col = pixel - row * width
        for ch in range(n_channels):
            colour_sum[k, ch] += colour[pixel, ch]
        row_sum[k] += row
        col_sum[k] += col
        count[k] += 1
        inv = 1.0 / count[k]
        for ch in range(n_channels):
            mean_colour[ch] = colour_sum[k, ch] * inv
        mean_row = row_sum[k] * inv
        mean_col = col_sum[k] * inv

        if size + 4 > heap_capacity:
            heap_capacity *= 2
            heap = _grown(heap, heap_capacity)
        for n in range(4):
            r = row + _NEIGHBOUR_DROW[n]
            c = col + _NEIGHBOUR_DCOL[n]
            if r < 0 or r >= height or c < 0 or c >= width:
                continue
            q = r * width + c
            if not is_valid[q] or labels[q] != 0:
                continue
            colour_d = 0.0
            for ch in range(n_channels):
                diff = colour[q, ch] - mean_colour[ch]
                colour_d += diff * diff
            key = np.float32(colour_d + spatial_weight * ((r - mean_row) ** 2 + (c - mean_col) ** 2))
            if key >= best_key[q]:
                continue  # an equal or closer candidate is already queued: this one can never win
            best_key[q] = key
            best_owner[q] = k
            size = _heap_push(heap, size, (np.uint64(best_bits[q]) << shift) | np.uint64(q))
    return labels.reshape(height, width)


# --------------------------------------------------------------------------------------
# array API
# --------------------------------------------------------------------------------------

def seed_grid(length: int, spacing: int) -> tuple[np.ndarray, np.ndarray]:
    """Seed positions and cell edges along one axis of ``length`` px for a seed step of ``spacing``.

    The axis is cut into ``round(length / spacing)`` (at least one) equal cells and each seed
    sits at its cell's centre.  The cells tile the axis exactly, so an image (or block) edge is
    always a cell edge; when ``length`` is a multiple of ``spacing`` the step is exactly
    ``spacing``, otherwise it is stretched or squeezed slightly to fit.
    """
    n_cells = max(1, int(round(length / spacing)))
    edges = np.floor(np.arange(n_cells + 1) * (length / n_cells)).astype(np.int64)
    edges[-1] = length
    centres = np.floor((np.arange(n_cells) + 0.5) * (length / n_cells)).astype(np.int64)
    return np.minimum(centres, length - 1), edges


def snic(image: np.ndarray, spacing: int, compactness: float, valid: np.ndarray | None = None) -> np.ndarray:
    """SNIC superpixels of a (H, W, C) float image.

    Seeds sit on a regular grid with step ``spacing`` px (see :func:`seed_grid`); a seed on an
    invalid pixel moves to the nearest valid pixel of its grid cell.  Region growing uses one
    priority queue with distance ``||c - c_k||² + (compactness / spacing)² ||x - x_k||²`` to the
    running centroid of each superpixel (colour units per ``spacing`` px, as in the paper and
    its reference code), over the 4-neighbourhood.  Invalid pixels are never absorbed; a valid
    patch that no seed can reach becomes a superpixel of its own.

    Returns int32 labels 1..n (every valid pixel labelled), 0 where ``valid`` is False.
    Deterministic: equal inputs give equal labels.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"snic: image must be (H, W, C), got shape {image.shape}")
    if int(spacing) < 1:
        raise ValueError(f"snic: spacing must be >= 1 px, got {spacing}")
    if not compactness >= 0:
        raise ValueError(f"snic: compactness must be >= 0, got {compactness}")
    height, width = image.shape[:2]
    if valid is None:
        valid = np.ones((height, width), dtype=bool)
    valid = np.ascontiguousarray(valid, dtype=bool)
    if valid.shape != (height, width):
        raise ValueError(f"snic: valid mask shape {valid.shape} does not match image {image.shape[:2]}")
    if height == 0 or width == 0:
        return np.zeros((height, width), dtype=np.int32)
    if height * width > _MAX_PIXELS:
        raise ValueError(f"snic: {height} x {width} px is too large for one call; segment it in blocks")
    # float32 halves the memory of a block; centroid sums are float64 inside the kernel.
    features = np.ascontiguousarray(image, dtype=np.float32)
    if not np.isfinite(features[valid]).all():
        raise ValueError("snic: image has non-finite values at valid pixels")

    seed_rows, cell_rows = seed_grid(height, int(spacing))
    seed_cols, cell_cols = seed_grid(width, int(spacing))
    seeds = _seed_pixels(valid, seed_rows, seed_cols, cell_rows, cell_cols)
    spatial_weight = (float(compactness) / float(spacing)) ** 2
    return _snic_kernel(features, valid, seeds, spatial_weight)


def reflectance_to_colour(rgb: np.ndarray, colour_space: str = "lab",
                          white_reflectance: float = WHITE_REFLECTANCE) -> np.ndarray:
    """(H, W, 3) digital numbers -> float32 colour features for :func:`snic`.

    Reflectance (DN / 10000) is divided by ``white_reflectance`` and clipped to 0..1 (a fixed
    linear brightness stretch, the same for every tile so tiles stay comparable).  For
    ``"lab"`` the stretched values are taken as sRGB and converted to CIELAB (L 0..100), whose
    Euclidean distance follows perceived colour difference; ``"rgb"`` keeps them as they are.
    """
    if colour_space not in COLOUR_SPACES:
        raise ValueError(f"colour_space must be one of {COLOUR_SPACES}, got {colour_space!r}")
    stretched = np.clip(rgb.astype(np.float32) / np.float32(REFLECTANCE_SCALE * white_reflectance), 0.0, 1.0)
    if colour_space == "lab":
        return rgb2lab(stretched).astype(np.float32)
    return stretched


# --------------------------------------------------------------------------------------
# tile API
# --------------------------------------------------------------------------------------

def _tile_edge_for(block_size: int) -> int:
    """GeoTIFF tile edge aligned with the processing blocks, so no tile is written twice.

    The largest multiple of 16 up to :data:`BLOCK_SIZE` that divides ``block_size``, or
    :data:`BLOCK_SIZE` if there is none.
    """
    for edge in range(BLOCK_SIZE, 15, -16):
        if block_size % edge == 0:
            return edge
    return BLOCK_SIZE


def block_centroids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel count and mean row / column index (within the block) of each label 1..n of a block."""
    n_labels = int(labels.max()) if labels.size else 0
    if n_labels == 0:
        empty = np.zeros(0)
        return empty.astype(np.int64), empty, empty
    flat = labels.ravel()
    rows, cols = np.indices(labels.shape, dtype=np.int32)
    counts = np.bincount(flat, minlength=n_labels + 1)[1:]
    mean_rows = np.bincount(flat, weights=rows.ravel(), minlength=n_labels + 1)[1:] / counts
    mean_cols = np.bincount(flat, weights=cols.ravel(), minlength=n_labels + 1)[1:] / counts
    return counts.astype(np.int64), mean_rows, mean_cols


def _write_centroids(path, first_id: int, row_off: int, col_off: int, centroids, transform, crs_wkt: str,
                     append: bool) -> None:
    """Append one block's superpixel centroids to the GeoPackage layer ``centroids``.

    ``row``/``col`` are tile pixel indexes (mean of the integer indexes); the point is at the
    centre of that (fractional) pixel in map coordinates, i.e. ``transform * (col + 0.5, row + 0.5)``.
    pyogrio writes arrays in one call (fiona's per-record writing took 3.1 s for 48k points).
    """
    counts, mean_rows, mean_cols = centroids
    rows, cols = mean_rows + row_off, mean_cols + col_off
    xs = transform.c + transform.a * (cols + 0.5) + transform.b * (rows + 0.5)
    ys = transform.f + transform.d * (cols + 0.5) + transform.e * (rows + 0.5)
    segment = np.arange(first_id, first_id + len(counts), dtype=np.int64)
    pyogrio.raw.write(str(path), shapely.to_wkb(shapely.points(xs, ys)), [segment, rows, cols, counts],
                      ["segment", "row", "col", "n_pixels"], layer="centroids", driver="GPKG", crs=crs_wkt,
                      geometry_type="Point", append=append)


def slic_superpixels(image: np.ndarray, spacing: int, compactness: float,
                     valid: np.ndarray | None = None) -> np.ndarray:
    """scikit-image SLIC superpixels of a (H, W, C) float image, labelled like :func:`snic`.

    About one superpixel per ``spacing`` x ``spacing`` px (k-means in colour + position, 10
    iterations); ``compactness`` is SLIC's own (colour units per ``spacing`` px, ~10 for CIELAB).
    Returns int32 labels 1..n without gaps, 0 where ``valid`` is False.  Deterministic.
    """
    image = np.asarray(image)
    height, width = image.shape[:2]
    if valid is None:
        valid = np.ones((height, width), dtype=bool)
    if not valid.any():
        return np.zeros((height, width), dtype=np.int32)
    n_segments = max(1, int(round(height * width / int(spacing) ** 2)))
    # No ``mask=``: skimage's masked SLIC took 152 s instead of 0.9 s on a 1000 x 1000 px block.
    # Nodata pixels (colour 0) form their own segments, which are then dropped.
    labels = slic(image.astype(np.float64), n_segments=n_segments, compactness=float(compactness),
                  start_label=1, convert2lab=False, channel_axis=-1)
    labels = np.where(valid, labels, 0)
    return relabel_sequential(labels)[0].astype(np.int32)


def _check_stack(src, stack_path, rgb_bands, colour_space) -> None:
    """One-line errors for a stack or band selection that cannot be segmented."""
    if src.crs is None:
        raise InputError(f"band stack {stack_path} has no CRS; the centroids need the tile CRS")
    if colour_space not in COLOUR_SPACES:
        raise ValueError(f"colour_space must be one of {COLOUR_SPACES}, got {colour_space!r}")
    if colour_space == "lab" and len(rgb_bands) != 3:
        raise ValueError(f"colour_space 'lab' needs 3 bands (R, G, B), got rgb_bands={list(rgb_bands)}")
    if not rgb_bands or any(not 1 <= int(b) <= src.count for b in rgb_bands):
        raise InputError(f"band stack {stack_path} has {src.count} bands; rgb_bands {list(rgb_bands)} "
                         f"must be 1-based indexes within 1..{src.count}")


def segment_tile(stack_path: str, rgb_bands: list[int], segments_path: str, centroids_path: str, *,
                 spacing: int, compactness: float, block_size: int, colour_space: str = "lab",
                 white_reflectance: float = WHITE_REFLECTANCE, method: str = "snic",
                 threads: int = 1) -> int:
    """Superpixels (SNIC, or SLIC) of a tile's RGB composite, block by block, plus one centroid each.

    ``rgb_bands`` are 1-based indexes into the multi-band uint16 reflectance stack (nodata 0),
    e.g. ``[3, 2, 1]`` for B04 B03 B02.  A pixel that is 0 in *any* band of the stack is nodata:
    it gets segment 0 and is never absorbed.  ``method`` is ``"snic"`` (:func:`snic`) or
    ``"slic"`` (:func:`slic_superpixels`, with ``compactness`` in SLIC's units).

    Seams: the tile is read and segmented in independent ``block_size`` x ``block_size`` blocks
    (bounded memory, whatever the tile size), each with its own seed grid whose cells tile the
    block exactly (:func:`seed_grid`), so a block border is always a seed-cell border and also
    a superpixel border: no superpixel crosses it.  A ``block_size`` that is a multiple of
    ``spacing`` keeps the seed step exactly ``spacing``; otherwise the step is adjusted slightly
    per block.  Segment ids are offset per block so they are unique over the tile (1..n).

    ``threads`` blocks are read and segmented at once (the kernel releases the GIL); they are
    written in block order, so the result does not depend on ``threads``, and at most
    ``threads + 1`` blocks are held at a time.

    Writes ``segments_path`` (int32, nodata 0, tile grid) and ``centroids_path`` (GeoPackage,
    layer ``centroids``, tile CRS): one Point per superpixel with ``segment``, ``row``/``col``
    (mean tile pixel indexes of its pixels) and ``n_pixels``.  Centroids come from per-block
    bincounts and are written block by block, so neither file needs a second pass.
    Returns the number of segments.
    """
    if int(block_size) < 1:
        raise ValueError(f"block_size must be >= 1 px, got {block_size}")
    if method not in METHODS:
        raise ValueError(f"segmentation method must be one of {METHODS}, got {method!r}")
    if int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    superpixels = snic if method == "snic" else slic_superpixels
    with open_raster(stack_path, "band stack") as src:
        _check_stack(src, stack_path, rgb_bands, colour_space)
        nodata = src.nodata if src.nodata is not None else 0
        band_index = [int(b) - 1 for b in rgb_bands]
        profile = raster_profile(crs=src.crs, transform=src.transform, width=src.width, height=src.height,
                                 dtype="int32", nodata=0, block_size=_tile_edge_for(int(block_size)))
        windows = list(block_windows(src.width, src.height, int(block_size)))
        crs_wkt, transform = src.crs.to_wkt(), src.transform
    # rasterio datasets must not be shared between threads: one reader per worker thread.
    readers = threading.local()
    opened = []

    def segment_block(window):
        if not hasattr(readers, "src"):
            readers.src = rasterio.open(stack_path)
            opened.append(readers.src)
        block = readers.src.read(window=window)
        valid = np.all(block != 0, axis=0)
        if nodata != 0:
            valid &= np.all(block != nodata, axis=0)
        colour = reflectance_to_colour(np.moveaxis(block[band_index], 0, -1), colour_space, white_reflectance)
        del block
        labels = superpixels(colour, spacing, compactness, valid)
        return window, labels, block_centroids(labels)

    n_segments = 0
    try:
        with ThreadPoolExecutor(max_workers=int(threads)) as pool, \
                atomic_output(segments_path) as seg_tmp, atomic_output(centroids_path) as cen_tmp, \
                rasterio.open(seg_tmp, "w", **profile) as dst:
            dst.set_band_description(1, f"{method.upper()} segment id")
            # A sliding window of futures: the workers go on with the next blocks while this
            # thread writes the oldest one, and at most threads + 1 blocks are held.
            pending = iter(windows)
            in_flight = deque(pool.submit(segment_block, w) for w in islice(pending, int(threads) + 1))
            while in_flight:
                window, labels, centroids = in_flight.popleft().result()
                for w in islice(pending, 1):
                    in_flight.append(pool.submit(segment_block, w))
                # the first block creates the layer (also when it has no superpixel)
                _write_centroids(cen_tmp, n_segments + 1, int(window.row_off), int(window.col_off), centroids,
                                 transform, crs_wkt, append=window is not windows[0])
                dst.write(np.where(labels > 0, labels + n_segments, 0).astype(np.int32), 1, window=window)
                n_segments += len(centroids[0])
    finally:
        for reader in opened:
            reader.close()
    return n_segments
