"""The compiled Newton solver of the logistic family: penalised polynomial logistic
regression for a batch of data sets, one data set at a time.

:func:`newton_path` computes what :func:`study.models.logistic.newton_path_numpy` computes
in NumPy, with the same stopping rules (the constants below, which both read): for every
data set (row of u, y) and every c in turn, each fit warm-started at the row's last
solution, Newton's method on

    J(v) = (1/m) Σ_i [log(1 + e^η_i) − y_i·η_i] + (c/2)·vᵀPv,   η_i = Σ_j v_j·u_i^j,

with a backtracking (Armijo) line search. The gradient and the Hessian come from the
weighted power sums Σ(σ − y)u^r and Σσ(1 − σ)u^r, the step from a Cholesky factorisation
of the (k + 1) × (k + 1) Hessian; a Hessian without one (singular, or not positive definite
in rounding) fails the fit, as does a step that is not finite, a line search that finds no
decrease in MAX_HALVINGS halvings, or NEWTON_MAX_ITER iterations without convergence.

Where the NumPy reference moves every row of the batch in lockstep, this solver finishes a
row before it starts the next: the row's data stay in the first-level cache through all its
iterations and all its c, and no row waits for the slowest. A trial point costs one pass
over the points for η (Horner's rule), e^−|η| and the log-loss, written
log(1 + e^η) = max(η, 0) + log1p(e^−|η|), which neither overflows nor loses the small
values; the next iteration's σ and σ(1 − σ) come from the same e^−|η| (σ = 1/(1 + e^−|η|)
for η ≥ 0, e^−|η|/(1 + e^−|η|) below), and a warm start reuses the loss and e^−|η| of the
fit before it (only the penalty changes with c). The exponential and the logarithm are
the solver's own polynomials (:func:`_exp_minus`, :func:`_log1p_unit`, within two units
in the last place of libm's): without a call or a branch, the loops over the points run in
SIMD lanes, which makes the solver twice as fast as with libm's (measured at m = 100,
degree 3 and m = 1000, degree 5).

Arithmetic is strict IEEE throughout (no fastmath; ``error_model="numpy"`` only drops
Python's check for a division by zero, which kept the loops from SIMD lanes): a row's
numbers depend on that row alone, not on the batch around it or on its position in it,
and are the same bits from run to run, compiled where they run or loaded from the cache
(tests/test_logistic_kernel.py). Sums over the points go into four interleaved partial
sums, a fixed order that keeps the adders busy. Results agree with the NumPy reference to
rounding, not bit for bit: the two sum in different orders and compute σ differently.

Part of the compiled kernel (:mod:`study.engine.kernel` registers these functions, compiles
them into numba's cache in a separate process and loads them from there).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

# The stopping rules, which the NumPy reference (study.models.logistic) imports: defined
# here because numba freezes a global at compilation, and its cache is renewed when this
# file changes, not when another does.
#
# Newton stops for a data set when no coefficient (in u) moves by more than this, relative
NEWTON_TOL = 1e-10
NEWTON_MAX_ITER = 100
# ... or when the Newton decrement falls below this, relative to the objective
DECREMENT_FLOOR = 1e-24
# halvings of the step before a data set's line search gives up (its fit then fails)
MAX_HALVINGS = 40
# Armijo's sufficient decrease: J(v − t·step) ≤ J(v) − ARMIJO·t·gᵀstep + ARMIJO_SLACK·|J(v)|,
# the slack letting the last steps, at the precision limit, through
ARMIJO = 1e-4
ARMIJO_SLACK = 1e-13


# e^−a = 2^−k·e^−r with k = round(a/ln 2) and r = a − k·ln 2 (|r| ≤ ln 2/2), ln 2 in two
# parts (Cody and Waite) so that k·LN2_HI is exact; adding SHIFTER = 1.5·2⁵² rounds a/ln 2
# to the integer k, which then sits in the low bits of the sum
_INV_LN2 = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_SHIFTER = 6755399441055744.0
# beyond this e^−a is 0 in double precision (below 2⁻¹⁰⁷⁵); the cap keeps k small
_EXP_CAP = 1100.0


@intrinsic
def _float_from_bits(typingctx, bits):
    """The float64 whose bits are the int64 ``bits`` (an LLVM bitcast)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return types.float64(types.int64), codegen


@intrinsic
def _bits_of_float(typingctx, x):
    """The bits of the float64 ``x`` as an int64 (an LLVM bitcast)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int64))

    return types.int64(types.float64), codegen


@njit(cache=True, nogil=True, error_model="numpy")
def _exp_minus(a):
    """e^−a for a ≥ 0 (NaN for NaN), within two units in the last place of libm's exp,
    subnormal results included (tests/test_logistic_kernel.py).

    No call and no branch, so that a loop of it runs in SIMD lanes; libm's exp runs one
    point at a time at about four times the cost. e^−r is its Taylor polynomial to r¹³
    (the rest is below 10⁻¹⁷ of it for |r| ≤ ln 2/2), evaluated by Estrin's scheme (pairs
    of terms, then pairs of pairs in r², r⁴, r⁸: a short chain of dependent operations
    where Horner's rule would wait on each of thirteen in turn); 2^−k is two powers of two
    whose exponent bits are written directly, each a normal number, so that only the last
    product rounds (into the subnormal range where it must)."""
    b = a if a < _EXP_CAP else _EXP_CAP  # NaN too: put back at the end
    t = b * _INV_LN2 + _SHIFTER
    kf = t - _SHIFTER
    k = _bits_of_float(t) - _bits_of_float(_SHIFTER)
    x = kf * _LN2_LO - (b - kf * _LN2_HI)  # −r
    x2 = x * x
    x4 = x2 * x2
    x8 = x4 * x4
    p0 = 1.0 + x
    p1 = 0.5 + x * (1.0 / 6.0)
    p2 = (1.0 / 24.0) + x * (1.0 / 120.0)
    p3 = (1.0 / 720.0) + x * (1.0 / 5040.0)
    p4 = (1.0 / 40320.0) + x * (1.0 / 362880.0)
    p5 = (1.0 / 3628800.0) + x * (1.0 / 39916800.0)
    p6 = (1.0 / 479001600.0) + x * (1.0 / 6227020800.0)
    q = ((p0 + p1 * x2) + (p2 + p3 * x2) * x4) + ((p4 + p5 * x2) + p6 * x4) * x8
    k1 = k >> 1
    k2 = k - k1
    out = q * _float_from_bits((1023 - k1) << 52) * _float_from_bits((1023 - k2) << 52)
    return out if a == a else a


@njit(cache=True, nogil=True, error_model="numpy")
def _log1p_unit(x):
    """log(1 + x) for 0 ≤ x ≤ 1 (NaN for NaN), within two units in the last place of
    libm's log1p (tests/test_logistic_kernel.py).

    As :func:`_exp_minus`, no call and no branch (libm's log1p costs about four times as
    much): log(1 + x) = 2·atanh(s) = 2s + 2s·z(1/3 + z/5 + z²/7 + …) with s = x/(2 + x)
    ≤ 1/3 and z = s², to the z¹⁷ term (the next is below 10⁻¹⁸ of the sum), the
    polynomial by Estrin's scheme. The leading 2s is added last, so that the result is as
    accurate as s."""
    s = x / (2.0 + x)
    z = s * s
    z2 = z * z
    z4 = z2 * z2
    z8 = z4 * z4
    b0 = ((1.0 / 3.0) + z * (1.0 / 5.0)) + ((1.0 / 7.0) + z * (1.0 / 9.0)) * z2
    b1 = ((1.0 / 11.0) + z * (1.0 / 13.0)) + ((1.0 / 15.0) + z * (1.0 / 17.0)) * z2
    b2 = ((1.0 / 19.0) + z * (1.0 / 21.0)) + ((1.0 / 23.0) + z * (1.0 / 25.0)) * z2
    b3 = ((1.0 / 27.0) + z * (1.0 / 29.0)) + ((1.0 / 31.0) + z * (1.0 / 33.0)) * z2
    tail = ((b0 + b1 * z4) + (b2 + b3 * z4) * z8) + (1.0 / 35.0) * (z8 * z8)
    two_s = 2.0 * s
    return two_s + two_s * (z * tail)


@njit(cache=True, nogil=True, error_model="numpy")
def _loss(u, y, v, eta, e, terms):
    """The mean log-loss (1/m)Σ[log(1 + e^η) − yη] at v, η = Σ_j v_j u^j by Horner's rule
    over the coefficients as in NumPy's reference; leaves η in ``eta`` and e^−|η| in ``e``,
    from which the next iteration's σ follows without another exponential. Overwrites
    ``terms``."""
    m = u.size
    p = v.size
    top = v[p - 1]
    for i in range(m):
        eta[i] = top
    for j in range(p - 2, -1, -1):
        vj = v[j]
        for i in range(m):
            eta[i] = eta[i] * u[i] + vj
    for i in range(m):
        e[i] = _exp_minus(abs(eta[i]))
    # log(1 + e^η) − yη = max(η, 0) − yη + log1p(e^−|η|), exact in its first two terms
    # for labels 0 and 1
    for i in range(m):
        x = eta[i]
        terms[i] = (x if x > 0.0 else 0.0) - y[i] * x + _log1p_unit(e[i])
    return _sum(terms) / m


@njit(cache=True, nogil=True, error_model="numpy")
def _sum(x):
    """Σx in four interleaved partial sums, a fixed order (module docstring)."""
    m = x.size
    full = m - m % 4
    s0 = s1 = s2 = s3 = 0.0
    for i in range(0, full, 4):
        s0 += x[i]
        s1 += x[i + 1]
        s2 += x[i + 2]
        s3 += x[i + 3]
    for i in range(full, m):
        s0 += x[i]
    return (s0 + s1) + (s2 + s3)


@njit(cache=True, nogil=True, error_model="numpy")
def _quadratic(P, v):
    """vᵀPv."""
    p = v.size
    quad = 0.0
    for i in range(p):
        row = 0.0
        for j in range(p):
            row += P[i, j] * v[j]
        quad += v[i] * row
    return quad


@njit(cache=True, nogil=True, error_model="numpy")
def _power_sums(u, w, count, pw, out):
    """out[r] = Σ_i w_i·u_i^r for r = 0 … count − 1, with w_i·u_i^r formed as in NumPy's
    reference (w·u·u…) and summed by :func:`_sum`. Overwrites pw."""
    m = u.size
    for i in range(m):
        pw[i] = w[i]
    for r in range(count):
        out[r] = _sum(pw)
        if r + 1 < count:
            for i in range(m):
                pw[i] *= u[i]


@njit(cache=True, nogil=True, error_model="numpy")
def _newton_system(u, y, eta, e, v, c, P, wg, wh, pw, sums, grad, hess):
    """The gradient (1/m)Σ(σ − y)u^r + c·Pv and the Hessian (1/m)Σσ(1 − σ)u^(i+j) + c·P
    at v, from the η and e^−|η| that :func:`_loss` left at v. σ − y is formed as
    −(1 − σ) where y = 1, so that it keeps its relative precision where σ is close to 1."""
    m = u.size
    p = v.size
    for i in range(m):
        ei = e[i]
        d = 1.0 / (1.0 + ei)
        if eta[i] >= 0.0:
            s, q = d, ei * d  # σ, 1 − σ
        else:
            s, q = ei * d, d
        wg[i] = -q if y[i] == 1.0 else s - y[i]
        wh[i] = s * q
    _power_sums(u, wg, p, pw, sums)
    for r in range(p):
        pv = 0.0
        for j in range(p):
            pv += P[r, j] * v[j]
        grad[r] = sums[r] / m + c * pv
    _power_sums(u, wh, 2 * p - 1, pw, sums)
    for i in range(p):
        for j in range(p):
            hess[i, j] = sums[i + j] / m + c * P[i, j]


@njit(cache=True, nogil=True, error_model="numpy")
def _cholesky_solve(H, g, L, x):
    """x = H⁻¹g through the Cholesky factor L of H (overwritten). Returns False, x then
    meaningless, where H has no such factor (a pivot ≤ 0 or NaN: singular or not positive
    definite in rounding) or x is not finite."""
    p = g.size
    for j in range(p):
        for i in range(j, p):
            s = H[i, j]
            for k in range(j):
                s -= L[i, k] * L[j, k]
            if i == j:
                if not s > 0.0:  # also catches NaN
                    return False
                L[j, j] = math.sqrt(s)
            else:
                L[i, j] = s / L[j, j]
    for i in range(p):  # L z = g, z into x
        s = g[i]
        for k in range(i):
            s -= L[i, k] * x[k]
        x[i] = s / L[i, i]
    for i in range(p - 1, -1, -1):  # Lᵀx = z
        s = x[i]
        for k in range(i + 1, p):
            s -= L[k, i] * x[k]
        x[i] = s / L[i, i]
    for i in range(p):
        if not math.isfinite(x[i]):
            return False
    return True


@njit(cache=True, nogil=True, error_model="numpy")
def _newton(u, y, P, c, v, warm, loss, work, grad, step, trial, sums, hess, L):
    """Minimise J (module docstring) for one data set and one c from v, which it
    overwrites with the minimiser.

    With ``warm``, ``loss`` is the mean log-loss at v and work[0], work[1] hold its η and
    e^−|η| (as the fit before left them): J(v) is then that loss plus the new penalty,
    the same bits as computed afresh, without a pass over the points. The other arrays are
    scratch: ``work`` (8, m), ``grad``, ``step``, ``trial`` (p), ``sums`` (2p − 1),
    ``hess`` and ``L`` (p, p).

    Returns
    -------
    (iterations, loss)
        The Newton iterations, and the mean log-loss at the minimiser, whose η and e^−|η|
        are then in work[0], work[1]; iterations −1 where the fit failed (v, the loss and
        work meaningless).
    """
    p = v.size
    eta, e, eta_t, e_t = work[0], work[1], work[2], work[3]
    wg, wh, pw, terms = work[4], work[5], work[6], work[7]
    if not warm:
        loss = _loss(u, y, v, eta, e, terms)
    f = loss + 0.5 * c * _quadratic(P, v)
    for it in range(NEWTON_MAX_ITER):
        _newton_system(u, y, eta, e, v, c, P, wg, wh, pw, sums, grad, hess)
        if not _cholesky_solve(hess, grad, L, step):
            return -1, loss
        decrease = 0.0
        for j in range(p):
            decrease += grad[j] * step[j]
        t = 1.0
        for j in range(p):
            trial[j] = v[j] - step[j]
        loss_t = _loss(u, y, trial, eta_t, e_t, terms)
        f_t = loss_t + 0.5 * c * _quadratic(P, trial)
        # Armijo, with rounding-level slack once the steps are at the precision limit
        slack = ARMIJO_SLACK * abs(f)
        halvings = 0
        while not f_t <= f - ARMIJO * t * decrease + slack:  # also where f_t is NaN
            if halvings == MAX_HALVINGS:
                return -1, loss
            t *= 0.5
            for j in range(p):
                trial[j] = v[j] - t * step[j]
            loss_t = _loss(u, y, trial, eta_t, e_t, terms)
            f_t = loss_t + 0.5 * c * _quadratic(P, trial)
            halvings += 1
        # converged when the full Newton step is negligible (a step the line search
        # shortened says nothing about the distance to the minimum) ...
        moved = 0.0
        size = 1.0
        for j in range(p):
            moved = max(moved, abs(step[j]))
            size = max(size, abs(trial[j]))
        # ... or when the Newton decrement gᵀH⁻¹g is at rounding level (a negative one,
        # rounding on an ill-conditioned Hessian, is no sign of convergence)
        floor = decrease >= 0.0 and decrease <= DECREMENT_FLOOR * max(1.0, abs(f))
        for j in range(p):
            v[j] = trial[j]
        f, loss = f_t, loss_t
        eta, eta_t = eta_t, eta
        e, e_t = e_t, e
        if moved <= NEWTON_TOL * size or floor:
            if it % 2 == 0:  # η and e^−|η| at v are in work[2], work[3]: to their place
                work[0] = eta
                work[1] = e
            return it + 1, loss
    return -1, loss


@njit(cache=True, nogil=True, error_model="numpy")
def newton_path(u, y, P, cs, fit):
    """Minimise (1/m)Σ log-loss(Σ_j v_j u^j, y) + (c/2)vᵀPv for every row of (u, y) and
    every c of ``cs`` in the given order (from the largest down, each fit starting at the
    row's last solution, zero before the first), row by row (module docstring).

    Parameters
    ----------
    u, y : ndarray of shape (n, m), float64, C-contiguous
    P : ndarray of shape (p, p)
        The penalty in the u basis (p = k + 1).
    cs : ndarray of shape (A,)
        c = α/m of each fit.
    fit : ndarray of bool, shape (A, n)
        Which (c, row) to fit; the others (no minimiser) stay NaN.

    Returns
    -------
    v : ndarray of shape (A, n, p)
        The minimisers; NaN where not fitted or where Newton failed.
    iterations : ndarray of int64, shape (A, n)
        Newton iterations of each fit; −1 where not fitted or where it failed.
    """
    n, m = u.shape
    p = P.shape[0]
    A = cs.size
    v_out = np.full((A, n, p), np.nan)
    iterations = np.full((A, n), -1, dtype=np.int64)
    work = np.empty((8, m))
    grad, step, trial = np.empty(p), np.empty(p), np.empty(p)
    sums = np.empty(2 * p - 1)
    hess, L = np.empty((p, p)), np.zeros((p, p))
    start = np.empty(p)
    v = np.empty(p)
    for r in range(n):
        ur = u[r]
        yr = y[r]
        start[:] = 0.0
        warm = False  # whether work[0], work[1] and loss belong to start
        loss = 0.0
        for a in range(A):
            if not fit[a, r]:
                continue
            v[:] = start
            count, loss = _newton(
                ur, yr, P, cs[a], v, warm, loss, work, grad, step, trial, sums, hess, L
            )
            warm = count >= 0
            if warm:
                v_out[a, r] = v
                iterations[a, r] = count
                start[:] = v  # the next (smaller) c starts here
    return v_out, iterations
