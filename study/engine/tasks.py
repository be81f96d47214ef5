"""The simulation engine: tasks (m, block) → power sums → batched fits → mergeable moments.

A task draws its block of data sets once (common random numbers) and fits every
(degree, λ, scaling) cell to the same data. Per degree there is one factorisation of the
pencil (G, P) per data set, reused for every distinct α (see :mod:`study.fit`); there is
no Python loop over fits. The work is done by the compiled kernel (:mod:`study.engine.kernel`),
batch by batch; the NumPy functions below compute the same quantities and take over the
batches the kernel declines (and the x ranges where the pencil is not accurate).

Per cell and coefficient j the task keeps the co-moments (:mod:`study.moments`) of

    q = (d, d², e, e², v),   d = ŵ_j − w*_j,  e = E[ŵ_j | X] − w*_j,  v = Var[ŵ_j | X],

and per cell those of (R, R², E[R | X]) for the prediction risk R(ŵ) = (ŵ − w*)ᵀΣ(ŵ − w*).
The conditional moments are the Rao–Blackwellised estimates of docs/theory.md, computed
from the same factorisation: with W and Λ of the pencil and s = 1/(1 + αΛ),

    v̂ = W(s ∘ Wᵀb),   E[v̂ | X] = W(s ∘ WᵀGv*),   Cov[v̂ | X] = σ²·W diag(s²) Wᵀ.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from dataclasses import dataclass

import numpy as np
from threadpoolctl import ThreadpoolController

from study.basis import hankel_index, standard_moments
from study.design import Design
from study.engine.streams import block_power_sums
from study.fit import (
    PencilFactor,
    change_of_basis,
    factorise,
    penalty_root,
    pencil_is_stable,
    solve_or_nan,
)
from study.moments import CoMoments
from study.scaling import alpha as scaling_alpha

COEF_QUANTITIES = ("d", "d2", "e", "e2", "v")
RISK_QUANTITIES = ("r", "r2", "rb")


# --- the result of a task ----------------------------------------------------------------
# The arrays of a checkpoint are named k{degree}_{group}_{n,mean,M} for the co-moment groups
# below, k{degree}_n_failed, k{degree}_draws and seconds: the byte format of
# study.engine.store and the size model of study.engine.costs follow from this one place.
_GROUPS = {"coef": len(COEF_QUANTITIES), "risk": len(RISK_QUANTITIES)}
_F8, _I8 = np.dtype(np.float64).str, np.dtype(np.int64).str


@dataclass
class DegreeResult:
    """One degree k of a task (or of merged tasks), with L λ values and C scalings.

    Attributes
    ----------
    coef : CoMoments of shape (L, C, k+1), of (d, d², e, e², v)
    risk : CoMoments of shape (L, C), of (R, R², E[R|X])
    n_failed : ndarray (L, C) int64, data sets whose fit was not finite
    draws : ndarray (L, C, keep, k+1), ŵ of the replications numbered below keep_draws
    """

    coef: CoMoments
    risk: CoMoments
    n_failed: np.ndarray
    draws: np.ndarray

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for group in _GROUPS:
            cm = getattr(self, group)
            out.update({f"{group}_n": cm.n, f"{group}_mean": cm.mean, f"{group}_M": cm.M})
        return out | {"n_failed": self.n_failed, "draws": self.draws}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> DegreeResult:
        groups = {
            g: CoMoments(arrays[f"{g}_n"], arrays[f"{g}_mean"], arrays[f"{g}_M"]) for g in _GROUPS
        }
        return cls(**groups, n_failed=arrays["n_failed"], draws=arrays["draws"])

    @staticmethod
    def array_shapes(L: int, C: int, degree: int, keep: int) -> dict[str, tuple]:
        """Shape and dtype string of every array of :meth:`to_arrays`."""
        base = {"coef": (L, C, degree + 1), "risk": (L, C)}
        out = {}
        for group, q in _GROUPS.items():
            b = base[group]
            out |= {f"{group}_n": b, f"{group}_mean": (*b, q), f"{group}_M": (*b, q, q)}
        out = {name: (shape, _F8) for name, shape in out.items()}
        return out | {"n_failed": ((L, C), _I8), "draws": ((L, C, keep, degree + 1), _F8)}


@dataclass
class TaskResult:
    """What a task computes: a :class:`DegreeResult` per degree and its compute time."""

    degrees: dict[int, DegreeResult]
    seconds: float

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The flat arrays of a checkpoint, keyed ``k{degree}_{name}`` and ``seconds``."""
        out = {}
        for k, result in self.degrees.items():
            out.update({f"k{k}_{name}": a for name, a in result.to_arrays().items()})
        out["seconds"] = np.array(self.seconds, dtype=np.float64)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> TaskResult:
        """Inverse of :meth:`to_arrays`; the degrees are read from the keys."""
        by_degree: dict[int, dict[str, np.ndarray]] = {}
        for key, a in arrays.items():
            if key != "seconds":
                degree, name = key[1:].split("_", 1)
                by_degree.setdefault(int(degree), {})[name] = a
        degrees = {k: DegreeResult.from_arrays(by_degree[k]) for k in sorted(by_degree)}
        return cls(degrees=degrees, seconds=float(arrays["seconds"]))

    @staticmethod
    def array_shapes(design: Design, keep: int, *, n_lambda: int | None = None) -> dict:
        """Shape and dtype string of every array of :meth:`to_arrays` for a task of
        ``design`` keeping ``keep`` draws (``n_lambda`` λ values if given)."""
        L = len(design.lam) if n_lambda is None else n_lambda
        C = len(design.scaling)
        out = {}
        for k in design.degree:
            shapes = DegreeResult.array_shapes(L, C, k, keep)
            out.update({f"k{k}_{name}": v for name, v in shapes.items()})
        return out | {"seconds": ((), _F8)}


def alpha_grid(design: Design, m: int, degree: int) -> np.ndarray:
    """α = m·c(λ) of every (λ, scaling) cell, shape (n_lambda, n_scaling)."""
    return np.array(
        [
            [scaling_alpha(lam, m=m, degree=degree, scaling=s) for s in design.scaling]
            for lam in design.lam
        ]
    )


def identifiable_grid(design: Design, m: int, degree: int) -> np.ndarray:
    """Boolean (n_lambda, n_scaling): False where λ = 0 and m ≤ degree."""
    ok = np.array([design.identifiable(m, degree, lam) for lam in design.lam])
    return np.repeat(ok[:, None], len(design.scaling), axis=1)


@dataclass
class _DegreeSetup:
    """Everything about one degree that does not depend on the data."""

    degree: int
    B: np.ndarray  # φ(u) = Bφ(x); ŵ = v̂ @ B
    P: np.ndarray  # penalty in u: B D Bᵀ = F Fᵀ
    F: np.ndarray
    use_pencil: bool
    v_star: np.ndarray
    w_star: np.ndarray
    sigma_u: np.ndarray  # E[φ(u)φ(u)ᵀ]
    B_is_identity: bool


def degree_setup(design: Design, degree: int) -> _DegreeSetup:
    B = change_of_basis(design.x.center, design.x.scale, degree)
    F = penalty_root(B, penalize_intercept=design.penalize_intercept)
    mu = standard_moments(design.x.distribution, 2 * degree)
    return _DegreeSetup(
        degree=degree,
        B=B,
        P=F @ F.T,
        F=F,
        use_pencil=pencil_is_stable(design.x.center, design.x.scale),
        v_star=design.true_coefficients_of(degree, standardised=True),
        w_star=design.true_coefficients_of(degree),
        sigma_u=mu[hankel_index(degree)],
        B_is_identity=bool(np.array_equal(B, np.eye(degree + 1))),
    )


@dataclass
class _PencilData:
    """Per data set, the parts of every α's solution that do not depend on α."""

    W: np.ndarray  # (n, k+1, k+1)
    eig: np.ndarray  # (n, k+1)
    z: np.ndarray  # Wᵀb
    z_star: np.ndarray  # WᵀGv*
    Wr2: np.ndarray  # (BᵀW)², squared entrywise: Var[ŵ_j|X] = σ² Σ_i Wr2[j, i]·s_i²
    WSW: np.ndarray  # diag(WᵀΣW): tr(Σ Cov[v̂|X]) = σ² Σ_i WSW_i·s_i²

    @classmethod
    def build(cls, factor: PencilFactor, G, b, setup: _DegreeSetup) -> _PencilData:
        W = factor.W
        return cls(
            W=W,
            eig=factor.eig,
            z=np.einsum("nji,nj->ni", W, b),
            z_star=np.einsum("nji,nj->ni", W, G @ setup.v_star),
            Wr2=np.einsum("lj,nli->nji", setup.B, W) ** 2,
            WSW=np.einsum("nli,lk,nki->ni", W, setup.sigma_u, W),
        )


def _quantities_all_alphas(
    pd: _PencilData, setup: _DegreeSetup, alphas: np.ndarray, alpha0: float, noise_sd: float
):
    """Every α at once from one factorisation of the pencil (G + α₀P, P).

    With Ĝ = G + α₀P = W⁻ᵀW⁻¹ and WᵀPW = Λ, A = G + αP = W⁻ᵀ(I + (α − α₀)Λ)W⁻¹, and
    WᵀGW = I − α₀Λ, so with s = 1/(1 + (α − α₀)Λ): v̂ = W(s∘Wᵀb), E[v̂|X] = W(s∘WᵀGv*) and
    Cov[v̂|X] = σ²·W diag(s²(1 − α₀Λ)) Wᵀ. The shift α₀ > 0 lets one factorisation serve
    designs whose G is singular (m ≤ k), where only α ≥ α₀ > 0 is asked for.

    Returns arrays over (n data sets, A values of α): coefficient quantities (n, A, p, 5),
    risk quantities (n, A, 3) and ŵ (n, A, p).
    """
    n, p = pd.z.shape
    s = 1.0 / (1.0 + (alphas[None, :, None] - alpha0) * pd.eig[:, None, :])  # (n, A, p)
    WT = np.swapaxes(pd.W, -1, -2)
    v_hat = (pd.z[:, None, :] * s) @ WT
    v_mean = (pd.z_star[:, None, :] * s) @ WT
    s *= s
    s *= (1.0 - alpha0 * pd.eig)[:, None, :]  # now s²(1 − α₀Λ)
    coef = np.empty((n, alphas.size, p, 5))
    B, sigma_u = setup.B, setup.sigma_u
    # ŵ = Bᵀv̂ (B = I on [−1, 1]: skip the product)
    w_hat = v_hat if setup.B_is_identity else v_hat @ B
    np.subtract(w_hat, setup.w_star, out=coef[..., 0])
    np.multiply(coef[..., 0], coef[..., 0], out=coef[..., 1])
    np.subtract(v_mean if setup.B_is_identity else v_mean @ B, setup.w_star, out=coef[..., 2])
    np.multiply(coef[..., 2], coef[..., 2], out=coef[..., 3])
    np.matmul(s, np.swapaxes(pd.Wr2, -1, -2), out=coef[..., 4])
    coef[..., 4] *= noise_sd**2
    risk = np.empty((n, alphas.size, 3))
    v_hat -= setup.v_star
    v_mean -= setup.v_star
    risk[..., 0] = ((v_hat @ sigma_u) * v_hat).sum(axis=-1)
    np.multiply(risk[..., 0], risk[..., 0], out=risk[..., 1])
    risk[..., 2] = ((v_mean @ sigma_u) * v_mean).sum(axis=-1)
    risk[..., 2] += noise_sd**2 * (s * pd.WSW[:, None, :]).sum(axis=-1)
    return coef, risk, coef[..., 0] + setup.w_star


def _quantities_direct(G, b, setup: _DegreeSetup, alpha: float, noise_sd: float):
    """The same quantities by inverting A = G + αP: for G singular (m ≤ k)."""
    A = G + alpha * setup.P
    n, p = b.shape
    rhs = np.concatenate(
        [b[..., None], (G @ setup.v_star)[..., None], np.broadcast_to(np.eye(p), (n, p, p))],
        axis=-1,
    )  # [b | Gv* | I]
    X = solve_or_nan(A, rhs)  # a singular system (rare) leaves its data set NaN
    v_hat, v_mean, Ainv = X[..., 0], X[..., 1], X[..., 2:]
    cov_v = noise_sd**2 * Ainv @ G @ Ainv
    var_w = np.einsum("li,nlk,ki->ni", setup.B, cov_v, setup.B)
    trace = np.einsum("nij,ji->n", cov_v, setup.sigma_u)
    return _assemble(v_hat, v_mean, var_w, trace, setup)


def _assemble(v_hat, v_mean, var_w, trace, setup: _DegreeSetup):
    d = v_hat @ setup.B - setup.w_star
    e = v_mean @ setup.B - setup.w_star
    coef = np.stack([d, d**2, e, e**2, var_w], axis=-1)
    dv = v_hat - setup.v_star
    dm = v_mean - setup.v_star
    r = np.einsum("ni,ij,nj->n", dv, setup.sigma_u, dv)
    rb = np.einsum("ni,ij,nj->n", dm, setup.sigma_u, dm) + trace
    risk = np.stack([r, r**2, rb], axis=-1)
    return coef, risk, d + setup.w_star


def run_task(design: Design, m: int, block: int) -> TaskResult:
    """Simulate one task: a :class:`DegreeResult` per degree (co-moments of the
    coefficient and risk quantities, failed fits, kept draws) and the seconds it took."""
    started = time.perf_counter()
    # no BLAS threads inside a worker process; tasks in threads (the threading backend)
    # share the pools of the process, which the caller limits once (one_blas_thread)
    in_thread = threading.current_thread() is not threading.main_thread()
    with contextlib.nullcontext() if in_thread else one_blas_thread():
        degrees = _run_task(design, m, block)
    return TaskResult(degrees=degrees, seconds=time.perf_counter() - started)


def one_blas_thread():
    """Context manager: the process's BLAS/OpenMP pools limited to one thread."""
    return _thread_pools().limit(limits=1)


@functools.cache
def _thread_pools() -> ThreadpoolController:
    """The process's BLAS/OpenMP pools, found once (finding them costs more than a task's
    worth of small fits)."""
    return ThreadpoolController()


def _run_task(design: Design, m: int, block: int) -> dict[int, DegreeResult]:
    K = max(design.degree)
    power_sums, T = block_power_sums(design, m, block, K)
    n = power_sums.shape[0]
    first = block * design.block_size
    keep = int(np.clip(design.keep_draws - first, 0, n))
    L, C = len(design.lam), len(design.scaling)
    out: dict[int, DegreeResult] = {}
    for k in design.degree:
        setup = degree_setup(design, k)
        alphas = alpha_grid(design, m, k)
        ident = identifiable_grid(design, m, k)
        coef = CoMoments.empty((L, C, k + 1), len(COEF_QUANTITIES))
        risk = CoMoments.empty((L, C), len(RISK_QUANTITIES))
        n_failed = np.zeros((L, C), dtype=np.int64)
        draws = np.full((L, C, keep, k + 1), np.nan)
        unique = np.unique(alphas[ident])
        if unique.size:
            cm_coef, cm_risk, ok_count, kept = _fit_in_batches(
                power_sums, T, setup, unique, design.noise_sd, keep
            )
            for i_a, a in enumerate(unique):
                cells = (alphas == a) & ident
                for arr, src in (
                    (coef.n, cm_coef.n),
                    (coef.mean, cm_coef.mean),
                    (coef.M, cm_coef.M),
                    (risk.n, cm_risk.n),
                    (risk.mean, cm_risk.mean),
                    (risk.M, cm_risk.M),
                ):
                    arr[cells] = src[i_a]
                n_failed[cells] = int(n - ok_count[i_a])
                draws[cells] = kept[:, i_a]
        out[k] = DegreeResult(coef=coef, risk=risk, n_failed=n_failed, draws=draws)
    return out


# Data sets fitted at once: bounds the per-replication arrays (data sets × α × coefficients
# × 5 quantities) whatever the block size, and keeps the compiled kernel's working set in
# cache. Part of the arithmetic: changing it changes the last bits of the merged moments.
FIT_BATCH = 256


def _fit_in_batches(
    power_sums, T, setup: _DegreeSetup, alphas: np.ndarray, noise_sd: float, keep: int
):
    """Fit every α to the data sets of a block, FIT_BATCH at a time, and merge the moments
    in order. Returns the co-moments of the coefficient and risk quantities (leading axis
    α), the number of finite fits per α, and ŵ of the first ``keep`` data sets (NaN where
    a fit failed).

    Each batch goes through the compiled kernel (:mod:`study.engine.kernel`) where the pencil is
    stable; a batch the kernel refuses (a numerically singular system, a non-finite
    quantity) and designs where the pencil is not stable take the NumPy path, which
    handles failed data sets one by one."""
    k = setup.degree
    G_index = hankel_index(k)
    cm_coef = cm_risk = None
    ok_count = np.zeros(alphas.size, dtype=np.int64)
    kept = []
    for start in range(0, power_sums.shape[0], FIT_BATCH):
        part = slice(start, start + FIT_BATCH)
        n_keep = max(0, min(keep - start, power_sums[part].shape[0]))
        fitted = _fit_compiled(power_sums[part], T[part], setup, alphas, noise_sd, n_keep)
        if fitted is None:
            G, b = power_sums[part][:, G_index], T[part][:, : k + 1]
            fitted = _fit_numpy(G, b, setup, alphas, noise_sd, n_keep)
        c, r, ok, w_kept = fitted
        cm_coef = c if cm_coef is None else cm_coef.merge(c)
        cm_risk = r if cm_risk is None else cm_risk.merge(r)
        ok_count += ok
        kept.append(w_kept)
    return cm_coef, cm_risk, ok_count, np.concatenate(kept, axis=0)


@functools.cache
def _kernel():
    """The compiled kernel, imported once per process, loaded from numba's cache (compiled
    into it first if need be: see :func:`study.engine.kernel.ensure_cached`)."""
    from study.engine import kernel

    kernel.ensure_cached()
    return kernel


def _fit_compiled(
    power_sums, T, setup: _DegreeSetup, alphas: np.ndarray, noise_sd: float, n_keep: int
):
    """One batch through :func:`study.engine.kernel.pencil_moments`; None where it declines."""
    if not setup.use_pencil:
        return None
    kernel = _kernel()
    OK, pencil_moments = kernel.OK, kernel.pencil_moments

    k, A = setup.degree, alphas.size
    p, n = k + 1, power_sums.shape[0]
    coef_mean, coef_M = np.empty((A, p, 5)), np.empty((A, p, 5, 5))
    risk_mean, risk_M = np.empty((A, 3)), np.empty((A, 3, 3))
    w_keep = np.empty((n_keep, A, p))
    c = np.ascontiguousarray  # one set of argument types: a single compiled version
    sums = (c(power_sums[:, : 2 * k + 1].T), c(T[:, :p].T))
    penalty = (_shift(alphas), c(alphas, dtype=float), c(setup.P), c(setup.F))
    basis = (c(setup.B), bool(setup.B_is_identity))
    dgp = (c(setup.v_star), c(setup.w_star), c(setup.sigma_u), float(noise_sd))
    out = (coef_mean, coef_M, risk_mean, risk_M, w_keep)
    status = pencil_moments(*sums, *penalty, *basis, *dgp, int(n_keep), *out)
    if status != OK:
        return None
    coef = CoMoments(n=np.full((A, p), float(n)), mean=coef_mean, M=coef_M)
    risk = CoMoments(n=np.full(A, float(n)), mean=risk_mean, M=risk_M)
    return coef, risk, np.full(A, n, dtype=np.int64), w_keep


def _fit_numpy(G, b, setup: _DegreeSetup, alphas: np.ndarray, noise_sd: float, n_keep: int):
    """One batch in NumPy: masks the data sets whose fit is not finite."""
    q_coef, q_risk, w_hat = _quantities(G, b, setup, alphas, noise_sd)
    ok = np.isfinite(q_coef).all(axis=(2, 3)) & np.isfinite(q_risk).all(axis=2)  # (n, A)
    if ok.all():
        c, r = CoMoments.from_samples(q_coef), CoMoments.from_samples(q_risk)
    else:
        c = CoMoments.from_masked_samples(q_coef, np.repeat(ok[:, :, None], q_coef.shape[2], 2))
        r = CoMoments.from_masked_samples(q_risk, ok)
    kept = np.where(ok[:n_keep, :, None], w_hat[:n_keep], np.nan)
    return c, r, ok.sum(axis=0), kept


def _shift(alphas: np.ndarray) -> float:
    """α₀ of the shifted pencil: 0 when λ = 0 is asked for (G is then non-singular), else
    the smallest α, so that one factorisation also serves a singular G (m ≤ k)."""
    return 0.0 if alphas[0] == 0 else float(alphas[0])


def _quantities(G, b, setup: _DegreeSetup, alphas: np.ndarray, noise_sd: float):
    """The dispatcher: every α from one shifted pencil where it is stable and factorises;
    otherwise a direct solve per α (x range far from 0, or a singular system)."""
    if setup.use_pencil:
        alpha0 = _shift(alphas)
        try:
            factor = factorise(G + alpha0 * setup.P, setup.F)
        except np.linalg.LinAlgError:
            factor = None  # a numerically singular system: solved per α below
        if factor is not None:
            pencil = _PencilData.build(factor, G, b, setup)
            return _quantities_all_alphas(pencil, setup, alphas, alpha0, noise_sd)
    parts = [_quantities_direct(G, b, setup, a, noise_sd) for a in alphas]
    return tuple(np.stack([p[i] for p in parts], axis=1) for i in range(3))


def merge_task_results(parts: list[TaskResult], degree: int) -> DegreeResult:
    """Merge the task results of one m, in block order, for one degree: the co-moments
    merged, the failures summed and the kept draws concatenated (axis 2)."""
    results = [part.degrees[degree] for part in parts]
    return DegreeResult(
        coef=CoMoments.combine([r.coef for r in results]),
        risk=CoMoments.combine([r.risk for r in results]),
        n_failed=sum(r.n_failed for r in results),
        draws=np.concatenate([r.draws for r in results], axis=2),
    )
