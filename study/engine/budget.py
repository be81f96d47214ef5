"""What a run will cost, estimated before it writes anything, and the runs that cannot fit.

:func:`estimate` predicts, from the design alone, the number of tasks and files, the bytes
of the checkpoints and of the result files, the peak memory of a worker process and of the
main process (which summarises every checkpoint at the end), and a rough wall time.
:func:`refusal` turns an estimate that cannot fit on this machine into one line naming the
design key to change. Every quantity is a closed form over the grid (m, degree, λ,
scaling): no task or replication is ever enumerated, so a design of 10¹² replications is
estimated in microseconds, in Python integers (no overflow).

The sizes, the measured constants and the per-unit model of memory and time are in
:mod:`study.engine.costs`; they aim at a factor of about 2, the time only at a factor of about 3.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from study.design import MAX_BLOCK_SIZE, Design
from study.engine.costs import (
    MAIN_BASELINE_BYTES,
    RESULT_FILE_COUNT,
    WORKER_BASELINE_BYTES,
    checkpoint_index_bytes,
    chunk_costs,
    chunk_payload_bytes,
    footprint,
    run_seconds,
    task_checkpoint_bytes,
    task_payload_bytes,
)
from study.engine.plan import MAX_TASK_FILES, largest_task_chunks, n_tasks
from study.engine.streams import chunk_length, n_chunks

__all__ = [
    "MAIN_BASELINE_BYTES",
    "MAX_TASK_FILES",
    "RESULT_FILE_COUNT",
    "WORKER_BASELINE_BYTES",
    "Estimate",
    "chunk_payload_bytes",
    "checkpoint_index_bytes",
    "estimate",
    "format_bytes",
    "format_seconds",
    "machine_limits",
    "max_jobs_for_memory",
    "refusal",
    "task_checkpoint_bytes",
    "task_memory_bytes",
    "task_payload_bytes",
]


@dataclass(frozen=True)
class Estimate:
    """What a run of a design will cost (see :func:`estimate`). Bytes are Python ints."""

    n_tasks: int
    n_files: int
    checkpoint_bytes: int
    result_bytes: int
    worker_memory_bytes: int
    main_memory_bytes: int
    seconds: float
    jobs: int = 1
    workers: int = 1  # worker processes that will run: at most jobs, at most the tasks
    resumed_fraction: float = 0.0  # of the chunks, checkpointed by an earlier run

    @property
    def disk_bytes(self) -> int:
        return self.checkpoint_bytes + self.result_bytes

    @property
    def peak_memory_bytes(self) -> int:
        """Every worker at its peak while the main process summarises (loky keeps its
        workers alive after the tasks)."""
        return self.workers * self.worker_memory_bytes + self.main_memory_bytes

    def line(self) -> str:
        """One human line, e.g. ``estimate: 120 tasks, ~17 s with 2 jobs, 37 MB of
        checkpoints + 25 MB of results, 735 MB peak memory (2 workers × 248 MB + main
        239 MB)``; resuming, ``estimate: 120 tasks (40 % of the chunks already
        checkpointed), ~11 s with 2 jobs, …``."""
        workers = f"{self.workers} worker{'s' if self.workers != 1 else ''}"
        resumed = ""
        if self.resumed_fraction > 0:
            share = 100 * self.resumed_fraction
            shown = "100" if share >= 100 else ">99" if share > 99 else "<1" if share < 1 else ""
            resumed = f" ({shown or f'{share:.0f}'} % of the chunks already checkpointed)"
        return (
            f"estimate: {self.n_tasks:,} task{'s' if self.n_tasks != 1 else ''}{resumed}, "
            f"~{format_seconds(self.seconds)} with {self.jobs} job"
            f"{'s' if self.jobs != 1 else ''}, {format_bytes(self.checkpoint_bytes)} of "
            f"checkpoints + {format_bytes(self.result_bytes)} of results, "
            f"{format_bytes(self.peak_memory_bytes)} peak memory ({workers} × "
            f"{format_bytes(self.worker_memory_bytes)} + main "
            f"{format_bytes(self.main_memory_bytes)})"
        )


def format_bytes(n: int | float) -> str:
    """Decimal units: 512 B, 46 kB, 1.2 GB."""
    try:
        n = float(n)
    except OverflowError:
        return f"~10^{len(str(int(n))) - 1} B"
    for unit, size in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 9.95 else f"{value:,.0f} {unit}"
    return f"{n:.0f} B"


def format_seconds(s: float) -> str:
    """A duration to two significant figures at most: 9 s, 3.5 min, 2 h, 4 days, 12 years."""
    if not math.isfinite(s):
        return "forever"
    for unit, size in (("years", 365.25 * 86400), ("days", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            value = s / size
            return f"{value:.1f} {unit}" if value < 9.95 else f"{value:,.0f} {unit}"
    return f"{s:.1f} s" if s < 9.95 else f"{s:.0f} s"


# --- the estimate ------------------------------------------------------------------------


def estimate(design: Design, *, jobs: int, done: dict[int, int] | None = None) -> Estimate:
    """What running ``design`` with ``jobs`` worker processes will cost; ``done``: the
    chunks of each m already checkpointed (:meth:`CheckpointStore.covered_chunks`), which
    a resumed run does not compute again. The files and bytes are those of the whole run.

    O(m × degree × λ × scaling) at most (the distinct α per (m, degree) are counted for the
    time), whatever the number of replications: tasks are never enumerated.
    """
    jobs = max(1, int(jobs))
    fp = footprint(design, workers=jobs)
    workers = max(1, min(jobs, fp.n_tasks))
    chunks = {m: n_chunks(design.replications, m) for m in design.m}
    resumed = sum(min(chunks[m], n) for m, n in (done or {}).items() if m in chunks)
    try:
        seconds = run_seconds(design, fp, workers, done)
    except OverflowError:  # counts beyond a float (10³⁰⁸): it will not finish
        seconds = math.inf
    return Estimate(
        n_tasks=fp.n_tasks,
        n_files=fp.n_tasks + RESULT_FILE_COUNT,
        checkpoint_bytes=fp.checkpoint_bytes,
        result_bytes=fp.result_bytes,
        worker_memory_bytes=WORKER_BASELINE_BYTES + fp.worker_bytes,
        main_memory_bytes=MAIN_BASELINE_BYTES + fp.main_bytes,
        seconds=seconds,
        jobs=jobs,
        workers=workers,
        resumed_fraction=resumed / max(1, sum(chunks.values())),
    )


def task_memory_bytes(design: Design) -> int:
    """Peak memory of the largest task of ``design`` beyond a worker's baseline: running
    it and packing its checkpoint (what a worker of :func:`study.engine.run.simulate` does)."""
    return footprint(design).worker_bytes


# --- the machine -------------------------------------------------------------------------


def machine_limits(path: str | Path) -> tuple[int, int]:
    """(available memory, free disk) in bytes: ``MemAvailable`` of /proc/meminfo (else the
    physical memory), and the free space of the file system holding ``path`` or its
    nearest existing parent."""
    available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    value, unit = line.split()[1:3]
                    available = int(value) * (1024 if unit.lower() == "kb" else 1)
                    break
    except (OSError, ValueError, IndexError):
        available = None
    if available is None:
        try:
            available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            available = 0
    path = Path(path).absolute()
    existing = next((p for p in (path, *path.parents) if p.exists()), Path(path.anchor))
    return int(available), int(shutil.disk_usage(existing).free)


def max_jobs_for_memory(est: Estimate, available_memory: int) -> int:
    """How many workers fit in ``available_memory`` beside the main process (0 if none)."""
    room = available_memory - est.main_memory_bytes
    if room < est.worker_memory_bytes:
        return 0
    return int(room // est.worker_memory_bytes)


# --- refusal -----------------------------------------------------------------------------


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _largest_fitting(lo: int, hi: int, fits) -> int | None:
    """The largest x in [lo, hi] with fits(x), for fits monotone (true, then false)."""
    if not fits(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _smallest_fitting(lo: int, hi: int, fits) -> int | None:
    """The smallest x in [lo, hi] with fits(x), for fits monotone (false, then true)."""
    if not fits(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _task_count_refusal(design: Design, count: int, workers: int) -> str | None:
    if count <= MAX_TASK_FILES:
        return None
    M, R = len(design.m), design.replications
    limit = f"(limit {MAX_TASK_FILES:,})"
    if M > MAX_TASK_FILES:
        return (
            f"design key 'grid.m': got {M:,} values; each value of m is at least one task "
            f"file, {count:,} task files {limit}; use at most {MAX_TASK_FILES:,} values"
        )
    bs = design.block_size
    costs = chunk_costs(design)  # block_size changes no cost

    def fits(x: int | None) -> bool:
        return n_tasks(replace(design, block_size=x), workers, costs=costs) <= MAX_TASK_FILES

    if bs is not None and fits(None):
        # the tasks are small because block_size caps them: a larger one is enough

        need = _smallest_fitting(bs + 1, MAX_BLOCK_SIZE, fits)
        advice = "leave it out" if need is None else f"use block_size ≥ {need:,} or leave it out"
        return (
            f"design key 'block_size': got {bs:,}; tasks of at most {bs:,} replications make "
            f"{count:,} task files {limit}; {advice}"
        )
    # tasks as large as a checkpoint (and block_size) allow, spread over the values of m
    largest = largest_task_chunks(design)

    def per_task(m: int) -> int:
        return largest if bs is None else min(largest, max(1, bs // chunk_length(m)))

    most = min((MAX_TASK_FILES // M) * per_task(m) * chunk_length(m) for m in design.m)
    return (
        f"design key 'replications': got {R:,}; with {_plural(M, 'value')} of m they make "
        f"{count:,} task files even with the largest tasks {limit}; use replications ≤ "
        f"{most:,}"
    )


def _pick(candidates: list[tuple[int, str, str, str | None]]):
    """The dominant key: among (best, key, got, advice) the one whose change alone helps
    most (lowest ``best``)."""
    enough = [c for c in candidates if c[3] is not None]
    return min(enough or candidates, key=lambda c: c[0])


def _memory_refusal(design: Design, est: Estimate, available: int) -> str | None:
    peak = est.worker_memory_bytes + est.main_memory_bytes  # with one job
    if peak <= available:
        return None

    def memory(**change) -> int:
        return footprint(design, **change).memory(1)

    def fits(**change) -> bool:
        return memory(**change) <= available

    L, keep = len(design.lam), design.keep_draws
    candidates = []
    if L > 1:
        n = _largest_fitting(1, L - 1, lambda x: fits(n_lambda=x))
        advice = f"use at most {n:,} values" if n else None
        candidates.append((memory(n_lambda=1), "grid.lambda", f"{L:,} values", advice))
    if keep > 0:
        n = _largest_fitting(0, keep - 1, lambda x: fits(keep_draws=x))
        advice = None if n is None else f"use output.keep_draws ≤ {n:,}"
        candidates.append((memory(keep_draws=0), "output.keep_draws", f"{keep:,}", advice))
    what = (
        f"the run would need ~{format_bytes(peak)} of memory even with 1 job (worker "
        f"{format_bytes(est.worker_memory_bytes)} + main "
        f"{format_bytes(est.main_memory_bytes)}), {format_bytes(available)} available"
    )
    if not candidates:
        return f"design key 'grid.m': {what}; use fewer values of m or degrees"
    _, key, got, advice = _pick(candidates)
    return f"design key '{key}': got {got}; {what}; {advice or 'that alone will not do'}"


def _disk_refusal(design: Design, est: Estimate, free: int) -> str | None:
    if est.disk_bytes <= free:
        return None

    def disk(**change) -> int:
        return footprint(design, **change).disk()

    def fits(**change) -> bool:
        return disk(**change) <= free

    L, keep, R = len(design.lam), design.keep_draws, design.replications
    candidates = []
    low_r = max(2, keep)  # keep_draws ≤ replications
    if R > low_r:
        n = _largest_fitting(low_r, R - 1, lambda x: fits(replications=x))
        advice = None if n is None else f"use replications ≤ {n:,}"
        candidates.append((disk(replications=low_r), "replications", f"{R:,}", advice))
    if keep > 0:
        n = _largest_fitting(0, keep - 1, lambda x: fits(keep_draws=x))
        advice = None if n is None else f"use output.keep_draws ≤ {n:,}"
        candidates.append((disk(keep_draws=0), "output.keep_draws", f"{keep:,}", advice))
    if L > 1:
        n = _largest_fitting(1, L - 1, lambda x: fits(n_lambda=x))
        advice = f"use at most {n:,} values" if n else None
        candidates.append((disk(n_lambda=1), "grid.lambda", f"{L:,} values", advice))
    what = (
        f"the run would write ~{format_bytes(est.disk_bytes)} "
        f"({format_bytes(est.checkpoint_bytes)} of checkpoints + "
        f"{format_bytes(est.result_bytes)} of results), {format_bytes(free)} free"
    )
    if not candidates:
        return f"design key 'grid.m': {what}; use fewer values of m or degrees"
    _, key, got, advice = _pick(candidates)
    return f"design key '{key}': got {got}; {what}; {advice or 'that alone will not do'}"


def refusal(
    design: Design, est: Estimate, *, jobs: int, available_memory: int, free_disk: int
) -> str | None:
    """One line naming the design key to change when the run cannot fit, else None.

    Refused: more than MAX_TASK_FILES task files; more memory than available even with one
    job (with ``jobs`` workers that do not all fit, :func:`max_jobs_for_memory` says how
    many do); more bytes on disk than free. The key named is the one whose change helps
    most, with the value that would fit where one exists.
    """
    # memory is judged with one job; more jobs are the caller's to reduce
    return (
        _task_count_refusal(design, est.n_tasks, max(1, jobs))
        or _memory_refusal(design, est, available_memory)
        or _disk_refusal(design, est, free_disk)
    )
