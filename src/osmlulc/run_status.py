"""The run status of a country: per tile, whether its inputs passed and which rule failed.

:func:`failures_in_logs` reads the one-line errors of the rules' logs (:func:`osmlulc.logs.run_logged`;
the lines are parsed by :mod:`osmlulc.logs`, beside their formats),
:func:`run_status` / :func:`write_run_status` list them per tile with the input checks
(:mod:`osmlulc.validate`), and :func:`run_status_rst` turns the tables into the run report's text.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path

from osmlulc.io import write_csv_rows
from osmlulc.logs import is_done, parse_error, parse_start
from osmlulc.rst import rst_text
from osmlulc.validate import check_record

log = logging.getLogger("osmlulc")


RUN_STATUS_COLUMNS = ["country", "tile", "status", "rule", "message"]


def failures_in_logs(log_dir: str | os.PathLike = "logs", since: float | None = None) -> list[dict]:
    """Failed rule instances found in the rules' logs: rule, where (country, tile, ...), message, status.

    status ``failed``: the log has an error line. ``killed``: the log has its start line but neither an
    error line nor the completion line (``done ... in ... s``) that :func:`osmlulc.logs.run_logged`
    writes last: the job was killed from outside (out of memory, time limit, a signal, a lost node).
    Only logs written at or after ``since`` (a time stamp) count, so failures of earlier runs
    that were fixed since are not reported again. Call it when no job runs (the end of a run).
    """
    failures = []
    for path in sorted(Path(log_dir).glob("*/*.log")):
        if since is not None and path.stat().st_mtime < since:
            continue
        lines = path.read_text(errors="replace").splitlines()
        error = next(filter(None, map(parse_error, lines)), None)
        if error is not None:
            failures.append({**error, "message": error["message"] or f"failed with an error; see {path}",
                             "log": str(path), "status": "failed"})
            continue
        start = parse_start(lines[0]) if lines else None
        if start and not any(map(is_done, lines)):
            failures.append({
                **start,
                "message": f"killed before it finished (out of memory, time limit or a signal: its log {path} "
                           "has no completion line); rerun it, with more memory or time if it was killed again",
                "log": str(path),
                "status": "killed",
            })
    return failures


def run_status(tiles: dict[str, list[str]], failures: list[dict],
               results_dir: str | os.PathLike = "results") -> list[dict]:
    """One row per tile of each country (and one per failed country-level rule).

    status: ``missing`` (its inputs failed their check and the country products were built without it:
    ``product.allow_missing_tiles``), ``failed`` (a rule of the tile failed; the first one in the log order),
    ``killed`` (a job of the tile was killed from outside, see :func:`failures_in_logs`), ``ok`` (its inputs passed
    :func:`check_tile_inputs` and nothing of it failed), ``not checked``.
    """
    rows = []
    for country, country_tiles in tiles.items():
        mine = [f for f in failures if f["where"].get("country") == country]
        for tile in country_tiles:
            failed = [f for f in mine if f["where"].get("tile") == tile]
            # The input check explains why later rules of the tile could not run: name it first.
            failed.sort(key=lambda f: f["rule"] != "check_inputs")
            flag = Path(results_dir) / country / "tiles" / tile / "inputs_ok.json"
            record = check_record(flag) if flag.exists() else None
            if record is not None and not record["ok"]:  # left out of the products (allow_missing_tiles)
                rows.append({"country": country, "tile": tile, "status": "missing", "rule": "check_inputs",
                             "message": f"{record['message']} (nodata in the country products)"})
            elif failed:
                rows.append({"country": country, "tile": tile, "status": failed[0].get("status", "failed"),
                             "rule": failed[0]["rule"], "message": failed[0]["message"]})
            elif record is not None:
                rows.append({"country": country, "tile": tile, "status": "ok", "rule": "", "message": "",
                             **dropped_products_row(Path(results_dir) / country / "tiles" / tile)})
            else:
                rows.append({"country": country, "tile": tile, "status": "not checked", "rule": "", "message": ""})
        for f in mine:
            if "tile" not in f["where"]:
                rows.append({"country": country, "tile": "-", "status": f.get("status", "failed"), "rule": f["rule"],
                             "message": f["message"]})
    return rows


def dropped_products_row(tile_dir: str | os.PathLike) -> dict:
    """rule and message of a good tile's run-status row if its composite left out unreadable products, else {}."""
    path = Path(tile_dir) / "composite" / "products.json"
    if not path.exists():
        return {}
    record = json.loads(path.read_text())
    dropped = record.get("dropped", [])
    if not dropped or not record.get("ok", True):
        return {}
    used = len(record.get("products", []))
    listed = "; ".join(f"{Path(d['product']).name} ({d['reason']})" for d in dropped)
    return {"rule": "composite", "message": f"{len(dropped)} of {used + len(dropped)} products dropped "
                                           f"(cannot be read): {listed}"}


def write_run_status(rows: list[dict], path: str | os.PathLike) -> None:
    """Write run-status rows (see :func:`run_status`) as CSV, atomically."""
    write_csv_rows(path, rows, list(RUN_STATUS_COLUMNS))


def run_status_rst(status_csvs: dict[str, str | os.PathLike]) -> str:
    """A reStructuredText section for the report: per country, the tiles that failed in the last run.

    ``status_csvs`` maps a country to its run_status.csv (see :func:`write_run_status`); a
    country whose table does not exist yet is reported as not run.
    """
    lines = ["Run status", "----------", ""]
    for country, path in status_csvs.items():
        path = Path(path)
        # Every value comes from outside (config, logs): escaped, see osmlulc.rst.
        name, shown = rst_text(country), rst_text(path)
        if not path.exists():
            lines += [f"- **{name}**: no run status yet (written at the end of each run).", ""]
            continue
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        failed = [r for r in rows if r["status"] in ("failed", "killed", "missing")]
        ok = sum(r["status"] == "ok" and r["rule"] != "composite" for r in rows)
        lines.append(f"- **{name}**: {ok} tile(s) passed their input check, {len(failed)} failed"
                     f" (last run; details in {shown}).")
        composited = [r for r in rows if r["status"] == "ok" and r["rule"] == "composite"]
        if failed or composited:
            lines.append("")   # a nested list follows its item after a blank line
        for r in failed:
            where = rst_text(r["tile"] or "country level")
            what = "failed, tile missing" if r["status"] == "missing" else rst_text(r["status"])
            lines.append(f"  - {where}: rule *{rst_text(r['rule'])}* {what}: {rst_text(r['message'])}")
        for r in composited:   # composited without the products it could not read
            lines.append(f"  - {rst_text(r['tile'])}: rule *composite*: {rst_text(r['message'])}")
        lines.append("")
    return "\n".join(lines)
