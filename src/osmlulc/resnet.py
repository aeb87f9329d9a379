"""The ResNet patch classifiers: the dense ResNet, the original OSMLULC network, the spectral-index layer.

The ResNet is a patch classifier built for *exact dense inference*: only 'valid' convolutions,
no striding and no pooling, and residual shortcuts that are centre crops of the block input.
Its receptive field is exactly its patch, so the same fully convolutional model classifies one
``P x P`` patch into a ``1 x 1`` output or an ``(H + P - 1) x (W + P - 1)`` block into ``H x W``
outputs, each identical to classifying that pixel's own patch -- a whole tile costs one
convolution pass instead of one patch per pixel.

The original OSMLULC network (Keras' CIFAR-10 ``resnet_v2``: 'same' padding, strided stages,
global average pooling, on 12 x 12 patches) stays available as ``architecture: original``
(:func:`build_original_resnet`) for comparison; it can only classify one patch per pixel.

TensorFlow is imported lazily (:func:`keras_module`), so the scikit-learn models never load it.
"""

from __future__ import annotations

import functools
import logging
import os

import numpy as np

from osmlulc.io import REFLECTANCE_SCALE

LOG = logging.getLogger("osmlulc")

def keras_module():
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


def context_sizes(context_px=None) -> list[int]:
    """The window edges of the context statistics (odd, >= 3), smallest first; [] for none."""
    sizes = sorted(int(s) for s in (context_px or []))
    if any(s < 3 or s % 2 == 0 for s in sizes) or len(set(sizes)) != len(sizes):
        raise ValueError(f"resnet: context_px must be distinct odd window edges >= 3, got {list(context_px)}")
    return sizes


def dense_patch_size(n_blocks: int, kernel_size: int, dilations=None, context_px=None) -> int:
    """Patch edge of :func:`build_resnet`: the convolutions' receptive field or the largest context window."""
    return max([resnet_patch_size(n_blocks, kernel_size, dilations), *context_sizes(context_px)])


def resnet_input_patch_size(settings: dict) -> int:
    """Patch edge the configured ResNet classifies (``models.resnet`` settings of either architecture)."""
    if resnet_architecture(settings) == "original":
        return int(settings["original"]["patch_size"])
    return dense_patch_size(settings["n_blocks"], settings["kernel_size"], settings.get("dilations"),
                            settings.get("context_px"))


def sample_patch_size(settings: dict) -> int:
    """Odd patch edge for samples that holds the configured ResNet's patch (centre_crop cuts it out)."""
    size = resnet_input_patch_size(settings)
    return size if size % 2 == 1 else size + 1


def build_resnet(n_bands: int, n_classes: int, *, n_blocks: int, kernel_size: int, filters: int,
                 band_mean=None, band_variance=None, dilations=None, index_pairs=(), dropout: float = 0.0,
                 context_px=None):
    """Fully convolutional pre-activation ResNet (resnet_v2 style) for exact dense inference.

    Input: raw reflectance x 10000 as float32, shape (h, w, n_bands).  ``index_pairs`` (band
    positions (a, b)) append the normalised differences (a - b) / (a + b) as extra channels
    (:class:`SpectralIndices`: NDVI, NDWI, ...); a Normalization layer inside the model scales the
    bands and indices (``band_mean`` / ``band_variance`` per channel; by default the digital
    numbers are mapped to reflectance).  ``dilations``: one rate per block, for a larger
    receptive field at the same cost per pixel.  ``context_px``: window edges W of a context branch
    -- the mean and standard deviation of every scaled channel over the W x W window around the
    pixel (:class:`LocalStatistics`: 'valid' average pooling at stride 1, so still exact dense
    inference), projected by a 1 x 1 conv and added to the residual features before the head: the
    neighbourhood of a field or a town at a few additions per pixel, where more convolutions
    would cost their weights.  ``dropout`` acts before the 1 x 1 head (training only).  Output:
    per-pixel softmax over ``n_classes``, shape (h - P + 1, w - P + 1, n_classes) with
    P = :func:`dense_patch_size`.
    """
    keras = keras_module()
    layers = keras.layers
    rates = block_dilations(n_blocks, dilations)
    conv_patch = resnet_patch_size(n_blocks, kernel_size, rates)
    windows = context_sizes(context_px)
    patch = max([conv_patch, *windows])
    n_channels = n_bands + len(index_pairs)

    def conv(n_filters, name, rate=1, size=kernel_size, **kwargs):
        return layers.Conv2D(n_filters, size, padding="valid", dilation_rate=rate, kernel_initializer="he_normal",
                             name=name, **kwargs)

    inputs = keras.Input(shape=(None, None, n_bands), dtype="float32", name="reflectance")
    x = inputs
    if index_pairs:
        x = layers.Concatenate(name="bands_and_indices")([x, SpectralIndices(index_pairs, name="spectral_indices")(x)])
    scaled = _normalization(layers, n_channels, band_mean, band_variance)(x)
    # Every branch is cropped to its own field, so all end on the same (h - P + 1, w - P + 1) grid.
    x = _crop(layers, scaled, (patch - conv_patch) // 2, "conv_branch_crop")
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
    if windows:
        statistics = [LocalStatistics(w, name=f"context{w}_statistics")(
            _crop(layers, scaled, (patch - w) // 2, f"context{w}_crop")) for w in windows]
        context = statistics[0] if len(statistics) == 1 else layers.Concatenate(name="context")(statistics)
        x = layers.Add(name="context_add")([x, conv(filters, "context_conv", size=1)(context)])
    x = layers.BatchNormalization(name="head_bn")(x)
    x = layers.ReLU(name="head_relu")(x)
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = conv(n_classes, "class_probabilities", size=1, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=f"osmlulc_resnet_p{patch}")


@functools.lru_cache(maxsize=None)
def spectral_indices_layer():
    """The SpectralIndices Keras layer class, defined and registered once (keras is imported lazily)."""
    keras = keras_module()

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
    return spectral_indices_layer()(index_pairs, **kwargs)


@functools.lru_cache(maxsize=None)
def local_statistics_layer():
    """The LocalStatistics Keras layer class, defined and registered once (keras is imported lazily)."""
    keras = keras_module()

    @keras.saving.register_keras_serializable(package="osmlulc")
    class LocalStatistics(keras.layers.Layer):
        """Mean and standard deviation of every channel over the ``size`` x ``size`` window of each
        output pixel ('valid': the output is ``size - 1`` px smaller).  Two separable 1-D average
        poolings per moment: about 4 ``size`` additions per channel and pixel."""

        def __init__(self, size, **kwargs):
            super().__init__(**kwargs)
            self.size = int(size)

        def _window_mean(self, x):
            pool = keras.ops.average_pool
            x = pool(x, (self.size, 1), strides=1, padding="valid")
            return pool(x, (1, self.size), strides=1, padding="valid")

        def call(self, x):
            ops = keras.ops
            mean = self._window_mean(x)
            variance = ops.maximum(self._window_mean(x * x) - mean * mean, 0.0)
            return ops.concatenate([mean, ops.sqrt(variance + 1e-4)], axis=-1)

        def compute_output_shape(self, input_shape):
            def shrink(n):
                return None if n is None else n - self.size + 1
            return (input_shape[0], shrink(input_shape[1]), shrink(input_shape[2]), 2 * input_shape[-1])

        def get_config(self):
            return {**super().get_config(), "size": self.size}

    return LocalStatistics


def LocalStatistics(size, **kwargs):  # noqa: N802 (a layer factory: keras is imported lazily)
    return local_statistics_layer()(size, **kwargs)


def _crop(layers, x, px: int, name: str):
    return layers.Cropping2D(px, name=name)(x) if px else x


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
    keras = keras_module()
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




def undo_dihedral(arrays: np.ndarray, g: int) -> np.ndarray:
    """The inverse of :func:`dihedral` ``g`` on (N, H, W, ...) arrays."""
    turns, mirrored = DIHEDRAL[g]
    out = np.rot90(arrays, k=-turns, axes=(1, 2))
    return np.flip(out, axis=2) if mirrored else out
