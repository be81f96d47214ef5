"""Precision on demand: a design's ``[precision]`` table (``target_mcse``,
``max_replications``) lets the run add replications until the Monte Carlo standard error of
every bias it can settle is at most the target.

The replications of each m grow in whole chunks (:mod:`study.engine.streams`), in rounds:

1. every m starts from ``replications`` rounded up to whole chunks (so that no chunk is
   ever partial, and a chunk computed in one round is the same chunk in the next);
2. after a round, each m's merged results give, for every cell whose bias has a finite
   variance, n·(bias_mcse/target)² replications (Morris, White and Crowther 2019, section
   5.3); m takes the largest, times GROWTH so that the estimate's own noise rarely calls
   for one more round, rounded up to whole chunks, at most its cap (``max_replications``
   rounded down to whole chunks, not below the start);
3. the rounds stop when no m needs more, or after MAX_ROUNDS.

Every decision is a function of the merged results of the chunks computed so far, which
depend on the seed alone: the replications reached, and so every number, are the same on
any machine and after any interruption (a resumed run replays the rounds from its
checkpoints, computing only the chunks that are missing). Cells that end above the target
are reported with the reason: the cap of their m, or the rounds running out; cells whose
bias has no finite variance are counted apart, since no number of replications settles them.
"""

from __future__ import annotations

import math

import numpy as np

from study.design import Design
from study.engine.streams import chunk_length, n_chunks
from study.results import basis_label, usable_cells

# replications needed × this, so that one more round is rarely needed
GROWTH = 1.1
MAX_ROUNDS = 6


def start_replications(design: Design, m: int) -> int:
    """The replications of m in the first round: ``replications`` in whole chunks."""
    length = chunk_length(m)
    return -(-design.replications // length) * length


def cap_replications(design: Design, m: int) -> int:
    """The most replications m may reach: ``max_replications`` in whole chunks, rounded
    down, and never below the start."""
    length = chunk_length(m)
    return max(start_replications(design, m), design.max_replications // length * length)


def valid_chunks(design: Design, m: int) -> int:
    """How many chunks of m a checkpoint may hold: the design's, or with [precision] every
    chunk up to the cap (a resumed run may find later rounds' checkpoints)."""
    if design.target_mcse is None:
        return n_chunks(design.replications_of(m), m)
    return n_chunks(max(design.replications_of(m), cap_replications(design, m)), m)


def first_round(design: Design) -> Design:
    """The design with the replications of the first round (unchanged without
    [precision])."""
    if design.target_mcse is None:
        return design
    return design.with_replications({m: start_replications(design, m) for m in design.m})


def settled(summary) -> np.ndarray:
    """Mask of the summary rows whose bias the target applies to: the rows whose bias
    counts as a result (:func:`study.results.usable_cells` with order 2, the rule study
    check uses)."""
    return usable_cells(summary, 2)


def next_round(design: Design, summary) -> Design | None:
    """The design with the replications the next round needs, or None if no m needs more
    (module docstring, step 2)."""
    grow = {}
    rows = summary[settled(summary)]
    for m in design.m:
        at = rows[rows.m == m]
        have = design.replications_of(m)
        if at.empty:
            continue
        need = float((at.n * (at.bias_mcse / design.target_mcse) ** 2).max())
        if not need > have:
            continue
        length = chunk_length(m)
        want = -(-math.ceil(GROWTH * need) // length) * length
        grow[m] = min(max(want, have), cap_replications(design, m))
    grow = {m: n for m, n in grow.items() if n > design.replications_of(m)}
    if not grow:
        return None
    return design.with_replications({m: grow.get(m, design.replications_of(m)) for m in design.m})


def unmet(design: Design, summary) -> list[str]:
    """The cells whose bias MCSE is above the target after the last round, each with its
    reason: its m reached the cap, or the rounds ran out (MAX_ROUNDS)."""
    rows = summary[settled(summary) & (summary.bias_mcse > design.target_mcse).to_numpy()]
    # λ = 0 is one cell under every scaling: named once
    rows = rows.drop_duplicates(["m", "degree", "lambda", "basis", "coef", "bias_mcse"])
    out = []
    for _, r in rows.iterrows():
        capped = design.replications_of(r.m) >= cap_replications(design, r.m)
        why = "its m reached max_replications" if capped else f"{MAX_ROUNDS} rounds ran out"
        out.append(
            f"m = {r.m}, degree {r.degree}, λ = {r['lambda']:g}, {r.scaling}"
            f"{basis_label(r.basis)}, w{r.coef}: "
            f"bias MCSE {r.bias_mcse:.3g} with {int(r.n):,} replications ({why})"
        )
    return out


def infinite_cells(summary) -> int:
    """Identifiable coefficient rows whose bias has no finite variance."""
    return int((usable_cells(summary) & ~settled(summary)).sum())
