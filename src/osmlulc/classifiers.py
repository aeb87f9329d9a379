"""Trained classifiers as prediction uses them: :func:`load_classifier` and the :class:`Classifier` interface.

Every model is used through :class:`Classifier`, whose probabilities always cover the full class table in
table order, so prediction treats the ResNet and the scikit-learn models alike.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import joblib
import numpy as np

from osmlulc.context_features import context_patch_size, window_statistics
from osmlulc.io import InputError
from osmlulc.indices import with_indices
from osmlulc.resnet import dihedral, keras_module, local_statistics_layer, spectral_indices_layer, undo_dihedral
from osmlulc.sklearn_models import LinearSoftmax, pixel_features

LOG = logging.getLogger("osmlulc")

#: Pixels per ``predict_proba`` call of a scikit-learn model: bounds the Nystroem feature
#: matrix (pixels x components, float64) to a few hundred MB whatever the block size.
SKLEARN_CHUNK_PIXELS = 65536


class Classifier:
    """A trained model seen through one interface by prediction.

    ``patch_size`` P: the classifier needs P // 2 px of context around each pixel;
    ``predict_proba_block`` maps a float32 (h + P - 1, w + P - 1, B) block of raw reflectance to
    (h, w, n_classes) float32 probabilities over the full class table, in table order.  ``valid``
    (h, w): the pixels to classify (None: all); ``block_valid`` (h + P - 1, w + P - 1): which pixels
    of the block are real observations (None: all), for models that can leave gaps out of their
    features (the window statistics); gaps may have been filled (:func:`osmlulc.gaps.fill_gaps`).
    """

    kind: str
    patch_size: int
    n_classes: int
    n_bands: int
    bands: tuple[str, ...] | None

    def predict_proba_block(self, block: np.ndarray, valid: np.ndarray | None = None,
                            block_valid: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError

    def needs_filled_gaps(self, valid_windows: bool) -> bool:
        """Whether the values of gap pixels reach the output (then prediction fills them first): a CNN sees
        every pixel of its field; window statistics over valid pixels (``valid_windows``) do not."""
        return True

    def predict_proba_patches(self, patches: np.ndarray, patch_valid: np.ndarray | None = None) -> np.ndarray:
        """(N, P, P, B) patches -> (N, n_classes): each patch classified on its own (``patch_valid`` (N, P, P):
        its real observations, as ``block_valid`` of :meth:`predict_proba_block`)."""
        raise NotImplementedError


class _KerasClassifier(Classifier):
    """A Keras ResNet; subclasses set ``patch_size`` and how a block is classified."""

    kind = "resnet"

    #: Patches per model call in :meth:`predict_proba_patches`.
    PATCH_BATCH = 1024

    def __init__(self, model):
        self.model = model
        self.n_classes = int(model.output_shape[-1])
        self.n_bands = int(model.input_shape[-1])
        self.bands = None

    def predict_proba_patches(self, patches: np.ndarray, patch_valid: np.ndarray | None = None) -> np.ndarray:
        out = [self.model.predict_on_batch(np.asarray(patches[i:i + self.PATCH_BATCH], dtype=np.float32))
               for i in range(0, len(patches), self.PATCH_BATCH)]
        return np.concatenate(out).reshape(len(patches), self.n_classes)




class ResnetClassifier(_KerasClassifier):
    """The dense ResNet: a whole block in one fully convolutional call.

    ``rotations`` (1, 4 or 8): test-time augmentation -- the mean probabilities over the first
    ``rotations`` :func:`dihedral` transforms of the input (4: the quarter turns; 8: and their
    mirror images), each transformed back.  Still exact dense inference: a block's output equals
    that of every pixel's own patch under the same transforms (:meth:`predict_proba_patches`).
    """

    rotations = 1

    def __init__(self, model):
        super().__init__(model)
        # Only 'valid' layers at stride 1 (convs, context windows): the output of an n px input is n - P + 1 px.
        probe = 1024
        self.patch_size = probe + 1 - int(model.compute_output_shape((1, probe, probe, model.input_shape[-1]))[1])

    def predict_proba_block(self, block: np.ndarray, valid: np.ndarray | None = None,
                            block_valid: np.ndarray | None = None) -> np.ndarray:
        # predict_on_batch runs a compiled graph (about 2x faster than an eager call on CPU);
        # it traces again only for new block shapes (a tile has at most eight with rotations).
        block = np.asarray(block, dtype=np.float32)[None]
        out = None
        for g in range(self.rotations):
            proba = undo_dihedral(np.asarray(self.model.predict_on_batch(np.ascontiguousarray(dihedral(block, g)))), g)
            out = proba if out is None else out + proba
        return np.array(out[0] / self.rotations, dtype=np.float32)  # a writable copy: nodata is blanked in place

    def predict_proba_patches(self, patches: np.ndarray, patch_valid: np.ndarray | None = None) -> np.ndarray:
        out = None
        for g in range(self.rotations):
            proba = super().predict_proba_patches(np.ascontiguousarray(dihedral(patches, g)))
            out = proba if out is None else out + proba
        return out / self.rotations


class PatchResnetClassifier(_KerasClassifier):
    """A fixed-input patch classifier (the original architecture): one patch per pixel.

    ``patch_size`` may be even; the pixel sits at index ``P // 2`` of its patch (see
    :func:`centre_crop`).  :meth:`predict_proba_block` cuts every valid pixel's patch out of
    the block and classifies them in batches -- the slow path dense inference replaces.
    """

    def __init__(self, model):
        super().__init__(model)
        self.patch_size = int(model.input_shape[1])

    def predict_proba_block(self, block: np.ndarray, valid: np.ndarray | None = None,
                            block_valid: np.ndarray | None = None) -> np.ndarray:
        p = self.patch_size
        h, w = block.shape[0] - p + 1, block.shape[1] - p + 1
        out = np.zeros((h, w, self.n_classes), dtype=np.float32)
        # Views of every pixel's patch (no copy); only one batch of patches is materialised at a time.
        windows = np.lib.stride_tricks.sliding_window_view(np.asarray(block, dtype=np.float32), (p, p), axis=(0, 1))
        rows, cols = np.nonzero(np.ones((h, w), bool) if valid is None else valid)
        for i in range(0, len(rows), self.PATCH_BATCH):
            r, c = rows[i:i + self.PATCH_BATCH], cols[i:i + self.PATCH_BATCH]
            batch = np.moveaxis(windows[r, c], 1, -1)          # (n, B, p, p) -> (n, p, p, B)
            out[r, c] = np.asarray(self.model.predict_on_batch(np.ascontiguousarray(batch)))
        return out


class SklearnClassifier(Classifier):
    """An SVM, random forest or logistic regression on pixel features (:func:`osmlulc.sklearn_models.pixel_features`).

    Without context windows ``patch_size`` is 1 (the pixel's own spectrum); with ``windows`` it is the
    largest window, and a block's features are computed in valid mode on its halo, the same numbers as
    each pixel's own patch gives (:meth:`predict_proba_patches`).
    """

    def __init__(self, bundle: dict, path):
        self.model = bundle["model"]
        self.kind = bundle["kind"]
        self.bands = tuple(bundle["bands"])
        self.n_bands = len(self.bands)
        self.index_pairs = [tuple(p) for p in bundle.get("index_pairs", [])]
        self.windows = [int(s) for s in bundle.get("windows", [])]
        self.patch_size = context_patch_size(self.windows)
        codes = np.asarray(bundle["classes"])
        self.n_classes = len(codes)
        column_of_code = {int(c): i for i, c in enumerate(codes)}
        unknown = [c for c in self.model.classes_ if int(c) not in column_of_code]
        if unknown:
            raise InputError(f"model {path} predicts classes {unknown} that are not in its class table")
        # Column of the full table for each of the estimator's predict_proba columns.
        self.columns = np.array([column_of_code[int(c)] for c in self.model.classes_], dtype=np.intp)
        #: The logistic regression at memory speed (None: scikit-learn's predict_proba, e.g. for svm and rf).
        self.linear = LinearSoftmax.of(self.model, self.columns, self.n_classes)
        #: Threads of the logistic regression's block prediction (the prediction rules set their own).
        self.threads = 1

    def _predict_features(self, features: np.ndarray) -> np.ndarray:
        """(n, F) features -> (n, n_classes) float32 over the full table (absent classes 0)."""
        out = np.zeros((len(features), self.n_classes), dtype=np.float32)
        for start in range(0, len(features), SKLEARN_CHUNK_PIXELS):
            chunk = features[start:start + SKLEARN_CHUNK_PIXELS]
            out[start:start + len(chunk), self.columns] = self.model.predict_proba(chunk)
        return out

    def predict_proba_block(self, block: np.ndarray, valid: np.ndarray | None = None,
                            block_valid: np.ndarray | None = None) -> np.ndarray:
        """Pixel-wise probabilities; with a ``valid`` mask only those pixels are classified (others 0); with
        ``block_valid`` the window statistics leave the block's gaps out."""
        if self.linear is not None:
            return self._predict_linear_block(block, valid, block_valid)
        features = pixel_features(np.asarray(block, dtype=np.float32), self.index_pairs, self.windows, block_valid)
        h, w, n_features = features.shape
        features = features.reshape(-1, n_features)
        if valid is None:
            return self._predict_features(features).reshape(h, w, self.n_classes)
        out = np.zeros((h * w, self.n_classes), dtype=np.float32)
        flat_valid = valid.reshape(-1)
        if flat_valid.any():
            out[flat_valid] = self._predict_features(features[flat_valid])
        return out.reshape(h, w, self.n_classes)

    def _predict_linear_block(self, block, valid, block_valid) -> np.ndarray:
        """:meth:`predict_proba_block` of a logistic regression (:class:`osmlulc.sklearn_models.LinearSoftmax`): its
        fused kernel on integer channels (a band stack), else standardised features from the compiled kernel and
        one float32 matrix product, chunk of rows by chunk of rows."""
        block = np.asarray(block)
        channels = with_indices(block.astype(np.float32, copy=False), self.index_pairs)
        size = self.patch_size
        h, w = channels.shape[0] - size + 1, channels.shape[1] - size + 1
        out = np.empty((h, w, self.n_classes), dtype=np.float32)
        # A uint16 band stack without index channels is integer by its type: no need to look at every value.
        fused = self.linear.exact_for(channels, self.windows, None if self.index_pairs else block.dtype)
        if fused:
            channels = np.ascontiguousarray(channels)

        def chunk(row):
            rows = slice(row, min(h, row + step))
            part = slice(row, rows.stop + size - 1)
            part_valid = None if block_valid is None else block_valid[part]
            if fused:
                self.linear.predict_rows(channels[part], self.windows, part_valid, out[rows])
                return
            norms = np.empty((rows.stop - row, w))
            z = window_statistics(channels[part], self.windows, part_valid, shift=self.linear.shift,
                                  scale=self.linear.scale, norms=norms)
            out[rows] = self.linear.probabilities(z.reshape(-1, z.shape[-1]), norms.reshape(-1)).reshape(
                rows.stop - row, w, self.n_classes)

        # Rows in chunks of about SKLEARN_CHUNK_PIXELS: the features of a chunk stay small whatever the block size.
        # The kernels and the matrix product release the GIL: with threads, chunks run side by side.
        step = max(1, SKLEARN_CHUNK_PIXELS // w)
        with _one_blas_thread():  # a (n, F) x (F, 12) product gains nothing from BLAS threads; they spin and cost
            self._run_chunks(chunk, h, step)
        if valid is not None:
            out[~valid] = 0
        return out

    def _run_chunks(self, chunk, h: int, step: int) -> None:
        if self.threads > 1 and h > step:
            step = max(1, min(step, -(-h // (2 * self.threads))))  # at least two chunks per thread
            with ThreadPoolExecutor(self.threads) as pool:
                list(pool.map(chunk, range(0, h, step)))
        else:
            for row in range(0, h, step):
                chunk(row)

    def needs_filled_gaps(self, valid_windows: bool) -> bool:
        return not valid_windows

    def predict_proba_patches(self, patches: np.ndarray, patch_valid: np.ndarray | None = None) -> np.ndarray:
        start = patches.shape[1] // 2 - self.patch_size // 2
        crop = np.asarray(patches[:, start:start + self.patch_size, start:start + self.patch_size, :], np.float32)
        crop_valid = None if patch_valid is None else patch_valid[:, start:start + self.patch_size,
                                                                  start:start + self.patch_size]
        return self._predict_features(pixel_features(crop, self.index_pairs, self.windows, crop_valid)[:, 0, 0, :])


_BLAS_CONTROLLER = []


def _one_blas_thread():
    """Context: BLAS on one thread (threadpoolctl; its controller is made once, as it scans the loaded libraries)."""
    from threadpoolctl import ThreadpoolController

    if not _BLAS_CONTROLLER:
        _BLAS_CONTROLLER.append(ThreadpoolController())
    return _BLAS_CONTROLLER[0].limit(limits=1, user_api="blas")


class EnsembleClassifier(Classifier):
    """The weighted mean of the probabilities of several trained models (e.g. the ResNet and the
    logistic regression on window statistics: their errors differ, so the mean beats both on real data).

    ``patch_size`` is the largest member's; each member gets the centre of the block / patches it needs.
    Tiles are blended from the members' stored probabilities instead
    (:func:`osmlulc.predict.blend_tile_probabilities`), so that no member runs twice; this class scores
    the ensemble on the validation samples.
    """

    kind = "ensemble"

    def __init__(self, members: list[tuple[Classifier, float]]):
        if not members:
            raise ValueError("an ensemble needs at least one member")
        total = float(sum(w for _, w in members))
        self.members = [(m, float(w) / total) for m, w in members]
        first = members[0][0]
        self.n_classes, self.n_bands, self.bands = first.n_classes, first.n_bands, first.bands
        for member, _ in members:
            if (member.n_classes, member.n_bands) != (self.n_classes, self.n_bands):
                raise InputError(f"ensemble members disagree on classes / bands: {member.kind} has "
                                 f"{member.n_classes} / {member.n_bands}, "
                                 f"{first.kind} {self.n_classes} / {self.n_bands}")
        self.patch_size = max(m.patch_size for m, _ in members)

    def _crop(self, array: np.ndarray, member: Classifier, axes: tuple[int, int]) -> np.ndarray:
        # The pixel sits at P // 2 of the ensemble's patch and at p // 2 of the member's.
        start = self.patch_size // 2 - member.patch_size // 2
        excess = self.patch_size - member.patch_size
        index = [slice(None)] * array.ndim
        for axis in axes:
            index[axis] = slice(start, array.shape[axis] - (excess - start))
        return array[tuple(index)]

    def predict_proba_block(self, block: np.ndarray, valid: np.ndarray | None = None,
                            block_valid: np.ndarray | None = None) -> np.ndarray:
        out = None
        for member, weight in self.members:
            member_valid = None if block_valid is None else self._crop(block_valid, member, (0, 1))
            proba = member.predict_proba_block(self._crop(block, member, (0, 1)), valid, member_valid)
            proba = proba * np.float32(weight)
            out = proba if out is None else out + proba
        return out

    def needs_filled_gaps(self, valid_windows: bool) -> bool:
        return any(member.needs_filled_gaps(valid_windows) for member, _ in self.members)

    def predict_proba_patches(self, patches: np.ndarray, patch_valid: np.ndarray | None = None) -> np.ndarray:
        out = None
        for member, weight in self.members:
            member_valid = None if patch_valid is None else self._crop(patch_valid, member, (1, 2))
            proba = member.predict_proba_patches(self._crop(patches, member, (1, 2)), member_valid)
            proba = proba * np.float32(weight)
            out = proba if out is None else out + proba
        return out


def write_ensemble(members: dict, weights: dict, path, *, water=None, selection: dict | None = None) -> None:
    """The ensemble's model file (JSON): member name -> model path and weight, as :func:`load_classifier` reads it;
    ``water``: the water decision of the product (:class:`osmlulc.selection.WaterDecision`), ``selection``: the
    validation figures the weights and the decision were chosen on (for the log and the report)."""
    import json

    from osmlulc.io import atomic_output

    if set(members) != set(weights) or not members:
        raise ValueError(f"ensemble: members {sorted(members)} and weights {sorted(weights)} must name the same models")
    spec = {"kind": "ensemble",
            "members": [{"name": n, "path": str(members[n]), "weight": float(weights[n])} for n in members],
            "water": None if water is None else water.to_dict(), "selection": selection or {}}
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(spec, indent=2) + "\n")


def read_ensemble(path) -> tuple[dict, dict, object]:
    """An ensemble model file's members (name -> model path), weights (name -> weight) and water decision (or None)."""
    import json

    from osmlulc.selection import WaterDecision

    path = Path(path)
    try:
        spec = json.loads(path.read_text())
        members = {m["name"]: m["path"] for m in spec["members"]}
        weights = {m["name"]: float(m["weight"]) for m in spec["members"]}
        water = WaterDecision.from_dict(spec.get("water"))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"ensemble {path} cannot be read ({err}); rebuild it") from None
    if spec.get("kind") != "ensemble":
        raise InputError(f"model {path} is not an osmlulc ensemble; rebuild it")
    return members, weights, water


def _load_ensemble(path: Path, rotations: int) -> EnsembleClassifier:
    members, weights, _ = read_ensemble(path)
    return EnsembleClassifier([(load_classifier(members[n], rotations=rotations), weights[n]) for n in members])


def load_classifier(path, *, rotations: int = 1) -> Classifier:
    """Load a trained model: ``.keras`` -> ResNet, ``.joblib`` -> SVM / random forest / logistic
    regression, ``.json`` -> an ensemble of such models (:func:`write_ensemble`).

    ``rotations`` (1, 4, 8): test-time rotations of the dense ResNet (:class:`ResnetClassifier`);
    the per-pixel models and the original architecture ignore it.
    """
    if rotations not in (1, 4, 8):
        raise ValueError(f"rotations must be 1, 4 or 8, got {rotations}")
    path = Path(path)
    if not path.exists():
        raise InputError(f"model {path} does not exist; train it first")
    if path.suffix == ".keras":
        keras = keras_module()
        spectral_indices_layer()  # registered before loading a model that uses them
        local_statistics_layer()
        try:
            # safe_mode: a Lambda layer (arbitrary code) in a model file is refused, whatever the Keras default.
            model = keras.models.load_model(path, compile=False, safe_mode=True)
        except (OSError, ValueError) as err:
            raise InputError(f"model {path} cannot be loaded ({err}); retrain it") from None
        # The dense ResNet maps images to images; the original maps a fixed patch to (N, classes).
        if len(model.output_shape) == 2:
            return PatchResnetClassifier(model)
        classifier = ResnetClassifier(model)
        classifier.rotations = rotations
        return classifier
    if path.suffix == ".joblib":
        try:
            bundle = joblib.load(path)
        except Exception as err:  # joblib/pickle raise many types on corrupt files
            raise InputError(f"model {path} cannot be loaded ({err}); retrain it") from None
        if not isinstance(bundle, dict) or not {"model", "classes", "bands", "kind"} <= set(bundle):
            raise InputError(f"model {path} is not an osmlulc model bundle; retrain it")
        return SklearnClassifier(bundle, path)
    if path.suffix == ".json":
        return _load_ensemble(path, rotations)
    raise InputError(f"model {path}: unknown model type {path.suffix!r}; expected .keras, .joblib or .json")
