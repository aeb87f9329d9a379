"""Trained classifiers as prediction uses them: :func:`load_classifier` and the :class:`Classifier` interface.

Every model is used through :class:`Classifier`, whose probabilities always cover the full class table in
table order, so prediction treats the ResNet and the scikit-learn models alike.
"""

from __future__ import annotations

import logging
from pathlib import Path

import joblib
import numpy as np

from osmlulc.io import InputError
from osmlulc.resnet import dihedral, keras_module, local_statistics_layer, spectral_indices_layer, undo_dihedral
from osmlulc.sample_data import with_indices

LOG = logging.getLogger("osmlulc")

#: Pixels per ``predict_proba`` call of a scikit-learn model: bounds the Nystroem feature
#: matrix (pixels x components, float64) to a few hundred MB whatever the block size.
SKLEARN_CHUNK_PIXELS = 65536


class Classifier:
    """A trained model seen through one interface by prediction.

    ``patch_size`` P: the classifier needs P // 2 px of context around each pixel;
    ``predict_proba_block`` maps a float32 (h + P - 1, w + P - 1, B) block of raw reflectance to
    (h, w, n_classes) float32 probabilities over the full class table, in table order.
    """

    kind: str
    patch_size: int
    n_classes: int
    n_bands: int
    bands: tuple[str, ...] | None

    def predict_proba_block(self, block: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError

    def predict_proba_patches(self, patches: np.ndarray) -> np.ndarray:
        """(N, P, P, B) patches -> (N, n_classes): each patch classified on its own."""
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

    def predict_proba_patches(self, patches: np.ndarray) -> np.ndarray:
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

    def predict_proba_block(self, block: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        # predict_on_batch runs a compiled graph (about 2x faster than an eager call on CPU);
        # it traces again only for new block shapes (a tile has at most eight with rotations).
        block = np.asarray(block, dtype=np.float32)[None]
        out = None
        for g in range(self.rotations):
            proba = undo_dihedral(np.asarray(self.model.predict_on_batch(np.ascontiguousarray(dihedral(block, g)))), g)
            out = proba if out is None else out + proba
        return np.array(out[0] / self.rotations, dtype=np.float32)  # a writable copy: nodata is blanked in place

    def predict_proba_patches(self, patches: np.ndarray) -> np.ndarray:
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

    def predict_proba_block(self, block: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
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
    patch_size = 1

    def __init__(self, bundle: dict, path):
        self.model = bundle["model"]
        self.kind = bundle["kind"]
        self.bands = tuple(bundle["bands"])
        self.n_bands = len(self.bands)
        self.index_pairs = [tuple(p) for p in bundle.get("index_pairs", [])]
        codes = np.asarray(bundle["classes"])
        self.n_classes = len(codes)
        column_of_code = {int(c): i for i, c in enumerate(codes)}
        unknown = [c for c in self.model.classes_ if int(c) not in column_of_code]
        if unknown:
            raise InputError(f"model {path} predicts classes {unknown} that are not in its class table")
        # Column of the full table for each of the estimator's predict_proba columns.
        self.columns = np.array([column_of_code[int(c)] for c in self.model.classes_], dtype=np.intp)

    def _predict_pixels(self, spectra: np.ndarray) -> np.ndarray:
        """(n, B) spectra -> (n, n_classes) float32 over the full table (absent classes 0)."""
        out = np.zeros((len(spectra), self.n_classes), dtype=np.float32)
        for start in range(0, len(spectra), SKLEARN_CHUNK_PIXELS):
            chunk = spectra[start:start + SKLEARN_CHUNK_PIXELS]
            features = with_indices(chunk, self.index_pairs)
            out[start:start + len(chunk), self.columns] = self.model.predict_proba(features)
        return out

    def predict_proba_block(self, block: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Pixel-wise probabilities; with a ``valid`` mask only those pixels are classified (others 0)."""
        h, w, n_bands = block.shape
        spectra = np.asarray(block, dtype=np.float32).reshape(-1, n_bands)
        if valid is None:
            return self._predict_pixels(spectra).reshape(h, w, self.n_classes)
        out = np.zeros((h * w, self.n_classes), dtype=np.float32)
        flat_valid = valid.reshape(-1)
        if flat_valid.any():
            out[flat_valid] = self._predict_pixels(spectra[flat_valid])
        return out.reshape(h, w, self.n_classes)

    def predict_proba_patches(self, patches: np.ndarray) -> np.ndarray:
        c = patches.shape[1] // 2
        return self._predict_pixels(np.asarray(patches[:, c, c, :], dtype=np.float32))


def load_classifier(path, *, rotations: int = 1) -> Classifier:
    """Load a trained model: ``.keras`` -> ResNet, ``.joblib`` -> SVM / random forest.

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
            model = keras.models.load_model(path, compile=False)
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
    raise InputError(f"model {path}: unknown model type {path.suffix!r}; expected .keras or .joblib")
