"""The report's section on logistic regression, the asker's own model: its paragraphs, with
every number from the results of a logistic design, and its three figures.

``study report RESULTS --logistic LOGISTIC_RESULTS`` writes ``_generated/sec-logistic.md``,
the short answer's paragraph ``_generated/short-logistic.md`` and the figures
``fig-logistic-separation``, ``fig-logistic-bias`` and ``fig-logistic-tuned``; without
``--logistic`` the section says in one sentence that no logistic design was run. A claim
is made only where its numbers bear it out (the comparison of α* with the Monte Carlo grid
counts where it holds and says where it does not).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from study.check import check
from study.design import DesignError, design_from_dict
from study.numbers import as_written, fmt, nearest_on_log_scale, percent_with_se, with_se
from study.paths import FITS_FILE, MANIFEST_FILE, RISK_FILE, SUMMARY_FILE, TUNING_FILE
from study.report.figures.logistic import (
    fig_logistic_bias,
    fig_logistic_separation,
    fig_logistic_tuned,
    grid_best,
    matched_lambdas,
    separation_rates,
)
from study.results import MAX_LOGISTIC_STEP, read_table

SECTION = "sec-logistic"
SHORT = "short-logistic"
FIGURES = ("fig-logistic-separation", "fig-logistic-bias", "fig-logistic-tuned")
# the m the bias figure matches the scalings at, and the m the text quotes separation at
MATCH_M = 100
SEPARATION_MS = (5, 10, 20)
MAX_BIAS_PANELS = 3  # the lowest degrees up to this many
MATCHED_SCALINGS = ("none", "m", "sqrt-m")

NOT_RUN = (
    "*No logistic design was reported: `make report` runs `simulations/logistic.toml` and "
    "passes its results with `study report RESULTS --logistic LOGISTIC_RESULTS`.*\n"
)


def read_logistic(results_dir: Path):
    """The design and the tables of a logistic results folder, refused in one line if it is
    not one or lacks what the section needs."""
    manifest = json.loads((results_dir / MANIFEST_FILE).read_text())
    design = design_from_dict(manifest["design"])
    where = f"option '--logistic': {results_dir}"
    if design.family != "logistic":
        raise DesignError(f"{where}: results of model.family = '{design.family}'; expected "
                          "'logistic'")  # fmt: skip
    if 0.0 not in design.lam:
        raise DesignError(f"{where}: key 'grid.lambda' lacks 0, which the separation needs")
    for s in ("m", "none"):
        if s not in design.scaling:
            raise DesignError(
                f"{where}: key 'grid.scaling' is {list(design.scaling)}; the section needs "
                "'m' and 'none'"
            )
    if "monomial" not in design.basis:
        raise DesignError(f"{where}: key 'grid.basis' lacks 'monomial'")
    tables = {
        "summary": read_table(results_dir / SUMMARY_FILE),
        "risk": read_table(results_dir / RISK_FILE),
        "fits": pd.read_csv(results_dir / FITS_FILE),
        "tuning": pd.read_csv(results_dir / TUNING_FILE, keep_default_na=False, na_values=[""]),
    }
    for name, frame in tables.items():
        if "basis" in frame:  # tuning.csv of version 9 before its basis column had none
            tables[name] = frame[frame.basis == "monomial"].reset_index(drop=True)
    return design, tables


def matching(design, tuning: pd.DataFrame, degree: int) -> tuple[int, float, dict]:
    """m0 (the design's m nearest MATCH_M), the α0 of the λ grid nearest α*(m0) of
    ``degree`` among those at which every scaling of MATCHED_SCALINGS in the design has its
    λ on the grid (else among those matching the most), and the λ of each scaling."""
    m0 = nearest_on_log_scale(design.m, MATCH_M)
    scalings = [s for s in MATCHED_SCALINGS if s in design.scaling]
    best = tuning[(tuning.m == m0) & (tuning.degree == degree)].alpha_opt.iloc[0]
    options = []
    for lam in (v for v in design.lam if v > 0):
        lams = matched_lambdas(design.lam, scalings, m0=m0, degree=degree, alpha0=lam)
        options.append((-len(lams), abs(math.log(lam / best)), lam, lams))
    _, _, alpha0, lams = min(options)
    if not {"m", "none"} <= set(lams):
        raise DesignError(
            f"key 'grid.lambda': no λ > 0 of {list(design.lam)} gives under 'none' the α "
            f"that another gives under 'm' at m = {m0:,} (the m nearest {MATCH_M}); the "
            f"section's bias figure needs a pair such as {as_written(m0 * 0.01)} and 0.01"
        )
    return m0, alpha0, lams


def _cell(frame, **where) -> pd.Series:
    """The one row of ``frame`` where every column has its value (``lambda_`` for λ, matched
    to rounding)."""
    rows = frame
    for key, value in where.items():
        if key == "lambda_":
            rows = rows[np.isclose(rows["lambda"], value, rtol=1e-12, atol=0.0)]
        else:
            rows = rows[rows[key] == value]
    if len(rows) != 1:
        raise ValueError(f"expected one row where {where}, found {len(rows)}")
    return rows.iloc[0]


def _degrees(ks) -> str:
    ks = [str(k) for k in ks]
    return ks[0] if len(ks) == 1 else ", ".join(ks[:-1]) + " and " + ks[-1]


def separation_paragraph(design, fits: pd.DataFrame, n_fig: str) -> str:
    rates = separation_rates(fits)
    ms = [m for m in SEPARATION_MS if m in design.m] or sorted(design.m)[:3]
    parts = []
    for m in ms:
        g = rates[rates.m == m].sort_values("degree")
        shares = ", ".join(percent_with_se(r.share, r.share_se) for r in g.itertuples())
        parts.append(f"at m = {m:,}, {shares}")
    degrees = sorted(rates.degree.unique())
    text = (
        "**No estimate without a penalty.** When a polynomial of the degree separates the two "
        "classes, the unpenalised log-loss has no minimum [@albert1984]: the fit runs off to "
        "infinity, the "
        "logistic twin of three points and a parabola. The share of data sets where this "
        f"happens at λ = 0 (@{n_fig}), for degrees {_degrees(degrees)} (standard errors in "
        "brackets): " + "; ".join(parts) + ". "
    )
    gone = rates.groupby("m").no_estimate.sum()
    none_left = [m for m in sorted(gone.index) if (gone.loc[m:] == 0).all()]
    if none_left:
        text += (
            f"From m = {none_left[0]:,} on, none of the {int(rates.n.max()):,} data sets of a "
            "cell separates. "
        )
    positive = fits[(fits["lambda"] > 0) & (fits.scaling == "m")]
    if not design.penalize_intercept and not positive.empty:
        text += (
            "Any λ > 0 gives every data set a fit except those whose labels are all equal "
            f"(the intercept is not penalised): {_all_equal(fits)} at m = "
            f"{int(positive.m.min()):,}. "
        )
    # one fit per data set and α: the scalings that share an α share the fit
    fitted = fits.drop_duplicates(["m", "degree", "alpha"])
    failed = fitted[fitted.not_converged > 0]
    text += "The Monte Carlo moments below are over the data sets with an estimate"
    if failed.empty:
        return text + "; Newton's method converged on every one of them."
    where = "; ".join(
        f"{int(r.not_converged):,} at m = {int(r.m):,}, degree {int(r.degree)}, "
        f"α = {as_written(r.alpha)}"
        for r in failed.itertuples()
    )
    total = int(failed.not_converged.sum())
    return text + (
        f"; Newton's method failed on {total:,} of them (a singular Hessian, a line search "
        f"that could not descend, or its iteration limit: {where}), left out likewise."
    )


def _apart(a: pd.Series, b: pd.Series, z: float = 2.0) -> bool:
    """|bias of a| above |bias of b| by more than z standard errors of the difference."""
    return abs(a.bias) - abs(b.bias) > z * math.hypot(a.bias_mcse, b.bias_mcse)


def _own_bias_verdict(z: pd.Series) -> str:
    """What the simulated bias of the unpenalised slope says, against zero (twice its
    standard error) and against the sign of the theory's 1/m term."""
    if abs(z.bias) <= 2 * z.bias_mcse:
        return "which at this m cannot be told from zero within twice its standard error"
    away = np.sign(z.bias) == np.sign(z.true)
    agrees = np.sign(z.bias) == np.sign(z.bias_asym1)
    return ("away from zero" if away else "towards zero") + (
        ", as the theory says" if agrees else ", against the sign of the theory's term"
    )


def bias_paragraph(design, summary, m0, alpha0, lams, focus: int, n_fig: str) -> str:
    m_max = max(design.m)

    def at(m, s):
        return _cell(summary, m=m, degree=focus, coef=1, scaling=s, lambda_=lams[s])

    def move(s):
        a, b = at(m0, s), at(m_max, s)
        return f"from {with_se(a.bias, a.bias_mcse)} to {with_se(b.bias, b.bias_mcse)}"

    matched = ", ".join(f"`{s}` λ = {as_written(lam)}" for s, lam in lams.items())
    ng, none = at(m_max, "m"), at(m_max, "none")
    text = (
        f"**The bias, with λ matched at m = {m0:,}.** @{n_fig} gives each scaling the λ "
        f"that makes its penalty α = {as_written(alpha0)} at m = {m0:,} ({matched}; of the "
        "grid's values that every scaling's λ grid holds, the one nearest the best α there, "
        "below) and holds it. From "
        f"m = {m0:,} to {m_max:,} the slope's bias at degree {focus} goes {move('m')} under "
        f"Ng's scaling and {move('none')} without the m (Monte Carlo, standard errors in "
        "brackets)" + (f", and {move('sqrt-m')} under `sqrt-m`" if "sqrt-m" in lams else "") + ". "
    )
    if np.isfinite(none.bias_asym) and np.isfinite(ng.bias_asym1):  # where the theory applies
        text += (
            f"The large-m theory puts the bias without the m at {fmt(none.bias_asym)} in the "
            f"limit, and Ng's at {fmt(ng.bias_asym1)} at m = {m_max:,}, on its way to 0. "
        )
    # the claims, each only where the numbers bear it out (twice the standard error)
    fades = _apart(at(m0, "m"), ng)
    stays = not _apart(at(m0, "none"), none) and abs(none.bias) > 2 * none.bias_mcse
    ng_text = (
        "under Ng's scaling the bias fades with m"
        if fades
        else f"under Ng's scaling the simulation cannot tell the bias at m = {m_max:,} from "
        f"that at m = {m0:,} within twice their standard errors"
    )
    none_text = (
        "without the m it stays however many points there are"
        if stays
        else "without the m the simulation does not show it staying: it shrinks, or cannot "
        "be told from zero, within twice its standard error"
    )
    if fades and stays:
        text += f"As for least squares, {ng_text}, and {none_text}. "
    else:
        text += f"{ng_text[0].upper()}{ng_text[1:]}; {none_text}. "
    # the estimator's own 1/m bias, at the smallest m where the expansion applies
    zero = summary[(summary.degree == focus) & (summary.coef == 1) & (summary["lambda"] == 0)]
    zero = zero[(zero.scaling == "m") & (zero.asym_step <= MAX_LOGISTIC_STEP)].sort_values("m")
    if not zero.empty:
        z = zero.iloc[0]
        text += (
            "Unlike least squares, the unpenalised estimator has a bias of its own: its 1/m "
            f"term [@coxsnell1968] puts the slope's bias at {fmt(z.bias_asym1)} at "
            f"m = {int(z.m):,} and degree {focus}, and the simulation finds "
            f"{with_se(z.bias, z.bias_mcse)}, " + _own_bias_verdict(z) + "."
        )
    return text


def tuning_paragraph(tuning, risk, n_fig: str) -> str:
    tu = tuning[tuning.scaling == "m"]
    best = grid_best(risk)
    alphas = np.sort(risk[(risk.scaling == "m") & (risk["lambda"] > 0)].alpha.unique())
    parts, agree, resolved, flat, misses, where = [], 0, 0, 0, [], []
    limits = {}
    for k in sorted(tu.degree.unique()):
        g = tu[tu.degree == k].sort_values("m")
        limits[k] = float(g.alpha_limit.iloc[0])
        # where the expansion applies and its minimum lies inside the searched range
        inside = g.boundary.isna() | g.boundary.eq("")
        ok = g[(g.asym_leverage <= MAX_LOGISTIC_STEP) & inside]
        if ok.empty:
            continue
        lo, hi = ok.iloc[0], ok.iloc[-1]
        limit = fmt(limits[k])
        parts.append(
            f"at degree {k}, from {fmt(lo.alpha_opt)} at m = {int(lo.m):,} to "
            f"{fmt(hi.alpha_opt)} at m = {int(hi.m):,} "
            f"({fmt(ok.alpha_opt.max() / ok.alpha_opt.min(), 2)}-fold), limit {limit}"
            if len(ok) > 1
            else f"at degree {k}, {fmt(lo.alpha_opt)} at m = {int(lo.m):,}, limit {limit}"
        )
        for r in ok.itertuples():
            b = best[(best.m == r.m) & (best.degree == k)]
            if b.empty:
                continue
            if bool(b.at_edge.iloc[0]):
                flat += 1
                continue
            resolved += 1
            nearest = alphas[np.argmin(np.abs(np.log(alphas / r.alpha_opt)))]
            if b.alpha_lo.iloc[0] <= nearest <= b.alpha_hi.iloc[0]:
                agree += 1
                where.append((int(r.m), k))
            else:
                misses.append(f"m = {int(r.m):,}, degree {k}")
    text = (
        f"**The best penalty.** @{n_fig} shows the α that minimises the expected risk of the "
        "fitted log-odds, E[(η̂(x) − η\\*(x))²], from the large-m expansion with its 1/m "
        "terms (unlike least squares, logistic regression has no closed form given the "
        "design), where the expansion applies: where 2(k + 1) times the largest leverage of "
        f"a point is at most {MAX_LOGISTIC_STEP:g}. "
    )
    if not parts:
        return text + (
            "At no m of the design does the expansion apply, so the figure's curves are a "
            "guide only, and the Monte Carlo risk on the design's λ grid is the measure."
        )
    settles = all(np.isfinite(v) and v > 0 for v in limits.values())
    text += (
        "Under Ng's scaling λ\\* = α\\* "
        + ("tends to a limit, but moves on the way: " if settles else "moves with m: ")
        + "; ".join(parts)
        + ". Without the m the best λ is α\\*/m"
    )
    k0 = int(tu.degree.min())
    g = tu[(tu.degree == k0) & (tu.asym_leverage <= MAX_LOGISTIC_STEP)].sort_values("m")
    if len(g) > 1:
        ratio = (g.alpha_opt.iloc[0] / g.m.iloc[0]) / (g.alpha_opt.iloc[-1] / g.m.iloc[-1])
        text += (
            f": it falls {fmt(ratio, 2)}-fold from m = {int(g.m.iloc[0]):,} to "
            f"{int(g.m.iloc[-1]):,} at degree {k0}, and like 1/m once α\\* settles. "
        )
    else:
        text += ", which falls like 1/m once α\\* settles. "
    if resolved:
        pairs = ", ".join(f"m = {m:,} at degree {k}" for m, k in sorted(where))
        text += (
            "The simulation's own risk on the design's λ grid "
            + ("agrees wherever it can tell: at " if agree == resolved else "agrees at ")
            + f"{agree} of the {resolved} (m, degree) pairs where the expansion applies and "
            "the grid resolves the minimum (the grid values within 1.96 standard errors of "
            "the smallest risk, the errors combined as if independent, which widens the "
            "range, do not reach an end of the grid), the grid value nearest the "
            "expansion's α\\* is among them"
            + (f" ({pairs})" if where else "")
            + (f"; not at {'; '.join(misses)}." if misses else ".")
        )
    if flat:
        text += (
            f" At the other {flat} pairs where the expansion applies the risk is too flat "
            "near its minimum for the grid to resolve it: grid values up to an end of the "
            "grid are within 1.96 standard errors of the smallest risk."
        )
    return text


def check_paragraph(result) -> str:
    if result.n_bias + result.n_asym == 0:
        return ""
    verdict = "passes" if result.ok else "fails"
    audit = result.audit
    audited = (
        f"recomputes {audit.n:,} numbers of the engine's fits with its own Newton's method "
        f"and finds {len(audit.mismatches):,} mismatches, and "
        if audit is not None
        else ""
    )
    return (
        f"`study check` {audited}compares the Monte Carlo bias, variance and risk with the "
        f"large-m theory wherever the expansion applies: it {verdict}, with "
        f"{result.n_bias - result.n_bias_fail:,} of {result.n_bias:,} biases and "
        f"{result.n_asym - result.n_asym_fail:,} of {result.n_asym:,} variances and risks "
        f"within their limits ({result.n_small_m:,} comparisons left out where m is too "
        "small for the expansion)."
    )


def short_answer(design, t, m0, alpha0, lams, focus: int) -> str:
    """The short answer's paragraph on logistic regression: the bias with λ matched, and
    how often the unpenalised fit does not exist at the smallest m."""
    m_max = max(design.m)
    row = {s: _cell(t["summary"], m=m_max, degree=focus, coef=1, scaling=s, lambda_=lam)
           for s, lam in lams.items() if s in ("m", "none")}  # fmt: skip
    rates = separation_rates(t["fits"])
    m_small = min(design.m)
    small = rates[rates.m == m_small].sort_values("degree")
    shares = ", ".join(
        f"{percent_with_se(r.share, r.share_se)} at degree {r.degree}" for r in small.itertuples()
    )
    same = _apart(row["none"], row["m"])
    return (
        "**Logistic regression**, the model of the question, "
        + ("behaves the same way" if same else "has a simulation of its own")
        + f" (@sec-logistic). With λ matched at m = {m0:,} (α = {as_written(alpha0)}), the "
        f"slope's bias at m = {m_max:,} and degree {focus} is "
        f"{with_se(row['none'].bias, row['none'].bias_mcse)} without the m and "
        f"{with_se(row['m'].bias, row['m'].bias_mcse)} with it. Its own twist is at small m: "
        f"without a penalty the fit does not exist for some data sets (at m = {m_small:,}: "
        f"{shares} of them), and any λ > 0 restores it"
        + (
            f", except for the data sets whose labels are all equal ({_all_equal(t['fits'])} "
            f"at m = {m_small:,}), which have no fit while the intercept is not penalised.\n"
            if not design.penalize_intercept
            else ".\n"
        )
    )


def _all_equal(fits: pd.DataFrame) -> str:
    """The share of data sets without a fit at λ > 0 (all labels equal, with the intercept
    unpenalised) at the smallest m, with its binomial standard error."""
    positive = fits[(fits["lambda"] > 0) & (fits.scaling == "m")]
    row = positive[positive.m == positive.m.min()].iloc[0]
    n = row.fitted + row.no_estimate + row.not_converged
    share = row.no_estimate / n
    return percent_with_se(share, math.sqrt(share * (1 - share) / n))


def logistic_section(
    results_dir: Path | None, line: tuple[float, float] | None = None
) -> tuple[str, str, dict]:
    """The section's Markdown, the short answer's paragraph and the section's figures
    (name → Figure); for no results, the one sentence :data:`NOT_RUN`, no paragraph and no
    figures. ``line``: the (intercept, slope) of the least-squares study the report is
    built from, so that the text says whether the logistic design reads the same line."""
    if results_dir is None:
        return NOT_RUN, "", {}
    design, t = read_logistic(results_dir)
    degrees = sorted(design.degree)
    focus = 2 if 2 in degrees else degrees[0]
    m0, alpha0, lams = matching(design, t["tuning"], focus)
    shown = degrees[:MAX_BIAS_PANELS]
    figs = {
        "fig-logistic-separation": fig_logistic_separation(t["fits"]),
        "fig-logistic-bias": fig_logistic_bias(t["summary"], lams, degrees=shown, m0=m0),
        "fig-logistic-tuned": fig_logistic_tuned(t["tuning"], t["risk"]),
    }
    x = design.x
    where = (
        f"uniform on [{as_written(x.low)}, {as_written(x.high)}]"
        if x.distribution == "uniform"
        else f"normal with mean {as_written(x.mean)} and SD {as_written(x.sd)}"
    )
    ms = ", ".join(f"{m:,}" for m in design.m)
    intro = (
        "The question was asked about logistic regression. A second design "
        f"(`{design.name}`) puts the same questions to it: labels y drawn with probability "
        f"σ({as_written(design.intercept)} + {as_written(design.slope)}·x)"
        + (
            ", the line of the least-squares study read as log-odds"
            if line is not None and line == (design.intercept, design.slope)
            else ""
        )
        + f", x {where}, and polynomials of degree {_degrees(degrees)} fitted "
        "by Newton's method to the mean log-loss plus each scaling's penalty, the intercept "
        + ("penalised" if design.penalize_intercept else "not penalised")
        + f" ({design.replications:,} data sets at each of m = {ms})."
    )
    paragraphs = [
        intro,
        separation_paragraph(design, t["fits"], "fig-logistic-separation"),
        bias_paragraph(design, t["summary"], m0, alpha0, lams, focus, "fig-logistic-bias"),
        tuning_paragraph(t["tuning"], t["risk"], "fig-logistic-tuned"),
        check_paragraph(check(results_dir)),
    ]
    captions = {
        "fig-logistic-separation": "How often the unpenalised logistic fit does not exist: "
        "the share of data sets whose classes a polynomial of the degree separates, against "
        "m (bars ±1.96 standard errors).",
        "fig-logistic-bias": f"The slope's bias against m with λ held at the value that gives "
        f"α = {as_written(alpha0)} at m = {m0:,} under each scaling: Monte Carlo over the data "
        "sets with an estimate (bars ±1.96 MCSE) and the large-m theory with its 1/m term "
        "(dashed, where the expansion applies).",
        "fig-logistic-tuned": "The risk-optimal penalty of logistic regression: α\\*(m) from the "
        "large-m expansion (solid where it applies, 2(k + 1) times the largest leverage of a "
        "point at most 0.1; dotted where it does not), its limit "
        "(dashed) and the best value of the design's λ grid by Monte Carlo (open markers, "
        "where resolved; bars: the grid values within 1.96 standard errors of it, the errors "
        "combined as if independent); right, the "
        "λ\\* to set when the penalty is not divided by m.",
    }
    text = "\n\n".join(p for p in paragraphs if p)
    for name in FIGURES:
        text += f"\n\n![{captions[name]}](_generated/{name}.svg){{#{name}}}"
    return text + "\n", short_answer(design, t, m0, alpha0, lams, focus), figs
