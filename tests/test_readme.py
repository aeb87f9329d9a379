"""The README is a front door that works and the docs do not go stale.

The README opens with the two commands that work on a fresh machine (the second is what `.ci/run` runs),
stays short, and every relative link of the README, config/README.md and docs/*.md points to a file that
exists; docs/configuration.md is exactly what scripts/config_reference.py renders from config/schema.yaml.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DEMO_COMMAND = "pip install -e . && snakemake"
TEST_COMMAND = 'pip install -e ".[test]" && pytest'
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def pages() -> list[Path]:
    return [README, ROOT / "config" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def config_reference():
    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "scripts" / "config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_starts_with_the_two_commands():
    text = README.read_text()
    first_block = re.search(r"```\w*\n(.*?)```", text, re.S)
    assert first_block.group(1).splitlines() == [DEMO_COMMAND, TEST_COMMAND]
    # nothing but the title, a short description and the heading come before them
    assert text.index("```") < 1200, "the quick start must come first"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    install, run = TEST_COMMAND.split(" && ")
    assert install in ci and run in ci


def test_readme_is_short():
    assert len(README.read_text().splitlines()) <= 150


def test_every_relative_link_resolves():
    broken = []
    for page in pages():
        for target in LINK.findall(page.read_text()):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / target.split("#")[0]).resolve() for target in LINK.findall(README.read_text())}
    assert not [p.name for p in (ROOT / "docs").glob("*.md") if p.resolve() not in linked]


def test_quicklook_in_the_readme_is_small():
    images = [t for t in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", README.read_text()) if not t.startswith("http")]
    assert images
    for image in images:
        assert (ROOT / image).stat().st_size < 200_000, image


def test_configuration_reference_is_generated_from_the_schema():
    expected = config_reference().render()
    current = (ROOT / "docs" / "configuration.md").read_text()
    assert current == expected, "docs/configuration.md is stale: run python scripts/config_reference.py"


def test_configuration_reference_lists_every_schema_key():
    schema = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())
    text = (ROOT / "docs" / "configuration.md").read_text()
    for section, node in schema["properties"].items():
        assert f"| `{section}` |" in text, section
        for key in node.get("properties", {}):
            assert f"| `{section}.{key}` |" in text, f"{section}.{key}"
    assert "| `countries.<CC>.osm_pbf` |" in text


def test_configuration_reference_marks_config_comments_and_leaves_the_rest_blank(tmp_path):
    schema = tmp_path / "schema.yaml"
    config = tmp_path / "config.yaml"
    schema.write_text(yaml.safe_dump({
        "type": "object",
        "properties": {
            "a": {"type": "object", "properties": {
                "described": {"type": "integer", "minimum": 1, "default": 3, "description": "from the schema"},
                "commented": {"type": "string", "enum": ["x", "y"]},
                "above": {"type": "number"},
                "bare": {"type": "boolean"},
            }},
        },
    }))
    config.write_text("a:\n  described: 4   # not used: the schema describes it\n  commented: x    # a | b\n"
                      "  # the comment above\n  above: 0.5\n\n  bare: true\n")
    text = config_reference().render(schema, config)
    assert "| `a.described` | integer, ≥ 1 | `3` | `4` | from the schema |" in text
    assert "| `a.commented` | `x` \\| `y` |  | `x` | *config.yaml:* a \\| b |" in text
    assert "| `a.above` | number |  | `0.5` | *config.yaml:* the comment above |" in text
    assert "| `a.bare` | boolean |  | `true` |  |" in text


def test_config_reference_check_mode_passes_on_the_committed_page():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "config_reference.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_workflow_catalog_file():
    usage = yaml.safe_load((ROOT / ".snakemake-workflow-catalog.yml").read_text())["usage"]
    assert set(usage) <= {"mandatory-flags", "software-stack-deployment", "report"}
    assert usage["software-stack-deployment"]["conda"] is True
    assert usage["report"] is True
    assert (ROOT / "config" / "README.md").exists()
