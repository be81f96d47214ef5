"""The tuned λ: the risk-optimal penalty, and where it lies across m under each scaling.

The risk-optimal α (docs/theory.md) is found three ways: its limit as m → ∞
(:func:`optimal_alpha_limit`), the minimiser of the large-m risk of :mod:`study.theory.largem`
(:func:`optimal_lambda_asymptotic`), and the minimiser of the exact expected risk given the
design, averaged over designs (:func:`conditional_risk`, :func:`optimal_lambda_conditional`).

For each degree and m, α*(m) minimises the expected prediction risk, (a) exactly given the
design, averaged over simulated designs (the first chunks' data sets, from the same random
streams as the simulation), and (b) by the large-m formula. The risk depends on α only, so
λ* under each scaling is the λ that gives α*: λ* = α*/m under `none`, α* under `m`.

The transfer table answers the practical question: tune λ once at m₀, keep it, and fit at
another m. Under `m` the α it implies stays put; under `none` it grows like m. The ratio
of the risk at that λ to the risk at the best λ for m says what keeping λ costs.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import itertools
import math
import threading
from typing import NamedTuple

import numpy as np
import pandas as pd

from study.basis import BASES, hankel_index, standard_basis
from study.conditional import conditional_risk_function, quantities
from study.design import Design, XDistribution
from study.engine.streams import chunk_power_sums, n_chunks
from study.results import TUNING_DESIGNS
from study.scaling import alpha as scaling_alpha
from study.scaling import lam_from_alpha
from study.theory.largem import _large_m

TUNING_COLUMNS = (
    ["m", "degree", "scaling", "method"]
    + ["lambda_opt", "alpha_opt", "log_alpha_se", "risk_opt", "risk_opt_se", "boundary"]
    + ["alpha_limit", "benefit", "benefit_se"]
)
TRANSFER_COLUMNS = (
    ["m0", "m", "degree", "scaling"]
    + ["lambda", "alpha"]
    + ["risk", "risk_opt", "risk_ratio", "risk_ratio_se"]
)
MATCHED_COLUMNS = (
    ["m0", "m", "degree", "scaling", "lambda", "alpha", "coef"]
    + ["bias", "bias_se", "variance", "variance_se"]
    + ["risk", "risk_se", "risk_ratio", "risk_ratio_se"]
)
DESIGNS_FOR_TUNING = TUNING_DESIGNS


# --- the risk-optimal penalty ----------------------------------------------------------


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
    log_alpha_se : float
        Standard error of log α* from the sample of designs it was tuned on (NaN for the
        large-m method, which has none, and at a boundary); λ* has the same relative one.
    risk_se : float
        Standard error of the minimal risk over the designs (NaN for the large-m method).
    benefit, benefit_se : float
        What the tuned penalty gains: the risk without a penalty over the minimal risk
        (inf where least squares does not exist), and its standard error over the designs
        (NaN for the large-m method, and where the unpenalised risk is not finite).
    """

    lam: float
    alpha: float
    risk: float
    boundary: str | None
    log_alpha_se: float = math.nan
    risk_se: float = math.nan
    benefit: float = math.nan
    benefit_se: float = math.nan


def optimal_alpha_limit(
    degree: int,
    *,
    x: XDistribution,
    intercept: float,
    slope: float,
    noise_sd: float,
    penalize_intercept: bool = False,
    basis: str = "monomial",
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
        x,
        degree,
        intercept=intercept,
        slope=slope,
        penalize_intercept=penalize_intercept,
        basis=basis,
    )
    sigma_u_inv = np.linalg.inv(basis.sigma)
    t = np.trace(sigma_u_inv @ basis.penalty)
    Pv = basis.penalty @ basis.v_star
    q = Pv @ sigma_u_inv @ Pv
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
    vals = _grid_values(objective, grid)
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
    t, f_t = brent_bounded(
        lambda t: float(objective(np.array([math.exp(t)]))[0]), grid[i - 1], grid[i + 1]
    )
    if f_t <= vmin:
        return float(math.exp(t)), float(f_t), None
    return float(math.exp(grid[i])), vmin, None


# the grid search looks at every COARSE-th point of the grid first, then at every point
# within COARSE points of the best of those
COARSE = 8


def _falls_then_rises(values: np.ndarray, rel_tol: float = 1e-9) -> bool:
    """Whether a sequence (NaN and inf as +inf) falls and then rises, flat stretches
    allowed: no rise by more than rel_tol·scale is followed by a fall by more."""
    v = np.where(np.isfinite(values), values, np.inf)
    finite = v[np.isfinite(v)]
    if finite.size < 2:
        return True
    tol = rel_tol * max(float(np.abs(finite).max()), np.finfo(float).tiny)
    with np.errstate(invalid="ignore"):
        step = np.diff(v)
    rises = np.flatnonzero(step > tol)
    falls = np.flatnonzero(step < -tol)
    return not (rises.size and falls.size and falls.max() > rises.min())


def _grid_values(objective, grid: np.ndarray) -> np.ndarray:
    """The objective on the grid where the search needs it, NaN elsewhere: on every
    COARSE-th point (both ends included), then on every point within COARSE points of the
    best of them. Where the objective falls and then rises along the grid, as the risk in
    log α does where the variance falls and the bias grows, the grid's minimum is among the
    points evaluated, so the search ends where a search of every point would, at a fifth of
    the cost (a test compares the two on 72 tunings, both bases, σ from 0 to 1.7). Where the
    coarse values dip twice, the risk of a design-averaged bias that is not monotone in α,
    every point is evaluated."""
    n = grid.size
    coarse = np.unique(np.r_[np.arange(0, n, COARSE), n - 1])
    vals = np.full(n, np.nan)
    vals[coarse] = objective(np.exp(grid[coarse]))
    if np.all(np.isnan(vals[coarse])):
        return vals
    if not _falls_then_rises(vals[coarse]):  # two dips: every point, as the search needs
        rest = np.setdiff1d(np.arange(n), coarse)
        vals[rest] = objective(np.exp(grid[rest]))
        return vals
    best = int(coarse[np.nanargmin(vals[coarse])])
    near = np.arange(max(0, best - COARSE), min(n, best + COARSE + 1))
    near = near[~np.isin(near, coarse)]
    vals[near] = objective(np.exp(grid[near]))
    return vals


def brent_bounded(f, lo: float, hi: float, xatol: float = 1e-10, maxiter: int = 500):
    """The minimum of a scalar function on [lo, hi] by Brent's method (golden-section steps
    and parabolic interpolation), as ``scipy.optimize.minimize_scalar(method="bounded")``
    computes it; written out here because importing scipy.optimize costs a worker process
    0.6 to 1.4 s, more than the minimisations themselves. Returns (x, f(x))."""
    golden = 0.5 * (3.0 - math.sqrt(5.0))
    sqrt_eps = math.sqrt(np.finfo(float).eps)
    a, b = float(lo), float(hi)
    v = w = x = a + golden * (b - a)  # the best point so far (x), the two before it
    fv = fw = fx = f(x)
    d = e = 0.0  # the last step, and the one before
    for _ in range(maxiter):
        mid = 0.5 * (a + b)
        tol1 = sqrt_eps * abs(x) + xatol / 3.0
        tol2 = 2.0 * tol1
        if abs(x - mid) <= tol2 - 0.5 * (b - a):
            break
        parabolic = False
        if abs(e) > tol1:  # try a parabola through x, w and v
            r = (x - w) * (fx - fv)
            q = (x - v) * (fx - fw)
            p = (x - v) * q - (x - w) * r
            q = 2.0 * (q - r)
            if q > 0.0:
                p = -p
            q = abs(q)
            e_before, e = e, d
            if abs(p) < abs(0.5 * q * e_before) and q * (a - x) < p < q * (b - x):
                parabolic = True
                d = p / q
                u = x + d
                if u - a < tol2 or b - u < tol2:  # not too near the ends
                    d = tol1 if mid >= x else -tol1
        if not parabolic:  # a golden-section step into the larger part
            e = (a - x) if x >= mid else (b - x)
            d = golden * e
        u = x + (d if abs(d) >= tol1 else math.copysign(tol1, d) if d != 0 else tol1)
        fu = f(u)
        if fu <= fx:
            if u >= x:
                a = x
            else:
                b = x
            v, fv, w, fw, x, fx = w, fw, x, fx, u, fu
        else:
            if u < x:
                a = u
            else:
                b = u
            if fu <= fw or w == x:
                v, fv, w, fw = w, fw, u, fu
            elif fu <= fv or v == x or v == w:
                v, fv = u, fu
    return x, fx


def _log_alpha_range(m: float) -> tuple[float, float]:
    """Search range of log α: α from 1e-8 to min(1e12, 1e6·m), i.e. ρ = α/m ≤ 1e6.

    Beyond ρ = 1e6 the penalised directions are numerically frozen and Σ_u + ρP is too
    ill-conditioned for the risk to be resolved; a minimum there is reported as α = ∞.
    """
    return math.log(1e-8), math.log(min(1e12, 1e6 * max(m, 1.0)))


def _where_best(alpha: float, m: float) -> float:
    """The α at which a tuned penalty's minimal risk was found: α* itself, or for an upper
    boundary (α* = ∞, the risk still falling at the top of the search range) the top of
    that range, where the tuning measured the risk it reports; the risk at α = ∞ itself is
    no number the solves give."""
    return math.exp(_log_alpha_range(m)[1]) if math.isinf(alpha) else alpha


def _carried_se(log_alpha_se: float, boundary: str | None) -> float:
    """SE(log α*(m0)) of a λ carried from m0, for :func:`_kept_ratio`. A λ* tuned at a
    boundary has none (its SE is undefined) and is evaluated where the ratio's slope in
    log α is nil: at α = 0 (lower), or at the top of each m's search range (upper,
    :func:`_where_best`), where ρ = α/m = 1e6 has frozen the penalised directions. Its
    slope term is then 0; that α*(m0) might not lie at the boundary is not counted."""
    return 0.0 if boundary in ("upper", "lower") else log_alpha_se


def optimal_lambda_asymptotic(
    m: int,
    degree: int,
    *,
    scaling: str,
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


def optimal_lambda_conditional(
    G_stack_u: np.ndarray,
    m: int,
    degree: int,
    *,
    scaling: str,
    x: XDistribution,
    intercept: float,
    slope: float,
    noise_sd: float,
    penalize_intercept: bool = False,
    basis: str = "monomial",
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
    G = np.asarray(G_stack_u, dtype=float)
    if G.shape[-2:] != (degree + 1, degree + 1):
        raise ValueError(
            f"G_stack_u must have shape (R, {degree + 1}, {degree + 1}). Got {G.shape} instead."
        )
    problem = (x, intercept, slope, noise_sd, penalize_intercept, basis)
    key = (hashlib.blake2b(G.tobytes(), digest_size=20).digest(), G.shape, m, degree, problem)
    with _TUNED_LOCK:
        tuned = _TUNED_CACHE.get(key)
    if tuned is None:
        tuned = _tune_conditional(G, m, degree, *problem)
        with _TUNED_LOCK:
            if len(_TUNED_CACHE) >= _TUNED_CACHE_SIZE:
                _TUNED_CACHE.pop(next(iter(_TUNED_CACHE)))
            _TUNED_CACHE[key] = tuned
    return tuned._replace(
        lam=float(lam_from_alpha(tuned.alpha, m=int(m), degree=degree, scaling=scaling))
    )


# The theory tunes the same designs more than once (the tuning table, the matched
# comparison at m0, the sensitivity at the design's σ, the monomial row of bases.csv): the
# last few results are kept, per α (λ follows from the scaling).
_TUNED_CACHE: dict[tuple, TunedPenalty] = {}
_TUNED_CACHE_SIZE = 64
_TUNED_LOCK = threading.Lock()


def _tune_conditional(G, m, degree, x, intercept, slope, noise_sd, penalize_intercept, basis):
    """:func:`optimal_lambda_conditional` without its cache, with λ under scaling "m"."""
    basis = standard_basis(
        x,
        degree,
        intercept=intercept,
        slope=slope,
        penalize_intercept=penalize_intercept,
        basis=basis,
    )
    per_design = conditional_risk_function(G, basis=basis, noise_sd=noise_sd, per_design=True)

    def risk(alphas):
        return per_design(alphas).mean(axis=-1)

    r0 = risk(np.array([0.0]))[0]
    a_star, r_star, boundary = _minimise_log_alpha(risk, float(r0), *_log_alpha_range(float(m)))
    lam = lam_from_alpha(a_star, m=int(m), degree=degree, scaling="m")
    se = _standard_errors(per_design, a_star) if boundary is None else (math.nan, math.nan)
    benefit = _benefit(per_design, _where_best(a_star, m))
    return TunedPenalty(
        lam=float(lam),
        alpha=float(a_star),
        risk=float(r_star),
        boundary=boundary,
        log_alpha_se=se[0],
        risk_se=se[1],
        benefit=benefit[0],
        benefit_se=benefit[1],
    )


def _benefit(per_design, a_star: float) -> tuple[float, float]:
    """R̄(0)/R̄(α*) over the designs, and its standard error by the delta method for a ratio
    of two means over the same designs: SD_i(R_i(0) − ratio·R_i(α*)) / (√n·R̄(α*))."""
    r = per_design(np.array([0.0, a_star]))  # (2, n)
    if not np.all(np.isfinite(r[0])):
        return math.inf, math.nan
    n, best = r.shape[1], float(r[1].mean())
    ratio = float(r[0].mean()) / best
    return ratio, float(np.std(r[0] - ratio * r[1], ddof=1) / math.sqrt(n) / best)


# step in log α of the differences behind the standard error of log α*
SE_STEP = 0.05


def _standard_errors(per_design, a_star: float) -> tuple[float, float]:
    """Standard errors of log α* and of the minimal risk, from the n designs the risk is
    averaged over (the delta method for the minimiser of a mean): log α* solves
    mean_i R_i'(t) = 0 with t = log α, so SE(t*) = SD_i(R_i'(t*)) / (√n · mean_i R_i''(t*)),
    the derivatives by central differences of step SE_STEP. NaN where the curvature is not
    positive (a flat risk)."""
    t = math.log(a_star)
    h = SE_STEP
    r = per_design(np.exp([t - h, t, t + h]))  # (3, n)
    n = r.shape[1]
    slope = (r[2] - r[0]) / (2 * h)
    curvature = float(np.mean(r[2] - 2 * r[1] + r[0])) / h**2
    risk_se = float(np.std(r[1], ddof=1) / math.sqrt(n))
    if not (np.all(np.isfinite(r)) and curvature > 0):
        return math.nan, risk_se
    return float(np.std(slope, ddof=1) / math.sqrt(n) / curvature), risk_se


# --- the tables across m ---------------------------------------------------------------


def design_grams(design: Design, m: int, degree: int, n: int = DESIGNS_FOR_TUNING) -> np.ndarray:
    """Gram matrices G_u of the first n simulated designs of size m (chunk 0, then 1, …):
    the simulation's own designs, from the x stream alone (taken from the power sums this
    process kept when its tasks drew them, :func:`~study.engine.streams.chunk_power_sums`,
    else drawn again). The power sums are taken once per process for the largest degree
    asked for so far within :func:`sums_of_degree` (the theory of every degree of a design
    shares them): a power sum is the same number whatever the largest power summed with it."""
    K = max(degree, _SUMS_DEGREE.get())
    sums = _design_power_sums(design.seed, design.x, design.replications, m, K, n, design)
    return sums[:, hankel_index(degree)]


# the largest degree whose power sums design_grams draws (see sums_of_degree)
_SUMS_DEGREE: contextvars.ContextVar[int] = contextvars.ContextVar("sums_degree", default=0)


@contextlib.contextmanager
def sums_of_degree(K: int):
    """Within this block design_grams draws the power sums up to degree K at least, so that
    the theory of every degree up to K reuses one draw of the tuning designs."""
    token = _SUMS_DEGREE.set(K)
    try:
        yield
    finally:
        _SUMS_DEGREE.reset(token)


_SUMS_CACHE: dict[tuple, np.ndarray] = {}
_SUMS_CACHE_SIZE = 32
_SUMS_LOCK = threading.Lock()


def _design_power_sums(seed, x, replications, m, K, n, design) -> np.ndarray:
    """Power sums Σu^p (p ≤ 2K) of the first n designs of size m, cached by what they
    depend on (the seed, the x distribution, the chunk layout of the replications), and
    served from a draw of a larger K where there is one."""
    with _SUMS_LOCK:  # pieces may run in threads of one process
        for (key, K_have), sums in _SUMS_CACHE.items():
            if key == (seed, x, replications, m, n) and K_have >= K:
                return sums
    parts = []
    chunk = got = 0
    while got < n and chunk < n_chunks(replications, m):
        power_sums, _ = chunk_power_sums(design, m, chunk, K, first=n - got, noise=False)
        parts.append(power_sums)
        got += power_sums.shape[0]
        chunk += 1
    sums = np.concatenate(parts)
    with _SUMS_LOCK:
        if len(_SUMS_CACHE) >= _SUMS_CACHE_SIZE:
            _SUMS_CACHE.pop(next(iter(_SUMS_CACHE)))
        _SUMS_CACHE[((seed, x, replications, m, n), K)] = sums
    return sums


def _kw(design: Design) -> dict:
    return dict(
        x=design.x,
        intercept=design.intercept,
        slope=design.slope,
        noise_sd=design.noise_sd,
        penalize_intercept=design.penalize_intercept,
    )


def tuning_table(design: Design) -> pd.DataFrame:
    """λ*(m), α*(m) and the minimal risk for every m, degree and scaling, both methods."""
    rows = []
    for k in design.degree:
        limit = optimal_alpha_limit(k, **_kw(design))
        for m in design.m:
            grams = design_grams(design, m, k)
            cond = optimal_lambda_conditional(grams, m, k, scaling="m", **_kw(design))
            asym = optimal_lambda_asymptotic(m, k, scaling="m", **_kw(design))
            for method, tuned in (("conditional", cond), ("asymptotic", asym)):
                optimum = {"alpha_opt": tuned.alpha, "log_alpha_se": tuned.log_alpha_se}
                optimum |= {"risk_opt": tuned.risk, "risk_opt_se": tuned.risk_se}
                optimum |= {"boundary": tuned.boundary or "", "alpha_limit": limit}
                optimum |= {"benefit": tuned.benefit, "benefit_se": tuned.benefit_se}
                for s in design.scaling:
                    lam_opt = lam_from_alpha(tuned.alpha, m=m, degree=k, scaling=s)
                    cell = {"m": m, "degree": k, "scaling": s, "method": method}
                    rows.append({**cell, "lambda_opt": lam_opt, **optimum})
    return pd.DataFrame(rows, columns=TUNING_COLUMNS)


def _kept_ratio(r_at, r_lo, r_hi, r_best, log_alpha_se_m0: float) -> tuple[float, float]:
    """risk(α kept from m0)/risk(best α at m) and its standard error, from the risks given
    each design of m at α, at α·e^∓SE_STEP and at the best α. Two sources of error: the
    designs of m (the delta method for a ratio of two means over the same designs) and
    those of m0, through the ratio's slope in log α times SE(log α*(m0)) (pass 0 when m0 is
    m). The best α at m is a minimum, so its own error moves the ratio only to second
    order and is left out."""
    best = float(r_best.mean())
    ratio = float(r_at.mean()) / best
    var_m = float(np.var(r_at - ratio * r_best, ddof=1)) / r_best.size / best**2
    slope = float(r_hi.mean() - r_lo.mean()) / (2 * SE_STEP) / best
    return ratio, math.sqrt(var_m + (slope * log_alpha_se_m0) ** 2)


def transfer_table(design: Design, tuning: pd.DataFrame) -> pd.DataFrame:
    """Risk at every m of the λ tuned at each m0 (conditional method), relative to the best.

    Designs with m ≤ degree + 2 are left out: there the unpenalised risk is infinite and the
    comparison says nothing about scaling. ``risk_ratio_se`` is the ratio's standard error
    from both samples of designs: those of m, over which both risks are averaged (the delta
    method for a ratio of means), and those of m0, through the standard error of the λ*
    tuned there (the ratio's slope in log α times it). The best α at m is a minimum, so its
    own error moves the ratio only to second order and is left out.
    """
    rows = []
    cond = tuning[tuning.method == "conditional"]
    keys = list(zip(cond.m, cond.degree, cond.scaling, strict=True))
    se = [_carried_se(v, b) for v, b in zip(cond.log_alpha_se, cond.boundary, strict=True)]
    values = zip(cond.lambda_opt, cond.alpha_opt, se, strict=True)
    best = dict(zip(keys, values, strict=True))
    h = SE_STEP
    for k in design.degree:
        basis = design.standard_basis(k)
        pairs = [(m0, s) for m0, s in itertools.product(design.m, design.scaling) if m0 > k + 2]
        for m in design.m:
            if m <= k + 2 or not pairs:
                continue
            lams = [float(best[(m0, k, s)][0]) for m0, s in pairs]
            tuned = zip(lams, (s for _, s in pairs), strict=True)
            alphas = np.array([scaling_alpha(lam, m=m, degree=k, scaling=s) for lam, s in tuned])
            # a λ* = ∞ (upper boundary at m0) is evaluated where m's tuning found its best
            at = np.array([_where_best(a, m) for a in alphas])
            a_best = _where_best(float(best[(m, k, design.scaling[0])][1]), m)  # one per (m, k)
            per_design = conditional_risk_function(
                design_grams(design, m, k), basis=basis, noise_sd=design.noise_sd, per_design=True
            )
            # every (m0, scaling) at this m in one batched evaluation, with the neighbours
            # in log α that give the slope, and the best α
            shifted = np.concatenate([at, at * math.exp(-h), at * math.exp(h)])
            r = per_design(np.concatenate([shifted, [a_best]]))
            r_at, r_lo, r_hi, r_best = r[: len(alphas)], *np.split(r[len(alphas) : -1], 2), r[-1]
            risk_opt = float(r_best.mean())
            for i, ((m0, s), lam, a) in enumerate(zip(pairs, lams, alphas, strict=True)):
                se_m0 = 0.0 if m0 == m else float(best[(m0, k, s)][2])
                ratio, ratio_se = _kept_ratio(r_at[i], r_lo[i], r_hi[i], r_best, se_m0)
                row = {"m0": m0, "m": m, "degree": k, "scaling": s, "lambda": lam, "alpha": a}
                row |= {"risk": float(r_at[i].mean()), "risk_opt": risk_opt}
                row |= {"risk_ratio": ratio, "risk_ratio_se": ratio_se}
                rows.append(row)
    rows.sort(key=lambda r: (r["degree"], r["scaling"], r["m0"], r["m"]))
    return pd.DataFrame(rows, columns=TRANSFER_COLUMNS)


def matched_table(design: Design, tuning: pd.DataFrame) -> pd.DataFrame:
    """The matched comparison: each scaling's λ tuned at m0 = ``design.reference_m`` (the
    same α* there for every scaling) and held fixed as m changes; the bias, variance and
    prediction risk of the estimator that results at every m of the design.

    Exact given each design and averaged over the tuning's designs of m
    (:func:`design_grams`): bias E_X[E[ŵ_j|X]] − w*_j, variance E_X[Var[ŵ_j|X]] +
    Var_X(E[ŵ_j|X]) (the law of total variance), risk E_X[E[R|X]]; each with the standard
    error of its mean over the designs. ``risk_ratio`` is the risk over the risk at the best
    α for m (``tuning``'s conditional α*), with its standard error as in
    :func:`transfer_table`: from the designs of m and, through SE(log α*(m0)), of m0.
    """
    m0 = design.reference_m
    cond = tuning[tuning.method == "conditional"]
    rows = []
    h = SE_STEP
    for k in design.degree:
        basis = design.standard_basis(k)
        tuned = optimal_lambda_conditional(
            design_grams(design, m0, k), m0, k, scaling="m", **_kw(design)
        )
        lams = {s: lam_from_alpha(tuned.alpha, m=m0, degree=k, scaling=s) for s in design.scaling}
        for m in design.m:
            grams = design_grams(design, m, k)
            n, p = grams.shape[0], grams.shape[-1]
            alphas = {s: scaling_alpha(lams[s], m=m, degree=k, scaling=s) for s in design.scaling}
            at = {s: _where_best(a, m) for s, a in alphas.items()}  # λ* = ∞: the range's top
            grid = np.unique(list(at.values()))
            coef, _, _ = quantities(grams, np.zeros((n, p)), basis, grid, design.noise_sd)
            risk_of = conditional_risk_function(
                grams, basis=basis, noise_sd=design.noise_sd, per_design=True
            )
            best = cond[(cond.m == m) & (cond.degree == k)].alpha_opt.iloc[0]
            r_best = risk_of(np.array([_where_best(best, m)]))[0]
            se_m0 = 0.0 if m == m0 else _carried_se(tuned.log_alpha_se, tuned.boundary)
            for s, a in alphas.items():
                i = int(np.searchsorted(grid, at[s]))
                e, v = coef[:, i, :, 2], coef[:, i, :, 4]  # (n, p): E[ŵ|X] − w*, Var[ŵ|X]
                b = at[s]
                r_at, r_lo, r_hi = risk_of(np.array([b, b * math.exp(-h), b * math.exp(h)]))
                ratio, ratio_se = _kept_ratio(r_at, r_lo, r_hi, r_best, se_m0)
                total = v + (e - e.mean(axis=0)) ** 2  # per design: mean is the variance
                cell = {"m0": m0, "m": m, "degree": k, "scaling": s, "lambda": lams[s]}
                cell |= {"alpha": a}
                fit = {"risk": float(r_at.mean())}
                fit["risk_se"] = float(np.std(r_at, ddof=1) / math.sqrt(n))
                fit |= {"risk_ratio": ratio, "risk_ratio_se": ratio_se}
                for j in range(p):
                    row = {**cell, "coef": j, "bias": float(e[:, j].mean())}
                    row["bias_se"] = float(np.std(e[:, j], ddof=1) / math.sqrt(n))
                    row["variance"] = float(total[:, j].mean())
                    row["variance_se"] = float(np.std(total[:, j], ddof=1) / math.sqrt(n))
                    rows.append(row | fit)
    return pd.DataFrame(rows, columns=MATCHED_COLUMNS)


# the noise levels of the sensitivity table, as multiples of the design's σ
NOISE_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
SENSITIVITY_COLUMNS = (
    ["degree", "noise_factor", "noise_sd", "noise_to_slope", "m0", "m"]
    + ["alpha_m0", "alpha_m", "alpha_m_se", "alpha_limit"]
    + ["extra_m", "extra_m_se", "extra_none", "extra_none_se"]
)


def sensitivity_table(design: Design) -> pd.DataFrame:
    """How the best penalty and the cost of keeping it move with the noise level.

    For σ = each of NOISE_FACTORS × the design's σ, per degree: α* at m0 =
    ``design.reference_m`` and at the largest m (exact given each design, averaged over the
    tuning's designs, as in :func:`tuning_table`), its limit α*∞, and the extra risk at the
    largest m of the λ tuned at m0 under `m` and under `none`, with standard errors as in
    :func:`transfer_table`. With the intercept unpenalised, the risk scales as σ² and as
    the slope² together, so these numbers depend on σ/|β₁| alone (``noise_to_slope``;
    tested): the table covers the slopes too."""
    m0, m_max = design.reference_m, max(design.m)
    rows = []
    h = SE_STEP
    for k in design.degree:
        basis = design.standard_basis(k)
        g0, g1 = design_grams(design, m0, k), design_grams(design, m_max, k)
        for factor in NOISE_FACTORS:
            kw = _kw(design) | {"noise_sd": factor * design.noise_sd}
            sigma = kw["noise_sd"]
            at_m0 = optimal_lambda_conditional(g0, m0, k, scaling="m", **kw)
            at_m = optimal_lambda_conditional(g1, m_max, k, scaling="m", **kw)
            per_design = conditional_risk_function(
                g1, basis=basis, noise_sd=sigma, per_design=True
            )
            row = {"degree": k, "noise_factor": factor, "noise_sd": sigma}
            row["noise_to_slope"] = sigma / abs(design.slope) if design.slope else math.inf
            row |= {"m0": m0, "m": m_max, "alpha_m0": at_m0.alpha, "alpha_m": at_m.alpha}
            row["alpha_m_se"] = at_m.alpha * at_m.log_alpha_se
            row["alpha_limit"] = optimal_alpha_limit(k, **kw)
            r_best = per_design(np.array([_where_best(at_m.alpha, m_max)]))[0]
            se_m0 = 0.0 if m0 == m_max else _carried_se(at_m0.log_alpha_se, at_m0.boundary)
            for scaling in ("m", "none"):
                lam = lam_from_alpha(at_m0.alpha, m=m0, degree=k, scaling=scaling)
                a = _where_best(scaling_alpha(lam, m=m_max, degree=k, scaling=scaling), m_max)
                r_at, r_lo, r_hi = per_design(np.array([a, a * math.exp(-h), a * math.exp(h)]))
                ratio, ratio_se = _kept_ratio(r_at, r_lo, r_hi, r_best, se_m0)
                row[f"extra_{scaling}"] = ratio - 1
                row[f"extra_{scaling}_se"] = ratio_se
            rows.append(row)
    return pd.DataFrame(rows, columns=SENSITIVITY_COLUMNS)


BASES_COLUMNS = [
    "degree",
    "basis",
    "m0",
    "m",
    "alpha_m0",
    "alpha_m0_se",
    "alpha_m",
    "alpha_m_se",
] + ["alpha_limit", "hkb"]


def bases_table(design: Design) -> pd.DataFrame:
    """The number of weights: per degree, the risk-optimal α in the monomial basis and in
    the basis orthonormal under the distribution of x, at m0 = ``design.reference_m`` and
    at the largest m (exact given each design, averaged over the tuning's designs), their
    limits α*∞, and the Hoerl–Kennard–Baldwin choice σ²·k/Σ_{j≥1} w*_j² of each basis's own
    coefficients, which α*∞ equals in the orthonormal basis only (Σ = I there; tested).
    The same designs serve both bases: only the penalty differs."""
    m0, m_max = design.reference_m, max(design.m)
    rows = []
    for k in design.degree:
        g0, g1 = design_grams(design, m0, k), design_grams(design, m_max, k)
        for name in BASES:
            kw = _kw(design) | {"basis": name}
            at_m0 = optimal_lambda_conditional(g0, m0, k, scaling="m", **kw)
            at_m = optimal_lambda_conditional(g1, m_max, k, scaling="m", **kw)
            basis = standard_basis(
                design.x,
                k,
                intercept=design.intercept,
                slope=design.slope,
                penalize_intercept=design.penalize_intercept,
                basis=name,
            )
            first = 0 if design.penalize_intercept else 1
            signal = float(np.sum(basis.w_star[first:] ** 2))
            p = k + 1 - first
            row = {"degree": k, "basis": name, "m0": m0, "m": m_max}
            row |= {"alpha_m0": at_m0.alpha, "alpha_m0_se": at_m0.alpha * at_m0.log_alpha_se}
            row |= {"alpha_m": at_m.alpha, "alpha_m_se": at_m.alpha * at_m.log_alpha_se}
            row["alpha_limit"] = optimal_alpha_limit(k, **kw)
            row["hkb"] = design.noise_sd**2 * p / signal if signal > 0 else math.inf
            rows.append(row)
    return pd.DataFrame(rows, columns=BASES_COLUMNS)
