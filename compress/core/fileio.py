"""Atomic file writes and hashing: a file either has its full content or does not exist."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# The machine's temp directory, as the process that started a run's worker saw it: the worker's
# own temp directory is private and removed with the worker (backends/worker.py).
SHARED_TEMP_ENV = "COMPRESS_SHARED_TMPDIR"


def shared_temp() -> Path:
    """The temp directory for files meant to outlive the process that writes them (a cache
    shared by runs), also from inside a run's worker."""
    return Path(os.environ.get(SHARED_TEMP_ENV) or tempfile.gettempdir())


# A file's companion holding its tensors outside it (ONNX external data: a protobuf holds at most
# 2 GiB), named after the file it belongs to. It travels with its file: sizes, caches, copies.
DATA_SUFFIX = ".data"


def data_file(path: Path) -> Path:
    """Where `path`'s external data lives (it may not exist)."""
    path = Path(path)
    return path.with_name(path.name + DATA_SUFFIX)


def artifact_files(path: Path) -> list[Path]:
    """The file and, if it has one, its external data file."""
    data = data_file(path)
    return [Path(path), data] if data.is_file() else [Path(path)]


def artifact_bytes(path: Path) -> int:
    """Bytes on disk of a file with its external data."""
    return sum(p.stat().st_size for p in artifact_files(path))


def atomic_target(path: Path) -> Path:
    """The path that `write_atomic` renames its temporary `path` to (`path` itself when it is not
    one of write_atomic's temporary files): a writer whose file names a companion file by name
    (ONNX external data) names it after the final file."""
    path = Path(path)
    match = _TMP_NAME.fullmatch(path.name)
    if match is None or not path.name.endswith(match["suffix"]):
        return path
    return path.with_name(match["name"])


_TMP_NAME = re.compile(r"\.(?P<name>.+)\.[^.]+\.tmp(?P<suffix>\.[^.]*)?")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp) on a temporary path beside `path`, then rename it into place."""
    path = Path(path)
    # Keep the real suffix last: some writers (Keras) insist on the file extension.
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(path: Path, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """Run a step whose library writes scratch files into the current directory (onnxruntime's
    symbolic shape inference does) inside `path`, so nothing lands in the user's directory."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)
