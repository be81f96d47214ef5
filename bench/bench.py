"""Benchmark: the engine against a scikit-learn loop, a NumPy loop and the floor.

    python bench/bench.py [--designs fit data] [--repeats 3] [--out bench/results]

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
again), so that the machine's speed drifting during the bench moves them alike. Peak
memory is the largest resident set of the whole process tree (main process and workers) of
a separate run, sampled from /proc every 20 ms.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from study.design import load_design  # noqa: E402
from study.engine.run import count_fits, simulate  # noqa: E402
from study.engine.streams import (  # noqa: E402
    chunk_size,
    chunk_streams,
    draw_chunk_data,
    n_chunks,
)
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


def run_command(design_path: str, jobs: int, backend: str = "loky") -> float:
    """Wall time of ``study simulate`` in a fresh process, theory included."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "study", "simulate", design_path, "--out", f"{tmp}/r"]
        cmd += ["--jobs", str(jobs), "--backend", backend, "--quiet"]
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
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(ROOT), design_path, str(Path(tmp) / "r"), str(jobs)]
        )
        peak = 0
        stop = threading.Event()

        def sample():
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, _tree_rss(proc.pid))
                time.sleep(0.02)

        thread = threading.Thread(target=sample)
        thread.start()
        proc.wait()
        stop.set()
        thread.join()
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
        memory = None
        if name.startswith("engine, "):
            memory = peak_memory_mib(command, 1 if "1 job" in name else 2)
        record(name, times[name], memory=memory, note=notes.get(name, ""))

    def median(name):
        return contenders[name]["wall_seconds"]["median"]

    e1, e2 = median("engine, 1 job"), median("engine, 2 jobs")
    c1, c2 = median("study simulate, 1 job, loky"), median("study simulate, 2 jobs, loky")
    f1 = median("floor (draws only), 1 job")
    result["ratios"] = {
        "scikit-learn / engine (per fit, 1 job)": median("scikit-learn loop") / e1,
        "NumPy loop / engine (per fit, 1 job)": median("NumPy loop") / e1,
        "NumPy loop / whole command (per fit, 1 job)": median("NumPy loop") / c1,
        "engine / floor, 1 job": e1 / f1,
        "engine / floor, 2 jobs": e2 / median("floor (draws only), 2 jobs"),
        "whole command / floor, 1 job": c1 / f1,
        "speed-up, 2 jobs over 1 (engine)": e1 / e2,
        "speed-up, 2 jobs over 1 (whole command)": c1 / c2,
        "Dask local cluster / loky (whole command, 2 jobs)": (
            median("study simulate, 2 jobs, dask") / c2
        ),
    }
    return result


def markdown(results: list[dict]) -> str:
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
        lines += ["", *(f"- {name}: {value:.2f}" for name, value in r["ratios"].items())]
    return "\n".join(lines) + "\n"


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
        print(f"  {name}: {value:.2f}")


def bench_memory(factor: int, jobs: int = 2) -> dict:
    """Peak memory of the default design, and of the same with `factor` times the
    replications: merged moments mean memory should not grow with the replications."""
    import re

    text = (ROOT / "simulations" / "default.toml").read_text()
    reps = int(re.search(r"^replications = (\d+)", text, re.M).group(1))
    result = {"jobs": jobs, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for f in (1, factor):
            path = Path(tmp) / f"default-x{f}.toml"
            path.write_text(
                re.sub(r"^replications = \d+", f"replications = {reps * f}", text, flags=re.M)
            )
            started = time.perf_counter()
            peak = peak_memory_mib(str(path), jobs)
            result["runs"][f"{reps * f} replications"] = {
                "peak_memory_mib": peak,
                "wall_seconds": time.perf_counter() - started,
            }
    peaks = [r["peak_memory_mib"] for r in result["runs"].values()]
    result["growth"] = peaks[1] / peaks[0]
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--designs", nargs="+", choices=sorted(DESIGNS), default=sorted(DESIGNS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--memory",
        action="store_true",
        help="also measure the peak memory of the default design with 1× and 10× the "
        "replications (about two minutes more)",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.memory:
        mem = bench_memory(10)
        print("\nsimulations/default.toml, peak memory of the whole process tree, 2 jobs")
        for name, run in mem["runs"].items():
            print(f"  {name:>22}: {run['peak_memory_mib']:.0f} MiB ({run['wall_seconds']:.0f} s)")
        print(f"  growth with 10× the replications: {mem['growth']:.3f}×")
        (args.out / "bench-memory.json").write_text(json.dumps(mem, indent=2) + "\n")
    results = []
    for key in args.designs:
        result = bench_design(key, args.repeats)
        print_table(result)
        path = args.out / f"bench-{key}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"  → {path}")
        results.append(result)
    (args.out / "bench.md").write_text(markdown(results))
    print(f"  → {args.out / 'bench.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
