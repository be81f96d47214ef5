"""The theory step: what the large-m theory and the risk-optimal penalty say about the
cells of a design, added beside the Monte Carlo results of the engine.

It reads the design and the engine's tables and adds columns and files; it never reads
checkpoints or draws data of the engine's streams (the tuning designs have their own).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from study.design import Design
from study.existence import finite_moment_order
from study.paths import TRANSFER_FILE, TUNING_FILE
from study.results import STATUS_NOT_IDENTIFIABLE, to_csv
from study.theory.largem import asymptotic_risk_table, asymptotic_table
from study.theory.tuning import transfer_table, tuning_table


def extend(design: Design, summary: pd.DataFrame, risk: pd.DataFrame):
    """The theory step of a run: the large-m columns and finite-moment orders added to
    ``summary`` and ``risk``, and the texts of tuning.csv and transfer.csv.

    Returns
    -------
    summary, risk : DataFrame
    files : dict of file name → CSV text
    """
    summary, risk = add_theory(design, summary, risk)
    tuning = tuning_table(design)
    files = {TUNING_FILE: to_csv(tuning), TRANSFER_FILE: to_csv(transfer_table(design, tuning))}
    return summary, risk, files


def add_theory(design: Design, summary: pd.DataFrame, risk: pd.DataFrame):
    """Append the large-m theory and the order of finite moments to both tables.

    ``finite_moments`` is the order r below which E|ŵ|^r is finite (inf with a penalty;
    see :func:`study.theory.largem.finite_moment_order`). Theory is left empty in cells that are
    not identifiable.
    """
    kw = dict(
        x=design.x,
        intercept=design.intercept,
        slope=design.slope,
        noise_sd=design.noise_sd,
        penalize_intercept=design.penalize_intercept,
    )
    grid = (list(design.m), list(design.degree), list(design.lam), list(design.scaling))
    keys = ["m", "degree", "lambda", "scaling"]
    asym = asymptotic_table(*grid, **kw)[keys + ["coef", "bias_asym", "var_asym"]]
    asym_risk = asymptotic_risk_table(*grid, **kw)[keys + ["risk_asym"]]
    out = []
    for frame, theory, on in ((summary, asym, keys + ["coef"]), (risk, asym_risk, keys)):
        merged = frame.merge(theory, on=on, how="left", validate="one_to_one")
        merged.insert(
            len(frame.columns),
            "finite_moments",
            [
                finite_moment_order(m, k, lam)
                for m, k, lam in zip(merged.m, merged.degree, merged["lambda"], strict=True)
            ],
        )
        unidentifiable = merged.status == STATUS_NOT_IDENTIFIABLE
        cols = [c for c in ("bias_asym", "var_asym", "risk_asym") if c in merged]
        merged.loc[unidentifiable, cols] = np.nan
        out.append(merged)
    return out[0], out[1]
