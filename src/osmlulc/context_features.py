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


def context_patch_size(windows) -> int:
    """Patch edge (px) the window statistics need: the largest window, 1 without windows."""
    windows = [int(s) for s in windows or ()]
    bad = [s for s in windows if s < 3 or s % 2 == 0]
    if bad:
        raise ValueError(f"window sizes must be odd and at least 3 px, got {bad}")
    return max(windows, default=1)


def _box_sums(integral: np.ndarray, size: int, offset: int, height: int, width: int) -> np.ndarray:
    """Sums over ``size x size`` windows from a zero-padded integral image (..., H + 1, W + 1, C)."""
    top, bottom = offset, offset + size
    return (integral[..., bottom:bottom + height, bottom:bottom + width, :]
            - integral[..., top:top + height, bottom:bottom + width, :]
            - integral[..., bottom:bottom + height, top:top + width, :]
            + integral[..., top:top + height, top:top + width, :])


def window_statistics(x: np.ndarray, windows) -> np.ndarray:
    """(..., H, W, C) channels -> (..., H - P + 1, W - P + 1, C (1 + 2 len(windows))) float32 features.

    Per output pixel (the input pixel ``P // 2`` rows and columns further in): its own channels, then
    for each window size s (odd) the mean and the standard deviation of every channel over the s x s
    window centred on it.  Integral images in float64 make the cost independent of the window size.
    """
    size = context_patch_size(windows)
    x = np.asarray(x, dtype=np.float64)
    height, width = x.shape[-3] - size + 1, x.shape[-2] - size + 1
    if height < 1 or width < 1:
        raise ValueError(f"window statistics need at least {size} x {size} px, got {x.shape[-3:-1]}")
    half = size // 2
    features = [x[..., half:half + height, half:half + width, :]]
    if size > 1:
        pad = [(0, 0)] * (x.ndim - 3) + [(1, 0), (1, 0), (0, 0)]
        integral = np.pad(x.cumsum(axis=-3).cumsum(axis=-2), pad)
        integral_sq = np.pad((x * x).cumsum(axis=-3).cumsum(axis=-2), pad)
        for s in windows:
            offset, area = half - int(s) // 2, float(s * s)
            mean = _box_sums(integral, int(s), offset, height, width) / area
            mean_sq = _box_sums(integral_sq, int(s), offset, height, width) / area
            features += [mean, np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))]
    return np.concatenate(features, axis=-1).astype(np.float32)
