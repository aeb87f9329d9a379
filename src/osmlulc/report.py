"""What a user looks at: quicklook PNGs of the products, confusion-matrix and training-curve plots,
the run's configuration, and a STAC item describing a country's products.

The plots are made with matplotlib's Agg backend (no display needed).  Quicklooks read a
raster decimated to at most ``max_size`` px on its long side (GDAL uses the COG overviews),
so memory does not grow with the country.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pystac
import rasterio
import rasterio.warp
import yaml
from pystac.extensions.classification import Classification, ClassificationExtension
from pystac.extensions.file import FileExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from rasterio.enums import Resampling

from osmlulc.classes import ClassTable
from osmlulc.io import InputError, atomic_output, open_raster

#: Media type of a Cloud-Optimized GeoTIFF.
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, png_path) -> None:
    plt = _pyplot()
    with atomic_output(png_path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


# --------------------------------------------------------------------------- quicklooks


def read_decimated(src, max_size: int) -> np.ndarray:
    """Band 1 of an open raster decimated (nearest) so its long side is at most ``max_size`` px."""
    scale = max(src.width, src.height) / max_size
    if scale <= 1:
        return src.read(1)
    shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
    return src.read(1, out_shape=shape, resampling=Resampling.nearest)


def class_legend(src) -> dict[int, tuple[str, tuple[float, float, float]]]:
    """Value -> (name, RGB 0..1) from a class raster's colour table and ``CLASS_<value>`` tags."""
    tags = src.tags(1)
    try:
        colormap = src.colormap(1)
    except ValueError:
        raise InputError(f"{src.name} has no colour table; a class quicklook needs one") from None
    legend = {}
    for key, name in tags.items():
        if key.startswith("CLASS_") and key[6:].isdigit():
            value = int(key[6:])
            legend[value] = (name, tuple(c / 255 for c in colormap[value][:3]))
    return dict(sorted(legend.items()))


def quicklook(raster_path, png_path, *, title: str, kind: str = "classes", max_size: int = 1024) -> None:
    """PNG of a product with a legend: ``kind="classes"`` (colour table + class names of the raster)
    or ``"continuous"`` (a colour bar; e.g. the confidence in percent).  Nodata is left white."""
    plt = _pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    with open_raster(raster_path, "product") as src:
        data = read_decimated(src, max_size)
        nodata = src.nodata
        legend = class_legend(src) if kind == "classes" else None
        label = src.descriptions[0] or ""
        units = src.tags(1).get("UNITS", "")
    valid = data != nodata if nodata is not None else np.ones(data.shape, bool)
    fig, ax = plt.subplots(figsize=(8, 8 * data.shape[0] / max(data.shape[1], 1) + 0.5))
    if kind == "classes":
        lut = np.ones((256, 4))
        for value, (_, rgb) in legend.items():
            lut[value, :3] = rgb
        rgba = lut[data.astype(np.int64)]
        rgba[~valid] = (1, 1, 1, 1)
        ax.imshow(rgba, interpolation="nearest")
        present = set(np.unique(data[valid]).tolist())
        handles = [Patch(facecolor=rgb, edgecolor="0.3",
                         label=f"{value} {name}" + ("" if value in present else " (absent)"))
                   for value, (name, rgb) in legend.items()]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)
    elif kind == "continuous":
        shown = np.ma.masked_array(data.astype(float), ~valid)
        image = ax.imshow(shown, cmap=ListedColormap(plt.get_cmap("viridis")(np.linspace(0, 1, 256))),
                          vmin=0, vmax=100 if units == "percent" else None, interpolation="nearest")
        fig.colorbar(image, ax=ax, shrink=0.7, label=f"{label}" if label else units)
    else:
        raise ValueError(f"quicklook: kind must be 'classes' or 'continuous', got {kind!r}")
    ax.set_title(title)
    ax.set_axis_off()
    _save(fig, png_path)


def plot_observation_histogram(raster_path, png_path, *, title: str, block_size: int = 2048) -> None:
    """Bar chart of the pixels per number of valid observations (read block by block; 0 = nodata is left out)."""
    plt = _pyplot()
    counts = np.zeros(256, dtype=np.int64)
    with open_raster(raster_path, "valid observations") as src:
        for _, window in src.block_windows(1) if src.width * src.height > block_size ** 2 else [(None, None)]:
            data = src.read(1, window=window)
            counts[: int(data.max()) + 1] += np.bincount(data.ravel().astype(np.int64), minlength=int(data.max()) + 1)
    counts[0] = 0
    top = int(np.flatnonzero(counts).max()) if counts.any() else 1
    total = counts.sum()
    fig, ax = plt.subplots(figsize=(7, 4))
    values = np.arange(1, top + 1)
    ax.bar(values, counts[1:top + 1] / max(total, 1) * 100, color="#3b75af")
    ax.set_xticks(values)
    ax.set_xlabel("valid observations per pixel")
    ax.set_ylabel("share of the mapped pixels (%)")
    mean = float((values * counts[1:top + 1]).sum() / max(total, 1))
    ax.set_title(f"{title}\nmean {mean:.2f}, {counts[1] / max(total, 1) * 100:.1f} % of pixels from a single date")
    _save(fig, png_path)


# --------------------------------------------------------------------------- plots of the accuracy tables


def plot_confusion_matrices(confusion_csv, png_path, *, title: str, columns: int = 3) -> None:
    """One panel per confusion matrix of a table written by :func:`osmlulc.assess.confusion_table`.

    Colours are the share of each reference class (row) given to each predicted class, so a
    perfect map is a dark diagonal; cells show the share in percent, the panel title the
    overall accuracy of the matrix.
    """
    plt = _pyplot()
    df = pd.read_csv(confusion_csv)
    predicted = [c for c in df.columns if c.startswith("predicted_")]
    keys = list(df.columns[:list(df.columns).index("reference")])
    groups = list(df.groupby(keys, sort=False)) if keys else [((), df)]
    n = len(groups)
    ncols = min(columns, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 4.4 * nrows), squeeze=False)
    codes = [c[len("predicted_"):] for c in predicted]
    for ax, (key, group) in zip(axes.ravel(), groups):
        cm = group[predicted].to_numpy(dtype=np.float64)
        rows = cm.sum(axis=1, keepdims=True)
        share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (i, j), value in np.ndenumerate(share):
            if value >= 0.005:
                ax.text(j, i, f"{100 * value:.0f}", ha="center", va="center", fontsize=5.5,
                        color="white" if value > 0.5 else "black")
        ax.set_xticks(range(len(codes)), codes, fontsize=7)
        ax.set_yticks(range(len(codes)), [str(c) for c in group["reference"]], fontsize=7)
        ax.set_xlabel("predicted class", fontsize=8)
        ax.set_ylabel("reference class", fontsize=8)
        total = cm.sum()
        accuracy = np.trace(cm) / total if total else float("nan")
        name = " / ".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
        ax.set_title(f"{name}\nOA {accuracy:.3f}, {int(total)} px", fontsize=9)
    for ax in axes.ravel()[n:]:
        ax.set_axis_off()
    fig.suptitle(f"{title} (row share in %)")
    fig.tight_layout()
    _save(fig, png_path)


def plot_training_history(history_csv, png_path, *, title: str) -> None:
    """Loss and accuracy per epoch, training and validation samples (the ResNet's history CSV)."""
    plt = _pyplot()
    history = pd.read_csv(history_csv)
    if history.empty:
        raise InputError(f"training history {history_csv} has no epoch")
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        ax.plot(history["epoch"], history[metric], marker="o", label="training")
        if f"val_{metric}" in history:
            ax.plot(history["epoch"], history[f"val_{metric}"], marker="s", label="validation (spatial split)")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, png_path)


# --------------------------------------------------------------------------- configuration


def write_run_config(config: dict, path) -> None:
    """The run's (merged, validated) configuration as YAML, keys in their order."""
    with atomic_output(path) as tmp:
        with open(tmp, "w") as f:
            f.write("# osmlulc: the configuration this run used (config/config.yaml merged with --configfile)\n")
            yaml.safe_dump(json.loads(json.dumps(config)), f, sort_keys=False, default_flow_style=None, width=110)


# --------------------------------------------------------------------------- STAC


def file_checksum(path, chunk: int = 1 << 20) -> str:
    """SHA2-256 multihash (hex) of a file, the form of the STAC file extension's ``file:checksum``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return "1220" + digest.hexdigest()


def _footprint_wgs84(src, densify: int = 21) -> tuple[list[float], dict]:
    """bbox and polygon (GeoJSON) in WGS84 of a raster's bounds, edges densified before reprojection."""
    left, bottom, right, top = src.bounds
    t = np.linspace(0, 1, densify)
    xs = np.concatenate([left + (right - left) * t, np.full(densify, right), right - (right - left) * t,
                         np.full(densify, left)])
    ys = np.concatenate([np.full(densify, top), top - (top - bottom) * t, np.full(densify, bottom),
                         bottom + (top - bottom) * t])
    lon, lat = rasterio.warp.transform(src.crs, "EPSG:4326", xs.tolist(), ys.tolist())
    ring = [[round(x, 7), round(y, 7)] for x, y in zip(lon, lat)]
    ring.append(ring[0])
    bbox = [min(lon), min(lat), max(lon), max(lat)]
    return [round(v, 7) for v in bbox], {"type": "Polygon", "coordinates": [ring]}


def _class_name(name: str) -> str:
    """A machine-readable class ``name`` (classification extension v2: letters, digits, ``-``, ``_``)."""
    return re.sub(r"[^0-9A-Za-z_-]+", "_", name).strip("_") or "class"


def add_raster_asset(item: pystac.Item, key: str, path, *, href: str, title: str, roles: list[str],
                     classes: dict | None = None, unit: str | None = None) -> pystac.Asset:
    """Add a GeoTIFF to ``item`` as asset ``key``: media type, file size and checksum, its raster band and,
    with ``classes`` (value -> (name, RGB colour)), the classification of its values."""
    with open_raster(path, "product") as src:
        nodata = src.nodata
        if nodata is not None:
            nodata = int(nodata) if float(nodata).is_integer() else float(nodata)
        band = RasterBand.create(data_type=DataType(src.dtypes[0]), spatial_resolution=float(abs(src.res[0])),
                                 nodata=nodata, unit=unit)
        layout = src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT")
    media_type = COG_MEDIA_TYPE if layout == "COG" else "image/tiff; application=geotiff"
    asset = add_file_asset(item, key, path, href=href, title=title, roles=roles, type=media_type)
    RasterExtension.ext(asset, add_if_missing=True).bands = [band]
    if classes is not None:
        ClassificationExtension.ext(asset, add_if_missing=True).classes = [
            Classification.create(value=int(value), name=_class_name(name), title=name,
                                  color_hint="".join(f"{c:02X}" for c in colour))
            for value, (name, colour) in sorted(classes.items())]
    return asset


def add_file_asset(item: pystac.Item, key: str, path, *, href: str, title: str, roles: list[str],
                   type: str | None = None) -> pystac.Asset:
    """Add a file to ``item`` as asset ``key``, with its size and checksum (file extension)."""
    asset = pystac.Asset(href, title=title, roles=roles, media_type=type)
    item.add_asset(key, asset)
    FileExtension.ext(asset, add_if_missing=True).apply(size=os.path.getsize(path), checksum=file_checksum(path))
    return asset


def stac_item(country: str, name: str, assets: dict[str, dict], item_path, *, start: str | None = None,
              end: str | None = None, extra_properties: dict | None = None) -> pystac.Item:
    """A STAC item (:class:`pystac.Item`, with the projection, raster, classification and file extensions)
    for a country's products.

    ``assets`` maps an asset key to keyword arguments of :func:`add_raster_asset` (with ``path``)
    or, for other files, of :func:`add_file_asset` (``path``, ``title``, ``roles``, ``type``).
    Hrefs are relative to ``item_path``'s folder.  The first GeoTIFF asset gives the geometry, bbox and the
    projection fields.  The item's time is the ``start`` / ``end`` period (ISO dates) of the
    imagery; without it, ``datetime`` is the first asset's modification time.
    """
    folder = Path(item_path).resolve().parent
    grid = next((spec["path"] for spec in assets.values() if str(spec["path"]).endswith((".tif", ".tiff"))), None)
    if grid is None:
        raise ValueError("stac_item: at least one GeoTIFF asset is needed")
    with open_raster(grid, "product") as src:
        bbox, geometry = _footprint_wgs84(src)
        epsg = src.crs.to_epsg()
        projection = dict(shape=[src.height, src.width], transform=[float(v) for v in list(src.transform)[:6]],
                          bbox=[float(v) for v in src.bounds])
        if epsg is None:
            projection["wkt2"] = src.crs.to_wkt()
        else:
            projection["epsg"] = epsg
        gsd = float(abs(src.res[0]))
    if start and end:
        times = dict(datetime=None, start_datetime=_utc(start), end_datetime=_utc(end, end_of_day=True))
    else:
        times = dict(datetime=pd.Timestamp(int(os.path.getmtime(grid)), unit="s", tz="UTC").to_pydatetime())
    item = pystac.Item(f"osmlulc-{country}-10m-3035", geometry, bbox,
                       properties={"title": f"{name} ({country}): land use / land cover and surface water, 10 m"},
                       **times)
    ProjectionExtension.ext(item, add_if_missing=True).apply(**projection)
    item.common_metadata.gsd = gsd
    item.properties.update(extra_properties or {})
    for key, spec in assets.items():
        spec = dict(spec)
        path = spec.pop("path")
        href = os.path.relpath(Path(path).resolve(), folder)
        if str(path).endswith((".tif", ".tiff")):
            add_raster_asset(item, key, path, href=href, **spec)
        else:
            add_file_asset(item, key, path, href=href, **spec)
    return item


def _utc(date: str, *, end_of_day: bool = False):
    """An ISO date or time as a UTC datetime (whole seconds); a bare end date means the end of that day."""
    stamp = pd.Timestamp(date)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    if end_of_day and stamp == stamp.normalize() and len(str(date)) <= 10:
        stamp = stamp + pd.Timedelta(days=1) - pd.Timedelta(seconds=1)
    return stamp.tz_convert("UTC").floor("s").to_pydatetime()


def stac_item_dict(item: pystac.Item) -> dict:
    """The JSON of an item as written: hrefs as given (relative to the item's folder), no self link."""
    return item.to_dict(include_self_link=False, transform_hrefs=False)


def write_stac_item(item: pystac.Item, path) -> dict:
    """Write an item's JSON (:func:`stac_item_dict`) atomically; return it."""
    data = stac_item_dict(item)
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2) + "\n")
    return data


def dropped_products(composite_records) -> list[dict]:
    """Products left out of the tiles' composites because they could not be read: tile, product, reason."""
    dropped = []
    for path in composite_records or []:
        with open(path) as f:
            record = json.load(f)
        dropped += [{"tile": record.get("tile"), **d} for d in record.get("dropped", [])]
    return dropped


def country_stac_item(country: str, name: str, products: dict[str, str], table: ClassTable, item_path, *,
                      quicklook_png=None, period: dict | None = None,
                      extra_properties: dict | None = None, source_items: list[dict] | None = None) -> dict:
    """The STAC item of one country: the classified map, the binary land-use layers, the confidence
    layer, the valid-observations layer and the quicklook.  ``products`` maps ``classified`` /
    ``confidence`` / ``valid_observations`` / ``lu<code>`` to paths.  ``source_items`` (the Sentinel-2
    STAC items composited, osmlulc.stac.acquisitions) are listed in ``osmlulc:source_items`` with
    their acquisition dates, and linked as ``derived_from``."""
    class_colours = {int(c.code): (c.name, c.colour) for c in table.classes}
    assets = {"classified": dict(path=products["classified"], title="land use / land cover (sieved)",
                                 roles=["data"], classes=class_colours)}
    for key, path in products.items():
        if key.startswith("lu"):
            code = int(key[2:])
            colour = class_colours[code][1]
            assets[key] = dict(path=path, title=f"{table.name(code)} (binary layer, sieved)", roles=["data"],
                               classes={0: (f"not {table.name(code)}", (211, 211, 211)),
                                        1: (table.name(code), colour)})
    if "confidence" in products:
        assets["confidence"] = dict(path=products["confidence"], roles=["data", "confidence"], unit="percent",
                                    title="confidence: maximum class probability of the model (%), 0 = nodata")
    if "valid_observations" in products:
        assets["valid_observations"] = dict(path=products["valid_observations"], roles=["data", "quality"],
                                            title="valid (cloud-free) observations per pixel of the composite, "
                                                  "0 = none or nodata")
    if quicklook_png is not None:
        assets["thumbnail"] = dict(path=quicklook_png, title="quicklook of the classified map", roles=["thumbnail"],
                                   type="image/png")
    period = period or {}
    extra = dict(extra_properties or {})
    if source_items:
        extra["osmlulc:source_items"] = source_items
        dates = {str(i["datetime"])[:10] for i in source_items if i.get("datetime")}
        extra["osmlulc:acquisition_dates"] = sorted(dates)
    item = stac_item(country, name, assets, item_path, start=period.get("start"), end=period.get("end"),
                     extra_properties=extra)
    for source in source_items or []:
        if source.get("href"):
            item.add_link(pystac.Link("derived_from", source["href"], media_type="application/geo+json",
                                      title=source["id"]))
    return write_stac_item(item, item_path)
