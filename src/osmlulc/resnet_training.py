"""Training of the ResNet (:func:`train_resnet`): batches, augmentation, class weights, optimizer, history."""

from __future__ import annotations

import csv
import logging
import os
import time

import numpy as np

from osmlulc.classes import ClassTable
from osmlulc.io import atomic_output
from osmlulc.resnet import (DIHEDRAL, build_original_resnet, build_resnet, dihedral, keras_module, resnet_architecture,
                            resnet_input_patch_size)
from osmlulc.indices import index_pairs_for, with_indices
from osmlulc.sample_data import centre_crop, check_same_bands, class_weights, load_samples, require_settings

LOG = logging.getLogger("osmlulc")

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




def _weight_recorder(keras):
    """Keras callback that keeps a copy of the model's weights (BatchNorm statistics included) after every epoch."""

    class WeightRecorder(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.weights = []

        def on_epoch_end(self, epoch, logs=None):
            self.weights.append([np.array(w) for w in self.model.get_weights()])

    return WeightRecorder()


def best_epochs(history: dict, monitor: str, k: int) -> list[int]:
    """The ``k`` best epochs (0-based, in training order) by ``monitor`` (lowest loss, highest accuracy)."""
    values = np.asarray(history[monitor], dtype=np.float64)
    order = np.argsort(-values if "accuracy" in monitor else values, kind="stable")
    return sorted(int(e) for e in order[:k])


def average_weights(weight_sets: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Element-wise mean of several copies of one model's weights (each a list of arrays)."""
    return [np.mean(np.stack(arrays), axis=0).astype(arrays[0].dtype) for arrays in zip(*weight_sets)]


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
    early_stopping ({monitor, patience, average_best} or None: the weights of the best epoch on the
    spatial validation samples are restored, or the mean of the ``average_best`` best epochs'
    weights), indices (names of ``index_definitions``: extra channels, dense), context_px (dense).
    The model has one output per class of ``table`` (also for classes without samples); the loss
    is weighted so that every present class counts the same, on the validation samples too.
    Training is reproducible for a given ``seed`` (Keras seeds + TensorFlow op determinism).
    """
    require_settings(settings, ("n_blocks", "kernel_size", "filters", "epochs", "batch_size", "learning_rate"),
                     "resnet")
    architecture = resnet_architecture(settings)
    if architecture == "original":
        require_settings(settings.get("original", {}), ("depth", "kernel_size", "patch_size", "filters"),
                         "resnet original")
    keras = keras_module()
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
    if settings.get("context_px") and architecture == "original":
        LOG.warning("resnet: context_px %s is ignored by the original architecture (dense only)",
                    settings.get("context_px"))

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
                             dropout=float(settings.get("dropout", 0.0) or 0.0),
                             context_px=settings.get("context_px"))
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
    n_average = int((stopping or {}).get("average_best", 1))
    if n_average > 1:
        recorder = _weight_recorder(keras)
        callbacks.append(recorder)
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
    averaged = None
    if stopping:
        best = int(early.best_epoch)
        LOG.info("resnet: early stopping on %s: best epoch %d of %d run (%s %.4f); its weights are kept",
                 early.monitor, best + 1, n_epochs, early.monitor, history[early.monitor][best])
    if n_average > 1:
        # The mean of the best epochs' weights: one epoch's weights swing with the few hundred polygons
        # its last batches saw; their mean is a flatter, better generalising point (as in SWA), at no
        # cost in prediction.  Scored again on the validation samples.
        epochs_kept = best_epochs(history, early.monitor, n_average)
        model.set_weights(average_weights([recorder.weights[e] for e in epochs_kept]))
        scores = training_model.evaluate(x_val, val_targets, sample_weight=val_weight, verbose=0, return_dict=True)
        averaged = {"epochs": [e + 1 for e in epochs_kept], "val_loss": float(scores["loss"]),
                    "val_accuracy": float(scores["accuracy"])}
        LOG.info("resnet: weights averaged over the %d best epochs %s on %s: val_loss %.4f val_accuracy %.4f "
                 "(best single epoch %.4f / %.4f)", len(epochs_kept), averaged["epochs"], early.monitor,
                 averaged["val_loss"], averaged["val_accuracy"], history["val_loss"][best],
                 history["val_accuracy"][best])

    with atomic_output(model_path) as tmp:
        model.save(tmp)
    write_history(history, history_path)
    return {
        "kind": "resnet",
        "architecture": architecture,
        "val_accuracy": averaged["val_accuracy"] if averaged else float(history["val_accuracy"][best]),
        "val_loss": averaged["val_loss"] if averaged else float(history["val_loss"][best]),
        "averaged_epochs": averaged["epochs"] if averaged else [best + 1],
        "accuracy": float(history["accuracy"][best]),
        "loss": float(history["loss"][best]),
        "epochs": n_epochs,
        "best_epoch": best + 1,
        "patch_size": patch,
        "n_parameters": int(model.count_params()),
        "n_train": len(x_train),
        "n_validation": len(x_val),
    }
