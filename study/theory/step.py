"""The theory step: what the large-m theory and the risk-optimal penalty say about the
cells of a design, added beside the Monte Carlo results of the engine.

It reads the design and the engine's tables and adds columns and files; it never reads
checkpoints or draws data of the engine's streams (the tuning designs have their own).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from study.conditional import conditional_risk_function
from study.design import Design
from study.engine.tasks import one_blas_thread
from study.existence import finite_moment_order
from study.numbers import nearest_on_log_scale
from study.paths import (
    BASES_FILE,
    MATCHED_FILE,
    MINIBATCH_FILE,
    RISK_CURVES_FILE,
    SENSITIVITY_FILE,
    TRANSFER_FILE,
    TUNING_FILE,
)
from study.results import STATUS_NOT_IDENTIFIABLE, to_csv
from study.scaling import alpha as scaling_alpha
from study.theory.largem import asymptotic_risk_table, asymptotic_table
from study.theory.tuning import (
    bases_table,
    design_grams,
    matched_table,
    sensitivity_table,
    sums_of_degree,
    transfer_table,
    tuning_table,
)


def extend(design: Design, summary: pd.DataFrame, risk: pd.DataFrame, computed=None):
    """The theory step of a run: the large-m columns and finite-moment orders added to
    ``summary`` and ``risk``, and the texts of tuning.csv, transfer.csv, risk_curves.csv,
    matched.csv, sensitivity.csv and bases.csv (the logistic family's tuning.csv alone) and, for a
    design with [minibatch], minibatch.csv (:func:`study.theory.minibatch.minibatch_table`).

    ``computed`` holds the results of :func:`pieces`, one per degree and one for the
    minibatch experiment, when the run computed them beside the simulation; without it they
    are computed here, the same way.

    Returns
    -------
    summary, risk : DataFrame
    files : dict of file name → CSV text
    """
    if computed is None:
        computed = [fn(*args) for fn, args in pieces(design)]
    names = dict.fromkeys(name for c in computed for name in c)  # in order of first piece
    frames = {
        name: pd.concat([c[name] for c in computed if name in c], ignore_index=True)
        for name in names
    }
    summary, risk = add_theory(
        summary, risk, frames["asym"], frames["asym_risk"], family=design.family
    )
    # the files of the frames there are: a logistic design has tuning.csv alone of these
    names = {
        "tuning": TUNING_FILE,
        "transfer": TRANSFER_FILE,
        "curves": RISK_CURVES_FILE,
        "matched": MATCHED_FILE,
        "sensitivity": SENSITIVITY_FILE,
        "bases": BASES_FILE,
        "minibatch": MINIBATCH_FILE,
    }
    files = {file: to_csv(frames[name]) for name, file in names.items() if name in frames}
    return summary, risk, files


def pieces(design: Design) -> list[tuple]:
    """The theory of a design as independent pieces, (function, arguments), one per degree
    and one for the minibatch experiment of a design with [minibatch]: they depend on the
    design alone, so a run computes them in its pool beside the simulation, and
    :func:`extend` puts them together."""
    piece = logistic_piece if design.family == "logistic" else degree_piece
    out = [(piece, (design, k)) for k in design.degree]
    if design.minibatch is not None:  # first: it takes longest (sent before the tasks)
        from study.theory.minibatch import check_data

        check_data(design)  # one line before anything runs if its fit cannot exist
        out.insert(0, (minibatch_piece, (design,)))
    return out


def logistic_piece(design: Design, degree: int) -> dict[str, pd.DataFrame]:
    """The theory of one degree of a logistic design: its large-m tables in every basis and
    the best penalty α*(m) of the expansion, with its limit (tuning.csv;
    :mod:`study.theory.logistic`); the transfer, risk curves, matched comparison,
    sensitivity and bases tables are the gaussian family's alone."""
    from study.theory.logistic import logistic_tables, logistic_tuning_table

    kw = dict(x=design.x, intercept=design.intercept, slope=design.slope)
    kw |= dict(penalize_intercept=design.penalize_intercept)
    grid = (list(design.m), degree, list(design.lam), list(design.scaling))
    with one_blas_thread():
        tables = [logistic_tables(*grid, **kw, basis=b) for b in design.basis]
        tuning = pd.concat(
            [
                logistic_tuning_table(list(design.m), degree, list(design.scaling), **kw, basis=b)
                for b in design.basis
            ],
            ignore_index=True,
        )
    return {
        "asym": pd.concat([t[0] for t in tables], ignore_index=True),
        "asym_risk": pd.concat([t[1] for t in tables], ignore_index=True),
        "tuning": tuning,
    }


def minibatch_piece(design: Design) -> dict[str, pd.DataFrame]:
    """The minibatch experiment (:func:`study.theory.minibatch.minibatch_table`), with one BLAS
    thread wherever it runs."""
    from study.theory.minibatch import minibatch_table

    with one_blas_thread():
        return {"minibatch": minibatch_table(design)}


def degree_piece(design: Design, degree: int) -> dict[str, pd.DataFrame]:
    """Everything the theory says about one degree of the design: the large-m tables, the
    tuned penalty, its transfer, the risk curves, the matched comparison, the sensitivity
    to the noise level and the best penalty in the orthonormal basis. With one BLAS
    thread wherever it runs, so that its numbers do not depend on where that is."""
    one = dataclasses.replace(design, degree=(degree,))
    grid = (list(one.m), [degree], list(one.lam), list(one.scaling))
    kw = dict(x=one.x, intercept=one.intercept, slope=one.slope, noise_sd=one.noise_sd)
    kw |= dict(penalize_intercept=one.penalize_intercept)
    with one_blas_thread(), sums_of_degree(max(design.degree)):
        tuning = tuning_table(one)
        # the large-m theory of every basis the engine fits; the tuning and what follows
        # from it are those of the monomials (bases.csv compares the orthonormal basis)
        return {
            "asym": pd.concat(
                [asymptotic_table(*grid, **kw, basis=b) for b in one.basis], ignore_index=True
            ),
            "asym_risk": pd.concat(
                [asymptotic_risk_table(*grid, **kw, basis=b) for b in one.basis],
                ignore_index=True,
            ),
            "tuning": tuning,
            "transfer": transfer_table(one, tuning),
            "curves": risk_curves(one),
            "matched": matched_table(one, tuning),
            "sensitivity": sensitivity_table(one),
            "bases": bases_table(one),
        }


# longer than a task of the simulation (about 2 s on the default design, whose tasks aim at
# 1 s; 20 s before its steps were compiled): a run sends it before the tasks, and the
# degree pieces after them (study.engine.run)
minibatch_piece.before_tasks = True
# what a run's message names if a worker dies while running the piece
minibatch_piece.describe = lambda design: "the theory's minibatch experiment"
degree_piece.describe = lambda design, degree: f"the theory of degree {degree}"
logistic_piece.describe = lambda design, degree: f"the logistic theory of degree {degree}"

extend.step = "theory"  # the name the manifest lists among the run's steps
extend.pieces = pieces  # computed beside the simulation by study.engine.run


# where the risk is drawn against λ: the m nearest these, and this λ grid
CURVE_MS = (20, 100, 1000, 10000)
CURVE_LAMBDAS = np.logspace(-5, 3, 81)


def risk_curves(design: Design) -> pd.DataFrame:
    """Expected prediction risk on a fine λ grid for every degree and scaling, at the m of
    the design nearest :data:`CURVE_MS`: exact given the design, averaged over the tuning's
    designs (:func:`study.theory.tuning.design_grams`). Columns m, degree, scaling, lambda,
    risk."""
    ms = sorted({nearest_on_log_scale(design.m, v) for v in CURVE_MS})
    rows = []
    for degree in design.degree:
        basis = design.standard_basis(degree)
        for m in ms:
            # one factorisation of the designs serves every scaling's α
            risk_of = conditional_risk_function(
                design_grams(design, m, degree), basis=basis, noise_sd=design.noise_sd
            )
            for scaling in design.scaling:
                alphas = [
                    scaling_alpha(lam, m=m, degree=degree, scaling=scaling)
                    for lam in CURVE_LAMBDAS
                ]
                risk = risk_of(np.array(alphas))
                rows += [
                    {"m": m, "degree": degree, "scaling": scaling, "lambda": lam, "risk": r}
                    for lam, r in zip(CURVE_LAMBDAS, risk, strict=True)
                ]
    return pd.DataFrame(rows, columns=["m", "degree", "scaling", "lambda", "risk"])


def add_theory(
    summary: pd.DataFrame,
    risk: pd.DataFrame,
    asym: pd.DataFrame,
    asym_risk: pd.DataFrame,
    *,
    family: str = "gaussian",
):
    """Append the large-m theory and the order of finite moments to both tables.

    ``finite_moments`` is the order r below which E|ŵ|^r is finite (inf with a penalty;
    see :func:`study.existence.finite_moment_order`; for the logistic family inf: its
    moments are over the data sets with an estimate, the others counted apart). Theory is
    left empty in cells that
    are not identifiable. ``asym`` and ``asym_risk``: the large-m tables of the design's
    cells (:func:`degree_piece`).
    """
    keys = ["m", "degree", "lambda", "scaling", "basis"]
    bias = ["bias_asym", "bias_asym1", "bias_asym1_bound"]
    asym = asym[keys + ["coef", *bias, "var_asym", "asym_step", "asym_leverage"]]
    asym_risk = asym_risk[keys + ["risk_asym", "asym_step", "asym_leverage"]]
    out = []
    for frame, theory, on in ((summary, asym, keys + ["coef"]), (risk, asym_risk, keys)):
        merged = frame.merge(theory, on=on, how="left", validate="one_to_one")
        merged.insert(
            len(frame.columns),
            "finite_moments",
            [
                math.inf if family == "logistic" else finite_moment_order(m, k, lam)
                for m, k, lam in zip(merged.m, merged.degree, merged["lambda"], strict=True)
            ],
        )
        unidentifiable = merged.status == STATUS_NOT_IDENTIFIABLE
        theory = (*bias, "var_asym", "risk_asym", "asym_step", "asym_leverage")
        cols = [c for c in theory if c in merged]
        merged.loc[unidentifiable, cols] = np.nan
        out.append(merged)
    return out[0], out[1]
