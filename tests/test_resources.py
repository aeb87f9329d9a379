"""A retry asks for more: memory and runtime of every rule grow with Snakemake's `attempt` (and input size)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, linked_workflow
from osmlulc.resources import input_size_mb, memory_mb, runtime_min


def test_memory_grows_with_attempt_input_and_threads():
    assert memory_mb(1000, 1) == 1000
    assert memory_mb(1000, 2) == 2000 and memory_mb(1000, 3) == 3000
    assert memory_mb(1000, 1, input_mb=500, per_input_mb=4) == 3000
    assert memory_mb(1000, 2, input_mb=500, per_input_mb=4) == 6000
    assert memory_mb(1000, 1, threads=4, per_thread_mb=600) == 3400
    with pytest.raises(ValueError, match="attempt"):
        memory_mb(1000, 0)


def test_runtime_grows_with_attempt_and_input():
    assert runtime_min(60, 1) == 60 and runtime_min(60, 2) == 120
    assert runtime_min(30, 1, input_mb=1000, per_input_min=0.05) == 80
    assert runtime_min(30, 2, input_mb=1000, per_input_min=0.05) == 160


def test_input_size_counts_the_files_that_exist(tmp_path):
    (tmp_path / "a.tif").write_bytes(b"x" * 2_000_000)
    assert input_size_mb([tmp_path / "a.tif", tmp_path / "not_made_yet.tif"]) == pytest.approx(2.0)


def test_second_attempt_asks_for_more_for_every_rule_of_the_cluster_profile(tmp_path):
    """The workflow's rules with profiles/bwcluster applied (default- and set-resources), as Snakemake evaluates
    them for a job's first try and its first retry (tests/rule_resources.py)."""
    linked_workflow(tmp_path)
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "rule_resources.py"),
                             os.path.join(ROOT, "profiles", "bwcluster", "config.yaml"),
                             os.path.join(ROOT, "tests", "config_small.yaml")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(s for s in result.stdout.splitlines() if s.startswith("RESOURCES "))
    resources = json.loads(line.removeprefix("RESOURCES "))
    expected = {"train_resnet", "ensemble_pixel", "merge", "snic", "sieve_classified", "check_inputs"}
    assert expected <= set(resources)
    for rule, res in resources.items():
        for name in ("mem_mb", "runtime"):
            first, second = res[name]
            assert first is not None and first > 0, (rule, name)
            assert second > first, (rule, name, first, second)
    assert resources["train_resnet"]["mem_mb"] == [64000, 128000]  # the profile's set-resources
    assert resources["clip_extent"]["mem_mb"] == [500, 1000]  # the rule's own scaled_mem_mb(500)
