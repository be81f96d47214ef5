"""The Gaussian line: y = β0 + β1·x + ε with ε ~ N(0, σ²), fitted by polynomial ridge.

A task draws the data sets of each of its chunks once (common random numbers) from the
chunk's stream (:mod:`study.engine.streams`), reduces each to its power sums, and fits
every (degree, λ, scaling, basis) cell to the same data. Per degree and basis there is one
factorisation of the pencil (G, P) per data set, reused for every distinct α
(:mod:`study.conditional`); there is no Python loop over fits.

Per cell and coefficient j the task keeps the co-moments (:mod:`study.moments`) of

    q = (d, d², e, e², v),   d = ŵ_j − w*_j,  e = E[ŵ_j | X] − w*_j,  v = Var[ŵ_j | X],

and per cell those of (R, R², E[R | X]) for the prediction risk R(ŵ) = (ŵ − w*)ᵀΣ(ŵ − w*).
"""

from __future__ import annotations

import numpy as np

from study.basis import StandardBasis
from study.conditional import (
    FIT_COUNTS,
    TAIL_THRESHOLDS,
    batch_moments,
)
from study.design import Design
from study.engine.streams import chunk_power_sums
from study.engine.tasks import DegreeResult, fit_every_cell, kept_in_chunk


def run_chunks(
    design: Design,
    m: int,
    chunks: range,
    *,
    solver: str = "auto",
    noise_draw: str = "sufficient",
) -> dict[int, DegreeResult]:
    """Draw the data sets of each chunk (common to every cell), reduce each to its power
    sums, and fit every (degree, λ, basis, scaling) cell to them through
    :mod:`study.conditional`.
    Each chunk is fitted and summarised on its own (its co-moments are one row of the
    result), so a chunk's numbers never depend on the other chunks of its task; ŵ of each
    chunk's first data set is kept too (``first``: what `study check` audits).
    ``noise_draw``: how the noise enters the sums (:func:`chunk_power_sums`)."""
    K = max(design.degree)
    sums = []
    for c in chunks:
        power_sums, T = chunk_power_sums(design, m, c, K, noise_draw=noise_draw)
        sums.append((power_sums, T, kept_in_chunk(design, m, c, power_sums.shape[0])))

    def fit(result, basis, alphas, cells):
        _fit_cells(result, sums, basis, alphas, cells, design, solver)

    return fit_every_cell(design, m, len(sums), sum(keep for *_, keep in sums), fit)


def _fit_cells(result: DegreeResult, sums, basis: StandardBasis, alphas, cells, design, solver):
    """Fit the cells ``cells`` (a mask of shape (L, C)) of one degree and basis to every
    chunk of ``sums`` and write their numbers into ``result``: one factorisation of the
    pencil per data set serves every distinct α of the cells."""
    unique = np.unique(alphas[cells])
    if not unique.size:
        return
    n_total = sum(ps.shape[0] for ps, _, _ in sums)
    coef, risk = result.coef, result.risk
    # every cell takes the moments of its α
    which = np.searchsorted(unique, alphas[cells])
    ok_total = np.zeros(unique.size, dtype=np.int64)
    kept_all = []
    for i, (power_sums, T, keep) in enumerate(sums):
        cm_coef, cm_risk, ok_count, kept, counts, chunk_tails = _fit_in_batches(
            power_sums, T, basis, unique, design.noise_sd, max(keep, 1), solver
        )
        result.tails[cells] += chunk_tails[which]
        result.first[i][cells] = kept[0, which]
        for arr, src in (
            (coef.n, cm_coef.n),
            (coef.mean, cm_coef.mean),
            (coef.M, cm_coef.M),
            (risk.n, cm_risk.n),
            (risk.mean, cm_risk.mean),
            (risk.M, cm_risk.M),
        ):
            arr[i][cells] = src[which]
        ok_total += ok_count
        kept_all.append(kept[:keep])
        result.fit_counts[cells] += counts  # every α of a batch takes the same route
    result.n_failed[cells] = n_total - ok_total[which]
    kept = np.concatenate(kept_all, axis=0)  # (keep, α, k+1)
    result.draws[cells] = np.moveaxis(kept[:, which], 1, 0)


# Data sets fitted at once: bounds the per-replication arrays (data sets × α × coefficients
# × 5 quantities), and keeps the compiled kernel's working set in cache. A chunk
# (streams.CHUNK_DATA_SETS) is one batch. Part of the arithmetic: changing it below the
# chunk length changes the last bits of the merged moments.
FIT_BATCH = 256


def _fit_in_batches(
    power_sums, T, basis: StandardBasis, alphas: np.ndarray, noise_sd: float, keep: int, solver
):
    """Fit every α to the data sets of a chunk, FIT_BATCH at a time, and merge the moments
    in order. Returns the co-moments of the coefficient and risk quantities (leading axis
    α), the number of finite fits per α, ŵ of the first ``keep`` data sets (NaN where
    a fit failed), the data sets by route and refusal (:data:`FIT_COUNTS`), and the tail
    counts (α, coefficient, threshold; :data:`TAIL_THRESHOLDS`).

    Each batch goes through :func:`study.conditional.batch_moments` with ``solver``."""
    cm_coef = cm_risk = None
    ok_count = np.zeros(alphas.size, dtype=np.int64)
    kept = []
    counts = np.zeros(len(FIT_COUNTS), dtype=np.int64)
    tails = np.zeros((alphas.size, basis.degree + 1, len(TAIL_THRESHOLDS)), dtype=np.int64)
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
        tails += fitted.tails
    return cm_coef, cm_risk, ok_count, np.concatenate(kept, axis=0), counts, tails
