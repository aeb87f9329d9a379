"""Spatial context for the per-pixel models: each channel's mean and standard deviation over square windows.

On real imagery with noisy OSM labels a pixel's own spectrum says little about farmland vs. grass or
scrub vs. forest; the texture and mix of its neighbourhood says more (benchmarks/RESULTS.md: a logistic
regression on these features reaches the gradient-boosting baseline, and blended with the ResNet it
beats both).  The features are computed in 'valid' mode from a block with a halo of ``P // 2`` px,
``P = max(windows)``, so dense (block-wise) and per-patch features are the same numbers and a tile is
processed in bounded memory.
"""

from __future__ import annotations

import numba
import numpy as np


def context_patch_size(windows) -> int:
    """Patch edge (px) the window statistics need: the largest window, 1 without windows."""
    windows = [int(s) for s in windows or ()]
    bad = [s for s in windows if s < 3 or s % 2 == 0]
    if bad:
        raise ValueError(f"window sizes must be odd and at least 3 px, got {bad}")
    return max(windows, default=1)


def window_statistics(x: np.ndarray, windows, valid: np.ndarray | None = None, *, shift=None,
                      scale=None, norms: np.ndarray | None = None) -> np.ndarray:
    """(..., H, W, C) channels -> (..., H - P + 1, W - P + 1, C (1 + 2 len(windows))) float32 features.

    Per output pixel (the input pixel ``P // 2`` rows and columns further in): its own channels, then
    for each window size s (odd) the mean and the standard deviation of every channel over the s x s
    window centred on it.  Integral images in float64 (exact for integer reflectance) make the cost
    independent of the window size; one pass of a compiled kernel per block computes them once for all
    windows and writes every feature of a pixel at once.
    ``valid`` (..., H, W): the statistics are taken over the valid pixels of each window only
    (normalised convolution), so a gap (cloud, nodata) next to a pixel does not enter its features;
    a window without any valid pixel gets 0.  Without gaps the numbers are those without ``valid``.
    ``shift``, ``scale`` (F,): features standardised as scikit-learn's ``StandardScaler`` does on float32
    input (``float32(float32(f - shift) / scale)``, same numbers), in the same pass; ``norms`` (..., H - P + 1,
    W - P + 1) float64, with ``shift``: filled with the sum of the absolute standardised features of each pixel
    (what bounds the rounding error of a linear model on them).
    """
    size = context_patch_size(windows)
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    if x.ndim < 3:
        raise ValueError(f"window statistics need (..., H, W, C) channels, got shape {x.shape}")
    height, width = x.shape[-3] - size + 1, x.shape[-2] - size + 1
    if height < 1 or width < 1:
        raise ValueError(f"window statistics need at least {size} x {size} px, got {x.shape[-3:-1]}")
    windows = np.array([int(s) for s in windows or ()], dtype=np.int64)
    lead, channels = x.shape[:-3], x.shape[-1]
    n_features = channels * (1 + 2 * len(windows))
    out = np.empty((*lead, height, width, n_features), dtype=np.float32)
    if valid is not None and np.all(valid):
        valid = None  # the plain path: identical numbers, one integral image less
    images = x.reshape(-1, *x.shape[-3:])
    masks = None if valid is None else np.broadcast_to(np.asarray(valid, bool), x.shape[:-1]).reshape(images.shape[:-1])
    flat_out = out.reshape(-1, height, width, n_features)
    affine = shift is not None
    flat_norms = np.zeros((len(images), 1, 1)) if norms is None else norms.reshape(-1, height, width)
    if norms is not None and (not affine or norms.shape != (*lead, height, width) or norms.dtype != np.float64):
        raise ValueError("window statistics: norms need shift / scale and a float64 array of the output's shape")
    shift = np.zeros(n_features) if shift is None else np.asarray(shift, dtype=np.float64)
    scale = np.ones(n_features) if scale is None else np.asarray(scale, dtype=np.float64)
    if shift.shape != (n_features,) or scale.shape != (n_features,):
        raise ValueError(f"window statistics: shift / scale must have {n_features} values")
    use_valid = masks is not None and len(windows) > 0
    for k in range(len(images)):
        image = np.ascontiguousarray(images[k])
        mask = np.ascontiguousarray(masks[k]) if use_valid else _NO_MASK
        sums, squares, counts = _integral_images(image, mask, use_valid) if len(windows) else (_EMPTY,) * 3
        _features(image, mask, use_valid, windows, size // 2, affine, shift, scale, flat_out[k], sums, squares, counts,
                  flat_norms[k], norms is not None)
    return out


_EMPTY = np.zeros((1, 1, 1))
_NO_MASK = np.ones((1, 1), bool)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _integral_images(x, valid, use_valid):
    """Zero-padded integral images (H + 1, W + 1, C) of the (valid) values and their squares, and (H + 1, W + 1, 1)
    of the valid pixels, in float64: rows accumulated left to right, then added to the row above."""
    height, width, channels = x.shape
    # np.empty and an explicit zero row / column: fresh zeroed pages cost as much as the sums themselves.
    sums = np.empty((height + 1, width + 1, channels))
    squares = np.empty((height + 1, width + 1, channels))
    counts = np.empty((height + 1, width + 1, 1)) if use_valid else np.zeros((1, 1, 1))
    sums[0] = 0.0
    squares[0] = 0.0
    counts[0] = 0.0
    row_sum = np.zeros(channels)
    row_square = np.zeros(channels)
    for i in range(height):
        row_sum[:] = 0.0
        row_square[:] = 0.0
        row_count = 0.0
        sums[i + 1, 0] = 0.0
        squares[i + 1, 0] = 0.0
        if use_valid:
            counts[i + 1, 0, 0] = 0.0
        for j in range(width):
            ok = (not use_valid) or valid[i, j]
            for c in range(channels):
                v = np.float64(x[i, j, c]) if ok else 0.0
                row_sum[c] += v
                row_square[c] += v * v
                sums[i + 1, j + 1, c] = sums[i, j + 1, c] + row_sum[c]
                squares[i + 1, j + 1, c] = squares[i, j + 1, c] + row_square[c]
            if use_valid:
                row_count += 1.0 if ok else 0.0
                counts[i + 1, j + 1, 0] = counts[i, j + 1, 0] + row_count
    return sums, squares, counts


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _features(x, valid, use_valid, windows, half, affine, shift, scale, out, sums, squares, counts, norms,
              with_norms):
    """The features of every output pixel (see :func:`window_statistics`)."""
    channels = x.shape[2]
    width = out.shape[1]
    n_features = out.shape[2]
    for i in range(out.shape[0]):
        for j in range(width):
            for c in range(channels):
                out[i, j, c] = np.float32(x[i + half, j + half, c])
            k = channels
            for w in range(windows.shape[0]):
                s = windows[w]
                top = i + half - s // 2
                left = j + half - s // 2
                bottom, right = top + s, left + s
                if use_valid:
                    area = (counts[bottom, right, 0] - counts[top, right, 0] - counts[bottom, left, 0]
                            + counts[top, left, 0])
                else:
                    area = np.float64(s * s)
                if area == 0:
                    for c in range(2 * channels):
                        out[i, j, k + c] = 0.0
                else:
                    for c in range(channels):
                        total = (sums[bottom, right, c] - sums[top, right, c] - sums[bottom, left, c]
                                 + sums[top, left, c])
                        total_sq = (squares[bottom, right, c] - squares[top, right, c] - squares[bottom, left, c]
                                    + squares[top, left, c])
                        mean = total / area
                        variance = total_sq / area - mean * mean
                        if variance < 0:
                            variance = 0.0
                        out[i, j, k + c] = np.float32(mean)
                        out[i, j, k + channels + c] = np.float32(np.sqrt(variance))
                k += 2 * channels
            if affine:
                # StandardScaler on float32 input: X -= mean_, then X /= scale_, each computed in float64 and
                # stored in float32.
                norm = 0.0
                for k in range(n_features):
                    z = np.float32(np.float32(np.float64(out[i, j, k]) - shift[k]) / scale[k])
                    out[i, j, k] = z
                    norm += abs(np.float64(z))
                if with_norms:
                    norms[i, j] = norm
