"""Dask: a LocalCluster (--backend dask) and a real cluster (`dask scheduler` and two
`dask worker` processes that the test starts on 127.0.0.1 and stops) give the results of
loky byte for byte, also when a worker is killed mid-run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from study.design import design_from_dict  # noqa: E402
from study.engine import run as run_module  # noqa: E402
from study.steps import simulate  # noqa: E402

from conftest import run_cli, small_design, write_design  # noqa: E402

FILES = ("summary.csv", "risk.csv", "fits.csv", "draws.npz")
DASK = Path(sys.executable).with_name("dask")


def _bytes(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in FILES}


def _raw(**changes):
    # σ ≠ 1, an asymmetric x range, 700 replications (chunks of 256, 256 and 188), tasks
    # sized by cost
    base = {"dgp.noise_sd": 0.6, "dgp.x.low": -0.5, "dgp.x.high": 2.0, "replications": 700}
    base |= {"block_size": None}
    return small_design(**(base | changes))


def test_a_local_cluster_gives_loky_results(tmp_path, monkeypatch):
    """Tasks sized by cost on loky, of one chunk each on the cluster: the same bytes. The
    cluster's two workers are frozen before it closes (they exit faster)."""
    from study.engine import run as run_module

    design = design_from_dict(_raw())
    one_chunk = design_from_dict(_raw(block_size=1))
    frozen = []
    real = run_module._freeze_workers
    monkeypatch.setattr(run_module, "_freeze_workers", lambda c: frozen.append(real(c)))
    simulate(design, tmp_path / "loky", jobs=2, progress=False, theory=False)
    simulate(one_chunk, tmp_path / "dask", jobs=2, backend="dask", progress=False, theory=False)
    assert _bytes(tmp_path / "dask") == _bytes(tmp_path / "loky")
    assert len(frozen) == 1 and len(frozen[0]) == 2  # both workers of the one cluster
    run = json.loads((tmp_path / "dask" / "manifest.json").read_text())["run"]
    assert run["backend"] == "dask" and run["scheduler"] == "local cluster"


def test_a_local_cluster_forks_its_workers_without_a_profiler():
    """Its workers start with this process's modules (forked, not spawned), sample no
    profile and ignore Ctrl-C (the run's process stops them); the Dask configuration is as
    before."""
    import dask

    if run_module.local_start_method() != "fork":
        pytest.skip("this machine or its Dask configuration does not fork workers")
    key, profile = run_module.START_METHOD_KEY, "distributed.worker.profile.enabled"
    before = dask.config.get(key), dask.config.get(profile)

    def state():
        import dask

        # spawned, a worker never imports the run's module (the plugin that gives it the
        # Ctrl-C handler brings study.engine.worker, not this)
        engine = "study.engine.run" in sys.modules
        handler = getattr(signal.getsignal(signal.SIGINT), "__name__", None)
        return engine, dask.config.get(profile), handler, os.getppid()

    with run_module._dask_client(2, None) as client:
        states = client.run(state)
        assert dask.config.get(key) == before[0]  # a worker started again is spawned
    assert list(states.values()) == [(True, False, "ctrl_c_ignored", os.getpid())] * 2
    assert (dask.config.get(key), dask.config.get(profile)) == before


def test_a_local_cluster_keeps_off_dasks_default_port():
    """With Dask's default HTTP port 8787 taken (by another run's cluster, or any Dask
    scheduler), a run's LocalCluster starts without a warning on the run's stderr: it has
    no dashboard, and serves the scheduler's HTTP routes on a free port of the loopback
    interface only."""
    import socket
    import warnings

    taken = socket.socket()
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        taken.bind(("", 8787))
        taken.listen()
    except OSError:  # held by another process already, which is the case tested
        pass
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with run_module._dask_client(1, None) as client:
                http = client.run_on_scheduler(
                    lambda dask_scheduler: (
                        dask_scheduler.http_server.address,
                        dask_scheduler.http_server.port,
                    )
                )
    finally:
        taken.close()
    assert not [str(w.message) for w in caught if "already in use" in str(w.message)]
    assert http[0] == "127.0.0.1" and http[1] not in (0, 8787)


def test_a_worker_started_again_after_a_crash_also_leaves_ctrl_c_to_the_run():
    """A worker that its nanny starts again (spawned, so without what a forked worker
    inherits) gets the run's no-op SIGINT handler too once it has joined, and prints no
    traceback on the next Ctrl-C."""

    def handler():
        return getattr(signal.getsignal(signal.SIGINT), "__name__", None)

    with run_module._dask_client(2, None) as client:
        before = client.run(os.getpid)
        killed = next(iter(before))
        os.kill(before[killed], signal.SIGKILL)
        deadline = time.monotonic() + 60
        # asked of the scheduler alone: a worker asked while dead would be waited for
        while killed in (workers := set(client.nthreads())) or len(workers) < 2:
            assert time.monotonic() < deadline, "no worker was started again"
            time.sleep(0.1)
        after = client.run(os.getpid)
        states = client.run(handler)
    assert len(set(after.values()) - set(before.values())) == 1
    assert list(states.values()) == ["ctrl_c_ignored"] * 2


def test_a_run_ending_on_an_error_closes_its_cluster_quietly(monkeypatch):
    """What Dask's machinery logs in the run's process below CRITICAL while a failing run
    (Ctrl-C here) closes its client and cluster, as a result it could not gather, is not
    shown: the run's one line says what happened. CRITICAL still is. A run that ends well
    closes as before, and afterwards the loggers are as they were."""
    import logging

    import distributed

    noisy = ("distributed.scheduler", "distributed.client", "tornado.application", "asyncio")
    seen: list[str] = []

    class Seen(logging.Handler):
        def emit(self, record):
            seen.append(f"{record.name} {record.levelname}")

    def logs_first(close):
        def closing(self, *args, **kwargs):
            if self.status != "closed":  # not an earlier test's client, collected now
                for name in noisy:  # as a gather cut short by the closing cluster does
                    logging.getLogger(name).error("Couldn't gather keys")
                logging.getLogger("asyncio").critical("something worse")
            return close(self, *args, **kwargs)

        return closing

    monkeypatch.setattr(distributed.Client, "close", logs_first(distributed.Client.close))
    handler = Seen(logging.ERROR)  # on each logger: distributed's may not propagate
    for name in noisy:
        logging.getLogger(name).addHandler(handler)
    try:
        levels = {name: logging.getLogger(name).getEffectiveLevel() for name in noisy}
        with pytest.raises(KeyboardInterrupt):
            with run_module._dask_client(1, None):
                raise KeyboardInterrupt
        assert seen == ["asyncio CRITICAL"]
        seen.clear()
        assert {n: logging.getLogger(n).getEffectiveLevel() for n in noisy} == levels
        assert not any(logging.getLogger(name).disabled for name in noisy)
        with run_module._dask_client(1, None):
            pass
        assert seen == [*(f"{name} ERROR" for name in noisy), "asyncio CRITICAL"]
    finally:
        for name in noisy:
            logging.getLogger(name).removeHandler(handler)


def test_the_start_method_follows_a_configured_one(monkeypatch):
    """Fork on Linux unless the user's Dask configuration names a method in its files or
    environment (here its environment variable, even with Dask's default "spawn"), or sets
    another one in this process."""
    import dask

    variable = "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD"
    monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(dask.config, "paths", [])  # no configuration files of the user's
    monkeypatch.setattr(sys, "platform", "linux")
    assert run_module.local_start_method() == "fork"
    with dask.config.set({run_module.START_METHOD_KEY: "forkserver"}):
        assert run_module.local_start_method() == "forkserver"
    for named in ("spawn", "forkserver"):
        monkeypatch.setenv(variable, named)  # read when asked, not when dask was imported
        assert run_module.local_start_method() == named
    monkeypatch.delenv(variable)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert run_module.local_start_method() == "spawn"


def test_freezing_the_workers_is_bounded_and_never_fails_the_run(monkeypatch):
    """A worker that does not answer cannot keep the results from being written, and a
    failed freeze costs nothing but its time."""
    import threading

    from study.engine import run as run_module

    class Client:
        def __init__(self, answer):
            self.answer = answer

        def run(self, fn, on_error):
            assert on_error == "ignore"
            return self.answer()

    release = threading.Event()

    def hangs():
        release.wait(30)
        return {"w": None}

    def fails():
        raise OSError("connection closed")

    monkeypatch.setattr(run_module, "FREEZE_SECONDS", 0.2)
    try:
        assert run_module._freeze_workers(Client(hangs)) == {}
    finally:
        release.set()
    assert run_module._freeze_workers(Client(fails)) == {}
    assert run_module._freeze_workers(Client(lambda: {"a": None, "b": None})) == {
        "a": None,
        "b": None,
    }


class Cluster:
    """A Dask scheduler and two single-threaded workers, each in its own session."""

    def __init__(self, folder: Path):
        self.file = folder / "scheduler.json"
        common = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        common |= dict(start_new_session=True, cwd=folder)
        host = ["--host", "127.0.0.1", "--no-dashboard", "--scheduler-file", str(self.file)]
        self.scheduler = subprocess.Popen([DASK, "scheduler", "--port", "0", *host], **common)
        worker = [DASK, "worker", "--nthreads", "1", "--nworkers", "1", *host]
        self.workers = [subprocess.Popen(worker, **common) for _ in range(2)]
        self.address = self._wait()

    def _wait(self) -> str:
        from distributed import Client

        deadline = time.monotonic() + 60
        while not self.file.exists():
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.1)
        address = json.loads(self.file.read_text())["address"]
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        return address

    def kill_worker(self, i: int) -> None:
        os.killpg(self.workers[i].pid, signal.SIGKILL)  # the nanny and its worker

    def stop(self) -> None:
        for proc in (*self.workers, self.scheduler):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()


def test_a_real_cluster_gives_loky_results_even_when_a_worker_is_killed(tmp_path, cluster):
    # 24 tasks of 256 replications, a fraction of a second each: time to kill a worker
    # mid-run (8 chunks of 256 data sets for m = 400 and 3,000, 16 of 128 for m = 20,000,
    # two to a task)
    raw = _raw(**{"grid.m": [400, 3000, 20000], "replications": 2000, "block_size": 256})
    design_file = write_design(tmp_path / "d.toml", raw)
    loky = tmp_path / "loky"  # tasks sized by cost: cut otherwise than on the cluster
    by_cost = write_design(tmp_path / "by-cost.toml", {**raw, "block_size": None})
    run_cli("simulate", by_cost, "--out", loky, "-q", "-j", "2", "--no-theory", check=True)

    out = tmp_path / "cluster"
    cmd = [sys.executable, "-m", "study", "simulate", str(design_file), "--out", str(out)]
    cmd += ["--scheduler", cluster.address, "-q", "--no-theory"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoints = out / "checkpoints"
    deadline = time.monotonic() + 120
    while not (checkpoints.is_dir() and len(list(checkpoints.glob("*.ckpt"))) >= 3):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cluster.kill_worker(0)
    n_tasks = 24
    assert len(list(checkpoints.glob("*.ckpt"))) < n_tasks  # killed mid-run
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert len(list(checkpoints.glob("*.ckpt"))) == n_tasks
    assert _bytes(out) == _bytes(loky)
    run = json.loads((out / "manifest.json").read_text())["run"]
    assert run["scheduler"] == cluster.address and run["tasks_resumed"] == 0
    # the cluster's workers live on: the run did not freeze them as it does its own
    import gc

    from distributed import Client

    with Client(cluster.address, timeout=30) as client:
        counts = client.run(gc.get_freeze_count)
    assert counts and set(counts.values()) == {0}


def _workers(pid: int) -> list[int]:
    """The worker processes of the run ``pid``: its children (those of each of its threads:
    the nannies start them from threads of their own) but multiprocessing's resource
    tracker."""
    children = [c for t in Path(f"/proc/{pid}/task").iterdir() for c in _children(t)]
    workers = []
    for child in children:
        try:
            if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes():
                workers.append(child)
        except OSError:  # ended meanwhile
            pass
    return workers


def _children(thread: Path) -> list[int]:
    try:
        return [int(c) for c in (thread / "children").read_text().split()]
    except OSError:  # the thread ended meanwhile
        return []


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


def _killpg(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.skipif(sys.platform != "linux", reason="workers are forked on Linux only")
def test_a_local_cluster_survives_a_killed_worker_and_stops_cleanly(tmp_path):
    """A forked worker killed mid-run is started again by its nanny and the run ends with
    loky's bytes; Ctrl-C ends a run with one line, not a traceback from each worker; a run
    killed itself leaves the folder unlocked though its workers live on (they hold no copy
    of the lock), and no worker behind."""
    from study import folder as results_folder

    raw = _raw(**{"grid.m": [400, 3000, 20000], "replications": 2000, "block_size": 256})
    design_file = write_design(tmp_path / "d.toml", raw)
    loky = tmp_path / "loky"
    run_cli("simulate", design_file, "--out", loky, "-q", "-j", "2", "--no-theory", check=True)

    def start(out, **pipes):
        cmd = [sys.executable, "-m", "study", "simulate", str(design_file), "--out", str(out)]
        cmd += ["--backend", "dask", "-j", "2", "-q", "--no-theory"]
        return subprocess.Popen(cmd, **pipes, start_new_session=True)

    def running(proc, out) -> list[int]:
        deadline = time.monotonic() + 120
        while len(list(out.glob("checkpoints/*.ckpt"))) < 3:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        workers = _workers(proc.pid)
        assert len(workers) == 2
        return workers

    n_tasks = 24
    out = tmp_path / "dask"
    proc = start(out, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        workers = running(proc, out)
        os.kill(workers[0], signal.SIGKILL)
        assert len(list(out.glob("checkpoints/*.ckpt"))) < n_tasks  # killed mid-run
        started_again = False
        while proc.poll() is None and not started_again:
            started_again = bool(set(_workers(proc.pid)) - set(workers))
            time.sleep(0.01)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        _killpg(proc)
    assert started_again, "no worker was started in place of the killed one"
    assert proc.returncode == 0, stderr
    assert _bytes(out) == _bytes(loky)

    out = tmp_path / "interrupted"  # Ctrl-C in a terminal: a SIGINT to the whole group
    proc = start(out, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        running(proc, out)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        _killpg(proc)
    assert proc.returncode == 130
    assert stderr.count("\n") == 1 and "interrupted (SIGINT)" in stderr  # no worker's traceback

    out = tmp_path / "killed"
    proc = start(out, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = []
    try:
        workers = running(proc, out)
        for pid in workers:  # they cannot end before the lock is checked
            os.kill(pid, signal.SIGSTOP)
        proc.kill()
        proc.wait(timeout=30)
        results_folder.acquire(out, exclusive=True).close()  # not locked by the workers
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 30
        while any(map(_alive, workers)):
            assert time.monotonic() < deadline, "the workers outlived the run"
            time.sleep(0.05)
    finally:
        _killpg(proc)  # and its workers, in its session and group
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def test_an_unreachable_scheduler_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "DASK_CONNECT_SECONDS", 1)
    design = design_from_dict(_raw())
    with pytest.raises(run_module.SchedulerUnreachable, match=r"'--scheduler'.*tcp://127"):
        simulate(design, tmp_path / "out", scheduler="tcp://127.0.0.1:9", backend="dask")
    assert not (tmp_path / "out").exists()


def test_scheduler_with_another_backend_is_refused(tmp_path):
    design_file = write_design(tmp_path / "d.toml", _raw())
    cmd = ("simulate", design_file, "--out", tmp_path / "o", "--backend", "loky")
    proc = run_cli(*cmd, "--scheduler", "tcp://127.0.0.1:9")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "'--scheduler'" in proc.stderr and "--backend dask" in proc.stderr
    assert not (tmp_path / "o").exists()
