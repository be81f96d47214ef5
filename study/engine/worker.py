"""What a worker process runs: one task, or one piece of the next step.

Kept apart from :mod:`study.engine.run` so that a worker imports only what a task needs
(NumPy, the compiled kernel), not what the main process needs to schedule and write
(pandas, the merge, the results folder): each worker pays its imports once at start-up.
"""

from __future__ import annotations

from study.design import Design
from study.engine.tasks import Task, run_task


def task(design: Design, which: Task, solver: str, noise_draw: str, own_process: bool):
    """Run one task; its result travels back to be checkpointed by the main process."""
    options = dict(solver=solver, noise_draw=noise_draw, own_process=own_process)
    return which, run_task(design, which, **options)


def piece(i: int, fn, args):
    """One piece of the next step, run in the pool; its index travels back with it."""
    return i, fn(*args)


def warm() -> int:
    """Load what every task needs (the compiled kernel from numba's cache, the BLAS pools)
    before the first task comes: :func:`start_warm_workers` runs it in each worker while the
    main process still imports and plans. Returns the worker's process id."""
    import os

    from study.engine import kernel
    from study.engine.tasks import _thread_pools

    kernel.loaded()
    _thread_pools()
    return os.getpid()


def start_warm_workers(jobs: int):
    """Start ``jobs`` loky workers now, in a thread of this process, each loading the
    kernel (:func:`warm`); the run's own joblib call then finds them ready (joblib keeps
    one pool of workers per process and reuses it for the same number of jobs). Saves the
    workers' start-up, about a second, wherever the main process has its own work to do
    meanwhile. Returns the thread."""
    import threading

    from joblib import Parallel, delayed

    def run():
        try:
            Parallel(n_jobs=jobs, backend="loky")(delayed(warm)() for _ in range(jobs))
        except Exception:  # a failed warm-up only costs the time it would have saved
            pass

    thread = threading.Thread(target=run, name="study-warm-workers", daemon=True)
    thread.start()
    return thread
