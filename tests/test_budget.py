"""The cost estimate of a run against what the engine really allocates and writes, and the
refusal of designs that cannot fit."""

import json
import time
import tracemalloc

import numpy as np
import pytest

from study.design import design_from_dict, load_design
from study.engine import budget, store
from study.engine.budget import (
    MAX_TASK_FILES,
    Estimate,
    checkpoint_index_bytes,
    estimate,
    format_bytes,
    format_seconds,
    machine_limits,
    max_jobs_for_memory,
    refusal,
    task_checkpoint_bytes,
    task_memory_bytes,
    task_payload_bytes,
)
from study.engine.plan import plan_tasks
from study.engine.streams import chunk_length
from study.engine.tasks import Task, run_task

from conftest import ROOT, small_design

GiB = 1 << 30

# Small designs: degrees 1-3, a few λ and scalings, kept draws or none, replications not a
# multiple of the chunk length (256 data sets: the last chunk is shorter), tasks of one
# chunk or of several.
DESIGNS = {
    "small": small_design(),
    "uneven": small_design(
        replications=700,
        block_size=600,
        **{
            "grid.m": [5, 12],
            "grid.degree": [1, 3],
            "grid.lambda": [0.0, 0.1, 2.0],
            "grid.scaling": ["none", "m"],
            "output.keep_draws": 25,
        },
    ),
    "no-draws": small_design(
        replications=333,
        **{"grid.m": [4, 30], "grid.degree": [2], "output.keep_draws": 0},
    ),
}


def _pack(arrays, design, task) -> bytes:
    """A task's checkpoint as the store writes it."""
    return store.pack_checkpoint(arrays, design_hash=design.hash, task=task)


def _keep(design, task: Task) -> int:
    """Draws task keeps: its replications numbered below keep_draws."""
    length = chunk_length(task.m)
    start, stop = task.first * length, min(task.stop * length, design.replications)
    return max(0, min(design.keep_draws, stop) - start)


def _tasks(design):
    """A few tasks of each design as a run of 2 jobs plans them: for the smallest and the
    largest m, the first (most draws) and the last (shortest)."""
    tasks = plan_tasks(design, [], workers=2)
    out = []
    for m in (min(design.m), max(design.m)):
        of_m = sorted(t for t in tasks if t.m == m)
        out += sorted({of_m[0], of_m[-1]})
    return out


# --- sizes ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DESIGNS))
def test_checkpoint_size_matches_the_packed_task(name):
    design = design_from_dict(DESIGNS[name])
    for task in _tasks(design):
        arrays = run_task(design, task).to_arrays()
        keep, chunks = _keep(design, task), task.n_chunks
        # the arrays are exact, from their shapes
        assert task_payload_bytes(design, keep, chunks=chunks) == sum(
            np.asarray(a).nbytes for a in arrays.values()
        )
        index = []
        offset = 0
        for key in sorted(arrays):
            a = np.asarray(arrays[key])
            index.append([key, a.dtype.str, list(a.shape), offset])
            offset += a.nbytes
        assert checkpoint_index_bytes(design, keep, chunks=chunks) == len(
            json.dumps(index, separators=(",", ":")).encode()
        )
        real = len(_pack(arrays, design, task))
        estimated = task_checkpoint_bytes(design, keep, chunks=chunks)
        assert abs(estimated - real) <= 0.05 * real, (task, estimated, real)


@pytest.mark.parametrize("name", sorted(DESIGNS))
def test_closed_forms_equal_the_sums_over_tasks(name):
    """The estimate never enumerates tasks; here they are enumerated to check it."""
    design = design_from_dict(DESIGNS[name])
    est = estimate(design, jobs=2)
    tasks = plan_tasks(design, [], workers=2)
    assert est.n_tasks == len(tasks)
    assert est.n_files == len(tasks) + budget.RESULT_FILE_COUNT
    per_task = sum(
        task_checkpoint_bytes(design, _keep(design, t), chunks=t.n_chunks) for t in tasks
    )
    assert abs(est.checkpoint_bytes - per_task) <= 0.01 * per_task
    # every kept draw is in exactly one task of its m
    for m in design.m:
        assert sum(_keep(design, t) for t in tasks if t.m == m) == design.keep_draws


# --- memory -----------------------------------------------------------------------------

MEMORY_DESIGNS = {
    "small": small_design(),
    "many-cells": small_design(
        replications=600,
        **{
            "grid.lambda": [0.0, 0.01, 0.1, 1.0, 10.0, 100.0],
            "output.keep_draws": 200,
        },
    ),
    "large-m": small_design(
        replications=50,
        **{"grid.m": [200_000], "grid.degree": [1, 3], "output.keep_draws": 4},
    ),
}


@pytest.mark.parametrize("name", sorted(MEMORY_DESIGNS))
def test_worker_memory_covers_the_traced_peak(name):
    """What a worker does for its largest task (run it, pack the checkpoint) stays below
    the estimate beyond the baseline, and not absurdly below it."""
    design = design_from_dict(MEMORY_DESIGNS[name])
    tasks = plan_tasks(design, [], workers=1)
    run_task(design, Task(min(design.m), 0, 1))  # imports and the kernel: warm
    # the task of the largest m with the most chunks, from its first chunk (the most draws)
    m = max(design.m)
    largest = max((t for t in tasks if t.m == m), key=lambda t: (t.n_chunks, -t.first))
    task = Task(m, 0, largest.n_chunks)
    tracemalloc.start()
    try:
        _pack(run_task(design, task).to_arrays(), design, task)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    task = task_memory_bytes(design)
    assert peak <= task <= 10 * peak, (peak, task)
    est = estimate(design, jobs=1)
    assert est.worker_memory_bytes == budget.WORKER_BASELINE_BYTES + task
    assert est.main_memory_bytes > budget.MAIN_BASELINE_BYTES


def test_max_jobs_for_memory():
    est = estimate(design_from_dict(small_design()), jobs=4)
    w, main = est.worker_memory_bytes, est.main_memory_bytes
    assert max_jobs_for_memory(est, main + 3 * w) == 3
    assert max_jobs_for_memory(est, main + 3 * w - 1) == 2
    assert max_jobs_for_memory(est, main + w) == 1
    assert max_jobs_for_memory(est, main + w - 1) == 0
    assert est.peak_memory_bytes == est.workers * w + main


def test_workers_never_exceed_tasks():
    design = design_from_dict(small_design(replications=600, **{"grid.m": [5]}))  # 3 chunks
    assert estimate(design, jobs=8).n_tasks == 3
    assert estimate(design, jobs=8).workers == 3
    assert estimate(design, jobs=2).workers == 2


# --- scale ------------------------------------------------------------------------------


def test_huge_replications_are_estimated_at_once_and_refused():
    design = design_from_dict(small_design(replications=10**12))
    started = time.perf_counter()
    est = estimate(design, jobs=2)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5  # a bound, not a benchmark: nothing is enumerated
    assert isinstance(est.n_tasks, int) and est.n_tasks > MAX_TASK_FILES  # exact Python ints
    # 3 × 3.9·10⁹ chunks, each with at least 20 kB of co-moments (8 cells, degrees 1-3)
    assert isinstance(est.checkpoint_bytes, int) and est.checkpoint_bytes > 2 * 10**14
    message = refusal(design, est, jobs=2, available_memory=64 * GiB, free_disk=1 << 50)
    assert message is not None and "\n" not in message
    assert message.startswith("design key 'replications': got 1,000,000,000,000;")
    assert "(limit 10,000)" in message
    est.line()  # formats whatever the size


def test_many_lambdas_are_refused_naming_the_lambda_grid():
    lams = [i / 1000 for i in range(100_000)]
    design = design_from_dict(small_design(**{"grid.lambda": lams}))
    est = estimate(design, jobs=2)
    assert est.n_tasks == 3  # one chunk of each m
    message = refusal(design, est, jobs=2, available_memory=16 * GiB, free_disk=100 * GiB)
    assert message is not None and message.startswith("design key 'grid.lambda': got 100,000")
    assert "memory" in message
    # with memory to spare, the disk refuses it
    message = refusal(design, est, jobs=2, available_memory=1 << 50, free_disk=1 * GiB)
    assert message is not None and message.startswith("design key 'grid.lambda'")
    assert "free" in message


@pytest.mark.parametrize("block_size", [None, 20, 5000])
def test_too_many_task_files_are_refused_with_replications_that_fit(block_size):
    """Tasks grow (up to a checkpoint's size limit, and block_size) before the run has too
    many files; past that the refusal names the replications that fit, and that number
    does fit."""
    grid = {"grid.m": [3, 8, 40, 100], "grid.lambda": [i / 10 for i in range(400)]}
    grid["block_size"] = block_size
    design = design_from_dict(small_design(replications=10**9, **grid))
    est = estimate(design, jobs=2)
    assert est.n_tasks > MAX_TASK_FILES
    message = refusal(design, est, jobs=2, available_memory=1 << 50, free_disk=1 << 50)
    assert message is not None and message.startswith(
        "design key 'replications': got 1,000,000,000; with 4 values of m they make "
    )
    most = int(message.rsplit("≤ ", 1)[1].replace(",", ""))
    fits = design_from_dict(small_design(replications=most, **grid))
    assert estimate(fits, jobs=2).n_tasks <= MAX_TASK_FILES
    assert (
        refusal(fits, estimate(fits, jobs=2), jobs=2, available_memory=1 << 50, free_disk=1 << 50)
        is None
    )


def test_a_small_block_size_making_too_many_files_is_refused_naming_it():
    # 1,000 values of m × 157 chunks of 256 (40,000 replications): tasks of one chunk make
    # 157,000 files; at most 10 tasks per m need 16 chunks a task, block_size 16 × 256
    raw = small_design(replications=40_000, block_size=1, **{"grid.m": list(range(3, 1003))})
    design = design_from_dict(raw)
    est = estimate(design, jobs=2)
    message = refusal(design, est, jobs=2, available_memory=1 << 50, free_disk=1 << 50)
    assert message == (
        "design key 'block_size': got 1; tasks of at most 1 replications make 157,000 task "
        "files (limit 10,000); use block_size ≥ 4,096 or leave it out"
    )


def test_block_size_caps_the_replications_of_a_task():
    """block_size = 1 still means one chunk per task (never less than a chunk), a larger
    one whole chunks below it."""
    raw = small_design(replications=4000, **{"grid.m": [3, 8, 40, 100]})
    for block_size, per_task in ((1, 1), (600, 2), (1024, 4)):
        design = design_from_dict({**raw, "block_size": block_size})
        tasks = plan_tasks(design, [], workers=1)
        assert max(t.n_chunks for t in tasks) == per_task
        assert estimate(design, jobs=1).n_tasks == len(tasks)


def test_many_values_of_m_are_refused_naming_the_m_grid():
    design = design_from_dict(
        small_design(**{"grid.m": list(range(1, 10_002)), "grid.degree": [1]})
    )
    message = refusal(
        design, estimate(design, jobs=1), jobs=1, available_memory=1 << 50, free_disk=1 << 50
    )
    assert message is not None and message.startswith("design key 'grid.m'")


def test_many_kept_draws_are_refused_naming_keep_draws():
    design = design_from_dict(
        small_design(
            replications=10_000,
            **{"output.keep_draws": 10_000, "grid.lambda": [0.0, 0.1, 0.5, 1.0, 2.0]},
        )
    )
    est = estimate(design, jobs=2)
    draws = 3 * 5 * 4 * 10_000 * (2 + 3 + 4) * 8  # m × λ × scalings × draws × coefficients
    assert est.checkpoint_bytes > draws
    # the disk is small
    message = refusal(design, est, jobs=2, available_memory=1 << 50, free_disk=draws // 2)
    assert message is not None and message.startswith("design key 'output.keep_draws'")
    assert "output.keep_draws ≤" in message
    # the memory is small
    small_memory = budget.WORKER_BASELINE_BYTES + budget.MAIN_BASELINE_BYTES + draws
    message = refusal(design, est, jobs=2, available_memory=small_memory, free_disk=1 << 50)
    assert message is not None and message.startswith("design key 'output.keep_draws'")
    assert "memory" in message and "\n" not in message
    # the advice given fits
    keep = int(message.rsplit("≤ ", 1)[1].replace(",", ""))
    smaller = design_from_dict(
        small_design(
            replications=10_000,
            **{"output.keep_draws": keep, "grid.lambda": [0.0, 0.1, 0.5, 1.0, 2.0]},
        )
    )
    assert (
        refusal(
            smaller,
            estimate(smaller, jobs=1),
            jobs=1,
            available_memory=small_memory,
            free_disk=1 << 50,
        )
        is None
    )


# --- the default design on this machine -------------------------------------------------


def test_default_design_fits_this_machine_and_its_time_is_about_right():
    design = load_design(ROOT / "simulations" / "default.toml")
    est = estimate(design, jobs=2)
    memory, disk = machine_limits(ROOT / "simulations" / "results" / design.name)
    assert refusal(design, est, jobs=2, available_memory=memory, free_disk=disk) is None
    assert est.n_tasks == len(plan_tasks(design, [], workers=2))
    assert est.n_tasks >= 8  # at least 4 per worker: the design has 480 chunks
    # measured: the default design runs in about 8 s with 2 jobs (14-22 s on a loaded
    # machine); the estimate is meant to be right within a factor of about 3
    assert 0.2 * 8 <= est.seconds <= 5 * 8, est.seconds
    assert est.seconds > estimate(design, jobs=1).seconds / 2.5  # parallel, not magic
    line = est.line()
    assert line.startswith(f"estimate: {est.n_tasks} tasks, ~") and "with 2 jobs" in line
    assert "2 workers ×" in line and "MB" in line and "\n" not in line


# --- the machine and the line -----------------------------------------------------------


def test_machine_limits(tmp_path):
    memory, disk = machine_limits(tmp_path / "not" / "yet" / "there")
    assert isinstance(memory, int) and memory > 0
    assert isinstance(disk, int) and disk > 0
    assert machine_limits(tmp_path)[1] > 0


def test_formatting():
    assert format_bytes(512) == "512 B"
    assert format_bytes(46_000) == "46 kB"
    assert format_bytes(1_234_567_890) == "1.2 GB"
    assert format_bytes(10**400).startswith("~10^400")
    assert format_seconds(9.0) == "9.0 s"
    assert format_seconds(90) == "1.5 min"
    assert format_seconds(float("inf")) == "forever"
    est = Estimate(
        n_tasks=1,
        n_files=9,
        checkpoint_bytes=46_000_000,
        result_bytes=1_000,
        worker_memory_bytes=320_000_000,
        main_memory_bytes=400_000_000,
        seconds=9.2,
        jobs=1,
        workers=1,
    )
    assert est.line() == (
        "estimate: 1 task, ~9.2 s with 1 job, 46 MB of checkpoints + 1.0 kB of results, "
        "720 MB peak memory (1 worker × 320 MB + main 400 MB)"
    )
