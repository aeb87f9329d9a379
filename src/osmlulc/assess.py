"""Accuracy assessment of the workflow's outputs, built on :mod:`osmlulc.accuracy`.

Three views: each model on the held-out validation samples (OSM labels); each model and
mode against a reference raster, tile by tile; and the country products (prediction,
OSM labels, product merge, sieved product) against the country reference on the same pixels.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from osmlulc.accuracy import confusion_matrix, metrics, metrics_table
from osmlulc.classes import ClassTable
from osmlulc.io import atomic_output


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_output(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.4f")


def validation_confusion(model_path, validation_npz, table: ClassTable) -> np.ndarray:
    """Confusion matrix (rows reference, columns prediction, table order) of a model on validation samples."""
    from osmlulc.models import load_classifier
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


def validation_accuracy(models: dict[str, str], validation_npz, table: ClassTable, out_csv) -> pd.DataFrame:
    rows = [{"model": name, "mode": "pixel", "scope": "validation samples",
             **metrics(validation_confusion(path, validation_npz, table), table)}
            for name, path in models.items()]
    df = metrics_table(rows)
    write_table(df, out_csv)
    return df


def tile_confusions(predictions: dict[str, str], reference_path, table: ClassTable, out_npz) -> None:
    """Confusion matrices of several predictions of one tile against its reference raster."""
    cms = {name: confusion_matrix(path, reference_path, table) for name, path in predictions.items()}
    with atomic_output(out_npz) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **cms)


def country_accuracy(tile_npzs: list[str], products: dict[str, str], reference_path, table: ClassTable,
                     out_csv, *, mask_path=None) -> pd.DataFrame:
    """One table: each model x mode summed over the tiles, then each country product on the country grid.

    ``products`` maps a row name to a raster on the country grid; ``mask_path`` (the clipped
    classification) restricts all of them to the same pixels, so the rows are comparable.
    """
    rows = []
    summed: dict[str, np.ndarray] = {}
    for path in tile_npzs:
        with np.load(path) as data:
            for name in data.files:
                summed[name] = summed.get(name, 0) + data[name]
    for name, cm in summed.items():
        model, mode = name.rsplit("_", 1)
        rows.append({"model": model, "mode": mode, "scope": "tiles", **metrics(cm, table)})
    for name, path in products.items():
        cm = confusion_matrix(path, reference_path, table, mask_path=mask_path)
        rows.append({"model": name, "mode": "-", "scope": "country", **metrics(cm, table)})
    df = metrics_table(rows)
    write_table(df, out_csv)
    return df
