"""The compiled inner loops of the engine: a batch of data sets, one degree, every α.

The gaussian family's :func:`pencil_moments` (and :func:`power_sums`, which reduces the drawn
points) are here; the logistic family's Newton solver
(:func:`study.engine.newton.newton_path`, loaded as ``loaded().newton_path``) is registered
with the same cache (:data:`_COMPILED`, :func:`ensure_cached`), so that all are compiled
once, in a separate process, and every run and worker loads them. So is
:func:`pencil_risk`, the expected risk given each design from the same factorisation,
which the theory's tuning minimises, :func:`direct_risk`, the same risk by a Cholesky
factorisation per design and α where that factorisation does not serve, and the minibatch
experiment's SGD loop (:func:`study.engine.sgd.sgd_epochs`).

For a batch of n data sets (given by their power sums) :func:`pencil_moments` computes what
:func:`study.conditional._quantities_all_alphas` and :meth:`study.moments.CoMoments.from_samples`
compute in NumPy, fused so that no per-fit array ever leaves the cache:

1. the shifted Gram matrix Ĝ = G + α₀P and its Cholesky factor L;
2. the pencil (Ĝ, P): H = L⁻¹F, the eigendecomposition HHᵀ = UΛUᵀ by cyclic Jacobi
   rotations, W = L⁻ᵀU (so WᵀĜW = I and WᵀPW = Λ);
3. for every α: s = 1/(1 + (α − α₀)Λ), v̂ = W(s∘Wᵀb), E[v̂|X] = W(s∘WᵀGv*) and
   Cov[v̂|X] = σ²W diag(s²(1 − α₀Λ))Wᵀ (1 − α₀Λ set to 0 in the p − m directions G
   lacks when m < p: :func:`_rank_deficient`), hence the per-replication quantities
   (d, d², e, e², v) of every coefficient and (R, R², E[R|X]);
4. their means and co-moment sums over the batch, two-pass as in :mod:`study.moments`.

Every array is laid out with the data sets last, so each step is a loop over data sets
that the compiler turns into SIMD instructions: the batch is solved as n small problems
in lockstep (the Jacobi sweeps run until the slowest data set has converged). Results
agree with the NumPy path to rounding (tested), not bit for bit; they are bit-identical
from run to run on one machine, provided every run executes the kernel as loaded from
numba's cache: machine code compiled within the process that runs it sums the
reassociated co-moments in another order (measured: the last bits of summary.csv differ).
:func:`ensure_cached` therefore compiles the kernel in a separate process when its cache
is missing or stale, before a run starts.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit

from study.engine.newton import (
    _cholesky_solve,
    _exp_minus,
    _log1p_unit,
    _loss,
    _newton,
    _newton_system,
    _power_sums,
    _quadratic,
    _sum,
    newton_path,
)
from study.engine.pencil import (
    NOT_CONVERGED,
    NOT_FINITE,
    NOT_POSITIVE_DEFINITE,
    OK,
    _cholesky,
    _factorise,
    _jacobi,
    _lower_inverse,
    _pencil_basis,
    _projections,
    _scale_by_power_of_two,
    _variance_weights,
    _whitened_penalty,
)
from study.engine.sgd import sgd_epochs

# Reassociation lets the sums over data sets (and only those) use SIMD lanes. Everything
# else is strict IEEE arithmetic, so a data set's numbers do not depend on its position in
# the batch (they can on its companions, by a few units in the last place, through the
# number of Jacobi sweeps the batch needs); no assumption about NaN or infinity is made.
_SUM_FLAGS = {"reassoc", "nsz"}


__all__ = [
    "NOT_CONVERGED",
    "NOT_FINITE",
    "NOT_POSITIVE_DEFINITE",
    "OK",
    "newton_path",
    "pencil_moments",
    "pencil_risk",
    "power_sums",
]


# Points per block of the power sums: the block's powers stay in the first-level cache.
POWER_BLOCK = 512


@njit(cache=True, nogil=True, fastmath=_SUM_FLAGS)
def power_sums(u, n_powers, out):
    """out[r, p] = Σ_i u[r, i]^p for p = 0 … n_powers: what :func:`study.fit.power_sums`
    computes in NumPy, in one pass over the points in blocks of POWER_BLOCK (a block's
    powers stay in cache and the sum over its points uses SIMD lanes), adding the blocks in
    order. Each row's sums depend on that row alone."""
    rows, w = u.shape
    size = min(w, POWER_BLOCK)
    block = np.empty(size)
    power = np.empty(size)
    for r in range(rows):
        out[r, 0] = w
        for p in range(1, n_powers + 1):
            out[r, p] = 0.0
        for start in range(0, w, POWER_BLOCK):
            n = min(POWER_BLOCK, w - start)
            row = u[r, start : start + n]
            for i in range(n):
                block[i] = row[i]
                power[i] = row[i]
            for p in range(1, n_powers + 1):
                total = 0.0
                for i in range(n):
                    total += power[i]
                    power[i] *= block[i]
                out[r, p] += total


@njit(cache=True, nogil=True, fastmath=_SUM_FLAGS)
def _comoments(q, mean, M):
    """Two-pass mean and co-moment sums of q[a, r] over r, into mean[a] and M[a, b]."""
    nq, n = q.shape
    for a in range(nq):
        total = 0.0
        qa = q[a]
        for r in range(n):
            total += qa[r]
        mean[a] = total / n
    for a in range(nq):
        qa = q[a]
        ma = mean[a]
        for b in range(a + 1):
            qb = q[b]
            mb = mean[b]
            total = 0.0
            for r in range(n):
                total += (qa[r] - ma) * (qb[r] - mb)
            M[a, b] = total
            M[b, a] = total


@njit(cache=True, nogil=True)
def _shrinkage(beta, eig, g, z, z_star, s2g, tz, tzs):
    """For one α (β = α − α₀), s = 1/(1 + βΛ): s²(1 − α₀Λ) into s2g (given g = 1 − α₀Λ),
    s∘z into tz and s∘z* into tzs."""
    p, n = eig.shape
    for i in range(p):
        ei = eig[i]
        gi = g[i]
        for r in range(n):
            x = 1.0 / (1.0 + beta * ei[r])
            s2g[i, r] = x * x * gi[r]
            tz[i, r] = x * z[i, r]
            tzs[i, r] = x * z_star[i, r]


@njit(cache=True, nogil=True)
def _rank_deficient(St, eig, g, z, z_star):
    """In the p − m directions w_i where G = ΦᵀΦ of m < p distinct points has no energy
    (Φw_i = 0: exactly the p − m largest Λ, since g = 1 − α₀Λ = diag(WᵀGW) ≥ 0), g,
    z = Wᵀb = (ΦW)ᵀy and z* = WᵀGv* are exactly 0; computed, they are rounding, which the
    fits multiply by about 1/α (Var[ŵ|X] off by a factor of 10⁵ at α₀ = 1e-8 and by 3e-3
    at 1e-4, m = 5, degree 7, orthonormal basis). Those entries are set to 0; m is the
    power sum Σu⁰ of the data set."""
    p, n = eig.shape
    taken = np.empty(p, dtype=np.bool_)
    for r in range(n):
        null = p - int(St[0, r] + 0.5)
        taken[:] = False  # (not g == 0: 1 − α₀Λ can come out exactly 0 in rounding)
        for _ in range(min(null, p)):
            best = -1
            for i in range(p):
                if not taken[i] and (best < 0 or eig[i, r] > eig[best, r]):
                    best = i
            taken[best] = True
            g[best, r] = 0.0
            z[best, r] = 0.0
            z_star[best, r] = 0.0


@njit(cache=True, nogil=True)
def _fits(W, B, b_identity, tz, tzs, vh, vm, wh, wm):
    """For one α: v̂ = W(s∘z) into vh, E[v̂|X] = W(s∘z*) into vm, and their images
    ŵ = Bᵀv̂ into wh, E[ŵ|X] into wm."""
    p, _, n = W.shape
    for l_ in range(p):
        a = vh[l_]
        b = vm[l_]
        a[:] = 0.0
        b[:] = 0.0
        for i in range(p):
            wli = W[l_, i]
            ti = tz[i]
            tsi = tzs[i]
            for r in range(n):
                a[r] += wli[r] * ti[r]
                b[r] += wli[r] * tsi[r]
    if b_identity:
        wh[:] = vh
        wm[:] = vm
    else:
        for j in range(p):
            a = wh[j]
            b = wm[j]
            a[:] = 0.0
            b[:] = 0.0
            for l_ in range(j, p):  # B is lower triangular: B[l, j] = 0 for l < j
                blj = B[l_, j]
                vl = vh[l_]
                ml = vm[l_]
                for r in range(n):
                    a[r] += blj * vl[r]
                    b[r] += blj * ml[r]


@njit(cache=True, nogil=True)
def _coef_quantities(WB2, s2g, wh, wm, w_star, sigma2, qc):
    """For one α, the quantities qc[j] = (d, d², e, e², v) of every coefficient j:
    d = ŵ − w*, e = E[ŵ|X] − w*, v = Var[ŵ|X] = σ²Σ_i WB2[j, i]·s²(1 − α₀Λ)[i]."""
    p, n = wh.shape
    for j in range(p):
        wj = w_star[j]
        d = qc[j, 0]
        d2 = qc[j, 1]
        e = qc[j, 2]
        e2 = qc[j, 3]
        v = qc[j, 4]
        v[:] = 0.0
        for i in range(p):
            wb = WB2[j, i]
            si = s2g[i]
            for r in range(n):
                v[r] += wb[r] * si[r]
        for r in range(n):
            x = wh[j, r] - wj
            y = wm[j, r] - wj
            d[r] = x
            d2[r] = x * x
            e[r] = y
            e2[r] = y * y
            v[r] *= sigma2


@njit(cache=True, nogil=True)
def _risk_quantities(vh, vm, v_star, sigma_u, WSW, s2g, sigma2, qr):
    """For one α, the risk quantities qr = (R, R², E[R|X]) with R = (v̂ − v*)ᵀΣ(v̂ − v*)
    and E[R|X] = (E[v̂|X] − v*)ᵀΣ(E[v̂|X] − v*) + σ²Σ_i WSW[i]·s²(1 − α₀Λ)[i].
    Overwrites vh and vm with v̂ − v* and E[v̂|X] − v*."""
    p, n = vh.shape
    for l_ in range(p):
        vs = v_star[l_]
        for r in range(n):
            vh[l_, r] -= vs
            vm[l_, r] -= vs
    qr[:] = 0.0
    for l_ in range(p):
        for k_ in range(p):
            s_lk = sigma_u[l_, k_]
            if s_lk != 0.0:
                for r in range(n):
                    qr[0, r] += vh[l_, r] * s_lk * vh[k_, r]
                    qr[2, r] += vm[l_, r] * s_lk * vm[k_, r]
    for i in range(p):
        for r in range(n):
            qr[2, r] += sigma2 * WSW[i, r] * s2g[i, r]
    for r in range(n):
        qr[1, r] = qr[0, r] * qr[0, r]


@njit(cache=True, nogil=True)
def pencil_moments(
    St,
    Tt,
    alpha0,
    alphas,
    P,
    F,
    B,
    b_identity,
    v_star,
    w_star,
    sigma_u,
    noise_sd,
    keep,
    coef_mean,
    coef_M,
    risk_mean,
    risk_M,
    w_keep,
    thresholds,
    tails,
):
    """Fit every α to a batch of data sets and summarise the quantities of each α.

    Parameters
    ----------
    St : (2K+1, n) power sums Σu^p of the batch; Tt : (K+1, n) sums Σu^p·y.
    alpha0 : the shift (0, or the smallest α when G may be singular).
    alphas : (A,) every distinct α, all ≥ alpha0.
    P, F, B, v_star, w_star, sigma_u : of the degree (:class:`study.basis.StandardBasis`).
    b_identity : whether B is the identity (then ŵ = v̂).
    noise_sd : noise standard deviation σ.
    keep : ŵ of the first ``keep`` data sets is written to w_keep (keep, A, p).

    Outputs (written in place): coef_mean (A, p, 5), coef_M (A, p, 5, 5),
    risk_mean (A, 3), risk_M (A, 3, 3), and tails (A, p, T) int64, which it adds to: the
    data sets whose |ŵ_j − w*_j| exceeds thresholds[t].

    Returns
    -------
    int
        OK; NOT_POSITIVE_DEFINITE if some Ĝ has no Cholesky factor, NOT_FINITE if some
        power sum or quantity is not finite, NOT_CONVERGED if the Jacobi sweeps did not
        converge. In every failure case nothing is valid, and the caller falls back to
        the NumPy path, which treats such data sets one by one.
    """
    p = P.shape[0]
    n = St.shape[1]
    if not (np.isfinite(St).all() and np.isfinite(Tt).all()):
        return NOT_FINITE
    status, eig, W, z, z_star, WB2, WSW = _factorise(St, Tt, alpha0, P, F, B, v_star, sigma_u)
    if status != OK:
        return status
    g = 1.0 - alpha0 * eig  # 1 − α₀Λ
    _rank_deficient(St, eig, g, z, z_star)
    sigma2 = noise_sd * noise_sd
    s2g, tz, tzs = np.empty((p, n)), np.empty((p, n)), np.empty((p, n))
    vh, vm, wh, wm = np.empty((p, n)), np.empty((p, n)), np.empty((p, n)), np.empty((p, n))
    qc = np.empty((p, 5, n))
    qr = np.empty((3, n))
    for ia in range(alphas.size):
        _shrinkage(alphas[ia] - alpha0, eig, g, z, z_star, s2g, tz, tzs)
        _fits(W, B, b_identity, tz, tzs, vh, vm, wh, wm)
        _coef_quantities(WB2, s2g, wh, wm, w_star, sigma2, qc)
        _risk_quantities(vh, vm, v_star, sigma_u, WSW, s2g, sigma2, qr)
        for j in range(p):
            _comoments(qc[j], coef_mean[ia, j], coef_M[ia, j])
            d = qc[j, 0]
            for t in range(thresholds.size):
                bound = thresholds[t]
                count = 0
                for r in range(n):
                    if abs(d[r]) > bound:
                        count += 1
                tails[ia, j, t] += count
        _comoments(qr, risk_mean[ia], risk_M[ia])
        # a quantity that is NaN or infinite makes its mean or co-moments so
        if not (
            np.isfinite(coef_M[ia]).all()
            and np.isfinite(risk_M[ia]).all()
            and np.isfinite(coef_mean[ia]).all()
            and np.isfinite(risk_mean[ia]).all()
        ):
            return NOT_FINITE
        for r in range(keep):
            for j in range(p):
                w_keep[r, ia, j] = wh[j, r]
    return OK


@njit(cache=True, nogil=True)
def pencil_risk(W, z_star, wsw, eig, sigma, v_star, alphas, var_scale, out):
    """The expected prediction risk given each design, for every α: what
    :func:`study.conditional._pencil_risk` computes in NumPy, for the tuning (which asks for
    one α at a time, a few hundred times per design stack).

    Per design r (the last axis of every array), from its pencil factorisation (WᵀGW = I,
    WᵀPW = Λ): s = 1/(1 + αΛ), d = W(s∘z*) − v* and out[a, r] = dᵀΣd + var_scale·Σ_i
    s_i²·wsw_i, where z* = WᵀGv*, wsw_i = (WᵀΣW)_ii and var_scale = σ². Shapes: W (p, p, R),
    z_star, wsw and eig (p, R), sigma (p, p), v_star (p,), alphas (A,), out (A, R), all
    float64, C-contiguous and writable (the types it is compiled for); nothing checks them,
    so call it through :func:`study.conditional.conditional_risk_function`. Without
    reassociation: the sums run in one fixed order."""
    p, R = eig.shape
    s = np.empty((p, R))
    dev = np.empty((p, R))
    var = np.empty(R)
    row = np.empty(R)
    for a in range(alphas.size):
        alpha = alphas[a]
        bias = out[a]
        for r in range(R):
            var[r] = 0.0
            bias[r] = 0.0
        for i in range(p):
            for r in range(R):
                si = 1.0 / (1.0 + eig[i, r] * alpha)
                s[i, r] = si * z_star[i, r]
                var[r] += si * si * wsw[i, r]
        for j in range(p):
            for r in range(R):
                dev[j, r] = 0.0
            for i in range(p):
                for r in range(R):
                    dev[j, r] += W[j, i, r] * s[i, r]
            for r in range(R):
                dev[j, r] -= v_star[j]
        for j in range(p):
            for r in range(R):
                row[r] = 0.0
            for i in range(p):
                sji = sigma[j, i]
                for r in range(R):
                    row[r] += sji * dev[i, r]
            for r in range(R):
                bias[r] += row[r] * dev[j, r]
        for r in range(R):
            bias[r] += var_scale * var[r]


@njit(cache=True, nogil=True)
def direct_risk(G, C, P, sigma, v_star, g_star, singular, alphas, var_scale, out):
    """The expected prediction risk given each design, for every α, by a Cholesky
    factorisation of A = G + αP per design and α: what
    :func:`study.conditional._direct_risk` computes in NumPy with a batched LU solve per
    α, for the designs the pencil does not serve (a singular G, m ≤ k, or an x range far
    from the origin).

    With A = LLᵀ and M = L⁻¹: d = MᵀM·g* − v* (g* = CᵀCv*, E[v̂|X] − v*) and
    out[a, r] = dᵀΣd + var_scale·tr(YᵀΣY) with Y = A⁻¹Cᵀ = MᵀMCᵀ, C the factor of G with
    CᵀC = G and no rounding-level part in its null space
    (:func:`study.conditional._gram_factor`). Where α = 0 on a singular design (not
    identifiable), where A has no Cholesky factor (a pivot not positive, as LAPACK's potrf
    refuses it) and where the risk is not finite, out is inf. Shapes: G and C (R, p, p), P
    and sigma (p, p), v_star (p,), g_star (R, p), singular (R,) bool, alphas (A,), out
    (A, R), float64 and C-contiguous (the types it is compiled for); nothing checks them,
    so call it through :func:`study.conditional.conditional_risk_function`."""
    R, p = G.shape[0], G.shape[1]
    L = np.empty((p, p))
    M = np.empty((p, p))
    Z = np.empty((p, p))
    y = np.empty(p)
    d = np.empty(p)
    for a in range(alphas.size):
        alpha = alphas[a]
        for r in range(R):
            if alpha == 0.0 and singular[r]:
                out[a, r] = np.inf
                continue
            ok = True
            for j in range(p):  # A = LLᵀ, column by column
                pivot = G[r, j, j] + alpha * P[j, j]
                for k in range(j):
                    pivot -= L[j, k] * L[j, k]
                if not pivot > 0.0:  # also NaN
                    ok = False
                    break
                L[j, j] = np.sqrt(pivot)
                for i in range(j + 1, p):
                    t = G[r, i, j] + alpha * P[i, j]
                    for k in range(j):
                        t -= L[i, k] * L[j, k]
                    L[i, j] = t / L[j, j]
            if not ok:
                out[a, r] = np.inf
                continue
            for i in range(p):  # M = L⁻¹, lower triangular, row by row
                for j in range(p):
                    M[i, j] = 0.0
                M[i, i] = 1.0 / L[i, i]
                for j in range(i):
                    t = 0.0
                    for k in range(j, i):
                        t -= L[i, k] * M[k, j]
                    M[i, j] = t * M[i, i]
            for i in range(p):  # y = M·g*
                t = 0.0
                for k in range(i + 1):
                    t += M[i, k] * g_star[r, k]
                y[i] = t
            for i in range(p):  # d = Mᵀy − v*
                t = 0.0
                for k in range(i, p):
                    t += M[k, i] * y[k]
                d[i] = t - v_star[i]
            total = _quadratic(sigma, d)
            for i in range(p):  # Z = MCᵀ
                for c in range(p):
                    t = 0.0
                    for k in range(i + 1):
                        t += M[i, k] * C[r, c, k]
                    Z[i, c] = t
            var = 0.0
            for c in range(p):  # column c of Y = MᵀZ, and its quadratic form in Σ
                for i in range(p):
                    t = 0.0
                    for k in range(i, p):
                        t += M[k, i] * Z[k, c]
                    y[i] = t
                var += _quadratic(sigma, y)
            total += var_scale * var
            out[a, r] = total if np.isfinite(total) else np.inf


def compile_kernel() -> None:
    """Compile the kernel and the logistic Newton solver for the argument types the engine
    uses (or load them from the cache), by running them on a tiny batch."""
    p, n, A = 2, 4, 2
    u = np.linspace(-1.0, 1.0, n)
    St = np.ascontiguousarray(np.stack([np.full(n, 3.0) + u**k for k in range(2 * p - 1)]))
    Tt = np.ascontiguousarray(St[:p] * 0.5)
    eye = np.eye(p)
    F = np.ascontiguousarray(eye[:, 1:])
    pencil_moments(
        St,
        Tt,
        0.0,
        np.array([0.0, 1.0]),
        F @ F.T,
        F,
        eye,
        True,
        np.zeros(p),
        np.zeros(p),
        eye,
        1.0,
        1,
        np.empty((A, p, 5)),
        np.empty((A, p, 5, 5)),
        np.empty((A, 3)),
        np.empty((A, 3, 3)),
        np.empty((1, A, p)),
        np.array([1.0, 10.0]),
        np.zeros((A, p, 2), dtype=np.int64),
    )
    power_sums(St, 2, np.empty((St.shape[0], 3)))
    pencil_risk(
        np.ones((p, p, n)),
        St[:p],
        St[:p],
        St[:p],
        eye,
        np.zeros(p),
        np.array([0.0, 1.0]),
        1.0,
        np.empty((A, n)),
    )
    G = np.ascontiguousarray(np.stack([F @ F.T + eye, eye]))
    direct_risk(
        G,
        G.copy(),
        F @ F.T,
        eye,
        np.ones(p),
        G @ np.ones(p),
        np.array([False, True]),
        np.array([0.0, 1.0]),
        1.0,
        np.empty((A, 2)),
    )
    # the logistic solver, with the argument types study.models.logistic.newton_path passes
    labels = np.array([[0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 1.0]])
    newton_path(St[:2, :4].copy(), labels, F @ F.T, np.array([1.0, 0.0]), np.ones((A, 2), bool))
    # the minibatch experiment's SGD, with the argument types study.minibatch passes
    orders = np.array([[1, 0, 3, 2], [2, 3, 0, 1]], dtype=np.int64)
    state = np.zeros(2, dtype=np.int64)
    phi = np.ascontiguousarray(St[:p].T)
    sgd_args = (0.1, 0.5, 1000.0, orders, 0, 1, 2, np.zeros(p), np.zeros(p), state)
    sgd_epochs(phi, labels[0], eye, *sgd_args)


# every compiled function (all are compiled together; each has its own cache entry)
_COMPILED = (
    _jacobi,
    _cholesky,
    _lower_inverse,
    _whitened_penalty,
    _scale_by_power_of_two,
    _pencil_basis,
    _projections,
    _variance_weights,
    _factorise,
    power_sums,
    _comoments,
    _rank_deficient,
    _shrinkage,
    _fits,
    _coef_quantities,
    _risk_quantities,
    pencil_moments,
    pencil_risk,
    direct_risk,
    _exp_minus,
    _log1p_unit,
    _sum,
    _loss,
    _quadratic,
    _power_sums,
    _newton_system,
    _cholesky_solve,
    _newton,
    newton_path,
    sgd_epochs,
)


def _is_cached() -> bool:
    """Whether numba's cache holds this source's compiled kernel (through numba's cache
    index; False on any doubt, which only costs a compilation)."""
    try:
        return all(bool(f._cache._cache_file._load_index()) for f in _COMPILED)
    except Exception:  # a numba without these internals: compile to be sure
        return False


@functools.cache
def loaded():
    """This module, its compiled functions loaded from numba's cache (compiled into it
    first if need be: :func:`ensure_cached`); once per process. Call the kernel's
    functions through it."""
    ensure_cached()
    return sys.modules[__name__]


def ensure_cached() -> None:
    """Compile the kernel in a separate process if numba's cache lacks it, so that this
    process (and its workers) load it from the cache, as every later run will.

    Must run before the kernel is first called in this process.
    """
    if _is_cached():
        return
    package_parent = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [package_parent, *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    print("study: compiling the engine's kernel once (some tens of seconds)…", file=sys.stderr)
    subprocess.run(
        [sys.executable, "-c", "from study.engine.kernel import compile_kernel; compile_kernel()"],
        env=env,
        check=True,
    )


if __name__ == "__main__":
    # run from the importable module, whose cache the engine reads (not from __main__)
    from study.engine.kernel import compile_kernel as _compile

    started = time.perf_counter()
    _compile()
    print(f"study.engine.kernel: ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)
