"""The data-generating process: the noisy line y = β0 + β1·x + ε (docs/model.md).

Each task (m, block) owns the random stream ``SeedSequence(seed, spawn_key=(m, block))``,
keyed by the value of m rather than its position, so results do not depend on the number
of jobs, the backend, the completion order, or on which other m the design lists. The
stream's two children draw x and the noise ε, so both are drawn sequentially whatever
the chunk size: the chunking is a memory choice that never changes a number.

The data are never materialised as a whole: a block is drawn chunk by chunk and reduced
at once to the power sums S_p = Σu^p (p ≤ 2K) and T_p = Σu^p·y (p ≤ K) of each data set,
in the standardised variable u = (x − center)/scale, uniform on [−1, 1] or standard normal.
The noise is not drawn point by point: given the points, Φᵀε ~ N(0, G) exactly, so each
data set takes K + 1 normals from the noise stream (:func:`block_power_sums`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from study.basis import hankel_index
from study.design import Design, XDistribution
from study.fit import power_sums

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


def chunk_rows(m: int) -> int:
    """Data sets per chunk for data sets of m points."""
    return max(1, CHUNK_ELEMENTS // m)


class Chunk(NamedTuple):
    """A part of a block's random numbers, in drawing order (see :func:`block_chunks`)."""

    rows: slice  # the block's data sets it belongs to
    offset: int  # index of its first point within those data sets (0 unless in pieces)
    u: np.ndarray  # standardised inputs, shape (rows, width)
    eps: np.ndarray | None  # standard normal noise, same shape; None without noise


def block_chunks(
    design: Design, m: int, block: int, *, first: int | None = None, noise: bool = True
) -> Iterator[Chunk]:
    """Draw the data sets of one block chunk by chunk: the one drawing loop of the package.

    The chunks hold ``chunk_rows(m)`` whole data sets of m points (width m), except for data
    sets of more than MAX_PIECE points, which come one at a time in pieces of at most
    MAX_PIECE points (offset > 0 after the first piece). The x stream and the noise stream
    are each drawn in order, so the numbers do not depend on the chunking.

    Parameters
    ----------
    design : Design
    m : int
        Points per data set.
    block : int
        Block index; the block holds ``design.block_length(block)`` data sets.
    first : int, optional
        Only the block's first ``first`` data sets (the same numbers as in the whole block).
    noise : bool, default True
        With False only the x stream is drawn and ``eps`` is None.
    """
    n = design.block_length(block)
    if first is not None:
        n = min(n, first)
    rng_x, rng_noise = block_streams(design.seed, m, block)
    rows = chunk_rows(m)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        if m <= MAX_PIECE:
            u = draw_u(rng_x, design.x, (stop - start, m))
            eps = rng_noise.standard_normal((stop - start, m)) if noise else None
            yield Chunk(slice(start, stop), 0, u, eps)
            continue
        # a data set larger than MAX_PIECE points: drawn piece by piece (the streams are
        # sequential, so the numbers are the same)
        for row in range(start, stop):
            for done in range(0, m, MAX_PIECE):
                width = min(MAX_PIECE, m - done)
                u = draw_u(rng_x, design.x, (1, width))
                eps = rng_noise.standard_normal((1, width)) if noise else None
                yield Chunk(slice(row, row + 1), done, u, eps)


# How the noise enters Σu^p·y: "sufficient" draws Φᵀε ~ N(0, σ²G) exactly, K + 1 normals
# per data set; "plain" draws the m values of ε (the reference the tests compare with).
NOISE_DRAWS = ("sufficient", "plain")


def block_power_sums(
    design: Design,
    m: int,
    block: int,
    max_degree: int,
    *,
    first: int | None = None,
    noise: bool = True,
    noise_draw: str = "sufficient",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Draw the data sets of one block and reduce each to its power sums.

    The responses enter only through Φᵀy = Φᵀ(Φw*) + σΦᵀε, and given the design points
    Φᵀε is exactly N(0, G) with G = ΦᵀΦ the Gram matrix of degree K. So the default
    ``noise_draw="sufficient"`` draws K + 1 standard normals z per data set and sets
    Φᵀε = V·diag(√λ)·z from the eigendecomposition G = V·diag(λ)·Vᵀ (rounding-level λ as 0):
    exact in distribution, also where G is singular (m ≤ K), and the x stream, hence every
    conditional moment, is the same as with ``"plain"``, which draws the m noise values.

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
    noise_draw : {"sufficient", "plain"}

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
    if noise_draw not in NOISE_DRAWS:
        raise ValueError(
            f"The 'noise_draw' parameter must be one of {NOISE_DRAWS}. Got {noise_draw!r}."
        )
    K = max_degree
    plain = noise and noise_draw == "plain"
    sums = np.empty((n, 2 * K + 1))  # S: Σ u^p
    E = np.empty((n, K + 1)) if plain else None  # Σ u^p·ε
    for chunk in block_chunks(design, m, block, first=first, noise=plain):
        s_part, e_part = power_sums(chunk.u, chunk.eps, K)
        if chunk.u.shape[1] == m:  # whole data sets
            sums[chunk.rows] = s_part
            if plain:
                E[chunk.rows] = e_part
            continue
        # a piece of a data set: add up the pieces' sums
        if chunk.offset == 0:
            sums[chunk.rows] = 0.0
            if plain:
                E[chunk.rows] = 0.0
        sums[chunk.rows] += s_part
        if plain:
            E[chunk.rows] += e_part
    if not noise:
        return sums, None
    if not plain:  # the noise stream, from its start: K + 1 normals per data set, in order
        rng_noise = block_streams(design.seed, m, block)[1]
        E = sufficient_noise(sums[:, hankel_index(K)], rng_noise.standard_normal((n, K + 1)))
    # y = v*₀ + v*₁·u + σε (the true line in u), so Σu^p·y follows from S and E.
    v_star = design.true_coefficients_of(1, standardised=True)
    T = v_star[0] * sums[:, : K + 1] + v_star[1] * sums[:, 1 : K + 2] + design.noise_sd * E
    return sums, T


def sufficient_noise(G: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Φᵀε for a stack of Gram matrices G (n, p, p) from standard normals z (n, p): the
    factor R = V·diag(√λ) of G = V·diag(λ)·Vᵀ = RRᵀ applied to z, so that Φᵀε ~ N(0, G)
    exactly.

    Eigenvalues at rounding level (below p·ε·λ_max, where eigh cannot tell them from 0)
    count as 0: a singular G (m < p) then puts no noise outside its range, as Φᵀε cannot
    (else √(rounding) would leak some 1e-8 of the noise there)."""
    lam, V = np.linalg.eigh(G)
    floor = G.shape[-1] * np.finfo(float).eps * lam[:, -1:]
    return np.einsum("nij,nj->ni", V, np.sqrt(np.where(lam > floor, lam, 0.0)) * z)


def draw_block_data(design: Design, m: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """The raw data sets (x, y) of one block, each of shape (n, m), from the same streams
    with the plain noise draw (what ``noise_draw="plain"`` reduces to power sums).

    For tests and small examples only: the engine never holds a block's data in memory.
    """
    n = design.block_length(block)
    u = np.empty((n, m))
    eps = np.empty((n, m))
    for chunk in block_chunks(design, m, block):
        width = chunk.u.shape[1]
        u[chunk.rows, chunk.offset : chunk.offset + width] = chunk.u
        eps[chunk.rows, chunk.offset : chunk.offset + width] = chunk.eps
    x = design.x.center + design.x.scale * u
    y = design.intercept + design.slope * x + design.noise_sd * eps
    return x, y
