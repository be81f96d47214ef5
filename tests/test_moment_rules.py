"""The conditional moments of ridge given x, the performance measures and their MCSEs, and the
mergeable co-moments, each against an independent reference computed here.

- study.conditional: ŵ, E[ŵ|X] = A⁻¹Gw*, Cov[ŵ|X] = σ²A⁻¹GA⁻¹ (A = G + αD) and the risk
  R = (ŵ − w*)ᵀΣ(ŵ − w*), E[R|X] = (E[ŵ|X] − w*)ᵀΣ(E[ŵ|X] − w*) + tr(Σ·Cov[ŵ|X]), by solves
  in the raw monomial basis on the x values themselves (σ ≠ 1, a nonzero intercept, x ranges
  off the unit interval), for every solver;
- study.measures: every measure and MCSE from per-replication values directly with NumPy
  (each delta-method MCSE as the standard error of the mean of the linearised values);
- study.moments: summaries merged in any order and grouping equal the one-pass summary.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.polynomial import legendre

from study import conditional
from study.basis import hankel_index, standard_basis
from study.conditional import (
    FIT_COUNTS,
    SolverDeclined,
    batch_moments,
    check_solver,
    conditional_risk,
    conditional_risk_function,
    pencil_shift,
    quantities,
)
from study.design import XDistribution
from study.measures import coefficient_measures, risk_measures
from study.moments import CoMoments

LINE = {"intercept": 1.3, "slope": -0.8}


@pytest.fixture(autouse=True)
def fresh_risk_cache(monkeypatch):
    """Every test computes its conditional risk afresh: a set-up kept by an earlier test (or
    by the process this one was forked from) must not answer for it."""
    monkeypatch.setattr(conditional, "_RISK_CACHE", {})


# --- independent references in the raw basis ------------------------------------------------


def solve(A, b):
    """A stack of systems A[i]·x[i] = b[i] with vector right-hand sides."""
    return np.linalg.solve(A, b[..., None])[..., 0]


def raw_moment_matrix(x: XDistribution, degree: int) -> np.ndarray:
    """E[x^{i+j}]: the uniform's closed form, or Gauss–Hermite quadrature for the normal."""
    n = np.arange(2 * degree + 1)
    if x.distribution == "uniform":
        a, b = x.low, x.high
        mu = (b ** (n + 1) - a ** (n + 1)) / ((n + 1) * (b - a))
    else:
        t, w = np.polynomial.hermite_e.hermegauss(40)
        mu = np.array([(w * (x.mean + x.sd * t) ** j).sum() for j in n]) / math.sqrt(2 * math.pi)
    return mu[hankel_index(degree)]


def draw(rng, x: XDistribution, n: int, m: int, degree: int, noise_sd: float):
    """n data sets of m points: x values, raw design matrices and responses."""
    if x.distribution == "uniform":
        xs = rng.uniform(x.low, x.high, (n, m))
    else:
        xs = x.mean + x.sd * rng.standard_normal((n, m))
    Phi = xs[..., None] ** np.arange(degree + 1)
    y = LINE["intercept"] + LINE["slope"] * xs + noise_sd * rng.standard_normal((n, m))
    return xs, Phi, y


def raw_reference(Phi, y, alpha, degree, noise_sd, Sigma, *, penalize_intercept=False):
    """ŵ, E[ŵ|X], Var[ŵ|X], R and E[R|X] for one α by solves in the raw basis."""
    D = np.eye(degree + 1)
    if not penalize_intercept:
        D[0, 0] = 0.0
    w_star = np.zeros(degree + 1)
    w_star[:2] = LINE["intercept"], LINE["slope"]
    G = np.swapaxes(Phi, 1, 2) @ Phi
    A = G + alpha * D
    w_hat = solve(A, np.einsum("nmi,nm->ni", Phi, y))
    mean = solve(A, G @ w_star)
    Ainv = np.linalg.inv(A)
    cov = noise_sd**2 * Ainv @ G @ Ainv
    d, e = w_hat - w_star, mean - w_star
    risk = np.einsum("ni,ij,nj->n", d, Sigma, d)
    risk_rb = np.einsum("ni,ij,nj->n", e, Sigma, e) + np.einsum("ij,nji->n", Sigma, cov)
    return w_hat, mean, np.einsum("nii->ni", cov), risk, risk_rb, w_star


def u_sums(xs, y, x: XDistribution, degree: int):
    """Power sums Σu^p (p ≤ 2k) and Σu^j·y (j ≤ k) in u = (x − center)/scale."""
    u = (xs - x.center) / x.scale
    S = (u[..., None] ** np.arange(2 * degree + 1)).sum(axis=1)
    T = ((u[..., None] ** np.arange(degree + 1)) * y[..., None]).sum(axis=1)
    return S, T


def assert_close(got, ref, rtol, floor=1.0):
    """Entrywise, relative to the largest magnitude of the reference (at least ``floor``:
    e = E[ŵ|X] − w* is rounding noise at α = 0)."""
    got, ref = np.asarray(got), np.asarray(ref)
    scale = max(np.abs(ref).max(), floor)
    assert np.all(np.abs(got - ref) <= rtol * scale), np.abs(got - ref).max() / scale


# --- conditional moments of one batch, every solver -----------------------------------------

PROBLEMS = [
    # (x, degree, penalize_intercept, alphas); x ranges with B ≠ I, B = I, far from 0
    (XDistribution("uniform", low=-0.5, high=2.5), 3, False, [0.0, 0.4, 3.0, 25.0]),
    (XDistribution("uniform", low=-0.5, high=2.5), 2, True, [0.7, 2.0, 40.0]),
    (XDistribution("uniform", low=-1.0, high=1.0), 3, False, [0.0, 0.3, 6.0]),
    (XDistribution("uniform", low=-1.0, high=1.0), 2, True, [0.5, 9.0]),
    (XDistribution("normal", mean=0.4, sd=1.5), 2, False, [1.5, 5.0]),
    (XDistribution("uniform", low=2.0, high=3.0), 2, False, [0.0, 0.2, 4.0]),
]


@pytest.mark.parametrize("solver", ["auto", "pencil", "direct"])
@pytest.mark.parametrize(("x", "degree", "pen", "alphas"), PROBLEMS)
def test_quantities_are_the_closed_form_conditional_moments(solver, x, degree, pen, alphas):
    """(d, d², e, e², v) and (R, R², E[R|X]) per data set and α equal the raw-basis closed
    forms with σ = 1.7, an intercept and x off [−1, 1]."""
    noise_sd, m, n = 1.7, 9, 7
    rng = np.random.default_rng(degree + 10 * int(pen))
    xs, Phi, y = draw(rng, x, n, m, degree, noise_sd)
    basis = standard_basis(x, degree, **LINE, penalize_intercept=pen)
    S, T = u_sums(xs, y, x, degree)
    G, b = S[:, hankel_index(degree)], T
    alphas = np.array(alphas)
    coef, risk, w_hat = quantities(G, b, basis, alphas, noise_sd, solver=solver)
    assert coef.shape == (n, alphas.size, degree + 1, 5)
    assert risk.shape == (n, alphas.size, 3)
    Sigma = raw_moment_matrix(x, degree)
    for i, alpha in enumerate(alphas):
        ref_w, ref_mean, ref_var, ref_r, ref_rb, w_star = raw_reference(
            Phi, y, alpha, degree, noise_sd, Sigma, penalize_intercept=pen
        )
        d, e = ref_w - w_star, ref_mean - w_star
        assert_close(w_hat[:, i], ref_w, 1e-9)
        assert_close(coef[:, i, :, 0], d, 1e-9)
        assert_close(coef[:, i, :, 1], d**2, 1e-9)
        assert_close(coef[:, i, :, 2], e, 1e-9)
        assert_close(coef[:, i, :, 3], e**2, 1e-9)
        assert_close(coef[:, i, :, 4], ref_var, 1e-9)
        assert_close(risk[:, i, 0], ref_r, 1e-9)
        assert_close(risk[:, i, 1], ref_r**2, 1e-9)
        assert_close(risk[:, i, 2], ref_rb, 1e-8)


@pytest.mark.parametrize("solver", ["auto", "pencil", "direct"])
def test_quantities_in_the_orthonormal_basis_are_legendre_ridge(solver):
    """Coefficients of ψ_j = √(2j + 1)·P_j(u), penalised directly: with E[ψψᵀ] = I the risk
    is |ŵ − w*|², and E[R|X] = |E[ŵ|X] − w*|² + tr Cov[ŵ|X]."""
    x = XDistribution("uniform", low=-2.0, high=4.0)
    degree, noise_sd, alphas = 3, 0.6, np.array([0.0, 1.0, 12.0])
    basis = standard_basis(x, degree, **LINE, basis="orthonormal")
    rng = np.random.default_rng(5)
    xs, _, y = draw(rng, x, 5, 8, degree, noise_sd)
    u = (xs - 1.0) / 3.0
    Psi = legendre.legvander(u, degree) * np.sqrt(2 * np.arange(degree + 1) + 1)
    # the true line 1.3 − 0.8x = 1.3 − 0.8(1 + 3u) = 0.5 − 2.4u = 0.5ψ_0 − (2.4/√3)ψ_1
    w_star = np.array([0.5, -2.4 / math.sqrt(3), 0.0, 0.0])
    np.testing.assert_allclose(basis.w_star, w_star, atol=1e-12)
    S, T = u_sums(xs, y, x, degree)
    coef, risk, w_hat = quantities(
        S[:, hankel_index(degree)], T, basis, alphas, noise_sd, solver=solver
    )
    G = np.swapaxes(Psi, 1, 2) @ Psi
    D = np.diag([0.0, 1, 1, 1])
    for i, alpha in enumerate(alphas):
        A = G + alpha * D
        ref = solve(A, np.einsum("nmi,nm->ni", Psi, y))
        mean = solve(A, G @ w_star)
        Ainv = np.linalg.inv(A)
        cov = noise_sd**2 * Ainv @ G @ Ainv
        assert_close(w_hat[:, i], ref, 1e-9)
        assert_close(coef[:, i, :, 2], mean - w_star, 1e-9)
        assert_close(coef[:, i, :, 4], np.einsum("nii->ni", cov), 1e-9)
        assert_close(risk[:, i, 0], ((ref - w_star) ** 2).sum(-1), 1e-9)
        rb = ((mean - w_star) ** 2).sum(-1) + np.einsum("nii->n", cov)
        assert_close(risk[:, i, 2], rb, 1e-9)


@pytest.mark.parametrize("solver", ["auto", "pencil", "direct"])
def test_singular_designs_are_fitted_for_every_positive_alpha(solver):
    """m ≤ k: G is singular, but A = G + αP is not for α > 0 (the shifted pencil α₀ = min α
    serves every α of the grid)."""
    x = XDistribution("uniform", low=-0.5, high=2.5)
    degree, noise_sd, alphas = 4, 1.4, np.array([0.05, 0.5, 2.0, 30.0])
    basis = standard_basis(x, degree, **LINE, penalize_intercept=False)
    rng = np.random.default_rng(11)
    xs, Phi, y = draw(rng, x, 6, 3, degree, noise_sd)
    S, T = u_sums(xs, y, x, degree)
    coef, risk, w_hat = quantities(
        S[:, hankel_index(degree)], T, basis, alphas, noise_sd, solver=solver
    )
    Sigma = raw_moment_matrix(x, degree)
    for i, alpha in enumerate(alphas):
        ref_w, ref_mean, ref_var, _, ref_rb, w_star = raw_reference(
            Phi, y, alpha, degree, noise_sd, Sigma
        )
        assert_close(w_hat[:, i], ref_w, 1e-7)
        assert_close(coef[:, i, :, 2], ref_mean - w_star, 1e-7)
        assert_close(coef[:, i, :, 4], ref_var, 1e-7)
        assert_close(risk[:, i, 2], ref_rb, 1e-7)


def test_a_system_with_no_solution_is_nan_and_the_pencil_declines_it():
    """A data set with no points (G = 0) cannot be fitted at any α when the intercept is
    not penalised: "direct" and "auto" leave it NaN and fit the others; "pencil" refuses."""
    x = XDistribution("uniform", low=-1.0, high=3.0)
    degree, noise_sd, alphas = 2, 0.9, np.array([0.0, 2.0])
    basis = standard_basis(x, degree, **LINE)
    rng = np.random.default_rng(3)
    xs, Phi, y = draw(rng, x, 3, 7, degree, noise_sd)
    S, T = u_sums(xs, y, x, degree)
    S[1], T[1] = 0.0, 0.0
    G = S[:, hankel_index(degree)]
    ref_w = raw_reference(Phi, y, 2.0, degree, noise_sd, raw_moment_matrix(x, degree))[0]
    for solver in ("auto", "direct"):
        coef, risk, w_hat = quantities(G, T, basis, alphas, noise_sd, solver=solver)
        assert np.isnan(coef[1]).all() and np.isnan(risk[1]).all() and np.isnan(w_hat[1]).all()
        assert np.isfinite(coef[[0, 2]]).all() and np.isfinite(risk[[0, 2]]).all()
        assert_close(w_hat[[0, 2], 1], ref_w[[0, 2]], 1e-9)
    with pytest.raises(SolverDeclined, match="^some G \\+ α₀P is not positive definite$"):
        quantities(G, T, basis, alphas, noise_sd, solver="pencil")


@pytest.mark.parametrize("solver", ["compiled", "nope", "Direct", ""])
def test_quantities_refuse_a_solver_they_do_not_have(solver):
    basis = standard_basis(XDistribution("uniform", low=-1.0, high=1.0), 1, **LINE)
    with pytest.raises(ValueError) as info:
        quantities(np.eye(2)[None], np.ones((1, 2)), basis, np.array([1.0]), 1.0, solver=solver)
    assert str(info.value) == (
        f"The 'solver' parameter must be one of 'auto', 'pencil', 'direct'. Got {solver!r} "
        "instead."
    )


@pytest.mark.parametrize("solver", ["fast", None, "AUTO"])
def test_check_solver_names_the_key_the_value_and_the_choices(solver):
    with pytest.raises(ValueError) as info:
        check_solver(solver)
    assert str(info.value) == (
        "The 'solver' parameter must be one of 'auto', 'compiled', 'pencil', 'direct'. "
        f"Got {solver!r} instead."
    )
    assert "\n" not in str(info.value)
    assert check_solver("compiled") == "compiled"


@pytest.mark.parametrize(
    ("alphas", "shift"),
    [([0.0, 1.0], 0.0), ([0.25, 1.0, 4.0], 0.25), ([3.0], 3.0), ([1.0, 10.0], 1.0)],
)
def test_the_pencil_shift_is_zero_where_alpha_zero_is_asked_for_else_the_smallest(alphas, shift):
    got = pencil_shift(np.array(alphas))
    assert got == shift and isinstance(got, float)


# --- a batch: co-moments, kept fits, counts and tails ---------------------------------------


def batch_reference(xs, Phi, y, x, degree, alphas, noise_sd, pen):
    """Per data set and α the quantities (n, A, p, 5), (n, A, 3) and ŵ (n, A, p)."""
    Sigma = raw_moment_matrix(x, degree)
    coef, risk, w = [], [], []
    for alpha in alphas:
        w_hat, mean, var, r, rb, w_star = raw_reference(
            Phi, y, alpha, degree, noise_sd, Sigma, penalize_intercept=pen
        )
        d, e = w_hat - w_star, mean - w_star
        coef.append(np.stack([d, d**2, e, e**2, var], axis=-1))
        risk.append(np.stack([r, r**2, rb], axis=-1))
        w.append(w_hat)
    return np.stack(coef, 1), np.stack(risk, 1), np.stack(w, 1), w_star


def assert_summary(got: CoMoments, q: np.ndarray, rtol: float):
    """Count, mean and co-moment sums of samples q (n, ..., k) along the first axis."""
    np.testing.assert_array_equal(got.n, np.full(q.shape[1:-1], float(q.shape[0])))
    mean = q.mean(axis=0)
    dev = q - mean
    M = np.einsum("n...i,n...j->...ij", dev, dev)
    sd = np.sqrt(np.einsum("...ii->...i", M)) + 1e-2  # e is rounding noise at α = 0
    scale = np.abs(mean).max(axis=tuple(range(mean.ndim - 1)))
    assert np.all(np.abs(got.mean - mean) <= rtol * scale)
    assert np.all(np.abs(got.M - M) <= rtol * sd[..., :, None] * sd[..., None, :] + 1e-300)


@pytest.mark.parametrize(
    ("solver", "route"),
    [("compiled", "compiled"), ("auto", "compiled"), ("pencil", "pencil"), ("direct", "direct")],
)
@pytest.mark.parametrize("pen", [False, True])
def test_batch_moments_summarise_the_closed_form_quantities(solver, route, pen):
    """The co-moments of every quantity, the first ``keep`` fits, the route count and the
    tail counts |ŵ_j − w*_j| > 1, 10, 100, all from the raw-basis fits of the batch."""
    x = XDistribution("uniform", low=-0.5, high=2.5)
    degree, noise_sd, m, n, keep = 3, 2.3, 5, 61, 4
    alphas = np.array([0.0, 0.05, 1.0, 20.0])
    rng = np.random.default_rng(21 + pen)
    xs, Phi, y = draw(rng, x, n, m, degree, noise_sd)
    S, T = u_sums(xs, y, x, degree)
    basis = standard_basis(x, degree, **LINE, penalize_intercept=pen)
    got = batch_moments(S, T, basis, alphas, noise_sd, keep=keep, solver=solver)
    coef, risk, w_hat, w_star = batch_reference(xs, Phi, y, x, degree, alphas, noise_sd, pen)
    assert_summary(got.coef, coef, 1e-8)
    assert_summary(got.risk, risk, 1e-8)
    np.testing.assert_array_equal(got.n_ok, np.full(alphas.size, n))
    assert got.w_kept.shape == (keep, alphas.size, degree + 1)
    assert_close(got.w_kept, w_hat[:keep], 1e-8)
    expected = np.zeros(len(FIT_COUNTS), dtype=np.int64)
    expected[FIT_COUNTS.index(route)] = n
    np.testing.assert_array_equal(got.counts, expected)
    error = np.abs(w_hat - w_star)
    tails = np.stack([(error > t).sum(axis=0) for t in (1.0, 10.0, 100.0)], axis=-1)
    assert tails[..., 0].sum() > 0 and tails[..., 1].sum() > 0  # the thresholds are reached
    assert (tails[..., 0] < n).any()
    np.testing.assert_array_equal(got.tails, tails)
    assert got.tails.dtype == got.counts.dtype == got.n_ok.dtype == np.int64


@pytest.mark.parametrize("solver", ["auto", "direct"])
def test_a_batch_far_from_zero_is_fitted_by_direct_solves(solver):
    """On [2, 3] the pencil is not accurate: "auto" solves per α, and says so in the counts
    (no refusal: a pencil that is not stable is a route)."""
    x = XDistribution("uniform", low=2.0, high=3.0)
    degree, noise_sd, n = 2, 0.5, 13
    alphas = np.array([0.0, 0.1, 3.0])
    rng = np.random.default_rng(8)
    xs, Phi, y = draw(rng, x, n, 6, degree, noise_sd)
    S, T = u_sums(xs, y, x, degree)
    basis = standard_basis(x, degree, **LINE)
    assert not basis.use_pencil
    got = batch_moments(S, T, basis, alphas, noise_sd, keep=2, solver=solver)
    coef, risk, w_hat, _ = batch_reference(xs, Phi, y, x, degree, alphas, noise_sd, False)
    assert_summary(got.coef, coef, 1e-8)
    assert_summary(got.risk, risk, 1e-8)
    expected = np.zeros(len(FIT_COUNTS), dtype=np.int64)
    expected[FIT_COUNTS.index("direct")] = n
    np.testing.assert_array_equal(got.counts, expected)
    # the compiled kernel serves only where the pencil is accurate, and says why it does not
    with pytest.raises(
        SolverDeclined,
        match=r"^the compiled kernel declined the batch "
        r"\(not_stable\)$",
    ):
        batch_moments(S, T, basis, alphas, noise_sd, keep=2, solver="compiled")


def test_a_batch_with_a_failed_fit_is_masked_and_the_refusal_counted():
    """One data set with a non-finite response: the kernel declines the batch ("not_finite",
    counted for every data set), "compiled" refuses it, and the NumPy path summarises the
    other data sets, keeps NaN for the failed one and leaves it out of the tails."""
    x = XDistribution("uniform", low=-1.0, high=2.0)
    degree, noise_sd, n, keep = 2, 1.6, 9, 4
    alphas = np.array([0.0, 0.5, 8.0])
    rng = np.random.default_rng(4)
    xs, Phi, y = draw(rng, x, n, 4, degree, noise_sd)
    y[2, 1] = np.nan
    S, T = u_sums(xs, y, x, degree)
    basis = standard_basis(x, degree, **LINE)
    with pytest.raises(
        SolverDeclined,
        match=r"^the compiled kernel declined the batch "
        r"\(not_finite\)$",
    ):
        batch_moments(S, T, basis, alphas, noise_sd, keep=keep, solver="compiled")
    got = batch_moments(S, T, basis, alphas, noise_sd, keep=keep, solver="auto")
    coef, risk, w_hat, w_star = batch_reference(xs, Phi, y, x, degree, alphas, noise_sd, False)
    good = np.arange(n) != 2
    assert_summary(got.coef, coef[good], 1e-8)
    assert_summary(got.risk, risk[good], 1e-8)
    np.testing.assert_array_equal(got.n_ok, np.full(alphas.size, n - 1))
    assert np.isnan(got.w_kept[2]).all()
    assert_close(got.w_kept[[0, 1, 3]], w_hat[[0, 1, 3]], 1e-8)
    expected = np.zeros(len(FIT_COUNTS), dtype=np.int64)
    expected[FIT_COUNTS.index("pencil")] = n
    expected[FIT_COUNTS.index("declined_not_finite")] = n
    np.testing.assert_array_equal(got.counts, expected)
    error = np.abs(w_hat[good] - w_star)
    tails = np.stack([(error > t).sum(axis=0) for t in (1.0, 10.0, 100.0)], axis=-1)
    np.testing.assert_array_equal(got.tails, tails)


# --- the expected risk given the design, for the tuning -------------------------------------


def reference_risk(xs, x, degree, alphas, noise_sd, pen=False):
    """E[R|X] per α and design (A, R) by raw-basis solves."""
    Phi = xs[..., None] ** np.arange(degree + 1)
    y = np.zeros(xs.shape)
    Sigma = raw_moment_matrix(x, degree)
    return np.stack(
        [
            raw_reference(Phi, y, a, degree, noise_sd, Sigma, penalize_intercept=pen)[4]
            for a in alphas
        ]
    )


def u_grams(xs, x, degree):
    u = (xs - x.center) / x.scale
    return (u[..., None] ** np.arange(2 * degree + 1)).sum(axis=1)[:, hankel_index(degree)]


@pytest.mark.parametrize("solver", ["auto", "pencil", "direct"])
@pytest.mark.parametrize(
    ("x", "pen"),
    [
        (XDistribution("uniform", low=-0.5, high=2.5), False),
        (XDistribution("uniform", low=-1.0, high=1.0), True),
        (XDistribution("normal", mean=-0.3, sd=0.8), False),
    ],
)
def test_conditional_risk_is_the_closed_form_for_every_alpha_and_design(solver, x, pen):
    """Per design (A, R) and averaged over designs, with σ = 0.6 and α from 0 up, over more
    α values than one chunk of the computation holds."""
    degree, noise_sd, R = 2, 0.6, 200
    rng = np.random.default_rng(17)
    xs = draw(rng, x, R, 8, degree, noise_sd)[0]
    basis = standard_basis(x, degree, **LINE, penalize_intercept=pen)
    G_u = u_grams(xs, x, degree)
    alphas = np.concatenate([[0.0], np.geomspace(0.01, 100.0, 14)])
    ref = reference_risk(xs, x, degree, alphas, noise_sd, pen)
    f = conditional_risk_function(
        G_u, basis=basis, noise_sd=noise_sd, solver=solver, per_design=True
    )
    per = f(alphas)
    assert per.shape == (alphas.size, R)
    assert_close(per, ref, 1e-9)
    mean = conditional_risk(G_u, alphas, basis=basis, noise_sd=noise_sd, solver=solver)
    assert mean.shape == (alphas.size,)
    np.testing.assert_allclose(mean, ref.mean(axis=1), rtol=1e-9)
    # a scalar α, and one design given as a matrix
    np.testing.assert_allclose(
        f(0.3), reference_risk(xs, x, degree, [0.3], noise_sd, pen), rtol=1e-9
    )
    one = conditional_risk(
        G_u[5], np.array([0.0, 2.0]), basis=basis, noise_sd=noise_sd, solver=solver
    )
    ref_one = reference_risk(xs[5:6], x, degree, [0.0, 2.0], noise_sd, pen)[:, 0]
    np.testing.assert_allclose(one, ref_one, rtol=1e-9)


@pytest.mark.parametrize("solver", ["pencil", "direct"])
def test_conditional_risk_of_a_straight_line_fit(solver):
    """Degree 1 (p = 2) is served by the pencil too."""
    x = XDistribution("uniform", low=-3.0, high=1.0)
    noise_sd = 2.2
    xs = draw(np.random.default_rng(13), x, 40, 5, 1, noise_sd)[0]
    basis = standard_basis(x, 1, **LINE)
    alphas = np.array([0.0, 0.3, 4.0, 60.0])
    got = conditional_risk(
        u_grams(xs, x, 1), alphas, basis=basis, noise_sd=noise_sd, solver=solver
    )
    ref = reference_risk(xs, x, 1, alphas, noise_sd).mean(axis=1)
    np.testing.assert_allclose(got, ref, rtol=1e-9)


def test_conditional_risk_far_from_zero_solves_directly_and_the_pencil_declines():
    x = XDistribution("uniform", low=3.0, high=4.0)
    degree, noise_sd = 2, 1.9
    xs = draw(np.random.default_rng(2), x, 50, 6, degree, noise_sd)[0]
    basis = standard_basis(x, degree, **LINE)
    G_u = u_grams(xs, x, degree)
    alphas = np.array([0.0, 0.02, 1.0, 50.0])
    ref = reference_risk(xs, x, degree, alphas, noise_sd).mean(axis=1)
    for solver in ("auto", "direct"):
        got = conditional_risk(G_u, alphas, basis=basis, noise_sd=noise_sd, solver=solver)
        np.testing.assert_allclose(got, ref, rtol=1e-7)
    for solver in ("pencil", "compiled"):  # the same factorisation, in NumPy or compiled
        with pytest.raises(
            SolverDeclined, match="^the pencil is not accurate or some design is singular$"
        ):
            conditional_risk(G_u, alphas, basis=basis, noise_sd=noise_sd, solver=solver)
    with pytest.raises(
        ValueError,
        match="The 'solver' parameter must be one of 'auto', 'compiled', "
        "'pencil', 'direct'. Got 'fast' instead.",
    ):
        conditional_risk(G_u, alphas, basis=basis, noise_sd=noise_sd, solver="fast")


@pytest.mark.parametrize("solver", ["auto", "direct"])
def test_a_singular_design_has_infinite_risk_at_alpha_zero_only(solver):
    """m ≤ k for one design of the stack: its risk at α = 0 is inf (not identifiable), the
    other designs' and every α > 0 the closed form; the pencil declines the stack."""
    x = XDistribution("uniform", low=-0.5, high=2.5)
    degree, noise_sd = 3, 1.3
    rng = np.random.default_rng(9)
    xs = draw(rng, x, 6, 7, degree, noise_sd)[0]
    xs[4, 2:] = xs[4, :5]  # points repeated: 2 distinct x values at degree 3
    xs[4, 4:] = xs[4, 0]
    basis = standard_basis(x, degree, **LINE)
    G_u = u_grams(xs, x, degree)
    alphas = np.array([0.0, 0.5, 1.0, 7.0])
    per = conditional_risk_function(
        G_u, basis=basis, noise_sd=noise_sd, solver=solver, per_design=True
    )(alphas)
    assert per[0, 4] == math.inf
    assert np.isfinite(per[1:]).all()
    ref = reference_risk(xs, x, degree, alphas, noise_sd)
    assert_close(per[1:], ref[1:], 1e-8)
    # at α = 0 the other designs keep their own finite risk
    others = np.arange(xs.shape[0]) != 4
    assert np.isfinite(per[0, others]).all()
    assert_close(per[:1, others], ref[:1, others], 1e-8)
    mean = conditional_risk(G_u, alphas, basis=basis, noise_sd=noise_sd, solver=solver)
    assert mean[0] == math.inf
    np.testing.assert_allclose(mean[1:], ref[1:].mean(axis=1), rtol=1e-8)
    with pytest.raises(SolverDeclined):
        conditional_risk(G_u, alphas, basis=basis, noise_sd=noise_sd, solver="pencil")


@pytest.mark.parametrize("solver", ["auto", "direct"])
def test_fewer_points_than_coefficients_make_alpha_zero_infinite_even_if_lu_succeeds(solver):
    """m = 3 points at degree 3: G is rank-deficient though an LU of it finds no zero pivot
    (it returns numbers of order 1e15); the risk at α = 0 is still inf, at α > 0 finite."""
    x = XDistribution("uniform", low=-0.5, high=2.5)
    degree, noise_sd = 3, 1.1
    basis = standard_basis(x, degree, **LINE)
    few = draw(np.random.default_rng(9), x, 1, 3, degree, noise_sd)[0]
    many = draw(np.random.default_rng(10), x, 3, 9, degree, noise_sd)[0]
    G_u = np.concatenate([u_grams(many, x, degree), u_grams(few, x, degree)])
    # G_u[3] = ΦᵀΦ with Φ of 3 rows and 4 columns: rank 3 at most, whatever the rounding.
    # Whether an LU of it meets an exact zero pivot depends on the LAPACK's rounding (here
    # it usually does not), so that is not asserted: the rule must hold either way.
    assert few.shape == (1, 3) and np.unique(few).size == 3 < degree + 1
    alphas = np.array([0.0, 0.8])
    got = conditional_risk(G_u, alphas, basis=basis, noise_sd=noise_sd, solver=solver)
    assert got[0] == math.inf
    ref = np.append(
        reference_risk(many, x, degree, [0.8], noise_sd)[0],
        reference_risk(few, x, degree, [0.8], noise_sd)[0],
    )
    np.testing.assert_allclose(got[1], ref.mean(), rtol=1e-8)


@pytest.mark.parametrize("solver", ["auto", "direct"])
def test_a_design_without_points_has_infinite_risk_at_every_alpha(solver):
    """G = 0: A = αP is singular for every α when the intercept is not penalised, so that
    design's risk is inf everywhere and the mean over designs too."""
    x = XDistribution("uniform", low=-1.0, high=2.0)
    degree, noise_sd = 2, 0.8
    xs = draw(np.random.default_rng(19), x, 4, 6, degree, noise_sd)[0]
    basis = standard_basis(x, degree, **LINE)
    G_u = u_grams(xs, x, degree)
    G_u[2] = 0.0
    alphas = np.array([0.5, 3.0])
    per = conditional_risk_function(
        G_u, basis=basis, noise_sd=noise_sd, solver=solver, per_design=True
    )(alphas)
    assert per.shape == (2, 4) and (per[:, 2] == math.inf).all()
    mean = conditional_risk(G_u, alphas, basis=basis, noise_sd=noise_sd, solver=solver)
    assert (mean == math.inf).all()
    # without it, every design keeps its closed form
    keep = [0, 1, 3]
    got = conditional_risk_function(
        G_u[keep], basis=basis, noise_sd=noise_sd, solver=solver, per_design=True
    )(alphas)
    np.testing.assert_allclose(
        got, reference_risk(xs[keep], x, degree, alphas, noise_sd), rtol=1e-9
    )


def test_the_cached_risk_follows_the_designs_basis_and_noise():
    """The set-up kept between calls is keyed on everything it depends on, copied from the
    caller, and the cache stays bounded."""
    x = XDistribution("uniform", low=-0.5, high=2.5)
    degree = 2
    xs = draw(np.random.default_rng(31), x, 20, 6, degree, 1.0)[0]
    G_u = u_grams(xs, x, degree)
    alphas = np.array([0.0, 1.0, 10.0])
    for noise_sd in (0.4, 2.5):
        for pen in (False, True):
            basis = standard_basis(x, degree, **LINE, penalize_intercept=pen)
            got = conditional_risk(G_u, alphas, basis=basis, noise_sd=noise_sd)
            ref = reference_risk(xs, x, degree, alphas, noise_sd, pen).mean(axis=1)
            np.testing.assert_allclose(got, ref, rtol=1e-9)
    # another true line: v* differs, G and the rest do not
    other = standard_basis(x, degree, intercept=-2.0, slope=0.5)
    got = conditional_risk(G_u, alphas, basis=other, noise_sd=0.4)
    Phi = xs[..., None] ** np.arange(degree + 1)
    w_star = np.array([-2.0, 0.5, 0.0])
    Sigma = raw_moment_matrix(x, degree)
    G = np.swapaxes(Phi, 1, 2) @ Phi
    for i, a in enumerate(alphas):
        A = G + a * np.diag([0.0, 1, 1])
        e = solve(A, G @ w_star) - w_star
        Ainv = np.linalg.inv(A)
        rb = np.einsum("ni,ij,nj->n", e, Sigma, e) + 0.16 * np.einsum(
            "ij,nji->n", Sigma, Ainv @ G @ Ainv
        )
        np.testing.assert_allclose(got[i], rb.mean(), rtol=1e-9)
    # the caller changes its array afterwards: a new call sees new designs
    basis = standard_basis(x, degree, **LINE)
    f = conditional_risk_function(G_u, basis=basis, noise_sd=0.4)
    before = f(alphas)
    G_u[:] = u_grams(xs[:, ::-1] * 0.5 + 0.3, x, degree)
    np.testing.assert_array_equal(f(alphas), before)
    for i in range(20):
        conditional_risk(G_u * (1 + i), alphas, basis=basis, noise_sd=1.0)
    assert 0 < len(conditional._RISK_CACHE) <= conditional._RISK_CACHE_SIZE


# --- performance measures and their MCSEs ---------------------------------------------------


def se_of_mean(values, axis=0):
    """Standard error of the mean: the sample SD (ddof 1) over √n."""
    n = values.shape[axis]
    return values.std(axis=axis, ddof=1) / math.sqrt(n)


def coefficient_samples(rng, n, cells):
    """Skewed, heavy-tailed d with a nonzero mean; e correlated with d; v > 0."""
    d = 0.7 + rng.gamma(2.0, 1.3, (n, cells)) - rng.standard_t(5, (n, cells))
    e = 0.4 * d + rng.normal(-0.3, 0.5, (n, cells))
    v = rng.gamma(3.0, 0.4, (n, cells)) + 0.2 * e**2
    return d, e, v, np.stack([d, d**2, e, e**2, v], axis=-1)


@pytest.mark.parametrize("n", [37, 203])
def test_coefficient_measures_equal_direct_computations(n):
    """Every measure and MCSE of docs/results.md from the per-replication values."""
    d, e, v, q = coefficient_samples(np.random.default_rng(n), n, 3)
    got = coefficient_measures(CoMoments.from_samples(q))
    dev = d - d.mean(axis=0)
    m2, m4 = (dev**2).mean(axis=0), (dev**4).mean(axis=0)
    S2 = d.var(axis=0, ddof=1)
    var_mcse = np.sqrt((m4 - m2**2) / n)
    ref = {
        "n": np.full(3, float(n)),
        "bias": d.mean(axis=0),
        "bias_mcse": se_of_mean(d),
        "var": S2,
        "var_mcse": var_mcse,
        "sd": np.sqrt(S2),
        "sd_mcse": var_mcse / (2 * np.sqrt(S2)),
        "mse": (d**2).mean(axis=0),
        "mse_mcse": np.sqrt(((d**2 - (d**2).mean(axis=0)) ** 2).sum(axis=0) / (n * (n - 1))),
        "kurtosis": m4 / m2**2 - 3.0,
        "bias_rb": e.mean(axis=0),
        "bias_rb_mcse": se_of_mean(e),
        "var_rb": v.mean(axis=0) + e.var(axis=0, ddof=1),
        # delta method: the SE of the mean of the linearised per-replication values
        "var_rb_mcse": se_of_mean(e**2 - 2 * e.mean(axis=0) * e + v),
        "bias_diff_mcse": se_of_mean(d - e),
        "var_diff_mcse": se_of_mean(
            d**2 - 2 * d.mean(axis=0) * d - (e**2 - 2 * e.mean(axis=0) * e) - v
        ),
    }
    assert set(got) == set(ref)
    for key, value in ref.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-10, err_msg=key)


def test_the_variance_mcse_is_the_standard_error_of_the_squared_deviations():
    """m₄ − m₂² = Var((d − d̄)²) with denominator n, by batches of the samples merged: the
    same as from all samples at once."""
    rng = np.random.default_rng(2)
    d, e, v, q = coefficient_samples(rng, 101, 2)
    parts = [CoMoments.from_samples(q[a:b]) for a, b in ((0, 10), (10, 64), (64, 101))]
    got = coefficient_measures(CoMoments.combine(parts))
    sq = (d - d.mean(axis=0)) ** 2
    np.testing.assert_allclose(got["var_mcse"], np.sqrt(sq.var(axis=0) / 101), rtol=1e-9)
    np.testing.assert_allclose(got["var"], sq.sum(axis=0) / 100, rtol=1e-12)


def test_measures_of_cells_with_fewer_than_two_replications_are_nan():
    """n = 0: nothing is defined; n = 1: the means (bias, MSE, bias_rb) are, the spreads not."""
    rng = np.random.default_rng(6)
    _, _, _, q = coefficient_samples(rng, 1, 1)
    _, _, _, q2 = coefficient_samples(rng, 2, 1)
    empty = CoMoments.empty((1,), 5)
    one, two = CoMoments.from_samples(q), CoMoments.from_samples(q2)
    cm = CoMoments(
        n=np.concatenate([empty.n, one.n, two.n]),
        mean=np.concatenate([empty.mean, one.mean, two.mean]),
        M=np.concatenate([empty.M, one.M, two.M]),
    )
    got = coefficient_measures(cm)
    for key, value in got.items():
        if key == "n":
            np.testing.assert_array_equal(value, [0.0, 1.0, 2.0])
        elif key in ("bias", "mse", "bias_rb"):
            assert (
                np.isnan(value[0])
                and value[1] == q[0, 0, {"bias": 0, "mse": 1, "bias_rb": 2}[key]]
            ), key
        else:
            assert np.isnan(value[:2]).all(), key
    # two replications: every spread is defined
    d, e = q2[:, 0, 0], q2[:, 0, 2]
    assert np.isfinite([value[2] for value in got.values()]).all()
    np.testing.assert_allclose(got["var"][2], (d[0] - d[1]) ** 2 / 2, rtol=1e-12)
    np.testing.assert_allclose(got["bias_rb_mcse"][2], abs(e[0] - e[1]) / 2, rtol=1e-12)
    risk = risk_measures(
        CoMoments(
            n=np.array([0.0, 1.0]),
            mean=np.array([[0.0] * 3, [2.0, 4.0, 1.5]]),
            M=np.zeros((2, 3, 3)),
        )
    )
    for key, value in risk.items():
        if key == "n":
            continue
        if key in ("risk", "risk_rb"):
            assert np.isnan(value[0]) and value[1] == {"risk": 2.0, "risk_rb": 1.5}[key]
        else:
            assert np.isnan(value).all(), key


@pytest.mark.parametrize("n", [23, 150])
def test_risk_measures_equal_direct_computations(n):
    rng = np.random.default_rng(n)
    r = rng.lognormal(0.3, 0.9, (n, 2, 2))
    rb = 0.6 * r + rng.gamma(2.0, 0.3, (n, 2, 2))
    q = np.stack([r, r**2, rb], axis=-1)
    got = risk_measures(CoMoments.from_samples(q))
    dev = r - r.mean(axis=0)
    m2, m4 = (dev**2).mean(axis=0), (dev**4).mean(axis=0)
    ref = {
        "n": np.full((2, 2), float(n)),
        "risk": r.mean(axis=0),
        "risk_mcse": se_of_mean(r),
        "risk_kurtosis": m4 / m2**2 - 3.0,
        "risk_rb": rb.mean(axis=0),
        "risk_rb_mcse": se_of_mean(rb),
        "risk_diff_mcse": se_of_mean(r - rb),
    }
    assert set(got) == set(ref)
    for key, value in ref.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-10, err_msg=key)


def test_the_mcse_of_a_difference_counts_the_correlation():
    """Rao–Blackwell estimates from the same data sets: the MCSE of bias − bias_rb is far
    below the root sum of squares when d and e move together (here d = e + small noise)."""
    rng = np.random.default_rng(12)
    e = rng.normal(1.0, 2.0, (400, 1))
    d = e + rng.normal(0.0, 0.05, e.shape)
    v = np.full(e.shape, 0.0025)
    q = np.stack([d, d**2, e, e**2, v], axis=-1)
    got = coefficient_measures(CoMoments.from_samples(q))
    np.testing.assert_allclose(got["bias_diff_mcse"], se_of_mean(d - e), rtol=1e-9)
    assert got["bias_diff_mcse"][0] < 0.1 * math.hypot(got["bias_mcse"][0], got["bias_rb_mcse"][0])


# --- mergeable co-moments -------------------------------------------------------------------


def one_pass(q):
    mean = q.mean(axis=0)
    return mean, np.einsum("r...i,r...j->...ij", q - mean, q - mean)


def assert_same_summary(got: CoMoments, q: np.ndarray):
    mean, M = one_pass(q)
    np.testing.assert_array_equal(got.n, np.full(mean.shape[:-1], float(q.shape[0])))
    np.testing.assert_allclose(got.mean, mean, rtol=1e-11, atol=1e-12 * np.abs(mean).max())
    np.testing.assert_allclose(got.M, M, rtol=1e-10, atol=1e-11 * np.abs(M).max())


def test_merges_in_any_order_and_grouping_equal_the_one_pass_summary():
    rng = np.random.default_rng(40)
    q = rng.standard_t(4, (97, 2, 3)) * [1.0, 30.0, 0.01] + [4.0, -200.0, 0.5]
    bounds = [0, 5, 6, 40, 40, 71, 97]  # one block of one, one empty block
    parts = [
        CoMoments.from_samples(q[a:b]) if b > a else CoMoments.empty((2,), 3)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    assert_same_summary(CoMoments.combine(parts), q)
    assert_same_summary(CoMoments.combine(parts[::-1]), q)
    left = parts[0]
    for p in parts[1:]:
        left = left.merge(p)
    assert_same_summary(left, q)
    right = parts[-1]
    for p in parts[-2::-1]:
        right = p.merge(right)
    assert_same_summary(right, q)
    tree = (
        (parts[0].merge(parts[3])).merge(parts[4].merge(parts[1])).merge(parts[2].merge(parts[5]))
    )
    assert_same_summary(tree, q)


def test_merging_with_nothing_changes_nothing():
    rng = np.random.default_rng(41)
    q = rng.normal(3.0, 2.0, (8, 4))
    part = CoMoments.from_samples(q)
    empty = CoMoments.empty((), 4)
    assert empty.n.shape == () and empty.mean.shape == (4,) and empty.M.shape == (4, 4)
    assert empty.n == 0 and not empty.mean.any() and not empty.M.any()
    for got in (part.merge(empty), empty.merge(part), CoMoments.combine([empty, part, empty])):
        assert_same_summary(got, q)
    for both in (empty.merge(empty), CoMoments.combine([empty, empty])):
        assert both.n == 0 and np.isfinite(both.mean).all() and not both.M.any()


def test_masked_samples_equal_the_summary_of_the_kept_replications():
    """Per cell only the replications marked ok; a cell with none kept is empty (n = 0,
    zeros); values where not ok, NaN included, do not reach the summary."""
    rng = np.random.default_rng(42)
    q = rng.gamma(2.0, 1.5, (30, 4, 2)) + [1.0, -4.0]
    ok = rng.random((30, 4)) < 0.6
    ok[:, 2] = False
    ok[:2, 1] = True
    ok[:, 3] = np.arange(30) == 7  # a single replication kept
    q[~ok] = np.nan
    got = CoMoments.from_masked_samples(q, ok)
    assert got.n.shape == (4,) and got.mean.shape == (4, 2) and got.M.shape == (4, 2, 2)
    for c in (0, 1, 3):
        kept = q[ok[:, c], c]
        mean, M = one_pass(kept)
        assert got.n[c] == ok[:, c].sum()
        np.testing.assert_allclose(got.mean[c], mean, rtol=1e-12)
        np.testing.assert_allclose(got.M[c], M, rtol=1e-11)
    assert got.n[2] == 0
    np.testing.assert_array_equal(got.mean[2], 0.0)
    np.testing.assert_array_equal(got.M[2], 0.0)
    # and they merge like the others
    more = rng.gamma(2.0, 1.5, (11, 4, 2))
    merged = got.merge(CoMoments.from_samples(more))
    kept = np.concatenate([q[ok[:, 0], 0], more[:, 0]])
    assert merged.n[0] == len(kept)
    np.testing.assert_allclose(merged.mean[0], kept.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(merged.M[0], one_pass(kept)[1], rtol=1e-11)


def test_the_covariance_has_denominator_n_minus_one_and_is_nan_below_two():
    rng = np.random.default_rng(43)
    q = rng.normal(0.0, [1.0, 5.0], (12, 2))
    cm = CoMoments.from_samples(q)
    np.testing.assert_allclose(cm.cov(), np.cov(q, rowvar=False), rtol=1e-12)
    single = CoMoments.from_samples(q[:1])
    assert np.isnan(single.cov()).all()
    pair = CoMoments.from_samples(q[:2])
    np.testing.assert_allclose(pair.cov(), np.cov(q[:2], rowvar=False), rtol=1e-12)
    assert np.isnan(CoMoments.empty((2,), 2).cov()).all()
    stack = CoMoments.combine([CoMoments.from_samples(q[:5, None]), CoMoments.empty((1,), 2)])
    np.testing.assert_allclose(stack.cov()[0], np.cov(q[:5], rowvar=False), rtol=1e-12)


def test_a_system_that_fails_to_solve_costs_no_other_design_its_risk(monkeypatch):
    """Where LAPACK finds one design's A = G + αP singular at some α > 0 (rare: a tiny α on
    a singular design), that design's risk is inf there and every other design's is its
    own, not lost with it. The failure is simulated: solve raises for that one matrix, as
    LAPACK does for an exactly singular one, alone or within a stack."""
    x = XDistribution("uniform", low=-0.5, high=2.5)
    degree, noise_sd, R = 2, 1.3, 6
    xs = draw(np.random.default_rng(21), x, R, 9, degree, noise_sd)[0]
    basis = standard_basis(x, degree, **LINE)
    G_u = u_grams(xs, x, degree)
    alphas = np.array([0.0, 0.5, 3.0])
    bad = G_u[2] + 0.5 * basis.penalty
    solve = np.linalg.solve

    def failing(A, b):
        if np.any(np.all(np.isclose(A, bad, rtol=0, atol=1e-12), axis=(-2, -1))):
            raise np.linalg.LinAlgError("Singular matrix")
        return solve(A, b)

    monkeypatch.setattr(np.linalg, "solve", failing)
    per = conditional_risk_function(
        G_u, basis=basis, noise_sd=noise_sd, solver="direct", per_design=True
    )(alphas)
    monkeypatch.undo()
    ref = reference_risk(xs, x, degree, alphas, noise_sd)
    assert per[1, 2] == math.inf
    keep = np.ones(per.shape, dtype=bool)
    keep[1, 2] = False
    np.testing.assert_allclose(per[keep], ref[keep], rtol=1e-8)
