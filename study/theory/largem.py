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
    sigma_u, P, vs = basis.sigma, basis.penalty, basis.v_star
    shifted = sigma_u + rho[:, None, None] * P  # S = Σ_u + ρP
    shifted_inv = np.linalg.inv(shifted)
    N = rho[:, None, None] * (shifted_inv @ P)
    b = -np.einsum("nij,j->ni", N, vs)
    v_inf = vs + b
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
