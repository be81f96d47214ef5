"""The engine against independent computations on the same random streams."""

import json
from pathlib import Path

import mpmath
import numpy as np
import pandas as pd
import pytest

from study import fit_polynomial_ridge
from study.design import design_from_dict
from study.engine.store import CheckpointStore
from study.engine.streams import chunk_power_sums, draw_chunk_data, n_chunks
from study.engine.tasks import Task, TaskResult, run_task
from study.files import load_npz
from study.scaling import alpha
from study.steps import simulate

from conftest import ROOT, run_cli, small_design, write_design


def _run(tmp_path, raw, name="run", **kwargs):
    design = design_from_dict(raw)
    out = tmp_path / name
    simulate(design, out, progress=False, **kwargs)
    return design, out


def _files(out):
    return {f: (out / f).read_bytes() for f in ("summary.csv", "risk.csv", "draws.npz")}


def _cell_rows(summary, m, k, lam, scaling):
    """The summary rows of one cell, by coefficient."""
    at = (summary.m == m) & (summary.degree == k) & (summary["lambda"] == lam)
    return summary[at & (summary.scaling == scaling)].sort_values("coef")


def test_summary_equals_direct_numpy_on_all_draws(tmp_path):
    """With every draw kept, each summary column is a plain NumPy computation on them."""
    raw = small_design(**{"output.keep_draws": 70})
    design, out = _run(tmp_path, raw)
    summary = pd.read_csv(out / "summary.csv")
    draws = load_npz(out / "draws.npz")
    R = design.replications
    checked = 0
    for i_m, m in enumerate(design.m):
        for k in design.degree:
            coefs = draws[f"coef_k{k}"][i_m]  # (L, C, R, k+1)
            for i_l, lam in enumerate(design.lam):
                for i_s, scaling in enumerate(design.scaling):
                    if not design.identifiable(m, k, lam):
                        continue
                    w = coefs[i_l, i_s]
                    true = design.true_coefficients_of(k)
                    rows = _cell_rows(summary, m, k, lam, scaling)
                    err = w - true
                    dev = w - w.mean(axis=0)
                    S2 = w.var(axis=0, ddof=1)
                    m2 = (dev**2).mean(axis=0)
                    m4 = (dev**4).mean(axis=0)
                    mse = (err**2).mean(axis=0)
                    expected = {
                        "n": np.full(k + 1, R),
                        "mean": w.mean(axis=0),
                        "bias": w.mean(axis=0) - true,
                        "bias_mcse": np.sqrt(S2 / R),
                        "var": S2,
                        "var_mcse": np.sqrt((m4 - m2**2) / R),
                        "sd": np.sqrt(S2),
                        "sd_mcse": np.sqrt((m4 - m2**2) / R) / (2 * np.sqrt(S2)),
                        "mse": mse,
                        "mse_mcse": np.sqrt(((err**2 - mse) ** 2).sum(axis=0) / (R * (R - 1))),
                        "kurtosis": m4 / m2**2 - 3,
                        "p_gt_1": (np.abs(err) > 1).mean(axis=0),
                        "p_gt_10": (np.abs(err) > 10).mean(axis=0),
                        "p_gt_100": (np.abs(err) > 100).mean(axis=0),
                    }
                    for col, value in expected.items():
                        np.testing.assert_allclose(
                            rows[col].to_numpy(), value, rtol=1e-7, atol=1e-12, err_msg=col
                        )
                    checked += 1
    assert checked > 50


def test_tail_shares_count_every_replication_across_chunks_and_tasks(tmp_path):
    """p_gt_* over 300 replications (two chunks, one of 44 data sets, in tasks of one
    chunk), against the kept draws of all 300: the counts are summed over chunks and
    tasks, and some cells have tails in every threshold."""
    raw = small_design(
        **{"replications": 300, "block_size": 256, "output.keep_draws": 300},
        **{"grid.m": [4, 30], "grid.degree": [1, 3], "grid.lambda": [0.0, 0.5]},
        **{"dgp.noise_sd": 2.5},
    )
    design, out = _run(tmp_path, raw)
    summary = pd.read_csv(out / "summary.csv")
    draws = load_npz(out / "draws.npz")
    seen = set()
    for i_m, m in enumerate(design.m):
        for k in design.degree:
            for i_l, lam in enumerate(design.lam):
                if not design.identifiable(m, k, lam):
                    continue
                for i_s, scaling in enumerate(design.scaling):
                    err = draws[f"coef_k{k}"][i_m][i_l, i_s] - design.true_coefficients_of(k)
                    rows = _cell_rows(summary, m, k, lam, scaling)
                    for t in (1, 10, 100):
                        share = (np.abs(err) > t).mean(axis=0)
                        np.testing.assert_array_equal(rows[f"p_gt_{t}"].to_numpy(), share)
                        seen |= {t} if share.max() > 0 else set()
    assert seen == {1, 10, 100}


@pytest.mark.parametrize("low, high", [(-1.0, 1.0), (0.0, 10.0), (2.0, 3.0)])
def test_engine_equals_a_loop_over_fit_polynomial_ridge(tmp_path, low, high):
    """Same random streams, fitted one data set at a time with the public function: the
    pencil path ([−1, 1], [0, 10]) and the direct path ([2, 3]) of the engine, m ≤ k included.
    (With the plain noise draw, which has raw data; the sufficient draw is checked against
    it in distribution below.)"""
    raw = small_design(
        **{"output.keep_draws": 70, "dgp.x": {"distribution": "uniform", "low": low, "high": high}}
    )
    design, out = _run(tmp_path, raw, noise_draw="plain")
    draws = load_npz(out / "draws.npz")
    risk = pd.read_csv(out / "risk.csv")
    for i_m, m in enumerate(design.m):
        data = [draw_chunk_data(design, m, c) for c in range(n_chunks(design.replications, m))]
        x = np.concatenate([d[0] for d in data])
        y = np.concatenate([d[1] for d in data])
        for k in design.degree:
            for i_l, lam in enumerate(design.lam):
                for i_s, scaling in enumerate(design.scaling):
                    if not design.identifiable(m, k, lam):
                        assert np.isnan(draws[f"coef_k{k}"][i_m, i_l, i_s]).all()
                        continue
                    loop = np.array(
                        [
                            fit_polynomial_ridge(xi, yi, degree=k, lam=lam, scaling=scaling)
                            for xi, yi in zip(x, y, strict=True)
                        ]
                    )
                    engine = draws[f"coef_k{k}"][i_m, i_l, i_s]
                    scale = np.abs(loop).max(axis=0) + 1e-300
                    # m = k + 1 interpolates: the fit is as ill-conditioned as the design
                    tol = 1e-5 if m <= k + 1 and lam == 0 else 1e-8
                    assert np.all(np.abs(engine - loop) <= tol * scale)
                    # the prediction risk: mean over replications of ∫(f̂ − f)² dx / 10
                    true = design.true_coefficients_of(k)
                    grid = np.linspace(low, high, 4001)
                    curves = np.polynomial.polynomial.polyval(grid, (loop - true).T)
                    r_loop = np.trapezoid(curves**2, grid, axis=-1) / (high - low)
                    row = risk[
                        (risk.m == m)
                        & (risk.degree == k)
                        & (risk["lambda"] == lam)
                        & (risk.scaling == scaling)
                    ]
                    np.testing.assert_allclose(row.risk.item(), r_loop.mean(), rtol=1e-4)


@pytest.mark.parametrize(
    "x",
    [
        {"distribution": "uniform", "low": 0.0, "high": 10.0},
        {"distribution": "normal", "mean": 3.0, "sd": 2.0},
    ],
)
def test_degree_ten_against_high_precision(x):
    """Degree 10 away from [−1, 1]: engine fits against 50-digit arithmetic."""
    changes = {"grid.m": [200], "grid.degree": [10], "grid.lambda": [0.0, 1.0], "dgp.x": x}
    raw = small_design(**changes, replications=4, **{"output.keep_draws": 4})
    design = design_from_dict(raw)
    result = run_task(design, Task(200, 0, 1), noise_draw="plain")
    xs, ys = draw_chunk_data(design, 200, 0)
    mpmath.mp.dps = 50
    for i_l, lam in enumerate(design.lam):
        for i_s, scaling in enumerate(design.scaling):
            a = alpha(lam, m=200, degree=10, scaling=scaling)
            for r in range(4):
                phi = mpmath.matrix(np.vander(xs[r], 11, increasing=True).tolist())
                A = phi.T * phi + mpmath.mpf(a) * mpmath.diag([0] + [1] * 10)
                ref = np.array(
                    [float(v) for v in mpmath.lu_solve(A, phi.T * mpmath.matrix(ys[r].tolist()))]
                )
                got = result.degrees[10].draws[i_l, i_s, r]
                col = np.linalg.norm(np.vander(xs[r], 11, increasing=True), axis=0)
                err = np.linalg.norm(col * (got - ref)) / np.linalg.norm(col * ref)
                assert err < 1e-7, (lam, scaling, r, err)


def test_bit_identical_for_block_sizes_jobs_and_backends(tmp_path, monkeypatch):
    """700 replications (chunks of 256, 256 and 188) grouped into tasks of one chunk, two,
    three or by cost, run by 1 or 2 processes or threads: the same bytes, draws included."""
    raw = small_design(replications=700, **{"dgp.noise_sd": 0.6, "output.keep_draws": 300})
    runs = {}
    for block_size in (1, 600, None):
        for jobs, backend in ((1, "loky"), (2, "loky"), (2, "threading")):
            name = f"{block_size}-{jobs}-{backend}"
            _, out = _run(
                tmp_path, {**raw, "block_size": block_size}, name, jobs=jobs, backend=backend
            )
            runs[name] = out
    # one task per m: as many chunks as the plan may put in a task
    monkeypatch.setattr("study.engine.plan.TASKS_PER_WORKER", 1 / 1000)
    _, runs["whole"] = _run(tmp_path, {**raw, "block_size": None}, "whole", jobs=2)
    sizes = {
        name: sorted(p.name for p in (out / "checkpoints").glob("*.ckpt"))
        for name, out in runs.items()
    }
    assert len({tuple(v) for v in sizes.values()}) >= 3  # the work was cut differently
    assert "m40-c0-1.ckpt" in sizes["1-1-loky"] and "m40-c1-2.ckpt" in sizes["1-1-loky"]
    assert "m40-c0-3.ckpt" in sizes["whole"]
    first = _files(runs["1-1-loky"]) | {"fits.csv": (runs["1-1-loky"] / "fits.csv").read_bytes()}
    for out in runs.values():
        assert _files(out) | {"fits.csv": (out / "fits.csv").read_bytes()} == first


def test_piece_size_does_not_change_results(tmp_path, monkeypatch):
    raw = small_design()
    _, a = _run(tmp_path, raw, "a")
    monkeypatch.setattr("study.engine.streams.PIECE_ELEMENTS", 7)
    _, b = _run(tmp_path, raw, "b")
    assert _files(a) == _files(b)


def test_adding_an_m_leaves_other_cells_unchanged(tmp_path):
    _, a = _run(tmp_path, small_design(**{"grid.m": [8, 40]}), "a")
    _, b = _run(tmp_path, small_design(**{"grid.m": [5, 8, 40, 100]}), "b")
    for f in ("summary.csv", "risk.csv"):
        fa = pd.read_csv(a / f)
        fb = pd.read_csv(b / f)
        fb = fb[fb.m.isin([8, 40])].reset_index(drop=True)
        pd.testing.assert_frame_equal(fa, fb, check_exact=True)


def test_resume_after_losing_tasks_is_byte_identical(tmp_path):
    """Tasks of one chunk each, every other one lost, resumed by a run that groups the
    missing chunks by cost instead (block_size is not part of the design's identity)."""
    raw = small_design(replications=700, block_size=1, **{"output.keep_draws": 300})
    design, full = _run(tmp_path, raw, "full")
    _, partial = _run(tmp_path, raw, "partial")
    lost = sorted((partial / "checkpoints").glob("*.ckpt"))[1::2]
    for path in lost:
        path.unlink()
    for f in ("summary.csv", "risk.csv", "draws.npz"):
        (partial / f).unlink()
    regrouped = design_from_dict({**raw, "block_size": None})
    assert regrouped.hash == design.hash
    simulate(regrouped, partial, progress=False)
    assert _files(full) == _files(partial)
    run = json.loads((partial / "manifest.json").read_text())["run"]
    assert run["tasks_resumed"] == 9 - len(lost)  # 3 values of m × 3 chunks
    assert run["tasks_computed_this_run"] >= 1
    # every chunk is in exactly one checkpoint
    names = sorted(p.name for p in (partial / "checkpoints").glob("*.ckpt"))
    for m in design.m:
        spans = sorted(
            tuple(int(v) for v in n[len(f"m{m}-c") : -5].split("-"))
            for n in names
            if n.startswith(f"m{m}-")
        )
        assert spans[0][0] == 0 and spans[-1][1] == 3
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))


def test_overlapping_or_foreign_checkpoints_are_set_aside(tmp_path):
    """A checkpoint whose chunks another one covers, or beyond the design's chunks, is moved
    to rejected/ and its chunks computed again: the results are those of a clean run."""
    raw = small_design(replications=700, block_size=1, **{"grid.m": [8, 40]})
    design, clean = _run(tmp_path, raw, "clean")
    _, out = _run(tmp_path, raw, "out")
    ck = out / "checkpoints"
    # a checkpoint of chunks 0-1 of m = 8 beside those of chunk 0 and chunk 1: the longer
    # one is kept
    store = CheckpointStore(out, design)
    store.save(Task(8, 0, 2), run_task(design, Task(8, 0, 2)))
    (ck / "m40-c0-1.ckpt").rename(ck / "m40-c3-4.ckpt")  # beyond the 3 chunks, misnamed
    rejected = []
    done = store.done(on_reject=lambda path, moved, reason: rejected.append((path.name, reason)))
    assert sorted(t for t in done if t.m == 8) == [Task(8, 0, 2), Task(8, 2, 3)]
    assert sorted(rejected) == [
        ("m40-c3-4.ckpt", "chunks 3–3 outside the design's chunks"),
        ("m8-c0-1.ckpt", "its chunks overlap those of another checkpoint"),
        ("m8-c1-2.ckpt", "its chunks overlap those of another checkpoint"),
    ]
    assert (ck / "rejected" / "m8-c1-2.ckpt").exists()
    # a checkpoint named as another task than it holds
    (ck / "m40-c1-2.ckpt").rename(ck / "m40-c0-1.ckpt")
    rejected.clear()
    store.done(on_reject=lambda path, moved, reason: rejected.append((path.name, reason)))
    assert rejected == [("m40-c0-1.ckpt", "of another task (m = 40, chunk 1)")]
    # a name study would not write (a leading zero) is set aside, not read under another
    (ck / "m8-c2-3.ckpt").rename(ck / "m08-c2-3.ckpt")
    rejected.clear()
    store.done(on_reject=lambda path, moved, reason: rejected.append((path.name, reason)))
    assert rejected == [("m08-c2-3.ckpt", "not named as study names it (m8-c2-3.ckpt)")]
    (out / "summary.csv").unlink()
    simulate(design, out, progress=False)
    assert _files(clean) == _files(out)


def test_kill_9_then_resume_is_byte_identical(tmp_path):
    """A real process killed with SIGKILL mid-run, then the same command again."""
    import signal
    import subprocess
    import sys
    import time

    # 12 chunks of each m, one per task
    raw = small_design(**{"replications": 3000, "block_size": 256, "grid.m": [400, 2000]})
    path = write_design(tmp_path / "d.toml", raw)
    ref = tmp_path / "ref"
    run_cli("simulate", path, "--out", ref, "--quiet", check=True)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "study", "simulate", str(path), "--out", str(out), "--quiet"],
        start_new_session=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline and len(list(out.glob("checkpoints/m*.ckpt"))) < 3:
        time.sleep(0.01)
    os_killpg = __import__("os").killpg
    os_killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    n_saved = len(list(out.glob("checkpoints/m*.ckpt")))
    assert 0 < n_saved < 24, "the run must be interrupted part-way"
    assert not (out / "summary.csv").exists()
    proc = run_cli("simulate", path, "--out", out, "--quiet", check=True)
    assert "resumed" in proc.stdout
    assert _files(ref) == _files(out)


def _interrupted_at_the_second_task(monkeypatch):
    """Make the engine's second task raise KeyboardInterrupt (with one job the tasks run in
    this process); the tasks started are listed in the list returned."""
    from study.engine import worker

    started = []
    original = worker.task

    def task(*args):
        started.append(args[1])
        if len(started) == 2:
            raise KeyboardInterrupt
        return original(*args)

    monkeypatch.setattr(worker, "task", task)
    return started


def _slow_saves(monkeypatch):
    """Make every checkpoint save take half a second longer (still saving when the next
    task is interrupted); the names of the threads that saved are listed in the list
    returned."""
    import threading
    import time

    saved_in = []
    original = CheckpointStore.save

    def slow_save(self, task, result):
        saved_in.append(threading.current_thread().name)
        time.sleep(0.5)
        original(self, task, result)

    monkeypatch.setattr(CheckpointStore, "save", slow_save)
    return saved_in


def test_an_interrupt_waits_for_the_checkpoint_being_saved(tmp_path, monkeypatch):
    """Checkpoints are saved in a thread beside the run; an interrupt in the next task
    still leaves the finished task's checkpoint whole on disk when the run ends."""
    from study.engine.run import simulate as engine_simulate

    design = design_from_dict(small_design(replications=300, **{"grid.m": [8, 20]}))
    saved_in = _slow_saves(monkeypatch)
    started = _interrupted_at_the_second_task(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        engine_simulate(design, tmp_path / "out", jobs=1, progress=False)
    assert len(started) == 2 and saved_in == ["study-save_0"]
    monkeypatch.undo()
    assert CheckpointStore(tmp_path / "out", design).done() == started[:1]  # whole, verified


def test_a_failed_save_does_not_hide_the_interrupt_that_ends_the_run(tmp_path, monkeypatch):
    """The run ends on the interrupt (on which the command exits 130 with its one line),
    the failed save noted on it: the checkpoint is simply missing, and a resume computes
    its chunks again."""
    import errno
    import time

    from study.engine.run import simulate as engine_simulate

    design = design_from_dict(small_design(replications=300, **{"grid.m": [8, 20]}))

    def slow_full(self, task, result):
        time.sleep(0.3)
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path(task)))

    monkeypatch.setattr(CheckpointStore, "save", slow_full)
    _interrupted_at_the_second_task(monkeypatch)
    with pytest.raises(KeyboardInterrupt) as info:
        engine_simulate(design, tmp_path / "out", jobs=1, progress=False)
    assert any("No space left on device" in note for note in info.value.__notes__)


def test_a_second_interrupt_still_waits_for_the_save_in_progress(tmp_path, monkeypatch):
    """Ctrl-C pressed again while the run waits for its last save: the wait goes on, so
    the folder's lock is not released while a checkpoint is half written."""
    from study.engine.run import _Saver

    design = design_from_dict(small_design(replications=300, **{"grid.m": [8]}))
    task = Task(8, 0, 1)
    store = CheckpointStore(tmp_path, design)
    _slow_saves(monkeypatch)
    saver = _Saver(store)
    saver.save(task, run_task(design, task))
    real_shutdown = saver._pool.shutdown
    interrupts = []

    def shutdown(wait=True):
        if not interrupts:
            interrupts.append(1)
            raise KeyboardInterrupt  # as if pressed during the wait
        real_shutdown(wait=wait)

    saver._pool.shutdown = shutdown
    saver.close()
    assert interrupts == [1]
    monkeypatch.undo()
    assert store.done() == [task]  # whole when close returned


def test_a_run_merges_its_checkpoints_beside_the_tasks(tmp_path, monkeypatch):
    """The chunks are merged in the save thread as the results come back: the summaries at
    the end load no checkpoint, and give the numbers of a run that merged every checkpoint
    afterwards (the path of `study theory` and of [precision] rounds)."""
    import threading

    from study.engine import run as run_module
    from study.engine.run import simulate as engine_simulate

    raw = small_design(replications=900, block_size=256, **{"grid.m": [8, 20]})
    design = design_from_dict(raw)
    loaded_in = []
    original = CheckpointStore.load

    def load(self, task):
        loaded_in.append(threading.current_thread().name)
        return original(self, task)

    monkeypatch.setattr(CheckpointStore, "load", load)
    engine_simulate(design, tmp_path / "running", jobs=1, progress=False)
    assert set(loaded_in) <= {"study-save_0"}
    monkeypatch.setattr(run_module, "RunningMerge", lambda *args: None)
    engine_simulate(design, tmp_path / "after", jobs=1, progress=False)
    assert "MainThread" in loaded_in
    assert _files(tmp_path / "running") == _files(tmp_path / "after")


def test_freed_memory_goes_back_to_the_system_before_the_results_are_written(
    tmp_path, monkeypatch
):
    """Memory freed between live blocks (as the task results of a run leave it) is
    returned to the system, which glibc does not do by itself, and a run does so before it
    builds its results' tables, the peak of its process."""
    import os

    from study.engine import run as run_module

    def resident() -> int:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")

    if "LD_PRELOAD" in os.environ or not run_module.return_freed_memory():
        pytest.skip("malloc is not glibc's here, or has no malloc_trim")
    start = resident()
    # 240 MB in blocks from malloc's heap, written (so resident), every tenth kept: the
    # others leave holes between live blocks, which glibc keeps, not a free top it trims
    blocks = [b"\x01" * 60_000 for _ in range(4000)]
    grown = resident() - start
    kept = blocks[::10]
    del blocks
    before = resident()
    assert run_module.return_freed_memory()
    assert grown > 200e6 and before - resident() > 0.6 * grown, (grown, before, resident())
    del kept

    order = []
    trim, summarise = run_module.return_freed_memory, run_module.summarise
    monkeypatch.setattr(run_module, "return_freed_memory", lambda: order.append(0) or trim())
    monkeypatch.setattr(
        run_module, "summarise", lambda *a, **k: order.append(1) or summarise(*a, **k)
    )
    design = design_from_dict(small_design(replications=300, **{"grid.m": [8]}))
    run_module.simulate(design, tmp_path / "out", jobs=1, progress=False)
    assert order == [0, 1]


def test_the_theory_pieces_follow_the_tasks_and_take_their_first_designs(monkeypatch, tmp_path):
    """A run sends the pieces marked ``before_tasks`` (the minibatch experiment, longer than
    any task) first, then the tasks, then the theory of each degree, which then finds the
    tuning's designs of every simulated m among the power sums the tasks drew: it draws
    only those of the other m it looks at (CURVE_MS)."""
    from study.engine import streams, worker
    from study.engine.run import simulate as engine_simulate
    from study.theory import step

    raw = small_design(replications=300, **{"grid.m": [8, 20], "grid.degree": [1, 3]})
    design = design_from_dict(raw)
    order, drawn_in_pieces = [], []
    real_task, real_piece, real_pieces = worker.task, worker.piece, streams.chunk_pieces

    def task(design, task, *args):
        order.append(("task", task.m))
        return real_task(design, task, *args)

    def piece(i, fn, args):
        order.append(("piece", fn.__name__))
        return real_piece(i, fn, args)

    def chunk_pieces(design, m, chunk, **kw):
        if order and order[-1][0] == "piece":
            drawn_in_pieces.append(m)
        return real_pieces(design, m, chunk, **kw)

    def long_piece(design):
        return {}

    long_piece.before_tasks = True

    def after(design, summary, risk, computed):
        return step.extend(design, summary, risk, computed=computed[1:])

    after.pieces = lambda design: [(long_piece, (design,)), *step.pieces(design)]
    monkeypatch.setattr(worker, "task", task)
    monkeypatch.setattr(worker, "piece", piece)
    monkeypatch.setattr(streams, "chunk_pieces", chunk_pieces)
    engine_simulate(design, tmp_path / "out", jobs=1, progress=False, after=after)
    kinds = [kind for kind, _ in order]
    assert order[0] == ("piece", "long_piece")
    assert kinds == ["piece"] + ["task"] * (len(order) - 3) + ["piece", "piece"]
    assert [name for _, name in order[-2:]] == ["degree_piece", "degree_piece"]
    assert drawn_in_pieces and set(drawn_in_pieces).isdisjoint(design.m)
    assert (tmp_path / "out" / "tuning.csv").exists()


def test_a_failed_checkpoint_save_ends_the_run_with_its_error(tmp_path, monkeypatch):
    import errno

    from study.engine.run import simulate as engine_simulate

    design = design_from_dict(small_design(replications=300, **{"grid.m": [8, 20]}))

    def full(self, task, result):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path(task)))

    monkeypatch.setattr(CheckpointStore, "save", full)
    with pytest.raises(OSError) as info:
        engine_simulate(design, tmp_path / "out", jobs=1, progress=False)
    assert info.value.errno == errno.ENOSPC and info.value.filename.endswith(".ckpt")
    assert not (tmp_path / "out" / "summary.csv").exists()


def test_not_identifiable_cells_are_reported(smoke_results):
    summary = pd.read_csv(smoke_results / "summary.csv")
    bad = summary[(summary["lambda"] == 0) & (summary.m <= summary.degree)]
    assert len(bad) > 0
    assert (bad.status == "not identifiable").all()
    assert (bad.n == 0).all() and bad.bias.isna().all()
    good = summary.drop(bad.index)
    assert (good.status == "ok").all() and good.bias.notna().all()


def test_smoke_results_have_the_documented_columns(smoke_results):
    summary = pd.read_csv(smoke_results / "summary.csv")
    assert list(summary.columns[:18]) == (
        "m degree lambda scaling basis alpha coef true n mean bias bias_mcse var var_mcse sd "
        "sd_mcse mse mse_mcse".split()
    )
    assert set(summary.basis) == {"monomial"}
    risk = pd.read_csv(smoke_results / "risk.csv")
    assert list(risk.columns[:10]) == (
        "m degree lambda scaling basis alpha n risk risk_mcse n_failed".split()
    )
    manifest = json.loads((smoke_results / "manifest.json").read_text())
    assert manifest["design"]["name"] == "smoke" and manifest["replications"] == 400
    assert (ROOT / "simulations" / "default.toml").exists()


@pytest.mark.parametrize(("m", "degree"), [(5, 7), (8, 3), (40, 5), (300, 2)])
def test_all_alpha_pencil_equals_per_alpha_solves(m, degree):
    """The optimised path (one shifted factorisation for every α) against a direct solve of
    (G + αP) per α, on the same data: every per-replication quantity."""
    from study.basis import hankel_index
    from study.conditional import quantities
    from study.engine.tasks import alpha_grid

    raw = small_design(
        **{"grid.m": [m], "grid.degree": [degree], "grid.lambda": [0.0, 0.003, 0.1, 1.0, 30.0]}
    )
    design = design_from_dict(raw)
    power_sums, T = chunk_power_sums(design, m, 0, degree)
    G, b = power_sums[:, hankel_index(degree)], T[:, : degree + 1]
    basis = design.standard_basis(degree)
    alphas = np.unique(alpha_grid(design, m, degree))
    if m <= degree:
        alphas = alphas[alphas > 0]
    fast = quantities(G, b, basis, alphas, design.noise_sd, solver="pencil")
    slow = quantities(G, b, basis, alphas, design.noise_sd, solver="direct")
    for i in range(3):
        ref = slow[i]
        # relative to each quantity's scale over all cells (e is ~1e-16 at λ = 0)
        scale = np.abs(ref).max(axis=tuple(range(ref.ndim - 1)) if i < 2 else None)
        assert np.all(np.abs(fast[i] - ref) <= 1e-8 * scale), i


def test_task_result_round_trips_through_the_checkpoint_arrays(tmp_path):
    from study.engine.store import unpack_checkpoint
    from study.engine.tasks import TaskResult

    raw = small_design(replications=300, **{"grid.degree": [1, 3], "output.keep_draws": 5})
    design = design_from_dict(raw)
    m = max(design.m)
    task = Task(m, 0, 2)  # both chunks, of 256 and 44 data sets
    result = run_task(design, task)
    arrays = result.to_arrays()
    # the names, dtypes and shapes of the checkpoints (fit_counts since engine version 4,
    # tails since 8; each co-moment matrix as its lower triangle, the engine's being
    # symmetric)
    fields = "coef_n coef_mean coef_Mtri risk_n risk_mean risk_Mtri n_failed draws fit_counts"
    fields += " first"
    fields += " tails"
    fields = fields.split()
    assert sorted(arrays) == sorted([f"k{k}_{f}" for k in (1, 3) for f in fields] + ["seconds"])
    L, C = len(design.lam), len(design.scaling)
    for k in (1, 3):
        assert arrays[f"k{k}_coef_Mtri"].shape == (2, L, C, k + 1, 15)  # per chunk
        M = result.degrees[k].coef.M
        assert np.array_equal(M, np.swapaxes(M, -1, -2), equal_nan=True)
        back_M = TaskResult.from_arrays(arrays).degrees[k].coef.M
        np.testing.assert_array_equal(back_M, M, strict=True)
        assert arrays[f"k{k}_risk_mean"].shape == (2, L, C, 3)
        n = arrays[f"k{k}_coef_n"][:, 1, 0, 0]  # λ = 0.5: every fit succeeds
        assert n.tolist() == [256.0, 44.0]
        assert arrays[f"k{k}_draws"].shape == (L, C, 5, k + 1)
        assert arrays[f"k{k}_n_failed"].dtype == np.int64
        assert arrays[f"k{k}_fit_counts"].shape == (L, C, 6)
        assert arrays[f"k{k}_fit_counts"].dtype == np.int64
        assert arrays[f"k{k}_tails"].shape == (L, C, k + 1, 3)
        assert arrays[f"k{k}_tails"].dtype == np.int64
    assert arrays["seconds"].shape == () and arrays["seconds"].dtype == np.float64
    shapes = TaskResult.array_shapes(design, 5, chunks=2)
    assert {key: (a.shape, a.dtype.str) for key, a in arrays.items()} == shapes

    back = TaskResult.from_arrays(arrays)
    assert back.seconds == result.seconds and list(back.degrees) == [1, 3]
    again = back.to_arrays()
    assert again.keys() == arrays.keys()
    for key, a in arrays.items():
        assert again[key].dtype == a.dtype and again[key].shape == a.shape, key
        np.testing.assert_array_equal(again[key], a, strict=True)

    # and through the store: what is saved is loaded back, array for array
    store = CheckpointStore(tmp_path, design)
    store.dir.mkdir(parents=True)
    store.save(task, result)
    assert store.path(task).name == f"m{m}-c0-2.ckpt"
    on_disk = unpack_checkpoint(store.path(task).read_bytes(), design_hash=design.hash, task=task)
    loaded = store.load(task).to_arrays()
    for got in (on_disk, loaded):
        assert got.keys() == arrays.keys()
        for key, a in arrays.items():
            np.testing.assert_array_equal(got[key], a, strict=True)


def test_checkpoint_packing_round_trips():
    from study.engine.store import CheckpointError, pack_checkpoint, unpack_checkpoint

    rng = np.random.default_rng(0)
    arrays = {
        "a": rng.normal(size=(3, 4, 5)),
        "n": np.arange(7, dtype=np.int64),
        "s": np.array(1.5),
        "empty": np.zeros((2, 0, 3)),
    }
    data = pack_checkpoint(arrays, design_hash="ab" * 32, task=Task(10, 2, 5))
    back = unpack_checkpoint(data, design_hash="ab" * 32, task=Task(10, 2, 5))
    # each refusal says why: the warning a resumed run prints is this message
    for wrong, why in (
        (
            {"design_hash": "cd" * 32, "task": Task(10, 2, 5)},
            "from another design (hash abababababab…)",
        ),
        (
            {"design_hash": "ab" * 32, "task": Task(10, 2, 4)},
            "of another task (m = 10, chunks 2–4)",
        ),
        (
            {"design_hash": "ab" * 32, "task": Task(10, 3, 5)},
            "of another task (m = 10, chunks 2–4)",
        ),
    ):
        with pytest.raises(CheckpointError) as info:
            unpack_checkpoint(data, **wrong)
        assert str(info.value) == why
    right = {"design_hash": "ab" * 32, "task": Task(10, 2, 5)}
    for damaged, why in (
        (b"", "empty"),
        (data[:20], "not a checkpoint of this version of study, or truncated"),
        (data[:-1] + bytes([data[-1] ^ 1]), "truncated or damaged (SHA-256 mismatch)"),
    ):
        with pytest.raises(CheckpointError) as info:
            unpack_checkpoint(damaged, **right)
        assert str(info.value) == why
    assert back.keys() == arrays.keys()
    for key in arrays:
        assert back[key].dtype == arrays[key].dtype and back[key].shape == arrays[key].shape
        np.testing.assert_array_equal(back[key], arrays[key])


def test_huge_data_sets_are_drawn_in_pieces_with_the_same_numbers(monkeypatch):
    """m above MAX_PIECE: the same random numbers, drawn piece by piece; the power sums
    equal those of the whole data set."""
    raw = small_design(**{"grid.m": [50], "replications": 6, "output.keep_draws": 0})
    design = design_from_dict(raw)
    monkeypatch.setattr("study.engine.streams.MAX_PIECE", 7)
    power_sums, T = chunk_power_sums(design, 50, 0, 3, noise_draw="plain")
    x, y = draw_chunk_data(design, 50, 0)
    u = (x - design.x.center) / design.x.scale
    np.testing.assert_allclose(
        power_sums, np.stack([(u**p).sum(1) for p in range(7)], 1), rtol=1e-12
    )
    np.testing.assert_allclose(
        T, np.stack([(u**p * y).sum(1) for p in range(4)], 1), rtol=1e-11, atol=1e-11
    )


def test_fit_batches_merge_to_the_same_moments(monkeypatch, tmp_path):
    """Chunks larger than FIT_BATCH are fitted in batches whose moments are merged."""
    raw = small_design(**{"output.keep_draws": 30})
    _, whole = _run(tmp_path, raw, "whole")
    monkeypatch.setattr("study.models.gaussian.FIT_BATCH", 7)
    _, batched = _run(tmp_path, raw, "batched")
    a, b = pd.read_csv(whole / "summary.csv"), pd.read_csv(batched / "summary.csv")
    num = a.select_dtypes("number").columns
    np.testing.assert_allclose(a[num].to_numpy(), b[num].to_numpy(), rtol=1e-9, atol=1e-13)
    np.testing.assert_array_equal(
        load_npz(whole / "draws.npz")["coef_k2"], load_npz(batched / "draws.npz")["coef_k2"]
    )


@pytest.mark.parametrize(
    "x",
    [
        {"distribution": "uniform", "low": 0.0, "high": 3.0},
        {"distribution": "normal", "mean": 1.0, "sd": 2.0},
    ],
)
def test_designs_alone_are_the_simulations_designs(x, monkeypatch):
    """The tuning's designs (the first data sets of the first chunks, x stream only, no
    noise drawn) are bit for bit those the simulation fitted, also when drawn in pieces
    and across chunks."""
    from study.basis import hankel_index
    from study.theory.tuning import design_grams

    design = design_from_dict(small_design(**{"dgp.x": x, "replications": 300}))
    monkeypatch.setattr("study.engine.streams.PIECE_ELEMENTS", 50)  # several pieces per chunk
    # every x-only request drawn, not served from the sums the simulation's draws kept
    monkeypatch.setattr("study.engine.streams._kept_sums", lambda *args: None)
    for m, first in ((8, 11), (40, 44), (40, 100)):
        all_sums, _ = chunk_power_sums(design, m, 1, 3)  # the second chunk: 44 data sets
        power_sums, T = chunk_power_sums(design, m, 1, 3, first=first, noise=False)
        assert T is None and power_sums.shape[0] == min(first, 44)
        np.testing.assert_array_equal(power_sums, all_sums[:first])
    # 280 designs: all 256 of chunk 0, then 24 of chunk 1
    grams = design_grams(design, 8, 3, n=280)
    both = np.concatenate([chunk_power_sums(design, 8, c, 3)[0] for c in (0, 1)])
    np.testing.assert_array_equal(grams, both[:280][:, hankel_index(3)])
    # 530 of 601 replications: chunks 0, 1 and 18 of chunk 2, each chunk once and in order
    more = design_from_dict(small_design(**{"dgp.x": x, "replications": 601}))
    grams = design_grams(more, 8, 2, n=530)
    three = np.concatenate([chunk_power_sums(more, 8, c, 2)[0] for c in (0, 1, 2)])
    np.testing.assert_array_equal(grams, three[:530][:, hankel_index(2)])
    monkeypatch.setattr("study.engine.streams.MAX_PIECE", 7)
    power_sums, _ = chunk_power_sums(design, 40, 0, 3, first=4, noise=False)
    np.testing.assert_allclose(power_sums, chunk_power_sums(design, 40, 0, 3)[0][:4], rtol=1e-13)


@pytest.mark.parametrize(
    "x",
    [
        {"distribution": "uniform", "low": -1.0, "high": 1.0},
        {"distribution": "uniform", "low": 0.0, "high": 10.0},
    ],
)
def test_compiled_kernel_gives_the_numpy_paths_results(tmp_path, x):
    """A whole run through the compiled kernel against the same run through the NumPy path
    it replaced: every column of summary.csv and risk.csv, and the kept draws. (The
    "compiled" solver raises where the kernel declines a batch: it did every batch.)"""
    raw = small_design(
        **{"dgp.x": x, "grid.degree": [1, 2, 5], "output.keep_draws": 25, "dgp.noise_sd": 0.7}
    )
    _, fast = _run(tmp_path, raw, "kernel", solver="compiled")
    _, slow = _run(tmp_path, raw, "numpy", solver="pencil")
    for name in ("summary.csv", "risk.csv"):
        a, b = pd.read_csv(fast / name), pd.read_csv(slow / name)
        assert a.columns.equals(b.columns) and a.shape == b.shape
        num = [c for c in a.select_dtypes("number").columns if not c.startswith("kurtosis")]
        for col in num:
            # relative to the column's scale: at λ = 0 the Rao–Blackwell bias and its MCSE
            # are rounding noise (up to 1e-10 where m is close to the degree)
            finite = b[col].to_numpy()[np.isfinite(b[col].to_numpy())]
            scale = np.abs(finite).max() if finite.size else 1.0
            np.testing.assert_allclose(
                a[col], b[col], rtol=1e-8, atol=1e-8 * scale, err_msg=f"{name}: {col}"
            )
        for col in ("scaling", "status"):
            assert a[col].equals(b[col])
    da, db = load_npz(fast / "draws.npz"), load_npz(slow / "draws.npz")
    assert da.keys() == db.keys()
    for key in da:
        if da[key].dtype.kind == "f":
            # chunk 0's means hold the Rao–Blackwell bias, rounding noise at λ = 0: to scale
            scale = np.nanmax(np.abs(db[key])) if key.startswith("chunk0_mean") else 0.01
            np.testing.assert_allclose(da[key], db[key], rtol=1e-8, atol=1e-8 * scale)
        else:
            np.testing.assert_array_equal(da[key], db[key])


def test_relative_results_folder_after_a_change_of_directory(tmp_path, monkeypatch):
    """Workers write the checkpoints and outlive a run; a relative results folder must
    still mean the caller's folder at the time of each run."""
    raw = small_design(**{"grid.m": [3, 8], "replications": 40})
    design = design_from_dict(raw)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        simulate(design, Path("res"), jobs=2, progress=False, theory=False)
    a, b = tmp_path / "a" / "res", tmp_path / "b" / "res"
    assert sorted(p.name for p in (a / "checkpoints").iterdir()) == sorted(
        p.name for p in (b / "checkpoints").iterdir()
    )
    assert _files(a) == _files(b)


def test_threading_backend_leaves_the_blas_pools_as_they_were(tmp_path, monkeypatch):
    """Threads share the process's BLAS pools, and a limit set and restored from several
    threads at once can end up left in place: only the main thread may set it."""
    import threading

    from threadpoolctl import ThreadpoolController, threadpool_limits

    import study.engine.run
    import study.engine.tasks

    callers = []

    def spy():
        callers.append(threading.current_thread() is threading.main_thread())
        return study.engine.tasks._thread_pools().limit(limits=1)

    monkeypatch.setattr(study.engine.tasks, "one_blas_thread", spy)
    monkeypatch.setattr(study.engine.run, "one_blas_thread", spy)
    raw = small_design(**{"replications": 80})
    with threadpool_limits(2, user_api="blas"):
        before = [p["num_threads"] for p in ThreadpoolController().info()]
        _run(tmp_path, raw, jobs=2, backend="threading")
        after = [p["num_threads"] for p in ThreadpoolController().info()]
    assert after == before
    assert callers and all(callers)


@pytest.mark.parametrize(
    ("x", "route"),
    [
        ({"distribution": "uniform", "low": -0.5, "high": 2.0}, "compiled"),
        ({"distribution": "uniform", "low": 4.0, "high": 5.0}, "direct"),  # pencil inaccurate
    ],
)
def test_fits_csv_counts_how_every_data_set_was_fitted(tmp_path, x, route):
    """Per identifiable cell the routes add up to the replications (300, a chunk of 256 and
    a short one), none is declined on these designs, and the route is the one the
    x range calls for; cells that are not identifiable count nothing."""
    raw = small_design(**{"dgp.x": x, "replications": 300, "dgp.noise_sd": 0.6})
    design, out = _run(tmp_path, raw)
    fits = pd.read_csv(out / "fits.csv")
    risk = pd.read_csv(out / "risk.csv")
    assert fits[["m", "degree", "lambda", "scaling"]].equals(
        risk[["m", "degree", "lambda", "scaling"]]
    )
    routes = fits[["compiled", "pencil", "direct"]].sum(axis=1).to_numpy()
    ok = (risk.status == "ok").to_numpy()
    assert (routes[ok] == 300).all() and (routes[~ok] == 0).all() and (~ok).any()
    assert (fits[route][ok] == 300).all()
    assert (fits.filter(like="declined_").to_numpy() == 0).all()


def test_adding_an_m_leaves_the_other_cells_unchanged(tmp_path):
    """Streams are keyed by the value of m: a design with one more m has, for the others,
    the same rows to the bit (σ ≠ 1, a short last chunk)."""
    base = {"dgp.noise_sd": 0.6, "replications": 300, "output.keep_draws": 5}
    _, two = _run(tmp_path, small_design(**base, **{"grid.m": [8, 40]}), "two", theory=False)
    _, three = _run(
        tmp_path, small_design(**base, **{"grid.m": [8, 25, 40]}), "three", theory=False
    )
    for name in ("summary.csv", "risk.csv", "fits.csv"):
        a, b = pd.read_csv(two / name), pd.read_csv(three / name)
        b = b[b.m != 25].reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    da, db = load_npz(two / "draws.npz"), load_npz(three / "draws.npz")
    np.testing.assert_array_equal(da["coef_k2"], db["coef_k2"][[0, 2]])


def test_the_rao_blackwell_and_difference_mcses_equal_a_direct_computation(tmp_path):
    """bias_rb, var_rb and their MCSEs, and the MCSEs of the Monte Carlo − Rao–Blackwell
    differences, from the per-replication values: ŵ, E[ŵ|X] and Var[ŵ|X] by plain solves
    on the raw data of the plain noise draw, then the delta method written out for each
    column (σ = 0.7, x on [−0.5, 2], 70 replications in blocks of 20)."""
    raw = small_design(**{"dgp.x": {"distribution": "uniform", "low": -0.5, "high": 2.0}})
    design, out = _run(tmp_path, raw, noise_draw="plain")
    summary = pd.read_csv(out / "summary.csv")
    checked = 0
    for m in (8, 40):
        data = [draw_chunk_data(design, m, c) for c in range(n_chunks(design.replications, m))]
        x = np.concatenate([d[0] for d in data])
        y = np.concatenate([d[1] for d in data])
        n = x.shape[0]
        for k in (2, 3):
            true = design.true_coefficients_of(k)
            D = np.diag([0.0] + [1.0] * k)
            for lam, scaling in ((0.5, "m"), (0.5, "none"), (0.0, "m")):
                if not design.identifiable(m, k, lam) or lam == 0 and m <= k + 4:
                    continue
                a = alpha(lam, m=m, degree=k, scaling=scaling)
                d, e, v = np.empty((n, k + 1)), np.empty((n, k + 1)), np.empty((n, k + 1))
                for r in range(n):
                    phi = np.vander(x[r], k + 1, increasing=True)
                    A, G = phi.T @ phi + a * D, phi.T @ phi
                    d[r] = np.linalg.solve(A, phi.T @ y[r]) - true
                    e[r] = np.linalg.solve(A, G @ true) - true
                    Ainv = np.linalg.inv(A)
                    v[r] = design.noise_sd**2 * np.diag(Ainv @ G @ Ainv)
                db, eb = d.mean(axis=0), e.mean(axis=0)

                def se(psi, n=n):
                    return psi.std(axis=0, ddof=1) / np.sqrt(n)

                expected = {
                    "bias_rb": eb,
                    "bias_rb_mcse": se(e),
                    "var_rb": v.mean(axis=0) + e.var(axis=0, ddof=1),
                    "var_rb_mcse": se(v + e**2 - 2 * eb * e),
                    "bias_diff_mcse": se(d - e),
                    "var_diff_mcse": se(d**2 - 2 * db * d - (e**2 - 2 * eb * e) - v),
                }
                rows = _cell_rows(summary, m, k, lam, scaling)
                for col, value in expected.items():
                    np.testing.assert_allclose(
                        rows[col].to_numpy(), value, rtol=1e-6, atol=1e-12, err_msg=col
                    )
                checked += 1
    assert checked >= 8


def test_a_checkpoint_of_the_other_noise_draw_is_refused(tmp_path):
    """The noise draw is part of a checkpoint's identity: a task saved by a run that drew the
    noise point by point ("plain") is not taken by one that draws it from the sufficient
    statistic, though the design is the same."""
    from study.engine.store import CheckpointStore

    design = design_from_dict(small_design(**{"grid.m": [8]}))
    task = Task(8, 0, 1)
    result = run_task(design, task, noise_draw="plain")
    CheckpointStore(tmp_path, design, noise_draw="plain").save(task, result)
    assert CheckpointStore(tmp_path, design, noise_draw="plain").done() == [task]
    reasons = []
    store = CheckpointStore(tmp_path, design, noise_draw="sufficient")
    assert store.done(on_reject=lambda path, moved, why: reasons.append(why)) == []
    assert len(reasons) == 1


def test_the_array_shapes_of_a_task_are_those_a_one_chunk_task_writes():
    """TaskResult.array_shapes with its defaults describes what a task of one chunk
    returns (the size model of the estimate relies on it)."""
    design = design_from_dict(small_design(**{"grid.m": [8]}))
    result = run_task(design, Task(8, 0, 1))
    arrays = result.to_arrays()
    shapes = TaskResult.array_shapes(design, keep=design.keep_draws)
    assert set(shapes) == set(arrays)
    for name, (shape, dtype) in shapes.items():
        assert arrays[name].shape == shape, name
        assert np.asarray(arrays[name]).dtype.str == dtype, name
