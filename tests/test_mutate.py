"""mutation/mutate.py's own arithmetic: the sample's order, its score interval, and how it
names a mutant's module (mutmut itself is not run here: `make mutate` takes half an hour)."""

import sys
from collections import Counter

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
