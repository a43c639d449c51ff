"""Headless Chromium for the report tests: a screenshot, the DOM after rendering, and what the
page logged to its console."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", "--disable-extensions", "--enable-logging=stderr", "--v=0"]  # fmt: skip


NAMES = ("chromium", "chromium-browser", "google-chrome")


def _find() -> str | None:
    return next((path for name in NAMES if (path := shutil.which(name))), None)


def chromium() -> str:
    """The browser on the PATH, else Debian's `chromium` package installed now (as root, or
    through sudo), once per machine: the two test workers take a lock so only one installs."""
    found = _find()
    if found:
        return found
    import fcntl
    import os
    import tempfile

    sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if sudo is None or not shutil.which("apt-get"):
        pytest.fail("headless Chromium is needed for the report tests: apt-get install chromium")
    with open(Path(tempfile.gettempdir()) / "compress-tests-chromium.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other worker may be installing it
        if not _find():
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            for cmd in (
                ["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "chromium"],
            ):
                done = subprocess.run([*sudo, *cmd], capture_output=True, text=True, env=env)
                if done.returncode != 0:
                    pytest.fail(f"installing Chromium failed ({' '.join(cmd)}): "
                                f"{done.stderr.strip()[-500:]}")  # fmt: skip
    found = _find()
    if not found:
        pytest.fail("apt-get installed chromium but no browser is on the PATH")
    return found


def _run(page: Path, *extra: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def render(page: Path, shot: Path, height: int = 6000) -> dict:
    """Screenshot `page` to `shot`; returns the rendered DOM and the console lines."""
    profile = shot.parent / f".chromium-{shot.stem}"
    taken = _run(page, f"--window-size=1280,{height}", f"--screenshot={shot}", profile=profile)
    dom = _run(page, f"--window-size=1280,{height}", "--dump-dom", profile=profile)
    assert shot.is_file(), taken.stderr[-2000:]
    console = [line for line in (taken.stderr + dom.stderr).splitlines() if "CONSOLE" in line]
    return {"dom": dom.stdout, "console": console}


def blank(shot: Path) -> bool:
    """True when the screenshot is (nearly) one colour."""
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))[..., :3]
    return float(pixels.std()) < 0.02
