"""Per-tile features: 20 m bands resampled to the 10 m grid, the 10-band stack, and NDWI."""

from __future__ import annotations

import os
from contextlib import ExitStack
from typing import Sequence

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from osmlulc.indices import normalized_difference
from osmlulc.io import InputError, atomic_output, block_windows, check_band, open_raster, raster_profile, same_grid

def resample_to_grid(
    band_path: str | os.PathLike,
    reference_path: str | os.PathLike,
    dst_path: str | os.PathLike,
    *,
    band_resolution: float,
    reference_resolution: float = 10.0,
    resampling: str = "bilinear",
) -> None:
    """Resample one band onto the grid of the tile's 10 m reference band, window by window.

    A warped VRT does the work, so a 20 m grid that is not a clean 2x decimation of the
    10 m grid (as in some real products) is still placed correctly; nodata stays nodata.
    """
    with open_raster(reference_path, "reference band") as ref, open_raster(band_path, "band") as src:
        check_band(ref, reference_path, expected_resolution=reference_resolution)
        check_band(src, band_path, expected_resolution=band_resolution, reference=ref)
        nodata = src.nodata if src.nodata is not None else 0
        profile = raster_profile(crs=ref.crs, transform=ref.transform, width=ref.width, height=ref.height,
                                 dtype=src.dtypes[0], nodata=nodata)
        with WarpedVRT(src, crs=ref.crs, transform=ref.transform, width=ref.width, height=ref.height,
                       resampling=Resampling[resampling], src_nodata=nodata, nodata=nodata) as vrt, \
                atomic_output(dst_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            dst.set_band_description(1, src.descriptions[0] or "")
            for window in block_windows(ref.width, ref.height):
                dst.write(vrt.read(1, window=window), 1, window=window)


def stack_bands(band_paths: Sequence[str | os.PathLike], band_names: Sequence[str], dst_path: str | os.PathLike,
                *, valid_mask: str | os.PathLike | None = None) -> None:
    """Combine single-band 10 m rasters on one grid into a multi-band stack, in the given order.

    A pixel that is nodata (0) in any band is nodata in every band of the stack, so later
    stages only need to look at one band to know whether a pixel is valid.  ``valid_mask``
    (same grid, 0 = masked, e.g. clouds from :func:`osmlulc.sentinel2_masks.write_valid_mask`) makes
    its masked pixels nodata too, so they are neither sampled nor classified.
    """
    if len(band_paths) != len(band_names):
        raise ValueError("stack_bands: one name per band path is needed")
    with ExitStack() as stack:
        sources = [stack.enter_context(open_raster(p, f"band {name}")) for p, name in zip(band_paths, band_names)]
        mask = stack.enter_context(open_raster(valid_mask, "valid-pixel mask")) if valid_mask is not None else None
        ref = sources[0]
        for src, path in zip(sources + ([mask] if mask else []), list(band_paths) + [valid_mask]):
            if not same_grid(src, ref):
                raise InputError(f"band {path} is not on the grid of {band_paths[0]}; resample it first")
        profile = raster_profile(crs=ref.crs, transform=ref.transform, width=ref.width, height=ref.height,
                                 count=len(sources), dtype=ref.dtypes[0], nodata=0)
        with atomic_output(dst_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            for i, name in enumerate(band_names, start=1):
                dst.set_band_description(i, name)
            for window in block_windows(ref.width, ref.height):
                block = np.stack([src.read(1, window=window) for src in sources])
                invalid = (block == 0).any(axis=0)
                if mask is not None:
                    invalid |= mask.read(1, window=window) == 0
                block[:, invalid] = 0
                dst.write(block, window=window)


def ndwi(stack_path: str | os.PathLike, dst_path: str | os.PathLike, *, green_band: str, nir_band: str,
         nodata: float = -9999.0) -> None:
    """McFeeters' NDWI = (green - NIR) / (green + NIR) of a stack, bands found by their description."""
    with open_raster(stack_path, "band stack") as src:
        names = list(src.descriptions)
        missing = [b for b in (green_band, nir_band) if b not in names]
        if missing:
            raise InputError(f"band stack {stack_path} lacks band(s) {missing}; it has {names}")
        green_index, nir_index = names.index(green_band) + 1, names.index(nir_band) + 1
        profile = raster_profile(crs=src.crs, transform=src.transform, width=src.width, height=src.height,
                                 dtype="float32", nodata=nodata)
        with atomic_output(dst_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            dst.set_band_description(1, "NDWI")
            for window in block_windows(src.width, src.height):
                green = src.read(green_index, window=window)
                nir = src.read(nir_index, window=window)
                dst.write(normalized_difference(green, nir, (green > 0) & (nir > 0), nodata), 1, window=window)
