"""docs/architecture.md tells the truth: its table of rules, scripts and package modules is the workflow's.

The table is made from the rule files and the scripts' imports; after a change of either, print the new
table with `python tests/test_docs.py` and paste it into docs/architecture.md.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from osmlulc.provenance import PACKAGE, direct_imports  # noqa: E402

#: The stage files in the order of the Snakefile's includes.
STAGES = ("demo", "inputs", "validate", "features", "segmentation", "samples", "training", "prediction",
          "postprocessing", "accuracy", "report")
RULE = re.compile(r"^\s*(?:rule|checkpoint) (\w+):\n(.*?)(?=^\s*(?:rule|checkpoint|use rule) \w+|\Z)", re.S | re.M)
SCRIPT = re.compile(r"script:\s*\n(?:\s*#.*\n)*\s*\"\.\./workflow/scripts/(\w+)\.py\"")
USE_RULE = re.compile(r"^use rule (\w+) as (\w+)", re.M)


def script_modules(script: str) -> list[str]:
    """The package modules a script imports itself (not `logs`, which every script uses; a subpackage only
    through its modules)."""
    names = set(direct_imports(ROOT / "workflow" / "scripts" / f"{script}.py", ROOT / "src" / PACKAGE)) - {"logs"}
    return sorted(n for n in names if not any(other.startswith(n + ".") for other in names))


def module_table() -> list[str]:
    """One markdown row per (stage file, script): the rules that run the script and the modules it imports."""
    rows: dict[tuple[str, str], list[str]] = {}
    for stage in STAGES:
        text = (ROOT / "rules" / f"{stage}.smk").read_text()
        script_of = {}
        for match in RULE.finditer(text):
            script = SCRIPT.search(match.group(2))
            if script:
                script_of[match.group(1)] = script.group(1)
                rows.setdefault((stage, script.group(1)), []).append(match.group(1))
        for parent, child in USE_RULE.findall(text):
            rows[(stage, script_of[parent])].append(f"{child} (as {parent})")
    return [f"| {stage}.smk | {', '.join(rules)} | {script} | {', '.join(script_modules(script))} |"
            for (stage, script), rules in rows.items()]


def test_architecture_table_lists_every_scripted_rule_and_its_modules():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    documented = [line for line in doc.splitlines() if re.match(r"\| \w+\.smk \|", line)]
    assert documented == module_table(), "docs/architecture.md: run `python tests/test_docs.py`, paste the table"


def test_every_rule_with_a_script_is_in_the_table():
    rules = {r.split(" (as")[0] for row in module_table() for r in row.split(" | ")[1].split(", ")}
    every = {m.group(1) for stage in STAGES for m in RULE.finditer((ROOT / "rules" / f"{stage}.smk").read_text())
             if "script:" in m.group(2)}
    assert every <= rules, every - rules


def test_every_module_is_in_the_module_list():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    modules = doc[doc.index("## Modules"):doc.index("## Rules, scripts, modules")]
    pkg = ROOT / "src" / PACKAGE
    names = {p.relative_to(pkg).with_suffix("").as_posix().replace("/", ".") for p in pkg.rglob("*.py")
             if p.name != "__init__.py"}
    assert not {n for n in names if f"`{n}`" not in modules}


if __name__ == "__main__":
    print("\n".join(module_table()))
