"""SNIC superpixels (Achanta & Süsstrunk 2017): the numba kernel and :func:`snic` on one image.

SNIC ("Superpixels and Polygons using Simple Non-Iterative Clustering") grows every
superpixel from a seed of a regular grid with one priority queue: the queue always
hands out the (pixel, superpixel) candidate with the smallest distance

    d² = ||c - c_k||² + (compactness / spacing)² · ||x - x_k||²

between the pixel's colour ``c`` / position ``x`` and the *running* mean colour ``c_k`` /
position ``x_k`` of superpixel ``k``.  A popped pixel that is still free joins ``k``,
updates its centroid and pushes its free 4-neighbours.  One pass, no iterations.

The kernel is compiled with numba; the priority queue is a binary heap kept in a uint64
array, with equal distances ordered by pixel index, so the result depends on nothing but
the input.  :func:`osmlulc.segmentation.segment_tile` runs it on a Sentinel-2 stack block by block.
"""

from __future__ import annotations

import numba
import numpy as np


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
