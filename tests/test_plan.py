"""How chunks are grouped into tasks: every chunk once, by cost, longest first."""

import tomllib

import pytest

from study.design import design_from_dict, load_design
from study.engine import plan
from study.engine.costs import chunk_costs, chunk_payload_bytes
from study.engine.plan import chunks_per_task, missing_chunks, plan_tasks, speed_factor
from study.engine.streams import chunk_length, chunk_span, n_chunks
from study.engine.tasks import Task

from conftest import ROOT, small_design


def test_chunk_lengths_depend_on_m_alone():
    # 256 data sets while 256·m ≤ 2²² points, then halved until it fits, at least one
    assert [chunk_length(m) for m in (1, 3, 16_384)] == [256, 256, 256]
    assert [chunk_length(m) for m in (16_385, 20_000, 100_000)] == [128, 128, 32]
    assert [chunk_length(m) for m in (1 << 21, (1 << 21) + 1, 10**9)] == [2, 1, 1]
    # 700 replications: chunks of 256, 256 and 188
    assert n_chunks(700, 10) == 3
    assert [chunk_span(700, 10, c) for c in range(3)] == [(0, 256), (256, 512), (512, 700)]
    assert n_chunks(700, 100_000) == 22 and chunk_span(700, 100_000, 21) == (672, 700)


def _covers_once(design, tasks, done=()):
    for m in design.m:
        spans = sorted((t.first, t.stop) for t in [*tasks, *done] if t.m == m)
        at = 0
        for first, stop in spans:
            assert first == at and stop > first, (m, spans)
            at = stop
        assert at == n_chunks(design.replications, m)


@pytest.mark.parametrize("workers", [1, 2, 7])
def test_every_chunk_is_in_one_task_and_the_longest_go_first(workers):
    design = load_design(ROOT / "simulations" / "bench-data7.toml")
    tasks = plan_tasks(design, [], workers)
    _covers_once(design, tasks)
    costs = chunk_costs(design)
    seconds = [t.n_chunks * costs[t.m] for t in tasks]
    assert seconds == sorted(seconds, reverse=True)  # longest-processing-time order
    # the expensive m = 100,000 is cut small enough to spread: at least 4 tasks per worker
    assert len(tasks) >= 4 * workers
    total = sum(n_chunks(design.replications, m) * costs[m] for m in design.m)
    target = min(plan.TARGET_TASK_SECONDS, total / (4 * workers))
    assert max(seconds) <= target + max(costs.values())


def test_a_resume_plans_only_the_missing_chunks():
    design = design_from_dict(small_design(replications=2000, **{"grid.m": [8, 40]}))
    assert n_chunks(2000, 8) == 8
    done = [Task(8, 0, 2), Task(8, 5, 6), Task(40, 0, 8)]
    assert missing_chunks(design, done) == {8: [(2, 5), (6, 8)], 40: []}
    tasks = plan_tasks(design, done, workers=2)
    assert all(t.m == 8 for t in tasks)
    _covers_once(design, tasks, done)
    assert plan_tasks(design, [*done, *tasks], workers=2) == []


def test_block_size_caps_tasks_and_never_goes_below_a_chunk():
    raw = small_design(replications=3000, **{"grid.m": [8, 20_000]})
    for block_size, expected in ((1, {8: 1, 20_000: 1}), (600, {8: 2, 20_000: 4})):
        design = design_from_dict({**raw, "block_size": block_size})
        per = chunks_per_task(design, workers=1)
        assert {m: min(per[m], expected[m]) for m in per} == per  # never above the cap
        tasks = plan_tasks(design, [], workers=1)
        _covers_once(design, tasks)
        assert max(t.n_chunks * chunk_length(t.m) for t in tasks) <= max(block_size, 256)


def test_the_speed_factor_is_a_bounded_measurement():
    factor = speed_factor()
    assert 0.25 <= factor <= 4.0
    # a slower machine makes smaller tasks, a faster one larger (never fewer than one chunk)
    design = load_design(ROOT / "simulations" / "bench-fit.toml")
    slow = chunks_per_task(design, workers=2, speed=4.0)
    fast = chunks_per_task(design, workers=2, speed=0.25)
    assert all(1 <= slow[m] <= fast[m] for m in design.m)
    assert any(slow[m] < fast[m] for m in design.m)


def test_a_tasks_chunks_stay_under_the_cap_whatever_the_replications(monkeypatch):
    """Tasks grow with the replications towards a second of work until their chunks' arrays
    reach MAX_TASK_PAYLOAD_BYTES (the run's process holds a few results at once), and never
    go beyond: bench-fit's chunks hold 315 KiB of co-moments each. The draws a design keeps
    (only the first tasks of each m hold them) do not shrink the other tasks."""
    raw = tomllib.loads((ROOT / "simulations" / "bench-fit.toml").read_text())

    def largest(replications, keep=0):
        raw_now = {**raw, "replications": replications, "output": {"keep_draws": keep}}
        design = design_from_dict(raw_now)
        tasks = plan_tasks(design, [], workers=2, speed=1.0)
        _covers_once(design, tasks)
        return max(t.n_chunks for t in tasks) * chunk_payload_bytes(design)

    cap = plan.MAX_TASK_PAYLOAD_BYTES
    assert largest(2_000) < cap / 4  # too little work for tasks of a second
    assert cap * 0.9 < largest(200_000) <= cap
    assert largest(2_000_000) <= cap
    assert largest(200_000, keep=2_000) == largest(200_000)
    monkeypatch.setattr(plan, "MAX_TASK_PAYLOAD_BYTES", 64 << 20)
    assert largest(200_000) > cap  # it is the cap that stops them
