"""Tests of osmlulc.accuracy: confusion matrices from rasters and the metrics derived from them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyproj
import pytest
import rasterio
import sklearn.metrics
from affine import Affine

from osmlulc import accuracy
from osmlulc.classes import ClassTable

TABLE = ClassTable.from_yaml(Path(__file__).resolve().parents[1] / "config" / "classes.yaml")
THREE = ClassTable.from_dict({"classes": [
    {"code": 1, "name": "built", "colour": [255, 0, 0]},
    {"code": 2, "name": "green", "colour": [0, 255, 0]},
    {"code": 3, "name": "water", "colour": [0, 0, 255]},
]})
LAEA = "EPSG:3035"
UTM = "EPSG:32632"


def write_raster(path, data, *, crs=LAEA, transform=Affine(10, 0, 4200000, 0, -10, 2900000), nodata=0):
    data = np.asarray(data)
    with rasterio.open(path, "w", driver="GTiff", crs=crs, transform=transform, width=data.shape[1],
                       height=data.shape[0], count=1, dtype=data.dtype, nodata=nodata) as dst:
        dst.write(data, 1)
    return str(path)


def test_perfect_prediction(tmp_path):
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 13, size=(50, 45), dtype=np.uint8)
    ref[:, :3] = 12
    pred_path = write_raster(tmp_path / "pred.tif", ref)
    ref_path = write_raster(tmp_path / "ref.tif", ref)
    cm = accuracy.confusion_matrix(pred_path, ref_path, TABLE, block_size=16)
    assert cm.dtype == np.int64 and cm.shape == (12, 12)
    np.testing.assert_array_equal(np.diag(cm), [(ref == c).sum() for c in range(1, 13)])
    assert cm.sum() == np.trace(cm) == (ref > 0).sum()
    m = accuracy.metrics(cm, TABLE)
    assert m["overall_accuracy"] == 1.0 and m["kappa"] == pytest.approx(1.0)
    assert m["water_f1"] == m["water_iou"] == m["water_precision"] == m["water_recall"] == 1.0
    assert m["macro_f1"] == 1.0 and m["n_pixels"] == (ref > 0).sum()


# Hand-computed example (rows = reference, columns = prediction):
#            pred 1  pred 2  pred 3
#   ref 1       5       1       0      row 6
#   ref 2       2       3       1      row 6
#   ref 3       0       1       7      row 8
#   col         7       5       8      total 20
HAND_CM = np.array([[5, 1, 0], [2, 3, 1], [0, 1, 7]])


def hand_pixels(rng):
    ref, pred = [], []
    for i in range(3):
        for j in range(3):
            ref += [i + 1] * HAND_CM[i, j]
            pred += [j + 1] * HAND_CM[i, j]
    ref, pred = np.array(ref + [0, 2, 9, 1], np.uint8), np.array(pred + [1, 0, 2, 9], np.uint8)  # 4 invalid pairs
    order = rng.permutation(len(ref))
    return ref[order].reshape(4, 6), pred[order].reshape(4, 6)


def test_hand_computed_three_class_example(tmp_path):
    ref, pred = hand_pixels(np.random.default_rng(1))
    cm = accuracy.confusion_matrix(write_raster(tmp_path / "p.tif", pred), write_raster(tmp_path / "r.tif", ref),
                                   THREE, block_size=3)
    np.testing.assert_array_equal(cm, HAND_CM)
    m = accuracy.metrics(cm, THREE, water_code=3)
    assert m["n_pixels"] == 20
    assert m["overall_accuracy"] == pytest.approx(15 / 20)
    assert m["kappa"] == pytest.approx((0.75 - 136 / 400) / (1 - 136 / 400))
    assert m["precision_1"] == pytest.approx(5 / 7) and m["recall_1"] == pytest.approx(5 / 6)
    assert m["f1_1"] == pytest.approx(10 / 13)
    assert m["f1_2"] == pytest.approx(6 / 11) and m["recall_2"] == pytest.approx(0.5)
    assert m["f1_3"] == m["water_f1"] == pytest.approx(7 / 8)
    assert m["iou_1"] == pytest.approx(5 / 8)
    assert m["water_iou"] == pytest.approx(7 / 9)
    assert m["water_precision"] == pytest.approx(7 / 8) and m["water_recall"] == pytest.approx(7 / 8)
    assert m["macro_f1"] == pytest.approx((10 / 13 + 6 / 11 + 7 / 8) / 3)
    # Cross-check with scikit-learn on the pixels themselves.
    valid = np.isin(ref, [1, 2, 3]) & np.isin(pred, [1, 2, 3])
    f1 = sklearn.metrics.f1_score(ref[valid], pred[valid], labels=[1, 2, 3], average=None)
    np.testing.assert_allclose([m["f1_1"], m["f1_2"], m["f1_3"]], f1)
    assert m["kappa"] == pytest.approx(sklearn.metrics.cohen_kappa_score(ref[valid], pred[valid]))


def test_absent_classes_are_nan_and_excluded_from_macro_f1():
    cm = np.zeros((12, 12), dtype=np.int64)
    cm[0, 0], cm[0, 4], cm[11, 11] = 8, 2, 10     # class 5 predicted but never in the reference
    m = accuracy.metrics(cm, TABLE)
    assert math.isnan(m["f1_2"]) and math.isnan(m["precision_7"]) and math.isnan(m["iou_9"])
    assert m["f1_5"] == 0.0 and m["precision_5"] == 0.0
    assert m["f1_1"] == pytest.approx(2 * 8 / (8 + 10))
    assert m["macro_f1"] == pytest.approx((16 / 18 + 0.0 + 1.0) / 3)
    assert m["water_f1"] == 1.0
    empty = accuracy.metrics(np.zeros((12, 12), dtype=np.int64), TABLE)
    assert empty["n_pixels"] == 0 and math.isnan(empty["overall_accuracy"]) and math.isnan(empty["water_f1"])
    with pytest.raises(ValueError, match="shape"):
        accuracy.metrics(np.zeros((3, 3)), TABLE)


def test_reference_on_a_shifted_larger_grid_and_mask(tmp_path):
    rng = np.random.default_rng(2)
    big = rng.integers(1, 13, size=(60, 70), dtype=np.uint8)
    origin = Affine(10, 0, 4200000, 0, -10, 2900000)
    ref_path = write_raster(tmp_path / "ref.tif", big, transform=origin)
    pred = big[7:47, 11:41].copy()  # the prediction's grid is a sub-grid: offset 11 cols, 7 rows
    pred_transform = origin @ Affine.translation(11, 7)
    pred_path = write_raster(tmp_path / "pred.tif", pred, transform=pred_transform)
    cm = accuracy.confusion_matrix(pred_path, ref_path, TABLE, block_size=16)
    assert cm.sum() == np.trace(cm) == pred.size
    mask = np.zeros(pred.shape, np.uint8)
    mask[:, :10] = 1
    mask_path = write_raster(tmp_path / "mask.tif", mask, transform=pred_transform, nodata=None)
    cm_masked = accuracy.confusion_matrix(pred_path, ref_path, TABLE, mask_path=mask_path)
    assert cm_masked.sum() == np.trace(cm_masked) == mask.sum()


def test_reference_in_another_crs(tmp_path):
    # Reference: 100 m blocks of classes on a UTM grid; prediction: the reference sampled at the
    # centres of a 3035 grid (computed independently with pyproj), with 5 % of pixels changed.
    rng = np.random.default_rng(3)
    coarse = rng.integers(1, 13, size=(8, 8), dtype=np.uint8)
    ref = np.kron(coarse, np.ones((10, 10), np.uint8))
    ref_transform = Affine(10, 0, 500000, 0, -10, 5400000)
    ref_path = write_raster(tmp_path / "ref.tif", ref, crs=UTM, transform=ref_transform)
    to_laea = pyproj.Transformer.from_crs(UTM, LAEA, always_xy=True)
    x0, y0 = to_laea.transform(500200, 5399800)
    pred_transform = Affine(10, 0, math.floor(x0 / 10) * 10, 0, -10, math.floor(y0 / 10) * 10)
    cols, rows = np.meshgrid(np.arange(30), np.arange(30))
    px, py = pred_transform @ (cols + 0.5, rows + 0.5)
    ux, uy = pyproj.Transformer.from_crs(LAEA, UTM, always_xy=True).transform(px, py)
    rcol, rrow = ~ref_transform @ (ux, uy)
    pred = ref[np.floor(rrow).astype(int), np.floor(rcol).astype(int)]
    changed = rng.random(pred.shape) < 0.05
    pred[changed] = 1 + pred[changed] % 12
    pred_path = write_raster(tmp_path / "pred.tif", pred, crs=LAEA, transform=pred_transform)
    cm = accuracy.confusion_matrix(pred_path, ref_path, TABLE, block_size=16)
    assert cm.sum() == pred.size
    # Only the changed pixels disagree (pixel centres within 1 m of a block edge may go either way).
    near_edge = (np.abs(rcol - np.round(rcol / 10) * 10) < 0.1) | (np.abs(rrow - np.round(rrow / 10) * 10) < 0.1)
    errors = cm.sum() - np.trace(cm)
    assert changed.sum() <= errors <= changed.sum() + near_edge.sum()
    far = write_raster(tmp_path / "far.tif", ref, crs=UTM, transform=Affine(10, 0, 700000, 0, -10, 5400000))
    with pytest.raises(accuracy.InputError, match="does not overlap"):
        accuracy.confusion_matrix(pred_path, far, TABLE)


def test_metrics_table_columns():
    cm = np.diag(np.arange(1, 13)).astype(np.int64)
    rows = [{"model": "rf", "mode": "pixel", **accuracy.metrics(cm, TABLE)},
            {"model": "svm", "mode": "superpixel", **accuracy.metrics(cm * 2, TABLE)}]
    table = accuracy.metrics_table(rows)
    expected = ["model", "mode", "overall_accuracy", "kappa", "macro_f1", "water_f1", "water_iou",
                *[f"f1_{c}" for c in range(1, 13)], "n_pixels"]
    assert list(table.columns[:len(expected)]) == expected
    assert table["model"].tolist() == ["rf", "svm"] and table["n_pixels"].tolist() == [78, 156]
    assert (table["overall_accuracy"] == 1.0).all()
    nested = accuracy.metrics_table([{"model": "rf", "mode": "pixel", "f1": {12: 0.5, 3: 0.25}}])
    assert nested.loc[0, "f1_12"] == 0.5 and list(nested.columns).index("f1_3") < list(nested.columns).index("f1_12")


def test_water_class_comes_from_the_class_table():
    """No water code is passed: the metrics use the table's `water` (3 here, 12 in config/classes.yaml)."""
    assert TABLE.water == 12
    three = ClassTable.from_dict({"water": 3, "classes": [
        {"code": 1, "name": "built", "colour": [255, 0, 0]},
        {"code": 2, "name": "green", "colour": [0, 255, 0]},
        {"code": 3, "name": "water", "colour": [0, 0, 255]},
    ]})
    cm = np.array([[50, 5, 0], [5, 40, 5], [0, 10, 40]])
    assert accuracy.metrics(cm, three) == accuracy.metrics(cm, THREE, water_code=3)
    assert accuracy.water_confusion(cm, three).tolist() == [[100, 5], [10, 40]]
    with pytest.raises(ValueError, match="no water class"):
        accuracy.metrics(cm, THREE)  # a table without `water` and no code given
    with pytest.raises(ValueError, match="water = 4 is not a class code"):
        ClassTable.from_dict({"water": 4, "classes": [{"code": 1, "name": "a", "colour": [1, 1, 1]}]})
