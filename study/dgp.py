"""The data-generating process: the noisy line y = β0 + β1·x + ε (docs/model.md).

Each task (m, block) owns the random stream ``SeedSequence(seed, spawn_key=(m, block))``,
keyed by the value of m rather than its position, so results do not depend on the number
of jobs, the backend, the completion order, or on which other m the design lists. The
stream's two children draw x and the noise ε, so both are drawn sequentially whatever
the chunk size: the chunking is a memory choice that never changes a number.

The data are never materialised as a whole: a block is drawn chunk by chunk and reduced
at once to the power sums S_p = Σu^p (p ≤ 2K) and T_p = Σu^p·y (p ≤ K) of each data set,
in the standardised variable u = (x − center)/scale, uniform on [−1, 1] or standard normal.
"""

from __future__ import annotations

import numpy as np

from .design import Design, XDistribution
from .fit import power_sums

# Elements per chunk of (data sets × points): three float arrays of this size stay in cache.
CHUNK_ELEMENTS = 1 << 16
# Points drawn at once within one data set: bounds memory for any m (8 MiB per array).
MAX_PIECE = 1 << 20


def block_streams(
    seed: int, m: int, block: int
) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent generators for x and for the noise of task (m, block)."""
    root = np.random.SeedSequence(seed, spawn_key=(m, block))
    x_seq, noise_seq = root.spawn(2)
    return np.random.Generator(np.random.PCG64(x_seq)), np.random.Generator(
        np.random.PCG64(noise_seq)
    )


def draw_u(rng: np.random.Generator, x: XDistribution, size) -> np.ndarray:
    """Draw the standardised inputs u = (x − center)/scale."""
    if x.distribution == "uniform":
        return rng.uniform(-1.0, 1.0, size)
    return rng.standard_normal(size)


def standardised_moments(x: XDistribution, n_max: int) -> np.ndarray:
    """E[u^n] for n = 0, …, n_max: 1/(n + 1) or (n − 1)!! for even n, 0 for odd n."""
    mu = np.zeros(n_max + 1)
    for n in range(0, n_max + 1, 2):
        if x.distribution == "uniform":
            mu[n] = 1.0 / (n + 1)
        else:
            mu[n] = float(np.prod(np.arange(n - 1, 0, -2))) if n else 1.0
    return mu


def true_coefficients_u(design: Design, degree: int) -> np.ndarray:
    """v* with φ(u)ᵀv* = β0 + β1·x: (β0 + β1·center, β1·scale, 0, …, 0)."""
    v = np.zeros(degree + 1)
    v[0] = design.intercept + design.slope * design.x.center
    v[1] = design.slope * design.x.scale
    return v


def chunk_rows(m: int) -> int:
    """Data sets per chunk for data sets of m points."""
    return max(1, CHUNK_ELEMENTS // m)


def block_power_sums(
    design: Design, m: int, block: int, max_degree: int, *, first: int | None = None,
    noise: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    """Draw the data sets of one block and reduce each to its power sums.

    Parameters
    ----------
    design : Design
    m : int
        Points per data set.
    block : int
        Block index; the block holds ``design.block_length(block)`` data sets.
    max_degree : int
        K, the largest degree fitted.
    first : int, optional
        Only the block's first ``first`` data sets: the same numbers as theirs in the whole
        block, since both streams are drawn in order.
    noise : bool, default True
        With False, only S, from the x stream: the designs without their responses (the
        noise is not drawn) and T is None.

    Returns
    -------
    S : ndarray of shape (n, 2K + 1)
        Σ u^p per data set.
    T : ndarray of shape (n, K + 1), or None
        Σ u^p·y per data set.
    """
    n = design.block_length(block)
    if first is not None:
        n = min(n, first)
    rng_x, rng_noise = block_streams(design.seed, m, block)
    K = max_degree
    S = np.empty((n, 2 * K + 1))
    E = np.empty((n, K + 1)) if noise else None  # Σ u^p·ε
    rows = chunk_rows(m)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        if m <= MAX_PIECE:
            u = draw_u(rng_x, design.x, (stop - start, m))
            eps = rng_noise.standard_normal((stop - start, m)) if noise else None
            S[start:stop], e_sums = power_sums(u, eps, K)
            if noise:
                E[start:stop] = e_sums
            continue
        # a data set larger than MAX_PIECE points: draw it piece by piece (the streams are
        # sequential, so the numbers are the same) and add up the pieces' sums
        for row in range(start, stop):
            S[row] = 0.0
            if noise:
                E[row] = 0.0
            for done in range(0, m, MAX_PIECE):
                width = min(MAX_PIECE, m - done)
                u = draw_u(rng_x, design.x, (1, width))
                eps = rng_noise.standard_normal((1, width)) if noise else None
                s_part, e_part = power_sums(u, eps, K)
                S[row] += s_part[0]
                if noise:
                    E[row] += e_part[0]
    if not noise:
        return S, None
    # y = β0 + β1·x + σε with x = center + scale·u, so Σu^p·y follows from S and E.
    shift = design.intercept + design.slope * design.x.center
    T = (
        shift * S[:, : K + 1]
        + design.slope * design.x.scale * S[:, 1 : K + 2]
        + design.noise_sd * E
    )
    return S, T


def draw_block_data(design: Design, m: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """The raw data sets (x, y) of one block, each of shape (n, m), from the same streams.

    For tests and small examples only: the engine never holds a block's data in memory.
    """
    n = design.block_length(block)
    rng_x, rng_noise = block_streams(design.seed, m, block)
    u = np.empty((n, m))
    eps = np.empty((n, m))
    rows = chunk_rows(m)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        u[start:stop] = draw_u(rng_x, design.x, (stop - start, m))
        eps[start:stop] = rng_noise.standard_normal((stop - start, m))
    x = design.x.center + design.x.scale * u
    y = design.intercept + design.slope * x + design.noise_sd * eps
    return x, y
