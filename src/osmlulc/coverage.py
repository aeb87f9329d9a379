"""Where the country product has no class, and why; the area where OSM labels may fill its gaps.

A pixel of the boundary-clipped product grid is one of:

* ``outside boundary``: outside the country (nodata by design);
* ``missing tile``: in the own footprint of a tile left out of the products (``product.allow_missing_tiles``);
* ``classified``: the classification has a class;
* ``filled from labels``: no valid observation, filled from the OSM label (``product.fill_gaps_with_labels``);
* ``no observation``: no valid observation (every date cloudy, shadowed or nodata) and no label.

The shares are of the country (the pixels inside the boundary).  Everything is counted window by
window, so memory does not grow with the country.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import shapely
from shapely.geometry import Polygon

from osmlulc.boundaries import read_boundary
from osmlulc.footprints import FOOTPRINT_CRS, outside_mask, reproject_geometry
from osmlulc.io import BLOCK_SIZE, InputError, atomic_output, block_windows, open_raster, same_grid
from osmlulc.rst import rst_text

#: The causes, in the order of the table.
CAUSES = ("classified", "filled from labels", "no observation", "missing tile", "outside boundary")


def missing_tiles_area(own_footprints_wkt: dict[str, str], missing: list[str], crs) -> Polygon:
    """The union of the own footprints (EPSG:3035 WKT) of the ``missing`` tiles, in ``crs``."""
    unknown = sorted(set(missing) - set(own_footprints_wkt))
    if unknown:
        raise InputError(f"missing tiles {unknown} have no footprint among the country's tiles")
    parts = [shapely.from_wkt(own_footprints_wkt[t]) for t in missing]
    area = shapely.union_all(parts) if parts else Polygon()
    area = reproject_geometry(area, FOOTPRINT_CRS, crs) if not area.is_empty else area
    shapely.prepare(area)
    return area


def product_area(boundary_path, own_footprints_wkt: dict[str, str], missing: list[str], crs):
    """The area the country product covers (in ``crs``): inside the boundary and not in a missing tile.
    OSM labels fill the product's gaps only there (:func:`osmlulc.labels.labels_onto_grid` ``area``)."""
    boundary = read_boundary(boundary_path, crs)
    missing_area = missing_tiles_area(own_footprints_wkt, missing, crs)
    area = boundary.difference(missing_area) if not missing_area.is_empty else boundary
    shapely.prepare(area)
    return area


def count_nodata_causes(classified_path, product_path, boundary_path, own_footprints_wkt: dict[str, str],
                        missing: list[str], *, block_size: int = BLOCK_SIZE * 2) -> dict[str, int]:
    """Pixels of the product grid per cause (module docstring).  ``classified_path``: the boundary-clipped
    classification; ``product_path``: the product merged with the labels, on the same grid."""
    counts = dict.fromkeys(CAUSES, 0)
    with open_raster(classified_path, "classification") as cls, open_raster(product_path, "product") as product:
        if not same_grid(cls, product):
            raise InputError(f"product {product_path} is not on the grid of {classified_path}")
        boundary = read_boundary(boundary_path, cls.crs)
        missing_area = missing_tiles_area(own_footprints_wkt, missing, cls.crs)
        for window in block_windows(cls.width, cls.height, block_size):
            transform, shape_ = cls.window_transform(window), (window.height, window.width)
            inside = ~outside_mask(boundary, transform, shape_)
            missing_tile = inside & ~outside_mask(missing_area, transform, shape_)   # empty area: all outside
            covered = inside & ~missing_tile
            classified = cls.read_masks(1, window=window) > 0
            in_product = product.read_masks(1, window=window) > 0
            counts["outside boundary"] += int((~inside).sum())
            counts["missing tile"] += int(missing_tile.sum())
            counts["classified"] += int((covered & classified).sum())
            counts["filled from labels"] += int((covered & ~classified & in_product).sum())
            counts["no observation"] += int((covered & ~classified & ~in_product).sum())
    return counts


def write_coverage_table(counts: dict[str, int], pixel_area_m2: float, dst_path) -> None:
    """CSV: cause, pixels, km2, share of the country (of the pixels inside the boundary; empty outside it)."""
    country = sum(n for cause, n in counts.items() if cause != "outside boundary")
    with atomic_output(dst_path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["cause", "pixels", "km2", "share_of_country"])
        for cause in CAUSES:
            share = "" if cause == "outside boundary" else f"{counts[cause] / max(country, 1):.6f}"
            writer.writerow([cause, counts[cause], f"{counts[cause] * pixel_area_m2 / 1e6:.4f}", share])


def read_coverage_table(path) -> dict[str, dict]:
    with open(path, newline="") as f:
        return {row["cause"]: row for row in csv.DictReader(f)}


def coverage_rst(coverage_csvs: dict[str, str | os.PathLike]) -> str:
    """A reStructuredText section for the report's front page: per country, the share of the country the
    product classifies, fills from labels, and leaves nodata, and why.  Countries without a table yet are
    left out."""
    lines = ["Coverage of the products", "------------------------", ""]
    for country, path in coverage_csvs.items():
        if not Path(path).exists():
            continue
        try:
            rows = read_coverage_table(path)
            parts = [f"{float(rows[c]['share_of_country']):.2%} {c}" for c in CAUSES if c != "outside boundary"
                     and int(rows[c]["pixels"]) > 0]
            nodata = sum(float(rows[c]["share_of_country"]) for c in ("no observation", "missing tile"))
        except (KeyError, ValueError, OSError):
            # the front page is written when a run ends, failed ones too: a broken table must not stop it
            lines.append(f"- **{rst_text(country)}**: the coverage table {rst_text(path)} cannot be read.")
            continue
        lines.append(f"- **{rst_text(country)}**: nodata on {nodata:.2%} of the country ("
                     + "; ".join(parts) + ").")
    lines.append("")
    return "\n".join(lines) if len(lines) > 4 else ""
