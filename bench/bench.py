"""Benchmark: the engine against a scikit-learn loop, a NumPy loop and the floor.

    python bench/bench.py [--designs fit data] [--repeats 3] [--out bench/results] [--no-memory]

For each bench design (simulations/bench-fit.toml: the cost is in the solves;
simulations/bench-data.toml: the cost is in drawing the data) it prints one table and writes
one JSON file with, for each contender, wall time (median, min, max over the repeats), fits
per second, data points per second and peak memory:

- engine: ``study.engine.run.simulate`` (without the theory step) with 1 and 2 jobs;
- whole command: ``study simulate DESIGN`` as a user runs it, a fresh process each time
  (interpreter start, imports, loading the compiled kernel, the theory step), with 1 and 2
  jobs and on a local Dask cluster of 2 workers;
- scikit-learn loop: ``Ridge(alpha=α)`` per data set and cell on the monomial features,
  timed on a random subsample of the fits and scaled to the whole design;
- NumPy loop: one Gram matrix per data set and degree, one ``np.linalg.solve`` per fit, the
  way a careful user would write it (subsample, scaled);
- floor: drawing every x and every noise value naively (``uniform``/``normal`` per data
  set, from the same streams and chunks) in the same process, with 1 and with 2 jobs.

The contenders take turns within each repeat (engine, whole command, floor, loops, then
again), so that the machine's speed drifting during the bench moves them alike; each ratio
is given of the medians and, since the repeats can differ more than the contenders within
one, also within each repeat (median, min and max over the repeats). Peak
memory (of the engine and of the whole command) is the largest sum of the resident sets of
the whole process tree (main process and workers) of a separate run, sampled from /proc
every 20 ms; the whole command's is also measured on the default design and on bench-fit
with 1× and 10× the replications and 2 jobs (``--no-memory`` skips that).

The logistic section (``--only logistic`` runs it alone) times one fit of penalised
polynomial logistic regression, per fit, on the engine's own data sets (the first chunks of
a logistic design, x uniform on [−0.5, 2], at m = 100, degree 3 and m = 1000, degree 5),
for every α of the design's λ and scalings:

- compiled Newton: ``study.models.logistic.fit_chunk``, the engine's path (the compiled
  batched solver, every α from the largest down, each fit warm-started at the one before);
- NumPy loop: per data set one Vandermonde matrix, then per α Newton's method with a
  Cholesky solve (LAPACK's potrf/potrs, called directly) and the same line search and
  stopping rules, warm-started likewise: the way a careful user would write it (a sample
  of the data sets);
- scikit-learn loop: ``LogisticRegression(C=1/α, tol=1e-10, max_iter=10_000)`` per fit on
  the monomial features (a sample of the fits).

Each contender's answers are checked against the compiled solver's on the fits it timed
(largest relative difference in the JSON file), and the two ratios are set against the
targets: at least 300 times faster than the scikit-learn loop, 10 times than the NumPy loop.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from scipy.linalg.lapack import dpotrf, dpotrs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from study.design import design_from_dict, load_design  # noqa: E402
from study.engine.run import count_fits, simulate  # noqa: E402
from study.engine.streams import (  # noqa: E402
    chunk_size,
    chunk_streams,
    draw_chunk_data,
    n_chunks,
)
from study.engine.tasks import alpha_grid  # noqa: E402
from study.models import logistic as logistic_model  # noqa: E402
from study.scaling import alpha as scaling_alpha  # noqa: E402

DESIGNS = {
    "fit": "simulations/bench-fit.toml",
    "data": "simulations/bench-data.toml",
    "data7": "simulations/bench-data7.toml",
}


# --- contenders --------------------------------------------------------------------------


def run_engine(design, jobs: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        simulate(design, Path(tmp) / "r", jobs=jobs, progress=False)
        return time.perf_counter() - started


def _command(design_path: str, out: str, jobs: int, backend: str) -> list[str]:
    """``study simulate`` as a user runs it, quiet."""
    cmd = [sys.executable, "-m", "study", "simulate", design_path, "--out", out]
    return cmd + ["--jobs", str(jobs), "--backend", backend, "--quiet"]


def run_command(design_path: str, jobs: int, backend: str = "loky") -> float:
    """Wall time of ``study simulate`` in a fresh process, theory included."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = _command(design_path, f"{tmp}/r", jobs, backend)
        started = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        return time.perf_counter() - started


def _draw_chunk(design, m: int, chunk: int) -> float:
    """Draw every x and every noise value of one chunk from its streams, naively (the
    textbook calls ``uniform(low, high)`` or ``normal(mean, sd)`` for x and ``normal(0, σ)``
    for ε, a data set at a time), and nothing else."""
    rng_x, rng_noise = chunk_streams(design.seed, m, chunk)
    x, total = design.x, 0.0
    for _ in range(chunk_size(design, m, chunk)):
        if x.distribution == "uniform":
            xs = rng_x.uniform(x.low, x.high, m)
        else:
            xs = rng_x.normal(x.mean, x.sd, m)
        eps = rng_noise.normal(0.0, design.noise_sd, m)
        total += xs[0] + eps[0]  # keep the draws from being optimised away
    return total


def run_floor(design, jobs: int) -> float:
    chunks = [(m, c) for m in design.m for c in range(n_chunks(design.replications, m))]
    started = time.perf_counter()
    if jobs == 1:
        for m, c in chunks:
            _draw_chunk(design, m, c)
    else:
        from joblib import Parallel, delayed

        Parallel(n_jobs=jobs)(delayed(_draw_chunk)(design, m, c) for m, c in chunks)
    return time.perf_counter() - started


def _sample_fits(design, n_fits: int, seed: int = 0):
    """A random subsample of the design's fits: (x, y, degree, α) with their data sets."""
    rng = np.random.default_rng(seed)
    data = {m: draw_chunk_data(design, m, 0) for m in design.m}
    fits = []
    for _ in range(n_fits):
        m = int(rng.choice(design.m))
        k = int(rng.choice(design.degree))
        lam = float(rng.choice([v for v in design.lam if v > 0 or m > k]))
        scaling = str(rng.choice(design.scaling))
        i = int(rng.integers(data[m][0].shape[0]))
        x, y = data[m][0][i], data[m][1][i]
        fits.append((x, y, k, scaling_alpha(lam, m=m, degree=k, scaling=scaling)))
    return fits


def time_sklearn_per_fit(design, n_fits: int) -> float:
    from sklearn.linear_model import Ridge

    fits = _sample_fits(design, n_fits)
    started = time.perf_counter()
    for x, y, k, a in fits:
        Ridge(alpha=a).fit(np.vander(x, k + 1, increasing=True)[:, 1:], y)
    return (time.perf_counter() - started) / n_fits


def time_numpy_per_fit(design, n_sets: int) -> float:
    """Per data set and degree one Gram matrix; per (λ, scaling) one solve."""
    rng = np.random.default_rng(1)
    data = {m: draw_chunk_data(design, m, 0) for m in design.m}
    n_fits = 0
    started = time.perf_counter()
    for _ in range(n_sets):
        m = int(rng.choice(design.m))
        i = int(rng.integers(data[m][0].shape[0]))
        x, y = data[m][0][i], data[m][1][i]
        for k in design.degree:
            phi = np.vander(x, k + 1, increasing=True)
            G, b = phi.T @ phi, phi.T @ y
            D = np.eye(k + 1)
            D[0, 0] = 0.0
            for lam in design.lam:
                if lam == 0 and m <= k:
                    continue
                for scaling in design.scaling:
                    np.linalg.solve(G + scaling_alpha(lam, m=m, degree=k, scaling=scaling) * D, b)
                    n_fits += 1
    return (time.perf_counter() - started) / n_fits


def peak_memory_mib(design_path: str, jobs: int) -> float:
    """Peak resident memory of a separate engine run, summed over its process tree."""
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
        "from study.design import load_design; from study.engine.run import simulate;"
        "simulate(load_design(sys.argv[2]), Path(sys.argv[3]), jobs=int(sys.argv[4]),"
        " progress=False)"
    )
    return peak_tree_mib(
        lambda out: [sys.executable, "-c", code, str(ROOT), design_path, out, str(jobs)]
    )


def command_memory_mib(design_path: str, jobs: int, backend: str = "loky") -> float:
    """Peak resident memory of a separate run of the whole command, summed over its
    process tree (the run's process, its workers, and loky's or Dask's helpers)."""
    return peak_tree_mib(lambda out: _command(design_path, out, jobs, backend))


def peak_tree_mib(command) -> float:
    """Peak resident memory of ``command(results_folder)`` run to its end, summed over its
    process tree and sampled every 20 ms. Pages that processes share (libraries; what a
    forked worker has not written to) count in each of them: the sum is more than the tree
    holds, save for a peak shorter than the sampling."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(command(str(Path(tmp) / "r")), cwd=ROOT, stdout=subprocess.DEVNULL)
        peak = 0
        stop = threading.Event()

        def sample():
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, _tree_rss(proc.pid))
                time.sleep(0.02)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            proc.wait()
        finally:  # Ctrl-C too: no run and no sampler left behind
            stop.set()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            thread.join()
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, proc.args)
    return peak / 2**20


def _tree_rss(root: int) -> int:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            ppid, pages = int(fields[1]), int(fields[21])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


# --- the logistic family: the compiled Newton solver against per-fit loops ----------------

# (m, degree) of each logistic setting, and the data sets drawn for it (chunks of the design)
LOGISTIC_SETTINGS = ((100, 3), (1000, 5))
LOGISTIC_DATA_SETS = 1024
# sampled fits of the scikit-learn loop, sampled data sets of the NumPy loop, per repeat
LOGISTIC_SKLEARN_FITS = 40
LOGISTIC_NUMPY_SETS = 24
# per-fit speed-ups the project asks of the compiled solver (its issue)
LOGISTIC_TARGETS = {"scikit-learn loop": 300.0, "NumPy loop": 10.0}


def _logistic_design(m: int, degree: int):
    """A logistic design of one m and degree: the engine's streams and α grid."""
    return design_from_dict(
        {
            "name": "bench-logistic",
            "seed": 20240611,
            "replications": LOGISTIC_DATA_SETS,
            "model": {"family": "logistic"},
            "dgp": {
                "intercept": -0.5,
                "slope": 1.7,
                "x": {"distribution": "uniform", "low": -0.5, "high": 2.0},
            },
            "grid": {
                "m": [m],
                "degree": [degree],
                "lambda": [0.0, 0.1, 1.0],
                "scaling": ["m", "none"],
                "penalize_intercept": False,
            },
            "output": {"keep_draws": 0},
        }
    )


def logistic_problem(m: int, degree: int) -> dict:
    """The data sets (u, y, x) of a setting, its basis, its distinct α (ascending), and which
    fits have an estimate (A, n), as the engine sees them."""
    design = _logistic_design(m, degree)
    parts = [
        logistic_model.chunk_data(design, m, c) for c in range(n_chunks(design.replications, m))
    ]
    u = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    basis = design.standard_basis(degree)
    alphas = np.unique(alpha_grid(design, m, degree))
    no_min = logistic_model._no_minimiser(u, y, degree, alphas / m, design.penalize_intercept)
    return {
        "design": design,
        "u": u,
        "y": y,
        "x": design.x.center + design.x.scale * u,
        "basis": basis,
        "alphas": alphas,
        "has_estimate": ~no_min,
        "fits": int((~no_min).sum()),
    }


def time_logistic_compiled(problem: dict) -> tuple[float, np.ndarray]:
    """Seconds per fit of the engine's path over every data set and α, and ŵ (A, n, p)."""
    started = time.perf_counter()
    w, _, _ = logistic_model.fit_chunk(
        problem["u"], problem["y"], problem["basis"], problem["alphas"], False
    )
    return (time.perf_counter() - started) / problem["fits"], w


def _numpy_newton(phi, y, P, c, v):
    """A careful one-data-set Newton's method for (1/m)Σ log-loss(Φv) + (c/2)vᵀPv from v,
    with the engine's line search and stopping rules; None where it fails."""
    ARMIJO, ARMIJO_SLACK = logistic_model.ARMIJO, logistic_model.ARMIJO_SLACK
    m = y.size
    Pc = c * P
    eta = phi @ v
    f = np.logaddexp(0.0, eta).mean() - (y @ eta) / m + 0.5 * (v @ Pc @ v)
    for _ in range(logistic_model.NEWTON_MAX_ITER):
        prob = 0.5 * (1.0 + np.tanh(0.5 * eta))
        g = phi.T @ (prob - y) / m + Pc @ v
        H = (phi.T * (prob * (1.0 - prob))) @ phi / m + Pc
        L, info = dpotrf(H, lower=1)
        if info:
            return None
        step, info = dpotrs(L, g, lower=1)
        decrease = g @ step
        t, halvings = 1.0, 0
        while True:
            trial = v - t * step
            eta_t = phi @ trial
            f_t = np.logaddexp(0.0, eta_t).mean() - (y @ eta_t) / m + 0.5 * (trial @ Pc @ trial)
            if f_t <= f - ARMIJO * t * decrease + ARMIJO_SLACK * abs(f):
                break
            if halvings == logistic_model.MAX_HALVINGS:
                return None
            t, halvings = 0.5 * t, halvings + 1
        moved = np.abs(step).max() <= logistic_model.NEWTON_TOL * max(1.0, np.abs(trial).max())
        floor = 0.0 <= decrease <= logistic_model.DECREMENT_FLOOR * max(1.0, abs(f))
        v, eta, f = trial, eta_t, f_t
        if moved or floor:
            return v
    return None


def time_logistic_numpy(problem: dict, w_ref: np.ndarray, seed: int) -> tuple[float, float]:
    """Seconds per fit of the NumPy loop on a sample of the data sets (every α of each, from
    the largest down, warm-started), and its largest relative difference from ŵ_ref."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(problem["u"].shape[0], LOGISTIC_NUMPY_SETS, replace=False)
    basis, alphas, ok = problem["basis"], problem["alphas"], problem["has_estimate"]
    m, P, B = problem["u"].shape[1], basis.penalty, basis.B
    out, fits = {}, 0
    started = time.perf_counter()
    for i in rows:
        phi = np.vander(problem["u"][i], basis.degree + 1, increasing=True)
        v = np.zeros(basis.degree + 1)
        for a in range(alphas.size - 1, -1, -1):
            if not ok[a, i]:
                continue
            fit = _numpy_newton(phi, problem["y"][i], P, alphas[a] / m, v)
            fits += 1
            if fit is not None:
                v = fit
                out[a, i] = fit
    seconds = (time.perf_counter() - started) / fits
    return seconds, _largest_difference({k: B.T @ v for k, v in out.items()}, w_ref)


def time_logistic_sklearn(problem: dict, w_ref: np.ndarray, seed: int) -> tuple[float, float]:
    """Seconds per fit of the scikit-learn loop on a sample of the fits, and its largest
    relative difference from ŵ_ref."""
    import warnings

    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    which = np.argwhere(problem["has_estimate"])
    sample = which[rng.choice(len(which), LOGISTIC_SKLEARN_FITS, replace=False)]
    k, alphas = problem["basis"].degree, problem["alphas"]
    out = {}
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fit short of tol is seen in the difference
        for a, i in sample:
            C = 1.0 / alphas[a] if alphas[a] > 0 else np.inf
            model = LogisticRegression(C=C, tol=1e-10, max_iter=10_000)
            model.fit(np.vander(problem["x"][i], k + 1, increasing=True)[:, 1:], problem["y"][i])
            out[a, i] = np.concatenate([model.intercept_, model.coef_[0]])
    seconds = (time.perf_counter() - started) / len(sample)
    return seconds, _largest_difference(out, w_ref)


def _largest_difference(fits: dict, w_ref: np.ndarray) -> float:
    """max over the fits (a, i) → ŵ of |ŵ − ŵ_ref[a, i]|∞ / max(1, |ŵ_ref[a, i]|∞)."""
    worst = 0.0
    for (a, i), w in fits.items():
        ref = w_ref[a, i]
        worst = max(worst, float(np.abs(w - ref).max() / max(1.0, np.abs(ref).max())))
    return worst


def bench_logistic(repeats: int) -> list[dict]:
    """The logistic section: per setting, seconds per fit of each contender (median, min,
    max over the repeats, taking turns within each repeat) and the ratios to the targets."""
    results = []
    for m, degree in LOGISTIC_SETTINGS:
        problem = logistic_problem(m, degree)
        time_logistic_compiled(problem)  # warm up: load the compiled solver from the cache
        times = {"compiled Newton (fit_chunk)": [], "NumPy loop": [], "scikit-learn loop": []}
        differences = {"NumPy loop": 0.0, "scikit-learn loop": 0.0}
        for r in range(repeats):
            seconds, w_ref = time_logistic_compiled(problem)
            times["compiled Newton (fit_chunk)"].append(seconds)
            for name, timer in (
                ("NumPy loop", time_logistic_numpy),
                ("scikit-learn loop", time_logistic_sklearn),
            ):
                seconds, diff = timer(problem, w_ref, seed=r)
                times[name].append(seconds)
                differences[name] = max(differences[name], diff)
        u = problem["u"]
        result = {
            "setting": f"m = {m}, degree {degree}",
            "m": m,
            "degree": degree,
            "data_sets": u.shape[0],
            "alphas": problem["alphas"].tolist(),
            "fits": problem["fits"],
            "cores": os.cpu_count(),
            "repeats": repeats,
            "contenders": {},
        }
        notes = {
            "compiled Newton (fit_chunk)": "every data set and α, the engine's path",
            "NumPy loop": f"{LOGISTIC_NUMPY_SETS} sampled data sets, every α, warm-started",
            "scikit-learn loop": f"{LOGISTIC_SKLEARN_FITS} sampled fits, tol 1e-10",
        }
        for name, ts in times.items():
            st = _stats(ts)
            result["contenders"][name] = {
                "seconds_per_fit": st,
                "fits_per_second": 1.0 / st["median"],
                "largest_relative_difference": differences.get(name, 0.0),
                "note": notes[name],
            }
        mine = result["contenders"]["compiled Newton (fit_chunk)"]["seconds_per_fit"]["median"]
        result["ratios"] = {}
        for name, target in LOGISTIC_TARGETS.items():
            ratio = result["contenders"][name]["seconds_per_fit"]["median"] / mine
            result["ratios"][f"{name} / compiled Newton (per fit; target ≥ {target:g})"] = ratio
        results.append(result)
    return results


def _logistic_rows(result: dict) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for name, c in result["contenders"].items():
        t = c["seconds_per_fit"]
        diff = c["largest_relative_difference"]
        rows.append(
            (
                name,
                f"{t['median'] * 1e6:.1f} ({t['min'] * 1e6:.1f}–{t['max'] * 1e6:.1f})",
                f"{c['fits_per_second']:.3g}",
                f"{diff:.1e}" if name != "compiled Newton (fit_chunk)" else "–",
                c["note"],
            )
        )
    return rows


def markdown_logistic(results: list[dict]) -> list[str]:
    """The logistic section's tables as Markdown lines."""
    lines = []
    for r in results:
        lines += [
            "",
            f"## logistic, {r['setting']}: {r['fits']:,} fits ({r['data_sets']:,} data sets × "
            f"{len(r['alphas'])} α), per fit",
            "",
            "| contender | µs per fit | fits/s | largest rel. difference | note |",
            "|---|---:|---:|---:|---|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in _logistic_rows(r)]
        lines += ["", *(f"- {name}: {value:.2f}" for name, value in r["ratios"].items())]
    return lines


def print_logistic(result: dict) -> None:
    print(
        f"\nlogistic, {result['setting']}: {result['fits']:,} fits, {result['cores']} cores, "
        f"median of {result['repeats']} (min–max)"
    )
    print(f"{'contender':<30} {'µs per fit':>24} {'fits/s':>10} {'rel. diff':>10}")
    for name, per_fit, rate, diff, _ in _logistic_rows(result):
        print(f"{name:<30} {per_fit:>24} {rate:>10} {diff:>10}")
    for name, value in result["ratios"].items():
        print(f"  {name}: {value:.2f}")


# --- the run -----------------------------------------------------------------------------


def _stats(times: list[float]) -> dict:
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}


def bench_design(key: str, repeats: int) -> dict:
    path = DESIGNS[key]
    design = load_design(ROOT / path)
    fits, points = count_fits(design)
    result = {
        "design": path,
        "fits": fits,
        "data_points": points,
        "cores": os.cpu_count(),
        "repeats": repeats,
        "contenders": {},
    }
    contenders = result["contenders"]

    def record(name, times, *, memory=None, note=""):
        st = _stats(times)
        contenders[name] = {
            "wall_seconds": st,
            "wall_seconds_each": list(times),  # in the order of the repeats
            "fits_per_second": fits / st["median"],
            "points_per_second": points / st["median"],
            "peak_memory_mib": memory,
            "note": note,
        }

    for jobs in (2, 1):  # warm up: imports, the loky workers, loading the compiled kernel
        run_engine(design, jobs)
    # The contenders take turns within each repeat, so that a change of the machine's speed
    # during the bench (other processes, frequency) touches every contender alike and the
    # ratios stay fair; each contender's repeats give its median, min and max.
    command = str(ROOT / path)
    timers = {
        "engine, 1 job": lambda: run_engine(design, 1),
        "engine, 2 jobs": lambda: run_engine(design, 2),
        "study simulate, 1 job, loky": lambda: run_command(command, 1, "loky"),
        "study simulate, 2 jobs, loky": lambda: run_command(command, 2, "loky"),
        "study simulate, 2 jobs, dask": lambda: run_command(command, 2, "dask"),
        "floor (draws only), 1 job": lambda: run_floor(design, 1),
        "floor (draws only), 2 jobs": lambda: run_floor(design, 2),
        "scikit-learn loop": lambda: time_sklearn_per_fit(design, 300) * fits,
        "NumPy loop": lambda: time_numpy_per_fit(design, 200) * fits,
    }
    notes = {
        "scikit-learn loop": "Ridge per fit, 300 sampled fits, scaled to the design",
        "NumPy loop": "Gram per data set and degree, solve per fit; 200 sampled data sets, scaled",
    }
    times: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(repeats):
        for name, timer in timers.items():
            times[name].append(timer())
    for name in timers:
        memory, jobs = None, 1 if "1 job" in name else 2
        if name.startswith("engine, "):
            memory = peak_memory_mib(command, jobs)
        elif name.startswith("study simulate, "):
            memory = command_memory_mib(command, jobs, name.rsplit(", ", 1)[1])
        record(name, times[name], memory=memory, note=notes.get(name, ""))

    def median(name):
        return contenders[name]["wall_seconds"]["median"]

    result["ratios"] = _ratios(median)
    # the same ratios within each repeat, whose contenders ran one after the other: a
    # change of the machine's speed between repeats cancels out of these
    by_repeat = [_ratios(lambda name, i=i: times[name][i]) for i in range(repeats)]
    result["ratios_by_repeat"] = {
        name: _stats([r[name] for r in by_repeat]) for name in result["ratios"]
    }
    return result


def _ratios(wall) -> dict[str, float]:
    """The ratios the targets are stated in, from ``wall(contender)`` in seconds."""
    e1, e2 = wall("engine, 1 job"), wall("engine, 2 jobs")
    c1, c2 = wall("study simulate, 1 job, loky"), wall("study simulate, 2 jobs, loky")
    f1 = wall("floor (draws only), 1 job")
    return {
        "scikit-learn / engine (per fit, 1 job)": wall("scikit-learn loop") / e1,
        "NumPy loop / engine (per fit, 1 job)": wall("NumPy loop") / e1,
        "NumPy loop / whole command (per fit, 1 job)": wall("NumPy loop") / c1,
        "engine / floor, 1 job": e1 / f1,
        "engine / floor, 2 jobs": e2 / wall("floor (draws only), 2 jobs"),
        "whole command / floor, 1 job": c1 / f1,
        "speed-up, 2 jobs over 1 (engine)": e1 / e2,
        "speed-up, 2 jobs over 1 (whole command)": c1 / c2,
        "Dask local cluster / loky (whole command, 2 jobs)": (
            wall("study simulate, 2 jobs, dask") / c2
        ),
    }


def markdown(results: list[dict], logistic: list[dict], memory: dict | None = None) -> str:
    """The tables of a run as Markdown (bench/results/bench.md, linked from the README)."""
    from datetime import UTC, datetime

    lines = [
        f"# `make bench`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores",
        "",
        f"Written by `bench/bench.py`; median of {results[0]['repeats']} repeats (min–max), "
        "wall seconds.",
    ]
    for r in results:
        lines += [
            "",
            f"## `{r['design']}`: {r['fits']:,} fits, {r['data_points']:,} data points",
            "",
            "| contender | wall s | fits/s | points/s | peak MiB |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, c in r["contenders"].items():
            w, mem = c["wall_seconds"], c["peak_memory_mib"]
            lines.append(
                f"| {name} | {w['median']:.3f} ({w['min']:.2f}–{w['max']:.2f}) | "
                f"{c['fits_per_second']:.3g} | {c['points_per_second']:.3g} | "
                f"{f'{mem:.0f}' if mem else '–'} |"
            )
        lines += [
            "",
            "Ratios of the medians, then (in brackets) the median, min and max of the ratio "
            "within each repeat:",
            "",
        ]
        for name, value in r["ratios"].items():
            each = r.get("ratios_by_repeat", {}).get(name)
            within = ""
            if each:
                within = f" ({each['median']:.2f}; {each['min']:.2f}–{each['max']:.2f})"
            lines.append(f"- {name}: {value:.2f}{within}")
    if memory is not None:
        lines += markdown_memory(memory)
    lines += markdown_logistic(logistic)
    return "\n".join(lines) + "\n"


def markdown_memory(memory: dict) -> list[str]:
    """The memory section: the whole command's peak with 1× and 10× the replications."""
    lines = [
        "",
        f"## Peak memory of the whole command, {memory['jobs']} jobs",
        "",
        "The run's process tree (its process, the workers, loky's helpers), its resident sets "
        "summed: pages that processes share count in each, so the sum is more than the tree "
        "holds.",
        "",
        "| design | replications | peak MiB | wall s |",
        "|---|---:|---:|---:|",
    ]
    growth = []
    for design, runs in memory["designs"].items():
        for name, run in runs["runs"].items():
            reps = int(name.split()[0])
            lines.append(
                f"| `{design}` | {reps:,} | {run['peak_memory_mib']:.0f} | "
                f"{run['wall_seconds']:.1f} |"
            )
        growth.append(f"- `{design}`: growth with 10× the replications: {runs['growth']:.3f}")
    return lines + ["", *growth]


def print_table(result: dict) -> None:
    print(
        f"\n{result['design']}: {result['fits']:,} fits, {result['data_points']:,} data points, "
        f"{result['cores']} cores, median of {result['repeats']} (min–max)"
    )
    print(f"{'contender':<34} {'wall s':>22} {'fits/s':>12} {'points/s':>12} {'peak MiB':>9}")
    for name, c in result["contenders"].items():
        w = c["wall_seconds"]
        mem = f"{c['peak_memory_mib']:.0f}" if c["peak_memory_mib"] else "–"
        wall = f"{w['median']:.3f} ({w['min']:.2f}–{w['max']:.2f})"
        rates = f"{c['fits_per_second']:>12.3g} {c['points_per_second']:>12.3g}"
        print(f"{name:<34} {wall:>22} {rates} {mem:>9}")
    for name, value in result["ratios"].items():
        each = result["ratios_by_repeat"][name]
        within = f"within each repeat {each['median']:.2f} ({each['min']:.2f}–{each['max']:.2f})"
        print(f"  {name}: {value:.2f}; {within}")


MEMORY_DESIGNS = ("default", "bench-fit")


def bench_memory(factor: int, jobs: int = 2, designs=MEMORY_DESIGNS) -> dict:
    """Peak memory of the whole command on each of ``designs`` (simulations/NAME.toml), and
    on the same with ``factor`` times the replications: merged moments and tasks of at most
    a few MiB of arrays mean memory should not grow with the replications."""
    import re

    result = {"jobs": jobs, "designs": {}}
    for design in designs:
        text = (ROOT / "simulations" / f"{design}.toml").read_text()
        reps = int(re.search(r"^replications = (\d+)", text, re.M).group(1))
        runs = {}
        with tempfile.TemporaryDirectory() as tmp:
            for f in (1, factor):
                path = Path(tmp) / f"{design}-x{f}.toml"
                path.write_text(
                    re.sub(r"^replications = \d+", f"replications = {reps * f}", text, flags=re.M)
                )
                started = time.perf_counter()
                peak = command_memory_mib(str(path), jobs)
                runs[f"{reps * f} replications"] = {
                    "peak_memory_mib": peak,
                    "wall_seconds": time.perf_counter() - started,
                }
        peaks = [r["peak_memory_mib"] for r in runs.values()]
        result["designs"][f"simulations/{design}.toml"] = {
            "runs": runs,
            "growth": peaks[1] / peaks[0],
        }
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--designs", nargs="+", choices=sorted(DESIGNS), default=sorted(DESIGNS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the peak memory of the whole command on the default design and on "
        "bench-fit with 1× and 10× the replications, 2 jobs (about two minutes; --no-memory "
        "skips it)",
    )
    parser.add_argument(
        "--only",
        choices=["logistic"],
        help="run only this section: its tables are printed and its JSON file written, "
        "bench.md (the tables of a whole run) is left as it is",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only == "logistic":
        _run_logistic(args)
        return 0
    mem = None
    if args.memory:
        mem = bench_memory(10)
        for design, runs in mem["designs"].items():
            print(f"\n{design}, the whole command's peak memory, 2 jobs")
            for name, run in runs["runs"].items():
                peak, wall = run["peak_memory_mib"], run["wall_seconds"]
                print(f"  {name:>22}: {peak:.0f} MiB ({wall:.0f} s)")
            print(f"  growth with 10× the replications: {runs['growth']:.3f}×")
        (args.out / "bench-memory.json").write_text(json.dumps(mem, indent=2) + "\n")
    results = []
    for key in args.designs:
        result = bench_design(key, args.repeats)
        print_table(result)
        path = args.out / f"bench-{key}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"  → {path}")
        results.append(result)
    logistic = _run_logistic(args)
    (args.out / "bench.md").write_text(markdown(results, logistic, mem))
    print(f"  → {args.out / 'bench.md'}")
    return 0


def _run_logistic(args) -> list[dict]:
    logistic = bench_logistic(args.repeats)
    for result in logistic:
        print_logistic(result)
    path = args.out / "bench-logistic.json"
    path.write_text(json.dumps(logistic, indent=2) + "\n")
    print(f"  → {path}")
    return logistic


if __name__ == "__main__":
    raise SystemExit(main())
