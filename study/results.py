"""The result files' vocabulary: their columns, the statuses of a cell, which cells count
as results, and the CSV writer whose bytes are stable.

Every step (engine, theory, check, report) reads this module; it imports none of them.
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd

from study.existence import finite_moment_order
from study.measures import TAIL_THRESHOLDS

# summary.csv's share of the replications whose |ŵ_j − w*_j| exceeds a threshold
TAILS = TAIL_THRESHOLDS


def tail_column(threshold: float) -> str:
    """``p_gt_10``: the column of the share of errors above ``threshold``."""
    return f"p_gt_{threshold:g}"


SUMMARY_COLUMNS = (
    ["m", "degree", "lambda", "scaling", "basis", "alpha", "coef", "true", "n", "mean"]
    + ["bias", "bias_mcse", "var", "var_mcse", "sd", "sd_mcse", "mse", "mse_mcse"]
    + ["n_failed", "status", "kurtosis"]
    + [tail_column(t) for t in TAILS]
    + ["bias_rb", "bias_rb_mcse", "var_rb", "var_rb_mcse", "bias_diff_mcse", "var_diff_mcse"]
)
RISK_COLUMNS = (
    ["m", "degree", "lambda", "scaling", "basis", "alpha", "n"]
    + ["risk", "risk_mcse", "n_failed", "status", "risk_kurtosis"]
    + ["risk_rb", "risk_rb_mcse", "risk_diff_mcse"]
)

# fits.csv: per cell, the data sets fitted by each route of study.conditional (compiled,
# pencil, direct) and those of batches the compiled kernel declined, by its reason
FITS_COLUMNS = (
    ["m", "degree", "lambda", "scaling", "basis", "alpha"]
    + ["compiled", "pencil", "direct"]
    + ["declined_not_positive_definite", "declined_not_finite", "declined_not_converged"]
)

# The large-m expansion says something at an m only where its step (‖T‖/m for the bias,
# E[h²]/m for the variance and the risk; docs/checks.md) is at most this: the theory leaves
# bias_asym1_bound empty beyond it, and the check compares nothing there.
MAX_EXPANSION_STEP = 0.5
# For the logistic family: the largest leverage of a point (``asym_step``) at most this for
# the bias (study.theory.logistic explains why), and 2(k + 1) times it (``asym_leverage``)
# at most this for the best penalty α*(m) of the expansion, stricter than the check's
# MAX_EXPANSION_STEP for the variance and the risk: α* rests on how the variance moves
# with α, a smaller term than the variance itself
MAX_LOGISTIC_STEP = 0.1

# The tuned λ averages the exact conditional risk over the first this many simulated
# designs of each m (tuning.csv; the report's captions quote it).
TUNING_DESIGNS = 400

STATUS_OK = "ok"
STATUS_NOT_IDENTIFIABLE = "not identifiable"
STATUS_NON_FINITE = "non-finite"
STATUS_NEGATIVE_VARIANCE = "negative variance"
# what must be a finite number in an identifiable cell with n ≥ 2, and what must not be < 0
_FINITE = {
    "summary": (
        ["alpha", "mean", "bias", "bias_mcse", "var", "var_mcse", "sd", "mse"]
        + ["bias_rb", "bias_rb_mcse", "var_rb"]
    ),
    "risk": ["alpha", "risk", "risk_mcse", "risk_rb"],
}
_NON_NEGATIVE = {"summary": ["var", "var_rb", "mse"], "risk": ["risk", "risk_rb"]}


def usable_cells(rows: pd.DataFrame, order: float | None = None) -> np.ndarray:
    """Mask of the rows that count as results: the one rule of the package.

    A row counts if its status is ok (identifiable, nothing non-finite or impossible) and,
    given an ``order``, if the moments of the estimator below that order exist: with λ = 0
    the least-squares coefficients have moments only below
    :func:`study.theory.largem.finite_moment_order`, and sample moments of higher order never
    settle. A bias needs order 2 (its MCSE needs the variance), a variance, MSE or risk
    order 4.

    Parameters
    ----------
    rows : DataFrame
        Rows of ``summary.csv`` or ``risk.csv``, or of a table built from them. Without a
        ``status`` column every row has status ok; without ``finite_moments`` the order is
        computed from the columns ``m, degree, lambda``.
    order : float, optional
        Moments needed; None for the status alone.

    Returns
    -------
    ndarray of bool, shape (len(rows),)
    """
    if "status" in rows.columns:
        ok = rows["status"].eq(STATUS_OK).to_numpy()
    else:
        ok = np.ones(len(rows), dtype=bool)
    if order is None:
        return ok
    if "finite_moments" in rows.columns:
        finite = rows["finite_moments"].to_numpy(dtype=float)
    else:
        finite = np.array(
            [
                finite_moment_order(int(m), int(k), float(lam))
                for m, k, lam in zip(rows["m"], rows["degree"], rows["lambda"], strict=True)
            ]
        )
    return ok & (finite > order)


def flag_impossible(frame: pd.DataFrame, kind: str, *, rao_blackwell: bool = True) -> None:
    """Give rows whose measures are not finite, or whose variance is negative, a status
    other than ok, so that nothing impossible is ever reported as a result (round-off
    beyond what a design's validation foresaw; ``study check`` fails on them). Without
    ``rao_blackwell`` (the logistic family, which has no such estimates) the ``*_rb``
    columns are not looked at."""
    counted = usable_cells(frame) & (frame["n"] >= 2).to_numpy()
    keep = (
        (lambda cols: cols)
        if rao_blackwell
        else (lambda cols: [c for c in cols if "_rb" not in c])
    )
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(frame[keep(_FINITE[kind])].to_numpy(dtype=float)).all(axis=1)
        negative = (frame[keep(_NON_NEGATIVE[kind])].to_numpy(dtype=float) < 0).any(axis=1)
    frame.loc[counted & negative, "status"] = STATUS_NEGATIVE_VARIANCE
    frame.loc[counted & ~finite, "status"] = STATUS_NON_FINITE


def basis_label(basis: str) -> str:
    """How a message names a cell's basis: not at all for the monomials (the default, and
    the only basis of most designs), else ``, orthonormal basis``."""
    return "" if basis == "monomial" else f", {basis} basis"


def read_table(path) -> pd.DataFrame:
    """summary.csv, risk.csv or fits.csv as a DataFrame. Tables written before the basis axis
    have no ``basis`` column; all their cells are of the monomial basis, and it is added
    after ``scaling`` as the current tables have it (their checkpoints are unchanged, so a
    resumed or repeated run writes it too)."""
    frame = pd.read_csv(path)
    if "basis" not in frame.columns and "scaling" in frame.columns:
        frame.insert(frame.columns.get_loc("scaling") + 1, "basis", "monomial")
    return frame


def to_csv(frame: pd.DataFrame) -> str:
    """CSV text with floats written in full (shortest round-trip repr): stable bytes.

    The same text as ``frame.to_csv(index=False, lineterminator="\\n")`` (tested), written
    column by column with Python's float repr: twice as fast, which matters because writing
    the tables is part of every run's serial tail. Frames with a column of another kind
    than the package writes (float64, integers, booleans, strings) go to pandas.
    """
    columns = [_csv_column(frame[name]) for name in frame.columns]
    if len(columns) < 2 or any(c is None for c in columns):
        return frame.to_csv(index=False, lineterminator="\n")
    header = ",".join(_csv_field(str(name)) for name in frame.columns)
    rows = [",".join(row) for row in zip(*columns, strict=True)]
    return "\n".join([header, *rows]) + "\n"


def _csv_column(column: pd.Series) -> list[str] | None:
    """The fields of one column, or None for a kind of column left to pandas."""
    values = column.to_numpy()
    if values.dtype == np.float64:
        return ["" if v != v else repr(v) for v in values.tolist()]  # NaN as an empty field
    if values.dtype.kind in "iub":
        return [str(v) for v in values.tolist()]
    if values.dtype.kind != "O":
        return None
    values = values.tolist()
    if not all(isinstance(v, str) or v is None or v != v for v in values):
        return None  # objects other than strings and missing values
    text = {v: "" if pd.isna(v) else _csv_field(v) for v in set(values)}  # few distinct
    return [text[v] for v in values]


def _csv_field(text: str) -> str:
    """Quote a field as pandas does: a field with a comma, a quote or a line break goes
    through the csv module (QUOTE_MINIMAL, lineterminator "\\n"), whose rule for "\\r"
    differs between Python versions."""
    if any(c in text for c in ',"\n\r'):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([text])
        return buffer.getvalue()[:-1]
    return text
