"""Figures of the report: pure functions, results in, a matplotlib Figure out.

Every function takes the results as read from disk (``summary.csv`` and ``risk.csv`` as
DataFrames, ``draws.npz`` as a mapping of arrays, the theory tables as DataFrames) and
returns a :class:`matplotlib.figure.Figure`. Nothing is written and pyplot's global state
is not touched: the figures are built on :class:`~matplotlib.figure.Figure` directly, so
the caller saves them (SVG and PNG) and may simply drop them afterwards.

Conventions shared by every figure
----------------------------------
- Each scaling has one colour (Okabe–Ito, colour-blind safe) and one marker,
  :data:`SCALING_COLORS` and :data:`SCALING_MARKERS`, and one label,
  :data:`SCALING_LABELS`; the unpenalised fit (λ = 0) is drawn in :data:`UNPENALISED_COLOR`.
- Monte Carlo estimates are markers with ±z·MCSE bars (z = 1.96 by default); the
  Rao–Blackwellised estimates are thin solid lines; the large-m theory (the columns
  ``bias_asym``, ``var_asym``, drawn only when the table has them) is a dashed line.
- Cells that are not identifiable (``status != "ok"``) are left out, and so are cells
  whose estimator lacks the moments a measure needs, as in ``study check``: with λ = 0 the
  least-squares coefficients have moments only below the order
  :func:`study.theory.finite_moment_order` (column ``finite_moments`` of the results;
  the three-point parabola has no finite mean), and their sample moments do not settle.
  The bias and |bias|/SD need a finite variance (order > 2), the variance, SD and MSE a
  finite fourth moment (order > 4, for their MCSE). Penalised fits have every moment.
- The width is 6.5 in (a printed page), text 7–8 pt.

Artists that tests and callers may want to find carry a ``gid``: ``"mc:<scaling>:<coef>"``
for the Monte Carlo markers, ``"rb:…"`` for Rao–Blackwell lines, ``"theory:…"`` for the
large-m theory and so on (see each function).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .numbers import alpha_label, compact, significant, subscript, superscript
from .scaling import PENALTY_AS_WRITTEN, SCALINGS, check_scaling
from .scaling import alpha as scaling_alpha
from .summary import usable_cells

__all__ = [
    "SCALING_COLORS",
    "SCALING_LABELS",
    "SCALING_MARKERS",
    "UNPENALISED_COLOR",
    "FIGURE_WIDTH",
    "coef_symbol",
    "usable_cells",
    "fig_fitted_curves",
    "fig_parabola_tail",
    "fig_bias",
    "fig_variance",
    "fig_mse_split",
    "fig_bias_over_sd",
    "fig_sampling_distributions",
    "fig_risk_vs_lambda",
    "fig_tuned_lambda",
]

# Okabe & Ito (2008), "Color universal design": distinguishable under every common form
# of colour-vision deficiency; the markers keep the scalings apart in greyscale print.
SCALING_COLORS: dict[str, str] = {
    "none": "#D55E00",  # vermillion
    "m": "#0072B2",  # blue
    "sqrt-m": "#009E73",  # bluish green
    "k": "#CC79A7",  # reddish purple
}
SCALING_MARKERS: dict[str, str] = {"none": "o", "m": "s", "sqrt-m": "^", "k": "D"}
SCALING_LABELS: dict[str, str] = {s: f"{s}: {PENALTY_AS_WRITTEN[s]}" for s in SCALINGS}
UNPENALISED_COLOR = "#000000"
THEORY_COLOR = "#000000"
GUIDE_COLOR = "0.45"

FIGURE_WIDTH = 6.5  # inches: the text width of a printed page

_RC = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.minor.width": 0.4,
    "ytick.minor.width": 0.4,
    "lines.linewidth": 1.1,
    "lines.markersize": 3.5,
    "errorbar.capsize": 0,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "0.91",
    "grid.linewidth": 0.5,
    "figure.dpi": 100,
}

_M_LABEL = "m (training points)"


# --- small helpers ------------------------------------------------------------------------


def coef_symbol(j: int, *, hat: bool = True) -> str:
    """``"ŵ₂"`` (the estimate) or ``"w₂"`` for the coefficient of x^j."""
    return ("ŵ" if hat else "w") + subscript(int(j))


def _check_member(name: str, value, allowed, what: str = "") -> None:
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


def _check_scalings(scalings: Sequence[str]) -> list[str]:
    scalings = list(scalings)
    for s in scalings:
        check_scaling(s, name="scalings")
    if not scalings:
        raise ValueError("The 'scalings' parameter must name at least one scaling. Got [].")
    return scalings


def _new_figure(height: float, width: float = FIGURE_WIDTH) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _shade(color: str, t: float) -> tuple[float, float, float]:
    """Mix ``color`` with white: t = 0 is white, t = 1 the colour itself."""
    r, g, b = to_rgb(color)
    return (1 - t + t * r, 1 - t + t * g, 1 - t + t * b)


def _cell_rows(summary: pd.DataFrame, degree: int, lam: float) -> pd.DataFrame:
    for col in ("m", "degree", "lambda", "scaling", "coef"):
        if col not in summary.columns:
            raise ValueError(
                f"The 'summary' parameter must have a column {col!r}. "
                f"Got columns {list(summary.columns)} instead."
            )
    _check_member("degree", int(degree), sorted(summary["degree"].unique()))
    _check_member(
        "lam", float(lam), sorted(summary.loc[summary["degree"] == degree, "lambda"].unique())
    )
    sel = (summary["degree"] == degree) & np.isclose(summary["lambda"], lam)
    return summary.loc[sel]


def _log_m_axis(ax, ms) -> None:
    ax.set_xscale("log")
    lo, hi = float(np.min(ms)), float(np.max(ms))
    ax.set_xlim(lo / 1.5, hi * 1.5)
    _every_decade(ax.xaxis)


def _every_decade(axis) -> None:
    """A labelled tick at every power of ten (matplotlib thins them out on narrow panels)."""
    axis.set_major_locator(mticker.LogLocator(base=10, numticks=30))
    axis.set_minor_locator(mticker.LogLocator(base=10, subs=np.arange(2, 10), numticks=30))
    axis.set_minor_formatter(mticker.NullFormatter())


def _style_legend(fig: Figure, handles: list, *, ncols: int | None = None) -> None:
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=ncols or len(handles),
        handlelength=2.2,
        columnspacing=1.6,
    )


def _mc_handle(label: str = "Monte Carlo ± 1.96 MCSE", color: str = "0.3") -> Line2D:
    return Line2D([], [], color=color, marker="o", linestyle="none", label=label)


def _rb_handle(color: str = "0.3") -> Line2D:
    return Line2D([], [], color=color, linewidth=0.9, label="Rao–Blackwell")


def _theory_handle(label: str = "large-m theory") -> Line2D:
    return Line2D([], [], color=THEORY_COLOR, linestyle=(0, (4, 2)), linewidth=0.9, label=label)


def _measure_grid(
    summary: pd.DataFrame,
    *,
    degree: int,
    coefs: Sequence[int],
    lam: float,
    scalings: Sequence[str],
    height_per_row: float,
):
    """Rows = coefficients, columns = scalings, x shared, y shared along a row."""
    scalings = _check_scalings(scalings)
    rows = _cell_rows(summary, degree, lam)
    coefs = [int(j) for j in coefs]
    for j in coefs:
        _check_member("coefs", j, range(degree + 1), f" (degree {degree})")
    fig = _new_figure(0.45 + height_per_row * len(coefs))
    axes = fig.subplots(len(coefs), len(scalings), sharex=True, sharey="row", squeeze=False)
    for c, s in enumerate(scalings):
        axes[0, c].set_title(SCALING_LABELS[s], color=SCALING_COLORS[s])
        for r in range(len(coefs)):
            _log_m_axis(axes[r, c], rows["m"])
        # Per panel, not fig.supxlabel: that would collide with the legend below.
        axes[-1, c].set_xlabel(_M_LABEL)
    return fig, axes, rows, coefs, scalings


def _errorbar(ax, x, y, err, *, color, marker, gid, lower_positive=False):
    y = np.asarray(y, dtype=float)
    err = np.asarray(err, dtype=float)
    lo = err
    if lower_positive:
        # On a log axis a bar reaching below 0 would vanish; stop it at a tenth of the value
        # instead (the caption says "bars clipped at the bottom").
        lo = np.minimum(err, 0.9 * y)
    cont = ax.errorbar(
        x,
        y,
        yerr=np.vstack([lo, err]),
        color=color,
        marker=marker,
        linestyle="none",
        markersize=3.2,
        elinewidth=0.8,
        zorder=3,
    )
    cont.lines[0].set_gid(gid)
    return cont


def _slope_guide(ax, ms, values, slope: float, label: str, factor: float = 3.0) -> None:
    """A dotted ∝ m^slope line over the last five points, ``factor`` times above them.

    The label sits above the middle of the line, away from the data below it.
    """
    ms, values = np.asarray(ms, float), np.asarray(values, float)
    ok = np.isfinite(values) & (values > 0)
    if ok.sum() < 2:
        return
    m_end, v_end = ms[ok][-1], values[ok][-1] * factor
    m_start = ms[ok][max(0, ok.sum() - 5)]
    xs = np.geomspace(m_start, m_end, 3)
    ys = v_end * (xs / m_end) ** slope
    line = ax.plot(xs, ys, color=GUIDE_COLOR, linestyle=":", linewidth=1.0, zorder=1)[0]
    line.set_gid("guide")
    ax.annotate(
        label,
        (xs[1], ys[1]),
        xytext=(3, 3),
        textcoords="offset points",
        ha="left",
        va="bottom",
        color=GUIDE_COLOR,
        fontsize=7,
    )


# --- draws --------------------------------------------------------------------------------


def _draws_axes(draws: Mapping[str, np.ndarray], degree: int):
    key = f"coef_k{int(degree)}"
    if key not in draws:
        have = sorted(int(k[6:]) for k in draws if k.startswith("coef_k"))
        raise ValueError(
            f"The 'degree' parameter must be one of {have} (the degrees in draws). "
            f"Got {degree!r} instead."
        )
    return (
        np.asarray(draws[key]),
        np.asarray(draws["m"]),
        np.asarray(draws["lambda"], dtype=float),
        [str(s) for s in np.asarray(draws["scaling"])],
    )


def _draw_cell(draws, degree: int, m: int, lam: float, scaling: str) -> np.ndarray:
    """Kept draws of one cell, shape (keep, degree + 1); NaN rows where not identifiable."""
    coef, ms, lams, scalings = _draws_axes(draws, degree)
    _check_member("m", int(m), [int(v) for v in ms], " (the m values in draws)")
    _check_member("lam", float(lam), [float(v) for v in lams], " (the λ values in draws)")
    if lam == 0 and scaling not in scalings:
        scaling = scalings[0]  # every scaling gives the same fit at λ = 0
    _check_member("scaling", scaling, scalings, " (the scalings in draws)")
    i = int(np.flatnonzero(ms == m)[0])
    k = int(np.flatnonzero(np.isclose(lams, lam))[0])
    s = scalings.index(scaling)
    return coef[i, k, s]


def fig_fitted_curves(
    draws: Mapping[str, np.ndarray],
    *,
    degree: int = 3,
    m_small: int = 10,
    m_large: int = 1000,
    lam: float = 1.0,
    scalings: Sequence[str] = SCALINGS,
    n_curves: int = 30,
    intercept: float = 1.0,
    slope: float = 2.0,
    x_range: tuple[float, float] = (-1.0, 1.0),
    ylim: tuple[float, float] | None = None,
) -> Figure:
    """Fitted polynomials from ``n_curves`` data sets at a small and a large m.

    Rows: m = ``m_small`` and ``m_large``. Columns: the unpenalised fit (λ = 0, the same for
    every scaling) and each scaling at λ = ``lam``. Each panel shows the first ``n_curves``
    kept fits (thin), the mean of all kept fits (thick) and the true line (dashed black),
    with the sum-form α of the cell. Curves leaving the y range are clipped at its edge:
    the y range is the true line's ± 2.5 (or ``ylim``).

    Parameters
    ----------
    draws : mapping
        ``draws.npz``: ``coef_k{degree}`` of shape (n_m, n_λ, n_scaling, keep, degree + 1)
        and the axes ``m``, ``lambda``, ``scaling``.
    degree, m_small, m_large, lam : int, int, int, float
        The cells to show (they must be in ``draws``).
    scalings : sequence of str, default=all four
    n_curves : int, default=30
    intercept, slope : float
        The true line β0 + β1·x.
    x_range : (float, float), default=(-1, 1)
        Where to draw the curves (the range of the x distribution).
    ylim : (float, float), optional

    Returns
    -------
    Figure
        Lines carry gids ``"fit:<column>:<m>"``, ``"mean:<column>:<m>"`` and ``"truth"``;
        <column> is ``"lambda0"`` or the scaling.
    """
    scalings = _check_scalings(scalings)
    x = np.linspace(*x_range, 201)
    truth = intercept + slope * x
    if ylim is None:
        ylim = (truth.min() - 2.5, truth.max() + 2.5)
    columns = [("lambda0", 0.0)] + [(s, float(lam)) for s in scalings]
    row_ms = [int(m_small), int(m_large)]
    with mpl.rc_context(_RC):
        fig = _new_figure(3.9)
        axes = fig.subplots(2, len(columns), sharex=True, sharey=True, squeeze=False)
        for c, (col, lam_c) in enumerate(columns):
            color = UNPENALISED_COLOR if col == "lambda0" else SCALING_COLORS[col]
            title = (
                "λ = 0\n(every scaling)"
                if col == "lambda0"
                else (f"{col}: {PENALTY_AS_WRITTEN[col]}\nλ = {compact(lam_c)}")
            )
            axes[0, c].set_title(title, color=color)
            for r, m in enumerate(row_ms):
                ax = axes[r, c]
                w = _draw_cell(draws, degree, m, lam_c, col if col != "lambda0" else "m")
                w = w[np.all(np.isfinite(w), axis=1)]
                a = scaling_alpha(
                    lam_c, m=m, degree=degree, scaling=col if col != "lambda0" else "m"
                )
                ax.text(
                    0.04,
                    0.96,
                    f"α = {alpha_label(a)}",
                    transform=ax.transAxes,
                    ha="left",
                    va="top",
                    fontsize=7,
                    zorder=6,
                    bbox={
                        "boxstyle": "square,pad=0.15",
                        "facecolor": "white",
                        "edgecolor": "none",
                        "alpha": 0.8,
                    },
                )
                if len(w) == 0:
                    ax.text(
                        0.5,
                        0.5,
                        "not identifiable",
                        transform=ax.transAxes,
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="0.4",
                    )
                else:
                    # φ(x)ᵀw for every kept fit: polyval wants coefficients first.
                    curves = np.polynomial.polynomial.polyval(x, w.T)
                    for yc in curves[:n_curves]:
                        ax.plot(
                            x,
                            yc,
                            color=color,
                            alpha=0.35,
                            linewidth=0.6,
                            gid=f"fit:{col}:{m}",
                            zorder=2,
                        )
                    ax.plot(
                        x,
                        curves.mean(axis=0),
                        color=color,
                        linewidth=1.8,
                        gid=f"mean:{col}:{m}",
                        zorder=4,
                    )
                ax.plot(
                    x,
                    truth,
                    color="black",
                    linestyle=(0, (4, 2)),
                    linewidth=1.0,
                    gid="truth",
                    zorder=5,
                )
                ax.set_ylim(*ylim)
                ax.set_xlim(*x_range)
                if c == 0:
                    ax.set_ylabel(f"m = {m}\nfitted y")
                if r == 1:
                    ax.set_xlabel("x")
        handles = [
            Line2D(
                [],
                [],
                color="0.3",
                alpha=0.5,
                linewidth=0.6,
                label=f"fits to {n_curves} data sets",
            ),
            Line2D([], [], color="0.3", linewidth=1.8, label="mean of the kept fits"),
            Line2D([], [], color="black", linestyle=(0, (4, 2)), label="true line"),
        ]
        _style_legend(fig, handles)
        fig.suptitle(f"Degree-{degree} polynomial fits", fontsize=8)
    return fig


def fig_parabola_tail(
    draws: Mapping[str, np.ndarray],
    *,
    m: int = 3,
    degree: int = 2,
    coef: int = 2,
    lam: float = 1.0,
    scalings: Sequence[str] = SCALINGS,
    m_many: int | None = 100,
    n_curves: int = 30,
    intercept: float = 1.0,
    slope: float = 2.0,
    x_range: tuple[float, float] = (-1.0, 1.0),
) -> Figure:
    """Three points and a parabola: unbounded curvature, and the tail of its coefficient.

    Left: ``n_curves`` unpenalised parabolas, each through m = 3 points, with the true line
    (curves leave the y range and are clipped). Right: the empirical survival function
    P(|ŵ₂| > t) of the kept draws on log–log axes, for λ = 0 and for each scaling at
    λ = ``lam`` at the same m, and for λ = 0 at ``m_many`` points. A tail ∝ 1/t (the dotted
    guide) means that ŵ₂ has no finite mean; a penalty cuts the tail off.

    Parameters
    ----------
    draws : mapping
        ``draws.npz`` (see :func:`fig_fitted_curves`).
    m, degree, coef : int
        The cell (default: the parabola through three points) and the coefficient.
    lam : float, default=1.0
        λ of the penalised curves.
    scalings : sequence of str
    m_many : int or None, default=100
        Also show λ = 0 at this m (skipped if None or not in ``draws``).
    n_curves : int
    intercept, slope, x_range
        As in :func:`fig_fitted_curves`.

    Returns
    -------
    Figure
        Survival curves carry gids ``"tail:lambda0:<m>"`` and ``"tail:<scaling>:<m>"``.
    """
    scalings = _check_scalings(scalings)
    _check_member("coef", int(coef), range(degree + 1), f" (degree {degree})")
    with mpl.rc_context(_RC):
        fig = _new_figure(2.9)
        ax_fit, ax_tail = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.35]})

        x = np.linspace(*x_range, 201)
        truth = intercept + slope * x
        w0 = _draw_cell(draws, degree, m, 0.0, "m")
        w0_ok = w0[np.all(np.isfinite(w0), axis=1)]
        for w in w0_ok[:n_curves]:
            ax_fit.plot(
                x,
                np.polynomial.polynomial.polyval(x, w),
                color=UNPENALISED_COLOR,
                alpha=0.35,
                linewidth=0.6,
                gid="fit:lambda0",
            )
        ax_fit.plot(x, truth, color="black", linestyle=(0, (4, 2)), linewidth=1.0, gid="truth")
        ax_fit.set_ylim(truth.min() - 4, truth.max() + 4)
        ax_fit.set_xlim(*x_range)
        ax_fit.set_xlabel("x")
        ax_fit.set_ylabel("fitted y")
        ax_fit.set_title(f"λ = 0: degree {degree} through m = {m} points ({n_curves} data sets)")

        def survival(values, **kw):
            v = np.sort(np.abs(values[np.isfinite(values)]))
            if v.size == 0:
                return None
            # P(|ŵ| > t) = (n − i)/n for t in (v_(i−1), v_(i)): a step drawn "pre".
            p = 1.0 - np.arange(v.size) / v.size
            return ax_tail.step(v, p, where="pre", **kw)[0]

        sym = coef_symbol(coef)
        survival(
            w0[:, coef],
            color=UNPENALISED_COLOR,
            linewidth=1.4,
            gid=f"tail:lambda0:{m}",
            label=f"λ = 0, m = {m}",
        )
        if m_many is not None and int(m_many) in [int(v) for v in np.asarray(draws["m"])]:
            wm = _draw_cell(draws, degree, int(m_many), 0.0, "m")
            survival(
                wm[:, coef],
                color="0.5",
                linewidth=1.6,
                linestyle=(0, (3, 1, 1, 1)),
                gid=f"tail:lambda0:{int(m_many)}",
                label=f"λ = 0, m = {int(m_many)}",
                zorder=4,
            )
        for s in scalings:
            ws = _draw_cell(draws, degree, m, lam, s)
            survival(
                ws[:, coef],
                color=SCALING_COLORS[s],
                linewidth=1.1,
                gid=f"tail:{s}:{m}",
                label=f"{SCALING_LABELS[s]}, λ = {compact(lam)}, m = {m}",
            )
        ax_tail.set_xscale("log")
        ax_tail.set_yscale("log")
        # Start where the lightest-tailed curve has 90 % of its mass above: the far left
        # (tiny penalised coefficients) says nothing about the tail.
        lows = [
            np.quantile(np.abs(line.get_xdata()), 0.1)
            for line in ax_tail.get_lines()
            if line.get_gid() and line.get_gid().startswith("tail:")
        ]
        if lows:
            ax_tail.set_xlim(left=min(lows) / 2)
        # The 1/t guide through the λ = 0 curve at its 10 % point.
        v = np.sort(np.abs(w0_ok[:, coef]))
        if v.size >= 20:
            t10 = v[int(0.9 * v.size)]
            ts = np.array([t10 / 3, t10 * 30])
            ax_tail.plot(
                ts,
                0.1 * t10 / ts * 2.5,
                color=GUIDE_COLOR,
                linestyle=":",
                linewidth=1.0,
                gid="guide",
                label="∝ 1/t (no finite mean)",
            )
            ax_tail.set_ylim(0.5 / v.size, 1.5)
        ax_tail.set_xlabel(f"t (threshold on |{sym}|, dimensionless)")
        ax_tail.set_ylabel(f"P(|{sym}| > t)  (fraction of data sets)")
        ax_tail.set_title(
            f"Tail of the x{superscript(coef)} coefficient, degree {degree}, m = {m}"
        )
        _every_decade(ax_tail.xaxis)
        _every_decade(ax_tail.yaxis)
        # Below the panels: inside, the labels would run into the steep penalised curves.
        fig.legend(
            handles=ax_tail.get_legend_handles_labels()[0],
            loc="outside lower center",
            ncols=3,
            handlelength=2.2,
            columnspacing=1.4,
        )
    return fig


# --- bias, variance, MSE ---------------------------------------------------------------


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
    with mpl.rc_context(_RC):
        fig, axes, rows, coefs, scalings = _measure_grid(
            summary,
            degree=degree,
            coefs=coefs,
            lam=lam,
            scalings=scalings,
            height_per_row=1.75,
        )
        w_true = rows.groupby("coef")["true"].first() if "true" in rows else {}
        for r, j in enumerate(coefs):
            for c, s in enumerate(scalings):
                ax = axes[r, c]
                d = rows[(rows["scaling"] == s) & (rows["coef"] == j)].sort_values("m")
                d = d[usable_cells(d, 2)]
                ax.axhline(0.0, color="0.5", linewidth=0.6, zorder=1)
                fin = d[np.isfinite(d["bias"])]
                _errorbar(
                    ax,
                    fin["m"],
                    fin["bias"],
                    z * fin["bias_mcse"],
                    color=SCALING_COLORS[s],
                    marker=SCALING_MARKERS[s],
                    gid=f"mc:{s}:{j}",
                )
                if "bias_rb" in d:
                    ax.plot(
                        d["m"],
                        d["bias_rb"],
                        color=SCALING_COLORS[s],
                        linewidth=0.9,
                        zorder=2,
                        gid=f"rb:{s}:{j}",
                    )
                if "bias_asym" in d:
                    ax.plot(
                        d["m"],
                        d["bias_asym"],
                        color=THEORY_COLOR,
                        linewidth=0.9,
                        linestyle=(0, (4, 2)),
                        zorder=2.5,
                        gid=f"theory:{s}:{j}",
                    )
            true = f" (true {coef_symbol(j, hat=False)} = {w_true[j]:g})" if j in w_true else ""
            axes[r, 0].set_ylabel(f"bias of {coef_symbol(j)}{true}")
        handles = [_mc_handle(f"Monte Carlo ± {z:g} MCSE")]
        if "bias_rb" in rows:
            handles.append(_rb_handle())
        if "bias_asym" in rows:
            handles.append(_theory_handle())
        _style_legend(fig, handles)
        fig.suptitle(f"Bias, degree {degree}, λ = {compact(lam)}", fontsize=8)
    return fig


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
    what = "SD" if sd else "variance"
    with mpl.rc_context(_RC):
        fig, axes, rows, coefs, scalings = _measure_grid(
            summary,
            degree=degree,
            coefs=coefs,
            lam=lam,
            scalings=scalings,
            height_per_row=1.75,
        )
        tf = np.sqrt if sd else (lambda v: v)
        for r, j in enumerate(coefs):
            for c, s in enumerate(scalings):
                ax = axes[r, c]
                ax.set_yscale("log")
                d = rows[(rows["scaling"] == s) & (rows["coef"] == j)].sort_values("m")
                d = d[usable_cells(d, 4)]
                col, err = ("sd", "sd_mcse") if sd else ("var", "var_mcse")
                fin = d[np.isfinite(d[col]) & (d[col] > 0)]
                _errorbar(
                    ax,
                    fin["m"],
                    fin[col],
                    z * fin[err],
                    color=SCALING_COLORS[s],
                    marker=SCALING_MARKERS[s],
                    gid=f"mc:{s}:{j}",
                    lower_positive=True,
                )
                if "var_rb" in d:
                    ax.plot(
                        d["m"],
                        tf(d["var_rb"]),
                        color=SCALING_COLORS[s],
                        linewidth=0.9,
                        zorder=2,
                        gid=f"rb:{s}:{j}",
                    )
                if "var_asym" in d:
                    ax.plot(
                        d["m"],
                        tf(d["var_asym"]),
                        color=THEORY_COLOR,
                        linewidth=0.9,
                        linestyle=(0, (4, 2)),
                        zorder=2.5,
                        gid=f"theory:{s}:{j}",
                    )
                _slope_guide(
                    ax, fin["m"], fin[col], -0.5 if sd else -1.0, "∝ 1/√m" if sd else "∝ 1/m"
                )
            axes[r, 0].set_ylabel(f"{what} of {coef_symbol(j)}")
        handles = [_mc_handle(f"Monte Carlo ± {z:g} MCSE")]
        if "var_rb" in rows:
            handles.append(_rb_handle())
        if "var_asym" in rows:
            handles.append(_theory_handle())
        handles.append(
            Line2D(
                [],
                [],
                color=GUIDE_COLOR,
                linestyle=":",
                label="slope guide" if not sd else "slope guide ∝ 1/√m",
            )
        )
        _style_legend(fig, handles)
        fig.suptitle(f"{what.capitalize()}, degree {degree}, λ = {compact(lam)}", fontsize=8)
    return fig


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
    with mpl.rc_context(_RC):
        fig, axes, rows, coefs, scalings = _measure_grid(
            summary,
            degree=degree,
            coefs=coefs,
            lam=lam,
            scalings=scalings,
            height_per_row=1.75,
        )
        for r, j in enumerate(coefs):
            top = []
            for c, s in enumerate(scalings):
                ax = axes[r, c]
                ax.set_yscale("log")
                d = rows[(rows["scaling"] == s) & (rows["coef"] == j)].sort_values("m")
                d = d[usable_cells(d, 4)]
                fin = d[np.isfinite(d["mse"]) & (d["mse"] > 0)]
                color = SCALING_COLORS[s]
                _errorbar(
                    ax,
                    fin["m"],
                    fin["mse"],
                    z * fin["mse_mcse"],
                    color=color,
                    marker=SCALING_MARKERS[s],
                    gid=f"mc:{s}:{j}",
                    lower_positive=True,
                )
                ax.plot(
                    d["m"],
                    d["bias"] ** 2,
                    color=color,
                    linestyle=(0, (5, 2)),
                    linewidth=1.0,
                    gid=f"bias2:{s}:{j}",
                )
                ax.plot(
                    d["m"],
                    d["var"],
                    color=color,
                    linestyle=(0, (1, 1.2)),
                    linewidth=1.3,
                    gid=f"var:{s}:{j}",
                )
                top.extend(fin["mse"].tolist() + d["var"][d["var"] > 0].tolist())
            if top:
                hi = max(top)
                lo = max(min(top), hi * 1e-6)
                axes[r, 0].set_ylim(lo / 3, hi * 3)
            axes[r, 0].set_ylabel(f"MSE of {coef_symbol(j)}")
        handles = [
            _mc_handle(f"MSE (Monte Carlo ± {z:g} MCSE)"),
            Line2D([], [], color="0.3", linestyle=(0, (5, 2)), label="bias²"),
            Line2D([], [], color="0.3", linestyle=(0, (1, 1.2)), linewidth=1.3, label="variance"),
        ]
        _style_legend(fig, handles)
        fig.suptitle(f"MSE = bias² + variance, degree {degree}, λ = {compact(lam)}", fontsize=8)
    return fig


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
    scalings = _check_scalings(scalings)
    with mpl.rc_context(_RC):
        rows = _cell_rows(summary, degree, lam)
        coefs = [int(j) for j in coefs]
        for j in coefs:
            _check_member("coefs", j, range(degree + 1), f" (degree {degree})")
        fig = _new_figure(2.9)
        axes = fig.subplots(1, len(coefs), sharex=True, sharey=True, squeeze=False)[0]
        has_theory = {"bias_asym", "var_asym"} <= set(rows.columns)
        for ax, j in zip(axes, coefs, strict=True):
            _log_m_axis(ax, rows["m"])
            ax.set_yscale("log")
            for s in scalings:
                d = rows[(rows["scaling"] == s) & (rows["coef"] == j)].sort_values("m")
                d = d[usable_cells(d, 2)]
                ratio = d["bias"].abs() / d["sd"]
                err = z * d["bias_mcse"] / d["sd"]
                fin = np.isfinite(ratio) & (ratio > 0)
                _errorbar(
                    ax,
                    d["m"][fin],
                    ratio[fin],
                    err[fin],
                    color=SCALING_COLORS[s],
                    marker=SCALING_MARKERS[s],
                    gid=f"mc:{s}:{j}",
                    lower_positive=True,
                )
                if has_theory:
                    th = d["bias_asym"].abs() / np.sqrt(d["var_asym"])
                    ax.plot(
                        d["m"],
                        th,
                        color=SCALING_COLORS[s],
                        linestyle=(0, (4, 2)),
                        linewidth=0.9,
                        gid=f"theory:{s}:{j}",
                    )
            ax.set_title(f"{coef_symbol(j)} (coefficient of x{superscript(j)})")
            ax.set_xlabel(_M_LABEL)
        axes[0].set_ylabel("|bias| / SD  (dimensionless)")
        handles = [
            Line2D(
                [],
                [],
                color=SCALING_COLORS[s],
                marker=SCALING_MARKERS[s],
                linestyle="none",
                label=SCALING_LABELS[s],
            )
            for s in scalings
        ]
        if has_theory:
            handles.append(
                Line2D(
                    [],
                    [],
                    color="0.3",
                    linestyle=(0, (4, 2)),
                    linewidth=0.9,
                    label="large-m theory",
                )
            )
        _style_legend(fig, handles, ncols=3 if len(handles) > 4 else len(handles))
        fig.suptitle(
            f"Bias relative to the standard deviation, degree {degree}, λ = {compact(lam)}",
            fontsize=8,
        )
    return fig


# --- sampling distributions -----------------------------------------------------------


def fig_sampling_distributions(
    draws: Mapping[str, np.ndarray],
    *,
    degree: int = 3,
    coefs: Sequence[int] = (2, 3),
    lam: float = 1.0,
    ms: Sequence[int] | None = (10, 100, 1000, 10000),
    scalings: Sequence[str] = SCALINGS,
    central: float = 0.98,
) -> Figure:
    """Sampling distributions of coefficients across m: violins of the kept draws.

    Rows: coefficients (default the x² and x³ coefficients, whose true value is 0).
    Columns: λ = 0 and each scaling at λ = ``lam``. Each violin is the kernel density of the
    central ``central`` fraction of the kept draws of one cell (the extreme tails are cut so
    that heavy-tailed cells do not set the scale); the black bar marks the mean of all kept
    draws, the grey line the true value. The y range of a row is set by the penalised
    cells; a violin that runs beyond it (λ = 0 at small m) is cut and marked with an
    arrowhead at the edge. Not identifiable cells are left empty.

    Parameters
    ----------
    draws : mapping
        ``draws.npz`` (see :func:`fig_fitted_curves`).
    degree : int, default=3
    coefs : sequence of int, default=(2, 3)
    lam : float, default=1.0
    ms : sequence of int or None
        The m values to show (those not in ``draws`` are skipped); None for all.
    scalings : sequence of str
    central : float, default=0.98

    Returns
    -------
    Figure
        Violin bodies carry gids ``"violin:<column>:<j>:<m>"``, the means
        ``"mean:<column>:<j>:<m>"``.
    """
    scalings = _check_scalings(scalings)
    coef_arr, all_ms, _, _ = _draws_axes(draws, degree)
    have = [int(v) for v in all_ms]
    ms = have if ms is None else [int(v) for v in ms if int(v) in have]
    if not ms:
        raise ValueError(f"The 'ms' parameter must name m values among {have}. Got none.")
    coefs = [int(j) for j in coefs]
    for j in coefs:
        _check_member("coefs", j, range(degree + 1), f" (degree {degree})")
    columns = [("lambda0", 0.0)] + [(s, float(lam)) for s in scalings]
    q = (1 - central) / 2

    # cells[(col, j, m)] = (central draws, mean of all draws) or None
    cells = {}
    for col, lam_c in columns:
        for m in ms:
            w = _draw_cell(draws, degree, m, lam_c, col if col != "lambda0" else "m")
            for j in coefs:
                v = w[:, j]
                v = v[np.isfinite(v)]
                if v.size < 2:
                    cells[col, j, m] = None
                    continue
                lo, hi = np.quantile(v, [q, 1 - q])
                cells[col, j, m] = (v[(v >= lo) & (v <= hi)], float(v.mean()))
    with mpl.rc_context(_RC):
        fig = _new_figure(0.75 + 1.75 * len(coefs))
        axes = fig.subplots(len(coefs), len(columns), sharex=True, sharey="row", squeeze=False)
        pos = np.arange(len(ms))
        for r, j in enumerate(coefs):
            pen = [
                c[0]
                for (col, jj, _), c in cells.items()
                if jj == j and c is not None and col != "lambda0"
            ]
            ylim = None
            if pen:
                lo = min(float(v.min()) for v in pen)
                hi = max(float(v.max()) for v in pen)
                pad = 0.08 * (hi - lo) if hi > lo else 1.0
                ylim = (min(lo, 0.0) - pad, max(hi, 0.0) + pad)
            for c, (col, lam_c) in enumerate(columns):
                ax = axes[r, c]
                color = UNPENALISED_COLOR if col == "lambda0" else SCALING_COLORS[col]
                if j >= 2:
                    ax.axhline(0.0, color="0.5", linewidth=0.6, zorder=1)
                for p, m in zip(pos, ms, strict=True):
                    cell = cells[col, j, m]
                    if cell is None:
                        ax.text(
                            p,
                            0.5,
                            "not\nidentifiable",
                            transform=ax.get_xaxis_transform(),
                            ha="center",
                            va="center",
                            fontsize=6,
                            color="0.4",
                            rotation=90,
                        )
                        continue
                    inner, mean = cell
                    if np.ptp(inner) > 0:
                        parts = ax.violinplot(inner, positions=[p], widths=0.8, showextrema=False)
                        for body in parts["bodies"]:
                            body.set_facecolor(_shade(color, 0.55))
                            body.set_edgecolor(color)
                            body.set_linewidth(0.6)
                            body.set_alpha(1.0)
                            body.set_gid(f"violin:{col}:{j}:{m}")
                    ax.plot(
                        [p - 0.25, p + 0.25],
                        [mean] * 2,
                        color="black",
                        linewidth=1.2,
                        solid_capstyle="butt",
                        zorder=4,
                        gid=f"mean:{col}:{j}:{m}",
                    )
                    if ylim is not None:
                        # Cut by the y range: an arrowhead at the edge it runs through.
                        for beyond, edge, mk in (
                            (inner.max() > ylim[1], 1.0, "^"),
                            (inner.min() < ylim[0], 0.0, "v"),
                        ):
                            if beyond:
                                ax.plot(
                                    p,
                                    edge,
                                    marker=mk,
                                    color=color,
                                    markersize=4.5,
                                    transform=ax.get_xaxis_transform(),
                                    clip_on=False,
                                    zorder=5,
                                    gid=f"clipped:{col}:{j}:{m}",
                                )
                if ylim is not None:
                    ax.set_ylim(*ylim)
                ax.set_xticks(pos, [compact(m) for m in ms])
                ax.set_xlim(-0.6, len(ms) - 0.4)
                ax.grid(axis="x", visible=False)
                if r == len(coefs) - 1:
                    ax.set_xlabel(_M_LABEL)
                if r == 0:
                    title = (
                        "λ = 0\n(every scaling)"
                        if col == "lambda0"
                        else (f"{col}: {PENALTY_AS_WRITTEN[col]}\nλ = {compact(lam_c)}")
                    )
                    ax.set_title(title, color=color)
            axes[r, 0].set_ylabel(f"{coef_symbol(j)} (coefficient of x{superscript(j)})")
        handles = [
            Line2D([], [], color="black", linewidth=1.2, label="mean of the kept draws"),
            Line2D([], [], color="0.5", linewidth=0.6, label="true value 0"),
        ]
        _style_legend(fig, handles)
        fig.suptitle(
            f"Sampling distributions, degree {degree}: central {central:.0%} of "
            f"the {coef_arr.shape[3]} kept draws per cell",
            fontsize=8,
        )
    return fig


# --- risk and tuning ---------------------------------------------------------------------


def _scalar_alpha_limit(alpha_limit, degree: int) -> float | None:
    if alpha_limit is None:
        return None
    if isinstance(alpha_limit, pd.DataFrame):
        d = alpha_limit.set_index("degree")["alpha_limit"]
        return float(d.loc[degree]) if degree in d.index else None
    if isinstance(alpha_limit, pd.Series | Mapping):
        return float(alpha_limit[degree]) if degree in alpha_limit else None
    return float(alpha_limit)


def fig_risk_vs_lambda(
    risk_curves: pd.DataFrame,
    risk: pd.DataFrame | None = None,
    tuning: pd.DataFrame | None = None,
    *,
    degree: int = 3,
    ms: Sequence[int] | None = None,
    scalings: Sequence[str] = SCALINGS,
    method: str = "conditional",
    z: float = 1.96,
    curve_label: str = "expected risk",
) -> Figure:
    """Expected prediction risk against λ at several m, one panel per scaling.

    Lines: the risk on a fine λ grid (``risk_curves``), darker for larger m, labelled with
    m at their left end (except where the optimum sits there). Circles with a black edge:
    the optimum λ*(m) of ``tuning`` (rows of ``method``), placed on the curve; the minimum
    of the curve itself if ``tuning`` has no such row. Open markers with ±z·MCSE bars: the
    simulated risk of ``risk.csv`` at the grid λ > 0 (λ = 0 has no place on a log axis;
    cells without a finite fourth moment are left out). Under ``m`` the optima line up at
    one λ; under ``none`` they move left like 1/m.

    Parameters
    ----------
    risk_curves : DataFrame
        Columns ``m, degree, scaling, lambda, risk``.
    risk : DataFrame, optional
        ``risk.csv`` (columns ``m, degree, lambda, scaling, risk, risk_mcse``, ``status``).
    tuning : DataFrame, optional
        Columns ``m, degree, scaling, method, lambda_opt, risk_opt``.
    degree : int, default=3
    ms : sequence of int or None, default=None
        The m values to draw (those without a curve are skipped); None for every m of
        ``risk_curves``.
    scalings : sequence of str
    method : str, default="conditional"
        Which tuning rows mark the optimum: the one the curves were computed by (the exact
        risk averaged over simulated designs is ``"conditional"``).
    z : float, default=1.96
    curve_label : str, default="expected risk"
        Legend entry of the curves.

    Returns
    -------
    Figure
        gids ``"curve:<scaling>:<m>"``, ``"opt:<scaling>:<m>"``, ``"mc:<scaling>:<m>"``.
    """
    scalings = _check_scalings(scalings)
    rc = risk_curves[risk_curves["degree"] == degree]
    if rc.empty:
        raise ValueError(
            f"The 'degree' parameter must be one of {sorted(risk_curves['degree'].unique())} "
            f"(the degrees in risk_curves). Got {degree!r} instead."
        )
    have = sorted(set(rc["m"].astype(int)))
    ms = have if ms is None else [int(m) for m in ms if int(m) in have]
    if not ms:
        raise ValueError(
            f"The 'ms' parameter must name m values among {sorted(rc['m'].unique())}. Got none."
        )
    with mpl.rc_context(_RC):
        fig = _new_figure(3.4)
        axes = fig.subplots(1, len(scalings), sharex=True, sharey=True, squeeze=False)[0]
        shades = np.linspace(0.35, 1.0, len(ms)) if len(ms) > 1 else [1.0]
        for ax, s in zip(axes, scalings, strict=True):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(SCALING_LABELS[s], color=SCALING_COLORS[s])
            for m, t in zip(ms, shades, strict=True):
                color = _shade(SCALING_COLORS[s], t) if t < 1 else SCALING_COLORS[s]
                color = tuple(0.85 * np.asarray(to_rgb(color)))  # a little darker for print
                d = rc[(rc["scaling"] == s) & (rc["m"] == m)].sort_values("lambda")
                d = d[(d["lambda"] > 0) & np.isfinite(d["risk"])]
                if d.empty:
                    continue
                ax.plot(d["lambda"], d["risk"], color=color, linewidth=1.1, gid=f"curve:{s}:{m}")
                lam_opt = None
                if tuning is not None:
                    tu = tuning[
                        (tuning["degree"] == degree)
                        & (tuning["scaling"] == s)
                        & (tuning["m"] == m)
                        & (tuning["method"] == method)
                    ]
                    lam_t = tu["lambda_opt"].to_numpy(dtype=float)
                    if len(lam_t) and np.isfinite(lam_t[0]) and lam_t[0] > 0:
                        lam_opt = float(lam_t[0])
                if lam_opt is None:
                    lam_opt = float(d["lambda"].iloc[int(np.argmin(d["risk"].to_numpy()))])
                opt = None
                if d["lambda"].min() <= lam_opt <= d["lambda"].max():
                    # On the curve, so that the marker sits on the line it belongs to.
                    opt = (
                        lam_opt,
                        float(
                            np.exp(
                                np.interp(np.log(lam_opt), np.log(d["lambda"]), np.log(d["risk"]))
                            )
                        ),
                    )
                # Label the curve at its left end, unless its optimum is there (the label
                # spans about two decades of λ); the levels are the same in every panel.
                lam_left = float(d["lambda"].iloc[0])
                if opt is None or opt[0] > lam_left * 10**2.5:
                    ax.annotate(
                        f"m = {compact(m)}",
                        (lam_left, d["risk"].iloc[0]),
                        xytext=(2, 2),
                        textcoords="offset points",
                        ha="left",
                        va="bottom",
                        fontsize=6.5,
                        color=color,
                    )
                if opt is not None:
                    ax.plot(
                        *opt,
                        marker="o",
                        markersize=5,
                        color=color,
                        markeredgecolor="black",
                        markeredgewidth=0.8,
                        linestyle="none",
                        zorder=5,
                        gid=f"opt:{s}:{m}",
                    )
                if risk is not None:
                    rr = risk[
                        (risk["degree"] == degree)
                        & (risk["scaling"] == s)
                        & (risk["m"] == m)
                        & (risk["lambda"] > 0)
                    ]
                    rr = rr[usable_cells(rr, 4) & np.isfinite(rr["risk"]).to_numpy()]
                    if len(rr):
                        cont = ax.errorbar(
                            rr["lambda"],
                            rr["risk"],
                            yerr=z * rr["risk_mcse"],
                            color=color,
                            marker=SCALING_MARKERS[s],
                            markersize=3.5,
                            markerfacecolor="white",
                            linestyle="none",
                            elinewidth=0.8,
                            zorder=4,
                        )
                        cont.lines[0].set_gid(f"mc:{s}:{m}")
            _every_decade(ax.yaxis)
            ax.set_xlabel("λ as written")
        axes[0].set_ylabel("expected prediction risk E[R(ŵ)]\n(squared units of y)")
        handles = [
            Line2D([], [], color="0.3", label=curve_label),
            Line2D(
                [],
                [],
                color="0.6",
                marker="o",
                markeredgecolor="black",
                markersize=5,
                linestyle="none",
                label="optimum λ*",
            ),
        ]
        if risk is not None:
            handles.append(
                Line2D(
                    [],
                    [],
                    color="0.3",
                    marker="o",
                    markerfacecolor="white",
                    linestyle="none",
                    label=f"Monte Carlo ± {z:g} MCSE",
                )
            )
        _style_legend(fig, handles)
        fig.suptitle(f"Prediction risk against λ, degree {degree} (darker: larger m)", fontsize=8)
    return fig


def fig_tuned_lambda(
    tuning: pd.DataFrame,
    alpha_limit=None,
    *,
    degree: int = 3,
    scalings: Sequence[str] = SCALINGS,
    methods: Sequence[str] = ("asymptotic", "conditional"),
) -> Figure:
    """The risk-optimal λ*(m) per scaling (left) and α*(m) (right), against m.

    The sum-form α* depends on m only, not on the scaling (the scalings reparametrise the
    same fits), so the right panel draws it once when the scalings agree (to 1e-6) and per
    scaling otherwise, with the limit α*_∞ as a horizontal line. λ* = α*/(m·c(1)): constant
    in the limit under ``m``, ∝ 1/√m under ``sqrt-m``, ∝ 1/m under ``none`` and ``k``.
    Lines: the first of ``methods`` (default the large-m theory); markers: the others (the
    exact conditional risk averaged over simulated designs). Boundary optima (λ* = 0 or ∞)
    are left out.

    Parameters
    ----------
    tuning : DataFrame
        Columns ``m, degree, scaling, method, lambda_opt, alpha_opt``.
    alpha_limit : float, Series or mapping indexed by degree, DataFrame, or None
        α*_∞; a DataFrame needs columns ``degree, alpha_limit``. None: the column
        ``alpha_limit`` of ``tuning`` if it has one, else no limit line.
    degree : int, default=3
    scalings : sequence of str
    methods : sequence of str
        Methods to draw (those absent from ``tuning`` are skipped).

    Returns
    -------
    Figure
        gids ``"lambda:<method>:<scaling>"``, ``"alpha:<method>:<scaling or all>"`` and
        ``"alpha_limit"``.
    """
    scalings = _check_scalings(scalings)
    tu = tuning[tuning["degree"] == degree]
    if tu.empty:
        raise ValueError(
            f"The 'degree' parameter must be one of {sorted(tuning['degree'].unique())} "
            f"(the degrees in tuning). Got {degree!r} instead."
        )
    methods = [m for m in methods if m in set(tu["method"])]
    if alpha_limit is None and "alpha_limit" in tu.columns:
        alpha_limit = float(tu["alpha_limit"].iloc[0])
    a_inf = _scalar_alpha_limit(alpha_limit, degree)
    with mpl.rc_context(_RC):
        fig = _new_figure(3.0)
        ax_l, ax_a = fig.subplots(1, 2, sharex=True)
        for ax in (ax_l, ax_a):
            _log_m_axis(ax, tu["m"])
            ax.set_xlabel(_M_LABEL)
        ax_l.set_yscale("log")
        _every_decade(ax_l.yaxis)

        def series(meth, s, col):
            d = tu[(tu["method"] == meth) & (tu["scaling"] == s)].sort_values("m")
            d = d[np.isfinite(d[col]) & (d[col] > 0)]
            return d["m"].to_numpy(), d[col].to_numpy()

        for i, meth in enumerate(methods):
            line = i == 0
            style = (
                dict(linestyle="-", marker=None)
                if line
                else dict(linestyle="none", markerfacecolor="white", markersize=4)
            )
            for s in scalings:
                x, y = series(meth, s, "lambda_opt")
                ax_l.plot(
                    x,
                    y,
                    color=SCALING_COLORS[s],
                    linewidth=1.2,
                    **({"marker": SCALING_MARKERS[s], **style} if not line else style),
                    gid=f"lambda:{meth}:{s}",
                )
            # α* is the same for every scaling: one line unless the table says otherwise.
            curves = {s: series(meth, s, "alpha_opt") for s in scalings}
            ref_x, ref_y = next(iter(curves.values()))
            same = all(
                len(x) == len(ref_x) and np.allclose(y, ref_y, rtol=1e-6)
                for x, y in curves.values()
            )
            targets = (
                {"all": (ref_x, ref_y, "0.2")}
                if same
                else {s: (*curves[s], SCALING_COLORS[s]) for s in scalings}
            )
            for key, (x, y, color) in targets.items():
                kw = style if line else {**style, "marker": "o"}
                ax_a.plot(x, y, color=color, linewidth=1.2, gid=f"alpha:{meth}:{key}", **kw)
        if a_inf is not None and np.isfinite(a_inf):
            for ax, gid in ((ax_a, "alpha_limit"), (ax_l, "lambda_limit_m")):
                if ax is ax_l and "m" not in scalings:
                    continue
                ax.axhline(
                    a_inf,
                    color=THEORY_COLOR,
                    linestyle=(0, (4, 2)),
                    linewidth=0.9,
                    zorder=1,
                    gid=gid,
                )
            ax_a.annotate(
                rf"$\alpha^*_\infty$ = {significant(a_inf, 3)}",
                (1.0, a_inf),
                xycoords=("axes fraction", "data"),
                xytext=(-2, 3),
                textcoords="offset points",
                ha="right",
                va="bottom",
                fontsize=7,
            )
        ax_a.set_ylim(bottom=0)
        ax_l.set_ylabel("optimal λ* as written (dimensionless)")
        ax_a.set_ylabel("optimal sum-form α* = m·c(λ*)\n(dimensionless)")
        ax_l.set_title("λ*(m): what to set under each scaling")
        ax_a.set_title("α*(m): the same for every scaling")
        handles = [
            Line2D([], [], color=SCALING_COLORS[s], linewidth=1.2, label=SCALING_LABELS[s])
            for s in scalings
        ]
        names = {
            "asymptotic": "large-m theory",
            "conditional": "exact risk over simulated designs",
        }
        for i, meth in enumerate(methods):
            if i == 0:
                handles.append(
                    Line2D([], [], color="0.2", label=f"{names.get(meth, meth)} (lines)")
                )
            else:
                handles.append(
                    Line2D(
                        [],
                        [],
                        color="0.2",
                        marker="o",
                        markerfacecolor="white",
                        linestyle="none",
                        label=f"{names.get(meth, meth)} (markers)",
                    )
                )
        if a_inf is not None and np.isfinite(a_inf):
            handles.append(_theory_handle(r"limit $\alpha^*_\infty$ as m → ∞"))
        _style_legend(fig, handles, ncols=3 if len(handles) > 4 else len(handles))
        fig.suptitle(f"Risk-optimal penalty, degree {degree}", fontsize=8)
    return fig
