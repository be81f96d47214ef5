"""Tests of study.theory.largem, and of the risk-optimal penalty in study.theory.tuning, against
independent references.

References are numerical integration (scipy.integrate.quad), brute-force Monte Carlo fits by
least squares on an augmented system, and closed forms computed here in the raw basis on
well-conditioned ranges. No expected value is copied from the module's own output.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from study.basis import standard_basis
from study.conditional import SolverDeclined, conditional_risk, conditional_risk_function
from study.design import XDistribution
from study.engine import kernel
from study.fit import fit_polynomial_ridge
from study.theory import largem as theory
from study.theory import tuning

import oracles

UNIT = XDistribution("uniform", low=-1.0, high=1.0)
LINE = {"intercept": 1.0, "slope": 2.0}


# --- independent helpers ------------------------------------------------------------------


def quad_moments(x: XDistribution, n_max: int) -> np.ndarray:
    """E[xⁿ] by numerical integration of xⁿ·pdf(x)."""
    if x.distribution == "uniform":
        pdf = stats.uniform(loc=x.low, scale=x.high - x.low).pdf
        lo, hi = x.low, x.high
    else:
        pdf = stats.norm(loc=x.mean, scale=x.sd).pdf
        lo, hi = x.mean - 40 * x.sd, x.mean + 40 * x.sd
    return np.array(
        [
            integrate.quad(
                lambda t, n=n: t**n * pdf(t), lo, hi, epsabs=1e-13, epsrel=1e-12, limit=200
            )[0]
            for n in range(n_max + 1)
        ]
    )


def uniform_moment_matrix(low: float, high: float, degree: int) -> np.ndarray:
    """Raw Σ_ij = (b^{i+j+1} − a^{i+j+1}) / ((i+j+1)(b − a)) from the closed form."""
    r = np.arange(degree + 1)
    n = r[:, None] + r[None, :]
    return (high ** (n + 1) - low ** (n + 1)) / ((n + 1) * (high - low))


def d_matrix(degree: int, penalize_intercept: bool = False) -> np.ndarray:
    d = np.ones(degree + 1)
    d[0] = 1.0 if penalize_intercept else 0.0
    return np.diag(d)


def w_true(degree: int) -> np.ndarray:
    w = np.zeros(degree + 1)
    w[:2] = LINE["intercept"], LINE["slope"]
    return w


def design_matrix(xs: np.ndarray, degree: int) -> np.ndarray:
    return xs[..., None] ** np.arange(degree + 1)


def ridge_lstsq(Phi: np.ndarray, Y: np.ndarray, alpha: float, D: np.ndarray) -> np.ndarray:
    """Ridge fits for the columns of Y by least squares on [Φ; √α·D] (no normal equations)."""
    aug = np.vstack([Phi, math.sqrt(alpha) * D])
    rhs = np.vstack([Y, np.zeros((D.shape[0], Y.shape[1]))])
    return np.linalg.lstsq(aug, rhs, rcond=None)[0]


def var_mcse(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample variance and its kurtosis-robust MCSE (docs/results.md), along axis 0."""
    R = samples.shape[0]
    dev = samples - samples.mean(axis=0)
    m2 = np.mean(dev**2, axis=0)
    m4 = np.mean(dev**4, axis=0)
    return dev.var(axis=0, ddof=1), np.sqrt((m4 - m2**2) / R)


# --- moments ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_uniform_moments_match_quadrature(seed):
    rng = np.random.default_rng(seed)
    low = rng.uniform(-5, 5)
    x = XDistribution("uniform", low=low, high=low + rng.uniform(0.2, 6))
    np.testing.assert_allclose(
        oracles.raw_moments(x, 12), quad_moments(x, 12), rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize(("mean", "sd"), [(0.0, 1.0), (1.5, 0.7), (-2.0, 3.0)])
def test_normal_moments_match_quadrature(mean, sd):
    x = XDistribution("normal", mean=mean, sd=sd)
    np.testing.assert_allclose(
        oracles.raw_moments(x, 10), quad_moments(x, 10), rtol=1e-8, atol=1e-10
    )


def test_moment_matrix_and_standard_basis_are_consistent_far_from_unit_interval():
    x = XDistribution("uniform", low=0.0, high=10.0)
    degree = 4
    sigma_x = oracles.moment_matrix(x, degree)
    np.testing.assert_allclose(sigma_x, uniform_moment_matrix(0.0, 10.0, degree), rtol=1e-12)
    basis = standard_basis(x, degree, **LINE)
    # Σ_u = BΣBᵀ is the moment matrix of u uniform on [−1, 1]; P = BDBᵀ; w* = Bᵀv*.
    np.testing.assert_allclose(
        basis.B @ sigma_x @ basis.B.T, uniform_moment_matrix(-1, 1, degree), atol=1e-9
    )
    np.testing.assert_allclose(basis.sigma, uniform_moment_matrix(-1, 1, degree), atol=1e-15)
    np.testing.assert_allclose(basis.penalty, basis.B @ d_matrix(degree) @ basis.B.T)
    np.testing.assert_allclose(basis.to_raw(basis.v_star), w_true(degree), atol=1e-12)
    # The fourth-moment matrix E[φφᵀ(φᵀb)²] against quadrature.
    b = np.array([0.3, -1.0, 0.5, 0.2, -0.1])

    def entry(i, j):
        def f(u):
            return u ** (i + j) * np.polyval(b[::-1], u) ** 2 / 2

        return integrate.quad(f, -1, 1, epsabs=0, epsrel=1e-12)[0]

    ref = np.array([[entry(i, j) for j in range(5)] for i in range(5)])
    np.testing.assert_allclose(basis.fourth_moment(b), ref, rtol=1e-10, atol=1e-13)


# --- exact conditional moments -----------------------------------------------------------------


def test_conditional_moments_match_noise_draws_on_fixed_design():
    rng = np.random.default_rng(1)
    m, degree, alpha, noise_sd = 25, 3, 2.5, 0.8
    xs = rng.uniform(-1, 1, m)
    Phi = design_matrix(xs, degree)
    D = d_matrix(degree)
    w = w_true(degree)
    R = 20000
    Y = (Phi @ w)[:, None] + noise_sd * rng.standard_normal((m, R))
    fits = ridge_lstsq(Phi, Y, alpha, D).T  # (R, p)
    mean, cov = oracles.conditional_moments(Phi.T @ Phi, alpha=alpha, w_star=w, noise_sd=noise_sd)
    z_mean = (fits.mean(axis=0) - mean) / (fits.std(axis=0, ddof=1) / math.sqrt(R))
    assert np.all(np.abs(z_mean) < 5), z_mean
    var, se = var_mcse(fits)
    z_var = (var - np.diag(cov)) / se
    assert np.all(np.abs(z_var) < 5), z_var
    # An off-diagonal covariance as well: Cov(ŵ_1, ŵ_3), by its own MCSE.
    prod = (fits[:, 1] - fits[:, 1].mean()) * (fits[:, 3] - fits[:, 3].mean())
    assert abs(prod.mean() - cov[1, 3]) < 5 * prod.std() / math.sqrt(R)
    # The package's fitter agrees with the least-squares fit on one data set.
    lam = alpha / m  # scaling "none": α = m·λ
    np.testing.assert_allclose(
        fit_polynomial_ridge(xs, Y[:, 0], degree=degree, lam=lam, scaling="none"),
        fits[0],
        rtol=1e-8,
        atol=1e-10,
    )


def test_conditional_moments_standardised_basis_maps_back():
    x = XDistribution("uniform", low=0.0, high=3.0)
    degree, alpha = 3, 4.0
    basis = standard_basis(x, degree, **LINE, penalize_intercept=True)
    xs = np.random.default_rng(2).uniform(0, 3, 40)
    G = design_matrix(xs, degree).T @ design_matrix(xs, degree)
    G_u = basis.B @ G @ basis.B.T
    mean_u, cov_u = oracles.conditional_moments(
        G_u, alpha=alpha, w_star=basis.v_star, noise_sd=1.0, penalty=basis.penalty
    )
    mean, cov = oracles.conditional_moments(
        G, alpha=alpha, w_star=w_true(degree), noise_sd=1.0, penalize_intercept=True
    )
    np.testing.assert_allclose(basis.to_raw(mean_u), mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(basis.cov_to_raw(cov_u), cov, rtol=1e-7, atol=1e-10)
    # A stack with one α per design.
    means, covs = oracles.conditional_moments(
        np.stack([G, G]),
        alpha=np.array([alpha, 0.0]),
        w_star=w_true(degree),
        noise_sd=1.0,
        penalize_intercept=True,
    )
    np.testing.assert_allclose(means[0], mean)
    np.testing.assert_allclose(means[1], w_true(degree), atol=1e-9)


# --- large-m theory against Monte Carlo ------------------------------------------------------


def simulate_fits(m, R, degree, alpha, rng, noise_sd=1.0):
    xs = rng.uniform(-1, 1, (R, m))
    ys = LINE["intercept"] + LINE["slope"] * xs + noise_sd * rng.standard_normal((R, m))
    Phi = design_matrix(xs, degree)  # (R, m, p)
    G = np.einsum("rmi,rmj->rij", Phi, Phi)
    b = np.einsum("rmi,rm->ri", Phi, ys)
    return np.linalg.solve(G + alpha * d_matrix(degree), b[..., None])[..., 0]


@pytest.mark.parametrize("scaling", ["none", "m"])
def test_large_m_bias_variance_and_risk_match_monte_carlo(scaling):
    m, R, degree, lam = 2000, 3000, 2, 1.0
    rng = np.random.default_rng(20230218 + len(scaling))
    th = oracles.asymptotic_moments(m, degree, lam, scaling=scaling, x=UNIT, **LINE, noise_sd=1.0)
    assert th.alpha == (m * lam if scaling == "none" else lam)
    fits = simulate_fits(m, R, degree, th.alpha, rng)
    w = w_true(degree)
    err = fits - w
    z_bias = (err.mean(axis=0) - th.bias) / (err.std(axis=0, ddof=1) / math.sqrt(R))
    assert np.all(np.abs(z_bias) < 5), z_bias
    var, se = var_mcse(fits)
    z_var = (var - th.var) / se
    assert np.all(np.abs(z_var) < 5), z_var
    sigma_x = uniform_moment_matrix(-1, 1, degree)
    risk = np.einsum("ri,ij,rj->r", err, sigma_x, err)
    assert abs(risk.mean() - th.risk) < 5 * risk.std(ddof=1) / math.sqrt(R)
    # The table functions give the same numbers.
    tab = theory.asymptotic_table([m], [degree], [lam], [scaling], x=UNIT, **LINE, noise_sd=1.0)
    np.testing.assert_allclose(tab["bias_asym"], th.bias, atol=1e-15)
    np.testing.assert_allclose(tab["var_asym"], th.var, rtol=1e-12)
    np.testing.assert_array_equal(tab["true"], w)
    rtab = theory.asymptotic_risk_table(
        [m], [degree], [lam], [scaling], x=UNIT, **LINE, noise_sd=1.0
    )
    assert rtab["risk_asym"].iloc[0] == pytest.approx(th.risk, rel=1e-12)
    if scaling == "none":
        # Without the sandwich term (noise only) the variance is far off: independent formula.
        shifted_inv = np.linalg.inv(sigma_x + lam * d_matrix(degree))  # (Σ + ρD)⁻¹
        naive = np.diag(shifted_inv @ sigma_x @ shifted_inv) / m
        z_naive = (var - naive) / se
        assert np.max(np.abs(z_naive)) > 20, z_naive
        assert np.max(np.abs(var / naive - 1)) > 0.3


def test_var_at_lambda_zero_is_inverse_moment_matrix():
    degree, m = 3, 500
    tab = theory.asymptotic_table(
        [m], [degree], [0.0], ["none", "m"], x=UNIT, **LINE, noise_sd=2.0
    )
    ref = 4.0 * np.diag(np.linalg.inv(uniform_moment_matrix(-1, 1, degree))) / m
    for s in ("none", "m"):
        sub = tab[tab.scaling == s]
        np.testing.assert_allclose(sub["var_asym"], ref, rtol=1e-10)
        np.testing.assert_allclose(sub["bias_asym"], 0.0, atol=1e-15)


@pytest.mark.parametrize(
    ("x", "m"),
    [
        (XDistribution("uniform", low=-0.5, high=2.0), 25),
        (XDistribution("normal", mean=0.7, sd=1.5), 40),
    ],
)
def test_the_one_over_m_bias_term_matches_the_mean_of_exact_fits(x, m):
    """E[ŵ] = w∞ + b₁ + O(1/m²): the mean over 120,000 data sets of the noise-free fit
    (E[ŵ|X], solved in the raw basis by NumPy) is far closer to bias_asym1 than to
    bias_asym, at a penalty that does not shrink with m (scaling none)."""
    degree, lam, line = 2, 0.4, {"intercept": -0.5, "slope": 1.3}
    tab = theory.asymptotic_table(
        [m], [degree], [lam], ["none"], x=x, **line, noise_sd=0.7, penalize_intercept=False
    )
    rng = np.random.default_rng(11)
    R = 120_000
    xs = (
        rng.uniform(x.low, x.high, (R, m))
        if x.distribution == "uniform"
        else (rng.normal(x.mean, x.sd, (R, m)))
    )
    Phi = xs[..., None] ** np.arange(degree + 1)
    G = np.einsum("rmi,rmj->rij", Phi, Phi)
    w = np.array([line["intercept"], line["slope"], 0.0])
    D = np.diag([0.0, 1.0, 1.0])
    fits = np.linalg.solve(G + m * lam * D, (G @ w)[..., None])[..., 0]  # α = m·λ (none)
    bias, se = fits.mean(axis=0) - w, fits.std(axis=0, ddof=1) / math.sqrt(R)
    b0, b1 = tab.bias_asym.to_numpy(), tab.bias_asym1.to_numpy()
    step = b1 - b0
    assert np.abs(step).max() > 20 * se.max()  # the 1/m term is well resolved
    # within 4 SE plus a remainder an order of m smaller than the term itself
    assert np.all(np.abs(bias - b1) <= 4 * se + 0.25 * np.abs(step).max()), (bias, b0, b1)
    assert np.abs(bias - b0).max() > 0.7 * np.abs(step).max()
    # least squares: no bias and no 1/m term
    ols = theory.asymptotic_table([m], [degree], [0.0], ["none"], x=x, **line, noise_sd=0.7)
    np.testing.assert_allclose(ols.bias_asym1, 0.0, atol=1e-14)


@pytest.mark.parametrize(("lam", "scaling"), [(0.1, "m"), (1.0, "none")])
def test_the_remainder_after_the_one_over_m_term_is_within_three_times_its_size(lam, scaling):
    """Degree 1 on [0, 2] (the worst case found): E[ŵ|X] in closed form for a 2 × 2
    system, averaged over 10⁶ designs, against bias_asym1 ± 3 × bias_asym1_bound (what
    study check allows) at m = 10, 20, 50; without the 1/m term it misses at m = 10."""
    from study.check import STEP_TOL

    x, line = XDistribution("uniform", low=0.0, high=2.0), {"intercept": -1.5, "slope": 0.7}
    w = np.array([line["intercept"], line["slope"]])
    rng = np.random.default_rng(3)
    for m in (10, 20, 50):
        tab = theory.asymptotic_table([m], [1], [lam], [scaling], x=x, **line, noise_sd=2.0)
        alpha = tab.alpha.iloc[0]
        xs = rng.uniform(0.0, 2.0, (1_000_000, m))
        s1, s2 = xs.sum(axis=1), (xs**2).sum(axis=1)
        g0, g1 = m * w[0] + s1 * w[1], s1 * w[0] + s2 * w[1]  # G w*
        det = m * (s2 + alpha) - s1**2  # G + αD, D = diag(0, 1)
        e = np.stack([((s2 + alpha) * g0 - s1 * g1) / det, (m * g1 - s1 * g0) / det], axis=1)
        bias = e.mean(axis=0) - w
        se = e.std(axis=0) / math.sqrt(e.shape[0])
        gap = np.abs(bias - tab.bias_asym1.to_numpy())
        assert np.all(gap <= STEP_TOL * tab.bias_asym1_bound.to_numpy() + 4 * se), (m, gap)
        if m == 10:
            miss = np.abs(bias - tab.bias_asym.to_numpy())
            assert np.any(miss > STEP_TOL * tab.bias_asym1_bound.to_numpy() + 4 * se)


def test_the_leverage_column_is_the_mean_squared_leverage_over_m():
    """asym_leverage = E[h²]/m with h = φᵀ(Σ + ρD)⁻¹φ, here from raw monomials and sample
    moments of 10⁶ draws of x (the column is computed from exact moments in the
    standardised basis, where h is the same number)."""
    x, degree, lam, m = XDistribution("uniform", low=-0.5, high=2.0), 2, 0.3, 50
    tab = theory.asymptotic_table(
        [m], [degree], [lam], ["none"], x=x, intercept=1.0, slope=-2.0, noise_sd=0.7
    )
    xs = np.random.default_rng(4).uniform(-0.5, 2.0, 1_000_000)
    phi = xs[:, None] ** np.arange(degree + 1)
    sigma = np.array(
        [
            [
                (2.0 ** (i + j + 1) - (-0.5) ** (i + j + 1)) / (2.5 * (i + j + 1))
                for j in range(degree + 1)
            ]
            for i in range(degree + 1)
        ]
    )
    h = np.einsum("ni,ij,nj->n", phi, np.linalg.inv(sigma + lam * np.diag([0.0, 1.0, 1.0])), phi)
    value = tab.asym_leverage.iloc[0] * m
    assert value == pytest.approx(np.mean(h**2), rel=5 * np.std(h**2) / np.mean(h**2) / 1000)


# --- regimes of the scalings --------------------------------------------------------------------


def test_scaling_m_bias_times_m_converges_to_first_order_term():
    x = XDistribution("uniform", low=0.0, high=2.0)
    degree, lam = 3, 1.5
    sigma_x = uniform_moment_matrix(0.0, 2.0, degree)
    D = d_matrix(degree)
    target = -lam * np.linalg.solve(sigma_x, D @ w_true(degree))
    ms = [100, 10_000, 1_000_000, 10**8]
    tab = theory.asymptotic_table(ms, [degree], [lam], ["m"], x=x, **LINE, noise_sd=1.0)
    errs = []
    for m in ms:
        scaled = m * tab.loc[tab.m == m, "bias_asym"].to_numpy()
        errs.append(np.max(np.abs(scaled - target)))
    # The remainder is O(1/m): it shrinks a hundredfold per hundredfold m.
    assert errs[-1] < 1e-4 * np.max(np.abs(target))
    for a, b in zip(errs[1:-1], errs[2:], strict=True):
        assert 50 < a / b < 200
    # Consistent: |bias|/SD → 0 like 1/√m.
    big = tab[tab.m == ms[-1]]
    assert np.max(np.abs(big.bias_asym) / np.sqrt(big.var_asym)) < 0.01


@pytest.mark.parametrize(
    ("scaling", "rho_of"), [("none", lambda lam, k: lam), ("k", lambda lam, k: lam / k)]
)
def test_fixed_rho_scalings_keep_a_bias(scaling, rho_of):
    degree, lam = 3, 1.0
    for x, lo, hi in [(UNIT, -1.0, 1.0), (XDistribution("uniform", low=0.0, high=2.0), 0.0, 2.0)]:
        sigma_x = uniform_moment_matrix(lo, hi, degree)
        D = d_matrix(degree)
        rho = rho_of(lam, degree)
        ref = np.linalg.solve(sigma_x + rho * D, sigma_x @ w_true(degree)) - w_true(degree)
        limit = oracles.bias_limit(degree, scaling, lam, x=x, **LINE)
        np.testing.assert_allclose(limit, ref, atol=1e-10)
        tab = theory.asymptotic_table(
            [1000, 10**6], [degree], [lam], [scaling], x=x, **LINE, noise_sd=1.0
        )
        for m in (1000, 10**6):
            np.testing.assert_allclose(tab.loc[tab.m == m, "bias_asym"], ref, atol=1e-10)
        assert abs(ref[1]) > 0.1  # the slope is shrunk however large m is
        if lo == -1.0:
            assert ref[3] > 0.01  # the odd x³ coefficient compensates
            assert abs(ref[2]) < 1e-12
        else:
            assert abs(ref[2]) > 0.01  # on an asymmetric range the even ones are biased too
    assert np.all(oracles.bias_limit(degree, "m", lam, x=UNIT, **LINE) == 0)
    assert np.all(oracles.bias_limit(degree, "sqrt-m", lam, x=UNIT, **LINE) == 0)


def test_sqrt_m_bias_to_sd_ratio_tends_to_constant():
    degree, lam, noise_sd = 2, 2.0, 1.5
    sigma_x_inv = np.linalg.inv(uniform_moment_matrix(-1, 1, degree))
    limit = (
        lam
        * np.abs(sigma_x_inv @ d_matrix(degree) @ w_true(degree))
        / (noise_sd * np.sqrt(np.diag(sigma_x_inv)))
    )
    assert limit[1] > 0.5
    ms = [100, 10_000, 10**8]
    tab = theory.asymptotic_table(
        ms, [degree], [lam], ["sqrt-m"], x=UNIT, **LINE, noise_sd=noise_sd
    )
    ratios = [(np.abs(g.bias_asym) / np.sqrt(g.var_asym)).to_numpy() for _, g in tab.groupby("m")]
    np.testing.assert_allclose(ratios[-1], limit, rtol=1e-3, atol=1e-12)
    assert np.max(np.abs(ratios[0] - limit)) > np.max(np.abs(ratios[1] - limit))


# --- tuned penalty ---------------------------------------------------------------------------


def test_optimal_alpha_limit_degree_2_unit_interval():
    # Σ⁻¹ for [−1, 1], k = 2: (Σ⁻¹)_11 = 3, (Σ⁻¹)_22 = 45/4; t = 57/4, q = β1²·3 = 12.
    got = tuning.optimal_alpha_limit(2, x=UNIT, **LINE, noise_sd=1.0)
    assert got == pytest.approx(1.1875, rel=1e-12)


def test_optimal_alpha_limit_general_formula():
    x = XDistribution("uniform", low=0.5, high=3.0)
    degree, sd = 3, 0.7
    D = d_matrix(degree, penalize_intercept=True)
    sigma_x_inv = np.linalg.inv(uniform_moment_matrix(0.5, 3.0, degree))
    Dw = D @ w_true(degree)
    ref = sd**2 * np.trace(sigma_x_inv @ D) / (Dw @ sigma_x_inv @ Dw)
    got = tuning.optimal_alpha_limit(degree, x=x, **LINE, noise_sd=sd, penalize_intercept=True)
    assert got == pytest.approx(ref, rel=1e-8)


def test_optimal_lambda_large_m_converges_to_limit():
    a_inf = tuning.optimal_alpha_limit(2, x=UNIT, **LINE, noise_sd=1.0)
    m_big = 10**7
    opt_m = tuning.optimal_lambda_asymptotic(m_big, 2, scaling="m", x=UNIT, **LINE, noise_sd=1.0)
    assert opt_m.boundary is None
    assert opt_m.lam == pytest.approx(a_inf, rel=0.02)
    gaps = []
    for m in (100, 10_000, m_big):
        opt = tuning.optimal_lambda_asymptotic(m, 2, scaling="none", x=UNIT, **LINE, noise_sd=1.0)
        assert opt.alpha == pytest.approx(m * opt.lam, rel=1e-12)
        gaps.append(abs(m * opt.lam - a_inf))
    assert gaps[-1] < 0.02 * a_inf
    assert gaps[0] > gaps[1] > gaps[2]


def test_optimal_lambda_asymptotic_is_a_minimum_of_the_risk_table():
    x = XDistribution("uniform", low=0.0, high=10.0)
    for m, degree, scaling in [(20, 3, "m"), (500, 5, "none"), (50, 2, "k")]:
        opt = tuning.optimal_lambda_asymptotic(
            m, degree, scaling=scaling, x=x, **LINE, noise_sd=1.0
        )
        lams = [opt.lam * f for f in (0.8, 0.95, 1.0, 1.05, 1.25)]
        tab = theory.asymptotic_risk_table(
            [m], [degree], lams, [scaling], x=x, **LINE, noise_sd=1.0
        )
        r = tab["risk_asym"].to_numpy()
        assert np.argmin(r) == 2
        assert r[2] == pytest.approx(opt.risk, rel=1e-9)


def test_optimal_lambda_boundaries():
    noiseless = tuning.optimal_lambda_asymptotic(100, 2, scaling="m", x=UNIT, **LINE, noise_sd=0.0)
    assert noiseless.boundary == "lower" and noiseless.alpha == 0.0
    flat = {"intercept": 1.0, "slope": 0.0}  # Dw* = 0: the penalty never adds bias
    assert tuning.optimal_alpha_limit(2, x=UNIT, **flat, noise_sd=1.0) == math.inf
    up = tuning.optimal_lambda_asymptotic(100, 2, scaling="m", x=UNIT, **flat, noise_sd=1.0)
    assert up.boundary == "upper" and up.lam == math.inf


def independent_conditional_risk(Gs, alpha, degree, noise_sd):
    """mean_r (E[ŵ|X_r] − w*)ᵀΣ(…) + σ² tr(Σ A⁻¹GA⁻¹), raw basis on [−1, 1], direct solves."""
    sigma_x = uniform_moment_matrix(-1, 1, degree)
    w = w_true(degree)
    out = []
    for G in Gs:
        A = G + alpha * d_matrix(degree)
        d = np.linalg.solve(A, G @ w) - w
        Ainv = np.linalg.inv(A)
        out.append(d @ sigma_x @ d + noise_sd**2 * np.trace(sigma_x @ Ainv @ G @ Ainv))
    return float(np.mean(out))


def test_optimal_lambda_conditional_minimises_exact_conditional_risk():
    rng = np.random.default_rng(7)
    m, degree, R = 30, 3, 200
    V = design_matrix(rng.uniform(-1, 1, (R, m)), degree)
    Gs = np.einsum("rmi,rmj->rij", V, V)
    opt = tuning.optimal_lambda_conditional(
        Gs, m, degree, scaling="none", x=UNIT, **LINE, noise_sd=1.0
    )
    assert opt.boundary is None
    assert opt.alpha == pytest.approx(m * opt.lam, rel=1e-12)
    basis = standard_basis(UNIT, degree, **LINE)
    grid = opt.alpha * np.array([0.5, 0.9, 1.0, 1.1, 2.0])
    ref = np.array([independent_conditional_risk(Gs, a, degree, 1.0) for a in grid])
    got = conditional_risk(Gs, grid, basis=basis, noise_sd=1.0)
    np.testing.assert_allclose(got, ref, rtol=1e-9)
    assert np.argmin(ref) == 2
    assert opt.risk == pytest.approx(ref[2], rel=1e-9)


def test_optimal_lambda_conditional_agrees_with_large_m_theory():
    rng = np.random.default_rng(8)
    m, degree, R = 2000, 2, 100
    V = design_matrix(rng.uniform(-1, 1, (R, m)), degree)
    Gs = np.einsum("rmi,rmj->rij", V, V)
    cond = tuning.optimal_lambda_conditional(
        Gs, m, degree, scaling="m", x=UNIT, **LINE, noise_sd=1.0
    )
    asym = tuning.optimal_lambda_asymptotic(m, degree, scaling="m", x=UNIT, **LINE, noise_sd=1.0)
    assert cond.lam == pytest.approx(asym.lam, rel=0.05)


def test_conditional_risk_handles_singular_designs():
    # m = 2 < k + 1: G is singular; α > 0 is still fine, α = 0 is not identifiable.
    basis = standard_basis(UNIT, 2, **LINE)
    xs = np.array([[-0.5, 0.5]])
    V = design_matrix(xs, 2)
    Gs = np.einsum("rmi,rmj->rij", V, V)
    r = conditional_risk(Gs, np.array([0.0, 1.0]), basis=basis, noise_sd=1.0)
    assert r[0] == math.inf
    assert r[1] == pytest.approx(independent_conditional_risk(Gs, 1.0, 2, 1.0), rel=1e-9)


def test_fourth_moment_normal_matches_quadrature():
    x = XDistribution("normal", mean=0.5, sd=2.0)
    basis = standard_basis(x, 2, **LINE)
    b = np.array([0.2, -0.7, 0.4])
    pdf = stats.norm.pdf

    def entry(i, j):
        def f(u):
            return u ** (i + j) * np.polyval(b[::-1], u) ** 2 * pdf(u)

        return integrate.quad(f, -40, 40, epsabs=1e-13, epsrel=1e-12, limit=200)[0]

    ref = np.array([[entry(i, j) for j in range(3)] for i in range(3)])
    np.testing.assert_allclose(basis.fourth_moment(b), ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(basis.sigma, [[1, 0, 1], [0, 1, 0], [1, 0, 3]], atol=0)


def test_degree_1_conditional_optimum_is_noise_over_slope_squared():
    # For a line with unpenalised intercept, E[R|X] = σ²/m + Var(x)·MSE(ŵ1|X) and
    # MSE(ŵ1|X) = (σ²Sxx + α²β1²)/(Sxx + α)² is minimised at α = σ²/β1² for every design.
    x = XDistribution("uniform", low=0.0, high=3.0)
    sd, m = 1.5, 7
    u = (np.random.default_rng(9).uniform(0.0, 3.0, (50, m)) - x.center) / x.scale
    V = design_matrix(u, 1)
    Gs = np.einsum("rmi,rmj->rij", V, V)
    opt = tuning.optimal_lambda_conditional(Gs, m, 1, scaling="m", x=x, **LINE, noise_sd=sd)
    assert opt.alpha == pytest.approx(sd**2 / LINE["slope"] ** 2, rel=1e-6)
    lim = tuning.optimal_alpha_limit(1, x=x, **LINE, noise_sd=sd)
    assert lim == pytest.approx(sd**2 / LINE["slope"] ** 2, rel=1e-12)


def test_optimal_lambda_conditional_interior_despite_ill_conditioned_designs():
    # m = 10 points for a degree-7 fit: the risk at α = 0 is huge, the optimum interior.
    rng = np.random.default_rng(10)
    m, degree = 10, 7
    V = design_matrix(rng.uniform(-1, 1, (300, m)), degree)
    Gs = np.einsum("rmi,rmj->rij", V, V)
    opt = tuning.optimal_lambda_conditional(
        Gs, m, degree, scaling="m", x=UNIT, **LINE, noise_sd=1.0
    )
    assert opt.boundary is None and 0.01 < opt.alpha < 100
    grid = np.logspace(-3, 6, 91)
    ref = [independent_conditional_risk(Gs, a, degree, 1.0) for a in grid[::10]]
    assert opt.risk <= min(ref) * (1 + 1e-9)


@pytest.mark.parametrize(("low", "high", "degree"), [(0.0, 10.0, 10), (4.2, 4.6, 5)])
def test_large_m_theory_far_from_unit_interval_matches_high_precision(low, high, degree):
    # The raw-basis sandwich formula evaluated in 60-digit arithmetic: Σ here has a condition
    # number far beyond double precision, so this checks the standardised-basis numerics.
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 60
    a, b = mp.mpf(low), mp.mpf(high)
    mu = [(b ** (n + 1) - a ** (n + 1)) / ((n + 1) * (b - a)) for n in range(4 * degree + 1)]
    p = degree + 1
    sigma_x = mp.matrix([[mu[i + j] for j in range(p)] for i in range(p)])
    w = mp.matrix([1, 2] + [0] * (p - 2))
    m, lam, sd = 1000, 1.0, 1.0  # scaling "none": ρ = λ
    A = sigma_x + lam * mp.diag([0] + [1] * degree)
    Ainv = A**-1
    bias = Ainv * (sigma_x * w) - w
    q2 = [
        mp.fsum(bias[k] * bias[n - k] for k in range(max(0, n - degree), min(n, degree) + 1))
        for n in range(2 * degree + 1)
    ]
    E4 = mp.matrix(
        [
            [mp.fsum(q2[n] * mu[i + j + n] for n in range(2 * degree + 1)) for j in range(p)]
            for i in range(p)
        ]
    )
    sigma_b = sigma_x * bias
    meat = sd**2 * sigma_x + E4 - sigma_b * sigma_b.T
    cov = Ainv * meat * Ainv / m
    risk = (bias.T * sigma_x * bias)[0] + mp.fsum((sigma_x * cov)[i, i] for i in range(p))
    x = XDistribution("uniform", low=low, high=high)
    th = oracles.asymptotic_moments(m, degree, lam, scaling="none", x=x, **LINE, noise_sd=sd)
    ref_bias = np.array([float(v) for v in bias])
    ref_var = np.array([float(cov[i, i]) for i in range(p)])
    np.testing.assert_allclose(th.bias, ref_bias, rtol=1e-6, atol=1e-7 * np.abs(ref_bias).max())
    np.testing.assert_allclose(th.var, ref_var, rtol=1e-5)
    assert th.risk == pytest.approx(float(risk), rel=1e-8)


@pytest.mark.parametrize(
    ("low", "high", "degree", "m"), [(-1, 1, 3, 20), (0, 10, 5, 50), (-1, 3, 2, 200)]
)
def test_conditional_risk_pencil_equals_direct_solves(low, high, degree, m):
    """The fast paths of conditional_risk (one factorisation per design, in NumPy and
    through the compiled kernel) against the direct solve per α that they replace; σ ≠ 1,
    so that a variance scaled by σ rather than σ² shows."""
    x = XDistribution("uniform", low=float(low), high=float(high))
    basis = standard_basis(x, degree, intercept=1.0, slope=2.0)
    rng = np.random.default_rng(degree)
    u = rng.uniform(-1, 1, (203, m))
    V = u[..., None] ** np.arange(degree + 1)
    G = np.einsum("rmi,rmj->rij", V, V)
    alphas = np.r_[0.0, np.logspace(-4, 4, 30)]
    kw = dict(basis=basis, noise_sd=1.7, per_design=True)
    fast = conditional_risk_function(G, **kw, solver="pencil")
    compiled = conditional_risk_function(G, **kw, solver="compiled")
    direct = conditional_risk_function(G, **kw, solver="direct")
    np.testing.assert_allclose(fast(alphas), direct(alphas), rtol=1e-9)
    np.testing.assert_allclose(compiled(alphas), fast(alphas), rtol=1e-12)
    _one_alpha_at_a_time_and_read_only(compiled, alphas, kernel.loaded().pencil_risk)
    # and conditional_risk takes the compiled path
    np.testing.assert_array_equal(
        conditional_risk(G, alphas, basis=basis, noise_sd=1.7), compiled(alphas).mean(axis=-1)
    )


def test_conditional_risk_pencil_declines_where_it_is_inaccurate():
    far = standard_basis(XDistribution("uniform", low=4.0, high=5.0), 3, intercept=1.0, slope=2.0)
    G = np.tile(np.eye(4), (5, 1, 1))
    for solver in ("pencil", "compiled"):
        with pytest.raises(SolverDeclined):
            conditional_risk_function(G, basis=far, noise_sd=1.0, solver=solver)
    near = standard_basis(
        XDistribution("uniform", low=-1.0, high=1.0), 3, intercept=1.0, slope=2.0
    )
    singular = np.zeros((5, 4, 4))
    singular[:, 0, 0] = 2.0  # m ≤ k: G singular
    for solver in ("pencil", "compiled"):
        with pytest.raises(SolverDeclined):
            conditional_risk_function(singular, basis=near, noise_sd=1.0, solver=solver)
    # "auto" then solves per α: infinite risk at α = 0 (not identifiable), finite above
    risk = conditional_risk_function(singular, basis=near, noise_sd=1.0)(np.array([0.0, 1.0]))
    assert risk[0] == math.inf and np.isfinite(risk[1])


def _risk_in_60_digits(u: np.ndarray, alpha: float, basis, noise_sd: float) -> float:
    """E[R|X] of one design from its points u, in 60-digit arithmetic: G = ΦᵀΦ of exact rank
    (min(m, p)), A = G + αP, (A⁻¹Gv* − v*)ᵀΣ(…) + σ²·tr(Σ·A⁻¹GA⁻¹)."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 60
    p = basis.sigma.shape[0]
    Phi = mp.matrix([[mp.mpf(float(v)) ** j for j in range(p)] for v in u])
    G = Phi.T * Phi
    P, sigma = mp.matrix(basis.penalty.tolist()), mp.matrix(basis.sigma.tolist())
    v_star = mp.matrix(basis.v_star.tolist())
    Ainv = (G + mp.mpf(float(alpha)) * P) ** -1
    d = Ainv * G * v_star - v_star
    var = Ainv * G * Ainv
    trace = mp.fsum((sigma * var)[i, i] for i in range(p))
    return float((d.T * sigma * d)[0] + mp.mpf(noise_sd) ** 2 * trace)


@pytest.mark.parametrize(
    ("low", "high", "m", "degree", "name"),
    [
        (-1.0, 1.0, 5, 7, "orthonormal"),
        (-1.0, 1.0, 3, 5, "orthonormal"),
        (-0.5, 2.0, 5, 7, "monomial"),
        (4.0, 5.0, 12, 3, "monomial"),
    ],
)
def test_the_direct_risk_matches_60_digits_down_to_tiny_alpha(low, high, m, degree, name):
    """Where the pencil does not serve (m ≤ k: G singular; or an x range far from the
    origin), the risk by direct solves, in NumPy and through the compiled kernel, against
    60 digits from the points, over the tuning's whole range of α. Built from G itself,
    A⁻¹GA⁻¹ carried G's rounding-level part in its null space times 1/α²: off by a factor
    of 3,600 at α = 1e-8 and by half at 1e-6 (m = 5, degree 7, orthonormal basis)."""
    x = XDistribution("uniform", low=low, high=high)
    basis = standard_basis(x, degree, intercept=1.0, slope=2.0, basis=name)
    u = np.random.default_rng(m + degree).uniform(-1, 1, (3, m))
    G = np.einsum("rmi,rmj->rij", *(2 * [u[..., None] ** np.arange(degree + 1)]))
    alphas = np.array([1e-8, 1e-6, 1e-4, 1e-2, 1.0, 1e2, 1e4])
    ref = np.array([[_risk_in_60_digits(v, a, basis, 1.3) for v in u] for a in alphas])
    tolerance = np.where(alphas < 1e-6, 1e-3, np.where(alphas < 1e-2, 1e-5, 1e-8))[:, None]
    for solver in ("direct", "auto"):
        got = conditional_risk_function(
            G, basis=basis, noise_sd=1.3, per_design=True, solver=solver
        )
        assert np.all(np.abs(got(alphas) / ref - 1) < tolerance), solver


def _fit_in_60_digits(u: np.ndarray, y: np.ndarray, alpha: float, basis) -> np.ndarray:
    """ŵ = BᵀA⁻¹Φᵀy of one data set from its points u and responses y, in 60 digits."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 60
    p = basis.sigma.shape[0]
    Phi = mp.matrix([[mp.mpf(float(v)) ** j for j in range(p)] for v in u])
    A = Phi.T * Phi + mp.mpf(float(alpha)) * mp.matrix(basis.penalty.tolist())
    v = A**-1 * (Phi.T * mp.matrix([float(t) for t in y]))
    w = mp.matrix(basis.B.tolist()).T * v
    return np.array([float(w[j]) for j in range(p)])


def _variance_in_60_digits(u: np.ndarray, alpha: float, basis, noise_sd: float) -> np.ndarray:
    """Var[ŵ_j|X] = σ²·diag(BᵀA⁻¹GA⁻¹B) of one design from its points u, in 60 digits."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 60
    p = basis.sigma.shape[0]
    Phi = mp.matrix([[mp.mpf(float(v)) ** j for j in range(p)] for v in u])
    G = Phi.T * Phi
    Ainv = (G + mp.mpf(float(alpha)) * mp.matrix(basis.penalty.tolist())) ** -1
    B = mp.matrix(basis.B.tolist())
    cov = B.T * (Ainv * G * Ainv) * B
    return np.array([float(mp.mpf(noise_sd) ** 2 * cov[j, j]) for j in range(p)])


@pytest.mark.parametrize(
    ("low", "high", "m", "degree", "name"),
    [
        (-1.0, 1.0, 5, 7, "orthonormal"),
        (-0.5, 2.0, 5, 7, "monomial"),
        (-1.0, 1.0, 3, 5, "orthonormal"),
        (4.0, 5.0, 3, 3, "monomial"),  # far from 0: no pencil, the direct route alone
    ],
)
def test_the_engines_conditional_moments_match_60_digits_for_m_at_most_k(
    low, high, m, degree, name
):
    """The engine's Rao–Blackwell columns on data sets of m ≤ k points (G singular), by each
    of its routes (compiled kernel, NumPy pencil, direct solves), against 60 digits from the
    points. Computed as 1 − α₀Λ (pencil) or through A⁻¹GA⁻¹ (direct), G's rounding in its
    null space came back times about 1/α: Var[ŵ|X] off by a factor of 10⁵ at α = 1e-8, of
    16 at 1e-6 and by 3e-3 at 1e-4 (orthonormal, m = 5, degree 7)."""
    from study.basis import hankel_index
    from study.conditional import batch_moments, quantities

    x = XDistribution("uniform", low=low, high=high)
    basis = standard_basis(x, degree, intercept=1.0, slope=2.0, basis=name)
    rng = np.random.default_rng(m + 10 * degree)
    u, y = rng.uniform(-1, 1, (5, m)), rng.normal(size=(5, m))
    S = np.stack([(u**j).sum(axis=1) for j in range(2 * degree + 1)], axis=1)
    T = np.stack([(u**j * y).sum(axis=1) for j in range(degree + 1)], axis=1)
    alphas = np.array([1e-8, 1e-6, 1e-4, 1e-2, 1.0])
    var = np.array([[_variance_in_60_digits(v, a, basis, 1.3) for a in alphas] for v in u])
    risk = np.array([[_risk_in_60_digits(v, a, basis, 1.3) for a in alphas] for v in u])
    pairs = zip(u, y, strict=True)
    fits = np.array([[_fit_in_60_digits(v, t, a, basis) for a in alphas] for v, t in pairs])
    routes = ["direct"] + (["pencil", "compiled"] if basis.use_pencil else [])
    for route in routes:
        if route == "compiled":  # the kernel gives the batch's means, and the fits it keeps
            got = batch_moments(S, T, basis, alphas, 1.3, keep=5, solver="compiled")
            v_got, r_got = got.coef.mean[..., 4][None], got.risk.mean[..., 2][None]
            v_ref, r_ref = var.mean(axis=0)[None], risk.mean(axis=0)[None]
            w_got = got.w_kept
        else:
            coef, q_risk, w_got = quantities(
                S[:, hankel_index(degree)], T, basis, alphas, 1.3, solver=route
            )
            v_got, r_got, v_ref, r_ref = coef[..., 4], q_risk[..., 2], var, risk
        if route != "direct":  # ŵ itself, through Wᵀb = 0 in G's null space, at small α
            # (far above the shift α₀ = 1e-8 the pencil's conditioning costs up to 1e-7)
            small = alphas <= 1e-4
            scale = np.abs(fits[:, small]).max(axis=-1, keepdims=True)
            assert np.all(np.abs(w_got[:, small] - fits[:, small]) <= 1e-9 * scale), route
        # the direct route's solves keep a first-order part (2e-3 at α = 1e-8, 2e-5 at
        # 1e-6 on the first design): 1e-2 still catches A⁻¹GA⁻¹ (10⁵ and 16 there)
        tol = np.where(alphas < 1e-5, 1e-2, 1e-6) if route == "direct" else 1e-6 + 0 * alphas
        assert np.all(np.abs(v_got / v_ref - 1) < tol[:, None]), route
        assert np.all(np.abs(r_got / r_ref - 1) < tol), route


def test_the_compiled_direct_risk_is_the_numpy_one_and_serves_auto():
    """On singular designs (m ≤ k) the kernel's Cholesky route equals NumPy's batched solves
    to rounding, inf at α = 0 on each singular design only; "auto" takes it; one α at a
    time gives the numbers of all at once, and a read-only α array compiles nothing new."""
    basis = standard_basis(
        XDistribution("uniform", low=-0.5, high=2.0), 5, intercept=1.0, slope=2.0
    )
    rng = np.random.default_rng(4)
    # 40 designs of 4 points (singular for degree 5), then 2 of 9 points (not singular)
    V = [rng.uniform(-1, 1, (n, m))[..., None] ** np.arange(6) for n, m in ((40, 4), (2, 9))]
    G = np.concatenate([np.einsum("rmi,rmj->rij", v, v) for v in V])
    alphas = np.r_[0.0, np.logspace(-6, 6, 25)]
    kw = dict(basis=basis, noise_sd=0.7, per_design=True)
    direct = conditional_risk_function(G, **kw, solver="direct")(alphas)
    auto = conditional_risk_function(G, **kw)
    np.testing.assert_allclose(auto(alphas)[1:], direct[1:], rtol=1e-7)
    assert np.all(np.isinf(auto(alphas)[0, :40])) and np.all(np.isfinite(auto(alphas)[0, 40:]))
    np.testing.assert_allclose(auto(alphas)[0, 40:], direct[0, 40:], rtol=1e-9)
    _one_alpha_at_a_time_and_read_only(auto, alphas, kernel.loaded().direct_risk)


def _one_alpha_at_a_time_and_read_only(risk, alphas, compiled):
    """One α at a time (as the tuning asks) gives the numbers of all of them at once, and a
    read-only array of α is no other type to numba: the kernel as loaded serves it."""
    one = np.stack([risk(np.array([a]))[0] for a in alphas])
    np.testing.assert_array_equal(one, risk(alphas))
    frozen = alphas.copy()
    frozen.flags.writeable = False
    np.testing.assert_array_equal(risk(frozen), risk(alphas))
    assert len(compiled.signatures) == 1


@pytest.mark.parametrize(
    ("f", "lo", "hi"),
    [
        (lambda t: (t - 0.3) ** 2, -1.0, 2.0),
        (lambda t: math.cosh(t - 1.234567) + 0.1 * t, 0.0, 3.0),
        (lambda t: abs(t - 0.5) ** 1.5, 0.1, 0.9),  # not smooth at the minimum
        (lambda t: t**4 - 2 * t**2 + 0.3 * t, -2.0, 0.0),
        (lambda t: (t - 5.0) ** 2, 0.0, 1.0),  # at the upper bound
    ],
)
def test_the_bounded_minimiser_agrees_with_scipy(f, lo, hi):
    """The tuning's Brent minimiser against scipy.optimize.minimize_scalar(bounded), the
    reference it replaces (to keep scipy.optimize out of the workers' start)."""
    from scipy import optimize

    from study.theory.tuning import brent_bounded

    x, fx = brent_bounded(f, lo, hi)
    ref = optimize.minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
    assert abs(x - ref.x) < 3e-10 and fx <= ref.fun + 1e-15


# --- the uncertainty of the tuned penalty ---------------------------------------------------


def test_the_standard_error_of_log_alpha_star_matches_its_spread_over_independent_designs():
    """The delta-method SEs of log α* and of the penalty's benefit risk(0)/risk(α*) (from
    the 400 designs they are computed on) against their SD over 20 independent sets of 400
    designs, drawn here with NumPy: the SD of 20 values is within ±16 % of the truth
    (1 SD), so a ratio outside [0.6, 1.6] is a bug."""
    x = XDistribution("uniform", low=-0.5, high=2.0)
    rng = np.random.default_rng(8)
    for m, degree in ((20, 2), (150, 3)):
        logs, ses, gains, gain_ses = [], [], [], []
        for _ in range(20):
            xs = rng.uniform(x.low, x.high, (400, m))
            u = (xs - x.center) / x.scale
            phi = u[..., None] ** np.arange(degree + 1)
            grams = np.einsum("rmi,rmj->rij", phi, phi)
            tuned = tuning.optimal_lambda_conditional(
                grams, m, degree, scaling="none", x=x, intercept=0.5, slope=-1.5, noise_sd=1.3
            )
            assert tuned.boundary is None
            logs.append(math.log(tuned.alpha))
            ses.append(tuned.log_alpha_se)
            gains.append(tuned.benefit)  # risk(λ = 0)/risk(λ*), > 1
            gain_ses.append(tuned.benefit_se)
        ratio = np.std(logs, ddof=1) / np.mean(ses)
        assert 0.6 < ratio < 1.6, (m, degree, np.std(logs, ddof=1), np.mean(ses))
        assert min(gains) > 1
        ratio = np.std(gains, ddof=1) / np.mean(gain_ses)
        assert 0.6 < ratio < 1.6, (m, degree, np.std(gains, ddof=1), np.mean(gain_ses))


def test_the_standard_error_of_a_transfer_ratio_matches_its_spread_over_seeds():
    """risk_ratio_se (designs of m and, through λ*, of m0) against the SD of the ratio over
    20 seeds, each tuning on its own designs: within [0.6, 1.6] as above."""
    from study.design import design_from_dict

    from conftest import small_design

    ratios, ses = [], []
    for seed in range(20):
        raw = small_design(
            **{"seed": 300 + seed, "grid.m": [20, 200], "grid.degree": [2], "grid.lambda": [0.1]},
            **{"dgp.noise_sd": 0.7, "replications": 400},
        )
        design = design_from_dict(raw)
        transfer = tuning.transfer_table(design, tuning.tuning_table(design))
        row = transfer[(transfer.m0 == 20) & (transfer.m == 200) & (transfer.scaling == "none")]
        ratios.append(row.risk_ratio.iloc[0])
        ses.append(row.risk_ratio_se.iloc[0])
    assert np.mean(ratios) > 1.2  # keeping λ of m = 20 costs something at m = 200
    ratio = np.std(ratios, ddof=1) / np.mean(ses)
    assert 0.6 < ratio < 1.6, (np.std(ratios, ddof=1), np.mean(ses))


def test_the_tuning_designs_are_drawn_once_for_every_degree_with_the_same_numbers(monkeypatch):
    """Within sums_of_degree(K) the Gram matrices of a lower degree come from the draw for
    K, bit for bit equal to a draw of their own; the designs are drawn once."""
    from study.design import design_from_dict

    from conftest import small_design

    design = design_from_dict(
        small_design(**{"seed": 41, "grid.m": [30], "grid.degree": [1, 5], "replications": 500})
    )
    # each degree's designs drawn, not served from the sums kept by a draw before
    monkeypatch.setattr("study.engine.streams._kept_sums", lambda *args: None)
    own = {k: tuning.design_grams(design, 30, k, n=300) for k in (1, 5)}
    tuning._SUMS_CACHE.clear()
    calls = []
    real = tuning.chunk_power_sums
    monkeypatch.setattr(
        tuning, "chunk_power_sums", lambda *a, **kw: calls.append(a[3]) or real(*a, **kw)
    )
    with tuning.sums_of_degree(5):
        shared = {k: tuning.design_grams(design, 30, k, n=300) for k in (1, 5)}
    assert calls == [5, 5]  # two chunks (256 + 44 designs), both drawn to degree 5, once
    for k in (1, 5):
        np.testing.assert_array_equal(shared[k], own[k], strict=True)


def test_every_theory_table_names_its_cells_in_full():
    """The tables of one degree's theory piece (large-m, tuning, transfer, risk curves,
    matched, sensitivity, bases): every key column is filled, holds the piece's degree and
    only values of the design (a key written under another name would leave it empty), and
    every scaling, m and basis of the design appears where the table is per cell."""
    from study.design import design_from_dict
    from study.theory.step import degree_piece

    from conftest import small_design

    raw = small_design(
        **{"grid.m": [12, 40, 120], "grid.degree": [2, 3], "grid.lambda": [0.0, 0.3]},
        **{"grid.basis": ["monomial", "orthonormal"]},
    )
    design = design_from_dict(raw)
    piece = degree_piece(design, 3)
    keys = ["m", "m0", "degree", "scaling", "method", "basis", "coef", "noise_factor", "lambda"]
    for name, frame in piece.items():
        assert len(frame) > 0, name
        present = [k for k in keys if k in frame.columns]
        assert "degree" in present, name
        assert not frame[present].isna().any().any(), (name, frame[present].isna().sum())
        # a value written under another name leaves its column empty
        empty = [c for c in frame.columns if frame[c].isna().all()]
        assert not empty, (name, empty)
        assert set(frame.degree) == {3}, name
        if "scaling" in frame.columns:
            assert set(frame.scaling) == set(design.scaling), name
        for col in ("m", "m0"):
            if col in frame.columns:
                assert set(frame[col]) <= set(design.m) | {design.reference_m}, (name, col)
    for name in ("asym", "asym_risk"):
        assert set(piece[name].basis) == set(design.basis)
        assert set(piece[name].m) == set(design.m)


@pytest.mark.parametrize("basis", ["monomial", "orthonormal"])
def test_the_coarse_then_fine_grid_search_ends_where_the_full_grid_search_ends(basis, monkeypatch):
    """The tuning looks at every COARSE-th point of its grid in log α and then near the best
    of them; on tunings of every degree, small and large m, σ ≠ 1 and an asymmetric x range
    it finds the α* (and the boundary cases) that the search of every grid point finds."""
    x = XDistribution("uniform", low=-0.5, high=2.0)
    rng = np.random.default_rng(11)
    results = {}
    for coarse in (1, tuning.COARSE):  # 1: every point of the grid, as before
        monkeypatch.setattr(tuning, "COARSE", coarse)
        monkeypatch.setattr(tuning, "_TUNED_CACHE", {})
        rng = np.random.default_rng(11)
        for degree in (1, 3, 5, 7):
            for m in (degree + 3, 40, 2000):
                u = rng.uniform(-1, 1, (60, m))  # u = (x − center)/scale is uniform on ±1
                V = u[..., None] ** np.arange(degree + 1)
                G = np.einsum("rmi,rmj->rij", V, V)
                for sd in (0.0, 0.3, 1.7):
                    tuned = tuning.optimal_lambda_conditional(
                        G, m, degree, scaling="m", x=x, intercept=0.7, slope=-1.3,
                        noise_sd=sd, basis=basis,
                    )  # fmt: skip
                    results.setdefault((degree, m, sd), []).append(tuned)
    assert len(results) == 4 * 3 * 3
    for key, (full, fast) in results.items():
        assert fast.boundary == full.boundary, key
        assert fast.alpha == pytest.approx(full.alpha, rel=1e-8), key
        assert fast.risk == pytest.approx(full.risk, rel=1e-12), key
    # the cases include the lower boundary (σ = 0) and interior minima two decades apart
    assert {full.boundary for full, _ in results.values()} == {"lower", None}
    alphas = [full.alpha for full, _ in results.values() if full.boundary is None]
    assert max(alphas) > 100 * min(alphas)


def test_the_cached_risk_and_tuning_follow_the_designs_and_the_noise_level():
    """The set-up of a designs' risk function is kept between calls (it does not depend on
    σ) and so is a tuning: each must still answer for the σ and the designs of the call,
    also after the caller changes its array in place, against direct solves."""
    rng = np.random.default_rng(12)
    m, degree = 25, 3
    V = design_matrix(rng.uniform(-1, 1, (50, m)), degree)
    G = np.einsum("rmi,rmj->rij", V, V)
    basis = standard_basis(UNIT, degree, **LINE)
    alphas = np.array([0.3, 4.0])
    for sd in (0.4, 2.5, 0.4):
        got = conditional_risk_function(G, basis=basis, noise_sd=sd)(alphas)
        ref = [independent_conditional_risk(G, a, degree, sd) for a in alphas]
        np.testing.assert_allclose(got, ref, rtol=1e-9)
    first = tuning.optimal_lambda_conditional(
        G, m, degree, scaling="none", x=UNIT, **LINE, noise_sd=0.4
    )
    again = tuning.optimal_lambda_conditional(
        G, m, degree, scaling="k", x=UNIT, **LINE, noise_sd=0.4
    )
    # λ from the scaling of the call: α = m·λ under none, m·λ/k under k
    assert again.alpha == first.alpha and again.lam == pytest.approx(first.alpha * degree / m)
    assert first.lam == pytest.approx(first.alpha / m)
    louder = tuning.optimal_lambda_conditional(
        G, m, degree, scaling="none", x=UNIT, **LINE, noise_sd=2.5
    )
    assert louder.alpha > 10 * first.alpha  # α* grows with σ²
    # four copies of every point: A = 4(G + (α/4)P), the bias of α/4 and a quarter of the
    # variance, so α* of (4G, σ) is 4·α* of (G, σ/2)
    half = tuning.optimal_lambda_conditional(
        G, m, degree, scaling="none", x=UNIT, **LINE, noise_sd=1.25
    )
    G[:] = G * 4.0  # the same designs with every point counted four times
    risk = conditional_risk_function(G, basis=basis, noise_sd=2.5)(alphas)
    ref = [independent_conditional_risk(G, a, degree, 2.5) for a in alphas]
    np.testing.assert_allclose(risk, ref, rtol=1e-9)
    tuned = tuning.optimal_lambda_conditional(
        G, m, degree, scaling="none", x=UNIT, **LINE, noise_sd=2.5
    )
    assert tuned.alpha == pytest.approx(4 * half.alpha, rel=1e-6)


def test_a_risk_that_dips_twice_is_searched_on_every_grid_point(monkeypatch):
    """Where the coarse values dip twice, the search looks at every grid point: here the
    deeper dip is narrow and sits between two coarse points, where they see it shallower
    than the broad one; the search still ends at the deeper one, as the search of every
    point does, and a guard that never fired would end at the broad one."""
    lo, hi = tuning._log_alpha_range(1.0)
    grid = np.linspace(lo, hi, 201)
    t_broad = grid[40]
    t_deep = (grid[120] + grid[128]) / 2  # between two coarse points

    def objective(alphas):
        t = np.log(alphas)
        return np.minimum(1.0 + 0.01 * (t - t_broad) ** 2, 0.9 + 2.0 * (t - t_deep) ** 2)

    found = {}
    for coarse in (1, tuning.COARSE):
        monkeypatch.setattr(tuning, "COARSE", coarse)
        found[coarse] = tuning._minimise_log_alpha(objective, math.inf, lo, hi)
    assert found[1][0] == pytest.approx(math.exp(t_deep), rel=1e-6)
    assert found[tuning.COARSE][0] == pytest.approx(found[1][0], rel=1e-9)
    # without the guard the coarse search would have ended at the broad dip
    coarse_values = objective(np.exp(grid[:: tuning.COARSE]))
    assert abs(grid[:: tuning.COARSE][np.argmin(coarse_values)] - t_broad) < 1.0
    assert not tuning._falls_then_rises(coarse_values)


def test_a_minimum_below_the_grid_extends_it_downwards_as_the_full_search_does(monkeypatch):
    """The risk falls all the way to the bottom of the grid: the search extends the grid
    downwards, from the bottom point, which the coarse look must therefore include."""
    lo, hi = tuning._log_alpha_range(10.0)
    t_min = lo - 3.0  # below the grid

    def objective(alphas):
        return 1.0 + 0.01 * (np.log(alphas) - t_min) ** 2

    found = {}
    for coarse in (1, tuning.COARSE):
        monkeypatch.setattr(tuning, "COARSE", coarse)
        found[coarse] = tuning._minimise_log_alpha(objective, math.inf, lo, hi)
    assert found[1][0] == pytest.approx(math.exp(t_min), rel=1e-5)
    assert found[tuning.COARSE][0] == pytest.approx(found[1][0], rel=1e-9)
