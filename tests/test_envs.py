"""The conda environments of the rule groups (envs/) list the package's dependencies, and every rule uses one."""

import glob
import os
import re

import pytest
import yaml
from packaging.requirements import Requirement

from conftest import ROOT

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

#: The workflow engine runs outside the rule environments (on the login node / as the job step).
ENGINE = {"snakemake", "snakemake-executor-plugin-slurm"}
TENSORFLOW = {"tensorflow", "keras"}
ENVS = os.path.join(ROOT, "envs")


#: conda-forge names of PyPI packages
CONDA_NAMES = {"matplotlib-base": "matplotlib"}


def canonical(name: str) -> str:
    name = name.lower().replace("_", "-")
    name = CONDA_NAMES.get(name, name)
    return "tensorflow" if name.startswith("tensorflow") else name  # tensorflow-cpu, tensorflow[and-cuda]


def pyproject_dependencies() -> dict[str, str]:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        deps = [Requirement(r) for r in tomllib.load(f)["project"]["dependencies"]]
    return {canonical(r.name): str(r.specifier) for r in deps}


def env_dependencies(name: str) -> dict[str, str]:
    with open(os.path.join(ENVS, name)) as f:
        env = yaml.safe_load(f)
    specs = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            specs += dep["pip"]
        elif not re.match(r"^(python|pip)\b", dep):
            specs.append(dep)
    reqs = [Requirement(s.split("#")[0].strip()) for s in specs]
    return {canonical(r.name): str(r.specifier) for r in reqs}


def test_tensorflow_envs_hold_every_dependency():
    expected = {k: v for k, v in pyproject_dependencies().items() if k not in ENGINE}
    for name in ("tensorflow-cpu.yaml", "tensorflow-gpu.yaml"):
        assert env_dependencies(name) == expected, name


def test_raster_env_holds_every_dependency_but_tensorflow():
    expected = {k: v for k, v in pyproject_dependencies().items() if k not in ENGINE | TENSORFLOW}
    assert env_dependencies("raster.yaml") == expected


def test_envs_install_the_package_after_creation():
    for env in glob.glob(os.path.join(ENVS, "*.yaml")):
        script = env.removesuffix(".yaml") + ".post-deploy.sh"
        assert os.access(script, os.X_OK), script
        assert "pip install --no-deps" in open(script).read()


def rule_blocks():
    """(file, rule name, text) of every rule and `use rule ... as` in rules/*.smk."""
    for path in sorted(glob.glob(os.path.join(ROOT, "rules", "*.smk"))):
        text = open(path).read()
        for match in re.finditer(r"^([ \t]*)(?:rule (\w+)|use rule \w+ as (\w+) with):\n((?:\1[ \t]+.*\n|[ \t]*\n)*)",
                                 text, re.M):
            yield os.path.basename(path), match.group(2) or match.group(3), match.group(4)


def test_every_rule_with_a_script_has_an_environment():
    names = {"RASTER_ENV": "raster.yaml", "TENSORFLOW_CPU_ENV": "tensorflow-cpu.yaml",
             "TENSORFLOW_GPU_ENV": "tensorflow-gpu.yaml"}
    common = open(os.path.join(ROOT, "rules", "common.smk")).read()
    for const, file in names.items():
        assert f'{const} = "../envs/{file}"' in common
    seen = {}
    for path, rule, body in rule_blocks():
        env = re.search(r"conda:\s*\n\s*(\w+)", body)
        if "script:" in body:
            assert env, f"{path}: rule {rule} has no conda: directive"
        for directive in ("conda", "script", "log", "benchmark", "resources", "params", "input", "output"):
            assert len(re.findall(rf"^\s+{directive}:", body, re.M)) <= 1, f"{path}: rule {rule}: two {directive}:"
        if env:
            seen[rule] = names[env.group(1)]
    assert seen["train_resnet"] == seen["predict_pixel_resnet"] == "tensorflow-gpu.yaml"
    assert seen["ensemble_pixel"] == "tensorflow-gpu.yaml"  # the product's one pass runs the ResNet
    assert seen["validation_accuracy"] == "tensorflow-cpu.yaml"
    assert seen["predict_pixel"] == seen["resample"] == "raster.yaml"


def test_cluster_profile_names_existing_rules():
    with open(os.path.join(ROOT, "profiles", "bwcluster", "config.yaml")) as f:
        profile = yaml.safe_load(f)
    rules = {rule for _, rule, _ in rule_blocks()}
    assert set(profile["set-resources"]) <= rules, set(profile["set-resources"]) - rules
    assert set(profile["set-threads"]) <= rules, set(profile["set-threads"]) - rules
    assert profile["executor"] == "slurm"
    for rule in ("train_resnet", "predict_pixel_resnet", "ensemble_pixel"):
        assert profile["set-resources"][rule]["gpu"] == 1
        assert profile["set-resources"][rule]["slurm_partition"] != profile["default-resources"]["slurm_partition"]
    # The workflow profile is applied on top of it: it must not cap the cluster's threads or stop keep-going.
    with open(os.path.join(ROOT, "profiles", "default", "config.yaml")) as f:
        local = yaml.safe_load(f)
    assert local.get("cores") == "all" and "keep-going" not in local and "executor" not in local


#: Rules without a version param on purpose: the STAC search writes a pinned manifest, reused by every later run
#: (also after a library upgrade) until the search settings change, so that a rerun reads the same scenes.
PINNED_RULES = {"search_scenes"}


def test_every_rule_declares_what_its_script_depends_on():
    """The version param names the rule's own script (its package code, osmlulc.provenance), rules whose
    script reads the class table have it as a param, and mem_mb grows with the attempt (scaled_mem_mb)."""
    checked = 0
    for path, rule, body in rule_blocks():
        script = re.search(r'script:\s*\n\s*"\.\./workflow/scripts/(\w+)\.py"', body)
        if not script:
            continue
        name = script.group(1)
        if rule in PINNED_RULES:
            assert "version=" not in body, f"{path}: rule {rule} is pinned: a library upgrade must not rerun it"
        else:
            assert f'version=code_version("{name}")' in body, f"{path}: rule {rule}: version is not its script's"
        source = open(os.path.join(ROOT, "workflow", "scripts", f"{name}.py")).read()
        assert "snakemake.config" not in source, f"{name}.py reads the workflow config; give it what it needs as params"
        if "params.classes" in source or "p.classes" in source:
            assert "classes=CLASS_TABLE" in body, f"{path}: rule {rule} reads the class table but has no param"
        assert "mem_mb=scaled_mem_mb(" in body or re.search(r"mem_mb=lambda [^:]*attempt", body), \
            f"{path}: rule {rule}: mem_mb does not grow with the attempt"
        checked += 1
    assert checked >= 35
