"""Dry-run time of country-scale job graphs with the cluster profile: Germany and a ~1,100 tile Europe.

    python benchmarks/benchmark_dag.py [--europe-tiles-box W S E N]

Each case runs `snakemake -n --profile profiles/bwcluster` in a temp dir (links to the workflow,
empty placeholder band and label files: snakemake needs the user's input files to exist) and
prints tiles, planned jobs and wall time. The Europe config is generated: the Sentinel-2 tiles
whose cell meets a lon/lat box (default 9 W - 27 E, 37 - 65 N: 1,110 tiles).

Two columns: "no Slurm" runs with the Slurm commands hidden from PATH, as on a laptop or a CI
machine (the issue's target); "Slurm tools" with them on PATH, when this machine has them: the
Slurm plugin then asks `scontrol` for the cluster's settings when it loads, which waits ~9 s for
a time-out where no controller answers (a login node's controller answers at once).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from shapely.geometry import box

from osmlulc.mgrs import tiles_intersecting

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from placeholders import touch_placeholder_inputs  # noqa: E402 (the tests' helper: empty stand-ins for the inputs)
LINKS = ("Snakefile", "rules", "workflow", "config", "profiles", "report")
#: Commands snakemake-executor-plugin-slurm calls.
SLURM_COMMANDS = {"sacct", "sacctmgr", "sbatch", "scancel", "scontrol", "sinfo", "squeue", "srun", "sshare"}


def path_without_slurm(shim: Path) -> str:
    """A PATH of one folder linking every program on PATH except the Slurm commands."""
    shim.mkdir(parents=True, exist_ok=True)
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(folder):
            continue
        for entry in os.scandir(folder):
            target = shim / entry.name
            if entry.name not in SLURM_COMMANDS and not os.path.lexists(target):
                os.symlink(entry.path, target)
    return str(shim)


def dry_run(country: dict, code: str, configfile: Path | None, path: str) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for name in LINKS:
            if (ROOT / name).exists():
                os.symlink(ROOT / name, workdir / name)
        with open(ROOT / "config" / "config.yaml") as f:
            bands = list(yaml.safe_load(f)["bands"]["resolution"])
        touch_placeholder_inputs(workdir, country, bands)
        if configfile is None:
            configfile = workdir / f"{code}.yaml"
            configfile.write_text(yaml.safe_dump({"run_countries": [code], "countries": {code: country}}))
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--profile", "profiles/bwcluster",
                                 "--configfile", str(configfile), "--cores", "64"],
                                cwd=workdir, capture_output=True, text=True, env={**os.environ, "PATH": path})
        seconds = time.perf_counter() - start
        if result.returncode:
            raise SystemExit(result.stderr[-3000:])
        total = re.search(r"^total\s+(\d+)", result.stdout + result.stderr, re.M)
        return int(total.group(1)), seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--europe-box", nargs=4, type=float, default=[-9, 37, 27, 65], metavar=("W", "S", "E", "N"))
    args = parser.parse_args()
    with open(ROOT / "config" / "countries" / "DE.yaml") as f:
        germany = yaml.safe_load(f)["countries"]["DE"]
    tiles = tiles_intersecting(box(*args.europe_box))
    europe = {**germany, "name": "Europe (benchmark)", "tiles": tiles, "training_tiles": tiles[::100]}
    with_slurm = shutil.which("sinfo") is not None
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"no Slurm (s)": path_without_slurm(Path(tmp) / "bin")}
        if with_slurm:
            paths["Slurm tools (s)"] = os.environ["PATH"]
        print(f"{'case':<10} {'tiles':>6} {'jobs':>7} " + " ".join(f"{k:>16}" for k in paths))
        for code, country, configfile in (("DE", germany, ROOT / "config" / "countries" / "DE.yaml"),
                                          ("EU", europe, None)):
            times = []
            for path in paths.values():
                jobs, seconds = dry_run(country, code, configfile, path)
                times.append(seconds)
            print(f"{code:<10} {len(country['tiles']):>6} {jobs:>7} " + " ".join(f"{t:>16.1f}" for t in times),
                  flush=True)


if __name__ == "__main__":
    main()
