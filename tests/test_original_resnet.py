"""Tests of the original OSMLULC ResNet (``models.resnet.architecture: original``): Keras'
resnet_v2 on 12 x 12 patches, trained by the shared training code and applied one patch per
pixel by pixel prediction, with the same edge padding and centre convention as the reference."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from osmlulc.classes import ClassTable
from osmlulc.classifiers import load_classifier, PatchResnetClassifier
from osmlulc.resnet import build_original_resnet, resnet_input_patch_size, sample_patch_size
from osmlulc.resnet_training import train_resnet
from osmlulc.sample_data import centre_crop
from osmlulc.predict import predict_patches, predict_tile_pixels

# Keras' own numpy conversion of training logs trips a numpy 2 deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

CLASSES_YAML = Path(__file__).resolve().parents[1] / "config" / "classes.yaml"
BANDS = ["B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B12"]
ORIGINAL = {"depth": 29, "kernel_size": 5, "patch_size": 12, "filters": 8}
SETTINGS = {"architecture": "original", "n_blocks": 3, "kernel_size": 3, "filters": 8, "epochs": 1,
            "batch_size": 32, "learning_rate": 0.002, "original": ORIGINAL,
            "context_px": [15]}   # a dense-only setting: ignored (with a warning), the patch stays 12 px


@pytest.fixture(scope="module")
def table():
    return ClassTable.from_yaml(CLASSES_YAML)


def test_patch_sizes_of_both_architectures():
    dense = dict(SETTINGS, architecture="dense")
    assert resnet_input_patch_size(dense) == 15 and sample_patch_size(dense) == 15
    assert resnet_input_patch_size({k: v for k, v in dense.items() if k != "architecture"}) == 15
    # The even 12 x 12 patch of the original is cut from odd 13 x 13 samples.
    assert resnet_input_patch_size(SETTINGS) == 12 and sample_patch_size(SETTINGS) == 13
    with pytest.raises(ValueError, match="architecture"):
        resnet_input_patch_size(dict(SETTINGS, architecture="vgg"))


def test_centre_convention_of_even_patches():
    """The sample pixel sits at index P // 2 of a patch of either parity: (6, 6) of a 12 x 12 crop."""
    rows, cols = np.mgrid[0:13, 0:13]
    patch = (100 * rows + cols)[None, :, :, None]
    crop = centre_crop(patch, 12)
    assert crop.shape == (1, 12, 12, 1)
    assert crop[0, 6, 6, 0] == patch[0, 6, 6, 0]
    assert crop[0, 0, 0, 0] == 0 and crop[0, 11, 11, 0] == 1111     # 6 px above / left, 5 below / right


def test_original_architecture_is_keras_resnet_v2_depth_29():
    model = build_original_resnet(10, 12, depth=29, kernel_size=5, patch_size=12, filters=16)
    layers = {type(layer).__name__: [] for layer in model.layers}
    for layer in model.layers:
        layers[type(layer).__name__].append(layer)
    convs = layers["Conv2D"]
    # Weighted layers on the main path: stem + 3 stages x 3 bottleneck blocks x 3 convs + dense = 29,
    # plus one projection shortcut per stage.
    assert len(convs) == 1 + 27 + 3 and len(layers["Dense"]) == 1
    assert all(c.padding == "same" for c in convs)
    assert sorted({c.kernel_size[0] for c in convs}) == [1, 5]
    assert sum(tuple(c.strides) == (2, 2) for c in convs) == 4           # two stages start strided
    assert [c.filters for c in convs if c.kernel_size[0] == 1 and tuple(c.strides) == (1, 1)][-1] == 256
    assert "GlobalAveragePooling2D" in layers
    # About 61 MFLOP per 12 x 12 patch, as measured for the original code.
    flops = sum(2 * np.prod(c.output.shape[1:]) * c.input.shape[-1] * c.kernel_size[0] ** 2 for c in convs)
    assert 55e6 < flops + 2 * 256 * 12 < 65e6
    out = np.asarray(model(np.random.default_rng(0).uniform(1, 1e4, (3, 12, 12, 10)).astype("float32")))
    assert out.shape == (3, 12)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="9 n \\+ 2"):
        build_original_resnet(10, 12, depth=30, kernel_size=5, patch_size=12)


def write_samples(path, seed, n=192, patch=13):
    """Patches whose centre brightness decides the class (learnable), 13 x 13 like the workflow's."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(np.array([1, 5, 12], np.uint8), n)
    level = np.select([labels == 1, labels == 5], [1500.0, 3000.0], 600.0)
    patches = level[:, None, None, None] + rng.normal(0, 150, (n, patch, patch, 10))
    np.savez(path, patches=np.clip(patches, 1, 10000).astype(np.uint16), labels=labels,
             tiles=np.array(["32TMT"] * n), rows=np.zeros(n, np.int32), cols=np.zeros(n, np.int32),
             bands=np.array(BANDS))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, table):
    d = tmp_path_factory.mktemp("original")
    train, validation = write_samples(d / "train.npz", 1), write_samples(d / "validation.npz", 2)
    result = train_resnet(train, validation, table, SETTINGS, 3, d / "resnet.keras", d / "history.csv")
    return d / "resnet.keras", validation, result


def test_original_trains_one_epoch_and_predicts_per_patch(trained, table):
    model_path, validation_npz, result = trained
    assert result["architecture"] == "original" and result["patch_size"] == 12 and result["epochs"] == 1
    classifier = load_classifier(model_path)
    assert isinstance(classifier, PatchResnetClassifier)
    assert classifier.patch_size == 12 and classifier.n_classes == len(table) and classifier.n_bands == 10
    validation = np.load(validation_npz)
    proba = predict_patches(classifier, validation["patches"])           # 13 x 13 -> centre 12 x 12
    assert proba.shape == (len(validation["labels"]), len(table))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    # The reloaded model reproduces the validation accuracy Keras measured during training.
    accuracy = np.mean(table.codes[proba.argmax(axis=1)] == validation["labels"])
    assert accuracy == pytest.approx(result["val_accuracy"], abs=1e-6)


def test_pixel_prediction_with_the_original_equals_predict_patches(table, tmp_path):
    """Per-patch inference in predict_tile_pixels: same edge padding and centre as explicit patches,
    including the block borders and the image edges (the even patch is asymmetric there).

    Random weights (scaled inputs): the probabilities vary from pixel to pixel, so the check is not trivial."""
    model_path = tmp_path / "random.keras"
    build_original_resnet(10, len(table), depth=11, kernel_size=5, patch_size=12, filters=8,
                          band_mean=np.full(10, 1500.0), band_variance=np.full(10, 700.0 ** 2)).save(model_path)
    rng = np.random.default_rng(5)
    height, width, block = 37, 30, 16
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack([1500 + 1200 * np.sin(rows / (3 + b)) * np.cos(cols / (4 + b)) + rng.normal(0, 200, rows.shape)
                      for b in range(10)], axis=-1).clip(1, 10000).astype(np.uint16)
    image[:5, :4] = 0                                                    # a nodata corner
    stack = tmp_path / "stack.tif"
    with rasterio.open(stack, "w", driver="GTiff", width=width, height=height, count=10, dtype="uint16", nodata=0,
                       crs="EPSG:32632", transform=from_origin(500000, 5300000, 10, 10)) as dst:
        dst.write(np.moveaxis(image, -1, 0))
        for i, band in enumerate(BANDS, start=1):
            dst.set_band_description(i, band)
    classified, probabilities = tmp_path / "classified.tif", tmp_path / "probabilities.tif"
    predict_tile_pixels(stack, model_path, table, classified, probabilities, block_size=block)

    classifier = load_classifier(model_path)
    # The nodata corner is filled from its valid neighbours within 6 px (the default): patches of
    # 12 + 2 x 6 px, pixel at (12, 12), filled, then cut to 12 px with the pixel at (6, 6).
    padded = np.pad(image.astype(np.float32), ((12, 12), (12, 12), (0, 0)), mode="edge")
    valid = (image != 0).all(axis=-1)
    pixels = np.argwhere(valid)
    patches = np.stack([padded[r:r + 24, c:c + 24] for r, c in pixels])
    reference = predict_patches(classifier, patches, fill_gaps=True, valid_windows=True)
    with rasterio.open(classified) as src:
        codes = src.read(1)
    with rasterio.open(probabilities) as src:
        stored = np.moveaxis(src.read(), 0, -1)
    assert (codes[~valid] == 0).all() and (stored[~valid] == 0).all()
    assert np.abs(stored[valid].astype(int) - np.rint(reference * 255)).max() <= 1
    clear = np.sort(reference, axis=1)
    clear = clear[:, -1] - clear[:, -2] > 1e-4
    np.testing.assert_array_equal(codes[valid][clear], table.codes[reference[clear].argmax(axis=1)])
    assert len(np.unique(codes[valid])) > 1 and reference.std(axis=0).max() > 0.01

    # The float probabilities of a block equal the per-patch ones to 1e-4.
    from osmlulc.predict import predict_window_probabilities
    from rasterio.windows import Window
    with rasterio.open(stack) as src:
        window = Window(16, 16, 14, 21)                                  # the lower-right block: edges
        dense, ok = predict_window_probabilities(src, classifier, window)
    inside = (pixels[:, 0] >= 16) & (pixels[:, 1] >= 16)
    np.testing.assert_allclose(dense[pixels[inside, 0] - 16, pixels[inside, 1] - 16], reference[inside], atol=1e-4)
