"""Full-tile benchmark: speed and peak memory of every per-tile stage on a 10980 x 10980 px demo tile,
and the comparisons behind the method's choices (dense vs per-patch inference, SNIC vs pysnic vs slic,
validation accuracy of the dense vs the original ResNet).

    python benchmarks/benchmark_tile.py                    # full tile (10980 px), 2 threads
    python benchmarks/benchmark_tile.py --size 2196        # quick check on a 1/25 tile

Each stage runs in a fresh Python process through the library functions the workflow's rules call,
with the settings of ``config/config.yaml``; its peak resident memory is the child's ``ru_maxrss``
(``os.wait4``), so stages do not inherit each other's memory.  The demo tile (generated with
``osmlulc.demo``) and every stage output are cached in ``--workdir``; a stage reruns when asked for
with ``--stages``.  Needs ``pip install -e ".[bench]"`` (pysnic).  Not run by CI.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TILE = "32UNU"
#: Stages of the per-tile chain (and the one-tile country chain after it), in order.
STAGES = ["demo", "resample", "combine", "ndwi", "snic", "label", "samples", "train_resnet", "train_original",
          "train_logreg", "predict_pixel", "predict_logreg", "ensemble_model", "ensemble_pixel",
          "product_pixel", "predict_superpixel", "clip_extent", "merge", "clip_boundary", "label_transfer",
          "product_merge", "extract_land_use", "sieve"]
#: Comparisons (also separate processes): per-patch inference, superpixel algorithms.
COMPARISONS = ["per_patch_dense", "per_patch_original", "superpixels_crop", "slic_tile"]


# --------------------------------------------------------------------------------------------
# Set-up shared by parent and children
# --------------------------------------------------------------------------------------------

def load_config() -> dict:
    """The workflow's config as its rules read it: validated, the schema's defaults filled in (osmlulc.settings)."""
    from osmlulc.settings import workflow_settings

    return workflow_settings(ROOT).config


def demo_spec(config: dict, size: int) -> dict:
    """One full-size tile of the demo country (real MGRS size, 10980 px), nodata corner scaled with it."""
    bands = config["bands"]
    spec = dict(config["demo"])
    spec.update(tile_size_px=size, tile_spacing_px=size, tiles={TILE: [0, 0]},
                nodata_corner={"tile": TILE, "size_px": int(round(size * 150 / 1098))},
                bands={b: bands["resolution"][b] for b in bands["stack_order"]})
    return spec


class Paths:
    def __init__(self, workdir: Path, config: dict):
        self.w = workdir
        self.demo = workdir / "demo"
        self.tile = workdir / "tile"
        order = config["bands"]["stack_order"]
        self.band_in = {b: self.demo / f"{TILE}_{b}.tif" for b in order}
        self.band_10m = {b: (self.tile / f"{b}_10m.tif" if config["bands"]["resolution"][b] != 10 else self.band_in[b])
                         for b in order}
        self.truth = self.demo / "truth.tif"
        self.truth_3035 = self.demo / "truth_3035.tif"
        self.label_3035 = self.demo / "osm_label_3035.tif"
        self.boundary = self.demo / "boundary.geojson"
        self.stack = self.tile / "stack_10m.tif"
        self.ndwi = self.tile / "ndwi.tif"
        self.segments = self.tile / "snic_segments.tif"
        self.centroids = self.tile / "snic_centroids.gpkg"
        self.label = self.tile / "label.tif"
        self.train = self.tile / "train.npz"
        self.validation = self.tile / "validation.npz"
        self.resnet = self.tile / "resnet.keras"
        self.original = self.tile / "resnet_original.keras"
        self.logreg = self.tile / "logreg.joblib"
        self.classified = self.tile / "classified_resnet_pixel.tif"
        self.probabilities = self.tile / "probabilities_resnet.tif"
        self.logreg_classified = self.tile / "classified_logreg_pixel.tif"
        self.logreg_probabilities = self.tile / "probabilities_logreg.tif"
        # The product's model (product.model: ensemble): the blend of the two above.
        self.ensemble = self.tile / "ensemble.json"
        self.ensemble_classified = self.tile / "classified_ensemble_pixel.tif"
        self.ensemble_probabilities = self.tile / "probabilities_ensemble.tif"
        # The same product in one pass (all members per block, stack read once): compared with the above.
        self.product_classified = self.tile / "classified_product_one_pass.tif"
        self.product_probabilities = self.tile / "probabilities_product_one_pass.tif"
        # ... and what the pass makes of its probabilities for rules tile_confidence and predict_superpixel
        self.product_confidence = self.tile / "confidence_product_one_pass.tif"
        self.product_segment_sums = self.tile / "segment_probability_sums_product_one_pass.npz"
        self.superpixels = self.tile / "classified_ensemble_superpixel.tif"
        self.clipped = self.tile / "classified_clipped.tif"
        self.mosaic = self.w / "XD_10m_3035_classified.tif"
        self.mosaic_clipped = self.w / "XD_10m_3035_classified_clipped.tif"
        self.country_label = self.w / "XD_10m_3035_label.tif"
        self.product = self.w / "XD_10m_3035_product.tif"
        self.water = self.w / "XD_10m_3035_lu12.tif"
        self.sieved = self.w / "XD_10m_3035_lu12_sieved.tif"


def resnet_settings(config: dict, architecture: str, epochs: int | None) -> dict:
    settings = dict(config["models"]["resnet"], architecture=architecture)
    if epochs:
        settings["epochs"] = epochs
    return settings


def raster_mpx(path) -> float:
    import rasterio

    with rasterio.open(path) as src:
        return src.width * src.height / 1e6


# --------------------------------------------------------------------------------------------
# Stages (run in a child process; return Mpx processed and extra facts)
# --------------------------------------------------------------------------------------------

def run_stage(name: str, args, config: dict) -> dict:
    from osmlulc.classes import ClassTable

    table = ClassTable.from_yaml(ROOT / config["classes"])
    p = Paths(Path(args.workdir), config)
    p.tile.mkdir(parents=True, exist_ok=True)
    bands = config["bands"]
    tile_mpx = args.size ** 2 / 1e6
    info: dict = {"mpx": tile_mpx}
    if name == "snic":
        # numba compiles the kernel on its first call after an install (cached on disk): not timed
        from osmlulc.snic import snic

        snic(np.zeros((16, 16, 3), dtype=np.float32), 8, 1.0)
    start = time.perf_counter()
    info.update(_run_stage(name, args, config, table, p, bands, tile_mpx))
    info["seconds"] = time.perf_counter() - start       # the stage itself, without interpreter start-up
    return info


def _run_stage(name: str, args, config: dict, table, p: Paths, bands: dict, tile_mpx: float) -> dict:
    info: dict = {}

    if name == "demo":
        from osmlulc.demo.country import generate_demo_country

        p.demo.mkdir(parents=True, exist_ok=True)
        generate_demo_country(demo_spec(config, args.size), table,
                              band_paths={TILE: {k: str(v) for k, v in p.band_in.items()}},
                              truth_tile_paths={TILE: str(p.truth)}, truth_country_path=str(p.truth_3035),
                              label_path=str(p.label_3035), boundary_path=str(p.boundary), seed=config["demo"]["seed"])
    elif name == "resample":
        from osmlulc.features import resample_to_grid

        resampled = [b for b in bands["stack_order"] if bands["resolution"][b] != 10]
        for b in resampled:
            resample_to_grid(p.band_in[b], p.band_in[bands["reference"]], p.band_10m[b],
                             band_resolution=bands["resolution"][b], resampling=bands["resampling"])
        info["mpx"] = tile_mpx * len(resampled)
        info["note"] = f"{len(resampled)} bands 20 m -> 10 m"
    elif name == "combine":
        from osmlulc.features import stack_bands

        stack_bands([p.band_10m[b] for b in bands["stack_order"]], bands["stack_order"], p.stack)
    elif name == "ndwi":
        from osmlulc.features import ndwi

        ndwi(p.stack, p.ndwi, green_band=bands["green"], nir_band=bands["nir"])
    elif name == "snic":
        from osmlulc.segmentation import segment_tile

        seg = config["segmentation"]
        n = segment_tile(str(p.stack), [bands["stack_order"].index(b) + 1 for b in seg["rgb_bands"]], str(p.segments),
                         str(p.centroids), spacing=seg["spacing_px"], compactness=seg["compactness"],
                         block_size=seg["block_size_px"], colour_space=seg.get("colour_space", "lab"),
                         method="snic", threads=args.threads)
        info["note"] = f"{n} superpixels, blocks of {seg['block_size_px']} px, {args.threads} at once"
    elif name == "label":
        from osmlulc.labels import transfer_labels

        transfer_labels(p.label_3035, p.stack, p.label, table, coding="classes")
    elif name == "samples":
        from osmlulc.resnet import sample_patch_size
        from osmlulc.samples import SampleSettings, draw_samples
        from osmlulc.settings import near_gap_reach

        # One sample set for both architectures: the larger of their patches.
        size = max(sample_patch_size(resnet_settings(config, a, None)) for a in ("dense", "original"))
        settings = dict(config["samples"], gap_reach_px=near_gap_reach(config, ["ensemble"]))
        size += settings.get("chip_px", 1) - 1    # label chips widen the dense ResNet's samples
        if args.per_class:
            settings["per_class"] = args.per_class
            settings["validation_per_class"] = max(1, args.per_class // 3)
        fields = set(SampleSettings.__dataclass_fields__)
        summary = draw_samples({TILE: (p.stack, p.label)}, table,
                               SampleSettings(patch_size=size, **{k: v for k, v in settings.items() if k in fields}),
                               p.train, p.validation)
        info["note"] = f"{sum(summary['train'].values())} train / {sum(summary['validation'].values())} " \
                       f"validation patches of {size} px"
    elif name in ("train_resnet", "train_original"):
        from osmlulc.resnet_training import train_resnet

        architecture = "dense" if name == "train_resnet" else "original"
        out = p.resnet if architecture == "dense" else p.original
        result = train_resnet(p.train, p.validation, table, resnet_settings(config, architecture, args.epochs),
                              config["models"]["seed"], out, out.with_suffix(".csv"),
                              index_definitions=config["bands"].get("indices", {}))
        info.update(mpx=result["n_train"] * result["epochs"] / 1e6, val_accuracy=result["val_accuracy"],
                    note=f"{architecture}: {result['n_train']} patches x {result['epochs']} epochs, "
                         f"{result['n_parameters']} parameters, validation accuracy {result['val_accuracy']:.4f}")
    elif name == "predict_pixel":
        from osmlulc.predict import predict_tile_pixels

        predict_tile_pixels(p.stack, p.resnet, table, p.classified, p.probabilities,
                            block_size=config["prediction"]["block_size_px"],
                            rotations=config["prediction"]["rotations"])  # as rule predict_pixel does
    elif name == "train_logreg":
        from osmlulc.sklearn_models import train_sklearn

        result = train_sklearn("logreg", p.train, p.validation, table, config["models"]["logreg"],
                               config["models"]["seed"], p.logreg, index_definitions=config["bands"]["indices"])
        info.update(mpx=result["n_train"] / 1e6, val_accuracy=result["val_accuracy"],
                    note=f"logreg: {result['n_train']} label-chip pixels, validation accuracy "
                         f"{result['val_accuracy']:.4f}")
    elif name == "predict_logreg":
        from osmlulc.predict import predict_tile_pixels

        predict_tile_pixels(p.stack, p.logreg, table, p.logreg_classified, p.logreg_probabilities,
                            block_size=config["prediction"]["block_size_px"], threads=args.threads)
    elif name == "ensemble_model":
        from osmlulc.selection import build_ensemble

        settings = config["models"]["ensemble"]
        if set(settings["members"]) != {"resnet", "logreg"}:
            raise SystemExit(f"benchmark_tile blends resnet and logreg; models.ensemble.members is "
                             f"{settings['members']}")
        chosen = build_ensemble({"resnet": p.resnet, "logreg": p.logreg}, p.validation, table, settings,
                                config["bands"]["indices"], p.ensemble, rotations=config["prediction"]["rotations"],
                                train_path=p.train, seed=config["models"]["seed"])
        water = chosen["water"]
        pixel = None if water is None or water.pixel_model is None else water.pixel_model.threshold
        info["note"] = (f"weights {chosen['weights']}, water threshold {None if water is None else water.threshold}, "
                        f"pixel water model threshold {pixel} (chosen on the validation samples)")
    elif name == "ensemble_pixel":
        from osmlulc.classifiers import read_ensemble
        from osmlulc.predict import blend_tile_probabilities

        members = {"resnet": p.probabilities, "logreg": p.logreg_probabilities}
        _, weights, water = read_ensemble(p.ensemble)
        blend_tile_probabilities(members, weights, table, p.ensemble_classified, p.ensemble_probabilities,
                                 block_size=config["prediction"]["block_size_px"], water=water, stack_path=p.stack)
        info["note"] = "the product's model: " + ", ".join(f"{m} x {w:g}" for m, w in weights.items())
    elif name == "product_pixel":
        from osmlulc.classifiers import read_ensemble
        from osmlulc.predict import predict_tile_product, read_segment_sums

        gaps = config["prediction"]["gaps"]
        # as rule ensemble_pixel with the superpixels of stage snic (the demo has a reference: its accuracy rows
        # classify the ensemble per superpixel)
        predict_tile_product(p.stack, p.ensemble, table, p.product_classified, p.product_probabilities,
                             block_size=config["prediction"]["block_size_px"],
                             rotations=config["prediction"]["rotations"], fill_gaps=gaps["fill"],
                             valid_windows=gaps["valid_windows"], confidence_path=p.product_confidence,
                             segments_path=p.segments, segment_sums_path=p.product_segment_sums, threads=args.threads)
        _, weights, _ = read_ensemble(p.ensemble)
        members = ", ".join(f"{m} x {w:g}" for m, w in weights.items())
        n_ids = read_segment_sums(p.product_segment_sums, table)[0].shape[1] - 1
        note = (f"the product's model in one pass, no member rasters ({members}); with its confidence and the "
                f"probability sums of {n_ids} superpixel ids")
        if p.ensemble_classified.exists():
            import rasterio

            with rasterio.open(p.product_classified) as a, rasterio.open(p.ensemble_classified) as b:
                same = float(np.mean(a.read(1) == b.read(1)))
            note += f"; {same:.6f} of its classes equal ensemble_pixel's"
        info["note"] = note
    elif name == "predict_superpixel":
        from osmlulc.predict import predict_superpixels_from_sums, predict_tile_superpixels

        if p.product_segment_sums.exists():  # as the workflow: from the sums of the one pass (product_pixel)
            predict_superpixels_from_sums(p.product_segment_sums, p.segments, p.product_confidence, table,
                                          p.superpixels)
            info["note"] = "from the one pass's segment sums (product_pixel)"
        else:
            predict_tile_superpixels(p.ensemble_probabilities, p.segments, table, p.superpixels)
    elif name == "clip_extent":
        from osmlulc.demo.spec import demo_tile_grid
        from osmlulc.footprints import clip_to_footprint, own_footprints, tile_footprints_3035

        footprint = own_footprints(tile_footprints_3035(demo_tile_grid(demo_spec(config, args.size))))[TILE]
        clip_to_footprint(p.ensemble_classified, footprint, p.clipped, table)
    elif name == "merge":
        from osmlulc.mosaic import merge_tiles

        merge_tiles([str(p.clipped)], p.mosaic, table, crs=config["product"]["crs"],
                    resolution=config["product"]["resolution"])
        info["mpx"] = raster_mpx(p.mosaic)
    elif name == "clip_boundary":
        from osmlulc.footprints import clip_to_boundary

        clip_to_boundary(p.mosaic, p.boundary, p.mosaic_clipped, table)
        info["mpx"] = raster_mpx(p.mosaic)
    elif name == "label_transfer":
        from osmlulc.labels import transfer_labels

        transfer_labels(p.label_3035, p.mosaic_clipped, p.country_label, table, coding="classes")
        info["mpx"] = raster_mpx(p.mosaic_clipped)
    elif name == "product_merge":
        from osmlulc.mosaic import merge_product

        merge_product(p.mosaic_clipped, p.country_label, p.product, table)
        info["mpx"] = raster_mpx(p.product)
    elif name == "extract_land_use":
        from osmlulc.mosaic import extract_land_use

        extract_land_use(p.product, config["product"]["land_use"][0], p.water, table)
        info["mpx"] = raster_mpx(p.product)
    elif name == "sieve":
        from osmlulc.sieve import sieve

        s = config["product"]["sieve"]
        sieve(p.water, p.sieved, size=s["size"], connectivity=s["connectivity"], halo=s["halo_px"])
        info["mpx"] = raster_mpx(p.water)
    elif name in ("per_patch_dense", "per_patch_original"):
        info.update(per_patch(p.resnet if name == "per_patch_dense" else p.original, p.stack, args))
    elif name == "superpixels_crop":
        info.update(superpixels_crop(p.stack, config, args))
    elif name == "slic_tile":
        info.update(slic_tile(p.stack, config, args))
    else:
        raise ValueError(f"unknown stage {name}")
    return info


def random_patches(stack_path, patch_size: int, n: int, seed: int = 0):
    """Edge-padded patches (pixel at index P // 2) of ``n`` random valid pixels of a central window."""
    import rasterio
    from rasterio.windows import Window

    from osmlulc.predict import read_block_with_halo

    with rasterio.open(stack_path) as src:
        edge = min(1024, src.width, src.height)
        window = Window((src.width - edge) // 2, (src.height - edge) // 2, edge, edge)
        halo = patch_size // 2
        block = read_block_with_halo(src, window, halo)
    valid = (block[halo:halo + edge, halo:halo + edge] != 0).all(axis=-1)
    rows, cols = np.nonzero(valid)
    pick = np.random.default_rng(seed).choice(len(rows), size=min(n, len(rows)), replace=False)
    rows, cols = rows[pick], cols[pick]
    patches = np.stack([block[r:r + patch_size, c:c + patch_size] for r, c in zip(rows, cols)])
    return patches, block, rows, cols, halo


def per_patch(model_path, stack_path, args) -> dict:
    """Per-patch inference of a trained ResNet on a sample of pixels, extrapolated to the tile."""
    from osmlulc.classifiers import load_classifier
    from osmlulc.predict import predict_patches

    classifier = load_classifier(model_path)
    n = args.patch_pixels if classifier.patch_size % 2 else args.original_pixels
    patches, block, rows, cols, halo = random_patches(stack_path, classifier.patch_size, n)
    predict_patches(classifier, patches[:classifier.PATCH_BATCH])             # warm-up (graph tracing)
    start = time.perf_counter()
    proba = predict_patches(classifier, patches)
    seconds = time.perf_counter() - start
    rate = len(patches) / seconds
    info = {"mpx": len(patches) / 1e6, "seconds_inner": seconds, "px_per_s": rate,
            "tile_hours": args.size ** 2 / rate / 3600,
            "note": f"{len(patches)} random pixels, batches of {classifier.PATCH_BATCH}: {rate:,.0f} px/s, "
                    f"{args.size ** 2 / rate / 3600:.2f} h per {args.size} px tile"}
    if classifier.patch_size % 2:
        # The same pixels by dense inference of the same model on the block: identical probabilities.
        p = classifier.patch_size
        r0, c0 = rows.min(), cols.min()
        sub = block[r0:rows.max() + p, c0:cols.max() + p]
        dense = classifier.predict_proba_block(sub)[rows - r0, cols - c0]
        info["max_abs_diff_dense"] = float(np.abs(dense - proba).max())
        info["same_argmax"] = float(np.mean(dense.argmax(axis=1) == proba.argmax(axis=1)))
        info["note"] += f"; dense == per-patch: max |dp| {info['max_abs_diff_dense']:.1e}, " \
                        f"argmax agrees on {100 * info['same_argmax']:.2f} %"
    return info


def colour_image(stack_path, config: dict, window=None):
    import rasterio

    from osmlulc.segmentation import reflectance_to_colour

    seg = config["segmentation"]
    order = config["bands"]["stack_order"]
    with rasterio.open(stack_path) as src:
        rgb = src.read([order.index(b) + 1 for b in seg["rgb_bands"]], window=window)
    valid = (rgb != 0).all(axis=0)
    return reflectance_to_colour(np.moveaxis(rgb, 0, -1), seg.get("colour_space", "lab")), valid


def superpixels_crop(stack_path, config: dict, args) -> dict:
    """Our SNIC vs pysnic (pure Python) vs skimage slic on the same crop of the tile."""
    from rasterio.windows import Window
    from skimage.segmentation import slic

    from osmlulc.snic import snic

    seg = config["segmentation"]
    crop = args.crop
    off = (args.size - crop) // 2
    lab, valid = colour_image(stack_path, config, Window(off, off, crop, crop))
    n_segments = max(1, round(crop / seg["spacing_px"]) ** 2)
    results = {}
    snic(lab[:32, :32], seg["spacing_px"], seg["compactness"])            # compile outside the timing
    start = time.perf_counter()
    labels = snic(lab, seg["spacing_px"], seg["compactness"], valid)
    results["snic (osmlulc, numba)"] = (time.perf_counter() - start, int(labels.max()))
    start = time.perf_counter()
    labels = slic(lab.astype(np.float64), n_segments=n_segments, compactness=10, start_label=1, convert2lab=False,
                  channel_axis=-1)
    results["slic (scikit-image)"] = (time.perf_counter() - start, int(labels.max()))
    try:
        from pysnic.algorithms.snic import snic as pysnic
    except ImportError:
        results["pysnic"] = (float("nan"), 0)
    else:
        start = time.perf_counter()
        _, _, centroids = pysnic(lab.tolist(), n_segments, seg["compactness"])
        results["pysnic (pure Python)"] = (time.perf_counter() - start, len(centroids))
    mpx = crop * crop / 1e6
    return {"mpx": mpx, "crop": crop,
            "rates": {k: {"seconds": s, "mpx_per_s": mpx / s, "segments": n} for k, (s, n) in results.items()}}


def slic_tile(stack_path, config: dict, args) -> dict:
    """segment_tile with method slic (scikit-image) on the whole tile: the workflow's alternative."""
    from osmlulc.segmentation import segment_tile

    seg, order = config["segmentation"], config["bands"]["stack_order"]
    out = Path(args.workdir) / "tile"
    n = segment_tile(str(stack_path), [order.index(b) + 1 for b in seg["rgb_bands"]], str(out / "slic_segments.tif"),
                     str(out / "slic_centroids.gpkg"), spacing=seg["spacing_px"],
                     compactness=seg["slic_compactness"], block_size=seg["block_size_px"],
                     colour_space=seg.get("colour_space", "lab"), method="slic", threads=args.threads)
    return {"note": f"{n} superpixels, blocks of {seg['block_size_px']} px, {args.threads} at once"}


# --------------------------------------------------------------------------------------------
# Parent: one child process per stage, peak RSS from wait4
# --------------------------------------------------------------------------------------------

def child_env(threads: int, config: dict) -> dict:
    env = dict(os.environ)
    env["GDAL_CACHEMAX"] = str(config["gdal_cache_mb"])   # as the workflow sets it (rules/common.smk)
    for var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "GDAL_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["CUDA_VISIBLE_DEVICES"] = ""          # CPU timings, also on a machine with a GPU
    return env


def run_child(name: str, args, config: dict) -> dict:
    out = Path(args.workdir) / "timings" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, __file__, "--child", name, "--result", str(out)] + args.passthrough
    log = open(Path(args.workdir) / "timings" / f"{name}.log", "w")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=child_env(args.threads, config), stdout=log, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    log.close()
    if proc.returncode != 0:
        tail = (Path(args.workdir) / "timings" / f"{name}.log").read_text().splitlines()[-5:]
        raise SystemExit(f"stage {name} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    info = json.loads(out.read_text())
    info.update(name=name, process_seconds=seconds, peak_rss_mb=usage.ru_maxrss / 1024)   # Linux: KiB
    out.write_text(json.dumps(info))
    return info


def print_stage_table(results: list[dict]) -> None:
    print("\n| stage | Mpx | seconds | Mpx/s | process s | peak RSS (MB) | note |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in results:
        print(f"| {r['name']} | {r['mpx']:.2f} | {r['seconds']:.1f} | {r['mpx'] / r['seconds']:.2f} | "
              f"{r['process_seconds']:.1f} | {r['peak_rss_mb']:.0f} | {r.get('note', '')} |")


def print_comparisons(results: dict, args) -> None:
    tile_px = args.size ** 2
    print()
    predict = results.get("predict_pixel")
    rows = []
    if predict:
        rows.append(("dense ResNet, dense inference (predict_pixel, with I/O)", tile_px / predict["seconds"]))
    for key, label in (("per_patch_dense", "dense ResNet, per-patch inference"),
                       ("per_patch_original", "original resnet_v2 (depth 29, 5 x 5, 12 px), per-patch inference")):
        if key in results:
            rows.append((label, results[key]["px_per_s"]))
    if rows:
        print(f"| pixel inference ({args.size} x {args.size} px tile) | px/s | hours per tile | speed-up of dense |")
        print("| --- | ---: | ---: | ---: |")
        dense_rate = rows[0][1] if predict else None
        for label, rate in rows:
            speedup = f"{dense_rate / rate:.0f} x" if dense_rate else ""
            print(f"| {label} | {rate:,.0f} | {tile_px / rate / 3600:.2f} | {speedup} |")
        if "per_patch_dense" in results and "max_abs_diff_dense" in results["per_patch_dense"]:
            r = results["per_patch_dense"]
            print(f"\nDense vs per-patch of the same model on {int(r['mpx'] * 1e6)} pixels: max |p difference| "
                  f"{r['max_abs_diff_dense']:.1e}, same argmax for {100 * r['same_argmax']:.2f} %.")
    accuracy = [(a, results[k]["val_accuracy"]) for a, k in (("dense", "train_resnet"), ("original", "train_original"))
                if k in results]
    if accuracy:
        print("\n| ResNet (same samples, same epochs) | validation accuracy |\n| --- | ---: |")
        for a, acc in accuracy:
            print(f"| {a} | {acc:.4f} |")
    if "superpixels_crop" in results:
        r = results["superpixels_crop"]
        print(f"\n| superpixels on a {r['crop']} x {r['crop']} px crop | seconds | Mpx/s | segments |")
        print("| --- | ---: | ---: | ---: |")
        for k, v in r["rates"].items():
            print(f"| {k} | {v['seconds']:.2f} | {v['mpx_per_s']:.3f} | {v['segments']} |")
        if "snic" in results:
            s = results["snic"]
            print(f"| snic (osmlulc), whole tile in blocks (segment_tile, with I/O) | {s['seconds']:.1f} | "
                  f"{s['mpx'] / s['seconds']:.3f} | |")
        if "slic_tile" in results:
            s = results["slic_tile"]
            print(f"| slic (scikit-image), whole tile in blocks (segment_tile, with I/O; "
                  f"peak RSS {s['peak_rss_mb']:.0f} MB) | "
                  f"{s['seconds']:.1f} | {tile_px / 1e6 / s['seconds']:.3f} | |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10980, help="tile edge in px (default: a real tile, 10980)")
    parser.add_argument("--workdir", default=None, help="cache of the demo tile and the outputs "
                        "(default: <tmp>/osmlulc-benchmark-<size>)")
    parser.add_argument("--stages", default=None,
                        help=f"comma-separated subset of {STAGES + COMPARISONS} "
                             "(default: all; a cached demo is reused)")
    parser.add_argument("--threads", type=int, default=2, help="threads per stage (TF, OpenMP, numba, GDAL)")
    parser.add_argument("--epochs", type=int, default=None, help="ResNet epochs (default: config)")
    parser.add_argument("--per-class", type=int, default=None, help="training samples per class (default: config)")
    parser.add_argument("--patch-pixels", type=int, default=20000, help="pixels for per-patch dense inference")
    parser.add_argument("--original-pixels", type=int, default=4000, help="pixels for per-patch original inference")
    parser.add_argument("--crop", type=int, default=300, help="crop edge for SNIC vs pysnic vs slic")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.workdir = args.workdir or str(Path(tempfile.gettempdir()) / f"osmlulc-benchmark-{args.size}")
    config = load_config()

    if args.child:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        info = run_stage(args.child, args, config)
        Path(args.result).write_text(json.dumps(info))
        return

    keep = ("--size", "--workdir", "--threads", "--epochs", "--per-class", "--patch-pixels", "--original-pixels",
            "--crop")
    args.passthrough = [x for k in keep for x in (k, str(getattr(args, k[2:].replace("-", "_"))))
                        if getattr(args, k[2:].replace("-", "_")) is not None]
    wanted = STAGES + COMPARISONS if args.stages is None else args.stages.split(",")
    unknown = set(wanted) - set(STAGES + COMPARISONS)
    if unknown:
        parser.error(f"unknown stages {sorted(unknown)}")
    if args.stages is None and (Path(args.workdir) / "demo" / f"{TILE}_B02.tif").exists():
        wanted.remove("demo")
        print(f"demo tile cached in {args.workdir}/demo (pass --stages demo,... to regenerate)")
    print(f"osmlulc tile benchmark: {args.size} x {args.size} px ({args.size ** 2 / 1e6:.1f} Mpx), "
          f"{args.threads} threads per stage, workdir {args.workdir}", flush=True)

    results = {}
    for name in [s for s in STAGES + COMPARISONS if s in wanted]:
        results[name] = run_child(name, args, config)
        r = results[name]
        print(f"  {name}: {r['seconds']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB  {r.get('note', '')}", flush=True)
    # Earlier results of this workdir fill in stages not rerun now (e.g. training for the comparisons).
    for f in sorted((Path(args.workdir) / "timings").glob("*.json")):
        results.setdefault(f.stem, json.loads(f.read_text()))
    stage_rows = [results[s] for s in STAGES if s in results]
    print_stage_table(stage_rows)
    # The chain as the workflow runs it: with product_pixel (rule ensemble_pixel, one pass of the members) the
    # members' own predictions and the old blend are comparisons, run only where the accuracy rows need them
    # (prediction.member_maps).
    alone = ("predict_pixel", "predict_logreg", "ensemble_pixel") if "product_pixel" in results else ()
    chain = [r for r in stage_rows if r["name"] not in ("demo", "train_original", *alone)]
    left_out = ", ".join(["demo", "train_original", *alone])
    print(f"\nWhole chain for one tile (all stages but {left_out}): "
          f"{sum(r['process_seconds'] for r in chain) / 60:.1f} min (processes); largest peak RSS "
          f"{max((r['peak_rss_mb'] for r in chain), default=0):.0f} MB")
    print_comparisons(results, args)


if __name__ == "__main__":
    main()
