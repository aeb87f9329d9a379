import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from osmlulc.io import InputError
from osmlulc.samples import GROUP_PX, _read_patches, draw_samples, sample_groups, validation_blocks

from conftest import sample_settings, write_raster


def _tile(tmp_path, name, labels, n_bands=3):
    h, w = labels.shape
    rows, cols = np.indices((h, w))
    # Band values encode position, so each patch can be checked against its coordinates.
    stack = np.stack([rows * 1000 + cols + 1, labels.astype(np.int64) * 100 + 1, np.full((h, w), 7)][:n_bands])
    stack_path = write_raster(tmp_path / f"{name}_stack.tif", stack.astype(np.uint16))
    label_path = write_raster(tmp_path / f"{name}_label.tif", labels.astype(np.uint8))
    return stack_path, label_path


def test_patches_are_cut_from_block_reads_exactly_as_from_one_read_per_sample(tmp_path):
    """Samples spread over several GROUP_PX blocks, unsorted, some at the image edge: each patch is the one
    a window read at its own position gives, in the samples' order."""
    h, w, size = GROUP_PX * 2 + 37, GROUP_PX + 91, 7
    rng = np.random.default_rng(3)
    stack_path = write_raster(tmp_path / "stack.tif", rng.integers(1, 60000, (3, h, w)).astype(np.uint16))
    half = size // 2
    rows = np.concatenate([rng.integers(half, h - half, 300), [half, h - half - 1, h - half - 1]])
    cols = np.concatenate([rng.integers(half, w - half, 300), [w - half - 1, half, w - half - 1]])
    groups = list(sample_groups(rows, cols, half))
    assert len(groups) == 6 and sorted(np.concatenate([idx for idx, _ in groups])) == list(range(len(rows)))
    with rasterio.open(stack_path) as src:
        patches = _read_patches(src, rows, cols, size)
        for i in range(len(rows)):
            one = src.read(window=Window(int(cols[i]) - half, int(rows[i]) - half, size, size))
            assert np.array_equal(patches[i], np.moveaxis(one, 0, -1)), i


def test_validation_blocks_fraction():
    held = validation_blocks((1000, 1000), 10, 0.25, np.random.default_rng(0))
    assert held.shape == (100, 100)
    assert 0.22 < held.mean() < 0.28


def test_draw_samples_balanced_patches_and_spatial_split(tmp_path, table):
    labels = np.zeros((60, 50), np.uint8)
    labels[:, :25] = 5     # arable
    labels[:30, 25:] = 12  # water
    labels[30:, 25:] = 8   # forest
    labels[0:3, 0:3] = 0
    tiles = {"32UNU": _tile(tmp_path, "a", labels)}
    summary = draw_samples(tiles, table, sample_settings(), tmp_path / "train.npz", tmp_path / "val.npz")
    assert summary["train"][5] == 50 and summary["train"][12] == 50 and summary["train"][8] == 50
    assert summary["train"][1] == 0  # absent class reported with 0
    train, val = np.load(tmp_path / "train.npz"), np.load(tmp_path / "val.npz")
    assert train["patches"].shape == (150, 5, 5, 3)
    assert len(train["bands"]) == 3
    # Each patch is centred on its pixel and the label matches the label raster.
    for patch, r, c, lab in zip(train["patches"], train["rows"], train["cols"], train["labels"]):
        assert patch[2, 2, 0] == r * 1000 + c + 1
        assert lab == labels[r, c] and patch[2, 2, 1] == int(lab) * 100 + 1
    # Train and validation pixels never share a 10 px block.
    train_blocks = set(zip(train["rows"] // 10, train["cols"] // 10))
    val_blocks = set(zip(val["rows"] // 10, val["cols"] // 10))
    assert train_blocks and val_blocks and not train_blocks & val_blocks
    # Whole patch inside the image.
    assert train["rows"].min() >= 2 and train["cols"].max() <= 50 - 3


def test_draw_samples_is_deterministic(tmp_path, table):
    labels = np.full((40, 40), 7, np.uint8)
    tiles = {"32UNU": _tile(tmp_path, "a", labels)}
    draw_samples(tiles, table, sample_settings(), tmp_path / "t1.npz", tmp_path / "v1.npz")
    draw_samples(tiles, table, sample_settings(), tmp_path / "t2.npz", tmp_path / "v2.npz")
    a, b = np.load(tmp_path / "t1.npz"), np.load(tmp_path / "t2.npz")
    assert np.array_equal(a["rows"], b["rows"]) and np.array_equal(a["cols"], b["cols"])
    c = draw_samples(tiles, table, sample_settings(seed=4), tmp_path / "t3.npz", tmp_path / "v3.npz")
    assert not np.array_equal(np.load(tmp_path / "t3.npz")["rows"], a["rows"]) and c["train"][7] == 50


def test_patches_with_nodata_are_dropped(tmp_path, table):
    labels = np.full((30, 30), 5, np.uint8)
    stack, label = _tile(tmp_path, "a", labels)
    import rasterio
    with rasterio.open(stack, "r+") as dst:
        data = dst.read()
        data[:, 10:20, 10:20] = 0
        dst.write(data)
    draw_samples({"32UNU": (stack, label)}, table, sample_settings(per_class=1000, validation_fraction=0.01),
                 tmp_path / "t.npz", tmp_path / "v.npz")
    t = np.load(tmp_path / "t.npz")
    assert (t["patches"] > 0).all()
    assert not ((t["rows"] >= 8) & (t["rows"] < 22) & (t["cols"] >= 8) & (t["cols"] < 22)).any()


def test_no_labelled_pixel_is_a_clear_error(tmp_path, table):
    tiles = {"32UNU": _tile(tmp_path, "a", np.zeros((20, 20), np.uint8))}
    with pytest.raises(InputError, match="no labelled pixel in the training tiles"):
        draw_samples(tiles, table, sample_settings(), tmp_path / "t.npz", tmp_path / "v.npz")
    assert not (tmp_path / "t.npz").exists()


def test_validation_samples_carry_their_distance_to_the_nearest_gap(tmp_path, table):
    """gap_reach_px > 0: each validation sample stores its chessboard distance to the nearest masked pixel of the
    stack, capped at reach + 1 (the water decision's threshold near gaps is chosen on them); training: none."""
    from osmlulc.sample_data import load_samples

    labels = np.zeros((60, 50), np.uint8)
    labels[:, :25] = 5
    labels[:, 25:] = 12
    stack_path, label_path = _tile(tmp_path, "a", labels)
    with rasterio.open(stack_path, "r+") as dst:
        data = dst.read()
        data[:, 28:31, 10:40] = 0                      # a cloud across both classes
        dst.write(data)
    settings = sample_settings(gap_reach_px=4, min_valid_share=0.5, validation_fraction=0.5)
    draw_samples({"32UNU": (stack_path, label_path)}, table, settings, tmp_path / "t.npz", tmp_path / "v.npz")
    validation = load_samples(tmp_path / "v.npz", table)
    with np.load(tmp_path / "v.npz") as data:
        rows, cols = data["rows"], data["cols"]
    gap_rows, gap_cols = np.nonzero((np.moveaxis(rasterio.open(stack_path).read(), 0, -1) == 0).all(-1))
    brute = np.array([np.min(np.maximum(abs(gap_rows - r), abs(gap_cols - c))) for r, c in zip(rows, cols)])
    np.testing.assert_array_equal(validation.gap_distance, np.minimum(brute, 5))
    assert (validation.gap_distance <= 4).any() and (validation.gap_distance == 5).any()
    assert load_samples(tmp_path / "t.npz", table).gap_distance is None
