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
from osmlulc.indices import normalized_difference
from osmlulc.io import BLOCK_SIZE, InputError, block_windows, open_raster, same_grid

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
    if same_grid(src, grid):
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


def metrics(cm: np.ndarray, table: ClassTable, *, water_code: int | None = None) -> dict:
    """Accuracy metrics from a confusion matrix (rows = reference, columns = prediction, table order).

    Returns a flat dict: ``overall_accuracy`` with its 95 % Wilson interval
    (``overall_accuracy_ci95_low`` / ``_high``, :func:`wilson_interval`), ``kappa``, ``n_pixels``, ``macro_f1`` (mean F1
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
    water_code = table.water_code(water_code)  # the table's water class unless given
    total = int(cm.sum())
    result: dict = {"n_pixels": total}
    if total == 0:
        nan_keys = ["overall_accuracy", "overall_accuracy_ci95_low", "overall_accuracy_ci95_high", "kappa", "macro_f1"]
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
    result["overall_accuracy_ci95_low"], result["overall_accuracy_ci95_high"] = wilson_interval(np.trace(cm), total)
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


# --------------------------------------------------------------------------- confidence intervals

#: Two-sided 95 % standard normal quantile.
Z95 = 1.959963984540054


def wilson_interval(successes, n, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (NaN, NaN for n = 0).

    Unlike the normal (Wald) interval it stays within [0, 1] and does not collapse to a
    point at 0 % or 100 %, which matters for small validation sets.  It assumes independent
    samples: for the pixels of a whole map, which are spatially correlated, it is too narrow.
    """
    n = float(n)
    if n <= 0:
        return float("nan"), float("nan")
    p = float(successes) / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


# --------------------------------------------------------------------------- area-adjusted accuracy


def area_adjusted(cm: np.ndarray, mapped_pixels, table: ClassTable, *, pixel_area: float = 1.0,
                  z: float = Z95) -> tuple[dict, pd.DataFrame]:
    """Area-adjusted accuracy and class areas with confidence intervals (Olofsson et al. 2014).

    The stratified estimator with the map classes as strata: ``cm`` counts the assessed
    pixels (rows = reference, columns = map, table order, as :func:`confusion_matrix`) and
    ``mapped_pixels`` the pixels of each class in the whole map (the strata sizes N_i), so
    W_i = N_i / N.  With n_ij the sample count of map class i and reference class j:

    - p_ij = W_i n_ij / n_i. (estimated area proportion of each cell)
    - overall accuracy = sum_k p_kk, V = sum_i W_i^2 U_i (1 - U_i) / (n_i. - 1)      (eq. 1, 5)
    - user's accuracy U_i = n_ii / n_i., V = U_i (1 - U_i) / (n_i. - 1)               (eq. 2, 6)
    - producer's accuracy P_j = p_jj / p_.j with the variance of eq. 7
    - area proportion of class k p_.k = sum_i W_i n_ik / n_i.,
      SE = sqrt(sum_i W_i^2 (n_ik / n_i.)(1 - n_ik / n_i.) / (n_i. - 1))              (eq. 9, 10)

    Returns ``overall`` (``area_adjusted_overall_accuracy`` and its 95 % half-width
    ``..._ci95``) and a per-class table (code, name, mapped_area, estimated_area, its
    ``_ci95`` half-width, users_accuracy, producers_accuracy and their ``_ci95``), areas in
    the unit of ``pixel_area``.  Map classes with pixels in the map but none assessed
    make the estimates undefined (NaN); variances of strata with a single assessed pixel
    are NaN.  When the reference is a complete census of the map (``mapped_pixels`` =
    the column sums of ``cm``) the estimated areas are the reference areas exactly.
    """
    n_ij = np.asarray(cm, dtype=np.float64).T                  # rows: map class i, columns: reference j
    mapped = np.asarray(mapped_pixels, dtype=np.float64)
    k = len(table)
    if n_ij.shape != (k, k) or mapped.shape != (k,):
        raise ValueError(f"area_adjusted: need a {k} x {k} matrix and {k} mapped counts, "
                         f"got {n_ij.shape} and {mapped.shape}")
    total = mapped.sum()
    n_i = n_ij.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = mapped / total if total > 0 else np.full(k, np.nan)
        # A stratum that is not in the map contributes nothing; one that is mapped but not assessed is unknown.
        row_share = np.where(n_i[:, None] > 0, n_ij / n_i[:, None], np.where(mapped[:, None] > 0, np.nan, 0.0))
        df_i = np.where(n_i > 1, n_i - 1, np.nan)
        var_share = np.where(mapped[:, None] > 0, row_share * (1 - row_share) / df_i[:, None], 0.0)
        p_ij = weights[:, None] * row_share
        # User's accuracy of a class absent from the map (and from the assessed pixels) is undefined.
        users = np.where(n_i > 0, np.diag(row_share), np.nan)
        users_var = np.where(n_i > 0, np.diag(var_share), np.nan)
        overall = float(np.trace(p_ij))
        overall_var = float(np.sum(weights ** 2 * np.diag(var_share)))
        proportion = p_ij.sum(axis=0)
        proportion_se = np.sqrt(np.sum(weights[:, None] ** 2 * var_share, axis=0))
        producers = np.diag(p_ij) / proportion
        # eq. 7: N_.j = sum_i N_i n_ij / n_i. estimated reference pixels of class j.
        n_ref = (mapped[:, None] * row_share).sum(axis=0)
        producers_var = np.empty(k)
        for j in range(k):
            others = np.arange(k) != j
            first = mapped[j] ** 2 * (1 - producers[j]) ** 2 * users_var[j]
            second = producers[j] ** 2 * np.sum(mapped[others] ** 2 * var_share[others, j])
            producers_var[j] = (first + second) / n_ref[j] ** 2
    half = z * np.sqrt(np.where(np.isfinite(producers_var), producers_var, np.nan))
    area = total * pixel_area
    classes = pd.DataFrame({
        "code": table.codes.astype(int),
        "name": [c.name for c in table.classes],
        "mapped_area": mapped * pixel_area,
        "estimated_area": proportion * area,
        "estimated_area_ci95": z * proportion_se * area,
        "users_accuracy": users,
        "users_accuracy_ci95": z * np.sqrt(users_var),
        "producers_accuracy": producers,
        "producers_accuracy_ci95": half,
        "assessed_pixels_mapped": n_i.astype(np.int64),
    })
    summary = {"area_adjusted_overall_accuracy": overall,
               "area_adjusted_overall_accuracy_ci95": float(z * np.sqrt(overall_var))}
    return summary, classes


def class_counts(path, table: ClassTable, *, mask_path: str | None = None,
                 block_size: int = BLOCK_SIZE * 2) -> np.ndarray:
    """Pixels of each class (table order) in a class raster, optionally where ``mask_path`` > 0 (window by window)."""
    index_of_code = table.index_of_code().astype(np.int64)
    counts = np.zeros(len(table), dtype=np.int64)
    with ExitStack() as stack:
        src = stack.enter_context(open_raster(path, "class raster"))
        mask = None
        if mask_path is not None:
            mask = _on_grid(stack, stack.enter_context(open_raster(mask_path, "mask")), src, mask_path, "mask")
        for window in block_windows(src.width, src.height, block_size):
            index = _class_index(src.read(1, window=window), index_of_code)
            valid = index >= 0
            if mask is not None:
                valid &= mask.read(1, window=window) > 0
            counts += np.bincount(index[valid], minlength=len(table))
    return counts


# --------------------------------------------------------------------------- water: model versus index rules


def water_index_confusion(stack_path, ref_path, table: ClassTable, indices: dict[str, tuple[str, str]], *,
                          prediction_paths=(), water_code: int | None = None,
                          block_size: int = BLOCK_SIZE * 2) -> dict[str, np.ndarray]:
    """Water versus not-water counts of normalized-difference index rules (index > 0 = water).

    ``indices`` maps a name to the two stack bands (a, b) of (a - b) / (a + b), e.g.
    ``{"ndwi": ("B03", "B08"), "mndwi": ("B03", "B11")}``; bands are found by the stack's
    band descriptions.  Only pixels where the reference is a class, the stack is valid and
    every raster of ``prediction_paths`` holds a class count — the pixels the models'
    confusion matrices count — so the index rows compare with the model rows.
    Returns name -> 2 x 2 int64 [[not water -> not water, -> water], [water -> not water, -> water]]
    (rows reference, columns the rule).
    """
    index_of_code = table.index_of_code().astype(np.int64)
    water_code = table.water_code(water_code)
    result = {name: np.zeros((2, 2), dtype=np.int64) for name in indices}
    with ExitStack() as stack:
        src = stack.enter_context(open_raster(stack_path, "band stack"))
        names = list(src.descriptions)
        missing = sorted({b for pair in indices.values() for b in pair} - set(names))
        if missing:
            raise InputError(f"band stack {stack_path} lacks band(s) {missing} for the water indices; it has {names}")
        ref = _on_grid(stack, stack.enter_context(open_raster(ref_path, "reference")), src, ref_path, "reference")
        predictions = [_on_grid(stack, stack.enter_context(open_raster(p, "prediction")), src, p, "prediction")
                       for p in prediction_paths]
        for window in block_windows(src.width, src.height, block_size):
            reference = _class_index(ref.read(1, window=window), index_of_code)
            valid = reference >= 0
            for pred in predictions:
                valid &= _class_index(pred.read(1, window=window), index_of_code) >= 0
            bands = {b: src.read(names.index(b) + 1, window=window)
                     for b in {b for pair in indices.values() for b in pair}}
            water = (reference == int(index_of_code[water_code])).astype(np.int64)
            for name, (a, b) in indices.items():
                ok = valid & (bands[a] > 0) & (bands[b] > 0)
                detected = (normalized_difference(bands[a], bands[b], ok, -np.inf) > 0).astype(np.int64)
                result[name] += np.bincount(water[ok] * 2 + detected[ok], minlength=4).reshape(2, 2)
    return result


def water_metrics(cm2: np.ndarray) -> dict:
    """Water metrics of a 2 x 2 water / not-water matrix (rows reference, columns prediction).

    The same keys as the water part of :func:`metrics` (``water_f1``, ``water_iou``,
    ``water_precision``, ``water_recall``) plus the two-class ``overall_accuracy`` with its
    Wilson interval and ``n_pixels``.
    """
    (tn, fp), (fn, tp) = np.asarray(cm2, dtype=np.int64)
    total = int(tn + fp + fn + tp)
    nan = float("nan")
    low, high = wilson_interval(tp + tn, total)
    return {
        "overall_accuracy": (tp + tn) / total if total else nan,
        "overall_accuracy_ci95_low": low, "overall_accuracy_ci95_high": high,
        "water_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else nan,
        "water_iou": tp / (tp + fp + fn) if tp + fp + fn else nan,
        "water_precision": tp / (tp + fp) if tp + fp else nan,
        "water_recall": tp / (tp + fn) if tp + fn else nan,
        "n_pixels": total,
    }


def water_confusion(cm: np.ndarray, table: ClassTable, water_code: int | None = None) -> np.ndarray:
    """Collapse a class confusion matrix to water / not water (2 x 2, rows reference)."""
    w = int(table.index_of_code()[table.water_code(water_code)])
    cm = np.asarray(cm, dtype=np.int64)
    tp = cm[w, w]
    fn = cm[w].sum() - tp
    fp = cm[:, w].sum() - tp
    return np.array([[cm.sum() - tp - fn - fp, fp], [fn, tp]], dtype=np.int64)


def confusion_frame(cm: np.ndarray, table: ClassTable) -> pd.DataFrame:
    """A confusion matrix as a table: one row per reference class, one column per predicted class code."""
    codes = [int(c) for c in table.codes]
    df = pd.DataFrame(np.asarray(cm, dtype=np.int64), columns=[f"predicted_{c}" for c in codes])
    df.insert(0, "reference", codes)
    df.insert(1, "reference_name", [c.name for c in table.classes])
    return df
