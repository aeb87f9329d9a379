"""Accuracy assessment of the workflow's outputs, built on :mod:`osmlulc.accuracy`.

Three views: each model on the validation samples (OSM labels), for the spatial split
(held-out blocks) and beside it the random split; each model and mode against a reference
raster, tile by tile, with the NDWI > 0 and MNDWI > 0 water rules on the same pixels; and
the country products (prediction, OSM labels, product merge, sieved product) against the
country reference on the same pixels.  Every row has the overall accuracy with its 95 %
interval; the rows against a reference raster also have the area-adjusted overall
accuracy (Olofsson et al. 2014), whose per-class part (user's / producer's accuracy and
class areas with 95 % intervals) goes to a second table; the confusion matrices go to a third.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from osmlulc.accuracy import (area_adjusted, class_counts, confusion_frame, confusion_matrix, metrics,
                              metrics_table, water_index_confusion, water_metrics)
from osmlulc.classes import ClassTable
from osmlulc.io import atomic_output


#: Columns moved to the front of the accuracy tables, in this order (those present).
FRONT_COLUMNS = ("split", "scope", "model", "mode", "overall_accuracy", "overall_accuracy_ci95_low",
                 "overall_accuracy_ci95_high", "area_adjusted_overall_accuracy", "area_adjusted_overall_accuracy_ci95")


def front_columns(df: pd.DataFrame) -> pd.DataFrame:
    """The table with :data:`FRONT_COLUMNS` first, the other columns in their order."""
    front = [c for c in FRONT_COLUMNS if c in df.columns]
    return df[front + [c for c in df.columns if c not in front]]


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_output(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.4f")


def validation_confusion(model_path, validation_npz, table: ClassTable) -> np.ndarray:
    """Confusion matrix (rows reference, columns prediction, table order) of a model on validation samples."""
    from osmlulc.classifiers import load_classifier
    from osmlulc.predict import predict_patches

    with np.load(validation_npz) as data:
        patches, labels = data["patches"], data["labels"]
    classifier = load_classifier(model_path)
    size = classifier.patch_size
    offset = (patches.shape[1] - size) // 2
    crop = patches[:, offset:offset + size, offset:offset + size, :]
    proba = predict_patches(classifier, crop.astype(np.float32))
    index = table.index_of_code()
    n = len(table)
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (index[labels], proba.argmax(axis=1)), 1)
    return cm


def confusion_table(matrices: list[tuple[dict, np.ndarray]], table: ClassTable) -> pd.DataFrame:
    """Confusion matrices in one table: the keys of each matrix's dict (e.g. split, model, mode) lead its rows."""
    frames = []
    for keys, cm in matrices:
        frame = confusion_frame(cm, table)
        for i, (key, value) in enumerate(keys.items()):
            frame.insert(i, key, value)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def validation_accuracy(models: dict[str, str], splits, table: ClassTable, out_csv, *,
                        confusion_csv=None) -> pd.DataFrame:
    """Every model on the validation samples of every split (``{"spatial": npz, "random": npz}``).

    One row per split and model (column ``split``), so the spatial (held-out blocks) and
    the random split stand side by side; a single npz path is taken as the spatial split.
    The validation samples are balanced per class, so these accuracies describe the
    balanced sample, not the map's class mix (see the area-adjusted rows of the reference).
    """
    if isinstance(splits, (str, os.PathLike)):
        splits = {"spatial": splits}
    rows, matrices = [], []
    for split, npz in splits.items():
        for name, path in models.items():
            cm = validation_confusion(path, npz, table)
            keys = {"split": split, "model": name, "mode": "pixel"}
            matrices.append((keys, cm))
            rows.append({**keys, "scope": "validation samples", **metrics(cm, table)})
    df = front_columns(metrics_table(rows))
    write_table(df, out_csv)
    if confusion_csv is not None:
        write_table(confusion_table(matrices, table), confusion_csv)
    return df


def tile_confusions(predictions: dict[str, str], reference_path, table: ClassTable, out_npz, *,
                    stack_path=None, water_indices: dict[str, tuple[str, str]] | None = None,
                    water_code: int | None = None) -> None:
    """Per tile: the confusion matrix of each prediction against the reference (``cm_<name>``), the
    pixels of each class in the whole prediction (``mapped_<name>``, the strata of the
    area-adjusted estimates) and, with ``stack_path``, the water / not-water matrices of the
    index rules on the same pixels (``index_<name>``, see :func:`osmlulc.accuracy.water_index_confusion`).
    """
    arrays = {}
    pixel_area = None
    for name, path in predictions.items():
        arrays[f"cm_{name}"] = confusion_matrix(path, reference_path, table)
        arrays[f"mapped_{name}"] = class_counts(path, table)
        if pixel_area is None:
            pixel_area = _pixel_area_m2(path)
    if stack_path is not None and water_indices:
        for name, cm2 in water_index_confusion(stack_path, reference_path, table, water_indices,
                                               prediction_paths=list(predictions.values()),
                                               water_code=water_code).items():
            arrays[f"index_{name}"] = cm2
    arrays["pixel_area_m2"] = np.array(pixel_area if pixel_area is not None else np.nan)
    with atomic_output(out_npz) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def _pixel_area_m2(path) -> float:
    from osmlulc.io import open_raster

    with open_raster(path, "class raster") as src:
        return float(abs(src.res[0] * src.res[1]))


def _area_rows(keys: dict, cm: np.ndarray, mapped: np.ndarray, pixel_area_m2: float, table: ClassTable,
               area_frames: list) -> dict:
    """Area-adjusted overall accuracy of one matrix; its per-class table (areas in km2) is appended to
    ``area_frames``."""
    summary, classes = area_adjusted(cm, mapped, table, pixel_area=pixel_area_m2 / 1e6)
    classes = classes.rename(columns={"mapped_area": "mapped_area_km2", "estimated_area": "estimated_area_km2",
                                      "estimated_area_ci95": "estimated_area_km2_ci95"})
    for i, (key, value) in enumerate(keys.items()):
        classes.insert(i, key, value)
    area_frames.append(classes)
    return summary


def country_accuracy(tile_npzs: list[str], products: dict[str, str], reference_path, table: ClassTable,
                     out_csv, *, mask_path=None, confusion_csv=None, areas_csv=None) -> pd.DataFrame:
    """One table: each model x mode summed over the tiles, the water index rules on the same pixels,
    then each country product on the country grid.

    ``products`` maps a row name to a raster on the country grid; ``mask_path`` (the clipped
    classification) restricts all of them to the same pixels, so the rows are comparable.
    The tile rows count the tiles' overlaps twice (each tile is assessed whole).  Index rows
    (model ``ndwi>0`` / ``mndwi>0``, mode ``index``) carry the water metrics only.
    """
    rows, matrices, area_frames = [], [], []
    summed: dict[str, np.ndarray] = {}
    pixel_area = np.nan
    for path in tile_npzs:
        with np.load(path) as data:
            for key in data.files:
                if key == "pixel_area_m2":
                    pixel_area = float(data[key])
                else:
                    summed[key] = summed.get(key, 0) + data[key]
    for key, cm in summed.items():
        if not key.startswith("cm_"):
            continue
        name = key[len("cm_"):]
        model, mode = name.rsplit("_", 1)
        keys = {"scope": "tiles", "model": model, "mode": mode}
        matrices.append((keys, cm))
        area = _area_rows(keys, cm, summed[f"mapped_{name}"], pixel_area, table, area_frames)
        rows.append({"model": model, "mode": mode, "scope": "tiles", **metrics(cm, table), **area})
    for key, cm2 in summed.items():
        if key.startswith("index_"):
            rows.append({"model": f"{key[len('index_'):]}>0", "mode": "index", "scope": "tiles", **water_metrics(cm2)})
    for name, path in products.items():
        cm = confusion_matrix(path, reference_path, table, mask_path=mask_path)
        keys = {"scope": "country", "model": name, "mode": "-"}
        matrices.append((keys, cm))
        area = _area_rows(keys, cm, class_counts(path, table, mask_path=mask_path), _pixel_area_m2(path), table,
                          area_frames)
        rows.append({"model": name, "mode": "-", "scope": "country", **metrics(cm, table), **area})
    df = front_columns(metrics_table(rows))
    write_table(df, out_csv)
    if confusion_csv is not None:
        write_table(confusion_table(matrices, table), confusion_csv)
    if areas_csv is not None:
        write_table(pd.concat(area_frames, ignore_index=True), areas_csv)
    return df
