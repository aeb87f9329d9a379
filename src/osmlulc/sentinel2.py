"""Sentinel-2 products as users download them: SAFE directories, zipped SAFEs, folders of band files.

A tile's product is opened with :func:`open_product`, which finds each band's image file by
band name and resolution and reads the product metadata:

* **L1C SAFE** (``S2?_MSIL1C_*.SAFE``): ``GRANULE/*/IMG_DATA/T..._B02.jp2``, metadata ``MTD_MSIL1C.xml``.
* **L2A SAFE** (``S2?_MSIL2A_*.SAFE``): ``GRANULE/*/IMG_DATA/R10m/T..._B02_10m.jp2`` (also
  ``R20m``, ``R60m``) and the scene classification ``SCL_20m``; metadata ``MTD_MSIL2A.xml``.
* **Zipped SAFE** (``.zip`` as downloaded): read in place through GDAL's ``/vsizip/``.
* **Folder** of one GeoTIFF/JP2 per band: the band name (``B02``, ``B8A``, ``SCL``) must be a
  ``_``-separated part of the file name (``T32UNU_B02.tif``, ``s2_B8A.jp2``); an ``MTD_MSIL*.xml``
  beside them is used if present.

Quality masks under ``QI_DATA`` (``MSK_*``) are never taken for bands.  A product holding several
tiles (old multi-granule SAFEs) is narrowed to the requested tile by the ``T<tile>`` part of the names.

**Reflectance scale.** Band values are written as reflectance x 10000 (uint16, 0 = nodata) on the
scale of processing baselines before 04.00: from baseline 04.00 (January 2022) on, ESA adds a
radiometric offset (``RADIO_ADD_OFFSET`` in L1C, ``BOA_ADD_OFFSET`` in L2A, -1000) to the digital
numbers, so ``reflectance = (DN + offset) / quantification``.  :func:`write_band` applies the
offset and the quantification value of the metadata, so products from before and after 04.00
give the same values for the same surface.  Valid pixels whose reflectance is <= 0 become 1 so
they are not taken for nodata.

**Masks** (:func:`write_valid_mask`, on the 10 m grid of the reference band; 1 usable, 0 not):

* L2A: pixels whose scene classification (SCL) is one of the configured classes (default: no data,
  saturated/defective, cloud shadows, clouds of medium and high probability, thin cirrus, snow).
* L1C: an optional screen on top-of-atmosphere reflectance, per pixel, any test masks:
  *cloud*: ``B02 > blue_min`` and ``B11 > swir_min`` (clouds are bright in the blue and the
  short-wave infrared, unlike water and most land; snow is dark in the SWIR);
  *cirrus*: ``B10 > cirrus_min`` (the 1375 nm band sees only high clouds);
  *snow*: ``NDSI = (B03 - B11) / (B03 + B11) > snow_ndsi_min`` and ``B08 > snow_nir_min``.
  It finds no cloud shadows and can take very bright surfaces (white roofs, salt) for clouds;
  L2A products with their SCL are the better input where available.
* Both: pixels that are nodata in the reference band, and optionally a buffer of ``buffer_px``
  pixels around every masked pixel.

The stack (:func:`osmlulc.features.stack_bands`) sets masked pixels to nodata in every band, so
they are neither sampled nor classified.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import xml.etree.ElementTree as ET
import zipfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from scipy.ndimage import binary_dilation

from osmlulc.features import check_band
from osmlulc.io import InputError, atomic_output, block_windows, raster_profile

log = logging.getLogger("osmlulc")

#: The order of ``band_id`` in the product metadata (offset lists etc.).
BAND_IDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")

#: Scale of the written bands: reflectance x 10000, as in products before baseline 04.00.
REFLECTANCE_SCALE = 10000.0

#: Offset ESA applies from processing baseline 04.00 on (used only if the metadata lists none).
BASELINE_04_OFFSET = -1000.0

_RASTER_SUFFIXES = (".jp2", ".tif", ".tiff")
_BAND_FILE = re.compile(r"(?:^|_)(B0[1-9]|B1[0-2]|B8A|SCL)(?:_(10|20|60)m)?\.(?:jp2|tiff?)$", re.IGNORECASE)
_TILE_TOKEN = re.compile(r"(?:^|_)T(\d{2}[A-Z]{3})(?=_|\.|$)")
_METADATA_FILE = re.compile(r"^(MTD_MSIL(1C|2A)|S2[ABCD]_OPER_MTD_SAFL(1C|2A)_.*)\.xml$", re.IGNORECASE)
_BASELINE_IN_NAME = re.compile(r"_N(\d{2})(\d{2})_")


@dataclass
class Product:
    """One tile's Sentinel-2 product: where its band files are, and how to read their values."""

    path: str
    kind: str                               # safe | zip | folder
    level: str                              # L1C | L2A
    baseline: str | None                    # processing baseline, e.g. "05.09"
    quantification: float = REFLECTANCE_SCALE
    offsets: dict[str, float] = field(default_factory=dict)
    nodata: int = 0
    files: dict[str, dict[int | None, str]] = field(default_factory=dict)  # band -> {resolution: GDAL path}
    read_hint: str = "re-download the product"  # what to do when a band cannot be read

    def offset(self, band: str) -> float:
        return self.offsets.get(band, 0.0)

    def band_file(self, band: str, resolution: int | None = None) -> str:
        """GDAL path of a band's image; ``resolution`` picks among R10m/R20m/R60m (L2A)."""
        found = self.files.get(band, {})
        if not found:
            raise InputError(f"Sentinel-2 product {self.path} has no image of band {band} "
                             f"(it has {sorted(self.files)}); use a complete product or a folder with every band")
        if resolution is not None and int(resolution) in found:
            return found[int(resolution)]
        if None in found:
            return found[None]
        if resolution is None and len(found) == 1:
            return next(iter(found.values()))
        raise InputError(f"Sentinel-2 product {self.path} has band {band} only at "
                         f"{sorted(r for r in found if r)} m, not at {resolution} m (bands.resolution)")


# --------------------------------------------------------------------------- finding files


def _list_members(path: Path) -> tuple[str, list[str], callable]:
    """(kind, relative POSIX paths of all files, function relative path -> GDAL path)."""
    if path.is_dir():
        kind = "safe" if (path / "GRANULE").is_dir() else "folder"
        members = sorted(
            PurePosixPath(os.path.relpath(os.path.join(root, name), path)).as_posix()
            for root, _, names in os.walk(path) for name in names
        )
        return kind, members, lambda member: str(path / member)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = sorted(n for n in archive.namelist() if not n.endswith("/"))
        absolute = path.resolve().as_posix()
        return "zip", members, lambda member: f"/vsizip/{absolute}/{member}"
    raise InputError(f"Sentinel-2 product {path} is neither a directory (SAFE or folder of bands) nor a zip file; "
                     "give the .SAFE directory, the downloaded .zip, or a folder of band files")


def _is_band_image(member: str) -> bool:
    parts = PurePosixPath(member).parts
    name = parts[-1]
    return (name.lower().endswith(_RASTER_SUFFIXES) and "QI_DATA" not in parts
            and not name.upper().startswith("MSK_") and _BAND_FILE.search(name) is not None)


def _tiles_named(member: str) -> set[str]:
    return {m.group(1) for part in PurePosixPath(member).parts for m in _TILE_TOKEN.finditer(part)}


def _band_files(product_path, members: list[str], to_gdal, tile: str | None) -> dict[str, dict[int | None, str]]:
    images = [m for m in members if _is_band_image(m)]
    if tile is not None:
        named = [m for m in images if _tiles_named(m)]
        if named:
            mine = [m for m in images if tile in _tiles_named(m)]
            if not mine:
                tiles = sorted(set().union(*(_tiles_named(m) for m in named)))
                raise InputError(f"Sentinel-2 product {product_path} holds tile(s) {tiles}, not {tile}; "
                                 "check countries.<CC>.products")
            images = [m for m in images if tile in _tiles_named(m) or not _tiles_named(m)]
    files: dict[str, dict[int | None, str]] = {}
    for member in images:
        match = _BAND_FILE.search(PurePosixPath(member).name)
        band, resolution = match.group(1).upper(), match.group(2)
        resolution = int(resolution) if resolution else None
        per_band = files.setdefault(band, {})
        if resolution in per_band:
            raise InputError(f"Sentinel-2 product {product_path} has two images of band {band}"
                             f"{f' at {resolution} m' if resolution else ''} ({to_gdal(member)} and "
                             f"{per_band[resolution]}); keep one product per tile")
        per_band[resolution] = to_gdal(member)
    return files


# --------------------------------------------------------------------------- metadata


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_metadata(xml_text: bytes | str) -> dict:
    """Level, processing baseline, quantification, per-band offsets and nodata from MTD_MSIL1C/2A.xml."""
    root = ET.fromstring(xml_text)
    info: dict = {"offsets": {}}
    band_names = dict(enumerate(BAND_IDS))
    offsets_by_id: dict[int, float] = {}
    special: dict[str, int] = {}
    pending_special = None
    for element in root.iter():
        name, text = _local(element.tag), (element.text or "").strip()
        if name == "PROCESSING_LEVEL" and text:
            info["level"] = "L2A" if "2A" in text.upper() else "L1C" if "1C" in text.upper() else None
        elif name == "PROCESSING_BASELINE" and text:
            info["baseline"] = text
        elif name in ("QUANTIFICATION_VALUE", "BOA_QUANTIFICATION_VALUE") and text:
            info["quantification"] = float(text)
        elif name in ("RADIO_ADD_OFFSET", "BOA_ADD_OFFSET") and text:
            offsets_by_id[int(element.get("band_id"))] = float(text)
        elif name == "Spectral_Information" and element.get("bandId") is not None and element.get("physicalBand"):
            physical = element.get("physicalBand").upper()
            band_names[int(element.get("bandId"))] = physical if len(physical) == 3 else f"B0{physical[1:]}"
        elif name == "SPECIAL_VALUE_TEXT":
            pending_special = text.upper()
        elif name == "SPECIAL_VALUE_INDEX" and pending_special:
            special[pending_special] = int(float(text))
            pending_special = None
    info["offsets"] = {band_names[i]: value for i, value in offsets_by_id.items() if i in band_names}
    if "NODATA" in special:
        info["nodata"] = special["NODATA"]
    return info


def _baseline_at_least_4(baseline: str | None) -> bool:
    try:
        return baseline is not None and float(baseline) >= 4.0
    except ValueError:
        return False


def _read_metadata(members: list[str], to_gdal, kind: str) -> tuple[str | None, dict]:
    candidates = [m for m in members if _METADATA_FILE.match(PurePosixPath(m).name)
                  and len(PurePosixPath(m).parts) <= 2]
    if not candidates:
        return None, {}
    member = min(candidates, key=lambda m: len(PurePosixPath(m).parts))
    if kind == "zip":
        archive_path = to_gdal(member)[len("/vsizip/"):-len(member) - 1]
        with zipfile.ZipFile(archive_path) as archive:
            text = archive.read(member)
    else:
        text = Path(to_gdal(member)).read_bytes()
    try:
        return member, parse_metadata(text)
    except ET.ParseError as err:
        raise InputError(f"Sentinel-2 metadata {to_gdal(member)} is not valid XML ({err}); "
                         "re-download the product") from None


def resolve_product(pattern: str | os.PathLike, tile: str) -> str:
    """The product path for a tile: ``pattern`` with ``{tile}`` filled in; glob characters must match one path."""
    path = str(pattern).format(tile=tile)
    if not glob.has_magic(path):
        return path
    matches = sorted(glob.glob(path))
    if len(matches) != 1:
        raise InputError(f"Sentinel-2 product pattern {path} (tile {tile}) matches {len(matches)} paths "
                         f"{matches[:5]}; it must match exactly one product per tile")
    return matches[0]


def open_product(path: str | os.PathLike, tile: str | None = None, *, offset: float | None = None) -> Product:
    """Find the band images and read the metadata of a SAFE directory, a zipped SAFE or a folder of bands.

    ``offset`` (reflectance offset in DN, e.g. -1000) overrides the metadata, for folders of
    baseline >= 04.00 bands that come without their ``MTD_*.xml``.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"Sentinel-2 product {path} does not exist (tile {tile}); "
                         "download it or fix countries.<CC>.products")
    kind, members, to_gdal = _list_members(path)
    files = _band_files(path, members, to_gdal, tile)
    if not any(b != "SCL" for b in files):
        raise InputError(f"Sentinel-2 product {path} contains no band image (*_B02.jp2, *_B02_10m.jp2, *_B02.tif ...)")
    metadata_member, meta = _read_metadata(members, to_gdal, kind)
    level = meta.get("level")
    if level is None:
        name = path.name.upper()
        level = "L2A" if "MSIL2A" in name or "SCL" in files else "L1C"
    baseline = meta.get("baseline")
    if baseline is None:
        match = _BASELINE_IN_NAME.search(path.name)
        baseline = f"{match.group(1)}.{match.group(2)}" if match else None
    offsets = dict(meta.get("offsets", {}))
    if offset is not None:
        offsets = {b: float(offset) for b in BAND_IDS}
    elif not offsets and _baseline_at_least_4(baseline):
        log.warning("product %s: baseline %s but no offsets in the metadata; using %g", path, baseline,
                    BASELINE_04_OFFSET)
        offsets = {b: BASELINE_04_OFFSET for b in BAND_IDS}
    product = Product(str(path), kind, level, baseline, meta.get("quantification", REFLECTANCE_SCALE),
                      offsets, meta.get("nodata", 0), files)
    log.info("product %s: %s %s, baseline %s, metadata %s, quantification %g, offsets %s", path, kind, level,
             baseline, metadata_member, product.quantification, sorted(set(offsets.values())) or [0])
    return product


# --------------------------------------------------------------------------- bands


def _open_image(gdal_path: str, product: Product, band: str):
    try:
        return rasterio.open(gdal_path)
    except rasterio.errors.RasterioIOError as err:
        raise InputError(f"band {band} of Sentinel-2 product {product.path} cannot be read "
                         f"({gdal_path.removeprefix('/vsicurl/')}: {str(err).splitlines()[0]}); "
                         f"{product.read_hint}") from None


def to_reflectance(dn: np.ndarray, *, offset: float, quantification: float, nodata: int) -> np.ndarray:
    """Digital numbers -> reflectance x 10000 (uint16); nodata -> 0, valid pixels at least 1."""
    valid = dn != nodata
    scaled = (dn.astype(np.float64) + offset) * (REFLECTANCE_SCALE / quantification)
    out = np.clip(np.rint(scaled), 1, 65535).astype(np.uint16)
    out[~valid] = 0
    return out


def write_band(product: Product, band: str, dst_path, *, resolution: float) -> None:
    """Write one band of a product at its native ``resolution`` as reflectance x 10000 (uint16, nodata 0)."""
    gdal_path = product.band_file(band, int(resolution))
    with _open_image(gdal_path, product, band) as src:
        check_band(src, gdal_path, expected_resolution=resolution)
        profile = raster_profile(crs=src.crs, transform=src.transform, width=src.width, height=src.height,
                                 dtype="uint16", nodata=0)
        offset = product.offset(band)
        with atomic_output(dst_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            dst.set_band_description(1, band)
            dst.update_tags(SOURCE=gdal_path, PROCESSING_BASELINE=product.baseline or "unknown",
                            RADIOMETRIC_OFFSET=f"{offset:g}", QUANTIFICATION_VALUE=f"{product.quantification:g}",
                            SCALE="reflectance x 10000")
            for window in block_windows(src.width, src.height):
                dn = src.read(1, window=window)
                dst.write(to_reflectance(dn, offset=offset, quantification=product.quantification,
                                         nodata=product.nodata), 1, window=window)


# --------------------------------------------------------------------------- masks


def l1c_cloud_screen(reflectance: dict[str, np.ndarray], settings: dict) -> np.ndarray:
    """True where the L1C screen (module docstring) finds cloud, cirrus or snow; inputs are reflectance (0..1)."""
    blue, swir = reflectance["B02"], reflectance["B11"]
    masked = (blue > settings["blue_min"]) & (swir > settings["swir_min"])
    if "B10" in reflectance:
        masked |= reflectance["B10"] > settings["cirrus_min"]
    green, nir = reflectance["B03"], reflectance["B08"]
    total = green + swir
    ndsi = np.divide(green - swir, total, out=np.zeros_like(total), where=total > 0)
    masked |= (ndsi > settings["snow_ndsi_min"]) & (nir > settings["snow_nir_min"])
    return masked


def _grown_window(window: Window, halo: int, width: int, height: int) -> Window:
    col0, row0 = max(0, window.col_off - halo), max(0, window.row_off - halo)
    col1 = min(width, window.col_off + window.width + halo)
    row1 = min(height, window.row_off + window.height + halo)
    return Window(col0, row0, col1 - col0, row1 - row0)


def _core(window: Window, grown: Window) -> tuple[slice, slice]:
    """Rows and columns of ``window`` inside an array read for ``grown`` (a window around it)."""
    rows = slice(window.row_off - grown.row_off, window.row_off - grown.row_off + window.height)
    cols = slice(window.col_off - grown.col_off, window.col_off - grown.col_off + window.width)
    return rows, cols


#: Bands s2cloudless classifies (its ``all_bands=False`` input), in its order.
S2CLOUDLESS_BANDS = ("B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12")

#: L1C cloud detectors (``sentinel2.l1c_cloud_mask``).
L1C_DETECTORS = ("s2cloudless", "screen", "none")


def read_window(src, product: Product, band: str, window: Window) -> np.ndarray:
    """A band's window as stored; one line naming the file (or URL) and what to do if reading fails."""
    try:
        return src.read(1, window=window)
    except rasterio.errors.RasterioIOError as err:
        name = getattr(src, "src_dataset", src).name.removeprefix("/vsicurl/")
        raise InputError(f"band {band} of Sentinel-2 product {product.path} cannot be read from {name} "
                         f"({str(err).splitlines()[0]}); {product.read_hint}") from None


def read_reflectance(src, product: Product, band: str, window: Window) -> np.ndarray:
    """A band's window as reflectance x 10000 (uint16, 0 nodata); one line naming the file if reading fails."""
    dn = read_window(src, product, band, window)
    return to_reflectance(dn, offset=product.offset(band), quantification=product.quantification,
                          nodata=product.nodata)


class ProductMask:
    """Per-window mask of a product's unusable pixels on the 10 m grid of its reference band.

    L2A: the SCL classes ``scl_classes``; L1C: ``l1c_detector`` s2cloudless (``s2cloudless``
    settings: threshold, average_over, dilation_size, resolution 10 or 60 m), the hand ``screen``
    (``l1c_screen`` thresholds), or none; both: nodata of the reference band, plus ``buffer_px``
    pixels around every flagged pixel.  ``counts`` collects the masked pixels by reason.
    Use as a context manager (it holds the product's band files open).
    """

    def __init__(self, product: Product, *, reference_band: str, reference_resolution: float = 10.0,
                 scl_classes: list[int], l1c_detector: str = "screen", l1c_screen: dict | None = None,
                 s2cloudless: dict | None = None, buffer_px: int = 0):
        if l1c_detector not in L1C_DETECTORS:
            raise InputError(f"unknown L1C cloud detector {l1c_detector!r}; use one of {L1C_DETECTORS}")
        self.product, self.reference_band = product, reference_band
        self.reference_resolution = reference_resolution
        self.scl_classes, self.buffer_px = list(scl_classes), int(buffer_px)
        self.use_scl = product.level == "L2A" and "SCL" in product.files
        if product.level == "L2A" and not self.use_scl:
            raise InputError(f"L2A product {product.path} has no SCL image (*_SCL_20m.jp2); "
                             "it is needed for the cloud mask")
        if product.level == "L1C":
            if l1c_detector == "screen" and l1c_screen is None:
                l1c_detector = "none"
            self.method = l1c_detector
        else:
            self.method = "SCL" if self.use_scl else "none"
        self.l1c_screen = l1c_screen
        self.s2cloudless = {"threshold": 0.4, "average_over": 4, "dilation_size": 2, "resolution": 60,
                            **(s2cloudless or {})}
        self.counts = {"nodata": 0, "scl": 0, "cloud_screen": 0, "s2cloudless": 0, "buffer": 0}
        self._stack = ExitStack()
        self._on_grid: dict[tuple[str, int], object] = {}
        self._detector = None

    def __enter__(self):
        ref_path = self.product.band_file(self.reference_band, int(self.reference_resolution))
        self.ref = self._stack.enter_context(_open_image(ref_path, self.product, self.reference_band))
        check_band(self.ref, ref_path, expected_resolution=self.reference_resolution)
        self._on_grid[(self.reference_band, 1)] = self.ref
        return self

    def __exit__(self, *exc):
        self._stack.close()

    @property
    def flag_reason(self) -> str:
        return {"SCL": "scl", "screen": "cloud_screen", "s2cloudless": "s2cloudless"}.get(self.method, "scl")

    def on_grid(self, band: str, factor: int = 1, resampling=Resampling.nearest):
        """A band on the reference grid coarsened ``factor`` times (nearest, or ``resampling``)."""
        key = (band, factor)
        if key not in self._on_grid:
            ref = self.ref
            src = self._stack.enter_context(_open_image(self.product.band_file(band), self.product, band))
            if src.crs != ref.crs:
                raise InputError(f"band {band} of {self.product.path} is in {src.crs}, the reference band in {ref.crs}")
            transform = ref.transform * Affine.scale(factor)
            width, height = -(-ref.width // factor), -(-ref.height // factor)
            self._on_grid[key] = src if (src.transform, src.shape) == (transform, (height, width)) else \
                self._stack.enter_context(WarpedVRT(src, crs=ref.crs, transform=transform, width=width,
                                                    height=height, resampling=resampling))
        return self._on_grid[key]

    def halo(self) -> int:
        """Pixels (10 m) around a window that its mask depends on."""
        halo = self.buffer_px
        if self.method == "s2cloudless":
            cfg = self.s2cloudless
            factor = int(cfg["resolution"]) // 10
            halo += factor * (int(cfg["average_over"] or 0) + int(cfg["dilation_size"] or 0) + 2)
        return halo

    def _flags(self, window: Window) -> np.ndarray:
        if self.method == "SCL":
            return np.isin(read_window(self.on_grid("SCL"), self.product, "SCL", window), self.scl_classes)
        if self.method == "screen":
            bands = ["B02", "B03", "B08", "B11"] + (["B10"] if "B10" in self.product.files else [])
            reflectance = {b: read_reflectance(self.on_grid(b), self.product, b, window).astype(np.float32)
                           / REFLECTANCE_SCALE for b in bands}
            return l1c_cloud_screen(reflectance, self.l1c_screen)
        if self.method == "s2cloudless":
            return self._s2cloudless(window)
        return np.zeros((window.height, window.width), dtype=bool)

    def _s2cloudless(self, window: Window) -> np.ndarray:
        """s2cloudless on the window, at 10 m or on the 60 m grid (then taken back to 10 m by nearest)."""
        cfg = self.s2cloudless
        if self._detector is None:
            from s2cloudless import S2PixelCloudDetector  # imports LightGBM: only where it is used

            self._detector = S2PixelCloudDetector(threshold=float(cfg["threshold"]), all_bands=False,
                                                  average_over=cfg["average_over"] or None,
                                                  dilation_size=cfg["dilation_size"] or None)
        factor = int(cfg["resolution"]) // 10
        col0, row0 = window.col_off // factor, window.row_off // factor
        col1 = -(-(window.col_off + window.width) // factor)
        row1 = -(-(window.row_off + window.height) // factor)
        coarse = Window(col0, row0, col1 - col0, row1 - row0)
        missing = [b for b in S2CLOUDLESS_BANDS if b not in self.product.files]
        if missing:
            raise InputError(f"L1C product {self.product.path} lacks band(s) {missing} that s2cloudless needs; "
                             "use a complete product or sentinel2.l1c_cloud_mask: screen")
        data = np.stack([read_reflectance(self.on_grid(b, factor, Resampling.average), self.product, b, coarse)
                         .astype(np.float32) / REFLECTANCE_SCALE for b in S2CLOUDLESS_BANDS], axis=-1)
        mask = self._detector.get_cloud_masks(data[np.newaxis])[0].astype(bool)
        if factor > 1:
            mask = np.repeat(np.repeat(mask, factor, axis=0), factor, axis=1)
            r, c = window.row_off - row0 * factor, window.col_off - col0 * factor
            mask = mask[r:r + window.height, c:c + window.width]
        return mask

    def masked(self, window: Window) -> np.ndarray:
        """True where the product is not usable in ``window`` (reference grid); adds to ``counts``."""
        ref = self.ref
        grown = _grown_window(window, self.halo(), ref.width, ref.height)
        nodata = read_window(ref, self.product, self.reference_band, grown) == self.product.nodata
        flagged = self._flags(grown) & ~nodata
        masked = nodata | flagged
        if self.buffer_px > 0 and flagged.any():
            # A square structuring element: the buffer is buffer_px pixels in every direction.
            masked = nodata | binary_dilation(flagged, structure=np.ones((3, 3), bool), iterations=self.buffer_px)
        rows, cols = _core(window, grown)
        core_nodata, core_flagged, core_masked = nodata[rows, cols], flagged[rows, cols], masked[rows, cols]
        self.counts["nodata"] += int(core_nodata.sum())
        self.counts[self.flag_reason] += int(core_flagged.sum())
        self.counts["buffer"] += int((core_masked & ~core_nodata & ~core_flagged).sum())
        return core_masked

    def fractions(self) -> dict[str, float]:
        total = float(self.ref.width * self.ref.height)
        return {reason: n / total for reason, n in self.counts.items()}


def write_valid_mask(product: Product, dst_path, *, reference_band: str, reference_resolution: float = 10.0,
                     scl_classes: list[int], l1c_screen: dict | None = None, l1c_detector: str = "screen",
                     s2cloudless: dict | None = None, buffer_px: int = 0, block_size: int = 1020) -> dict[str, float]:
    """Mask of usable pixels on the reference band's grid: uint8, 1 usable, 0 masked (module docstring).

    L2A: SCL classes in ``scl_classes`` are masked (SCL is taken nearest-neighbour onto the 10 m
    grid); L1C: ``l1c_detector`` (s2cloudless, the hand screen with ``l1c_screen`` thresholds, or
    none).  Returns the masked fraction of the tile by reason.
    """
    with ProductMask(product, reference_band=reference_band, reference_resolution=reference_resolution,
                     scl_classes=scl_classes, l1c_detector=l1c_detector, l1c_screen=l1c_screen,
                     s2cloudless=s2cloudless, buffer_px=buffer_px) as mask:
        ref = mask.ref
        profile = raster_profile(crs=ref.crs, transform=ref.transform, width=ref.width, height=ref.height,
                                 dtype="uint8", nodata=None)
        with atomic_output(dst_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            dst.set_band_description(1, "valid")
            dst.update_tags(1, VALUES="1 usable, 0 masked (nodata, cloud, shadow, snow)",
                            METHOD={"SCL": "SCL", "screen": "L1C cloud screen", "s2cloudless": "s2cloudless"}
                            .get(mask.method, "nodata only"))
            for window in block_windows(ref.width, ref.height, block_size):
                dst.write((~mask.masked(window)).astype(np.uint8), 1, window=window)
        return mask.fractions()
