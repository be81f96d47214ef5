"""The logistic family's best penalty α*(m) and its limit: the minimiser of the large-m
expansion of the risk, checked against a brute-force search of the same expansion, the
limit against α*(m) at huge m, and the expansion's risk against Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from study.basis import standard_basis
from study.design import XDistribution
from study.theory.logistic import (
    LogisticLargeM,
    alpha_limit,
    best_alpha,
    expansion_risk,
    logistic_tuning_table,
)

from conftest import run_cli, write_design

# asymmetric, not touching ±1; a line other than the default's
X = XDistribution(distribution="uniform", low=-0.5, high=2.0)
LINE = {"intercept": -0.5, "slope": 1.7}


def _risk_by_hand(problem, m, alpha):
    """R̃ written out from the expansion's parts: ‖b∞ + b₁/m‖²_Σ + tr(Σ·S)/m at c = α/m."""
    th = LogisticLargeM(problem, X, alpha / m)
    bias = th.b_u + th.b1_u / m
    return bias @ problem.sigma @ bias + np.trace(problem.sigma @ th.cov_u) / m


def _brute_force(problem, m, lo=-7.0, hi=12.0, n=400):
    """α minimising R̃ on a fine log grid, then on a finer one around the best."""
    grid = np.linspace(lo, hi, n)
    risks = [_risk_by_hand(problem, m, math.exp(g)) for g in grid]
    i = int(np.argmin(risks))
    fine = np.linspace(grid[max(i - 1, 0)], grid[min(i + 1, n - 1)], 81)
    risks = [_risk_by_hand(problem, m, math.exp(g)) for g in fine]
    return math.exp(fine[int(np.argmin(risks))])


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_best_alpha_is_the_minimiser_of_the_expansion(degree):
    problem = standard_basis(X, degree, **LINE)
    for m in (60, 2000):
        found = best_alpha(problem, X, m)
        assert found["boundary"] == ""
        assert found["alpha"] == pytest.approx(_brute_force(problem, m), rel=0.01)
        assert found["risk"] == pytest.approx(_risk_by_hand(problem, m, found["alpha"]), 1e-12)


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_the_limit_is_where_alpha_star_goes(degree):
    """α*∞ from its closed form against α*(m) at m = 10⁹, found by the brute-force search
    of R̃ (a limit without its 1/m bias term misses by far more than the tolerance, below)."""
    problem = standard_basis(X, degree, **LINE)
    limit = alpha_limit(problem, X)
    assert limit == pytest.approx(_brute_force(problem, 1e9), rel=0.01)


def test_the_limit_needs_its_one_over_m_bias(monkeypatch):
    """The Cox–Snell term matters to the limit: dropping it (everywhere, so that the brute
    force above would follow it) moves α*∞ by more than 5 %, far beyond that test's 1 %
    tolerance; so the closed form must carry it to agree with R̃'s minimiser."""
    problem = standard_basis(X, 2, **LINE)
    right = alpha_limit(problem, X)
    original = LogisticLargeM.__init__

    def without_b1(self, *args, **kw):
        original(self, *args, **kw)
        self.b1_u = np.zeros_like(self.b1_u)

    monkeypatch.setattr(LogisticLargeM, "__init__", without_b1)
    wrong = alpha_limit(problem, X)
    assert abs(wrong / right - 1) > 0.05


def test_the_tuning_table_maps_alpha_star_to_each_scaling():
    table = logistic_tuning_table([40, 400], 2, ["none", "m", "sqrt-m"], x=X, **LINE)
    for m, g in table.groupby("m"):
        g = g.set_index("scaling")
        alpha = g.alpha_opt.iloc[0]
        assert (g.alpha_opt == alpha).all()
        assert g.loc["m", "lambda_opt"] == alpha
        assert g.loc["none", "lambda_opt"] == pytest.approx(alpha / m, rel=1e-15)
        assert g.loc["sqrt-m", "lambda_opt"] == pytest.approx(alpha / math.sqrt(m), rel=1e-15)
    # the leverage at α* falls with m (2(k + 1)·max σ′h/m; α* moves too)
    lev = table.groupby("m").asym_leverage.first()
    assert lev.loc[400] < lev.loc[40] / 3


def test_the_expansions_risk_is_the_monte_carlo_risk_at_large_m(tmp_path):
    """At m = 400 and degree 1 (a point's leverage about 0.04) the simulated risk of the
    fitted log-odds agrees with R̃ within 4 MCSE plus twice the leverage (the size of the
    terms the expansion leaves out), at three penalties; a wrong factor in R̃ (its variance
    term without the 1/m, or the bias without Σ) would be off by far more."""
    raw = {
        "name": "lt",
        "seed": 5,
        "replications": 1500,
        "model": {"family": "logistic"},
        "dgp": {**LINE, "x": {"distribution": "uniform", "low": -0.5, "high": 2.0}},
        "grid": {
            "m": [400],
            "degree": [1],
            "lambda": [0.3, 3.0, 30.0],
            "scaling": ["m"],
            "penalize_intercept": False,
        },
        "output": {"keep_draws": 0},
    }
    out = tmp_path / "out"
    run_cli("simulate", write_design(tmp_path / "d.toml", raw), "--out", out, "-q", check=True)
    risk = pd.read_csv(out / "risk.csv")
    problem = standard_basis(X, 1, **LINE)
    for row in risk.itertuples():
        th = LogisticLargeM(problem, X, row.alpha / row.m)
        expected = expansion_risk(th, problem, row.m)
        leverage = 2 * 2 * th.max_leverage / row.m
        assert abs(row.risk - expected) <= 4 * row.risk_mcse + 2 * leverage * expected, row
