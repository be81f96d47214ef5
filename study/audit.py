"""An audit from the seeds: a second, deliberately plain implementation of the simulation,
against the numbers the engine recorded.

The Monte Carlo and the Rao–Blackwellised estimates of the engine come from the same linear
map of the same data, so comparing them tests the noise and nothing else: not α, the
penalty, the basis, the x values, nor whether the map is a ridge solution at all. This
module recomputes estimates from the documented random streams alone (docs/engine.md),
and imports nothing from the engine, the basis, the fit or the conditional moments:

- the chunks of m: 256 data sets, halved while a chunk holds more than 2²² points; chunk c
  of m draws from ``SeedSequence(seed, spawn_key=(m, c))``, whose first child draws
  u = (x − center)/scale data set after data set (uniform on [−1, 1] or standard
  normal) and whose second draws the noise: with K the design's largest degree, a data
  set of more than K + 1 points takes K + 1 standard normals z and its noise enters as
  Φᵤᵀε = L·z, L the Cholesky factor of the Gram matrix Φᵤᵀ Φᵤ = LLᵀ in u (where it has
  none, or a pivot L_jj² below 1e-10 of its largest diagonal entry, V·diag(√λ) from its
  eigendecomposition, eigenvalues below (K + 1)·ε·λ_max as 0); a data set of at most
  K + 1 points takes its m values ε and Φᵤᵀε is summed from them;
- the features are the monomials of the original x, or, for the cells of the orthonormal
  basis, ψ(u) from NumPy's Legendre (uniform x) or probabilists' Hermite (normal x)
  Vandermonde matrices, normalised so that E[ψψᵀ] = I, whose noise scores are L·Φᵤᵀε
  (ψ = L·φ(u)); α follows from the written definition of each scaling; the penalty is
  diag(0, 1, …, 1), or the identity with ``penalize_intercept``;
- the fit solves the augmented least-squares problem [Φ; √α·D] w ≈ [y; 0], reduced by a
  QR factorisation Φ = QR to [R; √α·D] w ≈ [Qᵀy; 0] (the same solution), where the
  responses enter only through Qᵀy = R·w* + σ·Qᵀε and Rᵀ(Qᵀε) = Φᵀε.

Two comparisons (:func:`audit`): ŵ of the first data set of every chunk (up to 64 chunks)
for every cell against the engine's record of it (``first_k*`` in draws.npz); and, over
all data sets of chunk 0, the means of e = E[ŵ|X] − w*, e² and Var[ŵ|X] for every cell
against the engine's (``chunk0_mean_k*``; a cell where a fit of chunk 0 failed is not
comparable and left out). A gap beyond what rounding can move the number (the condition
number of [R; √α·D] with its columns scaled, times the size of the solution) is a
mismatch, named by its cell; so is a missing (NaN) record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from study.design import Design

# the documented layout of the streams (written again here, not imported)
CHUNK_DATA_SETS = 256
CHUNK_POINTS = 1 << 22
# chunks whose first data set is audited, as draws.npz keeps them
AUDIT_CHUNKS = 64
# a gap is a mismatch beyond TOL × what rounding can move the number (cond × scale, with the
# columns of [R; √α·D] scaled to norm 1); Var[ŵ|X], a product of two solutions, gets ×10
TOL = 1e-9
TOL_VAR = 1e-8
# data sets of chunk 0 fitted at once, and points of one data set taken at once (bound
# memory for large m)
_SLICE_POINTS = 1 << 21
_PIECE_POINTS = 1 << 20

AUDIT_COLUMNS = ["m", "degree", "lambda", "scaling", "basis", "coef", "what", "chunk", "engine"]
AUDIT_COLUMNS += ["audit"]
AUDIT_COLUMNS += ["allowed", "ok"]


def chunk_length(m: int) -> int:
    n = CHUNK_DATA_SETS
    while n > 1 and n * m > CHUNK_POINTS:
        n //= 2
    return n


def alpha(lam: float, m: int, degree: int, scaling: str) -> float:
    """α = m·c of the written definitions: λ·Σw²/2 against the mean loss (none), the
    same divided by m (Ng's), by √m, or multiplied by m/k (the number of weights)."""
    return {"none": m * lam, "m": lam, "sqrt-m": math.sqrt(m) * lam, "k": m * lam / degree}[
        scaling
    ]


def _streams(seed: int, m: int, chunk: int):
    x_seq, noise_seq = np.random.SeedSequence(seed, spawn_key=(m, chunk)).spawn(2)
    return np.random.default_rng(x_seq), np.random.default_rng(noise_seq)


def _draw_u(rng, design: Design, size):
    if design.x.distribution == "uniform":
        return rng.uniform(-1.0, 1.0, size)
    return rng.standard_normal(size)


def _to_x(design: Design) -> tuple[float, float]:
    """center and scale of x = center + scale·u."""
    x = design.x
    if x.distribution == "uniform":
        return x.low / 2 + x.high / 2, x.high / 2 - x.low / 2
    return x.mean, x.sd


def _u_to_x_powers(center: float, scale: float, K: int) -> np.ndarray:
    """T with x^j = Σ_i T[j, i]·u^i (binomial expansion of (center + scale·u)^j)."""
    T = np.zeros((K + 1, K + 1))
    for j in range(K + 1):
        for i in range(j + 1):
            T[j, i] = math.comb(j, i) * center ** (j - i) * scale**i
    return T


def _noise_scores(u: np.ndarray, z: np.ndarray, K: int) -> np.ndarray:
    """Φᵤᵀε of one data set from its normals z (the documented sufficient draw): Φᵤᵀz for
    m ≤ K + 1 (z holds the m noise values), else L·z for the Cholesky factor of Φᵤᵀ Φᵤ
    (z holds K + 1 normals; where it has no Cholesky factor or a pivot below 1e-10 of its
    largest diagonal entry, V·diag(√λ)·z from its eigendecomposition, eigenvalues below
    (K + 1)·ε·λ_max as 0)."""
    if u.size <= K + 1:
        return _powers(u, K).T @ z
    gram = np.zeros((K + 1, K + 1))
    for start in range(0, u.size, _PIECE_POINTS):  # Φᵤᵀ Φᵤ piece by piece: bounded memory
        phi = _powers(u[start : start + _PIECE_POINTS], K)
        gram += phi.T @ phi
    try:
        L = np.linalg.cholesky(gram)
        if np.diag(L).min() ** 2 >= _PIVOT_FLOOR * np.diag(gram).max():
            return L @ z
    except np.linalg.LinAlgError:
        pass
    lam, V = np.linalg.eigh(gram)
    floor = (K + 1) * np.finfo(float).eps * lam[-1]
    return V @ (np.sqrt(np.where(lam > floor, lam, 0.0)) * z)


# the documented draw: a Cholesky pivot below this fraction of the Gram matrix's largest
# diagonal entry sends it to the eigendecomposition (docs/engine.md)
_PIVOT_FLOOR = 1e-10


def _penalty(p: int, penalize_intercept: bool) -> np.ndarray:
    D = np.eye(p)
    if not penalize_intercept:
        D[0, 0] = 0.0
    return D


def _true(design: Design, p: int, basis: str = "monomial") -> np.ndarray:
    """w* of the first p features: (β0, β1, 0, …) for the monomials of x; for the
    orthonormal ψ(u), the w with Σ wⱼψⱼ(u) = β0 + β1·x, i.e. Lᵀw = (β0 + β1·center,
    β1·scale, 0, …)."""
    if basis == "monomial":
        w = np.zeros(p)
        w[0] = design.intercept
        if p > 1:
            w[1] = design.slope
        return w
    center, scale = _to_x(design)
    v = np.zeros(p)
    v[0] = design.intercept + design.slope * center
    if p > 1:
        v[1] = design.slope * scale
    return np.linalg.solve(_orthonormal_coefficients(design, p - 1).T, v)


def _orthonormal_coefficients(design: Design, K: int) -> np.ndarray:
    """L with ψ(u) = L·(1, u, …, u^K): normalised Legendre polynomials (uniform x) or
    probabilists' Hermite (normal x), E[ψψᵀ] = I, from NumPy's polynomial classes."""
    from numpy.polynomial import hermite_e, legendre

    L = np.zeros((K + 1, K + 1))
    for j in range(K + 1):
        unit = np.eye(j + 1)[j]
        if design.x.distribution == "uniform":
            L[j, : j + 1] = legendre.leg2poly(unit) * math.sqrt(2 * j + 1)
        else:
            L[j, : j + 1] = hermite_e.herme2poly(unit) / math.sqrt(math.factorial(j))
    return L


def _orthonormal(design: Design, u: np.ndarray, K: int) -> np.ndarray:
    """ψ₀(u) … ψ_K(u) along a new last axis, from NumPy's Vandermonde matrices."""
    from numpy.polynomial import hermite_e, legendre

    j = np.arange(K + 1)
    if design.x.distribution == "uniform":
        return legendre.legvander(u, K) * np.sqrt(2 * j + 1)
    return hermite_e.hermevander(u, K) / np.sqrt([math.factorial(i) for i in j])


def _ridge(R: np.ndarray, rhs: np.ndarray, alphas: np.ndarray, D: np.ndarray):
    """For every α: w minimising ‖R w − rhs‖² + α‖D w‖², via the QR [R; √α·D] = Q₂R₂.

    R (..., r, p) and rhs (..., r) may be stacks. Returns w (..., A, p); the bound
    (..., A, p) on what rounding can move each w_j, in units of the machine epsilon:
    cond_S·max_i(S_i·|w_i|)/S_j, with S the column norms of [R; √α·D] and cond_S the
    condition number of the columns so scaled (‖·‖_F·‖·⁻¹‖_F, at least the 2-norm one); the
    largest cond_S (..., A); and R₂⁻¹ (..., A, p, p), with (RᵀR + αDᵀD)⁻¹ = R₂⁻¹R₂⁻ᵀ."""
    p = R.shape[-1]
    lead, n_a = R.shape[:-2], alphas.size
    stacked = np.broadcast_to(R[..., None, :, :], (*lead, n_a, *R.shape[-2:]))
    roots = np.broadcast_to(np.sqrt(alphas)[:, None, None] * D, (*lead, n_a, p, p))
    A = np.concatenate([stacked, roots], axis=-2)
    b = np.broadcast_to(rhs[..., None, :], (*lead, n_a, rhs.shape[-1]))
    b = np.concatenate([b, np.zeros((*lead, n_a, p))], axis=-1)
    Q2, R2 = np.linalg.qr(A)
    w = np.linalg.solve(R2, np.einsum("...ij,...i->...j", Q2, b)[..., None])[..., 0]
    inv = np.linalg.inv(R2)
    S = np.sqrt((A**2).sum(axis=-2))  # column norms, the same for R₂
    S = np.where(S > 0, S, 1.0)
    cond = np.linalg.norm(R2 / S[..., None, :], axis=(-2, -1)) * np.linalg.norm(
        S[..., :, None] * inv, axis=(-2, -1)
    )
    reach = cond[..., None] * (S * np.abs(w)).max(axis=-1, keepdims=True) / S
    return w, reach, cond, inv


@dataclass
class AuditResult:
    table: pd.DataFrame  # one row per comparison (AUDIT_COLUMNS)

    @property
    def n(self) -> int:
        return len(self.table)

    @property
    def mismatches(self) -> pd.DataFrame:
        return self.table[~self.table.ok]

    @property
    def ok(self) -> bool:
        return self.n > 0 and bool(self.table.ok.all())

    def line(self) -> str:
        bad = self.mismatches
        text = (
            f"audit from the seeds: {self.n - len(bad)} of {self.n} recomputed numbers "
            f"match the engine's"
        )
        if len(bad):
            r = bad.iloc[0]
            text += (
                f"; first mismatch: m = {r.m}, degree {r.degree}, λ = {r['lambda']:g}, "
                f"{r.scaling}{'' if r.basis == 'monomial' else f', {r.basis} basis'}, "
                f"w{r.coef} ({r.what}): engine {r.engine:.6g}, audit "
                f"{r.audit:.6g}"
            )
        return text


def audit(design: Design, draws: dict[str, np.ndarray], *, noise_draw: str = "sufficient"):
    """Recompute, for every m, the first data set of each recorded chunk and the chunk-0
    conditional means, and compare them with the engine's records in ``draws``."""
    blocks: list[dict] = []
    K = max(design.degree)
    center, scale = _to_x(design)
    T = _u_to_x_powers(center, scale, K)
    for i_m, m in enumerate(design.m):
        n_chunks = -(-design.replications_of(m) // chunk_length(m))
        if design.family == "logistic":  # no conditional moments: the first fits alone
            for c in range(min(n_chunks, AUDIT_CHUNKS)):
                blocks += _first_logistic(design, draws, i_m, m, c, K)
            continue
        if noise_draw == "sufficient":  # the plain draw's noise is audited by the tests
            for c in range(min(n_chunks, AUDIT_CHUNKS)):
                blocks += _first(design, draws, i_m, m, c, K, T)
        blocks += _chunk0(design, draws, i_m, m, K)
    if not blocks:
        return AuditResult(pd.DataFrame(columns=AUDIT_COLUMNS))
    columns = {name: np.concatenate([b[name] for b in blocks]) for name in AUDIT_COLUMNS}
    return AuditResult(pd.DataFrame(columns))


def _cells(design: Design, m: int, k: int, basis: str) -> list[tuple]:
    """(λ index, λ, column index, scaling, α, basis) of the cells of one basis fitted at
    (m, k); the columns are the design's (basis, scaling) pairs, basis outermost."""
    return [
        (i_l, lam, i_c, scaling, alpha(lam, m, k, scaling), b)
        for i_l, lam in enumerate(design.lam)
        if lam > 0 or m > k  # else not identifiable: nothing fitted
        for i_c, (b, scaling) in enumerate(design.columns)
        if b == basis
    ]


def _r_factor(x: np.ndarray, K: int, features=None) -> np.ndarray:
    """R of the QR factorisation of the features of each row of x (..., m): the powers
    x⁰ … x^K, or ``features(x, K)``; shape (..., min(m, K + 1), K + 1). Piece by piece
    along m for large m, by the QR of [R so far; the next piece's features], so that memory
    stays bounded."""
    features = features or _powers
    if x.shape[-1] <= _PIECE_POINTS:
        return np.linalg.qr(features(x, K), mode="r")
    R = None
    for start in range(0, x.shape[-1], _PIECE_POINTS):
        phi = features(x[..., start : start + _PIECE_POINTS], K)
        R = np.linalg.qr(phi if R is None else np.concatenate([R, phi], axis=-2), mode="r")
    return R


def _factors(design: Design, u: np.ndarray, K: int) -> dict[str, np.ndarray]:
    """R of the features of each basis of the design for the data sets u (..., m): the
    monomials of x = center + scale·u, or ψ(u)."""
    center, scale = _to_x(design)
    out = {}
    for b in design.basis:
        if b == "monomial":
            out[b] = _r_factor(center + scale * u, K)
        else:
            out[b] = _r_factor(u, K, lambda v, K: _orthonormal(design, v, K))
    return out


def _powers(x: np.ndarray, K: int) -> np.ndarray:
    """x⁰ … x^K along a new last axis, by repeated products."""
    phi = np.empty((*x.shape, K + 1))
    phi[..., 0] = 1.0
    for p in range(1, K + 1):
        phi[..., p] = phi[..., p - 1] * x
    return phi


def _block(m, k, cells, what, chunk, engine, audit_values, allowed, keep=None) -> dict:
    """The columns of one (m, degree, what): engine, audit and allowed of shape
    (cells, k + 1); only the rows where ``keep`` (same shape) is true, if given."""
    p = k + 1
    engine = np.asarray(engine, dtype=float)
    n = engine.size
    gap = np.abs(engine - audit_values)
    columns = {
        "m": np.full(n, m),
        "degree": np.full(n, k),
        "lambda": np.repeat([c[1] for c in cells], p),
        "scaling": np.repeat(np.array([c[3] for c in cells], dtype=object), p),
        "basis": np.repeat(np.array([c[5] for c in cells], dtype=object), p),
        "coef": np.tile(np.arange(p), len(cells)),
        "what": np.full(n, what, dtype=object),
        "chunk": np.full(n, chunk),
        "engine": engine.ravel(),
        "audit": np.asarray(audit_values, dtype=float).ravel(),
        "allowed": np.asarray(allowed, dtype=float).ravel(),
        "ok": (np.isfinite(engine) & (gap <= allowed)).ravel(),
    }
    if keep is None:
        return columns
    keep = np.asarray(keep, dtype=bool).ravel()
    return {name: column[keep] for name, column in columns.items()}


def _leading(R_K: np.ndarray, m: int, p: int) -> np.ndarray:
    """R of the first p columns of Φ from R of all of them (Φ[:, :p] = Q·R[:, :p])."""
    return R_K[..., : min(m, p), :p]


def _score_map(design: Design, basis: str, T: np.ndarray, K: int) -> np.ndarray:
    """M with (features)ᵀε = M·Φᵤᵀε: T for the monomials of x, L for ψ(u) = L·φ(u)."""
    return T if basis == "monomial" else _orthonormal_coefficients(design, K)


def _first(design, draws, i_m, m, c, K, T) -> list[dict]:
    rng_x, rng_noise = _streams(design.seed, m, c)
    u = _draw_u(rng_x, design, m)  # the first data set: the first m numbers
    z = rng_noise.standard_normal(min(m, K + 1))  # its m values, or K + 1 normals
    scores_u = _noise_scores(u, z, K)
    factors = _factors(design, u, K)
    out = []
    for k in design.degree:
        for b in design.basis:
            cells = _cells(design, m, k, b)
            if not cells:
                continue
            p = k + 1
            R = _leading(factors[b], m, p)
            w_star = _true(design, p, b)
            scores = _score_map(design, b, T, K) @ scores_u
            q_eps = np.linalg.lstsq(R.T, scores[:p], rcond=None)[0]  # Rᵀ(Qᵀε) = Φᵀε
            rhs = R @ w_star + design.noise_sd * q_eps
            alphas = np.array([cell[4] for cell in cells])
            w, reach, _, _ = _ridge(R, rhs, alphas, _penalty(p, design.penalize_intercept))
            allowed = TOL * reach
            recorded = draws[f"first_k{k}"][i_m, c]
            engine = np.array([recorded[cell[0], cell[2]] for cell in cells])
            what = "ŵ of the chunk's first data set"
            out.append(_block(m, k, cells, what, c, engine, w, allowed))
    return out


def _chunk0(design, draws, i_m, m, K) -> list[dict]:
    n = min(chunk_length(m), design.replications_of(m))
    rng_x, _ = _streams(design.seed, m, 0)
    per_slice = max(1, _SLICE_POINTS // m)
    # per (degree, basis): sums over the data sets of (e, e², Var[ŵ|X]) per α, and the
    # largest rounding reach of E[ŵ_j|X] and condition number over them
    sums: dict[tuple, np.ndarray] = {}
    reaches: dict[tuple, np.ndarray] = {}
    conds: dict[tuple, np.ndarray] = {}
    problems = [(k, b) for k in design.degree for b in design.basis]
    cells = {(k, b): _cells(design, m, k, b) for k, b in problems}
    for start in range(0, n, per_slice):
        rows = min(per_slice, n - start)
        factors = _factors(design, _draw_u(rng_x, design, (rows, m)), K)
        for key in problems:
            if not cells[key]:
                continue
            k, b = key
            p = k + 1
            R = _leading(factors[b], m, p)  # (rows, min(m, p), p)
            w_star = _true(design, p, b)
            alphas = np.array([cell[4] for cell in cells[key]])
            D = _penalty(p, design.penalize_intercept)
            mean_w, reach, cond, R2inv = _ridge(R, R @ w_star, alphas, D)  # (rows, A, …)
            # Var[ŵ|X] = σ²·diag(HᵀH), H = R·(RᵀR + αDᵀD)⁻¹ (Φ's rows replaced by R)
            H = R[:, None] @ R2inv @ np.swapaxes(R2inv, -1, -2)
            var = design.noise_sd**2 * (H**2).sum(axis=-2)
            e = mean_w - w_star
            part = np.stack([e, e**2, var], axis=-2).sum(axis=0)  # (A, 3, p)
            sums[key] = part if key not in sums else sums[key] + part
            top = cond.max(axis=0)
            conds[key] = top if key not in conds else np.maximum(conds[key], top)
            far = reach.max(axis=0)
            reaches[key] = far if key not in reaches else np.maximum(reaches[key], far)
    out = []
    for key in problems:
        if not cells[key]:
            continue
        k, _ = key
        means = sums[key] / n  # (A, 3, p): e, e², Var[ŵ|X]
        # e: what rounding can move E[ŵ_j|X]; e²: that times 2|e| (and its square);
        # Var[ŵ|X]: relative to itself, through the condition number
        reach = TOL * reaches[key]
        scales = (
            reach,
            reach * (2 * np.sqrt(means[:, 1]) + reach),
            TOL_VAR * conds[key][:, None] * np.maximum(means[:, 2], 1e-300),
        )
        recorded = draws[f"chunk0_mean_k{k}"][i_m]  # (L, C, p, 5): d, d², e, e², v
        counts = draws[f"chunk0_n_k{k}"][i_m]
        for q, (name, index) in enumerate((("e", 2), ("e²", 3), ("Var[ŵ|X]", 4))):
            engine = np.array([recorded[c[0], c[2], :, index] for c in cells[key]])
            # a fit that failed is left out of the engine's mean: not comparable, not shown
            whole = np.array([counts[c[0], c[2]] == n for c in cells[key]])
            what = f"chunk 0 mean of {name}"
            out.append(_block(m, k, cells[key], what, 0, engine, means[:, q], scales[q], whole))
    return out


# --- the logistic family -------------------------------------------------------------------
# a fit's gap is a mismatch beyond this × (1 + cond(H)·‖w̃‖∞/s_j): rounding in the scaled
# coordinates w̃ = s·w, amplified by the condition of the Hessian there
TOL_LOGISTIC = 1e-12


def _logistic_newton(F: np.ndarray, y: np.ndarray, c: float, D: np.ndarray):
    """argmin mean log-loss(Fw, y) + (c/2)wᵀDw for one data set, by Newton's method with
    halving steps, on the columns of F scaled to a largest entry of 1. Returns (w, the
    rounding reach of each coefficient), or (None, None) if Newton does not converge."""
    m = F.shape[0]
    s = np.maximum(np.abs(F).max(axis=0), 1e-300)
    G = F / s
    Dt = D / np.outer(s, s)  # the penalty on w̃ = s·w
    w = np.zeros(F.shape[1])

    def value(w):
        eta = G @ w
        return np.mean(np.logaddexp(0.0, eta) - y * eta) + 0.5 * c * w @ Dt @ w

    f = value(w)
    for _ in range(500):
        with np.errstate(over="ignore"):  # exp(710) = inf: a probability of 0, exactly
            prob = 1.0 / (1.0 + np.exp(-(G @ w)))
        grad = G.T @ (prob - y) / m + c * Dt @ w
        hess = (G.T * (prob * (1.0 - prob))) @ G / m + c * Dt
        step = np.linalg.solve(hess, grad)
        decrement = float(grad @ step)  # gᵀH⁻¹g: how far the objective is from its minimum
        t = 1.0
        while t > 1e-12:
            trial = w - t * step
            f_trial = value(trial)
            if f_trial <= f + 1e-13 * abs(f):
                break
            t /= 2
        else:
            return None, None  # no step lowers the objective: not converged
        w, f = trial, f_trial
        # converged on the full step (a shortened one says nothing about the distance to
        # the minimum), or on a decrement at rounding level
        small = np.max(np.abs(step)) <= 1e-10 * max(1.0, np.max(np.abs(w)))
        if small or 0.0 <= decrement <= 1e-24 * max(1.0, abs(f)):
            reach = 1.0 + np.linalg.cond(hess) * np.max(np.abs(w)) / s
            return w / s, reach
    return None, None


def _separable_plain(u: np.ndarray, y: np.ndarray, k: int) -> bool:
    """Distinct points (as continuous x gives): a polynomial of degree k separates the
    labels exactly when they change at most k times along the sorted points."""
    order = np.argsort(u)
    if np.any(np.diff(u[order]) == 0):
        raise ValueError("tied x in an audited data set")
    return int(np.sum(np.diff(y[order]) != 0)) <= k


def _first_logistic(design, draws, i_m, m, c, K) -> list[dict]:
    """The first data set of chunk c: u from the x stream, labels y = [r < p] with r
    uniform from the noise stream and p = 1/(1 + exp(−(β0 + β1·x))); each cell fitted by
    :func:`_logistic_newton` on the monomials of x or on ψ(u). Where the fit has no
    minimiser (α = 0 and separable labels; α > 0, the intercept unpenalised and all labels
    equal) the engine must have recorded none."""
    rng_x, rng_noise = _streams(design.seed, m, c)
    u = _draw_u(rng_x, design, m)
    center, scale = _to_x(design)
    x = center + scale * u
    with np.errstate(over="ignore"):
        p_true = 1.0 / (1.0 + np.exp(-(design.intercept + design.slope * x)))
    y = rng_noise.random(m) < p_true
    y = y.astype(float)
    features = {"monomial": _powers(x, K), "orthonormal": None}
    if "orthonormal" in design.basis:
        features["orthonormal"] = _orthonormal(design, u, K)
    out = []
    for k in design.degree:
        p = k + 1
        D = _penalty(p, design.penalize_intercept)
        for b in design.basis:
            cells = _cells(design, m, k, b)
            if not cells:
                continue
            F = features[b][:, :p]
            w = np.full((len(cells), p), np.nan)
            allowed = np.zeros((len(cells), p))
            for i, cell in enumerate(cells):
                a = cell[4]
                same = y.min() == y.max()
                if (a == 0 and _separable_plain(u, y, k)) or (
                    a > 0 and same and not design.penalize_intercept
                ):
                    continue  # no minimiser: the engine must record none
                fit, reach = _logistic_newton(F, y, a / m, D)
                if fit is not None:
                    w[i], allowed[i] = fit, TOL_LOGISTIC * reach
            recorded = draws[f"first_k{k}"][i_m, c]
            engine = np.array([recorded[cell[0], cell[2]] for cell in cells])
            what = "ŵ of the chunk's first data set"
            block = _block(m, k, cells, what, c, engine, w, allowed)
            none = np.isnan(w).ravel()
            block["ok"] = np.where(none, np.isnan(engine).ravel(), block["ok"])
            out.append(block)
    return out
