"""The minibatch experiment of the theory step ([minibatch] in a design, minibatch.csv, the
report's paragraph and figure): its exact fits against scikit-learn, its SGD runs against
them, its data against the documented stream, and the file across jobs and reruns."""

from __future__ import annotations

import io
import math
import warnings

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from study.design import MINIBATCH_DEFAULTS, design_from_dict
from study.report.assets import minibatch_section
from study.report.figures import fig_minibatch
from study.theory.minibatch import experiment_data, minibatch_table

from conftest import run_cli, small_design, write_design

# an asymmetric x range, a negative intercept, λ ≠ 1 and batch sizes that do not divide m
SPEC = {"m": 150, "degree": 2, "lambda": 3.0, "batch_size": [1, 15, 40, 150], "seeds": 2}
LINE = {"dgp.intercept": -0.5, "dgp.slope": 1.7, "dgp.x.low": -0.5, "dgp.x.high": 2.0}


def _design(**spec):
    return design_from_dict(small_design(**LINE, minibatch=SPEC | spec))


@pytest.fixture(scope="module")
def table():
    design = _design()
    return design, minibatch_table(design)


def _sklearn(x, y, degree, alpha):
    """LogisticRegression(C = 1/α) on x, …, x^k with an unpenalised intercept: the mean
    log-loss plus (α/2m)Σ_{j≥1} w_j², scaled by C·m."""
    features = np.vander(x, degree + 1, increasing=True)[:, 1:]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = LogisticRegression(C=1 / alpha, tol=1e-12, max_iter=10_000).fit(features, y)
    return np.concatenate([model.intercept_, model.coef_[0]])


def test_the_estimate_counts_the_runs_the_experiment_makes(monkeypatch):
    """minibatch_seconds (the run's estimate) prices the steps and batch points of the runs
    minibatch_table actually makes, counted from its calls: B = m runs once for both
    divisors, a B that does not divide m leaves points over, short runs take 2 epochs."""
    from study.engine import costs, sgd

    counted = {"steps": 0, "points": 0}
    compiled_steps = sgd.compiled_steps

    def counting(phi, y, P, c, eta0, tau, epochs, B, rng):
        per_epoch = phi.shape[0] // B
        counted["steps"] += epochs * per_epoch
        counted["points"] += epochs * per_epoch * B
        return compiled_steps(phi, y, P, c, eta0, tau, epochs, B, rng)

    monkeypatch.setattr("study.theory.minibatch.compiled_steps", counting)
    design = _design(steps=300)  # B = 150: one step an epoch, 300 epochs
    minibatch_table(design)
    expected = (
        counted["steps"] * costs.MINIBATCH_SECONDS_PER_STEP
        + counted["points"] * costs.MINIBATCH_SECONDS_PER_POINT
    )
    assert counted["steps"] > 0
    assert costs.minibatch_seconds(design) == pytest.approx(expected, rel=1e-12)
    assert costs.minibatch_seconds(design_from_dict(small_design())) == 0.0  # none


def test_the_data_are_the_documented_stream_and_the_design_line_as_log_odds():
    design = _design()
    x, y = experiment_data(design)
    rng = np.random.default_rng(np.random.SeedSequence(design.seed, spawn_key=(0,)))
    # uniform on [−0.5, 2]: centre 0.75, half-width 1.25, from the stream's uniform(−1, 1)
    x_ref = 0.75 + 1.25 * rng.uniform(-1.0, 1.0, 150)
    y_ref = rng.random(150) < 1.0 / (1.0 + np.exp(-(-0.5 + 1.7 * x_ref)))
    np.testing.assert_allclose(x, x_ref, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(y, y_ref.astype(float))
    assert 0.2 < y.mean() < 0.9  # both labels, in proportions the line gives


def test_the_exact_fits_are_scikit_learns_at_the_alpha_each_divisor_solves(table):
    design, frame = table
    x, y = experiment_data(design)
    m, lam = 150, 3.0
    for (divisor, B), part in frame.groupby(["divisor", "batch_size"]):
        alpha = lam if divisor == "m" else m * lam / B
        np.testing.assert_allclose(part.alpha, alpha, rtol=1e-15)
        exact = part[part.seed == 0].sort_values("coef").exact.to_numpy()
        np.testing.assert_allclose(exact, _sklearn(x, y, 2, alpha), rtol=1e-6)
        ng = part[part.seed == 0].sort_values("coef").exact_m.to_numpy()
        np.testing.assert_allclose(ng, _sklearn(x, y, 2, lam), rtol=1e-6)
    assert len(frame) == 2 * 4 * 2 * 3  # divisors × batch sizes × seeds × coefficients


def test_sgd_reaches_the_exact_fit_of_its_own_objective_and_only_the_m_divisor_reaches_ngs(
    table,
):
    _, frame = table
    for (divisor, B, seed), run in frame.groupby(["divisor", "batch_size", "seed"]):
        scale = run.exact.abs().max()
        gap = (run.sgd - run.exact).abs().max() / scale
        assert gap < (0.01 if B == 1 else 0.005), (divisor, B, seed, gap)
        off_ng = (run.sgd - run.exact_m).abs().max() / run.exact_m.abs().max()
        if divisor == "m" or B == 150:
            assert off_ng < 0.01, (divisor, B, seed)
        else:  # α = m·λ/B from 450 down to 11.25: a different model, more shrunk
            assert off_ng > 0.1, (divisor, B, seed)
    slope = frame[(frame.coef == 1) & (frame.seed == 0) & (frame.divisor == "batch")]
    assert np.all(np.diff(slope.sort_values("batch_size").exact.abs()) > 0)


def test_the_seeds_give_different_runs_and_the_table_is_reproducible(table):
    design, frame = table
    runs = frame[(frame.divisor == "m") & (frame.batch_size == 1)]
    assert not np.array_equal(runs[runs.seed == 0].sgd, runs[runs.seed == 1].sgd)
    again = minibatch_table(_design(batch_size=[1], seeds=2))
    mine = frame[frame.batch_size == 1].reset_index(drop=True)
    pd.testing.assert_frame_equal(again, mine)


def test_the_table_is_optional_has_defaults_and_leaves_the_design_identity_alone():
    plain = design_from_dict(small_design())
    assert plain.minibatch is None
    full = design_from_dict(small_design(minibatch={}))
    assert full.minibatch.to_dict() == MINIBATCH_DEFAULTS
    assert full.hash == plain.hash  # read by the theory step alone: checkpoints stay valid
    assert design_from_dict(full.to_dict()).minibatch == full.minibatch
    assert _design().minibatch.batch_sizes == (1, 15, 40, 150)
    # without batch_size: 1, 10 and 100 where below m, and m
    small = design_from_dict(small_design(minibatch={"m": 50}))
    assert small.minibatch.batch_sizes == (1, 10, 50)


def test_a_run_in_this_process_writes_the_designs_minibatch_table(tmp_path):
    """The theory step of a run writes minibatch.csv from the design's own [minibatch]
    (the table computed here directly, apart from any run) and lists it in the manifest;
    in this process, so that `make mutate`'s recording sees the step (the test below runs
    the command line)."""
    from study.steps import simulate

    spec = {"m": 60, "batch_size": [1, 6, 60], "seeds": 2, "steps": 600}
    design = design_from_dict(small_design(**{"grid.m": [8]}, **LINE, minibatch=spec))
    simulate(design, tmp_path / "out", jobs=1, progress=False)
    written = pd.read_csv(tmp_path / "out" / "minibatch.csv")
    # floats written in full (shortest round-trip repr): read back bit for bit (pandas'
    # default parser round-trips; its float_precision option is deprecated)
    pd.testing.assert_frame_equal(written, minibatch_table(design), check_exact=True)
    assert '"minibatch.csv"' in (tmp_path / "out" / "manifest.json").read_text()


# slow (15 s): the default suite is at its five minutes; the engine's own byte-identity
# across jobs is in the default suite (tests/test_engine.py)
@pytest.mark.slow
def test_the_run_writes_minibatch_csv_the_same_with_one_or_two_jobs_and_removes_it_without(
    tmp_path,
):
    spec = {"m": 60, "batch_size": [1, 6, 60], "seeds": 2, "steps": 600}
    with_table = write_design(
        tmp_path / "with.toml", small_design(**{"grid.m": [8]}, minibatch=spec)
    )
    one, two = tmp_path / "one", tmp_path / "two"
    run_cli("simulate", with_table, "--out", one, "-q", check=True)
    run_cli("simulate", with_table, "--out", two, "-q", "-j", "2", check=True)
    text = (one / "minibatch.csv").read_bytes()
    assert text == (two / "minibatch.csv").read_bytes()
    manifest = (one / "manifest.json").read_text()
    assert '"minibatch.csv"' in manifest and '"minibatch"' in manifest
    # the same design without the table: the run resumes and the file goes
    without = write_design(tmp_path / "without.toml", small_design(**{"grid.m": [8]}))
    run_cli("simulate", without, "--out", one, "-q", check=True)
    assert not (one / "minibatch.csv").exists()
    assert '"minibatch.csv"' not in (one / "manifest.json").read_text()


def test_the_report_paragraph_quotes_the_table(table):
    design, frame = table
    text = minibatch_section(design, frame)
    keys = ["divisor", "batch_size", "seed"]
    gap = frame.assign(d=(frame.sgd - frame.exact_m).abs(), s=frame.exact_m.abs())
    worst = gap.groupby(keys).d.max() / gap.groupby(keys).s.max()
    up = lambda share: f"{math.ceil(share * 1e4) / 100:.2f} %"  # noqa: E731
    assert up(worst.loc["m"].max()) in text  # a largest gap, rounded up
    own = frame.assign(d=(frame.sgd - frame.exact).abs(), s=frame.exact.abs())
    worst_own = own.groupby(keys).d.max() / own.groupby(keys).s.max()
    assert up(worst_own.loc["batch"].max()) in text
    # a smallest gap, rounded down: B = 1 with the penalty divided by B against Ng's model
    least = math.floor(worst.loc["batch"].loc[1].min() * 1e3) / 10
    assert f"at least {least:.1f} %" in text
    assert "reaches the same model" in text and "a different model for every" in text
    # too few steps: the paragraph no longer says the runs reach anything
    short = frame.assign(sgd=frame.sgd * 1.05)
    paragraph = minibatch_section(design, short).split("![")[0]  # without the caption
    assert "reaches" not in paragraph and "no closer" in paragraph
    assert "α = 450 at B = 1 to 3 at B = 150" in text
    assert "{#fig-minibatch}" in text and "@fig-minibatch" in text
    assert "[minibatch]" in minibatch_section(design_from_dict(small_design()), None)


def test_the_figure_draws_the_tables_numbers(table):
    _, frame = table
    fig = fig_minibatch(frame)
    slope = frame[frame.coef == 1]
    for ax, divisor in zip(fig.axes, ["m", "batch"], strict=True):
        part = slope[slope.divisor == divisor]
        (exact,) = [ln for ln in ax.lines if ln.get_gid() == "exact"]
        want = part.groupby("batch_size").exact.first()
        np.testing.assert_array_equal(exact.get_xdata(), want.index)
        np.testing.assert_array_equal(exact.get_ydata(), want.to_numpy())
        for seed in (0, 1):
            (run,) = [ln for ln in ax.lines if ln.get_gid() == f"sgd-{seed}"]
            got = part[part.seed == seed].sort_values("batch_size").sgd.to_numpy()
            np.testing.assert_array_equal(run.get_ydata(), got)
        (ng,) = [ln for ln in ax.lines if ln.get_gid() is None and ln.get_linestyle() != "None"]
        assert ng.get_ydata()[0] == slope.exact_m.iloc[0]
    # the panels share their y axis: its label once, on the left
    left, right = (ax.get_ylabel() for ax in fig.axes)
    assert left.startswith("ŵ₁") and right == ""
    # the SGD runs are drawn in each divisor's colour, so their legend entry is neutral grey
    (legend,) = fig.legends
    (sgd,) = [
        h
        for h, t in zip(legend.legend_handles, legend.get_texts(), strict=True)
        if t.get_text().startswith("SGD")
    ]
    r, g, b = mcolors.to_rgb(sgd.get_color())
    assert r == g == b and 0 < r < 1
    # and it draws: labels and annotations are laid out only then
    fig.savefig(io.BytesIO(), format="png")
