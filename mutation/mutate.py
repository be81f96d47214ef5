"""`make mutate`: mutation testing of the core modules with mutmut, within a time budget.

mutmut (https://mutmut.readthedocs.io) rewrites every function of the modules listed under
``[tool.mutmut] only_mutate`` in pyproject.toml so that an environment variable switches it
to one of its mutants (an operator, a constant, an argument changed), records which tests
reach which function (its per-mutant test selection), and runs those tests against each
mutant: a mutant is killed when a test fails, and survives when all pass.

The core modules have about 13,000 mutants, far more than two cores test in half an hour.
So this script tests a random sample of them, drawn from a fixed seed and spread over the
modules in proportion to their mutants, as many as the time budget allows, and reports
the score of the sample with a 95 % Wilson interval: a Monte Carlo estimate of the score
of all mutants, like any other number of this study.

It works in a copy of the repository's files (tracked, and untracked but not ignored) in
``mutation/work/``, so nothing of the checkout is touched; it writes
``mutation/results/survivors.txt`` (every surviving mutant of the sample with its diff)
and ``mutation/results/summary.md``, and prints ``mutation score: K/N (P %)`` last.

Usage: ``python mutation/mutate.py [--budget SECONDS] [--jobs N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "mutation" / "work"
RESULTS = ROOT / "mutation" / "results"
# mutmut's statuses that count as caught: a test failed, a test ran past its time limit
# (generous: [tool.mutmut] timeout_constant, so that a test's shared set-up, which mutmut
# does not time, cannot pass for a hang), or the process was killed by SIGSEGV or SIGKILL
# (mutmut's "segfault"; other deaths are "suspicious"); and those that count as
# missed: every selected test passed, no test reaches the mutant, or the harness gave an
# exit code mutmut does not know ("suspicious": nothing shows that a test saw the mutant).
# Any other status (not checked, interrupted, skipped) is counted and shown, never scored.
CAUGHT = {"killed", "timeout", "segfault"}
MISSED = {"survived", "no tests", "suspicious"}
# seconds kept for the report (a diff per survivor) at the end of the budget
REPORT_SECONDS = 60
# the frames of mutmut's progress spinner, left out of the log
SPINNER = tuple("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")
# mutants per call of `mutmut run`: the budget is checked between calls
BATCH = 20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=1800.0, help="seconds (default 1800)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once")
    parser.add_argument("--seed", type=int, default=20231201, help="seed of the sample")
    parser.add_argument("--batch", type=int, default=BATCH, help="mutants per batch")
    args = parser.parse_args(argv)
    started = time.monotonic()
    deadline = started + args.budget

    _copy_checkout()
    (RESULTS / "mutmut.log").unlink(missing_ok=True)
    # generation and the stats run (every test once, recording which functions it reaches
    # and how long it takes); a name that matches no mutant stops mutmut right after it
    print("mutate: generating mutants and running every test once to see what it reaches")
    _mutmut(["run", "--max-children", str(args.jobs), "no-such-mutant"], check=False)
    names = _statuses()
    if not names or not (WORK / "mutants" / "mutmut-stats.json").exists():
        raise SystemExit(
            "mutate: mutmut generated no mutants or could not run the tests; see "
            f"{RESULTS / 'mutmut.log'}"
        )
    order = _sample_order(names, args.seed)
    print(
        f"mutate: {len(names):,} mutants in {len({_module(n) for n in names})} modules "
        f"after {time.monotonic() - started:.0f} s; testing random batches of "
        f"{args.batch} until {args.budget:.0f} s have passed"
    )
    # whole batches only: mutmut tests the mutants of a batch fastest first, so a batch
    # cut short would leave a biased sample. A batch starts only if the time left holds
    # 1.5 times the longest batch so far, and one still running at the deadline is stopped
    # and left out of the score.
    tested: list[str] = []
    longest = 0.0
    for first in range(0, len(order), args.batch):
        left = deadline - REPORT_SECONDS - time.monotonic()
        if left < 1.5 * longest or left <= 0:
            break
        batch = order[first : first + args.batch]
        began = time.monotonic()
        arguments = ["run", "--max-children", str(args.jobs), *batch]
        saved = _meta_files()
        if _mutmut(arguments, skip_clean=True, timeout=left) is None:
            for path, data in saved.items():
                path.write_bytes(data)
            print("mutate: the last batch was stopped at the deadline and is left out")
            break
        longest = max(longest, time.monotonic() - began)
        tested += batch
        statuses = _statuses()
        done = [n for n in tested if statuses.get(n) in CAUGHT | MISSED]
        caught = sum(statuses[n] in CAUGHT for n in done)
        print(
            f"mutate: {caught}/{len(done)} caught ({_percent(caught, len(done))}) after "
            f"{time.monotonic() - started:.0f} s",
            flush=True,
        )
    return _report(_statuses(), tested, len(names), args, time.monotonic() - started)


def _copy_checkout() -> None:
    """The repository's files (tracked, and untracked but not ignored) copied to WORK."""
    if WORK.exists():
        shutil.rmtree(WORK)
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / os.fsdecode(name)
        if source.is_file() and not source.is_relative_to(ROOT / "mutation"):
            target = WORK / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _mutmut(
    arguments: list[str], *, check: bool = True, skip_clean: bool = False, timeout=None
) -> str | None:
    """Run mutmut's command line in WORK; a run's output is appended to RESULTS/mutmut.log.
    After ``timeout`` seconds (or on an interrupt of this script) mutmut's process group is
    stopped, SIGINT first and SIGKILL after a grace period, and None is returned. Its output
    goes to a file, not a pipe, so that a process it started in a session of its own (a
    test's `study simulate`) cannot hold this script up."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"PYTHONWARNINGS": "ignore", "MUTATE_SKIP_CLEAN": str(int(skip_clean))}
    command = [sys.executable, str(Path(__file__).with_name("_mutmut.py")), *arguments]
    with open(RESULTS / "mutmut.out", "w+", encoding="utf-8") as out:
        process = subprocess.Popen(
            command,
            cwd=WORK,
            env=env,
            text=True,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped whole
        )
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(process)
            return None
        except BaseException:  # Ctrl-C, SIGTERM: take mutmut and its workers along
            _stop(process)
            raise
        out.seek(0)
        output = out.read()
    if arguments[0] == "run":  # not the listings of `results` and `show`
        # without the spinner's frames, one line each
        text = "".join(
            line
            for line in output.splitlines(keepends=True)
            if not line.lstrip().startswith(SPINNER)
        )
        with open(RESULTS / "mutmut.log", "a", encoding="utf-8") as log:
            log.write(f"$ mutmut {' '.join(arguments[:4])} …\n{text}\n")
    if check and process.returncode != 0:
        raise SystemExit(
            f"mutate: mutmut failed (exit status {process.returncode}); see {RESULTS}/mutmut.log"
        )
    return output


def _stop(process: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop a mutmut process group: SIGINT (mutmut stops its workers and saves), then
    SIGKILL after ``grace`` seconds."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


def _meta_files() -> dict[Path, bytes]:
    """mutmut's result files, to put back when a batch is stopped (a kill in the middle of
    mutmut rewriting one would leave it truncated)."""
    return {path: path.read_bytes() for path in (WORK / "mutants").rglob("*.meta")}


def _statuses() -> dict[str, str]:
    """Every mutant's name and status, from `mutmut results --all true`."""
    out = _mutmut(["results", "--all", "true"])
    statuses = {}
    for line in out.splitlines():
        name, sep, status = line.strip().partition(": ")
        if sep and name.startswith("study."):  # not a warning's line
            statuses[name] = status.strip()
    return statuses


def _module(name: str) -> str:
    """``study.design`` of ``study.design.x_load_design__mutmut_3`` or of
    ``study.design.xǁ_Checkerǁnumber__mutmut_24`` (mutmut's mangled names)."""
    return re.sub(r"\.x[_ǁ].*$", "", name)


def _sample_order(names: dict[str, str], seed: int) -> list[str]:
    """All mutants in a random order that keeps every prefix spread over the modules in
    proportion to their mutants: shuffled within each module, then interleaved by each
    mutant's rank within its module divided by the module's size."""
    rng = random.Random(seed)
    by_module: dict[str, list[str]] = defaultdict(list)
    for name in sorted(names):
        by_module[_module(name)].append(name)
    keyed = []
    for mutants in by_module.values():
        rng.shuffle(mutants)
        n = len(mutants)
        keyed += [((i + rng.random()) / n, name) for i, name in enumerate(mutants)]
    return [name for _, name in sorted(keyed)]


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _report(statuses, tested, total, args, seconds) -> int:
    done = [n for n in tested if statuses.get(n) in CAUGHT | MISSED]
    caught = [n for n in done if statuses[n] in CAUGHT]
    missed = [n for n in done if statuses[n] in MISSED]
    low, high = _wilson(len(caught), len(done))
    by_module = defaultdict(Counter)
    for n in done:
        by_module[_module(n)]["caught" if statuses[n] in CAUGHT else "missed"] += 1
    counts = Counter(statuses.get(n, "not checked") for n in tested)
    lines = [
        "# `make mutate`",
        "",
        f"{len(done):,} of {total:,} mutants tested (a random sample, seed {args.seed}) in "
        f"{seconds:.0f} s with {args.jobs} jobs; caught {len(caught):,}, missed "
        f"{len(missed):,}; score {_percent(len(caught), len(done))}, 95 % interval "
        f"{100 * low:.1f}–{100 * high:.1f} %.",
        "",
        "Statuses of the sample: "
        + ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
        + " (caught: killed, timeout, segfault; missed: survived, no tests, suspicious; "
        "any other is not scored).",
        "",
        "| module | tested | caught | score |",
        "|---|---:|---:|---:|",
    ]
    for module in sorted(by_module):
        c = by_module[module]
        n = c["caught"] + c["missed"]
        lines.append(f"| `{module}` | {n} | {c['caught']} | {_percent(c['caught'], n)} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with open(RESULTS / "survivors.txt", "w", encoding="utf-8") as out:
        for name in sorted(missed):
            diff = _mutmut(["show", name], check=False)
            out.write(f"## {name}: {statuses[name]}\n{diff}\n")
    print("\n".join(lines[2:5]))
    print(f"(survivors with their diffs: {RESULTS / 'survivors.txt'})")
    print(f"mutation score: {len(caught)}/{len(done)} ({_percent(len(caught), len(done))})")
    return 0


def _percent(k: int, n: int) -> str:
    return f"{100 * k / n:.1f} %" if n else "–"


if __name__ == "__main__":
    sys.exit(main())
