"""The scikit-learn classifiers on pixel spectra: an SVM (Nystroem kernel map), a random forest and a
logistic regression, each optionally on the spatial context of :mod:`osmlulc.context_features`."""

from __future__ import annotations

import logging
import time

import joblib
import numba
import numpy as np
from numba import uint64

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


def training_pixels(train: Samples, settings: dict, index_pairs, rng: np.random.Generator):
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
    x, y = training_pixels(train, settings, pairs, rng)
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
    """A fitted ``[StandardScaler ->] LogisticRegression`` (multinomial) applied in float32 by compiled kernels: the
    same class as scikit-learn's ``predict_proba`` argmax, the probabilities within float32 rounding of its.

    :meth:`predict_rows` (integer-valued channels, e.g. a uint16 band stack): one fused kernel per row of pixels
    computes the window statistics (exact integer box sums, then the float64 arithmetic of
    :func:`osmlulc.context_features.window_statistics`: the same float32 features, bit for bit), standardises them
    (float32 arithmetic: the same numbers as ``StandardScaler.transform``), takes the logits (float32 product) and the
    softmax, without a feature array in memory.  :meth:`probabilities` does the last two steps for features of
    ``window_statistics`` (other channels, e.g. spectral indices).  Where the two largest logits are closer than
    the product's rounding error bound (from each pixel's sum of absolute features) the estimator's own
    ``predict_proba`` decides on the same standardised features (scikit-learn fits and predicts in float32 on
    float32 features), so the argmax is scikit-learn's.  ``columns``: the table column of each of the estimator's
    classes; the other columns of ``n_classes`` get probability 0.
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
        # The fused kernel's forms.  Standardising a float32 feature in float32, (f - shift) / scale with float32
        # shift and scale (StandardScaler's, cast as its transform of float32 input casts them), rounds as the
        # scaler's float64 arithmetic then float32 does: a float64 result of +, -, / of float32 numbers rounded to
        # float32 is the float32 result (53 >= 2 x 24 + 2 bits).
        self.shift32, self.scale32 = self.shift.astype(np.float32), self.scale.astype(np.float32)
        self.float32_scaler = bool(np.array_equal(self.shift32, self.shift)
                                   and np.array_equal(self.scale32, self.scale))
        self.coef_rows32 = np.ascontiguousarray(self.coef, dtype=np.float32)
        # The kernel's float32 sum of |z| errs by < (F - 1) 2^-24 relative, its float32 bound by 2 2^-24: margin 1e-4.
        self.bound_per_norm32 = np.float32(self.error_per_norm * (1 + 1e-4))
        self.bound_floor32 = np.float32(self.error_floor * (1 + 1e-4))

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

    def exact_for(self, channels: np.ndarray, windows, source_dtype=None) -> bool:
        """Whether :meth:`predict_rows` gives ``channels`` (..., W, C) the reference's features: integers of at most
        16 bits, rows short enough that the kernel's sums of their values and squares along a row of window sums
        stay exact in float64 (W x window x 2^32 < 2^53), and the scaler's shift and scale float32 numbers.
        ``source_dtype``: the dtype the channels were converted from; an integer type of at most 16 bits (a band
        stack) makes them integers of at most 16 bits without looking at them (else every value is checked)."""
        window = max((int(s) for s in windows or ()), default=1)
        if not self.float32_scaler or channels.shape[-2] * window * INTEGER_CHANNEL_LIMIT ** 2 >= 2.0 ** 53:
            return False
        if source_dtype is not None and np.dtype(source_dtype).kind in "ui" and np.dtype(source_dtype).itemsize <= 2:
            return True
        return bool(_integer_valued(np.ascontiguousarray(channels).reshape(-1), INTEGER_CHANNEL_LIMIT))

    def predict_rows(self, channels: np.ndarray, windows, valid: np.ndarray | None, out: np.ndarray,
                     features: np.ndarray | None = None) -> None:
        """``out`` (h, w, n_classes) float32 <- the probabilities of the pixels of (h + P - 1, w + P - 1, C) channels
        (:meth:`exact_for`; P = the largest window): their window statistics over ``windows`` (over ``valid``
        (h + P - 1, w + P - 1) pixels only, if given), standardised, the softmax of their logits; near ties as
        scikit-learn decides.  ``features`` (h, w, F) float32: also filled with the standardised features (tests)."""
        windows = [int(s) for s in windows or ()]
        half = context_patch_size(windows) // 2
        windows = np.asarray(windows, dtype=np.int64)
        channels = np.ascontiguousarray(channels, dtype=np.float32)
        height, width = out.shape[:2]
        if channels.shape[:2] != (height + 2 * half, width + 2 * half) or not out.flags.c_contiguous:
            raise ValueError(f"predict_rows: channels {channels.shape} do not match the output {out.shape}")
        n = height * width
        # Room for every pixel's features; only the near ties' pages are ever touched.
        close_z = np.empty((n, self.n_features), np.float32)
        close_at = np.empty(n, np.int64)
        use_valid = valid is not None and len(windows) > 0
        mask = np.ascontiguousarray(valid, dtype=np.bool_) if use_valid else _NO_MASK
        with_features = features is not None
        n_close = _linear_rows(channels, mask, use_valid, windows, half, self.shift32, self.scale32, self.coef_rows32,
                               self.intercept32, self.bound_per_norm32, self.bound_floor32, out, close_z, close_at,
                               features if with_features else _NO_FEATURES, with_features)
        if n_close:
            exact = np.zeros((n_close, self.n_classes), dtype=np.float32)
            exact[:, self.columns] = self.estimator.predict_proba(close_z[:n_close])
            out.reshape(n, self.n_classes)[close_at[:n_close]] = exact

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


#: The largest magnitude of the integer channels of :meth:`LinearSoftmax.predict_rows` (uint16 reflectance).
INTEGER_CHANNEL_LIMIT = 65535.0
_NO_MASK = np.ones((1, 1), np.bool_)
_NO_FEATURES = np.zeros((1, 1, 1), np.float32)
_LOG2E = 1.4426950408889634


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _integer_valued(flat, limit):
    """Whether every value of the 1-D array ``flat`` is an integer of magnitude at most ``limit``."""
    bad = 0
    for i in range(uint64(flat.shape[0])):
        v = flat[i]
        bad += (v != np.floor(v)) | (abs(v) > limit)
    return bad == 0


# The kernels index with unsigned integers (numba's uint64) where they can: numba cannot then wrap negative
# indices, and LLVM vectorises the loops.

@numba.njit(cache=True, nogil=True, error_model="numpy")
def _row_prefixes(src, dst):
    """dst[q, j] = src[q, 0] + ... + src[q, j - 1] (dst[q, 0] = 0) for each row q: four rows at a time, so four
    independent chains of additions run side by side (exact for integer sums below 2^53)."""
    rows, n = src.shape
    q = 0
    while q < rows:
        if q + 4 <= rows:
            t0 = t1 = t2 = t3 = 0.0
            dst[q, 0] = dst[q + 1, 0] = dst[q + 2, 0] = dst[q + 3, 0] = 0.0
            for j in range(uint64(n)):
                t0 += src[q, j]
                t1 += src[q + 1, j]
                t2 += src[q + 2, j]
                t3 += src[q + 3, j]
                dst[q, j + 1] = t0
                dst[q + 1, j + 1] = t1
                dst[q + 2, j + 1] = t2
                dst[q + 3, j + 1] = t3
            q += 4
        else:
            t0 = 0.0
            dst[q, 0] = 0.0
            for j in range(uint64(n)):
                t0 += src[q, j]
                dst[q, j + 1] = t0
            q += 1


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _logits(coef, z, logits):
    """logits = coef @ z in float32, vectorised along the row (any order and fused multiply-adds are within the
    rounding error bound of :class:`LinearSoftmax`; BLAS took longer for these shapes, packing z first)."""
    n_classes, n_features = coef.shape
    width = uint64(z.shape[1])
    for c in range(n_classes):
        for j in range(width):
            logits[c, j] = 0.0
        for k in range(n_features):
            weight = coef[c, k]
            for j in range(width):
                logits[c, j] += weight * z[k, j]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _softmax_numerators(logits, top, e, powers):
    """e[c, j] = exp(logits[c, j] - top[j]) in float32 (Cephes' expf: within 2 ulp), 0 below exp(-80) (a class
    without weights, logit -inf, gets 0); vectorised: 2^n is added to the polynomial's exponent bits."""
    n_classes, width = logits.shape
    e_bits = e.reshape(-1).view(np.int32)
    low = np.float32(-80.0)
    for c in range(n_classes):
        for j in range(uint64(width)):
            d = logits[c, j] - top[j]
            d = d if d > low else low
            n = np.floor(d * np.float32(_LOG2E) + np.float32(0.5))
            r = d - n * np.float32(0.693359375) - n * np.float32(-2.12194440e-4)
            p = ((((np.float32(1.9875691500e-4) * r + np.float32(1.3981999507e-3)) * r
                   + np.float32(8.3334519073e-3)) * r + np.float32(4.1665795894e-2)) * r
                 + np.float32(1.6666665459e-1)) * r + np.float32(5.0000001201e-1)
            e[c, j] = p * (r * r) + r + np.float32(1.0)
            powers[c, j] = np.int32(n) << 23
        row = uint64(c * width)
        for j in range(uint64(width)):
            e_bits[row + j] += powers[c, j]
        for j in range(uint64(width)):
            e[c, j] = e[c, j] if logits[c, j] - top[j] > low else np.float32(0.0)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _linear_rows(x, valid, use_valid, windows, half, shift, scale, coef, intercept, bound_per_norm, bound_floor,
                 out, close_z, close_at, features, with_features):
    """:meth:`LinearSoftmax.predict_rows`, one output row at a time; returns the number of near ties, whose
    standardised features and flat output index it writes to ``close_z`` and ``close_at``.

    Box sums: per window a running sum over its rows of each column's (valid) values, squares and valid pixels
    (float64; a row enters, one leaves), then their prefix sums along the row (:func:`_row_prefixes`), whose
    differences are the window sums -- for integer channels the exact integers the float64 integral images of
    ``window_statistics`` give, so mean and standard deviation, computed as there, are its numbers.  Everything is
    kept channel by channel along the row, so the steps are vectorised loops over the row's pixels."""
    rows_in, width_in, channels = x.shape
    height, width, n_classes = out.shape
    n_windows = windows.shape[0]
    n_features = channels * (1 + 2 * n_windows)
    ring = 2 * half + 2   # input rows i - 1 ... i + 2 half: those that enter or leave a window at output row i
    values = np.zeros((ring, channels, width_in), np.float32)     # the (valid) values of those rows
    oks = np.zeros((ring, width_in), np.float32)
    # Per window and column: the sums of the values (rows 0 ... C - 1) and squares (C ... 2 C - 1) and the count of
    # the valid pixels over the window's rows; their prefix sums along the row.
    columns = np.zeros((max(n_windows, 1), 2 * channels, width_in))
    counts = np.zeros((max(n_windows, 1), 1, width_in))
    prefix = np.empty((2 * channels, width_in + 1))
    count_prefix = np.empty((1, width_in + 1))
    own = np.empty((channels, width), np.float32)
    z = np.empty((n_features, width), np.float32)
    norms = np.empty(width, np.float32)
    logits = np.empty((n_classes, width), np.float32)
    top, second, total = np.empty(width, np.float32), np.empty(width, np.float32), np.empty(width, np.float32)
    e = np.empty((n_classes, width), np.float32)
    powers = np.empty((n_classes, width), np.int32)
    w_all, w_in = uint64(width), uint64(width_in)
    n_close = 0
    for i in range(height):
        for row in range(0 if i == 0 else i + 2 * half, i + 2 * half + 1):
            slot = row % ring
            for jj in range(width_in):
                ok = (not use_valid) or valid[row, jj]
                oks[slot, jj] = 1.0 if ok else 0.0
                for c in range(channels):
                    values[slot, c, jj] = x[row, jj, c] if ok else np.float32(0.0)
        for w in range(n_windows):
            r = windows[w] // 2
            if i == 0:
                for row in range(half - r, half + r + 1):
                    slot = row % ring
                    for c in range(channels):
                        for jj in range(w_in):
                            v = np.float64(values[slot, c, jj])
                            columns[w, c, jj] += v
                            columns[w, channels + c, jj] += v * v
                    if use_valid:
                        for jj in range(w_in):
                            counts[w, 0, jj] += oks[slot, jj]
            else:
                enter, leave = (i + half + r) % ring, (i - 1 + half - r) % ring
                for c in range(channels):
                    for jj in range(w_in):
                        a = np.float64(values[enter, c, jj])
                        b = np.float64(values[leave, c, jj])
                        columns[w, c, jj] += a - b
                        columns[w, channels + c, jj] += a * a - b * b
                if use_valid:
                    for jj in range(w_in):
                        counts[w, 0, jj] += np.float64(oks[enter, jj]) - np.float64(oks[leave, jj])
        # The standardised features z (feature, pixel) and each pixel's sum of |z|.
        for j in range(width):
            for c in range(channels):
                own[c, j] = x[i + half, j + half, c]
        for j in range(w_all):
            norms[j] = 0.0
        for c in range(channels):
            for j in range(w_all):
                f = (own[c, j] - shift[c]) / scale[c]
                z[c, j] = f
                norms[j] += abs(f)
        k = channels
        for w in range(n_windows):
            size = windows[w]
            lo = uint64(half - size // 2)   # the window of output pixel j: columns lo + j ... hi + j - 1
            hi = lo + uint64(size)
            _row_prefixes(columns[w], prefix)
            if use_valid:
                _row_prefixes(counts[w], count_prefix)
            for c in range(channels):
                km, ks = k + c, k + channels + c
                for j in range(w_all):
                    if use_valid:
                        a = count_prefix[0, hi + j] - count_prefix[0, lo + j]
                    else:
                        a = np.float64(size * size)
                    mean = (prefix[c, hi + j] - prefix[c, lo + j]) / a
                    variance = (prefix[channels + c, hi + j] - prefix[channels + c, lo + j]) / a - mean * mean
                    variance = variance if variance > 0.0 else 0.0
                    # A window without valid pixels: 0, as window_statistics gives.
                    fm = ((np.float32(mean) if a > 0.0 else np.float32(0.0)) - shift[km]) / scale[km]
                    fs = ((np.float32(np.sqrt(variance)) if a > 0.0 else np.float32(0.0)) - shift[ks]) / scale[ks]
                    z[km, j] = fm
                    z[ks, j] = fs
                    norms[j] += abs(fm) + abs(fs)
            k += 2 * channels
        if with_features:
            for j in range(width):
                for f in range(n_features):
                    features[i, j, f] = z[f, j]
        # Logits, the two largest, softmax.
        _logits(coef, z, logits)
        for j in range(w_all):
            top[j] = -np.inf
            second[j] = -np.inf
        for c in range(n_classes):
            b = intercept[c]
            for j in range(w_all):
                v = logits[c, j] + b
                logits[c, j] = v
                second[j] = max(second[j], min(top[j], v))
                top[j] = max(top[j], v)
        _softmax_numerators(logits, top, e, powers)
        for j in range(w_all):
            total[j] = 0.0
        for c in range(n_classes):
            for j in range(w_all):
                total[j] += e[c, j]
        for c in range(n_classes):
            for j in range(w_all):
                e[c, j] /= total[j]
        for j in range(width):
            for c in range(n_classes):
                out[i, j, c] = e[c, j]
        for j in range(width):
            if top[j] - second[j] <= norms[j] * bound_per_norm + bound_floor:
                for f in range(n_features):
                    close_z[n_close, f] = z[f, j]
                close_at[n_close] = i * width + j
                n_close += 1
    return n_close
