"""Dated demo products with synthetic clouds (``demo.dates`` > 0): the input of the composite."""

from __future__ import annotations

from contextlib import ExitStack

import numpy as np
import rasterio
import rasterio.windows
from rasterio.transform import from_origin

from osmlulc.demo.noise import value_noise
from osmlulc.demo.render import block_mean_20m
from osmlulc.demo.spec import PIXEL_M, parse_spec
from osmlulc.io import atomic_output, block_windows, raster_profile

#: Top-of-cloud reflectance x 10000 per band: bright and flat in the visible and NIR, darker in the SWIR.
CLOUD_REFLECTANCE = {"B02": 7600, "B03": 7400, "B04": 7300, "B05": 7300, "B06": 7300, "B07": 7400, "B08": 7400,
                     "B8A": 7400, "B11": 4800, "B12": 3300}
#: Shadows: how much of the direct light reaches the ground, and where they fall (px, from the cloud).
SHADOW_FACTOR = 0.45
SHADOW_SHIFT_PX = (18, 12)
#: Lattice spacings (px) of the two octaves of the cloud field.
CLOUD_SCALES_PX = (70.0, 23.0)
#: First acquisition, days between acquisitions, and the radiometry of each date.
FIRST_DATE = "2020-06-05"
DATE_STEP_DAYS = 10
#: Illumination / phenology gain of date k (cycled): surfaces are not exactly alike from date to date.
DATE_GAINS = (1.0, 0.97, 1.03, 0.99)
#: Processing baseline of date k (cycled): 04.00 products carry BOA_ADD_OFFSET -1000 in their metadata.
DATE_BASELINES = ("02.14", "04.00")


def demo_date_names(spec: dict, tile: str) -> list[str]:
    """Folder names of the tile's dated products (ESA-like: S2A_MSIL2A_<date>T103031_N<baseline>_R108_T<tile>)."""
    import datetime

    n = int(spec.get("dates", 0))
    first = datetime.date.fromisoformat(FIRST_DATE)
    names = []
    for k in range(n):
        day = (first + datetime.timedelta(days=k * DATE_STEP_DAYS)).strftime("%Y%m%d")
        baseline = DATE_BASELINES[k % len(DATE_BASELINES)].replace(".", "")
        names.append(f"S2{'AB'[k % 2]}_MSIL2A_{day}T103031_N{baseline}_R108_T{tile}_{day}T120000")
    return names


def _cloud_field(gx: np.ndarray, gy: np.ndarray, salts) -> np.ndarray:
    """Smooth cloud field on the global grid (overlapping tiles see the same clouds)."""
    coarse = value_noise(gx, gy, CLOUD_SCALES_PX[0], salts[0])
    return coarse + 0.45 * value_noise(gx, gy, CLOUD_SCALES_PX[1], salts[1])


def _cloud_threshold(cover: float, salts) -> float:
    """Field value above which a pixel is cloud, so that about ``cover`` of any large area is (tile independent)."""
    g = np.arange(0, 2048, 2, dtype=np.int64)
    return float(np.quantile(_cloud_field(g, g, salts), 1 - cover)) if cover > 0 else np.inf


def _mtd_msil2a(baseline: str, offset: int) -> str:
    """A minimal MTD_MSIL2A.xml shaped like ESA's: level, baseline, quantification, BOA offsets, nodata."""
    physical = [b if b == "B8A" else f"B{int(b[1:])}" for b in
                ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")]
    offsets = "" if not offset else "<BOA_ADD_OFFSET_VALUES_LIST>" + "".join(
        f'<BOA_ADD_OFFSET band_id="{i}">{offset}</BOA_ADD_OFFSET>' for i in range(13)) + "</BOA_ADD_OFFSET_VALUES_LIST>"
    spectral = "".join(f'<Spectral_Information bandId="{i}" physicalBand="{p}"/>' for i, p in enumerate(physical))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">'
            f"<n1:General_Info><Product_Info><PROCESSING_LEVEL>Level-2A</PROCESSING_LEVEL>"
            f"<PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE></Product_Info><Product_Image_Characteristics>"
            "<Special_Values><SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT><SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX>"
            "</Special_Values><QUANTIFICATION_VALUES_LIST><BOA_QUANTIFICATION_VALUE unit=\"none\">10000"
            f"</BOA_QUANTIFICATION_VALUE></QUANTIFICATION_VALUES_LIST>{offsets}"
            f"<Spectral_Information_List>{spectral}</Spectral_Information_List></Product_Image_Characteristics>"
            "</n1:General_Info></n1:Level-2A_User_Product>\n")


def write_demo_dates(spec: dict, tile: str, clear_bands: dict[str, str], product_dirs: list[str], *,
                     seed: int) -> list[dict]:
    """The tile's dated L2A products (folders of band GeoTIFFs, SCL, MTD_MSIL2A.xml) from its cloud-free bands.

    Date k is the clear surface times a gain (:data:`DATE_GAINS`) under clouds of a smooth random
    field covering about ``spec["cloud_cover"]`` of the area (semi-transparent edges) and their
    shadows; its SCL marks clouds (9 opaque, 8 thin), shadows (3), nodata (0), else 4 (vegetation,
    the demo does not classify further).  Baseline 04.00 dates add 1000 to the DNs and list the
    -1000 offset.  Clouds follow the global pixel grid, so overlapping tiles agree.  Returns per
    date the share of cloud and shadow.
    """
    s = parse_spec(spec)
    cover = float(spec.get("cloud_cover", 0.3))
    gx0, gy0 = s.tile_offset_px(tile)
    left, top = s.tile_ul(tile)
    summary = []
    for k, folder in enumerate(product_dirs):
        rng = np.random.default_rng([seed, 7919, k])   # the same clouds for every tile of a date
        salts = rng.integers(0, 2**63, size=2, dtype=np.uint64)
        threshold = _cloud_threshold(cover, salts)
        baseline = DATE_BASELINES[k % len(DATE_BASELINES)]
        add = 1000 if baseline >= "04.00" else 0
        gain = DATE_GAINS[k % len(DATE_GAINS)]
        name = folder.rstrip("/").rsplit("/", 1)[-1]
        day = name.split("_")[2][:8]
        with atomic_output(folder) as tmp:
            tmp.mkdir()
            counts = {"cloud": 0, "shadow": 0}
            with ExitStack() as stack:
                srcs = {b: stack.enter_context(rasterio.open(p)) for b, p in clear_bands.items()}
                dsts = {}
                for band, src in srcs.items():
                    profile = raster_profile(crs=src.crs, transform=src.transform, width=src.width,
                                             height=src.height, dtype="uint16", nodata=0)
                    dsts[band] = stack.enter_context(rasterio.open(tmp / f"T{tile}_{day}_{band}.tif", "w", **profile))
                    dsts[band].set_band_description(1, band)
                scl_size = -(-s.size // 2)
                dsts["SCL"] = stack.enter_context(rasterio.open(tmp / f"T{tile}_{day}_SCL.tif", "w", **raster_profile(
                    crs=s.crs, transform=from_origin(left, top, 2 * PIXEL_M, 2 * PIXEL_M), width=scl_size,
                    height=scl_size, dtype="uint8", nodata=None)))
                for window in block_windows(s.size, s.size, 1024):
                    r0, c0, h, w = window.row_off, window.col_off, window.height, window.width
                    gx = np.arange(gx0 + c0, gx0 + c0 + w, dtype=np.int64)
                    gy = np.arange(gy0 + r0, gy0 + r0 + h, dtype=np.int64)
                    sx, sy = SHADOW_SHIFT_PX
                    alpha = np.clip((_cloud_field(gx, gy, salts) - threshold) / 0.08 + 0.5, 0, 1)
                    shade = np.clip((_cloud_field(gx - sx, gy - sy, salts) - threshold) / 0.08 + 0.5, 0, 1)
                    shadow = (shade > 0) & (alpha == 0)
                    valid = np.ones((h, w), bool)
                    for band, src in srcs.items():
                        f = s.bands[band] // 10
                        win = rasterio.windows.Window(c0 // f, r0 // f, -(-w // f), -(-h // f))
                        clear = src.read(1, window=win).astype(np.float32)
                        a = alpha[::f, ::f] if f == 1 else block_mean_20m(alpha * 1000, np.ones_like(valid)) / 1000.0
                        sh = shadow[::f, ::f]
                        surface = clear * gain * np.where(sh, SHADOW_FACTOR, 1.0)
                        values = surface * (1 - a) + CLOUD_REFLECTANCE[band] * a
                        ok = clear > 0
                        if f == 1:
                            valid &= ok
                        dn = np.where(ok, np.clip(np.rint(values), 1, 65535 - add) + add, 0).astype(np.uint16)
                        dsts[band].write(dn, 1, window=win)
                    scl = np.where(alpha >= 0.5, 9, np.where(alpha > 0, 8, np.where(shadow, 3, 4)))
                    scl = np.where(valid, scl, 0).astype(np.uint8)
                    counts["cloud"] += int(((alpha > 0) & valid).sum())
                    counts["shadow"] += int((shadow & valid).sum())
                    # SCL at 20 m: the most severe class of the four 10 m pixels (clouds over shadows over clear).
                    ph, pw = h + h % 2, w + w % 2
                    padded = np.zeros((ph, pw), np.uint8)
                    padded[:h, :w] = scl
                    blocks = padded.reshape(ph // 2, 2, pw // 2, 2)
                    rank = np.array([0, 0, 0, 2, 1, 1, 1, 1, 3, 4, 0, 0], np.uint8)[blocks]
                    quads = blocks.transpose(0, 2, 1, 3).reshape(ph // 2, pw // 2, 4)
                    worst = rank.transpose(0, 2, 1, 3).reshape(ph // 2, pw // 2, 4).argmax(axis=2)
                    best = np.take_along_axis(quads, worst[..., None], axis=2)[..., 0]
                    dsts["SCL"].write(best, 1, window=rasterio.windows.Window(c0 // 2, r0 // 2, best.shape[1],
                                                                             best.shape[0]))
            (tmp / "MTD_MSIL2A.xml").write_text(_mtd_msil2a(baseline, -add))
        total = float(s.size * s.size)
        summary.append({"product": name, "cloud": counts["cloud"] / total, "shadow": counts["shadow"] / total,
                        "baseline": baseline, "gain": gain})
    return summary
