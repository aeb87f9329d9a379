"""Choices on the validation samples (osmlulc.selection) and the product's water decision, on known answers."""

import numpy as np
import pytest
import rasterio

from osmlulc.classifiers import read_ensemble, write_ensemble
from osmlulc.predict import blend_tile_probabilities
from osmlulc.selection import (WaterDecision, choose_member_weights, choose_water_threshold, prior_weights,
                               weighted_accuracy)

from conftest import write_raster


def test_prior_weights_give_each_class_its_share_of_the_labelled_pixels():
    targets = np.array([0, 0, 1, 1])
    weights = prior_weights(targets, 3, candidates=np.array([900, 100, 0]))
    # Two samples each, but class 0 holds 90 % of the labelled pixels: a sample of it weighs 9 times more.
    assert weights[0] / weights[2] == pytest.approx(9.0)
    assert weighted_accuracy(np.array([[1, 0], [1, 0], [1, 0], [1, 0]]), targets, weights) == pytest.approx(0.9)


def test_member_weights_follow_the_validation_accuracy():
    targets = np.array([0, 1, 0, 1, 0, 1])
    right = np.eye(2)[targets]
    wrong = np.eye(2)[1 - targets]
    # Member a is right on the first four samples, member b on all: b's larger share wins.
    a = np.concatenate([right[:4], wrong[4:]])
    weights, rows = choose_member_weights({"a": a, "b": 0.9 * right + 0.05}, targets, np.ones(6),
                                          {"a": 0.5, "b": 0.5}, [0.3, 0.5, 0.7])
    assert weights == {"a": 0.3, "b": pytest.approx(0.7)}
    assert [r["share"] for r in rows] == [0.3, 0.5, 0.7]
    # Equal members: every share ties, the one nearest the default's is kept.
    weights, _ = choose_member_weights({"a": right, "b": right}, targets, np.ones(6), {"a": 0.6, "b": 0.4},
                                       [0.3, 0.5, 0.7])
    assert weights == {"a": 0.5, "b": 0.5}
    # No candidates: the default weights.
    assert choose_member_weights({"a": right, "b": right}, targets, np.ones(6), {"a": 2, "b": 1}, [])[0] == \
        {"a": 2, "b": 1}



def test_balanced_criterion_weighs_a_rare_class_like_a_common_one():
    # Class 1 is rare (one sample in ten, weight as its share). Member a finds the common class always and the
    # rare one never; member b finds the rare one and misses one common sample.
    targets = np.array([0] * 9 + [1])
    right = np.eye(2)[targets]
    a = np.tile([0.9, 0.1], (10, 1))
    b = right.copy()
    b[0] = [0.0, 1.0]
    members = {"a": a, "b": b}
    by_accuracy, rows = choose_member_weights(members, targets, np.ones(10), {"a": 0.9, "b": 0.1}, [0.2, 0.9])
    # share 0.9 of a: argmax follows a (accuracy 0.9, macro recall 0.5); 0.2: follows b (0.9, 0.94)
    assert [r["macro_recall"] for r in rows] == pytest.approx([(8 / 9 + 1) / 2, 0.5])
    assert [r["accuracy"] for r in rows] == pytest.approx([0.9, 0.9])
    assert by_accuracy["a"] == 0.9    # a tie on accuracy: the share nearest the default's
    balanced, rows = choose_member_weights(members, targets, np.ones(10), {"a": 0.9, "b": 0.1}, [0.2, 0.9],
                                           "balanced")
    assert balanced["a"] == 0.2 and rows[0]["score"] > rows[1]["score"]

def test_the_water_threshold_is_the_largest_that_reaches_the_index_recall():
    # 10 water samples: the model's argmax finds 7 (p 0.9, one of them with index < 0); the index finds 9;
    # the 3 the argmax misses have p(water) 0.3, 0.08, 0.01.  20 land samples, 4 with index > 0 and p(water) 0.02.
    p_water = np.array([0.9] * 6 + [0.3, 0.08, 0.01, 0.9] + [0.02] * 4 + [0.0] * 16)
    argmax_water = p_water >= 0.5
    index = np.array([0.3] * 9 + [-0.1] + [0.1] * 4 + [-0.5] * 16)
    is_water = np.arange(30) < 10
    thresholds = [0.5, 0.2, 0.05, 0.01]
    # Index recall 0.9; margin 0.1: recall 0.8 is enough, reached first (largest t) at t = 0.2 (adds the 0.3).
    threshold, figures = choose_water_threshold(p_water, argmax_water, index, is_water, np.ones(30), thresholds,
                                                recall_margin=0.1)
    assert figures["index_recall"] == pytest.approx(0.9) and figures["index_false_water"] == pytest.approx(0.2)
    assert threshold == 0.2
    # Margin 0: recall 0.9 needs t = 0.05 (adds the 0.08); t = 0.01 would also take the 4 land samples at 0.02.
    threshold, figures = choose_water_threshold(p_water, argmax_water, index, is_water, np.ones(30), thresholds,
                                                recall_margin=0.0)
    assert threshold == 0.05 and figures["chosen"]["recall"] == pytest.approx(0.9)
    assert figures["chosen"]["false_water"] == 0.0
    # None reaches it: the smallest threshold; no water sample: no decision.
    assert choose_water_threshold(p_water, argmax_water, index, is_water, np.ones(30), [0.5, 0.2], 0.0)[0] == 0.2
    assert choose_water_threshold(p_water, argmax_water, index, np.zeros(30, bool), np.ones(30), [0.5], 0.01)[0] is None


def index_pixels(index: np.ndarray) -> np.ndarray:
    """(h, w) index values -> (h, w, 2) band values (a, b) whose (a - b) / (a + b) is that index."""
    return np.stack([1 + index, 1 - index], axis=-1).astype(np.float32)


def test_water_decision_sets_water_where_the_index_says_so_and_the_model_does_not_rule_it_out():
    decision = WaterDecision("ndwi", ("B03", "B08"), 0.05)
    probabilities = np.zeros((1, 4, 3), np.float32)
    probabilities[0, :, 2] = [0.6, 0.1, 0.01, 0.1]          # water is the last column
    probabilities[0, :, 0] = 1 - probabilities[0, :, 2]
    classes = np.array([[12, 5, 5, 5]], np.uint8)
    index = np.array([[-0.2, 0.3, 0.3, -0.1]])
    valid = np.array([[True, True, True, True]])
    np.testing.assert_array_equal(decision.apply(probabilities, classes, index_pixels(index), valid, 2, 12),
                                  [[12, 12, 5, 5]])
    assert WaterDecision.from_dict(decision.to_dict()) == decision


def test_ensemble_file_keeps_its_water_decision(tmp_path):
    decision = WaterDecision("mndwi", ("B03", "B11"), 0.02)
    write_ensemble({"a": "a.keras", "b": "b.joblib"}, {"a": 0.4, "b": 0.6}, tmp_path / "e.json", water=decision,
                   selection={"samples": 3})
    members, weights, water = read_ensemble(tmp_path / "e.json")
    assert members == {"a": "a.keras", "b": "b.joblib"} and weights == {"a": 0.4, "b": 0.6} and water == decision
    write_ensemble({"a": "a.keras"}, {"a": 1.0}, tmp_path / "f.json")
    assert read_ensemble(tmp_path / "f.json")[2] is None


def test_blend_applies_the_water_decision_to_the_classes_not_the_probabilities(tmp_path, table):
    n = len(table)
    water = table.codes.tolist().index(12)
    forest = table.codes.tolist().index(8)
    p = np.zeros((n, 2, 3), np.uint8)
    p[forest] = 230
    p[water] = [[25, 25, 0], [25, 25, 25]]                    # p(water) ~0.1, except one pixel at 0
    member = write_raster(tmp_path / "p.tif", p)
    green = np.full((2, 3), 900, np.uint16)
    nir = np.array([[300, 2000, 300], [300, 300, 0]], np.uint16)   # NDWI > 0 except at (0, 1); (1, 2) nodata
    stack = np.stack([green, nir, np.full((2, 3), 500, np.uint16)])
    stack[:, 1, 2] = 0
    stack_path = write_raster(tmp_path / "stack.tif", stack)
    with rasterio.open(stack_path, "r+") as dst:
        for i, band in enumerate(["B03", "B08", "B04"], start=1):
            dst.set_band_description(i, band)
    decision = WaterDecision("ndwi", ("B03", "B08"), 0.05)
    blend_tile_probabilities({"m": member}, {"m": 1.0}, table, tmp_path / "c.tif", tmp_path / "pe.tif", block_size=64,
                             water=decision, stack_path=stack_path)
    with rasterio.open(tmp_path / "c.tif") as src:
        classes = src.read(1)
    # (0, 0), (1, 0), (1, 1): index > 0 and p(water) >= 0.05 -> water; (0, 1) index < 0 and (0, 2) p(water) 0: forest.
    np.testing.assert_array_equal(classes[:, :2], [[12, 8], [12, 12]])
    assert classes[0, 2] == 8
    with rasterio.open(tmp_path / "pe.tif") as src:
        assert src.read(water + 1)[0, 0] == 25                 # the probabilities stay the blend's
    with pytest.raises(ValueError, match="band stack"):
        blend_tile_probabilities({"m": member}, {"m": 1.0}, table, tmp_path / "c2.tif", tmp_path / "p2.tif",
                                 block_size=64, water=decision)


def test_near_gap_threshold_is_the_smallest_whose_false_water_stays_surely_below_the_index():
    from osmlulc.selection import choose_near_gap_threshold

    # 400 land samples near a gap, the index says water on 40 of them (10 %): 20 with p(water) 0.3, 10 at 0.05,
    # 10 at 0.01.  t = 0.3 makes 20 of them water (5 % + 2 standard errors 2.2 % < 10 %), 0.05 makes 30 (7.5 % +
    # 2.6 % > 10 %): 0.3 is the smallest sure one.  Far samples and water samples do not count.
    n = 400
    p_water = np.zeros(n + 100)
    p_water[:20], p_water[20:30], p_water[30:40] = 0.3, 0.05, 0.01
    index = np.where(np.arange(n + 100) < 40, 0.2, -0.3)
    index[n:] = 0.5
    is_water = np.zeros(n + 100, bool)
    is_water[n + 50:] = True
    near = np.arange(n + 100) < n + 50
    near[n:n + 50] = False
    args = (p_water, p_water >= 0.5, index, is_water, np.ones(n + 100), near, [0.5, 0.3, 0.05, 0.01])
    threshold, figures = choose_near_gap_threshold(*args, z=2.0, min_samples=100)
    assert threshold == 0.3 and figures["index_false_water"] == pytest.approx(0.1)
    assert [r["false_water"] for r in figures["candidates"]] == pytest.approx([0.0, 0.05, 0.075, 0.1])
    # z = 0: the false water may reach the index's: t = 0.01 (all 40, 10 %).
    assert choose_near_gap_threshold(*args, z=0.0, min_samples=100)[0] == 0.01
    # Too few land samples near gaps: no near-gap threshold.
    threshold, figures = choose_near_gap_threshold(*args, z=2.0, min_samples=401)
    assert threshold is None and "fewer than 401" in figures["reason"]


def test_near_gaps_the_water_decision_takes_the_lower_threshold():
    decision = WaterDecision("ndwi", ("B03", "B08"), 0.5, near_gap_px=32, near_gap_threshold=0.05)
    probabilities = np.zeros((1, 4, 2), np.float32)
    probabilities[0, :, 1] = [0.1, 0.1, 0.01, 0.6]
    probabilities[0, :, 0] = 1 - probabilities[0, :, 1]
    classes = np.array([[5, 5, 5, 5]], np.uint8)
    index = index_pixels(np.full((1, 4), 0.2))
    valid = np.ones((1, 4), bool)
    near = np.array([[True, False, True, False]])
    # p 0.1 near a gap: water; far: not (0.5 applies); p 0.01 near: not; p 0.6 far: water.
    np.testing.assert_array_equal(decision.apply(probabilities, classes, index, valid, 1, 12, near),
                                  [[12, 5, 5, 12]])
    with pytest.raises(ValueError, match="near a gap"):
        decision.apply(probabilities, classes, index, valid, 1, 12)
    assert WaterDecision.from_dict(decision.to_dict()) == decision
    # No far threshold (no water among the validation samples): the index counts near gaps only.
    near_only = WaterDecision("ndwi", ("B03", "B08"), None, near_gap_px=32, near_gap_threshold=0.05)
    np.testing.assert_array_equal(near_only.apply(probabilities, classes, index, valid, 1, 12, near),
                                  [[12, 5, 5, 5]])
    assert WaterDecision.from_dict(near_only.to_dict()) == near_only
    # An ensemble file written before the near-gap rule reads as one threshold everywhere.
    old = WaterDecision.from_dict({"index": "ndwi", "bands": ["B03", "B08"], "threshold": 0.2})
    assert old.near_gap_reach == 0 and old == WaterDecision("ndwi", ("B03", "B08"), 0.2)


def test_the_ensemble_chooses_a_near_gap_threshold_only_from_samples_that_know_their_gap_distance(table):
    from osmlulc.sample_data import Samples
    from osmlulc.selection import choose_ensemble

    codes = table.codes.tolist()
    land, water = codes.index(5), codes.index(12)
    # 200 land samples near a gap (40 with NDWI > 0: 10 at p(water) 0.2, 30 at 0.01), 200 far, 50 water far.
    targets = np.array([land] * 400 + [water] * 50, np.int32)
    p_water = np.zeros(450)
    p_water[:10], p_water[10:40], p_water[400:] = 0.2, 0.01, 0.9
    probabilities = np.zeros((450, len(table)))
    probabilities[:, water] = p_water
    probabilities[:, land] = 1 - p_water
    green = np.where((np.arange(450) < 40) | (np.arange(450) >= 400), 1500, 500)
    patches = np.zeros((450, 1, 1, 2), np.uint16)
    patches[:, 0, 0, 0], patches[:, 0, 0, 1] = green, 1000          # B03, B08: NDWI > 0 where green 1500
    gap_distance = np.where(np.arange(450) < 200, 3, 33).astype(np.int16)
    settings = {"members": {"a": 1.0}, "choose_weights": [],
                "water": {"index": "ndwi", "thresholds": [0.5, 0.2, 0.01], "recall_margin": 0.01,
                          "near_gap": {"px": 32, "z": 2.0, "min_samples": 100}}}

    def samples(distance):
        return Samples(patches, np.asarray(codes)[targets].astype(np.uint8), targets, ("B03", "B08"),
                       gap_distance=distance)

    chosen = choose_ensemble({"a": probabilities}, samples(gap_distance), table, settings, {"ndwi": ["B03", "B08"]})
    # 10 / 200 = 5 % + 2 SE (3.1 %) < the index's 20 % near gaps at t = 0.2; t = 0.01 reaches it.
    assert chosen["water"] == WaterDecision("ndwi", ("B03", "B08"), 0.5, 32, 0.2)
    assert chosen["selection"]["water_near_gap"]["index_false_water"] == pytest.approx(0.2)
    # Samples drawn without their distance to a gap: one threshold, and the selection says why.
    chosen = choose_ensemble({"a": probabilities}, samples(None), table, settings, {"ndwi": ["B03", "B08"]})
    assert chosen["water"] == WaterDecision("ndwi", ("B03", "B08"), 0.5)
    assert "no distance" in chosen["selection"]["water_near_gap"]["reason"]
