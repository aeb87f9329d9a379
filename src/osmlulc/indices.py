"""Spectral indices: normalised differences (a - b) / (a + b) of two bands, in one place.

:func:`normalized_difference` is the computation (float32); :func:`spectral_indices` / :func:`with_indices`
give the models' index channels of (..., bands) arrays (0 where a + b = 0), :func:`index_pairs_for` finds
the bands of the named indices of ``bands.indices``; :func:`osmlulc.features.ndwi` and the water-index
rows of :mod:`osmlulc.accuracy` write or count it with their own nodata.  The ResNet computes the same
channels inside the network (:func:`osmlulc.resnet.spectral_indices_layer`).
"""

from __future__ import annotations

import numpy as np

from osmlulc.io import InputError


def normalized_difference(a: np.ndarray, b: np.ndarray, valid: np.ndarray | None = None,
                          nodata: float = 0.0) -> np.ndarray:
    """(a - b) / (a + b) as float32; ``nodata`` where not ``valid`` (None: everywhere valid) or where a + b == 0."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    total = a + b
    ok = total != 0
    if valid is not None:
        ok &= valid
    return np.divide(a - b, total, out=np.full(total.shape, nodata, dtype=np.float32), where=ok)


def spectral_indices(bands: np.ndarray, index_pairs) -> np.ndarray:
    """(..., B) reflectance -> (..., len(index_pairs)) normalised differences (a - b) / (a + b), 0 where a + b = 0."""
    bands = np.asarray(bands, dtype=np.float32)
    out = [normalized_difference(bands[..., a], bands[..., b]) for a, b in index_pairs]
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
