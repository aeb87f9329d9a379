"""osmlulc.provenance: the `version` param of a rule follows the package code its script runs."""

import shutil
from pathlib import Path

from conftest import ROOT
from osmlulc.provenance import code_version, modules_used

SCRIPTS = Path(ROOT) / "workflow" / "scripts"


def _package_copy(tmp_path) -> Path:
    pkg = tmp_path / "osmlulc"
    shutil.copytree(Path(ROOT) / "src" / "osmlulc", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return pkg


def test_modules_used_follow_imports_transitively():
    # merge.py imports classes, logs and mosaic; mosaic imports io, logs, classes, footprints, windows.
    used = modules_used(SCRIPTS / "merge.py")
    assert {"__init__", "classes", "logs", "mosaic", "footprints", "windows", "io"} <= set(used)
    assert "classifiers" not in used and "segmentation" not in used
    # predict_pixel -> predict -> classifiers -> resnet: a model change reruns prediction (training code does not).
    used = modules_used(SCRIPTS / "predict_pixel.py")
    assert {"classifiers", "resnet"} <= set(used) and "resnet_training" not in used


def test_code_change_changes_the_version_of_the_scripts_that_use_it_only(tmp_path):
    pkg = _package_copy(tmp_path)
    before = {s: code_version(SCRIPTS / f"{s}.py", pkg) for s in ("merge", "sieve", "ndwi", "snic")}
    windows = pkg / "windows.py"
    windows.write_text(windows.read_text() + "\n\nWINDOWS_CHANGED = 1\n")
    after = {s: code_version(SCRIPTS / f"{s}.py", pkg) for s in before}
    assert after["merge"] != before["merge"] and after["sieve"] != before["sieve"]  # both use windows
    assert after["ndwi"] == before["ndwi"] and after["snic"] == before["snic"]  # features / segmentation
    assert all("+" in v for v in before.values())


def test_comments_and_layout_do_not_change_the_version(tmp_path):
    pkg = _package_copy(tmp_path)
    before = code_version(SCRIPTS / "merge.py", pkg)
    mosaic = pkg / "mosaic.py"
    mosaic.write_text("# a new comment\n\n" + mosaic.read_text().replace("\n\n\n", "\n\n\n\n"))
    assert code_version(SCRIPTS / "merge.py", pkg) == before


def test_modules_of_a_subpackage_are_followed(tmp_path):
    # demo_data.py -> demo.country -> demo.render -> demo.noise (absolute imports inside the subpackage).
    used = set(modules_used(SCRIPTS / "demo_data.py"))
    assert {"demo", "demo.country", "demo.render", "demo.noise", "demo.spec", "io", "classes"} <= used
    assert "demo.dates" not in used
    pkg = _package_copy(tmp_path)
    before = {s: code_version(SCRIPTS / f"{s}.py", pkg) for s in ("demo_data", "demo_dates", "merge")}
    noise = pkg / "demo" / "noise.py"
    noise.write_text(noise.read_text() + "\n\nNOISE_CHANGED = 1\n")
    after = {s: code_version(SCRIPTS / f"{s}.py", pkg) for s in before}
    assert after["demo_data"] != before["demo_data"] and after["demo_dates"] != before["demo_dates"]
    assert after["merge"] == before["merge"]


def test_a_data_file_of_a_subpackage_counts_as_its_code(tmp_path):
    """demo/endmembers.csv (the demo's spectra) is read by demo.surfaces: a change of it reruns the demo rules."""
    pkg = _package_copy(tmp_path)
    before = {s: code_version(SCRIPTS / f"{s}.py", pkg) for s in ("demo_data", "merge")}
    table = pkg / "demo" / "endmembers.csv"
    table.write_text(table.read_text().replace("water_clear,380,", "water_clear,381,"))
    after = {s: code_version(SCRIPTS / f"{s}.py", pkg) for s in before}
    assert after["demo_data"] != before["demo_data"] and after["merge"] == before["merge"]


def test_relative_imports_inside_a_subpackage(tmp_path):
    pkg = _package_copy(tmp_path)
    (pkg / "sub").mkdir()
    (pkg / "sub" / "__init__.py").write_text("from .a import f\n")
    (pkg / "sub" / "a.py").write_text("from . import b\nfrom ..io import InputError\n")
    (pkg / "sub" / "b.py").write_text("X = 1\n")
    script = tmp_path / "script.py"
    script.write_text("from osmlulc.sub import f\n")
    assert {"sub", "sub.a", "sub.b", "io"} <= set(modules_used(script, pkg))
    before = code_version(script, pkg)
    (pkg / "sub" / "b.py").write_text("X = 2\n")
    assert code_version(script, pkg) != before


def test_version_bump_changes_every_version(tmp_path):
    pkg = _package_copy(tmp_path)
    before = code_version(SCRIPTS / "ndwi.py", pkg)
    init = pkg / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "9'))
    assert code_version(SCRIPTS / "ndwi.py", pkg) != before
