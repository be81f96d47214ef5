"""The orthonormal basis: polynomials orthonormal under the distribution of x, checked
against NumPy's Legendre and Hermite polynomials and Gauss quadrature, scikit-learn
`Ridge` on the same features, and the Hoerl–Kennard–Baldwin closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.polynomial import hermite_e, legendre
from sklearn.linear_model import Ridge

from study import fit_polynomial_ridge
from study.basis import orthonormal_coefficients, standard_basis
from study.conditional import quantities
from study.design import XDistribution, design_from_dict
from study.theory.tuning import bases_table, optimal_alpha_limit

from conftest import small_design

UNIFORM = {"distribution": "uniform", "low": -0.5, "high": 2.0}
NORMAL = {"distribution": "normal", "mean": 1.0, "sd": 0.4}


def _features(x, spec, degree):
    """ψ(x) from NumPy's own polynomials, normalised under the distribution."""
    if spec["distribution"] == "uniform":
        c, s = (spec["low"] + spec["high"]) / 2, (spec["high"] - spec["low"]) / 2
        V = legendre.legvander((x - c) / s, degree)
        return V * np.sqrt(2 * np.arange(degree + 1) + 1)
    V = hermite_e.hermevander((x - spec["mean"]) / spec["sd"], degree)
    return V / np.sqrt([math.factorial(j) for j in range(degree + 1)])


@pytest.mark.parametrize("distribution", ["uniform", "normal"])
def test_the_polynomials_are_orthonormal_by_quadrature(distribution):
    k = 7
    if distribution == "uniform":
        nodes, weights = legendre.leggauss(20)
        weights = weights / 2
    else:
        nodes, weights = hermite_e.hermegauss(20)
        weights = weights / math.sqrt(2 * math.pi)
    psi = np.vander(nodes, k + 1, increasing=True) @ orthonormal_coefficients(distribution, k).T
    np.testing.assert_allclose(psi.T @ (weights[:, None] * psi), np.eye(k + 1), atol=1e-12)
    assert np.allclose(psi[:, 0], 1.0)  # ψ₀ = 1: the first coefficient stays the intercept


@pytest.mark.parametrize("spec", [UNIFORM, NORMAL], ids=["uniform", "normal"])
def test_the_fit_equals_scikit_learn_ridge_on_the_same_features(spec):
    rng = np.random.default_rng(5)
    m, k = 40, 4
    x = rng.uniform(-0.5, 2.0, m) if spec is UNIFORM else rng.normal(1.0, 0.4, m)
    y = 1.5 - 1.2 * x + 0.7 * rng.normal(size=m)
    psi = _features(x, spec, k)
    for lam, scaling in ((0.3, "m"), (0.02, "none")):
        alpha = lam if scaling == "m" else m * lam
        ref = Ridge(alpha=alpha).fit(psi[:, 1:], y)
        w = fit_polynomial_ridge(
            x, y, degree=k, lam=lam, scaling=scaling, basis="orthonormal", x_distribution=spec
        )
        np.testing.assert_allclose(w, np.r_[ref.intercept_, ref.coef_], rtol=1e-9, atol=1e-12)
    # without a penalty the basis changes the coefficients, not the fitted curve
    w_psi = fit_polynomial_ridge(x, y, degree=k, lam=0.0, basis="orthonormal", x_distribution=spec)
    w_mono = fit_polynomial_ridge(x, y, degree=k, lam=0.0)
    grid = np.linspace(x.min(), x.max(), 7)
    np.testing.assert_allclose(
        _features(grid, spec, k) @ w_psi,
        np.vander(grid, k + 1, increasing=True) @ w_mono,
        rtol=1e-8,
    )


def test_the_orthonormal_fit_asks_for_the_distribution():
    with pytest.raises(ValueError, match="x_distribution"):
        fit_polynomial_ridge(
            np.arange(5.0), np.arange(5.0), degree=2, lam=1.0, basis="orthonormal"
        )
    with pytest.raises(ValueError, match="'basis'"):
        fit_polynomial_ridge(np.arange(5.0), np.arange(5.0), degree=2, lam=1.0, basis="legendre")


def test_conditional_moments_in_the_orthonormal_basis_match_direct_solves():
    x_dist = XDistribution("uniform", low=-0.5, high=2.0)
    k, alpha = 3, 0.8
    basis = standard_basis(x_dist, k, intercept=1.5, slope=-1.2, basis="orthonormal")
    rng = np.random.default_rng(9)
    x = rng.uniform(-0.5, 2.0, (6, 25))
    u = (x - 0.75) / 1.25
    phi = np.stack([np.vander(r, k + 1, increasing=True) for r in u])
    G_u = np.einsum("nij,nik->njk", phi, phi)
    coef, _, _ = quantities(G_u, np.zeros((6, k + 1)), basis, np.array([alpha]), 0.7)
    psi = np.stack([_features(r, UNIFORM, k) for r in x])
    w_star = np.array([1.5 + -1.2 * 0.75, -1.2 * 1.25 / math.sqrt(3), 0.0, 0.0])
    np.testing.assert_allclose(basis.w_star, w_star, atol=1e-14)
    D = np.diag([0.0, 1.0, 1.0, 1.0])
    for i in range(6):
        G = psi[i].T @ psi[i]
        A = G + alpha * D
        mean = np.linalg.solve(A, G @ w_star)
        cov = 0.49 * np.linalg.solve(A, np.linalg.solve(A, G).T)
        np.testing.assert_allclose(coef[i, 0, :, 2], mean - w_star, atol=1e-10)
        np.testing.assert_allclose(coef[i, 0, :, 4], np.diag(cov), rtol=1e-9)


def test_in_the_orthonormal_basis_the_limit_is_hoerl_kennard_baldwin():
    x_dist = XDistribution("uniform", low=-0.5, high=2.0)
    for k in (2, 5, 7):
        got = optimal_alpha_limit(
            k, x=x_dist, intercept=1.5, slope=-1.2, noise_sd=0.7, basis="orthonormal"
        )
        # w*₁ = β₁·scale/√3 is the only penalised coefficient of the line: σ²k/w*₁²
        assert got == pytest.approx(0.49 * k / (1.2 * 1.25 / math.sqrt(3)) ** 2, rel=1e-10)
    raw = small_design(**{"dgp.x": UNIFORM, "dgp.noise_sd": 0.7, "dgp.slope": -1.2})
    raw |= {"tuning": {"reference_m": 20}}
    raw["grid"] |= {"m": [20, 200], "degree": [1, 3]}
    table = bases_table(design_from_dict(raw))
    ortho = table[table.basis == "orthonormal"]
    np.testing.assert_allclose(ortho.alpha_limit, ortho.hkb, rtol=1e-10)
    mono = table[(table.basis == "monomial") & (table.degree == 3)].iloc[0]
    assert abs(mono.alpha_limit / mono.hkb - 1) > 0.1  # not so in the monomial basis
