"""Content-keyed stage cache.

A stage's key is the hash of its name and parameters, its parent's key (so the key covers every
earlier stage's config and, through the first stage, the input files' content), the versions of
the packages, and the source of the compress modules the stage runs (its module and everything it
imports, found by reading the imports): editing the report renderer keeps trained models, editing
the training code does not. A changed parameter changes that stage's key and every later one,
so only they rerun.

An entry is a directory written under a temporary name and renamed into place when complete,
with the sha256 of each of its files; an entry whose files do not match is deleted and rebuilt,
never used. The verify stage is never cached: its numbers are measured in the run that reports
them.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np

from compress.core.fileio import artifact_files, sha256_file
from compress.core.state import Artifact, RunState, Skipped
from compress.keras.model_io import load_model, save_model

PACKAGE_ROOT = Path(__file__).parent.parent

MODEL_FILE = "state_model.keras"
OUTPUTS_FILE = "reference_outputs.npz"
ENTRY_FILE = "entry.json"
LOCKS = ".locks"  # one lock file per key being made (see claim)


def default_root() -> Path:
    if os.environ.get("COMPRESS_CACHE_DIR"):
        return Path(os.environ["COMPRESS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "compress"


def _module_file(name: str) -> Path | None:
    """The source file of a compress module or package, or None if `name` is not one."""
    parts = name.split(".")[1:]
    base = PACKAGE_ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if parts and candidate.is_file():
            return candidate
    return None


@cache
def _imports(path: Path) -> set[str]:
    """compress modules a file imports anywhere (module level or inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("compress."))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("compress"):
            # `from pkg import mod` runs `mod`; `from pkg import name` runs `pkg` (its __init__)
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if _module_file(sub) is not None else node.module)
    return {name for name in found if _module_file(name) is not None}


def module_closure(module: str) -> list[str]:
    """`module` and every compress module it imports, transitively, sorted."""
    seen: set[str] = set()
    stack = [module]
    while stack:
        name = stack.pop()
        path = _module_file(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        stack.extend(_imports(path))
    return sorted(seen)


@cache
def code_fingerprint(module: str) -> str:
    """sha256 of the source of the compress code a module runs (see module_closure)."""
    h = hashlib.sha256()
    for name in module_closure(module):
        h.update(name.encode())
        h.update(_module_file(name).read_bytes())  # type: ignore[union-attr]
    return h.hexdigest()


def stage_key(parent: str, name: str, params: dict[str, Any], environment: dict[str, str]) -> str:
    blob = json.dumps(
        {"parent": parent, "stage": name, "params": params, "environment": environment},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def input_fingerprint(paths: list[str | None]) -> str:
    """sha256 over the content of the input files (a user's model and data; a SavedModel
    directory: each file's relative path and content)."""
    h = hashlib.sha256()
    for p in paths:
        if p is not None and Path(p).is_file():
            h.update(sha256_file(Path(p)).encode())
        elif p is not None and Path(p).is_dir():
            for f in sorted(q for q in Path(p).rglob("*") if q.is_file()):
                h.update(f.relative_to(p).as_posix().encode())
                h.update(sha256_file(f).encode())
        else:
            h.update(repr(p).encode())
    return h.hexdigest()


class StageCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _dir(self, key: str) -> Path:
        return self.root / key[:2] / key

    def load(self, key: str) -> dict[str, Any] | None:
        """The entry's record, with `dir`, if present and intact; a corrupt entry is removed."""
        entry_dir = self._dir(key)
        try:
            record = json.loads((entry_dir / ENTRY_FILE).read_text(encoding="utf-8"))
            for name, digest in record["files"].items():
                if sha256_file(entry_dir / name) != digest:
                    raise ValueError(f"{name} does not match its hash")
        except FileNotFoundError:
            if entry_dir.exists():
                shutil.rmtree(entry_dir, ignore_errors=True)
            return None
        except (OSError, ValueError, KeyError, TypeError):
            shutil.rmtree(entry_dir, ignore_errors=True)  # corrupt: rebuild, never use
            return None
        record["dir"] = entry_dir
        return record

    @contextmanager
    def claim(
        self, key: str, waiting: Callable[[], AbstractContextManager[Any]] = nullcontext
    ) -> Iterator[None]:
        """Hold `key` while its stage is looked up, made and stored: a concurrent run (another
        process) that needs the same stage waits, inside `waiting()`, and then finds it stored
        instead of making it too. A cache that cannot hold lock files claims nothing."""
        import fcntl

        try:
            locks = self.root / LOCKS
            locks.mkdir(parents=True, exist_ok=True)
            f = open(locks / f"{key}.lock", "a")  # noqa: SIM115 - held across the yield
        except OSError:
            yield
            return
        try:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                with waiting():
                    fcntl.flock(f, fcntl.LOCK_EX)
            yield
        finally:
            f.close()  # closing releases the lock

    def discard(self, key: str) -> None:
        """Remove an entry (a stage judged it does not hold for the run at hand)."""
        shutil.rmtree(self._dir(key), ignore_errors=True)

    def save(self, key: str, stage: Any, before: RunState, after: RunState) -> bool:
        """Store what the stage added to the state. Returns False if the cache is not writable
        (the run goes on without it)."""
        final = self._dir(key)
        tmp = self.root / f".tmp-{key}-{secrets.token_hex(4)}"
        try:
            tmp.mkdir(parents=True)
            new = after.artifacts[len(before.artifacts) :]
            for art in new:
                for part in artifact_files(art.path):  # with its external data, if any
                    shutil.copyfile(part, tmp / (art.name + part.name[len(art.path.name) :]))
            model_file = None
            if stage.produces_model:
                model_file = stage.model_artifact
                if model_file not in {a.name for a in new}:  # not saved by the stage: save it
                    model_file = MODEL_FILE
                    save_model(after.model, tmp / MODEL_FILE)
            if after.reference_outputs is not None:
                _save_outputs(after.reference_outputs, tmp / OUTPUTS_FILE)
            files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
            record = {
                "stage": stage.name,
                "params": stage.params.model_dump(mode="json"),
                "artifacts": [a.record() for a in new],
                "skipped": [asdict(s) for s in after.skipped[len(before.skipped) :]],
                "info": {k: v for k, v in after.info.items() if before.info.get(k) != v},
                "model": model_file,
                "reference_outputs": OUTPUTS_FILE if after.reference_outputs is not None else None,
                "files": files,
            }
            (tmp / ENTRY_FILE).write_text(json.dumps(record, default=str), encoding="utf-8")
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(tmp, final)
            except OSError:  # another run stored the same key first: keep theirs
                shutil.rmtree(tmp, ignore_errors=True)
            return True
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            return False
        except BaseException:  # interrupted: leave no half-written entry behind
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @staticmethod
    def restore(record: dict[str, Any], state: RunState) -> RunState:
        """Apply a cached stage's output to the state: files copied into the run directory;
        a model is loaded later, only if a stage needs it (see stages.base.materialize)."""
        entry_dir: Path = record["dir"]
        artifacts = []
        for a in record["artifacts"]:
            dest = state.workdir / a["name"]
            for part in artifact_files(entry_dir / a["name"]):
                shutil.copyfile(part, state.workdir / part.name)
            artifacts.append(Artifact.from_record(a, dest))
        skipped = tuple(Skipped(**s) for s in record["skipped"])
        state = state.add(tuple(artifacts), skipped).replace(info={**state.info, **record["info"]})
        if record.get("model"):
            loader = partial(load_model, entry_dir / record["model"])
            state = state.replace(model=None, model_loader=loader, reference_outputs=None)
        if record.get("reference_outputs"):
            with np.load(entry_dir / record["reference_outputs"], allow_pickle=False) as npz:
                state = state.replace(reference_outputs={k: npz[k] for k in npz.files})
        return state

    def clear(self) -> int:
        """Remove every entry; returns how many were removed."""
        if not self.root.exists():
            return 0
        count = sum(1 for p in self.root.glob("*/*") if p.is_dir())
        shutil.rmtree(self.root)
        return count


def _save_outputs(outputs: dict[str, Any], path: Path) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a name
        np.savez(f, **outputs)
