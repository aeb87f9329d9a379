"""The job graph: a country-scale dry run with the cluster profile, and "rerun only what is stale".

The rerun tests work on a copy (timestamps and .snakemake metadata kept) of the shared small demo
run (conftest.small_demo_run), so the other integration tests still see an untouched run.
"""

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

from conftest import ROOT, linked_workflow
from placeholders import touch_placeholder_inputs

COUNTRY = "XD"


def snakemake(workdir, *args, timeout=600):
    cmd = [sys.executable, "-m", "snakemake", *args]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout)


def planned_jobs(output: str) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job a dry run lists."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        match = re.match(r"(?:local)?rule (\w+):", block)
        if not match:
            continue
        wildcards = re.search(r"\n\s+wildcards: (.*)", block)
        pairs = dict(kv.split("=", 1) for kv in wildcards.group(1).split(", ")) if wildcards else {}
        jobs.append((match.group(1), pairs, block))
    return jobs


def link_workflow(workdir: Path) -> None:
    linked_workflow(workdir)


# --------------------------------------------------------------------------- Germany with the cluster profile


@pytest.fixture(scope="module")
def germany_dry_run(tmp_path_factory):
    """`snakemake -n --profile profiles/bwcluster` for Germany, with empty placeholder input files.

    Snakemake needs the input files that no rule makes (bands, label raster) to exist even in a
    dry run; the placeholders stand in for the data that lives on the cluster.
    """
    workdir = tmp_path_factory.mktemp("germany")
    link_workflow(workdir)
    with open(os.path.join(ROOT, "config", "countries", "DE.yaml")) as f:
        germany = yaml.safe_load(f)["countries"]["DE"]
    with open(os.path.join(ROOT, "config", "config.yaml")) as f:
        bands = list(yaml.safe_load(f)["bands"]["resolution"])
    touch_placeholder_inputs(workdir, germany, bands)
    # --cores: as on a login node (the workflow profile's `cores: all` would cap threads at this machine's).
    result = snakemake(workdir, "-n", "--profile", "profiles/bwcluster", "--configfile", "config/countries/DE.yaml",
                       "--cores", "64")
    assert result.returncode == 0, result.stderr[-5000:]
    return germany, planned_jobs(result.stdout + result.stderr)


def test_germany_dry_run_plans_every_tile(germany_dry_run):
    germany, jobs = germany_dry_run
    counts = Counter(rule for rule, _, _ in jobs)
    n_tiles = len(germany["tiles"])
    assert n_tiles == 70
    for rule in ("check_inputs", "combine", "ndwi", "clip_extent", "ensemble_pixel"):
        assert counts[rule] == n_tiles, rule
    # Without a reference no accuracy row needs a member's own rasters: the product's one pass is the only
    # prediction of a tile (issue 24).
    assert counts["predict_pixel_resnet"] == counts["predict_pixel"] == 0
    assert counts["resample"] == n_tiles  # one job for the six 20 m bands of a tile
    # Labels on the tile grid are needed for training only (Germany has no per-tile reference to assess).
    assert {w["tile"] for rule, w, _ in jobs if rule == "label_tile"} == set(germany["training_tiles"])
    assert counts["train_resnet"] == counts["merge"] == counts["sieve_classified"] == 1
    assert {w["tile"] for rule, w, _ in jobs if "tile" in w} == set(germany["tiles"])
    assert {w["country"] for _, w, _ in jobs if "country" in w} == {"DE"}


#: Rules that run the ResNet: the profile sends them to the GPU partition (ensemble_pixel: the product's one pass).
GPU_RULES = ("train_resnet", "predict_pixel_resnet", "ensemble_pixel")


def resources(block: str) -> dict:
    line = re.search(r"\n\s+resources: (.*)", block).group(1)
    return dict(kv.split("=", 1) for kv in line.split(", "))


@pytest.fixture(scope="module")
def demo_cluster_dry_run(tmp_path_factory):
    """The demo's jobs with the cluster profile: it plans every model's prediction (its tiles have a reference
    to assess them against)."""
    workdir = tmp_path_factory.mktemp("demo_cluster")
    link_workflow(workdir)
    result = snakemake(workdir, "-n", "--profile", "profiles/bwcluster", "--cores", "64")
    assert result.returncode == 0, result.stderr[-3000:]
    return planned_jobs(result.stdout + result.stderr)


def test_cluster_profile_sends_only_the_resnet_to_the_gpu(germany_dry_run, demo_cluster_dry_run):
    seen = set()
    for rule, wildcards, block in germany_dry_run[1] + demo_cluster_dry_run:
        if rule == "all":
            continue
        res = resources(block)
        threads = re.search(r"\n\s+threads: (\d+)", block)
        if rule in GPU_RULES:
            assert res["slurm_partition"] == "gpu_h100" and res["gpu"] == "1", (rule, res)
            assert int(threads.group(1)) == 16
        else:
            assert res["slurm_partition"] == "cpu" and "gpu" not in res, (rule, res)
        assert int(res["runtime"]) > 0 and int(res["mem_mb"]) > 0
        if rule == "predict_pixel":
            # the ensemble's members (resnet, logreg) are predicted in its one pass (prediction.member_maps: auto)
            assert wildcards["model"] in ("svm", "rf"), wildcards
        seen.add(rule)
    assert {"train_resnet", "ensemble_pixel", "predict_pixel", "train_sklearn"} <= seen
    assert "predict_pixel_resnet" not in seen


def job_inputs(block: str) -> list[str]:
    match = re.search(r"\n\s+input: (.*)", block)
    return match.group(1).split(", ") if match else []


def test_nothing_reads_the_ensembles_probabilities_again(germany_dry_run, demo_cluster_dry_run):
    """The one pass writes the product's confidence and, where the ensemble is classified per superpixel (the
    demo's accuracy rows), its per-superpixel sums: no job reads probabilities_ensemble.tif (issue 24)."""
    for jobs, superpixels in ((germany_dry_run[1], False), (demo_cluster_dry_run, True)):
        for rule, wildcards, block in jobs:
            assert not any(f.endswith("probabilities_ensemble.tif") for f in job_inputs(block)), (rule, wildcards)
            if rule == "ensemble_pixel":
                # Germany (no reference, pixel product): the pass does not wait for the tile's superpixels
                assert any(f.endswith("snic_segments.tif") for f in job_inputs(block)) == superpixels
            if rule == "tile_confidence":
                assert [Path(f).name for f in job_inputs(block)] == ["confidence_ensemble.tif"]
            if rule == "predict_superpixel" and wildcards["model"] == "ensemble":
                assert sorted(Path(f).name for f in job_inputs(block)) == [
                    "confidence_ensemble.tif", "segment_probability_sums_ensemble.npz", "snic_segments.tif"]
    assert ("predict_superpixel", "ensemble") in {(r, w.get("model")) for r, w, _ in demo_cluster_dry_run}


def test_bad_tile_id_in_a_country_config_is_one_line(tmp_path):
    link_workflow(tmp_path)
    bad = {"run_countries": ["DE"], "countries": {"DE": {"tiles": ["32UNU", "31NNU"], "training_tiles": ["32UNU"]}}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    result = snakemake(tmp_path, "-n", "--configfile", "config/countries/DE.yaml", "bad.yaml")
    assert result.returncode != 0
    assert "countries.DE.tiles: tile 31NNU: column letter N is not used in zone 31" in result.stderr


# --------------------------------------------------------------------------- rerun only what is stale


@pytest.fixture
def demo_copy(small_demo_run, tmp_path):
    """A copy of the finished small demo run (timestamps and snakemake's metadata kept)."""
    workdir = tmp_path / "demo"
    shutil.copytree(small_demo_run, workdir, symlinks=True)
    return workdir


def dry_run(workdir, *configfiles):
    result = snakemake(workdir, "-n", "--configfile", "config_small.yaml", *configfiles)
    assert result.returncode == 0, result.stderr[-5000:]
    return result.stdout + result.stderr, planned_jobs(result.stdout + result.stderr)


#: Rules of a tile's chain (wildcard tile) and rules upstream of training.
TRAINING_RULES = {"samples", "sample_summary", "train_resnet", "train_sklearn"}


def test_nothing_to_do_after_a_run(demo_copy):
    output, jobs = dry_run(demo_copy)
    assert jobs == [] and "Nothing to be done" in output


def test_replaced_band_reruns_only_that_tile_and_the_country(demo_copy, small_demo_run):
    tile = "32UNV"  # not a training tile
    with open(demo_copy / "config_small.yaml") as f:
        assert tile not in (yaml.safe_load(f).get("countries", {}).get(COUNTRY, {}).get("training_tiles") or [])
    band = demo_copy / "resources" / "demo" / COUNTRY / "tiles" / tile / f"{tile}_B05.tif"
    # Replace the file with a new one (other values, new time stamp), as a re-downloaded band would be.
    with rasterio.open(band) as src:
        profile, data = src.profile, src.read()
    band.unlink()
    with rasterio.open(band, "w", **profile) as dst:
        dst.write(np.where(data > 0, data + 1, 0).astype(data.dtype))
    _, jobs = dry_run(demo_copy)
    rules = {rule for rule, _, _ in jobs}
    assert {"check_inputs", "resample", "combine", "snic", "ensemble_pixel", "clip_extent", "merge",
            "product_merge", "sieve_classified"} <= rules
    assert not rules & TRAINING_RULES, rules & TRAINING_RULES
    assert {w["tile"] for _, w, _ in jobs if "tile" in w} == {tile}
    # The tile's input check reruns, and with it the tile's whole chain (its 20 m bands too).
    assert [w["tile"] for rule, w, _ in jobs if rule == "resample"] == [tile]
    tile_rules = {rule for rule, w, _ in jobs if "tile" in w}
    assert tile_rules >= {"combine", "ndwi", "predict_pixel", "predict_superpixel", "tile_confusion"}
    # The rest are country-level products (no tile wildcard), downstream of the tile; the inputs stay.
    assert "demo_data" not in rules


def test_model_setting_reruns_only_that_model_and_what_follows(demo_copy):
    (demo_copy / "config_rf.yaml").write_text("models:\n  rf:\n    n_estimators: 41\n")
    _, jobs = dry_run(demo_copy, "config_rf.yaml")
    rules = {rule for rule, _, _ in jobs}
    assert ("train_sklearn", "rf") in {(rule, w.get("model")) for rule, w, _ in jobs}
    assert {"predict_pixel", "predict_superpixel", "validation_accuracy"} <= rules
    # Nothing upstream of training, and no other model's training or prediction.
    assert rules.isdisjoint({"demo_data", "check_inputs", "resample", "combine", "ndwi", "snic", "label_tile",
                             "samples", "train_resnet", "predict_pixel_resnet", "ensemble_pixel"}), rules
    assert {w["model"] for _, w, _ in jobs if "model" in w} == {"rf"}
    # The country product is the ResNet's (product.model): it is not stale.
    assert rules.isdisjoint({"clip_extent", "merge", "product_merge", "sieve_classified"}), rules


# --------------------------------------------------------------------------- class table and library code

#: Rules whose scripts read the class table (workflow/scripts/*.py with config["classes"]).
CLASS_TABLE_RULES = {"demo_data", "check_inputs", "label_tile", "samples", "sample_summary", "train_resnet",
                     "train_sklearn", "predict_pixel", "ensemble_pixel", "predict_superpixel", "clip_extent",
                     "merge", "clip_boundary", "label_transfer", "product_merge", "extract_land_use",
                     "tile_confusion", "validation_accuracy", "accuracy", "stac_item"}


def _own_config_dir(workdir: Path) -> Path:
    """Replace the run's link to the project's config/ by a copy, so its files can be edited."""
    (workdir / "config").unlink()
    shutil.copytree(os.path.join(ROOT, "config"), workdir / "config")
    return workdir / "config" / "classes.yaml"


def test_class_table_edit_reruns_every_rule_that_reads_it(demo_copy):
    classes = _own_config_dir(demo_copy)
    text = classes.read_text()
    classes.write_text("# a comment and a blank line change nothing\n\n" + text)
    output, jobs = dry_run(demo_copy)
    assert jobs == [] and "Nothing to be done" in output
    # A colour of the water class: every product carries the colour table.
    assert "colour: [0, 204, 242]" in text
    classes.write_text(text.replace("colour: [0, 204, 242]", "colour: [0, 0, 255]"))
    _, jobs = dry_run(demo_copy)
    rules = {rule for rule, _, _ in jobs}
    assert CLASS_TABLE_RULES <= rules, CLASS_TABLE_RULES - rules
    # The first job of the chain reruns for its own param (the dry run names one reason per job).
    reasons = {rule: re.search(r"\n\s+reason: (.*)", block).group(1) for rule, _, block in jobs}
    assert "Params have changed" in reasons["demo_data"], reasons["demo_data"]


def test_library_code_change_reruns_only_the_rules_that_run_it(demo_copy, tmp_path):
    """A change of osmlulc/report.py reruns the report rules (their version param), nothing upstream."""
    package = tmp_path / "src" / "osmlulc"
    shutil.copytree(os.path.join(ROOT, "src", "osmlulc"), package, ignore=shutil.ignore_patterns("__pycache__"))
    report = package / "report.py"
    report.write_text(report.read_text() + "\n\nQUICKLOOK_CHANGED = True\n")
    env = {**os.environ, "PYTHONPATH": str(package.parent)}
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "config_small.yaml"],
                            cwd=demo_copy, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result.stdout + result.stderr)
    rules = {rule for rule, _, _ in jobs}
    assert {"quicklook", "confusion_plot", "training_curves", "run_config"} <= rules
    # stac_item and the histogram run report code too; nothing else (no tile, no model, no mosaic) is stale.
    assert rules <= {"all", "quicklook", "confusion_plot", "training_curves", "run_config", "stac_item",
                     "observations_histogram"}, rules


def test_superpixel_sampling_feeds_the_superpixels_to_the_samples(demo_copy):
    """samples.method: superpixel makes each training tile's SNIC segments and centroids inputs of the samples
    job (so they are built first and a change of them reruns the sampling), and reruns the training."""
    (demo_copy / "superpixel.yaml").write_text(yaml.safe_dump({"samples": {"method": "superpixel"}}))
    _, jobs = dry_run(demo_copy, "superpixel.yaml")
    samples = [block for rule, _, block in jobs if rule == "samples"]
    assert len(samples) == 1
    training_tiles = ["32UNU", "32UPU"]
    for tile in training_tiles:
        assert f"tiles/{tile}/snic_segments.tif" in samples[0] and f"tiles/{tile}/snic_centroids.gpkg" in samples[0]
    assert {"train_resnet", "train_sklearn"} <= {rule for rule, _, _ in jobs}
