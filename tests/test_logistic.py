"""Penalised polynomial logistic regression, one data set at a time (study.logistic),
against scikit-learn and against an independent rule for separation."""

import math
import warnings
from collections import Counter

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from study import fit_polynomial_logistic
from study.logistic import NoEstimate, separable
from study.scaling import SCALINGS, alpha


def _overlapping(rng, m, low=-0.5, high=2.0, slope=1.7, intercept=-0.8):
    """x uniform on an asymmetric range, y ~ Bernoulli(σ(β0 + β1·x)), drawn until both
    labels are present in each half of the range (classes overlap: no separation)."""
    while True:
        x = rng.uniform(low, high, m)
        y = (rng.uniform(size=m) < 1 / (1 + np.exp(-(intercept + slope * x)))).astype(float)
        mid = (low + high) / 2
        if all(len(set(y[side])) == 2 for side in (x < mid, x >= mid)):
            return x, y


def _sklearn(x, y, degree, a, *, penalize_intercept=False):
    features = np.vander(x, degree + 1, increasing=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        if penalize_intercept:  # the constant as a penalised feature
            model = LogisticRegression(C=1 / a, fit_intercept=False, tol=1e-12, max_iter=10_000)
            model.fit(features, y)
            return model.coef_[0]
        # C = ∞: no penalty (scikit-learn ≥ 1.8 spells it so)
        model = LogisticRegression(C=1 / a if a > 0 else np.inf, tol=1e-12, max_iter=10_000)
        model.fit(features[:, 1:], y)
    return np.concatenate([model.intercept_, model.coef_[0]])


@pytest.mark.parametrize("scaling", SCALINGS)
@pytest.mark.parametrize("degree", [1, 2, 3])
def test_equals_scikit_learn_logistic_regression_with_c_one_over_alpha(scaling, degree):
    rng = np.random.default_rng(100 * degree + len(scaling))
    for m, lam in ((40, 0.3), (200, 0.05), (200, 0.0)):
        x, y = _overlapping(rng, m)
        # these draws are not separable, so the λ = 0 comparison always runs
        assert not separable(x, y, degree=degree)
        a = alpha(lam, m=m, degree=degree, scaling=scaling)
        w = fit_polynomial_logistic(x, y, degree=degree, lam=lam, scaling=scaling)
        ref = _sklearn(x, y, degree, a)
        np.testing.assert_allclose(w, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())


def test_penalised_intercept_and_the_orthonormal_basis_against_scikit_learn():
    """The intercept penalised too (scikit-learn with the constant as a feature), and the
    orthonormal basis (scikit-learn on NumPy's normalised Legendre features)."""
    rng = np.random.default_rng(7)
    x, y = _overlapping(rng, 80)
    for degree in (1, 3):
        a = alpha(0.4, m=80, degree=degree, scaling="m")
        w = fit_polynomial_logistic(x, y, degree=degree, lam=0.4, penalize_intercept=True)
        ref = _sklearn(x, y, degree, a, penalize_intercept=True)
        np.testing.assert_allclose(w, ref, rtol=1e-6, atol=1e-7)
        dist = {"distribution": "uniform", "low": -0.5, "high": 2.0}
        w = fit_polynomial_logistic(
            x, y, degree=degree, lam=0.4, basis="orthonormal", x_distribution=dist
        )
        u = (2 * x - (-0.5) - 2.0) / 2.5
        psi = np.polynomial.legendre.legvander(u, degree) * np.sqrt(2 * np.arange(degree + 1) + 1)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            model = LogisticRegression(C=1 / a, tol=1e-12, max_iter=10_000).fit(psi[:, 1:], y)
        ref = np.concatenate([model.intercept_, model.coef_[0]])
        np.testing.assert_allclose(w, ref, rtol=1e-6, atol=1e-7)


def _label_changes(x, y):
    """Changes of label along the sorted x (distinct x): a polynomial of degree k has at
    most k sign changes, and k changes can be followed by one with its roots between the
    points, so the labels are separable exactly when they change at most k times."""
    order = np.argsort(x)
    return int(np.sum(np.diff(y[order]) != 0))


def test_separation_agrees_with_the_sign_change_rule_on_random_small_data():
    rng = np.random.default_rng(2024)
    seen = {True: 0, False: 0}
    for _ in range(400):
        m = int(rng.choice([4, 5, 8, 12, 20]))
        degree = int(rng.integers(1, 4))
        x = rng.uniform(-0.3, 3.0, m)  # distinct with probability one
        y = (rng.uniform(size=m) < rng.uniform(0.2, 0.8)).astype(float)
        expected = _label_changes(x, y) <= degree
        assert separable(x, y, degree=degree) == expected, (x, y, degree)
        seen[expected] += 1
    assert min(seen.values()) > 50


def _lp_separable(x, y, degree):
    """The linear programme: among w with s_i·φ(x_i)ᵀw ≥ 0 at every point (s = 2y − 1) and
    |w_j| ≤ 1, is the largest Σ s_i·φ(x_i)ᵀw positive? (x on a small grid of integers, so
    that the solver's tolerances are far below the answer's size.)"""
    from scipy.optimize import linprog

    u = (x - 2.0) / 2.0  # x in 0..4 → u in [−1, 1]
    signed = (2 * y - 1)[:, None] * np.vander(u, degree + 1, increasing=True)
    result = linprog(
        -signed.sum(axis=0),
        A_ub=-signed,
        b_ub=np.zeros(len(x)),
        bounds=[(-1, 1)] * (degree + 1),
        method="highs",
    )
    assert result.status == 0
    return -result.fun > 1e-6


def test_separation_agrees_with_a_linear_programme_on_data_with_ties():
    """x on five values, so that many points share an x, some with both labels
    (quasi-separation): the root count against the linear programme."""
    rng = np.random.default_rng(11)
    seen = Counter()
    for _ in range(300):
        m = int(rng.choice([4, 6, 9, 15]))
        degree = int(rng.integers(1, 4))
        x = rng.integers(0, 5, m).astype(float)
        y = (rng.uniform(size=m) < 0.5).astype(float)
        expected = _lp_separable(x, y, degree)
        assert separable(x, y, degree=degree) == expected, (x, y, degree)
        seen[expected] += 1
    assert min(seen.values()) > 40


def test_separation_agrees_with_the_programme_on_every_small_pattern():
    """Every assignment of one label, the other, or both to up to four distinct x on
    0..4, degrees 1–3: the root count against the linear programme, all of them (both
    labels at every x, with no more x than the degree + 1, included: a polynomial zero at
    every point separates nothing)."""
    import itertools

    checked = 0
    for n in range(1, 5):
        for xs in itertools.combinations(range(5), n):
            for kinds in itertools.product((0, 1, 2), repeat=n):  # 2: both labels
                x = [
                    float(v)
                    for v, kind in zip(xs, kinds, strict=True)
                    for _ in range(1 + (kind == 2))
                ]
                y = [float(lab) for kind in kinds for lab in ((0, 1) if kind == 2 else (kind,))]
                x, y = np.array(x), np.array(y)
                for degree in (1, 2, 3):
                    assert separable(x, y, degree=degree) == _lp_separable(x, y, degree), (
                        x, y, degree,
                    )  # fmt: skip
                    checked += 1
    assert checked > 2000


def test_separation_is_exact_at_near_ties():
    # labels 0, 1, 0, 1 along x with two points 1e-8 apart: three changes, no line separates
    assert not separable(np.array([0.0, 1.0, 1 + 1e-8, 2.0]), np.array([0, 1, 0, 1.0]), degree=1)
    # labels 0, 1, 1, 0 with 1e-9 gaps: a parabola separates them
    d = 1e-9
    x = np.array([-1.0, -1 + d, 1 - d, 1.0])
    assert separable(x, np.array([0, 1, 1, 0.0]), degree=2)
    assert not separable(x, np.array([0, 1, 1, 0.0]), degree=1)


def test_ties_make_quasi_separation_that_the_root_count_sees():
    # both labels at x = 1 only: a line through x = 1 puts the rest on their sides
    x = np.array([0.0, 0.5, 1.0, 1.0, 1.5, 2.0])
    y = np.array([0, 0, 0, 1, 1, 1.0])
    assert separable(x, y, degree=1)
    # and once both labels appear at two x values, no line separates them
    y2 = np.array([0, 1, 0, 1, 1, 0.0])
    x2 = np.array([0.0, 0.0, 1.0, 1.0, 2.0, 2.0])
    assert not separable(x2, y2, degree=1)


def test_no_estimate_is_one_line_and_names_why():
    x = np.array([-1.0, -0.4, 0.2, 0.9, 1.4])
    y = np.array([0, 0, 1, 1, 1.0])
    with pytest.raises(NoEstimate) as info:
        fit_polynomial_logistic(x, y, degree=1, lam=0.0)
    assert "separated" in str(info.value) and "\n" not in str(info.value)
    # with a penalty the same data have an estimate, finite and of the right sign
    w = fit_polynomial_logistic(x, y, degree=1, lam=0.1)
    assert np.isfinite(w).all() and w[1] > 0
    with pytest.raises(NoEstimate, match="Every label is 1"):
        fit_polynomial_logistic(x, np.ones(5), degree=2, lam=1.0)
    w = fit_polynomial_logistic(x, np.ones(5), degree=2, lam=1.0, penalize_intercept=True)
    assert w[0] > 0 and math.isfinite(w[0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"y": np.array([0, 1, 2, 1, 0])}, "labels 0 and 1"),
        ({"lam": -1.0}, "'lam'"),
        ({"degree": 0}, "'degree'"),
        ({"x": np.array([0.0, np.nan, 1, 2, 3])}, "finite"),
        ({"degree": 4, "lam": 0.0, "x": np.array([0.0, 0, 1, 1, 2])}, "distinct"),
    ],
)
def test_bad_inputs_are_refused(kwargs, message):
    args = {"x": np.array([0.0, 1, 2, 3, 4]), "y": np.array([0, 1, 0, 1, 1.0]), "degree": 1}
    args |= {"lam": 0.5} | kwargs
    with pytest.raises(ValueError, match=message):
        fit_polynomial_logistic(**args)
