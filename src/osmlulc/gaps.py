"""Gaps in the receptive field: masked or nodata pixels (clouds, shadows, snow, swath and tile edges)
near the pixels a model classifies.

A model trained on gap-free patches that is shown a gap as zeros sees a scene that never occurred in
training: on real data water was found in 8 % of the cases within 32 px of a cloud mask, against 84 %
far from one (issue 22).  Prediction therefore never shows a model a zero:

* :func:`fill_gaps` replaces every masked pixel by the mean of the valid pixels in the smallest of a
  series of growing square windows around it that holds any (normalised convolution: a box sum of
  the values over a box count of the valid pixels, from integral images).  A masked pixel inside a
  pixel's receptive field (radius ``P // 2``) always has a valid pixel within ``P // 2``, the
  classified pixel itself, so a fill radius of ``P // 2`` leaves no zero where a model looks.
* the window statistics of the per-pixel models are taken over the valid pixels of each window
  (:func:`osmlulc.context_features.window_statistics` with a ``valid`` mask).

Both work in 'valid' mode on a block read with a halo, so dense (block-wise) inference stays exact
against per-patch inference.
"""

from __future__ import annotations

import numba
import numpy as np


def valid_pixels(stack: np.ndarray) -> np.ndarray:
    """The package's one definition of a usable pixel of a band stack (..., B): no band is 0 (nodata,
    masked cloud / shadow / snow, outside the swath)."""
    stack = np.asarray(stack)
    if stack.dtype == np.float32 and stack.ndim >= 2 and stack.flags.c_contiguous and stack.shape[-1]:
        # A block of prediction: one compiled pass (numpy's != then all() made and reduced a boolean copy).
        return _no_band_zero(stack.reshape(-1, stack.shape[-1])).reshape(stack.shape[:-1])
    return (stack != 0).all(axis=-1)


@numba.njit(cache=True, nogil=True)
def _no_band_zero(pixels):
    out = np.empty(pixels.shape[0], np.bool_)
    for i in range(numba.uint64(pixels.shape[0])):   # unsigned: no negative-index wrapping, the loop vectorises
        zeros = 0
        for b in range(numba.uint64(pixels.shape[1])):
            zeros += pixels[i, b] == 0
        out[i] = zeros == 0
    return out


def fill_radii(radius: int) -> list[int]:
    """The growing window radii of :func:`fill_gaps`: 1, 2, 4, ... doubling, up to ``radius`` (which ends it)."""
    radii, r = [], 1
    while r < radius:
        radii.append(r)
        r *= 2
    return radii + [radius] if radius >= 1 else []


def box_sums(integral: np.ndarray, size: int, offset: int, height: int, width: int) -> np.ndarray:
    """Sums over ``size x size`` windows from a zero-padded integral image (..., H + 1, W + 1, C):
    the window of output pixel (i, j) starts at row ``i + offset``, column ``j + offset``."""
    top, bottom = offset, offset + size
    return (integral[..., bottom:bottom + height, bottom:bottom + width, :]
            - integral[..., top:top + height, bottom:bottom + width, :]
            - integral[..., bottom:bottom + height, top:top + width, :]
            + integral[..., top:top + height, top:top + width, :])


def integral_image(x: np.ndarray) -> np.ndarray:
    """Zero-padded 2-D cumulative sum of (..., H, W, C) over H and W, in float64 (exact for uint16 sums)."""
    pad = [(0, 0)] * (x.ndim - 3) + [(1, 0), (1, 0), (0, 0)]
    return np.pad(np.asarray(x, dtype=np.float64).cumsum(axis=-3).cumsum(axis=-2), pad)


def fill_gaps(block: np.ndarray, valid: np.ndarray, radius: int) -> np.ndarray:
    """(H, W, B) block and its (H, W) valid mask -> (H - 2 radius, W - 2 radius, B) float32: the block's
    centre, each masked pixel replaced by the mean of the valid pixels in the smallest window of
    :func:`fill_radii` around it that holds any; a masked pixel with no valid pixel within ``radius``
    stays 0.  Only pixels within ``radius`` of the output are read ('valid' mode), so filling a
    block with a halo gives the same numbers as filling each pixel's own patch.
    """
    block = np.asarray(block, dtype=np.float32)
    height, width = block.shape[0] - 2 * radius, block.shape[1] - 2 * radius
    if height < 1 or width < 1:
        raise ValueError(f"fill_gaps: a block of {block.shape[:2]} px has no centre at radius {radius}")
    centre = block[radius:radius + height, radius:radius + width].copy()
    gaps = ~valid[radius:radius + height, radius:radius + width]
    if radius == 0 or not gaps.any():
        return centre
    weights = valid.astype(np.float64)[..., None]
    sums = integral_image(np.where(valid[..., None], block, 0.0))
    counts = integral_image(weights)
    todo = gaps.copy()
    for r in fill_radii(radius):
        offset, size = radius - r, 2 * r + 1
        count = box_sums(counts, size, offset, height, width)[..., 0]
        found = todo & (count > 0)
        if found.any():
            centre[found] = (box_sums(sums, size, offset, height, width)[found] / count[found][:, None])
            todo &= ~found
        if not todo.any():
            break
    centre[todo] = 0
    return centre


def synthetic_cloud_mask(shape: tuple[int, int], cover: float, seed: int) -> np.ndarray:
    """(H, W) bool: cloud-shaped gaps over about ``cover`` of the area, deterministic in ``seed`` -- the
    two-octave value noise of the demo's clouds (70 and 23 px lattices) above its ``1 - cover`` quantile.
    To measure on a real scene what a gap does to its neighbours where the scene has no clouds."""
    from osmlulc.demo.dates import CLOUD_SCALES_PX
    from osmlulc.demo.noise import value_noise

    if not 0 < cover < 1:
        raise ValueError(f"cloud cover must be in (0, 1), got {cover}")
    gy, gx = np.arange(shape[0]), np.arange(shape[1])
    salts = [np.uint64(seed * 2 + 1), np.uint64(seed * 2 + 2)]
    field = value_noise(gx, gy, CLOUD_SCALES_PX[0], salts[0]) + 0.45 * value_noise(gx, gy, CLOUD_SCALES_PX[1],
                                                                                     salts[1])
    return field > np.quantile(field, 1 - cover)


def fill_patch(patch: np.ndarray, valid: np.ndarray, radius: int) -> np.ndarray:
    """A (P, P, B) sample patch with its gaps filled as prediction fills them (:func:`fill_gaps`), from the
    patch's own valid pixels (prediction also sees the valid pixels beyond a patch's edge: near the edge a
    training fill can differ a little from that of prediction).  Same dtype; a gap without a valid pixel
    within ``radius`` stays 0."""
    padded = np.pad(patch, ((radius, radius), (radius, radius), (0, 0)))
    padded_valid = np.pad(valid, radius)
    filled = fill_gaps(padded, padded_valid, radius)
    if np.issubdtype(patch.dtype, np.integer):
        filled = np.rint(filled)
    return np.where(valid[..., None], patch, filled.astype(patch.dtype))


def near_gaps(valid: np.ndarray, reach: int) -> np.ndarray:
    """(H, W) valid mask of a block read with a ``reach`` px halo -> (H - 2 reach, W - 2 reach) bool: the
    centre's pixels within ``reach`` px (chessboard distance) of a gap.  'valid' mode like :func:`fill_gaps`:
    a block's answer equals that of the whole raster as long as the halo holds the raster's own pixels
    (outside the raster, the edge-padded halo repeats the edge: the raster's border is not a gap)."""
    from scipy import ndimage

    valid = np.asarray(valid, dtype=bool)
    height, width = valid.shape[0] - 2 * reach, valid.shape[1] - 2 * reach
    if height < 1 or width < 1:
        raise ValueError(f"near_gaps: a block of {valid.shape} px has no centre at reach {reach}")
    if reach == 0 or valid.all():
        return ~valid[reach:reach + height, reach:reach + width]
    near = ndimage.maximum_filter(~valid, size=2 * reach + 1, mode="nearest")
    return near[reach:reach + height, reach:reach + width]


def gap_distances(valid: np.ndarray, rows: np.ndarray, cols: np.ndarray, reach: int) -> np.ndarray:
    """(N,) int16 chessboard distance (px) from each of the pixels ``rows``, ``cols`` of a (H, W) valid mask to
    the nearest gap of the mask, ``reach + 1`` where none is within ``reach`` (0: the pixel is a gap)."""
    from scipy import ndimage

    valid = np.asarray(valid, dtype=bool)
    far = np.full(len(rows), reach + 1, dtype=np.int16)
    if valid.all() or not len(rows):
        return far
    distance = ndimage.distance_transform_cdt(valid, metric="chessboard")[rows, cols]
    return np.minimum(distance, reach + 1).astype(np.int16)
