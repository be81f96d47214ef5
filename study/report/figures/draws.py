"""Figures of the kept draws (``draws.npz``): fitted curves, the parabola's tail and the
sampling distributions of the coefficients."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from study.numbers import alpha_label, compact, superscript
from study.report.figures._select import (
    cell_scaling,
    check_coefs,
    check_member,
    check_scalings,
    draw_cell,
    draws_axes,
    identifiable,
    panel_columns,
)
from study.report.figures._style import (
    DASHED,
    GUIDE_COLOR,
    M_LABEL,
    RC,
    SCALING_COLORS,
    SCALING_LABELS,
    UNPENALISED_COLOR,
    coef_symbol,
    column_color,
    column_title,
    every_decade,
    new_figure,
    note,
    shade,
    style_legend,
)
from study.scaling import SCALINGS
from study.scaling import alpha as scaling_alpha

# --- fitted curves ------------------------------------------------------------------------


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
    scalings = check_scalings(scalings)
    x = np.linspace(*x_range, 201)
    truth = intercept + slope * x
    if ylim is None:
        ylim = (truth.min() - 2.5, truth.max() + 2.5)
    columns = panel_columns(scalings, lam)
    with mpl.rc_context(RC):
        fig = new_figure(3.9)
        axes = fig.subplots(2, len(columns), sharex=True, sharey=True, squeeze=False)
        for c, (col, lam_c) in enumerate(columns):
            axes[0, c].set_title(column_title(col, lam_c), color=column_color(col))
            for r, m in enumerate([int(m_small), int(m_large)]):
                ax = axes[r, c]
                _curve_panel(ax, draws, degree, m, col, lam_c, x, truth, n_curves)
                ax.set_ylim(*ylim)
                ax.set_xlim(*x_range)
                if c == 0:
                    ax.set_ylabel(f"m = {m}\nfitted y")
                if r == 1:
                    ax.set_xlabel("x")
        style_legend(fig, _curve_handles(n_curves))
        fig.suptitle(f"Degree-{degree} polynomial fits", fontsize=8)
    return fig


def _curve_panel(ax, draws, degree, m, col, lam, x, truth, n_curves) -> None:
    """One cell: its α, its fits and their mean (or "not identifiable"), the true line."""
    w = identifiable(draw_cell(draws, degree, m, lam, scaling=cell_scaling(col)))
    _alpha_box(ax, scaling_alpha(lam, m=m, degree=degree, scaling=cell_scaling(col)))
    _fits(ax, x, w, color=column_color(col), key=f"{col}:{m}", n_curves=n_curves)
    ax.plot(x, truth, color="black", linestyle=DASHED, linewidth=1.0, gid="truth", zorder=5)


def _curve_handles(n_curves: int) -> list[Line2D]:
    return [
        Line2D(
            [], [], color="0.3", alpha=0.5, linewidth=0.6, label=f"fits to {n_curves} data sets"
        ),
        Line2D([], [], color="0.3", linewidth=1.8, label="mean of the kept fits"),
        Line2D([], [], color="black", linestyle=DASHED, label="true line"),
    ]


_WHITE_BOX = dict(boxstyle="square,pad=0.15", facecolor="white", edgecolor="none", alpha=0.8)


def _alpha_box(ax, a: float) -> None:
    """The cell's sum-form α in the top left corner, on a white box."""
    ax.text(
        0.04,
        0.96,
        f"α = {alpha_label(a)}",
        transform=ax.transAxes,
        ha="left",
        va="top",
        fontsize=7,
        zorder=6,
        bbox=_WHITE_BOX,
    )


def _fits(ax, x, w: np.ndarray, *, color, key: str, n_curves: int) -> None:
    """The first ``n_curves`` fits of the kept draws ``w`` and the mean of all of them."""
    if len(w) == 0:
        note(ax, 0.5, 0.5, "not identifiable", transform=ax.transAxes, fontsize=7)
        return
    # φ(x)ᵀw for every kept fit: polyval wants coefficients first.
    curves = np.polynomial.polynomial.polyval(x, w.T)
    for yc in curves[:n_curves]:
        ax.plot(x, yc, color=color, alpha=0.35, linewidth=0.6, gid=f"fit:{key}", zorder=2)
    ax.plot(x, curves.mean(axis=0), color=color, linewidth=1.8, gid=f"mean:{key}", zorder=4)


# --- the parabola's tail ------------------------------------------------------------------


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
    λ = ``lam`` at the same m, and for λ = 0 at ``m_many`` points. A tail ∝ log(t)/t (the
    dotted guide) means that ŵ₂ has no finite mean; a penalty cuts the tail off.

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
    scalings = check_scalings(scalings)
    check_member("coef", int(coef), range(degree + 1), f" (degree {degree})")
    with mpl.rc_context(RC):
        fig = new_figure(2.9)
        ax_fit, ax_tail = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.35]})
        w0 = draw_cell(draws, degree, m, 0.0, scaling="m")
        _parabolas(
            ax_fit, identifiable(w0)[:n_curves], intercept=intercept, slope=slope, x_range=x_range
        )
        ax_fit.set_title(f"λ = 0: degree {degree} through m = {m} points ({n_curves} data sets)")
        cell = {"m": m, "degree": degree, "coef": coef}
        _tails(ax_tail, draws, w0, lam=lam, scalings=scalings, m_many=m_many, **cell)
        _tail_axes(ax_tail, identifiable(w0)[:, coef], **cell)
        # Below the panels: inside, the labels would run into the steep penalised curves.
        fig.legend(
            handles=ax_tail.get_legend_handles_labels()[0],
            loc="outside lower center",
            ncols=3,
            handlelength=2.2,
            columnspacing=1.4,
        )
    return fig


def _parabolas(ax, ws: np.ndarray, *, intercept, slope, x_range) -> None:
    """The unpenalised fits ``ws`` and the true line, in a y range that clips them."""
    x = np.linspace(*x_range, 201)
    truth = intercept + slope * x
    for w in ws:
        ax.plot(
            x,
            np.polynomial.polynomial.polyval(x, w),
            color=UNPENALISED_COLOR,
            alpha=0.35,
            linewidth=0.6,
            gid="fit:lambda0",
        )
    ax.plot(x, truth, color="black", linestyle=DASHED, linewidth=1.0, gid="truth")
    ax.set_ylim(truth.min() - 4, truth.max() + 4)
    ax.set_xlim(*x_range)
    ax.set_xlabel("x")
    ax.set_ylabel("fitted y")


def _tails(ax, draws, w0, *, m, degree, coef, lam, scalings, m_many) -> None:
    """Survival curves of |ŵ_coef|: λ = 0 (draws w0) at m and at m_many, each scaling."""
    _survival(
        ax,
        w0[:, coef],
        color=UNPENALISED_COLOR,
        linewidth=1.4,
        gid=f"tail:lambda0:{m}",
        label=f"λ = 0, m = {m}",
    )
    if m_many is not None and int(m_many) in [int(v) for v in np.asarray(draws["m"])]:
        wm = draw_cell(draws, degree, int(m_many), 0.0, scaling="m")
        _survival(
            ax,
            wm[:, coef],
            color="0.5",
            linewidth=1.6,
            linestyle=(0, (3, 1, 1, 1)),
            gid=f"tail:lambda0:{int(m_many)}",
            label=f"λ = 0, m = {int(m_many)}",
            zorder=4,
        )
    for s in scalings:
        ws = draw_cell(draws, degree, m, lam, scaling=s)
        _survival(
            ax,
            ws[:, coef],
            color=SCALING_COLORS[s],
            linewidth=1.1,
            gid=f"tail:{s}:{m}",
            label=f"{SCALING_LABELS[s]}, λ = {compact(lam)}, m = {m}",
        )


def _survival(ax, values: np.ndarray, **kw):
    """The empirical P(|value| > t) of the finite values, as a step line (None if none)."""
    v = np.sort(np.abs(values[np.isfinite(values)]))
    if v.size == 0:
        return None
    # P(|ŵ| > t) = (n − i)/n for t in (v_(i−1), v_(i)): a step drawn "pre".
    p = 1.0 - np.arange(v.size) / v.size
    return ax.step(v, p, where="pre", **kw)[0]


def _tail_axes(ax, w0: np.ndarray, *, degree: int, m: int, coef: int) -> None:
    """Log–log axes for the survival curves, with the log(t)/t guide through the λ = 0
    draws w0: the three-point parabola's tail (m = 3, degree 2) has t·P(|ŵ₂| > t) growing
    like log t (the default study: 3.66 at t = 10, 7.08 at t = 100 over all 10,000
    replications), not flat as for 1/t."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    # Start where the lightest-tailed curve has 90 % of its mass above: the far left
    # (tiny penalised coefficients) says nothing about the tail.
    lows = [
        np.quantile(np.abs(line.get_xdata()), 0.1)
        for line in ax.get_lines()
        if line.get_gid() and line.get_gid().startswith("tail:")
    ]
    if lows:
        ax.set_xlim(left=min(lows) / 2)
    # The log(t)/t guide through the λ = 0 curve at its 10 % point (where log t > 0).
    v = np.sort(np.abs(w0))
    t10 = v[int(0.9 * v.size)] if v.size >= 20 else 0.0
    if t10 > 3:
        ts = np.geomspace(max(t10 / 3, 2.0), t10 * 30, 40)
        ax.plot(
            ts,
            0.1 * 2.5 * (t10 / ts) * np.log(ts) / np.log(t10),
            color=GUIDE_COLOR,
            linestyle=":",
            linewidth=1.0,
            gid="guide",
            label="∝ log(t)/t (no finite mean)",
        )
    if v.size >= 20:
        ax.set_ylim(0.5 / v.size, 1.5)
    sym = coef_symbol(coef)
    ax.set_xlabel(f"t (threshold on |{sym}|, dimensionless)")
    ax.set_ylabel(f"P(|{sym}| > t)  (fraction of data sets)")
    ax.set_title(f"Tail of the x{superscript(coef)} coefficient, degree {degree}, m = {m}")
    every_decade(ax.xaxis)
    every_decade(ax.yaxis)


# --- sampling distributions ---------------------------------------------------------------


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
    scalings = check_scalings(scalings)
    coef_arr, all_ms, _, _ = draws_axes(draws, degree)
    have = [int(v) for v in all_ms]
    ms = have if ms is None else [int(v) for v in ms if int(v) in have]
    if not ms:
        raise ValueError(f"The 'ms' parameter must name m values among {have}. Got none.")
    coefs = check_coefs(coefs, degree)
    columns = panel_columns(scalings, lam)
    cells = _central_cells(draws, degree, columns, ms, coefs, central)
    with mpl.rc_context(RC):
        fig = new_figure(0.75 + 1.75 * len(coefs))
        axes = fig.subplots(len(coefs), len(columns), sharex=True, sharey="row", squeeze=False)
        for r, j in enumerate(coefs):
            ylim = _penalised_range(cells, j)
            for c, (col, lam_c) in enumerate(columns):
                ax = axes[r, c]
                _violins(ax, cells, col, j, ms, ylim)
                if ylim is not None:
                    ax.set_ylim(*ylim)
                ax.set_xticks(np.arange(len(ms)), [compact(m) for m in ms])
                ax.set_xlim(-0.6, len(ms) - 0.4)
                ax.grid(axis="x", visible=False)
                if r == len(coefs) - 1:
                    ax.set_xlabel(M_LABEL)
                if r == 0:
                    ax.set_title(column_title(col, lam_c), color=column_color(col))
            axes[r, 0].set_ylabel(f"{coef_symbol(j)} (coefficient of x{superscript(j)})")
        handles = [
            Line2D([], [], color="black", linewidth=1.2, label="mean of the kept draws"),
            Line2D([], [], color="0.5", linewidth=0.6, label="true value 0"),
        ]
        style_legend(fig, handles)
        fig.suptitle(
            f"Sampling distributions, degree {degree}: central {central:.0%} of "
            f"the {coef_arr.shape[3]} kept draws per cell",
            fontsize=8,
        )
    return fig


def _central_cells(draws, degree, columns, ms, coefs, central) -> dict:
    """``cells[(col, j, m)]``: (the central draws, the mean of all draws), or None if
    fewer than two draws are finite."""
    q = (1 - central) / 2
    cells = {}
    for col, lam_c in columns:
        for m in ms:
            w = draw_cell(draws, degree, m, lam_c, scaling=cell_scaling(col))
            for j in coefs:
                v = w[:, j]
                v = v[np.isfinite(v)]
                if v.size < 2:
                    cells[col, j, m] = None
                    continue
                lo, hi = np.quantile(v, [q, 1 - q])
                cells[col, j, m] = (v[(v >= lo) & (v <= hi)], float(v.mean()))
    return cells


def _penalised_range(cells: dict, j: int) -> tuple[float, float] | None:
    """The y range of row j: the penalised cells' central draws and 0, padded."""
    pen = [
        c[0] for (col, jj, _), c in cells.items() if jj == j and c is not None and col != "lambda0"
    ]
    if not pen:
        return None
    lo = min(float(v.min()) for v in pen)
    hi = max(float(v.max()) for v in pen)
    pad = 0.08 * (hi - lo) if hi > lo else 1.0
    return (min(lo, 0.0) - pad, max(hi, 0.0) + pad)


def _violins(ax, cells: dict, col: str, j: int, ms: list[int], ylim) -> None:
    """One panel: a violin and a mean bar per m, arrowheads where the y range cuts one."""
    color = column_color(col)
    if j >= 2:
        ax.axhline(0.0, color="0.5", linewidth=0.6, zorder=1)
    for p, m in zip(np.arange(len(ms)), ms, strict=True):
        key = f"{col}:{j}:{m}"
        cell = cells[col, j, m]
        if cell is None:
            note(
                ax,
                p,
                0.5,
                "not\nidentifiable",
                transform=ax.get_xaxis_transform(),
                fontsize=6,
                rotation=90,
            )
            continue
        inner, mean = cell
        if np.ptp(inner) > 0:
            parts = ax.violinplot(inner, positions=[p], widths=0.8, showextrema=False)
            for body in parts["bodies"]:
                body.set_facecolor(shade(color, 0.55))
                body.set_edgecolor(color)
                body.set_linewidth(0.6)
                body.set_alpha(1.0)
                body.set_gid(f"violin:{key}")
        ax.plot(
            [p - 0.25, p + 0.25],
            [mean] * 2,
            color="black",
            linewidth=1.2,
            solid_capstyle="butt",
            zorder=4,
            gid=f"mean:{key}",
        )
        if ylim is None:
            continue
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
                    gid=f"clipped:{key}",
                )
