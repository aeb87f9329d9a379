"""Tests of osmlulc.predict: exact dense inference against per-patch classification, written
products, and superpixel classes from probabilities."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from osmlulc.classes import ClassTable
from osmlulc.io import InputError, block_windows
from osmlulc.classifiers import load_classifier
from osmlulc.resnet import build_resnet
from osmlulc.resnet_training import train_resnet
from osmlulc.sklearn_models import train_sklearn
from osmlulc.predict import (predict_patches, predict_tile_pixels, predict_tile_superpixels,
                             predict_window_probabilities)

# Keras' own numpy conversion of training logs trips a numpy 2 deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

CLASSES_YAML = Path(__file__).resolve().parents[1] / "config" / "classes.yaml"
BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
HEIGHT, WIDTH, BLOCK = 150, 130, 64
#: Nodata corner of the test stack (rows, cols), plus one pixel where a single band is nodata.
NODATA_CORNER = (slice(0, 20), slice(0, 25))
ONE_BAND_NODATA = (100, 70)


@pytest.fixture(scope="module")
def table():
    return ClassTable.from_yaml(CLASSES_YAML)


def write_raster(path, data, dtype, nodata=None, descriptions=None):
    """(bands, rows, cols) array -> GeoTIFF on a 10 m UTM grid."""
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype=dtype,
                   crs="EPSG:32632", transform=from_origin(500000, 5300000, 10, 10), nodata=nodata)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(dtype))
        for i, name in enumerate(descriptions or [], start=1):
            dst.set_band_description(i, name)
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Random 10-band uint16 stack with smooth structure, a nodata corner and a one-band nodata pixel."""
    rng = np.random.default_rng(42)
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    data = np.stack([1000 + 800 * np.sin(rows / (7 + b)) * np.cos(cols / (5 + b)) + rng.normal(0, 300, rows.shape)
                     + 150 * b for b in range(10)])
    data = np.clip(data, 1, 10000)
    data[(slice(None), *NODATA_CORNER)] = 0
    data[3, ONE_BAND_NODATA[0], ONE_BAND_NODATA[1]] = 0
    path = tmp_path_factory.mktemp("stack") / "stack_10m.tif"
    return write_raster(path, data, "uint16", nodata=0, descriptions=BANDS)


def read_stack(path):
    with rasterio.open(path) as src:
        return np.moveaxis(src.read(), 0, -1)


def synthetic_samples(path, seed, patch=9, n=240):
    """Patches cut from a random smooth field, labelled by a threshold on band means (learnable)."""
    rng = np.random.default_rng(seed)
    patches = rng.normal(2000, 600, (n, patch, patch, 10)).clip(1, 10000)
    brightness = patches[:, patch // 2, patch // 2, :].mean(axis=1)
    labels = np.select([brightness < 1900, brightness < 2100], [1, 5], 12).astype(np.uint8)
    np.savez(path, patches=patches.astype(np.uint16), labels=labels, tiles=np.array(["32TMT"] * n),
             rows=np.zeros(n, np.int32), cols=np.zeros(n, np.int32), bands=np.array(BANDS))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory, table):
    """A random-weight ResNet (patch 11), a ResNet trained for one epoch (patch 7) and a random forest."""
    d = tmp_path_factory.mktemp("models")
    random_model = build_resnet(10, len(table), n_blocks=2, kernel_size=3, filters=8,
                                band_mean=np.full(10, 1700.0), band_variance=np.full(10, 700.0 ** 2))
    random_model.save(d / "random.keras")
    train, validation = synthetic_samples(d / "train.npz", 1), synthetic_samples(d / "validation.npz", 2)
    train_resnet(train, validation, table, {"n_blocks": 1, "kernel_size": 3, "filters": 8, "epochs": 1,
                                            "batch_size": 16, "learning_rate": 0.01},
                 5, d / "trained.keras", d / "history.csv")
    train_sklearn("rf", train, validation, table, {"n_estimators": 10, "max_depth": 6, "min_samples_leaf": 1,
                                                   "n_jobs": 1}, 5, d / "rf.joblib")
    return {"random": d / "random.keras", "trained": d / "trained.keras", "rf": d / "rf.joblib"}


def pixels_to_check(shape, seed=0):
    """~200 random pixels plus every block-border and image-edge/corner combination."""
    rng = np.random.default_rng(seed)
    special_rows = [0, 1, BLOCK - 1, BLOCK, 2 * BLOCK - 1, 2 * BLOCK, shape[0] - 1]
    special_cols = [0, 1, BLOCK - 1, BLOCK, shape[1] - 2, shape[1] - 1]
    pixels = {(r, c) for r in special_rows for c in special_cols}
    pixels |= set(zip(rng.integers(0, shape[0], 200).tolist(), rng.integers(0, shape[1], 200).tolist()))
    return np.array(sorted(pixels))


def dense_probabilities(stack_path, classifier, **gaps):
    """Float probabilities of the whole (small) stack, assembled from predict_window_probabilities."""
    with rasterio.open(stack_path) as src:
        out = np.zeros((src.height, src.width, classifier.n_classes), dtype=np.float32)
        for window in block_windows(src.width, src.height, BLOCK):
            probabilities, _ = predict_window_probabilities(src, classifier, window, **gaps)
            out[window.toslices()] = probabilities
    return out


def reference_probabilities(stack_path, classifier, pixels, fill_gaps=False, valid_windows=False):
    """Per-patch classification of explicitly cut patches of the edge-padded image (with the gap fill's
    margin when gaps are filled)."""
    image = read_stack(stack_path).astype(np.float32)
    halo = classifier.patch_size // 2 * (2 if fill_gaps else 1)
    padded = np.pad(image, ((halo, halo), (halo, halo), (0, 0)), mode="edge")
    size = classifier.patch_size + 2 * (halo - classifier.patch_size // 2)
    patches = np.stack([padded[r:r + size, c:c + size] for r, c in pixels])
    return predict_patches(classifier, patches, fill_gaps=fill_gaps, valid_windows=valid_windows)


#: What the model sees of gaps: zeros (before issue 22), filled and left out of window statistics (the default).
GAP_SETTINGS = {"zeros": dict(fill_gaps=False, valid_windows=False), "filled": dict(fill_gaps=True, valid_windows=True)}


@pytest.mark.parametrize("gaps", list(GAP_SETTINGS))
@pytest.mark.parametrize("model", ["random", "trained", "rf"])
def test_dense_inference_equals_per_patch_classification(model, gaps, models, stack, table, tmp_path):
    classifier = load_classifier(models[model])
    image = read_stack(stack)
    valid = (image != 0).all(axis=-1)
    pixels = pixels_to_check(valid.shape)
    pixels = pixels[valid[pixels[:, 0], pixels[:, 1]]]
    assert len(pixels) > 150

    dense = dense_probabilities(stack, classifier, **GAP_SETTINGS[gaps])
    reference = reference_probabilities(stack, classifier, pixels, **GAP_SETTINGS[gaps])
    at_pixels = dense[pixels[:, 0], pixels[:, 1]]
    np.testing.assert_allclose(at_pixels, reference, atol=1e-4, rtol=0)
    assert (dense[~valid] == 0).all()
    # The comparison must not be trivial: probabilities vary and more than one class wins.
    assert reference.std(axis=0).max() > 0.01
    assert len(np.unique(reference.argmax(axis=1))) > 1

    # Written products: argmax codes with nodata 0 and a colour table; uint8 probabilities.
    classified, probabilities = tmp_path / "classified.tif", tmp_path / "probabilities.tif"
    predict_tile_pixels(stack, models[model], table, classified, probabilities, block_size=BLOCK,
                        **GAP_SETTINGS[gaps])
    with rasterio.open(classified) as src:
        codes = src.read(1)
        assert src.dtypes[0] == "uint8" and src.nodata == 0
        colormap = src.colormap(1)
        assert colormap[12][:3] == (0, 204, 242) and colormap[8][:3] == (0, 166, 0)
    with rasterio.open(probabilities) as src:
        assert src.count == len(table) and src.dtypes[0] == "uint8"
        assert list(src.descriptions) == [c.name for c in table.classes]
        scaled = np.moveaxis(src.read(), 0, -1)
    assert (codes[~valid] == 0).all() and (codes[valid] > 0).all()
    assert (scaled[~valid] == 0).all()
    clear = np.sort(reference, axis=1)
    clear = clear[:, -1] - clear[:, -2] > 1e-4            # no near-tie between the two best classes
    np.testing.assert_array_equal(codes[pixels[clear, 0], pixels[clear, 1]],
                                  table.codes[reference[clear].argmax(axis=1)])
    stored = scaled[pixels[:, 0], pixels[:, 1]].astype(int)
    assert np.abs(stored - np.rint(reference * 255)).max() <= 1


def test_predict_tile_pixels_rejects_a_stack_with_other_bands(models, stack, table, tmp_path):
    image = np.moveaxis(read_stack(stack), -1, 0)[:9]
    nine_bands = write_raster(tmp_path / "nine.tif", image, "uint16", nodata=0, descriptions=BANDS[:9])
    out = tmp_path / "classified.tif"
    with pytest.raises(InputError, match="nine.tif has 9 bands"):
        predict_tile_pixels(nine_bands, models["random"], table, out, tmp_path / "p.tif", block_size=BLOCK)
    swapped = write_raster(tmp_path / "swapped.tif", np.moveaxis(read_stack(stack), -1, 0), "uint16", nodata=0,
                           descriptions=BANDS[::-1])
    with pytest.raises(InputError, match="was trained on"):
        predict_tile_pixels(swapped, models["rf"], table, out, tmp_path / "p.tif", block_size=BLOCK)
    assert not out.exists() and not (tmp_path / "p.tif").exists()
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.mark.parametrize("nodata", [0, 255])  # the class table's nodata, not a fixed 0
def test_superpixel_class_is_argmax_of_mean_probabilities(tmp_path, nodata):
    table = ClassTable.from_dict({"nodata": nodata, "classes": [
        {"code": 1, "name": "urban", "colour": [230, 0, 77]},
        {"code": 5, "name": "arable", "colour": [255, 255, 168]},
        {"code": 12, "name": "water", "colour": [0, 204, 242]},
    ]})
    height, width = 40, 36
    segments = np.zeros((height, width), dtype=np.int32)
    probabilities = np.zeros((3, height, width), dtype=np.uint8)

    def fill(ids, rows, cols, pixel_probabilities):
        """Give segment ``ids`` the listed per-pixel probabilities, cycling over its pixels."""
        block_rows, block_cols = np.mgrid[rows, cols]
        for i, (r, c) in enumerate(zip(block_rows.ravel(), block_cols.ravel())):
            segments[r, c] = ids
            probabilities[:, r, c] = pixel_probabilities[i % len(pixel_probabilities)]

    # Segment 3 (spans 4 blocks of 16 px): 2 of 3 pixels favour urban, but the mean favours arable.
    fill(3, slice(10, 25), slice(10, 25), [(140, 115, 0), (140, 115, 0), (0, 255, 0)])
    # Segment 1000 (a large id): water everywhere but one pixel.
    fill(1000, slice(0, 8), slice(28, 36), [(0, 0, 255)] * 63 + [(255, 0, 0)])
    # Segment 7: a single pixel of urban.
    fill(7, slice(30, 31), slice(2, 3), [(200, 40, 15)])
    # Segment 9: arable, with one pixel without probabilities (nodata in the stack).
    fill(9, slice(30, 40), slice(20, 36), [(10, 200, 45)])
    probabilities[:, 35, 30] = 0
    # Segment 0 is nodata even where probabilities exist.
    probabilities[:, 0, 0] = (255, 0, 0)

    prob_path = write_raster(tmp_path / "prob.tif", probabilities, "uint8")
    seg_path = write_raster(tmp_path / "segments.tif", segments[None], "int32")
    out = tmp_path / "superpixels.tif"
    predict_tile_superpixels(prob_path, seg_path, table, out, block_size=16)

    expected = np.full((height, width), nodata, dtype=np.uint8)
    expected[segments == 3] = 5
    expected[segments == 1000] = 12
    expected[segments == 7] = 1
    expected[segments == 9] = 5
    expected[35, 30] = nodata
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(1), expected)
        assert src.nodata == nodata and src.dtypes[0] == "uint8"
        assert src.colormap(1)[12][:3] == (0, 204, 242)


def test_superpixels_reject_mismatched_inputs(tmp_path, table):
    probabilities = write_raster(tmp_path / "prob.tif", np.zeros((3, 20, 20)), "uint8")
    segments = write_raster(tmp_path / "seg.tif", np.ones((1, 20, 20)), "int32")
    with pytest.raises(InputError, match="prob.tif have 3 bands, the class table 12"):
        predict_tile_superpixels(probabilities, segments, table, tmp_path / "out.tif")
    assert not (tmp_path / "out.tif").exists()


@pytest.mark.parametrize("tiled", [True, False])
def test_block_reader_reads_gdals_blocks_decoding_each_tile_once(tmp_path, tiled):
    """The prediction's reader (_BlockReader on _StackTiles) gives read_block_with_halo's blocks, reads every part of
    the stack from GDAL once however far the halos reach into neighbouring tiles, and holds about a row of tiles."""
    from osmlulc.io import block_windows
    from osmlulc.predict import _BlockReader, _StackTiles, read_block_with_halo

    data = np.random.default_rng(0).integers(1, 10000, (3, 600, 290)).astype(np.uint16)
    layout = dict(tiled=True, blockxsize=32, blockysize=32) if tiled else {}
    path = write_raster(tmp_path / "stack.tif", data, "uint16", nodata=0)
    if tiled:
        with rasterio.open(path) as src:
            profile = dict(src.profile, **layout)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
    with rasterio.open(path) as src:
        assert (src.block_shapes[0][0] == 32) == tiled
        for block_size, halo in ((64, 7), (100, 3), (37, 0), (300, 20)):
            windows = list(block_windows(src.width, src.height, block_size))
            with _BlockReader(src, windows, halo) as reader:
                for window in windows:
                    np.testing.assert_array_equal(reader.read(window, halo), read_block_with_halo(src, window, halo))
            tiles = _StackTiles(src, windows, halo)
            reads, read = [], src.read
            src.read = lambda window: reads.append(window) or read(window=window)
            held = 0   # rows of the stack's width held at most
            for index in range(len(windows)):
                np.testing.assert_array_equal(tiles.read(index), read(window=tiles.grown[index]))
                held = max(held, sum(d.size for _, d in tiles._cache.values()) / (3 * 290))
            del src.read
            units = {(int(w.row_off), int(w.col_off)) for w in reads}
            assert len(units) == len(reads) == -(-600 // tiles.unit[0]) * -(-290 // tiles.unit[1])
            assert held <= tiles.unit[0] + block_size + 2 * halo and not tiles._cache
