import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from osmlulc.classes import ClassTable  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


#: What a workflow run in a temp dir links to from the project root.
WORKFLOW_LINKS = ("Snakefile", "rules", "workflow", "config", "profiles", "report")


@pytest.fixture(scope="session")
def small_demo_run(tmp_path_factory):
    """One run of the whole workflow on the small demo (tests/config_small.yaml) in a temp dir, shared by
    the integration tests (tests/test_workflow.py, tests/test_report.py)."""
    return run_small_demo(tmp_path_factory.mktemp("demo"))


def linked_workflow(workdir, *, small_config: bool = False):
    """``workdir`` (made if missing) with the workflow linked into it, and tests/config_small.yaml copied
    there if ``small_config``; returns ``workdir``."""
    import shutil

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_LINKS:
        os.symlink(os.path.join(ROOT, name), workdir / name)
    if small_config:
        shutil.copy(os.path.join(ROOT, "tests", "config_small.yaml"), workdir / "config_small.yaml")
    return workdir


def workflow_settings(*configfiles, workdir=ROOT):
    """osmlulc.settings of the workflow in ``workdir`` (the project, or a run's folder linking to it), with
    ``configfiles`` merged over config/config.yaml as Snakemake's ``--configfile``."""
    from osmlulc.settings import workflow_settings

    return workflow_settings(workdir, *configfiles)


def run_small_demo(workdir):
    """Link the workflow into ``workdir``, run it on the small demo config there, return ``workdir``."""
    import subprocess
    import sys

    linked_workflow(workdir, small_config=True)
    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config_small.yaml"],
                            cwd=workdir, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


@pytest.fixture(scope="session")
def table():
    return ClassTable.from_yaml(os.path.join(ROOT, "config", "classes.yaml"))


def write_raster(path, data, *, crs="EPSG:32632", origin=(499980.0, 5400000.0), res=10.0, nodata=0, **extra):
    """Write a (bands, rows, cols) or (rows, cols) array as a GeoTIFF; returns the path."""
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=data.dtype, crs=crs, transform=from_origin(*origin, res, res), nodata=nodata, **extra)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return str(path)


def sample_settings(**kw):
    """osmlulc.samples.SampleSettings for small test tiles; keyword arguments override."""
    from osmlulc.samples import SampleSettings

    return SampleSettings(**{"patch_size": 5, "per_class": 50, "validation_per_class": 20, "split_block_px": 10,
                             "validation_fraction": 0.3, "seed": 3, **kw})
