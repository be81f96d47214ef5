"""The rules of the logistic line, checked directly on small in-memory inputs: the one-data-set
fit (study.logistic) against its optimality condition in the raw basis and the exact
separation rule on hand-made patterns; the family's batched pieces (study.models.logistic)
against the one-data-set fit and the documented streams; the large-m theory
(study.theory.logistic) against the documented expansion recomputed in the raw basis of x
(another basis, the same quadrature nodes) and closed-form moments.

Values are chosen so that a wrong power or factor shows: x on asymmetric ranges or normal
with sd ≠ 1, a nonzero intercept, curved log-odds, replication counts that are not a
multiple of anything.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

import study.logistic as lg
from study.basis import standard_basis
from study.conditional import FIT_COUNTS
from study.design import XDistribution, design_from_dict
from study.logistic import NoEstimate, fit_polynomial_logistic, separable, sigmoid
from study.measures import TAIL_THRESHOLDS
from study.models import logistic as ml
from study.scaling import alpha as scaling_alpha
from study.scaling import lam_from_alpha
from study.theory import largem as theory_largem
from study.theory import logistic as tl

from conftest import small_design

UNI = XDistribution("uniform", low=-0.5, high=2.0)  # asymmetric, not touching ±1
NORM = XDistribution("normal", mean=0.4, sd=1.3)  # off-centre, sd ≠ 1
LINE = {"intercept": -0.5, "slope": 1.7}


def _raw_gradient(x, y, w, c, penalize_intercept=False):
    """∇J(w) in the raw basis: Φᵀ(σ(Φw) − y)/m + c·Dw, Φ the monomials of x."""
    phi = np.vander(x, w.size, increasing=True)
    D = np.ones(w.size)
    if not penalize_intercept:
        D[0] = 0.0
    return phi.T @ (expit(phi @ w) - y) / x.size + c * D * w


def _labels(rng, x, eta):
    return (rng.random(x.shape) < expit(eta)).astype(float)


# --- study.logistic ---------------------------------------------------------------------


def test_sigmoid_is_the_logistic_function_and_never_overflows():
    eta = np.array([-800.0, -40.0, -3.7, -0.2, 0.0, 0.9, 5.5, 40.0, 800.0])
    with np.errstate(all="raise"):
        s = sigmoid(eta)
    np.testing.assert_allclose(s, expit(eta), rtol=1e-14, atol=1e-16)
    assert sigmoid(0.0) == 0.5
    assert s[0] == 0.0 and s[-1] == 1.0


@pytest.mark.parametrize(
    "scaling, lam, penalize_intercept",
    [("sqrt-m", 0.4, False), ("k", 2.5, True), ("none", 0.01, False), ("m", 0.0, False)],
)
def test_the_fit_zeroes_the_raw_gradient_with_c_from_the_scaling(scaling, lam, penalize_intercept):
    """The minimiser of (1/m)Σ log-loss + (c/2)Σ_{j≥1} w_j² (all j when the intercept is
    penalised), c = α/m: its gradient in the raw basis vanishes (to what Newton's
    stopping rule leaves: nothing at rounding level)."""
    rng = np.random.default_rng(31)
    m, degree = 57, 3
    x = rng.uniform(-0.5, 2.0, m)
    y = _labels(rng, x, -0.5 + 1.7 * x - 0.6 * x * x)
    assert not separable(x, y, degree=degree)
    w = fit_polynomial_logistic(
        x, y, degree=degree, lam=lam, scaling=scaling, penalize_intercept=penalize_intercept
    )
    c = scaling_alpha(lam, m=m, degree=degree, scaling=scaling) / m
    g = _raw_gradient(x, y, w, c, penalize_intercept)
    assert np.abs(g).max() < 1e-11, g
    if lam:  # the penalty matters: the same fit without it is somewhere else
        other = fit_polynomial_logistic(x, y, degree=degree, lam=0.0, scaling=scaling)
        assert np.abs(other - w).max() > 1e-3


def test_the_penalised_intercept_fit_is_scikit_learns_with_c_one_over_alpha():
    rng = np.random.default_rng(5)
    m, degree, lam = 40, 2, 0.7
    x = rng.uniform(-0.5, 2.0, m)
    y = _labels(rng, x, 0.8 - 1.1 * x)
    w = fit_polynomial_logistic(x, y, degree=degree, lam=lam, scaling="m", penalize_intercept=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = LogisticRegression(C=1 / lam, fit_intercept=False, tol=1e-12, max_iter=10_000)
        model.fit(np.vander(x, degree + 1, increasing=True), y)
    np.testing.assert_allclose(w, model.coef_[0], rtol=1e-6, atol=1e-8)


def test_labels_other_than_zero_and_one_are_refused_in_one_line():
    x = np.linspace(0.0, 1.0, 6)
    with pytest.raises(ValueError, match=r"^y must hold labels 0 and 1 only\. Got .* instead\.$"):
        fit_polynomial_logistic(x, np.array([0, 1, 0.5, 1, 0, 1.0]), degree=1, lam=0.1)


def test_a_newton_that_runs_out_of_iterations_says_so(monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.uniform(-0.5, 2.0, 30)
    y = _labels(rng, x, -0.5 + 1.7 * x)
    y[:2] = 0.0, 1.0
    monkeypatch.setattr(lg, "NEWTON_MAX_ITER", 1)
    with pytest.raises(RuntimeError, match=r"^Newton's method did not converge in 1 iterations"):
        fit_polynomial_logistic(x, y, degree=2, lam=0.3)


@pytest.mark.parametrize(
    "x, y, degree, expected",
    [
        # distinct x: separable exactly when the labels change at most `degree` times
        ([0.0, 1.0, 2.0, 3.0], [0, 0, 1, 1], 1, True),
        ([0.0, 1.0, 2.0, 3.0], [0, 1, 0, 1], 2, False),
        ([0.0, 1.0, 2.0, 3.0], [0, 1, 0, 1], 3, True),
        ([3.0, 0.0, 2.0, 1.0], [1, 0, 1, 0], 1, True),  # unsorted input
        ([3.0, 0.0, 2.0, 1.0], [0, 0, 1, 0], 1, False),  # 0 1 0 along the sorted x
        # a tie carrying both labels at the boundary: p = x − 1 separates (zero there)
        ([0.0, 1.0, 1.0, 2.0], [0, 0, 1, 1], 1, True),
        # both labels inside a run of ones: a double root, degree 2
        ([0.0, 1.0, 1.0, 2.0], [1, 0, 1, 1], 1, False),
        ([0.0, 1.0, 1.0, 2.0], [1, 0, 1, 1], 2, True),
        # two mixed x values between equal signs: two simple roots, degree 2
        ([0.0, 1.0, 1.0, 2.0, 2.0, 3.0], [0, 0, 1, 0, 1, 0], 1, False),
        ([0.0, 1.0, 1.0, 2.0, 2.0, 3.0], [0, 0, 1, 0, 1, 0], 2, True),
        # ... and from one sign to the other: one of them double, degree 3
        ([0.0, 1.0, 1.0, 2.0, 2.0, 3.0], [0, 0, 1, 0, 1, 1], 2, False),
        ([0.0, 1.0, 1.0, 2.0, 2.0, 3.0], [0, 0, 1, 0, 1, 1], 3, True),
        # every x carries both labels: only p = 0, which separates nothing
        ([0.0, 0.0, 1.0, 1.0], [0, 1, 0, 1], 3, False),
        # all labels equal: a constant separates them
        ([0.0, 1.0, 2.0], [1, 1, 1], 1, True),
    ],
)
def test_separable_counts_the_roots_a_separating_polynomial_needs(x, y, degree, expected):
    assert separable(np.array(x), np.array(y, dtype=float), degree=degree) is expected


# --- study.models.logistic ----------------------------------------------------------------


def _design(**changes):
    raw = small_design(**changes)
    raw["model"] = {"family": "logistic"}
    raw["dgp"] = {
        "intercept": -0.5,
        "slope": 1.7,
        "x": {"distribution": "uniform", "low": -0.5, "high": 2.0},
    }
    return raw


@pytest.mark.parametrize("x", [UNI, NORM])
def test_chunk_data_is_the_documented_draw(x):
    """Chunk c of m: u from the chunk's x stream (uniform on [−1, 1] or standard normal),
    y = [r < σ(β0 + β1·x)] with r uniform from its noise stream, x = center + scale·u."""
    raw = _design(**{"grid.m": [9], "replications": 37})
    raw["dgp"] = {"intercept": 0.3, "slope": -1.2, "x": x.to_dict()}
    design = design_from_dict(raw)
    u, y = ml.chunk_data(design, 9, 0)
    assert u.shape == y.shape == (37, 9)
    x_seq, noise_seq = np.random.SeedSequence(design.seed, spawn_key=(9, 0)).spawn(2)
    rx = np.random.default_rng(x_seq)
    ref_u = (
        rx.uniform(-1.0, 1.0, (37, 9))
        if x.distribution == "uniform"
        else rx.standard_normal((37, 9))
    )
    np.testing.assert_array_equal(u, ref_u)
    xs = x.center + x.scale * ref_u
    r = np.random.default_rng(noise_seq).random((37, 9))
    np.testing.assert_array_equal(y, (r < 1.0 / (1.0 + np.exp(-(0.3 - 1.2 * xs)))).astype(float))


def test_separated_is_separable_row_by_row_with_and_without_ties():
    rng = np.random.default_rng(11)
    n, m = 120, 7
    u = rng.uniform(-1, 1, (n, m))
    u[::3, 1] = u[::3, 4]  # ties in every third row
    u[::5, 2] = u[::5, 0]
    y = (rng.random((n, m)) < 0.5).astype(float)
    y[7] = 1.0
    for degree in (1, 2, 3):
        got = ml.separated(u, y, degree)
        ref = np.array([separable(u[i], y[i], degree=degree) for i in range(n)])
        np.testing.assert_array_equal(got, ref)
        assert 0 < ref.sum() < n  # both kinds of row occur


def test_no_minimiser_is_separation_at_zero_and_equal_labels_with_a_free_intercept():
    u = np.array([[-0.9, -0.1, 0.4, 0.8]] * 4)
    y = np.array(
        [
            [0, 0, 1, 1],  # separated by a line
            [0, 1, 0, 1],  # separated by a cubic only
            [1, 1, 1, 1],  # all labels equal
            [0, 0, 0, 0],
        ],
        dtype=float,
    )
    cs = np.array([0.3, 0.0, 1.5])
    free = ml._no_minimiser(u, y, 1, cs, False)
    np.testing.assert_array_equal(
        free, [[False, False, True, True], [True, False, True, True], [False, False, True, True]]
    )
    penalised = ml._no_minimiser(u, y, 1, cs, True)
    np.testing.assert_array_equal(
        penalised,
        [[False, False, False, False], [True, False, True, True], [False, False, False, False]],
    )
    # without a zero c, separation does not matter
    np.testing.assert_array_equal(
        ml._no_minimiser(u, y, 3, cs[[0, 2]], True), np.zeros((2, 4), bool)
    )


def _newton_data(rng, n, m):
    u = rng.uniform(-0.4, 1.0, (n, m))
    y = _labels(rng, u, -0.3 + 2.0 * u - 1.5 * u * u)
    return u, y


def test_the_numpy_newton_path_reaches_each_optimum_and_marks_what_it_skips():
    """Every fitted (c, row) zeroes the gradient (1/m)Φᵀ(σ(Φv) − y) + cPv with the dense
    penalty of an asymmetric range; the ones not asked for are NaN with −1 iterations; a
    c alone gives what it gives on the path (warm starts change nothing but the count)."""
    rng = np.random.default_rng(4)
    n, m, degree = 6, 45, 2
    u, y = _newton_data(rng, n, m)
    P = standard_basis(UNI, degree, **LINE).penalty
    cs = np.array([3.0, 0.4, 0.02])
    fit = np.ones((3, n), dtype=bool)
    fit[1, 2] = False
    fit[2, 4] = False
    v, its = ml.newton_path_numpy(u, y, P, cs, fit)
    assert v.shape == (3, n, degree + 1) and its.shape == (3, n)
    for a, c in enumerate(cs):
        for i in range(n):
            if not fit[a, i]:
                assert np.isnan(v[a, i]).all() and its[a, i] == -1
                continue
            phi = np.vander(u[i], degree + 1, increasing=True)
            g = phi.T @ (expit(phi @ v[a, i]) - y[i]) / m + c * P @ v[a, i]
            assert np.abs(g).max() < 1e-11, (a, i, g)
            assert its[a, i] >= 1
    # the stopping rules are per row: a row alone takes the iterations it takes in the batch
    for i in (0, 3):
        one_v, one_its = ml.newton_path_numpy(u[i : i + 1], y[i : i + 1], P, cs, fit[:, i : i + 1])
        np.testing.assert_array_equal(one_its[:, 0], its[:, i])
        np.testing.assert_allclose(one_v[:, 0], v[:, i], rtol=1e-12, atol=1e-14)
    alone, its_alone = ml.newton_path_numpy(u, y, P, cs[2:], fit[2:])
    np.testing.assert_allclose(alone[0], v[2], rtol=1e-8, atol=1e-10, equal_nan=True)
    # from zero, the smallest c takes at least as many iterations as warm-started
    ok = fit[2]
    assert (its_alone[0, ok] >= its[2, ok]).all() and (its_alone[0, ok] > its[2, ok]).any()


def test_the_numpy_newton_path_is_scikit_learns_on_the_monomials_of_u():
    rng = np.random.default_rng(8)
    n, m, degree = 2, 60, 3
    u, y = _newton_data(rng, n, m)
    P = np.eye(degree + 1)
    P[0, 0] = 0.0
    alphas = np.array([5.0, 0.8])
    v, _ = ml.newton_path_numpy(u, y, P, alphas / m, np.ones((2, n), bool))
    for a, alpha in enumerate(alphas):
        for i in range(n):
            features = np.vander(u[i], degree + 1, increasing=True)[:, 1:]
            model = LogisticRegression(C=1 / alpha, tol=1e-12, max_iter=10_000).fit(features, y[i])
            ref = np.concatenate([model.intercept_, model.coef_[0]])
            np.testing.assert_allclose(v[a, i], ref, rtol=1e-6, atol=1e-7)


def test_fit_chunk_gives_the_one_data_set_fit_in_raw_coefficients_at_every_alpha():
    """fit_chunk(u, y, basis, α ascending): ŵ of each α equals fit_polynomial_logistic on
    x = center + scale·u with c = α/m; the fits without a minimiser are NaN, flagged, and
    have −1 iterations."""
    rng = np.random.default_rng(21)
    n, m, degree = 8, 12, 2
    basis = standard_basis(UNI, degree, **LINE)
    u = rng.uniform(-1, 1, (n, m))
    x = UNI.center + UNI.scale * u
    y = _labels(rng, x, -0.5 + 1.7 * x)
    y[3] = 1.0
    alphas = np.array([0.0, 0.6, 4.0])
    w, no_min, its = ml.fit_chunk(u, y, basis, alphas, False)
    assert w.shape == (3, n, degree + 1)
    seen = set()
    for a, alpha in enumerate(alphas):
        for i in range(n):
            try:
                ref = fit_polynomial_logistic(x[i], y[i], degree=degree, lam=alpha, scaling="m")
            except NoEstimate:
                assert no_min[a, i] and np.isnan(w[a, i]).all() and its[a, i] == -1
                seen.add("none")
                continue
            assert not no_min[a, i] and its[a, i] >= 1
            np.testing.assert_allclose(w[a, i], ref, rtol=1e-7, atol=1e-8)
            seen.add("fit")
    assert seen == {"none", "fit"}
    assert no_min[0].sum() > 1  # separation at α = 0 beside the all-ones row


def test_the_family_refuses_another_solver_or_noise_draw_in_one_line():
    design = design_from_dict(_design(**{"grid.m": [8]}))
    for kwargs in ({"solver": "pencil"}, {"noise_draw": "exact"}):
        with pytest.raises(ValueError, match=r"solver='auto' and noise_draw='sufficient'") as e:
            ml.run_chunks(design, 8, range(1), **kwargs)
        assert "\n" not in str(e.value)
        assert "the logistic family has one solver and one way of drawing the labels" in str(
            e.value
        )


def test_fits_table_renames_the_count_slots():
    fits = pd.DataFrame(
        {
            "m": [8],
            "degree": [1],
            "lambda": [0.5],
            "scaling": ["m"],
            "basis": ["monomial"],
            "alpha": [0.5],
            "direct": [60],
            "declined_not_finite": [9],
            "declined_not_converged": [1],
            "compiled": [400],
            "pencil": [0],
        }
    )
    out = ml.fits_table(fits)
    assert list(out.columns) == [
        "m", "degree", "lambda", "scaling", "basis", "alpha",
        "fitted", "no_estimate", "not_converged", "newton_iterations",
    ]  # fmt: skip
    named = ["fitted", "no_estimate", "not_converged", "newton_iterations"]
    assert out.iloc[0][named].tolist() == [60, 9, 1, 400]


def test_run_chunks_summarises_the_one_data_set_fits_of_every_cell():
    """A tiny design fitted through the family: per cell the counts, the co-moments of
    d = ŵ − w* and of the risk R = (ŵ − w*)ᵀΣ(ŵ − w*) (Σ the raw moment matrix of x), the
    tails, the first data set's fit and the kept draws, all recomputed from
    fit_polynomial_logistic on the documented data."""
    m, R = 8, 23
    raw = _design(**{"grid.m": [m], "replications": R, "grid.degree": [1, 2]})
    raw["grid"]["lambda"] = [0.0, 0.5]
    raw["grid"]["scaling"] = ["none", "k"]
    raw["output"]["keep_draws"] = 5
    design = design_from_dict(raw)
    results = ml.run_chunks(design, m, range(1))
    u, y = ml.chunk_data(design, m, 0)
    x = design.x.center + design.x.scale * u
    lo, hi = -0.5, 2.0
    for degree, res in results.items():
        r = np.arange(degree + 1)
        e = r[:, None] + r[None, :]
        sigma_raw = (hi ** (e + 1) - lo ** (e + 1)) / ((e + 1) * (hi - lo))
        w_star = np.zeros(degree + 1)
        w_star[:2] = -0.5, 1.7
        for li, lam in enumerate(design.lam):
            for ci, (basis, scaling) in enumerate(design.columns):
                assert basis == "monomial"
                fits = []
                for i in range(R):
                    try:
                        fits.append(
                            fit_polynomial_logistic(
                                x[i], y[i], degree=degree, lam=lam, scaling=scaling
                            )
                        )
                    except NoEstimate:
                        fits.append(np.full(degree + 1, np.nan))
                w = np.array(fits)
                ok = np.isfinite(w).all(axis=1)
                d = w[ok] - w_star
                cell = (li, ci)
                assert res.n_failed[cell] == (~ok).sum()
                slot = {k: res.fit_counts[cell][FIT_COUNTS.index(k)] for k in ml.FIT_SLOTS}
                assert slot["direct"] == ok.sum()
                assert slot["declined_not_finite"] == (~ok).sum()
                assert slot["declined_not_converged"] == 0
                assert slot["compiled"] >= ok.sum()
                assert res.coef.n[0][cell].tolist() == [ok.sum()] * (degree + 1)
                mean = res.coef.mean[0][cell]  # (p, 5)
                np.testing.assert_allclose(mean[:, 0], d.mean(axis=0), rtol=1e-6, atol=1e-7)
                np.testing.assert_allclose(mean[:, 1], (d * d).mean(axis=0), rtol=1e-6, atol=1e-7)
                assert np.isnan(mean[:, 2:]).all()
                M = res.coef.M[0][cell]
                dev = d - d.mean(axis=0)
                np.testing.assert_allclose(
                    M[:, 0, 0], (dev * dev).sum(axis=0), rtol=1e-6, atol=1e-7
                )
                risk = np.einsum("ni,ij,nj->n", d, sigma_raw, d)
                assert res.risk.n[0][cell] == ok.sum()
                np.testing.assert_allclose(res.risk.mean[0][cell][0], risk.mean(), rtol=1e-6)
                np.testing.assert_allclose(res.risk.mean[0][cell][1], (risk**2).mean(), rtol=1e-6)
                assert np.isnan(res.risk.mean[0][cell][2])
                rdev = risk - risk.mean()
                np.testing.assert_allclose(res.risk.M[0][cell][0, 0], rdev @ rdev, rtol=1e-6)
                tails = [(np.abs(d) > t).sum(axis=0) for t in TAIL_THRESHOLDS]
                np.testing.assert_array_equal(res.tails[cell], np.array(tails).T)
                np.testing.assert_allclose(res.first[0][cell], w[0], rtol=1e-6, atol=1e-7)
                np.testing.assert_allclose(res.draws[cell], w[:5], rtol=1e-6, atol=1e-7)
        assert res.n_failed[0].sum() > 0  # λ = 0 at m = 8: separation occurs
        assert res.n_failed[1].sum() == 0


# --- study.theory.logistic --------------------------------------------------------------


@pytest.mark.parametrize(
    "x, moments",
    [
        (UNI, {0: 1.0, 1: 0.0, 2: 1 / 3, 4: 1 / 5, 6: 1 / 7}),
        (NORM, {0: 1.0, 1: 0.0, 2: 1.0, 4: 3.0, 6: 15.0}),
    ],
)
def test_quadrature_gives_the_moments_of_u_and_fresh_arrays(x, moments):
    nodes, weights = tl.quadrature(x)
    assert nodes.shape == weights.shape == (tl.QUADRATURE_POINTS,)
    for k, value in moments.items():
        assert abs(weights @ nodes**k - value) < 1e-12, k
    # fresh arrays: writing into the ones returned does not change what the same call
    # returns next (the nodes are computed once per distribution and n)
    nodes[:] = 0.0
    weights[:] = 0.0
    again, w_again = tl.quadrature(x)
    for k, value in moments.items():
        assert abs(w_again @ again**k - value) < 1e-12, k
    more, w2 = tl.quadrature(x, 200)
    assert abs(w2.sum() - 1.0) < 1e-13 and abs(w2 @ more**2 - moments[2]) < 1e-12
    few, wf = tl.quadrature(x, 7)
    assert few.size == 7 and abs(wf.sum() - 1.0) < 1e-13


def _raw_expansion(x: XDistribution, degree, c, intercept, slope, penalize_intercept=False):
    """The module docstring's expansion written out in the raw basis of x (w = Bᵀv): the
    population solution by Newton's method on the raw equation, then A, V, S, h and
    b₁ = A⁻¹(E[σ′(σ − σ*)hφ] + HA⁻¹a − ½E[σ″φ·φᵀSφ]) with expectations over the same
    nodes mapped to x."""
    u, wq = tl.quadrature(x)
    xs = x.center + x.scale * u
    phi = np.vander(xs, degree + 1, increasing=True)
    D = np.eye(degree + 1)
    if not penalize_intercept:
        D[0, 0] = 0.0
    true = expit(intercept + slope * xs)
    w = np.zeros(degree + 1)
    w[:2] = intercept, slope
    for _ in range(100):
        s = expit(phi @ w)
        grad = phi.T @ (wq * (s - true)) + c * D @ w
        hess = (phi.T * (wq * s * (1 - s))) @ phi + c * D
        step = np.linalg.solve(hess, grad)
        w = w - step
        if np.abs(step).max() < 1e-14 * max(1, np.abs(w).max()):
            break
    s = expit(phi @ w)
    s1 = s * (1 - s)
    s2 = s1 * (1 - 2 * s)
    H = (phi.T * (wq * s1)) @ phi
    A = H + c * D
    a = c * D @ w
    V = (phi.T * (wq * ((s - true) ** 2 + true * (1 - true)))) @ phi - np.outer(a, a)
    Ai = np.linalg.inv(A)
    S = Ai @ V @ Ai
    h = np.einsum("ni,ij,nj->n", phi, Ai, phi)
    first = phi.T @ (wq * s1 * (s - true) * h) + H @ Ai @ a
    second = phi.T @ (wq * s2 * np.einsum("ni,ij,nj->n", phi, S, phi))
    return {
        "w_c": w,
        "b1": Ai @ (first - 0.5 * second),
        "cov": S,
        "H": H,
        "leverage": float(np.max(s1 * h)),
        "grad": grad,
    }


@pytest.mark.parametrize(
    "x, degree, c, penalize_intercept",
    [(UNI, 2, 0.07, False), (NORM, 3, 0.02, False), (UNI, 1, 0.3, True), (NORM, 1, 0.0, False)],
)
def test_the_large_m_quantities_are_the_documented_expansion_in_the_raw_basis(
    x, degree, c, penalize_intercept
):
    basis = standard_basis(
        x, degree, intercept=0.6, slope=-1.3, penalize_intercept=penalize_intercept
    )
    th = tl.LogisticLargeM(basis, x, c)
    ref = _raw_expansion(x, degree, c, 0.6, -1.3, penalize_intercept)
    scale = np.abs(ref["w_c"]).max()
    np.testing.assert_allclose(basis.to_raw(th.v_c), ref["w_c"], rtol=1e-9, atol=1e-10 * scale)
    np.testing.assert_allclose(basis.to_raw(th.b_u), ref["w_c"] - basis.w_star, atol=1e-9 * scale)
    b1 = ref["b1"]
    np.testing.assert_allclose(basis.to_raw(th.b1_u), b1, rtol=1e-7, atol=1e-8 * np.abs(b1).max())
    cov = ref["cov"]
    np.testing.assert_allclose(
        basis.cov_to_raw(th.cov_u), cov, rtol=1e-7, atol=1e-9 * np.abs(cov).max()
    )
    np.testing.assert_allclose(th.hessian_u, basis.B @ ref["H"] @ basis.B.T, rtol=1e-9, atol=1e-12)
    assert th.max_leverage == pytest.approx(ref["leverage"], rel=1e-8)
    if c == 0.0:  # no penalty: the true line, the inverse Fisher information
        np.testing.assert_allclose(ref["w_c"], basis.w_star, atol=1e-10)
        np.testing.assert_allclose(cov, np.linalg.inv(ref["H"]), rtol=1e-8)
    else:
        assert np.abs(ref["w_c"] - basis.w_star).max() > 1e-3


def test_the_one_over_m_bias_is_the_cox_snell_bias_of_the_mle_by_simulation():
    """At c = 0 the 1/m term is the Cox–Snell bias of logistic regression: the mean of
    unpenalised fits at m = 150 (normal x, sd 1.3) minus w* is b₁/m within 4 MCSE, and it is
    clearly not zero."""
    x = NORM
    degree, m, R = 1, 150, 6000
    basis = standard_basis(x, degree, intercept=0.6, slope=-1.3)
    th = tl.LogisticLargeM(basis, x, 0.0)
    rng = np.random.default_rng(17)
    u = rng.standard_normal((R, m))
    xs = x.center + x.scale * u
    y = _labels(rng, xs, 0.6 - 1.3 * xs)
    fit = ~ml.separated(u, y, degree)[None]
    v, _ = ml.newton_path(u, y, basis.penalty, np.array([0.0]), fit)
    w = basis.to_raw(v[0])
    w = w[np.isfinite(w).all(axis=1)]
    assert len(w) > 0.999 * R
    bias = w.mean(axis=0) - basis.w_star
    se = w.std(axis=0, ddof=1) / math.sqrt(len(w))
    b1 = basis.to_raw(th.b1_u) / m
    assert np.all(np.abs(bias - b1) < 4 * se), (bias - b1) / se
    assert np.any(np.abs(b1) > 3 * se)
    ratio = w.var(axis=0, ddof=1) / np.diagonal(basis.cov_to_raw(th.cov_u) / m)
    assert np.all((ratio > 0.95) & (ratio < 1.3)), ratio  # the 1/m² terms: ~1.1


def test_logistic_tables_assemble_each_cell_from_its_large_m_quantities():
    ms, lams, scalings = [12, 500], [0.0, 0.8], ["none", "sqrt-m"]
    kw = {
        "x": NORM,
        "intercept": 0.6,
        "slope": -1.3,
        "penalize_intercept": True,
        "basis": "orthonormal",
    }
    table, risk = tl.logistic_tables(ms, 2, lams, scalings, **kw)
    problem = standard_basis(
        NORM, 2, intercept=0.6, slope=-1.3, penalize_intercept=True, basis="orthonormal"
    )
    assert len(table) == 3 * len(risk) == 3 * 8
    col = np.linalg.norm(problem.B, axis=0)
    nan_bounds = 0
    for i, (m, lam, s) in enumerate([(m, lam, s) for m in ms for lam in lams for s in scalings]):
        alpha = scaling_alpha(lam, m=m, degree=2, scaling=s)
        th = tl.LogisticLargeM(problem, NORM, alpha / m)
        rows = table.iloc[3 * i : 3 * i + 3]
        for key, value in {
            "m": m,
            "degree": 2,
            "lambda": lam,
            "scaling": s,
            "basis": "orthonormal",
        }.items():
            assert rows[key].tolist() == [value] * 3, key
        np.testing.assert_allclose(rows.alpha, alpha, rtol=1e-15)
        assert rows.coef.tolist() == [0, 1, 2]
        np.testing.assert_allclose(rows.true, problem.w_star)
        np.testing.assert_allclose(rows.bias_asym, problem.to_raw(th.b_u), rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(
            rows.bias_asym1, problem.to_raw(th.b_u + th.b1_u / m), rtol=1e-9, atol=1e-14
        )
        np.testing.assert_allclose(
            rows.var_asym, np.diagonal(problem.cov_to_raw(th.cov_u)) / m, rtol=1e-9
        )
        step = th.max_leverage / m
        np.testing.assert_allclose(rows.asym_step, step, rtol=1e-12)
        np.testing.assert_allclose(rows.asym_leverage, 6 * step, rtol=1e-12)  # 2(k + 1)
        if step > 0.1:
            assert rows.bias_asym1_bound.isna().all()
            nan_bounds += 1
        else:
            size = step * np.linalg.norm(th.b1_u / m) + step**2 * np.linalg.norm(th.b_u)
            np.testing.assert_allclose(
                rows.bias_asym1_bound, size / (1 - step) * col, rtol=1e-9, atol=1e-300
            )
        rr = risk.iloc[i]
        assert (rr.m, rr.degree, rr["lambda"], rr.scaling, rr.basis) == (
            m,
            2,
            lam,
            s,
            "orthonormal",
        )
        assert rr.alpha == pytest.approx(alpha, rel=1e-15)
        cov = th.cov_u / m
        expected = th.b_u @ problem.sigma @ th.b_u + np.trace(problem.sigma @ cov)
        assert rr.risk_asym == pytest.approx(expected, rel=1e-10)
        assert rr.asym_step == pytest.approx(step, rel=1e-12)
        assert rr.asym_leverage == pytest.approx(6 * step, rel=1e-12)
    assert 0 < nan_bounds < 8
    assert (table.bias_asym1_bound.dropna() > 0).any()


def test_a_true_line_the_penalty_cannot_bias_has_an_infinite_limit_and_the_upper_boundary():
    """Slope 0 with the intercept free: the penalty never biases, the risk falls as α grows,
    α* is the top of the search range and α*∞ is infinite."""
    problem = standard_basis(UNI, 1, intercept=0.4, slope=0.0)
    assert tl.alpha_limit(problem, UNI) == math.inf
    best = tl.best_alpha(problem, UNI, 300)
    assert best["boundary"] == "upper"
    assert best["alpha"] == pytest.approx(tl.ALPHA_SEARCH[1], rel=1e-12)
    th = tl.LogisticLargeM(problem, UNI, tl.ALPHA_SEARCH[1] / 300)
    assert best["risk"] == pytest.approx(tl.expansion_risk(th, problem, 300), rel=1e-12)
    # asym_leverage: 2(k + 1) times the largest leverage over m, 4 at degree 1
    assert best["leverage"] == pytest.approx(4 * th.max_leverage / 300, rel=1e-12)


def test_best_alpha_below_the_search_range_is_the_lower_boundary(monkeypatch):
    problem = standard_basis(UNI, 2, **LINE)
    free = tl.best_alpha(problem, UNI, 400)
    assert free["boundary"] == ""
    th = tl.LogisticLargeM(problem, UNI, free["alpha"] / 400)
    # 2(k + 1) = 6 at degree 2
    assert free["leverage"] == pytest.approx(6 * th.max_leverage / 400, rel=1e-9)
    lo = free["alpha"] * 5
    monkeypatch.setattr(tl, "ALPHA_SEARCH", (lo, lo * 1e3))
    monkeypatch.setattr(tl, "ALPHA_GRID_POINTS", 5)
    best = tl.best_alpha(problem, UNI, 400)
    assert best["boundary"] == "lower"
    assert best["alpha"] == pytest.approx(lo, rel=1e-12)


def test_the_tuning_table_has_its_columns_and_one_row_per_m_and_scaling():
    kw = {
        "x": UNI,
        "intercept": -0.5,
        "slope": 1.7,
        "penalize_intercept": True,
        "basis": "orthonormal",
    }
    table = tl.logistic_tuning_table([90, 700], 1, ["m", "sqrt-m", "k"], **kw)
    assert list(table.columns) == tl.TUNING_COLUMNS_LOGISTIC
    problem = standard_basis(
        UNI, 1, intercept=-0.5, slope=1.7, penalize_intercept=True, basis="orthonormal"
    )
    limit = tl.alpha_limit(problem, UNI)
    assert len(table) == 6
    for m, rows in table.groupby("m", sort=False):
        best = tl.best_alpha(problem, UNI, m)
        assert rows.scaling.tolist() == ["m", "sqrt-m", "k"]
        assert (rows.method == "expansion").all() and (rows.basis == "orthonormal").all()
        assert (rows.degree == 1).all()
        assert rows.alpha_opt.tolist() == [best["alpha"]] * 3
        assert rows.risk_opt.tolist() == [best["risk"]] * 3
        assert rows.boundary.tolist() == [best["boundary"]] * 3
        assert rows.asym_leverage.tolist() == [best["leverage"]] * 3
        for s, lam in zip(rows.scaling, rows.lambda_opt, strict=True):
            assert lam == pytest.approx(
                lam_from_alpha(best["alpha"], m=m, degree=1, scaling=s), rel=1e-14
            )
        np.testing.assert_allclose(rows.alpha_limit, limit, rtol=1e-14)
    assert table.m.tolist() == [90, 90, 90, 700, 700, 700]


# --- study.theory.largem ----------------------------------------------------------------


@pytest.mark.parametrize("penalize_intercept", [False, True])
def test_the_ridge_tables_in_the_orthonormal_basis_are_the_closed_forms(penalize_intercept):
    """In the orthonormal basis of a normal x (ψ_j = He_j(u)/√j!, E[ψψᵀ] = I) the ridge
    population solution is w∞ = (I + ρD)⁻¹w*, and the sandwich, the 1/m term of the bias,
    the leverage E[h²]/m and the risk are written with Σ = I; expectations by Gauss–Hermite
    quadrature. Degrees given as (2, 1): within each m the rows come in that order."""
    x = XDistribution("normal", mean=0.4, sd=1.3)
    b0, b1, sd = -0.5, 1.7, 0.7
    ms, lams, scalings = [15, 300], [0.0, 0.5], ["m", "none"]
    kw = {"x": x, "intercept": b0, "slope": b1, "noise_sd": sd, "basis": "orthonormal"}
    kw["penalize_intercept"] = penalize_intercept
    table = theory_largem.asymptotic_table(ms, [2, 1], lams, scalings, **kw)
    risk = theory_largem.asymptotic_risk_table(ms, [2, 1], lams, scalings, **kw)
    assert len(table) == 8 * 3 + 8 * 2 and len(risk) == 16
    # ordered as the arguments: m, then degree (2 before 1), λ, scaling
    assert table.degree.tolist() == ([2] * 12 + [1] * 8) * 2
    assert risk.degree.tolist() == ([2] * 4 + [1] * 4) * 2
    assert table.m.tolist() == [15] * 20 + [300] * 20
    assert (table.basis == "orthonormal").all() and (risk.basis == "orthonormal").all()
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    weights = weights / math.sqrt(2 * math.pi)
    steps_over = 0
    for degree in (2, 1):
        p = degree + 1
        psi = np.stack(
            [
                np.polynomial.hermite_e.hermeval(nodes, np.eye(p)[j])
                / math.sqrt(math.factorial(j))
                for j in range(p)
            ],
            axis=1,
        )
        w_star = np.zeros(p)
        w_star[:2] = b0 + x.mean * b1, x.sd * b1  # β0 + β1(μ + s·u) in ψ0 = 1, ψ1 = u
        D = np.diag([float(penalize_intercept)] + [1.0] * degree)
        rows = table[table.degree == degree]
        rrows = risk[risk.degree == degree]
        cells = [(m, lam, s) for m in ms for lam in lams for s in scalings]
        for i, (m, lam, s) in enumerate(cells):
            rho = scaling_alpha(lam, m=m, degree=degree, scaling=s) / m
            S = np.eye(p) + rho * D
            Si = np.linalg.inv(S)
            b = Si @ w_star - w_star
            quartic = np.einsum("n,ni,nj,nk,nl,kl->ij", weights, psi, psi, psi, psi, Si)
            b1_m = Si @ (quartic - Si) @ b / m
            fourth = np.einsum("n,ni,nj,n->ij", weights, psi, psi, (psi @ b) ** 2)
            cov = Si @ (sd**2 * np.eye(p) + fourth - np.outer(b, b)) @ Si / m
            h = np.einsum("ni,ij,nj->n", psi, Si, psi)
            cell = rows.iloc[p * i : p * i + p]
            assert cell.m.tolist() == [m] * p and cell["lambda"].tolist() == [lam] * p
            assert cell.scaling.tolist() == [s] * p and cell.coef.tolist() == list(range(p))
            np.testing.assert_allclose(cell.true, w_star, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(cell.bias_asym, b, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(cell.bias_asym1, b + b1_m, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(cell.var_asym, np.diagonal(cov), rtol=1e-9)
            np.testing.assert_allclose(cell.asym_leverage, weights @ h**2 / m, rtol=1e-9)
            r = rrows.iloc[i]
            assert (r.m, r["lambda"], r.scaling) == (m, lam, s)
            assert r.risk_asym == pytest.approx(b @ b + np.trace(cov), rel=1e-9)
            assert r.asym_leverage == pytest.approx(weights @ h**2 / m, rel=1e-9)
            np.testing.assert_allclose(cell.asym_step, r.asym_step, rtol=0)
            step = cell.asym_step.iloc[0]
            if step > 0.5:  # MAX_EXPANSION_STEP: no bound where the expansion means nothing
                assert cell.bias_asym1_bound.isna().all()
                steps_over += 1
            elif lam == 0.0:  # no bias, nothing left out
                assert (cell.bias_asym1_bound == 0.0).all()
            else:  # (step)²‖b‖₂/(1 − step) in u (v = B⁻ᵀw), mapped by the columns of B
                B = standard_basis(
                    x, degree, intercept=b0, slope=b1, penalize_intercept=penalize_intercept,
                    basis="orthonormal",
                ).B  # fmt: skip
                b_u = np.linalg.solve(B.T, b)
                tail = step**2 * np.linalg.norm(b_u) / (1 - step)
                np.testing.assert_allclose(
                    cell.bias_asym1_bound, tail * np.linalg.norm(B, axis=0), rtol=1e-8
                )
    assert 0 < steps_over < 16


def test_the_bound_of_the_expansion_holds_up_to_its_limit_inclusive(monkeypatch):
    """The expansion applies where a point's largest leverage over m is at most
    MAX_LOGISTIC_STEP, as the report and the check select (asym_step ≤ the limit): a cell
    exactly at the limit keeps its bound, one just above it has none (NaN)."""
    kw = dict(x=XDistribution("uniform", low=-0.5, high=2.0), intercept=-0.5, slope=1.7)
    table, _ = tl.logistic_tables([200], 2, [0.3], ["m"], **kw)
    step = float(table.asym_step.iloc[0])
    assert step < 0.1 and np.isfinite(table.bias_asym1_bound).all()
    monkeypatch.setattr(tl, "MAX_LOGISTIC_STEP", step)
    at, _ = tl.logistic_tables([200], 2, [0.3], ["m"], **kw)
    np.testing.assert_array_equal(at.bias_asym1_bound, table.bias_asym1_bound)
    monkeypatch.setattr(tl, "MAX_LOGISTIC_STEP", np.nextafter(step, 0.0))
    above, _ = tl.logistic_tables([200], 2, [0.3], ["m"], **kw)
    assert above.bias_asym1_bound.isna().all()
