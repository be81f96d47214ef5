"""How the chunks of a run are grouped into tasks: by cost, longest first.

A chunk (:mod:`study.engine.streams`) is the unit of the random streams and of the merge,
so grouping chunks into tasks changes no number: it only decides how well the work spreads
over the workers. The plan aims at tasks of about TARGET_TASK_SECONDS, and at least
TASKS_PER_WORKER tasks per worker where the design has that many chunks, so that a few
expensive values of m do not serialise the run; the tasks go out longest first
(longest-processing-time order), which keeps the last task short.

A task's cost is the model of :mod:`study.engine.costs` (points drawn, data sets reduced,
factorisations and solutions per degree and α), scaled once per run by a measured speed
factor of the machine (:func:`speed_factor`). A design's ``block_size`` caps the
replications of a task (rounded down to whole chunks, at least one), and so does the size
of a task's checkpoint (MAX_TASK_PAYLOAD_BYTES).

Everything per m is a closed form (the estimate uses it before a run); only
:func:`plan_tasks` lists the tasks of the chunks still missing.
"""

from __future__ import annotations

import math
import time

import numpy as np

from study.design import Design
from study.engine.costs import PROXY_SECONDS_PER_POINT, chunk_costs, chunk_payload_bytes
from study.engine.streams import chunk_length, n_chunks
from study.engine.tasks import Task

# A task of about this long: long enough that dispatch and the checkpoint's write
# (milliseconds) do not count, short enough to balance and to lose little on an interrupt.
TARGET_TASK_SECONDS = 1.0
# At least this many tasks per worker where the design has the chunks.
TASKS_PER_WORKER = 4
# The arrays of one task's chunks stay below this. The run's process holds a few
# task results at once (one arriving, one being saved, one being merged), so this bounds
# its memory whatever the replications: on bench-fit (9 MiB tasks at 20,000 replications,
# 17.5 MiB at 200,000) the whole command's peak was 662 MiB and 714 to 824 MiB with a 64
# MiB cap, 674 MiB and 689 to 714 MiB with this one, at the same wall time (2 jobs; one
# run at 20,000, three at 200,000).
MAX_TASK_PAYLOAD_BYTES = 8 << 20
# At most this many task files in a results folder (study.engine.budget refuses beyond).
MAX_TASK_FILES = 10_000


def chunks_per_task(
    design: Design, workers: int = 1, speed: float = 1.0, *, costs: dict | None = None
) -> dict[int, int]:
    """The chunks a task of each m holds (the last task of a run of chunks may hold fewer).

    ``speed``: measured seconds per modelled second (:func:`speed_factor`); ``costs``: the
    design's :func:`~study.engine.costs.chunk_costs`, if already computed.
    """
    chunks = {m: n_chunks(design.replications_of(m), m) for m in design.m}
    costs = chunk_costs(design) if costs is None else costs
    cost = {m: speed * costs[m] for m in design.m}
    total = sum(chunks[m] * cost[m] for m in design.m)
    target = min(TARGET_TASK_SECONDS, total / (TASKS_PER_WORKER * max(1, workers)))
    cap_payload = largest_task_chunks(design)

    def cap(m: int) -> int:
        limit = min(cap_payload, chunks[m])
        if design.block_size is not None:
            limit = min(limit, max(1, design.block_size // chunk_length(m)))
        return limit

    per = {m: max(1, min(cap(m), _fit(target, cost[m]))) for m in design.m}
    # never more task files than allowed, if larger tasks can avoid it
    while sum(-(-chunks[m] // g) for m, g in per.items()) > MAX_TASK_FILES:
        grown = {m: min(cap(m), 2 * g) for m, g in per.items()}
        if grown == per:
            break
        per = grown
    return per


def largest_task_chunks(design: Design) -> int:
    """The most chunks a task may hold for their arrays to stay within
    MAX_TASK_PAYLOAD_BYTES; at least one. The draws a task keeps are not counted: only the
    first tasks of each m keep any (at most ``keep_draws`` per cell), and counting them in
    every task would shrink all the others."""
    return max(1, MAX_TASK_PAYLOAD_BYTES // chunk_payload_bytes(design))


def _fit(target: float, cost: float) -> int:
    """Chunks of ``cost`` seconds in a task of ``target`` seconds (at least 1)."""
    return max(1, math.floor(target / cost)) if cost > 0 else 1


def n_tasks(design: Design, workers: int = 1, *, costs: dict | None = None) -> int:
    """Tasks of a whole run (no task listed)."""
    per = chunks_per_task(design, workers, costs=costs)
    return sum(-(-n_chunks(design.replications_of(m), m) // g) for m, g in per.items())


def missing_chunks(design: Design, done: list[Task]) -> dict[int, list[tuple[int, int]]]:
    """Per m, the runs [first, stop) of chunks that no task of ``done`` covers."""
    out = {}
    for m in design.m:
        runs, at = [], 0
        for t in sorted(t for t in done if t.m == m):
            if t.first > at:
                runs.append((at, t.first))
            at = max(at, t.stop)
        total = n_chunks(design.replications_of(m), m)
        if at < total:
            runs.append((at, total))
        out[m] = runs
    return out


def plan_tasks(
    design: Design, done: list[Task], workers: int = 1, speed: float = 1.0
) -> list[Task]:
    """The tasks of every chunk that ``done`` does not cover, longest first.

    Each run of missing chunks is cut into near-equal tasks of at most
    :func:`chunks_per_task` chunks; ties in cost go to the larger m, then the earlier chunk.
    """
    costs = chunk_costs(design)
    per = chunks_per_task(design, workers, speed, costs=costs)
    tasks = []
    for m, runs in missing_chunks(design, done).items():
        for first, stop in runs:
            n = stop - first
            parts = -(-n // per[m])
            bounds = [first + (n * i) // parts for i in range(parts + 1)]
            tasks += [Task(m, a, b) for a, b in zip(bounds, bounds[1:], strict=False)]
    return sorted(tasks, key=lambda t: (-t.n_chunks * costs[t.m], -t.m, t.first))


def speed_factor() -> float:
    """Seconds this machine takes per second of the cost model, measured once per run on a
    proxy of the model's dominant unit (drawing 65,536 uniform points and their power sums
    in NumPy; about 10 ms, without loading the compiled kernel), within [¼, 4]."""
    from study.design import XDistribution
    from study.engine.streams import draw_u
    from study.fit import power_sums

    rng = np.random.default_rng(0)
    x = XDistribution("uniform", low=-1.0, high=1.0)
    shape = (16, 4096)
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        power_sums(draw_u(rng, x, shape), None, 3)
        best = min(best, time.perf_counter() - started)
    modelled = shape[0] * shape[1] * PROXY_SECONDS_PER_POINT
    return float(np.clip(best / modelled, 0.25, 4.0))
