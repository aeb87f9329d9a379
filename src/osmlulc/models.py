"""Training and loading of the three OSMLULC classifiers: a ResNet on image patches, an SVM and a
random forest on pixel spectra.

The ResNet is a patch classifier built for *exact dense inference*: only 'valid' convolutions,
no striding and no pooling, and residual shortcuts that are centre crops of the block input.
Its receptive field is exactly its patch, so the same fully convolutional model classifies one
``P x P`` patch into a ``1 x 1`` output or an ``(H + P - 1) x (W + P - 1)`` block into ``H x W``
outputs, each identical to classifying that pixel's own patch -- a whole tile costs one
convolution pass instead of one patch per pixel.

The original OSMLULC network (Keras' CIFAR-10 ``resnet_v2``: 'same' padding, strided stages,
global average pooling, on 12 x 12 patches) stays available as ``architecture: original``
(:func:`build_original_resnet`) for comparison; it can only classify one patch per pixel.

Every model is used through :class:`Classifier` (:func:`load_classifier`), whose probabilities
always cover the full class table in table order, so prediction treats both families alike.

TensorFlow is imported lazily, so training or using the scikit-learn models never loads it.
"""

from __future__ import annotations

import csv
import functools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np

from osmlulc.classes import ClassTable
from osmlulc.io import REFLECTANCE_SCALE, InputError, atomic_output

LOG = logging.getLogger("osmlulc")

#: Pixels per ``predict_proba`` call of a scikit-learn model: bounds the Nystroem feature
#: matrix (pixels x components, float64) to a few hundred MB whatever the block size.
SKLEARN_CHUNK_PIXELS = 65536

SAMPLE_KEYS = ("patches", "labels", "tiles", "rows", "cols", "bands")


# --------------------------------------------------------------------------------------------
# Samples
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Samples:
    """Training or validation samples of one .npz file, labels mapped onto the class table."""

    patches: np.ndarray   # (N, P, P, B) uint16 reflectance x 10000, centred on the sample pixel
    labels: np.ndarray    # (N,) uint8 class codes
    targets: np.ndarray   # (N,) int32 position of each label in the class table
    bands: tuple[str, ...]
    #: (N, K, K) uint8 class codes of the clean labelled pixels around each sample (0: not a target),
    #: K odd; None when the samples were drawn without label chips (``samples.chip_px: 1``).
    label_chips: np.ndarray | None = None
    #: (n_classes,) clean labelled pixels per class (table order) the samples were drawn from, or None.
    candidates: np.ndarray | None = None

    @property
    def centre_spectra(self) -> np.ndarray:
        """(N, B) float32 band values of each patch's centre pixel (the sample pixel itself)."""
        c = self.patches.shape[1] // 2
        return self.patches[:, c, c, :].astype(np.float32)


def load_samples(path: str | os.PathLike, table: ClassTable) -> Samples:
    """Read a samples .npz and check it; one-line :class:`InputError` naming the file if it is bad."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"samples {path} do not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in SAMPLE_KEYS if k not in data]
            if missing:
                raise InputError(f"samples {path} lack the arrays {missing}; regenerate them")
            patches, labels, bands = data["patches"], data["labels"], data["bands"]
            label_chips = data["label_chips"] if "label_chips" in data else None
            candidates = data["candidates"] if "candidates" in data else None
    except (OSError, ValueError) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"samples {path} cannot be read ({err}); regenerate them") from None
    if patches.ndim != 4 or patches.shape[1] != patches.shape[2] or patches.shape[1] % 2 == 0:
        raise InputError(f"samples {path}: patches have shape {patches.shape}; expected (N, P, P, B) with P odd")
    if patches.shape[3] != len(bands) or labels.shape != (patches.shape[0],):
        raise InputError(f"samples {path}: {patches.shape[0]} patches of {patches.shape[3]} bands do not match "
                         f"{labels.shape[0]} labels and {len(bands)} band names")
    if len(labels) == 0:
        raise InputError(f"samples {path} hold no sample; check the label rasters and sampling settings")
    targets = table.index_of_code()[labels.astype(np.intp)].astype(np.int32)
    if (targets < 0).any():
        unknown = sorted(set(labels[targets < 0].tolist()))
        raise InputError(f"samples {path}: label codes {unknown} are not in the class table")
    if label_chips is not None and (label_chips.shape[0] != len(labels) or label_chips.ndim != 3):
        raise InputError(f"samples {path}: label chips of shape {label_chips.shape} do not match {len(labels)} samples")
    return Samples(patches, labels.astype(np.uint8), targets, tuple(str(b) for b in bands), label_chips,
                   None if candidates is None or len(candidates) != len(table) else candidates)


def check_same_bands(train: Samples, validation: Samples, validation_path) -> None:
    if train.bands != validation.bands:
        raise InputError(f"samples {validation_path} have bands {list(validation.bands)}, "
                         f"the training samples {list(train.bands)}")


def centre_crop(patches: np.ndarray, size: int) -> np.ndarray:
    """The central ``size x size`` part of (N, P, P, B) patches (P >= size).

    Centre convention, also for even sizes: the sample pixel is at index ``P // 2`` of the
    patch and at index ``size // 2`` of the crop (a 12 x 12 patch holds 6 px above/left of its
    pixel and 5 px below/right).
    """
    have = patches.shape[1]
    if size > have:
        raise InputError(f"the model needs {size} x {size} patches but the samples hold {have} x {have}; "
                         "sample larger patches or use fewer blocks / a smaller kernel")
    start = have // 2 - size // 2
    return patches[:, start:start + size, start:start + size, :]


def balanced_class_weights(targets: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-class weight n / (n_present * count): each present class weighs the same in total."""
    return class_weights(targets, n_classes, "balanced")


#: ``class_weight`` settings: how much each class weighs in the loss, in total.
CLASS_WEIGHTINGS = ("balanced", "sqrt", "prior")


def class_weights(targets: np.ndarray, n_classes: int, kind: str = "balanced", candidates=None) -> np.ndarray:
    """Per-class sample weights (mean 1 over the samples) so that each present class weighs, in total:

    * ``balanced``: the same (rare classes count as much as common ones; best macro recall);
    * ``prior``: its share of the labelled pixels it was drawn from (``candidates``, per class), i.e.
      the balanced samples re-weighted to the label distribution (best overall accuracy when the
      labels' class mix is the map's);
    * ``sqrt``: the square root of that share, between the two.
    Without ``candidates`` the sample counts stand in for them.
    """
    if kind not in CLASS_WEIGHTINGS:
        raise ValueError(f"class_weight must be one of {CLASS_WEIGHTINGS}, got {kind!r}")
    counts = np.bincount(targets, minlength=n_classes).astype(np.float64)
    present = counts > 0
    share = np.asarray(candidates if candidates is not None else counts, dtype=np.float64)
    share = np.where(present, share, 0)
    total = {"balanced": present.astype(np.float64), "prior": share, "sqrt": np.sqrt(share)}[kind]
    weights = np.ones(n_classes)
    weights[present] = total[present] / counts[present]
    weights[present & (total <= 0)] = 0.0
    return weights * counts.sum() / max((weights * counts).sum(), 1e-12)


def _require(settings: dict, keys: tuple[str, ...], what: str) -> None:
    missing = [k for k in keys if k not in settings]
    if missing:
        raise ValueError(f"{what} settings lack {missing}")


# --------------------------------------------------------------------------------------------
# ResNet
# --------------------------------------------------------------------------------------------

def _keras():
    """Import keras with TensorFlow's C++ log noise off (lazily: sklearn work never loads TF)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras


def block_dilations(n_blocks: int, dilations=None) -> list[int]:
    """Dilation rate of each residual block (both of its convs): ``dilations`` or 1 for every block."""
    if dilations is None:
        return [1] * n_blocks
    dilations = [int(d) for d in dilations]
    if len(dilations) != n_blocks or any(d < 1 for d in dilations):
        raise ValueError(f"resnet: dilations must give one rate >= 1 per block ({n_blocks}), got {dilations}")
    return dilations


def resnet_patch_size(n_blocks: int, kernel_size: int, dilations=None) -> int:
    """Receptive field (= patch edge) of :func:`build_resnet`: one stem conv + two convs per block.

    A 'valid' k x k conv of dilation d trims (k - 1) d / 2 px per side, so the field is
    ``1 + (k - 1)(1 + 2 sum(d))``: 15 px for three undilated blocks of 3 x 3 convs, 31 px for
    dilations [1, 2, 4] at the same cost per output pixel.
    """
    if n_blocks < 0 or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"resnet: n_blocks must be >= 0 and kernel_size odd >= 1, got {n_blocks}, {kernel_size}")
    return 1 + (kernel_size - 1) * (1 + 2 * sum(block_dilations(n_blocks, dilations)))


#: Architectures of ``models.resnet.architecture``.
RESNET_ARCHITECTURES = ("dense", "original")


def resnet_architecture(settings: dict) -> str:
    architecture = settings.get("architecture", "dense")
    if architecture not in RESNET_ARCHITECTURES:
        raise ValueError(f"resnet: architecture must be one of {RESNET_ARCHITECTURES}, got {architecture!r}")
    return architecture


def resnet_input_patch_size(settings: dict) -> int:
    """Patch edge the configured ResNet classifies (``models.resnet`` settings of either architecture)."""
    if resnet_architecture(settings) == "original":
        return int(settings["original"]["patch_size"])
    return resnet_patch_size(settings["n_blocks"], settings["kernel_size"], settings.get("dilations"))


def sample_patch_size(settings: dict) -> int:
    """Odd patch edge for samples that holds the configured ResNet's patch (centre_crop cuts it out)."""
    size = resnet_input_patch_size(settings)
    return size if size % 2 == 1 else size + 1


def build_resnet(n_bands: int, n_classes: int, *, n_blocks: int, kernel_size: int, filters: int,
                 band_mean=None, band_variance=None, dilations=None, index_pairs=(), dropout: float = 0.0):
    """Fully convolutional pre-activation ResNet (resnet_v2 style) for exact dense inference.

    Input: raw reflectance x 10000 as float32, shape (h, w, n_bands).  ``index_pairs`` (band
    positions (a, b)) append the normalised differences (a - b) / (a + b) as extra channels
    (:class:`SpectralIndices`: NDVI, NDWI, ...); a Normalization layer inside the model scales the
    bands and indices (``band_mean`` / ``band_variance`` per channel; by default the digital
    numbers are mapped to reflectance).  ``dilations``: one rate per block, for a larger
    receptive field at the same cost per pixel.  ``dropout`` acts before the 1 x 1 head (training
    only).  Output: per-pixel softmax over ``n_classes``, shape (h - P + 1, w - P + 1, n_classes)
    with P = :func:`resnet_patch_size`.
    """
    keras = _keras()
    layers = keras.layers
    rates = block_dilations(n_blocks, dilations)
    patch = resnet_patch_size(n_blocks, kernel_size, rates)
    n_channels = n_bands + len(index_pairs)

    def conv(n_filters, name, rate=1, size=kernel_size, **kwargs):
        return layers.Conv2D(n_filters, size, padding="valid", dilation_rate=rate, kernel_initializer="he_normal",
                             name=name, **kwargs)

    inputs = keras.Input(shape=(None, None, n_bands), dtype="float32", name="reflectance")
    x = inputs
    if index_pairs:
        x = layers.Concatenate(name="bands_and_indices")([x, SpectralIndices(index_pairs, name="spectral_indices")(x)])
    x = _normalization(layers, n_channels, band_mean, band_variance)(x)
    x = conv(filters, "stem_conv")(x)
    for i, rate in enumerate(rates):
        # Two 'valid' k x k convs of dilation d trim (k - 1) d / 2 px per side each.
        shortcut = layers.Cropping2D((kernel_size - 1) * rate, name=f"block{i}_shortcut_crop")(x)
        y = x
        for j in range(2):
            y = layers.BatchNormalization(name=f"block{i}_bn{j}")(y)
            y = layers.ReLU(name=f"block{i}_relu{j}")(y)
            y = conv(filters, f"block{i}_conv{j}", rate)(y)
        x = layers.Add(name=f"block{i}_add")([shortcut, y])
    x = layers.BatchNormalization(name="head_bn")(x)
    x = layers.ReLU(name="head_relu")(x)
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = conv(n_classes, "class_probabilities", size=1, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=f"osmlulc_resnet_p{patch}")


def spectral_indices(bands: np.ndarray, index_pairs) -> np.ndarray:
    """(..., B) reflectance -> (..., len(index_pairs)) normalised differences (a - b) / (a + b), 0 where a + b = 0."""
    bands = np.asarray(bands, dtype=np.float32)
    out = []
    for a, b in index_pairs:
        num, den = bands[..., a] - bands[..., b], bands[..., a] + bands[..., b]
        out.append(np.where(den != 0, num / np.where(den != 0, den, 1), 0).astype(np.float32))
    return np.stack(out, axis=-1) if out else np.zeros(bands.shape[:-1] + (0,), np.float32)


def with_indices(bands: np.ndarray, index_pairs=()) -> np.ndarray:
    """(..., B) bands followed by their :func:`spectral_indices` channels (the models' input features)."""
    bands = np.asarray(bands, dtype=np.float32)
    if not index_pairs:
        return bands
    return np.concatenate([bands, spectral_indices(bands, index_pairs)], axis=-1)


def index_pairs_for(bands, indices, definitions: dict) -> list[tuple[int, int]]:
    """Band positions (a, b) of each named index (``definitions``: name -> [band a, band b]) in ``bands``."""
    bands = list(bands)
    pairs = []
    for name in indices or []:
        if name not in definitions:
            raise ValueError(f"spectral index {name!r} is not defined in bands.indices {sorted(definitions)}")
        a, b = definitions[name]
        missing = [x for x in (a, b) if x not in bands]
        if missing:
            raise InputError(f"spectral index {name} needs bands {missing}, which the samples lack ({bands})")
        pairs.append((bands.index(a), bands.index(b)))
    return pairs


@functools.lru_cache(maxsize=None)
def _spectral_indices_layer():
    """The SpectralIndices Keras layer class, defined and registered once (keras is imported lazily)."""
    keras = _keras()

    @keras.saving.register_keras_serializable(package="osmlulc")
    class SpectralIndices(keras.layers.Layer):
        """Normalised differences (a - b) / (a + b) of band pairs, per pixel (0 where a + b = 0)."""

        def __init__(self, index_pairs, **kwargs):
            super().__init__(**kwargs)
            self.index_pairs = [tuple(int(i) for i in pair) for pair in index_pairs]

        def call(self, x):
            ops = keras.ops
            out = []
            for a, b in self.index_pairs:
                num, den = x[..., a] - x[..., b], x[..., a] + x[..., b]
                safe = ops.where(ops.equal(den, 0), ops.ones_like(den), den)
                out.append(ops.where(ops.equal(den, 0), ops.zeros_like(den), num / safe))
            return ops.stack(out, axis=-1)

        def compute_output_shape(self, input_shape):
            return (*input_shape[:-1], len(self.index_pairs))

        def get_config(self):
            return {**super().get_config(), "index_pairs": [list(p) for p in self.index_pairs]}

    return SpectralIndices


def SpectralIndices(index_pairs, **kwargs):  # noqa: N802 (a layer factory: keras is imported lazily)
    return _spectral_indices_layer()(index_pairs, **kwargs)


def _normalization(layers, n_bands: int, band_mean, band_variance):
    if band_mean is None:
        band_mean = np.zeros(n_bands)
        # Un-fitted: the bands (reflectance x 10000) are scaled to reflectance; training uses per-band statistics.
        band_variance = np.full(n_bands, REFLECTANCE_SCALE ** 2)
    return layers.Normalization(axis=-1, mean=np.asarray(band_mean, dtype=np.float64).tolist(),
                                variance=np.asarray(band_variance, dtype=np.float64).tolist(), name="band_scaling")


def build_original_resnet(n_bands: int, n_classes: int, *, depth: int, kernel_size: int, patch_size: int,
                          filters: int = 16, band_mean=None, band_variance=None):
    """The original OSMLULC ResNet: Keras' CIFAR-10 example ``resnet_v2`` on ``patch_size`` patches.

    Pre-activation bottleneck blocks (1 x 1, k x k, 1 x 1), ``(depth - 2) / 9`` per stage, three
    stages of ``filters`` x 4 / 8 / 16 output channels, stride 2 at the start of stages 2 and 3,
    'same' padding, L2(1e-4) kernel regularisation, global average pooling and a softmax dense
    layer.  Because of the padding and strides a pixel's output depends on where the patch
    border lies, so it cannot be applied densely: one patch per pixel
    (:class:`PatchResnetClassifier`).  Input scaling as in :func:`build_resnet`.
    Output: (N, n_classes).
    """
    if depth < 11 or (depth - 2) % 9 != 0:
        raise ValueError(f"resnet original: depth must be 9 n + 2 (e.g. 29), got {depth}")
    if kernel_size < 1 or patch_size < 1:
        raise ValueError(f"resnet original: kernel_size and patch_size must be >= 1, got {kernel_size}, {patch_size}")
    keras = _keras()
    layers = keras.layers
    regularizer = keras.regularizers.l2(1e-4)
    count = iter(range(10 ** 6))

    def unit(x, n_filters, size=kernel_size, strides=1, activation=True, batch_norm=True, conv_first=False):
        """resnet_layer of the Keras example: BN-ReLU-conv (pre-activation) or conv-BN-ReLU."""
        i = next(count)
        conv = layers.Conv2D(n_filters, size, strides=strides, padding="same", kernel_initializer="he_normal",
                             kernel_regularizer=regularizer, name=f"conv{i}")
        if conv_first:
            x = conv(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"bn{i}")(x)
        if activation:
            x = layers.ReLU(name=f"relu{i}")(x)
        return x if conv_first else conv(x)

    inputs = keras.Input(shape=(patch_size, patch_size, n_bands), dtype="float32", name="reflectance")
    x = _normalization(layers, n_bands, band_mean, band_variance)(inputs)
    x = unit(x, filters, conv_first=True)
    n_in = filters
    for stage in range(3):
        for block in range(int((depth - 2) / 9)):
            first = block == 0
            strides = 2 if stage > 0 and first else 1
            n_out = n_in * (4 if stage == 0 else 2)
            y = unit(x, n_in, size=1, strides=strides, activation=not (stage == 0 and first),
                     batch_norm=not (stage == 0 and first))
            y = unit(y, n_in)
            y = unit(y, n_out, size=1)
            if first:   # projection shortcut to the new width / stride
                x = unit(x, n_out, size=1, strides=strides, activation=False, batch_norm=False, conv_first=True)
            x = layers.Add(name=f"stage{stage}_block{block}_add")([x, y])
        n_in = n_out
    x = layers.BatchNormalization(name="head_bn")(x)
    x = layers.ReLU(name="head_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(n_classes, activation="softmax", kernel_initializer="he_normal",
                           name="class_probabilities")(x)
    return keras.Model(inputs, outputs, name=f"osmlulc_resnet_v2_d{depth}_p{patch_size}")


def _epoch_logger(keras, epochs: int):
    """Keras callback that logs each epoch's metrics through the 'osmlulc' logger."""

    class EpochLogger(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            LOG.info("resnet epoch %d/%d: loss %.4f accuracy %.4f val_loss %.4f val_accuracy %.4f (%.0f s)",
                     epoch + 1, epochs, logs.get("loss", np.nan), logs.get("accuracy", np.nan),
                     logs.get("val_loss", np.nan), logs.get("val_accuracy", np.nan),
                     time.perf_counter() - self.start)

    return EpochLogger()


def write_history(history: dict, path: str | os.PathLike) -> None:
    """Per-epoch training history as CSV (epoch, loss, accuracy, val_loss, val_accuracy)."""
    columns = ["loss", "accuracy", "val_loss", "val_accuracy"]
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", *columns])
        for epoch in range(len(history["loss"])):
            writer.writerow([epoch + 1, *(repr(float(history[c][epoch])) for c in columns)])


#: The 8 flips / rotations of a square patch (the dihedral group D4): (number of 90 degree turns, mirrored).
DIHEDRAL = tuple((turns, mirrored) for mirrored in (False, True) for turns in range(4))


def dihedral(patches: np.ndarray, g: int) -> np.ndarray:
    """Transform ``g`` (0..7) of (N, P, P, B) patches: ``g % 4`` quarter turns, mirrored when ``g >= 4``.

    Each keeps the centre pixel in place (P odd), so a patch's label is unchanged, and land cover
    has no preferred orientation at 10 m: the 8 copies are equally valid training samples.
    """
    turns, mirrored = DIHEDRAL[g]
    out = np.flip(patches, axis=2) if mirrored else patches
    return np.rot90(out, k=turns, axes=(1, 2))


def augment_batch(patches: np.ndarray, rng: np.random.Generator, *aligned: np.ndarray):
    """Each patch of a batch under one of the 8 :func:`dihedral` transforms, drawn at random per patch.

    ``aligned`` arrays (N, K, K, ...) -- label chips and their weights -- get the same transform as
    their patch; with them, a tuple (patches, *aligned) is returned.
    """
    choice = rng.integers(0, len(DIHEDRAL), size=len(patches))
    arrays = (patches, *aligned)
    outs = [np.empty_like(a) for a in arrays]
    for g in range(len(DIHEDRAL)):
        sel = choice == g
        if sel.any():
            for a, out in zip(arrays, outs):
                out[sel] = dihedral(a[sel], g)
    return tuple(outs) if aligned else outs[0]


def _patch_batches(keras, patches, targets, weights, batch_size: int, *, augment: bool, seed: int,
                   jitter: float = 0.0):
    """A Keras PyDataset over uint16 patches: shuffled every epoch (seeded), converted to float32 per
    batch (memory stays that of the uint16 samples), optionally augmented by the 8 flips / rotations.
    ``targets`` / ``weights`` are (N,) or, for label chips, (N, K, K) (transformed with their patch).
    ``jitter`` > 0 scales every band of a patch by its own factor 1 + N(0, jitter): the radiometric
    spread between fields, dates and sensors that a few hundred training polygons do not show."""

    class PatchBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(targets))

        def __len__(self):
            return -(-len(targets) // batch_size)

        def __getitem__(self, i):
            idx = np.sort(self.order[i * batch_size:(i + 1) * batch_size])
            x, y, w = patches[idx], targets[idx], weights[idx]
            if augment:
                if y.ndim == 3:
                    x, y, w = augment_batch(x, self.rng, y, w)
                else:
                    x = augment_batch(x, self.rng)
            x = x.astype(np.float32)
            if jitter:
                x *= 1 + jitter * self.rng.standard_normal((len(x), 1, 1, x.shape[-1])).astype(np.float32)
            return x, y, w

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(targets))

    return PatchBatches()


def _labelled_accuracy(keras):
    """Accuracy over the pixels whose target is a class (>= 0); label-chip pixels without one (-1) are left out."""
    ops = keras.ops

    class LabelledAccuracy(keras.metrics.Metric):
        def __init__(self, name="accuracy", **kwargs):
            super().__init__(name=name, **kwargs)
            self.right = self.add_variable(shape=(), initializer="zeros", name="right")
            self.total = self.add_variable(shape=(), initializer="zeros", name="total")

        def update_state(self, y_true, y_pred, sample_weight=None):
            y_true = ops.reshape(ops.cast(y_true, "int32"), ops.shape(y_pred)[:-1])
            labelled = ops.cast(y_true >= 0, "float32")
            right = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true), "float32")
            self.right.assign_add(ops.sum(right * labelled))
            self.total.assign_add(ops.sum(labelled))

        def result(self):
            return self.right / ops.maximum(self.total, 1.0)

        def reset_state(self):
            self.right.assign(0.0)
            self.total.assign(0.0)

    return LabelledAccuracy()


def _optimizer(keras, settings: dict, steps_per_epoch: int):
    """Adam (AdamW with ``weight_decay`` > 0), at a constant or cosine-decaying learning rate."""
    rate = float(settings["learning_rate"])
    schedule = settings.get("lr_schedule", "constant")
    if schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(rate, decay_steps=max(1, steps_per_epoch * settings["epochs"]),
                                                      alpha=0.05)
    elif schedule != "constant":
        raise ValueError(f"resnet: lr_schedule must be constant or cosine, got {schedule!r}")
    decay = float(settings.get("weight_decay", 0.0) or 0.0)
    if decay:
        return keras.optimizers.AdamW(learning_rate=rate, weight_decay=decay)
    return keras.optimizers.Adam(learning_rate=rate)


def train_resnet(train_npz, validation_npz, table: ClassTable, settings: dict, seed: int,
                 model_path, history_path, *, index_definitions: dict | None = None) -> dict:
    """Train the ResNet patch classifier and save it (.keras) with its per-epoch history (CSV).

    ``settings``: architecture (``dense``, the default, or ``original``), n_blocks, kernel_size,
    filters, dilations (dense), original {depth, kernel_size, patch_size, filters}, and for both
    epochs, batch_size, learning_rate, lr_schedule (constant | cosine), weight_decay (AdamW),
    dropout (dense), augment (the 8 flips / rotations of every patch, drawn per batch),
    early_stopping ({monitor, patience} or None: the weights of the best epoch on the spatial
    validation samples are restored), indices (names of ``index_definitions``: extra channels, dense).
    The model has one output per class of ``table`` (also for classes without samples); the loss
    is weighted so that every present class counts the same, on the validation samples too.
    Training is reproducible for a given ``seed`` (Keras seeds + TensorFlow op determinism).
    """
    _require(settings, ("n_blocks", "kernel_size", "filters", "epochs", "batch_size", "learning_rate"), "resnet")
    architecture = resnet_architecture(settings)
    if architecture == "original":
        _require(settings.get("original", {}), ("depth", "kernel_size", "patch_size", "filters"), "resnet original")
    keras = _keras()
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()

    train = load_samples(train_npz, table)
    validation = load_samples(validation_npz, table)
    check_same_bands(train, validation, validation_npz)
    patch = resnet_input_patch_size(settings)
    n_classes = len(table)
    # Label chips: the dense model is trained on (P + K - 1)^2 inputs against every clean labelled pixel
    # of the K x K chip (per-pixel weights, 0 where unlabelled), validated on the centre pixels.
    chips = train.label_chips if architecture == "dense" and train.label_chips is not None else None
    if chips is not None and chips.shape[1] == 1:
        chips = None
    chip = 1 if chips is None else chips.shape[1]
    x_train = centre_crop(train.patches, patch + chip - 1)   # uint16 views: batches are converted one at a time
    x_val = centre_crop(validation.patches, patch).astype(np.float32)
    n_bands = x_train.shape[-1]
    pairs = index_pairs_for(train.bands, settings.get("indices"), index_definitions or {})
    if pairs and architecture == "original":
        LOG.warning("resnet: indices %s are ignored by the original architecture (dense only)", settings.get("indices"))
        pairs = []

    # Per-channel scaling from the training pixels (float64 sums: exact enough and order-independent).
    pixels = with_indices(centre_crop(x_train, patch).reshape(-1, n_bands), pairs)
    band_mean = pixels.mean(axis=0, dtype=np.float64)
    band_variance = pixels.var(axis=0, dtype=np.float64)
    del pixels
    if architecture == "original":
        original = settings["original"]
        model = build_original_resnet(n_bands, n_classes, depth=original["depth"],
                                      kernel_size=original["kernel_size"], patch_size=patch,
                                      filters=original["filters"], band_mean=band_mean, band_variance=band_variance)
        training_model = model
    else:
        model = build_resnet(n_bands, n_classes, n_blocks=settings["n_blocks"], kernel_size=settings["kernel_size"],
                             filters=settings["filters"], band_mean=band_mean, band_variance=band_variance,
                             dilations=settings.get("dilations"), index_pairs=pairs,
                             dropout=float(settings.get("dropout", 0.0) or 0.0))
        if chips is None:
            # Train through a fixed-size view whose (1, 1, C) output is flattened to (C,), so labels stay (N,).
            patch_input = keras.Input(shape=(patch, patch, n_bands), dtype="float32")
            training_model = keras.Model(patch_input, keras.layers.Reshape((n_classes,))(model(patch_input)))
        else:
            training_model = model
    weighting = settings.get("class_weight", "balanced")
    if chips is None:
        targets = train.targets
        weights = class_weights(targets, n_classes, weighting, train.candidates)
        sample_weight = weights[targets].astype(np.float32)
        val_targets = validation.targets
    else:
        chip_index = table.index_of_code()[chips.astype(np.intp)]
        labelled = chip_index >= 0
        weights = class_weights(chip_index[labelled], n_classes, weighting, train.candidates)
        # Unlabelled chip pixels are -1: ignored by the loss and the accuracy (weight 0 as well).
        targets = np.where(labelled, chip_index, -1).astype(np.int32)
        sample_weight = np.where(labelled, weights[np.maximum(targets, 0)], 0).astype(np.float32)
        val_targets = validation.targets.reshape(-1, 1, 1)
        LOG.info("resnet: label chips of %d x %d px: %d labelled target pixels (%.1f per sample)", chip, chip,
                 int(labelled.sum()), labelled.sum() / len(targets))
    # Validation samples are weighted like the training ones, so early stopping optimises the same loss.
    val_weight = class_weights(validation.targets, n_classes, weighting, validation.candidates)
    val_weight = val_weight[validation.targets].astype(np.float32).reshape(val_targets.shape)
    batches = _patch_batches(keras, x_train, targets, sample_weight, int(settings["batch_size"]),
                             augment=bool(settings.get("augment", False)), seed=seed,
                             jitter=float(settings.get("spectral_jitter", 0.0) or 0.0))
    # Accuracy stays unweighted (the share of validation samples right), as the loss is weighted.
    if chips is None:
        loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(ignore_class=-1)
        metrics = [_labelled_accuracy(keras)]
    training_model.compile(optimizer=_optimizer(keras, settings, len(batches)), loss=loss, metrics=metrics)

    callbacks = [_epoch_logger(keras, settings["epochs"])]
    stopping = settings.get("early_stopping")
    if stopping:
        early = keras.callbacks.EarlyStopping(monitor=stopping.get("monitor", "val_loss"),
                                              patience=int(stopping.get("patience", 3)),
                                              restore_best_weights=True)
        callbacks.append(early)
    LOG.info("resnet: class weights (%s) %s", weighting, dict(zip(table.codes.tolist(), np.round(weights, 3).tolist())))
    LOG.info("resnet (%s): %d training / %d validation patches of %d x %d px, %d bands + %d indices, %d classes "
             "(%d present), %d parameters, augmentation %s, early stopping %s", architecture, len(x_train),
             len(x_val), patch, patch, n_bands, len(pairs), n_classes, len(np.unique(train.targets)),
             model.count_params(), bool(settings.get("augment", False)), stopping or "off")
    fit = training_model.fit(batches, validation_data=(x_val, val_targets, val_weight),
                             epochs=settings["epochs"], verbose=0, callbacks=callbacks)
    history = fit.history
    n_epochs = len(history["loss"])
    best = n_epochs - 1
    if stopping:
        best = int(early.best_epoch)
        LOG.info("resnet: early stopping on %s: best epoch %d of %d run (%s %.4f); its weights are kept",
                 early.monitor, best + 1, n_epochs, early.monitor, history[early.monitor][best])

    with atomic_output(model_path) as tmp:
        model.save(tmp)
    write_history(history, history_path)
    return {
        "kind": "resnet",
        "architecture": architecture,
        "val_accuracy": float(history["val_accuracy"][best]),
        "val_loss": float(history["val_loss"][best]),
        "accuracy": float(history["accuracy"][best]),
        "loss": float(history["loss"][best]),
        "epochs": n_epochs,
        "best_epoch": best + 1,
        "patch_size": patch,
        "n_parameters": int(model.count_params()),
        "n_train": len(x_train),
        "n_validation": len(x_val),
    }


# --------------------------------------------------------------------------------------------
# SVM and random forest
# --------------------------------------------------------------------------------------------

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

    _require(settings, ("C", "gamma", "nystroem_components"), "svm")
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

    _require(settings, ("n_estimators", "max_depth", "min_samples_leaf", "n_jobs"), "rf")
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


# --------------------------------------------------------------------------------------------
# Loaded classifiers
# --------------------------------------------------------------------------------------------

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


def undo_dihedral(arrays: np.ndarray, g: int) -> np.ndarray:
    """The inverse of :func:`dihedral` ``g`` on (N, H, W, ...) arrays."""
    turns, mirrored = DIHEDRAL[g]
    out = np.rot90(arrays, k=-turns, axes=(1, 2))
    return np.flip(out, axis=2) if mirrored else out


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
        convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
        # Only un-strided 'valid' convs shrink the field of view, each by (k - 1) x dilation.
        self.patch_size = 1 + sum((layer.kernel_size[0] - 1) * layer.dilation_rate[0] for layer in convs)

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
        keras = _keras()
        _spectral_indices_layer()  # registered before loading a model that uses it
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
