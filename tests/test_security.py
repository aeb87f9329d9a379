"""Untrusted inputs stay inert (issue 26), apart from the STAC hrefs (tests/test_security_stac.py):
report text escaped, reused model files verified, resources bounded, product metadata and zips
checked, demo outputs kept under resources/demo/."""

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import jinja2
import pytest
import rasterio
import yaml
from docutils.core import publish_parts

from conftest import ROOT, linked_workflow
from http_servers import stac_api
from osmlulc import composite as composite_module
from osmlulc.composite import composite_products, gdal_cache_options
from osmlulc.demo.spec import check_demo_outputs
from osmlulc.io import InputError
from osmlulc.model_files import verified_copy
from osmlulc.rst import rst_text
from osmlulc.run_status import run_status_rst, write_run_status
from osmlulc.sentinel2 import MAX_METADATA_BYTES, open_product, parse_metadata
from s2_synthetic import BANDS, CRS, ORIGIN, mtd_xml, product_arrays, write_product
from test_composite import CLOUDS, SIZE

#: Text a failing rule could carry into the report: Jinja that would run, reST that would link or inject HTML.
JINJA = "{%endraw%}{{'x'*3+'ran'}}{{cycler.__init__.__globals__.os.system('touch${IFS}pwned')}}{%raw%}"
REST = "`x <javascript:alert(1)>`_ :raw-html:`<script>alert(2)</script>` **bold** |sub|"


def one_line(err):
    assert "\n" not in str(err.value), str(err.value)
    return str(err.value)


# --------------------------------------------------------------------------- report text


def render_front_page(rst: str) -> str:
    """The report's front page as Snakemake makes it: a Jinja template (the status inside raw, as
    rules/common.smk writes it), then reST -> HTML with Snakemake's raw-html role."""
    page = jinja2.Template(f"front\n\n{{% raw %}}\n{rst}\n{{% endraw %}}\n").render(snakemake=None)
    prolog = ".. role:: raw-html(raw)\n   :format: html\n\n"
    return publish_parts(prolog + page, writer="html")["fragment"]


def test_escaped_text_renders_literally_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # where the payload's command would leave its file
    for text in (JINJA, REST, "a\\b `` * _ | [1]_ {# c #}\nsecond line"):
        escaped = rst_text(text)
        for delimiter in ("{%", "%}", "{{", "}}", "{#", "#}"):
            assert delimiter not in escaped
        html = render_front_page(f"- {escaped}")
        assert "<a " not in html and "<script" not in html and "<strong" not in html, html
        shown = html.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&")
        assert " ".join(text.split()) in shown.replace("&#64;", "@"), html
    assert not (tmp_path / "pwned").exists()


def test_run_status_section_escapes_every_field(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status = tmp_path / "run_status.csv"
    write_run_status([{"country": "XD", "tile": "32UNU", "status": "failed", "rule": "search_scenes",
                       "message": JINJA + " " + REST}], status)
    html = render_front_page(run_status_rst({"XD": status}))
    assert "<a " not in html and "<script" not in html and "xxxran" not in html
    assert "{%endraw%}{{'x'*3+'ran'}}" in html and not (tmp_path / "pwned").exists()


CONFIG_FILE = "results/XS/report/XS_config.yaml"


@pytest.mark.integration
def test_a_failure_message_reaches_the_report_literally(tmp_path):
    """A real run whose search fails with a message carrying Jinja (an asset href refused, shown in
    the message), then `snakemake --report`: the text is there as it was, nothing ran."""
    from test_stac import DATES, add_earth_search_assets, earth_search_item, stac_country

    items = [earth_search_item(*d, "https://cogs.example/") for d in DATES]
    add_earth_search_assets(items)
    items[0]["assets"]["blue"]["href"] = f"http://x.example/{JINJA}"
    (tmp_path / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    linked_workflow(tmp_path / "run")
    run = tmp_path / "run"
    with stac_api(tmp_path / "items.json") as (url, _, _):
        country = stac_country(url, asset_hosts=["cogs.example"])
        (run / "cc.yaml").write_text(yaml.safe_dump({"run_countries": ["XS"], "countries": {"XS": country}}))
        cmd = [sys.executable, "-m", "snakemake", "--cores", "1"]
        # The run's configuration (rule run_config) is built, so the report has something to show.
        result = subprocess.run([*cmd, "--keep-going", CONFIG_FILE, "results/XS/tiles/32UNU/stac_manifest.json",
                                 "--configfile", "cc.yaml"], cwd=run, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and "asset blue" in result.stderr, result.stderr[-3000:]
    status = (run / "results" / "XS" / "run_status.csv").read_text()
    assert "{%endraw%}{{'x'*3+'ran'}}" in status   # the message as the rule wrote it
    report = subprocess.run([*cmd, "--report", "report.html", CONFIG_FILE, "--configfile", "cc.yaml"], cwd=run,
                            capture_output=True, text=True, timeout=600)
    assert report.returncode == 0, report.stderr[-3000:]
    html = (run / "report.html").read_text(errors="replace")
    assert "Run status" in html and "not one of stac.asset_hosts" in html
    assert "{%endraw%}{{'x'*3+'ran'}}" in html and "xxxran" not in html
    assert not list(run.rglob("pwned")) and not (Path.cwd() / "pwned").exists()


# --------------------------------------------------------------------------- model files


def test_a_reused_model_is_verified_before_it_is_loaded(tmp_path):
    model = tmp_path / "svm.joblib"
    model.write_bytes(b"pretend pickle")
    digest = hashlib.sha256(b"pretend pickle").hexdigest()
    verified_copy(model, digest.upper(), tmp_path / "ok" / "svm.joblib")
    assert (tmp_path / "ok" / "svm.joblib").read_bytes() == b"pretend pickle"
    model.write_bytes(b"another pickle")
    with pytest.raises(InputError) as err:
        verified_copy(model, digest, tmp_path / "bad" / "svm.joblib")
    assert f"not the configured {digest}" in one_line(err)
    assert not (tmp_path / "bad").exists() or not list((tmp_path / "bad").iterdir())


@pytest.mark.integration
def test_the_workflow_predicts_with_the_verified_copy(tmp_path):
    """A country reusing a model with its sha256 plans rule verify_model, and prediction reads its copy."""
    linked_workflow(tmp_path)
    model = tmp_path / "models" / "rf.joblib"
    model.parent.mkdir()
    model.write_bytes(b"x")
    with open(os.path.join(ROOT, "config", "config.yaml")) as f:
        config = yaml.safe_load(f)
    country = config["countries"]["XD"]
    country["models"] = {"rf": {"path": "models/rf.joblib", "sha256": hashlib.sha256(b"x").hexdigest()}}
    (tmp_path / "cc.yaml").write_text(yaml.safe_dump({"countries": {"XD": country}}))
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "results/XD/tiles/32UNU/classified_rf_pixel.tif",
                             "--configfile", "cc.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = {block.split(":", 1)[0]: block for block in result.stdout.split("\nrule ")[1:]}
    assert "input: models/rf.joblib" in jobs["verify_model"], result.stdout[-3000:]
    assert "results/XD/models/verified/rf.joblib" in jobs["predict_pixel"] and "train_sklearn" not in jobs


def test_keras_refuses_a_lambda_layer_by_default(tmp_path):
    """safe_mode: a .keras file whose Lambda layer holds Python code is not loaded (keras>=3.11)."""
    keras = pytest.importorskip("keras")
    from osmlulc.classifiers import load_classifier

    inputs = keras.Input((4, 4, 2))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    model.save(tmp_path / "lambda.keras")
    with pytest.raises(Exception, match="(?i)lambda|safe_mode|unsafe"):
        load_classifier(tmp_path / "lambda.keras")


# --------------------------------------------------------------------------- bounded resources


def test_gdal_caches_are_sized_from_the_memory_of_the_composite():
    for memory_mb, n_files in ((60, 3), (512, 64 * 13), (4096, 8)):
        options = gdal_cache_options(memory_mb, n_files)
        per_file_total = int(options["VSI_CACHE_SIZE"]) * n_files
        total = options["GDAL_CACHEMAX"] + per_file_total + int(options["CPL_VSIL_CURL_CACHE_SIZE"])
        floors = (8 << 20) + (64 << 10) * n_files + (1 << 20)   # the smallest caches GDAL is given
        assert total <= max(memory_mb * 1e6 / 2, floors), (memory_mb, options)
    assert gdal_cache_options(512, 64 * 13)["VSI_CACHE_SIZE"] < str(25 << 20)   # GDAL's default per file


def _products(root):
    names = [f"S2A_MSIL2A_2023060{i}T103631_N0509_R008_T32UNU_2023060{i}T170000" for i in (1, 2)]
    return [write_product(root, n, product_arrays(SIZE, c), baseline="05.09", offset=-1000)
            for n, c in zip(names, CLOUDS)]


def _composite(products, out, **kw):
    outputs = {b: out / f"{b}.tif" for b in BANDS}
    return composite_products("32UNU", products=[str(p) for p in products], bands=BANDS, reference_band="B02",
                              band_outputs=outputs, valid_observations=out / "n.tif", memory_mb=60,
                              mask_settings={"scl_mask_classes": [0, 1, 3, 8, 9, 10, 11]}, **kw)


def test_the_composite_runs_under_its_cache_settings(tmp_path, monkeypatch):
    seen = {}

    def spy(items, **kwargs):
        seen.update(rasterio.env.getenv())
        return []

    monkeypatch.setattr(composite_module, "composite_tile", spy)
    _composite(_products(tmp_path), tmp_path / "out")
    assert seen["VSI_CACHE_SIZE"] == gdal_cache_options(60, 2 * (len(BANDS) + 2))["VSI_CACHE_SIZE"]


def test_a_reference_band_off_the_tile_footprint_is_refused(tmp_path):
    products = _products(tmp_path)
    bounds = [ORIGIN[0], ORIGIN[1] - SIZE * 10, ORIGIN[0] + SIZE * 10, ORIGIN[1]]
    _composite(products, tmp_path / "ok", tile_grid={"crs": CRS, "bounds": [bounds[0] + 9, *bounds[1:]]})  # < 1 px
    shifted = [bounds[0], bounds[1] + 20, *bounds[2:]]
    for grid in ({"crs": CRS, "bounds": shifted}, {"crs": "EPSG:32633", "bounds": bounds}):
        with pytest.raises(InputError) as err:
            _composite(products, tmp_path / "bad", tile_grid=grid)
        assert "not the tile's footprint" in one_line(err)
        assert not (tmp_path / "bad").exists() or not list((tmp_path / "bad").iterdir())


def test_max_items_per_tile_is_capped_by_the_schema():
    import jsonschema

    with open(os.path.join(ROOT, "config", "schema.yaml")) as f:
        schema = yaml.safe_load(f)
    stac_schema = {"definitions": schema["definitions"], **schema["properties"]["stac"]}
    jsonschema.validate({"max_items_per_tile": 64}, stac_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"max_items_per_tile": 65}, stac_schema)


# --------------------------------------------------------------------------- product metadata and zips


def _zipped(tmp_path, metadata: bytes, name="S2A_MSIL2A_20230601T103631_N0509_R008_T32UNU_20230601T170000"):
    folder = write_product(tmp_path / "folder", name, product_arrays(SIZE, CLOUDS[0]), baseline="05.09",
                           offset=-1000, metadata=False)
    path = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.iterdir()):
            archive.write(file, f"{name}.SAFE/{file.name}")
        archive.writestr(f"{name}.SAFE/MTD_MSIL2A.xml", metadata)
    return path


def test_a_good_zipped_product_still_opens(tmp_path):
    product = open_product(_zipped(tmp_path, mtd_xml("05.09", -1000).encode()), "32UNU")
    assert product.kind == "zip" and product.offsets["B02"] == -1000


def test_an_oversized_metadata_member_is_not_read(tmp_path):
    path = _zipped(tmp_path, b"<a>" + b" " * (MAX_METADATA_BYTES + 1) + b"</a>")
    with pytest.raises(InputError) as err:
        open_product(path, "32UNU")
    assert "not read" in one_line(err) and str(path) in str(err.value)


def test_a_damaged_zip_fails_in_one_line(tmp_path):
    path = _zipped(tmp_path, mtd_xml("05.09", -1000).encode())
    data = path.read_bytes()
    start = data.index(b"MTD_MSIL2A.xml") + len(b"MTD_MSIL2A.xml")   # the member's data follows its local header
    data = data[:start + 40] + bytes(b ^ 0xFF for b in data[start + 40:start + 80]) + data[start + 80:]
    path.write_bytes(data)
    with pytest.raises(InputError) as err:
        open_product(path, "32UNU")
    assert "damaged zip" in one_line(err) and str(path) in str(err.value)


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<n1:Level-2A_User_Product xmlns:n1="x"><PROCESSING_BASELINE>&lol2;</PROCESSING_BASELINE></n1:Level-2A_User_Product>"""


@pytest.mark.parametrize("metadata, says", [
    (BOMB, "is not valid XML"),
    (mtd_xml("05.09", -1000).replace("10000</BOA_QUANTIFICATION_VALUE>", "ten</BOA_QUANTIFICATION_VALUE>").encode(),
     "malformed value"),
    (mtd_xml("05.09", -1000).replace('band_id="3"', 'band_id="three"').encode(), "malformed value"),
])
def test_metadata_is_parsed_defensively(tmp_path, metadata, says):
    with pytest.raises(ValueError):
        parse_metadata(metadata)
    path = _zipped(tmp_path, metadata)
    with pytest.raises(InputError) as err:
        open_product(path, "32UNU")
    assert says in one_line(err) and "MTD_MSIL2A.xml" in str(err.value)


# --------------------------------------------------------------------------- demo outputs


def test_demo_outputs_stay_under_resources_demo():
    check_demo_outputs("XD", {"label": "resources/demo/XD/label.tif", "bands": ["resources/demo/XD/a.tif"]})
    for path in ("results/XD/label.tif", "resources/demo/../../Snakefile", "/etc/x.tif", "resources/demo2/x.tif"):
        with pytest.raises(InputError) as err:
            check_demo_outputs("XD", {"label": path})
        assert "is not under resources/demo/" in one_line(err)
