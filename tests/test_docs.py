"""Facts stated in the README and pyproject are the code's: each lives once, and where the README
repeats one for readers, a test holds it to the code."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import compress
from compress.backends.onnxruntime import DEFAULT_OPSET, OPSETS
from compress.cli import EXIT_CODES
from compress.measure.timing import MIN_CALLS, TIMING_BUDGET_S
from compress.measure.weights import GZIP_LEVEL
from compress.report.fields import fields_table

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _table_after(heading: str) -> list[str]:
    lines = README[README.index(heading) :].splitlines()[1:]
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return lines[start:end]


def test_readme_exit_codes_are_the_cli_table():
    rows = _table_after("### Exit codes")[2:]
    parsed = {int(r.split("|")[1]): r.split("|")[2].strip() for r in rows}
    assert parsed == EXIT_CODES
    assert README.count("| code | meaning |") + README.count("| exit code |") == 1


def test_readme_report_fields_are_the_report_table():
    assert _table_after("## Report fields") == fields_table()


def test_gzip_level_is_stated_as_the_code_uses_it():
    assert f"gzip (level {GZIP_LEVEL})" in "\n".join(fields_table())
    assert not re.search(r"gzip -\d|gzip, level \d|level \d\)", README.replace(
        f"gzip (level {GZIP_LEVEL})", ""))  # fmt: skip


def test_opset_and_timing_defaults_in_the_readme_are_the_code_defaults():
    for found in re.findall(r"opset (\d+)\b(?!-)", README):
        assert int(found) == DEFAULT_OPSET
    assert f"--opset {OPSETS[0]}-{OPSETS[1]}" in README
    assert f"opset = {DEFAULT_OPSET}" in README
    assert f"≥{TIMING_BUDGET_S:g} s and ≥{MIN_CALLS} calls" in README


def test_version_is_stated_once_in_pyproject():
    version = PYPROJECT["project"]["version"]
    assert compress.__version__ == version
    out = subprocess.run([sys.executable, "-m", "compress", "--version"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert out.strip() == f"compress {version}"
    hits = [p for p in (REPO / "compress").rglob("*.py") if version in p.read_text()]
    assert not hits, f"version literal repeated in {hits}"


def test_pyproject_states_what_the_tool_does_and_the_pythons_the_wheels_allow():
    project = PYPROJECT["project"]
    assert "prune" in project["description"] and "later" not in project["description"]
    assert project["requires-python"] == ">=3.11,<3.14"
    assert "Python 3.11–3.13" in README
