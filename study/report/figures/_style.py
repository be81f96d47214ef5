"""The look shared by every figure: colours, markers and labels per scaling, the rc
settings, the figure, log axes, legends, error bars and slope guides."""

from __future__ import annotations

import matplotlib.ticker as mticker
import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from study.numbers import compact, subscript
from study.scaling import PENALTY_AS_WRITTEN, SCALINGS

# Okabe & Ito (2008), "Color universal design": distinguishable under every common form
# of colour-vision deficiency; the markers keep the scalings apart in greyscale print.
SCALING_COLORS: dict[str, str] = {
    "none": "#D55E00",  # vermillion
    "m": "#0072B2",  # blue
    "sqrt-m": "#009E73",  # bluish green
    "k": "#CC79A7",  # reddish purple
}
SCALING_MARKERS: dict[str, str] = {"none": "o", "m": "s", "sqrt-m": "^", "k": "D"}
# the name quoted, so that the scaling 'm' is not read as the sample size m
SCALING_LABELS: dict[str, str] = {s: f"‘{s}’: {PENALTY_AS_WRITTEN[s]}" for s in SCALINGS}
UNPENALISED_COLOR = "#000000"
THEORY_COLOR = "#000000"
GUIDE_COLOR = "0.45"

FIGURE_WIDTH = 6.5  # inches: the text width of a printed page

RC = {
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

M_LABEL = "m (training points)"
DASHED = (0, (4, 2))  # the large-m theory and the true line


def degree_colors(degrees) -> dict[int, tuple]:
    """One colour per degree (viridis, its lightest end left out: too pale on white)."""
    import matplotlib as mpl

    colors = mpl.colormaps["viridis"](np.linspace(0.0, 0.85, len(degrees)))
    return {int(k): tuple(c) for k, c in zip(degrees, colors, strict=True)}


def coef_symbol(j: int, *, hat: bool = True) -> str:
    """``"ŵ₂"`` (the estimate) or ``"w₂"`` for the coefficient of x^j."""
    return ("ŵ" if hat else "w") + subscript(int(j))


def column_color(col: str) -> str:
    """Colour of a column of panels: ``"lambda0"`` (the unpenalised fit) or a scaling."""
    return UNPENALISED_COLOR if col == "lambda0" else SCALING_COLORS[col]


def column_title(col: str, lam: float) -> str:
    """Title of a column of panels: λ = 0 (the same fit under every scaling) or a scaling."""
    if col == "lambda0":
        return "λ = 0\n(every scaling)"
    return f"{col}: {PENALTY_AS_WRITTEN[col]}\nλ = {compact(lam)}"


def new_figure(height: float, width: float = FIGURE_WIDTH) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def note(ax, x, y, text: str, **kw) -> None:
    """Grey text centred at (x, y), such as "not identifiable" where a cell has no fit."""
    ax.text(x, y, text, ha="center", va="center", color="0.4", **kw)


def shade(color: str, t: float) -> tuple[float, float, float]:
    """Mix ``color`` with white: t = 0 is white, t = 1 the colour itself."""
    r, g, b = to_rgb(color)
    return (1 - t + t * r, 1 - t + t * g, 1 - t + t * b)


def log_m_axis(ax, ms) -> None:
    ax.set_xscale("log")
    lo, hi = float(np.min(ms)), float(np.max(ms))
    ax.set_xlim(lo / 1.5, hi * 1.5)
    every_decade(ax.xaxis)


def every_decade(axis) -> None:
    """A labelled tick at every power of ten (matplotlib thins them out on narrow panels)."""
    axis.set_major_locator(mticker.LogLocator(base=10, numticks=30))
    axis.set_minor_locator(mticker.LogLocator(base=10, subs=np.arange(2, 10), numticks=30))
    axis.set_minor_formatter(mticker.NullFormatter())


def style_legend(fig: Figure, handles: list, *, ncols: int | None = None) -> None:
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=ncols or len(handles),
        handlelength=2.2,
        columnspacing=1.6,
    )


def mc_handle(label: str = "Monte Carlo ± 1.96 MCSE", color: str = "0.3") -> Line2D:
    return Line2D([], [], color=color, marker="o", linestyle="none", label=label)


def theory_handle(label: str = "large-m theory") -> Line2D:
    return Line2D([], [], color=THEORY_COLOR, linestyle=DASHED, linewidth=0.9, label=label)


def scaling_handle(s: str) -> Line2D:
    """A legend entry for a scaling: its colour, marker and label."""
    return Line2D(
        [],
        [],
        color=SCALING_COLORS[s],
        marker=SCALING_MARKERS[s],
        linestyle="none",
        label=SCALING_LABELS[s],
    )


def errorbar(ax, x, y, err, *, color, marker, gid, lower_positive=False):
    """Monte Carlo markers with symmetric bars; the marker line carries ``gid``."""
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


def slope_guide(ax, ms, values, slope: float, label: str, factor: float = 3.0) -> None:
    """A dotted ∝ m^slope line over the last five points, ``factor`` times above them.

    ``values`` may be any sequence of numbers, NaN or None where a cell has none; only the
    finite positive ones count. The label sits above the middle of the line, away from the
    data below it.
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
