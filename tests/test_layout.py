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
from compress.backends import BACKENDS, Backend
from compress.runs import cache

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


def _imports(path: Path, module_level_only: bool = False) -> set[str]:
    """The compress modules a file imports: at module level only, or at any depth (inside
    functions, under TYPE_CHECKING). `from pkg import name` names the module `pkg.name` when
    there is one, else `pkg`; the root package (whose names load lazily) is not counted."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    me = next(m for m, p in MODULES.items() if p == path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the file's package
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([base] if base else [])])
            if not base.startswith("compress"):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("compress"))
    return {m for m in found if m in MODULES and m not in ("compress", me)}


GRAPH = {m: _imports(p) for m, p in MODULES.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                return [*trail, node, dep]
            if dep not in state:
                found = visit(dep, [*trail, node])
                if found:
                    return found
        state[node] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module, [])
            if found:
                return found
    return None


def test_no_import_cycle_counting_imports_inside_functions():
    cycle = _cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_counts_an_import_inside_a_function():
    assert _cycle({"a": {"b"}, "b": set()}) is None
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    # a function-level import is an edge: the CLI imports its commands only when it runs one
    assert "compress.cli.commands" in GRAPH["compress.cli"]
    assert "compress.cli.commands" not in _imports(MODULES["compress.cli"], module_level_only=True)


def _readme_layers() -> list[str]:
    """The layer map in the README: the `compress/NAME/` rows of its Layout table, bottom first."""
    text = (ROOT.parent / "README.md").read_text()
    section = text.split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    return [
        line.split("`compress/", 1)[1].split("/`", 1)[0]
        for line in section.splitlines()
        if line.startswith("| `compress/")
    ]


LAYERS = _readme_layers()


def _layer(module: str) -> int:
    """The module's layer, bottom first; the package root (`compress`, `__main__`) is above all."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return len(LAYERS)
    return LAYERS.index(parts[1])


def test_readme_layer_map_is_the_tree():
    folders = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file())
    assert sorted(LAYERS) == folders, (LAYERS, folders)
    root = sorted(p.name for p in ROOT.glob("*.py"))
    assert root == ["__init__.py", "__main__.py"], root  # everything else lives in a layer


def test_a_layer_imports_only_from_layers_below_it():
    upward = [
        f"{m} imports {d}" for m, deps in GRAPH.items() for d in deps if _layer(d) > _layer(m)
    ]
    assert not upward, "\n".join(upward)


def test_the_report_renders_records_and_knows_nothing_of_how_they_were_made():
    allowed = ("compress.core", "compress.measure", "compress.report")
    for module, deps in GRAPH.items():
        if module.startswith("compress.report"):
            bad = [d for d in deps if not d.startswith(allowed)]
            assert not bad, f"{module} imports {bad}"


def test_no_module_is_over_600_lines():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 600}
    assert not long, long


@pytest.mark.parametrize("order", ["sorted", "reversed"])
def test_every_module_imports_in_any_order(order):
    names = sorted(m for m in MODULES if m != "compress.__main__")
    if order == "reversed":
        names.reverse()
    code = f"import importlib\nfor m in {names!r}:\n    importlib.import_module(m)\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_nothing_below_the_stages_imports_them():
    for module in MODULES:
        if _layer(module) < LAYERS.index("stages"):
            bad = {m for m in GRAPH[module] if m.startswith("compress.stages")}
            assert not bad, f"{module} imports {bad}"


def test_state_imports_nothing_of_compress():
    tree = ast.parse(MODULES["compress.core.state"].read_text())
    runtime = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert not [n for n in runtime if "compress" in (getattr(n, "module", "") or "")]


def test_library_messages_do_not_spell_cli_flags():
    """Below the CLI, errors name config keys (`verify.max_drift`); the CLI spells flags."""
    for module, path in MODULES.items():
        if module.startswith("compress.cli"):
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
        assert spec.candidate_only or backend.default(spec.mode) is not None
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
            # no_recipe: the mode has no row for every model (rows that need a property, such
            # as a model that came from Keras 3, serve only those models)
            general = [s for s in backend.recipes if s.mode == mode and s.needs is None]
            assert not (general and mode in backend.no_recipe)


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
    with open(copy / "report" / "text.py", "a") as f:
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
