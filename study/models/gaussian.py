"""The Gaussian line: y = β0 + β1·x + ε with ε ~ N(0, σ²), fitted by polynomial ridge.

A task draws its block of data sets once (common random numbers) from the block's stream
(:mod:`study.engine.streams`), reduces each to its power sums, and fits every (degree, λ,
scaling) cell to the same data. Per degree there is one factorisation of the pencil (G, P)
per data set, reused for every distinct α (:mod:`study.conditional`); there is no Python
loop over fits.

Per cell and coefficient j the task keeps the co-moments (:mod:`study.moments`) of

    q = (d, d², e, e², v),   d = ŵ_j − w*_j,  e = E[ŵ_j | X] − w*_j,  v = Var[ŵ_j | X],

and per cell those of (R, R², E[R | X]) for the prediction risk R(ŵ) = (ŵ − w*)ᵀΣ(ŵ − w*).
"""

from __future__ import annotations

import numpy as np

from study.basis import StandardBasis
from study.conditional import COEF_QUANTITIES, FIT_COUNTS, RISK_QUANTITIES, batch_moments
from study.design import Design
from study.engine.streams import block_power_sums
from study.engine.tasks import DegreeResult, alpha_grid, identifiable_grid
from study.moments import CoMoments


def run_block(
    design: Design, m: int, block: int, *, solver: str = "auto", noise_draw: str = "sufficient"
) -> dict[int, DegreeResult]:
    """Draw the block's data sets (common to every cell), reduce each to its power sums,
    and fit every (degree, λ, scaling) cell to them through :mod:`study.conditional`.
    ``noise_draw``: how the noise enters the sums (:func:`block_power_sums`)."""
    K = max(design.degree)
    power_sums, T = block_power_sums(design, m, block, K, noise_draw=noise_draw)
    n = power_sums.shape[0]
    first = block * design.block_size
    keep = int(np.clip(design.keep_draws - first, 0, n))
    L, C = len(design.lam), len(design.scaling)
    out: dict[int, DegreeResult] = {}
    for k in design.degree:
        basis = design.standard_basis(k)
        alphas = alpha_grid(design, m, k)
        ident = identifiable_grid(design, m, k)
        coef = CoMoments.empty((L, C, k + 1), len(COEF_QUANTITIES))
        risk = CoMoments.empty((L, C), len(RISK_QUANTITIES))
        n_failed = np.zeros((L, C), dtype=np.int64)
        draws = np.full((L, C, keep, k + 1), np.nan)
        fit_counts = np.zeros((L, C, len(FIT_COUNTS)), dtype=np.int64)
        unique = np.unique(alphas[ident])
        if unique.size:
            cm_coef, cm_risk, ok_count, kept, counts = _fit_in_batches(
                power_sums, T, basis, unique, design.noise_sd, keep, solver
            )
            fit_counts[ident] = counts  # every α of a batch takes the same route
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
        out[k] = DegreeResult(coef, risk, n_failed=n_failed, draws=draws, fit_counts=fit_counts)
    return out


# Data sets fitted at once: bounds the per-replication arrays (data sets × α × coefficients
# × 5 quantities) whatever the block size, and keeps the compiled kernel's working set in
# cache. Part of the arithmetic: changing it changes the last bits of the merged moments.
FIT_BATCH = 256


def _fit_in_batches(
    power_sums, T, basis: StandardBasis, alphas: np.ndarray, noise_sd: float, keep: int, solver
):
    """Fit every α to the data sets of a block, FIT_BATCH at a time, and merge the moments
    in order. Returns the co-moments of the coefficient and risk quantities (leading axis
    α), the number of finite fits per α, ŵ of the first ``keep`` data sets (NaN where
    a fit failed), and the data sets by route and refusal (:data:`FIT_COUNTS`).

    Each batch goes through :func:`study.conditional.batch_moments` with ``solver``."""
    cm_coef = cm_risk = None
    ok_count = np.zeros(alphas.size, dtype=np.int64)
    kept = []
    counts = np.zeros(len(FIT_COUNTS), dtype=np.int64)
    for start in range(0, power_sums.shape[0], FIT_BATCH):
        part = slice(start, start + FIT_BATCH)
        n_keep = max(0, min(keep - start, power_sums[part].shape[0]))
        fitted = batch_moments(
            power_sums[part], T[part], basis, alphas, noise_sd, keep=n_keep, solver=solver
        )
        c, r, ok, w_kept = fitted.coef, fitted.risk, fitted.n_ok, fitted.w_kept
        cm_coef = c if cm_coef is None else cm_coef.merge(c)
        cm_risk = r if cm_risk is None else cm_risk.merge(r)
        ok_count += ok
        kept.append(w_kept)
        counts += fitted.counts
    return cm_coef, cm_risk, ok_count, np.concatenate(kept, axis=0), counts
