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
  normal) and whose second draws K + 1 standard normals z per data set, K the design's
  largest degree; the noise enters as Φᵤᵀε = V·diag(√λ)·z from the eigendecomposition
  of the Gram matrix Φᵤᵀ Φᵤ = V·diag(λ)·Vᵀ in u (eigenvalues below (K + 1)·ε·λ_max as 0);
- the features are the monomials of the original x; α follows from the written
  definition of each scaling; the penalty is diag(0, 1, …, 1), or the identity with
  ``penalize_intercept``;
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

AUDIT_COLUMNS = ["m", "degree", "lambda", "scaling", "coef", "what", "chunk", "engine", "audit"]
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
    """Φᵤᵀε of one data set from its K + 1 normals z (the documented sufficient draw)."""
    gram = np.zeros((K + 1, K + 1))
    for start in range(0, u.size, _PIECE_POINTS):  # Φᵤᵀ Φᵤ piece by piece: bounded memory
        phi = _powers(u[start : start + _PIECE_POINTS], K)
        gram += phi.T @ phi
    lam, V = np.linalg.eigh(gram)
    floor = (K + 1) * np.finfo(float).eps * lam[-1]
    return V @ (np.sqrt(np.where(lam > floor, lam, 0.0)) * z)


def _penalty(p: int, penalize_intercept: bool) -> np.ndarray:
    D = np.eye(p)
    if not penalize_intercept:
        D[0, 0] = 0.0
    return D


def _true(design: Design, p: int) -> np.ndarray:
    w = np.zeros(p)
    w[0] = design.intercept
    if p > 1:
        w[1] = design.slope
    return w


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
                f"{r.scaling}, w{r.coef} ({r.what}): engine {r.engine:.6g}, audit "
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
        if noise_draw == "sufficient":  # the plain draw's noise is audited by the tests
            for c in range(min(n_chunks, AUDIT_CHUNKS)):
                blocks += _first(design, draws, i_m, m, c, K, T, center, scale)
        blocks += _chunk0(design, draws, i_m, m, K, center, scale)
    if not blocks:
        return AuditResult(pd.DataFrame(columns=AUDIT_COLUMNS))
    columns = {name: np.concatenate([b[name] for b in blocks]) for name in AUDIT_COLUMNS}
    return AuditResult(pd.DataFrame(columns))


def _cells(design: Design, m: int, k: int) -> list[tuple[int, float, int, str, float]]:
    """(λ index, λ, scaling index, scaling, α) of the cells fitted at (m, k)."""
    return [
        (i_l, lam, i_s, scaling, alpha(lam, m, k, scaling))
        for i_l, lam in enumerate(design.lam)
        if lam > 0 or m > k  # else not identifiable: nothing fitted
        for i_s, scaling in enumerate(design.scaling)
    ]


def _r_factor(x: np.ndarray, K: int) -> np.ndarray:
    """R of the QR factorisation of the powers x⁰ … x^K of each row of x (..., m), shape
    (..., min(m, K + 1), K + 1): piece by piece along m for large m, by the QR of
    [R so far; the next piece's powers], so that memory stays bounded."""
    if x.shape[-1] <= _PIECE_POINTS:
        return np.linalg.qr(_powers(x, K), mode="r")
    R = None
    for start in range(0, x.shape[-1], _PIECE_POINTS):
        phi = _powers(x[..., start : start + _PIECE_POINTS], K)
        R = np.linalg.qr(phi if R is None else np.concatenate([R, phi], axis=-2), mode="r")
    return R


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


def _first(design, draws, i_m, m, c, K, T, center, scale) -> list[dict]:
    rng_x, rng_noise = _streams(design.seed, m, c)
    u = _draw_u(rng_x, design, m)  # the first data set: the first m numbers
    z = rng_noise.standard_normal(K + 1)  # its K + 1 normals
    x = center + scale * u
    phi_x_eps = T @ _noise_scores(u, z, K)
    R_K = _r_factor(x, K)
    out = []
    for k in design.degree:
        cells = _cells(design, m, k)
        if not cells:
            continue
        p = k + 1
        R = _leading(R_K, m, p)
        w_star = _true(design, p)
        q_eps = np.linalg.lstsq(R.T, phi_x_eps[:p], rcond=None)[0]  # Rᵀ(Qᵀε) = Φᵀε
        rhs = R @ w_star + design.noise_sd * q_eps
        alphas = np.array([cell[-1] for cell in cells])
        w, reach, _, _ = _ridge(R, rhs, alphas, _penalty(p, design.penalize_intercept))
        allowed = TOL * reach
        recorded = draws[f"first_k{k}"][i_m, c]
        engine = np.array([recorded[i_l, i_s] for i_l, _, i_s, _, _ in cells])
        what = "ŵ of the chunk's first data set"
        out.append(_block(m, k, cells, what, c, engine, w, allowed))
    return out


def _chunk0(design, draws, i_m, m, K, center, scale) -> list[dict]:
    n = min(chunk_length(m), design.replications_of(m))
    rng_x, _ = _streams(design.seed, m, 0)
    per_slice = max(1, _SLICE_POINTS // m)
    # per degree: sums over the data sets of (e, e², Var[ŵ|X]) per α, and the largest
    # rounding reach of E[ŵ_j|X] and condition number over them
    sums: dict[int, np.ndarray] = {}
    reaches: dict[int, np.ndarray] = {}
    conds: dict[int, np.ndarray] = {}
    cells = {k: _cells(design, m, k) for k in design.degree}
    for start in range(0, n, per_slice):
        rows = min(per_slice, n - start)
        x = center + scale * _draw_u(rng_x, design, (rows, m))
        R_K = _r_factor(x, K)  # (rows, min(m, K + 1), K + 1)
        for k in design.degree:
            if not cells[k]:
                continue
            p = k + 1
            R = _leading(R_K, m, p)
            w_star = _true(design, p)
            alphas = np.array([cell[-1] for cell in cells[k]])
            D = _penalty(p, design.penalize_intercept)
            mean_w, reach, cond, R2inv = _ridge(R, R @ w_star, alphas, D)  # (rows, A, …)
            # Var[ŵ|X] = σ²·diag(HᵀH), H = R·(RᵀR + αDᵀD)⁻¹ (Φ's rows replaced by R)
            H = R[:, None] @ R2inv @ np.swapaxes(R2inv, -1, -2)
            var = design.noise_sd**2 * (H**2).sum(axis=-2)
            e = mean_w - w_star
            part = np.stack([e, e**2, var], axis=-2).sum(axis=0)  # (A, 3, p)
            sums[k] = part if k not in sums else sums[k] + part
            top = cond.max(axis=0)
            conds[k] = top if k not in conds else np.maximum(conds[k], top)
            far = reach.max(axis=0)
            reaches[k] = far if k not in reaches else np.maximum(reaches[k], far)
    out = []
    for k in design.degree:
        if not cells[k]:
            continue
        p = k + 1
        means = sums[k] / n  # (A, 3, p): e, e², Var[ŵ|X]
        # e: what rounding can move E[ŵ_j|X]; e²: that times 2|e| (and its square);
        # Var[ŵ|X]: relative to itself, through the condition number
        reach = TOL * reaches[k]
        scales = (
            reach,
            reach * (2 * np.sqrt(means[:, 1]) + reach),
            TOL_VAR * conds[k][:, None] * np.maximum(means[:, 2], 1e-300),
        )
        recorded = draws[f"chunk0_mean_k{k}"][i_m]  # (L, C, p, 5): d, d², e, e², v
        counts = draws[f"chunk0_n_k{k}"][i_m]
        for q, (name, index) in enumerate((("e", 2), ("e²", 3), ("Var[ŵ|X]", 4))):
            engine = np.array([recorded[i_l, i_s, :, index] for i_l, _, i_s, _, _ in cells[k]])
            # a fit that failed is left out of the engine's mean: not comparable, not shown
            whole = np.array([counts[i_l, i_s] == n for i_l, _, i_s, _, _ in cells[k]])
            what = f"chunk 0 mean of {name}"
            out.append(_block(m, k, cells[k], what, 0, engine, means[:, q], scales[q], whole))
    return out
