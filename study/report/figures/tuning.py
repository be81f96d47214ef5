"""Figures of the tuned penalty: the prediction risk against λ, and the risk-optimal λ*(m)
and α*(m)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from study.existence import finite_moment_order
from study.numbers import compact, significant
from study.report.figures._select import check_scalings
from study.report.figures._style import (
    DASHED,
    M_LABEL,
    RC,
    SCALING_COLORS,
    SCALING_LABELS,
    SCALING_MARKERS,
    THEORY_COLOR,
    degree_colors,
    every_decade,
    log_m_axis,
    new_figure,
    shade,
    style_legend,
    theory_handle,
)
from study.results import usable_cells
from study.scaling import SCALINGS

# --- risk against λ -----------------------------------------------------------------------


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
    scalings = check_scalings(scalings)
    rc, ms = _curves_at(risk_curves, degree, ms)
    with mpl.rc_context(RC):
        fig = new_figure(3.4)
        axes = fig.subplots(1, len(scalings), sharex=True, sharey=True, squeeze=False)[0]
        shades = np.linspace(0.35, 1.0, len(ms)) if len(ms) > 1 else [1.0]
        for ax, s in zip(axes, scalings, strict=True):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(SCALING_LABELS[s], color=SCALING_COLORS[s])
            for m, t in zip(ms, shades, strict=True):
                color = shade(SCALING_COLORS[s], t) if t < 1 else SCALING_COLORS[s]
                color = tuple(0.85 * np.asarray(to_rgb(color)))  # a little darker for print
                d = rc[(rc["scaling"] == s) & (rc["m"] == m)].sort_values("lambda")
                d = d[(d["lambda"] > 0) & np.isfinite(d["risk"])]
                if d.empty:
                    continue
                lam_opt = _optimum(d, tuning, degree=degree, scaling=s, m=m, method=method)
                _risk_curve(ax, d, lam_opt, color=color, key=f"{s}:{m}", m=m)
                if risk is not None:
                    _risk_points(ax, risk, color=color, degree=degree, scaling=s, m=m, z=z)
            every_decade(ax.yaxis)
            ax.set_xlabel("λ as written")
        axes[0].set_ylabel("expected prediction risk E[R(ŵ)]\n(squared units of y)")
        style_legend(fig, _risk_handles(curve_label, z if risk is not None else None))
        fig.suptitle(f"Prediction risk against λ, degree {degree} (darker: larger m)", fontsize=8)
    return fig


def _curves_at(risk_curves: pd.DataFrame, degree: int, ms) -> tuple[pd.DataFrame, list[int]]:
    """The risk curves of one degree and the m values to draw (checked)."""
    rc = risk_curves[risk_curves["degree"] == degree]
    if rc.empty:
        degrees = sorted(risk_curves["degree"].unique().tolist())
        raise ValueError(
            f"The 'degree' parameter must be one of {degrees} "
            f"(the degrees in risk_curves). Got {degree!r} instead."
        )
    have = sorted(set(rc["m"].astype(int)))
    ms = have if ms is None else [int(m) for m in ms if int(m) in have]
    if not ms:
        raise ValueError(
            f"The 'ms' parameter must name m values among "
            f"{sorted(rc['m'].unique().tolist())}. Got none."
        )
    return rc, ms


def _optimum(d: pd.DataFrame, tuning, *, degree, scaling, m, method) -> float:
    """λ* of ``tuning`` (rows of ``method``) if finite and > 0, else the curve's minimum."""
    if tuning is not None:
        tu = tuning[
            (tuning["degree"] == degree)
            & (tuning["scaling"] == scaling)
            & (tuning["m"] == m)
            & (tuning["method"] == method)
        ]
        lam_t = tu["lambda_opt"].to_numpy(dtype=float)
        if len(lam_t) and np.isfinite(lam_t[0]) and lam_t[0] > 0:
            return float(lam_t[0])
    return float(d["lambda"].iloc[int(np.argmin(d["risk"].to_numpy()))])


def _risk_curve(ax, d: pd.DataFrame, lam_opt: float, *, color, key: str, m: int) -> None:
    """One risk curve, labelled with m, and its optimum on it (if within the curve)."""
    ax.plot(d["lambda"], d["risk"], color=color, linewidth=1.1, gid=f"curve:{key}")
    opt = None
    if d["lambda"].min() <= lam_opt <= d["lambda"].max():
        # On the curve, so that the marker sits on the line it belongs to.
        log_risk = np.interp(np.log(lam_opt), np.log(d["lambda"]), np.log(d["risk"]))
        opt = (lam_opt, float(np.exp(log_risk)))
    # Label the curve at its left end (the levels are the same in every panel), unless its
    # optimum is there (the label spans about two decades of λ); then just below and right
    # of the optimum (under `none` the optima of large m sit at the left end)
    lam_left = float(d["lambda"].iloc[0])
    at_left = opt is None or opt[0] > lam_left * 10**2.5
    ax.annotate(
        f"m = {compact(m)}",
        (lam_left, d["risk"].iloc[0]) if at_left else opt,
        xytext=(2, 2) if at_left else (6, -3),
        textcoords="offset points",
        ha="left",
        va="bottom" if at_left else "top",
        fontsize=6.5,
        color=color,
        gid=f"label:{key}",
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
            gid=f"opt:{key}",
        )


def _risk_points(ax, risk: pd.DataFrame, *, color, degree, scaling, m, z) -> None:
    """The simulated risk at the grid λ > 0, open markers with ±z·MCSE bars."""
    rr = risk[
        (risk["degree"] == degree)
        & (risk["scaling"] == scaling)
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
            marker=SCALING_MARKERS[scaling],
            markersize=3.5,
            markerfacecolor="white",
            linestyle="none",
            elinewidth=0.8,
            zorder=4,
        )
        cont.lines[0].set_gid(f"mc:{scaling}:{m}")


def _risk_handles(curve_label: str, z: float | None) -> list[Line2D]:
    """Legend: the curves, the optimum and (with z) the simulated points."""
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
    if z is not None:
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
    return handles


# --- the tuned λ* and α* ------------------------------------------------------------------


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
    scalings = check_scalings(scalings)
    tu = tuning[tuning["degree"] == degree]
    if tu.empty:
        raise ValueError(
            f"The 'degree' parameter must be one of {sorted(tuning['degree'].unique().tolist())} "
            f"(the degrees in tuning). Got {degree!r} instead."
        )
    methods = [m for m in methods if m in set(tu["method"])]
    if alpha_limit is None and "alpha_limit" in tu.columns:
        alpha_limit = float(tu["alpha_limit"].iloc[0])
    a_inf = _scalar_alpha_limit(alpha_limit, degree)
    if a_inf is not None and not np.isfinite(a_inf):
        a_inf = None
    with mpl.rc_context(RC):
        fig = new_figure(3.0)
        ax_l, ax_a = fig.subplots(1, 2, sharex=True)
        for ax in (ax_l, ax_a):
            log_m_axis(ax, tu["m"])
            ax.set_xlabel(M_LABEL)
        ax_l.set_yscale("log")
        every_decade(ax_l.yaxis)
        for i, meth in enumerate(methods):
            _tuned_method(ax_l, ax_a, tu, meth, line=i == 0, scalings=scalings)
        if a_inf is not None:
            _limit_lines(ax_l, ax_a, a_inf, lambda_too="m" in scalings)
        ax_a.set_ylim(bottom=0)
        ax_l.set_ylabel("optimal λ* as written (dimensionless)")
        ax_a.set_ylabel("optimal sum-form α* = m·c(λ*)\n(dimensionless)")
        ax_l.set_title("λ*(m): what to set under each scaling")
        ax_a.set_title("α*(m): the same for every scaling")
        handles = _tuned_handles(scalings, methods, limit=a_inf is not None)
        style_legend(fig, handles, ncols=3 if len(handles) > 4 else len(handles))
        fig.suptitle(f"Risk-optimal penalty, degree {degree}", fontsize=8)
    return fig


def _scalar_alpha_limit(alpha_limit, degree: int) -> float | None:
    if alpha_limit is None:
        return None
    if isinstance(alpha_limit, pd.DataFrame):
        d = alpha_limit.set_index("degree")["alpha_limit"]
        return float(d.loc[degree]) if degree in d.index else None
    if isinstance(alpha_limit, pd.Series | Mapping):
        return float(alpha_limit[degree]) if degree in alpha_limit else None
    return float(alpha_limit)


def _series(tu: pd.DataFrame, meth: str, s: str, col: str):
    """m and the finite, positive ``col`` of one method and scaling, by m."""
    d = tu[(tu["method"] == meth) & (tu["scaling"] == s)].sort_values("m")
    d = d[np.isfinite(d[col]) & (d[col] > 0)]
    return d["m"].to_numpy(), d[col].to_numpy()


def _tuned_method(ax_l, ax_a, tu, meth: str, *, line: bool, scalings) -> None:
    """λ* per scaling and α* of one method: lines for the first method, else markers."""
    style = (
        dict(linestyle="-", marker=None)
        if line
        else dict(linestyle="none", markerfacecolor="white", markersize=4)
    )
    for s in scalings:
        x, y = _series(tu, meth, s, "lambda_opt")
        ax_l.plot(
            x,
            y,
            color=SCALING_COLORS[s],
            linewidth=1.2,
            **({"marker": SCALING_MARKERS[s], **style} if not line else style),
            gid=f"lambda:{meth}:{s}",
        )
    # α* is the same for every scaling: one line unless the table says otherwise.
    curves = {s: _series(tu, meth, s, "alpha_opt") for s in scalings}
    ref_x, ref_y = next(iter(curves.values()))
    same = all(
        len(x) == len(ref_x) and np.allclose(y, ref_y, rtol=1e-6) for x, y in curves.values()
    )
    targets = (
        {"all": (ref_x, ref_y, "0.2")}
        if same
        else {s: (*curves[s], SCALING_COLORS[s]) for s in scalings}
    )
    for key, (x, y, color) in targets.items():
        kw = style if line else {**style, "marker": "o"}
        ax_a.plot(x, y, color=color, linewidth=1.2, gid=f"alpha:{meth}:{key}", **kw)


def _limit_lines(ax_l, ax_a, a_inf: float, *, lambda_too: bool) -> None:
    """α*_∞ as a dashed line on the α* panel (and on the λ* panel, where it is the limit of
    λ* under ``m``), labelled on the α* panel."""
    for ax, gid in ((ax_a, "alpha_limit"), (ax_l, "lambda_limit_m")):
        if ax is ax_l and not lambda_too:
            continue
        ax.axhline(a_inf, color=THEORY_COLOR, linestyle=DASHED, linewidth=0.9, zorder=1, gid=gid)
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


_METHOD_NAMES = {
    "asymptotic": "large-m theory",
    "conditional": "exact risk over simulated designs",
}


def _tuned_handles(scalings, methods, *, limit: bool) -> list[Line2D]:
    """Legend: the scalings' colours, the methods (lines, then markers), the limit."""
    handles = [
        Line2D([], [], color=SCALING_COLORS[s], linewidth=1.2, label=SCALING_LABELS[s])
        for s in scalings
    ]
    for i, meth in enumerate(methods):
        name = _METHOD_NAMES.get(meth, meth)
        if i == 0:
            handles.append(Line2D([], [], color="0.2", label=f"{name} (lines)"))
        else:
            handles.append(
                Line2D(
                    [],
                    [],
                    color="0.2",
                    marker="o",
                    markerfacecolor="white",
                    linestyle="none",
                    label=f"{name} (markers)",
                )
            )
    if limit:
        handles.append(theory_handle(r"limit $\alpha^*_\infty$ as m → ∞"))
    return handles


# --- the matched comparison ---------------------------------------------------------------


# extra risks below this are left off the log axis (at m0 itself the extra risk is 0)
EXTRA_RISK_FLOOR = 1e-5


def fig_matched(
    matched: pd.DataFrame,
    *,
    degrees: Sequence[int],
    coef: int = 1,
    scalings: Sequence[str] = SCALINGS,
    z: float = 1.96,
) -> Figure:
    """Each scaling's λ tuned at the reference m0 and held fixed: against m, the bias and
    the variance of one coefficient and the extra prediction risk over the best λ for m.
    One row per degree in ``degrees``; lines with bands of ±z standard errors (from the
    sample of designs the exact conditional moments are averaged over); m0 marked.

    Parameters
    ----------
    matched : DataFrame
        matched.csv: ``m0, m, degree, scaling, coef, bias, bias_se, variance,
        variance_se, risk_ratio, risk_ratio_se``.
    degrees : sequence of int
    coef : int, default=1 (the slope)
    scalings : sequence of str
    z : float

    Returns
    -------
    Figure
        gids ``"matched:<measure>:<degree>:<scaling>"`` on the lines, measure one of
        ``bias``, ``variance``, ``extra_risk``; the line's data are the plotted values.
    """
    scalings = check_scalings(scalings)
    missing = [k for k in degrees if k not in set(matched["degree"])]
    if missing:
        raise ValueError(
            f"The 'degrees' parameter must hold degrees of matched.csv, "
            f"{sorted(matched['degree'].unique().tolist())}. Got {missing!r} instead."
        )
    m0 = int(matched["m0"].iloc[0])
    with mpl.rc_context(RC):
        fig = new_figure(2.2 * len(degrees) + 0.6)
        axes = np.atleast_2d(fig.subplots(len(degrees), 3, sharex=True))
        for row, k in zip(axes, degrees, strict=True):
            sel = matched[(matched.degree == k) & (matched.coef == coef)]
            for s in scalings:
                g = sel[sel.scaling == s].sort_values("m")
                if g.empty:
                    continue
                color = SCALING_COLORS[s]
                panels = (
                    ("bias", g.bias, g.bias_se),
                    ("variance", g.variance, g.variance_se),
                    ("extra_risk", g.risk_ratio - 1, g.risk_ratio_se),
                )
                for ax, (name, y, se) in zip(row, panels, strict=True):
                    if name == "extra_risk":  # none at m0 itself: no point on a log axis
                        keep = (y > EXTRA_RISK_FLOOR).to_numpy()
                        m, y, se = g.m[keep], y[keep], se[keep]
                    else:
                        m = g.m
                    (line,) = ax.plot(
                        m,
                        y,
                        color=color,
                        lw=1.2,
                        marker=SCALING_MARKERS[s],
                        ms=2.5,
                        gid=f"matched:{name}:{k}:{s}",
                    )
                    lo = y - z * se
                    if name != "bias":  # log axes: a band stops above zero
                        lo = np.maximum(lo, 0.5 * y)
                    ax.fill_between(m, lo, y + z * se, color=color, alpha=0.25, lw=0)
            for ax in row:
                log_m_axis(ax, sel["m"])
                ax.axvline(m0, color="0.55", lw=0.8, ls=":")
            row[0].axhline(0.0, color="0.3", lw=0.6)
            row[1].set_yscale("log")
            row[2].set_yscale("log")
            row[2].set_ylim(bottom=EXTRA_RISK_FLOOR)
            every_decade(row[1].yaxis)
            row[0].set_ylabel(f"degree {k}")
            row[0].set_title(f"bias of {_coef_label(coef)}", fontsize=8)
            row[1].set_title(f"variance of {_coef_label(coef)}", fontsize=8)
            row[2].set_title("extra risk over the best λ for m", fontsize=8)
        for ax in axes[-1]:
            ax.set_xlabel(M_LABEL)
        handles = [
            Line2D(
                [],
                [],
                color=SCALING_COLORS[s],
                marker=SCALING_MARKERS[s],
                lw=1.2,
                ms=3,
                label=SCALING_LABELS[s],
            )
            for s in scalings
        ]
        handles.append(Line2D([], [], color="0.55", lw=0.8, ls=":", label=f"m₀ = {m0:,}"))
        style_legend(fig, handles)
        fig.suptitle(f"λ tuned at m₀ = {m0:,} under each scaling, then held fixed", fontsize=8)
    return fig


def _coef_label(j: int) -> str:
    from study.report.figures._style import coef_symbol

    return coef_symbol(j)


# --- every degree: the best α and what it gains -------------------------------------------


def fig_degrees(tuning: pd.DataFrame, *, z: float = 1.96) -> Figure:
    """For every degree, against m: the risk-optimal α*(m) with its limit α*∞ (left), and
    what the tuned penalty gains over least squares, risk(λ = 0)/risk(λ*) (right); bands of
    ±z standard errors (from the designs the exact risk is averaged over). The right panel
    leaves out the m where least squares' risk is infinite or has no finite variance (no
    standard error: its average over designs does not settle)).

    Parameters
    ----------
    tuning : DataFrame
        tuning.csv: ``m, degree, scaling, method, alpha_opt, log_alpha_se, alpha_limit,
        benefit, benefit_se`` (the conditional method is drawn).

    Returns
    -------
    Figure
        gids ``"alpha:<degree>"``, ``"alpha_limit:<degree>"`` and ``"benefit:<degree>"``.
    """
    cond = tuning[tuning.method == "conditional"]
    cond = cond[cond.scaling == cond.scaling.iloc[0]]  # α* and the gain: the same for all
    degrees = sorted(cond.degree.unique())
    colors = degree_colors(degrees).values()
    with mpl.rc_context(RC):
        fig = new_figure(3.0)
        ax_a, ax_b = fig.subplots(1, 2, sharex=True)
        handles = []
        for k, color in zip(degrees, colors, strict=True):
            g = cond[cond.degree == k].sort_values("m")
            a, se = g.alpha_opt.to_numpy(), g.log_alpha_se.to_numpy()
            ax_a.plot(g.m, a, color=color, lw=1.2, marker="o", ms=2.5, gid=f"alpha:{k}")
            band = np.exp(z * np.nan_to_num(se))
            ax_a.fill_between(g.m, a / band, a * band, color=color, alpha=0.25, lw=0)
            limit = float(g.alpha_limit.iloc[0])
            ax_a.axhline(limit, color=color, lw=0.8, ls=DASHED, gid=f"alpha_limit:{k}")
            # where least squares' risk is infinite, or has no finite variance, its average
            # over designs does not settle (the benefit table's ∞ and †)
            finite = np.array([finite_moment_order(m, k, 0.0) > 4 for m in g.m])
            b, bse = g.benefit.to_numpy()[finite], np.nan_to_num(g.benefit_se.to_numpy()[finite])
            ms = g.m.to_numpy()[finite]
            ax_b.plot(ms, b, color=color, lw=1.2, marker="o", ms=2.5, gid=f"benefit:{k}")
            ax_b.fill_between(
                ms, np.maximum(b - z * bse, 1.0), b + z * bse, color=color, alpha=0.25, lw=0
            )
            handles.append(
                Line2D([], [], color=color, lw=1.2, marker="o", ms=3, label=f"degree {k}")
            )
        for ax in (ax_a, ax_b):
            log_m_axis(ax, cond["m"])
            ax.set_xlabel(M_LABEL)
            ax.set_yscale("log")
        every_decade(ax_a.yaxis)
        # the gain spans less than a decade: name the values a reader compares
        top = ax_b.get_ylim()[1]
        ticks = [t for t in (1, 1.1, 1.2, 1.5, 2, 3, 5, 10, 20, 50, 100) if t <= top]
        ax_b.yaxis.set_major_locator(mticker.FixedLocator(ticks))
        ax_b.yaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}×"))
        ax_b.yaxis.set_minor_formatter(mticker.NullFormatter())
        ax_a.set_ylabel("risk-optimal sum-form α*")
        ax_b.set_ylabel("risk(λ = 0) / risk(λ*)")
        ax_a.set_title("α*(m) and its limit α*∞ (dashed)", fontsize=8)
        ax_b.set_title("what the tuned penalty gains over least squares", fontsize=8)
        style_legend(fig, handles)
    return fig


# --- the number of weights: the best α in two bases ---------------------------------------

BASIS_COLORS = {"monomial": "#555555", "orthonormal": "#CC79A7"}
BASIS_LABELS = {"monomial": "monomials 1, x, …, xᵏ", "orthonormal": "orthonormal polynomials"}


def fig_bases(bases: pd.DataFrame) -> Figure:
    """The risk-optimal α* against the degree k in the monomial and the orthonormal basis:
    at m0 (open markers), at the largest m (filled, with ±1.96 SE bars) and the limit α*∞
    (dashed), beside the Hoerl–Kennard–Baldwin choice σ²k/Σ_{j≥1} w*_j² of the
    orthonormal coefficients (dotted).

    Parameters
    ----------
    bases : DataFrame
        bases.csv: ``degree, basis, m0, m, alpha_m0, alpha_m, alpha_m_se, alpha_limit, hkb``.

    Returns
    -------
    Figure
        gids ``"bases:<m0|m|limit>:<basis>"`` and ``"bases:hkb"``.
    """
    m0, m = int(bases.m0.iloc[0]), int(bases.m.iloc[0])
    with mpl.rc_context(RC):
        fig = new_figure(3.0, width=4.6)
        ax = fig.subplots()
        handles = []
        for name, color in BASIS_COLORS.items():
            g = bases[bases.basis == name].sort_values("degree")
            if g.empty:
                continue
            ax.plot(
                g.degree,
                g.alpha_m0,
                color=color,
                marker="o",
                mfc="white",
                ls="none",
                ms=4,
                gid=f"bases:m0:{name}",
            )
            ax.errorbar(
                g.degree,
                g.alpha_m,
                yerr=1.96 * g.alpha_m_se,
                color=color,
                marker="o",
                ms=4,
                ls="-",
                lw=1.0,
            )
            ax.lines[-1].set_gid(f"bases:m:{name}")
            ax.plot(
                g.degree, g.alpha_limit, color=color, ls=DASHED, lw=0.9, gid=f"bases:limit:{name}"
            )
            handles.append(Line2D([], [], color=color, lw=1.0, label=BASIS_LABELS[name]))
        ortho = bases[bases.basis == "orthonormal"].sort_values("degree")
        if not ortho.empty:
            ax.plot(ortho.degree, ortho.hkb, color="black", ls=":", lw=1.0, gid="bases:hkb")
        ax.set_yscale("log")
        every_decade(ax.yaxis)
        ax.set_xticks(sorted(bases.degree.unique()))
        ax.set_xlabel("degree k (number of penalised weights)")
        ax.set_ylabel("risk-optimal sum-form α*")
        handles += [
            Line2D([], [], color="0.3", marker="o", mfc="white", ls="none", label=f"m = {m0:,}"),
            Line2D([], [], color="0.3", marker="o", ls="-", lw=1.0, label=f"m = {m:,}"),
            Line2D([], [], color="0.3", ls=DASHED, lw=0.9, label="limit α*∞"),
            Line2D([], [], color="black", ls=":", lw=1.0, label="σ²k/Σw*ⱼ² (Hoerl et al.)"),
        ]
        style_legend(fig, handles, ncols=2)
    return fig
