"""The scikit-learn classifiers on pixel spectra: an SVM (Nystroem kernel map), a random forest and a
logistic regression, each optionally on the spatial context of :mod:`osmlulc.context_features`."""

from __future__ import annotations

import logging
import time

import joblib
import numba
import numpy as np

from osmlulc.classes import ClassTable
from osmlulc.context_features import context_patch_size, window_statistics
from osmlulc.io import InputError, atomic_output
from osmlulc.indices import index_pairs_for, with_indices
from osmlulc.sample_data import Samples, centre_crop, check_same_bands, class_weights, load_samples, require_settings

LOG = logging.getLogger("osmlulc")

def _subsample(n: int, max_samples, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of at most ``max_samples`` of ``n`` samples, drawn without replacement."""
    if max_samples is None or n <= max_samples:
        return np.arange(n)
    return np.sort(rng.choice(n, size=int(max_samples), replace=False))


#: Fixed choices of the SVM (config/schema.yaml has no keys for them): sigmoid calibration on at most 3
#: folds, balanced class weights, at most 5000 iterations of the linear SVM. The random forest weighs every
#: sample alike (class_weight None).
SVM_CALIBRATION_FOLDS = 3
SVM_MAX_ITER = 5000


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
    folds = int(max(2, min(SVM_CALIBRATION_FOLDS, smallest_class)))
    svm = LinearSVC(C=float(settings["C"]), class_weight="balanced", max_iter=SVM_MAX_ITER, random_state=seed)
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
                                  class_weight=None,
                                  n_jobs=int(settings["n_jobs"]), random_state=seed)


def _build_logreg(settings: dict, seed: int):
    """StandardScaler -> multinomial logistic regression: a linear model that cannot memorise label
    noise the way deep trees or a CNN can, and predicts at a few Mpx/s per core."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    require_settings(settings, ("C",), "logreg")
    return Pipeline([
        ("scale", StandardScaler()),
        ("logreg", LogisticRegression(C=float(settings["C"]), max_iter=int(settings.get("max_iter", 2000)),
                                      random_state=seed)),
    ])


#: The model kinds of :func:`train_sklearn`.
SKLEARN_KINDS = ("svm", "rf", "logreg")


def pixel_model_patch_size(settings: dict) -> int:
    """Patch edge (px) a per-pixel model needs: its largest context window (``windows_px``), else 1."""
    return context_patch_size(settings.get("windows_px"))


def pixel_features(patches: np.ndarray, index_pairs, windows, valid: np.ndarray | None = None) -> np.ndarray:
    """(..., P', P', B) patches (P' >= P = the windows' patch) -> (..., P' - P + 1, P' - P + 1, F) features:
    the bands and their spectral indices, then the window mean / std of all of them
    (:func:`osmlulc.context_features.window_statistics`; with ``valid`` (..., P', P') over valid pixels only)."""
    return window_statistics(with_indices(patches, index_pairs), windows, valid)


def _training_pixels(train: Samples, settings: dict, index_pairs, rng: np.random.Generator):
    """Features and class codes of the training pixels: the sample pixels, or with ``chip_pixels`` every
    clean labelled pixel of each sample's label chip (many more labelled pixels, memory bounded by
    ``max_train_samples``)."""
    windows = settings.get("windows_px") or []
    size = context_patch_size(windows)
    chips = train.label_chips if settings.get("chip_pixels") else None
    if chips is None or chips.shape[1] == 1:
        keep = _subsample(len(train.labels), settings.get("max_train_samples"), rng)
        x = pixel_features(centre_crop(train.patches[keep], size), index_pairs, windows)[:, 0, 0, :]
        return x, train.labels[keep]
    chip = chips.shape[1]
    sample, row, col = np.nonzero(chips)
    if not len(sample):
        raise InputError("the samples' label chips hold no labelled pixel; regenerate the samples")
    keep = _subsample(len(sample), settings.get("max_train_samples"), rng)
    sample, row, col = sample[keep], row[keep], col[keep]
    parts = []
    # Samples in batches: the features of a whole chip are computed at once, only its labelled pixels kept.
    for start in range(0, len(train.labels), 512):
        stop = start + 512
        in_batch = (sample >= start) & (sample < stop)
        if not in_batch.any():
            continue
        crop = centre_crop(train.patches[start:stop], size + chip - 1)
        feats = pixel_features(crop, index_pairs, windows)             # (n, chip, chip, F)
        parts.append((np.flatnonzero(in_batch), feats[sample[in_batch] - start, row[in_batch], col[in_batch]]))
    x = np.empty((len(sample), parts[0][1].shape[1]), np.float32)
    for where, feats in parts:
        x[where] = feats
    return x, chips[sample, row, col]


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
    """Train an SVM (``kind='svm'``), random forest (``'rf'``) or logistic regression (``'logreg'``) on
    pixel features and save it.

    Features: the centre pixel's bands and ``indices``, with ``windows_px`` also their window mean / std
    (:func:`pixel_features`).  ``class_weight``: for logreg balanced / sqrt / prior, as for the ResNet
    (:func:`osmlulc.sample_data.class_weights`); for svm and rf scikit-learn's own ``class_weight``.
    The joblib file holds ``{"model", "classes" (table codes), "bands", "kind", "index_pairs", "windows"}``;
    the estimator's own ``classes_`` are the class codes seen in training, mapped onto the table when used.
    """
    if kind not in SKLEARN_KINDS:
        raise ValueError(f"train_sklearn: kind must be one of {SKLEARN_KINDS}, got {kind!r}")
    train = load_samples(train_npz, table)
    validation = load_samples(validation_npz, table)
    check_same_bands(train, validation, validation_npz)
    rng = np.random.default_rng(seed)
    pairs = index_pairs_for(train.bands, settings.get("indices"), index_definitions or {})
    windows = [int(s) for s in settings.get("windows_px") or []]
    size = context_patch_size(windows)
    if train.patches.shape[1] < size or validation.patches.shape[1] < size:
        raise InputError(f"{kind}: windows_px {windows} need {size} px patches; the samples hold "
                         f"{min(train.patches.shape[1], validation.patches.shape[1])} px; regenerate them")
    x, y = _training_pixels(train, settings, pairs, rng)
    if len(np.unique(y)) < 2:
        raise InputError(f"samples {train_npz} hold a single class ({np.unique(y).tolist()}); "
                         "a classifier needs at least two")
    weighting = settings.get("class_weight")
    sample_weight = None
    if kind == "svm":
        x, y = _drop_singleton_classes(x, y)
        estimator = _build_svm(settings, seed, y)
    elif kind == "rf":
        estimator = _build_rf(settings, seed)
    else:
        estimator = _build_logreg(settings, seed)
        targets = table.index_of_code()[y.astype(np.intp)]
        weights = class_weights(targets, len(table), weighting or "balanced", train.candidates)
        sample_weight = weights[targets]

    start = time.perf_counter()
    codes, counts = np.unique(y, return_counts=True)
    LOG.info("%s: training on %d pixels of %d features (%d bands, windows %s px); pixels per class %s", kind,
             len(y), x.shape[1], len(train.bands), windows, dict(zip(codes.tolist(), counts.tolist())))
    LOG.info("%s: %s", kind, estimator)
    if sample_weight is None:
        estimator.fit(x, y)
    else:
        estimator.fit(x, y, **{f"{estimator.steps[-1][0]}__sample_weight": sample_weight})
    LOG.info("%s: fitted in %.1f s", kind, time.perf_counter() - start)
    features = pixel_features(centre_crop(validation.patches, size), pairs, windows)[:, 0, 0, :]
    predicted = estimator.predict(features)
    val_accuracy = float(np.mean(predicted == validation.labels))
    recall = {int(c): round(float(np.mean(predicted[validation.labels == c] == c)), 4)
              for c in np.unique(validation.labels)}
    LOG.info("%s: validation accuracy %.4f on %d pixels; recall per class %s", kind, val_accuracy,
             len(validation.labels), recall)

    bundle = {"model": estimator, "classes": table.codes, "bands": list(train.bands), "kind": kind,
              "index_pairs": [list(p) for p in pairs], "windows": windows}
    with atomic_output(model_path) as tmp:
        joblib.dump(bundle, tmp, compress=3)
    return {"kind": kind, "val_accuracy": val_accuracy, "n_train": len(y), "n_validation": len(validation.labels)}


class LinearSoftmax:
    """A fitted ``[StandardScaler ->] LogisticRegression`` (multinomial) applied with numpy / BLAS in float32: the
    same class as scikit-learn's ``predict_proba`` argmax, the probabilities within float32 rounding of its.

    The standardisation is done by the feature kernel (:func:`osmlulc.context_features.window_statistics` with
    ``shift`` / ``scale``: the same float32 numbers as ``StandardScaler.transform``), the logits by one float32
    matrix product; where the two largest logits are closer than the product's rounding error bound (from each
    pixel's sum of absolute features) the estimator's own ``predict_proba`` decides (scikit-learn fits and predicts
    in float32 on float32 features), so the argmax is scikit-learn's.  ``columns``: the table column of each of the
    estimator's classes; the other columns of ``n_classes`` get probability 0.
    """

    def __init__(self, shift, scale, coef, intercept, columns, n_classes: int, estimator=None):
        n_features = coef.shape[1]
        #: The fitted LogisticRegression: near ties are decided by its own predict_proba.
        self.estimator = estimator
        self.columns = np.asarray(columns)
        self.n_classes = n_classes
        self.shift, self.scale = np.asarray(shift, np.float64), np.asarray(scale, np.float64)
        self.n_features = n_features
        # Full-table weights: an absent class gets logit -inf, hence probability 0.
        self.coef = np.zeros((n_classes, n_features))
        self.coef[columns] = coef
        self.intercept = np.full(n_classes, -np.inf)
        self.intercept[columns] = intercept
        self.coef32 = np.ascontiguousarray(self.coef.T, dtype=np.float32)
        self.intercept32 = self.intercept.astype(np.float32)
        # Rounding error of a float32 dot product of n terms: at most about n u sum |terms| (u = 2^-24); the
        # bound below has a margin of 2 on that, and covers the two logits compared.
        self.error_per_norm = 4.0 * (n_features + 2) * np.finfo(np.float32).eps / 2 * float(np.abs(coef).max())
        self.error_floor = 4.0 * (n_features + 2) * np.finfo(np.float32).eps / 2 * float(np.abs(intercept).max())

    @classmethod
    def of(cls, estimator, columns, n_classes: int) -> LinearSoftmax | None:
        """The fast form of ``estimator``, or None when it is not a multinomial logistic regression behind
        standard scalers only (an SVM, a random forest, one-vs-rest, several scalers)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        steps = [s for _, s in estimator.steps if s not in (None, "passthrough")] if isinstance(estimator, Pipeline) \
            else [estimator]
        *scalers, last = steps
        if not isinstance(last, LogisticRegression) or len(scalers) > 1 \
                or any(not isinstance(s, StandardScaler) for s in scalers):
            return None
        if getattr(last, "multi_class", "auto") == "ovr" or getattr(last, "solver", "") == "liblinear":
            return None  # one-vs-rest probabilities: not a softmax
        coef, intercept = np.asarray(last.coef_, np.float64), np.asarray(last.intercept_, np.float64)
        if coef.shape[0] == 1:  # binary: p(second class) = expit(d) = softmax([0, d])
            coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
        n_features = coef.shape[1]
        shift, scale = np.zeros(n_features), np.ones(n_features)
        if scalers:
            # StandardScaler.transform on float32 input casts its mean_ and scale_ to float32 first.
            if scalers[0].with_mean:
                shift = np.asarray(scalers[0].mean_).astype(np.float32).astype(np.float64)
            if scalers[0].with_std:
                scale = np.asarray(scalers[0].scale_).astype(np.float32).astype(np.float64)
        return cls(shift, scale, coef, intercept, columns, n_classes, last)

    def probabilities(self, z: np.ndarray, norms: np.ndarray) -> np.ndarray:
        """(n, F) standardised float32 features and (n,) sums of their absolute values -> (n, n_classes) float32."""
        logits = z @ self.coef32
        close = np.empty(len(logits), dtype=np.bool_)
        _softmax_in_place(logits, self.intercept32, np.asarray(norms, np.float64), self.error_per_norm,
                          self.error_floor, close)
        close = np.flatnonzero(close)
        if len(close):
            # scikit-learn's own arithmetic on the same standardised features (in the dtype it was fitted in).
            exact = np.zeros((len(close), self.n_classes), dtype=np.float32)
            exact[:, self.columns] = self.estimator.predict_proba(z[close])
            logits[close] = exact
        return logits


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _softmax_in_place(logits, intercept, norms, error_per_norm, error_floor, close):
    """Per row of float32 ``logits``: add ``intercept``, flag ``close`` where the two largest are within the rounding
    bound ``norms * error_per_norm + error_floor``, and replace the row by its softmax (float32, one pass: what
    numpy's argmax / max / exp / sum took five passes over the array for)."""
    n, k = logits.shape
    for i in range(n):
        best = 0
        top = np.float32(-np.inf)
        for c in range(k):
            v = np.float32(logits[i, c] + intercept[c])
            logits[i, c] = v
            if v > top:
                top, best = v, c
        second = np.float32(-np.inf)
        for c in range(k):
            if c != best and logits[i, c] > second:
                second = logits[i, c]
        close[i] = np.float64(np.float32(top - second)) <= norms[i] * error_per_norm + error_floor
        total = np.float32(0.0)
        for c in range(k):
            e = np.float32(np.exp(np.float32(logits[i, c] - top)))
            logits[i, c] = e
            total += e
        for c in range(k):
            logits[i, c] = np.float32(logits[i, c] / total)
