"""The logistic line: y ~ Bernoulli(σ(β0 + β1·x)), fitted by penalised polynomial logistic
regression, the asker's own model.

Each chunk's data sets are drawn from the chunk's streams (:mod:`study.engine.streams`):
x from the x stream, exactly as the gaussian family draws them, and the labels from the
noise stream, y = [r < σ(β0 + β1·x)] for r uniform on [0, 1). Every (degree, λ, scaling,
basis) cell is fitted to the same data: per degree and basis, a batched Newton solver
(:func:`newton_path`) fits all data sets of a chunk at once, every distinct α of the cells
in turn from the largest down, each fit warm-started at the one before it. That solver
is compiled (:mod:`study.engine.newton`, loaded from numba's cache as the engine's kernel
is); :func:`newton_path_numpy` is the same method in NumPy, the reference the compiled one
is tested against (tests/test_logistic_kernel.py).

The objective of a cell is the mean log-loss plus (c/2)Σ_{j≥1} w_j² (all j with
``penalize_intercept``), α = m·c as for least squares (:mod:`study.logistic`). Some data
sets have no minimiser (:class:`study.logistic.NoEstimate`): with α = 0 those a polynomial
of the degree separates (:func:`separated`), and with α > 0 and the intercept unpenalised
those whose labels are all equal. They count as failed fits of the cell (``n_failed``,
``no_estimate`` in the results), never as numbers in its moments.

Per cell and coefficient the task keeps the co-moments of q = (d, d², e, e², v) as the
gaussian family does, with d = ŵ_j − w*_j; the conditional mean and variance given the
design (e, v) have no closed form here and are NaN. The risk is the squared error of the
fitted log-odds averaged over x, R = (ŵ − w*)ᵀΣ(ŵ − w*) = E_x[(η̂(x) − η*(x))²], with
E[R | X] NaN likewise.
"""

from __future__ import annotations

import numpy as np

from study.basis import StandardBasis, hankel_index
from study.conditional import (
    FIT_COUNTS,
    TAIL_THRESHOLDS,
)
from study.design import Design
from study.engine.newton import (  # the stopping rules, shared with the compiled solver
    ARMIJO,
    ARMIJO_SLACK,
    DECREMENT_FLOOR,
    MAX_HALVINGS,
    NEWTON_MAX_ITER,
    NEWTON_TOL,
)
from study.engine.streams import chunk_size, chunk_streams, draw_u
from study.engine.tasks import DegreeResult, fit_every_cell, kept_in_chunk
from study.logistic import separable, sigmoid
from study.moments import CoMoments

# What a logistic cell counts in the engine's fit-count slots (study.conditional.FIT_COUNTS,
# shared by every family so that checkpoints keep one layout), and the names fits.csv gives
# them (:func:`fits_table`): data sets fitted, without an estimate, whose Newton's method
# failed, and the Newton iterations of the fitted ones, summed
FIT_SLOTS = {
    "direct": "fitted",
    "declined_not_finite": "no_estimate",
    "declined_not_converged": "not_converged",
    "compiled": "newton_iterations",
}
ROUTE, NO_ESTIMATE, NOT_CONVERGED, ITERATIONS = FIT_SLOTS


def chunk_data(design: Design, m: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """The data sets of one chunk: u = (x − center)/scale, shape (n, m), and the labels y
    (0.0 or 1.0), from the chunk's x and noise streams (module docstring)."""
    n = chunk_size(design, m, chunk)
    rng_x, rng_noise = chunk_streams(design.seed, m, chunk)
    u = draw_u(rng_x, design.x, (n, m))
    x = design.x.center + design.x.scale * u
    r = rng_noise.random((n, m))
    y = (r < sigmoid(design.intercept + design.slope * x)).astype(float)
    return u, y


def separated(u: np.ndarray, y: np.ndarray, degree: int) -> np.ndarray:
    """For each row of (u, y): whether a polynomial of the degree separates the labels, so
    that the unpenalised log-loss has no minimiser (all labels equal counts). Where the
    row's u values are distinct, as they are with probability one, that is exactly when
    the labels change at most ``degree`` times along the sorted u; rows with ties go
    through :func:`study.logistic.separable`, which decides them exactly."""
    # the order among equal u values is immaterial (rows with ties are decided below): an
    # unstable argsort does, at half the cost of a stable one
    order = np.argsort(u, axis=1)
    ys = np.take_along_axis(y, order, axis=1)
    changes = (np.diff(ys, axis=1) != 0).sum(axis=1)
    out = changes <= degree
    ties = (np.diff(np.sort(u, axis=1), axis=1) == 0).any(axis=1)
    for i in np.flatnonzero(ties):
        out[i] = separable(u[i], y[i], degree=degree)
    return out


def _powers_weighted(u: np.ndarray, w: np.ndarray, count: int) -> np.ndarray:
    """Σ_i w_i·u_i^r for r = 0 … count − 1, per row: shape (n, count)."""
    out = np.empty((u.shape[0], count))
    acc = w.copy()
    for r in range(count):
        out[:, r] = acc.sum(axis=1)
        if r + 1 < count:
            acc *= u
    return out


def _eta(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """η = Σ_j v_j·u^j per row (Horner)."""
    eta = np.repeat(v[:, -1:], u.shape[1], axis=1)
    for j in range(v.shape[1] - 2, -1, -1):
        eta *= u
        eta += v[:, j : j + 1]
    return eta


def _objective(u, y, v, c: float, P: np.ndarray) -> np.ndarray:
    eta = _eta(u, v)
    loss = np.mean(np.logaddexp(0.0, eta) - y * eta, axis=1)
    return loss + 0.5 * c * np.einsum("np,pq,nq->n", v, P, v)


def newton_path(
    u: np.ndarray, y: np.ndarray, P: np.ndarray, cs: np.ndarray, fit: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise (1/m)Σ log-loss(Σ_j v_j u^j, y) + (c/2)vᵀPv for every row of (u, y) and
    every c of ``cs`` (in the given order; from the largest down, each fit starts at the
    row's last solution), by the compiled Newton solver
    (:func:`study.engine.newton.newton_path`), loaded from numba's cache
    (:func:`study.engine.kernel.loaded`).

    Parameters and returns as :func:`newton_path_numpy`, whose method it is, row by row
    rather than all rows in lockstep; the results agree to rounding. A row's results
    depend on that row alone, bit for bit.
    """
    from study.engine import kernel

    solve = kernel.loaded().newton_path
    return solve(
        np.require(u, np.float64, ["C", "W"]),
        np.require(y, np.float64, ["C", "W"]),
        np.require(P, np.float64, ["C", "W"]),
        np.require(cs, np.float64, ["C", "W"]),
        np.require(fit, np.bool_, ["C", "W"]),
    )


def newton_path_numpy(
    u: np.ndarray, y: np.ndarray, P: np.ndarray, cs: np.ndarray, fit: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """What :func:`newton_path` computes, in NumPy: the reference the compiled solver is
    tested against (tests/test_logistic_kernel.py), with the same stopping rules. Every row
    of the batch moves in lockstep: one vectorised Newton iteration for all rows that
    have not yet converged or failed.

    Minimises (1/m)Σ log-loss(Σ_j v_j u^j, y) + (c/2)vᵀPv for every row of (u, y) and
    every c of ``cs`` (in the given order; from the largest down, each fit starts at the
    row's last solution), by Newton's method with a backtracking line search.

    The gradient and the Hessian need only the weighted power sums Σ(σ − y)u^r (r ≤ k)
    and Σσ(1 − σ)u^r (r ≤ 2k) of each row, so an iteration costs O(m·k) per row.

    Parameters
    ----------
    u, y : ndarray of shape (n, m)
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
    iterations : ndarray of int, shape (A, n)
        Newton iterations of each fit; −1 where it failed.
    """
    n, m = u.shape
    p = P.shape[0]
    H_index = hankel_index(p - 1)
    v_out = np.full((len(cs), n, p), np.nan)
    iterations = np.full((len(cs), n), -1, dtype=np.int64)
    start = np.zeros((n, p))
    for a, c in enumerate(cs):
        rows = np.flatnonzero(fit[a])
        if not rows.size:
            continue
        v = start[rows].copy()
        uu, yy = u[rows], y[rows]
        value = _objective(uu, yy, v, c, P)
        done = np.zeros(rows.size, dtype=bool)
        failed = np.zeros(rows.size, dtype=bool)
        count = np.zeros(rows.size, dtype=np.int64)
        for _ in range(NEWTON_MAX_ITER):
            live = np.flatnonzero(~done & ~failed)
            if not live.size:
                break
            ul, yl, vl = uu[live], yy[live], v[live]
            prob = sigmoid(_eta(ul, vl))
            grad = _powers_weighted(ul, prob - yl, p) / m + c * vl @ P
            curv = _powers_weighted(ul, prob * (1.0 - prob), 2 * p - 1) / m
            hess = curv[:, H_index] + c * P
            try:
                step = np.linalg.solve(hess, grad[..., None])[..., 0]
            except np.linalg.LinAlgError:  # a singular Hessian in some row: one at a time
                step = np.full_like(grad, np.nan)
                for i in range(live.size):
                    try:
                        step[i] = np.linalg.solve(hess[i], grad[i])
                    except np.linalg.LinAlgError:
                        pass
            bad = ~np.isfinite(step).all(axis=1)
            failed[live[bad]] = True
            t = np.ones(live.size)
            decrease = (grad * step).sum(axis=1)
            trial = vl - step
            f_trial = _objective(ul, yl, trial, c, P)
            f_old = value[live]
            # Armijo, with rounding-level slack once the steps are at the precision limit
            slack = ARMIJO_SLACK * np.abs(f_old)
            for _ in range(MAX_HALVINGS):
                short = ~bad & ~(f_trial <= f_old - ARMIJO * t * decrease + slack)
                if not short.any():
                    break
                t[short] *= 0.5
                trial[short] = vl[short] - t[short, None] * step[short]
                f_trial[short] = _objective(ul[short], yl[short], trial[short], c, P)
            stuck = ~bad & ~(f_trial <= f_old - ARMIJO * t * decrease + slack)
            failed[live[stuck]] = True
            good = ~bad & ~stuck
            # converged when the full Newton step is negligible (a step the line search
            # shortened says nothing about the distance to the minimum)
            moved = np.abs(step).max(axis=1)
            size = np.maximum(1.0, np.abs(trial).max(axis=1))
            # ... or when the Newton decrement gᵀH⁻¹g is at rounding level
            # (a negative decrement, rounding on an ill-conditioned Hessian, is no sign
            # of convergence)
            floor = (decrease >= 0) & (
                decrease <= DECREMENT_FLOOR * np.maximum(1.0, np.abs(f_old))
            )
            idx = live[good]
            v[idx], value[idx] = trial[good], f_trial[good]
            count[idx] += 1
            converged = (moved <= NEWTON_TOL * size) | floor
            done[idx[converged[good]]] = True
        ok = done & ~failed
        v_out[a, rows[ok]] = v[ok]
        iterations[a, rows[ok]] = count[ok]
        start[rows[ok]] = v[ok]  # the next (smaller) c starts here
    return v_out, iterations


def _no_minimiser(u, y, degree: int, cs: np.ndarray, penalize_intercept: bool) -> np.ndarray:
    """(A, n): the fits that have no minimiser (module docstring)."""
    out = np.zeros((len(cs), u.shape[0]), dtype=bool)
    if np.any(cs == 0):
        out[cs == 0] = separated(u, y, degree)[None, :]
    if not penalize_intercept:
        same = (y.min(axis=1) == y.max(axis=1))[None, :]
        out[cs > 0] |= same
    return out


def fit_chunk(u, y, basis: StandardBasis, alphas: np.ndarray, penalize_intercept: bool):
    """Fit every α (sorted ascending, unique) to the data sets of a chunk.

    Returns ŵ (A, n, p) in the basis's raw coefficients (NaN where there is no estimate or
    Newton failed), the mask of fits without a minimiser (A, n), and the Newton iterations
    (A, n; −1 where not fitted)."""
    m = u.shape[1]
    order = np.argsort(-alphas, kind="stable")  # from the largest α down
    cs = alphas[order] / m
    no_min = _no_minimiser(u, y, basis.degree, cs, penalize_intercept)
    v, its = newton_path(u, y, basis.penalty, cs, ~no_min)
    back = np.argsort(order)
    w = v[back] @ basis.B  # ŵ = Bᵀv, row-wise
    return w, no_min[back], its[back]


def run_chunks(
    design: Design,
    m: int,
    chunks: range,
    *,
    solver: str = "auto",
    noise_draw: str = "sufficient",
) -> dict[int, DegreeResult]:
    """Draw each chunk's data sets and fit every (degree, λ, basis, scaling) cell to them
    (module docstring). One way of fitting and of drawing: ``solver`` must be "auto" and
    ``noise_draw`` "sufficient" (the default of every family)."""
    if solver != "auto" or noise_draw != "sufficient":
        raise ValueError(
            "the logistic family has one solver and one way of drawing the labels: "
            f"solver='auto' and noise_draw='sufficient' (got {solver!r}, {noise_draw!r})"
        )
    data = []
    for c in chunks:
        u, y = chunk_data(design, m, c)
        data.append((u, y, kept_in_chunk(design, m, c, u.shape[0])))

    def fit(result, basis, alphas, cells):
        _fit_cells(result, data, basis, alphas, cells, design.penalize_intercept)

    return fit_every_cell(design, m, len(data), sum(keep for *_, keep in data), fit)


def _fit_cells(result: DegreeResult, data, basis: StandardBasis, alphas, cells, penalize):
    """Fit the cells ``cells`` (mask (L, C)) of one degree and basis to every chunk."""
    unique = np.unique(alphas[cells])
    if not unique.size:
        return
    which = np.searchsorted(unique, alphas[cells])
    kept_all = []
    p = basis.degree + 1
    for i, (u, y, keep) in enumerate(data):
        w, no_min, its = fit_chunk(u, y, basis, unique, penalize)
        ok = np.isfinite(w).all(axis=2)  # (A, n)
        d = np.moveaxis(w - basis.w_star, 1, 0)  # (n, A, p)
        nan = np.full_like(d, np.nan)
        q_coef = np.stack([d, d * d, nan, nan, nan], axis=-1)  # (n, A, p, 5)
        d_u = d @ np.linalg.inv(basis.B)  # the same errors in u: w = Bᵀv
        r = np.einsum("nai,ij,naj->na", d_u, basis.sigma, d_u)
        q_risk = np.stack([r, r * r, np.full_like(r, np.nan)], axis=-1)  # (n, A, 3)
        okT = ok.T  # (n, A)
        c = CoMoments.from_masked_samples(q_coef, np.repeat(okT[:, :, None], p, 2))
        rk = CoMoments.from_masked_samples(q_risk, okT)
        for arr, src in (
            (result.coef.n, c.n),
            (result.coef.mean, c.mean),
            (result.coef.M, c.M),
            (result.risk.n, rk.n),
            (result.risk.mean, rk.mean),
            (result.risk.M, rk.M),
        ):
            arr[i][cells] = src[which]
        result.first[i][cells] = np.where(ok[:, 0, None], w[:, 0], np.nan)[which]
        error = np.abs(d)
        tails = np.stack(
            [((error > t) & okT[:, :, None]).sum(axis=0) for t in TAIL_THRESHOLDS], axis=-1
        )
        result.tails[cells] += tails[which]
        failed = (~ok).sum(axis=1)  # (A,)
        result.n_failed[cells] += failed[which]
        counts = np.zeros((unique.size, len(FIT_COUNTS)), dtype=np.int64)
        counts[:, FIT_COUNTS.index(ROUTE)] = ok.sum(axis=1)
        counts[:, FIT_COUNTS.index(NO_ESTIMATE)] = no_min.sum(axis=1)
        counts[:, FIT_COUNTS.index(NOT_CONVERGED)] = (~ok & ~no_min).sum(axis=1)
        counts[:, FIT_COUNTS.index(ITERATIONS)] = np.where(ok, its, 0).sum(axis=1)
        result.fit_counts[cells] += counts[which]
        kept_all.append(np.moveaxis(w[:, :keep], 1, 0))  # (keep, A, p)
    kept = np.concatenate(kept_all, axis=0)
    result.draws[cells] = np.moveaxis(kept[:, which], 1, 0)


def fits_table(fits):
    """fits.csv of a logistic design: per cell the data sets ``fitted``, those with
    ``no_estimate`` (separation at λ = 0, or all labels equal with the intercept
    unpenalised), those whose Newton's method did not converge (``not_converged``), and
    ``newton_iterations``, the iterations of the fitted ones summed."""
    keys = ["m", "degree", "lambda", "scaling", "basis", "alpha"]
    return fits[keys + list(FIT_SLOTS)].rename(columns=FIT_SLOTS)
