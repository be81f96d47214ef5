"""A task of the engine: (design, m, chunks first…stop−1) → a typed :class:`TaskResult`,
and merges.

What a task computes is up to the design's model family (:mod:`study.models`); this
module fixes what every family returns (co-moments per chunk and cell, failures, kept
draws, the byte layout of a checkpoint), the α and identifiability grids of the cells, and
how the chunks of one m merge: one by one in chunk order (:class:`ChunkMerger`), so that
the merged numbers depend on the chunks alone, never on how they were grouped into tasks.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from threadpoolctl import ThreadpoolController

from study.conditional import COEF_QUANTITIES, FIT_COUNTS, RISK_QUANTITIES, TAIL_THRESHOLDS
from study.design import Design
from study.engine.streams import chunk_span
from study.models import model_of
from study.moments import CoMoments
from study.scaling import alpha as scaling_alpha

# --- a task ------------------------------------------------------------------------------


class Task(NamedTuple):
    """Chunks ``first`` … ``stop − 1`` of the replications of m (:mod:`study.engine.streams`)."""

    m: int
    first: int
    stop: int

    @property
    def n_chunks(self) -> int:
        return self.stop - self.first

    @property
    def name(self) -> str:
        """The checkpoint's file name without its suffix, e.g. ``m100-c0-4``."""
        return f"m{self.m}-c{self.first}-{self.stop}"

    def describe(self) -> str:
        """For messages: ``m = 100, chunks 0–3``."""
        last = self.stop - 1
        return f"m = {self.m}, chunk{'s' if last > self.first else ''} " + (
            f"{self.first}–{last}" if last > self.first else f"{self.first}"
        )


# --- the result of a task ----------------------------------------------------------------
# The arrays of a checkpoint are named k{degree}_{group}_{n,mean,M} for the co-moment groups
# below, k{degree}_n_failed, k{degree}_draws and seconds: the byte format of
# study.engine.store and the size model of study.engine.costs follow from this one place.
_GROUPS = {"coef": len(COEF_QUANTITIES), "risk": len(RISK_QUANTITIES)}
_F8, _I8 = np.dtype(np.float64).str, np.dtype(np.int64).str


@dataclass
class DegreeResult:
    """One degree k of a task of c chunks (or of merged tasks, without the chunk axis), with
    L λ values and C columns, the (basis, scaling) pairs of :attr:`Design.columns`.

    Attributes
    ----------
    coef : CoMoments of shape (c, L, C, k+1), of (d, d², e, e², v), one per chunk
    risk : CoMoments of shape (c, L, C), of (R, R², E[R|X]), one per chunk
    n_failed : ndarray (L, C) int64, data sets whose fit was not finite
    draws : ndarray (L, C, keep, k+1), ŵ of the replications numbered below keep_draws
    fit_counts : ndarray (L, C, len(FIT_COUNTS)) int64, data sets by how they were fitted
        and why the compiled kernel declined (:data:`study.conditional.FIT_COUNTS`)
    first : ndarray (c, L, C, k+1), ŵ of each chunk's first data set (NaN where not
        fitted): the fingerprint `study check` recomputes from the seeds
    tails : ndarray (L, C, k+1, len(TAIL_THRESHOLDS)) int64, finite fits whose
        |ŵ_j − w*_j| exceeds each threshold (whole integers: their sum does not depend on
        how the chunks were grouped)
    """

    coef: CoMoments
    risk: CoMoments
    n_failed: np.ndarray
    draws: np.ndarray
    fit_counts: np.ndarray
    first: np.ndarray
    tails: np.ndarray

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays of a checkpoint. Each co-moment matrix M goes in as its lower triangle
        (``{group}_Mtri``, row by row: a third fewer bytes to write, hash and read back)
        where M is symmetric bit for bit, as the engine's are, and whole (``{group}_M``)
        otherwise, so that the round trip is exact either way."""
        out = {}
        for group in _GROUPS:
            cm = getattr(self, group)
            out.update({f"{group}_n": cm.n, f"{group}_mean": cm.mean})
            bits = np.asarray(cm.M, dtype=np.float64).view(np.uint64)  # +0 ≠ −0, NaN by payload
            if np.array_equal(bits, np.swapaxes(bits, -1, -2)):
                out[f"{group}_Mtri"] = cm.M[(..., *np.tril_indices(cm.M.shape[-1]))]
            else:
                out[f"{group}_M"] = cm.M
        return out | {
            "n_failed": self.n_failed,
            "draws": self.draws,
            "fit_counts": self.fit_counts,
            "first": self.first,
            "tails": self.tails,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> DegreeResult:
        groups = {
            g: CoMoments(arrays[f"{g}_n"], arrays[f"{g}_mean"], _matrix(arrays, g))
            for g in _GROUPS
        }
        return cls(
            **groups,
            n_failed=arrays["n_failed"],
            draws=arrays["draws"],
            fit_counts=arrays["fit_counts"],
            first=arrays["first"],
            tails=arrays["tails"],
        )

    @classmethod
    def empty(cls, L: int, C: int, degree: int, keep: int, chunks: int) -> DegreeResult:
        """Nothing fitted yet, for ``chunks`` chunks: co-moments and counts 0, kept draws and
        first estimates NaN (a family fills in the cells it fits)."""
        p = degree + 1
        return cls(
            coef=CoMoments.empty((chunks, L, C, p), len(COEF_QUANTITIES)),
            risk=CoMoments.empty((chunks, L, C), len(RISK_QUANTITIES)),
            n_failed=np.zeros((L, C), dtype=np.int64),
            draws=np.full((L, C, keep, p), np.nan),
            fit_counts=np.zeros((L, C, len(FIT_COUNTS)), dtype=np.int64),
            first=np.full((chunks, L, C, p), np.nan),
            tails=np.zeros((L, C, p, len(TAIL_THRESHOLDS)), dtype=np.int64),
        )

    @staticmethod
    def array_shapes(L: int, C: int, degree: int, keep: int, chunks: int) -> dict[str, tuple]:
        """Shape and dtype string of every array of :meth:`to_arrays`."""
        base = {"coef": (chunks, L, C, degree + 1), "risk": (chunks, L, C)}
        out = {}
        for group, q in _GROUPS.items():
            b = base[group]
            out |= {f"{group}_n": b, f"{group}_mean": (*b, q)}
            out[f"{group}_Mtri"] = (*b, q * (q + 1) // 2)  # symmetric M, as the engine's are
        out = {name: (shape, _F8) for name, shape in out.items()}
        return out | {
            "n_failed": ((L, C), _I8),
            "draws": ((L, C, keep, degree + 1), _F8),
            "fit_counts": ((L, C, len(FIT_COUNTS)), _I8),
            "first": ((chunks, L, C, degree + 1), _F8),
            "tails": ((L, C, degree + 1, len(TAIL_THRESHOLDS)), _I8),
        }


def _matrix(arrays: dict[str, np.ndarray], group: str) -> np.ndarray:
    """The co-moment matrix M of ``group``: whole, or rebuilt from its lower triangle."""
    if f"{group}_M" in arrays:
        return arrays[f"{group}_M"]
    tri = arrays[f"{group}_Mtri"]
    q = (math.isqrt(8 * tri.shape[-1] + 1) - 1) // 2
    if q * (q + 1) // 2 != tri.shape[-1]:
        raise ValueError(f"{group}_Mtri: {tri.shape[-1]} values are no triangle")
    M = np.empty((*tri.shape[:-1], q, q))
    lower = np.tril_indices(q)
    M[(..., *lower)] = tri
    M[..., lower[1], lower[0]] = tri
    return M


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
    def array_shapes(
        design: Design, keep: int, *, chunks: int = 1, n_lambda: int | None = None
    ) -> dict:
        """Shape and dtype string of every array of :meth:`to_arrays` for a task of
        ``design`` of ``chunks`` chunks keeping ``keep`` draws (``n_lambda`` λ values if
        given)."""
        L = len(design.lam) if n_lambda is None else n_lambda
        C = len(design.columns)
        out = {}
        for k in design.degree:
            shapes = DegreeResult.array_shapes(L, C, k, keep, chunks)
            out.update({f"k{k}_{name}": v for name, v in shapes.items()})
        return out | {"seconds": ((), _F8)}


def alpha_grid(design: Design, m: int, degree: int) -> np.ndarray:
    """α = m·c(λ) of every (λ, column) cell, shape (n_lambda, n_columns): the columns are
    the (basis, scaling) pairs of :attr:`Design.columns`, and α depends on the scaling."""
    return np.array(
        [
            [scaling_alpha(lam, m=m, degree=degree, scaling=s) for _, s in design.columns]
            for lam in design.lam
        ]
    )


def identifiable_grid(design: Design, m: int, degree: int) -> np.ndarray:
    """Boolean (n_lambda, n_columns): False where λ = 0 and m ≤ degree."""
    ok = np.array([design.identifiable(m, degree, lam) for lam in design.lam])
    return np.repeat(ok[:, None], len(design.columns), axis=1)


def kept_in_chunk(design: Design, m: int, chunk: int, n: int) -> int:
    """How many of the ``n`` data sets of chunk ``chunk`` of m keep their estimates in
    draws.npz: those numbered below ``keep_draws``."""
    start = chunk_span(design.replications_of(m), m, chunk)[0]
    return int(np.clip(design.keep_draws - start, 0, n))


def fit_every_cell(design: Design, m: int, n_chunks: int, keep: int, fit) -> dict:
    """The cell loop every model family shares: per degree, an empty
    :class:`DegreeResult` of ``n_chunks`` chunks keeping ``keep`` draws, and per basis (its
    own problem, another penalty in u, on the same data sets) ``fit(result, basis, alphas,
    cells)`` for the identifiable cells of that basis (a mask of shape (L, C)) with their
    α (:func:`alpha_grid`). Returns {degree: DegreeResult}."""
    L, C = len(design.lam), len(design.columns)
    column_basis = np.array([b for b, _ in design.columns])
    out: dict[int, DegreeResult] = {}
    for k in design.degree:
        alphas = alpha_grid(design, m, k)
        ident = identifiable_grid(design, m, k)
        result = DegreeResult.empty(L, C, k, keep, n_chunks)
        for b in design.basis:
            cells = ident & (column_basis == b)[None, :]
            fit(result, design.standard_basis(k, b), alphas, cells)
        out[k] = result
    return out


def run_task(
    design: Design,
    task: Task,
    *,
    solver: str = "auto",
    noise_draw: str = "sufficient",
    own_process: bool = False,
) -> TaskResult:
    """Simulate one task through the design's model family (:mod:`study.models`): a
    :class:`DegreeResult` per degree (co-moments of the coefficient and risk quantities per
    chunk, failed fits, kept draws) and the seconds it took. ``solver`` is passed to the family
    (:data:`study.conditional.SOLVERS`), and so is ``noise_draw``
    (:data:`study.engine.streams.NOISE_DRAWS`). ``own_process``: the task runs in a thread of a
    worker process that runs nothing else (a Dask worker), whose BLAS pools it may limit."""
    started = time.perf_counter()
    # no BLAS threads inside a worker process; tasks in threads (the threading backend)
    # share the pools of the process, which the caller limits once (one_blas_thread)
    in_thread = threading.current_thread() is not threading.main_thread()
    with contextlib.nullcontext() if in_thread and not own_process else one_blas_thread():
        model = model_of(design)
        chunks = range(task.first, task.stop)
        degrees = model.run_chunks(design, task.m, chunks, solver=solver, noise_draw=noise_draw)
    return TaskResult(degrees=degrees, seconds=time.perf_counter() - started)


def one_blas_thread():
    """Context manager: the process's BLAS/OpenMP pools limited to one thread."""
    return _thread_pools().limit(limits=1)


@functools.cache
def _thread_pools() -> ThreadpoolController:
    """The process's BLAS/OpenMP pools, found once (finding them costs more than a task's
    worth of small fits)."""
    return ThreadpoolController()


# draws.npz keeps the first estimates of at most this many chunks of each m: enough to
# audit every cell on a few replications, whatever the number of replications
AUDIT_CHUNKS = 64


class ChunkMerger:
    """The chunks of one m merged one by one, in chunk order: feed it the task results in
    the order of their first chunk (:meth:`add`), then take the merged :class:`DegreeResult`
    per degree (:meth:`result`, without the chunk axis).

    The co-moments fold left, chunk after chunk (``((c₀ ⊕ c₁) ⊕ c₂) ⊕ …``, the exact merge
    of :meth:`CoMoments.merge`), so the merged numbers are the same however the chunks were
    grouped into tasks; counts are summed, kept draws and the chunks' first estimates
    concatenated, and the co-moments of chunk 0 kept apart (:meth:`chunk0`). Memory holds
    one task's result at a time.
    """

    def __init__(self, degrees):
        self._merged: dict[int, DegreeResult | None] = {k: None for k in degrees}
        self._chunk0: dict[int, CoMoments | None] = {k: None for k in degrees}
        self.chunks = 0

    def add(self, part: TaskResult) -> None:
        for k, result in part.degrees.items():
            merged = self._merged[k]
            n_chunks = result.coef.n.shape[0]
            coef, risk = merged.coef if merged else None, merged.risk if merged else None
            for i in range(n_chunks):
                coef = _fold(coef, result.coef, i)
                risk = _fold(risk, result.risk, i)
            if merged is None:
                first = _fold(None, result.coef, 0)  # a copy: not the whole task's arrays
                self._chunk0[k] = CoMoments(first.n.copy(), first.mean.copy(), first.M.copy())
                merged = DegreeResult(
                    coef,
                    risk,
                    result.n_failed,
                    result.draws,
                    result.fit_counts,
                    result.first[:AUDIT_CHUNKS],
                    result.tails,
                )
            else:
                merged = DegreeResult(
                    coef,
                    risk,
                    merged.n_failed + result.n_failed,
                    np.concatenate([merged.draws, result.draws], axis=2),
                    merged.fit_counts + result.fit_counts,
                    # the first estimates of the chunks draws.npz keeps, no more
                    np.concatenate(
                        [merged.first, result.first[: max(0, AUDIT_CHUNKS - len(merged.first))]]
                    ),
                    merged.tails + result.tails,
                )
            self._merged[k] = merged
        self.chunks += next(iter(part.degrees.values())).coef.n.shape[0]

    def result(self, degree: int) -> DegreeResult:
        merged = self._merged[degree]
        if merged is None:
            raise ValueError("no chunk was merged")
        return merged

    def chunk0(self, degree: int) -> CoMoments:
        """The coefficient co-moments of chunk 0 alone, shape (L, C, k+1)."""
        if self._chunk0[degree] is None:
            raise ValueError("no chunk was merged")
        return self._chunk0[degree]


def _fold(state: CoMoments | None, stacked: CoMoments, i: int) -> CoMoments:
    """``state`` ⊕ chunk i of ``stacked`` (the chunk itself when there is no state yet)."""
    chunk = CoMoments(stacked.n[i], stacked.mean[i], stacked.M[i])
    return chunk if state is None else state.merge(chunk)
