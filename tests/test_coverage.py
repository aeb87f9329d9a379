"""Gaps of the country product: labels kept in them, filled from labels (product.fill_gaps_with_labels),
and the count of pixels per cause (classified, filled, no observation, missing tile, outside boundary)."""

from __future__ import annotations

import csv

import fiona
import numpy as np
import pytest
import shapely
from affine import Affine
from shapely.geometry import box, mapping

from osmlulc.coverage import CAUSES, count_nodata_causes, coverage_rst, product_area, write_coverage_table
from osmlulc.footprints import clip_to_boundary
from osmlulc.io import InputError
from osmlulc.labels import transfer_labels
from osmlulc.mosaic import merge_product
from test_post import LAEA, TABLE, pixel_centres, read, write_raster

TRANSFORM = Affine(10, 0, 4200000, 0, -10, 2900000)
SHAPE = (60, 80)
LEFT, TOP = 4200000, 2900000


def _boundary(tmp_path):
    """A country: the grid without its last 20 columns (pixel centres inside: columns 0..59)."""
    path = tmp_path / "boundary.gpkg"
    outline = box(LEFT, TOP - 600, LEFT + 600, TOP)
    with fiona.open(path, "w", driver="GPKG", crs=LAEA, schema={"geometry": "Polygon", "properties": {}}) as dst:
        dst.write({"geometry": mapping(outline), "properties": {}})
    return str(path)


# Two tiles' own footprints: the western one (columns 0..29) and the eastern one (columns 30..79).
FOOTPRINTS = {"32UWA": box(LEFT, TOP - 600, LEFT + 300, TOP).wkt,
              "32UXA": box(LEFT + 300, TOP - 600, LEFT + 800, TOP).wkt}


@pytest.fixture
def country(tmp_path):
    """Boundary-clipped classification with a cloud gap, and an OSM label raster on another grid."""
    rng = np.random.default_rng(3)
    mosaic = rng.integers(1, 13, size=SHAPE, dtype=np.uint8)
    mosaic[10:30, 5:50] = 0                     # no valid observation: a cloud across both tiles
    merged = write_raster(tmp_path / "merged.tif", mosaic, crs=LAEA, transform=TRANSFORM)
    boundary = _boundary(tmp_path)
    classified = tmp_path / "classified_clipped.tif"
    clip_to_boundary(merged, boundary, classified, TABLE)
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[:, ::2] = 12                         # OSM water on every other column, everywhere
    label_source = write_raster(tmp_path / "labels_src.tif", labels, crs=LAEA, transform=TRANSFORM)
    return {"classified": str(classified), "boundary": boundary, "labels": label_source, "mosaic": mosaic}


def test_labels_kept_in_gaps_and_product_filled_from_them(tmp_path, country):
    classified, _, src = read(country["classified"])
    assert classified.shape == (60, 60)          # cropped to the boundary's bounding box
    area = product_area(country["boundary"], FOOTPRINTS, ["32UXA"], src.crs)
    labels_path, product_path = tmp_path / "label.tif", tmp_path / "product.tif"
    transfer_labels(country["labels"], country["classified"], labels_path, TABLE, area=area, block_size=16)
    labels = read(labels_path)[0]
    # Labels where the classification has a gap, but not in the missing tile (columns >= 30).
    assert (labels[10:30, 6:30:2] == 12).all() and (labels[:, 30:] == 0).all()
    # Without an area: the grid's nodata masks them (the tiles' label rasters, fill off).
    transfer_labels(country["labels"], country["classified"], tmp_path / "masked.tif", TABLE, block_size=16)
    assert (read(tmp_path / "masked.tif")[0][10:30, 5:50] == 0).all()

    merge_product(country["classified"], labels_path, product_path, TABLE, fill_gaps=True, block_size=16)
    product = read(product_path)[0]
    gap = classified == 0
    labelled = labels > 0
    np.testing.assert_array_equal(product[gap & labelled], 12)            # filled from the labels
    assert (product[gap & ~labelled] == 0).all()                           # no label: still nodata
    np.testing.assert_array_equal(product[~gap & labelled], labels[~gap & labelled])
    np.testing.assert_array_equal(product[~gap & ~labelled], classified[~gap & ~labelled])
    # fill off: the same labels leave every gap nodata (the product before this switch)
    merge_product(country["classified"], labels_path, tmp_path / "unfilled.tif", TABLE, fill_gaps=False,
                  block_size=16)
    unfilled = read(tmp_path / "unfilled.tif")[0]
    assert (unfilled[gap] == 0).all()
    np.testing.assert_array_equal(unfilled[~gap], product[~gap])


def test_nodata_causes_counted_per_pixel(tmp_path, country):
    classified, _, src = read(country["classified"])
    area = product_area(country["boundary"], FOOTPRINTS, ["32UXA"], src.crs)
    transfer_labels(country["labels"], country["classified"], tmp_path / "label.tif", TABLE, area=area)
    merge_product(country["classified"], tmp_path / "label.tif", tmp_path / "product.tif", TABLE, fill_gaps=True)
    counts = count_nodata_causes(country["classified"], tmp_path / "product.tif", country["boundary"], FOOTPRINTS,
                                 ["32UXA"], block_size=16)
    # Expected from the pixel centres: the country is 60 x 60 px, the missing tile its columns 30..59.
    x, _ = pixel_centres(src.transform, *classified.shape)
    missing = x > LEFT + 300
    gap = classified == 0
    water_column = (np.arange(60) % 2 == 0)[None, :].repeat(60, 0)
    assert counts == {
        "classified": int((~missing & ~gap).sum()),
        "filled from labels": int((~missing & gap & water_column).sum()),
        "no observation": int((~missing & gap & ~water_column).sum()),
        "missing tile": int(missing.sum()),
        "outside boundary": 0,
    }
    assert counts["filled from labels"] == 20 * 12 and counts["no observation"] == 20 * 13
    assert sum(counts.values()) == classified.size
    # The product with nothing missing and no fill: the whole cloud is 'no observation'.
    merge_product(country["classified"], tmp_path / "label.tif", tmp_path / "unfilled.tif", TABLE)
    counts = count_nodata_causes(country["classified"], tmp_path / "unfilled.tif", country["boundary"], FOOTPRINTS, [])
    assert counts["no observation"] == 20 * 45 and counts["missing tile"] == 0 and counts["filled from labels"] == 0

    table = tmp_path / "coverage.csv"
    write_coverage_table(counts, 100.0, table)
    with open(table, newline="") as f:
        rows = {r["cause"]: r for r in csv.DictReader(f)}
    assert list(rows) == list(CAUSES)
    assert float(rows["no observation"]["share_of_country"]) == pytest.approx(900 / 3600)
    assert float(rows["no observation"]["km2"]) == pytest.approx(0.09)
    text = coverage_rst({"xx": table, "yy": tmp_path / "not-yet.csv"})
    assert "**xx**: nodata on 25.00% of the country (75.00% classified; 25.00% no observation)" in text
    assert "yy" not in text
    (tmp_path / "empty.csv").write_text("")     # e.g. a run marked done with --touch
    assert "**zz**: the coverage table" in coverage_rst({"zz": tmp_path / "empty.csv"})


def test_coverage_errors_name_what_is_wrong(tmp_path, country):
    classified, _, src = read(country["classified"])
    with pytest.raises(InputError, match=r"missing tiles \['33UUU'\] have no footprint"):
        product_area(country["boundary"], FOOTPRINTS, ["33UUU"], src.crs)
    shifted = write_raster(tmp_path / "shifted.tif", classified, crs=LAEA,
                           transform=TRANSFORM * Affine.translation(1, 0))
    with pytest.raises(InputError, match="not on the grid"):
        count_nodata_causes(country["classified"], shifted, country["boundary"], FOOTPRINTS, [])
    assert shapely.from_wkt(FOOTPRINTS["32UWA"]).area == 300 * 600
