"""Tests of the choices that make training generalise from noisy OSM labels, by value on small data:
augmentation by the 8 flips / rotations, early stopping with the best weights restored, label erosion,
superpixel sampling, spectral outlier rejection, label chips, spectral indices and dilated blocks."""

import csv
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from osmlulc.classes import ClassTable
from osmlulc.classifiers import load_classifier
from osmlulc.resnet import (build_resnet, dense_patch_size, DIHEDRAL, dihedral, resnet_input_patch_size,
                            resnet_patch_size)
from osmlulc.resnet_training import augment_batch, average_weights, best_epochs, train_resnet
from osmlulc.indices import index_pairs_for, spectral_indices
from osmlulc.sklearn_models import train_sklearn
from osmlulc.predict import predict_patches, predict_window_probabilities
from osmlulc.samples import draw_samples, spectral_outliers

from conftest import sample_settings, write_raster

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

CLASSES_YAML = Path(__file__).resolve().parents[1] / "config" / "classes.yaml"
BANDS = ["B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B12"]
INDEX_DEFINITIONS = {"ndvi": ["B08", "B04"], "ndwi": ["B03", "B08"], "mndwi": ["B03", "B11"], "ndbi": ["B11", "B08"]}


@pytest.fixture(scope="module")
def table():
    return ClassTable.from_yaml(CLASSES_YAML)


def _raster(path, data, dtype="uint16"):
    return write_raster(path, np.asarray(data).astype(dtype), origin=(500000.0, 5300000.0))


def settings(**kw):
    """Sample settings that take every labelled pixel (budgets above any test tile's size)."""
    return sample_settings(**{"patch_size": 3, "per_class": 10_000, "validation_per_class": 10_000,
                              "split_block_px": 1000, "validation_fraction": 0.01, **kw})


# ---------------------------------------------------------------------------------- augmentation

def test_dihedral_gives_the_eight_distinct_transforms_and_keeps_the_centre():
    patch = np.arange(5 * 5 * 2).reshape(1, 5, 5, 2)
    copies = [dihedral(patch, g) for g in range(len(DIHEDRAL))]
    assert len({c.tobytes() for c in copies}) == 8
    for c in copies:
        np.testing.assert_array_equal(c[0, 2, 2], patch[0, 2, 2])
        assert sorted(c.ravel()) == sorted(patch.ravel())
    # g = 1 is one quarter turn; g = 4 a mirror image.
    np.testing.assert_array_equal(copies[1][0, :, :, 0], np.rot90(patch[0, :, :, 0]))
    np.testing.assert_array_equal(copies[4][0, :, :, 0], patch[0, :, ::-1, 0])


def test_augment_batch_transforms_label_chips_with_their_patch():
    rng = np.random.default_rng(0)
    patches = rng.integers(1, 1000, (64, 7, 7, 3)).astype(np.uint16)
    # The chip is the patch's first band itself: after augmentation both must still agree.
    chips = patches[..., 0].copy()
    weights = chips.astype(np.float32) / 1000
    out, out_chips, out_weights = augment_batch(patches, np.random.default_rng(1), chips, weights)
    np.testing.assert_array_equal(out[..., 0], out_chips)
    np.testing.assert_allclose(out_weights, out_chips / 1000, rtol=1e-6)
    assert (out != patches).any()                                    # something was transformed
    np.testing.assert_array_equal(out[:, 3, 3], patches[:, 3, 3])    # centres (and so labels) stay


# ---------------------------------------------------------------------------------- early stopping

#: Two classes of opposite spectral slope (arable 5, forest 8): an easy problem for every model.
TWO_SPECTRA = {5: np.linspace(800, 4000, 10), 8: np.linspace(4000, 800, 10)}


def _train_and_validation(tmp_path, per_class, seed, patch):
    """Sample files of the two classes of TWO_SPECTRA (the same labels in both), and the labels."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.array([5, 8], np.uint8), per_class)
    return (_samples(tmp_path / "train.npz", labels, TWO_SPECTRA, rng, patch=patch),
            _samples(tmp_path / "val.npz", labels, TWO_SPECTRA, rng, patch=patch), labels)


def _samples(path, labels, spectra, rng, patch=5, noise=60.0):
    means = np.stack([spectra[int(c)] for c in labels])[:, None, None, :]
    patches = means + rng.normal(0, noise, (len(labels), patch, patch, len(BANDS)))
    np.savez(path, patches=np.clip(patches, 1, 10000).astype(np.uint16), labels=labels,
             tiles=np.array(["32TMT"] * len(labels)), rows=np.zeros(len(labels), np.int32),
             cols=np.zeros(len(labels), np.int32), bands=np.array(BANDS))
    return path


def test_early_stopping_keeps_the_best_epoch_on_validation(table, tmp_path):
    # Validation labels are the opposite of training: the more the model learns, the worse val_loss
    # gets, so the best epoch is the first and training stops after `patience` more.
    train, validation, _ = _train_and_validation(tmp_path, 100, seed=4, patch=7)
    swapped = dict(np.load(validation))
    swapped["labels"] = (13 - swapped["labels"]).astype(np.uint8)     # 5 <-> 8
    np.savez(validation, **swapped)
    cfg = {"n_blocks": 1, "kernel_size": 3, "filters": 8, "epochs": 12, "batch_size": 16, "learning_rate": 0.01,
           "early_stopping": {"monitor": "val_loss", "patience": 2}}
    result = train_resnet(train, validation, table, cfg, 3, tmp_path / "m.keras", tmp_path / "h.csv")
    with open(tmp_path / "h.csv", newline="") as f:
        history = list(csv.DictReader(f))
    val_loss = [float(r["val_loss"]) for r in history]
    assert result["epochs"] < 12                                  # stopped early
    assert result["best_epoch"] == int(np.argmin(val_loss)) + 1   # the best epoch is the one reported
    assert result["epochs"] == result["best_epoch"] + 2           # after `patience` epochs without improvement
    # The saved model carries the best epoch's weights: its validation loss is the best one, not the last.
    classifier = load_classifier(tmp_path / "m.keras")
    data = np.load(validation)
    proba = predict_patches(classifier, data["patches"].astype(np.float32))
    index = table.index_of_code()[data["labels"]]
    loss = -np.mean(np.log(np.clip(proba[np.arange(len(index)), index], 1e-7, 1)))
    assert loss == pytest.approx(min(val_loss), rel=2e-3)
    assert loss < val_loss[-1] - 1e-3

    # Without early stopping every epoch runs and the last weights are kept.
    cfg_off = dict(cfg, early_stopping=None, epochs=4)
    off = train_resnet(train, validation, table, cfg_off, 3, tmp_path / "m2.keras", tmp_path / "h2.csv")
    assert off["epochs"] == 4 and off["best_epoch"] == 4


def test_averaging_the_best_epochs_keeps_the_mean_of_their_weights(table, tmp_path):
    assert best_epochs({"val_loss": [0.9, 0.5, 0.7, 0.4, 0.6]}, "val_loss", 3) == [1, 3, 4]
    assert best_epochs({"val_accuracy": [0.1, 0.8, 0.7, 0.9]}, "val_accuracy", 2) == [1, 3]
    mean = average_weights([[np.array([1.0, 2.0]), np.array([[4.0]])], [np.array([3.0, 6.0]), np.array([[0.0]])]])
    np.testing.assert_array_equal(mean[0], [2.0, 4.0])
    np.testing.assert_array_equal(mean[1], [[2.0]])

    train, validation, _ = _train_and_validation(tmp_path, 60, seed=5, patch=7)
    cfg = {"n_blocks": 1, "kernel_size": 3, "filters": 8, "epochs": 5, "batch_size": 16, "learning_rate": 0.01,
           "early_stopping": {"monitor": "val_loss", "patience": 5, "average_best": 3}}
    result = train_resnet(train, validation, table, cfg, 3, tmp_path / "m.keras", tmp_path / "h.csv")
    with open(tmp_path / "h.csv", newline="") as f:
        val_loss = [float(r["val_loss"]) for r in csv.DictReader(f)]
    assert result["averaged_epochs"] == [e + 1 for e in best_epochs({"val_loss": val_loss}, "val_loss", 3)]
    # The saved model is the averaged one: its validation loss is the one reported, no single epoch's.
    classifier = load_classifier(tmp_path / "m.keras")
    data = np.load(validation)
    proba = predict_patches(classifier, data["patches"].astype(np.float32))
    index = table.index_of_code()[data["labels"]]
    loss = -np.mean(np.log(np.clip(proba[np.arange(len(index)), index], 1e-7, 1)))
    assert loss == pytest.approx(result["val_loss"], rel=2e-3)
    assert min(abs(loss - v) for v in val_loss) > 1e-4


# ---------------------------------------------------------------------------------- label cleaning

def _tile(tmp_path, labels, segments=None):
    h, w = labels.shape
    rows, cols = np.indices((h, w))
    stack = np.stack([rows * 1000 + cols + 1] + [np.full((h, w), 50 + b) for b in range(2)])
    paths = {"stack": _raster(tmp_path / "stack.tif", stack), "label": _raster(tmp_path / "label.tif",
                                                                                         labels, "uint8")}
    if segments is not None:
        paths["segments"] = _raster(tmp_path / "snic_segments.tif", segments, "uint32")
    return paths


def _drawn(tmp_path, paths, cfg, **kw):
    draw_samples({"32UNU": (paths["stack"], paths["label"])}, kw.pop("table"), cfg, tmp_path / "t.npz",
                 tmp_path / "v.npz", **kw)
    t, v = np.load(tmp_path / "t.npz"), np.load(tmp_path / "v.npz")
    return {(int(r), int(c)): int(lab) for split in (t, v) for r, c, lab in zip(split["rows"], split["cols"],
                                                                                 split["labels"])}, t


def test_erosion_drops_polygon_borders(table, tmp_path):
    labels = np.zeros((30, 30), np.uint8)
    labels[5:15, 5:25] = 5
    labels[15:25, 5:25] = 8     # touches the arable polygon along row 14/15
    paths = _tile(tmp_path, labels)
    plain, _ = _drawn(tmp_path, paths, settings(), table=table)
    assert len(plain) == (labels > 0).sum()
    eroded, _ = _drawn(tmp_path, paths, settings(erosion_px=1), table=table)
    # Every pixel whose 3 x 3 neighbourhood holds another label (or nothing) is gone.
    expected = {(r, c): int(labels[r, c]) for r in range(1, 29) for c in range(1, 29)
                if labels[r, c] > 0 and (labels[r - 1:r + 2, c - 1:c + 2] == labels[r, c]).all()}
    assert eroded == expected
    assert len(expected) == 8 * 18 + 8 * 18
    two, _ = _drawn(tmp_path, paths, settings(erosion_px=2), table=table)
    assert len(two) == 6 * 16 * 2


def _segments_and_labels():
    """Four 10 x 10 superpixels; two pure (arable, forest), one 80 % water, one unlabelled."""
    segments = np.zeros((20, 20), np.uint32)
    segments[:10, :10], segments[:10, 10:], segments[10:, :10], segments[10:, 10:] = 1, 2, 3, 4
    labels = np.zeros((20, 20), np.uint8)
    labels[:10, :10] = 5
    labels[:10, 10:] = 8
    labels[10:, :10] = 12
    labels[18:, :10] = 11       # 20 % wetland in segment 3
    return segments, labels


def _write_centroids(path, segments):
    import pyogrio
    import shapely

    ids = np.unique(segments[segments > 0])
    rows = np.array([np.nonzero(segments == i)[0].mean() for i in ids])
    cols = np.array([np.nonzero(segments == i)[1].mean() for i in ids])
    pyogrio.raw.write(str(path), shapely.to_wkb(shapely.points(cols, rows)), [ids.astype(np.int64), rows, cols,
                      np.full(len(ids), 100)], ["segment", "row", "col", "n_pixels"], layer="centroids",
                      driver="GPKG", crs="EPSG:32632", geometry_type="Point")
    return path


def test_superpixel_sampling_takes_pure_superpixels_only(table, tmp_path):
    segments, labels = _segments_and_labels()
    paths = _tile(tmp_path, labels, segments)
    centroids = _write_centroids(tmp_path / "snic_centroids.gpkg", segments)
    seg = {"32UNU": str(paths["segments"])}
    drawn, _ = _drawn(tmp_path, paths, settings(method="superpixel", purity=0.9), table=table, segments=seg,
                      centroids={"32UNU": str(centroids)})
    # One sample per pure superpixel, at its centroid (4.5, 4.5) -> pixel (4, 4) rounded to even, etc.
    assert drawn == {(4, 4): 5, (4, 14): 8}
    # With purity 0.75 the 80 % water superpixel gives a sample too.
    drawn, _ = _drawn(tmp_path, paths, settings(method="superpixel", purity=0.75), table=table, segments=seg,
                      centroids={"32UNU": str(centroids)})
    assert drawn == {(4, 4): 5, (4, 14): 8, (14, 4): 12}
    # superpixel_pixels: all -> every pixel of a pure superpixel that carries its class (not the wetland ones).
    drawn, _ = _drawn(tmp_path, paths, settings(method="superpixel", purity=0.75, superpixel_pixels="all"),
                      table=table, segments=seg)
    # inside the 1 px patch margin: 9 x 9 arable, 9 x 9 forest, 8 x 9 water (rows 18-19 are wetland)
    assert len(drawn) == 81 + 81 + 72 and set(drawn.values()) == {5, 8, 12}
    assert all(labels[r, c] == code and segments[r, c] in (1, 2, 3) for (r, c), code in drawn.items())


def test_superpixel_purity_is_computed_once_per_tile(table, tmp_path, caplog):
    """draw_samples passes over a tile two or three times (count, pick, chips): the purity pass runs once."""
    segments, labels = _segments_and_labels()
    paths = _tile(tmp_path, labels, segments)
    with caplog.at_level("INFO", logger="osmlulc"):
        _, train = _drawn(tmp_path, paths, settings(method="superpixel", purity=0.75, superpixel_pixels="all",
                                                    chip_px=3), table=table, segments={"32UNU": paths["segments"]})
    assert "label_chips" in train.files
    assert sum("superpixels are at least" in r.getMessage() for r in caplog.records) == 1


def test_spectral_outliers_flag_the_planted_ones():
    rng = np.random.default_rng(0)
    spectra = np.vstack([rng.normal(1000, 20, (200, 4)), rng.normal(3000, 20, (200, 4))])
    labels = np.repeat([5, 8], 200)
    spectra[7, 2] = 1400            # 20 sigma off in one band
    spectra[300] = 1000             # a forest sample with an arable spectrum
    flagged = spectral_outliers(spectra, labels, 5.0)
    assert set(np.flatnonzero(flagged)) == {7, 300}


def test_label_chips_hold_the_clean_labels_around_each_sample(table, tmp_path):
    labels = np.zeros((30, 30), np.uint8)
    labels[5:15, 5:25] = 5
    labels[15:25, 5:25] = 8
    paths = _tile(tmp_path, labels)
    _, train = _drawn(tmp_path, paths, settings(patch_size=5, chip_px=5, erosion_px=1, per_class=30,
                                                validation_fraction=0.01), table=table)
    chips = train["label_chips"]
    assert chips.shape == (len(train["labels"]), 5, 5)
    eroded = np.zeros_like(labels)
    for r in range(1, 29):
        for c in range(1, 29):
            if labels[r, c] and (labels[r - 1:r + 2, c - 1:c + 2] == labels[r, c]).all():
                eroded[r, c] = labels[r, c]
    for chip, r, c, lab in zip(chips, train["rows"], train["cols"], train["labels"]):
        np.testing.assert_array_equal(chip, eroded[r - 2:r + 3, c - 2:c + 3])
        assert chip[2, 2] == lab


def test_training_on_label_chips_learns_from_every_labelled_pixel(table, tmp_path):
    """Only the chips carry the second class: a model trained on centres alone cannot know it."""
    rng = np.random.default_rng(2)
    n, patch, chip = 120, 3, 5
    size = patch + chip - 1
    patches = rng.normal(1000, 30, (n, size, size, len(BANDS)))
    chips = np.full((n, chip, chip), 5, np.uint8)
    bright = rng.random((n, chip, chip)) < 0.3
    bright[:, 2, 2] = False                    # centres are always arable
    chips[bright] = 12
    inner = patches[:, 1:1 + chip, 1:1 + chip]
    inner[bright] += 2000                      # the water pixels are bright in every band
    labels = np.full(n, 5, np.uint8)
    common = dict(tiles=np.array(["32TMT"] * n), rows=np.zeros(n, np.int32), cols=np.zeros(n, np.int32),
                  bands=np.array(BANDS))
    np.savez(tmp_path / "train.npz", patches=patches.clip(1, 10000).astype(np.uint16), labels=labels,
             label_chips=chips, **common)
    val_patches = rng.normal(1000, 30, (n, patch, patch, len(BANDS)))
    val_labels = np.where(np.arange(n) % 2 == 0, 5, 12).astype(np.uint8)
    val_patches[val_labels == 12, 1, 1] += 2000
    np.savez(tmp_path / "val.npz", patches=val_patches.clip(1, 10000).astype(np.uint16), labels=val_labels,
             **common)
    cfg = {"n_blocks": 0, "kernel_size": 3, "filters": 8, "epochs": 6, "batch_size": 16, "learning_rate": 0.02,
           "augment": True}
    result = train_resnet(tmp_path / "train.npz", tmp_path / "val.npz", table, cfg, 1, tmp_path / "m.keras",
                          tmp_path / "h.csv")
    assert result["val_accuracy"] > 0.95


# ---------------------------------------------------------------------------------- indices, dilation

def test_spectral_indices_and_their_band_pairs():
    pairs = index_pairs_for(BANDS, ["ndvi", "mndwi"], INDEX_DEFINITIONS)
    assert pairs == [(3, 2), (1, 8)]
    bands = np.zeros((2, len(BANDS)), np.float32)
    bands[0, [3, 2, 1, 8]] = [3000, 1000, 500, 1500]
    out = spectral_indices(bands, pairs)
    np.testing.assert_allclose(out[0], [0.5, -0.5])
    np.testing.assert_array_equal(out[1], [0, 0])       # 0 / 0 -> 0, no NaN
    with pytest.raises(ValueError, match="not defined"):
        index_pairs_for(BANDS, ["evi"], INDEX_DEFINITIONS)


def _dense_probabilities(stack, classifier) -> np.ndarray:
    """The classifier's dense (windowed, with halo) probabilities of the whole raster ``stack``."""
    with rasterio.open(stack) as src:
        dense, _ = predict_window_probabilities(src, classifier, Window(0, 0, src.width, src.height))
    return dense


def _edge_padded_patches(image: np.ndarray, pixels, size: int) -> np.ndarray:
    """The odd ``size`` patches of ``pixels`` in (H, W, B) ``image``, edge pixels repeated beyond it."""
    half = size // 2
    padded = np.pad(image.astype(np.float32), ((half, half), (half, half), (0, 0)), mode="edge")
    return np.stack([padded[r:r + size, c:c + size] for r, c in pixels])


def _dense_equals_patches(tmp_path, classifier, shape, pixels, *, seed):
    """A random (rows, cols) stack: the classifier's dense probabilities at ``pixels`` equal its output on their
    edge-padded patches.  Returns the stack's path, the patches and the dense probabilities."""
    image = np.random.default_rng(seed).normal(1500, 500, (*shape, len(BANDS))).clip(1, 10000).astype(np.uint16)
    stack = _raster(tmp_path / "stack.tif", np.moveaxis(image, -1, 0))
    patches = _edge_padded_patches(image, pixels, classifier.patch_size)
    dense = _dense_probabilities(stack, classifier)
    np.testing.assert_allclose(dense[tuple(np.array(pixels).T)], predict_patches(classifier, patches), atol=1e-5)
    return stack, patches, dense


def test_dilated_resnet_with_indices_stays_exact_in_dense_inference(table, tmp_path):
    dilations = [1, 2]
    assert resnet_patch_size(2, 3, dilations) == 1 + 2 * (1 + 2 * 3) == 15
    pairs = index_pairs_for(BANDS, list(INDEX_DEFINITIONS), INDEX_DEFINITIONS)
    model = build_resnet(len(BANDS), len(table), n_blocks=2, kernel_size=3, filters=8, dilations=dilations,
                         index_pairs=pairs, band_mean=np.r_[np.full(10, 1500.0), np.zeros(4)],
                         band_variance=np.r_[np.full(10, 500.0 ** 2), np.full(4, 0.1)], dropout=0.3)
    model.save(tmp_path / "m.keras")
    classifier = load_classifier(tmp_path / "m.keras")
    assert classifier.patch_size == 15
    pixels = [(0, 0), (5, 30), (20, 20), (39, 36), (17, 3)]
    stack, patches, dense = _dense_equals_patches(tmp_path, classifier, (40, 37), pixels, seed=0)

    # Test-time rotations: still exact, and not the same as without them (the model is not symmetric).
    for rotations in (4, 8):
        turned = load_classifier(tmp_path / "m.keras", rotations=rotations)
        at = _dense_probabilities(stack, turned)[tuple(np.array(pixels).T)]
        np.testing.assert_allclose(at, predict_patches(turned, patches), atol=1e-5)
        manual = np.mean([predict_patches(classifier, np.ascontiguousarray(dihedral(patches, g)))
                          for g in range(rotations)], axis=0)
        np.testing.assert_allclose(at, manual, atol=1e-5)
        assert np.abs(at - dense[tuple(np.array(pixels).T)]).max() > 1e-3


def test_context_branch_widens_the_patch_and_stays_exact_in_dense_inference(table, tmp_path):
    # Convs see 7 px; the context windows 11 and 21 px: the patch is the largest window.
    assert dense_patch_size(1, 3, None, [21, 11]) == 21
    assert resnet_input_patch_size({"n_blocks": 1, "kernel_size": 3, "context_px": [5]}) == 7
    for bad in ([4], [1], [9, 9]):
        with pytest.raises(ValueError, match="context_px"):
            dense_patch_size(1, 3, None, bad)
    model = build_resnet(len(BANDS), len(table), n_blocks=1, kernel_size=3, filters=8, context_px=[11, 21],
                         band_mean=np.full(10, 1500.0), band_variance=np.full(10, 500.0 ** 2))
    model.save(tmp_path / "m.keras")
    classifier = load_classifier(tmp_path / "m.keras", rotations=4)
    assert classifier.patch_size == 21
    pixels = [(0, 0), (5, 29), (16, 15), (32, 29), (20, 2)]
    _, patches, _ = _dense_equals_patches(tmp_path, classifier, (33, 30), pixels, seed=3)
    # The context reaches beyond the convs' 7 px: changing only the patch's outer ring changes the output.
    ringed = patches.copy()
    ringed[:, :3] = 9000
    assert np.abs(predict_patches(classifier, ringed) - predict_patches(classifier, patches)).max() > 1e-3


def test_sklearn_models_use_the_indices_at_prediction_too(table, tmp_path):
    train, validation, labels = _train_and_validation(tmp_path, 60, seed=1, patch=1)
    rf = {"n_estimators": 10, "max_depth": 4, "min_samples_leaf": 1, "n_jobs": 1, "indices": ["ndvi", "ndbi"]}
    result = train_sklearn("rf", train, validation, table, rf, 0, tmp_path / "rf.joblib",
                           index_definitions=INDEX_DEFINITIONS)
    assert result["val_accuracy"] == 1.0
    classifier = load_classifier(tmp_path / "rf.joblib")
    assert classifier.index_pairs == [(3, 2), (8, 3)]
    assert classifier.model.n_features_in_ == 12
    proba = classifier.predict_proba_block(np.load(validation)["patches"][:, 0, :, :].astype(np.float32))
    assert (table.codes[proba.argmax(axis=-1)][:, 0] == labels).all()
