"""Choices made on the spatial validation samples, never on the data that reports them (issue 22): the
ensemble's member weights and the water decision's threshold.

The validation samples are drawn from spatial blocks held out of training (``samples.split_block_px``), so a
choice made on them looks at no pixel of an outer benchmark fold, and a country run makes the same choice
on its own validation samples.  Samples are weighted by their class's share of the labelled pixels
(``prior``), so a weighted accuracy estimates the pixel-weighted overall accuracy of the map.

The water decision: a pixel is water where the ensemble's most probable class is water, or where a water
index (NDWI, MNDWI) is above 0 and the ensemble's water probability is at least ``t``.  The model
vetoes the index where it is sure of land (wet fields, shadows), the index finds water the model misses
(haze at a cloud's edge, a pond it never saw).  ``t`` is the largest threshold whose water recall on the
validation samples reaches the index rule's minus ``recall_margin``: as much of the index's water as
asked for, with the least false water.

Near a gap (within ``near_gap.px`` of a masked pixel) the model's view is weakest: part of its field is
filled, the air at a cloud's edge is hazy, and on real data its water probability there fell below ``t``
where the index still found water.  The validation samples hold no such water (they hold no water near a
gap at all on the development data), so a recall criterion cannot see it.  Near gaps the threshold is
therefore chosen on the false water alone: the smallest ``t_near`` whose false water on the validation
samples near a gap stays below the index rule's there by ``near_gap.z`` standard errors -- the index's
water with less than its false water, which is what the water layer is held to -- and never above ``t``.
This rule is off by default (``near_gap.px: 0``): on the western half of the development scene it also turns
shadowed town pixels next to synthetic clouds into water, so a gap changes its neighbours' classes again
(``benchmarks/RESULTS.md``).

What the decision uses instead near gaps is its pixel water model (:mod:`osmlulc.water_model`): water also where a
logistic regression on the pixel's own bands says so, its threshold chosen on the validation samples by
:func:`choose_pixel_threshold`.  It sees no neighbour, so a gap cannot change its answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from osmlulc.classes import ClassTable
from osmlulc.indices import index_pairs_for, normalized_difference, spectral_indices
from osmlulc.sample_data import class_weights
from osmlulc.water_model import PixelWaterModel

LOG = logging.getLogger("osmlulc")


@dataclass(frozen=True)
class WaterDecision:
    """Water where the argmax is water, or where ``index`` ((a - b) / (a + b) of ``bands``) > 0 and
    p(water) >= ``threshold`` (None: the argmax alone), or >= ``near_gap_threshold`` within ``near_gap_px`` of a
    gap (None or 0: no separate rule near gaps), or where the ``pixel_model`` (:mod:`osmlulc.water_model`, None:
    none) finds water."""

    index: str
    bands: tuple[str, str]
    threshold: float | None
    near_gap_px: int = 0
    near_gap_threshold: float | None = None
    pixel_model: PixelWaterModel | None = None

    @property
    def near_gap_reach(self) -> int:
        """The distance (px) to a gap the decision looks at: 0 without a near-gap rule."""
        return self.near_gap_px if self.near_gap_threshold is not None else 0

    @property
    def stack_bands(self) -> tuple[str, ...]:
        """The stack bands the decision reads (``apply``'s ``pixels``): the pixel model's, in its order, then the
        index's others.  The pixel model thus takes the first columns as they are, without a reordered copy."""
        first = () if self.pixel_model is None else tuple(self.pixel_model.bands)
        return first + tuple(b for b in self.bands if b not in first)

    def apply(self, probabilities: np.ndarray, classes: np.ndarray, pixels: np.ndarray, valid: np.ndarray,
              water_column: int, water_code: int, near_gap: np.ndarray | None = None) -> np.ndarray:
        """(h, w) class codes with the decision's water set.  ``probabilities`` (h, w, C); ``pixels`` (h, w, B) the
        stack's values of :attr:`stack_bands`; ``near_gap`` (h, w) bool: the pixels within ``near_gap_px`` of a gap,
        needed when the decision has a near-gap rule."""
        far = np.inf if self.threshold is None else self.threshold
        if self.near_gap_reach:
            if near_gap is None:
                raise ValueError("water decision: its near-gap rule needs the pixels near a gap")
            threshold = np.where(near_gap, min(far, self.near_gap_threshold), far)
        else:
            threshold = far
        order = self.stack_bands
        a, b = (order.index(band) for band in self.bands)
        index_values = normalized_difference(pixels[..., a], pixels[..., b])
        water = (index_values > 0) & (probabilities[..., water_column] >= threshold)
        if self.pixel_model is not None:
            water |= self.pixel_model.water(pixels[..., :len(self.pixel_model.bands)])
        return np.where(valid & water, np.uint8(water_code), classes).astype(np.uint8)

    def to_dict(self) -> dict:
        return {"index": self.index, "bands": list(self.bands), "threshold": self.threshold,
                "near_gap_px": self.near_gap_px, "near_gap_threshold": self.near_gap_threshold,
                "pixel_model": None if self.pixel_model is None else self.pixel_model.to_dict()}

    @classmethod
    def from_dict(cls, spec: dict | None) -> WaterDecision | None:
        if not spec:
            return None

        def number(key):
            return None if spec.get(key) is None else float(spec[key])

        return cls(str(spec["index"]), tuple(spec["bands"]), number("threshold"), int(spec.get("near_gap_px", 0)),
                   number("near_gap_threshold"), PixelWaterModel.from_dict(spec.get("pixel_model")))


def prior_weights(targets: np.ndarray, n_classes: int, candidates) -> np.ndarray:
    """Per-sample weights: the class's share of the labelled pixels over its share of the samples."""
    per_class = class_weights(targets, n_classes, "prior", candidates)
    return per_class[targets]


def weighted_accuracy(probabilities: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> float:
    return float(np.sum(weights * (probabilities.argmax(axis=1) == targets)) / np.sum(weights))


def macro_recall(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """The mean over the classes present of their recall (every class counts the same)."""
    hit = probabilities.argmax(axis=1) == targets
    return float(np.mean([hit[targets == c].mean() for c in np.unique(targets)]))


#: What a candidate of ``models.ensemble.choose_weights`` is scored by on the validation samples:
#: ``accuracy``: the prior-weighted accuracy (an estimate of the map's overall accuracy); ``balanced``:
#: the mean of it and the macro recall, so a rare class the map loses counts as much as a common one.
WEIGHT_CRITERIA = {
    "accuracy": lambda p, targets, weights: weighted_accuracy(p, targets, weights),
    "balanced": lambda p, targets, weights: (weighted_accuracy(p, targets, weights) + macro_recall(p, targets)) / 2,
}


def choose_member_weights(member_probabilities: dict, targets: np.ndarray, weights: np.ndarray, default: dict,
                          first_shares, criterion: str = "accuracy") -> tuple[dict, list[dict]]:
    """The ensemble weights with the best validation score (``criterion``: a key of :data:`WEIGHT_CRITERIA`).

    Two members: the first member's share is tried at each of ``first_shares`` (ties: the share nearest the
    default's); other member counts, or no shares: the ``default`` weights.  Returns the weights and a row per
    candidate (share, accuracy, macro recall, score)."""
    score = WEIGHT_CRITERIA[criterion]
    names = list(member_probabilities)
    total = float(sum(default[n] for n in names))
    default_share = default[names[0]] / total

    def row(share, mixed):
        return {"share": float(share), "accuracy": weighted_accuracy(mixed, targets, weights),
                "macro_recall": macro_recall(mixed, targets), "score": score(mixed, targets, weights)}

    if len(names) != 2 or not first_shares:
        mixed = sum(member_probabilities[n] * (default[n] / total) for n in names)
        return dict(default), [row(default_share, mixed)]
    first, second = names
    rows = [row(share, share * member_probabilities[first] + (1 - share) * member_probabilities[second])
            for share in first_shares]
    best = max(rows, key=lambda r: (round(r["score"], 9), -abs(r["share"] - default_share)))
    return {first: best["share"], second: 1 - best["share"]}, rows


def water_rates(predicted: np.ndarray, is_water: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """Water recall and prior-weighted false water (the share of the land's weight called water) of a decision's
    ``predicted`` water on the validation samples."""
    land = ~is_water
    return (float(predicted[is_water].mean()),
            float(np.sum(weights[land] * predicted[land]) / max(np.sum(weights[land]), 1e-12)))


def choose_water_threshold(p_water: np.ndarray, argmax_water: np.ndarray, index_values: np.ndarray,
                           is_water: np.ndarray, weights: np.ndarray, thresholds, recall_margin: float,
                           criterion: str = "recall") -> tuple[float | None, dict]:
    """The water decision's threshold, chosen among ``thresholds`` on the validation samples; None without
    water samples.  ``criterion``:

    * ``recall``: the largest threshold whose decision reaches the index rule's water recall minus
      ``recall_margin`` (the smallest threshold if none does): the index's water with the least false water;
    * ``youden``: the threshold with the largest recall minus false-water rate (Youden's J; ties: the larger
      threshold): as much water as the validation samples show is worth its false water.

    Returns it and the figures it was chosen on."""
    if not is_water.any():
        return None, {"reason": "no water among the validation samples"}
    index_recall, index_false_water = water_rates(index_values > 0, is_water, weights)
    rows = []
    for t in sorted((float(t) for t in thresholds), reverse=True):
        recall, false_water = water_rates(argmax_water | ((index_values > 0) & (p_water >= t)), is_water, weights)
        rows.append({"threshold": t, "recall": recall, "false_water": false_water})
    if criterion == "youden":
        chosen = max(rows, key=lambda r: (round(r["recall"] - r["false_water"], 9), r["threshold"]))
    else:
        chosen = next((r for r in rows if r["recall"] >= index_recall - recall_margin), rows[-1])
    return chosen["threshold"], {"index_recall": index_recall, "index_false_water": index_false_water,
                                 "criterion": criterion, "candidates": rows, "chosen": chosen}


def choose_pixel_threshold(p_water: np.ndarray, index_values: np.ndarray, is_water: np.ndarray, weights: np.ndarray,
                           thresholds, recall_margin: float) -> tuple[float | None, dict]:
    """The pixel water model's threshold among ``thresholds`` (:mod:`osmlulc.water_model`; ``p_water`` its
    probabilities of the validation samples, ``index_values`` the index's, ``weights`` prior weights): the largest
    threshold at which the model alone reaches the index rule's water recall minus ``recall_margin`` with at most
    the index rule's false water; where none reaches that recall, the smallest one within that false water.  None
    without water samples or when no threshold keeps the false water.  Alone, because the validation samples hold
    no narrow or hazy water: a criterion on the ensemble's decision plus the model would see nothing to add.
    Returns it and the figures it was chosen on."""
    if not is_water.any():
        return None, {"reason": "no water among the validation samples"}
    index_recall, index_false_water = water_rates(index_values > 0, is_water, weights)
    rows = [dict(zip(("threshold", "recall", "false_water"), (t, *water_rates(p_water >= t, is_water, weights))))
            for t in sorted((float(t) for t in thresholds), reverse=True)]
    allowed = [r for r in rows if r["false_water"] <= index_false_water]
    figures = {"index_recall": index_recall, "index_false_water": index_false_water, "candidates": rows}
    if not allowed:
        return None, {**figures, "reason": "no threshold keeps the false water below the index rule's"}
    chosen = next((r for r in allowed if r["recall"] >= index_recall - recall_margin), allowed[-1])
    return chosen["threshold"], {**figures, "chosen": chosen}


def choose_near_gap_threshold(p_water: np.ndarray, argmax_water: np.ndarray, index_values: np.ndarray,
                              is_water: np.ndarray, weights: np.ndarray, near_gap: np.ndarray, thresholds, z: float,
                              min_samples: int) -> tuple[float | None, dict]:
    """The water decision's threshold near gaps, chosen on the validation samples near a gap (``near_gap``): the
    smallest of ``thresholds`` whose prior-weighted false water plus ``z`` standard errors (binomial, with the
    effective sample count of the weights) is at most the index rule's false water on the same samples.  None
    (the far threshold applies) with fewer than ``min_samples`` land samples near a gap (effective count) or when
    no threshold is that sure.  Returns it and the figures it was chosen on."""
    land = near_gap & ~is_water
    w = weights[land]
    effective = float(w.sum() ** 2 / np.sum(w ** 2)) if len(w) else 0.0
    figures = {"samples": int(near_gap.sum()), "land_samples": int(land.sum()), "effective_land": effective,
               "water_samples": int((near_gap & is_water).sum()), "z": z}
    if effective < min_samples:
        return None, {**figures, "reason": f"{effective:.0f} land validation samples near a gap (effective), "
                                           f"fewer than {min_samples}"}

    def false_water(predicted):
        rate = float(np.sum(w * predicted[land]) / np.sum(w))
        return rate, float(np.sqrt(rate * (1 - rate) / effective))

    index_rate, _ = false_water(index_values > 0)
    rows, chosen = [], None
    for t in sorted((float(t) for t in thresholds), reverse=True):
        rate, error = false_water(argmax_water | ((index_values > 0) & (p_water >= t)))
        rows.append({"threshold": t, "false_water": rate, "standard_error": error})
        if rate + z * error <= index_rate:
            chosen = t
    figures.update(index_false_water=index_rate, candidates=rows, chosen=chosen)
    if chosen is None:
        figures["reason"] = "no threshold's false water is surely below the index's"
    return chosen, figures


def choose_ensemble(member_probabilities: dict, validation, table: ClassTable, settings: dict,
                    index_definitions: dict, pixel_model: PixelWaterModel | None = None) -> dict:
    """Member weights and water decision of the ensemble from its members' probabilities of the validation
    samples (``validation``: :class:`osmlulc.sample_data.Samples`).  ``settings``: ``models.ensemble``
    (members, choose_weights, choose_weights_by, water {index, thresholds, recall_margin, near_gap, pixel_model}).
    ``pixel_model``: the fitted pixel water model (:mod:`osmlulc.water_model`), its threshold chosen here; None:
    none.  Returns the ensemble's ``weights``, ``water`` (a :class:`WaterDecision` or None) and ``selection`` (the
    figures)."""
    weights = prior_weights(validation.targets, len(table), validation.candidates)
    chosen, weight_rows = choose_member_weights(member_probabilities, validation.targets, weights,
                                                settings["members"], settings.get("choose_weights") or [],
                                                settings.get("choose_weights_by", "accuracy"))
    total = float(sum(chosen.values()))
    mixed = sum(member_probabilities[n] * (chosen[n] / total) for n in chosen)
    selection = {"samples": int(len(validation.targets)), "weights": weight_rows}
    water_settings = settings.get("water") or {}
    water = None
    if water_settings.get("index", "none") != "none":
        name = water_settings["index"]
        pair = index_pairs_for(validation.bands, [name], index_definitions)
        index_values = spectral_indices(validation.centre_spectra, pair)[:, 0]
        water_column = table.codes.tolist().index(table.water_code())
        threshold, figures = choose_water_threshold(
            mixed[:, water_column], mixed.argmax(axis=1) == water_column, index_values,
            validation.targets == water_column, weights, water_settings["thresholds"], water_settings["recall_margin"],
            water_settings.get("criterion", "recall"))
        selection["water"] = figures
        near = water_settings.get("near_gap") or {}
        near_threshold = None
        if near.get("px", 0) > 0 and validation.gap_distance is not None:
            near_threshold, selection["water_near_gap"] = choose_near_gap_threshold(
                mixed[:, water_column], mixed.argmax(axis=1) == water_column, index_values,
                validation.targets == water_column, weights, validation.gap_distance <= near["px"],
                water_settings["thresholds"], near["z"], near["min_samples"])
        elif near.get("px", 0) > 0:
            selection["water_near_gap"] = {"reason": "the validation samples carry no distance to a gap"}
        if pixel_model is not None:
            pixel_spectra = validation.centre_spectra[:, [list(validation.bands).index(b) for b in pixel_model.bands]]
            pixel_threshold, selection["water_pixel_model"] = choose_pixel_threshold(
                pixel_model.probability(pixel_spectra), index_values, validation.targets == water_column, weights,
                (water_settings.get("pixel_model") or {}).get("thresholds", water_settings["thresholds"]),
                water_settings["recall_margin"])
            pixel_model = None if pixel_threshold is None else pixel_model.with_threshold(pixel_threshold)
            if pixel_model is None:
                LOG.warning("water decision: %s; no pixel water model", selection["water_pixel_model"]["reason"])
        if threshold is None and near_threshold is None and pixel_model is None:
            LOG.warning("water decision: %s; the ensemble's argmax alone decides water", figures["reason"])
        else:
            if threshold is None:
                LOG.warning("water decision: %s; the index counts near gaps only", figures["reason"])
            water = WaterDecision(name, tuple(index_definitions[name]), threshold,
                                  int(near["px"]) if near_threshold is not None else 0, near_threshold, pixel_model)
    return {"weights": chosen, "water": water, "selection": selection}


def build_ensemble(member_models: dict, validation_path, table: ClassTable, settings: dict, index_definitions: dict,
                   path, *, rotations: int = 1, train_path=None, seed: int = 0) -> dict:
    """Rule ``ensemble_model``: classify the validation samples with each member (``member_models``: name -> model
    file), fit the pixel water model on the training samples ``train_path`` where ``water.pixel_model.enabled``,
    choose the weights and the water decision (:func:`choose_ensemble`), write the ensemble's model file
    (:func:`osmlulc.classifiers.write_ensemble`).  Returns what :func:`choose_ensemble` returns."""
    from osmlulc.classifiers import load_classifier, write_ensemble
    from osmlulc.predict import predict_patches
    from osmlulc.sample_data import load_samples
    from osmlulc.water_model import train_pixel_water_model

    validation = load_samples(validation_path, table)
    probabilities = {name: predict_patches(load_classifier(model, rotations=rotations), validation.patches)
                     for name, model in member_models.items()}
    water_settings = settings.get("water") or {}
    pixel_settings = water_settings.get("pixel_model") or {}
    pixel_model = None
    if water_settings.get("index", "none") != "none" and pixel_settings.get("enabled"):
        if train_path is None:
            raise ValueError("ensemble: the pixel water model needs the training samples")
        pixel_model = train_pixel_water_model(load_samples(train_path, table), table.water_code(), index_definitions,
                                              pixel_settings, seed)
    chosen = choose_ensemble(probabilities, validation, table, settings, index_definitions, pixel_model)
    write_ensemble(member_models, chosen["weights"], path, water=chosen["water"], selection=chosen["selection"])
    return chosen
