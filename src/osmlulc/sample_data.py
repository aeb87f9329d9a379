"""Training and validation samples as the models read them: the .npz files, patch crops, spectral indices,
class weights."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from osmlulc.classes import ClassTable
from osmlulc.io import InputError

LOG = logging.getLogger("osmlulc")

SAMPLE_KEYS = ("patches", "labels", "tiles", "rows", "cols", "bands")


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
    #: (N,) distance (px) of each sample to the nearest gap, capped at the reach it was drawn with + 1
    #: (validation samples, ``samples.gap_reach_px``), or None.
    gap_distance: np.ndarray | None = None

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
            gap_distance = data["gap_distance"] if "gap_distance" in data else None
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
    if gap_distance is not None and gap_distance.shape != labels.shape:
        raise InputError(f"samples {path}: gap distances of shape {gap_distance.shape} do not match {len(labels)} "
                         "samples")
    return Samples(patches, labels.astype(np.uint8), targets, tuple(str(b) for b in bands), label_chips,
                   None if candidates is None or len(candidates) != len(table) else candidates, gap_distance)


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


def require_settings(settings: dict, keys: tuple[str, ...], what: str) -> None:
    missing = [k for k in keys if k not in settings]
    if missing:
        raise ValueError(f"{what} settings lack {missing}")
