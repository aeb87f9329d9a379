"""Confidence intervals, area-adjusted accuracy (Olofsson et al. 2014), water index baselines,
the random / buffered validation splits and the confidence layer, with known answers."""

import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from shapely.geometry import box

from osmlulc import accuracy, assess
from osmlulc.classes import ClassTable
from osmlulc.footprints import clip_to_footprint
from osmlulc.mosaic import merge_tiles
from osmlulc.predict import PROBABILITY_SCALE, tile_confidence
from osmlulc.samples import SampleSettings, _pick_outside, buffered_out, draw_samples

from conftest import write_raster

# The numerical example of Olofsson et al. (2014, Remote Sens. Environ. 148, section 5): sample
# counts with the map classes as rows (deforestation, forest gain, stable forest, stable non-forest),
# strata sizes in 30 m pixels (0.09 ha).
OLOFSSON_MAP_ROWS = np.array([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])
OLOFSSON_MAPPED = np.array([200000, 150000, 3200000, 6450000])
FOUR = ClassTable.from_dict({"classes": [{"code": c, "name": n, "colour": [c, c, c]} for c, n in
                                         [(1, "deforestation"), (2, "forest gain"), (3, "stable forest"),
                                          (4, "stable non-forest")]]})


def test_wilson_interval_known_values():
    low, high = accuracy.wilson_interval(81, 100)
    assert low == pytest.approx(0.7222, abs=1e-4) and high == pytest.approx(0.8749, abs=1e-4)
    low, high = accuracy.wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and low == pytest.approx(0.7225, abs=1e-4)  # 100 % is not a point
    assert all(np.isnan(accuracy.wilson_interval(0, 0)))


def test_metrics_carry_the_overall_accuracy_interval(table):
    cm = np.diag(np.full(12, 50)).astype(np.int64)
    cm[0, 1] = 400  # 600 of 1000 right
    m = accuracy.metrics(cm, table)
    assert m["overall_accuracy"] == pytest.approx(0.6)
    assert m["overall_accuracy_ci95_low"] == pytest.approx(0.5693, abs=1e-4)
    assert m["overall_accuracy_ci95_high"] == pytest.approx(0.6299, abs=1e-4)


def test_area_adjusted_reproduces_olofsson_2014_example():
    cm = OLOFSSON_MAP_ROWS.T  # our matrices have the reference in the rows
    overall, classes = accuracy.area_adjusted(cm, OLOFSSON_MAPPED, FOUR, pixel_area=0.09)
    # Published: OA 0.95 +- 0.02; deforestation 21,158 +- 6,158 ha, user's 0.88 +- 0.07, producer's 0.75 +- 0.21;
    # forest gain 11,686 +- 3,756 ha, user's 0.73 +- 0.10, producer's 0.85 +- 0.25.
    assert overall["area_adjusted_overall_accuracy"] == pytest.approx(0.9465, abs=1e-4)
    assert overall["area_adjusted_overall_accuracy_ci95"] == pytest.approx(0.0185, abs=1e-4)
    defo, gain = classes.iloc[0], classes.iloc[1]
    assert defo["estimated_area"] == pytest.approx(21158, abs=1)
    assert defo["estimated_area_ci95"] == pytest.approx(6158, abs=1)
    assert defo["users_accuracy"] == pytest.approx(0.88)
    assert defo["users_accuracy_ci95"] == pytest.approx(0.074, abs=1e-3)
    assert defo["producers_accuracy"] == pytest.approx(0.7487, abs=1e-4)
    assert defo["producers_accuracy_ci95"] == pytest.approx(0.2133, abs=1e-4)
    assert gain["estimated_area"] == pytest.approx(11686, abs=1)
    assert gain["estimated_area_ci95"] == pytest.approx(3756, abs=1)
    assert gain["producers_accuracy_ci95"] == pytest.approx(0.2544, abs=1e-4)
    assert classes["mapped_area"].tolist() == pytest.approx((OLOFSSON_MAPPED * 0.09).tolist())
    # The area estimates partition the map.
    assert classes["estimated_area"].sum() == pytest.approx(OLOFSSON_MAPPED.sum() * 0.09)


def test_area_adjusted_census_gives_reference_areas_and_unknown_strata_are_nan():
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 50, size=(4, 4)) + np.diag([500, 400, 300, 200])
    _, classes = accuracy.area_adjusted(cm, cm.sum(axis=0), FOUR)
    assert classes["estimated_area"].to_numpy() == pytest.approx(cm.sum(axis=1).astype(float))
    assert classes["producers_accuracy"].to_numpy() == pytest.approx(np.diag(cm) / cm.sum(axis=1))
    # A class that is mapped but never assessed makes the estimates unknown, not silently biased.
    cm[:, 3] = 0
    overall, classes = accuracy.area_adjusted(cm, [100, 100, 100, 100], FOUR)
    assert np.isnan(overall["area_adjusted_overall_accuracy"]) and np.isnan(classes["users_accuracy"].iloc[3])
    # ... while a class absent from the map contributes nothing.
    overall, classes = accuracy.area_adjusted(cm, [100, 100, 100, 0], FOUR)
    assert 0 < overall["area_adjusted_overall_accuracy"] < 1
    # Unmapped class 4: no user's accuracy, but its area is estimated from the other strata (omissions).
    assert np.isnan(classes["users_accuracy"].iloc[3]) and classes["estimated_area"].iloc[3] > 0


def test_water_metrics_and_collapse(table):
    cm2 = np.array([[90, 10], [5, 45]])
    m = accuracy.water_metrics(cm2)
    assert m["water_f1"] == pytest.approx(90 / 105) and m["water_iou"] == pytest.approx(45 / 60)
    assert m["water_precision"] == pytest.approx(45 / 55) and m["water_recall"] == pytest.approx(45 / 50)
    assert m["overall_accuracy"] == pytest.approx(135 / 150) and m["n_pixels"] == 150
    cm = np.zeros((12, 12), np.int64)
    cm[11, 11], cm[11, 4], cm[4, 11], cm[4, 4], cm[7, 7] = 45, 5, 10, 60, 30
    assert accuracy.water_confusion(cm, table).tolist() == cm2.tolist()
    # The water part of the class metrics agrees with the 2 x 2 view.
    full = accuracy.metrics(cm, table)
    assert full["water_f1"] == pytest.approx(m["water_f1"]) and full["water_iou"] == pytest.approx(m["water_iou"])


def _index_stack(tmp_path):
    """4 x 4 stack B03, B08, B11: NDWI > 0 in the top half, MNDWI > 0 in the left half."""
    green = np.full((4, 4), 1000, np.uint16)
    nir = np.where(np.arange(4)[:, None] < 2, 500, 2000) * np.ones((1, 4), np.uint16)
    swir = np.where(np.arange(4)[None, :] < 2, 500, 2000) * np.ones((4, 1), np.uint16)
    stack = np.stack([green, nir, swir]).astype(np.uint16)
    path = write_raster(tmp_path / "stack.tif", stack)
    with rasterio.open(path, "r+") as dst:
        for i, name in enumerate(("B03", "B08", "B11"), start=1):
            dst.set_band_description(i, name)
    return path


def test_water_index_confusion_counts_the_model_pixels_only(tmp_path, table):
    stack = _index_stack(tmp_path)
    reference = np.full((4, 4), 5, np.uint8)
    reference[:2, :2] = 12  # water in the top-left quarter
    reference[3, 3] = 0     # no reference here
    ref = write_raster(tmp_path / "ref.tif", reference)
    prediction = np.full((4, 4), 8, np.uint8)
    prediction[0, 3] = 0    # no prediction here
    pred = write_raster(tmp_path / "pred.tif", prediction)
    result = accuracy.water_index_confusion(stack, ref, table, {"ndwi": ("B03", "B08"), "mndwi": ("B03", "B11")},
                                            prediction_paths=[pred])
    # 14 pixels: 4 water (top-left), 10 land. NDWI flags the top half: water all found, 3 land flagged
    # (top-right quarter minus the pixel without prediction).
    assert result["ndwi"].tolist() == [[7, 3], [0, 4]]
    # MNDWI flags the left half: 4 water found, 4 land (bottom-left) flagged.
    assert result["mndwi"].tolist() == [[6, 4], [0, 4]]
    with pytest.raises(accuracy.InputError, match="lacks band"):
        accuracy.water_index_confusion(stack, ref, table, {"x": ("B03", "B12")})


def test_class_counts_with_mask(tmp_path, table):
    data = np.array([[1, 1, 12], [0, 5, 12]], np.uint8)
    path = write_raster(tmp_path / "c.tif", data)
    mask = write_raster(tmp_path / "m.tif", np.array([[1, 0, 1], [1, 1, 1]], np.uint8))
    counts = accuracy.class_counts(path, table)
    assert counts[0] == 2 and counts[4] == 1 and counts[11] == 2 and counts.sum() == 5
    assert accuracy.class_counts(path, table, mask_path=mask)[0] == 1


def test_tile_and_country_tables_with_index_rows_and_area_estimates(tmp_path, table):
    stack = _index_stack(tmp_path)
    reference = np.full((4, 4), 5, np.uint8)
    reference[:2, :2] = 12
    ref = write_raster(tmp_path / "ref.tif", reference)
    pred = write_raster(tmp_path / "pred.tif", np.where(np.arange(4)[:, None] < 2, 12, 5).astype(np.uint8)
                        * np.ones((1, 4), np.uint8))
    npz = tmp_path / "tile.npz"
    assess.tile_confusions({"rf_pixel": pred}, ref, table, npz, stack_path=stack,
                           water_indices={"ndwi": ("B03", "B08")})
    out, confusion, areas = tmp_path / "acc.csv", tmp_path / "cm.csv", tmp_path / "areas.csv"
    df = assess.country_accuracy([npz, npz], {"product": pred}, ref, table, out, confusion_csv=confusion,
                                 areas_csv=areas)
    assert list(df.columns[:6]) == ["scope", "model", "mode", "overall_accuracy", "overall_accuracy_ci95_low",
                                    "overall_accuracy_ci95_high"]
    rf = df[(df.model == "rf") & (df["mode"] == "pixel")].iloc[0]
    assert rf["overall_accuracy"] == pytest.approx(0.75) and rf["n_pixels"] == 32  # two tiles summed
    ndwi = df[df.model == "ndwi>0"].iloc[0]
    # The model and NDWI flag the same top half here: same water F1 on the same pixels.
    assert ndwi["mode"] == "index" and ndwi["n_pixels"] == 32
    assert ndwi["water_f1"] == pytest.approx(rf["water_f1"]) == pytest.approx(2 * 4 / (2 * 4 + 4))
    area = pd.read_csv(areas)
    water = area[(area.model == "rf") & (area.code == 12)].iloc[0]
    assert water["mapped_area_km2"] == pytest.approx(16 * 100 / 1e6)          # 2 tiles x 8 px x 100 m2
    assert water["estimated_area_km2"] == pytest.approx(8 * 100 / 1e6)        # the reference's water
    cms = pd.read_csv(confusion)
    assert set(cms["model"]) == {"rf", "product"} and cms.filter(like="predicted_").to_numpy().sum() == 48


def _labels_tile(tmp_path, size=80):
    labels = np.full((size, size), 5, np.uint8)
    labels[:, size // 2:] = 8
    rows, cols = np.indices(labels.shape)
    stack = np.stack([rows * 1000 + cols + 1, np.full(labels.shape, 9)]).astype(np.uint16)
    return {"32UNU": (write_raster(tmp_path / "stack.tif", stack), write_raster(tmp_path / "label.tif", labels))}


def test_random_split_comes_from_training_blocks_and_buffer_keeps_distance(tmp_path, table):
    tiles = _labels_tile(tmp_path)
    settings = SampleSettings(patch_size=3, per_class=60, validation_per_class=30, split_block_px=10,
                              validation_fraction=0.4, seed=5, validation_buffer_px=3)
    summary = draw_samples(tiles, table, settings, tmp_path / "t.npz", tmp_path / "v.npz", tmp_path / "r.npz")
    assert summary["validation_random"][5] == 30 and summary["validation_random"][8] == 30
    train, val, rnd = (np.load(tmp_path / f"{n}.npz") for n in ("t", "v", "r"))
    train_px = set(zip(train["rows"].tolist(), train["cols"].tolist()))
    random_px = set(zip(rnd["rows"].tolist(), rnd["cols"].tolist()))
    assert not train_px & random_px  # never a training pixel itself ...
    train_blocks = {(r // 10, c // 10) for r, c in train_px}
    assert {(r // 10, c // 10) for r, c in random_px} <= train_blocks | {(r // 10, c // 10) for r, c in random_px}
    held = np.zeros((8, 8), bool)
    for r, c in zip(val["rows"], val["cols"]):
        held[r // 10, c // 10] = True
    # ... but from the training blocks (no held-out block), so it neighbours training pixels.
    assert not any(held[r // 10, c // 10] for r, c in random_px)
    # The spatial split keeps the buffer: every validation pixel is > 3 px from every training pixel.
    t = np.array(sorted(train_px))
    for r, c in zip(val["rows"], val["cols"]):
        assert np.abs(t - [r, c]).max(axis=1).min() > 3
    # Without the buffer, validation pixels come right up to the block edge.
    plain = SampleSettings(**{**settings.__dict__, "validation_buffer_px": 0, "validation_per_class": 400})
    draw_samples(tiles, table, plain, tmp_path / "t0.npz", tmp_path / "v0.npz")
    v0 = np.load(tmp_path / "v0.npz")
    assert ((v0["rows"] % 10 == 0) | (v0["rows"] % 10 == 9)).any()
    # Training samples do not depend on whether the random set is drawn.
    draw_samples(tiles, table, settings, tmp_path / "t2.npz", tmp_path / "v2.npz")
    assert np.array_equal(np.load(tmp_path / "t2.npz")["rows"], train["rows"])


def test_buffered_out_and_pick_outside_known_answers():
    held = np.array([[True, False], [True, True]])  # block (0, 1) trains; blocks of 10 px
    rows, cols = np.array([5, 5, 5, 15, 15]), np.array([5, 7, 6, 15, 5])
    # Chebyshev distance to the training block (rows 0-9, cols 10-19): (5,5) 5, (5,7) 3, (5,6) 4, (15,15) 6, (15,5) 6.
    assert buffered_out(rows, cols, held, 10, 3).tolist() == [False, True, False, False, False]
    assert buffered_out(rows, cols, held, 10, 5).tolist() == [True, True, True, False, False]
    assert buffered_out(rows, cols, held, 10, 6).tolist() == [True, True, True, True, True]
    assert not buffered_out(rows, cols, held, 10, 0).any()
    picks = _pick_outside(10, np.array([1, 2, 5, 9]), 6, np.random.default_rng(0))
    assert picks.tolist() == [0, 3, 4, 6, 7, 8]
    picks = _pick_outside(10**9, np.arange(0, 10**6, 2), 1000, np.random.default_rng(1))
    assert len(set(picks.tolist())) == 1000 and not (picks[picks < 10**6] % 2 == 0).any()


def test_tile_confidence_pixel_and_superpixel(tmp_path):
    # Two classes over 2 x 4 px: probabilities (uint8, p * 255).
    p0 = np.array([[255, 204, 51, 0], [128, 128, 0, 0]], np.uint8)
    p1 = np.array([[0, 51, 204, 0], [127, 127, 255, 0]], np.uint8)
    prob = write_raster(tmp_path / "p.tif", np.stack([p0, p1]), nodata=None)
    tile_confidence(prob, tmp_path / "c.tif")
    with rasterio.open(tmp_path / "c.tif") as src:
        conf = src.read(1)
        assert src.nodata == 0 and src.tags(1)["UNITS"] == "percent"
    assert conf.tolist() == [[100, 80, 80, 0], [50, 50, 100, 0]]
    segments = write_raster(tmp_path / "s.tif", np.array([[1, 1, 2, 2], [1, 1, 2, 2]], np.uint32))
    tile_confidence(prob, tmp_path / "cs.tif", segments_path=segments)
    with rasterio.open(tmp_path / "cs.tif") as src:
        conf = src.read(1)
    # Segment 1: mean p0 = (255 + 204 + 128 + 128) / 4 / 255 = 0.70; segment 2: mean p1 over its 2 valid px.
    assert conf[0, 0] == round(100 * (255 + 204 + 128 + 128) / 4 / PROBABILITY_SCALE)
    assert conf[0, 2] == round(100 * (204 + 255) / 2 / PROBABILITY_SCALE) and conf[0, 3] == 0


def test_continuous_layer_through_clip_and_merge(tmp_path):
    data = np.full((20, 20), 73, np.uint8)
    path = write_raster(tmp_path / "conf.tif", data)
    with rasterio.open(path, "r+") as dst:
        dst.set_band_description(1, "confidence")
        dst.update_tags(1, UNITS="percent")
    with rasterio.open(path) as src:
        left, bottom, right, top = src.bounds
    from osmlulc.footprints import reproject_geometry
    half = reproject_geometry(box(left, bottom, (left + right) / 2, top), "EPSG:32632", "EPSG:3035")
    clip_to_footprint(path, half, tmp_path / "clip.tif", None)
    merge_tiles([str(tmp_path / "clip.tif")], tmp_path / "mosaic.tif", None)
    for name in ("clip.tif", "mosaic.tif"):
        with rasterio.open(tmp_path / name) as src:
            values = set(np.unique(src.read(1)).tolist())
            assert values == {0, 73} and src.nodata == 0, name
            assert src.descriptions[0] == "confidence" and src.tags(1)["UNITS"] == "percent"
            with pytest.raises(ValueError):
                src.colormap(1)  # no class colour table on a continuous layer
    assert shapely.is_valid(half)
