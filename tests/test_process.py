"""Processes compress owns (the CLI, the run's worker, tune's trial processes) take TensorFlow's and
Keras's objects out of the garbage collector's reach once imported; a process that only imports
compress as a library keeps its garbage collector as it was."""

from __future__ import annotations

import subprocess
import sys

import pytest

# TensorFlow + tf_keras leave ~300,000 objects tracked by the collector after import
MANY = 100_000


def _freeze_count(code: str) -> int:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def test_a_library_process_keeps_its_garbage_collector():
    code = "import gc\nfrom compress.keras import _tf\n_tf.keras()\nprint(gc.get_freeze_count())"
    assert _freeze_count(code) == 0


@pytest.mark.parametrize("order", ["own-then-import", "import-then-own"])
def test_an_owned_process_freezes_the_frameworks_once_imported(order):
    steps = ["_tf.own_process()", "_tf.keras()"]
    if order == "import-then-own":
        steps.reverse()
    code = "\n".join(["import gc", "from compress.keras import _tf", *steps,
                      "frozen = gc.get_freeze_count()",
                      "_tf.own_process()",  # a second declaration freezes nothing more
                      "assert gc.get_freeze_count() == frozen",
                      "print(frozen)"])  # fmt: skip
    assert _freeze_count(code) > MANY


def test_the_run_worker_and_the_cli_freeze_the_frameworks(tmp_path):
    import gc

    from compress.backends.worker import Worker

    with Worker(log=tmp_path / "log.txt") as worker:
        assert worker.call(gc.get_freeze_count) > MANY
    code = ("import gc\nfrom compress.cli import main\nfrom compress.keras import _tf\n"
            "main(['list'])\n_tf.keras()\nprint(gc.get_freeze_count())")  # fmt: skip
    assert _freeze_count(code) > MANY


def test_a_framework_imported_mid_run_freezes_nothing_more():
    """tfmot is first imported by prune/cluster/QAT, with the run's model alive: freezing then
    would keep that model from ever being collected."""
    code = "\n".join(["import gc", "from compress.keras import _tf", "_tf.own_process()",
                      "keras = _tf.keras()", "frozen = gc.get_freeze_count()",
                      "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])",
                      "_tf.tfmot()", "assert gc.get_freeze_count() <= frozen",  # none added
                      "print(frozen)"])  # fmt: skip
    assert _freeze_count(code) > MANY


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS"))


def _free_below_the_trim_threshold() -> float:
    """What a converter's transient copies of the weights leave: glibc's free() returns heap
    memory to the system only above a threshold that rises with every large block freed (a
    16 MB one here: to 32 MB), so 24 MB of 1 MB blocks freed stay resident. Returns the
    resident MB after the free."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.free(libc.malloc(16 * 2**20))  # mmapped; raises the mmap and trim thresholds
    blocks = [libc.malloc(2**20) for _ in range(24)]  # now from the heap
    for block in blocks:
        ctypes.memset(block, 1, 2**20)  # resident
    for block in reversed(blocks):
        libc.free(block)
    return _rss_mb()


def test_the_worker_gives_freed_memory_back_after_each_call(tmp_path):
    from compress.backends.worker import Worker

    with Worker(log=tmp_path / "log.txt") as worker:
        base = worker.call(_rss_mb)
        kept = worker.call(_free_below_the_trim_threshold)
        after = worker.call(_rss_mb)
    assert kept - base > 20  # the freed blocks still count as resident inside the call
    assert after - base < 0.25 * (kept - base)  # given back once the call returned


SAVES = """
import os, sys
from pathlib import Path
from compress.keras import _tf
from compress.keras.model_io import save_model
keras = _tf.keras()
inputs = keras.Input((4096,), name="x")
model = keras.Model(inputs, keras.layers.Dense(4096, name="y")(inputs))  # 64 MiB of weights
def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))
seen = []
for i in range(4):
    save_model(model, Path(sys.argv[1]) / f"m{i}.keras")
    seen.append(rss())
print(seen[1], seen[-1])
"""


def test_saving_a_large_model_again_and_again_does_not_grow_the_process(tmp_path):
    """Each save writes a fresh copy of the model (no optimizer state), which is cyclic garbage
    afterwards: left to the collector, every save of a 600M-parameter model kept 2.4 GB more."""
    out = subprocess.run([sys.executable, "-c", SAVES, str(tmp_path)], capture_output=True,
                         text=True, check=True)  # fmt: skip
    after_second, after_fourth = map(int, out.stdout.split())
    assert after_fourth - after_second < 0.5 * 4 * 4096 * 4096
