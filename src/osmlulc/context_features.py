"""Spatial context for the per-pixel models: each channel's mean and standard deviation over square windows.

On real imagery with noisy OSM labels a pixel's own spectrum says little about farmland vs. grass or
scrub vs. forest; the texture and mix of its neighbourhood says more (benchmarks/RESULTS.md: a logistic
regression on these features reaches the gradient-boosting baseline, and blended with the ResNet it
beats both).  The features are computed in 'valid' mode from a block with a halo of ``P // 2`` px,
``P = max(windows)``, so dense (block-wise) and per-patch features are the same numbers and a tile is
processed in bounded memory.
"""

from __future__ import annotations

import numpy as np

from osmlulc.gaps import box_sums, integral_image


def context_patch_size(windows) -> int:
    """Patch edge (px) the window statistics need: the largest window, 1 without windows."""
    windows = [int(s) for s in windows or ()]
    bad = [s for s in windows if s < 3 or s % 2 == 0]
    if bad:
        raise ValueError(f"window sizes must be odd and at least 3 px, got {bad}")
    return max(windows, default=1)


def window_statistics(x: np.ndarray, windows, valid: np.ndarray | None = None) -> np.ndarray:
    """(..., H, W, C) channels -> (..., H - P + 1, W - P + 1, C (1 + 2 len(windows))) float32 features.

    Per output pixel (the input pixel ``P // 2`` rows and columns further in): its own channels, then
    for each window size s (odd) the mean and the standard deviation of every channel over the s x s
    window centred on it.  Integral images in float64 make the cost independent of the window size.
    ``valid`` (..., H, W): the statistics are taken over the valid pixels of each window only
    (normalised convolution), so a gap (cloud, nodata) next to a pixel does not enter its features;
    a window without any valid pixel gets 0.  Without gaps the numbers are those without ``valid``.
    """
    size = context_patch_size(windows)
    x = np.asarray(x, dtype=np.float64)
    height, width = x.shape[-3] - size + 1, x.shape[-2] - size + 1
    if height < 1 or width < 1:
        raise ValueError(f"window statistics need at least {size} x {size} px, got {x.shape[-3:-1]}")
    half = size // 2
    features = [x[..., half:half + height, half:half + width, :]]
    if size > 1:
        if valid is not None and np.all(valid):
            valid = None  # the plain path: identical numbers, half the integral images
        weights = None if valid is None else np.asarray(valid, dtype=np.float64)[..., None]
        values = x if weights is None else np.where(weights > 0, x, 0.0)  # a gap's value may be NaN / inf
        integral, integral_sq = integral_image(values), integral_image(values * values)
        counts = None if weights is None else integral_image(weights)
        for s in windows:
            offset, s = half - int(s) // 2, int(s)
            area = float(s * s) if counts is None else box_sums(counts, s, offset, height, width)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = box_sums(integral, s, offset, height, width) / area
                mean_sq = box_sums(integral_sq, s, offset, height, width) / area
            if counts is not None:
                empty = area == 0
                mean = np.where(empty, 0.0, mean)
                mean_sq = np.where(empty, 0.0, mean_sq)
            features += [mean, np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))]
    return np.concatenate(features, axis=-1).astype(np.float32)
