"""STAC imagery by value, against real servers on 127.0.0.1: ``rustac serve`` (a STAC API with an
in-memory backend, from PyPI) holding items shaped like Earth Search's ``sentinel-2-l2a`` ones, and a
standard-library HTTP server serving their COG assets with byte ranges.  The client is pystac-client,
the reader GDAL (/vsicurl/).  Through the library and through the workflow's search_scenes and
composite rules: the composite of three cloudy dates equals the clear values, offsets of baseline
>= 04.00 items are applied per item, a tile without a usable item fails its search in one line, a
server dying mid-read fails in one line naming the URL and leaves no output, and a rerun with
unchanged settings does not search (it succeeds with the STAC API stopped)."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import yaml
from rasterio.warp import transform_bounds

from conftest import ROOT, linked_workflow
from http_servers import file_server, stac_api
from osmlulc import stac
from osmlulc.composite import composite_products
from osmlulc.io import InputError
from osmlulc.settings import validate_config
from s2_synthetic import BANDS, CRS, ORIGIN, clear_values, product_arrays, write_product
from test_composite import CLOUDS, SIZE, expected_count, read

ASSETS = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "B05": "rededge1", "B11": "swir16", "SCL": "scl"}
BOUNDS = (ORIGIN[0], ORIGIN[1] - SIZE * 10, ORIGIN[0] + SIZE * 10, ORIGIN[1])
#: The three dates: id, baseline, offset DN written into the values, cloud cover, Earth Search's flag.
DATES = [("S2A_32UNU_20230601_0_L2A", "02.14", 0, 30.0), ("S2B_32UNU_20230611_0_L2A", "04.00", 1000, 40.0),
         ("S2A_32UNU_20230621_0_L2A", "05.09", 1000, 35.0)]


def earth_search_item(item_id, baseline, add, cloud_cover, base_url, tile="32UNU"):
    """An item as Earth Search v1 shapes them: asset keys, raster:bands scale/offset, grid:code, mgrs:*."""
    date = item_id.split("_")[2]
    west, south, east, north = transform_bounds(CRS, "EPSG:4326", *BOUNDS)
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    assets = {}
    for band, key in ASSETS.items():
        raster = {"nodata": 0, "data_type": "uint8" if band == "SCL" else "uint16",
                  "spatial_resolution": 20 if band == "SCL" else BANDS[band]}
        if band != "SCL":
            raster.update(scale=0.0001, offset=-0.1 if add else 0.0)
        assets[key] = {"href": f"{base_url}{item_id}/T32UNU_{item_id}_{band}.tif",
                       "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": ["data"],
                       "raster:bands": [raster]}
    assets["thumbnail"] = {"href": f"{base_url}{item_id}/thumb.jpg", "type": "image/jpeg", "roles": ["thumbnail"]}
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": "sentinel-2-l2a",
        "geometry": {"type": "Polygon", "coordinates": [ring]}, "bbox": [west, south, east, north],
        "properties": {
            "datetime": f"{date[:4]}-{date[4:6]}-{date[6:]}T10:36:21.024000Z", "platform": "sentinel-2a",
            "constellation": "sentinel-2", "eo:cloud_cover": cloud_cover, "s2:processing_baseline": baseline,
            "grid:code": f"MGRS-{tile}", "mgrs:utm_zone": int(tile[:2]), "mgrs:latitude_band": tile[2],
            "mgrs:grid_square": tile[3:], "earthsearch:boa_offset_applied": False, "proj:epsg": 32632,
        },
        "links": [{"rel": "self", "href": f"https://earth-search.example/v1/collections/sentinel-2-l2a/items/{item_id}"}],
        "assets": assets,
    }


def add_earth_search_assets(items):
    """Earth Search's other bands (asset keys of config.yaml's stac.assets), served by the same files."""
    for item in items:
        for key in ("rededge2", "rededge3", "nir08", "swir22"):
            item["assets"][key] = json.loads(json.dumps(item["assets"]["rededge1"]))


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    """COG assets of three dates (+ a neighbour tile's and a too cloudy item) and their item collection."""
    root = tmp_path_factory.mktemp("stac")
    served = root / "served"
    for (item_id, baseline, add, _), cloud in zip(DATES, CLOUDS):
        write_product(served, item_id, product_arrays(SIZE, cloud, add=add), baseline=baseline, offset=None,
                      cog=True, metadata=False)
    return root


def write_items(root, base_url, extra=True):
    items = [earth_search_item(*d, base_url) for d in DATES]
    if extra:
        items.append(earth_search_item("S2A_32UPU_20230601_0_L2A", "05.09", 1000, 5.0, base_url, tile="32UPU"))
        items.append(earth_search_item("S2A_32UNU_20230701_0_L2A", "05.09", 1000, 95.0, base_url))
    path = root / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return path


def top_level_stac():
    """The top-level stac section as the workflow reads it: config.yaml's, validated (the schema's defaults)."""
    with open(os.path.join(ROOT, "config", "config.yaml")) as f:
        config = yaml.safe_load(f)
    validate_config(config, os.path.join(ROOT, "config", "schema.yaml"))
    return config["stac"]


def settings(url, **overrides):
    """The search settings of the tests, a country's as the workflow makes them (osmlulc.stac.stac_config): the
    servers are http://127.0.0.1, hence the opt-in (osmlulc.hrefs); ``http`` overrides merge key by key."""
    return stac.stac_config(top_level_stac(), {
        "url": url, "max_cloud_cover": 50, "max_items_per_tile": 8, "assets": ASSETS,
        "http": {"timeout_s": 5, "connect_timeout_s": 2, "retries": 1, "retry_delay_s": 0.1},
        "allow_insecure_http": True, **overrides})


PERIOD = {"start": "2023-05-01", "end": "2023-08-31"}


def bbox():
    return list(transform_bounds(CRS, "EPSG:4326", *BOUNDS))


def composite(manifest, out, http):
    outputs = {b: out / f"{b}.tif" for b in BANDS}
    report = composite_products("32UNU", manifest=manifest, http=http, bands=BANDS, reference_band="B02",
                                band_outputs=outputs, valid_observations=out / "valid_observations.tif",
                                stac_settings={"allow_insecure_http": True},
                                valid_mask=out / "valid_mask.tif", method="median", memory_mb=0.05,
                                mask_settings={"scl_mask_classes": [0, 1, 3, 8, 9, 10, 11]})
    return outputs, report


def test_search_writes_a_pinned_manifest_and_the_composite_reads_it_over_http(catalogue, tmp_path):
    with file_server(catalogue / "served") as (base, _, requests_log):
        with stac_api(write_items(tmp_path, base)) as (url, _, _):
            manifest = stac.search_tile(settings(url), PERIOD, "32UNU", bbox(), tmp_path / "manifest.json")
        # The search is over: the composite needs only the manifest and the asset server.
        assert [i["id"] for i in manifest["items"]] == [d[0] for d in DATES]   # acquisition order
        assert manifest["counts"] == {"returned": 5, "other_tile": 1, "too_cloudy": 1}
        assert [i["offsets"]["B02"] for i in manifest["items"]] == [0.0, -1000.0, -1000.0]
        assert [i["processing_baseline"] for i in manifest["items"]] == ["02.14", "04.00", "05.09"]
        assert manifest["items"][0]["assets"]["B02"].startswith(base)
        assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
        outputs, report = composite(tmp_path / "manifest.json", tmp_path / "out", settings(url)["http"])
    count = expected_count()
    assert (read(tmp_path / "out" / "valid_observations.tif") == count).all()
    clear = clear_values(SIZE)
    for band, path in outputs.items():
        f = BANDS[band] // 10
        seen = count[::f, ::f] > 0
        assert (read(path)[seen] == clear[band][seen]).all(), band
        assert (read(path)[~seen] == 0).all()
    gets = [line for line in requests_log.read_text().splitlines()
            if line.startswith("GET") and "__alive__" not in line]
    ranges = [line for line in gets if "bytes=" in line]
    assert [g for g in gets if "bytes=" not in g] == [] and all(line.endswith(" 206") for line in ranges)
    assert len(ranges) >= 3 * len(ASSETS)
    assert [r["product"] for r in report["masked"]] == [d[0] for d in DATES] and report["dropped"] == []


def test_max_items_keeps_the_least_cloudy(catalogue, tmp_path):
    with file_server(catalogue / "served") as (base, _, _):
        with stac_api(write_items(tmp_path, base)) as (url, _, _):
            manifest = stac.search_tile(settings(url, max_items_per_tile=2), PERIOD, "32UNU", bbox(),
                                        tmp_path / "manifest.json")
    assert [i["id"] for i in manifest["items"]] == [DATES[0][0], DATES[2][0]]


def test_no_usable_item_fails_in_one_line(catalogue, tmp_path):
    with stac_api(write_items(tmp_path, "http://127.0.0.1:9/")) as (url, _, _):
        with pytest.raises(InputError) as err:
            stac.search_tile(settings(url, max_cloud_cover=10), PERIOD, "32UNU", bbox(), tmp_path / "manifest.json")
    message = str(err.value)
    assert "\n" not in message and "no usable item" in message and "max_cloud_cover" in message and url in message
    assert not (tmp_path / "manifest.json").exists()


def test_a_server_dying_mid_read_fails_in_one_line_naming_the_url(catalogue, tmp_path):
    with file_server(catalogue / "served") as (base, _, requests_log):
        with stac_api(write_items(tmp_path, base)) as (url, _, _):
            stac.search_tile(settings(url), PERIOD, "32UNU", bbox(), tmp_path / "manifest.json")
        before = requests_log.read_text().count("bytes=")
        composite(tmp_path / "manifest.json", tmp_path / "complete", settings(url)["http"])
        reads = requests_log.read_text().count("bytes=") - before
    manifest = (tmp_path / "manifest.json").read_text()
    # A server that dies half-way through the reads (its URLs are new: nothing comes from GDAL's cache).
    with file_server(catalogue / "served", die_after=reads // 2) as (dying, process, _):
        (tmp_path / "manifest.json").write_text(manifest.replace(base, dying))
        with pytest.raises(InputError) as err:
            composite(tmp_path / "manifest.json", tmp_path / "out", settings(url)["http"])
        assert process.poll() is not None   # it did die
    message = str(err.value)
    assert "\n" not in message and dying in message and "check the network" in message, message
    assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


def test_an_item_the_server_cannot_deliver_is_dropped_and_the_others_composited(catalogue, tmp_path):
    """One item's assets fail after the retries (nothing listens at their URL): the item is left out with its
    reason, the composite is made of the other two dates (issue 23)."""
    with file_server(catalogue / "served") as (base, _, _):
        with stac_api(write_items(tmp_path, base)) as (url, _, _):
            stac.search_tile(settings(url), PERIOD, "32UNU", bbox(), tmp_path / "manifest.json")
        manifest = json.loads((tmp_path / "manifest.json").read_text())
        bad = manifest["items"][1]
        bad["assets"] = {k: v.replace(base, "http://127.0.0.1:9/") for k, v in bad["assets"].items()}
        (tmp_path / "manifest.json").write_text(json.dumps(manifest))
        _, record = composite(tmp_path / "manifest.json", tmp_path / "out", settings(url)["http"])
    assert [d["product"] for d in record["dropped"]] == [bad["id"]] and "127.0.0.1:9" in record["dropped"][0]["reason"]
    assert record["products"] == [manifest["items"][0]["id"], manifest["items"][2]["id"]]
    cloudy = np.zeros((3, SIZE, SIZE), bool)
    for k, (r, c) in enumerate(CLOUDS):
        cloudy[k, r, c] = True
    assert (read(tmp_path / "out" / "valid_observations.tif") == (~cloudy[[0, 2]]).sum(axis=0)).all()


def test_a_window_of_a_large_cog_is_read_without_fetching_the_file(tmp_path):
    """GDAL's /vsicurl/ reads a COG window by ranges: a 256 px window of a 4096 px band moves a
    small part of the file."""
    rng = np.random.default_rng(0)
    data = rng.integers(1, 10000, (4096, 4096), dtype=np.uint16)
    from s2_synthetic import write_tif

    write_tif(tmp_path / "served" / "B02.tif", data, 10, cog=True)
    size = (tmp_path / "served" / "B02.tif").stat().st_size
    http = stac.gdal_http_options(top_level_stac()["http"])
    with file_server(tmp_path / "served") as (base, _, requests_log):
        with rasterio.Env(**http), rasterio.open(f"/vsicurl/{base}B02.tif") as src:
            window = src.read(1, window=rasterio.windows.Window(1024, 2048, 256, 256))
        moved = 0
        for line in requests_log.read_text().splitlines():
            if "bytes=" in line:
                start, end = line.split("bytes=")[1].split()[0].split("-")
                moved += int(end) - int(start) + 1
    assert (window == data[2048:2304, 1024:1280]).all()
    assert moved < size / 20, (moved, size)


# --------------------------------------------------------------------------- through the workflow


def workflow_dir(tmp_path, country):
    linked_workflow(tmp_path)
    (tmp_path / "cc.yaml").write_text(yaml.safe_dump({"run_countries": ["XS"], "countries": {"XS": country}}))


def snakemake(tmp_path, *args):
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", *args, "--configfile", "cc.yaml"]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)


def stac_country(url, **stac_overrides):
    return {"name": "STAC test", "source": "stac", "tiles": ["32UNU"], "training_tiles": ["32UNU"],
            "boundary": "boundary.geojson", "label_raster": "label.tif", "period": PERIOD,
            "tile_grid": {"32UNU": {"crs": CRS, "bounds": list(BOUNDS)}},
            "stac": {"url": url, "max_cloud_cover": 50, "max_items_per_tile": 5, "allow_insecure_http": True,
                     "http": {"timeout_s": 5, "connect_timeout_s": 2, "retries": 1, "retry_delay_s": 0.1},
                     **stac_overrides}}


TILE = "results/XS/tiles/32UNU"


@pytest.mark.integration
def test_rules_search_and_composite_and_a_rerun_does_not_search(catalogue, tmp_path):
    """search_scenes + composite on the workflow's config (stac defaults of config.yaml, Earth Search's
    asset keys); the rerun succeeds with the STAC API stopped: nothing is searched again."""
    with file_server(catalogue / "served") as (base, _, _):
        items = write_items(tmp_path, base)
        # Earth Search's other bands are served by the same files (asset keys of config.yaml's stac.assets).
        data = json.loads(items.read_text())
        add_earth_search_assets(data["features"])
        items.write_text(json.dumps(data))
        with stac_api(items) as (url, _, _):
            workflow_dir(tmp_path, stac_country(url))
            result = snakemake(tmp_path, f"{TILE}/valid_observations.tif", f"{TILE}/composite/B02.tif")
            assert result.returncode == 0, result.stderr[-4000:]
        manifest = json.loads((tmp_path / TILE / "stac_manifest.json").read_text())
        assert [i["id"] for i in manifest["items"]] == [d[0] for d in DATES]
        assert (read(tmp_path / TILE / "valid_observations.tif") == expected_count()).all()
        seen = expected_count() > 0
        assert (read(tmp_path / TILE / "composite" / "B02.tif")[seen] == clear_values(SIZE)["B02"][seen]).all()
        log = (tmp_path / "logs/composite/XS_32UNU.log").read_text()
        assert "masked share" in log and DATES[1][0] in log
        mtime = os.path.getmtime(tmp_path / TILE / "stac_manifest.json")
        # The STAC API is down now: a rerun with the same settings must not need it.
        rerun = snakemake(tmp_path, f"{TILE}/valid_observations.tif", f"{TILE}/composite/B02.tif")
        assert rerun.returncode == 0 and "Nothing to be done" in rerun.stdout + rerun.stderr, rerun.stderr[-3000:]
        assert os.path.getmtime(tmp_path / TILE / "stac_manifest.json") == mtime
        # Other time-outs and retries change how the scenes are read, not which: still nothing to do.
        country = stac_country(url)
        country["stac"]["http"] = {"timeout_s": 30, "retries": 5}
        (tmp_path / "cc.yaml").write_text(yaml.safe_dump({"run_countries": ["XS"], "countries": {"XS": country}}))
        plan = snakemake(tmp_path, "-n", f"{TILE}/valid_observations.tif")
        assert "Nothing to be done" in plan.stdout + plan.stderr, plan.stdout[-2000:]
        # A changed search setting searches again.
        country = stac_country(url, max_cloud_cover=45)
        (tmp_path / "cc.yaml").write_text(yaml.safe_dump({"run_countries": ["XS"], "countries": {"XS": country}}))
        plan = snakemake(tmp_path, "-n", f"{TILE}/valid_observations.tif")
        assert "search_scenes" in plan.stdout, plan.stdout[-2000:]


@pytest.mark.integration
def test_a_tile_without_usable_item_fails_in_its_search_rule_in_one_line(catalogue, tmp_path):
    with stac_api(write_items(tmp_path, "http://127.0.0.1:9/")) as (url, _, _):
        workflow_dir(tmp_path, stac_country(url, max_cloud_cover=10))
        result = snakemake(tmp_path, f"{TILE}/valid_observations.tif")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("osmlulc:")]
    # The rule's line, and the run status (rules/validate.smk) repeating it for the tile.
    assert lines[0].startswith("osmlulc: search_scenes (country=XS tile=32UNU): STAC API")
    assert "no usable item" in lines[0]
    assert all(line.startswith("osmlulc: run status: XS 32UNU: search_scenes failed") for line in lines[1:])
    assert not (tmp_path / TILE / "stac_manifest.json").exists()


@pytest.mark.integration
def test_germany_from_stac_plans_a_search_and_a_composite_per_tile(tmp_path):
    """config/countries/DE_stac.yaml: a boundary, a period and the STAC defaults (Earth Search) give a plan of
    one search and one composite per tile and the national map; the dry run searches nothing."""
    linked_workflow(tmp_path)
    with open(os.path.join(ROOT, "config", "countries", "DE_stac.yaml")) as f:
        germany = yaml.safe_load(f)["countries"]["DE"]
    (tmp_path / germany["osm_pbf"]).parent.mkdir(parents=True)
    (tmp_path / germany["osm_pbf"]).touch()   # the extract a user downloads (a placeholder for the dry run)
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--configfile",
                             "config/countries/DE_stac.yaml"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, re.M))
    n = len(germany["tiles"])
    assert int(counts["search_scenes"]) == n and int(counts["composite"]) == n
    assert int(counts["merge_valid_observations"]) == 1 and "sentinel2_band" not in counts
