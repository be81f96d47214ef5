"""mutation/mutate.py's own arithmetic: the sample's order, its score interval, how it
names a mutant's module, the split and merge of the recording and the matching of
equivalent mutants; and that a signal to it stops the mutmut process it started (a
stand-in for mutmut: mutmut itself is not run here, `make mutate` takes half an hour)."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "mutation"))
import mutate  # noqa: E402


def test_the_module_of_mangled_names():
    assert mutate._module("study.design.x_load_design__mutmut_3") == "study.design"
    assert mutate._module("study.design.xǁ_Checkerǁnumber__mutmut_24") == "study.design"
    assert mutate._module("study.report.figures._style.x_errorbar__mutmut_1") == (
        "study.report.figures._style"
    )


@pytest.mark.parametrize("k, n", [(57, 60), (0, 12), (12, 12), (300, 410)])
def test_the_wilson_interval_is_the_set_of_p_the_score_test_accepts(k, n):
    """Every p in the interval, and none outside it, has |k/n − p| ≤ 1.96·√(p(1 − p)/n):
    checked on a fine grid of p, independently of the closed form."""
    low, high = mutate._wilson(k, n)
    p = np.linspace(0, 1, 200_001)
    accepted = p[np.abs(k / n - p) <= 1.96 * np.sqrt(p * (1 - p) / n)]
    assert low == pytest.approx(accepted.min(), abs=1e-5)
    assert high == pytest.approx(accepted.max(), abs=1e-5)


def test_every_prefix_of_the_sample_is_spread_over_the_modules_in_proportion():
    sizes = {"study.a": 3000, "study.b": 600, "study.c": 60, "study.d": 7}
    names = {f"{mod}.x_f__mutmut_{i}": "not checked" for mod, n in sizes.items() for i in range(n)}
    order = mutate._sample_order(names, seed=3)
    assert sorted(order) == sorted(names)  # every mutant once
    assert order == mutate._sample_order(names, seed=3)  # the seed decides it
    assert order != mutate._sample_order(names, seed=4)
    total = sum(sizes.values())
    for n in (20, 60, 367, 1000):
        counts = Counter(mutate._module(name) for name in order[:n])
        for mod, size in sizes.items():
            # within two of the proportional share, for every module and prefix
            assert abs(counts[mod] - n * size / total) <= 2, (n, mod, counts)


def test_a_stopped_batch_takes_its_whole_process_group_along(tmp_path):
    """_stop ends a process and the children it started in its group, even one that
    ignores SIGINT, within the grace period."""
    import subprocess
    import time
    from pathlib import Path

    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(60)'])\n"
        f"open({str(tmp_path / 'child.pid')!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    pid_file = tmp_path / "child.pid"
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.05)
    child = int(pid_file.read_text())
    mutate._stop(process, grace=0.5)
    assert process.poll() is not None
    time.sleep(0.2)
    # gone, or a zombie waiting for init to reap it (its parent died too)
    stat = Path(f"/proc/{child}/stat")
    state = stat.read_text().rsplit(")", 1)[1].split()[0] if stat.exists() else "gone"
    assert state in ("gone", "Z"), state


def test_the_recording_shards_balance_the_files_costs():
    """Longest processing time first: every file in exactly one shard, and no shard's cost
    above the ideal share plus the largest single file (Graham's bound for this rule)."""
    rng = np.random.default_rng(5)
    files = [f"tests/test_{i:02d}.py" for i in range(23)]
    costs = dict(zip(files, rng.lognormal(1.0, 1.2, len(files)), strict=True))
    for n in (2, 3):
        parts = mutate._shards(files, costs, n)
        assert sorted(f for part in parts for f in part) == sorted(files)
        totals = [sum(costs[f] for f in part) for part in parts]
        assert max(totals) <= sum(costs.values()) / n + max(costs.values())
        assert max(totals) - min(totals) <= max(costs.values())
    # one costly file and many cheap ones: the costly one alone, the rest together
    costs = {"a": 10.0, "b": 1.0, "c": 1.0, "d": 1.0}
    assert mutate._shards(list(costs), costs, 2) == [["a"], ["b", "c", "d"]]


def test_merged_recordings_join_what_each_shard_saw():
    """A function reached by tests of both shards keeps the tests of both; each test keeps
    its seconds; the recording times add up; what both shards share is kept."""
    one = {
        "tests_by_mangled_function_name": {"study.a.x_f": ["t1::a"], "study.a.x_g": ["t1::b"]},
        "duration_by_test": {"t1::a": 0.5, "t1::b": 2.0},
        "stats_time": 3.0,
        "function_hashes": {"study.a.x_f": "h"},
        "function_dependencies": {"study.a.x_f": ["study.a.x_g"]},
        "config_fingerprint": {"test_selection": "s"},
        "watched_file_hashes": {},
        "git_commit": None,
    }
    two = one | {
        "tests_by_mangled_function_name": {"study.a.x_f": ["t2::c"], "study.b.x_h": ["t2::c"]},
        "duration_by_test": {"t2::c": 1.25},
        "stats_time": 4.5,
        "function_dependencies": {"study.a.x_f": ["study.b.x_h"]},
    }
    merged = mutate._merge_recordings([one, two])
    assert merged["tests_by_mangled_function_name"] == {
        "study.a.x_f": ["t1::a", "t2::c"],
        "study.a.x_g": ["t1::b"],
        "study.b.x_h": ["t2::c"],
    }
    assert merged["duration_by_test"] == {"t1::a": 0.5, "t1::b": 2.0, "t2::c": 1.25}
    assert merged["stats_time"] == 7.5
    assert merged["function_dependencies"] == {"study.a.x_f": ["study.a.x_g", "study.b.x_h"]}
    assert merged["function_hashes"] == one["function_hashes"]
    assert merged["config_fingerprint"] == one["config_fingerprint"]


def test_the_shards_cover_the_test_files_mutmut_runs():
    """The files split are those mutmut's runs collect: pyproject's ignored ones left out."""
    import tomllib

    files = mutate._test_files()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    ignored = [a.removeprefix("--ignore=") for a in config["pytest_add_cli_args"] if "=" in a]
    assert ignored and not set(ignored) & set(files)
    on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").glob("test_*.py")}
    assert set(files) == on_disk - set(ignored)
    costs = mutate._file_costs(files)
    assert set(costs) == set(files) and all(c > 0 for c in costs.values())


DIFF = """# study.moments.xǁCoMomentsǁcov__mutmut_4: survived
--- study/moments.py
+++ study/moments.py
@@ -1,6 +1,6 @@
 def cov(self) -> np.ndarray:
-    with np.errstate(invalid="ignore", divide="ignore"):
+    with np.errstate(invalid=None, divide="ignore"):
         return (
"""


def test_a_survivor_is_equivalent_only_in_its_function_and_for_its_change():
    entry = {
        "function": "study.moments.xǁCoMomentsǁcov",
        "removed": 'np.errstate(invalid="ignore"',
        "added": "np.errstate(invalid=None",
        "reason": "r",
    }
    other = entry | {"function": "study.moments.xǁCoMomentsǁfrom_samples"}
    name = "study.moments.xǁCoMomentsǁcov__mutmut_4"
    assert mutate._equivalent(name, DIFF, [other, entry]) is entry
    assert mutate._equivalent(name, DIFF, [other]) is None
    # the same function, another change: the other keyword dropped instead
    changed = DIFF.replace('invalid=None, divide="ignore"', 'invalid="ignore"')
    assert mutate._equivalent(name, changed, [entry]) is None
    # the entry's texts must be on the removed and the added side, not the other way round
    swapped = entry | {"removed": entry["added"], "added": entry["removed"]}
    assert mutate._equivalent(name, DIFF, [swapped]) is None
    # the diff's header lines are no changed lines
    header_only = '--- np.errstate(invalid="ignore"\n+++ np.errstate(invalid=None\n'
    assert mutate._equivalent(name, header_only, [entry]) is None


def test_an_entry_without_added_text_excuses_only_the_deletion_of_its_text():
    entry = {"function": "study.f.x_g", "removed": 'linestyle="none",', "added": "", "reason": "r"}
    name = "study.f.x_g__mutmut_3"
    head = "--- study/f.py\n+++ study/f.py\n@@ -1,3 +1,2 @@\n"
    deleted = head + '     marker="o",\n-    linestyle="none",\n     zorder=5,\n'
    assert mutate._equivalent(name, deleted, [entry]) is entry
    # the call shown reformatted on one line, the keyword gone
    joined = head + '-f(marker="o", linestyle="none", zorder=5)\n+f(marker="o", zorder=5)\n'
    assert mutate._equivalent(name, joined, [entry]) is entry
    # the same deletion in another function
    assert mutate._equivalent("study.f.x_h__mutmut_3", deleted, [entry]) is None
    # the text changed, not deleted; or deleted with another change beside it
    changed = head + '-    linestyle="none",\n+    linestyle="XXnoneXX",\n'
    assert mutate._equivalent(name, changed, [entry]) is None
    beside = head + '-    linestyle="none",\n-    zorder=5,\n+    zorder=6,\n'
    assert mutate._equivalent(name, beside, [entry]) is None


def test_every_listed_equivalent_is_still_in_its_function():
    """An entry whose line has gone (renamed, rewritten) would excuse nothing, or the wrong
    mutant: each `removed` text must be in the source of the function the entry names, and
    each entry must give its reason."""
    import importlib
    import inspect

    entries = mutate._equivalents()
    assert len(entries) >= 9
    for entry in entries:
        assert entry["reason"].strip() and entry["removed"] != entry["added"]
        module, _, mangled = entry["function"].rpartition(".")
        assert mangled.startswith("x"), entry
        if "ǁ" in mangled:
            _, cls, name = mangled.split("ǁ")
            function = getattr(getattr(importlib.import_module(module), cls), name)
        else:
            function = getattr(importlib.import_module(module), mangled.removeprefix("x_"))
        source = mutate._squeeze(inspect.getsource(function))
        assert mutate._squeeze(entry["removed"]) in source, entry


# A script that runs _mutmut with mutmut replaced by a sleeping process in a session of its
# own (as mutmut's is), and prints that process's id
_SLEEPER = """
import os, signal, subprocess, sys
sys.path.insert(0, {mutation!r})
import mutate
from pathlib import Path

mutate.RESULTS = Path({results!r})

def start(arguments, work, out, env):
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    print(child.pid, flush=True)
    if {early}:  # the signal before mutmut's process is returned to the code that stops it
        os.kill(os.getpid(), signal.SIGTERM)
    return child

mutate._start = start
if {handled}:
    mutate._stop_on_termination()
mutate._mutmut(["run"])
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize(
    "handled, early", [(True, False), (False, False), (True, True)], ids=["", "unhandled", "early"]
)
def test_sigterm_stops_mutmut_too(tmp_path, handled, early):
    """SIGTERM to the script stops the mutmut process it started (here a stand-in, in a
    session of its own like mutmut's); without the handler the stand-in would outlive it,
    which the second case shows. In the third the signal comes while the process is being
    started, before the code that stops it has it (a window once open: a SIGTERM right
    after the start left mutmut running)."""
    script = _SLEEPER.format(
        mutation=str(Path(mutate.__file__).parent),
        results=str(tmp_path / "results"),
        handled=handled,
        early=early,
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    child = int(proc.stdout.readline())
    try:
        if not early:
            proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        deadline = time.time() + 10
        while handled and _alive(child) and time.time() < deadline:
            time.sleep(0.05)
        if handled:
            assert proc.returncode == 1 and "mutate: stopped by SIGTERM" in stderr, stderr
            assert not _alive(child), "mutmut outlived the script"
        else:
            assert proc.returncode == -signal.SIGTERM
            assert _alive(child)
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_signal_the_script_was_started_ignoring_stays_ignored():
    """`nohup make mutate` starts the script with SIGHUP ignored: the handler leaves it so
    (the run goes on when the terminal closes) and still takes SIGTERM."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        mutate._stop_on_termination()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is mutate._terminated
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        mutate._stop_on_termination()
        assert signal.getsignal(signal.SIGHUP) is mutate._terminated
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
