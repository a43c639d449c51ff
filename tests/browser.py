"""Headless Chromium for the report tests: a screenshot, the DOM after rendering, and what the
page logged to its console."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", "--disable-extensions", "--enable-logging=stderr", "--v=0"]  # fmt: skip


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("headless Chromium is needed for the report tests: apt-get install chromium")


def _run(page: Path, *extra: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def render(page: Path, shot: Path, height: int = 6000) -> dict:
    """Screenshot `page` to `shot`; returns the rendered DOM and the console lines."""
    profile = shot.parent / f".chromium-{shot.stem}"
    taken = _run(page, f"--window-size=1280,{height}", f"--screenshot={shot}", profile=profile)
    dom = _run(page, "--dump-dom", profile=profile)
    assert shot.is_file(), taken.stderr[-2000:]
    console = [line for line in (taken.stderr + dom.stderr).splitlines() if "CONSOLE" in line]
    return {"dom": dom.stdout, "console": console}


def blank(shot: Path) -> bool:
    """True when the screenshot is (nearly) one colour."""
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))[..., :3]
    return float(pixels.std()) < 0.02
