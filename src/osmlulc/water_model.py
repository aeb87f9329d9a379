"""The pixel water model of the ensemble's water decision (issue 22): a binary water / land logistic regression on
one pixel's own bands (log1p of the reflectance) and spectral indices, nothing around it.

Why a pixel model beside the ensemble: the ensemble's members look at a pixel's neighbours (the ResNet's 31 px
field, the logistic regression's 5 and 15 px windows).  That is what makes their land-use classes good, and also
what loses water next to a gap (a pond at a cloud's hazy edge, its neighbours filled) and water narrower than
their field.  A model of the pixel alone has no field to spoil: its answer for a pixel is the same with or without
a gap next to it, so it cannot make a gap change its neighbours' classes.  Its log-reflectance features let it
weigh the short-wave infrared, which haze scatters least and water absorbs most.  (On the development data it
finds the hazy pond; a 2-3 px ditch stays below its threshold.)

Its threshold is chosen on the validation samples like the index rule's
(:func:`osmlulc.selection.choose_pixel_threshold`): the model must find, on its own, the index rule's water recall
minus ``recall_margin``, with no more false water than the index rule.  The validation samples hold no narrow or
hazy water, so a criterion on the ensemble's decision plus the pixel model would see nothing to add; held to the
index's water alone, the pixel model finds that water where the index would, without most of the index's false
water (``benchmarks/RESULTS.md``).

Everything here is numpy; the model file is JSON (:meth:`PixelWaterModel.to_dict`), read without pickle.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from osmlulc.indices import index_pairs_for, normalized_difference

LOG = logging.getLogger("osmlulc")


@dataclass(frozen=True)
class PixelWaterModel:
    """p(water) = sigmoid(coef . (features - mean) / scale + intercept) of a pixel's features: log1p of each of
    ``bands`` (the stack's values), then the normalised difference of each of ``index_pairs`` (positions in
    ``bands``; names ``index_names``).  Water where p >= ``threshold`` (None: nowhere)."""

    bands: tuple[str, ...]
    index_names: tuple[str, ...]
    index_pairs: tuple[tuple[int, int], ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    threshold: float | None = None

    def _feature_columns(self, pixels: np.ndarray):
        """The (...) float32 features of (..., B) band values in the order of ``bands``, one at a time."""
        pixels = np.asarray(pixels, dtype=np.float32)
        for band in range(len(self.bands)):
            yield np.log1p(np.maximum(pixels[..., band], 0))
        for a, b in self.index_pairs:
            yield normalized_difference(pixels[..., a], pixels[..., b])

    def features(self, pixels: np.ndarray) -> np.ndarray:
        """(..., B) band values in the order of ``bands`` -> (..., F) float32 features."""
        return np.stack(list(self._feature_columns(pixels)), axis=-1)

    def logit(self, pixels: np.ndarray) -> np.ndarray:
        """(..., B) band values -> (...) float32 log-odds of water; one feature at a time (no (..., F) array)."""
        weight = np.asarray(self.coef, np.float64) / np.asarray(self.scale, np.float64)
        out = np.full(np.shape(pixels)[:-1], self.intercept - float(np.dot(weight, self.mean)), np.float32)
        for w, feature in zip(weight, self._feature_columns(pixels), strict=True):
            out += np.float32(w) * feature
        return out

    def probability(self, pixels: np.ndarray) -> np.ndarray:
        return (1.0 / (1.0 + np.exp(-self.logit(pixels).astype(np.float64)))).astype(np.float32)

    def water(self, pixels: np.ndarray) -> np.ndarray:
        """(...) bool: p(water) >= ``threshold`` (all False without a threshold)."""
        if self.threshold is None:
            return np.zeros(np.shape(pixels)[:-1], bool)
        return self.logit(pixels) >= np.float32(_log_odds(self.threshold))

    def with_threshold(self, threshold: float | None) -> PixelWaterModel:
        return replace(self, threshold=threshold)

    def to_dict(self) -> dict:
        return {"bands": list(self.bands), "indices": list(self.index_names),
                "index_pairs": [list(p) for p in self.index_pairs], "mean": list(self.mean),
                "scale": list(self.scale), "coef": list(self.coef), "intercept": self.intercept,
                "threshold": self.threshold}

    @classmethod
    def from_dict(cls, spec: dict | None) -> PixelWaterModel | None:
        if not spec:
            return None
        n = len(spec["bands"]) + len(spec["index_pairs"])
        model = cls(tuple(spec["bands"]), tuple(spec["indices"]), tuple(tuple(int(i) for i in p)
                                                                       for p in spec["index_pairs"]),
                    tuple(float(v) for v in spec["mean"]), tuple(float(v) for v in spec["scale"]),
                    tuple(float(v) for v in spec["coef"]), float(spec["intercept"]),
                    None if spec.get("threshold") is None else float(spec["threshold"]))
        if not len(model.mean) == len(model.scale) == len(model.coef) == n:
            raise ValueError(f"pixel water model: {len(model.coef)} weights for {n} features")
        return model


def _log_odds(p: float) -> float:
    p = min(max(float(p), 1e-12), 1 - 1e-12)
    return float(np.log(p / (1 - p)))


def train_pixel_water_model(samples, water_code: int, index_definitions: dict, settings: dict,
                            seed: int) -> PixelWaterModel | None:
    """The pixel water model (no threshold yet) fitted on the training samples' labelled pixels: water
    (``water_code``) against every other class, balanced (``settings``: ``indices``, ``C``, ``max_train_pixels``).
    None, with a warning, where the samples hold no water or no land pixel (a country without labelled water:
    the ensemble decides water without it)."""
    from sklearn.linear_model import LogisticRegression

    from osmlulc.sklearn_models import training_pixels

    # Every clean labelled pixel of the label chips, as the logistic regression member takes them (no windows).
    chips = {"chip_pixels": True, "max_train_samples": settings.get("max_train_pixels")}
    pixels, codes = training_pixels(samples, chips, [], np.random.default_rng(seed))
    is_water = codes == water_code
    if is_water.all() or not is_water.any():
        LOG.warning("pixel water model: the training samples hold no %s pixel; the water decision goes without it",
                    "land" if is_water.all() else "water")
        return None
    names = tuple(settings.get("indices") or [])
    model = PixelWaterModel(tuple(samples.bands), names,
                            tuple(index_pairs_for(samples.bands, names, index_definitions)), (), (), (), 0.0)
    x = model.features(pixels).astype(np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    fit = LogisticRegression(C=float(settings.get("C", 1.0)), class_weight="balanced", max_iter=2000,
                             random_state=seed).fit((x - mean) / scale, is_water)
    LOG.info("pixel water model: fitted on %d pixels (%d water) of %d features", len(codes), int(is_water.sum()),
             x.shape[1])
    return PixelWaterModel(model.bands, names, model.index_pairs, tuple(mean.tolist()), tuple(scale.tolist()),
                           tuple(fit.coef_[0].tolist()), float(fit.intercept_[0]))
