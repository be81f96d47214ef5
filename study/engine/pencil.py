"""The compiled factorisation of the pencil (Ĝ, P) for a batch of data sets: Cholesky,
the whitened penalty, cyclic Jacobi rotations, and the projections every α shares.

Part of the compiled kernel (:mod:`study.engine.kernel`, which calls :func:`_factorise`
for every batch); strict IEEE arithmetic throughout, so that a data set's numbers do not
depend on its position in the batch.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

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
