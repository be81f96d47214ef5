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
