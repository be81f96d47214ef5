"""The data-generating process: the noisy line y = β0 + β1·x + ε (docs/model.md).

The replications of each m are cut into **chunks** of ``chunk_length(m)`` data sets, a
length fixed by m alone (256, halved until a chunk holds at most 2²² points), and chunk c
of m owns the random stream ``SeedSequence(seed, spawn_key=(m, c))``. Streams are keyed by
the value of m rather than its position, and a chunk is the smallest unit of work: the
numbers do not depend on how chunks are grouped into tasks (``block_size``, the number of
jobs, the backend, the completion order) nor on which other m the design lists. The
stream's two children draw x and the noise ε, each sequentially, so the sub-division of a
chunk for memory (:class:`Piece`) never changes a number either.

The data are never materialised as a whole: a chunk is drawn piece by piece and reduced at
once to the power sums S_p = Σu^p (p ≤ 2K) and T_p = Σu^p·y (p ≤ K) of each data set, in
the standardised variable u = (x − center)/scale, uniform on [−1, 1] or standard normal.
The noise is not drawn point by point once a data set has more points than coefficients:
given the points, Φᵀε ~ N(0, G) exactly, so such a data set takes K + 1 normals from the
noise stream; one of at most K + 1 points takes its m values (:func:`chunk_power_sums`).
The x power sums of each m's first KEPT_DATA_SETS data sets that a process drew are kept,
for the theory's tuning, which averages over those designs.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from study.basis import hankel_index
from study.design import Design, XDistribution
from study.fit import power_sums

# A chunk: at most this many data sets, and at most CHUNK_POINTS points (for m > 2¹⁴ the
# length halves until it fits; one data set for m > 2²¹). Part of the stream layout:
# changing either changes every number (and needs a new engine version).
CHUNK_DATA_SETS = 256
CHUNK_POINTS = 1 << 22
# Elements per piece of (data sets × points): three float arrays of this size stay in cache.
PIECE_ELEMENTS = 1 << 16
# Points drawn at once within one data set: bounds memory for any m (8 MiB per array).
MAX_PIECE = 1 << 20
# The x power sums of the first KEPT_DATA_SETS data sets of each m that this process drew
# are kept (the theory's tuning averages over the simulation's own first designs,
# study.results.TUNING_DESIGNS of them; a test checks that the two agree), at most
# KEPT_BYTES of them, so that the tuning need not draw them again.
KEPT_DATA_SETS = 400
KEPT_BYTES = 32 << 20


def chunk_length(m: int) -> int:
    """Data sets per chunk for data sets of m points: CHUNK_DATA_SETS, halved while the
    chunk would hold more than CHUNK_POINTS points (at least 1)."""
    n = CHUNK_DATA_SETS
    while n > 1 and n * m > CHUNK_POINTS:
        n //= 2
    return n


def n_chunks(replications: int, m: int) -> int:
    """Chunks of the replications of m (the last one may be shorter)."""
    return -(-replications // chunk_length(m))


def chunk_span(replications: int, m: int, chunk: int) -> tuple[int, int]:
    """Replications [start, stop) of chunk ``chunk`` of m."""
    length = chunk_length(m)
    start = chunk * length
    return start, min(start + length, replications)


def chunk_streams(
    seed: int, m: int, chunk: int
) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent generators for x and for the noise of chunk ``chunk`` of m."""
    root = np.random.SeedSequence(seed, spawn_key=(m, chunk))
    x_seq, noise_seq = root.spawn(2)
    return np.random.Generator(np.random.PCG64(x_seq)), np.random.Generator(
        np.random.PCG64(noise_seq)
    )


def draw_u(rng: np.random.Generator, x: XDistribution, size) -> np.ndarray:
    """Draw the standardised inputs u = (x − center)/scale."""
    if x.distribution == "uniform":
        # the numbers of rng.uniform(-1.0, 1.0, size), bit for bit (−1 + 2r with 2r exact),
        # in two thirds of its time
        u = rng.random(size)
        u *= 2.0
        u -= 1.0
        return u
    return rng.standard_normal(size)


def piece_rows(m: int) -> int:
    """Data sets per piece for data sets of m points."""
    return max(1, PIECE_ELEMENTS // m)


class Piece(NamedTuple):
    """A part of a chunk's random numbers, in drawing order (see :func:`chunk_pieces`)."""

    rows: slice  # the chunk's data sets it belongs to
    offset: int  # index of its first point within those data sets (0 unless in pieces)
    u: np.ndarray  # standardised inputs, shape (rows, width)
    eps: np.ndarray | None  # standard normal noise, same shape; None without noise


def chunk_size(design: Design, m: int, chunk: int) -> int:
    """Data sets in chunk ``chunk`` of m (the last chunk may be shorter)."""
    start, stop = chunk_span(design.replications_of(m), m, chunk)
    return stop - start


def chunk_pieces(
    design: Design, m: int, chunk: int, *, first: int | None = None, noise: bool = True
) -> Iterator[Piece]:
    """Draw the data sets of one chunk piece by piece: the one drawing loop of the package.

    The pieces hold ``piece_rows(m)`` whole data sets of m points (width m), except for data
    sets of more than MAX_PIECE points, which come one at a time in pieces of at most
    MAX_PIECE points (offset > 0 after the first piece). The x stream and the noise stream
    are each drawn in order, so the numbers do not depend on the pieces.

    Parameters
    ----------
    design : Design
    m : int
        Points per data set.
    chunk : int
        Chunk index; the chunk holds ``chunk_size(design, m, chunk)`` data sets.
    first : int, optional
        Only the chunk's first ``first`` data sets (the same numbers as in the whole chunk).
    noise : bool, default True
        With False only the x stream is drawn and ``eps`` is None.
    """
    n = chunk_size(design, m, chunk)
    if first is not None:
        n = min(n, first)
    rng_x, rng_noise = chunk_streams(design.seed, m, chunk)
    rows = piece_rows(m)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        if m <= MAX_PIECE:
            u = draw_u(rng_x, design.x, (stop - start, m))
            eps = rng_noise.standard_normal((stop - start, m)) if noise else None
            yield Piece(slice(start, stop), 0, u, eps)
            continue
        # a data set larger than MAX_PIECE points: drawn piece by piece (the streams are
        # sequential, so the numbers are the same)
        for row in range(start, stop):
            for done in range(0, m, MAX_PIECE):
                width = min(MAX_PIECE, m - done)
                u = draw_u(rng_x, design.x, (1, width))
                eps = rng_noise.standard_normal((1, width)) if noise else None
                yield Piece(slice(row, row + 1), done, u, eps)


# How the noise enters Σu^p·y: "sufficient" draws Φᵀε ~ N(0, σ²G) exactly, K + 1 normals
# per data set of more than K + 1 points (the m values of ε for one of at most K + 1);
# "plain" draws the m values of ε (the reference the tests compare with).
NOISE_DRAWS = ("sufficient", "plain")


def chunk_power_sums(
    design: Design,
    m: int,
    chunk: int,
    max_degree: int,
    *,
    first: int | None = None,
    noise: bool = True,
    noise_draw: str = "sufficient",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Draw the data sets of one chunk and reduce each to its power sums.

    The responses enter only through Φᵀy = Φᵀ(Φw*) + σΦᵀε, and given the design points
    Φᵀε is exactly N(0, G) with G = ΦᵀΦ the Gram matrix of degree K. So with the default
    ``noise_draw="sufficient"`` a data set of more than K + 1 points draws K + 1 standard
    normals z and sets Φᵀε = L·z, L the Cholesky factor of G (:func:`sufficient_noise`):
    exact in distribution, with fewer normals than points. A data set of at most K + 1
    points draws its m noise values, as ``"plain"`` does (as few normals, and no
    factorisation of a G that is singular for m ≤ K). The x stream, hence every
    conditional moment, is the same with either draw.

    Parameters
    ----------
    design : Design
    m : int
        Points per data set.
    chunk : int
        Chunk index; the chunk holds ``chunk_size(design, m, chunk)`` data sets.
    max_degree : int
        K, the largest degree fitted.
    first : int, optional
        Only the chunk's first ``first`` data sets: the same numbers as theirs in the whole
        chunk, since both streams are drawn in order.
    noise : bool, default True
        With False, only S, from the x stream: the designs without their responses (the
        noise is not drawn) and T is None. Those of the first KEPT_DATA_SETS data sets
        of m come from the sums this process kept when it drew them (the same numbers).
    noise_draw : {"sufficient", "plain"}

    Returns
    -------
    S : ndarray of shape (n, 2K + 1)
        Σ u^p per data set.
    T : ndarray of shape (n, K + 1), or None
        Σ u^p·y per data set.
    """
    n = chunk_size(design, m, chunk)
    if first is not None:
        n = min(n, first)
    if noise_draw not in NOISE_DRAWS:
        raise ValueError(
            f"The 'noise_draw' parameter must be one of {NOISE_DRAWS}. Got {noise_draw!r}."
        )
    K = max_degree
    if not noise:
        kept = _kept_sums(design, m, chunk, n, K)
        if kept is not None:
            return kept, None
    # at most K + 1 points: their own m values are no more normals than K + 1
    plain = noise and (noise_draw == "plain" or m <= K + 1)
    sums = np.empty((n, 2 * K + 1))  # S: Σ u^p
    E = np.empty((n, K + 1)) if plain else None  # Σ u^p·ε
    from study.engine import kernel

    compiled_power_sums = kernel.loaded().power_sums
    for piece in chunk_pieces(design, m, chunk, first=first, noise=plain):
        s_part = np.empty((piece.u.shape[0], 2 * K + 1))
        compiled_power_sums(piece.u, 2 * K, s_part)
        e_part = power_sums(piece.u, piece.eps, K)[1] if plain else None
        if piece.u.shape[1] == m:  # whole data sets
            sums[piece.rows] = s_part
            if plain:
                E[piece.rows] = e_part
            continue
        # a part of a data set: add up the parts' sums
        if piece.offset == 0:
            sums[piece.rows] = 0.0
            if plain:
                E[piece.rows] = 0.0
        sums[piece.rows] += s_part
        if plain:
            E[piece.rows] += e_part
    _keep_sums(design, m, chunk, sums)
    if not noise:
        return sums, None
    if not plain:  # the noise stream, from its start: K + 1 normals per data set, in order
        rng_noise = chunk_streams(design.seed, m, chunk)[1]
        E = sufficient_noise(sums[:, hankel_index(K)], rng_noise.standard_normal((n, K + 1)))
    # y = v*₀ + v*₁·u + σε (the true line in u), so Σu^p·y follows from S and E.
    v_star = design.true_coefficients_of(1, standardised=True)
    T = v_star[0] * sums[:, : K + 1] + v_star[1] * sums[:, 1 : K + 2] + design.noise_sd * E
    return sums, T


# chunk_power_sums's kept x power sums: (seed, x, m, chunk) → S of the chunk's first rows
_KEPT: OrderedDict[tuple, np.ndarray] = OrderedDict()
_KEPT_LOCK = threading.Lock()  # tasks and theory pieces may run in threads of one process


def _keep_sums(design: Design, m: int, chunk: int, sums: np.ndarray) -> None:
    """Keep the x power sums of the chunk's data sets among the first KEPT_DATA_SETS of
    m, unless as many rows and columns are kept already; the least recently kept go
    beyond KEPT_BYTES."""
    start = chunk_span(design.replications_of(m), m, chunk)[0]
    rows = min(sums.shape[0], KEPT_DATA_SETS - start)
    if rows <= 0:
        return
    key = (design.seed, design.x, m, chunk)
    with _KEPT_LOCK:
        have = _KEPT.get(key)
        if have is not None and have.shape[0] >= rows and have.shape[1] >= sums.shape[1]:
            return
        _KEPT[key] = sums[:rows].copy()
        _KEPT.move_to_end(key)
        total = sum(a.nbytes for a in _KEPT.values())
        while total > KEPT_BYTES:
            total -= _KEPT.popitem(last=False)[1].nbytes


def _kept_sums(design: Design, m: int, chunk: int, n: int, K: int) -> np.ndarray | None:
    """The x power sums Σu^p (p ≤ 2K) of the chunk's first n data sets, if kept (a copy):
    the same numbers as drawing them again (each row's sums depend on its data set alone,
    and a power sum on no other power), else None."""
    with _KEPT_LOCK:
        have = _KEPT.get((design.seed, design.x, m, chunk))
    if have is None or have.shape[0] < n or have.shape[1] < 2 * K + 1:
        return None
    return have[:n, : 2 * K + 1].copy()


# A Gram matrix whose Cholesky factor has a pivot (L_jj²) below this fraction of G's largest
# diagonal entry takes the factor of its eigendecomposition instead. Such a G is within a
# few orders of rounding of singular, and two computations of it that differ in their last
# bits (the engine's power sums, the audit's ΦᵀΦ) could otherwise fall on either side of
# Cholesky's own failure and get different factors; this threshold sits five orders of
# magnitude above that rounding. 2.5 % of the data sets of m = 10, degree 7 (x uniform).
CHOLESKY_PIVOT_FLOOR = 1e-10


def sufficient_noise(G: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Φᵀε for a stack of positive definite Gram matrices G (n, p, p) from standard normals
    z (n, p): L·z with G = LLᵀ the Cholesky factorisation, so that Φᵀε ~ N(0, G) exactly
    (up to rounding: LLᵀ is G within a few units of rounding of its largest entries).

    A G whose factorisation fails, or has a pivot below CHOLESKY_PIVOT_FLOOR times its
    largest diagonal entry (nearly singular: points almost coinciding, or only a few more
    than p), takes the factor V·diag(√λ) of its eigendecomposition instead, eigenvalues
    below p·ε·λ_max as 0, so that no rounding-level noise goes outside the range of G. The
    engine draws a data set of at most p points plainly, so no singular G comes here. Each
    G's factor depends on that G alone."""
    try:
        L = np.linalg.cholesky(G)
    except np.linalg.LinAlgError:  # some G without a factor: one matrix at a time
        L = np.zeros_like(G)
        for i, g in enumerate(G):
            with contextlib.suppress(np.linalg.LinAlgError):
                L[i] = np.linalg.cholesky(g)
    pivots = np.diagonal(L, axis1=-2, axis2=-1) ** 2
    largest = np.diagonal(G, axis1=-2, axis2=-1).max(axis=-1)
    for i in np.flatnonzero(~(pivots.min(axis=-1) >= CHOLESKY_PIVOT_FLOOR * largest)):
        L[i] = _eigen_factor(G[i])
    return np.einsum("nij,nj->ni", L, z)


def _eigen_factor(G: np.ndarray) -> np.ndarray:
    """R = V·diag(√λ) with G = V·diag(λ)·Vᵀ = RRᵀ, rounding-level λ (below p·ε·λ_max) as 0."""
    lam, V = np.linalg.eigh(G)
    floor = G.shape[-1] * np.finfo(float).eps * lam[-1]
    return V * np.sqrt(np.where(lam > floor, lam, 0.0))


def draw_chunk_data(design: Design, m: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """The raw data sets (x, y) of one chunk, each of shape (n, m), from the same streams
    with the plain noise draw (what ``noise_draw="plain"`` reduces to power sums).

    For tests and small examples only: the engine never holds a chunk's data in memory.
    """
    n = chunk_size(design, m, chunk)
    u = np.empty((n, m))
    eps = np.empty((n, m))
    for piece in chunk_pieces(design, m, chunk):
        width = piece.u.shape[1]
        u[piece.rows, piece.offset : piece.offset + width] = piece.u
        eps[piece.rows, piece.offset : piece.offset + width] = piece.eps
    x = design.x.center + design.x.scale * u
    y = design.intercept + design.slope * x + design.noise_sd * eps
    return x, y
