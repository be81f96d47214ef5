"""`study plan`: the replications a target Monte Carlo standard error needs, from a pilot."""

import numpy as np
import pandas as pd
import pytest

from study.design import DesignError, design_from_dict
from study.plan import needed_replications, plan, plan_from_summary
from study.steps import simulate

from conftest import run_cli, small_design, write_design


def _design(**changes):
    raw = small_design(
        **{"grid.m": [4, 40, 300], "grid.degree": [1, 2], "grid.lambda": [0.0, 0.3]},
        **{"dgp.noise_sd": 1.7, "dgp.x": {"distribution": "uniform", "low": -0.4, "high": 1.6}},
        **{"output.keep_draws": 0},
        **changes,
    )
    return design_from_dict(raw)


def test_needed_replications_is_sd_over_target_squared():
    np.testing.assert_array_equal(needed_replications([0.5, 2.0, 0.0], 0.01), [2500, 40000, 2])
    # rounded up, never down: SD 0.0123, target 0.001 → 151.29 → 152
    assert needed_replications(0.0123, 0.001) == 152


def test_the_plan_meets_its_target_when_run(tmp_path):
    """Plan from a pilot of 256, run the planned replications, and every finite-variance
    bias has an MCSE near the target: at most 12 % above it (the pilot's SD is uncertain;
    the upper-limit plan covers that) and the largest within 25 % of it."""
    design = _design(replications=256)
    target = 0.02
    result = plan(design, target, pilot=256, jobs=1)
    assert result.pilot == 256 and result.infinite > 0  # λ = 0 at m = 4, degree 2
    assert set(result.table.m) == {4, 40, 300}
    assert result.needed_upper >= result.needed > 256
    full = _design(replications=result.needed)
    out = tmp_path / "full"
    simulate(full, out, jobs=2, progress=False)
    summary = pd.read_csv(out / "summary.csv")
    check = plan_from_summary(summary, target, full.replications)
    worst = (check.table.sd / np.sqrt(full.replications)).max()  # the largest bias MCSE
    assert worst <= 1.12 * target
    assert worst >= 0.75 * target


def test_the_cli_prints_the_plan_and_writes_nothing(tmp_path):
    path = write_design(tmp_path / "d.toml", small_design(**{"grid.m": [10, 50]}))
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = run_cli("plan", path, "--target-mcse", "0.01", "--pilot", "64", "--jobs", "1")
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("study: plan: bias MCSE ≤ 0.01 in every finite-variance cell needs ")
    assert "from a pilot of 64 replications" in last
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["--target-mcse", "0"], "--target-mcse"),
        (["--target-mcse", "0.01", "--pilot", "1"], "--pilot"),
    ],
)
def test_bad_options_are_refused_in_one_line(tmp_path, args, key):
    path = write_design(tmp_path / "d.toml", small_design())
    proc = run_cli("plan", path, *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], proc.stderr


@pytest.mark.parametrize("target", [0.0, -0.01, float("nan"), float("inf")])
def test_a_bad_target_is_refused_before_the_pilot_runs(monkeypatch, target):
    import study.engine.run

    def no_pilot(*args, **kwargs):
        raise AssertionError("the pilot ran before the options were checked")

    monkeypatch.setattr(study.engine.run, "simulate", no_pilot)
    with pytest.raises(DesignError, match=r"option '--target-mcse': got .*expected a number > 0"):
        plan(_design(), target, pilot=64)
    with pytest.raises(DesignError, match="option '--pilot'"):
        plan(_design(), 0.01, pilot=1)
    # a good target reaches the pilot
    with pytest.raises(AssertionError, match="the pilot ran"):
        plan(_design(), 0.01, pilot=64)


def test_plan_from_summary_refuses_a_bad_target():
    with pytest.raises(DesignError, match="--target-mcse"):
        plan_from_summary(pd.DataFrame(), -1.0, 100)
