"""`make mutate`: mutation testing of the core modules with mutmut, within a time budget.

mutmut (https://mutmut.readthedocs.io) rewrites every function of the modules listed under
``[tool.mutmut] only_mutate`` in pyproject.toml so that an environment variable switches it
to one of its mutants (an operator, a constant, an argument changed), records which tests
reach which function (its per-mutant test selection), and runs those tests against each
mutant: a mutant is killed when a test fails, and survives when all pass.

The core modules have about 18,000 mutants, far more than two cores test in half an hour.
So this script tests a random sample of them, drawn from a fixed seed and spread over the
modules in proportion to their mutants, as many as the time budget allows, and reports
the score of the sample with a 95 % Wilson interval: a Monte Carlo estimate of the score
of all mutants, like any other number of this study.

Recording which tests reach which function runs every test once, in one process; with
``--jobs N`` above 1 the test files are split into N shards of about equal cost (the last
run's recorded seconds per file, or the files' sizes), each recorded in a copy of its own at
the same time, and the recordings are merged into one before the mutants are tested.

It works in a copy of the repository's files (tracked, and untracked but not ignored) in
``mutation/work/``, so nothing of the checkout is touched; it writes
``mutation/results/survivors.txt`` (every surviving mutant of the sample with its diff)
and ``mutation/results/summary.md``, and prints ``mutation score: K/N (P %)`` last.

Usage: ``python mutation/mutate.py [--budget SECONDS] [--jobs N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "mutation" / "work"
RESULTS = ROOT / "mutation" / "results"
STATS = Path("mutants") / "mutmut-stats.json"  # mutmut's recording, within a work copy
# mutants shown to change nothing observable, each with its reason (docs/testing.md)
EQUIVALENTS = ROOT / "mutation" / "equivalents.toml"
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
    _stop_on_termination()
    started = time.monotonic()
    deadline = started + args.budget

    _copy_checkout(WORK)
    (RESULTS / "mutmut.log").unlink(missing_ok=True)
    # generation and the stats run (every test once, recording which functions it reaches
    # and how long it takes), in shards side by side
    print(
        "mutate: generating mutants and running every test once to see what it reaches"
        + (f", in {args.jobs} shards" if args.jobs > 1 else "")
    )
    _record(args.jobs)
    names = _statuses()
    if not names or not (WORK / STATS).exists():
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


def _terminated(signum, frame) -> None:
    raise SystemExit(f"mutate: stopped by {signal.Signals(signum).name}")


def _stop_on_termination() -> None:
    """SIGTERM and SIGHUP raise SystemExit, as Ctrl-C raises KeyboardInterrupt, so that
    the clean-up around each mutmut process runs: mutmut and its workers live in sessions
    of their own, which no signal to this script reaches (a background job, as `make
    mutate &` starts, even ignores SIGINT). A signal the script was started ignoring stays
    ignored: `nohup make mutate` goes on when its terminal closes."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _terminated)


@contextmanager
def _signals_held():
    """SIGINT, SIGTERM and SIGHUP recorded, not acted on, inside the block; yields the list
    they are recorded in, for the caller to raise again once it can clean up. Without it a
    signal between mutmut's start and the assignment that lets the clean-up find it would
    end this script and leave mutmut running in its own session. Raised again, a signal
    meets the handler it had: a Python one (Ctrl-C's, :func:`_stop_on_termination`'s)
    raises where the caller cleans up; SIG_DFL ends the script at once, as it would have.
    Ignored signals stay ignored; outside the main thread, where handlers cannot be set,
    nothing is held. If the block raises, what it held is dropped with it."""
    held: list[int] = []
    saved = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            handler = signal.getsignal(sig)
            if handler is not signal.SIG_IGN and handler is not None:
                saved[sig] = handler
                signal.signal(sig, lambda signum, frame: held.append(signum))
    try:
        yield held
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _copy_checkout(work: Path) -> None:
    """The repository's files (tracked, and untracked but not ignored) copied to ``work``."""
    if work.exists():
        shutil.rmtree(work)
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / os.fsdecode(name)
        if source.is_file() and not source.is_relative_to(ROOT / "mutation"):
            target = work / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _record(shards: int) -> None:
    """mutmut's generation and recording, the test files split into ``shards`` parts
    recorded side by side (shard 0 in WORK, shard k in a copy WORK-k), then merged into
    WORK's recording. A name that matches no mutant stops each mutmut right after it."""
    files = _test_files()
    parts = _shards(files, _file_costs(files), shards) if shards > 1 else [files]
    works = [WORK] + [WORK.with_name(f"{WORK.name}-{k}") for k in range(1, len(parts))]
    for stale in WORK.parent.glob(f"{WORK.name}-*"):  # an interrupted run's copies
        shutil.rmtree(stale, ignore_errors=True)
    for work in works[1:]:
        _copy_checkout(work)
    processes = []
    for k, (work, part) in enumerate(zip(works, parts, strict=True)):
        others = sorted(set(files) - set(part))
        # PYTEST_ADDOPTS is read by every pytest run, mutmut's in-process ones too; the
        # configuration (and so mutmut's fingerprint of it) stays the same in every copy
        env = {"PYTEST_ADDOPTS": " ".join(f"--ignore={name}" for name in others)}
        arguments = ["run", "--max-children", "1", "no-such-mutant"]
        processes.append(_start(arguments, work, RESULTS / f"mutmut-record-{k}.out", env))
    try:
        for process in processes:
            process.wait()
    except BaseException:
        for process in processes:
            _stop(process)
        for work in works[1:]:
            shutil.rmtree(work, ignore_errors=True)
        raise
    for k in range(len(works)):
        out = (RESULTS / f"mutmut-record-{k}.out").read_text(encoding="utf-8", errors="replace")
        _log(f"record shard {k}: {len(parts[k])} test files", out)
    recordings = [json.loads((w / STATS).read_text()) for w in works if (w / STATS).exists()]
    for work in works[1:]:
        shutil.rmtree(work, ignore_errors=True)
    if len(recordings) != len(works):
        # a partial recording would leave the other shards' tests to be recorded inside
        # the first batch's time limit, or select no test for their functions
        (WORK / STATS).unlink(missing_ok=True)
        raise SystemExit(
            f"mutate: a shard of the recording failed; see {RESULTS}/mutmut-record-*.out"
            f" and {RESULTS}/mutmut.log"
        )
    (WORK / STATS).write_text(json.dumps(_merge_recordings(recordings), indent=1))
    _save_file_costs(recordings)


def _test_files() -> list[str]:
    """The test files mutmut's runs collect: tests/test_*.py less those pyproject.toml's
    [tool.mutmut] pytest_add_cli_args ignore."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    ignored = {a.removeprefix("--ignore=") for a in config.get("pytest_add_cli_args", [])}
    return [
        path.relative_to(ROOT).as_posix()
        for path in sorted((ROOT / "tests").glob("test_*.py"))
        if path.relative_to(ROOT).as_posix() not in ignored
    ]


def _file_costs(files: list[str]) -> dict[str, float]:
    """Each test file's cost for the split: its seconds in the last recording, when one
    was saved, or else its size in bytes scaled to seconds (a new file, or no recording)."""
    saved = RESULTS / "file-seconds.json"
    seconds = json.loads(saved.read_text()) if saved.exists() else {}
    # bytes to seconds: the saved files' ratio, or a nominal 2 kB a second
    known = [f for f in files if f in seconds]
    total_bytes = sum((ROOT / f).stat().st_size for f in known)
    per_byte = sum(seconds[f] for f in known) / total_bytes if total_bytes else 1 / 2000
    return {f: seconds.get(f, (ROOT / f).stat().st_size * per_byte) for f in files}


def _shards(files: list[str], costs: dict[str, float], n: int) -> list[list[str]]:
    """``files`` in ``n`` parts of about equal total cost: the costliest first, each to
    the part with the least so far (longest processing time first)."""
    parts: list[list[str]] = [[] for _ in range(n)]
    totals = [0.0] * n
    for name in sorted(files, key=lambda f: (-costs[f], f)):
        k = totals.index(min(totals))
        parts[k].append(name)
        totals[k] += costs[name]
    return [sorted(part) for part in parts if part]


def _merge_recordings(recordings: list[dict]) -> dict:
    """One mutmut recording from the shards' recordings: the tests that reach each
    function and the callers of each function joined, the tests' seconds gathered, the
    recording time added up; the rest (function hashes, configuration) is the same in each."""
    merged = dict(recordings[0])
    for key in ("tests_by_mangled_function_name", "function_dependencies"):
        joined: dict[str, set] = defaultdict(set)
        for recording in recordings:
            for name, values in recording[key].items():
                joined[name].update(values)
        merged[key] = {name: sorted(values) for name, values in sorted(joined.items())}
    merged["duration_by_test"] = {
        test: seconds
        for recording in recordings
        for test, seconds in recording["duration_by_test"].items()
    }
    merged["stats_time"] = sum(recording["stats_time"] or 0.0 for recording in recordings)
    return merged


def _save_file_costs(recordings: list[dict]) -> None:
    """The seconds of each test file's tests in this recording, for the next run's split."""
    seconds: dict[str, float] = defaultdict(float)
    for recording in recordings:
        for test, s in recording["duration_by_test"].items():
            seconds[test.split("::")[0]] += s
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "file-seconds.json").write_text(json.dumps(dict(sorted(seconds.items())), indent=1))


def _mutmut(
    arguments: list[str], *, check: bool = True, skip_clean: bool = False, timeout=None
) -> str | None:
    """Run mutmut's command line in WORK; a run's output is appended to RESULTS/mutmut.log.
    After ``timeout`` seconds (or on an interrupt of this script) mutmut's process group is
    stopped, SIGINT first and SIGKILL after a grace period, and None is returned. Its output
    goes to a file, not a pipe, so that a process it started in a session of its own (a
    test's `study simulate`) cannot hold this script up."""
    skip = {"MUTATE_SKIP_CLEAN": str(int(skip_clean))}
    process = None
    try:
        with _signals_held() as held:  # until `process` names it (or the start failed)
            process = _start(arguments, WORK, RESULTS / "mutmut.out", skip)
        for sig in held:  # a signal that came while mutmut started: now, where it is stopped
            signal.raise_signal(sig)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(process)
        return None
    except BaseException:  # Ctrl-C, SIGTERM: take mutmut and its workers along
        if process is not None:
            _stop(process)
        raise
    output = (RESULTS / "mutmut.out").read_text(encoding="utf-8", errors="replace")
    if arguments[0] == "run":  # not the listings of `results` and `show`
        _log(" ".join(arguments[:4]) + " …", output)
    if check and process.returncode != 0:
        raise SystemExit(
            f"mutate: mutmut failed (exit status {process.returncode}); see {RESULTS}/mutmut.log"
        )
    return output


def _start(arguments: list[str], work: Path, out: Path, env: dict) -> subprocess.Popen:
    """mutmut's command line started in ``work``, its output to the file ``out``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"PYTHONWARNINGS": "ignore", "MUTATE_SKIP_CLEAN": "0"} | env
    command = [sys.executable, str(Path(__file__).with_name("_mutmut.py")), *arguments]
    with open(out, "w", encoding="utf-8") as stream:
        return subprocess.Popen(
            command,
            cwd=work,
            env=env,
            text=True,
            stdout=stream,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped whole
        )


def _log(title: str, output: str) -> None:
    """A run's output, without the spinner's frames, appended to RESULTS/mutmut.log."""
    text = "".join(
        line for line in output.splitlines(keepends=True) if not line.lstrip().startswith(SPINNER)
    )
    with open(RESULTS / "mutmut.log", "a", encoding="utf-8") as log:
        log.write(f"$ mutmut {title}\n{text}\n")


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
    diffs = {n: _mutmut(["show", n], check=False) or "" for n in done if statuses[n] in MISSED}
    entries = _equivalents()
    equivalent = {n: e for n, diff in diffs.items() if (e := _equivalent(n, diff, entries))}
    missed = [n for n in diffs if n not in equivalent]
    scored = len(caught) + len(missed)
    low, high = _wilson(len(caught), scored)
    by_module = defaultdict(Counter)
    for n in done:
        kind = "caught" if n in caught else "equivalent" if n in equivalent else "missed"
        by_module[_module(n)][kind] += 1
    counts = Counter(statuses.get(n, "not checked") for n in tested)
    lines = [
        "# `make mutate`",
        "",
        f"{len(done):,} of {total:,} mutants tested (a random sample, seed {args.seed}) in "
        f"{seconds:.0f} s with {args.jobs} jobs; caught {len(caught):,}, missed "
        f"{len(missed):,}, equivalent {len(equivalent):,} (listed in "
        f"mutation/equivalents.toml, left out of the score); score "
        f"{_percent(len(caught), scored)}, 95 % interval {100 * low:.1f}–{100 * high:.1f} % "
        f"({_percent(len(caught), len(done))} with the equivalent ones counted as missed).",
        "",
        "Statuses of the sample: "
        + ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
        + " (caught: killed, timeout, segfault; missed: survived, no tests, suspicious; "
        "any other is not scored).",
        "",
        "| module | tested | caught | equivalent | score |",
        "|---|---:|---:|---:|---:|",
    ]
    for module in sorted(by_module):
        c = by_module[module]
        n = c["caught"] + c["missed"]
        lines.append(
            f"| `{module}` | {n + c['equivalent']} | {c['caught']} | {c['equivalent']} | "
            f"{_percent(c['caught'], n)} |"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with open(RESULTS / "survivors.txt", "w", encoding="utf-8") as out:
        for name in sorted(diffs):
            if name in equivalent:
                note = f"equivalent: {equivalent[name]['reason']}"
            else:
                note = statuses[name]
            out.write(f"## {name}: {note}\n{diffs[name]}\n")
    print("\n".join(lines[2:5]))
    print(f"(survivors with their diffs: {RESULTS / 'survivors.txt'})")
    print(f"mutation score: {len(caught)}/{scored} ({_percent(len(caught), scored)})")
    return 0


def _equivalents(path: Path = EQUIVALENTS) -> list[dict]:
    """The listed equivalent mutants: each names a function (mutmut's mangled name without
    the mutant's number), a text of the line the mutant removes, a text of the line it
    adds (empty for a deletion of that text), and why the change cannot be observed."""
    if not path.exists():
        return []
    return tomllib.loads(path.read_text(encoding="utf-8")).get("equivalent", [])


def _function(name: str) -> str:
    """``study.moments.xǁCoMomentsǁcov`` of ``study.moments.xǁCoMomentsǁcov__mutmut_7``."""
    return re.sub(r"__mutmut_\d+$", "", name)


def _equivalent(name: str, diff: str, entries: list[dict]) -> dict | None:
    """The entry of ``entries`` that a surviving mutant matches, or None: the same function,
    and a changed line that contains the entry's ``removed`` text and one that contains its
    ``added`` text (spaces ignored: mutmut reformats the lines it shows). An entry whose
    ``added`` is empty is a deletion: the changed lines without its ``removed`` text, and
    nothing else, are the lines that replace them."""
    body = diff.splitlines()
    removed = [
        _squeeze(line[1:]) for line in body if line.startswith("-") and not line.startswith("---")
    ]
    added = [
        _squeeze(line[1:]) for line in body if line.startswith("+") and not line.startswith("+++")
    ]
    for entry in entries:
        cut = _squeeze(entry["removed"])
        if entry["function"] != _function(name) or not any(cut in line for line in removed):
            continue
        if entry["added"]:
            if any(_squeeze(entry["added"]) in line for line in added):
                return entry
        elif "".join(removed).replace(cut, "", 1) == "".join(added):
            return entry
    return None


def _squeeze(text: str) -> str:
    return "".join(text.split())


def _percent(k: int, n: int) -> str:
    return f"{100 * k / n:.1f} %" if n else "–"


if __name__ == "__main__":
    sys.exit(main())
