"""The logistic family's figures: how often the unpenalised fit does not exist, the slope's
bias under each scaling with λ matched at one m, and the risk-optimal penalty α*(m)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from study.report.figures._style import (
    DASHED,
    M_LABEL,
    RC,
    SCALING_COLORS,
    SCALING_LABELS,
    SCALING_MARKERS,
    coef_symbol,
    degree_colors,
    errorbar,
    every_decade,
    log_m_axis,
    mc_handle,
    new_figure,
    slope_guide,
    style_legend,
    theory_handle,
)
from study.results import MAX_LOGISTIC_STEP


def separation_rates(fits: pd.DataFrame) -> pd.DataFrame:
    """Per m and degree, the share of data sets without an estimate at λ = 0 (separated by
    a polynomial of the degree, all labels equal included), from fits.csv of a logistic
    design, with its binomial standard error: columns m, degree, n, no_estimate, share,
    share_se. One scaling's rows stand for all (at λ = 0 they are the same fits)."""
    need = {"m", "degree", "lambda", "scaling", "fitted", "no_estimate", "not_converged"}
    if missing := need - set(fits.columns):
        raise ValueError(f"fits table lacks the columns {sorted(missing)} (a logistic design?)")
    zero = fits[(fits["lambda"] == 0) & (fits.scaling == fits.scaling.iloc[0])]
    if "basis" in zero:
        zero = zero[zero.basis == zero.basis.iloc[0]]
    out = zero[["m", "degree", "no_estimate"]].copy()
    out["n"] = zero.fitted + zero.no_estimate + zero.not_converged
    out["share"] = out.no_estimate / out.n
    out["share_se"] = np.sqrt(out.share * (1 - out.share) / out.n)
    return out.sort_values(["degree", "m"]).reset_index(drop=True)


def fig_logistic_separation(fits: pd.DataFrame, *, z: float = 1.96) -> Figure:
    """The share of data sets whose unpenalised logistic fit does not exist, against m, one
    line per degree (markers ±z binomial standard errors): the logistic counterpart of three
    points and a parabola. gids ``"separation:<degree>"``."""
    rates = separation_rates(fits)
    if rates.empty:
        raise ValueError("fits table has no λ = 0 cells: nothing to show of separation")
    degrees = sorted(rates.degree.unique())
    colors = degree_colors(degrees)
    with mpl.rc_context(RC):
        fig = new_figure(2.6, width=4.2)
        ax = fig.subplots()
        log_m_axis(ax, rates.m)
        for k in degrees:
            g = rates[rates.degree == k]
            ax.plot(g.m, 100 * g.share, color=colors[k], lw=0.9, zorder=2)
            errorbar(
                ax, g.m, 100 * g.share, 100 * z * g.share_se, color=colors[k], marker="o",
                gid=f"separation:{k}",
            )  # fmt: skip
        ax.set_ylim(-2, 102)
        ax.set_xlabel(M_LABEL)
        ax.set_ylabel("data sets without an estimate\nat λ = 0 (%)")
        ax.set_title("No unpenalised fit: the classes are separable", loc="left")
        handles = [
            Line2D([], [], color=colors[k], marker="o", label=f"degree {k}") for k in degrees
        ]
        style_legend(fig, handles, ncols=len(handles))
    return fig


def matched_lambdas(
    lams: Sequence[float], scalings: Sequence[str], *, m0: int, degree: int, alpha0: float
) -> dict[str, float]:
    """The λ of each scaling that gives the sum-form α0 at m0, for the scalings whose λ is on
    the design's grid ``lams`` (to 1e-9, relative)."""
    from study.scaling import lam_from_alpha

    out = {}
    for s in scalings:
        lam = lam_from_alpha(alpha0, m=m0, degree=degree, scaling=s)
        near = [v for v in lams if np.isclose(v, lam, rtol=1e-9, atol=0.0)]
        if near:
            out[s] = float(near[0])
    return out


def fig_logistic_bias(
    summary: pd.DataFrame,
    lams: Mapping[str, float],
    *,
    degrees: Sequence[int],
    m0: int,
    coef: int = 1,
    z: float = 1.96,
) -> Figure:
    """Bias of coefficient ``coef`` against m, one panel per degree, one colour per scaling at
    its λ of ``lams`` (all giving the same α at m0): Monte Carlo ±z·MCSE over the data sets
    with an estimate, and the large-m theory with its 1/m term ``bias_asym1`` (dashed) where
    the expansion applies (``asym_step`` ≤ MAX_LOGISTIC_STEP). gids ``"mc:<scaling>:<k>"``
    and ``"theory:<scaling>:<k>"``."""
    symbol = coef_symbol(coef)
    with mpl.rc_context(RC):
        fig = new_figure(2.8)
        axes = fig.subplots(1, len(degrees), sharey=True, squeeze=False)[0]
        for ax, k in zip(axes, degrees, strict=True):
            rows = summary[(summary.degree == k) & (summary.coef == coef)]
            if "basis" in rows:
                rows = rows[rows.basis == "monomial"]
            log_m_axis(ax, rows.m)
            ax.axhline(0.0, color="0.6", lw=0.6, zorder=1)
            for s, lam in lams.items():
                same = np.isclose(rows["lambda"], lam, rtol=1e-12, atol=0.0)
                g = rows[(rows.scaling == s) & same].sort_values("m")
                g = g[g.status == "ok"]
                errorbar(
                    ax, g.m, g.bias, z * g.bias_mcse, color=SCALING_COLORS[s],
                    marker=SCALING_MARKERS[s], gid=f"mc:{s}:{k}",
                )  # fmt: skip
                th = g[g.asym_step <= MAX_LOGISTIC_STEP]
                line = ax.plot(
                    th.m, th.bias_asym1, color=SCALING_COLORS[s], ls=DASHED, lw=0.9, zorder=2
                )[0]
                line.set_gid(f"theory:{s}:{k}")
            ax.set_xlabel(M_LABEL)
            ax.set_title(f"degree {k}", loc="left")
        axes[0].set_ylabel(f"bias of {symbol} (log-odds per unit x)")
        handles = [
            Line2D([], [], color=SCALING_COLORS[s], marker=SCALING_MARKERS[s], ls="none",
                   label=f"{SCALING_LABELS[s]}, λ = {lam:g}")
            for s, lam in lams.items()
        ]  # fmt: skip
        handles += [mc_handle(), theory_handle("large-m theory with its 1/m term")]
        style_legend(fig, handles, ncols=3)
        fig.suptitle(
            f"The slope's bias with λ matched at m = {m0:,} (the same α there under every "
            "scaling)",
            fontsize=8,
        )
    return fig


def grid_best(risk: pd.DataFrame, *, scaling: str = "m", z: float = 1.96) -> pd.DataFrame:
    """Per m and degree, the α of the design's λ grid (λ > 0, under ``scaling``) with the
    smallest Monte Carlo risk, and the range of grid α whose risk is within z standard errors
    of it (the errors of the two cells combined as if independent, which overstates the
    error of a difference on the same data sets): columns m, degree, alpha_best, alpha_lo,
    alpha_hi, at_edge (the range reaches an end of the grid)."""
    rows = []
    part = risk[(risk.scaling == scaling) & (risk["lambda"] > 0) & (risk.status == "ok")]
    if "basis" in part:
        part = part[part.basis == "monomial"]
    for (m, k), g in part.groupby(["m", "degree"]):
        g = g.sort_values("alpha")
        i = int(np.argmin(g.risk.to_numpy()))
        best, se = g.risk.iloc[i], g.risk_mcse.iloc[i]
        near = g[g.risk - best <= z * np.sqrt(g.risk_mcse**2 + se**2)]
        lo, hi = float(near.alpha.min()), float(near.alpha.max())
        edge = lo <= g.alpha.min() or hi >= g.alpha.max()
        rows.append(
            {"m": int(m), "degree": int(k), "alpha_best": float(g.alpha.iloc[i]),
             "alpha_lo": lo, "alpha_hi": hi, "at_edge": bool(edge)}
        )  # fmt: skip
    return pd.DataFrame(rows)


def fig_logistic_tuned(tuning: pd.DataFrame, risk: pd.DataFrame, *, z: float = 1.96) -> Figure:
    """The risk-optimal penalty against m, per degree. Left: α*(m) of the expansion (solid
    where it applies, ``asym_leverage`` ≤ MAX_LOGISTIC_STEP, dotted where it does not), its
    limit α*∞ (dashed), and the α of the design's λ grid with the smallest Monte Carlo risk
    (markers, bars over the grid α within z standard errors of it, :func:`grid_best`; left
    out where that range reaches an end of the grid; the degrees a little apart). Right:
    λ* = α*/m, what to set without the m, falling like 1/m (solid and dotted as on the
    left). gids ``"alpha:<k>"``, ``"alpha_limit:<k>"``, ``"grid:<k>"``,
    ``"lambda_none:<k>"``."""
    tu = tuning[tuning.scaling == tuning.scaling.iloc[0]]
    if "basis" in tu:
        tu = tu[tu.basis == "monomial"]
    degrees = sorted(tu.degree.unique())
    colors = degree_colors(degrees)
    best = grid_best(risk, z=z)
    with mpl.rc_context(RC):
        fig = new_figure(2.9)
        ax_a, ax_l = fig.subplots(1, 2)
        for ax in (ax_a, ax_l):
            log_m_axis(ax, tu.m)
            ax.set_yscale("log")
            every_decade(ax.yaxis)
            ax.set_xlabel(M_LABEL)
        for k in degrees:
            g = tu[tu.degree == k].sort_values("m")
            ok = (g.asym_leverage <= MAX_LOGISTIC_STEP).to_numpy()
            line = ax_a.plot(g.m, np.where(ok, g.alpha_opt, np.nan), color=colors[k], lw=1.2)[0]
            line.set_gid(f"alpha:{k}")
            # dotted where the expansion does not apply, joined to the solid part
            first = int(np.argmax(ok)) if ok.any() else len(g)
            guide = slice(0, min(first + 1, len(g)))
            ax_a.plot(g.m[guide], g.alpha_opt[guide], color=colors[k], lw=1.0, ls=":")
            limit = float(g.alpha_limit.iloc[0])
            if np.isfinite(limit) and limit > 0:  # a log axis
                ax_a.axhline(limit, color=colors[k], lw=0.9, ls=DASHED, gid=f"alpha_limit:{k}")
            b = best[(best.degree == k) & ~best.at_edge].sort_values("m")
            if not b.empty:
                lo, hi = b.alpha_best - b.alpha_lo, b.alpha_hi - b.alpha_best
                # the degrees side by side, a little apart on the log axis
                shift = 10 ** (0.04 * (degrees.index(k) - (len(degrees) - 1) / 2))
                cont = ax_a.errorbar(
                    b.m * shift, b.alpha_best, yerr=np.vstack([lo, hi]), color=colors[k],
                    marker="o", ls="none", ms=3.2, elinewidth=0.8, mfc="white", zorder=3,
                )  # fmt: skip
                cont.lines[0].set_gid(f"grid:{k}")
            lam = g.alpha_opt / g.m
            lam_none = ax_l.plot(g.m, np.where(ok, lam, np.nan), color=colors[k], lw=1.2)[0]
            lam_none.set_gid(f"lambda_none:{k}")
            ax_l.plot(g.m[guide], lam[guide], color=colors[k], lw=1.0, ls=":")
        slope_guide(ax_l, g.m, g.alpha_opt / g.m, -1.0, "∝ 1/m", factor=4.0)
        ax_a.set_ylabel("optimal sum-form α*\n(= λ* under Ng's scaling)")
        ax_l.set_ylabel("optimal λ* without the m, α*/m")
        ax_a.set_title("α*(m): Ng's λ* settles", loc="left")
        ax_l.set_title("λ*(m) for (λ/2)Σw²: falls like 1/m", loc="left")
        handles = [Line2D([], [], color=colors[k], label=f"degree {k}") for k in degrees]
        handles += [
            Line2D([], [], color="0.3", ls=":", label="expansion outside its range"),
            theory_handle("limit α*∞"),
            Line2D([], [], color="0.3", marker="o", mfc="white", ls="none",
                   label=f"best of the λ grid (Monte Carlo, ±{z:g} SE)"),
        ]  # fmt: skip
        style_legend(fig, handles, ncols=3)
    return fig


__all__ = [
    "fig_logistic_bias",
    "fig_logistic_separation",
    "fig_logistic_tuned",
    "grid_best",
    "matched_lambdas",
    "separation_rates",
]
