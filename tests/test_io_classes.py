import numpy as np
import pytest
import rasterio

from osmlulc.io import atomic_output, block_windows, raster_profile, to_cog, write_as_cog, write_class_colormap

from conftest import write_raster


def test_class_table_water_and_lookups(table):
    assert len(table) == 12 and table.nodata == 0
    assert table.name(12) == "water bodies"
    assert table.corine_lookup()[512] == 12 and table.corine_lookup()[311] == 8 and table.corine_lookup()[999] == 0
    idx = table.index_of_code()
    assert idx[0] == -1 and idx[12] == 11 and idx[1] == 0


def test_block_windows_cover_grid_once():
    cover = np.zeros((1030, 517), int)
    for w in block_windows(517, 1030, 256):
        cover[w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width] += 1
    assert (cover == 1).all()


def test_atomic_output_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.tif"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_output(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole" and list(tmp_path.iterdir()) == [target]


def test_profile_colormap_and_cog(tmp_path, table):
    data = np.tile(np.arange(13, dtype=np.uint8), (64, 5))[:, :64]
    profile = raster_profile(crs="EPSG:3035", transform=rasterio.transform.from_origin(0, 640, 10, 10),
                             width=64, height=64, nodata=0)
    src = tmp_path / "c.tif"
    with rasterio.open(src, "w", **profile) as dst:
        dst.write(data, 1)
        write_class_colormap(dst, table)
    cog = tmp_path / "c_cog.tif"
    to_cog(src, cog)
    with rasterio.open(cog) as dst:
        assert dst.colormap(1)[12] == (0, 204, 242, 255)
        assert dst.tags(1)["CLASS_12"] == "water bodies"
        assert dst.crs.to_epsg() == 3035 and dst.nodata == 0
        assert (dst.read(1) == data).all()
    out = tmp_path / "w.tif"
    write_as_cog(out, lambda p: write_raster(p, data, crs="EPSG:3035"))
    assert out.exists() and sorted(x.name for x in tmp_path.iterdir()) == ["c.tif", "c_cog.tif", "w.tif"]
