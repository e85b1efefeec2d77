"""Bad input at every entry point: exit status 2, exactly one non-empty line on stderr that names the bad
value, nothing run, and a directory of finished runs (made once, by the real trainer) byte-for-byte
untouched. Most cases call the entry points' ``main`` in this process (their validation layer runs before
anything is imported that trains); a handful go through a real subprocess, as a user's shell would."""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from benchmarks.run.rundir import RunDir, RunState

REPO = Path(__file__).resolve().parents[2]
SMOKE = (REPO / "benchmarks/grids/smoke.yaml").read_text()


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """An output directory holding the smoke grid's FP run, done (a few seconds of real training)."""
    from benchmarks.run_matrix import main

    output = tmp_path_factory.mktemp("finished") / "out"
    assert main(["--grid", "smoke", "--methods", "fp", "--launcher", "debug", "--output", str(output),
                 "--no-sync", "--view", "plain"]) == 0
    (run,) = (output / "runs").iterdir()
    assert RunDir(run).state() is RunState.DONE
    return output


def _fingerprint(root: Path) -> dict[str, tuple[str, int]]:
    """Every file and folder under ``root``: content hash and modification time."""
    found = {}
    for path in sorted(root.rglob("*")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        found[str(path.relative_to(root))] = (digest, path.stat().st_mtime_ns)
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _grid_file(tmp: Path, old: str, new: str) -> str:
    assert old in SMOKE
    path = tmp / "bad.yaml"
    path.write_text(SMOKE.replace(old, new, 1))
    return str(path)


def _entry(module: str) -> Callable[[list[str]], int]:
    import importlib

    return importlib.import_module(module).main


# (id, entry module, argv builder(finished output, tmp dir) -> argv, the bad value stderr must name, env)
MATRIX = "benchmarks.run_matrix"
ONE = "benchmarks.run_one"
TUNE = "benchmarks.tune"
SYNC = "benchmarks.sync_mlflow"
PREP = "benchmarks.prepare_data"
SPEED = "benchmarks.bench_speed"
KERNELS = "benchmarks.bench_kernels"
REPORT = "analysis.report"


def _m(*extra: str):
    return lambda out, tmp: ["--grid", "smoke", "--output", str(out), *extra]


def _one(*extra: str):
    base = {"--dataset": "optdigits", "--arch": "dann_digits", "--method": "lsq", "--bits": "4/4"}
    for flag, value in zip(extra[::2], extra[1::2]):
        base[flag] = value
    return lambda out, tmp: [*[x for kv in base.items() for x in kv], "--output", str(out)]


def _tune(*extra: str):
    return lambda out, tmp: ["--method", "lsq", "--dataset", "optdigits", "--arch", "dann_digits",
                             "--output", str(out), *extra]


def _speed(*extra: str):
    return lambda out, tmp: ["--out", str(tmp / "speed.csv"), *extra]


CASES = [
    ("matrix-grid", MATRIX, lambda o, t: ["--grid", "nosuchgrid", "--output", str(o)], "nosuchgrid", {}),
    ("matrix-profile", MATRIX, _m("--profile", "slowest"), "slowest", {}),
    ("matrix-method", MATRIX, _m("--methods", "nosuchmethod"), "nosuchmethod", {}),
    ("matrix-dataset", MATRIX, _m("--datasets", "nosuchdata"), "nosuchdata", {}),
    ("matrix-arch", MATRIX, _m("--archs", "nosucharch"), "nosucharch", {}),
    ("matrix-bits-1", MATRIX, _m("--bits", "1/1"), "1/1", {}),
    ("matrix-bits-x", MATRIX, _m("--bits", "4/x"), "4/x", {}),
    ("matrix-seed", MATRIX, _m("--seeds", "zero"), "zero", {}),
    ("matrix-launcher", MATRIX, _m("--launcher", "k8s"), "k8s", {}),
    ("matrix-workers-0", MATRIX, _m("--workers", "0"), "0", {}),
    ("matrix-workers-x", MATRIX, _m("--workers", "many"), "many", {}),
    ("matrix-device", MATRIX, _m("--device", "nosuch"), "nosuch", {}),
    ("matrix-cuda", MATRIX, _m("--device", "cuda:0"), "cuda:0", {}),
    ("matrix-slurm-profile", MATRIX, _m("--launcher", "slurm", "--slurm-profile", "nosuchprof"), "nosuchprof",
     {}),
    ("matrix-uri-scheme", MATRIX, _m("--tracking-uri", "bogus://x"), "bogus://x", {}),
    ("matrix-uri-file", MATRIX, _m("--tracking-uri", "file:///tmp/mlruns"), "file:///tmp/mlruns", {}),
    ("matrix-uri-unreachable", MATRIX, _m("--tracking-uri", "http://127.0.0.1:PORT"), "127.0.0.1", {}),
    ("matrix-uri-env", MATRIX, _m(), "nosuch://store", {"MLFLOW_TRACKING_URI": "nosuch://store"}),
    ("matrix-hparams", MATRIX, _m("--hparams", "best"), "best", {}),
    ("matrix-output-file", MATRIX, lambda o, t: ["--grid", "smoke", "--output", str(o / "runs" / next(
        iter(os.listdir(o / "runs"))) / "spec.json")], "spec.json", {}),
    ("matrix-disk", MATRIX, _m(), "GB", {"QBENCH_MIN_FREE_GB": "1e9"}),
    ("matrix-disk-env", MATRIX, _m(), "lots", {"QBENCH_MIN_FREE_GB": "lots"}),
    ("matrix-grid-lr", MATRIX, lambda o, t: ["--grid", _grid_file(t, "lr: 0.05", "lr: fast"), "--output",
                                             str(o)], "fast", {}),
    ("matrix-grid-steps", MATRIX,
     lambda o, t: ["--grid", _grid_file(t, "steps_per_epoch: 8", "steps_per_epoch: -5"), "--output", str(o)],
     "-5", {}),
    ("matrix-grid-yaml", MATRIX, lambda o, t: ["--grid", _grid_file(t, "tasks:", "tasks: [: ]"), "--output",
                                               str(o)], "bad.yaml", {}),
    ("matrix-logs", MATRIX, _m("--logs", "zzzz"), "zzzz", {}),
    ("matrix-follow", MATRIX, _m("--follow"), "--follow", {}),
    ("matrix-flag", MATRIX, _m("--colour"), "--colour", {}),
    ("one-method", ONE, _one("--method", "nosuchmethod"), "nosuchmethod", {}),
    ("one-arch", ONE, _one("--arch", "resnet9000"), "resnet9000", {}),
    ("one-dataset", ONE, _one("--dataset", "imagenet22k"), "imagenet22k", {}),
    ("one-bits", ONE, _one("--bits", "33/33"), "33", {}),
    ("one-epochs", ONE, _one("--epochs", "0"), "0", {}),
    ("one-lr", ONE, _one("--lr", "fast"), "fast", {}),
    ("one-device", ONE, _one("--device", "tpu"), "tpu", {}),
    ("one-schedule", ONE, _one("--schedule", "sometimes"), "sometimes", {}),
    ("one-steps", ONE, _one("--steps-per-epoch", "-5"), "-5", {}),
    ("one-policy", ONE, _one("--first-last", "4bit/fp"), "4bit", {}),
    ("tune-storage", TUNE, _tune("--storage", "bogus://x"), "bogus://x", {}),
    ("tune-trials", TUNE, _tune("--trials", "0"), "--trials", {}),
    ("tune-slurm-profile", TUNE, _tune("--launcher", "slurm", "--slurm-profile", "nosuchprof"), "nosuchprof",
     {}),
    ("tune-device", TUNE, _tune("--device", "gpu7"), "gpu7", {}),
    ("tune-uri", TUNE, _tune("--tracking-uri", "bogus://y"), "bogus://y", {}),
    ("tune-stale", TUNE, _tune("--stale-after", "-1"), "-1", {}),
    ("tune-sampler", TUNE, _tune("--sampler", "grid"), "grid", {}),
    ("sync-output", SYNC, lambda o, t: ["--output", str(t / "nope")], "nope", {}),
    ("sync-uri", SYNC, lambda o, t: ["--output", str(o), "--tracking-uri", "bogus://z"], "bogus://z", {}),
    ("sync-uri-env", SYNC, lambda o, t: ["--output", str(o)], "nosuch://env", {"MLFLOW_TRACKING_URI":
                                                                               "nosuch://env"}),
    ("prep-dataset", PREP, lambda o, t: ["--datasets", "nosuchdata"], "nosuchdata", {}),
    ("prep-grid", PREP, lambda o, t: ["--grid", "nosuchgrid"], "nosuchgrid", {}),
    ("speed-method", SPEED, _speed("--methods", "nosuchmethod"), "nosuchmethod", {}),
    ("speed-batch", SPEED, _speed("--batch-size", "0"), "0", {}),
    ("speed-device", SPEED, _speed("--device", "nosuch"), "nosuch", {}),
    ("speed-bits", SPEED, _speed("--bits", "4/x"), "4/x", {}),
    ("kernels-shape", KERNELS, lambda o, t: ["--shape", "1,2"], "1,2", {}),
    ("kernels-device", KERNELS, lambda o, t: ["--device", "nosuch"], "nosuch", {}),
    ("report-missing", REPORT, lambda o, t: ["--runs", str(t / "nope"), "--out", str(t / "r")], "nope", {}),
    ("report-empty", REPORT, lambda o, t: ["--runs", str(t), "--out", str(t / "r")], str("RUNS_TMP"), {}),
    ("report-reps", REPORT, lambda o, t: ["--runs", str(o), "--out", str(t / "r"), "--bootstrap-reps", "5"],
     "5", {}),
    ("report-uri", REPORT, lambda o, t: ["--mlflow-uri", "bogus://r", "--experiment", "e", "--out",
                                         str(t / "r")], "bogus://r", {}),
]
# the same bad inputs as a user types them, through a fresh interpreter (the rest run in this process)
SUBPROCESS = {"matrix-device", "matrix-uri-env", "one-method", "report-empty"}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line(case, finished, tmp_path, monkeypatch, capsys):
    name, module, build, bad, env = case
    if name == "matrix-cuda":
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA is available here: cuda:0 is a valid device")
    argv = build(finished, tmp_path)
    port = str(_free_port())  # nothing listens there: refused at once, or answered within the probe's timeout
    argv = [a.replace("PORT", port) for a in argv]
    bad = str(tmp_path) if bad == "RUNS_TMP" else bad
    before = _fingerprint(finished)
    if name in SUBPROCESS:
        script = REPO / (module.replace(".", "/") + ".py")
        proc = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True,
                              env={**os.environ, **env}, cwd=tmp_path, timeout=120)
        code, err = proc.returncode, proc.stderr
    else:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.chdir(tmp_path)
        try:
            code = _entry(module)(argv)
        except SystemExit as exit_:
            code = exit_.code
        err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert bad in lines[0], lines[0]
    assert "Traceback" not in err
    assert _fingerprint(finished) == before
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "mlruns").exists()


def test_there_are_at_least_40_cases_across_every_entry_point():
    assert len(CASES) >= 40
    assert {c[1] for c in CASES} == {MATRIX, ONE, TUNE, SYNC, PREP, SPEED, KERNELS, REPORT}


def test_a_server_that_never_answers_is_reported_within_seconds(monkeypatch):
    """A tracking server that accepts the connection and never replies (a hung server, a black hole
    behind a gateway): the probe gives up after CONNECT_TIMEOUT_S, where MLflow's own client retries for
    minutes."""
    import time

    from benchmarks.cli import checks

    monkeypatch.setattr(checks, "CONNECT_TIMEOUT_S", 0.5)
    with socket.socket() as listener:  # listening, never accepting: the kernel completes the handshake
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(ValueError, match=f"http://127.0.0.1:{port}.*no MLflow server answers"):
            checks.check_tracking_uri(f"http://127.0.0.1:{port}")
        assert time.monotonic() - start < 3


def test_a_server_that_is_not_mlflow_is_named(monkeypatch):
    """Something answers HTTP but has no /health: said so, in one line."""
    import http.server
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    from benchmarks.cli import checks

    try:
        with pytest.raises(ValueError, match="HTTP 501 .*not an MLflow server"):
            checks.check_tracking_uri(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        thread.join(5)
        server.server_close()


@pytest.mark.slow  # a real (two-step) training run: ~10 s on a shared 2-core machine
def test_a_full_disk_mid_run_is_one_line_with_failed_json_and_no_temp_files(tmp_path, monkeypatch, capsys):
    """The disk fills while a checkpoint is written (ENOSPC from inside the write): run_one.py says so in
    one line and exits 1, the run's failed.json has the error, and the half-written temporary file is gone."""
    import errno

    import torch

    from benchmarks import run_one

    def full_disk(payload, target):
        Path(target).write_bytes(b"partial")  # some bytes made it before the disk filled
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)  # every checkpoint write of the run
    output = tmp_path / "out"
    code = run_one.main(["--dataset", "optdigits", "--arch", "dann_digits", "--method", "fp", "--epochs", "1",
                         "--steps-per-epoch", "2", "--batch-size", "32", "--output", str(output),
                         "--device", "cpu"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1
    assert len(err) == 1 and "No space left on device" in err[0] and err[0].startswith("error: run ")
    (run,) = (output / "runs").iterdir()
    failure = RunDir(run).read_failure()
    assert failure is not None and "No space left on device" in failure["error"]
    assert RunDir(run).state() is RunState.FAILED
    assert not list(output.rglob("*.tmp"))
