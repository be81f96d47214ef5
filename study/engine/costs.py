"""The cost model of a run: the measured constants, the exact sizes and the per-unit model.

:mod:`study.engine.budget` turns these into an estimate and a refusal. Every quantity is a closed
form over the grid (m, degree, λ, scaling), in Python integers (no overflow).

Sizes are exact where they can be: the arrays of a task checkpoint follow from their
shapes (see :func:`task_payload_bytes`). Memory and time are models whose constants were
measured on the development machine (2 cores, Linux, CPython 3.11, NumPy 2, numba); they
aim at a factor of about 2, and the time only at a factor of about 3.

How the constants were measured
-------------------------------
- Process baselines: ``VmHWM`` in ``/proc/<pid>/status``, polled every 0.1 s, of the main
  process and of the two loky workers of ``study simulate`` on a design of four tasks of two
  data sets each (nothing but the imports and the compiled kernel loaded from numba's
  cache): workers 220 MB (215 MiB), main 118 MB; the main process of the default design
  peaked at 214 MB, its workers at 228 MB.
- Per-unit memory: ``tracemalloc`` peaks of ``conditional._fit_numpy`` (12.5 floats per data
  set × α × coefficient, rounded up to 16) and of ``conditional._fit_compiled``, and of
  ``engine.tasks.run_task`` followed by ``store.pack_checkpoint`` (tests/test_budget.py checks the
  model against the latter on small designs).
- Time: the best of 3 timings of ``engine.streams.chunk_power_sums`` (m = 10 to 10⁵, K = 1 to 12,
  uniform and normal x; engine version 7, the cost per data set again with version 10)
  and of ``models.gaussian._fit_in_batches`` on 2,048 data sets per degree with 1 and 41 values of
  α (the difference gives the cost per α, the rest the factorisation), in one process with
  one BLAS thread; the tail from timing ``engine.merge.summarise``, ``theory.step.add_theory``,
  ``tuning.tuning_table``/``transfer_table``, ``results.to_csv`` and ``files.npz_bytes`` on
  the default design's checkpoints, and the fixed cost from ``study simulate`` of a design
  of four tiny tasks with 2 jobs (4.9 to 7.1 s from the shell). Checked against whole runs
  of six designs (tiny; m = 10⁵; degree 12 with 20 λ; 2,000 tasks; degrees 2-6 with 1,000
  kept draws; the default): estimated/measured wall time 0.85 to 1.16 on a quiet machine,
  down to 0.5 while other processes took the cores. The default design ran in 17.5 to
  18 s from the shell with 2 jobs (14.5 s inside ``simulate``; 22 s on a busy machine)
  before its minibatch experiment counted in the estimate, whose NumPy loop then took
  22 s more than it assumed; with the steps compiled (2026-12-02) it ran in 14.7 s with
  1 job and 11.6 s with 2, estimated 19 and 17 s; with the fixed cost fitted again
  (below) and draws.npz stored, not deflated, 14.1 and 11.1 s, estimated 16 and 14 s.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace

import numpy as np

from study.conditional import FIT_COUNTS, TAIL_THRESHOLDS
from study.design import Design
from study.engine.streams import MAX_PIECE, PIECE_ELEMENTS, chunk_length, n_chunks
from study.engine.tasks import AUDIT_CHUNKS, TaskResult
from study.models.gaussian import FIT_BATCH

KiB, MiB = 1 << 10, 1 << 20

# --- memory ------------------------------------------------------------------------------
# A worker process after its first task: Python, NumPy, pandas/SciPy (imported with
# study.engine.run to unpickle the task), numba/llvmlite and the compiled kernel loaded from
# the cache. Measured 215 MiB (VmHWM of both loky workers); rounded up.
WORKER_BASELINE_BYTES = 224 * MiB
# The main process with every module of a run imported (no numba: it never fits):
# measured 110 MiB after the imports, 115 MiB peak over a run of four tiny tasks.
MAIN_BASELINE_BYTES = 128 * MiB
# Small allocations of a task besides its arrays (Python objects, NumPy scratch).
TASK_SLACK_BYTES = 256 * KiB
# Working set of the NumPy path per data set × α × coefficient (12.5 float64 measured),
# and per data set × coefficient² (the factorisation W, its products).
NUMPY_FLOATS_PER_FIT = 16
NUMPY_FLOATS_PER_FACTOR = 8
# Arrays alive while a task's arrays are packed into a checkpoint: the arrays, their bytes,
# the joined payload and the final checkpoint.
PACK_COPIES = 4
# The main process per row of summary.csv and of risk.csv while the frames are built,
# merged with the theory and written as CSV (columns of Python strings before the join).
SUMMARY_ROW_MEMORY = 4 * KiB
RISK_ROW_MEMORY = 2 * KiB
# Kept draws in the main process: the per-m lists, their stack, then the .npz members.
DRAW_COPIES = 3

# --- disk --------------------------------------------------------------------------------
# Per checkpoint besides the arrays and their JSON index: the magic line, the header of
# the self-verifying format (design hash, engine version, task, payload size) and the
# 32-byte SHA-256; measured 188 to 190 bytes, up to about 230 with the longest m, chunk
# and payload numbers.
CHECKPOINT_FRAME_BYTES = 256
# summary.csv measured 406 bytes a row with the theory columns, risk.csv 178.
SUMMARY_ROW_BYTES = 420
RISK_ROW_BYTES = 200
TUNING_ROW_BYTES = 160
TRANSFER_ROW_BYTES = 160
# manifest.json, the folder's marker and lock, headers of the .npz members.
SMALL_FILES_BYTES = 16 * KiB
# summary.csv, risk.csv, draws.npz, tuning.csv, transfer.csv, manifest.json, the marker
# file and the lock.
RESULT_FILE_COUNT = 8

# --- time (seconds) ----------------------------------------------------------------------
# Drawing and reducing data: per point a + b·K for the largest degree K, by the
# distribution of x (measured on m = 10⁵, K = 1 to 12: uniform 3.7 to 5.9 ns, normal 11.7 to
# 14.3 ns), per data set a + b·K (the K + 1 noise normals and their Cholesky factor;
# measured on m = 10 with engine version 10: 1.7 µs at K = 1, 4.0 µs at K = 7, and 2.3 µs at
# K = 12, where m ≤ K + 1 draws the m noise values instead: over-estimated there).
SECONDS_PER_POINT = {"uniform": (3.5e-9, 0.2e-9), "normal": (11.5e-9, 0.25e-9)}
SECONDS_PER_DATA_SET = (1.3e-6, 0.4e-6)
# What plan.speed_factor times, per point: drawing 16 × 4,096 uniform values and their
# power sums up to u⁶ in NumPy (6.2 to 7.8 ns measured alongside the constants above).
PROXY_SECONDS_PER_POINT = 7e-9
# Per data set and degree k (index k − 1): the factorisation of the pencil, smoothed from
# 0.59, 0.75, 1.33, 2.09, 2.97, 5.17, 7.26, 11.8, 11.4, 14.9, 27.8, 31.1 µs.
FACTOR_SECONDS = tuple(
    x * 1e-6 for x in (0.6, 0.8, 1.3, 2.1, 3.0, 5.0, 7.3, 10.0, 12.0, 16.0, 24.0, 32.0)
)
# Per data set, degree k and distinct α: the solution and its moments (0.04 to 0.57 µs).
ALPHA_SECONDS = tuple(
    x * 1e-6 for x in (0.04, 0.055, 0.07, 0.1, 0.13, 0.15, 0.18, 0.2, 0.24, 0.28, 0.34, 0.45)
)
# The logistic family: per data set and distinct α, a batched Newton fit warm-started at
# the previous α, a + m·(b + c·k) (measured per fit on chunks of 256 data sets of
# simulations/logistic.toml: 4.6 and 7.2 µs at m = 20, 8.9 and 13 µs at m = 100, 50 and
# 45 µs at m = 1,000, 160 and 240 µs at m = 5,000, degrees 1 and 3), and per (m, degree)
# the theory step's large-m tables and α*(m), the expansion at some 50 values of α (0.06 to
# 0.07 s: the three degree pieces of simulations/logistic.toml took 0.59 to 0.71 s on
# 2026-12-02; 0.25 s when first measured, which made a resumed run's estimate 3 times its time).
LOGISTIC_FIT_SECONDS = (6e-6, 24e-9, 8e-9)
LOGISTIC_TUNING_SECONDS_PER_M_DEGREE = 0.07
# Per task: dispatch, setup, packing and the durable write of the checkpoint; per distinct
# α and degree, the Python loop spreading a fit to its cells (and per cell of that loop).
TASK_SECONDS = 5e-3
BOOKKEEPING_SECONDS_PER_ALPHA = 15e-6
BOOKKEEPING_SECONDS_PER_CELL = 3e-9
# Fixed: the interpreter, the main process's imports, the compiled kernel's load, the
# manifest and the files' commit; with 2 or more workers, their start beside it. Fitted on
# whole runs from the shell of seven designs (2026-12-02, simulations/*.toml but the
# logistic one), 1 and 2 jobs: 4.5 s and no worker term had overestimated every run, 1.25
# to 1.9 times; these give 0.95 to 1.32 (most 1.1). They were 4.5 s when the imports took
# 1.4 s and each worker 2.3 s.
STARTUP_SECONDS = 2.7
WORKER_START_SECONDS = 0.6
# The serial tail: reading checkpoints (per byte and per file), per (m, degree) the merge
# and the tuned λ (about 0.08 s, which draws 400 designs), per degree ≥ 9 the large-m
# limit (0.8 to 1.8 s), per summary row the frames, theory and CSV (about 60 µs), and the
# draws.npz, stored (300 MB/s; 24 MB/s when it was deflated).
READ_SECONDS_PER_BYTE = 1e-9
READ_SECONDS_PER_FILE = 1e-3
TAIL_SECONDS_PER_M_DEGREE = 0.09
TUNING_LIMIT_SECONDS = {9: 0.8, 10: 0.9, 11: 1.3, 12: 1.8}
TAIL_SECONDS_PER_ROW = 60e-6
TUNING_POINTS = 400  # tuning.DESIGNS_FOR_TUNING
# The minibatch experiment ([minibatch]), compiled: per point of a batch (its gradient and
# its share of the epoch's permutation) and per step (58 to 65 ns and 150 to 190 ns,
# measured at m = 200 and 2,000, B = 1 to m, degrees 2 and 5).
MINIBATCH_SECONDS_PER_POINT = 60e-9
MINIBATCH_SECONDS_PER_STEP = 0.17e-6
NPZ_SECONDS_PER_BYTE = 1 / 300e6

# Above this many (m, degree, λ, scaling) cells the distinct α of each (m, degree) are not
# counted (that is O(grid) NumPy work) but bounded by the number of cells.
_EXACT_ALPHA_CELLS = 200_000


# --- sizes -------------------------------------------------------------------------------


def task_payload_bytes(
    design: Design, keep: int, *, chunks: int = 1, n_lambda: int | None = None
) -> int:
    """Bytes of the arrays of one task of ``chunks`` chunks that keeps ``keep`` draws:
    exactly what :func:`study.engine.tasks.run_task` returns (float64 and int64 arrays and
    ``seconds``).

    Per degree k with L λ values, C columns ((basis, scaling) pairs) and p = k + 1, per
    cell: per chunk coef_n p, coef_mean 5p, coef_Mtri 15p (the lower triangle of the
    symmetric 5 × 5 co-moment matrix), first p, risk_n 1, risk_mean 3, risk_Mtri 6; per
    task n_failed 1, fit_counts 6, tails T·p (T thresholds) and draws keep·p values; 8
    bytes each.
    """
    cells = (len(design.lam) if n_lambda is None else n_lambda) * len(design.columns)
    per_task = 1 + len(FIT_COUNTS)
    T = len(TAIL_THRESHOLDS)
    return 8 + sum(
        8 * cells * (chunks * (22 * (k + 1) + 10) + (keep + T) * (k + 1) + per_task)
        for k in design.degree
    )


def chunk_payload_bytes(design: Design, *, n_lambda: int | None = None) -> int:
    """Bytes one more chunk adds to a task's arrays (its co-moments)."""
    return task_payload_bytes(design, 0, chunks=1, n_lambda=n_lambda) - task_payload_bytes(
        design, 0, chunks=0, n_lambda=n_lambda
    )


def checkpoint_index_bytes(
    design: Design, keep: int, *, chunks: int = 1, n_lambda: int | None = None
) -> int:
    """Exact length of the JSON index of a checkpoint (:mod:`study.engine.store`: name, dtype,
    shape and offset of every array, in sorted order) for a task of ``chunks`` chunks
    keeping ``keep`` draws."""
    L = len(design.lam) if n_lambda is None else n_lambda
    index, offset = [], 0
    shapes = TaskResult.array_shapes(design, keep, chunks=chunks, n_lambda=L)
    for name, (shape, dtype) in sorted(shapes.items()):
        index.append([name, dtype, list(shape), offset])
        offset += 8 * math.prod(shape)
    return len(json.dumps(index, separators=(",", ":")).encode())


def task_checkpoint_bytes(
    design: Design, keep: int, *, chunks: int = 1, n_lambda: int | None = None
) -> int:
    """Size of the checkpoint of one task of ``chunks`` chunks that keeps ``keep`` draws:
    the arrays (exact), their JSON index (exact) and the frame (magic, header, checksum:
    CHECKPOINT_FRAME_BYTES, an upper bound)."""
    sizes = dict(chunks=chunks, n_lambda=n_lambda)
    return (
        task_payload_bytes(design, keep, **sizes)
        + checkpoint_index_bytes(design, keep, **sizes)
        + CHECKPOINT_FRAME_BYTES
    )


# --- the footprint of a run --------------------------------------------------------------


@dataclass(frozen=True)
class Footprint:
    """Sizes of a run (see :func:`footprint`); memory without the process baselines."""

    n_tasks: int
    checkpoint_bytes: int
    result_bytes: int
    worker_bytes: int  # without the baseline
    main_bytes: int  # without the baseline
    summary_rows: int
    risk_rows: int
    draws_bytes: int

    def disk(self) -> int:
        return self.checkpoint_bytes + self.result_bytes

    def memory(self, workers: int = 1) -> int:
        return (
            workers * (WORKER_BASELINE_BYTES + self.worker_bytes)
            + MAIN_BASELINE_BYTES
            + self.main_bytes
        )


@dataclass(frozen=True)
class _Rows:
    """Rows of the result tables."""

    summary: int
    risk: int
    tuning: int
    transfer: int


def footprint(
    design: Design,
    *,
    replications: int | None = None,
    n_lambda: int | None = None,
    keep_draws: int | None = None,
    workers: int = 1,
) -> Footprint:
    """Sizes of a run, O(m × degree), for the design or the design with one key changed
    (L λ values stand for the first L of the design's; every cell counts as identifiable),
    with its chunks grouped into tasks as :mod:`study.engine.plan` groups them for
    ``workers`` workers."""
    from study.engine.plan import chunks_per_task

    R = design.replications if replications is None else replications
    L = len(design.lam) if n_lambda is None else n_lambda
    keep_total = min(design.keep_draws if keep_draws is None else keep_draws, R)
    d = replace(design, replications=R, keep_draws=keep_total)
    per = chunks_per_task(d, workers)
    # bytes of one kept draw of every cell
    per_draw = 8 * L * len(d.columns) * sum(k + 1 for k in d.degree)
    rows = _result_rows(d, L)
    # kept draws, and the audit's arrays (engine.merge: the first estimates of up to
    # AUDIT_CHUNKS chunks, chunk 0's count and five means); raw float64, stored as it is
    audit_rows = min(AUDIT_CHUNKS, max(n_chunks(R, m) for m in d.m)) + 6
    draws_bytes = len(d.m) * (keep_total + audit_rows) * per_draw
    return Footprint(
        n_tasks=sum(-(-n_chunks(R, m) // g) for m, g in per.items()),
        checkpoint_bytes=_checkpoint_bytes(d, L, per, per_draw),
        result_bytes=_result_bytes(rows, draws_bytes),
        worker_bytes=_worker_bytes(d, L, per),
        main_bytes=_main_bytes(d, L, per, per_draw, rows, draws_bytes),
        summary_rows=rows.summary,
        risk_rows=rows.risk,
        draws_bytes=draws_bytes,
    )


def _task_keep(d: Design, m: int, chunks: int) -> int:
    """Draws kept by the first task of m, of ``chunks`` chunks (the task with the most)."""
    return min(d.keep_draws, chunks * chunk_length(m), d.replications)


def _checkpoint_bytes(d: Design, L: int, per: dict[int, int], per_draw: int) -> int:
    """Every chunk's moments, every task's counts, index and frame, and the kept draws."""
    total = 0
    fixed = task_payload_bytes(d, 0, chunks=0, n_lambda=L)
    for m, g in per.items():
        c = n_chunks(d.replications, m)
        tasks = -(-c // g)
        index = checkpoint_index_bytes(d, _task_keep(d, m, g), chunks=g, n_lambda=L)
        total += c * chunk_payload_bytes(d, n_lambda=L)
        total += tasks * (fixed + index + CHECKPOINT_FRAME_BYTES) + d.keep_draws * per_draw
    return total


def _result_rows(d: Design, L: int) -> _Rows:
    M, C = len(d.m), len(d.columns)
    return _Rows(
        summary=M * L * C * sum(k + 1 for k in d.degree),
        risk=M * L * C * len(d.degree),
        # the tuning files are the monomials' alone: one row set per scaling
        tuning=2 * M * len(d.degree) * len(d.scaling),
        transfer=M * M * len(d.degree) * len(d.scaling),
    )


def _result_bytes(rows: _Rows, draws_bytes: int) -> int:
    return (
        rows.summary * SUMMARY_ROW_BYTES
        + rows.risk * RISK_ROW_BYTES
        + draws_bytes
        + rows.tuning * TUNING_ROW_BYTES
        + rows.transfer * TRANSFER_ROW_BYTES
        + SMALL_FILES_BYTES
    )


def _worker_bytes(d: Design, L: int, per: dict[int, int]) -> int:
    """A worker: the largest task (its chunks' power sums and its arrays), the largest m
    (drawing) and degree (fitting) of a chunk."""
    K = max(d.degree)
    worst = 0
    for m, g in per.items():
        n = min(g * chunk_length(m), d.replications)  # data sets of the task
        keep = _task_keep(d, m, g)
        payload = task_payload_bytes(d, keep, chunks=g, n_lambda=L)
        sums = 8 * n * (2 * K + 1 + 5 * (K + 1))  # S, E, T and T's temporaries
        piece = 4 * 8 * max(min(m, MAX_PIECE), min(PIECE_ELEMENTS, m * chunk_length(m)))
        batch = min(chunk_length(m), FIT_BATCH, n)
        fit = 0
        for k in d.degree:
            p = k + 1
            A = L * len(d.scaling)  # distinct α of one basis ≤ its cells
            numpy_path = 8 * batch * p * (A * NUMPY_FLOATS_PER_FIT + p * NUMPY_FLOATS_PER_FACTOR)
            moments = 3 * 8 * A * p * 31 + 8 * A * p * min(keep, batch)
            kept = 2 * 8 * keep * A * p  # the batches' draws and their concatenation
            fit = max(fit, numpy_path + moments + kept)
        worst = max(worst, sums + piece + payload + fit, PACK_COPIES * payload)
    return TASK_SLACK_BYTES + worst


def _main_bytes(
    d: Design, L: int, per: dict[int, int], per_draw: int, rows: _Rows, draws_bytes: int
) -> int:
    """The main process: the result just received and the one being saved, packed (the
    save thread then merges it, or loads a checkpoint to merge), the merged moments of
    every m, every kept draw, the tables."""
    largest = max(
        task_payload_bytes(d, _task_keep(d, m, g), chunks=g, n_lambda=L) for m, g in per.items()
    )
    merged = task_payload_bytes(d, 0, chunks=2, n_lambda=L)
    return (
        (1 + PACK_COPIES) * largest
        + len(d.m) * merged
        + d.keep_draws * per_draw
        + DRAW_COPIES * draws_bytes
        + rows.summary * SUMMARY_ROW_MEMORY
        + rows.risk * RISK_ROW_MEMORY
        + (rows.transfer + rows.tuning) * RISK_ROW_MEMORY
    )


# --- time --------------------------------------------------------------------------------


def _distinct_alphas(design: Design, m: int, k: int) -> int:
    """Distinct α of the identifiable cells of (m, k) in one basis, as
    :func:`study.engine.tasks.run_task` fits them (every basis fits them again); bounded by
    the number of cells on very large grids."""
    L, C = len(design.lam), len(design.scaling)
    # λ = 0 with m ≤ k is not fitted; λ is sorted and unique, so only the first can be 0
    n_ident = L - (1 if m <= k and design.lam[0] == 0 else 0)
    if len(design.m) * len(design.degree) * L * C > _EXACT_ALPHA_CELLS:
        return n_ident * C
    try:
        fm = float(m)
        lam = np.array([x for x in design.lam if design.identifiable(m, k, x)], dtype=float)
        with np.errstate(over="ignore", invalid="ignore"):
            per = {
                "none": fm * lam,
                "m": lam,
                "sqrt-m": math.sqrt(fm) * lam,
                "k": fm * lam / k,
            }
        values = np.concatenate([per[s] for s in design.scaling])
    except OverflowError:
        return n_ident * C
    return int(np.unique(values).size)


def _task_seconds(design: Design, m: int, n: int, alphas: dict[int, int]) -> float:
    """A task of n data sets of m points, with ``alphas[k]`` distinct α per degree k."""
    K = max(design.degree)
    L, C = len(design.lam), len(design.columns)
    draw = n * (
        SECONDS_PER_DATA_SET[0] + SECONDS_PER_DATA_SET[1] * K + m * point_seconds(design, K)
    )
    fit = 0.0
    for k in design.degree:
        A = alphas[k]
        if A == 0:
            continue
        if design.family == "logistic":
            a, b, c = LOGISTIC_FIT_SECONDS
            fit += len(design.basis) * n * A * (a + m * (b + c * k))
            fit += A * L * C * BOOKKEEPING_SECONDS_PER_CELL
            continue
        # each basis factorises and solves on its own
        fit += len(design.basis) * n * (FACTOR_SECONDS[k - 1] + A * ALPHA_SECONDS[k - 1])
        fit += len(design.basis) * A * BOOKKEEPING_SECONDS_PER_ALPHA
        fit += A * L * C * BOOKKEEPING_SECONDS_PER_CELL
    return TASK_SECONDS + draw + fit


def point_seconds(design: Design, K: int) -> float:
    """Modelled seconds to draw and reduce one point for the largest degree K."""
    a, b = SECONDS_PER_POINT[design.x.distribution]
    return a + b * K


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def chunk_seconds(design: Design, m: int) -> float:
    """Modelled seconds of one whole chunk of m (without the per-task cost)."""
    alphas = {k: _distinct_alphas(design, m, k) for k in design.degree}
    n = min(chunk_length(m), design.replications)
    return _task_seconds(design, m, n, alphas) - TASK_SECONDS


def chunk_costs(design: Design) -> dict[int, float]:
    """:func:`chunk_seconds` of every m of the design."""
    return {m: chunk_seconds(design, m) for m in design.m}


def run_seconds(
    design: Design, fp: Footprint, workers: int, done: dict[int, int] | None = None
) -> float:
    """Wall time of a run with ``workers`` processes: startup, the tasks, the serial tail.
    ``done``: the chunks of each m already checkpointed (a resumed run computes the rest;
    it still reads every checkpoint and writes every file)."""
    from study.engine.plan import chunks_per_task

    costs = chunk_costs(design)
    per = chunks_per_task(design, workers, costs=costs)
    done = done or {}
    total = longest = 0.0
    for m, g in per.items():
        one = costs[m]
        left = max(0, n_chunks(design.replications, m) - done.get(m, 0))
        if left:
            total += -(-left // g) * TASK_SECONDS + left * one
            longest = max(longest, TASK_SECONDS + min(g, left) * one)
    parallel = max(total / max(1, min(workers, _usable_cores())), longest)
    M, K = len(design.m), len(design.degree)
    if design.family == "logistic":
        tuning = M * K * LOGISTIC_TUNING_SECONDS_PER_M_DEGREE
    else:
        tuning = sum(TUNING_LIMIT_SECONDS.get(k, 0.0) for k in design.degree)
        tuning += (
            min(TUNING_POINTS, design.replications) * sum(design.m) * K * point_seconds(design, 1)
        )
    tail = (
        minibatch_seconds(design)
        + fp.checkpoint_bytes * READ_SECONDS_PER_BYTE
        + fp.n_tasks * READ_SECONDS_PER_FILE
        + M * K * TAIL_SECONDS_PER_M_DEGREE
        + tuning
        + (fp.summary_rows + fp.risk_rows) * TAIL_SECONDS_PER_ROW
        + fp.draws_bytes * NPZ_SECONDS_PER_BYTE
    )
    start = STARTUP_SECONDS + (WORKER_START_SECONDS if workers > 1 else 0.0)
    return start + parallel + tail


def minibatch_seconds(design: Design) -> float:
    """The minibatch experiment's runs (study.theory.minibatch: each divisor and batch
    size, B = m once, ``seeds`` runs each), at the measured cost per point and per step."""
    from study.minibatch import epochs_of

    spec = getattr(design, "minibatch", None)
    if spec is None:
        return 0.0
    total = 0.0
    for B in set(spec.batch_sizes):
        per_epoch = spec.m // B
        epochs = epochs_of(spec.m, B, spec.steps)
        runs = (1 if B == spec.m else 2) * spec.seeds
        per_step = B * MINIBATCH_SECONDS_PER_POINT + MINIBATCH_SECONDS_PER_STEP
        total += runs * epochs * per_epoch * per_step
    return total
