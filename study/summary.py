"""From merged task results to the tables on disk: summary.csv, risk.csv, draws.npz.

Summaries are recomputed from the checkpoints alone, without simulating again, always
merging the blocks of each m in block order so that the numbers are bit-identical
however the tasks were scheduled.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .design import Design
from .engine import alpha_grid, identifiable_grid, merge_task_results
from .measures import coefficient_measures, risk_measures
from .store import CheckpointStore

SUMMARY_COLUMNS = (
    ["m", "degree", "lambda", "scaling", "alpha", "coef", "true", "n", "mean"]
    + ["bias", "bias_mcse", "var", "var_mcse", "sd", "sd_mcse", "mse", "mse_mcse"]
    + ["n_failed", "status", "kurtosis"]
    + ["bias_rb", "bias_rb_mcse", "var_rb", "var_rb_mcse", "bias_diff_mcse", "var_diff_mcse"]
)
RISK_COLUMNS = (
    ["m", "degree", "lambda", "scaling", "alpha", "n"]
    + ["risk", "risk_mcse", "n_failed", "status", "risk_kurtosis"]
    + ["risk_rb", "risk_rb_mcse", "risk_diff_mcse"]
)

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
    :func:`study.theory.finite_moment_order`, and sample moments of higher order never
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
        from .theory import finite_moment_order

        finite = np.array(
            [
                finite_moment_order(int(m), int(k), float(lam))
                for m, k, lam in zip(rows["m"], rows["degree"], rows["lambda"], strict=True)
            ]
        )
    return ok & (finite > order)


def summarise(design: Design, store: CheckpointStore):
    """Build the result tables from the checkpoints of a complete run.

    Returns
    -------
    summary : DataFrame, one row per cell and coefficient (columns SUMMARY_COLUMNS)
    risk : DataFrame, one row per cell (columns RISK_COLUMNS)
    draws : dict of arrays for draws.npz
    """
    L, C = len(design.lam), len(design.scaling)
    lam_grid = np.repeat(np.array(design.lam)[:, None], C, axis=1)
    scal_grid = np.repeat(np.array(design.scaling, dtype=object)[None, :], L, axis=0)
    coef_frames, risk_frames = [], []
    draws: dict[str, list[np.ndarray]] = {f"coef_k{k}": [] for k in design.degree}
    for m in design.m:
        parts = [store.load(m, b) for b in range(design.n_blocks)]
        for k in design.degree:
            merged = merge_task_results(parts, k)
            coef, risk, kept = merged.coef, merged.risk, merged.draws
            alphas = alpha_grid(design, m, k)
            ident = identifiable_grid(design, m, k)
            n_failed = np.where(ident, merged.n_failed, design.replications)
            status = np.where(ident, STATUS_OK, STATUS_NOT_IDENTIFIABLE).astype(object)
            draws[f"coef_k{k}"].append(kept)

            cm = coefficient_measures(coef)
            true = design.true_coefficients_of(k)

            def cell(a, k=k):  # (L, C) → (L, C, k+1), flattened
                return np.repeat(np.asarray(a)[..., None], k + 1, axis=-1).ravel()

            frame = {
                "m": np.full(L * C * (k + 1), m),
                "degree": np.full(L * C * (k + 1), k),
                "lambda": cell(lam_grid),
                "scaling": cell(scal_grid),
                "alpha": cell(alphas),
                "coef": np.tile(np.arange(k + 1), L * C),
                "true": np.tile(true, L * C),
                "n_failed": cell(n_failed),
                "status": cell(status),
            }
            frame.update({key: value.ravel() for key, value in cm.items()})
            frame["mean"] = frame["true"] + frame["bias"]
            coef_frames.append(pd.DataFrame(frame))

            rm = risk_measures(risk)
            rframe = {
                "m": np.full(L * C, m),
                "degree": np.full(L * C, k),
                "lambda": lam_grid.ravel(),
                "scaling": scal_grid.ravel(),
                "alpha": alphas.ravel(),
                "n_failed": n_failed.ravel(),
                "status": status.ravel(),
            }
            rframe.update({key: value.ravel() for key, value in rm.items()})
            risk_frames.append(pd.DataFrame(rframe))
    summary = pd.concat(coef_frames, ignore_index=True)[SUMMARY_COLUMNS]
    risk = pd.concat(risk_frames, ignore_index=True)[RISK_COLUMNS]
    for frame in (summary, risk):
        frame["n"] = frame["n"].astype(np.int64)
        frame["n_failed"] = frame["n_failed"].astype(np.int64)
    _flag_impossible(summary, "summary")
    _flag_impossible(risk, "risk")
    out = {key: np.stack(value) for key, value in draws.items()}
    out.update(
        m=np.array(design.m),
        degree=np.array(design.degree),
        scaling=np.array(design.scaling, dtype=str),
        **{"lambda": np.array(design.lam)},
    )
    return summary, risk, out


def _flag_impossible(frame: pd.DataFrame, kind: str) -> None:
    """Give rows whose measures are not finite, or whose variance is negative, a status
    other than ok, so that nothing impossible is ever reported as a result (round-off
    beyond what a design's validation foresaw; ``study check`` fails on them)."""
    counted = usable_cells(frame) & (frame["n"] >= 2).to_numpy()
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(frame[_FINITE[kind]].to_numpy(dtype=float)).all(axis=1)
        negative = (frame[_NON_NEGATIVE[kind]].to_numpy(dtype=float) < 0).any(axis=1)
    frame.loc[counted & negative, "status"] = STATUS_NEGATIVE_VARIANCE
    frame.loc[counted & ~finite, "status"] = STATUS_NON_FINITE


def add_theory(design: Design, summary: pd.DataFrame, risk: pd.DataFrame):
    """Append the large-m theory and the order of finite moments to both tables.

    ``finite_moments`` is the order r below which E|ŵ|^r is finite (inf with a penalty;
    see :func:`study.theory.finite_moment_order`). Theory is left empty in cells that are
    not identifiable.
    """
    from .theory import asymptotic_risk_table, asymptotic_table, finite_moment_order

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
    """Quote a field as the csv module's QUOTE_MINIMAL does."""
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text
