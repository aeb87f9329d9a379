import os

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from osmlulc.classes import ClassTable  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def table():
    return ClassTable.from_yaml(os.path.join(ROOT, "config", "classes.yaml"))


def write_raster(path, data, *, crs="EPSG:32632", origin=(499980.0, 5400000.0), res=10.0, nodata=0, **extra):
    """Write a (bands, rows, cols) or (rows, cols) array as a GeoTIFF; returns the path."""
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=data.dtype, crs=crs, transform=from_origin(*origin, res, res), nodata=nodata, **extra)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return str(path)
