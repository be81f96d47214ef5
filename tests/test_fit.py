"""fit_polynomial_ridge against scikit-learn, closed forms and its own identities."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import Ridge

from study import fit_polynomial_ridge
from study.scaling import SCALINGS, alpha, lam_from_alpha


def _scaled_error(w, ref, x):
    """Coefficient error in units of the features: ‖c∘(w − ref)‖ / ‖c∘ref‖, c = column norms."""
    c = np.linalg.norm(np.vander(x, w.size, increasing=True), axis=0)
    return np.linalg.norm(c * (w - ref)) / np.linalg.norm(c * ref)


def _augmented_lstsq(x, y, degree, a, penalize_intercept):
    """Ridge by least squares on [Φ; √α·D] (QR/SVD based, no normal equations)."""
    phi = np.vander(x, degree + 1, increasing=True)
    d = np.ones(degree + 1)
    if not penalize_intercept:
        d[0] = 0.0
    A = np.vstack([phi, np.sqrt(a) * np.diag(d)])
    rhs = np.concatenate([y, np.zeros(degree + 1)])
    return np.linalg.lstsq(A, rhs, rcond=None)[0]


def _feature_condition(x, degree):
    """Condition number of the centred monomial features scaled to unit norm."""
    feats = np.vander(x, degree + 1, increasing=True)[:, 1:]
    feats = feats - feats.mean(axis=0)
    return np.linalg.cond(feats / np.linalg.norm(feats, axis=0))


def _case(seed, *, max_condition=np.inf):
    """A random problem: x range, degree 1–8, m from degree + 1 to 10,000, λ, scaling.

    With max_condition, problems are drawn until the features are that well conditioned.
    """
    rng = np.random.default_rng(seed)
    while True:
        degree = int(rng.integers(1, 9))
        low = rng.uniform(-5, 5)
        high = low + rng.uniform(0.2, 10)
        m = int(np.exp(rng.uniform(np.log(degree + 1), np.log(10_000))))
        x = rng.uniform(low, high, m)
        lam = float(rng.choice([0.0, 1e-3, 0.1, 1.0, 100.0]))
        if lam == 0 and m <= degree + 1:
            continue
        if max_condition == np.inf or _feature_condition(x, degree) <= max_condition:
            break
    y = 1 + 2 * x + rng.normal(size=m)
    scaling = str(rng.choice(SCALINGS))
    return x, y, degree, lam, scaling


@pytest.mark.parametrize("seed", range(80))
def test_matches_sklearn_ridge(seed):
    # Only where the problem itself is well conditioned can 1e-8 be asked of any method:
    # features centred as Ridge centres them, scaled to unit norm, condition ≤ 1e6.
    x, y, degree, lam, scaling = _case(seed, max_condition=1e6)
    m = x.size
    a = alpha(lam, m=m, degree=degree, scaling=scaling)
    phi = np.vander(x, degree + 1, increasing=True)
    w = fit_polynomial_ridge(x, y, degree=degree, lam=lam, scaling=scaling)
    ridge = Ridge(alpha=a, fit_intercept=True, solver="svd").fit(phi[:, 1:], y)
    ref = np.r_[ridge.intercept_, ridge.coef_]
    assert _scaled_error(w, ref, x) <= 1e-8


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("penalize_intercept", [False, True])
def test_matches_augmented_least_squares(seed, penalize_intercept):
    """Against the QR-based closed form, ill-conditioned cases included (looser bound)."""
    x, y, degree, lam, scaling = _case(seed)
    a = alpha(lam, m=x.size, degree=degree, scaling=scaling)
    w = fit_polynomial_ridge(
        x, y, degree=degree, lam=lam, scaling=scaling, penalize_intercept=penalize_intercept
    )
    ref = _augmented_lstsq(x, y, degree, a, penalize_intercept)
    phi = np.vander(x, degree + 1, increasing=True)
    cond = np.linalg.cond(phi / np.linalg.norm(phi, axis=0))
    assert _scaled_error(w, ref, x) <= max(1e-8, 1e-14 * cond**2)


@pytest.mark.parametrize("seed", range(40))
def test_fewer_points_than_coefficients_matches_sklearn(seed):
    """λ > 0 with m ≤ degree: G is singular, the penalty makes the fit unique."""
    rng = np.random.default_rng(seed)
    degree = int(rng.integers(2, 9))
    m = int(rng.integers(1, degree + 1))
    low = rng.uniform(-2, 1)
    x = rng.uniform(low, low + rng.uniform(0.5, 3), m)
    y = 1 + 2 * x + rng.normal(size=m)
    lam = float(rng.choice([0.01, 1.0, 10.0]))
    scaling = str(rng.choice(SCALINGS))
    a = alpha(lam, m=m, degree=degree, scaling=scaling)
    w = fit_polynomial_ridge(x, y, degree=degree, lam=lam, scaling=scaling)
    phi = np.vander(x, degree + 1, increasing=True)
    ridge = Ridge(alpha=a, fit_intercept=True, solver="svd").fit(phi[:, 1:], y)
    ref = np.r_[ridge.intercept_, ridge.coef_]
    np.testing.assert_allclose(w, ref, rtol=1e-7, atol=1e-9 * np.abs(ref).max())


def test_penalize_intercept_against_sklearn_without_intercept():
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, 200)
    y = 1 + 2 * x + rng.normal(size=200)
    phi = np.vander(x, 4, increasing=True)
    w = fit_polynomial_ridge(x, y, degree=3, lam=3.0, scaling="m", penalize_intercept=True)
    ref = Ridge(alpha=3.0, fit_intercept=False, solver="svd").fit(phi, y).coef_
    np.testing.assert_allclose(w, ref, rtol=1e-9, atol=1e-12)


def test_three_points_parabola_interpolates():
    rng = np.random.default_rng(3)
    for _ in range(20):
        x = rng.uniform(-1, 1, 3)
        y = 1 + 2 * x + rng.normal(size=3)
        w = fit_polynomial_ridge(x, y, degree=2, lam=0.0)
        np.testing.assert_allclose(np.polyval(w[::-1], x), y, rtol=1e-9, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(2, 400),
    degree=st.integers(1, 6),
    lam=st.floats(1e-4, 1e3),
    source=st.sampled_from(SCALINGS),
    target=st.sampled_from(SCALINGS),
)
def test_scalings_are_reparametrisations(seed, m, degree, lam, source, target):
    """For one data set, scaling A with λ equals scaling B with the λ that gives the same α."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, m)
    y = 1 + 2 * x + rng.normal(size=m)
    a = alpha(lam, m=m, degree=degree, scaling=source)
    lam_b = lam_from_alpha(a, m=m, degree=degree, scaling=target)
    w_a = fit_polynomial_ridge(x, y, degree=degree, lam=lam, scaling=source)
    w_b = fit_polynomial_ridge(x, y, degree=degree, lam=lam_b, scaling=target)
    np.testing.assert_allclose(w_a, w_b, rtol=1e-10, atol=1e-10 * np.abs(w_a).max())


def test_named_identities():
    """`none` with λ is `m` with m·λ, `sqrt-m` with √m·λ and `k` with k·λ."""
    rng = np.random.default_rng(11)
    m, k, lam = 50, 3, 0.07
    x = rng.uniform(-1, 1, m)
    y = 1 + 2 * x + rng.normal(size=m)
    w = fit_polynomial_ridge(x, y, degree=k, lam=lam, scaling="none")
    for scaling, lam_equiv in (("m", m * lam), ("sqrt-m", np.sqrt(m) * lam), ("k", k * lam)):
        np.testing.assert_allclose(
            fit_polynomial_ridge(x, y, degree=k, lam=lam_equiv, scaling=scaling),
            w,
            rtol=1e-10,
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"degree": 0, "lam": 1.0}, "degree"),
        ({"degree": 2, "lam": -1.0}, "lam"),
        ({"degree": 2, "lam": float("nan")}, "lam"),
        ({"degree": 2, "lam": 1.0, "scaling": "n"}, "scaling"),
        ({"degree": 5, "lam": 0.0}, "not identifiable"),
    ],
)
def test_bad_arguments(kwargs, match):
    x = np.linspace(-1, 1, 4)
    with pytest.raises(ValueError, match=match):
        fit_polynomial_ridge(x, x, **kwargs)


def test_bad_data():
    with pytest.raises(ValueError, match="same"):
        fit_polynomial_ridge(np.ones(3), np.ones(4), degree=1, lam=1.0)
    with pytest.raises(ValueError, match="finite"):
        fit_polynomial_ridge(np.array([0.0, np.nan]), np.ones(2), degree=1, lam=1.0)
