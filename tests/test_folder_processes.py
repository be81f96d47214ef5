"""The results folder and processes: one writer at a time, signals, killed workers and a
worker that dies mid-send. Every case runs the real command line in a temporary folder and
signals only processes the test started (each in a session of its own)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, one_line, result_bytes, run_cli, small_design, write_design

# --- one writer at a time ------------------------------------------------------------------


def _session_processes(sid: int) -> list[int]:
    """Processes of the session ``sid`` (a test starts each run in a new session)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[3]) == sid:
            pids.append(int(entry.name))
    return pids


def _start(design_file, out, *extra) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "study", "simulate", str(design_file), "--out", str(out)]
    pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.Popen([*cmd, "--quiet", *map(str, extra)], **pipes, start_new_session=True)


def _wait_for_checkpoints(out: Path, n: int, proc: subprocess.Popen, timeout=120) -> None:
    deadline = time.time() + timeout
    while len(list(out.glob("checkpoints/m*.ckpt"))) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the run made no progress"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def long_design(tmp_path_factory) -> tuple[Path, Path]:
    """A design of a few seconds in many tasks, and its results from a lone run."""
    folder = tmp_path_factory.mktemp("long")
    # 24 chunks of each m, one per task
    raw = small_design(**{"replications": 6000, "block_size": 256, "grid.m": [400, 2000]})
    path = write_design(folder / "long.toml", raw)
    ref = folder / "ref"
    run_cli("simulate", path, "--out", ref, "--quiet", check=True)
    return path, ref


def test_a_second_run_on_a_locked_folder_is_refused_at_once(tmp_path, long_design):
    path, ref = long_design
    out = tmp_path / "out"
    # another design, with --fresh: neither gets it past the lock
    other = write_design(tmp_path / "other.toml", small_design(seed=99))
    first = _start(path, out, "--jobs", "2")
    try:
        _wait_for_checkpoints(out, 2, first)
        first.send_signal(signal.SIGSTOP)  # so that it cannot finish before the second tries
        started = time.time()
        try:
            second = run_cli("simulate", other, "--out", out, "--quiet", "--fresh")
        finally:
            first.send_signal(signal.SIGCONT)
        assert time.time() - started < 30
        assert second.returncode == 2
        assert f"process {first.pid}" in one_line(second.stderr)
        assert "locked" in second.stderr
    finally:
        stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert result_bytes(out) == result_bytes(ref)


# --- signals and crashes -------------------------------------------------------------------


# SIGHUP takes the same path as SIGTERM (both raise Interrupted): slow, to keep the default
# suite under five minutes
@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, pytest.param(signal.SIGHUP, marks=pytest.mark.slow)]
)
def test_a_signal_keeps_finished_tasks_and_leaves_no_process(tmp_path, long_design, sig):
    path, ref = long_design
    out = tmp_path / "out"
    proc = _start(path, out, "--jobs", "2")
    _wait_for_checkpoints(out, 3, proc)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig
    # the study's own output is one line; multiprocessing's resource tracker (a process of
    # joblib's, not ours) may add a warning of its own when the run ends abruptly
    ours = [line for line in stderr.splitlines() if line.startswith("study:")]
    assert len(ours) == 1 and "interrupted" in ours[0] and "resume" in ours[0], stderr
    assert "Traceback" not in stderr or "resource_tracker" in stderr, stderr
    deadline = time.time() + 5
    while _session_processes(proc.pid) and time.time() < deadline:
        time.sleep(0.05)
    assert _session_processes(proc.pid) == [], "worker processes outlived the run"
    assert not (out / "manifest.json").exists()
    done = run_cli("simulate", path, "--out", out, "--quiet", check=True)
    assert "resumed" in done.stdout
    assert result_bytes(out) == result_bytes(ref)


def test_a_killed_worker_ends_the_run_with_one_line(tmp_path, long_design):
    path, ref = long_design
    out = tmp_path / "out"
    proc = _start(path, out, "--jobs", "2")
    _wait_for_checkpoints(out, 2, proc)
    workers = [
        pid
        for pid in _session_processes(proc.pid)
        if b"popen_loky_posix" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(workers) == 2, "the two loky workers were not found"
    os.kill(workers[0], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    line = one_line(stderr)
    assert "worker process died" in line and "chunk" in line and "resume" in line
    deadline = time.time() + 5
    while _session_processes(proc.pid) and time.time() < deadline:
        time.sleep(0.05)
    assert _session_processes(proc.pid) == []
    run_cli("simulate", path, "--out", out, "--quiet", check=True)
    assert result_bytes(out) == result_bytes(ref)


# A worker that dies while sending its result leaves loky's manager thread waiting for the
# rest of the message: without study's watch on the workers the run hangs, even to SIGTERM
# (a fresh-clone CI run did). The worker here writes the start of a message, as a worker
# killed mid-send does, then kills itself.
_DIES_MID_SEND = """
import gc, os, signal, struct, sys, time, types
from study.engine import run

def piece(i):
    if i == 1:
        from joblib.externals.loky.backend.queues import SimpleQueue
        (queue,) = [q for q in gc.get_objects() if isinstance(q, SimpleQueue)]
        queue._wlock.acquire()
        os.write(queue._writer.fileno(), struct.pack("!i", 1000) + b"half a message")
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(1.5)
    return i

piece.describe = lambda i: f"test piece {i}"  # what the message names

try:
    run._run_tasks(types.SimpleNamespace(name="t"), None, [], 0, 0, jobs=2, backend="loky",
                   progress=False, solver=None, pieces=[(piece, (i,)) for i in range(4)])
except run.WorkerDied as exc:
    print(exc)
    sys.exit(1)
"""


def test_a_worker_that_dies_mid_send_ends_the_run_instead_of_hanging_it(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", _DIES_MID_SEND],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("the run hung after a worker died while sending its result")
    assert proc.returncode == 1, stderr
    assert "a worker process died (exit SIGKILL(-9))" in stdout and "resume" in stdout
    # the pieces that were running are named, the one that died among them
    assert "while running one of test piece " in stdout and "test piece 1" in stdout, stdout
    deadline = time.time() + 5
    while _session_processes(proc.pid) and time.time() < deadline:
        time.sleep(0.05)
    assert _session_processes(proc.pid) == []
