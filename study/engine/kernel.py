"""The compiled inner loop of the engine: a batch of data sets, one degree, every α.

For a batch of n data sets (given by their power sums) this computes what
:func:`study.conditional._quantities_all_alphas` and :meth:`study.moments.CoMoments.from_samples`
compute in NumPy, fused so that no per-fit array ever leaves the cache:

1. the shifted Gram matrix Ĝ = G + α₀P and its Cholesky factor L;
2. the pencil (Ĝ, P): H = L⁻¹F, the eigendecomposition HHᵀ = UΛUᵀ by cyclic Jacobi
   rotations, W = L⁻ᵀU (so WᵀĜW = I and WᵀPW = Λ);
3. for every α: s = 1/(1 + (α − α₀)Λ), v̂ = W(s∘Wᵀb), E[v̂|X] = W(s∘WᵀGv*) and
   Cov[v̂|X] = σ²W diag(s²(1 − α₀Λ))Wᵀ, hence the per-replication quantities
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

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit

# Reassociation lets the sums over data sets (and only those) use SIMD lanes. Everything
# else is strict IEEE arithmetic, so a data set's numbers do not depend on its position in
# the batch (they can on its companions, by a few units in the last place, through the
# number of Jacobi sweeps the batch needs); no assumption about NaN or infinity is made.
_SUM_FLAGS = {"reassoc", "nsz"}

OK, NOT_POSITIVE_DEFINITE, NOT_FINITE, NOT_CONVERGED = 0, 1, 2, 3

# Jacobi sweeps stop when the off-diagonal mass is below this fraction of the total in
# every data set of the batch (about machine precision on the eigenvalues). Designs of
# degree ≤ 12 need at most a dozen sweeps (quadratic convergence after the first few);
# a batch still off after _JACOBI_MAX_SWEEPS is reported and goes to the NumPy path.
_JACOBI_TOL = 1e-30
_JACOBI_MAX_SWEEPS = 30


@njit(cache=True, nogil=True)
def _jacobi(C, V, tmp):
    """Eigendecomposition of the symmetric matrices C[:, :, r] (overwritten: the diagonal
    ends up holding the eigenvalues) with eigenvectors V[:, :, r]. The caller scales each
    C to entries of order 1, so that the squares in the convergence test neither overflow
    nor underflow. Returns whether every data set converged."""
    p, _, n = C.shape
    for i in range(p):
        for j in range(p):
            V[i, j, :] = 1.0 if i == j else 0.0
    for _sweep in range(_JACOBI_MAX_SWEEPS + 1):
        converged = True
        for r in range(n):
            off = 0.0
            total = 0.0
            for i in range(p):
                total += C[i, i, r] * C[i, i, r]
                for j in range(i + 1, p):
                    off += 2.0 * C[i, j, r] * C[i, j, r]
            total += off
            if not off <= _JACOBI_TOL * total:
                converged = False
                break
        if converged:
            return True
        if _sweep == _JACOBI_MAX_SWEEPS:
            return False
        for i in range(p - 1):
            for j in range(i + 1, p):
                c_ = tmp[0]
                s_ = tmp[1]
                t_ = tmp[2]
                aij = C[i, j]
                aii = C[i, i]
                ajj = C[j, j]
                for r in range(n):
                    delta = ajj[r] - aii[r]
                    den = abs(delta) + np.sqrt(delta * delta + 4.0 * aij[r] * aij[r])
                    sign = 1.0 if delta >= 0.0 else -1.0
                    t = 2.0 * sign * aij[r] / den if den > 0.0 else 0.0
                    c = 1.0 / np.sqrt(t * t + 1.0)
                    t_[r] = t
                    c_[r] = c
                    s_[r] = t * c
                for r in range(n):
                    a = aij[r]
                    aii[r] -= t_[r] * a
                    ajj[r] += t_[r] * a
                    aij[r] = 0.0
                    C[j, i, r] = 0.0
                for q in range(p):
                    if q == i or q == j:
                        continue
                    cqi = C[q, i]
                    cqj = C[q, j]
                    ciq = C[i, q]
                    cjq = C[j, q]
                    for r in range(n):
                        x = cqi[r]
                        y = cqj[r]
                        nx = c_[r] * x - s_[r] * y
                        ny = s_[r] * x + c_[r] * y
                        cqi[r] = nx
                        ciq[r] = nx
                        cqj[r] = ny
                        cjq[r] = ny
                for q in range(p):
                    vqi = V[q, i]
                    vqj = V[q, j]
                    for r in range(n):
                        x = vqi[r]
                        y = vqj[r]
                        vqi[r] = c_[r] * x - s_[r] * y
                        vqj[r] = s_[r] * x + c_[r] * y


@njit(cache=True, nogil=True)
def _cholesky(St, alpha0, P):
    """Step 1: the Cholesky factor L of every shifted Gram matrix Ĝ = G + α₀P
    (G[i, j] = St[i + j]). Returns (whether every Ĝ has one, L)."""
    p = P.shape[0]
    n = St.shape[1]
    L = np.zeros((p, p, n))
    acc = np.empty(n)
    for j in range(p):
        for i in range(j, p):
            s_ij = St[i + j]
            pij = alpha0 * P[i, j]
            for r in range(n):
                acc[r] = s_ij[r] + pij
            for c in range(j):
                lic = L[i, c]
                ljc = L[j, c]
                for r in range(n):
                    acc[r] -= lic[r] * ljc[r]
            if i == j:
                for r in range(n):
                    if not acc[r] > 0.0:  # also catches NaN
                        return False, L
                ljj = L[j, j]
                for r in range(n):
                    ljj[r] = np.sqrt(acc[r])
            else:
                lij = L[i, j]
                ljj = L[j, j]
                for r in range(n):
                    lij[r] = acc[r] / ljj[r]
    return True, L


@njit(cache=True, nogil=True)
def _lower_inverse(L):
    """The inverse L⁻¹ (lower triangular) of every lower triangular L[:, :, r]."""
    p, _, n = L.shape
    acc = np.empty(n)
    Linv = np.zeros((p, p, n))
    for i in range(p):
        li = Linv[i, i]
        lii = L[i, i]
        for r in range(n):
            li[r] = 1.0 / lii[r]
    for j in range(p):
        for i in range(j + 1, p):
            for r in range(n):
                acc[r] = 0.0
            for c in range(j, i):
                lic = L[i, c]
                kcj = Linv[c, j]
                for r in range(n):
                    acc[r] += lic[r] * kcj[r]
            kij = Linv[i, j]
            lii = L[i, i]
            for r in range(n):
                kij[r] = -acc[r] / lii[r]
    return Linv


@njit(cache=True, nogil=True)
def _whitened_penalty(Linv, F):
    """C = HHᵀ with H = L⁻¹F (p × f): the penalty P = FFᵀ in the basis that makes Ĝ = I."""
    p, _, n = Linv.shape
    f = F.shape[1]
    H = np.zeros((p, f, n))
    for i in range(p):
        for a in range(f):
            h = H[i, a]
            for c in range(i + 1):
                fca = F[c, a]
                if fca != 0.0:
                    kic = Linv[i, c]
                    for r in range(n):
                        h[r] += kic[r] * fca
    C = np.zeros((p, p, n))
    for i in range(p):
        for j in range(i + 1):
            cij = C[i, j]
            for a in range(f):
                hia = H[i, a]
                hja = H[j, a]
                for r in range(n):
                    cij[r] += hia[r] * hja[r]
            if i != j:
                C[j, i, :] = cij
    return C


@njit(cache=True, nogil=True)
def _scale_by_power_of_two(C):
    """Scale each C[:, :, r] in place by a power of 2 (exact) to a largest entry in
    [1/2, 1), and return the factors. C is positive semi-definite, so its largest entry is
    on the diagonal."""
    p, _, n = C.shape
    scale = np.ones(n)
    for r in range(n):
        top = 0.0
        for i in range(p):
            top = max(top, C[i, i, r])
        if top > 0.0:
            scale[r] = math.ldexp(1.0, -math.frexp(top)[1])
    for i in range(p):
        for j in range(p):
            cij = C[i, j]
            for r in range(n):
                cij[r] *= scale[r]
    return scale


@njit(cache=True, nogil=True)
def _pencil_basis(C, scale, U, Linv):
    """From the converged Jacobi sweeps (C diagonal, eigenvectors U): the eigenvalues Λ of
    the pencil (undoing the scale) and W = L⁻ᵀU, so that WᵀĜW = I and WᵀPW = Λ."""
    p, _, n = C.shape
    eig = np.empty((p, n))
    for i in range(p):
        ci = C[i, i]
        ei = eig[i]
        for r in range(n):
            ei[r] = max(ci[r], 0.0) / scale[r]
    # W[a, c] = Σ_{b ≥ a} Linv[b, a]·U[b, c]
    W = np.zeros((p, p, n))
    for a in range(p):
        for c in range(p):
            w = W[a, c]
            for b in range(a, p):
                kba = Linv[b, a]
                ubc = U[b, c]
                for r in range(n):
                    w[r] += kba[r] * ubc[r]
    return eig, W


@njit(cache=True, nogil=True)
def _projections(St, Tt, W, v_star):
    """z = Wᵀb and z* = WᵀGv* (b = Tt, unshifted G[a, b] = St[a + b])."""
    p, _, n = W.shape
    gv = np.zeros((p, n))
    for a in range(p):
        for b in range(p):
            vb = v_star[b]
            if vb != 0.0:
                s_ab = St[a + b]
                g = gv[a]
                for r in range(n):
                    g[r] += s_ab[r] * vb
    z = np.zeros((p, n))
    z_star = np.zeros((p, n))
    for c in range(p):
        zc = z[c]
        zsc = z_star[c]
        for a in range(p):
            wac = W[a, c]
            ta = Tt[a]
            ga = gv[a]
            for r in range(n):
                zc[r] += wac[r] * ta[r]
                zsc[r] += wac[r] * ga[r]
    return z, z_star


@njit(cache=True, nogil=True)
def _variance_weights(W, B, sigma_u):
    """WB2 = (BᵀW)² entrywise (WB2[j, i] = (Σ_l B[l, j]·W[l, i])²) and WSW = diag(WᵀΣW)."""
    p, _, n = W.shape
    acc = np.empty(n)
    WB2 = np.zeros((p, p, n))
    for j in range(p):
        for i in range(p):
            out = WB2[j, i]
            for r in range(n):
                acc[r] = 0.0
            for l_ in range(p):
                blj = B[l_, j]
                if blj != 0.0:
                    wli = W[l_, i]
                    for r in range(n):
                        acc[r] += blj * wli[r]
            for r in range(n):
                out[r] = acc[r] * acc[r]
    WSW = np.zeros((p, n))
    for i in range(p):
        out = WSW[i]
        for l_ in range(p):
            for k_ in range(p):
                s_lk = sigma_u[l_, k_]
                if s_lk != 0.0:
                    wli = W[l_, i]
                    wki = W[k_, i]
                    for r in range(n):
                        out[r] += wli[r] * s_lk * wki[r]
    return WB2, WSW


@njit(cache=True, nogil=True)
def _factorise(St, Tt, alpha0, P, F, B, v_star, sigma_u):
    """Steps 1–2 and the α-free parts of step 3 for every data set of the batch.

    Returns (status, eig, W, z, z_star, WB2, WSW): WB2 = (BᵀW)² entrywise and
    WSW = diag(WᵀΣW), as in :class:`study.conditional._PencilData`.
    """
    p = P.shape[0]
    n = St.shape[1]
    ok, L = _cholesky(St, alpha0, P)
    if not ok:
        return NOT_POSITIVE_DEFINITE, L[0], L, L[0], L[0], L, L[0]
    Linv = _lower_inverse(L)
    C = _whitened_penalty(Linv, F)
    scale = _scale_by_power_of_two(C)
    U = np.empty((p, p, n))
    if not _jacobi(C, U, np.empty((3, n))):
        return NOT_CONVERGED, L[0], L, L[0], L[0], L, L[0]
    eig, W = _pencil_basis(C, scale, U, Linv)
    z, z_star = _projections(St, Tt, W, v_star)
    WB2, WSW = _variance_weights(W, B, sigma_u)
    return OK, eig, W, z, z_star, WB2, WSW


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
    sigma,
    keep,
    coef_mean,
    coef_M,
    risk_mean,
    risk_M,
    w_keep,
):
    """Fit every α to a batch of data sets and summarise the quantities of each α.

    Parameters
    ----------
    St : (2K+1, n) power sums Σu^p of the batch; Tt : (K+1, n) sums Σu^p·y.
    alpha0 : the shift (0, or the smallest α when G may be singular).
    alphas : (A,) every distinct α, all ≥ alpha0.
    P, F, B, v_star, w_star, sigma_u : of the degree (:class:`study.basis.StandardBasis`).
    b_identity : whether B is the identity (then ŵ = v̂).
    sigma : noise standard deviation.
    keep : ŵ of the first ``keep`` data sets is written to w_keep (keep, A, p).

    Outputs (written in place): coef_mean (A, p, 5), coef_M (A, p, 5, 5),
    risk_mean (A, 3), risk_M (A, 3, 3).

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
    sigma2 = sigma * sigma
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


def compile_kernel() -> None:
    """Compile the kernel for the argument types the engine uses (or load it from the
    cache), by running it on a tiny batch."""
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
    )


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
    _comoments,
    _shrinkage,
    _fits,
    _coef_quantities,
    _risk_quantities,
    pencil_moments,
)


def _is_cached() -> bool:
    """Whether numba's cache holds this source's compiled kernel (through numba's cache
    index; False on any doubt, which only costs a compilation)."""
    try:
        return all(bool(f._cache._cache_file._load_index()) for f in _COMPILED)
    except Exception:  # a numba without these internals: compile to be sure
        return False


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
    print("study: compiling the engine's kernel once (about ten seconds)…", file=sys.stderr)
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
