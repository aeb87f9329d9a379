"""Sentinel-2 imagery found through a STAC API and read straight over HTTP.

:func:`search_tile` asks a STAC API (pystac-client) for the items of one MGRS tile in a period
and writes a *manifest* (JSON): the search settings and, per item, its id, acquisition time,
cloud cover, processing baseline, the hrefs of the assets named in ``assets`` (band -> asset
key) and each band's radiometric offset.  Items are those of the tile (``grid:code``
``MGRS-32UNU``, ``s2:mgrs_tile``, ``mgrs:*`` or ``tile:*`` properties, or the tile in the id) with
``eo:cloud_cover <= max_cloud_cover``; the ``max_items_per_tile`` least cloudy are kept and
listed by acquisition time, then id: the manifest pins the inputs of the tile, so a rerun with
the same settings reads the same scenes (Snakemake reruns the search only when its settings change).

:func:`manifest_products` turns the manifest into :class:`osmlulc.sentinel2.Product` objects
whose band files are GDAL ``/vsicurl/`` paths: the composite reads only the windows it needs
from the Cloud-Optimized GeoTIFFs, nothing is downloaded whole.  :func:`gdal_http_options`
gives GDAL's retry and time-out settings.

**Untrusted input.** The API's answers are data: ``stac.url`` must be https, every asset href is
checked by :mod:`osmlulc.hrefs` when the manifest is written and again when it is read (https
URLs only unless the config opts in), an item missing its keys or with malformed values fails in
one line naming the API, and the whole search has a deadline (``stac.http.search_deadline_s``)
on top of the per-read time-out.

**Offsets.** A band's offset in DN is ``raster:bands[0].offset / raster:bands[0].scale`` of its
asset (Earth Search: ``-0.1 / 0.0001 = -1000`` for baseline >= 04.00); an item flagged
``earthsearch:boa_offset_applied: true`` has the offset already removed (0); without
``raster:bands``, baseline >= 04.00 means -1000.  ``offset: none`` in the settings ignores all of
that (0), for catalogues that harmonise their values.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from osmlulc.hrefs import HrefPolicy, check_api_url, check_href
from osmlulc.io import InputError, atomic_output
from osmlulc.io import REFLECTANCE_SCALE
from osmlulc.sentinel2 import BASELINE_04_OFFSET, Product, baseline_at_least_4

log = logging.getLogger("osmlulc")

MANIFEST_VERSION = 1

#: Asset keys of Earth Search's ``sentinel-2-l2a`` collection (v1) for the bands osmlulc reads.
EARTH_SEARCH_ASSETS = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1", "B06": "rededge2",
    "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09", "B11": "swir16", "B12": "swir22", "SCL": "scl",
}

_TILE_PROPERTIES = ("s2:mgrs_tile", "mgrs:tile", "tile:id")


def item_tile(item: dict) -> str | None:
    """The MGRS tile of a STAC item (dict), from its grid/MGRS properties or its id."""
    props = item.get("properties", {})
    code = props.get("grid:code")
    if isinstance(code, str) and code.upper().startswith("MGRS-"):
        return code[5:].upper()
    for key in _TILE_PROPERTIES:
        if props.get(key):
            return str(props[key]).upper().removeprefix("T")
    if all(k in props for k in ("mgrs:utm_zone", "mgrs:latitude_band", "mgrs:grid_square")):
        return f"{int(props['mgrs:utm_zone']):02d}{props['mgrs:latitude_band']}{props['mgrs:grid_square']}".upper()
    match = re.search(r"(?:^|_)T?(\d{2}[C-HJ-NP-X][A-HJ-NP-Z][A-HJ-NP-V])(?=_|$)", item.get("id", ""))
    return match.group(1) if match else None


def _baseline(props: dict) -> str | None:
    for key in ("s2:processing_baseline", "processing:version", "sentinel:processing_baseline"):
        if props.get(key) is not None:
            return str(props[key])
    return None


def band_offset(item: dict, asset: dict, baseline: str | None, mode: str = "metadata") -> tuple[float, float]:
    """(offset in DN, quantification) of one asset of an item (module docstring)."""
    if mode == "none":
        return 0.0, REFLECTANCE_SCALE
    bands = asset.get("raster:bands") or []
    scale = bands[0].get("scale") if bands else None
    quantification = 1.0 / float(scale) if scale else REFLECTANCE_SCALE
    if item.get("properties", {}).get("earthsearch:boa_offset_applied") is True:
        return 0.0, quantification
    if bands and bands[0].get("offset") is not None and scale:
        return float(bands[0]["offset"]) / float(scale), quantification
    if baseline_at_least_4(baseline):
        return BASELINE_04_OFFSET, quantification
    return 0.0, quantification


@contextmanager
def malformed_items(where: str, item=None):
    """Turn a missing key or a malformed value of the API's answer into one line naming the API (and item)."""
    try:
        yield
    except InputError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        which = f" (item {str(item.get('id'))[:80]!r})" if isinstance(item, dict) else ""
        raise InputError(f"{where}: malformed STAC answer{which}: {type(err).__name__} {str(err)[:100]!r}; "
                         "check stac.url and stac.collection") from None


def check_item(item) -> None:
    """Raise KeyError/TypeError unless ``item`` has the shape the search reads (id, properties, assets)."""
    if not isinstance(item, dict) or not isinstance(item["id"], str):
        raise TypeError("an item is not an object with a string id")
    if not isinstance(item["properties"], dict) or not isinstance(item.get("assets", {}), dict):
        raise TypeError("properties or assets is not an object")
    cover = item["properties"].get("eo:cloud_cover")
    if cover is not None:
        float(cover)


def manifest_entry(item: dict, assets: dict[str, str], offset_mode: str = "metadata",
                   policy: HrefPolicy = HrefPolicy()) -> dict:
    """One item of the manifest: what the composite needs to read and scale its bands."""
    props = item.get("properties", {})
    baseline = _baseline(props)
    missing = [f"{band} ({key})" for band, key in assets.items() if key not in item.get("assets", {})]
    if missing:
        raise InputError(f"STAC item {item.get('id')} has no asset {', '.join(missing)}; "
                         "fix stac.assets (band -> asset key) for this catalogue")
    hrefs, offsets, quantification = {}, {}, {}
    for band, key in assets.items():
        asset = item["assets"][key]
        check_href(asset.get("href"), policy, item=item["id"], asset=key)
        hrefs[band] = asset["href"]
        if band != "SCL":
            offsets[band], quantification[band] = band_offset(item, asset, baseline, offset_mode)
    quant = sorted(set(quantification.values())) or [REFLECTANCE_SCALE]
    if len(quant) > 1:
        raise InputError(f"STAC item {item.get('id')} has bands of different scales {quant}; not supported")
    self_links = [link["href"] for link in item.get("links", []) if link.get("rel") == "self"]
    return {
        "id": item["id"],
        "collection": item.get("collection"),
        "datetime": props.get("datetime") or props.get("start_datetime"),
        "tile": item_tile(item),
        "cloud_cover": props.get("eo:cloud_cover"),
        "processing_baseline": baseline,
        "level": "L2A" if "SCL" in assets else "L1C",
        "quantification": quant[0],
        "offsets": offsets,
        "assets": hrefs,
        "href": self_links[0] if self_links else None,
    }


def select_items(items: list[dict], tile: str, max_cloud_cover: float, max_items: int) -> tuple[list[dict], dict]:
    """The tile's items with cloud cover <= max, the ``max_items`` least cloudy, in acquisition order."""
    seen, counts = {}, {"returned": len(items), "other_tile": 0, "too_cloudy": 0}
    for item in items:
        if item_tile(item) != tile:
            counts["other_tile"] += 1
            continue
        cover = item.get("properties", {}).get("eo:cloud_cover")
        if cover is None or float(cover) > max_cloud_cover:
            counts["too_cloudy"] += 1
            continue
        seen[item["id"]] = item
    best = sorted(seen.values(), key=lambda i: (float(i["properties"]["eo:cloud_cover"]),
                                                i["properties"].get("datetime") or "", i["id"]))[:max_items]
    return sorted(best, key=lambda i: (i["properties"].get("datetime") or "", i["id"])), counts


def within_deadline(fetch, deadline_s: float, where: str):
    """``fetch()`` in a daemon thread, abandoned after ``deadline_s`` s: the total deadline of a search.

    requests' time-out bounds each socket read, not a server that answers a byte at a time.
    """
    result: dict = {}

    def run():
        try:
            result["value"] = fetch()
        except BaseException as err:  # handed to the caller's thread
            result["error"] = err

    thread = threading.Thread(target=run, name="stac-search", daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(deadline_s)
    if thread.is_alive():
        raise InputError(f"{where}: search did not finish in {time.monotonic() - started:.0f} s "
                         "(stac.http.search_deadline_s); check the server, then rerun")
    if "error" in result:
        raise result["error"]
    return result["value"]


def search_settings(stac: dict, period: dict, tile: str, bbox: list[float]) -> dict:
    """What a search depends on (written into the manifest; a change means a new search)."""
    return {"url": stac["url"], "collection": stac["collection"], "tile": tile, "period": dict(period),
            "bbox": [round(float(v), 6) for v in bbox], "max_cloud_cover": stac["max_cloud_cover"],
            "max_items_per_tile": stac["max_items_per_tile"], "assets": dict(stac["assets"]),
            "offset": stac["offset"]}


def search_tile(stac: dict, period: dict, tile: str, bbox: list[float], manifest_path: str | os.PathLike) -> dict:
    """Search the STAC API for the tile's items in ``period`` and write the manifest (module docstring).

    ``bbox`` (lon/lat) is where the tile is looked for (its centre is enough: items are kept by
    their tile id).  ``stac``: a country's settings (:func:`stac_config` of the validated config, whose
    schema fills in the defaults): url, collection, max_cloud_cover, max_items_per_tile, search_limit,
    offset (metadata | none), assets, http {timeout_s, retries, search_deadline_s} and the href policy.
    """
    from pystac_client import Client
    from pystac_client.exceptions import APIError
    from pystac_client.stac_api_io import StacApiIO
    from requests.exceptions import RequestException

    settings = search_settings(stac, period, tile, bbox)
    policy = HrefPolicy.from_settings(stac)
    check_api_url(stac["url"], policy)
    http = stac["http"]
    where = f"STAC API {stac['url']} (collection {stac['collection']}, tile {tile}, {period['start']}..{period['end']})"
    deadline_s = float(http["search_deadline_s"])

    def fetch():
        io = StacApiIO(timeout=float(http["timeout_s"]), max_retries=int(http["retries"]))
        client = Client.open(stac["url"], stac_io=io)
        search = client.search(collections=[stac["collection"]], bbox=list(bbox),
                               datetime=f"{period['start']}/{period['end']}", limit=100,
                               max_items=int(stac["search_limit"]))
        return [item.to_dict(transform_hrefs=False) for item in search.items()]

    try:
        with malformed_items(where):
            items = within_deadline(fetch, deadline_s, where)
    except (APIError, RequestException, OSError) as err:
        raise InputError(f"{where}: search failed ({str(err).splitlines()[0] if str(err) else type(err).__name__}); "
                         "check the network and stac.url, then rerun") from None
    for item in items:
        with malformed_items(where, item):
            check_item(item)
    with malformed_items(where):
        chosen, counts = select_items(items, tile, float(stac["max_cloud_cover"]), int(stac["max_items_per_tile"]))
    log.info("%s: %d items returned, %d of other tiles, %d too cloudy, %d kept", where, counts["returned"],
             counts["other_tile"], counts["too_cloudy"], len(chosen))
    if not chosen:
        raise InputError(f"{where}: no usable item ({counts['returned']} returned, {counts['other_tile']} of other "
                         f"tiles, {counts['too_cloudy']} with cloud cover > {stac['max_cloud_cover']} %); widen "
                         "the period, raise stac.max_cloud_cover or check the tile id")
    entries = []
    for item in chosen:
        with malformed_items(where, item):
            entries.append(manifest_entry(item, stac["assets"], stac["offset"], policy))
    for entry in entries:
        log.info("item %s %s cloud %.1f %% baseline %s offsets %s", entry["id"], entry["datetime"],
                 float(entry["cloud_cover"]), entry["processing_baseline"], sorted(set(entry["offsets"].values())))
    manifest = {"osmlulc_manifest": MANIFEST_VERSION, "search": settings, "counts": counts, "items": entries}
    with atomic_output(manifest_path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def read_manifest(path: str | os.PathLike) -> dict:
    try:
        manifest = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"STAC manifest {path} cannot be read ({err}); delete it so the search runs again") from None
    if (not isinstance(manifest, dict) or manifest.get("osmlulc_manifest") != MANIFEST_VERSION
            or not manifest.get("items") or not all(_manifest_item(i) for i in manifest["items"])):
        raise InputError(f"STAC manifest {path} is not an osmlulc manifest of version {MANIFEST_VERSION} with items; "
                         "delete it so the search runs again")
    return manifest


def _manifest_item(entry) -> bool:
    """Whether a manifest entry has what :func:`manifest_products` reads, of the right types."""
    return (isinstance(entry, dict) and isinstance(entry.get("id"), str)
            and isinstance(entry.get("assets"), dict) and isinstance(entry.get("offsets"), dict)
            and all(isinstance(v, (int, float)) for v in entry["offsets"].values())
            and isinstance(entry.get("quantification", REFLECTANCE_SCALE), (int, float)))


def manifest_products(manifest: dict, policy: HrefPolicy = HrefPolicy()) -> list[Product]:
    """The manifest's items as products whose band files are read over HTTP; every href is checked
    again (:mod:`osmlulc.hrefs`): a manifest is a file, it may have been edited since the search."""
    products = []
    for entry in manifest["items"]:
        files = {band: {None: check_href(href, policy, item=entry.get("id"), asset=band)}
                 for band, href in entry["assets"].items()}
        products.append(Product(
            path=entry["id"], kind="stac", level=entry.get("level", "L2A"), baseline=entry.get("processing_baseline"),
            quantification=float(entry.get("quantification", REFLECTANCE_SCALE)), offsets=dict(entry["offsets"]),
            nodata=0, files=files,
            read_hint="the server did not deliver it (network or server failure); check the network and the "
                      "asset URL, then rerun (stac.http sets time-out and retries)"))
    return products


def stac_config(stac: dict, country_stac: dict) -> dict:
    """A country's stac settings: the config's ``stac`` section with the country's ``stac`` overrides, key by
    key (``http`` too: :func:`http_settings`).

    ``stac`` is the validated top-level section, complete: the schema (``config/schema.yaml``) holds the
    defaults, for the top-level ``stac`` only, so that a country's section says what it overrides.
    """
    return {**stac, **country_stac, "http": http_settings(stac, country_stac)}


def http_settings(stac: dict, country_stac: dict) -> dict:
    """Retries and time-outs of a country's HTTP reads: ``stac.http`` of the config's (validated) ``stac``
    section with the country's ``stac.http`` overrides (key by key).

    They change how the inputs are fetched, not which, so the rules pass them as a param that is not
    recorded (:class:`osmlulc.settings.Unversioned`): other time-outs rerun nothing.
    """
    return {**stac["http"], **country_stac.get("http", {})}


def gdal_http_options(http: dict) -> dict:
    """GDAL configuration for reading COGs over HTTP: retries, time-outs (``stac.http``, complete), no
    directory listings."""
    return {
        "GDAL_HTTP_MAX_RETRY": str(int(http["retries"])),
        "GDAL_HTTP_RETRY_DELAY": str(float(http["retry_delay_s"])),
        "GDAL_HTTP_TIMEOUT": str(int(http["timeout_s"])),
        "GDAL_HTTP_CONNECTTIMEOUT": str(int(http["connect_timeout_s"])),
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.jp2",
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "GDAL_HTTP_MULTIPLEX": "YES",
        "VSI_CACHE": "TRUE",
    }


def acquisitions(manifests: list[str | os.PathLike]) -> list[dict]:
    """Items of the manifests (id, tile, datetime, cloud cover, href) for the country's STAC item."""
    rows = []
    for path in manifests:
        for entry in read_manifest(path)["items"]:
            rows.append({k: entry.get(k) for k in ("id", "collection", "tile", "datetime", "cloud_cover",
                                                    "processing_baseline", "href")})
    return sorted(rows, key=lambda r: (r["tile"] or "", r["datetime"] or "", r["id"]))
