"""From merged task results to the tables on disk: summary.csv, risk.csv, draws.npz.

Summaries are recomputed from the checkpoints alone, without simulating again, always
merging the chunks of each m one by one in chunk order (:class:`ChunkMerger`), so that the
numbers are bit-identical however the chunks were grouped into tasks and scheduled.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from study.conditional import FIT_COUNTS, TAIL_THRESHOLDS
from study.design import Design
from study.engine.store import CheckpointStore
from study.engine.streams import n_chunks
from study.engine.tasks import AUDIT_CHUNKS, ChunkMerger, Task, alpha_grid, identifiable_grid
from study.measures import coefficient_measures, risk_measures
from study.models import model_of
from study.results import (
    FITS_COLUMNS,
    RISK_COLUMNS,
    STATUS_NOT_IDENTIFIABLE,
    STATUS_OK,
    SUMMARY_COLUMNS,
    flag_impossible,
    tail_column,
)


class RunningMerge:
    """The chunks of every m merged while a run goes on, in the order :func:`summarise`
    merges them, so that little is left to merge when the last task comes back.

    :meth:`add` takes each task's result once its checkpoint is saved, and merges every
    task of its m that comes next and is on disk (resumed ones too): this result from
    memory, the others from their checkpoints. The numbers are those of merging every
    checkpoint afterwards, since a checkpoint holds a result's arrays exactly. Memory holds
    the merged state of each m and the result being merged.
    """

    def __init__(self, design: Design, store: CheckpointStore, tasks: list[Task], done):
        self._store = store
        self._order = {m: sorted(t for t in tasks if t.m == m) for m in design.m}
        self._next = dict.fromkeys(design.m, 0)  # how many of m's tasks are merged
        self._on_disk = set(done)
        self.mergers = {m: ChunkMerger(design.degree) for m in design.m}

    def add(self, task: Task, result) -> None:
        self._on_disk.add(task)
        order, i = self._order[task.m], self._next[task.m]
        while i < len(order) and order[i] in self._on_disk:
            self.mergers[task.m].add(result if order[i] == task else self._store.load(order[i]))
            i += 1
        self._next[task.m] = i


def summarise(design: Design, store: CheckpointStore, tasks: list[Task], mergers=None):
    """Build the result tables from the checkpoints of a complete run: ``tasks``, which
    cover every chunk of every m once (one checkpoint loaded at a time). ``mergers``
    ({m: :class:`ChunkMerger`}, from a :class:`RunningMerge`) have merged the first chunks
    of each m already; the tasks they cover are not loaded again.

    Returns
    -------
    summary : DataFrame, one row per cell and coefficient (columns SUMMARY_COLUMNS)
    risk : DataFrame, one row per cell (columns RISK_COLUMNS)
    draws : dict of arrays for draws.npz
    fits : DataFrame, one row per cell (columns FITS_COLUMNS): the data sets fitted by
        each route and those of the batches the compiled kernel declined, by reason
    """
    L, C = len(design.lam), len(design.columns)
    lam_grid = np.repeat(np.array(design.lam)[:, None], C, axis=1)
    bases = np.array([b for b, _ in design.columns], dtype=object)
    scalings = np.array([s for _, s in design.columns], dtype=object)
    scal_grid = np.repeat(scalings[None, :], L, axis=0)
    basis_grid = np.repeat(bases[None, :], L, axis=0)
    coef_frames, risk_frames, fit_frames = [], [], []
    draws: dict[str, list[np.ndarray]] = {f"coef_k{k}": [] for k in design.degree}
    # what `study check` audits from the seeds: ŵ of each chunk's first data set, and the
    # coefficient co-moments of chunk 0 (count and means of d, d², e, e², v)
    audit: dict[str, list[np.ndarray]] = {
        f"{name}_k{k}": [] for k in design.degree for name in ("first", "chunk0_n", "chunk0_mean")
    }
    most_chunks = min(AUDIT_CHUNKS, max(n_chunks(design.replications_of(m), m) for m in design.m))
    for m in design.m:
        merger = ChunkMerger(design.degree) if mergers is None else mergers[m]
        for task in sorted(t for t in tasks if t.m == m):
            if task.stop <= merger.chunks:  # merged while the run went on
                continue
            if task.first != merger.chunks:
                raise ValueError(f"chunk {merger.chunks} of m = {m} has no checkpoint")
            merger.add(store.load(task))
        if merger.chunks != n_chunks(design.replications_of(m), m):
            raise ValueError(f"chunk {merger.chunks} of m = {m} has no checkpoint")
        for k in design.degree:
            merged = merger.result(k)
            coef, risk, kept = merged.coef, merged.risk, merged.draws
            alphas = alpha_grid(design, m, k)
            ident = identifiable_grid(design, m, k)
            n_failed = np.where(ident, merged.n_failed, design.replications_of(m))
            status = np.where(ident, STATUS_OK, STATUS_NOT_IDENTIFIABLE).astype(object)
            draws[f"coef_k{k}"].append(kept)
            first = np.full((most_chunks, *merged.first.shape[1:]), np.nan)
            first[: merged.first.shape[0]] = merged.first[:most_chunks]
            audit[f"first_k{k}"].append(first)
            audit[f"chunk0_n_k{k}"].append(merger.chunk0(k).n)
            audit[f"chunk0_mean_k{k}"].append(merger.chunk0(k).mean)

            cm = coefficient_measures(coef)
            # w* in each column's basis, shape (C, k+1)
            true = np.stack([design.standard_basis(k, b).w_star for b, _ in design.columns])

            def cell(a, k=k):  # (L, C) → (L, C, k+1), flattened
                return np.repeat(np.asarray(a)[..., None], k + 1, axis=-1).ravel()

            frame = {
                "m": np.full(L * C * (k + 1), m),
                "degree": np.full(L * C * (k + 1), k),
                "lambda": cell(lam_grid),
                "scaling": cell(scal_grid),
                "basis": cell(basis_grid),
                "alpha": cell(alphas),
                "coef": np.tile(np.arange(k + 1), L * C),
                "true": np.tile(true.ravel(), L),
                "n_failed": cell(n_failed),
                "status": cell(status),
            }
            frame.update({key: value.ravel() for key, value in cm.items()})
            frame["mean"] = frame["true"] + frame["bias"]
            n_ok = np.asarray(frame["n"], dtype=float)
            for i, threshold in enumerate(TAIL_THRESHOLDS):
                count = merged.tails[..., i].ravel()
                frame[tail_column(threshold)] = np.where(
                    n_ok > 0, count / np.maximum(n_ok, 1), np.nan
                )
            coef_frames.append(pd.DataFrame(frame))

            rm = risk_measures(risk)
            rframe = {
                "m": np.full(L * C, m),
                "degree": np.full(L * C, k),
                "lambda": lam_grid.ravel(),
                "scaling": scal_grid.ravel(),
                "basis": basis_grid.ravel(),
                "alpha": alphas.ravel(),
                "n_failed": n_failed.ravel(),
                "status": status.ravel(),
            }
            rframe.update({key: value.ravel() for key, value in rm.items()})
            risk_frames.append(pd.DataFrame(rframe))
            fits = {key: rframe[key] for key in FITS_COLUMNS[:6]}
            fits |= {name: merged.fit_counts[..., i].ravel() for i, name in enumerate(FIT_COUNTS)}
            fit_frames.append(pd.DataFrame(fits))
    summary = pd.concat(coef_frames, ignore_index=True)[SUMMARY_COLUMNS]
    risk = pd.concat(risk_frames, ignore_index=True)[RISK_COLUMNS]
    for frame in (summary, risk):
        frame["n"] = frame["n"].astype(np.int64)
        frame["n_failed"] = frame["n_failed"].astype(np.int64)
    rao_blackwell = design.family != "logistic"  # which has no conditional moments
    flag_impossible(summary, "summary", rao_blackwell=rao_blackwell)
    flag_impossible(risk, "risk", rao_blackwell=rao_blackwell)
    out = {key: np.stack(value) for key, value in (draws | audit).items()}
    out.update(
        m=np.array(design.m),
        degree=np.array(design.degree),
        # the scaling and the basis of each column of the cells' last axis
        scaling=np.array(scalings, dtype=str),
        basis=np.array(bases, dtype=str),
        **{"lambda": np.array(design.lam)},
    )
    fits = pd.concat(fit_frames, ignore_index=True)[FITS_COLUMNS]
    model = model_of(design)
    if hasattr(model, "fits_table"):  # a family's own names for its fit counts
        fits = model.fits_table(fits)
    return summary, risk, out, fits
