"""Tests of the models (resnet, resnet_training, sklearn_models, classifiers): geometry, training, loading."""

import csv
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import joblib
import numpy as np
import pytest

from osmlulc.classes import ClassTable
from osmlulc.io import InputError
from osmlulc.classifiers import load_classifier
from osmlulc.resnet import build_resnet, resnet_patch_size
from osmlulc.resnet_training import train_resnet
from osmlulc.sklearn_models import train_sklearn

# Keras' own numpy conversion of training logs trips a numpy 2 deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

CLASSES_YAML = Path(__file__).resolve().parents[1] / "config" / "classes.yaml"
BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
#: Class codes with samples; every other table class (e.g. 8, forests) is absent from them.
PRESENT = (1, 5, 12)
#: Distinct mean spectra (reflectance x 10000) of the present classes.
SPECTRA = {
    1: np.full(10, 1500.0),
    5: np.linspace(800, 4000, 10),
    12: np.linspace(1200, 100, 10),
}
SVM_SETTINGS = {"C": 1.0, "gamma": "scale", "nystroem_components": 50, "max_train_samples": 200}
RF_SETTINGS = {"n_estimators": 20, "max_depth": 8, "min_samples_leaf": 1, "n_jobs": 1}
RESNET_SETTINGS = {"n_blocks": 1, "kernel_size": 3, "filters": 8, "epochs": 2, "batch_size": 8,
                   "learning_rate": 0.01}


@pytest.fixture(scope="module")
def table():
    return ClassTable.from_yaml(CLASSES_YAML)


def write_samples(path, n_per_class, seed, patch=9, noise=150.0):
    """Synthetic samples: patches of a class's spectrum plus Gaussian noise, classes interleaved."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.array(PRESENT, dtype=np.uint8), n_per_class)
    rng.shuffle(labels)
    means = np.stack([SPECTRA[int(c)] for c in labels])[:, None, None, :]
    patches = means + rng.normal(0, noise, (len(labels), patch, patch, len(BANDS)))
    np.savez(path, patches=np.clip(patches, 1, 10000).astype(np.uint16), labels=labels,
             tiles=np.array(["32TMT"] * len(labels)), rows=np.arange(len(labels), dtype=np.int32),
             cols=np.arange(len(labels), dtype=np.int32), bands=np.array(BANDS))
    return path


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    d = tmp_path_factory.mktemp("samples")
    return write_samples(d / "train.npz", 80, seed=1), write_samples(d / "validation.npz", 40, seed=2)


def test_resnet_patch_size_known_values():
    assert resnet_patch_size(3, 3) == 15      # stem + 6 convs of 3 x 3: 1 + 2 * 7
    assert resnet_patch_size(1, 3) == 7
    assert resnet_patch_size(0, 3) == 3
    assert resnet_patch_size(2, 5) == 21
    assert resnet_patch_size(4, 1) == 1
    with pytest.raises(ValueError):
        resnet_patch_size(2, 4)


@pytest.mark.parametrize("n_blocks,kernel_size", [(2, 3), (1, 5)])
def test_build_resnet_output_shapes(n_blocks, kernel_size):
    p = resnet_patch_size(n_blocks, kernel_size)
    model = build_resnet(10, 12, n_blocks=n_blocks, kernel_size=kernel_size, filters=4)
    rng = np.random.default_rng(0)
    assert np.asarray(model(rng.uniform(0, 1e4, (1, p, p, 10)).astype("float32"))).shape == (1, 1, 1, 12)
    out = np.asarray(model(rng.uniform(0, 1e4, (2, 20 + p - 1, 17 + p - 1, 10)).astype("float32")))
    assert out.shape == (2, 20, 17, 12)
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, atol=1e-5)
    # No striding, pooling or padding anywhere: only 'valid' convolutions.
    for layer in model.layers:
        assert "Pool" not in type(layer).__name__
        if type(layer).__name__ == "Conv2D":
            assert layer.padding == "valid" and tuple(layer.strides) == (1, 1)


@pytest.mark.parametrize("kind,settings", [("svm", SVM_SETTINGS), ("rf", RF_SETTINGS)])
def test_train_sklearn_separable_classes(kind, settings, samples, table, tmp_path):
    train_npz, validation_npz = samples
    result = train_sklearn(kind, train_npz, validation_npz, table, settings, 7, tmp_path / f"{kind}.joblib")
    assert result["val_accuracy"] > 0.9
    bundle = joblib.load(tmp_path / f"{kind}.joblib")
    assert bundle["kind"] == kind and bundle["bands"] == BANDS
    np.testing.assert_array_equal(bundle["classes"], table.codes)

    classifier = load_classifier(tmp_path / f"{kind}.joblib")
    assert classifier.patch_size == 1 and classifier.n_classes == len(table)
    # A 2 x 3 block of pure class spectra: each pixel gets its class; absent classes get 0.
    codes = np.array([[1, 5, 12], [12, 1, 5]])
    block = np.stack([[SPECTRA[c] for c in row] for row in codes]).astype(np.float32)
    proba = classifier.predict_proba_block(block)
    assert proba.shape == (2, 3, len(table)) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=-1), 1.0, atol=1e-5)
    absent = ~np.isin(table.codes, PRESENT)
    assert (proba[..., absent] == 0).all()
    np.testing.assert_array_equal(table.codes[proba.argmax(axis=-1)], codes)
    # With a valid mask only the valid pixels are classified.
    valid = np.array([[True, False, True], [False, True, True]])
    masked = classifier.predict_proba_block(block, valid=valid)
    assert (masked[~valid] == 0).all()
    np.testing.assert_allclose(masked[valid], proba[valid], atol=1e-6)


def test_train_sklearn_is_deterministic(samples, table, tmp_path):
    train_npz, validation_npz = samples
    forests = None
    for kind, settings in [("rf", RF_SETTINGS), ("svm", SVM_SETTINGS)]:
        models = []
        for run in ("a", "b"):
            train_sklearn(kind, train_npz, validation_npz, table, settings, 3, tmp_path / f"{kind}_{run}.joblib")
            models.append(joblib.load(tmp_path / f"{kind}_{run}.joblib")["model"])
        a, b = models
        if kind == "rf":
            forests = models
            assert len(a.estimators_) == RF_SETTINGS["n_estimators"]
            for tree_a, tree_b in zip(a.estimators_, b.estimators_):
                np.testing.assert_array_equal(tree_a.tree_.threshold, tree_b.tree_.threshold)
                np.testing.assert_array_equal(tree_a.tree_.feature, tree_b.tree_.feature)
                np.testing.assert_array_equal(tree_a.tree_.value, tree_b.tree_.value)
        else:
            np.testing.assert_array_equal(a["rbf_features"].components_, b["rbf_features"].components_)
            for cal_a, cal_b in zip(a["svm"].calibrated_classifiers_, b["svm"].calibrated_classifiers_):
                np.testing.assert_array_equal(cal_a.estimator.coef_, cal_b.estimator.coef_)
    # ... and a different seed gives a different forest.
    train_sklearn("rf", train_npz, validation_npz, table, RF_SETTINGS, 4, tmp_path / "rf_c.joblib")
    other = joblib.load(tmp_path / "rf_c.joblib")["model"]
    assert any(not np.array_equal(t.tree_.threshold, u.tree_.threshold)
               for t, u in zip(forests[0].estimators_, other.estimators_))


def read_history(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_train_resnet_saves_model_history_and_is_deterministic(samples, table, tmp_path):
    train_npz, validation_npz = samples
    results, probabilities = [], []
    validation = np.load(validation_npz)
    p = resnet_patch_size(RESNET_SETTINGS["n_blocks"], RESNET_SETTINGS["kernel_size"])
    start = validation["patches"].shape[1] // 2 - p // 2
    x_val = validation["patches"][:, start:start + p, start:start + p, :].astype(np.float32)
    for run in ("a", "b"):
        model_path, history_path = tmp_path / f"resnet_{run}.keras", tmp_path / f"history_{run}.csv"
        result = train_resnet(train_npz, validation_npz, table, RESNET_SETTINGS, 11, model_path, history_path)
        assert model_path.exists() and result["patch_size"] == p and result["epochs"] == 2
        history = read_history(history_path)
        assert [row["epoch"] for row in history] == ["1", "2"]
        assert set(history[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"}
        assert float(history[-1]["val_accuracy"]) == pytest.approx(result["val_accuracy"])

        classifier = load_classifier(model_path)
        assert classifier.patch_size == p and classifier.n_classes == len(table) and classifier.n_bands == 10
        proba = classifier.predict_proba_patches(x_val)
        # The reloaded model reproduces the validation accuracy Keras measured during training.
        accuracy = np.mean(table.codes[proba.argmax(axis=1)] == validation["labels"])
        assert accuracy == pytest.approx(result["val_accuracy"], abs=1e-6)
        results.append(result)
        probabilities.append(proba)
    assert results[0] == results[1]
    np.testing.assert_array_equal(probabilities[0], probabilities[1])
    # Separable classes are learnt even in two epochs; absent classes get (almost) nothing.
    assert results[0]["val_accuracy"] > 0.9
    assert probabilities[0][:, ~np.isin(table.codes, PRESENT)].max() < 0.2


def test_resnet_needs_patches_at_least_its_size(samples, table, tmp_path):
    train_npz, validation_npz = samples
    settings = dict(RESNET_SETTINGS, n_blocks=3)          # patch 15 > the samples' 9
    with pytest.raises(InputError, match="15 x 15"):
        train_resnet(train_npz, validation_npz, table, settings, 0, tmp_path / "m.keras", tmp_path / "h.csv")
    assert not (tmp_path / "m.keras").exists()


def test_bad_samples_raise_one_line_errors(samples, table, tmp_path):
    train_npz, validation_npz = samples
    data = dict(np.load(train_npz))
    bad_labels = tmp_path / "bad_labels.npz"
    np.savez(bad_labels, **dict(data, labels=np.where(data["labels"] == 5, 99, data["labels"]).astype(np.uint8)))
    with pytest.raises(InputError, match=r"bad_labels.npz: label codes \[99\]"):
        train_sklearn("rf", bad_labels, validation_npz, table, RF_SETTINGS, 0, tmp_path / "rf.joblib")
    missing_key = tmp_path / "missing.npz"
    np.savez(missing_key, **{k: v for k, v in data.items() if k != "bands"})
    with pytest.raises(InputError, match=r"missing.npz lack the arrays \['bands'\]"):
        train_sklearn("svm", train_npz, missing_key, table, SVM_SETTINGS, 0, tmp_path / "svm.joblib")
    assert not (tmp_path / "rf.joblib").exists() and not (tmp_path / "svm.joblib").exists()
    with pytest.raises(InputError, match="does not exist"):
        load_classifier(tmp_path / "nothing.keras")
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(InputError, match="unknown model type"):
        load_classifier(tmp_path / "model.onnx")
