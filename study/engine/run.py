"""Run a design: schedule the missing tasks with joblib (loky, threading, or a Dask
cluster), checkpoint each one in this process as its result comes back (in a thread beside
the run, which also merges it), then write the result files.

Results are bit-identical for any grouping of the chunks into tasks (``block_size``), any
number of jobs, any backend and any completion order: each chunk has its own random
stream, and the summaries merge the chunks one by one in chunk order (each from its task's
result as it comes back, or from its checkpoint: the same arrays).
The tasks are sized by cost and sent longest first (:mod:`study.engine.plan`). An
interrupted run (Ctrl-C, SIGTERM, SIGHUP, ``kill -9``) keeps every finished task; the same
command computes only the chunks that are missing, however the new run groups them. The results
folder is owned, locked and committed as :mod:`study.folder` describes.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed, parallel_config

from study import folder as results_folder
from study.design import Design, DesignError
from study.engine import ENGINE_VERSION, precision, worker
from study.engine.merge import RunningMerge, summarise
from study.engine.plan import missing_chunks, plan_tasks, speed_factor
from study.engine.store import CheckpointStore
from study.engine.streams import n_chunks
from study.engine.tasks import Task, one_blas_thread
from study.files import atomic_write_bytes, atomic_write_text, npz_bytes
from study.paths import (
    CHECK_FILE,
    DRAWS_FILE,
    FITS_FILE,
    MANIFEST_FILE,
    RISK_FILE,
    SUMMARY_FILE,
    THEORY_FILES,
)
from study.results import to_csv

BACKENDS = ("loky", "threading", "dask")


# how long `--scheduler ADDRESS` waits for the scheduler to answer
DASK_CONNECT_SECONDS = 10


class SchedulerUnreachable(DesignError):
    """``--scheduler`` names no reachable Dask scheduler (bad input: exit 2, one line)."""


class WorkerDied(RuntimeError):
    """A worker process ended abruptly (killed, out of memory); finished tasks are kept."""


@dataclass
class RunReport:
    results_dir: Path
    n_tasks: int
    n_resumed: int
    n_fits: int
    n_points: int
    wall_seconds: float
    # fits of batches the compiled kernel declined (fitted by NumPy instead; fits.csv)
    n_declined: int = 0
    # with [precision]: the target, the rounds, the cells above it (manifest "precision")
    precision: dict | None = None


def count_fits(design: Design) -> tuple[int, int]:
    """(fits, data points) of a whole run: every identifiable cell × replications."""
    fits = points = 0
    for m in design.m:
        for k in design.degree:
            n_cells = sum(
                len(design.columns) for lam in design.lam if design.identifiable(m, k, lam)
            )
            fits += n_cells * design.replications_of(m)
        points += m * design.replications_of(m)
    return fits, points


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    import joblib
    import pandas
    import scipy

    from study import __version__

    return {
        "study": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pandas.__version__,
        "joblib": joblib.__version__,
        "numba": version("numba"),  # without importing it: the main process needs no LLVM
    }


def simulate(
    design: Design,
    results_dir: Path,
    *,
    jobs: int = 1,
    backend: str = "loky",
    fresh: bool = False,
    progress: bool = True,
    design_path: str | None = None,
    after: Callable | None = None,
    on_reject=None,
    solver: str = "auto",
    require_complete: bool = False,
    engine_run: dict | None = None,
    scheduler: str | None = None,
    noise_draw: str = "sufficient",
) -> RunReport:
    """Run every missing task of ``design`` and write the results to ``results_dir``.

    ``on_reject(path, moved_to, reason)`` is called for every checkpoint that does not
    verify (it is moved aside, and the chunks no other checkpoint holds are computed again).

    ``after(design, summary, risk) -> (summary, risk, files)``: the next step (the theory,
    :func:`study.theory.step.extend`), run before the one commit; it adds columns and files
    {name: text}. ``backend``: one of :data:`BACKENDS`; with "dask", ``scheduler`` is a
    running scheduler's address, or None for a LocalCluster of ``jobs`` workers.
    ``noise_draw`` (:data:`study.engine.streams.NOISE_DRAWS`, recorded in the checkpoints)
    and ``solver`` (:data:`study.conditional.SOLVERS`) choose how to draw and fit. With
    ``require_complete`` a chunk without a checkpoint is an error (``study theory``, which
    passes the ``engine_run`` record of the run that simulated).

    Raises
    ------
    FolderError
        If ``results_dir`` is not the tool's, is locked by another run, or holds results of
        another design or engine version and ``fresh`` is False (see :mod:`study.folder`).
    WorkerDied
        If a worker process died; the finished tasks are on disk.
    KeyboardInterrupt
        Passed on after the finished tasks are safely on disk.
    """
    started = time.perf_counter()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    if scheduler is not None:  # before anything is written
        with _dask_client(0, scheduler):
            pass
    # the folder as an absolute path (writing() resolves it)
    with results_folder.writing(
        results_dir, design_hash=design.hash, engine_version=ENGINE_VERSION, fresh=fresh
    ) as results_dir:
        options = dict(jobs=jobs, backend=backend, progress=progress, solver=solver)
        options |= dict(scheduler=scheduler, noise_draw=noise_draw, on_reject=on_reject)
        current, tasks, done, todo, compute_seconds, files, n_declined, report = _compute(
            design, results_dir, after=after, require_complete=require_complete, **options
        )
        wall = time.perf_counter() - started
        run = {
            "id": uuid.uuid4().hex,
            "started": started_at,
            "wall_seconds": round(wall, 3),
            "compute_seconds_this_run": round(compute_seconds, 3),
            "tasks_computed_this_run": len(todo),
            "tasks_resumed": len(done),
        } | _machine(jobs, backend, scheduler)
        steps = ["engine"] if after is None else ["engine", getattr(after, "step", "after")]
        manifest = _manifest(current, design_path, files, steps, run, noise_draw, len(tasks))
        if engine_run is not None:
            manifest["engine_run"] = engine_run
        if report is not None:
            manifest["precision"] = report
        # written last: the commit point of the run (study.folder.reading checks it)
        atomic_write_text(
            results_dir / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        )
    n_fits, n_points = count_fits(current)
    return RunReport(
        results_dir=results_dir,
        n_tasks=len(tasks),
        n_resumed=len(done),
        n_fits=n_fits,
        n_points=n_points,
        wall_seconds=wall,
        n_declined=n_declined,
        precision=report,
    )


def _compute(design, results_dir, *, after, require_complete, on_reject, noise_draw, **options):
    """The tasks left, run and checkpointed (with the pieces of ``after`` beside them), and
    the result files written. Without [precision] one round; with it, rounds of more chunks
    until :func:`study.engine.precision.next_round` asks for none. Returns (the design with
    the replications reached, tasks, tasks resumed, tasks computed, compute seconds, file
    digests, declined fits, the precision report or None)."""
    store = CheckpointStore(results_dir, design, noise_draw=noise_draw)
    found = store.done(on_reject=on_reject)
    before = set(found)
    workers = _workers(options["jobs"], options["backend"], options["scheduler"])
    speed = speed_factor()
    # the next step's pieces that depend on the design alone run in the same pool
    pieces = getattr(after, "pieces", lambda design: [])(design)
    # without [precision] one round; with it, rounds of more chunks (study.engine.precision)
    current, rounds = precision.first_round(design), 0
    computed, compute_seconds, all_todo, report = None, 0.0, [], None
    while True:
        within = {m: n_chunks(current.replications_of(m), m) for m in design.m}
        done = [t for t in found if t.stop <= within[t.m]]
        if require_complete:
            _require_complete(current, done, results_dir)
        todo = plan_tasks(current, done, workers, speed) if not require_complete else []
        tasks = sorted(done + todo)
        # with [precision] the rounds' summaries merge every checkpoint afterwards
        merging = RunningMerge(current, store, tasks, done) if design.target_mcse is None else None
        seconds, result = _run_tasks(
            current,
            store,
            todo,
            len(tasks),
            len(done),
            pieces=pieces if rounds == 0 else (),
            noise_draw=noise_draw,
            merging=merging,
            **options,
        )
        computed = result if rounds == 0 else computed
        compute_seconds += seconds
        all_todo += todo
        found = sorted(set(found) | set(todo))
        rounds += 1
        if design.target_mcse is None:
            break
        summary = summarise(current, store, tasks)[0]
        last = rounds >= precision.MAX_ROUNDS
        following = None if last else precision.next_round(current, summary)
        if following is None:
            report = {
                "target_mcse": design.target_mcse,
                "max_replications": design.max_replications,
                "rounds": rounds,
                "unmet": precision.unmet(current, summary),
                "infinite_variance_cells": precision.infinite_cells(summary),
            }
            break
        current = following
    files, n_declined = _write_results(
        current,
        results_dir,
        store,
        tasks,
        after=after,
        computed=computed if pieces else None,
        mergers=None if merging is None else merging.mergers,
    )
    resumed = [t for t in tasks if t in before]
    return current, tasks, resumed, all_todo, compute_seconds, files, n_declined, report


def _require_complete(design: Design, done: list[Task], results_dir: Path) -> None:
    """Refuse a folder with a chunk of ``design`` that no checkpoint holds."""
    missing = sum(b - a for runs in missing_chunks(design, done).values() for a, b in runs)
    if missing:
        total = sum(n_chunks(design.replications_of(m), m) for m in design.m)
        raise results_folder.FolderError(
            f"{missing} of {total} chunks of {results_dir} have no checkpoint: run "
            "`study simulate` with its design first"
        )


def _workers(jobs: int, backend: str, scheduler: str | None) -> int:
    """Workers the plan sizes tasks for: ``jobs``, or an existing cluster's threads."""
    if backend == "dask" and scheduler is not None:
        with _dask_client(0, scheduler) as client:
            return max(1, sum(client.nthreads().values()))
    return max(1, jobs)


def _machine(jobs: int, backend: str, scheduler: str | None) -> dict:
    where = {} if backend != "dask" else {"scheduler": scheduler or "local cluster"}
    return where | {
        "jobs": jobs,
        "backend": backend,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
    }


def _manifest(
    design: Design,
    design_path,
    files: dict,
    steps: list[str],
    run: dict,
    noise_draw: str,
    n_tasks: int,
) -> dict:
    """What a committed folder says about itself (:func:`study.folder.reading` checks it)."""
    n_fits, n_points = count_fits(design)
    return {
        "design": design.to_dict(),
        "design_file": design_path,
        "design_hash": design.hash,
        "engine_version": ENGINE_VERSION,
        "files": files,
        "versions": _versions(),
        "seed": design.seed,
        "replications": design.replications,
        "steps": steps,
        "noise_draw": noise_draw,  # "sufficient": Φᵀε ~ N(0, σ²G) given the points
        # with [precision], the replications each m reached (readers take them from here)
        **(
            {"replications_by_m": {str(m): n for m, n in design.replications_by_m}}
            if design.replications_by_m
            else {}
        ),
        "counts": {
            "chunks": sum(n_chunks(design.replications_of(m), m) for m in design.m),
            "tasks": n_tasks,
            "fits": n_fits,
            "data_points": n_points,
        },
        "run": run,
    }


def _write_results(
    design: Design,
    results_dir: Path,
    store,
    tasks: list[Task],
    *,
    after=None,
    computed=None,
    mergers=None,
):
    """Summarise the checkpoints (and run the ``after`` step), write the result files of an
    uncommitted folder, and return the size and SHA-256 of each for the manifest, and the
    number of fits whose batch the compiled kernel declined."""
    return_freed_memory()  # before the results' tables: the end of a run is its peak
    summary, risk, draws, fits = summarise(design, store, tasks, mergers)
    texts: dict[str, str] = {}
    if after is not None:
        extra = {} if computed is None else {"computed": computed}
        summary, risk, texts = after(design, summary, risk, **extra)
    outputs = {
        SUMMARY_FILE: to_csv(summary),
        RISK_FILE: to_csv(risk),
        FITS_FILE: to_csv(fits),
        **texts,
    }
    results_folder.uncommit(results_dir)
    for name, text in outputs.items():
        atomic_write_text(results_dir / name, text)
    atomic_write_bytes(results_dir / DRAWS_FILE, npz_bytes(draws))
    # files of an earlier run that this one does not rewrite (check.csv checked them)
    for name in (*THEORY_FILES, CHECK_FILE):
        if name not in outputs:
            (results_dir / name).unlink(missing_ok=True)
    names = [SUMMARY_FILE, RISK_FILE, FITS_FILE, DRAWS_FILE, *texts]
    declined = fits[[c for c in fits.columns if c.startswith("declined_")]].to_numpy().sum()
    return {name: results_folder.file_digest(results_dir / name) for name in names}, int(declined)


def _run_tasks(
    design,
    store,
    todo,
    n_tasks,
    n_done,
    *,
    jobs,
    backend,
    progress,
    solver,
    scheduler=None,
    noise_draw="sufficient",
    pieces=(),
    merging=None,
):
    """Run ``todo`` in parallel and checkpoint each task as its result comes back (in this
    process: workers need not share its file system; in a thread beside the run,
    :class:`_Saver`, and every save is on disk before this returns or raises); the
    ``pieces`` of the next step, (function, arguments), go after the tasks, except those
    whose function is marked ``before_tasks`` (longer than any task). Returns the summed
    compute time of the tasks and the pieces' results in their order. A dead worker raises
    WorkerDied naming the unfinished tasks or pieces (under Dask, the scheduler runs a dead
    worker's tasks again elsewhere instead)."""
    from joblib.externals.loky.process_executor import BrokenProcessPool
    from tqdm.auto import tqdm

    compute_seconds = 0.0
    display = dict(unit="task", desc=design.name, dynamic_ncols=True, file=sys.stderr)
    bar = tqdm(total=n_tasks + len(pieces), initial=n_done, disable=not progress, **display)
    computed: list = [None] * len(pieces)
    # joblib pulls tasks and pieces (by their index) from this generator as it dispatches
    # them (at most `jobs` ahead): what was pulled and has not come back is what was
    # running when a worker died
    pulled: list[Task | int] = []
    finished: set[Task | int] = set()
    own_process = backend == "dask"
    saver = _Saver(store, then=None if merging is None else merging.add)

    def calls():
        # The pieces that take longer than any task (``before_tasks``: the minibatch
        # experiment) go first, the other pieces (the theory of one degree) after the
        # tasks: a process that ran the first tasks of an m then finds that m's first
        # designs drawn (study.engine.streams keeps their power sums) when the theory's
        # tuning asks for them.
        early = [getattr(fn, "before_tasks", False) for fn, _ in pieces]
        yield from _piece_calls(i for i in range(len(pieces)) if early[i])
        for task in todo:
            pulled.append(task)
            yield delayed(worker.task)(design, task, solver, noise_draw, own_process)
        yield from _piece_calls(i for i in range(len(pieces)) if not early[i])

    def _piece_calls(indices):
        for i in indices:
            fn, args = pieces[i]
            pulled.append(i)
            yield delayed(worker.piece)(i, fn, args)

    ending = None  # the exception that ends the run, if one does
    try:
        if todo or pieces:
            # never more workers than tasks: each worker is a process with its own memory
            n_jobs = min(jobs, len(todo) + len(pieces))
            watch = _DeadWorkerWatch() if backend == "loky" else nullcontext()
            with _backend(backend, n_jobs, scheduler), watch:
                parallel = Parallel(
                    return_as="generator_unordered", batch_size=1, pre_dispatch="n_jobs"
                )
                for key, result in parallel(calls()):
                    if isinstance(key, int):  # a piece of the next step
                        computed[key] = result
                        finished.add(key)
                    else:
                        saver.save(key, result)
                        finished.add(key)
                        compute_seconds += result.seconds
                    bar.update(1)
    except BrokenProcessPool as exc:  # TerminatedWorkerError and its kin
        running = [t for t in pulled if t not in finished]
        names = (
            "; ".join(
                _describe_piece(*pieces[t]) if isinstance(t, int) else t.describe()
                for t in running[: max(jobs, 1)]
            )
            or "?"
        )
        how = watch.exit_codes if getattr(watch, "exit_codes", None) else _exit_codes(exc)
        ending = WorkerDied(
            f"a worker process died ({how}) while running one of {names}; the "
            "finished tasks are kept: run the same command to resume"
        )
        raise ending from None
    except BaseException as exc:
        ending = exc
        raise
    finally:
        bar.close()
        saver.close(during=ending)  # the finished tasks on disk, whatever ended the run
    return compute_seconds, computed


def _describe_piece(fn, args) -> str:
    """For messages: what a piece of the next step computes, e.g. "the theory of degree
    3" (its function's ``describe(*args)``), else its function's name. Never raises: it
    builds the message of a run that is ending."""
    generic = f"the piece {getattr(fn, '__name__', type(fn).__name__)}"
    describe = getattr(fn, "describe", None)
    try:
        return str(describe(*args)) if describe is not None else generic
    except Exception:  # a describe that fails must not replace the error being reported
        return generic


class _Saver:
    """Checkpoints saved in a thread beside the run, one at a time: packing, hashing and
    fsyncing a task's result (a third of a second for a fit-bound task's 18 MB) overlap
    the next task, which with one job runs in this process; so does ``then(task,
    result)``, called after each save (the :class:`RunningMerge`). At most one save is pending,
    so at most two results are held in memory; :meth:`close` waits for it, and a failed
    save (a full disk) raises its OSError there or at the next save."""

    def __init__(self, store: CheckpointStore, then=None):
        from concurrent.futures import ThreadPoolExecutor

        self._store = store
        self._then = then
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="study-save")
        self._pending = None

    def save(self, task: Task, result) -> None:
        self._wait()
        self._pending = self._pool.submit(self._save, task, result)

    def _save(self, task: Task, result) -> None:
        self._store.save(task, result)
        if self._then is not None:  # e.g. RunningMerge.add, once the checkpoint is on disk
            self._then(task, result)

    def _wait(self) -> None:
        pending = self._pending
        if pending is None:
            return
        try:
            pending.result()
        finally:
            if pending.done():  # not when an interrupt broke the wait: it is still saving
                self._pending = None

    def close(self, during: BaseException | None = None) -> None:
        """Wait for the save in progress, through further interrupts too: the folder's
        lock is held until its checkpoint is whole on disk. A failed save raises its error
        here, or, when the run is already ending on another exception (``during``), is
        added to that one as a note (its chunks are simply computed again on resume)."""
        while True:
            try:
                self._pool.shutdown(wait=True)
                break
            except KeyboardInterrupt:  # Ctrl-C, SIGTERM or SIGHUP again: still saving
                continue
        try:
            self._wait()
        except Exception as exc:
            if during is None:
                raise
            during.add_note(f"study: a checkpoint was not saved: {exc}")


class _DeadWorkerWatch:
    """Watch loky's workers while a run waits for results, and end the wait when one has
    died but loky has not noticed.

    loky notices a dead worker through its process sentinel, unless the worker died while
    sending a result: then loky's manager thread has read part of a message and waits for
    the rest, which never comes (no other worker can send: the dead one holds the queue's
    lock), and the run hangs, deaf even to SIGTERM, whose clean-up waits for that thread.
    A fresh-clone CI run hung so after a worker was SIGKILLed. The watch checks the workers
    every POLL_SECONDS; a worker that has been dead for GRACE_SECONDS without loky marking
    the pool broken is taken for this case. The watch then kills the other workers (the run
    ends anyway: a dead worker ends it) and closes this process's end of the result pipe,
    so that the manager thread reads end-of-file, marks the pool broken, and joblib raises
    BrokenProcessPool in the main thread, as it does for any dead worker."""

    POLL_SECONDS = 0.25
    GRACE_SECONDS = 3.0

    def __init__(self):
        import threading

        self.exit_codes = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="study-dead-worker-watch")
        self._thread.daemon = True

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False

    def _watch(self):
        from joblib.externals.loky import reusable_executor

        dead_since: dict[int, float] = {}
        while not self._stop.wait(self.POLL_SECONDS):
            executor = getattr(reusable_executor, "_executor", None)
            if executor is None or getattr(executor._flags, "broken", None):
                dead_since.clear()
                continue
            now = time.monotonic()
            processes = dict(executor._processes)
            # a worker that exits by itself (idle, or the pool shrinking) exits with 0
            dead = {pid: p.exitcode for pid, p in processes.items() if p.exitcode}
            for pid in list(dead_since):
                if pid not in dead:
                    del dead_since[pid]  # loky took it out: it noticed (an idle worker's exit)
            stuck = {}
            for pid, code in dead.items():
                started = dead_since.setdefault(pid, now)
                if now - started >= self.GRACE_SECONDS:
                    stuck[pid] = code
            if stuck:
                self.exit_codes = "exit " + ", ".join(_signal_name(c) for c in stuck.values())
                self._unblock(executor, processes)
                return

    @staticmethod
    def _unblock(executor, processes):
        for p in processes.values():
            if p.exitcode is None:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for p in processes.values():
            p.join(timeout=5)
        writer = getattr(executor._result_queue, "_writer", None)
        if writer is not None:
            writer.close()


def _signal_name(exitcode: int) -> str:
    """'SIGKILL(-9)' for a process a signal ended, as joblib names it; else the code."""
    if exitcode < 0:
        try:
            return f"{signal.Signals(-exitcode).name}({exitcode})"
        except ValueError:
            pass
    return str(exitcode)


def return_freed_memory() -> bool:
    """Give the memory this process has freed back to the system (glibc's malloc_trim).
    The task results that came back during the run were freed, but glibc keeps the pages
    they leave between live blocks, and the results' tables are then built on top: the
    run's process held 330 MiB while writing the default design's results at 100,000
    replications, 250 MiB with this (one run each). False where the C library has no
    malloc_trim (macOS, musl): nothing is done there."""
    import ctypes

    try:  # the C library this process has loaded
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True


def release_workers() -> None:
    """Stop joblib's loky workers now, for a process that will not run again (the
    command line): joblib keeps them for a next call, and at exit the interpreter waits
    for them (0.4 s measured with 2 workers) after the results are written. Killing idle
    workers loses nothing; a later run would start new ones."""
    from joblib.externals.loky import reusable_executor

    executor = getattr(reusable_executor, "_executor", None)
    flags = getattr(executor, "_flags", None)
    # a pool broken by a dead worker was shut down by joblib already: leave it alone
    if executor is not None and not getattr(flags, "broken", None):
        executor.shutdown(wait=False, kill_workers=True)


@contextmanager
def _backend(backend: str, n_jobs: int, scheduler: str | None):
    """joblib configured for ``backend``: loky processes, threads of this process (their
    BLAS pools limited here, once), or a Dask cluster: the one at ``scheduler``, or a
    LocalCluster of ``n_jobs`` single-threaded worker processes started for the run."""
    if backend == "loky":
        with parallel_config(backend="loky", n_jobs=n_jobs):
            yield
    elif backend == "threading":
        with one_blas_thread(), parallel_config(backend="threading", n_jobs=n_jobs):
            yield
    else:
        with _dask_client(n_jobs, scheduler) as client:
            # an existing cluster: as many tasks in flight as its workers have threads
            n = n_jobs if scheduler is None else max(1, sum(client.nthreads().values()))
            with parallel_config(backend="dask", n_jobs=n):
                yield


@contextmanager
def _dask_client(n_workers: int, scheduler: str | None):
    """A client of the scheduler at ``scheduler`` (refused in one line if unreachable), or
    of a LocalCluster of ``n_workers`` single-threaded worker processes started for the
    run, whose workers are frozen before it closes (:func:`_freeze_workers`)."""
    import logging

    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=DASK_CONNECT_SECONDS)
        except (OSError, TimeoutError) as exc:
            raise SchedulerUnreachable(
                f"option '--scheduler': could not connect to {scheduler!r} within "
                f"{DASK_CONNECT_SECONDS} s ({exc.__class__.__name__}); expected the address "
                "of a running Dask scheduler, e.g. tcp://host:8786"
            ) from None
        quiet = _QuietOnError()
        with quiet.restoring(), client, quiet.silencing():
            yield client
        return
    # No profiler in its workers (it samples their threads every 10 ms, for a dashboard
    # this cluster does not have): the whole command on bench-fit took 5.95 s against 6.44
    # s with it, medians of 4 alternating runs. The key reaches a worker started again too
    # (its nanny keeps the configuration it was made with).
    local = {START_METHOD_KEY: local_start_method(), "distributed.worker.profile.enabled": False}
    # The start method only while the cluster starts its workers, with this process's
    # other threads idle (the save thread has not started; the main thread waits here). A
    # worker that dies mid-run is started again Dask's way (spawned): forked then, it could
    # copy a lock that one of this process's running threads holds, and hang on it.
    with dask.config.set(local):
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # no dashboard, but the scheduler serves its HTTP routes anyway: on a free
            # port of the loopback interface, not Dask's 8787, where a second run (or any
            # other Dask scheduler) made it warn "Port 8787 is already in use"
            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.ERROR,
        )
    quiet = _QuietOnError()
    with quiet.restoring(), cluster, Client(cluster) as client, quiet.silencing():
        from study.engine.dask_workers import IgnoreCtrlC

        # in every worker, forked at the start or spawned again after a crash
        client.register_plugin(IgnoreCtrlC())
        yield client
        _freeze_workers(client)


class _QuietOnError:
    """The loggers of Dask's machinery in this process (``distributed``, ``tornado``,
    ``asyncio`` and their children) quiet below CRITICAL while a run that is ending on an
    exception closes its client and cluster, and as they were afterwards. Closed under a
    run that Ctrl-C stops, a cluster can fail to gather a result that was on its way, and
    logs it: "Couldn't gather keys" and a tornado traceback of some forty lines (seen in
    about one interrupted run in fifty), before the run's one line that says what
    happened. The workers' own logs are not filtered. Enter :meth:`restoring` before the
    client and cluster and :meth:`silencing` after them, so that the quiet starts before
    they close and ends after."""

    FAMILIES = ("distributed", "tornado", "asyncio")

    def __init__(self):
        import logging

        self._logging = logging
        self._saved: list[tuple] = []

    @contextmanager
    def silencing(self):
        try:
            yield
        except BaseException:
            self._silence()
            raise

    @contextmanager
    def restoring(self):
        try:
            yield
        finally:
            for logger, level in reversed(self._saved):
                logger.setLevel(level)
            self._saved.clear()

    def _silence(self) -> None:
        logging = self._logging
        names = [
            name
            for name in list(logging.root.manager.loggerDict)
            if name.split(".")[0] in self.FAMILIES
        ]
        # each logger, as some have levels of their own (distributed.client, tornado's);
        # children made later take their family's
        for name in sorted({*self.FAMILIES, *names}):
            logger = logging.getLogger(name)
            self._saved.append((logger, logger.level))
            logger.setLevel(logging.CRITICAL)


START_METHOD_KEY = "distributed.worker.multiprocessing-method"


def local_start_method() -> str:
    """How a LocalCluster started for a run starts its worker processes: "fork" on Linux,
    unless the Dask configuration names a method in its files or environment (e.g.
    ``DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD=spawn``) or sets another than its
    default "spawn" with ``dask.config.set``.

    A forked worker starts with this process's imports (``distributed``, NumPy, pandas,
    the study's modules) instead of importing them again; numba and the compiled kernel it
    still loads itself, as this process does not. On bench-data7 with 2 workers the whole
    command took 4.52 s forked against 7.14 s spawned, loky 4.23 s (docs/engine.md). The
    run's process is ready for it: a forked child gives up the results folder's lock
    (:mod:`study.folder`) and the run's SIGTERM and SIGHUP handlers (:mod:`study.cli`).
    On macOS fork is unsafe, and workers are spawned."""
    import dask

    configured = dask.config.get(START_METHOD_KEY)
    if configured != "spawn":  # set in this process
        return configured
    named = dask.config.get(START_METHOD_KEY, None, config=dask.config.collect())
    if named is not None:  # in the user's files or environment
        return named
    return "fork" if sys.platform == "linux" else configured


# how long a run waits for its LocalCluster's workers to freeze before closing it anyway
FREEZE_SECONDS = 5.0


def _freeze_workers(client) -> dict:
    """Freeze the garbage collector's objects in the workers of a LocalCluster this run
    started, as it closes: their interpreters then no longer walk every object numba made
    on the way out (closing took 1.0 to 1.2 s on bench-data7 with 2 spawned workers, 0.2 s
    frozen; a forked worker ends with ``os._exit``, without that walk, but one started
    again mid-run, or on macOS, is spawned). Never the workers of a cluster at an address:
    they live on. Best effort and bounded (FREEZE_SECONDS: an unresponsive worker must not
    keep the results from being written). Returns {worker: None} for the workers it
    reached in time."""
    import gc
    import threading

    reached: dict = {}

    def freeze():
        try:
            reached.update(client.run(gc.freeze, on_error="ignore"))
        except Exception:  # a worker gone, the client closing: it only costs that time
            pass

    thread = threading.Thread(target=freeze, name="study-freeze-workers", daemon=True)
    thread.start()
    thread.join(FREEZE_SECONDS)
    return dict(reached) if not thread.is_alive() else {}


def _exit_codes(exc: BaseException) -> str:
    """What joblib says of how a worker ended, e.g. 'SIGKILL(-9)'."""
    import re

    hit = re.search(r"exit codes of the workers are \{([^}]*)\}", str(exc))
    return f"exit {hit[1]}" if hit else exc.__class__.__name__
