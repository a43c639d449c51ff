"""The timing lock of concurrent tune trials: a timing waits while another trial holds its share
(it is building), and a trial's own timing gives its share up (no deadlock)."""

from __future__ import annotations

import multiprocessing
import time

from compress.measure import timing


def _build_then_time(path: str, events: multiprocessing.Queue, build_s: float) -> None:
    lock = timing.TimingLock(path)
    with lock.trial():
        events.put(("build", time.monotonic()))
        time.sleep(build_s)
        events.put(("built", time.monotonic()))
        with lock.exclusive():
            events.put(("timing", time.monotonic()))
            time.sleep(0.2)
            events.put(("timed", time.monotonic()))


def test_a_timing_waits_for_other_trials_builds_and_no_two_time_at_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    events = ctx.Queue()
    path = str(tmp_path / "timing.lock")
    slow = ctx.Process(target=_build_then_time, args=(path, events, 1.5))
    fast = ctx.Process(target=_build_then_time, args=(path, events, 0.1))
    slow.start()
    time.sleep(0.5)  # the slow trial is building
    fast.start()
    for p in (slow, fast):
        p.join(30)
        assert p.exitcode == 0
    log = [events.get(timeout=5) for _ in range(8)]
    # events in order of time: the fast trial's timing starts after the slow one finished building
    log.sort(key=lambda e: e[1])
    names = [n for n, _ in log]
    timings = [i for i, n in enumerate(names) if n == "timing"]
    assert all(names[i + 1] == "timed" for i in timings)  # no two timings overlap
    first_timing = log[timings[0]][1]
    built = [t for n, t in log if n == "built"]
    assert first_timing >= max(built) - 0.01  # nobody timed while the slow trial was building


def test_without_a_lock_every_context_is_free():
    lock = timing.NO_LOCK
    with lock.trial(), lock.exclusive(), lock.exclusive():
        pass
    assert lock.path is None


def test_the_lock_reaches_the_timings_explicitly_not_through_the_environment():
    import inspect
    import os

    from compress.measure.timing import measure_interleaved, measure_until_stable

    assert not any(k.startswith("COMPRESS_TIMING") for k in os.environ)
    for fn in (measure_interleaved, measure_until_stable):
        assert inspect.signature(fn).parameters["lock"].default is timing.NO_LOCK


def test_a_trial_waiting_for_another_runs_stage_gives_up_its_hold(tmp_path):
    """While a trial waits for a stage another run is making (TimingLock.released), a timing
    elsewhere may take the lock exclusively; before and after, the trial's hold keeps it out."""
    import fcntl

    path = str(tmp_path / "timing.lock")
    lock = timing.TimingLock(path)

    def exclusive_now() -> bool:
        with open(path, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(f, fcntl.LOCK_UN)
            return True

    assert exclusive_now()
    with lock.trial():
        assert not exclusive_now()
        with lock.released():
            assert exclusive_now()
        assert not exclusive_now()
