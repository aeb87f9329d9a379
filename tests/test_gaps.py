"""Gaps in the receptive field (osmlulc.gaps, window statistics over valid pixels): known answers on small arrays."""

import numpy as np
import pytest

from osmlulc.context_features import window_statistics
from osmlulc.gaps import fill_gaps, fill_radii, synthetic_cloud_mask, valid_pixels


def test_valid_pixels_need_every_band():
    stack = np.ones((2, 3, 4), np.uint16)
    stack[0, 1, 2] = 0
    np.testing.assert_array_equal(valid_pixels(stack), [[True, False, True], [True, True, True]])


def test_fill_radii_double_up_to_the_radius():
    assert fill_radii(15) == [1, 2, 4, 8, 15]
    assert fill_radii(1) == [1]
    assert fill_radii(0) == []


def test_a_gap_in_a_constant_image_is_filled_with_the_constant_and_valid_pixels_stay():
    block = np.full((21, 21, 3), [100.0, 200.0, 300.0], np.float32)
    valid = np.ones((21, 21), bool)
    valid[5:15, 6:16] = False
    block[~valid] = 0
    filled = fill_gaps(block, valid, 5)
    assert filled.shape == (11, 11, 3)
    np.testing.assert_allclose(filled, np.broadcast_to([100.0, 200.0, 300.0], filled.shape))


def test_a_gap_takes_the_mean_of_the_nearest_ring_that_has_valid_pixels():
    # A 1-D ramp in x: a gap pixel's fill is the mean of the valid pixels in the smallest window holding any.
    x = np.tile(np.arange(9, dtype=np.float32)[None, :, None], (9, 1, 1)) + 1
    valid = np.ones((9, 9), bool)
    valid[:, 3:6] = False                                   # a 3 px wide vertical gap at columns 3..5
    filled = fill_gaps(np.where(valid[..., None], x, 0), valid, 4)   # centre: rows/cols 4, the middle of the gap
    # Radius 1 around (4, 4): columns 3..5, all gap; radius 2: columns 2 and 6 hold valid pixels, values 3 and 7.
    assert filled[0, 0, 0] == pytest.approx(5.0)
    # No valid pixel within the radius: stays 0 (never read by a model: the classified pixel itself is valid).
    deep = np.zeros((9, 9), bool)
    assert (fill_gaps(np.zeros((9, 9, 1), np.float32), deep, 2) == 0).all()


def test_filling_a_block_equals_filling_each_pixels_own_patch():
    rng = np.random.default_rng(3)
    block = rng.uniform(1, 1000, (40, 37, 2)).astype(np.float32)
    valid = ~synthetic_cloud_mask((40, 37), 0.3, seed=1)
    valid[:, :4] = False
    block[~valid] = 0
    radius = 6
    dense = fill_gaps(block, valid, radius)
    for r, c in [(0, 0), (5, 7), (13, 20), (27, 24), (10, 0), (27, 0)]:
        patch = block[r:r + 2 * radius + 1, c:c + 2 * radius + 1]
        own = fill_gaps(patch, valid[r:r + 2 * radius + 1, c:c + 2 * radius + 1], radius)
        np.testing.assert_allclose(dense[r, c], own[0, 0], rtol=1e-6)


def test_window_statistics_over_valid_pixels_leave_the_gaps_out():
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, (15, 15, 2))
    valid = rng.uniform(size=(15, 15)) > 0.3
    valid[7, 7] = True
    x_with_gaps = np.where(valid[..., None], x, 0.0)
    got = window_statistics(x_with_gaps, [5, 9], valid)[3, 3]          # the pixel at (7, 7)
    for k, s in enumerate([5, 9]):
        h = s // 2
        window, ok = x[7 - h:8 + h, 7 - h:8 + h], valid[7 - h:8 + h, 7 - h:8 + h]
        values = window[ok]
        np.testing.assert_allclose(got[2 + 4 * k:4 + 4 * k], values.mean(axis=0), rtol=1e-5)
        np.testing.assert_allclose(got[4 + 4 * k:6 + 4 * k], values.std(axis=0), rtol=1e-4, atol=1e-6)
    # No gaps: the same numbers as without a mask.
    np.testing.assert_array_equal(window_statistics(x, [5, 9], np.ones((15, 15), bool)), window_statistics(x, [5, 9]))
    # A gap's value (NaN from an index of zeros) does not leak into its neighbours' statistics.
    x_nan = np.where(valid[..., None], x, np.nan)
    assert np.isfinite(window_statistics(x_nan, [5, 9], valid)[..., 2:]).all()


def test_synthetic_clouds_cover_the_asked_share_and_are_deterministic():
    a = synthetic_cloud_mask((300, 200), 0.15, seed=7)
    assert a.mean() == pytest.approx(0.15, abs=0.01)
    np.testing.assert_array_equal(a, synthetic_cloud_mask((300, 200), 0.15, seed=7))
    assert (a != synthetic_cloud_mask((300, 200), 0.15, seed=8)).any()
    with pytest.raises(ValueError, match="cloud cover"):
        synthetic_cloud_mask((10, 10), 1.5, seed=1)


def test_sample_patches_with_gaps_are_filled_or_dropped():
    from osmlulc.gaps import fill_patch
    from osmlulc.samples import _fill_or_drop_gaps

    rng = np.random.default_rng(2)
    patches = rng.integers(500, 3000, (4, 9, 9, 3)).astype(np.uint16)
    patches[1, :3] = 0            # a third masked: kept and filled at min_valid_share 0.5
    patches[2, :6] = 0            # two thirds masked: dropped
    patches[3, 4, 4] = 0          # the sample pixel itself masked: dropped
    original = patches.copy()
    keep = _fill_or_drop_gaps(patches, 0.5)
    np.testing.assert_array_equal(keep, [True, True, False, False])
    assert (patches[1] > 0).all()
    np.testing.assert_array_equal(patches[1, 3:], original[1, 3:])      # valid pixels untouched
    np.testing.assert_array_equal(patches[1, :3], fill_patch(original[1], (original[1] > 0).all(-1), 4)[:3])
    # 1.0 (the default): any gap drops the patch, nothing is changed.
    again = original.copy()
    np.testing.assert_array_equal(_fill_or_drop_gaps(again, 1.0), [True, False, False, False])
    np.testing.assert_array_equal(again, original)


def _brute_distance_to_gap(valid: np.ndarray) -> np.ndarray:
    """Chessboard distance of every pixel to the nearest gap, by brute force (inf without a gap)."""
    gaps = np.argwhere(~valid)
    rows, cols = np.indices(valid.shape)
    if not len(gaps):
        return np.full(valid.shape, np.inf)
    return np.min([np.maximum(abs(rows - r), abs(cols - c)) for r, c in gaps], axis=0).astype(float)


def test_pixels_near_a_gap_from_blocks_with_a_halo_equal_the_whole_raster():
    from osmlulc.gaps import near_gaps
    from osmlulc.predict import read_block_with_halo
    from rasterio.windows import Window

    rng = np.random.default_rng(5)
    valid = rng.random((40, 37)) > 0.01
    valid[20:23, 5:9] = False
    expected = _brute_distance_to_gap(valid) <= 6

    class Raster:  # read_block_with_halo's view of a raster: what the one pass and the blend read
        width, height = valid.shape[1], valid.shape[0]

        def read(self, window):
            return valid[None, window.row_off:window.row_off + window.height,
                         window.col_off:window.col_off + window.width].astype(np.uint16)

    got = np.zeros_like(valid)
    for r0 in range(0, 40, 16):
        for c0 in range(0, 37, 16):
            window = Window(c0, r0, min(16, 37 - c0), min(16, 40 - r0))
            block = read_block_with_halo(Raster(), window, 6)
            got[r0:r0 + window.height, c0:c0 + window.width] = near_gaps(valid_pixels(block), 6)
    np.testing.assert_array_equal(got, expected)
    # No gap in reach: nothing is near one; the raster's border is not a gap.
    assert not near_gaps(np.ones((20, 20), bool), 4).any()


def test_gap_distances_are_capped_at_the_reach():
    from osmlulc.gaps import gap_distances

    rng = np.random.default_rng(6)
    valid = rng.random((30, 30)) > 0.02
    rows, cols = rng.integers(0, 30, 50), rng.integers(0, 30, 50)
    expected = np.minimum(_brute_distance_to_gap(valid)[rows, cols], 5)
    np.testing.assert_array_equal(gap_distances(valid, rows, cols, 4), expected)
    assert (gap_distances(np.ones((5, 5), bool), np.array([1, 2]), np.array([3, 4]), 4) == 5).all()
