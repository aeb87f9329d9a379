"""Integration: the small demo through a real (local, single-node) Slurm with the bwcluster profile.

Opt-in, because it installs Debian packages and takes 15-30 minutes on 2 cores (17 min measured):

    OSMLULC_SLURM_TESTS=1 pytest tests/test_slurm.py      # as root; installs slurm-wlm + munge

scripts/slurm-local.sh starts the cluster (partitions `debug` and `gpu`, one fake GPU) and stops
it by PID afterwards. The profile used is profiles/bwcluster/config.yaml itself with only what
a small local node needs changed: the partition names (cpu -> debug, gpu_h100 -> gpu), memory
requests capped to what the node has, a faster first status check, and squeue as the status
command (the local cluster has no accounting database). The test checks that every job of the
run was a Slurm job (the plugin's per-job Slurm logs and the controller's job completion log,
with the partition of each job, and the GPU each job was given, recorded by a Slurm prolog) and that
the products equal those of the local run.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

from conftest import ROOT, linked_workflow

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slurm,
    pytest.mark.skipif(os.environ.get("OSMLULC_SLURM_TESTS") != "1",
                       reason="set OSMLULC_SLURM_TESTS=1 to run the workflow on a local Slurm (root, 15-30 min)"),
]

SCRIPT = os.path.join(ROOT, "scripts", "slurm-local.sh")
COUNTRY = "XD"
#: bwUniCluster partition -> partition of the local test cluster
LOCAL_PARTITIONS = {"cpu": "debug", "gpu_h100": "gpu"}
#: what one job may ask for on the small local node
LOCAL_MEM_MB = 3000
#: the demo's rules that run the ResNet (its own rasters come from the product's one pass, ensemble_pixel)
GPU_RULES = {"train_resnet", "ensemble_pixel"}


def local_profile(path: Path) -> Path:
    """profiles/bwcluster/config.yaml with the partition names and sizes of the local test cluster."""
    with open(os.path.join(ROOT, "profiles", "bwcluster", "config.yaml")) as f:
        profile = yaml.safe_load(f)

    def localise(resources: dict) -> dict:
        out = dict(resources)
        if "slurm_partition" in out:
            out["slurm_partition"] = LOCAL_PARTITIONS[out["slurm_partition"]]
        if "mem_mb" in out:
            out["mem_mb"] = LOCAL_MEM_MB
        return out

    profile["default-resources"] = localise(profile["default-resources"])
    profile["set-resources"] = {rule: localise(res) for rule, res in profile["set-resources"].items()}
    profile.update({
        "jobs": 6,
        "latency-wait": 10,
        "retries": 0,
        "keep-going": False,
        "slurm-status-command": "squeue",
        "slurm-init-seconds-before-status-checks": 2,
        "seconds-between-status-checks": 2,
        "slurm-keep-successful-logs": True,
    })
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "config.yaml", "w") as f:
        yaml.safe_dump(profile, f)
    return path


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURM_LOCAL_DIR": str(state)}
    subprocess.run([SCRIPT, "install"], check=True, env=env, timeout=600)
    subprocess.run([SCRIPT, "start"], check=True, env=env, timeout=120)
    try:
        yield state
    finally:
        subprocess.run([SCRIPT, "stop"], env=env, timeout=120)


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo_slurm")
    linked_workflow(workdir, small_config=True)
    profile = local_profile(workdir / "slurm_profile")
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", str(profile), "--configfile", "config_small.yaml"],
        cwd=workdir, capture_output=True, text=True, timeout=3600,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir, result.stderr


def slurm_jobs(workdir: Path) -> dict[str, str]:
    """Slurm job id -> rule name, from the plugin's per-job logs .snakemake/slurm_logs/rule_<rule>/.../<jobid>.log."""
    jobs = {}
    for log in (workdir / ".snakemake" / "slurm_logs").rglob("*.log"):
        parts = log.relative_to(workdir / ".snakemake" / "slurm_logs").parts
        rule_dir = next(p for p in parts if p.startswith("rule_"))
        jobs[log.stem] = rule_dir.removeprefix("rule_")
    return jobs


def completed_jobs(cluster_dir: Path) -> dict[str, dict]:
    """Job id -> fields of the controller's job completion log (jobcomp/filetxt: KEY=value ...)."""
    records = {}
    for line in (cluster_dir / "jobcomp.log").read_text().splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        records[fields["JobId"]] = fields
    return records


def test_every_job_ran_through_slurm_on_its_partition(slurm_run, slurm_cluster, small_demo_run):
    workdir, _ = slurm_run
    jobs = slurm_jobs(workdir)
    completed = completed_jobs(slurm_cluster)
    ran_rules = {p.name for p in (workdir / "logs").iterdir()}
    # Every rule that wrote a log ran as Slurm jobs (the plugin's job logs name the rule) ...
    assert ran_rules <= set(jobs.values()) | {"train_svm", "train_rf"}, ran_rules - set(jobs.values())
    assert GPU_RULES <= set(jobs.values())
    # ... and as many jobs as the local run has rule logs (one log per rule instance).
    local_logs = sum(1 for _ in (small_demo_run / "logs").rglob("*.log"))
    assert len(jobs) == sum(1 for _ in (workdir / "logs").rglob("*.log")) == local_logs
    for job_id, rule in jobs.items():
        record = completed[job_id]
        assert record["JobState"] == "COMPLETED", (rule, record)
        assert record["Partition"] == ("gpu" if rule in GPU_RULES else "debug"), (rule, record)


def allocated_gpus(cluster_dir: Path) -> dict[str, str]:
    """Job id -> the GPUs Slurm allocated to it ("none" if none), as the cluster's prolog recorded them."""
    lines = (cluster_dir / "prolog.log").read_text().splitlines()
    return {fields["JobId"]: fields["Gpus"] for fields in (dict(re.findall(r"(\w+)=(\S*)", line)) for line in lines)}


def test_only_the_gpu_jobs_were_given_the_gpu(slurm_run, slurm_cluster):
    workdir, _ = slurm_run
    gpus = allocated_gpus(slurm_cluster)
    for job_id, rule in slurm_jobs(workdir).items():
        assert (gpus[job_id] != "none") == (rule in GPU_RULES), (rule, job_id, gpus[job_id])


def rasters(workdir: Path) -> list[Path]:
    base = workdir / "results" / COUNTRY
    return sorted(p.relative_to(workdir) for p in base.rglob("*.tif"))


def test_products_equal_the_local_run(slurm_run, small_demo_run):
    workdir, _ = slurm_run
    names = rasters(small_demo_run)
    assert names and names == rasters(workdir)
    for name in names:
        with rasterio.open(small_demo_run / name) as local, rasterio.open(workdir / name) as cluster:
            assert (local.crs, local.transform, local.shape, local.count) == \
                (cluster.crs, cluster.transform, cluster.shape, cluster.count), name
            assert np.array_equal(local.read(), cluster.read()), name
