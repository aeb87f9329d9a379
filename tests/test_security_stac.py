"""A STAC API's answers are data (issue 26): against the real local STAC API of tests/test_stac.py
(``rustac serve``) and the range file server, items whose asset hrefs would make GDAL read something
else (a local path, ``file://``, a ``/vsicurl/`` path, an inline VRT) are refused in one line naming
the item and asset, with nothing read and nothing written, both when the manifest is written and when
an edited manifest is read; plain http and foreign hosts need the config's opt-ins.  A small
standard-library STAC API serves what rustac would not: malformed items and a server that trickles
its answer (the search's total deadline)."""

import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from http_servers import file_server, free_port, stac_api
from osmlulc import stac
from osmlulc.hrefs import HrefPolicy, check_href
from osmlulc.io import InputError
from test_stac import (ASSETS, DATES, PERIOD, bbox, catalogue, composite, earth_search_item,  # noqa: F401
                       settings, write_items)

BAD_HREFS = {
    "local path": lambda served, base: str(served / DATES[0][0] / f"T32UNU_{DATES[0][0]}_B02.tif"),
    "file URL": lambda served, base: f"file://{served / DATES[0][0] / f'T32UNU_{DATES[0][0]}_B02.tif'}",
    "vsicurl": lambda served, base: f"/vsicurl/{base}{DATES[0][0]}/T32UNU_{DATES[0][0]}_B02.tif",
    "inline VRT": lambda served, base: (
        f'<VRTDataset rasterXSize="60" rasterYSize="60"><VRTRasterBand dataType="UInt16" band="1"><SimpleSource>'
        f"<SourceFilename>/vsicurl/{base}{DATES[0][0]}/T32UNU_{DATES[0][0]}_B02.tif</SourceFilename>"
        "<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>"),
}


def asset_requests(requests_log):
    lines = requests_log.read_text().splitlines() if requests_log.exists() else []
    return [line for line in lines if line.startswith("GET") and "__alive__" not in line]


def one_line(err):
    message = str(err.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("kind", list(BAD_HREFS))
def test_an_item_pointing_gdal_elsewhere_is_refused_at_search(catalogue, tmp_path, kind):  # noqa: F811
    served = catalogue / "served"
    with file_server(served) as (base, _, requests_log):
        items = write_items(tmp_path, base, extra=False)
        data = json.loads(items.read_text())
        data["features"][1]["assets"]["blue"]["href"] = BAD_HREFS[kind](served, base)
        items.write_text(json.dumps(data))
        with stac_api(items) as (url, _, _):
            with pytest.raises(InputError) as err:
                stac.search_tile(settings(url), PERIOD, "32UNU", bbox(), tmp_path / "manifest.json")
        assert asset_requests(requests_log) == []          # nothing read
    message = one_line(err)
    assert f"STAC item {DATES[1][0]} asset blue" in message and "refused" in message, message
    assert not (tmp_path / "manifest.json").exists()       # nothing written


@pytest.mark.parametrize("kind", list(BAD_HREFS))
def test_an_edited_manifest_is_checked_again_when_read(catalogue, tmp_path, kind):  # noqa: F811
    served = catalogue / "served"
    with file_server(served) as (base, _, requests_log):
        with stac_api(write_items(tmp_path, base, extra=False)) as (url, _, _):
            stac.search_tile(settings(url), PERIOD, "32UNU", bbox(), tmp_path / "manifest.json")
        manifest = json.loads((tmp_path / "manifest.json").read_text())
        manifest["items"][2]["assets"]["B02"] = BAD_HREFS[kind](served, base)
        (tmp_path / "manifest.json").write_text(json.dumps(manifest))
        before = asset_requests(requests_log)
        with pytest.raises(InputError) as err:
            composite(tmp_path / "manifest.json", tmp_path / "out", settings(url)["http"])
        assert asset_requests(requests_log) == before      # nothing read
    assert f"STAC item {DATES[2][0]} asset B02" in one_line(err)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize("edit", [lambda m: m["items"][0].pop("assets"), lambda m: m["items"][1].update(id=7),
                                  lambda m: m["items"][2]["offsets"].update(B02="-1000")])
def test_a_manifest_missing_keys_fails_in_one_line(tmp_path, edit):
    manifest = {"osmlulc_manifest": stac.MANIFEST_VERSION, "items": [
        {"id": d[0], "assets": {"B02": f"https://cogs.example/{d[0]}/B02.tif"}, "offsets": {"B02": -1000.0}}
        for d in DATES]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert len(stac.manifest_products(stac.read_manifest(tmp_path / "manifest.json"))) == 3
    edit(manifest)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError) as err:
        stac.read_manifest(tmp_path / "manifest.json")
    assert "delete it so the search runs again" in one_line(err)


def _bad_zone(item):
    item["properties"]["mgrs:utm_zone"] = "thirty-two"
    del item["properties"]["grid:code"]


def test_plain_http_and_foreign_hosts_need_the_opt_ins(catalogue, tmp_path):  # noqa: F811
    with file_server(catalogue / "served") as (base, _, requests_log):
        with stac_api(write_items(tmp_path, base, extra=False)) as (url, _, _):
            strict = {k: v for k, v in settings(url).items() if k != "allow_insecure_http"}
            with pytest.raises(InputError) as err:                              # the API itself over http
                stac.search_tile(strict, PERIOD, "32UNU", bbox(), tmp_path / "manifest.json")
            assert "is not an https:// URL" in one_line(err) and "stac.allow_insecure_http" in str(err.value)
            with pytest.raises(InputError) as err:                              # assets on another host
                stac.search_tile(settings(url, asset_hosts=["sentinel-cogs.example"]), PERIOD, "32UNU", bbox(),
                                 tmp_path / "manifest.json")
            assert "not one of stac.asset_hosts" in one_line(err)
            assert not (tmp_path / "manifest.json").exists()
            manifest = stac.search_tile(settings(url, asset_hosts=["127.0.0.1"]), PERIOD, "32UNU", bbox(),
                                        tmp_path / "manifest.json")
        # The manifest was written with the opt-in; read without it (https only), it is refused.
        with pytest.raises(InputError) as err:
            stac.manifest_products(manifest)
        assert "is not https" in one_line(err)
        assert asset_requests(requests_log) == []


def test_what_the_policy_accepts():
    strict, local = HrefPolicy(), HrefPolicy(allow_local_hrefs=True)
    assert check_href("https://a.example/x/B02.tif", strict, item="i", asset="a") == "/vsicurl/https://a.example/x/B02.tif"
    assert check_href("/data/mirror/B02.tif", local, item="i", asset="a") == "/data/mirror/B02.tif"
    assert check_href("file:///data/mirror/B02.tif", local, item="i", asset="a") == "/data/mirror/B02.tif"
    for href in ["/vsizip//tmp/a.zip/x.tif", "<VRTDataset/>", " <VRTDataset/>", "GPKG:/tmp/a.gpkg:t",
                 "s3://bucket/B02.tif", "file:///vsicurl/http://x/y.tif", "https://user:pw@a.example/x.tif",
                 "https://a.example/x y.tif", None, ""]:
        for policy in (strict, local):
            with pytest.raises(InputError, match="refused"):
                check_href(href, policy, item="i", asset="a")


# --------------------------------------------------------------------------- a hand-made STAC API


@contextmanager
def tiny_stac_api(items, trickle_s=None):
    """A STAC API (landing page + /search) over http://127.0.0.1 serving ``items`` as they are; with
    ``trickle_s``, the landing page is sent a byte at a time, one every ``trickle_s`` seconds."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    landing = {"type": "Catalog", "id": "tiny", "stac_version": "1.0.0", "description": "tiny",
               "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"],
               "links": [{"rel": "self", "href": url}, {"rel": "root", "href": url},
                         {"rel": "search", "href": f"{url}/search", "type": "application/geo+json", "method": "POST"}]}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            body = json.dumps({"type": "FeatureCollection", "features": items, "links": []}
                              if self.path.startswith("/search") else landing).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if trickle_s is None:
                self.wfile.write(body)
                return
            for byte in body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(trickle_s)

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


def _malformed(item):
    del item["properties"]


def _no_href(item):
    del item["assets"]["blue"]["href"]


def _bad_cloud(item):
    item["properties"]["eo:cloud_cover"] = "cloudy"


def _bad_scale(item):
    item["assets"]["red"]["raster:bands"][0]["scale"] = "x"


@pytest.mark.parametrize("breaking", [_malformed, _no_href, _bad_cloud, _bad_scale, _bad_zone])
def test_an_item_missing_keys_fails_in_one_line_naming_the_api(tmp_path, breaking):
    items = [earth_search_item(*d, "https://cogs.example/") for d in DATES]
    with tiny_stac_api(items) as url:   # the intact items are searched fine
        assert len(stac.search_tile(settings(url), PERIOD, "32UNU", bbox(), tmp_path / "ok.json")["items"]) == 3
    breaking(items[1])
    with tiny_stac_api(items) as url:
        with pytest.raises(InputError) as err:
            stac.search_tile(settings(url), PERIOD, "32UNU", bbox(), tmp_path / "manifest.json")
    message = one_line(err)
    assert message.startswith(f"STAC API {url}") and "malformed STAC answer" in message, message
    assert not (tmp_path / "manifest.json").exists()


def test_a_search_has_a_total_deadline(tmp_path):
    """Each read gets a byte well within the per-read time-out: only the total deadline stops it."""
    items = [earth_search_item(*d, "https://cogs.example/") for d in DATES]
    with tiny_stac_api(items, trickle_s=0.2) as url:
        started = time.monotonic()
        with pytest.raises(InputError) as err:
            stac.search_tile(settings(url, http={"timeout_s": 5, "retries": 0, "search_deadline_s": 1.5}),
                             PERIOD, "32UNU", bbox(), tmp_path / "manifest.json")
        took = time.monotonic() - started
    assert "did not finish" in one_line(err) and "search_deadline_s" in str(err.value) and url in str(err.value)
    assert took < 5
    assert not (tmp_path / "manifest.json").exists()
