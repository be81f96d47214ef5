"""A measure against m: bias, variance (or SD), MSE and |bias|/SD of the coefficients.

The four figures are one plot, :func:`fig_measure`, with different :class:`Measure`
specifications: Monte Carlo markers with ±z·MCSE bars per cell (one coefficient, one
scaling, every m), the lines that go with them (Rao–Blackwell, large-m theory, the parts of
the MSE), optionally a zero line, a slope guide or a common y range per row. The panels
are a grid (rows: coefficients, columns: scalings) or, with ``overlay``, one panel per
coefficient holding every scaling.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from study.numbers import compact, superscript
from study.report.figures._select import cell_rows, check_coefs, check_scalings
from study.report.figures._style import (
    DASHED,
    GUIDE_COLOR,
    M_LABEL,
    RC,
    SCALING_COLORS,
    SCALING_LABELS,
    SCALING_MARKERS,
    THEORY_COLOR,
    coef_symbol,
    errorbar,
    log_m_axis,
    mc_handle,
    new_figure,
    scaling_handle,
    slope_guide,
    style_legend,
)
from study.results import usable_cells
from study.scaling import SCALINGS


@dataclass(frozen=True)
class Trace:
    """A line per cell next to the Monte Carlo markers, drawn when the rows have ``needs``.

    ``style`` are :meth:`~matplotlib.axes.Axes.plot` keywords (without ``color``: the
    scaling's colour), ``legend`` the keywords of its legend entry; the line's gid is
    ``"<gid>:<scaling>:<j>"``.
    """

    gid: str
    values: Callable[[pd.DataFrame], pd.Series]
    style: Mapping[str, object]
    legend: Mapping[str, object]
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Measure:
    """What :func:`fig_measure` draws.

    ``estimate(d, z)`` gives the Monte Carlo value and the half-width of its bar for the
    rows ``d`` of one cell; cells without moments of ``order`` are left out
    (:func:`usable_cells`). ``ylabel`` may name ``{sym}`` (the coefficient's symbol) and
    ``{true}`` (its true value, when the table has a column ``true``). ``guide`` is
    (slope, label, legend label) of a dotted ∝ m^slope line; ``span(d, values)`` the values
    the y range of a row must cover; ``overlay`` puts every scaling in one panel per
    coefficient.
    """

    title: str
    ylabel: str
    estimate: Callable[[pd.DataFrame, float], tuple[pd.Series, pd.Series]]
    order: int
    log: bool = False
    traces: tuple[Trace, ...] = ()
    zero_line: bool = False
    guide: tuple[float, str, str] | None = None
    span: Callable[[pd.DataFrame, pd.Series], list[float]] | None = None
    mc_label: str = "Monte Carlo ± {z:g} MCSE"
    overlay: bool = False


# The Rao–Blackwell line in the scaling's colour, the large-m theory dashed black.
_RB = {"linewidth": 0.9, "zorder": 2}
_RB_LEGEND = {"color": "0.3", "linewidth": 0.9, "label": "Rao–Blackwell"}
_THEORY = {"color": THEORY_COLOR, "linewidth": 0.9, "linestyle": DASHED, "zorder": 2.5}
_THEORY_LEGEND = {
    "color": THEORY_COLOR,
    "linestyle": DASHED,
    "linewidth": 0.9,
    "label": "large-m theory",
}

BIAS = Measure(
    title="Bias",
    ylabel="bias of {sym}{true}",
    estimate=lambda d, z: (d["bias"], z * d["bias_mcse"]),
    order=2,
    traces=(
        Trace("rb", lambda d: d["bias_rb"], _RB, _RB_LEGEND, ("bias_rb",)),
        Trace("theory", lambda d: d["bias_asym"], _THEORY, _THEORY_LEGEND, ("bias_asym",)),
    ),
    zero_line=True,
)


def _spread(sd: bool) -> Measure:
    """The variance, or with ``sd`` the standard deviation (√ of the RB and theory lines)."""
    col = "sd" if sd else "var"
    what = "SD" if sd else "variance"

    def tf(v):
        return np.sqrt(v) if sd else v

    return Measure(
        title=what.capitalize(),
        ylabel=f"{what} of {{sym}}",
        estimate=lambda d, z: (d[col], z * d[f"{col}_mcse"]),
        order=4,
        log=True,
        traces=(
            Trace("rb", lambda d: tf(d["var_rb"]), _RB, _RB_LEGEND, ("var_rb",)),
            Trace("theory", lambda d: tf(d["var_asym"]), _THEORY, _THEORY_LEGEND, ("var_asym",)),
        ),
        guide=(-0.5, "∝ 1/√m", "slope guide ∝ 1/√m") if sd else (-1.0, "∝ 1/m", "slope guide"),
    )


VARIANCE = _spread(sd=False)
SD = _spread(sd=True)

_BIAS2_DASH = (0, (5, 2))
_VAR_DOTS = (0, (1, 1.2))
MSE = Measure(
    title="MSE = bias² + variance",
    ylabel="MSE of {sym}",
    estimate=lambda d, z: (d["mse"], z * d["mse_mcse"]),
    order=4,
    log=True,
    traces=(
        Trace(
            "bias2",
            lambda d: d["bias"] ** 2,
            {"linestyle": _BIAS2_DASH, "linewidth": 1.0},
            {"color": "0.3", "linestyle": _BIAS2_DASH, "label": "bias²"},
        ),
        Trace(
            "var",
            lambda d: d["var"],
            {"linestyle": _VAR_DOTS, "linewidth": 1.3},
            {"color": "0.3", "linestyle": _VAR_DOTS, "linewidth": 1.3, "label": "variance"},
        ),
    ),
    # Every MSE and variance; a bias² below them (essentially 0) may run off the bottom.
    span=lambda d, mse: mse.tolist() + d["var"][d["var"] > 0].tolist(),
    mc_label="MSE (Monte Carlo ± {z:g} MCSE)",
)

BIAS_OVER_SD = Measure(
    title="Bias relative to the standard deviation",
    ylabel="|bias| / SD  (dimensionless)",
    # Bars ± z·MCSE(bias)/SD.
    estimate=lambda d, z: (d["bias"].abs() / d["sd"], z * d["bias_mcse"] / d["sd"]),
    order=2,
    log=True,
    traces=(
        Trace(
            "theory",
            lambda d: d["bias_asym"].abs() / np.sqrt(d["var_asym"]),
            {"linestyle": DASHED, "linewidth": 0.9},
            {**_THEORY_LEGEND, "color": "0.3"},
            ("bias_asym", "var_asym"),
        ),
    ),
    overlay=True,
)


def fig_measure(
    summary: pd.DataFrame,
    measure: Measure,
    *,
    degree: int = 3,
    coefs: Sequence[int] = (1, 3),
    lam: float = 1.0,
    scalings: Sequence[str] = SCALINGS,
    z: float = 1.96,
) -> Figure:
    """``measure`` of each coefficient against m (log axis), per scaling and coefficient.

    Parameters
    ----------
    summary : DataFrame
        ``summary.csv``, optionally with the theory columns.
    measure : Measure
        :data:`BIAS`, :data:`VARIANCE`, :data:`SD`, :data:`MSE`, :data:`BIAS_OVER_SD` or
        another specification.
    degree, coefs, lam, scalings, z
        As in :func:`fig_bias`.

    Returns
    -------
    Figure
        Markers carry gids ``"mc:<scaling>:<j>"``, the traces ``"<gid>:<scaling>:<j>"``.
    """
    with mpl.rc_context(RC):
        fig, axes, rows, coefs, scalings = _panels(
            summary, measure, degree=degree, coefs=coefs, lam=lam, scalings=scalings
        )
        traces = [t for t in measure.traces if set(t.needs) <= set(rows.columns)]
        for r, j in enumerate(coefs):
            span = []
            for c, s in enumerate(scalings):
                ax = axes[0, r] if measure.overlay else axes[r, c]
                span.extend(_cell(ax, measure, traces, rows, j, s, z))
            if span:
                hi = max(span)
                lo = max(min(span), hi * 1e-6)  # at most six decades
                (axes[0, r] if measure.overlay else axes[r, 0]).set_ylim(lo / 3, hi * 3)
        if measure.overlay:
            handles = [scaling_handle(s) for s in scalings]
        else:
            handles = [mc_handle(measure.mc_label.format(z=z))]
        handles += [Line2D([], [], **t.legend) for t in traces]
        if measure.guide is not None:
            handles.append(
                Line2D([], [], color=GUIDE_COLOR, linestyle=":", label=measure.guide[2])
            )
        style_legend(fig, handles, ncols=3 if len(handles) > 4 else len(handles))
        fig.suptitle(f"{measure.title}, degree {degree}, λ = {compact(lam)}", fontsize=8)
    return fig


def _panels(summary, measure: Measure, *, degree, coefs, lam, scalings):
    """The figure, its panels (2-D), the rows of the cells and the checked arguments.

    A grid has rows = coefficients and columns = scalings, x shared, y shared along a row;
    an overlay one row of panels, one per coefficient, x and y shared.
    """
    scalings = check_scalings(scalings)
    rows = cell_rows(summary, degree, lam)
    coefs = check_coefs(coefs, degree)
    if measure.overlay:
        fig = new_figure(2.9)
        axes = fig.subplots(1, len(coefs), sharex=True, sharey=True, squeeze=False)
        for ax, j in zip(axes[0], coefs, strict=True):
            log_m_axis(ax, rows["m"])
            ax.set_title(f"{coef_symbol(j)} (coefficient of x{superscript(j)})")
            ax.set_xlabel(M_LABEL)
        axes[0, 0].set_ylabel(measure.ylabel)
    else:
        fig = new_figure(0.45 + 1.75 * len(coefs))
        axes = fig.subplots(len(coefs), len(scalings), sharex=True, sharey="row", squeeze=False)
        for c, s in enumerate(scalings):
            axes[0, c].set_title(SCALING_LABELS[s], color=SCALING_COLORS[s])
            for r in range(len(coefs)):
                log_m_axis(axes[r, c], rows["m"])
            # Per panel, not fig.supxlabel: that would collide with the legend below.
            axes[-1, c].set_xlabel(M_LABEL)
        w_true = rows.groupby("coef")["true"].first() if "true" in rows else {}
        for r, j in enumerate(coefs):
            true = f" (true {coef_symbol(j, hat=False)} = {w_true[j]:g})" if j in w_true else ""
            axes[r, 0].set_ylabel(measure.ylabel.format(sym=coef_symbol(j), true=true))
    for ax in axes.flat:
        if measure.log:
            ax.set_yscale("log")
        if measure.zero_line:
            ax.axhline(0.0, color="0.5", linewidth=0.6, zorder=1)
    return fig, axes, rows, coefs, scalings


def _cell(ax, measure: Measure, traces, rows, j: int, s: str, z: float) -> list[float]:
    """Draw one coefficient under one scaling; return the values its row's range covers."""
    d = rows[(rows["scaling"] == s) & (rows["coef"] == j)].sort_values("m")
    d = d[usable_cells(d, measure.order)]
    value, err = measure.estimate(d, z)
    ok = np.isfinite(value) & (value > 0) if measure.log else np.isfinite(value)
    errorbar(
        ax,
        d["m"][ok],
        value[ok],
        err[ok],
        color=SCALING_COLORS[s],
        marker=SCALING_MARKERS[s],
        gid=f"mc:{s}:{j}",
        lower_positive=measure.log,
    )
    for t in traces:
        style = {"color": SCALING_COLORS[s], **t.style}
        ax.plot(d["m"], t.values(d), **style, gid=f"{t.gid}:{s}:{j}")
    if measure.guide is not None:
        slope_guide(ax, d["m"][ok], value[ok], measure.guide[0], measure.guide[1])
    return measure.span(d, value[ok]) if measure.span is not None else []


# --- the four figures -------------------------------------------------------------------


def fig_bias(
    summary: pd.DataFrame,
    *,
    degree: int = 3,
    coefs: Sequence[int] = (1, 3),
    lam: float = 1.0,
    scalings: Sequence[str] = SCALINGS,
    z: float = 1.96,
) -> Figure:
    """Bias of each coefficient against m, one panel per scaling (columns) and coefficient.

    Monte Carlo bias with ±z·MCSE bars (markers), the Rao–Blackwellised bias ``bias_rb``
    (thin line, when present), the large-m theory ``bias_asym`` (dashed, when present) and
    zero. Cells that are not identifiable, and for λ = 0 those without a finite variance
    (:func:`usable_cells` with order 2; the MCSE needs it), are left out. The y axis is
    shared along a row.

    Parameters
    ----------
    summary : DataFrame
        ``summary.csv``, optionally with the theory column ``bias_asym``.
    degree : int, default=3
    coefs : sequence of int, default=(1, 3)
        The coefficients j, one row of panels each.
    lam : float, default=1.0
    scalings : sequence of str, default=all four
    z : float, default=1.96
        Half-width of the bars in MCSEs.

    Returns
    -------
    Figure
        gids ``"mc:<scaling>:<j>"``, ``"rb:<scaling>:<j>"``, ``"theory:<scaling>:<j>"``.
    """
    return fig_measure(summary, BIAS, degree=degree, coefs=coefs, lam=lam, scalings=scalings, z=z)


def fig_variance(
    summary: pd.DataFrame,
    *,
    degree: int = 3,
    coefs: Sequence[int] = (1, 3),
    lam: float = 1.0,
    scalings: Sequence[str] = SCALINGS,
    z: float = 1.96,
    sd: bool = False,
) -> Figure:
    """Variance (or SD) of each coefficient against m, log–log, per scaling and coefficient.

    Monte Carlo variance with ±z·MCSE bars (lower bars stop at a tenth of the value on the
    log axis), Rao–Blackwell ``var_rb`` (thin line), large-m theory ``var_asym`` (dashed,
    when present) and a dotted guide ∝ 1/m (∝ 1/√m for the SD). Cells that are not
    identifiable, and for λ = 0 those without a finite fourth moment (:func:`usable_cells`
    with order 4; the MCSE of a variance needs it), are left out.

    Parameters
    ----------
    summary : DataFrame
        ``summary.csv``, optionally with ``var_asym``.
    degree, coefs, lam, scalings, z
        As in :func:`fig_bias`.
    sd : bool, default=False
        Plot the standard deviation (``sd``, ``sd_mcse``; √ of the RB and theory variance).

    Returns
    -------
    Figure
        gids as in :func:`fig_bias`, plus ``"guide"``.
    """
    return fig_measure(
        summary,
        SD if sd else VARIANCE,
        degree=degree,
        coefs=coefs,
        lam=lam,
        scalings=scalings,
        z=z,
    )


def fig_mse_split(
    summary: pd.DataFrame,
    *,
    degree: int = 3,
    coefs: Sequence[int] = (1, 3),
    lam: float = 1.0,
    scalings: Sequence[str] = SCALINGS,
    z: float = 1.96,
) -> Figure:
    """MSE of each coefficient and its two parts, bias² and variance, against m (log–log).

    Markers: Monte Carlo MSE ± z·MCSE; dashed: bias² (Monte Carlo bias squared); dotted:
    variance. Under ``m`` the MSE follows the variance down; under ``none`` and ``k`` it
    levels off at the bias². The y range of a row covers every MSE and variance (at most
    six decades); a bias² below it (essentially 0) runs off the bottom. As in
    :func:`fig_variance`, cells without a finite fourth moment are left out.

    Parameters
    ----------
    summary : DataFrame
        ``summary.csv``.
    degree, coefs, lam, scalings, z
        As in :func:`fig_bias`.

    Returns
    -------
    Figure
        gids ``"mc:<scaling>:<j>"`` (MSE), ``"bias2:<scaling>:<j>"``, ``"var:<scaling>:<j>"``.
    """
    return fig_measure(summary, MSE, degree=degree, coefs=coefs, lam=lam, scalings=scalings, z=z)


def fig_bias_over_sd(
    summary: pd.DataFrame,
    *,
    degree: int = 3,
    coefs: Sequence[int] = (1, 3),
    lam: float = 1.0,
    scalings: Sequence[str] = SCALINGS,
    z: float = 1.96,
) -> Figure:
    """|bias|/SD of each coefficient against m, log–log, every scaling in one panel.

    The ratio says whether a confidence interval that ignores the bias is still right:
    → 0 under ``m`` (bias ∝ 1/m, SD ∝ 1/√m), → a constant under ``sqrt-m``, and grows
    like √m under ``none`` and ``k``. Markers: Monte Carlo |bias|/SD with bars ± z·MCSE(bias)/SD
    (a bar reaching below 0 stops at a tenth of the value); dashed: large-m theory
    |bias_asym|/√var_asym (when present). As in :func:`fig_bias`, cells without a finite
    variance are left out.

    Parameters
    ----------
    summary : DataFrame
        ``summary.csv``, optionally with ``bias_asym`` and ``var_asym``.
    degree, coefs, lam, scalings, z
        As in :func:`fig_bias`; one panel per coefficient.

    Returns
    -------
    Figure
        gids ``"mc:<scaling>:<j>"`` and ``"theory:<scaling>:<j>"``.
    """
    return fig_measure(
        summary, BIAS_OVER_SD, degree=degree, coefs=coefs, lam=lam, scalings=scalings, z=z
    )
