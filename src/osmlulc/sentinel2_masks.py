"""Masks of a Sentinel-2 product's unusable pixels (clouds, shadows, snow, nodata) on its 10 m grid.

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

from contextlib import ExitStack

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from scipy.ndimage import binary_dilation

from osmlulc.io import REFLECTANCE_SCALE, InputError, atomic_output, block_windows, check_band, raster_profile

from osmlulc.sentinel2 import Product, open_image, read_reflectance, read_window
from osmlulc.windows import core_slices, grown_window

#: Bands s2cloudless classifies (its ``all_bands=False`` input), in its order.
S2CLOUDLESS_BANDS = ("B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12")

#: L1C cloud detectors (``sentinel2.l1c_cloud_mask``).
L1C_DETECTORS = ("s2cloudless", "screen", "none")


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
        self.ref = self._stack.enter_context(open_image(ref_path, self.product, self.reference_band))
        check_band(self.ref, ref_path, expected_resolution=self.reference_resolution)
        self._on_grid[(self.reference_band, 1)] = self.ref
        return self

    def __exit__(self, *exc):
        self._stack.close()

    def onto(self, grid) -> None:
        """Read the product on ``grid`` (an open raster: the tile's 10 m grid) instead of its own reference grid.

        The reference band is read through a nearest-neighbour WarpedVRT (outside the product: its nodata,
        so masked); the other bands follow it (:meth:`on_grid`). Nothing changes if it is on ``grid`` already.
        """
        ref = self.ref
        if (ref.crs, ref.transform, ref.width, ref.height) == (grid.crs, grid.transform, grid.width, grid.height):
            return
        self.ref = self._stack.enter_context(WarpedVRT(
            ref, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
            resampling=Resampling.nearest, src_nodata=self.product.nodata, nodata=self.product.nodata))
        self._on_grid = {(self.reference_band, 1): self.ref}

    @property
    def flag_reason(self) -> str:
        return {"SCL": "scl", "screen": "cloud_screen", "s2cloudless": "s2cloudless"}.get(self.method, "scl")

    def on_grid(self, band: str, factor: int = 1, resampling=Resampling.nearest):
        """A band on the reference grid coarsened ``factor`` times (nearest, or ``resampling``)."""
        key = (band, factor)
        if key not in self._on_grid:
            ref = self.ref
            src = self._stack.enter_context(open_image(self.product.band_file(band), self.product, band))
            # (a product put onto a tile grid of another CRS by onto() has all its bands warped)
            if src.crs != ref.crs and not isinstance(ref, WarpedVRT):
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
        grown = grown_window(window, self.halo(), ref.width, ref.height)
        nodata = read_window(ref, self.product, self.reference_band, grown) == self.product.nodata
        flagged = self._flags(grown) & ~nodata
        masked = nodata | flagged
        if self.buffer_px > 0 and flagged.any():
            # A square structuring element: the buffer is buffer_px pixels in every direction.
            masked = nodata | binary_dilation(flagged, structure=np.ones((3, 3), bool), iterations=self.buffer_px)
        rows, cols = core_slices(window, grown)
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
