"""Accuracy assessment: a confusion matrix accumulated window by window, and metrics derived from it.

The confusion matrix is the only thing that has to be summed over the raster; every metric
(overall accuracy, kappa, per-class precision / recall / F1 / IoU, water F1 and IoU) is
computed from it with scikit-learn, passing the matrix cells as weighted samples
(one sample per (reference, prediction) pair, weighted by its count).
"""

from __future__ import annotations

import re
from contextlib import ExitStack

import numpy as np
import pandas as pd
import rasterio.warp
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from sklearn.metrics import cohen_kappa_score, jaccard_score, precision_recall_fscore_support

from osmlulc.classes import ClassTable
from osmlulc.io import BLOCK_SIZE, InputError, block_windows, open_raster

#: Leading columns of :func:`metrics_table`, in order (the per-class F1 columns follow, then n_pixels).
TABLE_COLUMNS = ("model", "mode", "overall_accuracy", "kappa", "macro_f1", "water_f1", "water_iou")


def _class_index(values: np.ndarray, index_of_code: np.ndarray) -> np.ndarray:
    """Position of each value in the class table, -1 for nodata, unknown or out-of-range values."""
    if values.dtype.kind == "f":
        values = np.where(np.isfinite(values), values, -1)
    values = values.astype(np.int64)
    inside = (values >= 0) & (values < len(index_of_code))
    out = np.full(values.shape, -1, dtype=np.int64)
    out[inside] = index_of_code[values[inside]]
    return out


def _on_grid(stack: ExitStack, src, grid, path, what: str):
    """``src`` itself if it is on ``grid``'s grid, else a nearest-neighbour WarpedVRT onto it."""
    if (src.crs, src.transform, src.width, src.height) == (grid.crs, grid.transform, grid.width, grid.height):
        return src
    if src.crs is None or grid.crs is None:
        raise InputError(f"{what} {path} and the prediction are on different grids and one has no CRS")
    l, b, r, t = rasterio.warp.transform_bounds(src.crs, grid.crs, *src.bounds, densify_pts=64)
    gl, gb, gr, gt = grid.bounds
    if not (l < gr and gl < r and b < gt and gb < t):
        raise InputError(f"{what} {path} does not overlap the prediction")
    fill = src.nodata if src.nodata is not None else 0
    return stack.enter_context(WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.width,
                                         height=grid.height, resampling=Resampling.nearest, nodata=fill))


def confusion_matrix(pred_path, ref_path, table: ClassTable, *, mask_path: str | None = None,
                     block_size: int = BLOCK_SIZE * 2) -> np.ndarray:
    """Pixel counts (n_classes x n_classes, int64): rows = reference, columns = prediction, table order.

    Only pixels where both rasters hold a class code of the table (and ``mask_path`` > 0, if
    given) count.  The reference (and mask) are read onto the prediction's grid through a
    nearest-neighbour WarpedVRT when their grids differ.
    """
    index_of_code = table.index_of_code().astype(np.int64)
    n = len(table)
    cm = np.zeros(n * n, dtype=np.int64)
    with ExitStack() as stack:
        pred = stack.enter_context(open_raster(pred_path, "prediction"))
        ref = _on_grid(stack, stack.enter_context(open_raster(ref_path, "reference")), pred, ref_path, "reference")
        mask = None
        if mask_path is not None:
            mask = _on_grid(stack, stack.enter_context(open_raster(mask_path, "mask")), pred, mask_path, "mask")
        for window in block_windows(pred.width, pred.height, block_size):
            predicted = _class_index(pred.read(1, window=window), index_of_code)
            reference = _class_index(ref.read(1, window=window), index_of_code)
            valid = (predicted >= 0) & (reference >= 0)
            if mask is not None:
                valid &= mask.read(1, window=window) > 0
            cm += np.bincount(reference[valid] * n + predicted[valid], minlength=n * n)
    return cm.reshape(n, n)


def metrics(cm: np.ndarray, table: ClassTable, *, water_code: int = 12) -> dict:
    """Accuracy metrics from a confusion matrix (rows = reference, columns = prediction, table order).

    Returns a flat dict: ``overall_accuracy``, ``kappa``, ``n_pixels``, ``macro_f1`` (mean F1
    over the classes present in the reference or the prediction), ``precision_<code>``,
    ``recall_<code>``, ``f1_<code>``, ``iou_<code>`` for every class (NaN for classes absent
    from both), and ``water_f1``, ``water_iou``, ``water_precision``, ``water_recall`` (one
    water-versus-rest view of the water class).  Everything is NaN when the matrix is empty.
    """
    cm = np.asarray(cm, dtype=np.int64)
    n = len(table)
    if cm.shape != (n, n):
        raise ValueError(f"metrics: confusion matrix shape {cm.shape} does not match the {n}-class table")
    codes = table.codes.tolist()
    if water_code not in codes:
        raise ValueError(f"metrics: water code {water_code} is not in the class table {codes}")
    total = int(cm.sum())
    result: dict = {"n_pixels": total}
    if total == 0:
        nan_keys = ["overall_accuracy", "kappa", "macro_f1"]
        nan_keys += [f"{m}_{c}" for c in codes for m in ("precision", "recall", "f1", "iou")]
        nan_keys += ["water_f1", "water_iou", "water_precision", "water_recall"]
        return {**{k: float("nan") for k in nan_keys}, **result}

    # One weighted sample per confusion-matrix cell: sklearn then computes the metrics of the
    # pixel population the matrix counts, without the pixels themselves.
    reference, predicted = np.divmod(np.arange(n * n), n)
    weights = cm.ravel().astype(np.float64)
    labels = np.arange(n)
    precision, recall, f1, _ = precision_recall_fscore_support(
        reference, predicted, labels=labels, sample_weight=weights, zero_division=0.0)
    iou = jaccard_score(reference, predicted, labels=labels, sample_weight=weights, average=None, zero_division=0.0)
    present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
    per_class = {"precision": precision, "recall": recall, "f1": f1, "iou": iou}
    for name, values in per_class.items():
        values = np.where(present, values, np.nan)
        per_class[name] = values
        for code, value in zip(codes, values):
            result[f"{name}_{code}"] = float(value)

    result["overall_accuracy"] = float(np.trace(cm) / total)
    # kappa is undefined (0/0) when both rasters hold one and the same class only.
    expected_agreement = float((cm.sum(axis=0) * cm.sum(axis=1)).sum()) / total**2
    result["kappa"] = (float(cohen_kappa_score(reference, predicted, labels=labels, sample_weight=weights))
                       if expected_agreement < 1 else float("nan"))
    result["macro_f1"] = float(np.mean(per_class["f1"][present]))
    for name in ("f1", "iou", "precision", "recall"):
        result[f"water_{name}"] = result[f"{name}_{water_code}"]
    return result


def metrics_table(rows: list[dict]) -> pd.DataFrame:
    """Flat table of metric rows such as ``{"model": "rf", "mode": "pixel", **metrics(...)}``.

    Columns: model, mode, overall_accuracy, kappa, macro_f1, water_f1, water_iou, f1_<code>
    for each class (ascending code), n_pixels, then any other keys of the rows (e.g. the
    per-class precision / recall / IoU) in first-seen order.  Nested dicts are flattened
    with ``_`` (``{"f1": {12: 0.9}}`` -> ``f1_12``).
    """
    flat_rows = [_flatten(row) for row in rows]
    seen: list[str] = []
    for row in flat_rows:
        seen.extend(k for k in row if k not in seen)
    f1_columns = sorted((k for k in seen if re.fullmatch(r"f1_\d+", k)), key=lambda k: int(k[3:]))
    leading = [*TABLE_COLUMNS, *f1_columns, "n_pixels"]
    columns = leading + [k for k in seen if k not in leading]
    return pd.DataFrame(flat_rows, columns=columns)


def _flatten(row: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}_"))
        else:
            flat[name] = value
    return flat
