"""The launch layer without SLURM: the registry, job requests and their dependencies, error lines, and the
debug/local pool (a request starts once its own dependency succeeded; a failure holds back only its own
dependants, reported as blocked with the reason)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from submitit.core.utils import FailedJobError

import benchmarks.launch.pool as pool
from benchmarks.launch.options import LaunchOptions, error_line
from benchmarks.launch.registry import available_launchers, get_launcher, launch
from benchmarks.launch.requests import JobRequest, dependency_waves


def _write(path: str, text: str) -> str:
    Path(path).write_text(text)
    return text


def _boom(message: str) -> None:
    raise ValueError(message)


def _after(needed: str, path: str) -> str:
    """Fails unless ``needed`` exists: proves a dependant ran only after what it waits for."""
    if not Path(needed).exists():
        raise AssertionError(f"{needed} is missing: started before its dependency")
    return _write(path, "ok")


def _record_env(path: str) -> None:
    _write(path, f"{os.environ.get('QBENCH_GPU')} {os.environ.get('OMP_NUM_THREADS')}")


def test_registry_names_and_one_line_error():
    assert available_launchers() == ["debug", "local", "slurm"]
    assert get_launcher("debug") is pool.launch_debug
    with pytest.raises(ValueError) as info:
        get_launcher("nope")
    assert str(info.value) == "unknown launcher 'nope'; valid: debug, local, slurm"


def test_dependency_waves_order_and_bad_requests():
    a, b = JobRequest("a", _write), JobRequest("b", _write, depends_on="a")
    c = JobRequest("c", _write, depends_on="b")
    assert [[r.key for r in wave] for wave in dependency_waves([c, b, a])] == [["a"], ["b"], ["c"]]
    with pytest.raises(ValueError, match="'x' depends on 'nope', which is not launched with it"):
        dependency_waves([JobRequest("x", _write, depends_on="nope")])
    with pytest.raises(ValueError, match="appears twice"):
        dependency_waves([a, a])
    with pytest.raises(ValueError, match="cycle"):
        dependency_waves([JobRequest("p", _write, depends_on="q"), JobRequest("q", _write, depends_on="p")])


def test_error_line_finds_the_workers_exception():
    failed = FailedJobError(
        "Job (task=0) failed during processing with trace:\n----------------------\n"
        "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n    g()\n"
        "RuntimeError: checkpoint is corrupt\nsee the docs\n----------------------\n"
        "You can check full logs with 'job.stderr(0)' and 'job.stdout(0)'or at paths:\n  - /x/0_log.err\n")
    assert error_line(failed) == "RuntimeError: checkpoint is corrupt"
    assert error_line(KeyError("run")) == "KeyError: 'run'"


def test_debug_pool_holds_back_only_the_failed_requests_dependants(tmp_path, capsys):
    files = {key: str(tmp_path / key) for key in ("a", "a1", "b1", "b2")}
    requests = [
        JobRequest("a", _write, (files["a"], "a")),
        JobRequest("b", _boom, ("b broke",)),
        JobRequest("a1", _after, (files["a"], files["a1"]), depends_on="a"),
        JobRequest("b1", _write, (files["b1"], "b1"), depends_on="b"),
        JobRequest("b2", _write, (files["b2"], "b2"), depends_on="b1"),
    ]
    report = launch(requests, "debug", LaunchOptions(folder=tmp_path / "jobs", poll_s=0.01))
    assert report.launched == ["a", "b", "a1"]
    assert report.failed == {"b": "ValueError: b broke"}
    assert report.blocked == {"b1": "b failed: ValueError: b broke",
                              "b2": "b1 is blocked (b failed: ValueError: b broke)"}
    assert Path(files["a1"]).exists() and not Path(files["b1"]).exists()
    assert "[b] FAILED: ValueError: b broke" in capsys.readouterr().out


def test_succeeded_hook_is_the_truth(tmp_path):
    """A job that raised nothing but left no proof of success (e.g. no done marker) has failed."""
    requests = [JobRequest("a", _write, (str(tmp_path / "a"), "a")),
                JobRequest("a1", _write, (str(tmp_path / "a1"), "a1"), depends_on="a")]
    options = LaunchOptions(folder=tmp_path / "jobs", succeeded=lambda key: key != "a", log=lambda _: None)
    report = launch(requests, "debug", options)
    assert list(report.failed) == ["a"] and "without finishing a" in report.failed["a"]
    assert list(report.blocked) == ["a1"]


def test_local_pool_runs_dependants_after_their_own_parent(tmp_path, monkeypatch):
    monkeypatch.setattr(pool, "_visible_gpus", lambda: ["5", "7"])
    out = {key: str(tmp_path / key) for key in ("p", "q", "p1", "p2", "env")}
    requests = [
        JobRequest("p", _write, (out["p"], "p")),
        JobRequest("q", _boom, ("q broke",)),
        JobRequest("p1", _after, (out["p"], out["p1"]), depends_on="p"),
        JobRequest("p2", _record_env, (out["env"],), depends_on="p"),
        JobRequest("q1", _write, (str(tmp_path / "q1"), "q1"), depends_on="q"),
    ]
    report = launch(requests, "local", LaunchOptions(folder=tmp_path / "jobs", workers=2, poll_s=0.1,
                                                    log=lambda _: None))
    assert sorted(report.launched) == ["p", "p1", "p2", "q"] and set(report.job_ids) == set(report.launched)
    assert report.failed == {"q": "ValueError: q broke"}  # the worker's traceback, read back
    assert report.blocked == {"q1": "q failed: ValueError: q broke"}
    assert Path(out["p1"]).read_text() == "ok"
    gpu, threads = Path(out["env"]).read_text().split()
    assert gpu in ("5", "7") and int(threads) >= 1
