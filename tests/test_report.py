"""Quicklooks, plots, STAC item (unit tests), and the Snakemake report of the small demo run rendered
in headless Chromium (skipped where Chromium is not installed: scripts/install_chromium.sh)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pystac
import pytest
import rasterio
from matplotlib.image import imread
from pystac.extensions.classification import ClassificationExtension
from pystac.extensions.file import FileExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import RasterExtension

from osmlulc import report
from osmlulc.assess import confusion_table
from osmlulc.io import to_cog, write_class_colormap

from conftest import ROOT, write_raster
from stac_schemas import LocalSchemas


def _class_raster(tmp_path, table, name="classes.tif"):
    data = np.zeros((120, 200), np.uint8)
    data[:, :100] = 5
    data[:, 100:] = 12
    data[:10, :10] = 0
    path = tmp_path / f"raw_{name}"
    write_raster(path, data, crs="EPSG:3035", origin=(4300000.0, 2900000.0))
    with rasterio.open(path, "r+") as dst:
        write_class_colormap(dst, table)
    to_cog(path, tmp_path / name)
    return tmp_path / name


def _colours(png):
    image = imread(png)[..., :3]
    return {tuple(np.round(c * 255).astype(int)) for c in image.reshape(-1, 3)[::7]}


def test_quicklook_shows_class_colours_and_legend(tmp_path, table):
    path = _class_raster(tmp_path, table)
    with rasterio.open(path) as src:
        assert report.class_legend(src)[12] == ("water bodies", (0, 204 / 255, 242 / 255))
        assert report.read_decimated(src, 50).shape == (30, 50)  # long side 200 -> 50
    report.quicklook(path, tmp_path / "q.png", title="test", max_size=64)
    colours = _colours(tmp_path / "q.png")
    assert (0, 204, 242) in colours and (255, 255, 168) in colours  # water and arable colours


def test_quicklook_continuous(tmp_path):
    data = np.tile(np.linspace(10, 100, 50).astype(np.uint8), (30, 1))
    path = write_raster(tmp_path / "c.tif", data)
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(1, UNITS="percent")
    report.quicklook(path, tmp_path / "c.png", title="confidence", kind="continuous")
    assert len(_colours(tmp_path / "c.png")) > 20
    with pytest.raises(ValueError, match="kind"):
        report.quicklook(path, tmp_path / "x.png", title="x", kind="other")


def test_confusion_and_training_plots(tmp_path, table):
    cm = np.diag(np.arange(1, 13) * 10)
    cm[11, 4] = 7
    frame = confusion_table([({"split": "spatial", "model": "rf"}, cm), ({"split": "random", "model": "rf"}, cm * 2)],
                            table)
    assert frame.shape == (24, 2 + 2 + 12)
    frame.to_csv(tmp_path / "cm.csv", index=False)
    report.plot_confusion_matrices(tmp_path / "cm.csv", tmp_path / "cm.png", title="t")
    assert len(_colours(tmp_path / "cm.png")) > 10
    pd.DataFrame({"epoch": [1, 2, 3], "loss": [1.0, 0.5, 0.3], "accuracy": [0.6, 0.8, 0.9],
                  "val_loss": [1.1, 0.7, 0.6], "val_accuracy": [0.5, 0.7, 0.75]}).to_csv(tmp_path / "h.csv",
                                                                                        index=False)
    report.plot_training_history(tmp_path / "h.csv", tmp_path / "h.png", title="t")
    assert imread(tmp_path / "h.png").shape[1] > 500


def test_stac_item_structure(tmp_path, table):
    classified = _class_raster(tmp_path, table, "XD_classified.tif")
    confidence = tmp_path / "XD_confidence.tif"
    write_raster(confidence, np.full((120, 200), 80, np.uint8), crs="EPSG:3035", origin=(4300000.0, 2900000.0))
    png = tmp_path / "q.png"
    report.quicklook(classified, png, title="q")
    item = report.country_stac_item("XD", "Demoland", {"classified": classified, "confidence": confidence,
                                                       "lu12": classified}, table, tmp_path / "item.json",
                                    quicklook_png=png, period={"start": "2020-06-01", "end": "2020-08-31"},
                                    source_items=[{"id": "S2B_32UNU_20200603_0_L2A", "tile": "32UNU",
                                                   "datetime": "2020-06-03T10:27:01Z",
                                                   "href": "https://example.org/items/S2B_32UNU_20200603_0_L2A"}])
    assert json.loads((tmp_path / "item.json").read_text()) == item
    assert item["type"] == "Feature" and item["stac_version"] == pystac.get_stac_version()
    assert item["id"] == "osmlulc-XD-10m-3035"
    assert item["properties"]["datetime"] is None
    assert item["properties"]["start_datetime"] == "2020-06-01T00:00:00Z"
    assert item["properties"]["end_datetime"] == "2020-08-31T23:59:59Z"
    props = item["properties"]
    assert props["proj:code"] == "EPSG:3035" and props["proj:shape"] == [120, 200] and props["gsd"] == 10.0
    assert props["proj:transform"] == [10.0, 0.0, 4300000.0, 0.0, -10.0, 2900000.0]
    # Geometry and bbox in WGS84 around the raster (EPSG:3035 origin 4321000, 3210000 lies at 10E, 52N).
    west, south, east, north = item["bbox"]
    assert 9 < west < east < 11 and 49 < south < north < 52
    ring = item["geometry"]["coordinates"][0]
    assert item["geometry"]["type"] == "Polygon" and ring[0] == ring[-1] and len(ring) > 5
    assets = item["assets"]
    assert assets["classified"]["type"] == report.COG_MEDIA_TYPE and assets["classified"]["href"] == "XD_classified.tif"
    assert assets["classified"]["file:checksum"] == report.file_checksum(classified)
    assert assets["classified"]["file:size"] == os.path.getsize(classified)
    classes = {c["value"]: c for c in assets["classified"]["classification:classes"]}
    assert classes[12] == {"value": 12, "name": "water_bodies", "title": "water bodies", "color_hint": "00CCF2"}
    assert len(classes) == 12
    assert [c["value"] for c in assets["lu12"]["classification:classes"]] == [0, 1]
    assert assets["confidence"]["raster:bands"][0] == {"data_type": "uint8", "spatial_resolution": 10.0,
                                                       "nodata": 0, "unit": "percent"}
    assert assets["thumbnail"]["roles"] == ["thumbnail"] and assets["thumbnail"]["type"] == "image/png"
    assert all(url.startswith("https://stac-extensions.github.io/") for url in item["stac_extensions"])

    # Read back by pystac: the extensions' fields as pystac sees them.
    parsed = pystac.Item.from_file(str(tmp_path / "item.json"))
    assert parsed.id == item["id"] and set(parsed.assets) == set(assets)
    proj = ProjectionExtension.ext(parsed)
    assert proj.epsg == 3035 and proj.shape == [120, 200] and parsed.common_metadata.gsd == 10.0
    classified_asset = parsed.assets["classified"]
    assert FileExtension.ext(classified_asset).checksum == report.file_checksum(classified)
    assert RasterExtension.ext(parsed.assets["confidence"]).bands[0].unit == "percent"
    water = {c.value: c for c in ClassificationExtension.ext(classified_asset).classes}[12]
    assert water.title == "water bodies" and water.color_hint == "00CCF2"
    assert props["osmlulc:acquisition_dates"] == ["2020-06-03"]
    source = parsed.get_single_link("derived_from")
    assert source.href == "https://example.org/items/S2B_32UNU_20200603_0_L2A"
    assert source.title == "S2B_32UNU_20200603_0_L2A" and source.media_type == "application/geo+json"
    # Full JSON-schema validation: core (pystac's own copy) and the four extensions (tests/data/stac_schemas).
    validated = parsed.validate(validator=LocalSchemas())
    assert len(validated) == 5, validated


def test_stac_item_of_a_raster_without_epsg_code_and_no_period(tmp_path):
    """A CRS without an EPSG code goes into proj:wkt2; without a period the item's datetime is the file's time."""
    path = write_raster(tmp_path / "classified.tif", np.ones((20, 30), np.uint8),
                        crs="+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m",
                        origin=(4300000.0, 2900000.0))
    os.utime(path, (1600000000.5, 1600000000.5))
    item = report.stac_item("XD", "Demoland", {"classified": dict(path=path, title="t", roles=["data"])},
                            tmp_path / "item.json")
    data = report.write_stac_item(item, tmp_path / "item.json")
    assert data["properties"]["datetime"] == "2020-09-13T12:26:40Z"
    assert "proj:wkt2" in data["properties"] and data["properties"].get("proj:code") is None
    assert pystac.Item.from_file(str(tmp_path / "item.json")).validate(validator=LocalSchemas())
    with pytest.raises(ValueError, match="GeoTIFF"):
        report.stac_item("XD", "Demoland", {"q": dict(path=tmp_path / "item.json", title="t", roles=["x"])},
                         tmp_path / "other.json")


# --------------------------------------------------------------------------- the report of a real run


def _chromium():
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.mark.integration
def test_snakemake_report_renders_in_chromium(small_demo_run, tmp_path):
    html = small_demo_run / "report.html"
    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", "config_small.yaml",
                             "--report", str(html)], cwd=small_demo_run, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    text = html.read_text(errors="replace")
    # Self-contained: the plots and tables are embedded, not linked.
    for name in ("XD_classified_sieved_quicklook.png", "XD_reference_confusion.png", "XD_accuracy.csv",
                 "XD_validation_accuracy.csv", "XD_resnet_training.png", "XD_config.yaml", "XD_area_estimates.csv"):
        assert name in text, name
    if _chromium() is None:
        # Like the real test data, the browser is installed on first use (Debian's chromium, as root).
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "install_chromium.sh")], timeout=900)
    if _chromium() is None:
        pytest.skip("chromium is not installed and could not be (scripts/install_chromium.sh installs it)")
    out = tmp_path / "shots"
    check = subprocess.run(["bash", os.path.join(ROOT, "scripts", "check_report.sh"), str(html), str(out)],
                           capture_output=True, text=True, timeout=600)
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
    assert "report OK" in check.stdout
