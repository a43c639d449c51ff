"""compress tune: a small grid on the multitask model (1 epoch), end to end through the CLI:
the front and the recommended artifacts are written, a rerun continues the study without
redoing a finished trial, an interrupted trial is run again, and a budget nobody meets exits 1
with the closest trial still saved."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from browser import blank, render

from compress.cli import main

SPACE = """
[space]
prune = ["none", 0.5, 0.8]
cluster = ["none"]
quantize = ["int8"]
qat = [false]
"""


def _tune(tmp_path, capsys, *extra, cache=None):
    """A tune of the small space; its trials share the session's stage cache (the same
    multitask model and prunings serve every tune test) unless given their own `cache`."""
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    own = ["--cache-dir", str(cache)] if cache else []
    argv = ["tune", "multitask", "--epochs", "1", "--space", str(space), "--out",
            str(tmp_path / "out"), *own, "--json", "--quiet",
            "--set", "verify.timing_budget_s=0.02", *extra]  # fmt: skip
    code = main(argv)
    out = capsys.readouterr().out
    return code, json.loads(out) if out else None


def _dir(tmp_path, record):
    return tmp_path / "out" / "tune" / "multitask" / record["tune_id"]


@pytest.mark.slow
def test_tune_writes_fronts_and_the_recommended_runs(tmp_path, capsys):
    code, record = _tune(tmp_path, capsys, "--trials", "2", "--max-drift", "100")
    assert code == 0
    done = [t for t in record["trials"] if t["state"] == "COMPLETE"]
    assert len(done) == 2
    assert done[0]["params"] == {"prune": None, "cluster": None, "quantize": "int8", "qat": False}
    for t in done:
        for runtime in ("litert", "onnxruntime"):
            m = t["runtimes"][runtime]
            assert m["artifact"].startswith("model_int8") and m["size_gzip_bytes"] > 0
            assert m["latency_ms_b1"] > 0 and m["feasible"]
    pruned = next(t for t in done if t["params"]["prune"] is not None)
    plain = done[0]
    # pruning pays in gzip: the pruned trial's int8 file compresses smaller
    for runtime in ("litert", "onnxruntime"):
        assert (
            pruned["runtimes"][runtime]["size_gzip_bytes"]
            < (plain["runtimes"][runtime]["size_gzip_bytes"])
        )
        assert record["best"][f"{runtime}-size"]["trial"] == pruned["number"]
    d = _dir(tmp_path, record)
    assert json.loads((d / "tune.json").read_text())["tune_id"] == record["tune_id"]
    rows = (d / "pareto.csv").read_text().splitlines()
    assert rows[0].startswith("runtime,trial,prune") and len(rows) >= 3
    assert (d / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    seen = render(d / "tune.html", tmp_path / "tune.png")
    assert not blank(tmp_path / "tune.png") and seen["console"] == []
    for section in ("Recommended artifacts", "Pareto fronts", "Trials"):
        assert f"<h2>{section}</h2>" in seen["dom"]
    assert seen["dom"].count("<svg") >= 1
    for name in ("litert-size", "onnxruntime-size"):
        assert main(["verify-artifacts", str(d / "best" / name)]) == 0
        report = json.loads((d / "best" / name / "report.json").read_text())
        assert report["config"]["stages"]["prune"]["sparsity"] == pruned["params"]["prune"]


@pytest.mark.slow
def test_rerun_continues_the_study_and_redoes_no_finished_trial(tmp_path, capsys):
    _, first = _tune(tmp_path, capsys, "--trials", "1", "--max-drift", "100")
    _, second = _tune(tmp_path, capsys, "--trials", "2", "--max-drift", "100")
    assert second["tune_id"] == first["tune_id"]
    done = [t for t in second["trials"] if t["state"] == "COMPLETE"]
    assert [t["number"] for t in done] == [0, 1]
    assert done[0] == first["trials"][0]  # the same record: trial 0 was not run again
    assert done[1]["params"] != done[0]["params"]


@pytest.mark.slow
def test_a_space_no_bigger_than_trials_is_built_once_per_point(tmp_path, capsys):
    """Three points, four trials asked for: each point is built once, then the tune stops."""
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    argv = ["tune", "multitask", "--epochs", "1", "--space", str(space), "--out",
            str(tmp_path / "out"), "--trials", "4",
            "--max-drift", "100", "--json", "--set", "verify.timing_budget_s=0.02"]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    record = json.loads(captured.out)
    done = [t for t in record["trials"] if t["state"] == "COMPLETE"]
    assert sorted(str(t["params"]["prune"]) for t in done) == ["0.5", "0.8", "None"]
    assert "every point of the space has been built (3)" in captured.err


def test_a_point_proposed_again_is_answered_from_its_finished_trial(tmp_path):
    """The sampler may propose a finished point again (TPE does, on small categorical spaces):
    its record stands, marked same_as, and the trial is kept out of the fronts. With QAT on, the
    quantize mode drawn is unused, so those points are the same too."""
    import optuna

    from compress import tune

    study = optuna.create_study(directions=["minimize"] * 2)
    point = {"prune": 0.5, "cluster": None, "quantize": "int8", "qat": True}
    first = study.ask()
    tune.suggest_point(first, {k: [v] for k, v in point.items()})
    runtimes = {r: {"artifact": "a", "size_gzip_bytes": 10, "drift": 0.0, "feasible": True}
                for r in tune.runtimes()}  # fmt: skip
    spec = tune.TuneSetup(base=None, target="m", max_drift=1.0, space={})
    tune.tell(study, first, {"runtimes": runtimes, "run_dir": "x"}, spec)
    assert tune.propose(study, {**point, "quantize": "dynamic"})["same_as"] == first.number
    assert tune.propose(study, {**point, "qat": False}) is None
    trials = [{"number": 0, "state": "COMPLETE", "params": point, "runtimes": runtimes},
              {"number": 1, "state": "COMPLETE", "params": point, "runtimes": runtimes,
               "same_as": 0}]  # fmt: skip
    assert [p["trial"] for p in tune.fronts(trials, spec)["litert"]] == [0]


@pytest.mark.slow
def test_interrupted_tune_keeps_finished_trials_and_reruns_the_cut_one(tmp_path, capsys):
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    argv = [sys.executable, "-m", "compress", "tune", "multitask", "--epochs", "1", "--space",
            str(space), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
            "--trials", "2", "--max-drift", "100",
            "--set", "verify.timing_budget_s=0.02"]  # fmt: skip
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "tune: trial 1: multitask: prune ..." in line or not line:
            break
    time.sleep(0.5)  # inside trial 1's pruning (about 4 s)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    # its own cache: trial 1 must really prune (a cached pruning would print no stage line)
    code, record = _tune(tmp_path, capsys, "--trials", "2", "--max-drift", "100",
                         cache=tmp_path / "cache")  # fmt: skip
    assert code == 0
    states = [(t["number"], t["state"]) for t in record["trials"]]
    assert states[0] == (0, "COMPLETE")
    done = [t for t in record["trials"] if t["state"] == "COMPLETE"]
    assert len(done) == 2 and done[0]["number"] == 0  # trial 0 kept, the cut point run again
    cut = next(t for t in record["trials"] if t["number"] == 1)
    assert cut["state"] == "FAIL" and "error" not in cut
    assert done[1]["params"] == cut["params"]


@pytest.mark.slow
def test_no_trial_within_budget_exits_1_and_keeps_the_closest(tmp_path, capsys):
    space = tmp_path / "space.toml"
    space.write_text(SPACE.replace('prune = ["none", 0.5, 0.8]', "prune = [0.98]"))
    argv = ["tune", "multitask", "--epochs", "1", "--space", str(space), "--out",
            str(tmp_path / "out"), "--trials", "1",
            "--max-drift", "0", "--json", "--quiet"]  # fmt: skip
    code = main(argv)
    captured = capsys.readouterr()
    record = json.loads(captured.out)
    assert code == 1 and "no trial met --max-drift 0" in captured.err
    for name, b in record["best"].items():
        assert not b["within_budget"] and b["drift"] > 0, (name, b)
        assert (_dir(tmp_path, record) / "best" / name / "report.json").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--objective", "accuracy"], "--objective must be size, latency or size,latency"),
        (["--trials", "0"], "--trials must be >= 1"),
        (["--space", "missing.toml"], "space file 'missing.toml' does not exist"),
        (["--workers", "0"], "--workers must be >= 1. Got 0 instead."),
    ],
)
def test_bad_tune_arguments_are_one_line(extra, message, tmp_path, capsys):
    assert main(["tune", "multitask", "--out", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "tune").exists()


def test_tunes_old_objective_flag_still_works_with_a_deprecation_message(tmp_path, capsys):
    """`--objective` was tune's name for what `--objectives` is now (run's `--objective` is the
    recipe search's): it is still read, and says so."""
    assert main(["tune", "multitask", "--objective", "size", "--trials", "0",
                 "--out", str(tmp_path)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "--objective is deprecated, use --objectives" in err
    assert "--trials must be >= 1. Got 0 instead." in err  # the value was taken: it got that far
    assert main(["tune", "multitask", "--objectives", "size,latency,size", "--out",
                 str(tmp_path)]) == 2  # fmt: skip
    assert "--objectives must be size, latency or size,latency" in capsys.readouterr().err


def test_bad_space_file_names_the_key(tmp_path, capsys):
    space = tmp_path / "s.toml"
    space.write_text("[space]\nprune = [1.5]\n")
    assert main(["tune", "multitask", "--space", str(space), "--out", str(tmp_path)]) == 2
    assert "space.prune: 1.5" in capsys.readouterr().err


def _grid_argv(where, name, *extra):
    """Two points (float and pruned), each executor in its own cache: enough for trials that
    overlap and for a front of two."""
    space = where / "space.toml"
    space.write_text(SPACE.replace('prune = ["none", 0.5, 0.8]', 'prune = ["none", 0.5]'))
    return ["tune", "multitask", "--epochs", "1", "--space", str(space), "--out",
            str(where / name), "--cache-dir", str(where / f"cache-{name}"), "--trials", "2",
            "--max-drift", "100", "--json", "--quiet", "--set", "verify.timing_budget_s=0.02",
            "--set", "quantize.select=false", *extra]  # fmt: skip


def _grid(tmp_path, capsys, name, *extra):
    """The small grid with the mode's default recipe (no timed recipe choice), into its own
    output directory and cache."""
    code = main(_grid_argv(tmp_path, name, *extra))
    out = capsys.readouterr().out
    assert code == 0
    return json.loads(out)


@pytest.fixture(scope="module")
def local_grid(tmp_path_factory):
    """The grid on the local executor, one trial at a time: what the other executors are
    compared with (made once for this file's tests)."""
    import contextlib
    import io

    where = tmp_path_factory.mktemp("grid")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(_grid_argv(where, "local"))
    assert code == 0
    return json.loads(buf.getvalue())


def _built(record):
    """What each trial built and measured, but for its latency: the same on any executor."""
    out = {}
    for t in record["trials"]:
        assert t["state"] == "COMPLETE", t
        out[t["number"]] = (
            t["params"],
            {r: (m["artifact"], m["recipe"], m["size_bytes"], m["drift"])
             for r, m in t["runtimes"].items()},
        )  # fmt: skip
    return out


@pytest.mark.slow
def test_two_local_workers_run_trials_side_by_side_with_the_same_results(
    local_grid, tmp_path, capsys
):
    one = local_grid
    two = _grid(tmp_path, capsys, "two", "--workers", "2")
    assert _built(two) == _built(one)
    spans = sorted((t["started"], t["started"] + t["seconds"]) for t in two["trials"])
    assert spans[1][0] < spans[0][1]  # the first two trials overlapped
    for record in (one, two):
        for t in record["trials"]:
            assert all(m["latency_ms_b1"] > 0 for m in t["runtimes"].values())


@pytest.mark.slow
def test_ray_executor_gives_the_same_front_as_local(local_grid, tmp_path, capsys):
    """A local Ray instance (the machine's CPUs): the same trials, sizes, recipes and drifts as
    the local executor; latencies measured in both."""
    local = local_grid
    ray = _grid(tmp_path, capsys, "ray", "--executor", "ray")
    assert _built(ray) == _built(local)
    for runtime in ("litert", "onnxruntime"):
        assert [p["trial"] for p in ray["fronts"][runtime]] == [
            p["trial"] for p in local["fronts"][runtime]
        ]
        for a, b in zip(ray["fronts"][runtime], local["fronts"][runtime], strict=True):
            assert a["latency_ms_b1"] > 0 and b["latency_ms_b1"] > 0
            assert abs(a["size_gzip_bytes"] - b["size_gzip_bytes"]) <= 0.01 * b["size_gzip_bytes"]
    d = tmp_path / "ray" / "tune" / "multitask" / ray["tune_id"]
    assert main(["verify-artifacts", str(d / "best" / "litert-size")]) == 0
    capsys.readouterr()


def test_the_ray_address_needs_the_ray_executor(tmp_path, capsys):
    argv = ["tune", "multitask", "--address", "auto", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "--address is the Ray cluster's: it needs the ray executor" in capsys.readouterr().err


def test_a_language_models_trials_are_judged_by_perplexity_increase(tmp_path):
    """An LM trial's cost is its perplexity increase: the front's last axis, the budget the
    closest trial is ranked by when none meets it, and the tune page's axis."""
    from compress import tune
    from compress.report.tune import tune_page, tune_table
    from compress.tune.results import best, fronts, quality
    from compress.tune.trial import TuneSetup, budget_excess

    def metrics(size, ppl):
        return {r: {"artifact": "a", "recipe": "r", "size_bytes": size, "size_gzip_bytes": size,
                    "latency_ms_b1": 1.0, "drift": 0.0, "ppl_increase": ppl,
                    "max_ppl_increase": 1.0, "feasible": ppl <= 1.0}
                for r in tune.runtimes()}  # fmt: skip

    point = {"prune": None, "cluster": None, "quantize": "int8", "qat": False}
    measured = [(100, 0.4), (80, 0.9), (60, 3.0), (50, 40.0)]  # (gzip bytes, ppl increase %)
    trials = [{"number": i, "state": "COMPLETE", "params": point, "runtimes": metrics(s, p)}
              for i, (s, p) in enumerate(measured)]  # fmt: skip
    setup = TuneSetup(base=None, target="lm", max_drift=1.0, space={}, out=tmp_path)
    assert quality(trials, setup)["key"] == "ppl_increase"
    assert budget_excess(trials[2]["runtimes"]["litert"], 1.0) == pytest.approx(2.0)
    assert budget_excess(trials[0]["runtimes"]["litert"], 1.0) == pytest.approx(-0.6)
    chosen = best(trials, setup)["litert-size"]
    assert chosen["trial"] == 1 and chosen["within_budget"]  # the smallest within 1%
    assert [p["trial"] for p in fronts(trials, setup)["litert"]] == [1, 0]
    over = [{**t, "runtimes": metrics(t["runtimes"]["litert"]["size_bytes"],
                                      t["runtimes"]["litert"]["ppl_increase"] + 2.5)}
            for t in trials]  # fmt: skip
    closest = best(over, setup)["litert-size"]
    assert closest["trial"] == 0 and not closest["within_budget"]  # the least perplexity lost
    record = {"tune_id": "t", "target": "lm", "objectives": ["size"], "max_drift": 1.0,
              "quality": quality(trials, setup), "space": {}, "runtimes": list(tune.runtimes()),
              "trials": trials, "fronts": fronts(trials, setup), "best": best(trials, setup),
              "passed": True}  # fmt: skip
    assert "ppl increase %" in tune_table(record) and "perplexity increase" in tune_page(record)
