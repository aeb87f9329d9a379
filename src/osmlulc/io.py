"""Raster and vector I/O shared by every stage.

Every writer goes through :func:`atomic_output`, so a crashed or killed job never leaves
a file that Snakemake would take as complete, and through :func:`raster_profile`, so every
product is a tiled, compressed GeoTIFF.  Readers and writers work block by block
(:func:`block_windows`) so memory does not grow with the raster size.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from osmlulc.classes import ClassTable

#: Scale of every band file the workflow writes and reads: reflectance x 10000 (uint16, 0 = nodata), as in
#: Sentinel-2 products before processing baseline 04.00.
REFLECTANCE_SCALE = 10000.0

#: Block edge (pixels) of written GeoTIFFs and of the default processing window.
BLOCK_SIZE = 512


class InputError(ValueError):
    """Bad user input: the message names the file (and tile) and what to do."""


def remove_stale(directory: str | os.PathLike, pattern: str) -> None:
    """Remove files (or folders) in ``directory`` matching the glob ``pattern``: leftovers of killed jobs."""
    for stale in Path(directory).glob(pattern):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def same_grid(a, b) -> bool:
    """Whether two open rasters share CRS, transform and size (pixel for pixel the same grid)."""
    return (a.crs, a.transform, a.width, a.height) == (b.crs, b.transform, b.width, b.height)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only on success.

    The temporary name keeps the suffix so GDAL picks the right driver.  On any
    exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    # A killed job (SIGKILL, node failure) leaves its temporary file behind; only one job writes
    # a given output at a time, so any older temporary of this output is stale.
    remove_stale(path.parent, f".{path.stem}.tmp*{path.suffix}*" if path.suffix else f".{path.stem}.tmp*")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_csv_rows(path: str | os.PathLike, rows: list[dict], fieldnames: list[str]) -> None:
    """Write dict rows as CSV with a header, atomically."""
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)


def raster_profile(
    *,
    crs,
    transform,
    width: int,
    height: int,
    count: int = 1,
    dtype: str = "uint8",
    nodata=None,
    block_size: int = BLOCK_SIZE,
) -> dict:
    """GTiff creation profile: tiled, deflate-compressed, BigTIFF if needed."""
    tiled = width >= 16 and height >= 16
    profile = dict(
        driver="GTiff",
        crs=crs,
        transform=transform,
        width=width,
        height=height,
        count=count,
        dtype=dtype,
        nodata=nodata,
        compress="deflate",
        predictor=2 if np.dtype(dtype).kind in "iu" else 3,
        tiled=tiled,
        interleave="band" if count > 1 else "pixel",
        BIGTIFF="IF_SAFER",
        num_threads="ALL_CPUS",
    )
    if tiled:
        # GeoTIFF block sizes must be multiples of 16.
        block = max(16, min(block_size, (min(width, height) // 16) * 16))
        profile.update(blockxsize=block, blockysize=block)
    return profile


def block_windows(width: int, height: int, block_size: int = BLOCK_SIZE * 2) -> Iterator[Window]:
    """Row-major windows of at most ``block_size`` pixels covering a ``width`` x ``height`` grid."""
    for row in range(0, height, block_size):
        for col in range(0, width, block_size):
            yield Window(col, row, min(block_size, width - col), min(block_size, height - row))


def write_class_colormap(dst, table: ClassTable, band: int = 1) -> None:
    """Attach the class colour table and class names to a classified band."""
    dst.write_colormap(band, table.colormap())
    dst.update_tags(band, **table.names_tags())


def class_nodata(table: ClassTable | None) -> int:
    """Nodata of a class raster, or 0 for a continuous uint8 layer (``table`` None, e.g. the confidence)."""
    return table.nodata if table is not None else 0


def class_profile(crs, transform, width: int, height: int, table: ClassTable | None) -> dict:
    """Creation profile of a uint8 class-code raster (nodata: the table's) or continuous layer (table None: 0)."""
    return raster_profile(crs=crs, transform=transform, width=width, height=height, dtype="uint8",
                          nodata=class_nodata(table))


def describe_class_raster(dst, table: ClassTable | None, src) -> None:
    """Class colour table and names for a class raster; for a continuous layer (``table`` None), the source's
    band description and tags."""
    if table is not None:
        write_class_colormap(dst, table)
    else:
        dst.set_band_description(1, src.descriptions[0] or "")
        dst.update_tags(1, **src.tags(1))


def require_crs(src, path, what: str) -> None:
    """An input error naming ``what`` and ``path`` if the open raster ``src`` has no CRS."""
    if src.crs is None:
        raise InputError(f"{what} {path} has no CRS")


#: Relative tolerance when comparing a band's pixel size with the one the config expects.
_RESOLUTION_TOLERANCE = 1e-6


def check_band(src, path, *, expected_resolution: float, reference=None) -> None:
    """Fail with one line if a band has no CRS, another CRS than the reference, or an unexpected pixel size."""
    if src.crs is None:
        raise InputError(f"band {path} has no CRS; Sentinel-2 bands must be in their UTM zone: "
                         "use the original product's file")
    if reference is not None and src.crs != reference.crs:
        raise InputError(f"band {path} is in {src.crs}, but the tile's reference band is in {reference.crs}; "
                         "use the file of this tile (all bands of a tile share its UTM zone)")
    xres, yres = src.res
    if not (np.isclose(xres, expected_resolution, rtol=_RESOLUTION_TOLERANCE)
            and np.isclose(yres, expected_resolution, rtol=_RESOLUTION_TOLERANCE)):
        raise InputError(f"band {path} has a {xres:g} x {yres:g} m pixel size; expected {expected_resolution:g} m "
                         "(bands.resolution in the config); use the band's native-resolution file")
    if src.count != 1:
        raise InputError(f"band {path} has {src.count} bands; expected a single-band file: give one file per band")


def open_raster(path: str | os.PathLike, what: str = "raster"):
    """Open a raster with a one-line error that names the file if it is missing or corrupt."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} {path} does not exist")
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as err:
        raise InputError(f"{what} {path} cannot be read ({err}); re-download or regenerate it") from None
    return src


def to_cog(src_path: str | os.PathLike, dst_path: str | os.PathLike, resampling: str = "nearest") -> None:
    """Copy a GeoTIFF to a Cloud-Optimized GeoTIFF with internal overviews (atomic)."""
    with atomic_output(dst_path) as tmp:
        rasterio.shutil.copy(
            src_path,
            tmp,
            driver="COG",
            compress="deflate",
            predictor="standard",
            overview_resampling=resampling,
            blocksize=BLOCK_SIZE,
            bigtiff="IF_SAFER",
            num_threads="ALL_CPUS",
        )


@contextlib.contextmanager
def scratch_file(dst_path: str | os.PathLike) -> Iterator[Path]:
    """A scratch GeoTIFF beside ``dst_path`` for an intermediate step, removed whatever happens.

    A killed job's stale scratch file of the same output is removed first.
    """
    dst_path = Path(dst_path)
    dst_path.parent.mkdir(parents=True, exist_ok=True)
    scratch = dst_path.with_name(f".{dst_path.stem}.scratch{os.getpid()}.tif")
    remove_stale(dst_path.parent, f".{dst_path.stem}.scratch*.tif*")
    try:
        yield scratch
    finally:
        scratch.unlink(missing_ok=True)


def write_as_cog(dst_path: str | os.PathLike, write_gtiff, resampling: str = "nearest") -> None:
    """Run ``write_gtiff(path)`` into a scratch GeoTIFF beside ``dst_path``, then publish it as a COG.

    The scratch file is removed whatever happens, and ``dst_path`` appears only when complete.
    """
    with scratch_file(dst_path) as scratch:
        write_gtiff(scratch)
        to_cog(scratch, dst_path, resampling=resampling)
