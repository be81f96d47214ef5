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
from dataclasses import dataclass
from pathlib import Path

from study.design import MAX_BLOCK_SIZE, Design
from study.engine.costs import (
    MAIN_BASELINE_BYTES,
    RESULT_FILE_COUNT,
    WORKER_BASELINE_BYTES,
    block_keep,
    checkpoint_index_bytes,
    footprint,
    run_seconds,
    task_checkpoint_bytes,
    task_payload_bytes,
)

__all__ = [
    "MAIN_BASELINE_BYTES",
    "MAX_TASK_FILES",
    "RESULT_FILE_COUNT",
    "WORKER_BASELINE_BYTES",
    "Estimate",
    "block_keep",
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

MAX_TASK_FILES = 10_000


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
        239 MB)``."""
        workers = f"{self.workers} worker{'s' if self.workers != 1 else ''}"
        return (
            f"estimate: {self.n_tasks:,} task{'s' if self.n_tasks != 1 else ''}, "
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


def estimate(design: Design, *, jobs: int) -> Estimate:
    """What running ``design`` with ``jobs`` worker processes will cost.

    O(m × degree × λ × scaling) at most (the distinct α per (m, degree) are counted for the
    time), whatever the number of replications: tasks are never enumerated.
    """
    jobs = max(1, int(jobs))
    fp = footprint(design)
    workers = max(1, min(jobs, fp.n_tasks))
    try:
        seconds = run_seconds(design, fp, workers)
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


def _task_count_refusal(design: Design, n_tasks: int) -> str | None:
    if n_tasks <= MAX_TASK_FILES:
        return None
    M, R, bs = len(design.m), design.replications, design.block_size
    limit = f"(limit {MAX_TASK_FILES:,})"
    if M > MAX_TASK_FILES:
        return (
            f"design key 'grid.m': got {M:,} values; each value of m is at least one task "
            f"file, {n_tasks:,} task files {limit}; use at most {MAX_TASK_FILES:,} values"
        )
    blocks_allowed = MAX_TASK_FILES // M
    need = -(-R // blocks_allowed)
    of_m = _plural(M, "value") + " of m"
    if need > MAX_BLOCK_SIZE:
        fewest = -(-R // MAX_BLOCK_SIZE)
        return (
            f"design key 'replications': got {R:,}; even with the largest block_size "
            f"({MAX_BLOCK_SIZE:,}) they make {fewest:,} blocks × {of_m} = {M * fewest:,} "
            f"task files {limit}; use replications ≤ {blocks_allowed * MAX_BLOCK_SIZE:,}"
        )
    what = (
        f"{R:,} replications"
        if bs == 1
        else f"{R:,} replications in blocks of {bs:,} ({design.n_blocks:,} blocks)"
    )
    return (
        f"design key 'block_size': got {bs:,}; {what} × {of_m} make {n_tasks:,} task files "
        f"{limit}; use block_size ≥ {need:,}"
    )


def _pick(candidates: list[tuple[int, str, str, str | None]], prefer: tuple[str, ...] = ()):
    """The dominant key: among (best, key, got, advice) the one whose change alone helps
    most (lowest ``best``); a key of ``prefer`` whose change alone is enough goes first."""
    for key in prefer:
        for c in candidates:
            if c[1] == key and c[3] is not None:
                return c
    enough = [c for c in candidates if c[3] is not None]
    return min(enough or candidates, key=lambda c: c[0])


def _block_size_bounds(design: Design) -> tuple[int, int]:
    """Block sizes allowed for this design: at most MAX_TASK_FILES tasks, ≤ MAX_BLOCK_SIZE."""
    M, R = len(design.m), design.replications
    top = min(R, MAX_BLOCK_SIZE)
    per_m = MAX_TASK_FILES // M
    low = -(-R // per_m) if per_m else top + 1
    return min(low, top + 1), top


def _memory_refusal(design: Design, est: Estimate, available: int) -> str | None:
    peak = est.worker_memory_bytes + est.main_memory_bytes  # with one job
    if peak <= available:
        return None

    def memory(**change) -> int:
        return footprint(design, **change).memory(1)

    def fits(**change) -> bool:
        return memory(**change) <= available

    L, keep, bs = len(design.lam), design.keep_draws, design.block_size
    candidates = []
    if L > 1:
        n = _largest_fitting(1, L - 1, lambda x: fits(n_lambda=x))
        advice = f"use at most {n:,} values" if n else None
        candidates.append((memory(n_lambda=1), "grid.lambda", f"{L:,} values", advice))
    if keep > 0:
        n = _largest_fitting(0, keep - 1, lambda x: fits(keep_draws=x))
        advice = None if n is None else f"use output.keep_draws ≤ {n:,}"
        candidates.append((memory(keep_draws=0), "output.keep_draws", f"{keep:,}", advice))
    # a worker holds one block (smaller is lighter), the main process all the blocks of
    # one m (fewer is lighter): both ways, within the block sizes allowed
    low, top = _block_size_bounds(design)
    if low < bs:
        n = _largest_fitting(low, bs - 1, lambda x: fits(block_size=x))
        advice = None if n is None else f"use block_size ≤ {n:,}"
        candidates.append((memory(block_size=low), "block_size", f"{bs:,}", advice))
    if bs < top:
        n = _smallest_fitting(bs + 1, top, lambda x: fits(block_size=x))
        advice = None if n is None else f"use block_size ≥ {n:,}"
        candidates.append((memory(block_size=top), "block_size", f"{bs:,}", advice))
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

    L, keep, R, bs = len(design.lam), design.keep_draws, design.replications, design.block_size
    candidates = []
    low, top = _block_size_bounds(design)
    if max(low, bs + 1) <= top:  # fewer, larger blocks: fewer files, the same statistics
        n = _smallest_fitting(max(low, bs + 1), top, lambda x: fits(block_size=x))
        advice = None if n is None else f"use block_size ≥ {n:,}"
        candidates.append((disk(block_size=top), "block_size", f"{bs:,}", advice))
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
    _, key, got, advice = _pick(candidates, prefer=("block_size",))
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
    del jobs  # memory is judged with one job; more jobs are the caller's to reduce
    return (
        _task_count_refusal(design, est.n_tasks)
        or _memory_refusal(design, est, available_memory)
        or _disk_refusal(design, est, free_disk)
    )
