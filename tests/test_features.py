import numpy as np
import pytest
import rasterio

from osmlulc.features import ndwi, resample_to_grid, stack_bands
from osmlulc.indices import normalized_difference
from osmlulc.io import InputError

from conftest import write_raster


def test_resample_constant_raster_stays_constant(tmp_path):
    ref = write_raster(tmp_path / "B02.tif", np.full((40, 40), 500, np.uint16))
    band = write_raster(tmp_path / "B05.tif", np.full((20, 20), 1234, np.uint16), res=20.0)
    out = tmp_path / "B05_10m.tif"
    resample_to_grid(band, ref, out, band_resolution=20, resampling="bilinear")
    with rasterio.open(out) as dst, rasterio.open(ref) as r:
        assert (dst.crs, dst.transform, dst.shape) == (r.crs, r.transform, r.shape)
        assert dst.nodata == 0
        assert (dst.read(1) == 1234).all()


def test_resample_nearest_repeats_each_20m_pixel_2x2(tmp_path):
    ref = write_raster(tmp_path / "B02.tif", np.full((8, 8), 500, np.uint16))
    coarse = np.arange(1, 17, dtype=np.uint16).reshape(4, 4)
    band = write_raster(tmp_path / "B11.tif", coarse, res=20.0)
    out = tmp_path / "B11_10m.tif"
    resample_to_grid(band, ref, out, band_resolution=20, resampling="nearest")
    with rasterio.open(out) as dst:
        assert np.array_equal(dst.read(1), np.kron(coarse, np.ones((2, 2), np.uint16)))


def test_resample_rejects_wrong_crs_and_resolution(tmp_path):
    ref = write_raster(tmp_path / "B02.tif", np.full((8, 8), 500, np.uint16))
    other_crs = write_raster(tmp_path / "B05.tif", np.ones((4, 4), np.uint16), res=20.0, crs="EPSG:32633")
    with pytest.raises(InputError, match="B05.tif is in EPSG:32633"):
        resample_to_grid(other_crs, ref, tmp_path / "out.tif", band_resolution=20)
    wrong_res = write_raster(tmp_path / "B06.tif", np.ones((4, 4), np.uint16), res=60.0)
    with pytest.raises(InputError, match="B06.tif has a 60 x 60 m pixel size; expected 20 m"):
        resample_to_grid(wrong_res, ref, tmp_path / "out.tif", band_resolution=20)
    assert not list(tmp_path.glob("*out*"))


def test_resample_missing_and_corrupt_band(tmp_path):
    ref = write_raster(tmp_path / "B02.tif", np.full((8, 8), 500, np.uint16))
    with pytest.raises(InputError, match="missing.tif does not exist"):
        resample_to_grid(tmp_path / "missing.tif", ref, tmp_path / "out.tif", band_resolution=20)
    corrupt = tmp_path / "B07.tif"
    corrupt.write_bytes(open(ref, "rb").read()[:200])
    with pytest.raises(InputError, match="B07.tif cannot be read"):
        resample_to_grid(corrupt, ref, tmp_path / "out.tif", band_resolution=20)
    assert not (tmp_path / "out.tif").exists()


def test_stack_band_order_and_shared_nodata(tmp_path):
    a = np.full((30, 30), 100, np.uint16)
    b = np.full((30, 30), 200, np.uint16)
    b[0, 0] = 0
    paths = [write_raster(tmp_path / "a.tif", a), write_raster(tmp_path / "b.tif", b)]
    out = tmp_path / "stack.tif"
    stack_bands(paths, ["B02", "B03"], out)
    with rasterio.open(out) as dst:
        assert dst.descriptions == ("B02", "B03")
        data = dst.read()
        assert dst.profile["tiled"] and dst.profile["compress"] == "deflate"
    assert (data[:, 0, 0] == 0).all()
    assert data[0, 1, 1] == 100 and data[1, 1, 1] == 200


def test_stack_rejects_band_on_other_grid(tmp_path):
    paths = [write_raster(tmp_path / "a.tif", np.ones((30, 30), np.uint16)),
             write_raster(tmp_path / "b.tif", np.ones((15, 15), np.uint16), res=20.0)]
    with pytest.raises(InputError, match="b.tif is not on the grid"):
        stack_bands(paths, ["B02", "B05"], tmp_path / "stack.tif")
    assert not (tmp_path / "stack.tif").exists()


def test_normalized_difference_known_values():
    green = np.array([[300, 100, 0]], np.uint16)
    nir = np.array([[100, 300, 0]], np.uint16)
    out = normalized_difference(green, nir, np.array([[True, True, False]]), -9999.0)
    assert np.allclose(out, [[0.5, -0.5, -9999.0]])


def test_ndwi_finds_bands_by_name(tmp_path):
    stack = np.stack([np.full((20, 20), 300, np.uint16), np.full((20, 20), 100, np.uint16)])
    path = write_raster(tmp_path / "stack.tif", stack)
    with rasterio.open(path, "r+") as dst:
        dst.descriptions = ("B08", "B03")
    out = tmp_path / "ndwi.tif"
    ndwi(path, out, green_band="B03", nir_band="B08")
    with rasterio.open(out) as dst:
        assert np.allclose(dst.read(1), (100 - 300) / 400)
    with pytest.raises(InputError, match="lacks band"):
        ndwi(path, tmp_path / "x.tif", green_band="B03", nir_band="B8A")
