"""Rules of the tuned penalty and of the theory tables (study.theory.tuning, study.theory.step),
each checked against a reference written here from docs/theory.md and docs/results.md:
the exact conditional risk in raw monomials of x by direct solves, a brute-force search of
it on a fine grid in log α, scipy's bounded Brent minimiser, the closed form of α*∞, and
the definitions of the scalings and of the table columns. Small in-memory designs only,
so that the file runs in seconds."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from numpy.polynomial import legendre

from study.design import XDistribution, design_from_dict
from study.theory import tuning

from conftest import small_design

# an asymmetric x range, σ ≠ 1, a nonzero intercept and a negative slope: a wrong power,
# factor or sign shows
X = XDistribution("uniform", low=-0.5, high=2.0)
LINE = {"intercept": 0.8, "slope": -1.3}
SIGMA = 0.7


@pytest.fixture(autouse=True)
def fresh_caches(monkeypatch):
    """Every test tunes afresh (not from a result a test before it kept), so that each
    test reaches the code it checks (its designs are drawn afresh too:
    conftest.fresh_kept_sums)."""
    monkeypatch.setattr(tuning, "_TUNED_CACHE", {})


# --- references -------------------------------------------------------------------------


def uniform_raw_moments(low: float, high: float, n_max: int) -> np.ndarray:
    """E[xⁿ] = (b^(n+1) − a^(n+1)) / ((n + 1)(b − a)) for x uniform on [a, b] (docs/theory.md)."""
    n = np.arange(n_max + 1)
    return (high ** (n + 1) - low ** (n + 1)) / ((n + 1) * (high - low))


def draw_designs(rng, n: int, m: int, degree: int, x: XDistribution = X):
    """n designs of m points: the raw x values and the Gram matrices G_u of
    φ(u) = (1, u, …, u^k), u = (x − center)/scale, as the tuning takes them."""
    xs = rng.uniform(x.low, x.high, (n, m))
    u = (xs - (x.low + x.high) / 2) / ((x.high - x.low) / 2)
    V = u[..., None] ** np.arange(degree + 1)
    return xs, np.einsum("rmi,rmj->rij", V, V)


def raw_risks(xs, alphas, degree, *, noise_sd, intercept, slope, x=X, penalize_intercept=False):
    """Exact E[R | X] of each design, shape (len(alphas), n), in raw monomials of x:
    E[ŵ | X] = A⁻¹Gw*, Cov = σ²A⁻¹GA⁻¹, A = G + αD, R = (ŵ − w*)ᵀΣ(ŵ − w*); inf where A
    is singular (α = 0 with fewer distinct points than coefficients)."""
    k = degree
    mu = uniform_raw_moments(x.low, x.high, 2 * k)
    sigma = mu[np.add.outer(np.arange(k + 1), np.arange(k + 1))]
    D = np.eye(k + 1)
    if not penalize_intercept:
        D[0, 0] = 0.0
    w = np.zeros(k + 1)
    w[0], w[1] = intercept, slope
    Phi = np.asarray(xs)[..., None] ** np.arange(k + 1)
    G = np.einsum("rmi,rmj->rij", Phi, Phi)
    alphas = np.asarray(alphas, dtype=float)
    singular = np.linalg.matrix_rank(G) < k + 1
    A = G[None] + alphas[:, None, None, None] * D
    A = np.where(((alphas[:, None] == 0) & singular[None])[..., None, None], np.eye(k + 1), A)
    Ainv = np.linalg.inv(A)
    e = np.einsum("arij,rj->ari", Ainv, G @ w) - w
    bias = np.einsum("ari,ij,arj->ar", e, sigma, e)
    var = np.einsum("ij,arjk,rkl,arli->ar", sigma, Ainv, G, Ainv)
    out = bias + noise_sd**2 * var
    out[(alphas[:, None] == 0) & singular[None]] = math.inf
    return out


def brute_force_minimum(mean_risk, lo: float, hi: float, n: int = 801):
    """The minimum of a function of α on a fine grid in log α, then on a grid of n points
    between the grid points beside the best: (α, risk). ``mean_risk`` maps an array of α
    to the risks."""
    t = np.linspace(math.log(lo), math.log(hi), n)
    r = mean_risk(np.exp(t))
    i = int(np.argmin(r))
    assert 0 < i < n - 1, "the minimum must lie inside the brute-force grid"
    t = np.linspace(t[i - 1], t[i + 1], n)
    r = mean_risk(np.exp(t))
    i = int(np.argmin(r))
    return math.exp(t[i]), float(r[i])


def alpha_limit_reference(k: int, *, noise_sd: float = SIGMA, pen: bool = False) -> float:
    """α*∞ = σ²·tr(Σ⁻¹D)/(w*ᵀDΣ⁻¹Dw*) with the raw moment matrix Σ of x (docs/theory.md)."""
    mu = uniform_raw_moments(X.low, X.high, 2 * k)
    S_inv = np.linalg.inv(mu[np.add.outer(np.arange(k + 1), np.arange(k + 1))])
    D = np.eye(k + 1)
    D[0, 0] = 1.0 if pen else 0.0
    w = np.zeros(k + 1)
    w[:2] = LINE["intercept"], LINE["slope"]
    return noise_sd**2 * np.trace(S_inv @ D) / (D @ w @ S_inv @ D @ w)


def log_alpha_se_reference(per_design_risk, a: float, h: float = 0.05) -> float:
    """SD_i(R_i′)/(√n·mean R″) in log α at α = a, by central differences of step h
    (docs/results.md); ``per_design_risk`` maps an array of α to risks of shape (α, n)."""
    r = per_design_risk(a * np.exp([-h, 0.0, h]))
    slope = (r[2] - r[0]) / (2 * h)
    curvature = np.mean(r[2] - 2 * r[1] + r[0]) / h**2
    return float(np.std(slope, ddof=1) / math.sqrt(r.shape[1]) / curvature)


# --- the risk-optimal α given the designs -----------------------------------------------


@pytest.fixture(scope="module")
def designs():
    """25 designs of 12 points for degree 2 on the asymmetric range (inputs only)."""
    return draw_designs(np.random.default_rng(2024), 25, 12, 2)


def test_the_conditional_optimum_is_the_brute_force_minimum_of_the_exact_risk(designs):
    xs, G = designs
    tuned = tuning.optimal_lambda_conditional(G, 12, 2, scaling="m", x=X, **LINE, noise_sd=SIGMA)

    def mean_risk(a):
        return raw_risks(xs, a, 2, noise_sd=SIGMA, **LINE).mean(axis=1)

    a_ref, r_ref = brute_force_minimum(mean_risk, 1e-3, 1e3)
    assert tuned.boundary is None
    assert tuned.alpha == pytest.approx(a_ref, rel=1e-4)
    assert tuned.risk == pytest.approx(r_ref, rel=1e-9)
    assert tuned.risk == pytest.approx(mean_risk([tuned.alpha])[0], rel=1e-9)
    assert tuned.lam == pytest.approx(tuned.alpha, rel=1e-15)  # under `m`, λ = α


def test_the_errors_and_the_benefit_follow_their_delta_method_rules(designs):
    """log_alpha_se = SD_i(R_i′)/(√n·mean R″) in log α (central differences of step
    SE_STEP), risk_se = SD_i(R_i(α*))/√n, benefit = R̄(0)/R̄(α*) and benefit_se =
    SD_i(R_i(0) − benefit·R_i(α*))/(√n·R̄(α*)), from the exact risk of each design."""
    xs, G = designs
    tuned = tuning.optimal_lambda_conditional(
        G, 12, 2, scaling="none", x=X, **LINE, noise_sd=SIGMA
    )
    n, h, t = xs.shape[0], tuning.SE_STEP, math.log(tuned.alpha)
    assert h == 0.05  # docs: central differences of step 0.05 in log α
    r = raw_risks(xs, np.exp([t - h, t, t + h, -np.inf]), 2, noise_sd=SIGMA, **LINE)
    slope = (r[2] - r[0]) / (2 * h)
    curvature = np.mean(r[2] - 2 * r[1] + r[0]) / h**2
    assert tuned.log_alpha_se == pytest.approx(
        np.std(slope, ddof=1) / math.sqrt(n) / curvature, rel=1e-5
    )
    assert tuned.risk_se == pytest.approx(np.std(r[1], ddof=1) / math.sqrt(n), rel=1e-6)
    benefit = r[3].mean() / r[1].mean()
    assert benefit > 1.1  # 12 points for a parabola: the penalty helps
    assert tuned.benefit == pytest.approx(benefit, rel=1e-7)
    se = np.std(r[3] - benefit * r[1], ddof=1) / math.sqrt(n) / r[1].mean()
    assert tuned.benefit_se == pytest.approx(se, rel=1e-6)
    assert tuned.lam == pytest.approx(tuned.alpha / 12, rel=1e-14)  # `none`: λ = α/m


def test_least_squares_that_does_not_exist_has_an_infinite_benefit():
    """m = 3 points for a cubic: no least-squares fit, so risk(0)/risk(α*) is inf and its
    standard error NaN; the optimum is interior and its errors are finite."""
    xs, G = draw_designs(np.random.default_rng(5), 20, 3, 3)
    tuned = tuning.optimal_lambda_conditional(G, 3, 3, scaling="m", x=X, **LINE, noise_sd=SIGMA)
    assert tuned.boundary is None
    assert tuned.benefit == math.inf and math.isnan(tuned.benefit_se)
    assert np.isfinite(tuned.log_alpha_se) and tuned.log_alpha_se > 0
    assert np.isfinite(tuned.risk_se) and tuned.risk_se > 0
    r = raw_risks(xs, [tuned.alpha], 3, noise_sd=SIGMA, **LINE)
    assert tuned.risk == pytest.approx(r.mean(), rel=1e-7)


@pytest.mark.parametrize(
    ("scaling", "lam_of"),
    [
        ("none", lambda a, m, k: a / m),
        ("m", lambda a, m, k: a),
        ("sqrt-m", lambda a, m, k: a / math.sqrt(m)),
        ("k", lambda a, m, k: a * k / m),
    ],
)
def test_lambda_star_is_the_lambda_of_alpha_star_under_each_scaling(designs, scaling, lam_of):
    """α* is the same under every scaling; λ* is the λ that gives it (docs/model.md)."""
    _, G = designs
    ref = tuning.optimal_lambda_conditional(G, 12, 2, scaling="m", x=X, **LINE, noise_sd=SIGMA)
    got = tuning.optimal_lambda_conditional(G, 12, 2, scaling=scaling, x=X, **LINE, noise_sd=SIGMA)
    assert got.alpha == ref.alpha
    assert got.lam == pytest.approx(lam_of(ref.alpha, 12, 2), rel=1e-14)
    asym = tuning.optimal_lambda_asymptotic(12, 2, scaling=scaling, x=X, **LINE, noise_sd=SIGMA)
    assert asym.lam == pytest.approx(lam_of(asym.alpha, 12, 2), rel=1e-14)


def test_a_stack_of_the_wrong_shape_is_refused_in_one_line():
    G = np.zeros((4, 3, 3))
    with pytest.raises(ValueError) as exc:
        tuning.optimal_lambda_conditional(G, 10, 3, scaling="m", x=X, **LINE, noise_sd=1.0)
    line = str(exc.value)
    assert "\n" not in line
    assert line == "G_stack_u must have shape (R, 4, 4). Got (4, 3, 3) instead."


def test_the_orthonormal_basis_penalises_the_legendre_coefficients(designs):
    """basis="orthonormal": the penalty is on the coefficients of ψ_j = √(2j + 1)·P_j(u),
    the intercept ψ_0 = 1 free; the same designs, so the optimum is the brute-force
    minimum of the exact risk in that basis (Σ_ψ = I)."""
    xs, G = designs
    u = (xs - X.center) / X.scale
    psi = np.stack(
        [math.sqrt(2 * j + 1) * legendre.legval(u, [0] * j + [1]) for j in range(3)], -1
    )
    w = np.array(
        [LINE["intercept"] + LINE["slope"] * X.center, LINE["slope"] * X.scale / math.sqrt(3), 0]
    )
    D = np.diag([0.0, 1.0, 1.0])

    Gp = np.einsum("rmi,rmj->rij", psi, psi)

    def mean_risk(alphas):
        A = Gp[None] + np.asarray(alphas)[:, None, None, None] * D
        Ainv = np.linalg.inv(A)
        e = np.einsum("arij,rj->ari", Ainv, Gp @ w) - w
        var = np.einsum("arjk,rkl,arlj->ar", Ainv, Gp, Ainv)
        return (np.sum(e**2, axis=-1) + SIGMA**2 * var).mean(axis=1)

    tuned = tuning.optimal_lambda_conditional(
        G, 12, 2, scaling="m", x=X, **LINE, noise_sd=SIGMA, basis="orthonormal"
    )
    a_ref, r_ref = brute_force_minimum(mean_risk, 1e-3, 1e3)
    assert tuned.alpha == pytest.approx(a_ref, rel=1e-4)
    assert tuned.risk == pytest.approx(r_ref, rel=1e-9)
    mono = tuning.optimal_lambda_conditional(G, 12, 2, scaling="m", x=X, **LINE, noise_sd=SIGMA)
    assert abs(math.log(mono.alpha / tuned.alpha)) > 0.05  # the basis matters


# --- the large-m optimum and its limit ----------------------------------------------------


def test_the_asymptotic_optimum_is_the_brute_force_minimum_of_the_large_m_risk():
    """optimal_lambda_asymptotic minimises risk_asym of study.theory.largem over α, and
    reports that risk (σ²(k + 1)/m plus the α-dependent part)."""
    from study.theory.largem import asymptotic_risk_table

    m, k = 40, 3

    def risk_asym(alphas):  # under `m`, λ = α
        tab = asymptotic_risk_table([m], [k], list(alphas), ["m"], x=X, **LINE, noise_sd=SIGMA)
        return tab.risk_asym.to_numpy()

    tuned = tuning.optimal_lambda_asymptotic(m, k, scaling="none", x=X, **LINE, noise_sd=SIGMA)
    a_ref, r_ref = brute_force_minimum(risk_asym, 1e-3, 1e3, n=801)
    assert tuned.boundary is None
    assert tuned.alpha == pytest.approx(a_ref, rel=1e-4)
    assert tuned.risk == pytest.approx(r_ref, rel=1e-10)
    assert tuned.lam == pytest.approx(tuned.alpha / m, rel=1e-14)
    # no sample of designs behind it: no standard errors, no benefit
    assert math.isnan(tuned.log_alpha_se) and math.isnan(tuned.risk_se)
    assert math.isnan(tuned.benefit) and math.isnan(tuned.benefit_se)


def test_the_limit_of_alpha_star_is_the_closed_form_in_raw_monomials():
    """α*∞ = σ²·tr(Σ⁻¹D)/(w*ᵀDΣ⁻¹Dw*) with the raw moment matrix Σ of x (docs/theory.md),
    intercept free or penalised; 0 without noise and inf for a flat line."""
    for k, pen in ((1, False), (2, False), (3, True)):
        ref = alpha_limit_reference(k, pen=pen)
        got = tuning.optimal_alpha_limit(k, x=X, **LINE, noise_sd=SIGMA, penalize_intercept=pen)
        assert got == pytest.approx(ref, rel=1e-9), (k, pen)
    assert tuning.optimal_alpha_limit(1, x=X, **LINE, noise_sd=SIGMA) == pytest.approx(
        SIGMA**2 / LINE["slope"] ** 2, rel=1e-12
    )  # one penalised weight: σ²/β₁²
    assert tuning.optimal_alpha_limit(2, x=X, **LINE, noise_sd=0.0) == 0.0
    flat = {"intercept": 0.8, "slope": 0.0}
    with warnings.catch_warnings():  # Dw* = 0 is a case of its own, not a division by 0
        warnings.simplefilter("error")
        assert tuning.optimal_alpha_limit(2, x=X, **flat, noise_sd=SIGMA) == math.inf


@pytest.mark.parametrize("k", [2, 3])
def test_the_limit_in_the_orthonormal_basis_is_hoerl_kennard_baldwin(k):
    """With Σ = I (features orthonormal under x), α*∞ = σ²·k/Σ_{j≥1} w*_j²; the line
    β0 + β1·x has w*_1 = β1·scale/√3 on √3·u, the rest 0 (docs/theory.md)."""
    got = tuning.optimal_alpha_limit(k, x=X, **LINE, noise_sd=SIGMA, basis="orthonormal")
    w1 = LINE["slope"] * X.scale / math.sqrt(3)
    assert got == pytest.approx(SIGMA**2 * k / w1**2, rel=1e-9)


def test_the_large_m_optimum_tends_to_the_limit_under_both_scalings():
    """α*(m) → α*∞: under `m` λ* tends to α*∞, under `none` m·λ* does (docs/theory.md)."""
    limit = tuning.optimal_alpha_limit(2, x=X, **LINE, noise_sd=SIGMA)
    far = tuning.optimal_lambda_asymptotic(10**7, 2, scaling="m", x=X, **LINE, noise_sd=SIGMA)
    assert far.lam == pytest.approx(limit, rel=1e-3)
    near = tuning.optimal_lambda_asymptotic(30, 2, scaling="none", x=X, **LINE, noise_sd=SIGMA)
    assert abs(30 * near.lam / limit - 1) > 10 * abs(far.lam / limit - 1)


def test_the_boundaries_of_the_large_m_optimum():
    """σ = 0: the risk is least as α → 0 ("lower", λ = 0, risk 0 at every m); a flat line
    (Dw* = 0): the penalty adds no bias, the risk is least as α → ∞ ("upper", λ = inf)."""
    low = tuning.optimal_lambda_asymptotic(50, 2, scaling="none", x=X, **LINE, noise_sd=0.0)
    assert (low.boundary, low.alpha, low.lam, low.risk) == ("lower", 0.0, 0.0, 0.0)
    flat = {"intercept": 0.8, "slope": 0.0}
    up = tuning.optimal_lambda_asymptotic(50, 2, scaling="none", x=X, **flat, noise_sd=SIGMA)
    assert (up.boundary, up.alpha, up.lam) == ("upper", math.inf, math.inf)
    # the risk of the intercept alone: σ²/m
    assert up.risk == pytest.approx(SIGMA**2 / 50, rel=1e-6)


# --- the search: Brent's method, the grid, the boundaries ---------------------------------


def _recorded(f):
    calls = []

    def g(t):
        calls.append(float(t))
        return f(t)

    return g, calls


@pytest.mark.parametrize(
    ("f", "lo", "hi", "xatol"),
    [
        (lambda t: math.cosh(t - 1.234567) + 0.1 * t, 0.0, 3.0, 1e-10),
        (lambda t: math.cosh(t - 1.234567) + 0.1 * t, 0.0, 3.0, 1e-3),
        (lambda t: (t + 0.7) ** 2 * (1 + 0.3 * math.sin(3 * t)), -2.5, 1.5, 1e-8),
        (lambda t: abs(t - 0.37) ** 1.5, -1.0, 2.0, 1e-10),  # not smooth at the minimum
        (lambda t: math.exp(-t) + 0.01 * t, -1.0, 1.0, 1e-10),  # at the upper bound
        (lambda t: (t + 4.0) ** 2, -1.0, 1.0, 1e-10),  # at the lower bound
        # parabolas whose vertex leaves the bracket, which both refuse for golden section
        # (constants found by a search over |t − c|^p + a·sin(ft) for such a step)
        (
            lambda t: abs(t - 0.3698) ** 3.5298 + 0.059 * math.sin(4.3095 * t),
            -1.8095,
            -0.0907,
            1e-10,
        ),  # fmt: skip
    ],
)
def test_brent_evaluates_the_points_scipy_evaluates(f, lo, hi, xatol):
    """brent_bounded is scipy.optimize.minimize_scalar(method="bounded") written out: the
    same golden-section and parabolic steps, so the same points in the same order (to
    round-off), the same stop for the same xatol, and the best of them returned."""
    from scipy import optimize

    f_ref, ref_calls = _recorded(f)
    ref = optimize.minimize_scalar(
        f_ref, bounds=(lo, hi), method="bounded", options={"xatol": xatol}
    )
    f_got, calls = _recorded(f)
    x, fx = tuning.brent_bounded(f_got, lo, hi, xatol=xatol)
    assert len(calls) == len(ref_calls)
    np.testing.assert_allclose(calls, ref_calls, rtol=0, atol=1e-9 * max(1.0, abs(hi)))
    assert abs(x - ref.x) < 1e-9 and fx == f(x)
    assert fx == min(f(c) for c in calls)
    # stopped early, it has evaluated the first points of the full search
    f_few, few = _recorded(f)
    tuning.brent_bounded(f_few, lo, hi, xatol=xatol, maxiter=3)
    assert len(few) < len(calls)
    np.testing.assert_allclose(few, calls[: len(few)], rtol=0, atol=1e-12)


def test_the_search_range_of_log_alpha():
    """α from 1e-8 to min(1e12, 1e6·m), m below 1 counted as 1 (docs/results.md)."""
    for m, top in (
        (0.5, 1e6),
        (1.0, 1e6),
        (40.0, 4e7),
        (10**5, 1e11),
        (10**6, 1e12),
        (10**9, 1e12),
    ):
        lo, hi = tuning._log_alpha_range(m)
        assert lo == pytest.approx(math.log(1e-8), rel=1e-15)
        assert hi == pytest.approx(math.log(top), rel=1e-15), m


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([5.0, 3.0, 1.0, 2.0, 4.0], True),  # falls, then rises
        ([1.0, 2.0, 3.0], True),  # rises only
        ([3.0, 2.0, 1.0], True),  # falls only
        ([2.0, 2.0, 1.0, 1.0, 3.0, 3.0], True),  # flat stretches allowed
        ([3.0, 1.0, 2.0, 0.5], False),  # a rise followed by a fall: two dips
        ([1.0, 2.0, 1.0], False),
        ([np.inf, 3.0, 1.0, 2.0, np.nan], True),  # NaN and inf count as +inf
        ([1.0, np.nan, 0.5], False),  # 1 → +inf → 0.5: a rise, then a fall
        ([np.nan, 4.0, np.inf], True),  # fewer than two finite values
        ([1.0, 1.0 + 1e-12, 1.0], True),  # a wiggle within rel_tol·scale is no rise
        ([1.0, 1.0 + 1e-6, 1.0], False),  # a larger one is
    ],
)
def test_falls_then_rises(values, expected):
    assert tuning._falls_then_rises(np.array(values)) is expected


def test_the_tolerance_of_falls_then_rises_is_relative_to_the_largest_value():
    v = np.array([1000.0, 1000.0 + 1e-7, 1000.0])  # 1e-10 of the scale: a tie
    assert tuning._falls_then_rises(v)
    assert not tuning._falls_then_rises(v, rel_tol=1e-12)
    assert tuning._falls_then_rises(np.array([-1000.0, -1000.0 + 1e-7, -1000.0]))


def test_the_minimiser_refines_the_grid_minimum_with_brent():
    """An interior minimum of a smooth risk in log α is found to Brent's precision, far
    finer than the grid of 201 points, with the risk there and no boundary."""
    lo, hi = tuning._log_alpha_range(100.0)
    t0 = 1.2345  # between grid points

    def objective(a):
        return 2.0 + 0.3 * (np.log(a) - t0) ** 2

    a, f, boundary = tuning._minimise_log_alpha(objective, 5.0, lo, hi)
    assert boundary is None
    assert a == pytest.approx(math.exp(t0), rel=1e-7)
    assert f == pytest.approx(2.0, abs=1e-12)


def test_the_lower_boundary_when_alpha_zero_ties_with_the_minimum():
    """α = 0 is the answer when its value is within rel_tol·|min| of the grid minimum:
    (0, f0, "lower")."""
    lo, hi = tuning._log_alpha_range(10.0)
    t0 = np.linspace(lo, hi, 201)[120]  # on the grid: its minimum is 1

    def objective(a):
        return 1.0 + 0.01 * (np.log(a) - t0) ** 2

    for f0 in (1.0 + 5e-7, 1.0, 0.5):  # within 1e-6 of it, at it, below it
        assert tuning._minimise_log_alpha(objective, f0, lo, hi) == (0.0, f0, "lower")
    a, f, boundary = tuning._minimise_log_alpha(objective, 1.0 + 2e-6, lo, hi)
    assert boundary is None and a == pytest.approx(math.exp(t0), rel=1e-6)
    # the tolerance is rel_tol·|min|: a negative minimum (risk minus a constant) as well
    a, f, boundary = tuning._minimise_log_alpha(lambda a: objective(a) - 2.0, -1.0 + 5e-7, lo, hi)
    assert boundary == "lower" and a == 0.0
    a, f, boundary = tuning._minimise_log_alpha(objective, 1.0 + 5e-7, lo, hi, rel_tol=1e-8)
    assert boundary is None and a == pytest.approx(math.exp(t0), rel=1e-6)


def test_the_upper_boundary_when_the_top_of_the_grid_ties_with_the_minimum():
    """A risk that falls all the way to α = ∞ (within rel_tol at the top of the grid):
    (inf, its value at the top, "upper")."""
    lo, hi = tuning._log_alpha_range(10.0)

    def objective(a):
        return 3.0 + 1.0 / (1.0 + a)  # falls to 3 as α → ∞

    a, f, boundary = tuning._minimise_log_alpha(objective, 4.0, lo, hi)
    assert (a, boundary) == (math.inf, "upper")
    assert f == pytest.approx(3.0 + 1.0 / (1.0 + math.exp(hi)), rel=1e-15)
    # a minimum just inside the top of the grid, deeper than rel_tol: interior
    t_top = hi - 0.5

    def dip(a):
        return 3.0 + 1e-3 * (np.log(a) - t_top) ** 2

    a, f, boundary = tuning._minimise_log_alpha(dip, 10.0, lo, hi)
    assert boundary is None and a == pytest.approx(math.exp(t_top), rel=1e-6)


def test_a_minimum_far_below_the_grid_ends_at_the_lower_boundary_after_a_few_extensions():
    """The risk keeps falling as α → 0 but α = 0 itself is not identifiable (f0 = inf):
    the grid is extended downwards a few times, each time by at least its width, and then
    the bottom of the last grid is returned as the lower boundary."""
    lo, hi = tuning._log_alpha_range(10.0)
    seen = []

    def objective(a):
        seen.append(np.log(a).min())
        return np.log(a)  # falls all the way to α = 0

    a, f, boundary = tuning._minimise_log_alpha(objective, math.inf, lo, hi)
    assert boundary == "lower"
    assert f == pytest.approx(math.log(a), rel=1e-15)
    # three extensions: widths w, w + 1, w + 2 (each from the bottom, one unit of overlap)
    w = hi - lo
    expected = lo - w - (w + 1) - (w + 2)
    assert math.log(a) == pytest.approx(expected, rel=1e-12)
    assert min(seen) == pytest.approx(expected, rel=1e-12)
    # a minimum two widths below the grid is found by the extensions, interior
    t_min = lo - 1.5 * w

    def deep(a):
        return 1.0 + 0.01 * (np.log(a) - t_min) ** 2

    a, f, boundary = tuning._minimise_log_alpha(deep, math.inf, lo, hi)
    assert boundary is None and math.log(a) == pytest.approx(t_min, abs=1e-5)


def test_the_grid_search_looks_at_few_points_where_the_risk_falls_then_rises():
    """Every COARSE-th point, both ends, then the points within COARSE of the best of
    those: the minimum found is that of every point, at about a fifth of the cost."""
    grid = np.linspace(-5.0, 5.0, 201)
    t0 = grid[77] + 0.01
    count = []

    def objective(a):
        count.append(np.size(a))
        return (np.log(a) - t0) ** 2

    vals = tuning._grid_values(objective, grid)
    full = objective(np.exp(grid))
    evaluated = np.flatnonzero(~np.isnan(vals))
    np.testing.assert_allclose(vals[evaluated], full[evaluated], rtol=1e-12)
    assert int(np.nanargmin(vals)) == int(np.argmin(full)) == 77
    coarse = set(range(0, 201, tuning.COARSE)) | {200}
    assert coarse <= set(evaluated)
    best = min(coarse, key=lambda j: abs(grid[j] - t0))  # the coarse point nearest t0
    assert (
        set(evaluated) - coarse
        == set(range(best - tuning.COARSE, best + tuning.COARSE + 1)) - coarse
    )
    assert sum(count[:-1]) < 201 / 4
    # a coarse look that is all NaN stops there
    assert np.all(np.isnan(tuning._grid_values(lambda a: np.full(np.size(a), np.nan), grid)))


# --- the tables across m ------------------------------------------------------------------


def raw_grams(G_u, x: XDistribution = X):
    """The Gram matrices of the raw monomials of x from those of u = (x − c)/s:
    φ(u) = B·φ(x) with u^j = s^(−j)·Σ_i C(j, i)·x^i·(−c)^(j−i), so G_x = B⁻¹G_uB⁻ᵀ."""
    p = G_u.shape[-1]
    c, s = (x.low + x.high) / 2, (x.high - x.low) / 2
    B = np.zeros((p, p))
    for j in range(p):
        for i in range(j + 1):
            B[j, i] = math.comb(j, i) * (-c) ** (j - i) / s**j
    Binv = np.linalg.inv(B)
    return Binv @ G_u @ Binv.T


def gram_risks(G_x, alphas, degree, *, noise_sd, intercept, slope, x=X):
    """raw_risks from the raw Gram matrices of the designs: shape (len(alphas), n)."""
    k = degree
    mu = uniform_raw_moments(x.low, x.high, 2 * k)
    sigma = mu[np.add.outer(np.arange(k + 1), np.arange(k + 1))]
    D = np.diag([0.0] + [1.0] * k)
    w = np.zeros(k + 1)
    w[0], w[1] = intercept, slope
    A = G_x[None] + np.asarray(alphas, dtype=float)[:, None, None, None] * D
    Ainv = np.linalg.inv(A)
    e = np.einsum("arij,rj->ari", Ainv, G_x @ w) - w
    bias = np.einsum("ari,ij,arj->ar", e, sigma, e)
    var = np.einsum("ij,arjk,rkl,arli->ar", sigma, Ainv, G_x, Ainv)
    return bias + noise_sd**2 * var


def orthonormal_risks(G_u, alphas, *, noise_sd=SIGMA, x=X):
    """Exact E[R | X] per design, shape (len(alphas), n), for degree 2 in the coefficients of
    ψ_j = √(2j + 1)·P_j(u) (NumPy's Legendre), the intercept ψ_0 free: G_ψ = L·G_u·Lᵀ for
    ψ = L·φ(u), Σ_ψ = I, and w* = (β0 + β1·c, β1·s/√3, 0)."""
    L = np.zeros((3, 3))
    for j in range(3):
        L[j, : j + 1] = legendre.leg2poly([0] * j + [1]) * math.sqrt(2 * j + 1)
    Gp = L @ G_u @ L.T
    w = np.array(
        [LINE["intercept"] + LINE["slope"] * x.center, LINE["slope"] * x.scale / 3**0.5, 0]
    )
    A = Gp[None] + np.asarray(alphas, dtype=float)[:, None, None, None] * np.diag([0.0, 1.0, 1.0])
    Ainv = np.linalg.inv(A)
    e = np.einsum("arij,rj->ari", Ainv, Gp @ w) - w
    var = np.einsum("arjk,rkl,arlj->ar", Ainv, Gp, Ainv)
    return np.sum(e**2, axis=-1) + noise_sd**2 * var


TABLE_RAW = small_design(
    **{
        "dgp.x": {"distribution": "uniform", "low": -0.5, "high": 2.0},
        "dgp.noise_sd": SIGMA,
        "dgp.intercept": LINE["intercept"],
        "dgp.slope": LINE["slope"],
        "grid.m": [4, 9, 30],  # m = 4 ≤ k + 2: not in the transfer table
        "grid.degree": [2],
        "grid.scaling": ["none", "m", "sqrt-m", "k"],
        "replications": 45,  # fewer than the 400 tuning designs: all of them, one chunk
    }
)
TABLE_RAW["tuning"] = {"reference_m": 9}
LAM_OF = {
    "none": lambda a, m, k: a / m,
    "m": lambda a, m, k: a,
    "sqrt-m": lambda a, m, k: a / math.sqrt(m),
    "k": lambda a, m, k: a * k / m,
}
ALPHA_OF = {
    "none": lambda lam, m, k: m * lam,
    "m": lambda lam, m, k: lam,
    "sqrt-m": lambda lam, m, k: math.sqrt(m) * lam,
    "k": lambda lam, m, k: m * lam / k,
}


@pytest.fixture(scope="module")
def table_design():
    return design_from_dict(TABLE_RAW)


def _risks(design, m, alphas, noise_sd=SIGMA):
    G_x = raw_grams(tuning.design_grams(design, m, 2))
    return gram_risks(G_x, alphas, 2, noise_sd=noise_sd, **LINE)


def test_the_tuning_designs_are_the_first_designs_of_the_simulation(table_design, monkeypatch):
    """design_grams: one Gram matrix per design (all 45 when there are fewer than 400),
    of m points of u in [−1, 1], Hankel in the power sums; the first n are a prefix (drawn
    again, not served from the sums the first draw kept)."""
    monkeypatch.setattr("study.engine.streams._kept_sums", lambda *args: None)
    G = tuning.design_grams(table_design, 9, 2)
    assert G.shape == (45, 3, 3)
    np.testing.assert_array_equal(G[:, 0, 0], 9.0)
    np.testing.assert_array_equal(G[:, 0, 2], G[:, 1, 1])
    np.testing.assert_array_equal(G, np.swapaxes(G, 1, 2))
    assert np.all(np.abs(G) <= 9.0) and np.all(G[:, 2, 2] > 0)
    np.testing.assert_array_equal(tuning.design_grams(table_design, 9, 2, n=10), G[:10])
    # u uniform on [−1, 1]: E[u²] = 1/3, so the mean of Σu² over 45 designs is near m/3
    assert abs(G[:, 1, 1].mean() / 9 - 1 / 3) < 5 * math.sqrt(4 / 45 / 9 / 45)


def test_only_the_chunks_the_designs_need_are_drawn(monkeypatch):
    """The first n designs: chunk 0, then 1, …, and no chunk beyond the n-th design."""
    design = design_from_dict(small_design(**{"seed": 77, "grid.m": [30], "replications": 600}))
    calls = []
    real = tuning.chunk_power_sums
    monkeypatch.setattr(
        tuning,
        "chunk_power_sums",
        lambda *a, **kw: calls.append((a[2], kw["first"])) or real(*a, **kw),
    )
    monkeypatch.setattr(tuning, "_SUMS_CACHE", {})
    G = tuning.design_grams(design, 30, 2, n=256)
    assert G.shape == (256, 3, 3) and calls == [(0, 256)]  # exactly one chunk of 256
    monkeypatch.setattr(tuning, "_SUMS_CACHE", {})
    calls.clear()
    G = tuning.design_grams(design, 30, 2, n=300)
    assert G.shape == (300, 3, 3) and calls == [(0, 300), (1, 44)]


def test_the_tuning_table_has_both_methods_for_every_cell_and_the_rules_of_its_columns(
    table_design,
):
    from study.theory.largem import asymptotic_risk_table

    design = table_design
    table = tuning.tuning_table(design)
    assert list(table.columns) == tuning.TUNING_COLUMNS
    assert len(table) == 3 * 2 * 4
    assert not table[table.method == "conditional"].isna().any().any()
    assert (
        not table.drop(columns=["log_alpha_se", "risk_opt_se", "benefit", "benefit_se"])
        .isna()
        .any()
        .any()
    )
    np.testing.assert_allclose(table.alpha_limit, alpha_limit_reference(2), rtol=1e-9)
    assert set(table.boundary) == {""}
    for (m, method), g in table.groupby(["m", "method"]):
        assert set(g.scaling) == set(design.scaling) and g.degree.eq(2).all()
        a = g.alpha_opt.iloc[0]
        assert g.alpha_opt.eq(a).all() and g.risk_opt.nunique() == 1  # α* under every scaling
        for s, lam in zip(g.scaling, g.lambda_opt, strict=True):
            assert lam == pytest.approx(LAM_OF[s](a, m, 2), rel=1e-14), (m, s)
        if method == "asymptotic":
            # the brute-force minimum of the large-m risk of study.theory.largem (λ = α
            # under `m`)
            def risk_asym(alphas, m=m):
                return asymptotic_risk_table(
                    [m], [2], list(alphas), ["m"], x=design.x, **LINE, noise_sd=SIGMA
                ).risk_asym.to_numpy()

            a_ref, r_ref = brute_force_minimum(risk_asym, 1e-3, 1e3)
            assert a == pytest.approx(a_ref, rel=1e-4), m
            assert g.risk_opt.iloc[0] == pytest.approx(r_ref, rel=1e-10), m
            assert g[["log_alpha_se", "risk_opt_se", "benefit", "benefit_se"]].isna().all().all()
            continue
        assert method == "conditional"
        r = _risks(design, m, [a * math.exp(-0.01), a, a * math.exp(0.01), 0.0])
        mean = r.mean(axis=1)
        assert mean[1] < mean[0] and mean[1] < mean[2]  # a minimum of the exact risk
        assert g.risk_opt.iloc[0] == pytest.approx(mean[1], rel=1e-8)
        n = r.shape[1]
        assert g.risk_opt_se.iloc[0] == pytest.approx(
            np.std(r[1], ddof=1) / math.sqrt(n), rel=1e-6
        )
        assert g.benefit.iloc[0] == pytest.approx(mean[3] / mean[1], rel=1e-6)
        assert g.benefit.iloc[0] > 1 and g.log_alpha_se.iloc[0] > 0 and g.benefit_se.iloc[0] > 0


def test_the_transfer_table_is_the_risk_of_the_kept_lambda_over_the_best(table_design):
    """Tune λ at m0 (conditional α*), keep it, fit at m: α from the scaling, the exact
    risk there over the risk at the best α of m, with the delta-method standard error of
    a ratio of means plus the slope in log α times SE(log α*(m0)); m ≤ k + 2 left out."""
    design = table_design
    table = tuning.tuning_table(design)
    transfer = tuning.transfer_table(design, table)
    assert list(transfer.columns) == tuning.TRANSFER_COLUMNS
    assert len(transfer) == 2 * 2 * 4  # m0, m ∈ {9, 30}, four scalings
    assert set(transfer.m0) == set(transfer.m) == {9, 30}
    keys = list(zip(transfer.degree, transfer.scaling, transfer.m0, transfer.m, strict=True))
    assert keys == sorted(keys)
    cond = table[table.method == "conditional"].set_index(["m", "scaling"])
    h = 0.05
    for _, row in transfer.iterrows():
        lam = cond.loc[(row.m0, row.scaling), "lambda_opt"]
        assert row["lambda"] == lam
        a = ALPHA_OF[row.scaling](lam, row.m, 2)
        assert row.alpha == pytest.approx(a, rel=1e-13)
        a_best = cond.loc[(row.m, "m"), "alpha_opt"]
        r = _risks(design, row.m, [a, a * math.exp(-h), a * math.exp(h), a_best])
        best = r[3].mean()
        assert row.risk == pytest.approx(r[0].mean(), rel=1e-8)
        assert row.risk_opt == pytest.approx(best, rel=1e-8)
        ratio = r[0].mean() / best
        assert row.risk_ratio == pytest.approx(ratio, rel=1e-8)
        assert row.risk_ratio >= 1 - 1e-9
        var_m = np.var(r[0] - ratio * r[3], ddof=1) / r.shape[1] / best**2
        se_m0 = 0.0 if row.m0 == row.m else cond.loc[(row.m0, row.scaling), "log_alpha_se"]
        slope = (r[2].mean() - r[1].mean()) / (2 * h) / best
        se = math.sqrt(var_m + (slope * se_m0) ** 2)
        assert row.risk_ratio_se == pytest.approx(se, rel=1e-5, abs=1e-12)
    same = transfer[transfer.m0 == transfer.m]
    np.testing.assert_allclose(same.risk_ratio, 1.0, atol=1e-12)
    np.testing.assert_allclose(same.risk_ratio_se, 0.0, atol=1e-9)
    # under `m` the kept α stays put; under `none` it grows like m
    up = transfer[(transfer.m0 == 9) & (transfer.m == 30)].set_index("scaling")
    assert up.loc["m", "alpha"] == pytest.approx(cond.loc[(9, "m"), "alpha_opt"], rel=1e-14)
    assert up.loc["none", "alpha"] == pytest.approx(
        30 / 9 * cond.loc[(9, "m"), "alpha_opt"], rel=1e-13
    )
    assert up.loc["none", "risk_ratio"] > up.loc["m", "risk_ratio"]


# --- the theory step (study.theory.step) ---------------------------------------------------


def test_the_risk_curves_are_the_exact_risk_on_the_lambda_grid(table_design):
    """risk_curves: at the m of the design nearest 20, 100, 1000 and 10000 on a log scale
    (of 4, 9 and 30: 30 for each), 81 λ from 1e-5 to 1e3, each scaling's α, and the exact
    risk averaged over the tuning's designs."""
    from study.theory.step import CURVE_LAMBDAS, risk_curves

    np.testing.assert_allclose(CURVE_LAMBDAS, np.logspace(-5, 3, 81), rtol=1e-15)
    curves = risk_curves(table_design)
    assert list(curves.columns) == ["m", "degree", "scaling", "lambda", "risk"]
    assert sorted(set(curves.m)) == [30]  # 20 is nearer 30 than 9 on a log scale
    assert len(curves) == 4 * 81
    for s, g in curves.groupby("scaling"):
        np.testing.assert_allclose(g["lambda"], CURVE_LAMBDAS, rtol=0)
        alphas = [ALPHA_OF[s](lam, 30, 2) for lam in CURVE_LAMBDAS]
        np.testing.assert_allclose(
            g.risk, _risks(table_design, 30, alphas).mean(axis=1), rtol=1e-8
        )
    design = design_from_dict(dict(TABLE_RAW, grid=dict(TABLE_RAW["grid"], m=[4, 9, 150])))
    assert sorted(set(risk_curves(design).m)) == [9, 150]  # 20 → 9; 100, 1000, 10000 → 150


def _cells(with_coef: bool):
    """summary-like rows: two cells (m = 3, λ = 0 unidentifiable for k = 2 under none;
    m = 8, λ = 0.5), one row per coefficient when with_coef."""
    rows = []
    for m, lam, status in ((3, 0.0, "not identifiable"), (8, 0.0, "ok"), (8, 0.5, "ok")):
        for j in range(3) if with_coef else [None]:
            row = {"m": m, "degree": 2, "lambda": lam, "scaling": "none", "basis": "monomial"}
            if with_coef:
                row["coef"] = j
            rows.append(row | {"status": status, "value": 1.0})
    return pd.DataFrame(rows)


def test_add_theory_appends_the_large_m_columns_and_the_finite_moments():
    from study.results import STATUS_NOT_IDENTIFIABLE
    from study.theory.step import add_theory

    assert STATUS_NOT_IDENTIFIABLE == "not identifiable"
    summary, risk = _cells(True), _cells(False)
    keys = ["m", "degree", "lambda", "scaling", "basis"]
    asym = summary[keys + ["coef"]].copy()
    for i, c in enumerate(["bias_asym", "bias_asym1", "bias_asym1_bound", "var_asym"]):
        asym[c] = np.arange(len(asym)) + 10.0 * (i + 1)
    asym["asym_step"], asym["asym_leverage"] = 0.01, 0.06
    asym["extra"] = -1.0  # not a theory column: not copied
    asym = asym.iloc[::-1].reset_index(drop=True)  # merged by key, not by position
    asym_risk = risk[keys].copy()
    asym_risk["risk_asym"] = [5.0, 6.0, 7.0]
    asym_risk["asym_step"], asym_risk["asym_leverage"] = 0.02, 0.12
    s_out, r_out = add_theory(summary, risk, asym, asym_risk)
    theory = [
        "bias_asym",
        "bias_asym1",
        "bias_asym1_bound",
        "var_asym",
        "asym_step",
        "asym_leverage",
    ]
    assert list(s_out.columns) == [*summary.columns, "finite_moments", *theory]
    assert list(r_out.columns) == [
        *risk.columns,
        "finite_moments",
        "risk_asym",
        "asym_step",
        "asym_leverage",
    ]
    # finite moments: r < min_j (m − ⌊k/j⌋)/j at λ = 0 (k = 2: min(m − 2, (m − 1)/2)),
    # inf with a penalty
    np.testing.assert_array_equal(s_out.finite_moments, [1.0] * 3 + [3.5] * 3 + [math.inf] * 3)
    np.testing.assert_array_equal(r_out.finite_moments, [1.0, 3.5, math.inf])
    # the theory of each row's own cell; empty where the cell is not identifiable
    ok = s_out.status == "ok"
    assert s_out.loc[~ok, theory].isna().all().all()
    assert (
        r_out.loc[r_out.status != "ok", ["risk_asym", "asym_step", "asym_leverage"]]
        .isna()
        .all()
        .all()
    )
    back = s_out[ok].merge(asym, on=keys + ["coef"], suffixes=("", "_ref"))
    for c in theory:
        np.testing.assert_array_equal(back[c], back[f"{c}_ref"])
    np.testing.assert_array_equal(r_out.risk_asym, [np.nan, 6.0, 7.0])
    np.testing.assert_array_equal(r_out.asym_leverage, [np.nan, 0.12, 0.12])
    assert s_out.value.eq(1.0).all() and len(s_out) == 9  # the rows kept as they were
    # the logistic family: moments over the data sets with an estimate, inf
    s_log, r_log = add_theory(summary, risk, asym, asym_risk, family="logistic")
    assert np.all(s_log.finite_moments == math.inf) and np.all(r_log.finite_moments == math.inf)
    # a theory with two rows for one cell is refused, not merged into doubled rows
    twice = pd.concat([asym_risk, asym_risk.iloc[[1]]], ignore_index=True)
    with pytest.raises(pd.errors.MergeError):
        add_theory(summary, risk, asym, twice)
    twice = pd.concat([asym, asym.iloc[[0]]], ignore_index=True)
    with pytest.raises(pd.errors.MergeError):
        add_theory(summary, risk, twice, asym_risk)


def test_extend_puts_the_pieces_together_into_the_theory_files(monkeypatch):
    """extend with computed pieces: each frame concatenated over the pieces in order, one
    file per frame there is (a logistic design has tuning.csv alone of the tuning files)."""
    from study.theory import step

    design = design_from_dict(small_design(**{"grid.degree": [1, 2]}))
    seen = {}

    def fake_add_theory(summary, risk, asym, asym_risk, *, family):
        seen.update(asym=asym, asym_risk=asym_risk, family=family)
        return summary.assign(done=1), risk.assign(done=2)

    monkeypatch.setattr(step, "add_theory", fake_add_theory)

    def piece(k, names):
        return {name: pd.DataFrame({"degree": [k, k], "what": [name, name]}) for name in names}

    all_names = [
        "asym",
        "asym_risk",
        "tuning",
        "transfer",
        "curves",
        "matched",
        "sensitivity",
        "bases",
    ]
    computed = [piece(1, all_names), piece(2, all_names)]
    summary, risk = pd.DataFrame({"a": [1]}), pd.DataFrame({"b": [2]})
    s_out, r_out, files = step.extend(design, summary, risk, computed=computed)
    assert s_out.done.eq(1).all() and r_out.done.eq(2).all()
    assert seen["family"] == "gaussian"
    assert list(seen["asym"].degree) == [1, 1, 2, 2] and set(seen["asym"].what) == {"asym"}
    assert set(seen["asym_risk"].what) == {"asym_risk"}
    expected = {
        "tuning.csv": "tuning",
        "transfer.csv": "transfer",
        "risk_curves.csv": "curves",
        "matched.csv": "matched",
        "sensitivity.csv": "sensitivity",
        "bases.csv": "bases",
    }
    assert set(files) == set(expected)
    for file, name in expected.items():
        frame = pd.DataFrame({"degree": [1, 1, 2, 2], "what": [name] * 4})
        assert files[file] == frame.to_csv(index=False, lineterminator="\n"), file
    # the pieces of a logistic design: its tuning.csv alone
    logistic = [
        piece(1, ["asym", "asym_risk", "tuning"]),
        piece(2, ["asym", "asym_risk", "tuning"]),
    ]
    _, _, files = step.extend(design, summary, risk, computed=logistic)
    assert set(files) == {"tuning.csv"}
    assert step.extend.step == "theory" and step.extend.pieces is step.pieces


def test_the_pieces_of_a_design_are_one_per_degree_and_the_minibatch_first():
    from study.theory import step

    design = design_from_dict(small_design(**{"grid.degree": [1, 3]}))
    assert step.pieces(design) == [
        (step.degree_piece, (design, 1)),
        (step.degree_piece, (design, 3)),
    ]
    raw = dict(small_design(**{"grid.degree": [2]}), model={"family": "logistic"})
    del raw["dgp"]["noise_sd"]
    logistic = design_from_dict(raw)
    assert step.pieces(logistic) == [(step.logistic_piece, (logistic, 2))]
    raw = dict(small_design(**{"grid.degree": [2]}), minibatch={"m": 50, "seeds": 1, "steps": 100})
    mb = design_from_dict(raw)
    assert step.pieces(mb) == [(step.minibatch_piece, (mb,)), (step.degree_piece, (mb, 2))]


def test_the_logistic_piece_is_its_large_m_tables_and_tuning_in_every_basis():
    """logistic_piece: the large-m tables (study.theory.logistic) and tuning.csv of the
    expansion for each basis of the design, with its x, line and penalty, stacked."""
    from study.theory.logistic import logistic_tables, logistic_tuning_table
    from study.theory.step import logistic_piece

    raw = small_design(
        **{"grid.m": [30, 90], "grid.degree": [1], "grid.lambda": [0.0, 0.4]},
        **{"grid.scaling": ["m", "none"], "grid.basis": ["monomial", "orthonormal"]},
        **{"dgp.x": {"distribution": "uniform", "low": -0.5, "high": 2.0}, "dgp.intercept": 0.3},
        **{"grid.penalize_intercept": True},
    )
    raw["model"] = {"family": "logistic"}
    del raw["dgp"]["noise_sd"]
    design = design_from_dict(raw)
    piece = logistic_piece(design, 1)
    assert set(piece) == {"asym", "asym_risk", "tuning"}
    kw = dict(x=design.x, intercept=0.3, slope=design.slope, penalize_intercept=True)
    for name, i in (("asym", 0), ("asym_risk", 1)):
        ref = [
            logistic_tables([30, 90], 1, [0.0, 0.4], ["m", "none"], **kw, basis=b)[i]
            for b in ("monomial", "orthonormal")
        ]
        pd.testing.assert_frame_equal(piece[name], pd.concat(ref, ignore_index=True))
    ref = [
        logistic_tuning_table([30, 90], 1, ["m", "none"], **kw, basis=b)
        for b in ("monomial", "orthonormal")
    ]
    pd.testing.assert_frame_equal(piece["tuning"], pd.concat(ref, ignore_index=True))
    assert set(piece["tuning"].scaling) == {"m", "none"}


def test_the_bases_table_has_both_bases_their_limits_and_the_hkb_choice(table_design):
    """bases.csv: α* at m0 and at the largest m in each basis (the conditional tuning of the
    same designs), the standard errors α*·SE(log α*), α*∞, and HKB = σ²·k/Σ_{j≥1} w*_j² of
    the basis's own coefficients, equal to α*∞ in the orthonormal basis."""
    design = table_design
    table = tuning.bases_table(design)
    assert list(table.columns) == tuning.BASES_COLUMNS
    assert list(table.basis) == ["monomial", "orthonormal"]
    assert table.m0.eq(9).all() and table.m.eq(30).all() and table.degree.eq(2).all()
    w1 = LINE["slope"] * X.scale / math.sqrt(3)
    # α*∞: the closed form in raw monomials; Hoerl–Kennard–Baldwin's σ²·k/w*_1² where Σ = I
    limits = {"monomial": alpha_limit_reference(2), "orthonormal": SIGMA**2 * 2 / w1**2}
    for row in table.itertuples():
        for m, a, se in ((9, row.alpha_m0, row.alpha_m0_se), (30, row.alpha_m, row.alpha_m_se)):
            # the same designs (the tuning's), the exact risk of the row's basis
            G_u = tuning.design_grams(design, m, 2)
            if row.basis == "monomial":

                def per_design(alphas, G_u=G_u):
                    return gram_risks(raw_grams(G_u), alphas, 2, noise_sd=SIGMA, **LINE)
            else:

                def per_design(alphas, G_u=G_u):
                    return orthonormal_risks(G_u, alphas)

            a_ref, _ = brute_force_minimum(lambda al: per_design(al).mean(axis=1), 1e-3, 1e3)
            assert a == pytest.approx(a_ref, rel=1e-4), (row.basis, m)
            assert se == pytest.approx(a * log_alpha_se_reference(per_design, a), rel=1e-5)
        assert row.alpha_limit == pytest.approx(limits[row.basis], rel=1e-9)
    mono, ortho = table.iloc[0], table.iloc[1]
    # monomial coefficients of 0.8 − 1.3x: w*_1 = −1.3, w*_2 = 0
    assert mono.hkb == pytest.approx(SIGMA**2 * 2 / 1.3**2, rel=1e-12)
    assert ortho.hkb == pytest.approx(SIGMA**2 * 2 / w1**2, rel=1e-9)
    assert ortho.hkb == pytest.approx(ortho.alpha_limit, rel=1e-9)
    assert abs(mono.hkb / mono.alpha_limit - 1) > 0.05


def test_the_matched_table_of_a_design_with_one_scaling():
    """One scaling: λ tuned at m0 is α*(m0) under `m`, held; at m0 the risk is the best."""
    raw = dict(TABLE_RAW, grid=dict(TABLE_RAW["grid"], scaling=["m"], m=[9, 30]))
    design = design_from_dict(raw)
    table = tuning.tuning_table(design)
    matched = tuning.matched_table(design, table)
    assert list(matched.columns) == tuning.MATCHED_COLUMNS
    assert len(matched) == 2 * 3  # two m, three coefficients
    a9 = table[(table.method == "conditional") & (table.m == 9)].alpha_opt.iloc[0]
    np.testing.assert_allclose(matched["lambda"], a9, rtol=1e-15)
    np.testing.assert_allclose(matched.alpha, a9, rtol=1e-15)
    at9 = matched[matched.m == 9]
    np.testing.assert_allclose(at9.risk_ratio, 1.0, atol=1e-12)
    # at m0 the held α is the tuned one: neither sample of designs moves the ratio
    np.testing.assert_allclose(at9.risk_ratio_se, 0.0, atol=1e-9)
    at30 = matched[matched.m == 30]
    a30 = table[(table.method == "conditional") & (table.m == 30)].alpha_opt.iloc[0]
    r = _risks(design, 30, [a9, a30])
    assert at30.risk.iloc[0] == pytest.approx(r[0].mean(), rel=1e-8)
    assert at30.risk_ratio.iloc[0] == pytest.approx(r[0].mean() / r[1].mean(), rel=1e-8)


def test_a_best_penalty_at_the_upper_boundary_is_compared_where_it_was_found():
    """Three points, degree 5, x on [0, 10]: the risk averaged over the designs still falls
    at the top of the search range (ρ = α/m = 1e6), so α* = ∞ ("upper"), by the direct
    route that tests/test_theory.py holds to 60 digits on such designs. The matched
    comparison and the sensitivity set the risks at m against the one the tuning reports
    there, the risk at the top of the range: finite ratios and standard errors, no warning
    (the risk at α = ∞ itself was inf, and its ratio 0 with an undefined standard error).
    Before the direct risk was computed from a factor of G, rounding at α = 1e-8 gave this
    tuning an interior α* = 1.1e-8."""
    raw = small_design(
        **{
            "dgp.x": {"distribution": "uniform", "low": 0.0, "high": 10.0},
            "grid.degree": [5],
            "grid.m": [3, 40],
            "dgp.noise_sd": 0.7,
        }
    )
    design = design_from_dict(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = tuning.tuning_table(design)
        matched = tuning.matched_table(design, table)
        sensitivity = tuning.sensitivity_table(design)
    at3 = table[(table.method == "conditional") & (table.m == 3)].iloc[0]
    assert at3.boundary == "upper" and math.isinf(at3.alpha_opt)
    rows = matched[(matched.m == 3) & (matched.coef == 0)]
    assert np.isfinite(rows[["risk_ratio", "risk_ratio_se"]].to_numpy()).all()
    np.testing.assert_allclose(rows.risk_ratio, rows.risk / at3.risk_opt, rtol=1e-12)
    assert np.isfinite(sensitivity[["extra_m", "extra_m_se"]].to_numpy()).all()


def test_a_constant_truth_carries_an_infinite_penalty_at_the_intercept_only_risk():
    """Slope 0 (Dw* = 0, the intercept unpenalised): the risk falls all the way to α = ∞,
    so every λ* is the upper boundary, and a λ carried from one m to another is infinite
    too. Every table then compares the fit that the penalty leaves, the mean ȳ, with the
    best, itself: risk σ²/m for every design (closed form), ratio 1 with a finite standard
    error, ŵ0 unbiased with variance σ²/m, and no warning (the risk at α = ∞ itself was
    NaN, and so were the transfer, matched and sensitivity rows)."""
    raw = small_design(
        **{
            "dgp.x": {"distribution": "uniform", "low": -0.5, "high": 2.0},
            "dgp.slope": 0.0,
            "dgp.noise_sd": SIGMA,
            "grid.degree": [2],
            "grid.m": [7, 30],
            "replications": 45,
        }
    )
    raw["tuning"] = {"reference_m": 7}
    design = design_from_dict(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = tuning.tuning_table(design)
        transfer = tuning.transfer_table(design, table)
        matched = tuning.matched_table(design, table)
        sensitivity = tuning.sensitivity_table(design)
    cond = table[table.method == "conditional"]
    assert (cond.boundary == "upper").all() and np.isinf(cond.alpha_opt).all()
    # the risk at the top of the search range (ρ = 1e6) is σ²/m to about 1e-6
    np.testing.assert_allclose(cond.risk_opt, SIGMA**2 / cond.m, rtol=1e-5)
    # from the raw Gram matrices of the same designs: least squares' risk over that at the
    # top of the range (the benefit had been R(0)/R(∞), NaN), and the risk of every λ kept
    # at m there, not at the top of m0's range, 1e6·m0 (6e-11 away, relatively, at m = 30;
    # the two computations agree to 1e-15)
    top, ols = {}, {}
    for m in (7, 30):
        G_x = raw_grams(tuning.design_grams(design, m, 2))
        r = gram_risks(G_x, [0.0, 1e6 * m], 2, noise_sd=SIGMA, intercept=1.0, slope=0.0)
        ols[m], top[m] = r.mean(axis=1)
    for row in cond.itertuples():
        assert row.benefit == pytest.approx(ols[row.m] / top[row.m], rel=1e-9)
        assert np.isfinite(row.benefit_se)
    assert len(transfer) == 2 * 2 * 4  # m0 × m × scaling
    np.testing.assert_allclose(transfer.risk, [top[m] for m in transfer.m], rtol=1e-12)
    np.testing.assert_allclose(transfer.risk, SIGMA**2 / transfer.m, rtol=1e-5)
    np.testing.assert_allclose(transfer.risk_ratio, 1.0, rtol=1e-5)
    assert np.isfinite(transfer.risk_ratio_se).all() and (transfer.risk_ratio_se < 1e-5).all()
    np.testing.assert_allclose(matched.risk, SIGMA**2 / matched.m, rtol=1e-5)
    np.testing.assert_allclose(matched.risk_ratio, 1.0, rtol=1e-5)
    assert np.isfinite(matched.risk_ratio_se).all()
    intercept = matched[matched.coef == 0]
    np.testing.assert_allclose(intercept.variance, SIGMA**2 / intercept.m, rtol=1e-5)
    assert np.abs(matched.bias).max() < 1e-5
    extra = sensitivity[["extra_m", "extra_none"]].to_numpy()
    assert np.abs(extra).max() < 1e-5
    assert np.isfinite(sensitivity[["extra_m_se", "extra_none_se"]].to_numpy()).all()


def test_the_sensitivity_rows_are_the_tuning_at_each_noise_level(table_design):
    """sensitivity.csv at σ = factor × the design's: α* at m0 and the largest m (a minimum
    of the exact risk at that σ), α_m_se = α*·SE(log α*), α*∞ ∝ σ², noise_to_slope = σ/|β₁|,
    and the extra risk at m of λ kept from m0 under `m` (α kept) and `none` (α·m/m0)."""
    design = table_design
    table = tuning.sensitivity_table(design)
    assert list(table.columns) == tuning.SENSITIVITY_COLUMNS
    assert list(table.noise_factor) == [0.25, 0.5, 1.0, 2.0, 4.0]
    np.testing.assert_allclose(table.noise_sd, table.noise_factor * SIGMA, rtol=1e-15)
    np.testing.assert_allclose(table.noise_to_slope, table.noise_sd / 1.3, rtol=1e-15)
    assert table.m0.eq(9).all() and table.m.eq(30).all()
    np.testing.assert_allclose(
        table.alpha_limit,
        [alpha_limit_reference(2, noise_sd=f * SIGMA) for f in table.noise_factor],
        rtol=1e-9,
    )
    row = table[table.noise_factor == 2.0].iloc[0]
    sd = 2 * SIGMA

    def per_design(alphas):
        return _risks(design, 30, alphas, noise_sd=sd)

    a_ref, _ = brute_force_minimum(lambda al: per_design(al).mean(axis=1), 1e-3, 1e3)
    assert row.alpha_m == pytest.approx(a_ref, rel=1e-4)
    assert row.alpha_m_se == pytest.approx(
        row.alpha_m * log_alpha_se_reference(per_design, row.alpha_m), rel=1e-5
    )
    a0 = row.alpha_m0
    r9 = _risks(design, 9, [a0 * 0.99, a0, a0 * 1.01], noise_sd=sd).mean(axis=1)
    assert r9[1] < r9[0] and r9[1] < r9[2]
    r = _risks(design, 30, [a0, a0 * 30 / 9, row.alpha_m], noise_sd=sd).mean(axis=1)
    assert row.extra_m == pytest.approx(r[0] / r[2] - 1, rel=1e-6)
    assert row.extra_none == pytest.approx(r[1] / r[2] - 1, rel=1e-6)
    assert row.extra_m_se > 0 and row.extra_none_se > 0


def test_the_tuning_cache_keeps_the_last_few_results(monkeypatch):
    """A repeated tuning is served from the cache; it holds at most _TUNED_CACHE_SIZE
    results and drops the oldest first."""
    monkeypatch.setattr(tuning, "_TUNED_CACHE", {})
    monkeypatch.setattr(tuning, "_TUNED_CACHE_SIZE", 2)
    rng = np.random.default_rng(3)
    stacks = [draw_designs(rng, 8, 10, 2)[1] for _ in range(3)]
    kw = dict(x=X, **LINE, noise_sd=SIGMA)
    first = tuning.optimal_lambda_conditional(stacks[0], 10, 2, scaling="m", **kw)
    for G in stacks[1:]:
        tuning.optimal_lambda_conditional(G, 10, 2, scaling="m", **kw)
        assert len(tuning._TUNED_CACHE) <= 2
    assert len(tuning._TUNED_CACHE) == 2
    assert first not in tuning._TUNED_CACHE.values()  # the oldest went first
    calls = []
    real = tuning._tune_conditional
    monkeypatch.setattr(tuning, "_tune_conditional", lambda *a: calls.append(1) or real(*a))
    tuning.optimal_lambda_conditional(stacks[2], 10, 2, scaling="none", **kw)
    assert calls == []  # the newest is kept
    again = tuning.optimal_lambda_conditional(stacks[0], 10, 2, scaling="m", **kw)
    assert calls == [1] and again == first


def test_a_risk_without_curvature_at_its_alpha_gives_log_alpha_no_standard_error():
    """SE(log α*) = SD_i(R_i') / (√n · mean_i R_i''): where the mean risk has no curvature
    at α* (here the three points on a line, design by design, with slopes that differ) the
    minimiser's standard error is undefined, NaN, not the infinity a division by 0 gives;
    the risk's own standard error stays."""
    a = np.array([0.5, -1.0, 2.0, 0.25])

    def straight(alphas):
        assert alphas.shape == (3,)
        return np.stack([1.0 + a, np.ones(4), 1.0 - a])  # second difference exactly 0

    se_log_alpha, se_risk = tuning._standard_errors(straight, 2.0)
    assert math.isnan(se_log_alpha)
    assert se_risk == 0.0  # the four designs' risks at α* are all 1
    # with curvature the delta method applies: SD of the slopes over √n and the curvature
    h = tuning.SE_STEP

    def curved(alphas):
        return np.stack([1.0 + a + 0.02, np.ones(4), 1.0 - a + 0.02])

    se_log_alpha, _ = tuning._standard_errors(curved, 2.0)
    slope = -2 * a / (2 * h)
    expected = np.std(slope, ddof=1) / 2.0 / (0.04 / h**2)
    assert se_log_alpha == pytest.approx(expected, rel=1e-12)
