"""Theory of the study: large-m bias, variance and risk, the exact conditional risk, tuned λ.

Everything here is pure mathematics (docs/theory.md); nothing is simulated. The moments of
u and the true coefficients come from :mod:`study.basis`.

Conventions
-----------
Coefficients are those of the raw monomials φ(x) = (1, x, …, x^k), index j = 0, …, k. The
true coefficients are w* = (β0, β1, 0, …, 0); D = diag(0, 1, …, 1), or the identity when
the intercept is penalised. Every fit is the sum-form ridge problem

    ŵ = argmin_w Σ_i (φ(x_i)ᵀw − y_i)² + α·wᵀDw,   α = m·c,  ρ = α/m = c,

with c the mean-loss penalty factor of :mod:`study.scaling`.

Numerics: the standardised basis
--------------------------------
The raw moment matrix Σ_ij = E[x^{i+j}] is hopelessly ill-conditioned away from [−1, 1]
(uniform on [0, 10] with k = 10 has a condition number far beyond 1e16). All linear algebra
is therefore done in the standardised variable u = (x − center)/scale, which is uniform on
[−1, 1] or standard normal. With φ(u) = B·φ(x) (:func:`study.fit.change_of_basis`) and
w = Bᵀv the prediction is φ(x)ᵀw = φ(u)ᵀv, and

    Σ_u = B Σ Bᵀ,   P = B D Bᵀ (penalty wᵀDw = vᵀPv),   v* = (β0 + β1·center, β1·scale, 0, …),

the prediction risk is basis-free, (ŵ − w*)ᵀΣ(ŵ − w*) = (v̂ − v*)ᵀΣ_u(v̂ − v*), and means and
covariances map back by w = Bᵀv and Cov w = Bᵀ(Cov v)B. :class:`StandardBasis` bundles these.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import optimize

from .basis import hankel_index, standard_moments, true_coefficients
from .design import XDistribution
from .fit import change_of_basis, penalty_matrix, solve_or_nan
from .scaling import alpha as scaling_alpha
from .scaling import lam_from_alpha

__all__ = [
    "StandardBasis",
    "TunedPenalty",
    "asymptotic_risk_table",
    "asymptotic_table",
    "conditional_risk",
    "conditional_risk_function",
    "finite_moment_order",
    "optimal_alpha_limit",
    "optimal_lambda_asymptotic",
    "optimal_lambda_conditional",
    "standard_basis",
]


# --- the standardised basis --------------------------------------------------------------


@dataclass(frozen=True)
class StandardBasis:
    """One problem (x distribution, degree, true line, penalty) in the standardised basis.

    Attributes
    ----------
    degree : int
        Polynomial degree k.
    B : ndarray of shape (k + 1, k + 1)
        φ(u) = B·φ(x); raw coefficients are w = Bᵀv.
    sigma : ndarray of shape (k + 1, k + 1)
        Σ_u = E[φ(u)φ(u)ᵀ] = B Σ Bᵀ.
    penalty : ndarray of shape (k + 1, k + 1)
        P = B D Bᵀ.
    mu : ndarray of shape (4k + 1,)
        Moments E[uⁿ] up to n = 4k (what the sandwich term needs).
    v_star, w_star : ndarray of shape (k + 1,)
        True coefficients in the u basis and in the raw basis.
    """

    degree: int
    B: np.ndarray
    sigma: np.ndarray
    penalty: np.ndarray
    mu: np.ndarray
    v_star: np.ndarray
    w_star: np.ndarray

    def to_raw(self, v: np.ndarray) -> np.ndarray:
        """Raw coefficients w = Bᵀv for v of shape (..., k + 1)."""
        return np.asarray(v) @ self.B

    def cov_to_raw(self, cov: np.ndarray) -> np.ndarray:
        """Raw covariance Bᵀ C B for C of shape (..., k + 1, k + 1)."""
        return np.swapaxes(self.B, 0, 1) @ np.asarray(cov) @ self.B

    def fourth_moment(self, b: np.ndarray) -> np.ndarray:
        """E[φ(u)φ(u)ᵀ(φ(u)ᵀb)²] exactly from the moments, for b of shape (..., k + 1).

        Entry (i, j) is Σ_{k,l} b_k b_l E[u^{i+j+k+l}].
        """
        p = self.degree + 1
        r = np.arange(p)
        H4 = self.mu[
            r[:, None, None, None]
            + r[None, :, None, None]
            + r[None, None, :, None]
            + r[None, None, None, :]
        ]
        return np.einsum("ijkl,...k,...l->...ij", H4, b, b)


def standard_basis(
    x: XDistribution,
    degree: int,
    *,
    intercept: float,
    slope: float,
    penalize_intercept: bool = False,
) -> StandardBasis:
    """Build the standardised-basis description of one problem (see the module docstring).

    Parameters
    ----------
    x : XDistribution
        Distribution of x; u = (x − x.center)/x.scale.
    degree : int
        Polynomial degree k ≥ 1.
    intercept, slope : float
        β0 and β1 of the true line.
    penalize_intercept : bool, default=False
        D = I instead of diag(0, 1, …, 1).

    Returns
    -------
    StandardBasis
    """
    if isinstance(degree, bool) or int(degree) != degree or degree < 1:
        raise ValueError(f"The 'degree' parameter must be an integer ≥ 1. Got {degree!r} instead.")
    degree = int(degree)
    c, s = float(x.center), float(x.scale)
    B = change_of_basis(c, s, degree)
    D = penalty_matrix(degree, penalize_intercept=penalize_intercept)
    mu = standard_moments(x.distribution, 4 * degree)
    return StandardBasis(
        degree=degree,
        B=B,
        sigma=mu[hankel_index(degree)],
        penalty=B @ D @ B.T,
        mu=mu,
        v_star=true_coefficients(degree, intercept=intercept, slope=slope, x=x),
        w_star=true_coefficients(degree, intercept=intercept, slope=slope),
    )


# --- large-m theory ---------------------------------------------------------------------


@dataclass(frozen=True)
class _LargeM:
    """Large-m moments in the u basis for a stack of (ρ, m)."""

    v_inf: np.ndarray  # (n, p)
    b_u: np.ndarray  # (n, p)
    cov_u: np.ndarray  # (n, p, p)
    bias_risk: np.ndarray  # (n,)  b_uᵀ Σ_u b_u
    excess_var_risk: np.ndarray  # (n,)  tr(Σ_u Cov) − σ²(k+1)/m, computed without cancellation


def _large_m(basis: StandardBasis, rho, m, noise_sd: float, *, sandwich: bool = True) -> _LargeM:
    """Large-m mean, covariance and risk in the u basis, vectorised over ρ and m.

    With S = Σ_u + ρP and N = ρS⁻¹P: v∞ = S⁻¹Σ_u v* = (I − N)v*, b = −N v*, and
    Σ_u S⁻¹ = (I − N)ᵀ, so σ²·tr(Σ_u S⁻¹Σ_u S⁻¹)/m = σ²(p − 2 tr N + tr N²)/m: the
    α-dependent part is computed without subtracting nearly equal numbers.
    """
    rho = np.atleast_1d(np.asarray(rho, dtype=float))
    m = np.broadcast_to(np.asarray(m, dtype=float), rho.shape)
    Sig, P, vs = basis.sigma, basis.penalty, basis.v_star
    S = Sig + rho[:, None, None] * P
    Sinv = np.linalg.inv(S)
    N = rho[:, None, None] * (Sinv @ P)
    b = -np.einsum("nij,j->ni", N, vs)
    v_inf = vs + b
    Sb = b @ Sig  # Σ_u b (Σ_u symmetric)
    meat = np.broadcast_to(noise_sd**2 * Sig, N.shape)
    if sandwich:
        meat = meat + basis.fourth_moment(b) - Sb[:, :, None] * Sb[:, None, :]
    cov = Sinv @ meat @ Sinv / m[:, None, None]
    bias_risk = np.einsum("ni,ij,nj->n", b, Sig, b)
    trN = np.trace(N, axis1=1, axis2=2)
    trN2 = np.einsum("nij,nji->n", N, N)
    excess = noise_sd**2 * (-2.0 * trN + trN2) / m
    if sandwich:
        extra = meat - noise_sd**2 * Sig
        excess = excess + np.einsum("ij,njk,nkl,nli->n", Sig, Sinv, extra, Sinv) / m
    return _LargeM(v_inf=v_inf, b_u=b, cov_u=cov, bias_risk=bias_risk, excess_var_risk=excess)


def _cells(ms, lams, scalings, degree):
    cells = list(itertools.product(ms, lams, scalings))
    alphas = np.array(
        [scaling_alpha(lam, m=int(m), degree=degree, scaling=s) for m, lam, s in cells],
        dtype=float,
    )
    m_arr = np.array([c[0] for c in cells], dtype=float)
    return cells, alphas, m_arr


def asymptotic_table(
    ms: Sequence[int],
    degrees: Sequence[int],
    lams: Sequence[float],
    scalings: Sequence[str],
    *,
    x: XDistribution,
    intercept: float,
    slope: float,
    noise_sd: float,
    penalize_intercept: bool = False,
) -> pd.DataFrame:
    """Large-m bias and variance of every coefficient over a grid of cells (docs/theory.md).

    ŵ is an M-estimator of the mean loss (1/m)Σ(φᵀw − y)² + ρ·wᵀDw, ρ = α/m, whose
    population minimiser is w∞ = (Σ + ρD)⁻¹Σw*, with bias b∞ = w∞ − w*. Its score at w∞ is
    ψ = φ(φᵀb∞ − ε) + ρDw∞ = φφᵀb∞ − φε − Σb∞ (since ρDw∞ = −Σb∞), with variance
    σ²Σ + E[φφᵀ(φᵀb∞)²] − Σb∞b∞ᵀΣ; the Jacobian is Σ + ρD, hence the sandwich covariance

        (1/m)(Σ + ρD)⁻¹[σ²Σ + E[φφᵀ(φᵀb∞)²] − Σb∞b∞ᵀΣ](Σ + ρD)⁻¹,

    whose diagonal is ``var_asym``. The E[φφᵀ(φᵀb∞)²] term needs moments up to order 4k
    and is computed exactly from them in the standardised basis. The approximation holds
    for large m; for λ = 0 with m ≤ k the fit does not exist, and the row still holds the
    formula's value (σ²Σ⁻¹/m), which callers should not report for such cells.

    Returns
    -------
    pandas.DataFrame
        One row per (m, degree, λ, scaling, coefficient), ordered as the arguments, with
        columns ``m, degree, lambda, scaling, alpha, coef, true, bias_asym, var_asym``.
    """
    frames = []
    for degree in degrees:
        basis = standard_basis(
            x, degree, intercept=intercept, slope=slope, penalize_intercept=penalize_intercept
        )
        cells, alphas, m_arr = _cells(ms, lams, scalings, degree)
        res = _large_m(basis, alphas / m_arr, m_arr, noise_sd)
        bias = basis.to_raw(res.b_u)
        var = np.diagonal(basis.cov_to_raw(res.cov_u), axis1=1, axis2=2)
        p = degree + 1
        n = len(cells)
        frames.append(
            pd.DataFrame(
                {
                    "m": np.repeat([int(c[0]) for c in cells], p),
                    "degree": int(degree),
                    "lambda": np.repeat([float(c[1]) for c in cells], p),
                    "scaling": np.repeat([c[2] for c in cells], p),
                    "alpha": np.repeat(alphas, p),
                    "coef": np.tile(np.arange(p), n),
                    "true": np.tile(basis.w_star, n),
                    "bias_asym": bias.ravel(),
                    "var_asym": var.ravel(),
                }
            )
        )
    return _order(pd.concat(frames, ignore_index=True), ms, degrees, lams, scalings, ["coef"])


def asymptotic_risk_table(
    ms: Sequence[int],
    degrees: Sequence[int],
    lams: Sequence[float],
    scalings: Sequence[str],
    *,
    x: XDistribution,
    intercept: float,
    slope: float,
    noise_sd: float,
    penalize_intercept: bool = False,
) -> pd.DataFrame:
    """Large-m expected prediction risk b∞ᵀΣb∞ + tr(Σ·Cov) over a grid of cells.

    Returns
    -------
    pandas.DataFrame
        One row per (m, degree, λ, scaling), ordered as the arguments, with columns
        ``m, degree, lambda, scaling, alpha, risk_asym``.
    """
    frames = []
    for degree in degrees:
        basis = standard_basis(
            x, degree, intercept=intercept, slope=slope, penalize_intercept=penalize_intercept
        )
        cells, alphas, m_arr = _cells(ms, lams, scalings, degree)
        res = _large_m(basis, alphas / m_arr, m_arr, noise_sd)
        risk = noise_sd**2 * (degree + 1) / m_arr + res.bias_risk + res.excess_var_risk
        frames.append(
            pd.DataFrame(
                {
                    "m": [int(c[0]) for c in cells],
                    "degree": int(degree),
                    "lambda": [float(c[1]) for c in cells],
                    "scaling": [c[2] for c in cells],
                    "alpha": alphas,
                    "risk_asym": risk,
                }
            )
        )
    return _order(pd.concat(frames, ignore_index=True), ms, degrees, lams, scalings, [])


def _order(df, ms, degrees, lams, scalings, extra) -> pd.DataFrame:
    keys = {
        "m": {int(v): i for i, v in enumerate(ms)},
        "degree": {int(v): i for i, v in enumerate(degrees)},
        "lambda": {float(v): i for i, v in enumerate(lams)},
        "scaling": {v: i for i, v in enumerate(scalings)},
    }
    order = pd.DataFrame({k: df[k].map(v) for k, v in keys.items()})
    for e in extra:
        order[e] = df[e]
    idx = order.sort_values(list(order.columns), kind="stable").index
    return df.loc[idx].reset_index(drop=True)


# --- tuned penalty ---------------------------------------------------------------------------


class TunedPenalty(NamedTuple):
    """A risk-minimising penalty.

    Attributes
    ----------
    lam : float
        λ* under the requested scaling (0.0 or inf at a boundary).
    alpha : float
        α* = m·c(λ*).
    risk : float
        The minimised expected prediction risk.
    boundary : str or None
        None for an interior minimum; "lower" if the risk is smallest as α → 0 (e.g. σ = 0),
        "upper" if it is smallest as α → ∞ (e.g. Dw* = 0).
    """

    lam: float
    alpha: float
    risk: float
    boundary: str | None


def optimal_alpha_limit(
    degree: int,
    *,
    x: XDistribution,
    intercept: float,
    slope: float,
    noise_sd: float,
    penalize_intercept: bool = False,
) -> float:
    """Limit as m → ∞ of the prediction-risk-optimal sum-form α.

        α*_∞ = σ²·tr(Σ⁻¹D) / (w*ᵀDΣ⁻¹Dw*).

    Derivation. With ρ = α/m → 0, (Σ + ρD)⁻¹Σ = I − ρΣ⁻¹D + O(ρ²), so
    b∞ = −ρΣ⁻¹Dw* + O(ρ²) and the squared-bias risk is b∞ᵀΣb∞ = ρ²·w*ᵀDΣ⁻¹Dw* + O(ρ³).
    The noise part of the variance risk is (σ²/m)·tr(M²) with M = Σ(Σ + ρD)⁻¹ =
    I − ρDΣ⁻¹ + O(ρ²), i.e. (σ²/m)(k + 1 − 2ρ·tr(Σ⁻¹D)) + O(ρ²/m); the sandwich terms
    are O(ρ²/m) since b∞ = O(ρ). With q = w*ᵀDΣ⁻¹Dw* and t = tr(Σ⁻¹D),

        R(α) = σ²(k + 1)/m − 2σ²t·α/m² + q·α²/m² + O(α²/m³),

    whose minimiser over α is σ²t/q + O(1/m). The quantities are basis-free
    (Σ⁻¹D ↦ B⁻ᵀΣ⁻¹DBᵀ), so they are computed with Σ_u and P. For degree 2 on
    uniform[−1, 1] with β0 = 1, β1 = 2, σ = 1: t = 3 + 45/4 and q = 4·3, α*_∞ = 1.1875.

    Returns
    -------
    float
        α*_∞ (inf if Dw* = 0, 0 if σ = 0).
    """
    basis = standard_basis(
        x, degree, intercept=intercept, slope=slope, penalize_intercept=penalize_intercept
    )
    Sinv = np.linalg.inv(basis.sigma)
    t = np.trace(Sinv @ basis.penalty)
    Pv = basis.penalty @ basis.v_star
    q = Pv @ Sinv @ Pv
    if q <= 0:
        return math.inf
    return float(noise_sd**2 * t / q)


def _minimise_log_alpha(
    objective,
    f0: float,
    log_lo: float,
    log_hi: float,
    n_grid: int = 201,
    rel_tol: float = 1e-6,
    depth: int = 0,
):
    """Minimise objective(α) over log α: grid search, then a bounded Brent refinement.

    ``objective`` maps an array of α to the risk (or the risk minus a constant); ``f0`` is
    its value at α = 0 (inf if not identifiable). Values within ``rel_tol``·|min| of the
    grid minimum count as ties (rounding noise where the risk is flat). If α = 0 ties with
    the minimum the result is the lower boundary; if the top of the grid ties, the upper
    boundary (α = ∞); if the bottom grid point is the minimum but not α = 0, the grid is
    extended downwards (a few times at most). Returns (α*, objective(α*), boundary).
    """
    grid = np.linspace(log_lo, log_hi, n_grid)
    vals = objective(np.exp(grid))
    i = int(np.nanargmin(vals))
    vmin = float(vals[i])
    tol = rel_tol * abs(vmin)
    if f0 <= vmin + tol:
        return 0.0, float(f0), "lower"
    if vals[-1] <= vmin + tol:
        return math.inf, float(vals[-1]), "upper"
    if i == 0:
        if depth >= 3:
            return float(math.exp(grid[0])), vmin, "lower"
        width = log_hi - log_lo
        return _minimise_log_alpha(
            objective, f0, log_lo - width, log_lo + 1.0, n_grid, rel_tol, depth + 1
        )
    res = optimize.minimize_scalar(
        lambda t: float(objective(np.array([math.exp(t)]))[0]),
        bounds=(grid[i - 1], grid[i + 1]),
        method="bounded",
        options={"xatol": 1e-10},
    )
    if res.fun <= vmin:
        return float(math.exp(res.x)), float(res.fun), None
    return float(math.exp(grid[i])), vmin, None


def _log_alpha_range(m: float) -> tuple[float, float]:
    """Search range of log α: α from 1e-8 to min(1e12, 1e6·m), i.e. ρ = α/m ≤ 1e6.

    Beyond ρ = 1e6 the penalised directions are numerically frozen and Σ_u + ρP is too
    ill-conditioned for the risk to be resolved; a minimum there is reported as α = ∞.
    """
    return math.log(1e-8), math.log(min(1e12, 1e6 * max(m, 1.0)))


def optimal_lambda_asymptotic(
    m: int,
    degree: int,
    scaling: str,
    *,
    x: XDistribution,
    intercept: float,
    slope: float,
    noise_sd: float,
    penalize_intercept: bool = False,
) -> TunedPenalty:
    """λ* minimising the large-m expected prediction risk (with sandwich) at sample size m.

    The risk is minimised over log α (a grid over α = 1e-8 … min(1e12, 1e6·m), then bounded
    Brent between the neighbours of the best grid point); λ* = α*/(m·c(1)) under ``scaling``. The
    α-dependent part of the risk is computed without cancellation, so the optimum is
    accurate even for m = 1e7, where it is a 1e-7 relative change of the risk.

    Returns
    -------
    TunedPenalty
        (λ*, α*, risk, boundary); see :class:`TunedPenalty` for the boundary cases.
    """
    basis = standard_basis(
        x, degree, intercept=intercept, slope=slope, penalize_intercept=penalize_intercept
    )
    mf = float(m)

    def excess(a: np.ndarray) -> np.ndarray:
        res = _large_m(basis, a / mf, mf, noise_sd)
        return res.bias_risk + res.excess_var_risk

    # The α-dependent part (risk − σ²(k+1)/m) is computed without cancellation; it is 0 at α = 0.
    a_star, exc, boundary = _minimise_log_alpha(excess, 0.0, *_log_alpha_range(mf))
    lam = lam_from_alpha(a_star, m=int(m), degree=degree, scaling=scaling)
    return TunedPenalty(
        lam=float(lam),
        alpha=float(a_star),
        risk=float(noise_sd**2 * (degree + 1) / mf + exc),
        boundary=boundary,
    )


def _pencil_risk(G_u, *, basis: StandardBasis, noise_sd: float):
    """:func:`conditional_risk_function` from one factorisation of the pencil (G, P) per
    design, as in the engine: with WᵀGW = I, WᵀPW = Λ and s = 1/(1 + αΛ),
    E[v̂|X] = W(s∘WᵀGv*) and tr(Σ Cov[v̂|X]) = σ²·Σ_i s_i²(WᵀΣW)_ii. Ten times faster than a
    solve per α; used only where the pencil is accurate (x range touching 0) and every G is
    positive definite. Returns None otherwise."""
    from .fit import factorise

    B = basis.B
    if basis.degree < 1 or abs(B[1, 0]) > 1.0:  # B[1, 0] = −center/scale
        return None
    d = np.diag(np.linalg.solve(B, np.linalg.solve(B, basis.penalty).T))
    F = B[:, d > 0.5]
    # a Cholesky factor of a singular G can come out "successful" and wrong: check the rank
    if np.any(np.linalg.matrix_rank(G_u, hermitian=True) < G_u.shape[-1]):
        return None
    try:
        factor = factorise(G_u, F)
    except np.linalg.LinAlgError:
        return None  # a singular design (m ≤ k): the direct solves handle α = 0 there
    W, eig = factor.W, factor.eig
    z_star = np.einsum("rji,rj->ri", W, G_u @ basis.v_star)
    wsw = np.einsum("rli,lk,rki->ri", W, basis.sigma, W)
    chunk = max(1, 400_000 // (G_u.shape[0] * G_u.shape[1]))

    def risk(alphas: np.ndarray) -> np.ndarray:
        out = np.empty(alphas.shape)
        for start in range(0, alphas.size, chunk):
            a = alphas[start : start + chunk]
            s = 1.0 / (1.0 + a[:, None, None] * eig[None])  # (A, R, p)
            dev = np.einsum("rij,arj->ari", W, s * z_star[None]) - basis.v_star
            bias = np.einsum("ari,ij,arj->ar", dev, basis.sigma, dev)
            var = noise_sd**2 * (s**2 * wsw[None]).sum(axis=-1)
            out[start : start + chunk] = (bias + var).mean(axis=1)
        return out

    return risk


def _direct_risk(G_u, *, basis: StandardBasis, noise_sd: float):
    """:func:`conditional_risk_function` by batched solves of A = G_u + αP per α."""
    Sig, P, vs = basis.sigma, basis.penalty, basis.v_star
    R, p = G_u.shape[0], G_u.shape[-1]
    singular = bool(np.any(np.linalg.matrix_rank(G_u, hermitian=True) < p))
    rhs = np.concatenate([G_u, np.broadcast_to(np.eye(p), G_u.shape)], axis=-1)  # [G | I]
    chunk = max(1, 200_000 // (R * p * p))

    def risk(alphas: np.ndarray) -> np.ndarray:
        out = np.empty(alphas.shape)
        for start in range(0, alphas.size, chunk):
            a = alphas[start : start + chunk]
            ok = ~((a == 0.0) & singular)
            out[start : start + chunk][~ok] = math.inf
            if not ok.any():
                continue
            A = G_u[None] + a[ok, None, None, None] * P  # (n, R, p, p)
            # some A singular (a tiny α on a singular design, or σ = 0 pushing the search
            # to the ends of its range): that α's solutions are NaN, its risk infinite
            X = solve_or_nan(A, np.broadcast_to(rhs, A.shape[:2] + rhs.shape[1:]))
            M, Ainv = X[..., :p], X[..., p:]  # A⁻¹G and A⁻¹
            d = M @ vs - vs
            bias = np.einsum("nri,ij,nrj->nr", d, Sig, d)
            var = noise_sd**2 * np.einsum("ij,nrjk,nrki->nr", Sig, M, Ainv)
            mean = (bias + var).mean(axis=1)
            out[start : start + chunk][ok] = np.where(np.isfinite(mean), mean, math.inf)
        return out

    return risk


def conditional_risk_function(G_u: np.ndarray, *, basis: StandardBasis, noise_sd: float):
    """The function α ↦ :func:`conditional_risk` for one stack of designs, with everything
    that does not depend on α (a factorisation per design, the rank check) done once:
    the tuning evaluates it a few hundred times."""
    G_u = np.asarray(G_u, dtype=float)
    if G_u.ndim == 2:
        G_u = G_u[None]
    risk = _pencil_risk(G_u, basis=basis, noise_sd=noise_sd) or _direct_risk(
        G_u, basis=basis, noise_sd=noise_sd
    )
    return lambda alphas: risk(np.atleast_1d(np.asarray(alphas, dtype=float)))


def conditional_risk(
    G_u: np.ndarray,
    alphas: np.ndarray,
    *,
    basis: StandardBasis,
    noise_sd: float,
) -> np.ndarray:
    """Exact expected prediction risk given the design, averaged over a stack of designs.

    E[R | X] = (E[v̂|X] − v*)ᵀΣ_u(E[v̂|X] − v*) + σ²·tr(Σ_u A⁻¹G_uA⁻¹), A = G_u + αP, by
    direct batched solves (accurate on every x range), or from one factorisation of the
    pencil per design where that is as accurate (x range touching the origin; the
    generalised-eigenvalue shortcut loses accuracy far from it). If any G_u is
    (numerically) rank-deficient, as when m ≤ k, the risk at α = 0 is inf (not
    identifiable).

    Parameters
    ----------
    G_u : ndarray of shape (R, p, p)
        Gram matrices Σ_i φ(u_i)φ(u_i)ᵀ in the standardised basis u = (x − center)/scale.
    alphas : ndarray of shape (n,)
        Sum-form ridge parameters.
    basis : StandardBasis
    noise_sd : float

    Returns
    -------
    ndarray of shape (n,)
        The mean over designs of E[R | X], for each α.
    """
    return conditional_risk_function(G_u, basis=basis, noise_sd=noise_sd)(alphas)


def optimal_lambda_conditional(
    G_stack_u: np.ndarray,
    m: int,
    degree: int,
    scaling: str,
    *,
    x: XDistribution,
    intercept: float,
    slope: float,
    noise_sd: float,
    penalize_intercept: bool = False,
) -> TunedPenalty:
    """λ* minimising the exact conditional expected risk averaged over given designs.

    The objective is :func:`conditional_risk` (exact given each design; the average over the
    stack estimates the unconditional risk at sample size m). Minimised over log α as in
    :func:`optimal_lambda_asymptotic`.

    Parameters
    ----------
    G_stack_u : ndarray of shape (R, k + 1, k + 1)
        Gram matrices Σ_i φ(u_i)φ(u_i)ᵀ with u = (x − x.center)/x.scale, one per design.
    m : int
        Sample size of each design (to convert α to λ).
    degree, scaling, x, intercept, slope, noise_sd, penalize_intercept
        As in :func:`optimal_lambda_asymptotic`.

    Returns
    -------
    TunedPenalty
    """
    basis = standard_basis(
        x, degree, intercept=intercept, slope=slope, penalize_intercept=penalize_intercept
    )
    G = np.asarray(G_stack_u, dtype=float)
    if G.shape[-2:] != (degree + 1, degree + 1):
        raise ValueError(
            f"G_stack_u must have shape (R, {degree + 1}, {degree + 1}). Got {G.shape} instead."
        )
    risk = conditional_risk_function(G, basis=basis, noise_sd=noise_sd)
    r0 = risk(np.array([0.0]))[0]

    a_star, r_star, boundary = _minimise_log_alpha(risk, float(r0), *_log_alpha_range(float(m)))
    lam = lam_from_alpha(a_star, m=int(m), degree=degree, scaling=scaling)
    return TunedPenalty(lam=float(lam), alpha=float(a_star), risk=float(r_star), boundary=boundary)


# --- which moments exist -------------------------------------------------------------------


def finite_moment_order(m: int, degree: int, lam: float) -> float:
    """Order below which the moments of the fitted coefficients are finite.

    With λ > 0 the matrix A = G + αD is bounded away from singular (G₀₀ = m and the penalty
    holds every other direction), so ŵ = A⁻¹b has moments of every order: returns inf.

    With λ = 0, ŵ = G⁻¹b is of order 1/s where s is the smallest singular value of the
    design matrix Φ, and s is small when all m points crowd round the roots of some
    degree-k polynomial p. Take l = ⌊k/j⌋ root locations of multiplicity j: every point
    within δ of one of them has |p(x_i)| ≲ δ^j, so s ≲ δ^j, and for any continuous x the
    event has probability of order δ^(m−l) (each point near one of the locations, the l
    locations free). Hence P(s < ε) ≍ ε^((m − ⌊k/j⌋)/j) and

        E|ŵ|^r < ∞  exactly when  r < min over j = 1…k of (m − ⌊k/j⌋)/j.

    j = 1 gives m − k: the parabola through three points (m = 3, k = 2) has no finite
    mean. Clustering at one point (j = k) gives (m − 1)/k, which governs high degrees:
    degree 5 needs m > 11 for a finite variance and m > 21 for the fourth moment that the
    Monte Carlo standard error of a variance needs. The default study's sample kurtosis
    agrees: huge in every cell of order ≤ 4, moderate above.

    Returns
    -------
    float
        The order (≤ 0 when not identifiable) for λ = 0; inf for λ > 0.
    """
    if lam > 0:
        return math.inf
    return float(min((m - degree // j) / j for j in range(1, degree + 1)))
