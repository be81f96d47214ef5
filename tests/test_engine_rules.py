"""Rules of the fits, the bases, the engine's streams, tasks, merges and checkpoints, the
Gaussian model and the results files, each checked against an independent reference:
scikit-learn's Ridge, NumPy's quadrature and polynomials, the documented stream layout, the
exact error messages, and recomputations from the kept draws (docs/model.md, docs/engine.md,
docs/results.md)."""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
from numpy.polynomial import hermite_e, legendre
from sklearn.linear_model import Ridge

from study import engine
from study.basis import (
    change_of_basis,
    check_basis,
    hankel_index,
    orthonormal_coefficients,
    penalty_matrix,
    penalty_root,
    pencil_is_stable,
    standard_basis,
    standard_moments,
    true_coefficients,
)
from study.design import XDistribution, design_from_dict
from study.fit import (
    check_fit_inputs,
    check_identifiable,
    data_standardisation,
    factorise,
    fit_polynomial_ridge,
    orthonormal_features,
    power_sums,
    solve_or_nan,
)

from conftest import small_design

# Gauss–Legendre and Gauss–Hermite(E) nodes: exact expectations of polynomials of u
_GL_NODES, _GL_WEIGHTS = legendre.leggauss(40)
_GH_NODES, _GH_WEIGHTS = hermite_e.hermegauss(40)


def expect(distribution: str, f) -> np.ndarray:
    """E[f(u)] for u uniform on [−1, 1] or standard normal, by Gauss quadrature."""
    if distribution == "uniform":
        nodes, weights = _GL_NODES, _GL_WEIGHTS / 2.0
    else:
        nodes, weights = _GH_NODES, _GH_WEIGHTS / math.sqrt(2 * math.pi)
    return sum(w * f(t) for t, w in zip(nodes, weights, strict=True))


# --- the fit: scikit-learn's Ridge on the same data ---------------------------------------


def _alpha(lam, m, k, scaling):
    """α = m·c of docs/model.md: c = λ, λ/m, λ/√m, λ/k."""
    c = {"none": lam, "m": lam / m, "sqrt-m": lam / math.sqrt(m), "k": lam / k}[scaling]
    return m * c


def _data(m=23, low=0.5, high=3.0, seed=4):
    rng = np.random.default_rng(seed)
    x = rng.uniform(low, high, m)
    y = 1.5 - 0.8 * x + 0.3 * x**2 + 0.6 * rng.standard_normal(m)
    return x, y


@pytest.mark.parametrize("scaling", ["none", "m", "sqrt-m", "k"])
@pytest.mark.parametrize("degree", [2, 3])
def test_fit_equals_sklearn_ridge_with_alpha_m_times_c(scaling, degree):
    x, y = _data()
    lam = 0.7
    w = fit_polynomial_ridge(x, y, degree=degree, lam=lam, scaling=scaling)
    X = np.vander(x, degree + 1, increasing=True)[:, 1:]
    ref = Ridge(alpha=_alpha(lam, x.size, degree, scaling), solver="svd").fit(X, y)
    np.testing.assert_allclose(w, [ref.intercept_, *ref.coef_], rtol=1e-7, atol=1e-9)


def test_fit_with_penalised_intercept_equals_ridge_on_the_constant_too():
    x, y = _data(m=17, low=-0.5, high=2.5)
    w = fit_polynomial_ridge(x, y, degree=2, lam=3.0, scaling="m", penalize_intercept=True)
    X = np.vander(x, 3, increasing=True)
    ref = Ridge(alpha=3.0, fit_intercept=False, solver="svd").fit(X, y)
    np.testing.assert_allclose(w, ref.coef_, rtol=1e-8, atol=1e-10)


def test_fit_default_scaling_is_m():
    x, y = _data(m=11)
    np.testing.assert_allclose(
        fit_polynomial_ridge(x, y, degree=2, lam=2.0),
        fit_polynomial_ridge(x, y, degree=2, lam=2.0, scaling="m"),
        rtol=0,
        atol=0,
    )
    X = np.vander(x, 3, increasing=True)[:, 1:]
    ref = Ridge(alpha=2.0, solver="svd").fit(X, y)
    np.testing.assert_allclose(
        fit_polynomial_ridge(x, y, degree=2, lam=2.0), [ref.intercept_, *ref.coef_], rtol=1e-8
    )


def _psi(distribution, t, degree):
    """ψ_j(t) orthonormal under uniform [−1, 1] (√(2j+1)·P_j) or N(0, 1) (He_j/√j!)."""
    if distribution == "uniform":
        return legendre.legvander(t, degree) * np.sqrt(2 * np.arange(degree + 1) + 1)
    fact = np.array([math.factorial(j) for j in range(degree + 1)], dtype=float)
    return hermite_e.hermevander(t, degree) / np.sqrt(fact)


@pytest.mark.parametrize(
    "xd, center, scale",
    [
        ({"distribution": "uniform", "low": 0.5, "high": 3.0}, 1.75, 1.25),
        ({"distribution": "normal", "mean": 1.5, "sd": 0.8}, 1.5, 0.8),
    ],
)
def test_orthonormal_fit_equals_ridge_on_the_orthonormal_features(xd, center, scale):
    x, y = _data(m=19)
    lam, degree = 0.4, 3
    w = fit_polynomial_ridge(
        x, y, degree=degree, lam=lam, scaling="none", basis="orthonormal", x_distribution=xd
    )
    psi = _psi(xd["distribution"], (x - center) / scale, degree)
    ref = Ridge(alpha=x.size * lam, solver="svd").fit(psi[:, 1:], y)
    np.testing.assert_allclose(w, [ref.intercept_, *ref.coef_], rtol=1e-7, atol=1e-9)
    # the features are ψ(u) themselves, ψ_0 = 1
    np.testing.assert_allclose(orthonormal_features(x, degree, xd), psi, rtol=1e-10, atol=1e-12)
    # penalising the intercept: ψ_0 is penalised as well
    w = fit_polynomial_ridge(
        x,
        y,
        degree=degree,
        lam=lam,
        scaling="m",
        basis="orthonormal",
        x_distribution=xd,
        penalize_intercept=True,
    )
    ref = Ridge(alpha=lam, fit_intercept=False, solver="svd").fit(psi, y)
    np.testing.assert_allclose(w, ref.coef_, rtol=1e-7, atol=1e-9)


def test_orthonormal_and_monomial_fits_are_the_same_curve_without_a_penalty():
    x, y = _data(m=15)
    xd = XDistribution("uniform", low=0.5, high=3.0)
    w_mono = fit_polynomial_ridge(x, y, degree=3, lam=0.0)
    w_orth = fit_polynomial_ridge(x, y, degree=3, lam=0.0, basis="orthonormal", x_distribution=xd)
    t = np.linspace(0.5, 3.0, 7)
    np.testing.assert_allclose(
        np.vander(t, 4, increasing=True) @ w_mono,
        _psi("uniform", (t - 1.75) / 1.25, 3) @ w_orth,
        rtol=1e-9,
    )


def test_fit_on_two_distinct_values_with_a_penalty_and_the_documented_example():
    # the doctest's example: an exact parabola through three points
    np.testing.assert_allclose(
        fit_polynomial_ridge(
            np.array([-1.0, 0.0, 1.0]), np.array([1.0, 0.0, 1.0]), degree=2, lam=0.0
        ),
        [0.0, 0.0, 1.0],
        atol=1e-12,
    )
    # fewer distinct points than coefficients is fine with a penalty (ridge on Ridge)
    x = np.array([2.0, 2.0, 5.0, 5.0])
    y = np.array([1.0, 1.2, 3.0, 2.6])
    w = fit_polynomial_ridge(x, y, degree=2, lam=0.5, scaling="none")
    ref = Ridge(alpha=4 * 0.5, solver="svd").fit(np.vander(x, 3, increasing=True)[:, 1:], y)
    np.testing.assert_allclose(w, [ref.intercept_, *ref.coef_], rtol=1e-7)


@pytest.mark.parametrize(
    "x, y, degree, lam, message",
    [
        (
            [[1.0, 2.0]],
            [[1.0, 2.0]],
            1,
            0.1,
            "x and y must be 1-d arrays of the same non-zero length. Got shapes (1, 2) and (1, 2) "
            "instead.",
        ),
        (
            [1.0, 2.0],
            [1.0],
            1,
            0.1,
            "x and y must be 1-d arrays of the same non-zero length. Got shapes (2,) and (1,) "
            "instead.",
        ),
        (
            [],
            [],
            1,
            0.1,
            "x and y must be 1-d arrays of the same non-zero length. Got shapes (0,) and (0,) "
            "instead.",
        ),
        (
            [1.0, np.nan],
            [1.0, 2.0],
            1,
            0.1,
            "x and y must be finite. Got NaN or infinity instead.",
        ),
        (
            [1.0, 2.0],
            [1.0, np.inf],
            1,
            0.1,
            "x and y must be finite. Got NaN or infinity instead.",
        ),
        (
            [1.0, 2.0],
            [1.0, 2.0],
            0,
            0.1,
            "The 'degree' parameter must be an integer ≥ 1. Got 0 instead.",
        ),
        (
            [1.0, 2.0],
            [1.0, 2.0],
            True,
            0.1,
            "The 'degree' parameter must be an integer ≥ 1. Got True instead.",
        ),
        (
            [1.0, 2.0],
            [1.0, 2.0],
            1.0,
            0.1,
            "The 'degree' parameter must be an integer ≥ 1. Got 1.0 instead.",
        ),
        (
            [1.0, 2.0],
            [1.0, 2.0],
            1,
            -0.1,
            "The 'lam' parameter must be a finite number ≥ 0. Got -0.1 instead.",
        ),
        (
            [1.0, 2.0],
            [1.0, 2.0],
            1,
            np.inf,
            "The 'lam' parameter must be a finite number ≥ 0. Got inf instead.",
        ),
    ],
)
def test_fit_input_refusals_name_the_key_value_and_rule(x, y, degree, lam, message):
    with pytest.raises(ValueError) as info:
        fit_polynomial_ridge(
            np.array(x, dtype=float), np.array(y, dtype=float), degree=degree, lam=lam
        )
    assert str(info.value) == message


def test_check_fit_inputs_returns_float_arrays_and_an_int_degree():
    x, y, k = check_fit_inputs([1, 2, 3], [4, 5, 6], np.int64(2), 0.0)
    assert x.dtype == np.float64 and y.dtype == np.float64
    assert type(k) is int and k == 2
    np.testing.assert_array_equal(x, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(y, [4.0, 5.0, 6.0])


def test_unpenalised_fit_with_too_few_distinct_points_is_refused():
    x = np.array([1.0, 1.0, 2.0, 2.0, 2.0])
    with pytest.raises(ValueError) as info:
        fit_polynomial_ridge(x, x, degree=2, lam=0.0)
    assert str(info.value) == (
        "With lam = 0 a degree-2 fit needs at least 3 distinct x values. Got 2 instead: the "
        "coefficients are not identifiable."
    )
    # as many distinct values as coefficients is enough; any penalty is enough
    check_identifiable(np.array([1.0, 2.0, 3.0]), 2, 0.0)
    check_identifiable(x, 2, 1e-9)


def test_data_standardisation_maps_the_data_range_onto_minus_one_one():
    center, scale = data_standardisation(np.array([0.5, 3.0, 1.0]))
    assert (center, scale) == (1.75, 1.25)
    # constant data: scale max(|center|, 1)
    assert data_standardisation(np.array([4.0, 4.0])) == (4.0, 4.0)
    assert data_standardisation(np.array([-0.25, -0.25])) == (-0.25, 1.0)
    # a constant x with a penalty is still fitted, and equals Ridge
    x = np.array([4.0, 4.0, 4.0])
    y = np.array([1.0, 2.0, 4.0])
    w = fit_polynomial_ridge(x, y, degree=1, lam=2.0, scaling="m")
    ref = Ridge(alpha=2.0, solver="svd").fit(x[:, None], y)
    np.testing.assert_allclose(w, [ref.intercept_, *ref.coef_], rtol=1e-8)


def test_power_sums_are_the_sums_of_powers_along_the_last_axis():
    rng = np.random.default_rng(3)
    u = rng.uniform(-1, 1, (2, 3, 7))
    y = rng.normal(size=(2, 3, 7))
    u0 = u.copy()
    S, T = power_sums(u, y, 3)
    assert S.shape == (2, 3, 7) and T.shape == (2, 3, 4)
    for p in range(7):
        np.testing.assert_allclose(S[..., p], (u**p).sum(axis=-1), rtol=1e-12)
    for p in range(4):
        np.testing.assert_allclose(T[..., p], (u**p * y).sum(axis=-1), rtol=1e-12)
    S1, T1 = power_sums(u, None, 3)
    assert T1 is None
    np.testing.assert_array_equal(S1, S)
    np.testing.assert_array_equal(u, u0)  # the input is not changed


def test_factorise_diagonalises_the_pencil():
    rng = np.random.default_rng(5)
    u = rng.uniform(-1, 1, (4, 9))
    S, _ = power_sums(u, None, 2)
    G = S[:, hankel_index(2)]
    B = change_of_basis(0.3, 1.7, 2)
    F = penalty_root(B)
    f = factorise(G, F)
    P = F @ F.T
    for i in range(4):
        W = f.W[i]
        np.testing.assert_allclose(W.T @ G[i] @ W, np.eye(3), atol=1e-10)
        np.testing.assert_allclose(W.T @ P @ W, np.diag(f.eig[i]), atol=1e-10)
        # (G + αP)⁻¹ = W diag(1/(1 + αΛ)) Wᵀ
        np.testing.assert_allclose(
            W @ np.diag(1 / (1 + 2.5 * f.eig[i])) @ W.T,
            np.linalg.inv(G[i] + 2.5 * P),
            rtol=1e-9,
        )
    assert (f.eig >= 0).all()
    # the penalty without the intercept has one zero eigenvalue per data set
    assert (np.sort(f.eig, axis=1)[:, 0] < 1e-12).all() and (np.sort(f.eig)[:, 1] > 1e-6).all()


def test_solve_or_nan_leaves_nan_only_where_a_system_is_singular():
    A = np.array([[[2.0, 1.0], [1.0, 3.0]], [[1.0, 2.0], [2.0, 4.0]], [[4.0, 0.0], [0.0, 5.0]]])
    rhs = np.array([[[1.0], [2.0]], [[1.0], [1.0]], [[8.0], [10.0]]])
    X = solve_or_nan(A, rhs)
    np.testing.assert_allclose(X[0], np.linalg.solve(A[0], rhs[0]))
    assert np.isnan(X[1]).all()
    np.testing.assert_allclose(X[2], [[2.0], [2.0]])
    np.testing.assert_allclose(solve_or_nan(A[[0, 2]], rhs[[0, 2]]), X[[0, 2]])


@pytest.mark.parametrize(
    "xd, message",
    [
        (
            None,
            "basis='orthonormal' needs x_distribution, e.g. {'distribution': 'uniform', "
            "'low': -1, 'high': 1}: the polynomials are orthonormal under it.",
        ),
        (
            {"distribution": "uniform", "low": 2.0, "high": 1.0},
            "x_distribution needs finite low < high. Got 2.0, 1.0.",
        ),
        (
            {"distribution": "uniform", "low": 1.0, "high": 1.0},
            "x_distribution needs finite low < high. Got 1.0, 1.0.",
        ),
        (
            {"distribution": "uniform", "low": -np.inf, "high": 1.0},
            "x_distribution needs finite low < high. Got -inf, 1.0.",
        ),
        (
            {"distribution": "normal", "mean": 0.0, "sd": 0.0},
            "x_distribution needs a finite mean and sd > 0. Got 0.0, 0.0.",
        ),
        (
            {"distribution": "normal", "mean": np.nan, "sd": 1.0},
            "x_distribution needs a finite mean and sd > 0. Got nan, 1.0.",
        ),
        (
            {"distribution": "normal", "mean": 0.0, "sd": np.inf},
            "x_distribution needs a finite mean and sd > 0. Got 0.0, inf.",
        ),
        (
            {"distribution": "beta"},
            "x_distribution['distribution'] must be 'uniform' or 'normal'. Got 'beta' instead.",
        ),
    ],
)
def test_orthonormal_features_refusals(xd, message):
    with pytest.raises(ValueError) as info:
        orthonormal_features(np.array([0.1, 0.2, 0.3]), 2, xd)
    assert str(info.value) == message


def test_orthonormal_features_take_a_design_distribution_object():
    x = np.array([-2.0, 0.0, 1.0, 3.0])
    xd = XDistribution("normal", mean=0.5, sd=2.0)
    np.testing.assert_allclose(
        orthonormal_features(x, 3, xd), _psi("normal", (x - 0.5) / 2.0, 3), rtol=1e-12
    )


def test_unknown_basis_is_refused_by_the_fit():
    x, y = _data(m=6)
    with pytest.raises(ValueError) as info:
        fit_polynomial_ridge(x, y, degree=1, lam=1.0, basis="legendre")
    assert str(info.value) == (
        "The 'basis' parameter must be one of ['monomial', 'orthonormal']. Got 'legendre' instead."
    )
    assert check_basis("orthonormal") == "orthonormal"


# --- the basis: moments, change of basis, orthonormal polynomials -------------------------


@pytest.mark.parametrize("distribution", ["uniform", "normal"])
def test_standard_moments_are_the_moments_of_u(distribution):
    mu = standard_moments(distribution, 9)
    assert mu.shape == (10,)
    ref = [expect(distribution, lambda t, n=n: t**n) for n in range(10)]
    np.testing.assert_allclose(mu, ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(standard_moments(distribution, 0), [1.0])


def test_standard_moments_closed_forms_and_refusals():
    np.testing.assert_array_equal(standard_moments("normal", 8), [1, 0, 1, 0, 3, 0, 15, 0, 105])
    np.testing.assert_array_equal(
        standard_moments("uniform", 6), [1, 0, 1 / 3, 0, 1 / 5, 0, 1 / 7]
    )
    with pytest.raises(ValueError) as info:
        standard_moments("uniform", -1)
    assert str(info.value) == "The 'n_max' parameter must be ≥ 0. Got -1 instead."
    with pytest.raises(ValueError) as info:
        standard_moments("beta", 3)
    assert str(info.value) == (
        "The 'distribution' parameter must be 'uniform' or 'normal'. Got 'beta' instead."
    )


def test_hankel_index_and_true_coefficients():
    np.testing.assert_array_equal(hankel_index(2), [[0, 1, 2], [1, 2, 3], [2, 3, 4]])
    np.testing.assert_array_equal(
        true_coefficients(3, intercept=1.5, slope=-2.0), [1.5, -2.0, 0.0, 0.0]
    )
    x = XDistribution("uniform", low=0.5, high=3.0)  # center 1.75, scale 1.25
    v = true_coefficients(2, intercept=1.5, slope=-2.0, x=x)
    # φ(u)ᵀv* = β0 + β1·x at every x
    t = np.array([0.5, 1.1, 3.0])
    np.testing.assert_allclose(np.vander((t - 1.75) / 1.25, 3, increasing=True) @ v, 1.5 - 2 * t)
    assert v[2] == 0.0


def test_change_of_basis_maps_monomials_of_x_to_monomials_of_u():
    center, scale, k = 1.75, 1.25, 4
    B = change_of_basis(center, scale, k)
    t = np.array([-1.0, 0.5, 2.0, 3.3])
    np.testing.assert_allclose(
        np.vander((t - center) / scale, k + 1, increasing=True),
        np.vander(t, k + 1, increasing=True) @ B.T,
        rtol=1e-12,
        atol=1e-12,
    )
    assert np.allclose(np.triu(B, 1), 0)


def test_penalty_matrix_and_its_root():
    np.testing.assert_array_equal(penalty_matrix(2), np.diag([0.0, 1.0, 1.0]))
    np.testing.assert_array_equal(penalty_matrix(2, penalize_intercept=True), np.eye(3))
    B = change_of_basis(-0.4, 2.0, 3)
    for pen in (False, True):
        F = penalty_root(B, penalize_intercept=pen)
        np.testing.assert_allclose(
            F @ F.T, B @ penalty_matrix(3, penalize_intercept=pen) @ B.T, atol=1e-14
        )
    assert penalty_root(B).shape == (4, 3)


@pytest.mark.parametrize("distribution", ["uniform", "normal"])
def test_orthonormal_polynomials_have_identity_gram_matrix(distribution):
    k = 6
    L = orthonormal_coefficients(distribution, k)
    gram = expect(
        distribution, lambda t: np.outer(L @ t ** np.arange(k + 1), L @ t ** np.arange(k + 1))
    )
    np.testing.assert_allclose(gram, np.eye(k + 1), atol=1e-10)
    assert np.allclose(np.triu(L, 1), 0) and L[0, 0] == 1.0
    assert (np.diag(L) > 0).all()  # leading coefficient positive: ψ_j = √(2j+1)P_j, He_j/√j!
    with pytest.raises(ValueError) as info:
        orthonormal_coefficients("beta", 1)
    assert str(info.value) == (
        "The 'distribution' parameter must be 'uniform' or 'normal'. Got 'beta' instead."
    )


def test_pencil_is_stable_where_the_range_contains_or_touches_zero():
    assert pencil_is_stable(0.0, 1.0)
    assert pencil_is_stable(5.0, 5.0)  # [0, 10] touches 0
    assert pencil_is_stable(-5.0, 5.0)
    assert not pencil_is_stable(5.0, 4.99)
    assert not pencil_is_stable(-4.4, 0.2)


@pytest.mark.parametrize(
    "xd, basis, pen",
    [
        (XDistribution("uniform", low=0.5, high=3.0), "monomial", False),
        (XDistribution("uniform", low=-3.0, high=-0.5), "orthonormal", False),
        (XDistribution("normal", mean=1.5, sd=0.8), "monomial", True),
        (XDistribution("normal", mean=-0.5, sd=2.0), "orthonormal", True),
    ],
)
def test_standard_basis_describes_the_problem_in_u(xd, basis, pen):
    k, b0, b1 = 3, 1.5, -2.0
    sb = standard_basis(xd, k, intercept=b0, slope=b1, penalize_intercept=pen, basis=basis)
    c, s = xd.center, xd.scale
    dist = xd.distribution
    # Σ_u = E[φ(u)φ(u)ᵀ]; moments up to 4k
    powers = np.arange(k + 1)
    np.testing.assert_allclose(
        sb.sigma, expect(dist, lambda t: np.outer(t**powers, t**powers)), atol=1e-10
    )
    np.testing.assert_allclose(sb.mu, standard_moments(dist, 4 * k))
    # the coefficients w are those of the basis: φ(u)ᵀv = (basis features)ᵀw with w = Bᵀv
    t = np.array([-1.3, 0.2, 0.9])
    u = (t - c) / s
    feats = np.vander(t, k + 1, increasing=True) if basis == "monomial" else _psi(dist, u, k)
    v = np.array([0.3, -1.0, 0.25, 2.0])
    np.testing.assert_allclose(
        np.vander(u, k + 1, increasing=True) @ v, feats @ sb.to_raw(v), rtol=1e-9, atol=1e-9
    )
    # the true line in either basis
    np.testing.assert_allclose(feats @ sb.w_star, b0 + b1 * t, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        np.vander(u, k + 1, increasing=True) @ sb.v_star, b0 + b1 * t, rtol=1e-9, atol=1e-9
    )
    # penalty wᵀDw = vᵀPv, P = FFᵀ
    D = penalty_matrix(k, penalize_intercept=pen)
    w = sb.to_raw(v)
    np.testing.assert_allclose(v @ sb.penalty @ v, w @ D @ w, rtol=1e-9)
    np.testing.assert_allclose(sb.F @ sb.F.T, sb.penalty, atol=1e-10)
    # raw covariance Bᵀ C B: Cov(Bᵀv) for v with covariance C
    C = np.diag([1.0, 2.0, 0.5, 3.0]) + 0.1
    np.testing.assert_allclose(sb.cov_to_raw(C), sb.B.T @ C @ sb.B, rtol=1e-12)
    np.testing.assert_allclose(
        sb.cov_to_raw(np.stack([C, 2 * C])), np.stack([sb.B.T @ C @ sb.B, 2 * sb.B.T @ C @ sb.B])
    )
    assert sb.use_pencil == (basis == "orthonormal" or abs(c) <= s)
    assert sb.B_is_identity is False
    assert sb.degree == k


@pytest.mark.parametrize("dist", ["uniform", "normal"])
def test_fourth_moment_and_quartic_are_expectations_over_u(dist):
    xd = (
        XDistribution("uniform", low=-1.0, high=1.0)
        if dist == "uniform"
        else XDistribution("normal", mean=0.0, sd=1.0)
    )
    k = 2
    sb = standard_basis(xd, k, intercept=0.5, slope=1.0)
    b = np.array([0.4, -1.1, 0.7])
    M = np.array([[1.0, 0.2, -0.3], [0.2, 2.0, 0.5], [-0.3, 0.5, 0.7]])
    powers = np.arange(k + 1)

    def phi(t):
        return t**powers

    np.testing.assert_allclose(
        sb.fourth_moment(b),
        expect(dist, lambda t: np.outer(phi(t), phi(t)) * (phi(t) @ b) ** 2),
        rtol=1e-10,
    )
    np.testing.assert_allclose(
        sb.quartic(M),
        expect(dist, lambda t: np.outer(phi(t), phi(t)) @ M @ np.outer(phi(t), phi(t))),
        rtol=1e-10,
    )
    np.testing.assert_allclose(sb.fourth_moment(np.stack([b, 2 * b]))[1], 4 * sb.fourth_moment(b))
    # u = x: the change of basis is the identity
    assert sb.B_is_identity is True
    assert sb.use_pencil is True


@pytest.mark.parametrize("degree", [0, 1.5, True])
def test_standard_basis_refuses_a_degree_below_one_or_not_whole(degree):
    with pytest.raises(ValueError) as info:
        standard_basis(
            XDistribution("uniform", low=0.0, high=1.0), degree, intercept=0.0, slope=1.0
        )
    assert str(info.value) == (
        f"The 'degree' parameter must be an integer ≥ 1. Got {degree!r} instead."
    )
    sb = standard_basis(XDistribution("uniform", low=0.0, high=1.0), 2.0, intercept=0.0, slope=1.0)
    assert type(sb.degree) is int and sb.B.shape == (3, 3)


# --- streams: the stream layout of docs/engine.md ------------------------------------------

from study.engine import streams  # noqa: E402
from study.engine.streams import (  # noqa: E402
    MAX_PIECE,
    chunk_length,
    chunk_pieces,
    chunk_power_sums,
    chunk_size,
    chunk_span,
    chunk_streams,
    draw_chunk_data,
    draw_u,
    n_chunks,
    piece_rows,
)

X_ASYM = {"distribution": "uniform", "low": 0.5, "high": 3.0}  # center 1.75, scale 1.25


def _design(**changes):
    base = {
        "replications": 300,  # two chunks of m ≤ 2¹⁴: 256 + 44
        "block_size": None,
        "grid.m": [3, 8],
        "grid.degree": [1, 3],
        "grid.lambda": [0.0, 0.5],
        "grid.scaling": ["none", "k"],
        "grid.basis": ["monomial", "orthonormal"],
        "dgp.x": X_ASYM,
        "output.keep_draws": 300,
    }
    return design_from_dict(small_design(**(base | changes)))


@pytest.mark.parametrize(
    "m, length",
    [
        (1, 256),
        (100, 256),
        (1 << 14, 256),
        ((1 << 14) + 1, 128),
        (1 << 15, 128),
        ((1 << 15) + 1, 64),
        (1 << 21, 2),
        ((1 << 21) + 1, 1),
        (1 << 23, 1),
    ],
)
def test_chunk_length_halves_until_a_chunk_holds_at_most_2_22_points(m, length):
    assert chunk_length(m) == length


def test_chunks_cover_the_replications_the_last_one_shorter():
    assert n_chunks(256, 8) == 1 and n_chunks(257, 8) == 2 and n_chunks(300, 8) == 2
    assert n_chunks(1, 8) == 1 and n_chunks(513, 8) == 3
    assert n_chunks(300, (1 << 14) + 1) == 3  # chunks of 128
    assert chunk_span(300, 8, 0) == (0, 256)
    assert chunk_span(300, 8, 1) == (256, 300)
    assert chunk_span(300, (1 << 14) + 1, 2) == (256, 300)
    design = _design()
    assert chunk_size(design, 8, 0) == 256 and chunk_size(design, 8, 1) == 44


def test_chunk_streams_are_the_documented_seed_sequence_children():
    for seed, m, chunk in [(12345, 8, 0), (7, 40, 3)]:
        x_seq, noise_seq = np.random.SeedSequence(seed, spawn_key=(m, chunk)).spawn(2)
        rx, rn = chunk_streams(seed, m, chunk)
        np.testing.assert_array_equal(rx.random(5), np.random.default_rng(x_seq).random(5))
        np.testing.assert_array_equal(
            rn.standard_normal(5), np.random.default_rng(noise_seq).standard_normal(5)
        )
    # reproducible, and independent per (seed, m, chunk) and between x and the noise
    first = {
        key: chunk_streams(*key)[0].random(4)
        for key in [(1, 8, 0), (2, 8, 0), (1, 9, 0), (1, 8, 1), (1, 0, 8)]
    }
    np.testing.assert_array_equal(first[(1, 8, 0)], chunk_streams(1, 8, 0)[0].random(4))
    values = [tuple(v) for v in first.values()]
    assert len(set(values)) == len(values)
    rx, rn = chunk_streams(1, 8, 0)
    assert not np.array_equal(rx.random(4), rn.random(4))


def test_draw_u_is_uniform_on_minus_one_one_bit_for_bit_or_standard_normal():
    uni = XDistribution("uniform", low=0.5, high=3.0)
    nor = XDistribution("normal", mean=2.0, sd=3.0)
    a, b = np.random.default_rng(9), np.random.default_rng(9)
    np.testing.assert_array_equal(draw_u(a, uni, (3, 4)), b.uniform(-1.0, 1.0, (3, 4)))
    np.testing.assert_array_equal(draw_u(a, nor, (2, 5)), b.standard_normal((2, 5)))


def test_piece_rows_keep_a_piece_at_2_16_elements():
    assert piece_rows(8) == 8192 and piece_rows(1000) == 65
    assert piece_rows(1 << 16) == 1 and piece_rows(1 << 17) == 1


def test_chunk_pieces_draw_both_streams_in_order_whatever_the_pieces():
    design = _design(**{"grid.m": [1000]})  # 256 data sets per chunk, 65 per piece
    pieces = list(chunk_pieces(design, 1000, 0))
    assert [(p.rows.start, p.rows.stop, p.offset) for p in pieces] == [
        (0, 65, 0),
        (65, 130, 0),
        (130, 195, 0),
        (195, 256, 0),
    ]
    rx, rn = chunk_streams(design.seed, 1000, 0)
    np.testing.assert_array_equal(
        np.concatenate([p.u for p in pieces]), rx.uniform(-1.0, 1.0, (256, 1000))
    )
    np.testing.assert_array_equal(
        np.concatenate([p.eps for p in pieces]), rn.standard_normal((256, 1000))
    )
    # the last chunk: the 44 data sets of its own streams
    last = list(chunk_pieces(design, 1000, 1))
    assert sum(p.u.shape[0] for p in last) == 44
    np.testing.assert_array_equal(
        np.concatenate([p.u for p in last]),
        chunk_streams(design.seed, 1000, 1)[0].uniform(-1.0, 1.0, (44, 1000)),
    )
    # the first data sets alone, and the x stream alone
    few = list(chunk_pieces(design, 1000, 0, first=70, noise=False))
    assert [(p.rows.start, p.rows.stop) for p in few] == [(0, 65), (65, 70)]
    assert all(p.eps is None for p in few)
    np.testing.assert_array_equal(
        np.concatenate([p.u for p in few]), np.concatenate([p.u for p in pieces])[:70]
    )


def test_a_data_set_beyond_max_piece_points_comes_in_pieces_of_the_same_numbers():
    m = MAX_PIECE + 3
    design = _design(
        **{"grid.m": [m], "replications": 2, "output.keep_draws": 0, "grid.degree": [1]}
    )
    pieces = list(chunk_pieces(design, m, 0))  # chunk_length(m) = 2: both data sets
    assert [(p.rows.start, p.rows.stop, p.offset, p.u.shape) for p in pieces] == [
        (0, 1, 0, (1, MAX_PIECE)),
        (0, 1, MAX_PIECE, (1, 3)),
        (1, 2, 0, (1, MAX_PIECE)),
        (1, 2, MAX_PIECE, (1, 3)),
    ]
    rx, rn = chunk_streams(design.seed, m, 0)
    u = rx.uniform(-1.0, 1.0, (2, m))
    eps = rn.standard_normal((2, m))
    np.testing.assert_array_equal(np.concatenate([pieces[0].u, pieces[1].u], axis=1), u[:1])
    np.testing.assert_array_equal(np.concatenate([pieces[2].eps, pieces[3].eps], axis=1), eps[1:])
    x, y = draw_chunk_data(design, m, 0)
    np.testing.assert_array_equal(x, 1.75 + 1.25 * u)
    # power sums of the whole data sets, added up from the pieces (plain: also Σu^p·ε)
    S, T = chunk_power_sums(design, m, 0, 1, noise_draw="plain")
    np.testing.assert_allclose(S, np.stack([(u**p).sum(axis=1) for p in range(3)], 1), rtol=1e-9)
    yy = 1.0 + 2.0 * x + 0.7 * eps
    np.testing.assert_allclose(
        T, np.stack([(u**p * yy).sum(axis=1) for p in range(2)], 1), rtol=1e-9
    )


def test_draw_chunk_data_is_the_noisy_line_from_the_chunks_streams():
    design = _design(**{"dgp.intercept": -1.5, "dgp.slope": 0.8, "dgp.noise_sd": 0.3})
    x, y = draw_chunk_data(design, 8, 1)
    rx, rn = chunk_streams(design.seed, 8, 1)
    u = rx.uniform(-1.0, 1.0, (44, 8))
    np.testing.assert_allclose(x, 1.75 + 1.25 * u, rtol=1e-15)
    np.testing.assert_allclose(
        y, -1.5 + 0.8 * x + 0.3 * rn.standard_normal((44, 8)), rtol=1e-13, atol=1e-13
    )  # atol: y may come near 0, where a sum of O(1) terms has only an absolute accuracy


def test_chunk_power_sums_plain_are_the_sums_of_the_drawn_data():
    design = _design()
    K = 3
    x, y = draw_chunk_data(design, 8, 0)
    u = (x - 1.75) / 1.25
    S, T = chunk_power_sums(design, 8, 0, K, noise_draw="plain")
    assert S.shape == (256, 2 * K + 1) and T.shape == (256, K + 1)
    np.testing.assert_allclose(
        S, np.stack([(u**p).sum(1) for p in range(2 * K + 1)], 1), rtol=1e-11, atol=1e-11
    )
    np.testing.assert_allclose(
        T, np.stack([(u**p * y).sum(1) for p in range(K + 1)], 1), rtol=1e-11, atol=1e-11
    )
    S5, T5 = chunk_power_sums(design, 8, 0, K, noise_draw="plain", first=5)
    np.testing.assert_array_equal(S5, S[:5])
    np.testing.assert_allclose(T5, T[:5], rtol=1e-14)
    streams._KEPT.clear()  # the x stream drawn again, not the kept sums of the calls above
    Sx, Tx = chunk_power_sums(design, 8, 0, K, noise=False)
    assert Tx is None
    np.testing.assert_array_equal(Sx, S)


class _Drew(Exception):
    pass


def test_the_first_designs_drawn_are_kept_and_serve_the_x_only_sums_bit_for_bit(monkeypatch):
    """chunk_power_sums keeps the x power sums of each m's first KEPT_DATA_SETS data sets,
    and the theory's x-only requests (noise=False) take them instead of drawing again: the
    same numbers for the same or a smaller degree and as many or fewer data sets; anything
    else (more data sets, a higher degree, another seed or x distribution) is drawn."""
    from study.results import TUNING_DESIGNS

    assert streams.KEPT_DATA_SETS == TUNING_DESIGNS  # the tuning's designs, all of them
    m, K = 1000, 3
    design = _design(**{"grid.m": [m], "replications": 700})  # chunks 0–2 of 256, 256, 188
    fresh = {c: chunk_power_sums(design, m, c, K, noise=False)[0] for c in range(3)}
    streams._KEPT.clear()
    for c in range(3):
        chunk_power_sums(design, m, c, K)  # as a task draws them, with the noise
    # data sets 0–399: all of chunk 0, the first 144 of chunk 1; none of chunk 2
    key = (design.seed, design.x, m)
    assert {k: a.shape for k, a in streams._KEPT.items()} == {
        (*key, 0): (256, 2 * K + 1),
        (*key, 1): (400 - 256, 2 * K + 1),
    }

    def drew(*args, **kw):
        raise _Drew

    monkeypatch.setattr(streams, "chunk_pieces", drew)
    served = chunk_power_sums(design, m, 0, K, noise=False)
    np.testing.assert_array_equal(served[0], fresh[0])
    assert served[1] is None
    np.testing.assert_array_equal(
        chunk_power_sums(design, m, 0, 2, noise=False, first=10)[0], fresh[0][:10, :5]
    )
    np.testing.assert_array_equal(
        chunk_power_sums(design, m, 1, K, noise=False, first=144)[0], fresh[1][:144]
    )
    served[0][:] = np.nan  # a caller's change does not reach what is kept
    np.testing.assert_array_equal(chunk_power_sums(design, m, 0, K, noise=False)[0], fresh[0])
    other_seed = _design(**{"grid.m": [m], "replications": 700, "seed": design.seed + 1})
    other_x = _design(**{"grid.m": [m], "replications": 700, "dgp.x": {**X_ASYM, "high": 3.5}})
    for args, kw in [
        ((design, m, 1, K), dict(first=145)),  # one data set more than kept
        ((design, m, 2, K), {}),  # nothing kept
        ((design, m, 0, K + 1), {}),  # a higher degree
        ((design, m, 0, K), dict(noise=True)),  # the noise: a task draws both streams
        ((other_seed, m, 0, K), {}),
        ((other_x, m, 0, K), {}),
    ]:
        with pytest.raises(_Drew):
            chunk_power_sums(*args, **({"noise": False} | kw))


def test_the_kept_sums_stay_within_their_bytes_the_least_recently_kept_dropped(monkeypatch):
    """Beyond KEPT_BYTES the sums kept least recently go; a chunk kept again (with more
    columns) counts as kept last."""
    monkeypatch.setattr(streams, "KEPT_BYTES", 3 * 256 * 7 * 8)  # three chunks of degree 3
    design = _design(**{"grid.m": [8], "replications": 300})
    for m in (8, 9, 10):
        chunk_power_sums(design, m, 0, 3)
    chunk_power_sums(design, 8, 0, 4)  # m = 8 again, wider: now the most recent
    assert [(k[2], a.shape[1]) for k, a in streams._KEPT.items()] == [(10, 7), (8, 9)]
    chunk_power_sums(design, 11, 0, 3)  # room for it once m = 10 has gone too
    assert [k[2] for k in streams._KEPT] == [8, 11]
    assert sum(a.nbytes for a in streams._KEPT.values()) <= streams.KEPT_BYTES


def test_sufficient_noise_draw_has_the_same_x_and_noise_with_covariance_sigma2_gram():
    design = _design(**{"dgp.noise_sd": 0.3})
    K = 2
    S, T = chunk_power_sums(design, 8, 1, K)  # default: the sufficient draw
    Sp, _ = chunk_power_sums(design, 8, 1, K, noise_draw="plain")
    np.testing.assert_array_equal(S, Sp)  # the same x stream
    # Σu^p·y = v*₀S_p + v*₁S_{p+1} + σ(Φᵀε)_p, with Φᵀε = L z for the Cholesky factor
    # G = LLᵀ and z the first K + 1 normals of the noise stream per data set, in order
    v0, v1 = 1.0 + 2.0 * 1.75, 2.0 * 1.25
    noise = (T - v0 * S[:, : K + 1] - v1 * S[:, 1 : K + 2]) / 0.3
    G = S[:, hankel_index(K)]
    z = chunk_streams(design.seed, 8, 1)[1].standard_normal((44, K + 1))
    L = np.stack([scipy.linalg.cholesky(g, lower=True) for g in G])
    np.testing.assert_allclose(L @ np.swapaxes(L, 1, 2), G, rtol=1e-10)
    np.testing.assert_allclose(noise, np.einsum("nij,nj->ni", L, z), rtol=1e-8, atol=1e-9)
    S2, T2 = chunk_power_sums(design, 8, 1, K, first=3)
    np.testing.assert_array_equal(S2, S[:3])
    np.testing.assert_allclose(T2, T[:3], rtol=1e-13)


def test_the_noise_of_a_singular_gram_stays_in_its_range():
    """Two points, degree 2: G has rank 2, and a data set of at most K + 1 points draws
    its own noise values, so Φᵀε = Σφ(u_i)ε_i cannot reach the direction G cannot."""
    design = _design(**{"dgp.noise_sd": 0.3})
    S, T = chunk_power_sums(design, 2, 0, 2)
    v0, v1 = 1.0 + 2.0 * 1.75, 2.0 * 1.25
    noise = (T - v0 * S[:, :3] - v1 * S[:, 1:4]) / 0.3
    G = S[:, hankel_index(2)]
    for g, e in zip(G[:20], noise[:20], strict=True):
        null = np.linalg.eigh(g)[1][:, 0]  # the direction of its zero eigenvalue
        assert abs(null @ e) < 1e-10 * np.abs(e).max()


def test_an_unknown_noise_draw_is_refused():
    with pytest.raises(ValueError) as info:
        chunk_power_sums(_design(), 8, 0, 1, noise_draw="exact")
    assert str(info.value) == (
        "The 'noise_draw' parameter must be one of ('sufficient', 'plain'). Got 'exact'."
    )


# --- tasks: names, grids, result layout, merges -------------------------------------------

from study.conditional import COEF_QUANTITIES, FIT_COUNTS  # noqa: E402
from study.engine.tasks import (  # noqa: E402
    AUDIT_CHUNKS,
    ChunkMerger,
    DegreeResult,
    Task,
    TaskResult,
    alpha_grid,
    fit_every_cell,
    identifiable_grid,
    kept_in_chunk,
    run_task,
)
from study.measures import TAIL_THRESHOLDS  # noqa: E402
from study.models import gaussian  # noqa: E402
from study.moments import CoMoments  # noqa: E402


def test_task_name_and_description():
    t = Task(100, 0, 4)
    assert t.name == "m100-c0-4" and t.n_chunks == 4
    assert t.describe() == "m = 100, chunks 0–3"
    assert Task(8, 3, 4).describe() == "m = 8, chunk 3"
    assert Task(8, 3, 4).n_chunks == 1 and Task(8, 3, 4).name == "m8-c3-4"
    assert Task(8, 2, 4).describe() == "m = 8, chunks 2–3"


def test_alpha_grid_is_m_times_c_per_column_and_identifiability():
    design = _design(**{"grid.scaling": ["none", "m", "sqrt-m", "k"], "grid.lambda": [0.0, 0.5]})
    for m, k in [(3, 3), (8, 1), (40, 3)]:
        a = alpha_grid(design, m, k)
        assert a.shape == (2, 8)
        for li, lam in enumerate(design.lam):
            for ci, (_, s) in enumerate(design.columns):
                assert a[li, ci] == pytest.approx(_alpha(lam, m, k, s), rel=1e-15)
    np.testing.assert_array_equal(identifiable_grid(design, 3, 3), [[False] * 8, [True] * 8])
    np.testing.assert_array_equal(identifiable_grid(design, 4, 3), np.ones((2, 8), bool))
    np.testing.assert_array_equal(identifiable_grid(design, 3, 2), np.ones((2, 8), bool))


def test_kept_in_chunk_keeps_the_replications_numbered_below_keep_draws():
    design = _design(**{"replications": 600, "output.keep_draws": 300})
    assert [kept_in_chunk(design, 8, c, n) for c, n in [(0, 256), (1, 256), (2, 88)]] == [
        256,
        44,
        0,
    ]
    assert kept_in_chunk(design, 8, 1, 10) == 10  # never more than the data sets asked
    design = _design(**{"output.keep_draws": 0})
    assert kept_in_chunk(design, 8, 0, 256) == 0


def test_degree_result_layout_matches_its_declared_shapes():
    L, C, k, keep, chunks = 2, 4, 3, 5, 2
    r = DegreeResult.empty(L, C, k, keep, chunks)
    arrays = r.to_arrays()
    shapes = DegreeResult.array_shapes(L, C, k, keep, chunks)
    assert set(arrays) == set(shapes)
    for name, a in arrays.items():
        assert (a.shape, a.dtype.str) == shapes[name], name
    assert shapes["coef_mean"] == ((chunks, L, C, k + 1, len(COEF_QUANTITIES)), "<f8")
    assert shapes["risk_Mtri"] == ((chunks, L, C, 6), "<f8")  # 3 × 3, symmetric
    assert shapes["tails"] == ((L, C, k + 1, len(TAIL_THRESHOLDS)), "<i8")
    assert shapes["fit_counts"] == ((L, C, len(FIT_COUNTS)), "<i8")
    assert np.isnan(r.draws).all() and np.isnan(r.first).all()
    assert not r.n_failed.any() and not r.fit_counts.any() and not r.tails.any()
    assert not r.coef.n.any() and not r.risk.M.any()
    back = DegreeResult.from_arrays(arrays)
    for name, a in back.to_arrays().items():
        np.testing.assert_array_equal(a, arrays[name])


def test_a_symmetric_co_moment_matrix_is_kept_as_its_lower_triangle_and_rebuilt_exactly():
    rng = np.random.default_rng(11)
    r = _filled(2, 3, 2, 1, 2, rng)
    A = r.coef.M
    r.coef.M[0, 1, 2, 0, 1, 3] = r.coef.M[0, 1, 2, 0, 3, 1] = np.nan
    r.risk.M[1, 0, 2, 0, 1] = np.nextafter(r.risk.M[1, 0, 2, 0, 1], np.inf)  # 1 ulp off
    arrays = r.to_arrays()
    assert "coef_M" not in arrays and "risk_Mtri" not in arrays  # risk's M stays whole
    tri = arrays["coef_Mtri"]
    assert tri.shape == (*A.shape[:-2], 15)
    # row by row: (0,0), (1,0), (1,1), (2,0), …
    assert tri[1, 0, 2, 1, 1] == r.coef.M[1, 0, 2, 1, 1, 0]
    assert tri[1, 0, 2, 1, 14] == r.coef.M[1, 0, 2, 1, 4, 4]
    assert np.isnan(tri[0, 1, 2, 0, 7])  # (3, 1)
    back = DegreeResult.from_arrays(arrays)
    np.testing.assert_array_equal(back.coef.M, r.coef.M, strict=True)
    np.testing.assert_array_equal(back.risk.M, r.risk.M, strict=True)
    # a checkpoint of version 9 or earlier holds the whole matrix: still read as it is
    old = {k: v for k, v in arrays.items() if k != "coef_Mtri"} | {"coef_M": r.coef.M}
    np.testing.assert_array_equal(DegreeResult.from_arrays(old).coef.M, r.coef.M, strict=True)
    with pytest.raises(ValueError, match="coef_Mtri: 14 values are no triangle"):
        DegreeResult.from_arrays(arrays | {"coef_Mtri": tri[..., :14]})
    # symmetric in value but not in bits (+0 and −0): kept whole, so the sign survives
    signed = _filled(1, 1, 1, 1, 1, rng)
    signed.coef.M[0, 0, 0, 0, 1, 2], signed.coef.M[0, 0, 0, 0, 2, 1] = 0.0, -0.0
    arrays = signed.to_arrays()
    assert "coef_M" in arrays and "coef_Mtri" not in arrays
    back = DegreeResult.from_arrays(arrays).coef.M
    np.testing.assert_array_equal(np.signbit(back), np.signbit(signed.coef.M))


def _symmetric(A):
    """A stack of symmetric matrices, as co-moment matrices are."""
    return A + np.swapaxes(A, -1, -2)


def _filled(L, C, k, keep, chunks, rng):
    """A DegreeResult of random numbers (the layout of a real one)."""
    r = DegreeResult.empty(L, C, k, keep, chunks)
    r.coef = CoMoments(
        rng.integers(1, 9, r.coef.n.shape).astype(float),
        rng.normal(size=r.coef.mean.shape),
        _symmetric(rng.normal(size=r.coef.M.shape)),
    )
    r.risk = CoMoments(
        rng.integers(1, 9, r.risk.n.shape).astype(float),
        rng.normal(size=r.risk.mean.shape),
        _symmetric(rng.normal(size=r.risk.M.shape)),
    )
    r.n_failed = rng.integers(0, 5, r.n_failed.shape)
    r.draws = rng.normal(size=r.draws.shape)
    r.fit_counts = rng.integers(0, 5, r.fit_counts.shape)
    r.first = rng.normal(size=r.first.shape)
    r.tails = rng.integers(0, 5, r.tails.shape)
    return r


def test_task_result_arrays_round_trip_with_degree_prefixed_keys():
    rng = np.random.default_rng(0)
    tr = TaskResult({1: _filled(2, 3, 1, 4, 2, rng), 3: _filled(2, 3, 3, 4, 2, rng)}, 1.25)
    arrays = tr.to_arrays()
    assert "seconds" in arrays and arrays["seconds"].shape == () and arrays["seconds"] == 1.25
    assert {k for k in arrays if k.startswith("k1_")} == {
        f"k1_{n}" for n in DegreeResult.array_shapes(2, 3, 1, 4, 2)
    }
    back = TaskResult.from_arrays(arrays)
    assert list(back.degrees) == [1, 3] and back.seconds == 1.25
    for key, a in back.to_arrays().items():
        np.testing.assert_array_equal(a, arrays[key])
    design = _design()
    shapes = TaskResult.array_shapes(design, 4, chunks=2, n_lambda=3)  # the design has 2
    assert shapes["k3_draws"] == ((3, 4, 4, 4), "<f8") and shapes["seconds"] == ((), "<f8")
    assert TaskResult.array_shapes(design, 7)["k1_coef_n"] == ((1, 2, 4, 2), "<f8")
    assert set(TaskResult.array_shapes(design, 1)) == {
        f"k{k}_{n}" for k in (1, 3) for n in DegreeResult.array_shapes(1, 1, k, 1, 1)
    } | {"seconds"}


def test_fit_every_cell_fits_each_basis_on_its_identifiable_columns():
    design = _design()  # columns: (monomial, none), (monomial, k), (orthonormal, none), (...)
    calls = []

    def fit(result, basis, alphas, cells):
        calls.append((basis.degree, basis, alphas.copy(), cells.copy()))
        result.n_failed[cells] += 1

    out = fit_every_cell(design, 3, 2, 7, fit)
    assert list(out) == [1, 3]
    assert [(d, b.B_is_identity) for d, b, _, _ in calls] == [(1, False)] * 2 + [(3, False)] * 2
    mono = np.array([True, True, False, False])
    for (k, basis, alphas, cells), b in zip(calls, ["monomial", "orthonormal"] * 2, strict=True):
        np.testing.assert_array_equal(alphas, alpha_grid(design, 3, k))
        ident = identifiable_grid(design, 3, k)
        np.testing.assert_array_equal(cells, ident & (mono if b == "monomial" else ~mono)[None])
        np.testing.assert_allclose(basis.B, design.standard_basis(k, b).B)
    assert out[3].draws.shape == (2, 4, 7, 4) and out[3].coef.n.shape == (2, 2, 4, 4)
    np.testing.assert_array_equal(out[3].n_failed, [[0, 0, 0, 0], [1, 1, 1, 1]])
    np.testing.assert_array_equal(out[1].n_failed, np.ones((2, 4)))


def test_merging_chunks_does_not_depend_on_how_they_were_grouped():
    rng = np.random.default_rng(1)
    L, C, k, keep = 2, 3, 2, 2
    whole = _filled(L, C, k, keep, 5, rng)

    def part(a, b):
        r = DegreeResult.empty(L, C, k, keep, b - a)
        r.coef = CoMoments(whole.coef.n[a:b], whole.coef.mean[a:b], whole.coef.M[a:b])
        r.risk = CoMoments(whole.risk.n[a:b], whole.risk.mean[a:b], whole.risk.M[a:b])
        r.first = whole.first[a:b]
        r.n_failed = whole.n_failed + a
        r.fit_counts = whole.fit_counts + 2 * a
        r.tails = whole.tails + 3 * a
        r.draws = whole.draws + a
        return TaskResult({k: r}, 0.0)

    merged = []
    for groups in ([(0, 5)], [(0, 1), (1, 5)], [(0, 2), (2, 3), (3, 5)]):
        mg = ChunkMerger([k])
        for a, b in groups:
            mg.add(part(a, b))
        assert mg.chunks == 5
        merged.append(mg)
    # the co-moments: a left fold over the chunks, equal to the two-pass summary of them all
    for mg in merged:
        r = mg.result(k)
        np.testing.assert_array_equal(r.coef.mean, merged[0].result(k).coef.mean)
        np.testing.assert_array_equal(r.coef.M, merged[0].result(k).coef.M)
        np.testing.assert_array_equal(r.risk.M, merged[0].result(k).risk.M)
        np.testing.assert_array_equal(r.first, whole.first)
        np.testing.assert_array_equal(mg.chunk0(k).mean, whole.coef.mean[0])
        np.testing.assert_array_equal(mg.chunk0(k).n, whole.coef.n[0])
    ref = CoMoments(whole.coef.n[0], whole.coef.mean[0], whole.coef.M[0])
    for i in range(1, 5):
        ref = ref.merge(CoMoments(whole.coef.n[i], whole.coef.mean[i], whole.coef.M[i]))
    np.testing.assert_array_equal(merged[0].result(k).coef.n, whole.coef.n.sum(axis=0))
    np.testing.assert_allclose(merged[0].result(k).coef.M, ref.M, rtol=1e-12)
    np.testing.assert_allclose(
        merged[0].result(k).coef.mean,
        (whole.coef.n[..., None] * whole.coef.mean).sum(0) / whole.coef.n.sum(0)[..., None],
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        merged[0].result(k).risk.mean,
        (whole.risk.n[..., None] * whole.risk.mean).sum(0) / whole.risk.n.sum(0)[..., None],
        rtol=1e-12,
    )
    # counts summed, draws concatenated along the kept axis
    r = merged[2].result(k)
    np.testing.assert_array_equal(r.n_failed, 3 * whole.n_failed + 0 + 2 + 3)
    np.testing.assert_array_equal(r.fit_counts, 3 * whole.fit_counts + 2 * (0 + 2 + 3))
    np.testing.assert_array_equal(r.tails, 3 * whole.tails + 3 * (0 + 2 + 3))
    np.testing.assert_array_equal(
        r.draws, np.concatenate([whole.draws, whole.draws + 2, whole.draws + 3], axis=2)
    )


def test_the_merger_keeps_the_first_estimates_of_at_most_64_chunks():
    mg = ChunkMerger([1])
    with pytest.raises(ValueError, match="^no chunk was merged$"):
        mg.result(1)
    with pytest.raises(ValueError, match="^no chunk was merged$"):
        mg.chunk0(1)
    rng = np.random.default_rng(2)
    parts = [_filled(1, 1, 1, 0, n, rng) for n in (40, 20, 10, 3)]
    for p in parts:
        mg.add(TaskResult({1: p}, 0.0))
    assert mg.chunks == 73 and AUDIT_CHUNKS == 64
    first = mg.result(1).first
    assert first.shape == (64, 1, 1, 2)
    np.testing.assert_array_equal(
        first, np.concatenate([parts[0].first, parts[1].first, parts[2].first[:4]])
    )
    np.testing.assert_array_equal(mg.result(1).coef.n, sum(p.coef.n.sum(axis=0) for p in parts))
    one = ChunkMerger([1])
    one.add(TaskResult({1: _filled(1, 1, 1, 0, 70, rng)}, 0.0))
    assert one.result(1).first.shape[0] == 64


# --- the Gaussian family against plain ridge fits on the same data ------------------------


def _features(design, basis, x, k):
    if basis == "monomial":
        return np.vander(x, k + 1, increasing=True)
    return _psi(design.x.distribution, (x - design.x.center) / design.x.scale, k)


def _reference_cells(design, m, k, chunk):
    """Per cell (λ, column) and data set of a chunk, from the plain-noise data: ŵ,
    E[ŵ|X], diag Var[ŵ|X], R and E[R|X], by normal equations in x (or ψ)."""
    x, y = draw_chunk_data(design, m, chunk)
    t = design.x.center + design.x.scale * _GL_NODES  # quadrature for Σ over x
    out = {}
    for li, lam in enumerate(design.lam):
        for ci, (b, s) in enumerate(design.columns):
            a = _alpha(lam, m, k, s)
            Phi = np.stack([_features(design, b, xi, k) for xi in x])  # (n, m, k+1)
            line = design.intercept + design.slope * t
            ft = _features(design, b, t, k)
            w_star = np.linalg.lstsq(ft, line, rcond=None)[0]
            Sigma = (ft * (_GL_WEIGHTS / 2)[:, None]).T @ ft
            G = np.swapaxes(Phi, 1, 2) @ Phi
            A = G + a * penalty_matrix(k)
            Ainv = np.linalg.inv(A)
            w = np.einsum("nij,nj->ni", Ainv, np.einsum("nmi,nm->ni", Phi, y))
            e = Ainv @ G @ w_star
            cov = design.noise_sd**2 * Ainv @ G @ Ainv
            d = w - w_star
            eb = e - w_star
            R = np.einsum("ni,ij,nj->n", d, Sigma, d)
            RB = np.einsum("ni,ij,nj->n", eb, Sigma, eb) + np.einsum("ij,nji->n", Sigma, cov)
            v = np.diagonal(cov, axis1=1, axis2=2)
            out[li, ci] = dict(
                w=w,
                w_star=w_star,
                q=np.stack([d, d**2, eb, eb**2, v], -1),
                r=np.stack([R, R**2, RB], -1),
            )
    return out


def test_gaussian_task_equals_plain_ridge_fits_of_the_drawn_data():
    design = _design(**{"dgp.intercept": -0.5, "dgp.slope": 1.5, "dgp.noise_sd": 0.7})
    m, k = 8, 3
    result = run_task(design, Task(m, 0, 2), noise_draw="plain")
    assert result.seconds > 0
    r = result.degrees[k]
    ref = [_reference_cells(design, m, k, c) for c in (0, 1)]
    assert r.coef.n.shape == (2, 2, 4, k + 1)
    for (li, ci), cell0 in ref[0].items():
        cell1 = ref[1][li, ci]
        w = np.concatenate([cell0["w"], cell1["w"]])
        np.testing.assert_allclose(r.draws[li, ci], w, rtol=1e-7, atol=1e-9)
        for c, cell in enumerate((cell0, cell1)):
            n = cell["w"].shape[0]
            np.testing.assert_array_equal(r.coef.n[c, li, ci], n)
            np.testing.assert_allclose(
                r.coef.mean[c, li, ci], cell["q"].mean(0), rtol=1e-6, atol=1e-10
            )
            dev = cell["q"][:, :, 0] - cell["q"][:, :, 0].mean(0)
            np.testing.assert_allclose(r.coef.M[c, li, ci, :, 0, 0], (dev**2).sum(0), rtol=1e-6)
            assert r.risk.n[c, li, ci] == n
            np.testing.assert_allclose(r.risk.mean[c, li, ci], cell["r"].mean(0), rtol=1e-6)
            np.testing.assert_allclose(r.first[c, li, ci], cell["w"][0], rtol=1e-7, atol=1e-9)
        err = np.abs(w - cell0["w_star"])
        np.testing.assert_array_equal(
            r.tails[li, ci], np.stack([(err > t).sum(0) for t in TAIL_THRESHOLDS], -1)
        )
        assert r.fit_counts[li, ci].sum() == 300 and r.n_failed[li, ci] == 0
    # the conditional quantities (e, e², v; E[R|X]) depend on the x stream alone
    suff = run_task(design, Task(m, 0, 2)).degrees[k]
    np.testing.assert_allclose(
        suff.coef.mean[..., 2:], r.coef.mean[..., 2:], rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(suff.risk.mean[..., 2], r.risk.mean[..., 2], rtol=1e-9)
    assert not np.allclose(suff.coef.mean[..., 0], r.coef.mean[..., 0])


def test_gaussian_cells_without_identifiable_fits_stay_empty():
    design = _design(**{"output.keep_draws": 260})
    r = gaussian.run_chunks(design, 3, range(0, 2))[3]  # m = 3 ≤ degree 3: λ = 0 not fitted
    assert np.isnan(r.draws[0]).all() and not r.coef.n[:, 0].any()
    assert not r.fit_counts[0].any() and not r.n_failed.any()
    assert np.isnan(r.first[:, 0]).all()
    assert r.draws.shape == (2, 4, 260, 4)  # 256 kept in chunk 0, 4 in chunk 1
    assert np.isfinite(r.draws[1]).all()
    np.testing.assert_array_equal(r.coef.n[:, 1, :, 0], [[256.0] * 4, [44.0] * 4])
    np.testing.assert_array_equal(r.fit_counts[1].sum(axis=-1), 300)
    one = gaussian.run_chunks(design, 3, range(1, 2))[3]
    np.testing.assert_array_equal(one.draws[1], r.draws[1, :, 256:])
    np.testing.assert_array_equal(one.coef.mean[0], r.coef.mean[1])


# --- checkpoints: refused with the exact reason --------------------------------------------

from study.engine.merge import RunningMerge, summarise  # noqa: E402
from study.engine.store import (  # noqa: E402
    CheckpointError,
    CheckpointStore,
    pack_checkpoint,
    unpack_checkpoint,
)
from study.results import (  # noqa: E402
    FITS_COLUMNS,
    RISK_COLUMNS,
    SUMMARY_COLUMNS,
    basis_label,
    flag_impossible,
    read_table,
    tail_column,
    to_csv,
    usable_cells,
)

_ARRAYS = {
    "b": np.arange(6, dtype=np.int64).reshape(2, 3),
    "a": np.linspace(0, 1, 4),
    "seconds": np.array(2.5),
    "flags": np.array([True, False]),
}


def _reseal(body: bytes) -> bytes:
    return body + hashlib.sha256(body).digest()


def _parts(data: bytes):
    body = data[:-32]
    end = body.index(b"\n", len(b"STUDYCKPT3\n"))
    return (
        body[: len(b"STUDYCKPT3\n")],
        json.loads(body[len(b"STUDYCKPT3\n") : end]),
        body[end + 1 :],
    )


def test_a_checkpoint_round_trips_its_arrays_and_records_its_identity():
    task = Task(8, 0, 2)
    data = pack_checkpoint(_ARRAYS, design_hash="ab" * 32, task=task, noise_draw="plain")
    magic, header, payload = _parts(data)
    assert magic == b"STUDYCKPT3\n"
    assert header["design_hash"] == "ab" * 32 and header["task"] == [8, 0, 2]
    assert header["engine_version"] == engine.ENGINE_VERSION and header["noise_draw"] == "plain"
    assert header["payload_bytes"] == len(payload) == 48 + 32 + 8 + 2
    assert [row[0] for row in header["index"]] == sorted(_ARRAYS)
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]
    out = unpack_checkpoint(data, design_hash="ab" * 32, task=task, noise_draw="plain")
    assert set(out) == set(_ARRAYS)
    for name, a in _ARRAYS.items():
        assert out[name].dtype == a.dtype and out[name].shape == a.shape
        np.testing.assert_array_equal(out[name], a)
    out["a"][0] = 5.0  # a copy, writable
    # the default noise draw is the sufficient one, on both sides
    default = pack_checkpoint(_ARRAYS, design_hash="ab" * 32, task=task)
    assert _parts(default)[1]["noise_draw"] == "sufficient"
    unpack_checkpoint(default, design_hash="ab" * 32, task=task)
    # the bytes are a function of the arrays: the order they come in does not matter
    assert (
        pack_checkpoint(dict(reversed(list(_ARRAYS.items()))), design_hash="ab" * 32, task=task)
        == default
    )
    with pytest.raises(TypeError, match=r"^cannot pack object array 'o'$"):
        pack_checkpoint({"o": np.array(["x", None], dtype=object)}, design_hash="h", task=task)


def _refusal(data, **identity):
    kw = {"design_hash": "ab" * 32, "task": Task(8, 0, 2), "noise_draw": "sufficient"} | identity
    with pytest.raises(CheckpointError) as info:
        unpack_checkpoint(data, **kw)
    return str(info.value)


def test_damaged_or_foreign_checkpoints_are_refused_with_the_reason(monkeypatch):
    good = pack_checkpoint(_ARRAYS, design_hash="ab" * 32, task=Task(8, 0, 2))
    magic, header, payload = _parts(good)
    assert _refusal(b"") == "empty"
    short = "not a checkpoint of this version of study, or truncated"
    assert _refusal(good[:43]) == short
    assert _refusal(b"STUDYCKPT3\n" + bytes(32)) == short  # nothing beyond magic and digest
    assert _refusal(b"PK\x03\x04" + bytes(100)) == short  # an .npz
    assert _refusal(good[:-1]) == "truncated or damaged (SHA-256 mismatch)"
    flipped = bytearray(good)
    flipped[-40] ^= 1
    assert _refusal(bytes(flipped)) == "truncated or damaged (SHA-256 mismatch)"
    future = _reseal(b"STUDYCKPT30\n" + good[len(magic) : -32])
    assert _refusal(future) == "written by another version of study"
    assert _refusal(good, design_hash="cd" * 32) == "from another design (hash abababababab…)"
    assert _refusal(good, noise_draw="plain") == "drawn with the sufficient noise draw"
    assert _refusal(good, task=Task(8, 0, 1)) == "of another task (m = 8, chunks 0–1)"
    assert _refusal(good, task=Task(3, 0, 2)) == "of another task (m = 8, chunks 0–1)"
    other = pack_checkpoint(_ARRAYS, design_hash="ab" * 32, task=Task(8, 1, 2))
    assert _refusal(other) == "of another task (m = 8, chunk 1)"
    legacy = dict(header)
    del legacy["noise_draw"]
    assert _refusal(_reseal(magic + json.dumps(legacy).encode() + b"\n" + payload)) == (
        "drawn with the None noise draw"
    )
    longer = dict(header, payload_bytes=header["payload_bytes"] + 1)
    assert _refusal(_reseal(magic + json.dumps(longer).encode() + b"\n" + payload)) == (
        "inconsistent length"
    )
    assert _refusal(_reseal(magic + json.dumps(header).encode() + b"\n" + payload[:-1])) == (
        "inconsistent length"
    )
    monkeypatch.setattr(engine, "ENGINE_VERSION", engine.ENGINE_VERSION + 1)
    old = pack_checkpoint(_ARRAYS, design_hash="ab" * 32, task=Task(8, 0, 2))
    monkeypatch.undo()
    assert _refusal(old) == f"from engine version {engine.ENGINE_VERSION + 1}"


def _empty_result(design, task, seconds=0.5):
    L, C = len(design.lam), len(design.columns)
    return TaskResult(
        {k: DegreeResult.empty(L, C, k, 2, task.n_chunks) for k in design.degree}, seconds
    )


def test_the_store_saves_loads_and_names_the_file_it_refuses(tmp_path):
    design = _design()
    store = CheckpointStore(tmp_path, design)
    task = Task(8, 0, 2)
    assert store.path(task) == tmp_path / "checkpoints" / "m8-c0-2.ckpt"
    assert store.done() == []  # no folder yet
    result = _filled(2, 4, 1, 3, 2, np.random.default_rng(4))
    store.save(task, TaskResult({1: result, 3: _empty_result(design, task).degrees[3]}, 1.5))
    back = store.load(task)
    assert back.seconds == 1.5 and list(back.degrees) == [1, 3]
    for name, a in result.to_arrays().items():
        np.testing.assert_array_equal(back.degrees[1].to_arrays()[name], a)
    other = CheckpointStore(tmp_path, _design(**{"seed": 1}))
    with pytest.raises(CheckpointError) as info:
        other.load(task)
    assert str(info.value) == (
        f"checkpoint '{store.path(task)}' from another design (hash {design.hash[:12]}…)"
    )
    plain = CheckpointStore(tmp_path, design, noise_draw="plain")
    with pytest.raises(CheckpointError) as info:
        plain.load(task)
    assert str(info.value) == (
        f"checkpoint '{store.path(task)}' drawn with the sufficient noise draw"
    )
    assert plain.done() == [] and not store.path(task).exists()  # set aside
    assert (tmp_path / "checkpoints" / "rejected" / "m8-c0-2.ckpt").exists()


def test_done_keeps_one_verified_checkpoint_per_chunk_and_sets_the_others_aside(tmp_path):
    design = _design()  # m = 3 and 8, two chunks each
    store = CheckpointStore(tmp_path, design)
    for task in [Task(8, 0, 1), Task(8, 0, 2), Task(8, 1, 2), Task(3, 0, 1), Task(3, 1, 2)]:
        store.save(task, _empty_result(design, task))
    folder = tmp_path / "checkpoints"
    (folder / "m3-c1-2.ckpt").write_bytes(b"")  # empty
    (folder / "m08-c0-1.ckpt").write_bytes(store.path(Task(8, 0, 1)).read_bytes())
    store.save(Task(3, 2, 3), _empty_result(design, Task(3, 2, 3)))  # beyond two chunks
    store.save(Task(40, 0, 1), _empty_result(design, Task(40, 0, 1)))  # not an m of the design
    (folder / "m3-c5-4.ckpt").write_bytes(b"x")  # first ≥ stop
    (folder / "notes.txt").write_text("kept")
    (folder / "m3-c7-9.ckpt").mkdir()  # a folder under a task's name: outside the chunks
    seen = []
    done = store.done(
        on_reject=lambda path, moved, reason: seen.append((path.name, moved.name, reason))
    )
    assert done == [Task(3, 0, 1), Task(8, 0, 2)]
    assert sorted(seen) == sorted(
        [
            ("m08-c0-1.ckpt", "m08-c0-1.ckpt", "not named as study names it (m8-c0-1.ckpt)"),
            ("m3-c1-2.ckpt", "m3-c1-2.ckpt", "empty"),
            ("m3-c2-3.ckpt", "m3-c2-3.ckpt", "chunks 2–2 outside the design's chunks"),
            ("m3-c5-4.ckpt", "m3-c5-4.ckpt", "chunks 5–3 outside the design's chunks"),
            ("m3-c7-9.ckpt", "m3-c7-9.ckpt", "chunks 7–8 outside the design's chunks"),
            ("m8-c0-1.ckpt", "m8-c0-1.ckpt", "its chunks overlap those of another checkpoint"),
            ("m8-c1-2.ckpt", "m8-c1-2.ckpt", "its chunks overlap those of another checkpoint"),
        ]
    )
    assert (folder / "notes.txt").exists() and (folder / "m40-c0-1.ckpt").exists()
    assert sorted(p.name for p in folder.iterdir()) == [
        "m3-c0-1.ckpt",
        "m40-c0-1.ckpt",
        "m8-c0-2.ckpt",
        "notes.txt",
        "rejected",
    ]
    # a second rejection of the same name does not overwrite the first
    (folder / "m3-c1-2.ckpt").write_bytes(b"")
    (folder / "m3-c0-2.ckpt").mkdir()  # overlaps nothing earlier, but a folder: unreadable
    seen.clear()
    assert store.done(on_reject=lambda p, t, r: seen.append((p.name, t.name, r))) == [
        Task(3, 0, 1),
        Task(8, 0, 2),
    ]
    # the reason is the system's own text for reading a folder (strerror of EISDIR)
    assert sorted(seen) == [
        ("m3-c0-2.ckpt", "m3-c0-2.ckpt", os.strerror(errno.EISDIR)),
        ("m3-c1-2.ckpt", "m3-c1-2.ckpt.1", "empty"),
    ]
    assert store.done() == [Task(3, 0, 1), Task(8, 0, 2)]


# --- summarise: the results files from the checkpoints -------------------------------------


def _run_into(tmp_path, design, tasks):
    store = CheckpointStore(tmp_path, design)
    for task in tasks:
        store.save(task, run_task(design, task))
    return store


def test_summary_risk_fits_and_draws_follow_docs_results_md(tmp_path):
    design = _design(**{"dgp.noise_sd": 2.5, "grid.degree": [3]})
    tasks = [Task(8, 1, 2), Task(3, 0, 2), Task(8, 0, 1)]  # in any order
    store = _run_into(tmp_path / "a", design, tasks)
    summary, risk, draws, fits = summarise(design, store, tasks)
    assert (
        list(summary.columns)
        == [
            "m",
            "degree",
            "lambda",
            "scaling",
            "basis",
            "alpha",
            "coef",
            "true",
            "n",
            "mean",
            "bias",
            "bias_mcse",
            "var",
            "var_mcse",
            "sd",
            "sd_mcse",
            "mse",
            "mse_mcse",
            "n_failed",
            "status",
            "kurtosis",
            "p_gt_1",
            "p_gt_10",
            "p_gt_100",
            "bias_rb",
            "bias_rb_mcse",
            "var_rb",
            "var_rb_mcse",
            "bias_diff_mcse",
            "var_diff_mcse",
        ]
        == SUMMARY_COLUMNS
    )
    assert (
        list(risk.columns)
        == [
            "m",
            "degree",
            "lambda",
            "scaling",
            "basis",
            "alpha",
            "n",
            "risk",
            "risk_mcse",
            "n_failed",
            "status",
            "risk_kurtosis",
            "risk_rb",
            "risk_rb_mcse",
            "risk_diff_mcse",
        ]
        == RISK_COLUMNS
    )
    assert (
        list(fits.columns)
        == [
            "m",
            "degree",
            "lambda",
            "scaling",
            "basis",
            "alpha",
            "compiled",
            "pencil",
            "direct",
            "declined_not_positive_definite",
            "declined_not_finite",
            "declined_not_converged",
        ]
        == FITS_COLUMNS
    )
    assert len(summary) == 2 * 2 * 4 * 4 and len(risk) == len(fits) == 2 * 2 * 4
    assert summary["n"].dtype == np.int64 and risk["n_failed"].dtype == np.int64
    # draws.npz: coef_k3 (m, λ, columns, keep, k+1), the axes, and the audit arrays
    coef = draws["coef_k3"]
    assert coef.shape == (2, 2, 4, 300, 4)
    np.testing.assert_array_equal(draws["m"], [3, 8])
    np.testing.assert_array_equal(draws["degree"], [3])
    np.testing.assert_array_equal(draws["lambda"], [0.0, 0.5])
    assert list(draws["scaling"]) == ["none", "k", "none", "k"]
    assert list(draws["basis"]) == ["monomial", "monomial", "orthonormal", "orthonormal"]
    assert draws["first_k3"].shape == (2, 2, 2, 4, 4)
    np.testing.assert_array_equal(draws["chunk0_n_k3"][:, 1], 256)
    assert draws["chunk0_mean_k3"].shape == (2, 2, 4, 4, 5)
    # w* and Σ = E[f(x)f(x)ᵀ] of each basis's features f, by Gauss–Legendre quadrature on
    # x's range (exact for these polynomials): the true line fitted exactly by the features
    nodes = design.x.center + design.x.scale * _GL_NODES
    line = design.intercept + design.slope * nodes
    i = 0
    for mi, m in enumerate(design.m):
        for li, lam in enumerate(design.lam):
            for ci, (b, s) in enumerate(design.columns):
                rows = summary.iloc[i : i + 4]
                rrow = risk.iloc[i // 4]
                frow = fits.iloc[i // 4]
                i += 4
                assert (rows["m"] == m).all() and (rows["lambda"] == lam).all()
                assert (rows["scaling"] == s).all() and (rows["basis"] == b).all()
                assert (rrow["m"], rrow["lambda"], rrow["scaling"], rrow["basis"]) == (
                    m,
                    lam,
                    s,
                    b,
                )
                assert (frow["m"], frow["lambda"], frow["scaling"], frow["basis"]) == (
                    m,
                    lam,
                    s,
                    b,
                )
                np.testing.assert_allclose(rows["alpha"], _alpha(lam, m, 3, s), rtol=1e-15)
                np.testing.assert_array_equal(rows["coef"], [0, 1, 2, 3])
                ft = _features(design, b, nodes, 3)
                w_star = np.linalg.lstsq(ft, line, rcond=None)[0]
                Sigma = (ft * (_GL_WEIGHTS / 2)[:, None]).T @ ft
                np.testing.assert_allclose(rows["true"], w_star, rtol=1e-10, atol=1e-12)
                if lam == 0 and m == 3:
                    assert (rows["status"] == "not identifiable").all()
                    assert (rows["n_failed"] == 300).all() and (rows["n"] == 0).all()
                    assert rrow["status"] == "not identifiable" and rrow["n_failed"] == 300
                    assert np.isnan(coef[mi, li, ci]).all()
                    assert frow[["compiled", "pencil", "direct"]].sum() == 0
                    continue
                w = coef[mi, li, ci]  # every replication is kept
                d = w - w_star
                assert (rows["status"] == "ok").all() and (rows["n"] == 300).all()
                assert (rows["n_failed"] == 0).all()
                assert frow[["compiled", "pencil", "direct"]].sum() == 300
                np.testing.assert_allclose(rows["mean"], w.mean(0), rtol=1e-9, atol=1e-12)
                np.testing.assert_allclose(rows["bias"], d.mean(0), rtol=1e-8, atol=1e-12)
                np.testing.assert_allclose(rows["var"], w.var(0, ddof=1), rtol=1e-8)
                np.testing.assert_allclose(rows["sd"], w.std(0, ddof=1), rtol=1e-8)
                np.testing.assert_allclose(rows["mse"], (d**2).mean(0), rtol=1e-8)
                np.testing.assert_allclose(
                    rows["bias_mcse"], np.sqrt(w.var(0, ddof=1) / 300), rtol=1e-8
                )
                c = w - w.mean(0)
                np.testing.assert_allclose(
                    rows["kurtosis"], (c**4).mean(0) / (c**2).mean(0) ** 2 - 3, rtol=1e-6
                )
                for t in TAIL_THRESHOLDS:
                    np.testing.assert_allclose(rows[tail_column(t)], (np.abs(d) > t).mean(0))
                R = np.einsum("ni,ij,nj->n", d, Sigma, d)
                np.testing.assert_allclose(rrow["risk"], R.mean(), rtol=1e-8)
                np.testing.assert_allclose(
                    rrow["risk_mcse"], R.std(ddof=1) / np.sqrt(300), rtol=1e-6
                )
                assert rrow["n"] == 300 and rrow["status"] == "ok"
    assert (summary.loc[summary["p_gt_1"] > 0, "p_gt_1"] < 1).any()  # the tails show
    # the same checkpoints cut into other tasks: the same numbers, bit for bit
    regrouped = [Task(3, 0, 1), Task(8, 0, 2), Task(3, 1, 2)]
    again = summarise(design, _run_into(tmp_path / "b", design, regrouped), regrouped)
    pd.testing.assert_frame_equal(again[0], summary)
    pd.testing.assert_frame_equal(again[1], risk)
    pd.testing.assert_frame_equal(again[3], fits)
    for key, a in draws.items():
        np.testing.assert_array_equal(again[2][key], a)


def test_summarise_refuses_a_run_with_a_missing_chunk(tmp_path):
    design = _design(**{"grid.degree": [1], "grid.m": [8]})
    store = _run_into(tmp_path, design, [Task(8, 0, 1), Task(8, 1, 2)])
    with pytest.raises(ValueError, match=r"^chunk 1 of m = 8 has no checkpoint$"):
        summarise(design, store, [Task(8, 0, 1)])
    with pytest.raises(ValueError, match=r"^chunk 0 of m = 8 has no checkpoint$"):
        summarise(design, store, [Task(8, 1, 2)])


# --- results: the files' vocabulary -------------------------------------------------------


def test_tail_columns_and_basis_labels():
    assert [tail_column(t) for t in (1.0, 10.0, 100.0, 0.5)] == [
        "p_gt_1",
        "p_gt_10",
        "p_gt_100",
        "p_gt_0.5",
    ]
    assert basis_label("monomial") == ""
    assert basis_label("orthonormal") == ", orthonormal basis"


def test_usable_cells_need_status_ok_and_the_moments_of_the_order():
    rows = pd.DataFrame(
        {
            "m": [3, 5, 5, 30, 30, 30],
            "degree": [2, 2, 2, 5, 5, 5],
            "lambda": [0.0, 0.0, 0.0, 0.0, 0.0, 0.1],
            "status": ["ok", "ok", "non-finite", "ok", "ok", "ok"],
        }
    )
    # λ = 0: order min_j (m − ⌊k/j⌋)/j: m=3,k=2 → 1; m=5,k=2 → 2; m=30,k=5 → 5.8; λ>0: inf
    np.testing.assert_array_equal(usable_cells(rows), [1, 1, 0, 1, 1, 1])
    np.testing.assert_array_equal(usable_cells(rows, 2), [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(usable_cells(rows, 1.9), [0, 1, 0, 1, 1, 1])
    np.testing.assert_array_equal(usable_cells(rows, 6), [0, 0, 0, 0, 0, 1])
    given = rows.assign(finite_moments=[10.0, 10.0, 10.0, 4.0, 3.0, np.inf])
    np.testing.assert_array_equal(usable_cells(given, 4), [1, 1, 0, 0, 0, 1])
    bare = rows.drop(columns="status")
    np.testing.assert_array_equal(usable_cells(bare), np.ones(6, bool))
    np.testing.assert_array_equal(usable_cells(bare, 2), [0, 0, 0, 1, 1, 1])


def _summary_rows(**cols):
    n = len(next(iter(cols.values())))
    base = {c: np.full(n, 1.0) for c in SUMMARY_COLUMNS}
    base.update(status=np.array(["ok"] * n, dtype=object), n=np.full(n, 10))
    base.update(cols)
    return pd.DataFrame(base)


def test_flag_impossible_marks_non_finite_and_negative_measures():
    f = _summary_rows(
        var=[1.0, -0.1, 1.0, -0.1, -0.1, 1.0, 1.0],
        bias=[1.0, 1.0, np.nan, np.nan, 1.0, 1.0, 1.0],
        n=[10, 10, 10, 10, 1, 10, 10],
        status=np.array(["ok"] * 4 + ["ok", "not identifiable", "ok"], dtype=object),
        var_rb=[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -2.0],
    )
    flag_impossible(f, "summary")
    assert list(f["status"]) == [
        "ok",
        "negative variance",
        "non-finite",
        "non-finite",
        "ok",
        "not identifiable",
        "negative variance",
    ]
    g = _summary_rows(var_rb=[-2.0, 1.0], bias_rb=[1.0, np.nan], mse=[1.0, -1.0])
    flag_impossible(g, "summary", rao_blackwell=False)
    assert list(g["status"]) == ["ok", "negative variance"]
    r = pd.DataFrame(
        {
            "n": [5, 5, 5, 5],
            "status": ["ok"] * 4,
            "alpha": [1.0, np.inf, 1.0, 1.0],
            "risk": [1.0, 1.0, -1.0, 1.0],
            "risk_mcse": [0.1] * 4,
            "risk_rb": [1.0, 1.0, 1.0, np.nan],
        }
    )
    flag_impossible(r, "risk")
    assert list(r["status"]) == ["ok", "non-finite", "negative variance", "non-finite"]


def test_read_table_adds_the_monomial_basis_to_old_tables(tmp_path):
    path = tmp_path / "summary.csv"
    path.write_text("m,degree,lambda,scaling,alpha\n8,2,0.5,m,0.5\n")
    frame = read_table(path)
    assert list(frame.columns) == ["m", "degree", "lambda", "scaling", "basis", "alpha"]
    assert frame["basis"].tolist() == ["monomial"]
    path.write_text("m,scaling,basis\n8,m,orthonormal\n")
    assert read_table(path)["basis"].tolist() == ["orthonormal"]
    path.write_text("m,risk\n8,0.5\n")
    assert list(read_table(path).columns) == ["m", "risk"]


def test_to_csv_writes_the_bytes_pandas_writes():
    frame = pd.DataFrame(
        {
            "m": np.array([3, 40], dtype=np.int64),
            "x": [0.1 + 0.2, np.nan],
            "flag": [True, False],
            "text": ["a,b", 'say "hi"'],
            "more": ["line\nbreak", None],
            "plain": ["ok", "ok"],
            "u8": np.array([1, 2], dtype=np.uint8),
            "big": [1e300, -2.5e-310],
        }
    )
    assert to_csv(frame) == frame.to_csv(index=False, lineterminator="\n")
    assert to_csv(frame).splitlines()[0] == "m,x,flag,text,more,plain,u8,big"
    assert "0.30000000000000004" in to_csv(frame)
    one = pd.DataFrame({"x": [1.5, 2.0]})
    assert to_csv(one) == "x\n1.5\n2.0\n"
    odd = pd.DataFrame({"a": [1.0, 2.0], "t": pd.to_datetime(["2020-01-01", "2021-06-30"])})
    assert to_csv(odd) == odd.to_csv(index=False, lineterminator="\n")
    objs = pd.DataFrame({"a": [1.0, 2.0], "o": [(1, 2), "x"]})
    assert to_csv(objs) == objs.to_csv(index=False, lineterminator="\n")
    quoted = pd.DataFrame({'a"b': [1, 2], "c,d": ["e\nf", "g"]})
    assert to_csv(quoted) == quoted.to_csv(index=False, lineterminator="\n")
    # a carriage return alone, with a comma, and at either end: pandas' quoting, whatever
    # this Python's csv module decides for "\r"
    returns = pd.DataFrame({"r": ["a\rb", "c,\rd", "\re", "f\r", "g\r\nh"], "n": range(5)})
    assert to_csv(returns) == returns.to_csv(index=False, lineterminator="\n")


def test_a_task_limits_blas_to_one_thread_and_passes_its_solver():
    from threadpoolctl import threadpool_info

    from study.engine.tasks import one_blas_thread

    with one_blas_thread():
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    design = _design(
        **{"grid.degree": [1], "grid.m": [8], "replications": 20, "output.keep_draws": 5}
    )
    counts = run_task(design, Task(8, 0, 1), solver="direct").degrees[1].fit_counts
    direct = FIT_COUNTS.index("direct")
    np.testing.assert_array_equal(counts[..., direct], 20)
    assert counts.sum() == 20 * counts.shape[0] * counts.shape[1]


def test_the_store_records_its_noise_draw_and_missing_values_count_as_non_finite():
    store = CheckpointStore("/nonexistent", _design(), noise_draw="plain")
    assert store.noise_draw == "plain" and store.design.m == (3, 8)
    f = _summary_rows(bias=pd.Series([1.0, None], dtype=object))
    flag_impossible(f, "summary")
    assert list(f["status"]) == ["ok", "non-finite"]


def test_a_tasks_seconds_are_the_time_it_took():
    """The compute time a task reports (summed into the manifest's compute seconds) lies
    between zero and the wall time of the call that ran it."""
    import time

    from study.engine.tasks import Task, run_task

    design = design_from_dict(small_design(**{"replications": 40, "grid.m": [6]}))
    started = time.perf_counter()
    result = run_task(design, Task(6, 0, 1))
    wall = time.perf_counter() - started
    assert 0.0 < result.seconds <= wall


def test_the_running_merge_gives_the_numbers_of_merging_every_checkpoint_afterwards(
    tmp_path, monkeypatch
):
    """Results arrive in any order while a run goes on (here one chunk per task, 4 chunks
    of each m, chunk 0 of m = 8 resumed from disk); each is merged as soon as its m's
    earlier chunks are, from memory, and summarise then loads nothing again."""
    from study.engine.streams import n_chunks

    design = design_from_dict(small_design(replications=900, **{"grid.m": [8, 20]}))
    tasks = [Task(m, c, c + 1) for m in design.m for c in range(n_chunks(900, m))]
    assert len(tasks) == 8
    results = {t: run_task(design, t) for t in tasks}
    store = CheckpointStore(tmp_path, design)
    resumed = [Task(8, 0, 1)]
    for t in resumed:
        store.save(t, results[t])
    merging = RunningMerge(design, store, tasks, resumed)
    loaded = []
    original = CheckpointStore.load
    monkeypatch.setattr(
        CheckpointStore, "load", lambda self, t: loaded.append(t) or original(self, t)
    )
    arrival = [Task(20, 3, 4), Task(8, 2, 3), Task(8, 1, 2), Task(20, 0, 1), Task(8, 3, 4)]
    arrival += [Task(20, 2, 3), Task(20, 1, 2)]
    merged_after = []
    for t in arrival:
        store.save(t, results[t])
        merging.add(t, results[t])
        merged_after.append({m: merging.mergers[m].chunks for m in design.m})
    # m = 8: chunk 2's arrival merges the resumed chunk 0 (from disk); chunk 1's merges 1
    # and then 2 (from disk). m = 20: chunks 3 and 2 wait for 0 and 1; 1 brings 2 and 3
    assert [a[8] for a in merged_after] == [0, 1, 3, 3, 4, 4, 4]
    assert [a[20] for a in merged_after] == [0, 0, 0, 1, 1, 1, 4]
    assert loaded == [Task(8, 0, 1), Task(8, 2, 3), Task(20, 2, 3), Task(20, 3, 4)]
    loaded.clear()
    got = summarise(design, store, tasks, merging.mergers)
    assert loaded == []
    want = summarise(design, store, tasks)
    assert len(loaded) == len(tasks)
    for a, b in zip(got[:2], want[:2], strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    pd.testing.assert_frame_equal(got[3], want[3], check_exact=True)
    assert got[2].keys() == want[2].keys()
    for key in want[2]:
        np.testing.assert_array_equal(got[2][key], want[2][key], strict=True)
