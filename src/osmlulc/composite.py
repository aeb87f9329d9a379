"""Multi-date composites: several Sentinel-2 products of one tile -> one cloud-free set of band files.

Each product is masked as a single product would be (:class:`osmlulc.sentinel2_masks.ProductMask`: L2A
by its SCL classes, L1C by s2cloudless or the hand screen, plus nodata and an optional buffer) and
brought to reflectance x 10000 with its *own* radiometric offset and quantification (products of
baselines before and after 04.00 can be mixed).  Per pixel, the valid observations are reduced:

* ``median`` (default): per band, the median of the valid observations (the mean of the two
  middle values for an even count, rounded to the nearest integer).
* ``medoid``: the observation closest (sum of squared differences over all composited bands) to
  the per-band median; all bands of a pixel then come from one date, so they stay consistent.
  Ties go to the first product in the given order (acquisition date, then id).

An *observation* of a product at a 10 m pixel is valid if the product's mask keeps the pixel and
every composited band has data there.  A 20 m (60 m) band pixel uses the observation of its
upper-left 10 m pixel, so every band of a pixel is reduced over the same dates.  A pixel without
any valid observation is nodata (0) in every band.  ``valid_observations.tif`` holds the count per
10 m pixel (uint8; uint16 beyond 255 products), ``valid_mask.tif`` is 1 where the count is > 0.

**Any grid.** The tile's 10 m grid is the reference band grid of the first product (on real data the
tile's MGRS grid).  A product whose reference band is not on it, and a band that is not on its own
grid of the tile (the reference grid coarsened by the band's factor: the 20 m bands of some real
products are not a clean decimation of their 10 m grid), is read through a nearest-neighbour
:class:`~rasterio.vrt.WarpedVRT` onto it, as the single-product path does; bands already on the grid
are read directly (no warping).  A product that does not overlap the tile is an error naming it.

**Unreadable products** (:func:`composite_products`): a product that cannot be opened or read
(corrupt, truncated, an HTTP failure after the retries) is dropped with one warning line naming it
and the reason, and the tile is composited from the others; the record of the composite lists it.
Only when no product of the tile can be read does the composite fail (or, with
``product.allow_missing_tiles``, write an all-nodata tile whose record says why, so the tile's input
check leaves it out of the country products).  ``composite.drop_unreadable_products: false`` fails instead.

Work is done window by window on the 10 m reference grid; windows are multiples of the coarsest
band factor and sized so that the observations held at once (products x bands x window) stay
within ``memory_mb``: memory does not grow with the number of products or the tile size.
GDAL's caches are sized from the same ``memory_mb`` (:func:`gdal_cache_options`): every product x
band stays open, and GDAL's default per-file cache (25 MB each) would otherwise grow with them.
A reference band whose grid is not the tile's (``tile_grid``, within one pixel) is refused before
anything is composited: a catalogue could declare any size.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from osmlulc.io import InputError, atomic_output, block_windows, check_band, raster_profile
from osmlulc.logs import progress
from osmlulc.sentinel2 import Product, open_image, read_reflectance
from osmlulc.sentinel2_masks import ProductMask

log = logging.getLogger("osmlulc")

METHODS = ("median", "medoid")


def median_of_valid(values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel median over axis 0 of ``values`` where ``valid``; returns (median float32, count).

    Pixels without a valid value get 0.  The median of an even count is the mean of the two middle values.
    """
    # Invalid observations sort last: uint16 reflectances (the fast path) get 65535, others infinity.
    if values.dtype == np.uint16:
        data = np.where(valid, values, np.uint16(65535))
    else:
        data = np.where(valid, values.astype(np.float32), np.float32(np.inf))
    data.sort(axis=0)
    count = valid.sum(axis=0)
    lo = np.maximum(count - 1, 0) // 2
    hi = count // 2
    hi = np.minimum(hi, np.maximum(count - 1, 0))
    a = np.take_along_axis(data, lo[np.newaxis], axis=0)[0]
    b = np.take_along_axis(data, hi[np.newaxis], axis=0)[0]
    median = np.where(count > 0, (a.astype(np.float32) + b.astype(np.float32)) / 2, 0).astype(np.float32)
    return median, count


def medoid_index(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Index (axis 0) of the observation closest to the per-band median; ``values`` is (products, bands, h, w).

    ``valid`` is (products, h, w); the distance is the sum of squared differences over the bands.
    Pixels without a valid observation get 0 (they are nodata anyway).
    """
    dist = np.zeros(valid.shape, dtype=np.float32)
    for b in range(values.shape[1]):
        median, _ = median_of_valid(values[:, b], valid)
        dist += np.square(values[:, b].astype(np.float32) - median[np.newaxis])
    dist[~valid] = np.inf
    return np.argmin(dist, axis=0)


def window_size(n_products: int, n_bands: int, memory_mb: float, multiple: int, largest: int = 2040) -> int:
    """Edge (10 m px) of square windows whose observations (about 12 bytes per value in flight) fit ``memory_mb``."""
    per_px = max(1, n_products) * max(1, n_bands) * 12
    edge = int(math.sqrt(memory_mb * 1e6 / per_px))
    edge = max(multiple, min(largest, edge) // multiple * multiple)
    return edge


def gdal_cache_options(memory_mb: float, n_files: int) -> dict:
    """GDAL settings that keep its caches within about half of ``memory_mb`` with ``n_files`` open at once.

    A sixth each for the raster block cache (``GDAL_CACHEMAX``), the per-file read-ahead caches
    (``VSI_CACHE_SIZE``, shared out over the open files) and the /vsicurl/ region cache.
    """
    share = memory_mb * 1e6 / 6
    return {
        "GDAL_CACHEMAX": max(8 << 20, int(share)),   # bytes: rasterio calls GDALSetCacheMax64
        "VSI_CACHE": "TRUE",
        "VSI_CACHE_SIZE": str(max(64 * 1024, int(share / max(1, n_files)))),
        "CPL_VSIL_CURL_CACHE_SIZE": str(max(1 << 20, int(share))),
    }


def check_tile_grid(ref, tile_grid: dict, where: str) -> None:
    """Refuse a reference band that is not on the tile's grid (``{crs, bounds}``) within one pixel."""
    left, bottom, right, top = (float(v) for v in tile_grid["bounds"])
    px = max(abs(ref.res[0]), abs(ref.res[1]))
    off = max(abs(a - b) for a, b in zip(ref.bounds, (left, bottom, right, top)))
    if ref.crs != CRS.from_user_input(tile_grid["crs"]) or off > px:
        raise InputError(f"{where}: reference band is {ref.width} x {ref.height} px at {tuple(ref.bounds)} "
                         f"({ref.crs}), not the tile's footprint {[left, bottom, right, top]} ({tile_grid['crs']}) "
                         "within one pixel; refused")


def _factor(resolution: float, reference_resolution: float) -> int:
    factor = float(resolution) / float(reference_resolution)
    if factor < 1 or abs(factor - round(factor)) > 1e-9:
        raise InputError(f"band resolution {resolution} m is not a multiple of the reference {reference_resolution} m")
    return int(round(factor))


def _display(gdal_path: str) -> str:
    return gdal_path.removeprefix("/vsicurl/")


def composite_tile(products: list[Product], *, bands: dict[str, float], reference_band: str,
                   band_outputs: dict[str, str | os.PathLike], valid_observations: str | os.PathLike,
                   valid_mask: str | os.PathLike | None = None, method: str = "median", memory_mb: float = 512,
                   scl_classes: list[int], l1c_detector: str = "s2cloudless", l1c_screen: dict | None = None,
                   s2cloudless: dict | None = None, buffer_px: int = 0,
                   tile_grid: dict | None = None) -> list[dict]:
    """Composite ``products`` (one tile, in acquisition order) into ``band_outputs`` (band -> path, native grid).

    ``bands`` maps every composited band to its resolution (m); the reference band's grid is the
    10 m grid of the tile, checked against ``tile_grid`` ({crs, bounds}) when given.  Returns per
    product: its path and masked fractions by reason.
    """
    if method not in METHODS:
        raise InputError(f"composite.method {method!r} is not one of {METHODS}")
    if not products:
        raise InputError("no product to composite")
    if reference_band not in bands:
        raise InputError(f"the reference band {reference_band} is not among the composited bands {sorted(bands)}")
    names = list(band_outputs)
    reference_resolution = float(bands[reference_band])
    factors = {b: _factor(bands[b], reference_resolution) for b in names}
    with ExitStack() as stack:
        masks = []
        for k, product in enumerate(products):
            masks.append(_unreadable_as(k, lambda p=product: stack.enter_context(ProductMask(
                p, reference_band=reference_band, reference_resolution=reference_resolution,
                scl_classes=scl_classes, l1c_detector=l1c_detector, l1c_screen=l1c_screen,
                s2cloudless=s2cloudless, buffer_px=buffer_px))))
            if tile_grid is not None:
                check_tile_grid(masks[-1].ref, tile_grid, f"product {product.path}")
        ref = masks[0].ref
        for k, mask in enumerate(masks[1:], start=1):
            _onto_tile_grid(k, mask, ref)
        sources: dict[str, list] = {}
        for band in names:
            sources[band] = [_unreadable_as(k, _band_on_tile_grid, stack, product, band, bands[band], ref,
                                            factors[band])
                             for k, product in enumerate(products)]
        multiple = math.lcm(*factors.values(), *(m.s2cloudless["resolution"] // 10 for m in masks
                                                 if m.method == "s2cloudless"))
        edge = window_size(len(products), len(names), memory_mb, multiple)
        count_dtype = "uint8" if len(products) < 256 else "uint16"
        tags = dict(METHOD=method, PRODUCTS=" ".join(Path(p.path).name for p in products),
                    N_PRODUCTS=str(len(products)), SCALE="reflectance x 10000")
        writers = {}
        for band in names:
            first = sources[band][0]
            tmp = stack.enter_context(atomic_output(band_outputs[band]))
            dst = stack.enter_context(rasterio.open(tmp, "w", **raster_profile(
                crs=first.crs, transform=first.transform, width=first.width, height=first.height,
                dtype="uint16", nodata=0)))
            dst.set_band_description(1, band)
            dst.update_tags(**tags)
            writers[band] = dst
        tmp = stack.enter_context(atomic_output(valid_observations))
        count_dst = stack.enter_context(rasterio.open(tmp, "w", **raster_profile(
            crs=ref.crs, transform=ref.transform, width=ref.width, height=ref.height, dtype=count_dtype, nodata=None)))
        count_dst.set_band_description(1, "valid_observations")
        count_dst.update_tags(1, VALUES="number of valid (unmasked) observations per pixel", **tags)
        mask_dst = None
        if valid_mask is not None:
            tmp = stack.enter_context(atomic_output(valid_mask))
            mask_dst = stack.enter_context(rasterio.open(tmp, "w", **raster_profile(
                crs=ref.crs, transform=ref.transform, width=ref.width, height=ref.height, dtype="uint8", nodata=None)))
            mask_dst.set_band_description(1, "valid")
            mask_dst.update_tags(1, VALUES="1 at least one valid observation, 0 none")
        log.info("composite of %d products (%s), %d bands, windows of %d px", len(products), method, len(names), edge)
        windows = list(block_windows(ref.width, ref.height, edge))
        for window in progress(windows, "composite windows"):
            _composite_window(window, masks, sources, factors, names, method, writers, count_dst, mask_dst,
                              count_dtype)
    report = []
    for mask in masks:
        fractions = {k: round(v, 5) for k, v in mask.fractions().items() if v}
        log.info("product %s (%s, %s): masked share %.4f %s", mask.product.path, mask.product.level, mask.method,
                 sum(fractions.values()), fractions)
        report.append({"product": mask.product.path, "method": mask.method, "masked": fractions})
    return report


def _composite_window(window, masks, sources, factors, names, method, writers, count_dst, mask_dst, count_dtype):
    h, w = window.height, window.width
    valid = np.stack([~_unreadable_as(k, m.masked, window) for k, m in enumerate(masks)])   # (products, h, w), 10 m
    coarse, fine = {}, {}
    for band in names:
        f = factors[band]
        cw = Window(window.col_off // f, window.row_off // f, -(-w // f), -(-h // f))
        data = np.stack([_unreadable_as(k, read_reflectance, src, m.product, band, cw)
                         for k, (src, m) in enumerate(zip(sources[band], masks))])
        coarse[band] = data
        fine[band] = data if f == 1 else np.repeat(np.repeat(data, f, axis=1), f, axis=2)[:, :h, :w]
        valid &= fine[band] > 0
    count = valid.sum(axis=0)
    if method == "medoid":
        index = medoid_index(np.stack([fine[b] for b in names], axis=1), valid)
    for band in names:
        f = factors[band]
        valid_c = valid[:, ::f, ::f]
        any_c = valid_c.any(axis=0)
        if method == "median":
            median, _ = median_of_valid(coarse[band], valid_c)
            out = np.clip(np.rint(median), 1, 65535).astype(np.uint16)
        else:
            out = np.take_along_axis(coarse[band], index[::f, ::f][np.newaxis], axis=0)[0]
        out[~any_c] = 0
        cw = Window(window.col_off // f, window.row_off // f, out.shape[1], out.shape[0])
        writers[band].write(out, 1, window=cw)
    count_dst.write(count.astype(count_dtype), 1, window=window)
    if mask_dst is not None:
        mask_dst.write((count > 0).astype(np.uint8), 1, window=window)


# --------------------------------------------------------------------------- products on any grid of the tile


class ProductUnreadable(Exception):
    """A product of a composite cannot be read; ``index`` is its place in the product list."""

    def __init__(self, index: int, reason: str):
        super().__init__(reason)
        self.index, self.reason = index, reason


class NoReadableProduct(InputError):
    """No product of a composite can be read; ``dropped`` lists them with their reasons."""

    def __init__(self, dropped: list[dict]):
        super().__init__("no product of the tile can be read: "
                         + "; ".join(f"{d['product']} ({d['reason']})" for d in dropped))
        self.dropped = dropped


def _unreadable_as(index: int, read, *args):
    """``read(*args)``; a failure to open or read product ``index`` becomes :class:`ProductUnreadable`."""
    try:
        return read(*args)
    except (InputError, rasterio.errors.RasterioError) as err:
        raise ProductUnreadable(index, str(err).splitlines()[0] if str(err) else type(err).__name__) from None


def _overlaps(src, grid) -> bool:
    bounds = src.bounds if src.crs == grid.crs else transform_bounds(src.crs, grid.crs, *src.bounds)
    g = grid.bounds
    return bounds[0] < g[2] and bounds[2] > g[0] and bounds[1] < g[3] and bounds[3] > g[1]


def _onto_tile_grid(index: int, mask: ProductMask, grid) -> None:
    """Put product ``index``'s mask (and so its reference band) onto the tile's 10 m grid; an error (not a
    dropped product) if the product lies elsewhere."""
    if not _overlaps(mask.ref, grid):
        raise InputError(f"product {mask.product.path} does not overlap the tile's grid ({grid.crs}, bounds "
                         f"{tuple(round(v) for v in grid.bounds)}); composite products of one tile only")
    _unreadable_as(index, mask.onto, grid)


def _band_on_tile_grid(stack: ExitStack, product: Product, band: str, resolution: float, grid, factor: int):
    """A product's band on its grid of the tile (the 10 m grid coarsened ``factor`` times): the file itself
    if it is on it (the fast path), else a nearest-neighbour WarpedVRT of it (nodata outside the product)."""
    path = product.band_file(band, int(resolution))
    src = stack.enter_context(open_image(path, product, band))
    check_band(src, _display(path), expected_resolution=resolution)
    transform = grid.transform * Affine.scale(factor)
    shape = (-(-grid.height // factor), -(-grid.width // factor))
    if src.crs == grid.crs and src.transform.almost_equals(transform) and src.shape == shape:
        return src
    if not _overlaps(src, grid):
        raise InputError(f"band {band} of product {product.path} ({_display(path)}) does not overlap the tile's "
                         "grid; composite products of one tile only")
    log.info("band %s of product %s is not on the tile's %g m grid: read through a warped VRT", band,
             product.path, resolution)
    return stack.enter_context(WarpedVRT(src, crs=grid.crs, transform=transform, width=shape[1], height=shape[0],
                                         resampling=Resampling.nearest, src_nodata=product.nodata,
                                         nodata=product.nodata))


# --------------------------------------------------------------------------- unreadable products are dropped


def composite_readable(products: list, *, drop_unreadable: bool = True, **kwargs) -> dict:
    """:func:`composite_tile` of the products that can be read; returns the composite's record.

    ``products`` holds opened products and, for those that could not even be opened, ``(path, reason)``
    pairs. A product that fails while it is read is dropped and the composite starts again without it.
    The record: ``ok``, ``products`` (composited), ``dropped`` (``product``, ``reason``), ``masked``
    (per composited product). Raises :class:`InputError` if no product can be read, or, with
    ``drop_unreadable`` false, at the first that cannot.
    """
    dropped = []
    readable = []
    for item in products:
        if isinstance(item, tuple):
            dropped.append(_drop(item[0], item[1], drop_unreadable))
        else:
            readable.append(item)
    while readable:
        try:
            report = composite_tile(readable, **kwargs)
        except ProductUnreadable as err:
            dropped.append(_drop(readable.pop(err.index).path, err.reason, drop_unreadable))
            continue
        return {"ok": True, "products": [p.path for p in readable], "dropped": dropped, "masked": report}
    raise NoReadableProduct(dropped)


def _drop(path: str, reason: str, drop_unreadable: bool) -> dict:
    if not drop_unreadable:
        raise InputError(f"product {path} cannot be read ({reason}); composite.drop_unreadable_products is "
                         "false: fix or re-download it, or set it true to composite the tile without it")
    log.warning("dropped product %s: %s", path, reason)
    return {"product": str(path), "reason": reason}


def write_nodata_composite(grid: dict, *, bands: dict[str, float], band_outputs: dict, valid_observations,
                           valid_mask=None) -> None:
    """All-nodata outputs of a composite on the tile's configured ``grid`` ({crs, bounds}): no product could be
    read (``product.allow_missing_tiles``; the tile's input check leaves it out of the country products)."""
    left, bottom, right, top = grid["bounds"]
    outputs = [(band_outputs[b], bands[b], "uint16", 0) for b in band_outputs]
    outputs += [(valid_observations, 10.0, "uint8", None)] + ([(valid_mask, 10.0, "uint8", None)] if valid_mask else [])
    for path, res, dtype, nodata in outputs:
        width, height = int(round((right - left) / res)), int(round((top - bottom) / res))
        with atomic_output(path) as tmp, rasterio.open(tmp, "w", **raster_profile(
                crs=grid["crs"], transform=from_origin(left, top, res, res), width=width, height=height,
                dtype=dtype, nodata=nodata)) as dst:
            for window in block_windows(width, height):
                dst.write(np.zeros((window.height, window.width), dtype), 1, window=window)


def write_composite_record(record: dict, path) -> None:
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=1) + "\n")


def read_composite_record(path) -> dict:
    """A tile's composite record (composited and dropped products); ``ok`` false if none could be read."""
    return json.loads(Path(path).read_text())


def composite_products(tile: str, *, manifest: str | os.PathLike | None = None, products: list | None = None,
                       offset: float | None = None, http: dict | None = None, mask_settings: dict | None = None,
                       stac_settings: dict | None = None, record: str | os.PathLike | None = None,
                       drop_unreadable: bool = True, missing_grid: dict | None = None, **kwargs) -> dict:
    """:func:`composite_readable` of the tile's local ``products`` (paths) or of a STAC ``manifest``'s items.

    ``mask_settings`` is the config's ``sentinel2`` section (SCL classes, L1C detector and its
    settings, buffer); ``http`` the retries and time-outs of reading over HTTP (``stac.http``, complete;
    GDAL's own without it);
    ``stac_settings`` the country's stac section, whose opt-ins decide which asset hrefs are read
    (:mod:`osmlulc.hrefs`; https URLs only without it).
    ``record`` (JSON) gets the composited and the dropped products. ``missing_grid`` ({crs, bounds}, with
    ``product.allow_missing_tiles``): if no product can be read, write all-nodata outputs on it and a
    record with ``ok`` false instead of failing.
    """
    from osmlulc import stac
    from osmlulc.hrefs import HrefPolicy
    from osmlulc.sentinel2 import open_product

    settings = mask_settings or {}
    screen = settings.get("l1c_cloud_screen")
    mask_kwargs = dict(
        scl_classes=settings.get("scl_mask_classes", [0, 1, 3, 8, 9, 10, 11]),
        l1c_detector=settings.get("l1c_cloud_mask", "s2cloudless"),
        l1c_screen=screen if screen and screen.get("enabled", True) else None,
        s2cloudless=settings.get("s2cloudless"),
        buffer_px=settings.get("mask_buffer_px", 0),
    )
    with rasterio.Env(**(stac.gdal_http_options(http) if http is not None else {})):
        if manifest is not None:
            items = stac.manifest_products(stac.read_manifest(manifest), HrefPolicy.from_settings(stac_settings))
        else:
            items = []
            for path in products:
                try:
                    items.append(open_product(path, tile, offset=offset))
                except InputError as err:
                    items.append((str(path), str(err)))
        n_files = len(items) * (len(kwargs.get("band_outputs", ())) + 2)   # + the mask's reference band and SCL
        try:
            with rasterio.Env(**gdal_cache_options(kwargs.get("memory_mb", 512), n_files)):
                result = composite_readable(items, drop_unreadable=drop_unreadable, **kwargs, **mask_kwargs)
        except NoReadableProduct as err:
            if missing_grid is None:
                raise
            log.warning("tile %s: %s; its composite is all nodata (product.allow_missing_tiles)", tile, err)
            write_nodata_composite(missing_grid, bands=kwargs["bands"], band_outputs=kwargs["band_outputs"],
                                   valid_observations=kwargs["valid_observations"],
                                   valid_mask=kwargs.get("valid_mask"))
            result = {"ok": False, "products": [], "masked": [], "dropped": err.dropped,
                      "message": f"tile {tile}: {err}"}
    result = {"tile": tile, **result}
    if result["dropped"] and result["ok"]:
        log.info("tile %s composited from %d of %d products; dropped: %s", tile, len(result["products"]),
                 len(result["products"]) + len(result["dropped"]), [d["product"] for d in result["dropped"]])
    if record is not None:
        write_composite_record(result, record)
    return result


def product_input_files(path: str | os.PathLike) -> list[str]:
    """The files a rule reading a product depends on: every file in a product folder (SAFE or folder of
    bands), or the file itself (a zip). A band replaced in place inside a folder changes no folder mtime,
    but its own: listing the files makes the rules that read it stale. A path that does not exist is kept
    (snakemake names it as a missing input)."""
    path = Path(path)
    if not path.is_dir():
        return [str(path)]
    files = sorted(str(Path(root) / name) for root, _, names in os.walk(path) for name in names
                   if not name.startswith("."))
    return files or [str(path)]


def resolve_products(products, tile: str) -> list[str]:
    """The product paths of a tile: a list (kept in its order), or a pattern with ``{tile}`` (sorted matches)."""
    if isinstance(products, (list, tuple)):
        paths = [str(p).format(tile=tile) for p in products]
    else:
        path = str(products).format(tile=tile)
        paths = sorted(glob.glob(path)) if glob.has_magic(path) else [path]
    if not paths:
        raise InputError(f"Sentinel-2 product pattern {products} matches no product of tile {tile}; "
                         "download the products or fix countries.<CC>.products")
    return paths

