"""Reference implementations for the tests: the theory in its plainest form, one cell or one
design at a time, which the package itself does not need (it computes the same quantities
vectorised over grids, in :mod:`study.theory.largem` and :mod:`study.engine.tasks`).

Moved here from ``study.theory.largem``: the raw moments and moment matrix, the large-m moments of
one cell and the limit of the bias, and the exact conditional moments given a design.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from study.basis import hankel_index, penalty_matrix, standard_basis, standard_moments
from study.design import XDistribution
from study.scaling import alpha as scaling_alpha
from study.scaling import check_scaling
from study.theory.largem import _large_m

__all__ = [
    "AsymptoticMoments",
    "asymptotic_moments",
    "bias_limit",
    "conditional_moments",
    "moment_matrix",
    "raw_moments",
]


# --- moments ----------------------------------------------------------------------------------


def raw_moments(x: XDistribution, n_max: int) -> np.ndarray:
    """Raw moments μ_n = E[xⁿ], n = 0, …, n_max.

    Computed as E[(center + scale·u)ⁿ] = Σ_i C(n, i)·centerⁿ⁻ⁱ·scaleⁱ·E[uⁱ]. For the uniform
    on [a, b] this equals (b^{n+1} − a^{n+1}) / ((n + 1)(b − a)); since the odd moments of u
    vanish, every term of the sum has the same sign and there is no cancellation (the
    closed form cancels badly on narrow ranges far from 0). For the normal it is exact.

    Parameters
    ----------
    x : XDistribution
        Distribution of x.
    n_max : int
        Highest order, ≥ 0.

    Returns
    -------
    ndarray of shape (n_max + 1,)
    """
    mu_u = standard_moments(x.distribution, n_max)
    c, s = float(x.center), float(x.scale)
    out = np.empty(n_max + 1)
    for n in range(n_max + 1):
        i = np.arange(n + 1)
        binom = np.array([math.comb(n, int(k)) for k in i], dtype=float)
        out[n] = np.sum(binom * c ** (n - i) * s**i * mu_u[: n + 1])
    return out


def moment_matrix(x: XDistribution, degree: int) -> np.ndarray:
    """Population moment matrix Σ_ij = μ_{i+j} = E[φ(x)φ(x)ᵀ]_ij of the raw monomials.

    Ill-conditioned away from [−1, 1]; the package uses :func:`study.basis.standard_basis`.

    Returns
    -------
    ndarray of shape (degree + 1, degree + 1)
    """
    return raw_moments(x, 2 * degree)[hankel_index(degree)]


# --- large-m theory of one cell ----------------------------------------------------------------


@dataclass(frozen=True)
class AsymptoticMoments:
    """Large-m approximation for one cell, in raw coefficients.

    Attributes
    ----------
    alpha : float
        Sum-form α = m·c.
    mean : ndarray of shape (k + 1,)
        w∞ = (Σ + ρD)⁻¹Σw*.
    bias : ndarray of shape (k + 1,)
        b∞ = w∞ − w*.
    cov : ndarray of shape (k + 1, k + 1)
        The sandwich covariance (1/m)(Σ + ρD)⁻¹[σ²Σ + E[φφᵀ(φᵀb∞)²] − Σb∞b∞ᵀΣ](Σ + ρD)⁻¹.
    var : ndarray of shape (k + 1,)
        Its diagonal.
    risk : float
        b∞ᵀΣb∞ + tr(Σ·cov), the expected prediction risk.
    """

    alpha: float
    mean: np.ndarray
    bias: np.ndarray
    cov: np.ndarray
    var: np.ndarray
    risk: float


def asymptotic_moments(
    m: int,
    degree: int,
    lam: float,
    *,
    scaling: str,
    x: XDistribution,
    intercept: float,
    slope: float,
    noise_sd: float,
    penalize_intercept: bool = False,
    sandwich: bool = True,
) -> AsymptoticMoments:
    """Large-m mean, bias, covariance and risk of ŵ for one cell (docs/theory.md).

    ŵ is an M-estimator of the mean loss (1/m)Σ(φᵀw − y)² + ρ·wᵀDw, whose population
    minimiser is w∞ = (Σ + ρD)⁻¹Σw*. Its score at w∞ is ψ = φ(φᵀb∞ − ε) + ρDw∞ =
    φφᵀb∞ − φε − Σb∞ (since ρDw∞ = −Σb∞), with variance σ²Σ + E[φφᵀ(φᵀb∞)²] − Σb∞b∞ᵀΣ;
    the Jacobian is Σ + ρD, hence the sandwich covariance. The E[φφᵀ(φᵀb∞)²] term needs
    moments up to order 4k and is computed exactly from them in the standardised basis.

    Parameters
    ----------
    m : int
        Sample size.
    degree : int
        Polynomial degree k.
    lam : float
        λ ≥ 0 as written in the penalty.
    scaling : {"none", "m", "sqrt-m", "k"}
        Penalty scaling; α = m·c(λ).
    x : XDistribution
        Distribution of x.
    intercept, slope, noise_sd : float
        β0, β1 and σ.
    penalize_intercept : bool, default=False
        Penalise w_0 as well.
    sandwich : bool, default=True
        Include the design-randomness terms E[φφᵀ(φᵀb∞)²] − Σb∞b∞ᵀΣ (set False only to
        show how much they matter).

    Returns
    -------
    AsymptoticMoments
    """
    basis = standard_basis(
        x, degree, intercept=intercept, slope=slope, penalize_intercept=penalize_intercept
    )
    a = scaling_alpha(lam, m=m, degree=degree, scaling=scaling)
    res = _large_m(basis, a / m, m, noise_sd, sandwich=sandwich)
    cov = basis.cov_to_raw(res.cov_u[0])
    return AsymptoticMoments(
        alpha=float(a),
        mean=basis.to_raw(res.v_inf[0]),
        bias=basis.to_raw(res.b_u[0]),
        cov=cov,
        var=np.diagonal(cov).copy(),
        risk=float(noise_sd**2 * (degree + 1) / m + res.bias_risk[0] + res.excess_var_risk[0]),
    )


def _limit_rho(degree: int, scaling: str, lam: float) -> float:
    check_scaling(scaling)
    if scaling in ("m", "sqrt-m"):
        return 0.0
    return float(lam) if scaling == "none" else float(lam) / degree


def bias_limit(
    degree: int,
    scaling: str,
    lam: float,
    *,
    x: XDistribution,
    intercept: float,
    slope: float,
    penalize_intercept: bool = False,
) -> np.ndarray:
    """The m → ∞ limit of the bias of ŵ, per raw coefficient.

    Zero for "m" and "sqrt-m" (ρ → 0); ((Σ + ρD)⁻¹Σ − I)w* ≠ 0 for "none" (ρ = λ) and
    "k" (ρ = λ/k), whose ρ does not depend on m.

    Returns
    -------
    ndarray of shape (degree + 1,)
    """
    rho = _limit_rho(degree, scaling, lam)
    basis = standard_basis(
        x, degree, intercept=intercept, slope=slope, penalize_intercept=penalize_intercept
    )
    if rho == 0.0:
        return np.zeros(degree + 1)
    res = _large_m(basis, rho, 1.0, 0.0, sandwich=False)
    return basis.to_raw(res.b_u[0])


# --- exact conditional moments -----------------------------------------------------------------


def conditional_moments(
    G: np.ndarray,
    *,
    alpha: float | np.ndarray,
    w_star: np.ndarray,
    noise_sd: float,
    penalize_intercept: bool = False,
    penalty: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact mean and covariance of ŵ given the design: A⁻¹Gw* and σ²A⁻¹GA⁻¹, A = G + αD.

    A reference implementation (direct solves, no tricks). The formulas hold in any basis:
    pass the raw Gram matrix G = ΦᵀΦ with raw w* (D from ``penalize_intercept``), or the
    standardised one G_u = B G Bᵀ with v* and ``penalty=P`` (:attr:`StandardBasis.penalty`),
    which is what to do away from [−1, 1].

    Parameters
    ----------
    G : ndarray of shape (..., p, p)
        Gram matrix (or a stack of them).
    alpha : float or ndarray broadcastable to G.shape[:-2]
        Sum-form ridge parameter(s).
    w_star : ndarray of shape (p,)
        True coefficients in the basis of G.
    noise_sd : float
        σ.
    penalize_intercept : bool, default=False
        Used only when ``penalty`` is None: D = I or diag(0, 1, …, 1).
    penalty : ndarray of shape (p, p), optional
        Penalty matrix in the basis of G; overrides ``penalize_intercept``.

    Returns
    -------
    mean : ndarray of shape (..., p)
    cov : ndarray of shape (..., p, p)
    """
    G = np.asarray(G, dtype=float)
    p = G.shape[-1]
    Pm = (
        penalty_matrix(p - 1, penalize_intercept=penalize_intercept)
        if penalty is None
        else (np.asarray(penalty, dtype=float))
    )
    a = np.asarray(alpha, dtype=float)[..., None, None]
    A = G + a * Pm
    Ainv = np.linalg.inv(A)
    mean = np.einsum("...ij,...j->...i", Ainv @ G, np.asarray(w_star, dtype=float))
    cov = noise_sd**2 * Ainv @ G @ Ainv
    return mean, (cov + np.swapaxes(cov, -1, -2)) / 2
