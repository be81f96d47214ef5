"""What a worker process runs: one task, or one piece of the next step.

Kept apart from :mod:`study.engine.run` so that a worker imports only what a task needs
(NumPy, the compiled kernel), not what the main process needs to schedule and write
(pandas, the merge, the results folder): each worker pays its imports once at start-up.
"""

from __future__ import annotations

import signal

from study.design import Design
from study.engine.tasks import Task, run_task


def task(design: Design, which: Task, solver: str, noise_draw: str, own_process: bool):
    """Run one task; its result travels back to be checkpointed by the main process."""
    options = dict(solver=solver, noise_draw=noise_draw, own_process=own_process)
    return which, run_task(design, which, **options)


def piece(i: int, fn, args):
    """One piece of the next step, run in the pool; its index travels back with it."""
    return i, fn(*args)


def ctrl_c_ignored(signum, frame) -> None:
    """The SIGINT handler of a LocalCluster's worker: nothing. Ctrl-C reaches every process
    of the terminal's group, the run's process stops the cluster, and its workers need not
    each print a KeyboardInterrupt traceback. A handler, not SIG_IGN: a process the worker
    starts (numba's compilation on a cold cache) gets Ctrl-C back when it execs."""


def ignore_ctrl_c() -> None:
    """Install :func:`ctrl_c_ignored` (from the process's main thread only)."""
    signal.signal(signal.SIGINT, ctrl_c_ignored)
