"""The large-m theory: bias, variance and risk of every cell as m grows (docs/theory.md).

Everything here is pure mathematics; nothing is simulated. The problem of a degree in the
standardised basis u (B, Σ_u, P, v*, w*) is :class:`study.basis.StandardBasis`, whose
docstring says why all linear algebra is done in u. The exact conditional risk and the
risk-optimal penalty are in :mod:`study.theory.tuning`.

Conventions
-----------
Coefficients are those of the raw monomials φ(x) = (1, x, …, x^k), index j = 0, …, k. The
true coefficients are w* = (β0, β1, 0, …, 0); D = diag(0, 1, …, 1), or the identity when
the intercept is penalised. Every fit is the sum-form ridge problem

    ŵ = argmin_w Σ_i (φ(x_i)ᵀw − y_i)² + α·wᵀDw,   α = m·c,  ρ = α/m = c,

with c the mean-loss penalty factor of :mod:`study.scaling`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from study.basis import StandardBasis, standard_basis
from study.design import XDistribution
from study.results import MAX_EXPANSION_STEP
from study.scaling import alpha as scaling_alpha

__all__ = [
    "asymptotic_risk_table",
    "asymptotic_table",
]


# --- large-m theory ---------------------------------------------------------------------


@dataclass(frozen=True)
class _LargeM:
    """Large-m moments in the u basis for a stack of (ρ, m)."""

    v_inf: np.ndarray  # (n, p)
    b_u: np.ndarray  # (n, p)
    b1_u: np.ndarray  # (n, p)  the 1/m term of the bias: E[v̂] = v∞ + b1 + O(m⁻²)
    # (n,) the expansion's step ‖T‖₂/m, T = S⁻¹(Q(S⁻¹) − Σ_u S⁻¹Σ_u) (b1 = T b / m), and
    # (n,) the size of its next term in the u basis, (‖T‖₂/m)²·‖b‖₂
    step: np.ndarray
    b2_norm: np.ndarray
    # (n,) E[h²]/m with h = φᵀS⁻¹φ the leverage of a point: the relative size of the
    # 1/m terms of the covariance and the risk, which are not derived
    leverage: np.ndarray
    cov_u: np.ndarray  # (n, p, p)
    bias_risk: np.ndarray  # (n,)  b_uᵀ Σ_u b_u
    excess_var_risk: np.ndarray  # (n,)  tr(Σ_u Cov) − σ²(k+1)/m, computed without cancellation


def _large_m(basis: StandardBasis, rho, m, noise_sd: float, *, sandwich: bool = True) -> _LargeM:
    """Large-m mean, covariance and risk in the u basis, vectorised over ρ and m.

    With S = Σ_u + ρP and N = ρS⁻¹P: v∞ = S⁻¹Σ_u v* = (I − N)v*, b = −N v*, and
    Σ_u S⁻¹ = (I − N)ᵀ, so σ²·tr(Σ_u S⁻¹Σ_u S⁻¹)/m = σ²(p − 2 tr N + tr N²)/m: the
    α-dependent part is computed without subtracting nearly equal numbers.

    The 1/m term of the mean: with Ĝ = Σ_u + ΔG and ĉ = Σ_u v* + Δc the means over the m
    points of φφᵀ and φy, v̂ = (S + ΔG)⁻¹ĉ = v∞ + S⁻¹(Δc − ΔG v∞) − S⁻¹ΔG S⁻¹(Δc − ΔG v∞)
    + O(m^{-3/2}); the first-order part has mean 0, and for independent points
    E[ΔG M (Δc − ΔG v∞)] = −(Q(M) − Σ_u M Σ_u) b / m with Q(M) = E[φφᵀMφφᵀ] (the noise
    drops out, E[ε|x] = 0). Hence E[v̂] = v∞ + S⁻¹(Q(S⁻¹) − Σ_u S⁻¹Σ_u) b / m + O(m⁻²): zero
    without a penalty (least squares is unbiased), O(1/m²) when ρ shrinks like 1/m. With
    T = S⁻¹(Q(S⁻¹) − Σ_u S⁻¹Σ_u), the 1/m term is T b/m and the next one is of the size of
    (T/m)² b: ``b2_norm`` = (‖T‖₂/m)²‖b‖₂. It is a size, not a bound: against the mean
    of exact fits (tests/test_theory.py) the true remainder was 0.01 to 2 times it.
    """
    rho = np.atleast_1d(np.asarray(rho, dtype=float))
    m = np.broadcast_to(np.asarray(m, dtype=float), rho.shape)
    sigma_u, P, vs = basis.sigma, basis.penalty, basis.v_star
    shifted = sigma_u + rho[:, None, None] * P  # S = Σ_u + ρP
    shifted_inv = np.linalg.inv(shifted)
    N = rho[:, None, None] * (shifted_inv @ P)
    b = -np.einsum("nij,j->ni", N, vs)
    v_inf = vs + b
    quartic = basis.quartic(shifted_inv)
    T = shifted_inv @ (quartic - sigma_u @ shifted_inv @ sigma_u)
    b1 = np.einsum("nij,nj->ni", T, b) / m[:, None]
    step = np.linalg.norm(T, 2, axis=(1, 2)) / m
    leverage = np.einsum("nij,nji->n", shifted_inv, quartic) / m
    b2_norm = step**2 * np.linalg.norm(b, axis=1)
    sigma_u_b = b @ sigma_u  # Σ_u b (Σ_u symmetric)
    meat = np.broadcast_to(noise_sd**2 * sigma_u, N.shape)
    if sandwich:
        meat = meat + basis.fourth_moment(b) - sigma_u_b[:, :, None] * sigma_u_b[:, None, :]
    cov = shifted_inv @ meat @ shifted_inv / m[:, None, None]
    bias_risk = np.einsum("ni,ij,nj->n", b, sigma_u, b)
    trN = np.trace(N, axis1=1, axis2=2)
    trN2 = np.einsum("nij,nji->n", N, N)
    excess = noise_sd**2 * (-2.0 * trN + trN2) / m
    if sandwich:
        extra = meat - noise_sd**2 * sigma_u
        extra_risk = np.einsum("ij,njk,nkl,nli->n", sigma_u, shifted_inv, extra, shifted_inv)
        excess = excess + extra_risk / m
    return _LargeM(
        v_inf=v_inf,
        b_u=b,
        b1_u=b1,
        step=step,
        b2_norm=b2_norm,
        leverage=leverage,
        cov_u=cov,
        bias_risk=bias_risk,
        excess_var_risk=excess,
    )


def _cells(ms, lams, scalings, degree):
    cells = list(itertools.product(ms, lams, scalings))
    alphas = np.array(
        [scaling_alpha(lam, m=int(m), degree=degree, scaling=s) for m, lam, s in cells],
        dtype=float,
    )
    m_arr = np.array([c[0] for c in cells], dtype=float)
    return cells, alphas, m_arr


def _grid_moments(ms, degree, lams, scalings, x, intercept, slope, noise_sd, penalize, basis):
    """One degree's problem in ``basis``, its grid of (m, λ, scaling) cells with their α
    and m, and the large-m moments of every cell."""
    problem = standard_basis(
        x, degree, intercept=intercept, slope=slope, penalize_intercept=penalize, basis=basis
    )
    cells, alphas, m_arr = _cells(ms, lams, scalings, degree)
    return problem, cells, alphas, m_arr, _large_m(problem, alphas / m_arr, m_arr, noise_sd)


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
    basis: str = "monomial",
) -> pd.DataFrame:
    """Large-m bias and variance of every coefficient over a grid of cells (docs/theory.md).

    ŵ is an M-estimator of the mean loss (1/m)Σ(φᵀw − y)² + ρ·wᵀDw, ρ = α/m, whose
    population minimiser is w∞ = (Σ + ρD)⁻¹Σw*, with bias b∞ = w∞ − w*. Its score at w∞ is
    ψ = φ(φᵀb∞ − ε) + ρDw∞ = φφᵀb∞ − φε − Σb∞ (since ρDw∞ = −Σb∞), with variance
    σ²Σ + E[φφᵀ(φᵀb∞)²] − Σb∞b∞ᵀΣ; the Jacobian is Σ + ρD, hence the sandwich covariance

        (1/m)(Σ + ρD)⁻¹[σ²Σ + E[φφᵀ(φᵀb∞)²] − Σb∞b∞ᵀΣ](Σ + ρD)⁻¹,

    whose diagonal is ``var_asym``. The E[φφᵀ(φᵀb∞)²] term needs moments up to order 4k
    and is computed exactly from them in the standardised basis. ``bias_asym1`` adds the
    1/m term of the mean, (Σ + ρD)⁻¹(E[φφᵀ(Σ + ρD)⁻¹φφᵀ] − Σ(Σ + ρD)⁻¹Σ)b∞/m (derived in
    :func:`_large_m`), so that E[ŵ] − w* = ``bias_asym1`` + O(1/m²);
    ``bias_asym1_bound`` is the size of that O(1/m²) term and the ones after it in each
    coefficient, (‖T‖₂/m)²·‖b‖₂/(1 − ‖T‖₂/m) mapped to the raw basis, NaN where the
    expansion's step ``asym_step`` = ‖T‖₂/m exceeds MAX_EXPANSION_STEP (m too small).
    The approximation holds for large m; for λ = 0 with m ≤ k the fit does not exist,
    and the row still holds the formula's value (σ²Σ⁻¹/m), which callers should not
    report for such cells.

    Returns
    -------
    pandas.DataFrame
        One row per (m, degree, λ, scaling, coefficient), ordered as the arguments, with
        columns ``m, degree, lambda, scaling, basis, alpha, coef, true, bias_asym, bias_asym1,
        bias_asym1_bound, asym_step, var_asym``.
    """
    frames = []
    for degree in degrees:
        problem, cells, alphas, m_arr, res = _grid_moments(
            ms, degree, lams, scalings, x, intercept, slope, noise_sd, penalize_intercept, basis
        )
        bias = problem.to_raw(res.b_u)
        bias1 = problem.to_raw(res.b_u + res.b1_u)
        # |raw_j| ≤ ‖v‖₂·‖B[:, j]‖₂ for raw = vᵀB; no bound where the expansion's step is
        # too large for it to mean anything
        tail = res.b2_norm / (1.0 - np.minimum(res.step, MAX_EXPANSION_STEP))
        bound = tail[:, None] * np.linalg.norm(problem.B, axis=0)[None, :]
        bound[res.step > MAX_EXPANSION_STEP] = np.nan
        var = np.diagonal(problem.cov_to_raw(res.cov_u), axis1=1, axis2=2)
        p = degree + 1
        n = len(cells)
        frames.append(
            pd.DataFrame(
                {
                    "m": np.repeat([int(c[0]) for c in cells], p),
                    "degree": int(degree),
                    "lambda": np.repeat([float(c[1]) for c in cells], p),
                    "scaling": np.repeat([c[2] for c in cells], p),
                    "basis": basis,
                    "alpha": np.repeat(alphas, p),
                    "coef": np.tile(np.arange(p), n),
                    "true": np.tile(problem.w_star, n),
                    "bias_asym": bias.ravel(),
                    "bias_asym1": bias1.ravel(),
                    "bias_asym1_bound": bound.ravel(),
                    "asym_step": np.repeat(res.step, p),
                    "asym_leverage": np.repeat(res.leverage, p),
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
    basis: str = "monomial",
) -> pd.DataFrame:
    """Large-m expected prediction risk b∞ᵀΣb∞ + tr(Σ·Cov) over a grid of cells.

    Returns
    -------
    pandas.DataFrame
        One row per (m, degree, λ, scaling), ordered as the arguments, with columns
        ``m, degree, lambda, scaling, basis, alpha, risk_asym, asym_step``: the coefficients
        (and so the penalty) are those of ``basis`` (:data:`study.basis.BASES`).
    """
    frames = []
    for degree in degrees:
        _, cells, alphas, m_arr, res = _grid_moments(
            ms, degree, lams, scalings, x, intercept, slope, noise_sd, penalize_intercept, basis
        )
        risk = noise_sd**2 * (degree + 1) / m_arr + res.bias_risk + res.excess_var_risk
        frames.append(
            pd.DataFrame(
                {
                    "m": [int(c[0]) for c in cells],
                    "degree": int(degree),
                    "lambda": [float(c[1]) for c in cells],
                    "scaling": [c[2] for c in cells],
                    "basis": basis,
                    "alpha": alphas,
                    "risk_asym": risk,
                    "asym_step": res.step,
                    "asym_leverage": res.leverage,
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
