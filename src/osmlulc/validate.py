"""Input checks that run before the expensive rules.

A country run is hours of cluster time over files that users downloaded themselves.  The
per-tile check (:func:`check_tile_inputs`, rule ``check_inputs``) opens every band of a
tile, compares its CRS, pixel size and extent with the tile's reference band and grid, reads
every block (a truncated file often opens fine and only fails on its last blocks), counts
valid pixels, and checks that the label raster and the country boundary overlap the tile
(and that a training tile has labelled pixels).  Every later rule of the tile depends on its
result, so a bad tile fails in seconds, with one line naming the file, the tile and what to
do, instead of after training.

:func:`config_error_line` turns a JSON-schema violation of the config into such a line.  The run
status of a country (which tiles passed, which rule failed) is :mod:`osmlulc.run_status`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import rasterio.errors
import rasterio.warp
import rasterio.windows
from rasterio.crs import CRS
from shapely.geometry import box

from osmlulc.boundaries import read_boundary
from osmlulc.classes import ClassTable
from osmlulc.io import InputError, atomic_output, block_windows, check_band, open_raster
from osmlulc.labels import label_lookup

log = logging.getLogger("osmlulc")

#: Bands of a tile may cover the reference extent up to this many of their own pixels less or more
#: (20 m grids of some products are shifted by half a pixel against the 10 m grid).
_EXTENT_TOLERANCE_PX = 1.0

#: The reference band must cover at least this share of the tile's footprint in the tile grid.
_MIN_GRID_OVERLAP = 0.5


# --------------------------------------------------------------------------- config


def config_error_line(error) -> str:
    """One readable line for a ``jsonschema.ValidationError`` of the workflow config.

    Names the key (dotted path with list indexes), the offending value, the rule it breaks
    (with the schema's description where there is one), and what to do.
    """
    path = ""
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    path = path or "(top level)"
    schema = error.schema if isinstance(error.schema, dict) else {}
    described = f" ({schema['description']})" if schema.get("description") else ""
    if error.validator == "enum":
        what = f"{path} = {error.instance!r} is not one of {', '.join(map(str, error.validator_value))}{described}"
    elif error.validator == "pattern":
        what = f"{path} = {error.instance!r} is malformed: it must match {error.validator_value}{described}"
    elif error.validator == "additionalProperties":
        what = f"{path}: {error.message}"
    elif error.validator == "propertyNames":
        what = f"{path}: key {error.instance!r} is not allowed"
    else:
        what = f"{path} = {error.instance!r}: {error.message}" if not isinstance(error.instance, (dict, list)) \
            else f"{path}: {error.message}"
    return f"{what}; fix it in the config file (allowed keys and values: config/schema.yaml)"


# --------------------------------------------------------------------------- per-tile inputs


@dataclass(frozen=True)
class TileInputs:
    """The input files of one tile and what they must look like."""

    country: str
    tile: str
    bands: dict[str, str]  # band name -> file
    resolution: dict[str, float]  # band name -> native pixel size (m)
    reference: str  # the 10 m band whose grid is the tile grid
    label_raster: str | None  # None: labels come from an OSM extract, not a raster
    boundary: str
    label_coding: str = "classes"
    training: bool = False  # a training tile must hold labelled pixels
    grid: dict | None = None  # expected {"crs", "bounds"} of the tile, if known
    hints: dict = field(default_factory=dict)  # config keys to name in "what to do" (bands, tiles)
    composite_record: str | None = None  # a composited tile's record (osmlulc.composite): ok false if no product read


def _hint(inputs: TileInputs, key: str, default: str) -> str:
    return inputs.hints.get(key, default)


def _read_all_blocks(src, path, what: str, nodata) -> int:
    """Read every block of band 1 (decoding all of it) and return the number of valid pixels."""
    valid = 0
    try:
        for window in block_windows(src.width, src.height):
            data = src.read(1, window=window)
            valid += int(np.count_nonzero(data != nodata))
    except rasterio.errors.RasterioIOError as err:
        raise InputError(f"{what}: {path} is damaged or truncated (reading failed: {err}); download it again") from None
    return valid


def _extent_matches(src, ref) -> bool:
    tolerance = _EXTENT_TOLERANCE_PX * max(abs(src.res[0]), abs(src.res[1]))
    return all(abs(a - b) <= tolerance for a, b in zip(src.bounds, ref.bounds))


def _grid_overlap(ref, grid: dict) -> float:
    """Share of the configured tile footprint that the reference band covers (0 if in another CRS)."""
    footprint = box(*(float(v) for v in grid["bounds"]))
    return footprint.intersection(box(*ref.bounds)).area / footprint.area


def _check_bands(inputs: TileInputs, min_valid_fraction: float) -> dict:
    tile, ref_band = inputs.tile, inputs.reference
    bands_key = _hint(inputs, "bands", "the band file pattern")
    report = {}
    for band, path in inputs.bands.items():
        if not Path(path).exists():
            raise InputError(f"band {band} of tile {tile} is missing: {path} does not exist; "
                             f"download it or fix {bands_key}")
    ref_path = inputs.bands[ref_band]
    with open_raster(ref_path, f"reference band {ref_band} of tile {tile}") as ref:
        check_band(ref, ref_path, expected_resolution=inputs.resolution[ref_band])
        if inputs.grid is not None:
            grid_crs = CRS.from_user_input(inputs.grid["crs"])
            if ref.crs != grid_crs:
                raise InputError(f"band {ref_band} of tile {tile}: {ref_path} is in {ref.crs}, but tile {tile} is in "
                                 f"{grid_crs}; use the file of tile {tile} or fix its tile grid")
            if _grid_overlap(ref, inputs.grid) < _MIN_GRID_OVERLAP:
                raise InputError(f"band {ref_band} of tile {tile}: {ref_path} covers "
                                 f"{tuple(round(v) for v in ref.bounds)}, not the footprint "
                                 f"{tuple(inputs.grid['bounds'])} of tile {tile}; is it a file of another tile?")
        for band, path in inputs.bands.items():
            what = f"band {band} of tile {tile}"
            with open_raster(path, what) as src:
                if band != ref_band:
                    check_band(src, path, expected_resolution=inputs.resolution[band], reference=ref)
                    if not _extent_matches(src, ref):
                        raise InputError(f"{what}: {path} covers {tuple(round(v) for v in src.bounds)}, "
                                         f"but the reference band {ref_band} covers "
                                         f"{tuple(round(v) for v in ref.bounds)}; is it a file of another tile?")
                nodata = src.nodata if src.nodata is not None else 0
                valid = _read_all_blocks(src, path, what, nodata)
                fraction = valid / (src.width * src.height)
                if band == ref_band and (valid == 0 or fraction < min_valid_fraction):
                    raise InputError(
                        f"tile {tile} has {'no' if valid == 0 else f'only {fraction:.2%}'} valid pixels in band "
                        f"{band} ({path}; nodata or masked cloud elsewhere, checks.min_valid_fraction = "
                        f"{min_valid_fraction:g}); remove the tile from {_hint(inputs, 'tiles', 'the tile list')} "
                        "or use a clearer scene")
                if valid == 0:
                    raise InputError(f"{what}: {path} is all nodata ({nodata:g}) although band {ref_band} is not; "
                                     "download it again")
                report[band] = {"path": str(path), "crs": src.crs.to_string(), "resolution": list(src.res),
                                "width": src.width, "height": src.height, "valid_fraction": round(fraction, 6)}
        tile_crs, tile_bounds = ref.crs, ref.bounds
    return {"bands": report, "crs": tile_crs.to_string(), "bounds": list(tile_bounds)}


def _count_labelled(label, lut: np.ndarray, bounds_in_label_crs, stop_at: int = 1) -> int:
    """Labelled pixels (values the lookup maps to a class) of ``label`` within the bounds, up to ``stop_at``."""
    window = rasterio.windows.from_bounds(*bounds_in_label_crs, transform=label.transform)
    col0, row0 = max(0, math.floor(window.col_off)), max(0, math.floor(window.row_off))
    col1 = min(label.width, math.ceil(window.col_off + window.width))
    row1 = min(label.height, math.ceil(window.row_off + window.height))
    window = rasterio.windows.Window(col0, row0, max(0, col1 - col0), max(0, row1 - row0))
    found = 0
    for sub in block_windows(int(window.width), int(window.height)):
        sub = rasterio.windows.Window(sub.col_off + window.col_off, sub.row_off + window.row_off, sub.width, sub.height)
        values = label.read(1, window=sub)
        if values.dtype.kind == "f":
            values = np.where(np.isfinite(values), values, 0)
        values = values.astype(np.int64)
        inside = (values >= 0) & (values < len(lut))
        found += int(np.count_nonzero(lut[values[inside]] > 0))
        if found >= stop_at:
            break
    return found


def _check_labels(inputs: TileInputs, table: ClassTable, tile_crs, tile_bounds) -> dict:
    tile, path = inputs.tile, inputs.label_raster
    with open_raster(path, f"label raster (tile {tile})") as label:
        if label.crs is None:
            raise InputError(f"label raster {path} has no CRS; save it with one (e.g. EPSG:3035)")
        try:
            in_label_crs = rasterio.warp.transform_bounds(tile_crs, label.crs, *tile_bounds, densify_pts=21)
        except Exception as err:  # noqa: BLE001 - pyproj/GDAL raise several types for impossible transforms
            raise InputError(f"label raster {path}: tile {tile} cannot be put into its CRS {label.crs} "
                             f"({err})") from None
        if not box(*in_label_crs).intersects(box(*label.bounds)):
            raise InputError(f"label raster {path} does not overlap tile {tile}; check that it is the right country's "
                             "raster and has the right CRS")
        overlap = {"label_overlap": True}
        if inputs.training:
            lut = label_lookup(table, inputs.label_coding)
            try:
                labelled = _count_labelled(label, lut, in_label_crs)
            except rasterio.errors.RasterioIOError as err:
                raise InputError(f"label raster {path} is damaged or truncated (reading failed: {err}); "
                                 "regenerate it") from None
            if labelled == 0:
                raise InputError(
                    f"training tile {tile} has no labelled pixel in the label raster {path} (label_coding "
                    f"{inputs.label_coding}); choose training tiles that OSM land use covers "
                    f"({_hint(inputs, 'training_tiles', 'the training tile list')})")
            overlap["has_labels"] = True
    return overlap


def _check_boundary(inputs: TileInputs, tile_crs, tile_bounds) -> None:
    boundary = read_boundary(inputs.boundary, CRS.from_user_input(tile_crs))
    if not boundary.intersects(box(*tile_bounds)):
        raise InputError(f"tile {inputs.tile} does not overlap the country boundary {inputs.boundary}; remove it from "
                         f"{_hint(inputs, 'tiles', 'the tile list')} or check the boundary file and its CRS")


def _check_composite_record(inputs: TileInputs) -> None:
    """A composite none of whose products could be read (all nodata, product.allow_missing_tiles): say why."""
    if inputs.composite_record is None:
        return
    record = json.loads(Path(inputs.composite_record).read_text())
    if not record.get("ok", True):
        raise InputError(f"{record['message']}; fix or re-download the products (the tile is rebuilt once one "
                         "can be read)")


def check_tile_inputs(inputs: TileInputs, table: ClassTable, dst_path, *, min_valid_fraction: float = 0.0) -> dict:
    """Check every input of one tile; write a small JSON summary to ``dst_path`` only if all pass.

    Raises :class:`InputError` (one line: file, tile, rule broken, what to do) on the first problem:
    a missing, corrupt or truncated band; a band in another CRS, at another pixel size or over
    another extent than the reference band; a reference band off the configured tile grid; a tile
    with no (or too few) valid pixels; a band that is all nodata; a label raster or boundary that
    does not overlap the tile; an empty or unreadable boundary; a training tile without labels.
    """
    if inputs.reference not in inputs.bands:
        raise ValueError(f"check_tile_inputs: the reference band {inputs.reference} is not among the bands")
    _check_composite_record(inputs)
    summary = {"country": inputs.country, "tile": inputs.tile, "training": inputs.training}
    summary.update(_check_bands(inputs, min_valid_fraction))
    tile_crs, tile_bounds = summary["crs"], summary["bounds"]
    if inputs.label_raster is not None:
        summary.update(_check_labels(inputs, table, tile_crs, tile_bounds))
    _check_boundary(inputs, tile_crs, tile_bounds)
    summary["boundary_overlap"] = True
    with atomic_output(dst_path) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    log.info("inputs of tile %s are fine: %d bands, %.1f%% valid pixels", inputs.tile, len(inputs.bands),
             100 * summary["bands"][inputs.reference]["valid_fraction"])
    return summary


def check_tile_inputs_or_record_missing(inputs: TileInputs, table: ClassTable, dst_path, *, step: str,
                                        min_valid_fraction: float = 0.0) -> dict | None:
    """:func:`check_tile_inputs` for ``product.allow_missing_tiles``: a tile that fails is recorded, not raised.

    Its error line is logged as :func:`osmlulc.logs.run_logged` logs it (the run status finds it), and
    ``dst_path`` says ``"ok": false`` with the message, so that the country products are built without
    the tile (:func:`tiles_passed`). Returns the summary of a good tile, None for a missing one.
    """
    try:
        return check_tile_inputs(inputs, table, dst_path, min_valid_fraction=min_valid_fraction)
    except InputError as err:
        log.error("osmlulc: %s (country=%s tile=%s): %s", step, inputs.country, inputs.tile, err)
        record = {"country": inputs.country, "tile": inputs.tile, "ok": False, "message": str(err)}
        with atomic_output(dst_path) as tmp:
            Path(tmp).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        log.info("tile %s is left out of the country products (product.allow_missing_tiles)", inputs.tile)
        return None


def check_record(path: str | os.PathLike) -> dict:
    """The content of a tile's check record (inputs_ok.json); ``ok`` is false for a tile recorded missing."""
    record = json.loads(Path(path).read_text())
    record.setdefault("ok", True)
    return record


def missing_tiles(tiles_passed_json=None) -> list[str]:
    """Tiles left out of the country products (``product.allow_missing_tiles``), from the record written by
    :func:`tiles_passed`; none without one."""
    if tiles_passed_json is None:
        return []
    with open(tiles_passed_json) as f:
        return sorted(json.load(f)["missing"])


def tiles_passed(records: dict[str, str | os.PathLike], dst_path) -> list[str]:
    """Write (JSON) and return the tiles, in the given order, whose check record (tile -> path) is ok."""
    passed = [tile for tile, path in records.items() if check_record(path)["ok"]]
    missing = {tile: check_record(path)["message"] for tile, path in records.items() if tile not in passed}
    with atomic_output(dst_path) as tmp:
        Path(tmp).write_text(json.dumps({"passed": passed, "missing": missing}, indent=1) + "\n")
    log.info("%d tile(s) passed their input check, %d missing: %s", len(passed), len(missing), sorted(missing))
    return passed
