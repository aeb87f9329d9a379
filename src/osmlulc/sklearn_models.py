"""The scikit-learn classifiers on pixel spectra: an SVM (Nystroem kernel map) and a random forest."""

from __future__ import annotations

import logging
import time

import joblib
import numpy as np

from osmlulc.classes import ClassTable
from osmlulc.io import InputError, atomic_output
from osmlulc.sample_data import check_same_bands, index_pairs_for, load_samples, require_settings, with_indices

LOG = logging.getLogger("osmlulc")

def _subsample(n: int, max_samples, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of at most ``max_samples`` of ``n`` samples, drawn without replacement."""
    if max_samples is None or n <= max_samples:
        return np.arange(n)
    return np.sort(rng.choice(n, size=int(max_samples), replace=False))


def _build_svm(settings: dict, seed: int, labels: np.ndarray):
    """StandardScaler -> Nystroem RBF feature map -> linear SVM calibrated to probabilities.

    An exact RBF SVC predicts in time proportional to its support vectors, far too slow for
    10980^2-pixel tiles; the Nystroem map approximates the same kernel with a fixed number of
    components, after which a linear SVM is cheap.
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.kernel_approximation import Nystroem
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    require_settings(settings, ("C", "gamma", "nystroem_components"), "svm")
    gamma = settings["gamma"]
    # 'scale' as in SVC: 1 / (n_features * X.var()), which is 1 / n_features after standard scaling.
    gamma = None if gamma in (None, "scale") else float(gamma)
    n_components = int(min(settings["nystroem_components"], len(labels)))
    # Calibration cross-validates; it needs at least as many samples per class as folds.
    smallest_class = np.bincount(labels)[np.unique(labels)].min()
    folds = int(max(2, min(settings.get("calibration_folds", 3), smallest_class)))
    svm = LinearSVC(C=float(settings["C"]), class_weight=settings.get("class_weight", "balanced"),
                    max_iter=int(settings.get("max_iter", 5000)), random_state=seed)
    return Pipeline([
        ("scale", StandardScaler()),
        ("rbf_features", Nystroem(kernel="rbf", gamma=gamma, n_components=n_components, random_state=seed)),
        ("svm", CalibratedClassifierCV(svm, method="sigmoid", cv=folds)),
    ])


def _build_rf(settings: dict, seed: int):
    from sklearn.ensemble import RandomForestClassifier

    require_settings(settings, ("n_estimators", "max_depth", "min_samples_leaf", "n_jobs"), "rf")
    return RandomForestClassifier(n_estimators=int(settings["n_estimators"]), max_depth=settings["max_depth"],
                                  min_samples_leaf=int(settings["min_samples_leaf"]),
                                  class_weight=settings.get("class_weight"),
                                  n_jobs=int(settings["n_jobs"]), random_state=seed)


def _drop_singleton_classes(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop classes with a single sample: probability calibration cannot cross-validate them."""
    counts = np.bincount(y)
    single = np.flatnonzero(counts == 1)
    if len(single):
        LOG.warning("svm: classes %s have a single training sample and are left out", single.tolist())
        keep = counts[y] > 1
        x, y = x[keep], y[keep]
    return x, y


def train_sklearn(kind: str, train_npz, validation_npz, table: ClassTable, settings: dict, seed: int,
                  model_path, *, index_definitions: dict | None = None) -> dict:
    """Train an SVM (``kind='svm'``) or random forest (``'rf'``) on centre-pixel spectra and save it.

    The joblib file holds ``{"model", "classes" (table codes), "bands", "kind"}``; the estimator's
    own ``classes_`` are the class codes seen in training, mapped onto the table when used.
    """
    if kind not in ("svm", "rf"):
        raise ValueError(f"train_sklearn: kind must be 'svm' or 'rf', got {kind!r}")
    train = load_samples(train_npz, table)
    validation = load_samples(validation_npz, table)
    check_same_bands(train, validation, validation_npz)
    rng = np.random.default_rng(seed)
    keep = _subsample(len(train.labels), settings.get("max_train_samples"), rng)
    pairs = index_pairs_for(train.bands, settings.get("indices"), index_definitions or {})
    x, y = with_indices(train.centre_spectra[keep], pairs), train.labels[keep]
    if len(np.unique(y)) < 2:
        raise InputError(f"samples {train_npz} hold a single class ({np.unique(y).tolist()}); "
                         "a classifier needs at least two")
    if kind == "svm":
        x, y = _drop_singleton_classes(x, y)
        estimator = _build_svm(settings, seed, y)
    else:
        estimator = _build_rf(settings, seed)

    start = time.perf_counter()
    codes, counts = np.unique(y, return_counts=True)
    LOG.info("%s: training on %d pixels of %d bands; samples per class %s", kind, len(y), x.shape[1],
             dict(zip(codes.tolist(), counts.tolist())))
    LOG.info("%s: %s", kind, estimator)
    estimator.fit(x, y)
    LOG.info("%s: fitted in %.1f s", kind, time.perf_counter() - start)
    predicted = estimator.predict(with_indices(validation.centre_spectra, pairs))
    val_accuracy = float(np.mean(predicted == validation.labels))
    recall = {int(c): round(float(np.mean(predicted[validation.labels == c] == c)), 4)
              for c in np.unique(validation.labels)}
    LOG.info("%s: validation accuracy %.4f on %d pixels; recall per class %s", kind, val_accuracy,
             len(validation.labels), recall)

    bundle = {"model": estimator, "classes": table.codes, "bands": list(train.bands), "kind": kind,
              "index_pairs": [list(p) for p in pairs]}
    with atomic_output(model_path) as tmp:
        joblib.dump(bundle, tmp, compress=3)
    return {"kind": kind, "val_accuracy": val_accuracy, "n_train": len(y), "n_validation": len(validation.labels)}
