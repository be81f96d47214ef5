"""The conditional moments of ridge fits given the design points, behind one interface.

For a stack of data sets, each reduced to its Gram matrix G = ΦᵀΦ and b = Φᵀy in the
standardised basis u (:class:`study.basis.StandardBasis`), and for every α of a grid:

    v̂ = A⁻¹b,   E[v̂ | X] = A⁻¹Gv*,   Cov[v̂ | X] = σ²·A⁻¹GA⁻¹,   A = G + αP,

mapped back to raw coefficients ŵ = Bᵀv̂, and the prediction risk R = (v̂ − v*)ᵀΣ_u(v̂ − v*)
with its conditional mean E[R | X] (the Rao–Blackwellised estimates of docs/theory.md).
The engine (:mod:`study.engine.tasks`), the theory and the tuning
(:mod:`study.theory.tuning`) all call this module; ``solver`` picks how:

- ``"compiled"``: the numba kernel (:mod:`study.engine.kernel`), one factorisation of the
  pencil per data set and the co-moments reduced in the same pass (batches), or the
  expected risk given each design from the same factorisation (the tuning's objective,
  :func:`conditional_risk_function`);
- ``"pencil"``: the same factorisation in NumPy: with WᵀGW = I, WᵀPW = Λ and
  s = 1/(1 + αΛ), v̂ = W(s∘Wᵀb), E[v̂|X] = W(s∘WᵀGv*), Cov[v̂|X] = σ²·W diag(s²) Wᵀ;
- ``"direct"``: a solve of A per α (accurate on every x range, and for singular G);
- ``"auto"`` (the default): the fastest that is accurate, compiled, then pencil, then
  direct, as :func:`study.basis.pencil_is_stable` and the factorisation allow; for the
  risk function of the tuning, the compiled pencil, else the compiled direct route
  (:func:`study.engine.kernel.direct_risk`).

Every solver gives the same numbers to rounding (tests compare them pairwise).
"""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass

import numpy as np

from study.basis import StandardBasis, hankel_index
from study.fit import PencilFactor, factorise, solve_or_nan
from study.measures import TAIL_THRESHOLDS
from study.moments import CoMoments

SOLVERS = ("auto", "compiled", "pencil", "direct")
# How each data set of a batch was fitted, and why the compiled kernel declined a batch (its
# status codes, study.engine.pencil): the counts a run keeps per cell (fits.csv).
ROUTES = ("compiled", "pencil", "direct")
DECLINES = ("not_positive_definite", "not_finite", "not_converged")
FIT_COUNTS = ROUTES + tuple(f"declined_{reason}" for reason in DECLINES)
COEF_QUANTITIES = ("d", "d2", "e", "e2", "v")
RISK_QUANTITIES = ("r", "r2", "rb")


class SolverDeclined(ValueError):
    """The solver that was asked for cannot serve this problem or batch."""


def check_solver(solver: str, allowed: tuple[str, ...] = SOLVERS) -> str:
    if solver not in allowed:
        raise ValueError(
            f"The 'solver' parameter must be one of {', '.join(map(repr, allowed))}. "
            f"Got {solver!r} instead."
        )
    return solver


# --- per data set: every α from one factorisation, or a solve per α ---------------------


@dataclass
class _PencilData:
    """Per data set, the parts of every α's solution that do not depend on α."""

    W: np.ndarray  # (n, k+1, k+1)
    eig: np.ndarray  # (n, k+1)
    z: np.ndarray  # Wᵀb
    z_star: np.ndarray  # WᵀGv*
    Wr2: np.ndarray  # (BᵀW)², squared entrywise: Var[ŵ_j|X] = σ² Σ_i Wr2[j, i]·s_i²
    WSW: np.ndarray  # diag(WᵀΣW): tr(Σ Cov[v̂|X]) = σ² Σ_i WSW_i·s_i²
    null: np.ndarray  # p − m for a data set of m < p points, else 0 (_null_counts)

    @classmethod
    def build(cls, factor: PencilFactor, G, b, basis: StandardBasis) -> _PencilData:
        W = factor.W
        return cls(
            W=W,
            eig=factor.eig,
            z=np.einsum("nji,nj->ni", W, b),
            z_star=np.einsum("nji,nj->ni", W, G @ basis.v_star),
            Wr2=np.einsum("lj,nli->nji", basis.B, W) ** 2,
            WSW=np.einsum("nli,lk,nki->ni", W, basis.sigma, W),
            null=_null_counts(G),
        )

    def null_directions(self) -> np.ndarray | None:
        """(n, p) True in the p − m directions where G of m < p points has no energy (the
        p − m largest Λ), where 1 − α₀Λ, z and z* are exactly 0 and computed are rounding
        that the fits multiply by about 1/α (the kernel's ``_rank_deficient``); None when
        no data set has fewer points than coefficients."""
        if not self.null.any():
            return None
        rank = np.argsort(np.argsort(-self.eig, axis=1, kind="stable"), axis=1)
        return rank < self.null[:, None]


def _quantities_all_alphas(
    pencil: _PencilData, basis: StandardBasis, alphas: np.ndarray, alpha0: float, noise_sd: float
):
    """Every α at once from one factorisation of the pencil (G + α₀P, P).

    With Ĝ = G + α₀P = W⁻ᵀW⁻¹ and WᵀPW = Λ, A = G + αP = W⁻ᵀ(I + (α − α₀)Λ)W⁻¹, and
    WᵀGW = I − α₀Λ, so with s = 1/(1 + (α − α₀)Λ): v̂ = W(s∘Wᵀb), E[v̂|X] = W(s∘WᵀGv*) and
    Cov[v̂|X] = σ²·W diag(s²(1 − α₀Λ)) Wᵀ (:meth:`_PencilData.null_directions`). The shift
    α₀ > 0 lets one factorisation serve designs whose G is singular (m ≤ k), where only
    α ≥ α₀ > 0 is asked for.

    Returns arrays over (n data sets, A values of α): coefficient quantities (n, A, p, 5),
    risk quantities (n, A, 3) and ŵ (n, A, p).
    """
    n, p = pencil.z.shape
    z, z_star, g = pencil.z, pencil.z_star, 1.0 - alpha0 * pencil.eig
    null = pencil.null_directions()
    if null is not None:
        z, z_star, g = (np.where(null, 0.0, a) for a in (z, z_star, g))
    s = 1.0 / (1.0 + (alphas[None, :, None] - alpha0) * pencil.eig[:, None, :])  # (n, A, p)
    WT = np.swapaxes(pencil.W, -1, -2)
    v_hat = (z[:, None, :] * s) @ WT
    v_mean = (z_star[:, None, :] * s) @ WT
    s *= s
    s *= g[:, None, :]  # now s²(1 − α₀Λ)
    coef = np.empty((n, alphas.size, p, 5))
    B, sigma_u = basis.B, basis.sigma
    # ŵ = Bᵀv̂ (B = I on [−1, 1]: skip the product)
    w_hat = v_hat if basis.B_is_identity else v_hat @ B
    np.subtract(w_hat, basis.w_star, out=coef[..., 0])
    np.multiply(coef[..., 0], coef[..., 0], out=coef[..., 1])
    np.subtract(v_mean if basis.B_is_identity else v_mean @ B, basis.w_star, out=coef[..., 2])
    np.multiply(coef[..., 2], coef[..., 2], out=coef[..., 3])
    np.matmul(s, np.swapaxes(pencil.Wr2, -1, -2), out=coef[..., 4])
    coef[..., 4] *= noise_sd**2
    risk = np.empty((n, alphas.size, 3))
    v_hat -= basis.v_star
    v_mean -= basis.v_star
    risk[..., 0] = ((v_hat @ sigma_u) * v_hat).sum(axis=-1)
    np.multiply(risk[..., 0], risk[..., 0], out=risk[..., 1])
    risk[..., 2] = ((v_mean @ sigma_u) * v_mean).sum(axis=-1)
    risk[..., 2] += noise_sd**2 * (s * pencil.WSW[:, None, :]).sum(axis=-1)
    return coef, risk, coef[..., 0] + basis.w_star


def _null_counts(G: np.ndarray) -> np.ndarray:
    """p − m per data set where it has m < p points (m = G[0, 0] = Σu⁰), else 0."""
    p = G.shape[-1]
    return np.clip(p - np.rint(G[:, 0, 0]).astype(np.int64), 0, p)


def _rank_factor(G: np.ndarray) -> np.ndarray:
    """C with CᵀC = G per data set of m < p points (rows √λ_i·v_iᵀ of G's
    eigendecomposition, the p − m smallest eigenvalues and rounding's negative ones set to
    0): Cov[v̂|X] = σ²A⁻¹GA⁻¹ = σ²YYᵀ with Y = A⁻¹Cᵀ from a solve. Through the explicit A⁻¹
    and G itself, G's rounding in its null space came back multiplied by 1/α² (off by a
    factor of 10⁵ at α = 1e-8, m = 5, degree 7, orthonormal basis)."""
    p = G.shape[-1]
    lam, V = np.linalg.eigh(G)  # ascending
    lam[np.arange(p)[None, :] < _null_counts(G)[:, None]] = 0.0
    return np.swapaxes(V * np.sqrt(np.clip(lam, 0.0, None))[:, None, :], -1, -2)


def _quantities_direct(G, b, basis: StandardBasis, alpha: float, noise_sd: float, C=None):
    """The same quantities by solves with A = G + αP: for G singular (m ≤ k), or where the
    pencil is not stable. A data set of m ≥ p points takes A⁻¹ and σ²A⁻¹GA⁻¹ (LU keeps
    the accuracy of a graded G, which an eigendecomposition would lose); one of m < p
    points solves with :func:`_rank_factor` of G instead (``C``: those factors, of the data
    sets of m < p in order; computed here if not given)."""
    singular = _null_counts(G) > 0
    A = G + alpha * basis.penalty
    n, p = b.shape
    rhs = np.concatenate(
        [b[..., None], (G @ basis.v_star)[..., None], np.broadcast_to(np.eye(p), (n, p, p))],
        axis=-1,
    )  # [b | Gv* | I]
    if singular.any():
        C = _rank_factor(G[singular]) if C is None else C
        Ct = np.swapaxes(C, -1, -2)
        rhs[singular, :, 1] = (Ct @ (C @ basis.v_star)[..., None])[..., 0]  # CᵀCv*
        rhs[singular, :, 2:] = Ct
    X = solve_or_nan(A, rhs)  # a singular system (rare) leaves its data set NaN
    v_hat, v_mean, Y = X[..., 0], X[..., 1], X[..., 2:]
    cov_v = np.empty((n, p, p))
    regular = ~singular  # Y = A⁻¹ there, and the arithmetic of engine version 10
    cov_v[regular] = noise_sd**2 * Y[regular] @ G[regular] @ Y[regular]
    cov_v[singular] = noise_sd**2 * Y[singular] @ np.swapaxes(Y[singular], -1, -2)  # A⁻¹Cᵀ
    var_w = np.einsum("li,nlk,ki->ni", basis.B, cov_v, basis.B)
    trace = np.einsum("nij,ji->n", cov_v, basis.sigma)
    return _assemble(v_hat, v_mean, var_w, trace, basis)


def _assemble(v_hat, v_mean, var_w, trace, basis: StandardBasis):
    d = v_hat @ basis.B - basis.w_star
    e = v_mean @ basis.B - basis.w_star
    coef = np.stack([d, d**2, e, e**2, var_w], axis=-1)
    dv = v_hat - basis.v_star
    dm = v_mean - basis.v_star
    r = np.einsum("ni,ij,nj->n", dv, basis.sigma, dv)
    rb = np.einsum("ni,ij,nj->n", dm, basis.sigma, dm) + trace
    risk = np.stack([r, r**2, rb], axis=-1)
    return coef, risk, d + basis.w_star


def quantities(G, b, basis: StandardBasis, alphas: np.ndarray, noise_sd: float, *, solver="auto"):
    """Per data set and α, the quantities the engine summarises.

    Parameters
    ----------
    G : ndarray (n, p, p); b : ndarray (n, p)
        Gram matrices and Φᵀy in the u basis.
    alphas : ndarray (A,), sorted, all > 0 where some G is singular.
    solver : {"auto", "pencil", "direct"}

    Returns
    -------
    coef : ndarray (n, A, p, 5) of (d, d², e, e², v): d = ŵ_j − w*_j, e = E[ŵ_j|X] − w*_j,
        v = Var[ŵ_j|X]
    risk : ndarray (n, A, 3) of (R, R², E[R|X])
    w_hat : ndarray (n, A, p)

    A data set whose system is singular is NaN ("direct", and "auto" after a failed
    factorisation). ``solver="pencil"`` raises :class:`SolverDeclined` when some G + α₀P
    has no Cholesky factor.
    """
    return _quantities(G, b, basis, alphas, noise_sd, solver)[:3]


def _quantities(G, b, basis: StandardBasis, alphas, noise_sd: float, solver: str):
    """:func:`quantities` and the route taken, "pencil" or "direct"."""
    check_solver(solver, ("auto", "pencil", "direct"))
    if solver == "pencil" or (solver == "auto" and basis.use_pencil):
        alpha0 = pencil_shift(alphas)
        try:
            factor = factorise(G + alpha0 * basis.penalty, basis.F)
        except np.linalg.LinAlgError:
            if solver == "pencil":
                raise SolverDeclined("some G + α₀P is not positive definite") from None
            factor = None  # a numerically singular system: solved per α below
        if factor is not None:
            pencil = _PencilData.build(factor, G, b, basis)
            return (*_quantities_all_alphas(pencil, basis, alphas, alpha0, noise_sd), "pencil")
    singular = _null_counts(G) > 0
    C = _rank_factor(G[singular]) if singular.any() else None
    parts = [_quantities_direct(G, b, basis, a, noise_sd, C) for a in alphas]
    return (*(np.stack([p[i] for p in parts], axis=1) for i in range(3)), "direct")


# --- per batch: the co-moments of the quantities ---------------------------------------


@dataclass
class BatchMoments:
    """What a batch of data sets contributes for every α (leading axis α).

    Attributes
    ----------
    coef : CoMoments (A, p) of :data:`COEF_QUANTITIES`
    risk : CoMoments (A,) of :data:`RISK_QUANTITIES`
    n_ok : ndarray (A,) int64, data sets whose fit was finite
    w_kept : ndarray (keep, A, p), ŵ of the first ``keep`` data sets (NaN where not finite)
    counts : ndarray (len(FIT_COUNTS),) int64, the batch's data sets by the route that
        fitted them and, if the kernel declined the batch, by its reason
    tails : ndarray (A, p, len(TAIL_THRESHOLDS)) int64, finite fits whose |ŵ_j − w*_j|
        exceeds each threshold
    """

    coef: CoMoments
    risk: CoMoments
    n_ok: np.ndarray
    w_kept: np.ndarray
    counts: np.ndarray
    tails: np.ndarray


def batch_moments(
    power_sums, T, basis: StandardBasis, alphas, noise_sd: float, *, keep: int, solver="auto"
) -> BatchMoments:
    """Fit every α to a batch of data sets given by their power sums and reduce.

    ``solver="auto"`` sends the batch through the compiled kernel where the pencil is
    stable; a batch the kernel refuses (a numerically singular system, a non-finite
    quantity) and designs where the pencil is not stable take the NumPy path, which
    handles failed data sets one by one. ``"compiled"`` raises :class:`SolverDeclined`
    instead of falling back; ``"pencil"`` and ``"direct"`` go to :func:`quantities`.
    """
    check_solver(solver)
    declined = None
    if solver in ("auto", "compiled") and (basis.use_pencil or solver == "compiled"):
        fitted, declined = _fit_compiled(power_sums, T, basis, alphas, noise_sd, keep)
        if fitted is not None:
            return fitted
        if solver == "compiled":
            raise SolverDeclined(f"the compiled kernel declined the batch ({declined})")
    k = basis.degree
    G, b = power_sums[:, hankel_index(k)], T[:, : k + 1]
    numpy_solver = "auto" if solver in ("auto", "compiled") else solver
    fitted = _fit_numpy(G, b, basis, alphas, noise_sd, keep, numpy_solver)
    if declined in DECLINES:  # (a pencil that is not stable is a route, not a refusal)
        fitted.counts[FIT_COUNTS.index(f"declined_{declined}")] = G.shape[0]
    return fitted


def _counts(n: int, route: str) -> np.ndarray:
    counts = np.zeros(len(FIT_COUNTS), dtype=np.int64)
    counts[FIT_COUNTS.index(route)] = n
    return counts


def _kernel():
    """The compiled kernel, loaded from numba's cache (:func:`study.engine.kernel.loaded`)."""
    from study.engine import kernel

    return kernel.loaded()


def _fit_compiled(
    power_sums, T, basis: StandardBasis, alphas: np.ndarray, noise_sd: float, n_keep: int
):
    """One batch through :func:`study.engine.kernel.pencil_moments`: (BatchMoments, None),
    or (None, reason) where it declines (reason "not_stable" where the pencil is not
    accurate, else one of :data:`DECLINES`)."""
    if not basis.use_pencil:
        return None, "not_stable"
    kernel = _kernel()
    OK, pencil_moments = kernel.OK, kernel.pencil_moments

    k, A = basis.degree, alphas.size
    p, n = k + 1, power_sums.shape[0]
    coef_mean, coef_M = np.empty((A, p, 5)), np.empty((A, p, 5, 5))
    risk_mean, risk_M = np.empty((A, 3)), np.empty((A, 3, 3))
    w_keep = np.empty((n_keep, A, p))
    tails = np.zeros((A, p, len(TAIL_THRESHOLDS)), dtype=np.int64)
    c = np.ascontiguousarray  # one set of argument types: a single compiled version
    sums = (c(power_sums[:, : 2 * k + 1].T), c(T[:, :p].T))
    penalty = (pencil_shift(alphas), c(alphas, dtype=float), c(basis.penalty), c(basis.F))
    change = (c(basis.B), bool(basis.B_is_identity))
    dgp = (c(basis.v_star), c(basis.w_star), c(basis.sigma), float(noise_sd))
    out = (coef_mean, coef_M, risk_mean, risk_M, w_keep, np.array(TAIL_THRESHOLDS), tails)
    status = pencil_moments(*sums, *penalty, *change, *dgp, int(n_keep), *out)
    if status != OK:
        return None, DECLINES[status - 1]
    coef = CoMoments(n=np.full((A, p), float(n)), mean=coef_mean, M=coef_M)
    risk = CoMoments(n=np.full(A, float(n)), mean=risk_mean, M=risk_M)
    counts = _counts(n, "compiled")
    ok = np.full(A, n, dtype=np.int64)
    return BatchMoments(coef, risk, ok, w_keep, counts, tails), None


def _fit_numpy(G, b, basis: StandardBasis, alphas, noise_sd: float, n_keep: int, solver: str):
    """One batch in NumPy: masks the data sets whose fit is not finite."""
    q_coef, q_risk, w_hat, route = _quantities(G, b, basis, alphas, noise_sd, solver)
    ok = np.isfinite(q_coef).all(axis=(2, 3)) & np.isfinite(q_risk).all(axis=2)  # (n, A)
    if ok.all():
        c, r = CoMoments.from_samples(q_coef), CoMoments.from_samples(q_risk)
    else:
        c = CoMoments.from_masked_samples(q_coef, np.repeat(ok[:, :, None], q_coef.shape[2], 2))
        r = CoMoments.from_masked_samples(q_risk, ok)
    kept = np.where(ok[:n_keep, :, None], w_hat[:n_keep], np.nan)
    error = np.abs(q_coef[..., 0])  # |ŵ − w*|, (n, A, p)
    tails = np.stack(
        [((error > t) & ok[:, :, None]).sum(axis=0) for t in TAIL_THRESHOLDS], axis=-1
    ).astype(np.int64)
    return BatchMoments(c, r, ok.sum(axis=0), kept, _counts(G.shape[0], route), tails)


def pencil_shift(alphas: np.ndarray) -> float:
    """α₀ of the shifted pencil: 0 when λ = 0 is asked for (G is then non-singular), else
    the smallest α, so that one factorisation also serves a singular G (m ≤ k)."""
    return 0.0 if alphas[0] == 0 else float(alphas[0])


# --- the expected risk given the design, for the tuning ------------------------------------


def _pencil_risk(G_u, *, basis: StandardBasis, compiled: bool = True):
    """The function (α, σ) ↦ :func:`conditional_risk` per design from one factorisation
    of the pencil (G, P) per design, as in the engine: with WᵀGW = I, WᵀPW = Λ and s = 1/(1 + αΛ),
    E[v̂|X] = W(s∘WᵀGv*) and tr(Σ Cov[v̂|X]) = σ²·Σ_i s_i²(WᵀΣW)_ii. Ten times faster than a
    solve per α; used only where the pencil is accurate (x range touching 0) and every G is
    positive definite. Returns None otherwise. With ``compiled`` the risk of every α and
    design is the kernel's :func:`study.engine.kernel.pencil_risk` (six times faster again
    for the tuning's one α per call); else NumPy's (the reference the tests compare with)."""
    B = basis.B
    if basis.degree < 1 or abs(B[1, 0]) > 1.0:  # B[1, 0] = −center/scale
        return None
    d = np.diag(np.linalg.solve(B, np.linalg.solve(B, basis.penalty).T))
    F = B[:, d > 0.5]
    # a Cholesky factor of a singular G can come out "successful" and wrong: check the rank
    if np.any(np.linalg.matrix_rank(G_u, hermitian=True) < G_u.shape[-1]):
        return None
    try:
        factor = factorise(G_u, F)
    except np.linalg.LinAlgError:
        return None  # a singular design (m ≤ k): the direct solves handle α = 0 there
    W, eig = factor.W, factor.eig
    R, p = G_u.shape[0], G_u.shape[-1]
    z_star = np.einsum("rji,rj->ri", W, G_u @ basis.v_star)  # (R, p)
    wsw = np.einsum("rli,lk,rki->ri", W, basis.sigma, W)
    if compiled:
        return _compiled_pencil_risk(W, z_star, wsw, eig, basis)
    # laid out (design, coefficient, α) so that every product is a batched matmul or a
    # reduction over a short middle axis: five times faster than einsum over (α, design, ·)
    z_star, wsw = z_star[:, :, None], wsw[:, :, None]
    lam, v_star, sigma = eig[:, :, None], basis.v_star[:, None], basis.sigma
    chunk = max(1, 400_000 // (R * p))

    def risk(alphas: np.ndarray, noise_sd: float) -> np.ndarray:
        out = np.empty(alphas.shape + (R,))
        for start in range(0, alphas.size, chunk):
            s = 1.0 / (1.0 + lam * alphas[start : start + chunk])  # (R, p, A)
            dev = W @ (s * z_star) - v_star
            bias = ((sigma @ dev) * dev).sum(axis=1)  # (R, A)
            var = noise_sd**2 * (s * s * wsw).sum(axis=1)
            out[start : start + chunk] = (bias + var).T
        return out

    return risk


def _compiled_pencil_risk(W, z_star, wsw, eig, basis: StandardBasis):
    """:func:`_pencil_risk`'s function through the compiled kernel, its arrays laid out
    with the designs last (contiguous, as the kernel was compiled for)."""
    from study.engine import kernel

    compiled = kernel.loaded().pencil_risk
    W_t = np.ascontiguousarray(np.moveaxis(W, 0, -1), dtype=float)  # (p, p, R)
    z_t, wsw_t, eig_t = (np.ascontiguousarray(a.T, dtype=float) for a in (z_star, wsw, eig))
    sigma = np.ascontiguousarray(basis.sigma, dtype=float)
    v_star = np.ascontiguousarray(basis.v_star, dtype=float)
    R = eig.shape[0]

    def risk(alphas: np.ndarray, noise_sd: float) -> np.ndarray:
        # a fresh writable copy: a read-only array is another type to numba, which would
        # compile the kernel again in this process
        flat = np.array(alphas, dtype=float).reshape(-1)
        out = np.empty((flat.size, R))
        compiled(W_t, z_t, wsw_t, eig_t, sigma, v_star, flat, float(noise_sd) ** 2, out)
        return out.reshape(alphas.shape + (R,))

    return risk


def _gram_factor(G_u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """C with CᵀC = G_u per design, rows √λ_i·v_iᵀ of the eigendecomposition, eigenvalues
    at rounding level (below p·ε·λ_max, the threshold of ``numpy.linalg.matrix_rank``) as
    0; and which designs are singular (rank below p). The risk's variance and bias are
    computed from C: then they carry no rounding-level part of G in its null space, which
    A⁻¹ = (G + αP)⁻¹ would multiply by 1/α (for α = 1e-8 on a design of m ≤ k points,
    A⁻¹GA⁻¹ from G itself was off by a factor of 3,600, tests/test_theory.py)."""
    lam, V = np.linalg.eigh(G_u)
    p = G_u.shape[-1]
    floor = p * np.finfo(float).eps * np.abs(lam).max(axis=-1, keepdims=True)
    kept = lam > floor
    C = np.swapaxes(V * np.sqrt(np.where(kept, lam, 0.0))[..., None, :], -1, -2)
    return np.ascontiguousarray(C), kept.sum(axis=-1) < p


def _direct_risk(G_u, *, basis: StandardBasis):
    """The function (α, σ) ↦ :func:`conditional_risk` per design by batched solves of
    A = G_u + αP per α: E[v̂|X] = A⁻¹CᵀCv* and tr(Σ·A⁻¹GA⁻¹) = tr(YᵀΣY), Y = A⁻¹Cᵀ, with C
    the factor of G of :func:`_gram_factor`."""
    sigma_u, P, vs = basis.sigma, basis.penalty, basis.v_star
    R, p = G_u.shape[0], G_u.shape[-1]
    C, singular = _gram_factor(G_u)
    Ct = np.swapaxes(C, -1, -2)
    rhs = np.concatenate([Ct @ (C @ vs)[..., None], Ct], axis=-1)  # [CᵀCv* | Cᵀ]
    chunk = max(1, 200_000 // (R * p * p))

    def risk(alphas: np.ndarray, noise_sd: float) -> np.ndarray:
        out = np.empty(alphas.shape + (R,))
        for start in range(0, alphas.size, chunk):
            a = alphas[start : start + chunk]
            A = G_u[None] + a[:, None, None, None] * P  # (n, R, p, p)
            # not identifiable: α = 0 on a rank-deficient design (its solve might still
            # return numbers). Only that design's risk is inf, the others' stay; an identity
            # stands in for its system, so that the batched solve does not fail over it
            unidentified = (a == 0.0)[:, None] & singular[None, :]
            A[unidentified] = np.eye(p)
            # some A singular (a tiny α on a singular design, or σ = 0 pushing the search
            # to the ends of its range): that system's solution is NaN, its risk infinite.
            # One stack of systems, so that a failure costs no other design its solution
            B = np.broadcast_to(rhs, A.shape[:2] + rhs.shape[1:])
            X = solve_or_nan(A.reshape(-1, p, p), B.reshape(-1, p, p + 1)).reshape(B.shape)
            d, Y = X[..., 0] - vs, X[..., 1:]  # E[v̂|X] − v* and A⁻¹Cᵀ
            bias = np.einsum("nri,ij,nrj->nr", d, sigma_u, d)
            var = noise_sd**2 * ((sigma_u @ Y) * Y).sum(axis=(-2, -1))
            total = np.where(np.isfinite(bias + var), bias + var, math.inf)
            total[unidentified] = math.inf
            out[start : start + chunk] = total
        return out

    return risk


def _compiled_direct_risk(G_u, *, basis: StandardBasis):
    """:func:`_direct_risk`'s function through the compiled kernel
    (:func:`study.engine.kernel.direct_risk`: a Cholesky factorisation of G_u + αP per
    design and α where NumPy solves a batched LU; the same numbers to rounding, tested, and
    four to five times faster on the tuning's 400 designs of degree 3 to 7)."""
    from study.engine import kernel

    compiled = kernel.loaded().direct_risk
    G = np.ascontiguousarray(G_u, dtype=float)
    C, singular = _gram_factor(G)
    P, sigma = (np.ascontiguousarray(a, dtype=float) for a in (basis.penalty, basis.sigma))
    v_star = np.ascontiguousarray(basis.v_star, dtype=float)
    g_star = np.ascontiguousarray(np.einsum("rki,rk->ri", C, C @ v_star))  # CᵀCv*
    singular = np.ascontiguousarray(singular)
    R = G.shape[0]

    def risk(alphas: np.ndarray, noise_sd: float) -> np.ndarray:
        flat = np.array(alphas, dtype=float).reshape(-1)  # writable: see _compiled_pencil_risk
        out = np.empty((flat.size, R))
        compiled(G, C, P, sigma, v_star, g_star, singular, flat, float(noise_sd) ** 2, out)
        return out.reshape(alphas.shape + (R,))

    return risk


def conditional_risk_function(
    G_u: np.ndarray,
    *,
    basis: StandardBasis,
    noise_sd: float,
    solver: str = "auto",
    per_design: bool = False,
):
    """The function α ↦ :func:`conditional_risk` for one stack of designs, with everything
    that does not depend on α (a factorisation per design, the rank check) done once:
    the tuning evaluates it a few hundred times. With ``per_design`` it returns the risk
    given each design, of shape (n_alpha, R), instead of their mean (the tuning's standard
    errors need it); an α whose system is singular for a design has risk inf there.

    ``solver``: "compiled" (the pencil through the compiled kernel), "pencil" (the same in
    NumPy), "direct" (a batched solve per α in NumPy), or "auto": compiled where the pencil
    serves, else the compiled direct route (a Cholesky factorisation per design and α,
    :func:`study.engine.kernel.direct_risk`). "compiled" and "pencil" raise
    :class:`SolverDeclined` where the pencil does not serve."""
    G_u = np.asarray(G_u, dtype=float)
    if G_u.ndim == 2:
        G_u = G_u[None]
    check_solver(solver, ("auto", "compiled", "pencil", "direct"))
    risk = _risk_of_designs(G_u, basis, solver)
    noise_sd = float(noise_sd)
    if per_design:
        return lambda alphas: risk(np.atleast_1d(np.asarray(alphas, dtype=float)), noise_sd)
    return lambda alphas: risk(np.atleast_1d(np.asarray(alphas, dtype=float)), noise_sd).mean(
        axis=-1
    )


# The set-up of conditional_risk_function (a factorisation per design, the rank check) does
# not depend on σ: the theory asks for the same designs and basis many times (the tuning,
# its transfer, the matched comparison, five noise levels), so the last few are kept.
_RISK_CACHE: dict[bytes, object] = {}
_RISK_CACHE_SIZE = 16
_RISK_LOCK = threading.Lock()


def _risk_of_designs(G_u: np.ndarray, basis: StandardBasis, solver: str):
    digest = hashlib.blake2b(digest_size=20)
    for array in (G_u, basis.B, basis.sigma, basis.penalty, basis.v_star):
        digest.update(repr(array.shape).encode())
        digest.update(np.ascontiguousarray(array, dtype=float).tobytes())
    key = digest.digest() + solver.encode()
    with _RISK_LOCK:  # theory pieces may run in threads of one process
        if key in _RISK_CACHE:
            return _RISK_CACHE[key]
    G_u = G_u.copy()  # kept by the cached function: a caller's later change must not reach it
    risk = (
        None if solver == "direct" else _pencil_risk(G_u, basis=basis, compiled=solver != "pencil")
    )
    if risk is None and solver in ("compiled", "pencil"):
        raise SolverDeclined("the pencil is not accurate or some design is singular")
    if risk is None:
        direct = _direct_risk if solver == "direct" else _compiled_direct_risk
        risk = direct(G_u, basis=basis)
    with _RISK_LOCK:
        if len(_RISK_CACHE) >= _RISK_CACHE_SIZE:
            _RISK_CACHE.pop(next(iter(_RISK_CACHE)))
        _RISK_CACHE[key] = risk
    return risk


def conditional_risk(
    G_u: np.ndarray,
    alphas: np.ndarray,
    *,
    basis: StandardBasis,
    noise_sd: float,
    solver: str = "auto",
) -> np.ndarray:
    """Exact expected prediction risk given the design, averaged over a stack of designs.

    E[R | X] = (E[v̂|X] − v*)ᵀΣ_u(E[v̂|X] − v*) + σ²·tr(Σ_u A⁻¹G_uA⁻¹), A = G_u + αP, by
    direct batched solves (accurate on every x range), or from one factorisation of the
    pencil per design where that is as accurate (x range touching the origin; the
    generalised-eigenvalue shortcut loses accuracy far from it). If any G_u is
    (numerically) rank-deficient, as when m ≤ k, the risk at α = 0 is inf (not
    identifiable).

    Parameters
    ----------
    G_u : ndarray of shape (R, p, p)
        Gram matrices Σ_i φ(u_i)φ(u_i)ᵀ in the standardised basis u = (x − center)/scale.
    alphas : ndarray of shape (n,)
        Sum-form ridge parameters.
    basis : StandardBasis
    noise_sd : float

    Returns
    -------
    ndarray of shape (n,)
        The mean over designs of E[R | X], for each α.
    """
    return conditional_risk_function(G_u, basis=basis, noise_sd=noise_sd, solver=solver)(alphas)
