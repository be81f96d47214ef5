"""Checking the figures' arguments and picking their cells out of the results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from study.scaling import check_scaling


def check_member(name: str, value, allowed, what: str = "") -> None:
    allowed = [a.item() if isinstance(a, np.generic) else a for a in allowed]
    ok = (
        any(np.isclose(value, a) for a in allowed)
        if isinstance(value, float)
        else (value in allowed)
    )
    if not ok:
        raise ValueError(
            f"The '{name}' parameter must be one of {allowed}{what}. Got {value!r} instead."
        )


def check_scalings(scalings: Sequence[str]) -> list[str]:
    scalings = list(scalings)
    for s in scalings:
        check_scaling(s, name="scalings")
    if not scalings:
        raise ValueError("The 'scalings' parameter must name at least one scaling. Got [].")
    return scalings


def check_coefs(coefs: Sequence[int], degree: int) -> list[int]:
    coefs = [int(j) for j in coefs]
    for j in coefs:
        check_member("coefs", j, range(degree + 1), f" (degree {degree})")
    return coefs


def cell_rows(summary: pd.DataFrame, degree: int, lam: float) -> pd.DataFrame:
    """The rows of ``summary`` at one degree and λ (every m, scaling and coefficient)."""
    for col in ("m", "degree", "lambda", "scaling", "coef"):
        if col not in summary.columns:
            raise ValueError(
                f"The 'summary' parameter must have a column {col!r}. "
                f"Got columns {list(summary.columns)} instead."
            )
    check_member("degree", int(degree), sorted(summary["degree"].unique()))
    check_member(
        "lam", float(lam), sorted(summary.loc[summary["degree"] == degree, "lambda"].unique())
    )
    sel = (summary["degree"] == degree) & np.isclose(summary["lambda"], lam)
    return summary.loc[sel]


def draws_axes(draws: Mapping[str, np.ndarray], degree: int):
    """``(coef, m, λ, scalings)`` of ``draws.npz`` at one degree."""
    key = f"coef_k{int(degree)}"
    if key not in draws:
        have = sorted(int(k[6:]) for k in draws if k.startswith("coef_k"))
        raise ValueError(
            f"The 'degree' parameter must be one of {have} (the degrees in draws). "
            f"Got {degree!r} instead."
        )
    bases = sorted({str(b) for b in np.asarray(draws.get("basis", ["monomial"]))})
    if len(bases) > 1:
        raise ValueError(
            f"The 'draws' parameter must hold the cells of one basis. Got the bases {bases} "
            "instead (study.report.assets.report_basis_cells picks the monomial ones)."
        )
    return (
        np.asarray(draws[key]),
        np.asarray(draws["m"]),
        np.asarray(draws["lambda"], dtype=float),
        [str(s) for s in np.asarray(draws["scaling"])],
    )


def draw_cell(draws, degree: int, m: int, lam: float, *, scaling: str) -> np.ndarray:
    """Kept draws of one cell, shape (keep, degree + 1); NaN rows where not identifiable."""
    coef, ms, lams, scalings = draws_axes(draws, degree)
    check_member("m", int(m), [int(v) for v in ms], " (the m values in draws)")
    check_member("lam", float(lam), [float(v) for v in lams], " (the λ values in draws)")
    if lam == 0 and scaling not in scalings:
        scaling = scalings[0]  # every scaling gives the same fit at λ = 0
    check_member("scaling", scaling, scalings, " (the scalings in draws)")
    i = int(np.flatnonzero(ms == m)[0])
    k = int(np.flatnonzero(np.isclose(lams, lam))[0])
    s = scalings.index(scaling)
    return coef[i, k, s]


def panel_columns(scalings: Sequence[str], lam: float) -> list[tuple[str, float]]:
    """Columns of panels of draws: λ = 0 (``"lambda0"``), then each scaling at ``lam``."""
    return [("lambda0", 0.0)] + [(s, float(lam)) for s in scalings]


def cell_scaling(col: str) -> str:
    """The scaling to read a column's cells under (any gives the same fit at λ = 0)."""
    return "m" if col == "lambda0" else col


def identifiable(w: np.ndarray) -> np.ndarray:
    """The rows of a cell's draws that are finite (NaN where not identifiable)."""
    return w[np.all(np.isfinite(w), axis=1)]
