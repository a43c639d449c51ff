"""Check a run directory against its manifest: a tampered, truncated, missing or extra file is
found by its size and sha256."""

from __future__ import annotations

import json
from pathlib import Path

from compress.core.errors import InputError
from compress.core.fileio import sha256_file


def verify_run_dir(run_dir: Path) -> tuple[int, list[str]]:
    """(files checked, problems) for OUT/MODEL/RUN_ID against its manifest.json."""
    run_dir = Path(run_dir)
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.is_file():
        raise InputError(f"'{run_dir}' has no manifest.json: not a compress run directory")
    try:
        files = json.loads(manifest_path.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise InputError(f"'{manifest_path}' is not a valid manifest: {exc}") from None
    problems = []
    for name, entry in files.items():
        path = run_dir / name
        if Path(name).name != name:
            problems.append(f"{name} (unsafe name in manifest)")
        elif not path.is_file():
            problems.append(f"{name} (missing)")
        elif path.stat().st_size != entry["size_bytes"]:
            problems.append(
                f"{name} (size {path.stat().st_size:,} != {entry['size_bytes']:,}: truncated "
                "or changed)"
            )
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"{name} (sha256 differs: changed)")
    known = set(files) | {"manifest.json", "bench.json"}  # bench.json: a later measurement
    problems += [f"{p.name} (not in the manifest)" for p in sorted(run_dir.iterdir())
                 if p.name not in known]  # fmt: skip
    return len(files), problems
