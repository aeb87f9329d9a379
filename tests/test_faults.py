"""Faults: a job killed mid-write leaves no file that Snakemake would take as done, and the next run completes.

Every output is written under a temporary name and renamed when complete (osmlulc.io.atomic_output).
The unit test kills a real writer process; the integration test SIGKILLs a whole snakemake run on the
small demo while a rule is writing, then checks what is left and resumes it.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import rasterio

from conftest import linked_workflow, write_raster
from osmlulc.io import atomic_output, raster_profile


def _slow_writer(path: str, started) -> None:
    """Write a raster block by block through atomic_output, signal after the first block, then stall."""
    profile = raster_profile(crs="EPSG:32632", transform=rasterio.transform.from_origin(0, 0, 10, 10),
                             width=256, height=256)
    with atomic_output(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(np.ones((128, 256), np.uint8), 1, window=rasterio.windows.Window(0, 0, 256, 128))
        started.set()
        time.sleep(60)


def test_killed_writer_leaves_no_output_and_the_next_writer_cleans_up(tmp_path):
    path = tmp_path / "classified.tif"
    started = multiprocessing.get_context("fork").Event()
    writer = multiprocessing.get_context("fork").Process(target=_slow_writer, args=(str(path), started))
    writer.start()
    assert started.wait(60)
    os.kill(writer.pid, signal.SIGKILL)
    writer.join()
    assert writer.exitcode == -signal.SIGKILL
    assert not path.exists()  # nothing under the output's name: Snakemake sees the output as missing
    leftovers = list(tmp_path.glob(".classified.tmp*"))
    assert leftovers  # the killed writer's temporary file (its except clause never ran)
    write_raster(tmp_path / "other.tif", np.ones((4, 4), np.uint8))  # another output of the folder is untouched
    with atomic_output(path) as tmp:
        write_raster(tmp, np.full((32, 32), 7, np.uint8))
    with rasterio.open(path) as src:
        assert (src.read(1) == 7).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classified.tif", "other.tif"]


# --------------------------------------------------------------------------- a killed snakemake run

TILE = "32UNU"
TARGET = f"results/XD/tiles/{TILE}/snic_segments.tif"


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants at once (what a node failure or `scancel` does)."""
    parent = psutil.Process(pid)
    processes = [parent, *parent.children(recursive=True)]
    for process in processes:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=30)


def _temporaries(results: Path) -> list[Path]:
    return [p for p in results.rglob("*") if ".tmp" in p.name or ".scratch" in p.name]


def _snakemake(workdir, *args, **kwargs):
    # Targets first: --configfile takes several files and would swallow them.
    cmd = [sys.executable, "-m", "snakemake", *args, "--cores", "2", "--configfile", "config_small.yaml"]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=900, **kwargs)


@pytest.mark.integration
def test_run_killed_mid_write_resumes_and_completes(tmp_path):
    workdir = linked_workflow(tmp_path / "run", small_config=True)
    results = workdir / "results" / "XD" / "tiles" / TILE
    log = open(tmp_path / "killed_run.log", "w")
    run = subprocess.Popen([sys.executable, "-m", "snakemake", TARGET, "--cores", "2", "--configfile",
                            "config_small.yaml"], cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    # Wait until the segmentation rule is writing its output under the temporary name, then kill everything.
    deadline = time.time() + 600
    seen = []
    while not seen and run.poll() is None and time.time() < deadline:
        seen = list(results.glob(".snic_segments.tmp*.tif")) if results.exists() else []
        time.sleep(0.01)
    assert seen, "the run ended before the snic rule started writing; see " + str(tmp_path / "killed_run.log")
    _kill_tree(run.pid)
    log.close()

    # Nothing of the killed rule is under its output names; finished upstream outputs are complete.
    assert not (results / "snic_segments.tif").exists() and not (results / "snic_centroids.gpkg").exists()
    with rasterio.open(results / "stack_10m.tif") as src:
        assert src.count == 10 and src.read().any()
    assert _temporaries(results)  # the killed job's temporary files are still there...

    # Snakemake sees the killed job's outputs as missing (not as done), and only that job has to run again.
    assert _snakemake(workdir, "--unlock").returncode == 0  # the killed run's lock (its process is gone)
    dry = _snakemake(workdir, "-n", TARGET)
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = dry.stdout + dry.stderr
    assert "rule snic:" in jobs and "Missing output files:" in jobs
    for done in ("rule combine:", "rule resample:", "rule demo_data:", "rule check_inputs:"):
        assert done not in jobs, done

    resumed = _snakemake(workdir, TARGET)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    with rasterio.open(results / "snic_segments.tif") as src:
        segments = src.read(1)
    assert segments.max() > 100
    assert not _temporaries(workdir / "results")  # ...and the next writer of the same output removed them
    assert "Nothing to be done" in (lambda r: r.stdout + r.stderr)(_snakemake(workdir, "-n", TARGET))


# --------------------------------------------------------------------------- the run status tells a killed job


def _logged_step(log_path: str, started, finish: bool) -> None:
    from osmlulc.logs import run_logged

    with run_logged(log_path, "snic", country="XD", tile=TILE):
        started.set()
        if not finish:
            time.sleep(60)


def test_killed_step_is_killed_in_the_run_status_and_a_finished_one_ok(tmp_path):
    from osmlulc.run_status import failures_in_logs, run_status

    (tmp_path / "logs" / "snic").mkdir(parents=True)
    context = multiprocessing.get_context("fork")
    for tile, finish in ((TILE, False), ("32UPU", True)):
        started = context.Event()
        step = context.Process(target=_logged_step, args=(str(tmp_path / "logs" / "snic" / f"XD_{tile}.log"),
                                                          started, finish))
        step.start()
        assert started.wait(60)
        if not finish:
            os.kill(step.pid, signal.SIGKILL)  # what Slurm does to a job over its memory or time
        step.join()
    # The finished step's log ends with its completion line; the killed one after its start line.
    failures = failures_in_logs(tmp_path / "logs")
    assert [(f["rule"], f["where"], f["status"]) for f in failures] == [("snic", {"country": "XD", "tile": TILE},
                                                                          "killed")]
    assert "killed before it finished" in failures[0]["message"]
    (tmp_path / "results" / "XD" / "tiles" / "32UPU").mkdir(parents=True)
    (tmp_path / "results" / "XD" / "tiles" / "32UPU" / "inputs_ok.json").write_text("{}")
    rows = {r["tile"]: r for r in run_status({"XD": [TILE, "32UPU"]}, failures, tmp_path / "results")}
    assert rows[TILE]["status"] == "killed" and rows[TILE]["rule"] == "snic"
    assert rows["32UPU"]["status"] == "ok"


@pytest.mark.integration
def test_job_killed_by_a_signal_is_listed_as_killed_not_ok(tmp_path):
    """SIGKILL the snic job of a real run (its script process only, as Slurm kills a job over its memory):
    snakemake reports the failure and results/XD/run_status.csv names the tile, the rule and 'killed'."""
    workdir = linked_workflow(tmp_path / "run", small_config=True)
    log = open(tmp_path / "run.log", "w")
    run = subprocess.Popen([sys.executable, "-m", "snakemake", TARGET, "--cores", "2", "--configfile",
                            "config_small.yaml"], cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    snic_log = workdir / "logs" / "snic" / f"XD_{TILE}.log"
    deadline, victim = time.time() + 600, None
    while victim is None and run.poll() is None and time.time() < deadline:
        if snic_log.exists() and " INFO start snic" in snic_log.read_text():
            victim = next((p for p in psutil.Process(run.pid).children(recursive=True)
                           if any("snic.py" in part for part in p.cmdline())), None)
        time.sleep(0.05)
    assert victim is not None, "the snic job did not start; see " + str(tmp_path / "run.log")
    victim.send_signal(signal.SIGKILL)
    assert run.wait(600) != 0
    log.close()
    assert " INFO done" not in snic_log.read_text()
    status = {r["tile"]: r for r in csv.DictReader(open(workdir / "results" / "XD" / "run_status.csv"))}
    assert status[TILE]["status"] == "killed" and status[TILE]["rule"] == "snic", status[TILE]
    assert "killed before it finished" in status[TILE]["message"]
    # The tile's other jobs (check, resample, combine) finished: only snic is named.
    assert (workdir / "results" / "XD" / "tiles" / TILE / "stack_10m.tif").exists()
