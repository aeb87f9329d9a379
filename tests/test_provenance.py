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
    # merge.py imports classes, logs and post; post imports io, logs, classes; logs imports io.
    used = modules_used(SCRIPTS / "merge.py")
    assert {"__init__", "classes", "logs", "post", "io"} <= set(used)
    assert "models" not in used and "segmentation" not in used
    # predict_pixel -> predict -> models: a model change reruns prediction.
    assert "models" in modules_used(SCRIPTS / "predict_pixel.py")


def test_code_change_changes_the_version_of_the_scripts_that_use_it_only(tmp_path):
    pkg = _package_copy(tmp_path)
    before = {s: code_version(SCRIPTS / f"{s}.py", pkg) for s in ("merge", "sieve", "ndwi", "snic")}
    post = pkg / "post.py"
    post.write_text(post.read_text() + "\n\nMERGE_CHANGED = 1\n")
    after = {s: code_version(SCRIPTS / f"{s}.py", pkg) for s in before}
    assert after["merge"] != before["merge"] and after["sieve"] != before["sieve"]  # both use post
    assert after["ndwi"] == before["ndwi"] and after["snic"] == before["snic"]  # features / segmentation
    assert all("+" in v for v in before.values())


def test_comments_and_layout_do_not_change_the_version(tmp_path):
    pkg = _package_copy(tmp_path)
    before = code_version(SCRIPTS / "merge.py", pkg)
    post = pkg / "post.py"
    post.write_text("# a new comment\n\n" + post.read_text().replace("\n\n\n", "\n\n\n\n"))
    assert code_version(SCRIPTS / "merge.py", pkg) == before


def test_version_bump_changes_every_version(tmp_path):
    pkg = _package_copy(tmp_path)
    before = code_version(SCRIPTS / "ndwi.py", pkg)
    init = pkg / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "9'))
    assert code_version(SCRIPTS / "ndwi.py", pkg) != before
