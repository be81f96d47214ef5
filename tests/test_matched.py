"""The matched comparison (matched.csv): each scaling's λ tuned at the reference m and held
fixed. Checked against plain ridge fits on fresh data from an independent generator, and
against the definitions of the scalings."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from study.design import DesignError, design_from_dict
from study.theory.tuning import matched_table, tuning_table

from conftest import small_design

# an asymmetric x range, σ ≠ 1 and a nonzero intercept, so that a wrong power or factor shows
DESIGN = small_design(
    **{
        "dgp.x": {"distribution": "uniform", "low": -0.5, "high": 2.0},
        "dgp.noise_sd": 0.5,
        "dgp.intercept": 1.5,
        "dgp.slope": -1.0,
        "grid.m": [15, 30, 60],
        "grid.degree": [2],
        "grid.scaling": ["m", "none", "sqrt-m"],
        "replications": 2000,
    }
)
DESIGN["tuning"] = {"reference_m": 30}


@pytest.fixture(scope="module")
def matched():
    design = design_from_dict(DESIGN)
    return design, matched_table(design, tuning_table(design))


def _plain_fits(x, y, alpha, degree):
    """Ridge with the intercept unpenalised, data set by data set (normal equations)."""
    n, m = x.shape
    out = np.empty((n, degree + 1))
    D = np.eye(degree + 1)
    D[0, 0] = 0.0
    for i in range(n):
        phi = np.vander(x[i], degree + 1, increasing=True)
        out[i] = np.linalg.solve(phi.T @ phi + alpha * D, phi.T @ y[i])
    return out


def test_the_plain_fit_is_scikit_learns_ridge():
    rng = np.random.default_rng(1)
    x = rng.uniform(-0.5, 2.0, (1, 25))
    y = 1.5 - x + 0.5 * rng.normal(size=x.shape)
    w = _plain_fits(x, y, 0.7, 2)[0]
    features = np.column_stack([x[0], x[0] ** 2])
    ref = Ridge(alpha=0.7).fit(features, y[0])
    np.testing.assert_allclose(w, [ref.intercept_, *ref.coef_], rtol=1e-10)


def test_bias_and_variance_match_fits_on_fresh_data(matched):
    design, table = matched
    rng = np.random.default_rng(20261201)  # not the study's streams
    n = 20_000
    w_star = np.array([1.5, -1.0, 0.0])
    for m in (15, 60):
        x = rng.uniform(-0.5, 2.0, (n, m))
        y = 1.5 - x + 0.5 * rng.normal(size=x.shape)
        for scaling in ("m", "none"):
            rows = table[(table.m == m) & (table.scaling == scaling)].sort_values("coef")
            w = _plain_fits(x, y, float(rows.alpha.iloc[0]), 2)
            bias = w.mean(axis=0) - w_star
            bias_se = w.std(axis=0, ddof=1) / math.sqrt(n)
            var = w.var(axis=0, ddof=1)
            c = w - w.mean(axis=0)
            var_se = np.sqrt(((c**2 - var) ** 2).mean(axis=0) / n)
            z_bias = (rows.bias.to_numpy() - bias) / np.hypot(rows.bias_se.to_numpy(), bias_se)
            z_var = (rows.variance.to_numpy() - var) / np.hypot(
                rows.variance_se.to_numpy(), var_se
            )
            assert np.all(np.abs(z_bias) < 4), (m, scaling, z_bias)
            assert np.all(np.abs(z_var) < 4), (m, scaling, z_var)
            # the prediction risk (ŵ − w*)ᵀΣ(ŵ − w*), Σ the raw moments of x on [−0.5, 2]
            p = np.arange(5)
            moments = (2.0 ** (p + 1) - (-0.5) ** (p + 1)) / ((p + 1) * 2.5)
            sigma = moments[np.add.outer(np.arange(3), np.arange(3))]
            err = w - w_star
            r = np.einsum("ni,ij,nj->n", err, sigma, err)
            row = rows.iloc[0]
            z_risk = (row.risk - r.mean()) / np.hypot(row.risk_se, r.std(ddof=1) / math.sqrt(n))
            assert abs(z_risk) < 4, (m, scaling, z_risk)


def test_the_lambda_is_tuned_at_the_reference_m_and_held(matched):
    design, table = matched
    fit = table[table.coef == 0]
    # at the reference m, every scaling's α is the tuning's α*(30), and its risk the least
    tuning = tuning_table(design)
    best30 = tuning[(tuning.method == "conditional") & (tuning.m == 30)].alpha_opt.iloc[0]
    at30 = fit[fit.m == 30]
    np.testing.assert_allclose(at30.alpha, best30, rtol=1e-12)
    np.testing.assert_allclose(at30.risk_ratio, 1.0, atol=1e-12)
    at_m0 = None
    for scaling, g in fit.groupby("scaling"):
        assert g["lambda"].nunique() == 1  # held fixed across m
        lam = g["lambda"].iloc[0]
        alpha = dict(zip(g.m, g.alpha, strict=True))
        expected = {"m": lam, "none": lam * np.array([15, 60]), "sqrt-m": lam * np.sqrt([15, 60])}
        np.testing.assert_allclose([alpha[15], alpha[60]], expected[scaling], rtol=1e-12)
        # at the reference m every scaling gives the same α: α*(30) of the tuning
        a30 = {"m": lam, "none": 30 * lam, "sqrt-m": math.sqrt(30) * lam}[scaling]
        at_m0 = a30 if at_m0 is None else at_m0
        assert a30 == pytest.approx(at_m0, rel=1e-12)
    # the risk at m is never below the best risk at m (up to its error)
    assert np.all(fit.risk_ratio > 1 - 4 * fit.risk_ratio_se - 1e-12)


def test_the_reference_m_is_checked_and_kept_out_of_the_hash():
    base = design_from_dict(small_design())
    other = dict(small_design(), tuning={"reference_m": 250})
    assert design_from_dict(other).reference_m == 250
    assert design_from_dict(other).hash == base.hash  # the engine's numbers do not change
    assert base.reference_m == 100 and "tuning" not in base.to_dict()
    for bad in (2, 0, True, 1.5, 10**8):
        with pytest.raises(DesignError) as exc:
            design_from_dict(dict(small_design(), tuning={"reference_m": bad}))
        line = str(exc.value)
        assert "'tuning.reference_m'" in line and "\n" not in line and "an integer from" in line
