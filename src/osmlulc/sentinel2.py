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

**Masks** of clouds, shadows and snow: :mod:`osmlulc.sentinel2_masks`.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as ET
import rasterio
from rasterio.windows import Window

from osmlulc.io import REFLECTANCE_SCALE, InputError, atomic_output, block_windows, check_band, raster_profile

log = logging.getLogger("osmlulc")

#: The order of ``band_id`` in the product metadata (offset lists etc.).
BAND_IDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")

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
        try:
            with zipfile.ZipFile(path) as archive:
                members = sorted(n for n in archive.namelist() if not n.endswith("/"))
        except (zipfile.BadZipFile, OSError, ValueError) as err:
            raise InputError(f"Sentinel-2 product {path} is a damaged zip file ({err}); re-download it") from None
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
    """Level, processing baseline, quantification, per-band offsets and nodata from MTD_MSIL1C/2A.xml.

    Parsed with defusedxml (no DTD, no entities, no external references); a malformed value raises
    ValueError naming its element.
    """
    root = ET.fromstring(xml_text, forbid_dtd=True)
    info: dict = {"offsets": {}}
    band_names = dict(enumerate(BAND_IDS))
    offsets_by_id: dict[int, float] = {}
    special: dict[str, int] = {}
    pending_special = None
    for element in root.iter():
        name, text = _local(element.tag), (element.text or "").strip()
        try:
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
        except (TypeError, ValueError) as err:
            raise ValueError(f"element {name} {dict(element.attrib)} {text[:40]!r}: {err}") from None
    info["offsets"] = {band_names[i]: value for i, value in offsets_by_id.items() if i in band_names}
    if "NODATA" in special:
        info["nodata"] = special["NODATA"]
    return info


def baseline_at_least_4(baseline: str | None) -> bool:
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
            size = archive.getinfo(member).file_size
            _check_metadata_size(to_gdal(member), size)
            try:
                text = archive.read(member)
            except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError) as err:  # CRC, deflate, truncated
                raise InputError(f"Sentinel-2 product {archive_path} is a damaged zip file ({member}: {err}); "
                                 "re-download it") from None
    else:
        _check_metadata_size(to_gdal(member), Path(to_gdal(member)).stat().st_size)
        text = Path(to_gdal(member)).read_bytes()
    try:
        return member, parse_metadata(text)
    except (ET.ParseError, DefusedXmlException) as err:
        raise InputError(f"Sentinel-2 metadata {to_gdal(member)} is not valid XML ({err}); "
                         "re-download the product") from None
    except ValueError as err:
        raise InputError(f"Sentinel-2 metadata {to_gdal(member)} has a malformed value ({err}); "
                         "re-download the product") from None


#: A product's MTD_MSIL*.xml is well under 1 MB; anything much larger is not one.
MAX_METADATA_BYTES = 16 * 2**20


def _check_metadata_size(where: str, size: int) -> None:
    if size > MAX_METADATA_BYTES:
        raise InputError(f"Sentinel-2 metadata {where} is {size} bytes, more than the {MAX_METADATA_BYTES} a "
                         "metadata file can be; not read (re-download the product)")


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
    elif not offsets and baseline_at_least_4(baseline):
        log.warning("product %s: baseline %s but no offsets in the metadata; using %g", path, baseline,
                    BASELINE_04_OFFSET)
        offsets = {b: BASELINE_04_OFFSET for b in BAND_IDS}
    product = Product(str(path), kind, level, baseline, meta.get("quantification", REFLECTANCE_SCALE),
                      offsets, meta.get("nodata", 0), files)
    log.info("product %s: %s %s, baseline %s, metadata %s, quantification %g, offsets %s", path, kind, level,
             baseline, metadata_member, product.quantification, sorted(set(offsets.values())) or [0])
    return product


# --------------------------------------------------------------------------- bands


def open_image(gdal_path: str, product: Product, band: str):
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
    with open_image(gdal_path, product, band) as src:
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
