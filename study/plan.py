"""How many replications a design needs for a target Monte Carlo standard error:
``study plan DESIGN --target-mcse X``.

The MCSE of a mean over n replications is SD/√n, so a cell whose estimates have standard
deviation SD reaches a target MCSE with n = (SD/target)² replications (Morris, White and
Crowther 2019, "Using simulation studies to evaluate statistical methods", Statistics in
Medicine 38:2074, section 5.3). The SD is not known before the study: a short pilot run of
the same design, with fewer replications, estimates it in every cell. The pilot is the
study's own first replications (the same random streams), run in a temporary folder
that is deleted afterwards.

What the target applies to: the bias of every coefficient (``bias_mcse``) in every cell
where the bias has a finite variance, the cells whose bias `study check` compares
(``finite_moments`` > 2). Cells without one are listed apart: no number of replications
makes their averages settle.

The pilot's SD is itself uncertain. Its relative standard error is about
√((κ + 2)/(4n)) for excess kurtosis κ, so the plan reports the replications for the
pilot's SD and for its upper 95 % limit, SD·(1 + 1.96·√((κ + 2)/(4n))); heavy-tailed cells
(large κ) widen that gap.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from study.design import Design, DesignError
from study.engine.streams import CHUNK_DATA_SETS
from study.results import basis_label, read_table, usable_cells

# replications of the pilot unless asked otherwise: one whole chunk of the smaller m
PILOT_REPLICATIONS = CHUNK_DATA_SETS


@dataclasses.dataclass
class Plan:
    """The replications each m needs, and the cells that decide it."""

    target: float
    pilot: int
    table: pd.DataFrame  # per m: the deciding cell, its SD, the replications needed
    infinite: int  # cells left out: their bias has no finite variance
    replications: int  # the design's replications now

    @property
    def needed(self) -> int:
        """Replications for every finite-variance cell at the pilot's SD."""
        return int(self.table.needed.max())

    @property
    def needed_upper(self) -> int:
        """The same at the upper 95 % limit of each cell's SD."""
        return int(self.table.needed_upper.max())

    def lines(self) -> list[str]:
        shown = self.table.copy()
        shown["cell"] = [
            f"degree {r.degree}, λ = {r['lambda']:g}, {r.scaling}{basis_label(r.basis)}, w{r.coef}"
            for _, r in shown.iterrows()
        ]
        shown["sd"] = shown.sd.map(lambda v: f"{v:.4g}")
        shown["kurtosis"] = shown["kurtosis"].map(lambda v: f"{v:.3g}")
        cols = ["m", "cell", "sd", "kurtosis", "needed", "needed_upper"]
        lines = shown[cols].to_string(index=False).splitlines()
        left_out = (
            f"; {self.infinite} cells left out (their bias has no finite variance)"
            if self.infinite
            else ""
        )
        lines.append(
            f"study: plan: bias MCSE ≤ {self.target:g} in every finite-variance cell needs "
            f"replications = {self.needed:,} ({self.needed_upper:,} at the upper 95 % limit "
            f"of the SD; the design has {self.replications:,}), from a pilot of "
            f"{self.pilot:,} replications{left_out}"
        )
        return lines


def needed_replications(sd, target: float) -> np.ndarray:
    """n = ⌈(SD/target)²⌉, at least 2 (a variance needs two)."""
    return np.maximum(np.ceil((np.asarray(sd, dtype=float) / target) ** 2), 2).astype(np.int64)


def _check_target(target: float) -> None:
    if not (target > 0 and math.isfinite(target)):
        raise DesignError(f"option '--target-mcse': got {target!r}; expected a number > 0")


def plan_from_summary(summary: pd.DataFrame, target: float, replications: int) -> Plan:
    """The plan from a pilot's summary.csv: per m, the finite-variance cell with the
    largest SD of its estimates, and the replications it needs."""
    _check_target(target)
    finite = usable_cells(summary, 2)  # the cells whose bias study check compares
    rows = summary[finite].copy()
    pilot = int(rows.n.max())
    rows["sd"] = rows.bias_mcse * np.sqrt(rows.n)
    kurt = rows["kurtosis"].clip(lower=-2).fillna(0)
    rows["sd_upper"] = rows.sd * (1 + 1.96 * np.sqrt((kurt + 2) / (4 * rows.n)))
    rows["needed"] = needed_replications(rows.sd, target)
    rows["needed_upper"] = needed_replications(rows.sd_upper, target)
    worst = rows.loc[rows.groupby("m").needed.idxmax()]
    worst["needed_upper"] = rows.groupby("m").needed_upper.max().to_numpy()
    cols = ["m", "degree", "lambda", "scaling", "basis", "coef", "sd", "kurtosis"]
    table = worst[cols + ["needed", "needed_upper"]].reset_index(drop=True)
    infinite = int((usable_cells(summary) & ~finite).sum())
    return Plan(target, pilot, table, infinite, replications)


def plan(design: Design, target: float, *, pilot: int = PILOT_REPLICATIONS, jobs: int = 1) -> Plan:
    """Run a pilot of ``pilot`` replications of ``design`` in a temporary folder and plan
    from it (module docstring)."""
    from study.engine.run import simulate

    # both options refused before the pilot runs, not after
    _check_target(target)
    if pilot < 2:
        raise DesignError(f"option '--pilot': got {pilot}; expected at least 2 replications")
    pilot_design = dataclasses.replace(design, replications=pilot, keep_draws=0)
    with tempfile.TemporaryDirectory(prefix="study-plan-") as tmp:
        out = Path(tmp) / "pilot"
        simulate(pilot_design, out, jobs=jobs, progress=False)
        summary = read_table(out / "summary.csv")
    return plan_from_summary(summary, target, design.replications)
