"""Run a design: schedule the missing tasks with joblib, checkpoint each one as it
finishes, then write the result files.

Results are bit-identical for any number of jobs, either backend and any completion
order: each task has its own random stream, and the summaries merge blocks in block
order from the checkpoints. An interrupted run (Ctrl-C, ``kill -9``) keeps every finished
task; the same command computes only what is missing.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed, parallel_config

from .design import Design
from .engine import one_blas_thread, run_task
from .paths import (
    DRAWS_FILE,
    MANIFEST_FILE,
    RISK_FILE,
    SUMMARY_FILE,
    TRANSFER_FILE,
    TUNING_FILE,
)
from .store import CheckpointStore, atomic_write_bytes, atomic_write_text, npz_bytes
from .summary import add_theory, summarise, to_csv
from .tuning import transfer_table, tuning_table

BACKENDS = ("loky", "threading")


@dataclass
class RunReport:
    results_dir: Path
    n_tasks: int
    n_resumed: int
    n_fits: int
    n_points: int
    wall_seconds: float


def count_fits(design: Design) -> tuple[int, int]:
    """(fits, data points) of a whole run: every identifiable cell × replications."""
    fits = points = 0
    for m in design.m:
        for k in design.degree:
            n_cells = sum(
                len(design.scaling) for lam in design.lam if design.identifiable(m, k, lam)
            )
            fits += n_cells * design.replications
        points += m * design.replications
    return fits, points


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    import joblib
    import pandas
    import scipy

    from . import __version__

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
    theory: bool = True,
) -> RunReport:
    """Run every missing task of ``design`` and write the results to ``results_dir``.

    Raises
    ------
    DesignError
        If ``results_dir`` holds checkpoints of another design and ``fresh`` is False.
    KeyboardInterrupt
        Passed on after the finished tasks are safely on disk.

    With ``theory=False`` the large-m columns, tuning.csv and transfer.csv are not
    computed (the benchmark times the engine alone).
    """
    started = time.perf_counter()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    # absolute: workers save the checkpoints, and a reused worker process keeps the working
    # directory it started in
    results_dir = Path(results_dir).resolve()
    store = CheckpointStore(results_dir, design)
    store.prepare(fresh=fresh)
    tasks = design.tasks()
    done = store.done()
    todo = [t for t in tasks if t not in done]
    compute_seconds = 0.0

    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(tasks),
        initial=len(done),
        unit="task",
        desc=design.name,
        disable=not progress,
        dynamic_ncols=True,
        file=sys.stderr,
    )
    try:
        if todo:
            # never more workers than tasks: each worker is a process with its own memory
            # threads share the process's BLAS pools: limit them here, once, not per task
            pools = nullcontext() if backend == "loky" else one_blas_thread()
            with pools, parallel_config(backend=backend, n_jobs=min(jobs, len(todo))):
                results = Parallel(return_as="generator_unordered", batch_size=1)(
                    delayed(_task)(design, results_dir, m, b) for (m, b) in todo
                )
                for seconds in results:
                    compute_seconds += seconds
                    bar.update(1)
    finally:
        bar.close()

    summary, risk, draws = summarise(design, store)
    if theory:
        summary, risk = add_theory(design, summary, risk)
        tuning = tuning_table(design)
        transfer = transfer_table(design, tuning)
    n_fits, n_points = count_fits(design)
    wall = time.perf_counter() - started
    atomic_write_text(results_dir / SUMMARY_FILE, to_csv(summary))
    atomic_write_text(results_dir / RISK_FILE, to_csv(risk))
    atomic_write_bytes(results_dir / DRAWS_FILE, npz_bytes(draws))
    if theory:
        atomic_write_text(results_dir / TUNING_FILE, to_csv(tuning))
        atomic_write_text(results_dir / TRANSFER_FILE, to_csv(transfer))
    manifest = {
        "design": design.to_dict(),
        "design_file": design_path,
        "design_hash": design.hash,
        "versions": _versions(),
        "seed": design.seed,
        "replications": design.replications,
        "noise_draw": "plain",
        "counts": {"tasks": len(tasks), "fits": n_fits, "data_points": n_points},
        "run": {
            "started": started_at,
            "wall_seconds": round(wall, 3),
            "compute_seconds_this_run": round(compute_seconds, 3),
            "tasks_computed_this_run": len(todo),
            "tasks_resumed": len(done),
            "jobs": jobs,
            "backend": backend,
            "cores": os.cpu_count(),
            "platform": platform.platform(),
        },
    }
    atomic_write_text(
        results_dir / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    )
    return RunReport(
        results_dir=results_dir,
        n_tasks=len(tasks),
        n_resumed=len(done),
        n_fits=n_fits,
        n_points=n_points,
        wall_seconds=wall,
    )


def _task(design: Design, results_dir: Path, m: int, block: int) -> float:
    """Run one task and checkpoint it where it ran: only its compute time travels back
    (the results are read from the checkpoints by :func:`study.summary.summarise`)."""
    result = run_task(design, m, block)
    CheckpointStore(results_dir, design).save(m, block, result)
    return float(result["seconds"])
