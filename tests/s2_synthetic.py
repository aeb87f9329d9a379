"""Synthetic Sentinel-2 L2A products as folders of band GeoTIFFs with their SCL and an ESA-shaped
MTD_MSIL2A.xml (processing baseline, BOA offsets, quantification), for the composite and STAC tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

ORIGIN = (600000.0, 5300040.0)
CRS = "EPSG:32632"
#: Bands and resolutions the tests composite (a subset of the stack keeps them fast).
BANDS = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B05": 20, "B11": 20}
BAND_IDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")


def mtd_xml(baseline: str, offset: int | None) -> str:
    offsets = "" if offset is None else "<BOA_ADD_OFFSET_VALUES_LIST>" + "".join(
        f'<BOA_ADD_OFFSET band_id="{i}">{offset}</BOA_ADD_OFFSET>' for i in range(13)) + "</BOA_ADD_OFFSET_VALUES_LIST>"
    spectral = "".join(f'<Spectral_Information bandId="{i}" physicalBand="{b if b == "B8A" else "B" + str(int(b[1:]))}"/>'  # noqa: E501
                       for i, b in enumerate(BAND_IDS))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">
  <n1:General_Info>
    <Product_Info><PROCESSING_LEVEL>Level-2A</PROCESSING_LEVEL><PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE></Product_Info>
    <Product_Image_Characteristics>
      <Special_Values><SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT><SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX></Special_Values>
      <QUANTIFICATION_VALUES_LIST><BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE></QUANTIFICATION_VALUES_LIST>
      {offsets}
      <Spectral_Information_List>{spectral}</Spectral_Information_List>
    </Product_Image_Characteristics>
  </n1:General_Info>
</n1:Level-2A_User_Product>
"""


def clear_values(size: int) -> dict[str, np.ndarray]:
    """Reflectance x 10000 of a cloud-free surface per band on its own grid (10 m: size, 20 m: size / 2)."""
    values = {}
    for i, (band, res) in enumerate(BANDS.items()):
        n = size * 10 // res
        rows, cols = np.mgrid[0:n, 0:n]
        values[band] = (300 + 100 * i + 7 * rows + 3 * cols).astype(np.uint16)
    return values


def write_tif(path: Path, data: np.ndarray, res: int, *, cog: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="COG" if cog else "GTiff", width=data.shape[1], height=data.shape[0], count=1,
                   dtype="uint16" if data.dtype != np.uint8 else "uint8", crs=CRS,
                   transform=from_origin(*ORIGIN, res, res), compress="deflate")
    if cog:
        profile["blocksize"] = 256
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def product_arrays(size: int, cloud: tuple[slice, slice], *, add: int = 0, brightness: int = 0) -> dict:
    """Band DNs (clear values + ``brightness`` + ``add`` offset DN) with a bright cloud in ``cloud``
    (10 m slices, even bounds), and the SCL (20 m: 9 in the cloud, 4 elsewhere)."""
    out = {}
    for band, values in clear_values(size).items():
        f = BANDS[band] // 10
        dn = values.astype(np.int32) + brightness + add
        dn[cloud[0].start // f:cloud[0].stop // f, cloud[1].start // f:cloud[1].stop // f] = 9000 + add
        out[band] = dn.astype(np.uint16)
    scl = np.full((size // 2, size // 2), 4, dtype=np.uint8)
    scl[cloud[0].start // 2:cloud[0].stop // 2, cloud[1].start // 2:cloud[1].stop // 2] = 9
    out["SCL"] = scl
    return out


def write_product(root: Path, name: str, arrays: dict, *, baseline: str, offset: int | None, cog: bool = False,
                  metadata: bool = True) -> Path:
    """A folder of band files named like ESA's (T32UNU_<date>_B02.tif, ..._SCL.tif) with MTD_MSIL2A.xml."""
    folder = root / name
    for band, data in arrays.items():
        res = 20 if band == "SCL" else BANDS[band]
        write_tif(folder / f"T32UNU_{name}_{band}.tif", data, res, cog=cog)
    if metadata:
        (folder / "MTD_MSIL2A.xml").write_text(mtd_xml(baseline, offset))
    return folder
