"""The package's layout keeps its promises: no import cycle, nothing low imports the stages,
the run's data model imports nothing of ours, every backend honours one contract, and a stage's
cache key covers the code it runs and nothing else."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import compress
from compress.runs import cache
from compress.backends import BACKENDS, Backend

ROOT = Path(compress.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(["compress", *parts])] = path
    return found


MODULES = _modules()


def _imports(path: Path, module_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("compress"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("compress"))
    return {m for m in found if m in MODULES and m != "compress"}


def test_module_level_imports_have_no_cycle():
    graph = {m: _imports(p, module_level_only=True) - {m} for m, p in MODULES.items()}
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                pytest.fail("import cycle: " + " -> ".join([*trail, node, dep]))
            if dep not in state:
                visit(dep, [*trail, node])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


@pytest.mark.parametrize("order", ["sorted", "reversed"])
def test_every_module_imports_in_any_order(order):
    names = sorted(m for m in MODULES if m != "compress.__main__")
    if order == "reversed":
        names.reverse()
    code = f"import importlib\nfor m in {names!r}:\n    importlib.import_module(m)\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_nothing_low_imports_the_stages():
    # tune runs whole pipelines and checks its search space with the stages' own parameters
    high = {"compress.runs.pipeline", "compress.runs.config", "compress.cli", "compress", "compress.tune"}
    for module, path in MODULES.items():
        if module.startswith("compress.stages") or module in high:
            continue
        bad = {m for m in _imports(path, module_level_only=False) if m.startswith("compress.st")}
        bad.discard("compress.core.state")
        assert not bad, f"{module} imports {bad}"


def test_state_imports_nothing_of_compress():
    tree = ast.parse(MODULES["compress.core.state"].read_text())
    runtime = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert not [n for n in runtime if "compress" in (getattr(n, "module", "") or "")]


def test_library_messages_do_not_spell_cli_flags():
    """Below the CLI, errors name config keys (`verify.max_drift`); the CLI spells flags."""
    for module, path in MODULES.items():
        if module == "compress.cli":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                for const in ast.walk(node.exc):
                    if isinstance(const, ast.Constant) and isinstance(const.value, str):
                        assert "--" not in const.value, f"{module}: {const.value!r}"


@pytest.mark.parametrize("runtime", sorted(BACKENDS))
def test_backend_contract(runtime):
    backend = BACKENDS[runtime]
    assert isinstance(backend, Backend) and backend.runtime == runtime
    assert backend.suffix.startswith(".")
    ids = [s.id for s in backend.recipes]
    assert len(ids) == len(set(ids)), f"{runtime} recipe ids repeat: {ids}"
    for spec in backend.recipes:
        assert spec.description and spec.mode
        assert backend.recipe(spec.id) is spec
        assert backend.default(spec.mode) is not None
    for mode in {s.mode for s in backend.recipes}:
        candidates = backend.candidates(mode)
        # the default recipe of a mode is the first candidate measured, when it is measured
        assert not candidates or candidates[0] is backend.default(mode)
    with pytest.raises(ValueError, match="has no recipe 'nope'"):
        backend.recipe("nope")
    for name in ("build", "open_runner", "count_weights"):
        assert getattr(type(backend), name) is not getattr(Backend, name), f"{runtime}: {name}"


def test_exported_backends_cover_the_quantize_modes():
    from typing import get_args

    from compress.backends import exported
    from compress.cli import QUANTIZE_MODES
    from compress.stages.quantize import QuantizeParams

    MODES = get_args(QuantizeParams.model_fields["mode"].annotation)
    assert MODES == QUANTIZE_MODES  # the CLI's choices are the stage's modes

    for backend in exported():
        assert backend.default("fp32") is not None
        for mode in MODES:
            if mode == "none":
                continue
            # a mode a format cannot serve says why (the run lists the artifact as skipped)
            assert backend.default(mode) is not None or backend.no_recipe.get(mode), (
                f"{backend.runtime} lacks {mode} and says nothing about it"
            )
            assert not (backend.default(mode) and mode in backend.no_recipe)


def test_stage_cache_key_covers_the_code_a_stage_runs(tmp_path, monkeypatch):
    copy = tmp_path / "compress"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cache, "PACKAGE_ROOT", copy)

    def key(module: str) -> str:
        cache.code_fingerprint.cache_clear()
        return cache.code_fingerprint(module)

    closure = cache.module_closure("compress.stages.train")
    assert "compress.backends.keras" in closure and "compress.keras.data" in closure
    assert not {"compress.report.text", "compress.cli", "compress.runs.pipeline"} & set(closure)
    train, quantize = key("compress.stages.train"), key("compress.stages.quantize")
    with open(copy / "report.py", "a") as f:
        f.write("\n# the renderer changed\n")
    assert key("compress.stages.train") == train  # trained models survive a report change
    with open(copy / "backends" / "onnxruntime.py", "a") as f:
        f.write("\n# a quantizer changed\n")
    assert key("compress.stages.train") == train
    assert key("compress.stages.quantize") != quantize
    with open(copy / "stages" / "finetune.py", "a") as f:
        f.write("\n# fine-tuning changed\n")
    assert key("compress.stages.quantize") != quantize
    with open(copy / "backends" / "keras.py", "a") as f:
        f.write("\n# saving changed\n")
    assert key("compress.stages.train") != train
    cache.code_fingerprint.cache_clear()
