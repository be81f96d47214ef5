"""Large-m theory of penalised polynomial logistic regression (the logistic family).

The estimator minimises the mean log-loss plus (c/2)vᵀPv in the standardised basis u, an
M-estimator with score ψ(v) = (σ(φᵀv) − y)φ + cPv, c = α/m. With σ* = σ(φᵀv*) the true
probability and expectations over x by Gauss quadrature (Legendre for uniform x, Hermite
for normal x; the integrands are smooth):

- the population solution v_c solves E[(σ(φᵀv) − σ*)φ] + cPv = 0 (Newton's method); its
  large-m bias is v_c − v*, zero only when c → 0;
- with A = E[σ′(η_c)φφᵀ] + cP and V = E[((σ_c − σ*)² + σ*(1 − σ*))φφᵀ] − aaᵀ, a = cPv_c
  (the variance of the score, whose mean is 0 at v_c), the sandwich covariance is
  A⁻¹VA⁻¹/m;
- the 1/m term of the mean (Cox and Snell 1968, extended to the penalty): expanding
  0 = Ψ(v̂) to second order around v_c,

      E[v̂] − v_c = A⁻¹(E[J A⁻¹ψ] − ½E[σ″(η_c)φ·φᵀSφ])/m + O(m⁻²),   S = A⁻¹VA⁻¹,

  with J = σ′(η_c)φφᵀ + cP the score's Jacobian, and E[JA⁻¹ψ] = E[σ′_c(σ_c − σ*)hφ] +
  HA⁻¹a, h = φᵀA⁻¹φ, H = A − cP. Without a penalty this is the Cox–Snell bias of
  logistic regression, −½A⁻¹E[σ″hφ]/m.

The expansion describes the estimate where it exists: the Monte Carlo means are taken over
the data sets with an estimate, and at small m, where separation is common, they are not
what the expansion describes; ``asym_step`` (the largest leverage σ′(η_c)·h of a point,
over m) says where it applies.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from study.basis import StandardBasis, standard_basis
from study.design import XDistribution
from study.logistic import sigmoid
from study.results import MAX_LOGISTIC_STEP
from study.scaling import alpha as scaling_alpha
from study.scaling import lam_from_alpha

QUADRATURE_POINTS = 200
# The expansion is compared with the simulation only where the largest leverage of a point
# is at most this (bias) and where 2(k + 1) times it is at most MAX_EXPANSION_STEP
# (variance, risk): unpenalised fits come near separation with appreciable probability
# long before a leverage of 0.5 (at m = 20 and degree 1, leverage 0.2, 1.3 % of the data
# sets separate and the variance of the rest is five times the sandwich's)
# (the number lives in study.results, which the report reads too)


def quadrature(x: XDistribution, n: int = QUADRATURE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Nodes in u and weights summing to 1 for expectations over x (computed once per
    distribution and n: the tuning asks for them at every α it tries)."""
    nodes, weights = _quadrature(x.distribution, n)
    return nodes.copy(), weights.copy()


@functools.cache
def _quadrature(distribution: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    if distribution == "uniform":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return nodes, weights / 2.0
    nodes, weights = np.polynomial.hermite_e.hermegauss(n)
    return nodes, weights / np.sqrt(2.0 * np.pi)


class LogisticLargeM:
    """The large-m quantities of one problem at one c, in the u basis."""

    def __init__(self, basis: StandardBasis, x: XDistribution, c: float):
        u, wq = quadrature(x)
        phi = np.vander(u, basis.degree + 1, increasing=True)
        P = basis.penalty
        true = sigmoid(phi @ basis.v_star)

        def objective(v):  # E[log-loss] + (c/2)vᵀPv, whose gradient is the equation
            eta = phi @ v
            return wq @ (np.logaddexp(0.0, eta) - true * eta) + 0.5 * c * v @ P @ v

        v = basis.v_star.copy()
        value = objective(v)
        for _ in range(200):
            s = sigmoid(phi @ v)
            grad = phi.T @ (wq * (s - true)) + c * P @ v
            hess = (phi.T * (wq * s * (1 - s))) @ phi + c * P
            step = np.linalg.solve(hess, grad)
            t = 1.0  # halved until the objective falls (Newton from v* may overshoot)
            while objective(v - t * step) > value + 1e-14 * abs(value) and t > 1e-12:
                t /= 2
            v = v - t * step
            value = objective(v)
            if np.max(np.abs(step)) <= 1e-13 * max(1.0, np.max(np.abs(v))):
                break
        else:
            raise RuntimeError(
                f"the population solution of degree {basis.degree} at c = α/m = {c:.6g} did "
                "not converge in 200 Newton steps"
            )
        s = sigmoid(phi @ v)
        s1 = s * (1 - s)  # σ′
        s2 = s1 * (1 - 2 * s)  # σ″
        H = (phi.T * (wq * s1)) @ phi
        A = H + c * P
        a = c * P @ v
        meat = (phi.T * (wq * ((s - true) ** 2 + true * (1 - true)))) @ phi - np.outer(a, a)
        A_inv = np.linalg.inv(A)
        S = A_inv @ meat @ A_inv
        h = np.einsum("ni,ij,nj->n", phi, A_inv, phi)
        quad_S = np.einsum("ni,ij,nj->n", phi, S, phi)
        first = phi.T @ (wq * s1 * (s - true) * h) + H @ A_inv @ a
        second = phi.T @ (wq * s2 * quad_S)
        self.v_c = v
        self.b_u = v - basis.v_star
        self.b1_u = A_inv @ (first - 0.5 * second)  # times 1/m
        self.cov_u = S  # times 1/m
        self.max_leverage = float(np.max(s1 * h))  # over m: the largest leverage
        self.hessian_u = H  # E[σ′(η_c)φφᵀ], without the penalty


def logistic_tables(
    ms: Sequence[int],
    degree: int,
    lams: Sequence[float],
    scalings: Sequence[str],
    *,
    x: XDistribution,
    intercept: float,
    slope: float,
    penalize_intercept: bool = False,
    basis: str = "monomial",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The large-m tables of one degree in the layout of the gaussian family's
    (:func:`study.theory.largem.asymptotic_table` and ``asymptotic_risk_table``): per
    (m, λ, scaling) cell ``bias_asym`` = w_c − w*, ``bias_asym1`` with the 1/m term,
    ``bias_asym1_bound`` (the size of what the expansion leaves out: ``asym_step`` times
    the 1/m term, plus its square times the large-m bias, mapped to each raw coefficient),
    ``var_asym`` (the sandwich), ``asym_step`` (the largest leverage σ′(η_c)h of a point,
    over m; ``bias_asym1_bound`` is NaN above MAX_LOGISTIC_STEP), ``asym_leverage``
    (2(k + 1)·``asym_step``: the relative size of the variance's underived 1/m terms,
    against which `study check` compares the variance and the risk; a size, not a bound: at
    m = 60 and 200 the sandwich fell short of 20,000 simulated fits' variance by up to 6.4
    and 4 times ``asym_step``) and ``risk_asym`` = b∞ᵀΣb∞ + tr(Σ·Cov)."""
    problem = standard_basis(
        x, degree, intercept=intercept, slope=slope, penalize_intercept=penalize_intercept,
        basis=basis,
    )  # fmt: skip
    rows, risk_rows = [], []
    cache: dict[float, LogisticLargeM] = {}
    col_norm = np.linalg.norm(problem.B, axis=0)
    p = degree + 1
    for m, lam, scaling in itertools.product(ms, lams, scalings):
        alpha = scaling_alpha(lam, m=int(m), degree=degree, scaling=scaling)
        c = alpha / m
        if c not in cache:
            cache[c] = LogisticLargeM(problem, x, c)
        th = cache[c]
        step = th.max_leverage / m
        b1 = th.b1_u / m
        bias = problem.to_raw(th.b_u)
        bias1 = problem.to_raw(th.b_u + b1)
        size = step * np.linalg.norm(b1) + step**2 * np.linalg.norm(th.b_u)
        bound = size / (1.0 - min(step, MAX_LOGISTIC_STEP)) * col_norm
        if step > MAX_LOGISTIC_STEP:
            bound = np.full(p, np.nan)
        cov_u = th.cov_u / m
        var = np.diagonal(problem.cov_to_raw(cov_u))
        cell = {"m": int(m), "degree": int(degree), "lambda": float(lam), "scaling": scaling}
        cell |= {"basis": basis, "alpha": float(alpha)}
        for j in range(p):
            rows.append(
                cell
                | {
                    "coef": j,
                    "true": float(problem.w_star[j]),
                    "bias_asym": float(bias[j]),
                    "bias_asym1": float(bias1[j]),
                    "bias_asym1_bound": float(bound[j]),
                    "asym_step": step,
                    "asym_leverage": 2 * p * step,
                    "var_asym": float(var[j]),
                }
            )
        risk = float(th.b_u @ problem.sigma @ th.b_u + np.trace(problem.sigma @ cov_u))
        risk_rows.append(
            cell
            | {
                "risk_asym": risk,
                "asym_step": step,
                "asym_leverage": 2 * p * step,
            }
        )
    return pd.DataFrame(rows), pd.DataFrame(risk_rows)


# The risk-optimal penalty of the logistic family. There is no closed form of the risk given
# the design, as there is for least squares, so the tuning minimises the expansion above:
#
#     R̃(α, m) = ‖b(c) + b₁(c)/m‖²_Σ + tr(Σ·S(c))/m,   c = α/m,
#
# whose α-dependent part is exact to order 1/m² (the 1/m² terms of the variance it leaves
# out depend on α only at order 1/m³). Where the expansion does not apply (``asym_leverage``
# above MAX_LOGISTIC_STEP) the α it gives is a guide, not the optimum.
ALPHA_SEARCH = (1e-3, 1e5)  # α searched on a log grid between these, then refined
ALPHA_GRID_POINTS = 33
# the step in c, relative to H's smallest eigenvalue, of the derivative of tr(Σ·S(c)) at
# c = 0 in the limit α*∞
LIMIT_STEP = 1e-4
TUNING_COLUMNS_LOGISTIC = [
    "m",
    "degree",
    "scaling",
    "basis",
    "method",
    "lambda_opt",
    "alpha_opt",
    "risk_opt",
] + ["boundary", "alpha_limit", "asym_leverage"]


def expansion_risk(th: LogisticLargeM, problem: StandardBasis, m: float) -> float:
    """R̃ of one c at m: the squared bias with its 1/m term plus the sandwich variance,
    both under Σ (the risk of the fitted log-odds, E_x[(η̂ − η*)²])."""
    b = th.b_u + th.b1_u / m
    return float(b @ problem.sigma @ b + np.trace(problem.sigma @ th.cov_u) / m)


def best_alpha(problem: StandardBasis, x: XDistribution, m: float) -> dict:
    """α*(m), the minimiser of R̃(α, m) (module comment above): the best of a log grid over
    ALPHA_SEARCH, then Brent's method in log α between its neighbours. Returns alpha,
    risk, boundary ("lower", "upper" or "" when the minimum is inside the range) and
    leverage (2(k + 1) times the largest leverage of a point at α*, as ``asym_leverage``)."""
    from study.theory.tuning import brent_bounded

    cache: dict[float, tuple[float, LogisticLargeM]] = {}

    def at(log_alpha: float) -> float:
        if log_alpha not in cache:
            th = LogisticLargeM(problem, x, math.exp(log_alpha) / m)
            cache[log_alpha] = (expansion_risk(th, problem, m), th)
        return cache[log_alpha][0]

    grid = np.linspace(*np.log(ALPHA_SEARCH), ALPHA_GRID_POINTS)
    values = [at(g) for g in grid]
    i = int(np.argmin(values))
    boundary = "lower" if i == 0 else "upper" if i == len(grid) - 1 else ""
    best = grid[i]
    if not boundary:
        found, value = brent_bounded(at, grid[i - 1], grid[i + 1], xatol=1e-6)
        if value < values[i]:
            best = found
    risk, th = cache[best]
    leverage = 2 * (problem.degree + 1) * th.max_leverage / m
    return {"alpha": math.exp(best), "risk": risk, "boundary": boundary, "leverage": leverage}


def alpha_limit(problem: StandardBasis, x: XDistribution) -> float:
    """α*∞ = lim α*(m). With c = α/m → 0, R̃ = tr(Σ·S₀)/m + (α²dᵀΣd + α(2dᵀΣb₁ + t′))/m²
    + (terms free of α) + O(m⁻³), where d = dv_c/dc = −H⁻¹Pv* at c = 0 (differentiating the
    population equation), b₁ the 1/m term of the bias at c = 0 and t′ the derivative of
    tr(Σ·S(c)) at 0 (a one-sided difference); so α*∞ = −(2dᵀΣb₁ + t′)/(2dᵀΣd). Infinite
    when nothing is penalised in the direction of the truth (dᵀΣd = 0)."""
    zero = LogisticLargeM(problem, x, 0.0)
    H = zero.hessian_u
    d = -np.linalg.solve(H, problem.penalty @ problem.v_star)
    curvature = float(d @ problem.sigma @ d)
    # c·P small against H: c·‖P‖ a small share of H's smallest eigenvalue; one-sided (c < 0
    # may leave the objective without a minimum), second order
    scale = max(1.0, float(np.linalg.norm(problem.penalty, 2)))
    h = LIMIT_STEP * float(np.linalg.eigvalsh(H)[0]) / scale
    one, two = (LogisticLargeM(problem, x, s * h) for s in (1.0, 2.0))
    t0, t1, t2 = (float(np.trace(problem.sigma @ th.cov_u)) for th in (zero, one, two))
    slope = (-3 * t0 + 4 * t1 - t2) / (2 * h)
    linear = 2 * float(d @ problem.sigma @ zero.b1_u) + slope
    if curvature <= 0.0:
        return math.inf
    return -linear / (2 * curvature)


def logistic_tuning_table(
    ms: Sequence[int],
    degree: int,
    scalings: Sequence[str],
    *,
    x: XDistribution,
    intercept: float,
    slope: float,
    penalize_intercept: bool = False,
    basis: str = "monomial",
) -> pd.DataFrame:
    """tuning.csv of a logistic design, one degree and basis (the penalty, and so α*,
    depends on the basis): per m and scaling the best λ, α*, R̃ there, ``boundary``, α*∞ and
    ``asym_leverage`` at α*, which says whether the expansion applies (≤ MAX_LOGISTIC_STEP;
    above it the α* of the expansion is a guide and the Monte Carlo risk on the design's
    λ grid is the measure). ``method`` is "expansion"."""
    problem = standard_basis(
        x, degree, intercept=intercept, slope=slope, penalize_intercept=penalize_intercept,
        basis=basis,
    )  # fmt: skip
    limit = alpha_limit(problem, x)
    rows = []
    for m in ms:
        best = best_alpha(problem, x, m)
        for s in scalings:
            lam = lam_from_alpha(best["alpha"], m=int(m), degree=degree, scaling=s)
            rows.append(
                {
                    "m": int(m),
                    "degree": int(degree),
                    "scaling": s,
                    "basis": basis,
                    "method": "expansion",
                    "lambda_opt": lam,
                    "alpha_opt": best["alpha"],
                    "risk_opt": best["risk"],
                    "boundary": best["boundary"],
                    "alpha_limit": limit,
                    "asym_leverage": best["leverage"],
                }
            )
    return pd.DataFrame(rows, columns=TUNING_COLUMNS_LOGISTIC)
