"""The pixel water model of the ensemble's water decision (osmlulc.water_model), on known answers and on real
spectra: its features, its training pixels, its threshold rule, its file form, and that a gap next to a pixel
cannot change its answer."""

import json

import numpy as np
import pytest

from osmlulc.sample_data import Samples
from osmlulc.selection import WaterDecision, choose_ensemble, choose_pixel_threshold
from osmlulc.sklearn_models import training_pixels
from osmlulc.water_model import PixelWaterModel, train_pixel_water_model

BANDS = ("B03", "B08", "B11")
INDICES = {"ndwi": ["B03", "B08"], "mndwi": ["B03", "B11"]}
WATER, LAND = 12, 5
#: How the pixel water model asks for its training pixels (osmlulc.sklearn_models.training_pixels).
CHIPS = {"chip_pixels": True, "max_train_samples": None}


def spectra(n: int, water: bool, rng) -> np.ndarray:
    """(n, 3) B03, B08, B11 of open water (dark NIR and SWIR) or of a field (bright NIR)."""
    centre = np.array([700, 300, 150]) if water else np.array([600, 3000, 2000])
    return np.clip(rng.normal(centre, centre * 0.15, (n, 3)), 1, None).astype(np.uint16)


def samples_of(pixels: np.ndarray, codes: np.ndarray, chip_codes: np.ndarray | None = None) -> Samples:
    """Samples whose patches are 3 x 3 copies of each pixel (label chips ``chip_codes`` (n, 3, 3), or none)."""
    patches = np.repeat(np.repeat(pixels[:, None, None, :], 3, axis=1), 3, axis=2)
    targets = np.where(codes == WATER, 1, 0).astype(np.int32)
    return Samples(patches, codes.astype(np.uint8), targets, BANDS, chip_codes)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(3)
    pixels = np.concatenate([spectra(200, True, rng), spectra(600, False, rng)])
    codes = np.array([WATER] * 200 + [LAND] * 600)
    settings = {"indices": ["ndwi", "mndwi"], "C": 1.0, "max_train_pixels": None}
    return train_pixel_water_model(samples_of(pixels, codes), WATER, INDICES, settings, seed=0), rng


def test_fitted_model_separates_water_from_land_and_its_logit_is_the_linear_model(fitted):
    model, rng = fitted
    assert model.bands == BANDS and model.index_pairs == ((0, 1), (0, 2)) and len(model.coef) == 5
    water, land = spectra(300, True, rng), spectra(300, False, rng)
    p_water, p_land = model.probability(water), model.probability(land)
    assert (p_water > 0.9).mean() > 0.99 and (p_land < 0.1).mean() > 0.99
    # The logit, accumulated feature by feature, is coef . standardised features + intercept.
    x = model.features(water.astype(np.float32)).astype(np.float64)
    expected = ((x - np.asarray(model.mean)) / np.asarray(model.scale)) @ np.asarray(model.coef) + model.intercept
    np.testing.assert_allclose(model.logit(water), expected, rtol=1e-4, atol=1e-3)
    # Image blocks (h, w, B) give what the pixel list gives.
    block = water[:200].reshape(10, 20, 3)
    np.testing.assert_array_equal(model.logit(block), model.logit(water[:200]).reshape(10, 20))


def test_threshold_sets_water_and_the_json_form_keeps_the_model(fitted):
    model, rng = fitted
    pixels = np.concatenate([spectra(50, True, rng), spectra(50, False, rng)])
    assert not model.water(pixels).any()                               # no threshold yet: no water
    chosen = model.with_threshold(0.9)
    np.testing.assert_array_equal(chosen.water(pixels), model.probability(pixels) >= 0.9)
    again = PixelWaterModel.from_dict(json.loads(json.dumps(chosen.to_dict())))
    assert again == chosen
    np.testing.assert_array_equal(again.water(pixels), chosen.water(pixels))
    spec = chosen.to_dict()
    spec["coef"] = spec["coef"][:-1]
    with pytest.raises(ValueError, match="4 weights for 5 features"):
        PixelWaterModel.from_dict(spec)


def test_training_pixels_are_the_label_chips_pixels_at_their_place():
    # One sample, a 5 x 5 patch whose pixel values count 0..24; a 3 x 3 chip labels its centre row and one corner.
    patch = np.arange(25, dtype=np.uint16).reshape(1, 5, 5, 1)
    chips = np.zeros((1, 3, 3), np.uint8)
    chips[0, 1, :] = LAND
    chips[0, 0, 0] = WATER
    samples = Samples(patch, np.array([LAND], np.uint8), np.array([0], np.int32), ("B03",), chips)
    pixels, codes = training_pixels(samples, CHIPS, [], np.random.default_rng(0))
    # chip (0, 0) is patch (1, 1) = 6; chip row 1 is patch row 2, columns 1..3 = 11, 12, 13.
    assert sorted(zip(pixels[:, 0].tolist(), codes.tolist())) == [(6, WATER), (11, LAND), (12, LAND), (13, LAND)]
    pixels, codes = training_pixels(samples, dict(CHIPS, max_train_samples=2), [], np.random.default_rng(0))
    assert len(codes) == 2
    # Without chips: the sample pixels themselves.
    no_chips = Samples(patch, np.array([LAND], np.uint8), np.array([0], np.int32), ("B03",))
    pixels, codes = training_pixels(no_chips, CHIPS, [], np.random.default_rng(0))
    assert pixels.tolist() == [[12]] and codes.tolist() == [LAND]


def test_samples_without_water_give_no_model(caplog):
    rng = np.random.default_rng(0)
    land = samples_of(spectra(20, False, rng), np.full(20, LAND))
    with caplog.at_level("WARNING", logger="osmlulc"):
        assert train_pixel_water_model(land, WATER, INDICES, {"indices": []}, seed=0) is None
    assert "no water pixel" in caplog.text


def test_threshold_rule_on_known_numbers():
    # 10 water samples, 90 land (weight 1).  The index: recall 1.0, false water 20 / 90.
    is_water = np.arange(100) < 10
    index = np.where(is_water | (np.arange(100) >= 80), 0.3, -0.2)
    p = np.zeros(100)
    p[:10] = [0.99] * 8 + [0.95, 0.6]                        # water
    p[10:13] = [0.97, 0.7, 0.7]                               # three land samples look like water
    args = (p, index, is_water, np.ones(100))
    # recall >= 1.0 - 0.1: 0.95 (9 of 10) is the largest; 0.98 reaches 8 of 10 only.
    threshold, figures = choose_pixel_threshold(*args, [0.98, 0.95, 0.6], recall_margin=0.1)
    assert threshold == 0.95 and figures["index_recall"] == 1.0
    assert figures["index_false_water"] == pytest.approx(20 / 90)
    assert [r["recall"] for r in figures["candidates"]] == [0.8, 0.9, 1.0]
    # margin 0: only 0.6 finds all water.
    assert choose_pixel_threshold(*args, [0.98, 0.95, 0.6], recall_margin=0.0)[0] == 0.6
    # A threshold whose false water exceeds the index rule's is never chosen: the index says water on 2 land
    # samples only, t = 0.6 makes 3 land samples water; the smallest allowed one is taken.
    index2 = np.where(is_water | (np.arange(100) >= 98), 0.3, -0.2)
    threshold, figures = choose_pixel_threshold(p, index2, is_water, np.ones(100), [0.98, 0.95, 0.6], 0.0)
    assert threshold == 0.95 and figures["chosen"]["recall"] == 0.9
    # No water samples: no threshold.
    assert choose_pixel_threshold(p, index, np.zeros(100, bool), np.ones(100), [0.9], 0.01)[0] is None


def test_the_ensemble_chooses_the_pixel_models_threshold_and_the_decision_applies_it(fitted, table):
    model, rng = fitted
    codes = table.codes.tolist()
    land, water = codes.index(LAND), codes.index(WATER)
    pixels = np.concatenate([spectra(50, True, rng), spectra(400, False, rng)])
    targets = np.array([water] * 50 + [land] * 400, np.int32)
    probabilities = np.zeros((450, len(table)))
    probabilities[:, land] = 1.0                              # the members never find this water
    samples = Samples(pixels[:, None, None, :], np.asarray(codes)[targets].astype(np.uint8), targets, BANDS)
    settings = {"members": {"a": 1.0}, "choose_weights": [],
                "water": {"index": "ndwi", "thresholds": [0.5], "recall_margin": 0.01,
                          "pixel_model": {"thresholds": [0.999, 0.99, 0.9, 0.5]}}}
    chosen = choose_ensemble({"a": probabilities}, samples, table, settings, INDICES, model)
    decision = chosen["water"]
    assert decision.pixel_model is not None and decision.pixel_model.threshold in (0.999, 0.99, 0.9, 0.5)
    assert chosen["selection"]["water_pixel_model"]["chosen"]["recall"] >= 0.99
    assert WaterDecision.from_dict(json.loads(json.dumps(decision.to_dict()))) == decision
    # Applied to a block: water where the pixel model says so, though p(water) is 0 and the argmax is land.
    block = np.concatenate([spectra(10, True, rng), spectra(10, False, rng)]).reshape(4, 5, 3)
    p_block = np.zeros((4, 5, len(table)), np.float32)
    p_block[..., land] = 1
    classes = decision.apply(p_block, np.full((4, 5), LAND, np.uint8), block[..., [BANDS.index(b) for b in
                                                                                  decision.stack_bands]],
                             np.ones((4, 5), bool), water, WATER)
    np.testing.assert_array_equal(classes == WATER, decision.pixel_model.water(block))
    assert (classes.reshape(-1)[:10] == WATER).mean() > 0.9 and (classes.reshape(-1)[10:] == LAND).all()
    # Without the pixel model the same decision finds none of it.
    settings["water"]["pixel_model"] = {}
    assert choose_ensemble({"a": probabilities}, samples, table, settings, INDICES)["water"].pixel_model is None


def test_a_gap_next_to_a_pixel_does_not_change_the_pixel_models_answer(fitted):
    model, rng = fitted
    block = np.concatenate([spectra(200, True, rng), spectra(200, False, rng)]).reshape(20, 20, 3)
    with_gap = block.copy()
    with_gap[5:12, 5:12] = 0                                  # a masked square
    chosen = model.with_threshold(0.5)
    outside = np.ones((20, 20), bool)
    outside[5:12, 5:12] = False
    np.testing.assert_array_equal(chosen.water(with_gap)[outside], chosen.water(block)[outside])
