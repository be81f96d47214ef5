"""Markdown tables for the report: pure functions from result tables to text.

Pipe tables with a Quarto caption line (``: Caption {#tbl-…}``) after them, so that both the
HTML and the PDF render them as real, cross-referenced tables.
"""

from __future__ import annotations

import math

import pandas as pd

from study.check import FALSE_ALARM, counted_comparisons, unique_comparisons, z_limit
from study.existence import finite_moment_order
from study.numbers import fmt, percent, percent_with_se, subscript, with_se
from study.results import TUNING_DESIGNS
from study.scaling import ALPHA_FORMULA, PENALTY_AS_WRITTEN, SCALINGS


def markdown_table(
    header: list[str], rows: list[list[str]], caption: str, label: str, align: str | None = None
) -> str:
    """A pipe table followed by its Quarto caption line.

    The caption must not end in an abbreviation of pandoc's list (such as "c." or "e.g."):
    pandoc then joins the next word, the {#tbl-…} label, with a non-breaking space, and the
    label is lost (Quarto's output shows ?@tbl-…; tests/test_report.py checks every
    caption against pandoc's own list)."""
    # a bare * (as in λ*) would open emphasis and swallow the {#tbl-…} label
    caption = caption.replace("*", "\\*")
    header = [h.replace("*", "\\*") for h in header]
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else ":---" if a == "l" else ":---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + f"\n\n: {caption} {{#{label}}}\n"


def table_measures(
    summary: pd.DataFrame, *, degree: int, lam: float, coef: int, ms: list[int]
) -> str:
    """Bias, SD and MSE (MCSE in brackets) of one coefficient at selected m, per scaling."""
    sel = summary[
        (summary.degree == degree)
        & (summary["lambda"] == lam)
        & (summary.coef == coef)
        & summary.m.isin(ms)
    ]
    rows = []
    for scaling in SCALINGS:
        for _, r in sel[sel.scaling == scaling].sort_values("m").iterrows():
            measures = [with_se(r[col], r[f"{col}_mcse"]) for col in ("bias", "sd", "mse")]
            rows.append([f"`{scaling}`", f"{r.m:,}", fmt(r.alpha), *measures])
    header = ["scaling", "m", "α", f"bias of ŵ{subscript(coef)}", "SD", "MSE"]
    caption = (
        f"Bias, standard deviation and mean squared error of ŵ{subscript(coef)} (the coefficient "
        f"of x^{coef}^), degree {degree}, λ = {fmt(lam)}; Monte Carlo standard errors in "
        "brackets."
    )
    return markdown_table(header, rows, caption, "tbl-measures")


def table_check(table: pd.DataFrame, result) -> str:
    """Agreement of Monte Carlo with Rao–Blackwell (z) and of Rao–Blackwell with large m."""
    unique, counted = unique_comparisons(table), counted_comparisons(table)
    rows = []
    for measure in ("bias", "var", "risk"):
        t = table[(table.measure == measure) & unique]
        used = table[(table.measure == measure) & counted]
        z = used.z.abs()
        big = used[(used.m == result.largest_m) & used.asym.notna()]
        rel = ((big.rb - big.asym).abs() / big.asym.abs()).replace(math.inf, math.nan)
        name = {"bias": "bias", "var": "variance", "risk": "prediction risk"}[measure]
        left_out = t.flag.str.startswith("moments").sum()
        counts = [f"{len(z):,}", fmt(z.max(), 2), percent((z > 2).mean()), f"{left_out:,}"]
        rows.append([name, *counts, fmt(rel.median(), 2)])
    gap = f"gap to theory, m = {result.largest_m:,}"
    header = ["measure", "compared", "max ∣z∣", "∣z∣ > 2", "left out", gap]
    caption = (
        "Monte Carlo against the Rao–Blackwellised estimates from the same data sets "
        "(z = difference / its standard error). The z of one run are correlated through the "
        "data sets every cell shares, so the share beyond 2 (4.6 % for independent z) is "
        "shown, not judged; the check's rule is on the largest |z| of all "
        f"{result.n_z:,}, at most {z_limit(result.n_z):.2f} (Bonferroni: at most "
        f"{100 * FALSE_ALARM:g} % false "
        "alarms, whatever the correlation). Cells left "
        "out because the estimator lacks the moments the comparison needs; and the median "
        "relative gap between Rao–Blackwell and the large-m theory at the largest m (for "
        "the bias, the theory with its 1/m term). The check compares them at every m the "
        f"expansion reaches: {result.n_bias - result.n_bias_fail:,} of {result.n_bias:,} "
        f"biases and {result.n_asym - result.n_asym_fail:,} of {result.n_asym:,} variances "
        f"and risks agree within {result.asym_z_limit:.2f} standard errors (Bonferroni) plus "
        f"what the expansion leaves out; {result.n_small_m:,} comparisons at smaller m are "
        "left out."
    )
    return markdown_table(header, rows, caption, "tbl-check")


# Each row: library or text, penalty as written, α of the study's sum form
# Σ(y − ŷ)² + α‖w‖² (Σ log-loss + α‖w‖² for the logistic row), intercept penalised. The
# scikit-learn rows are checked against the installed library in tests/test_conventions.py.
CONVENTIONS = [
    ("scikit-learn `Ridge(alpha=a)` [@sklearnridge]", "‖y − Xw‖² + a‖w‖²", "a (`m`)", "no"),
    (
        "scikit-learn `LogisticRegression(C=C)` [@sklearnridge]",
        "C·Σ log-loss + ½‖w‖²",
        "1/(2C) (`m`)",
        "no (`liblinear`: yes)",
    ),
    (
        "scikit-learn `ElasticNet(alpha=a, l1_ratio=0)` (`Lasso`: L1 only) [@pedregosa2011]",
        "(1/2m)‖y − Xw‖² + (a/2)‖w‖²",
        "m·a (`none`)",
        "no",
    ),
    (
        "scikit-learn `SGDRegressor(alpha=a)` [@pedregosa2011]",
        "mean of ½(y − ŷ)² + (a/2)‖w‖²",
        "m·a (`none`)",
        "no",
    ),
    (
        "scikit-learn `MLPRegressor(alpha=a)`, minibatches of b (`sgd`, `adam`) [@sklearnridge]",
        "per batch: mean of ½(y − ŷ)² + (a/2b)‖W‖²",
        "a·m/b: divided by the *batch* size (`lbfgs`, one batch: a, `m`)",
        "no",
    ),
    (
        "glmnet (R) `lambda`, `alpha = 0` [@friedman2010]",
        "(1/2m)Σ(y − ŷ)² + (λ/2)‖w‖², x standardised by default",
        "m·λ (`none`)",
        "no",
    ),
    (
        "statsmodels `fit_regularized(alpha=a, L1_wt=0)` [@statsmodels]",
        "(1/2m)‖y − Xw‖² + (a/2)‖w‖²",
        "m·a (`none`)",
        "yes",
    ),
    (
        "Keras `regularizers.L2(l2)` with `MeanSquaredError` [@kerasl2]",
        "mean of (y − ŷ)² + l2·Σw²",
        "m·l2 (`none`)",
        "weights only",
    ),
    (
        "PyTorch `SGD(weight_decay=d)` with `MSELoss` [@pytorchsgd]",
        "mean of (y − ŷ)²; gradient + d·w, i.e. + (d/2)‖w‖²",
        "m·d/2 (`none`)",
        "all parameters",
    ),
    (
        "XGBoost `reg_lambda=l`, tree booster, squared error [@xgboost]",
        "Σ ½(y − ŷ)² + ½l·Σ(leaf weight)²: leaf weight = Σ residuals/(count + l)",
        "l (`m`), on the leaf weights",
        "no intercept (leaves only)",
    ),
    (
        "PyTorch `AdamW(weight_decay=d)` [@pytorchsgd; @loshchilov2019]",
        "decoupled decay w ← w − η·d·w, outside the adaptive step",
        "no fixed α (not an L2 penalty)",
        "all parameters",
    ),
    ("Andrew Ng, *Machine Learning* [@ng2011ml]", "(1/2m)Σ(ŷ − y)² + (λ/2m)Σw²", "λ (`m`)", "no"),
    (
        "Andrew Ng, *Deep Learning Specialization* [@ng2017dl]",
        "(1/m)Σ log-loss + (λ/2m)·(sum of every squared weight)",
        "λ/2 (`m`)",
        "weights only",
    ),
    ("@bishop2006, eq. 3.27", "½Σ(y − ŷ)² + (λ/2)‖w‖²", "λ (`m`)", "no (in the text)"),
    ("ESL [@hastie2009], eq. 3.41", "Σ(y − ŷ)² + λ‖w‖²", "λ (`m`)", "no"),
    (
        "@goodfellow2016, §7.1.1",
        "(Xw − y)ᵀ(Xw − y) + (α/2)‖w‖² for linear regression",
        "α/2 (`m`)",
        "weights only",
    ),
    (
        "MASS `lm.ridge(lambda=l)` (R) [@venables2002]",
        "Σ(y − ŷ)² + l‖w‖², x centred and scaled",
        "l (`m`)",
        "no",
    ),
    (
        "Dive into Deep Learning [@zhang2023d2l], weight decay",
        "mean of ½(y − ŷ)² + (λ/2)‖w‖²",
        "m·λ (`none`)",
        "no",
    ),
    (
        "Bayesian MAP, w ~ N(0, τ²I), ε ~ N(0, σ²)",
        "Σ(y − ŷ)²/(2σ²) + ‖w‖²/(2τ²)",
        "σ²/τ² (`m`)",
        "as the prior says",
    ),
]


def table_conventions() -> str:
    """Who writes the penalty how, and the sum-form α it amounts to."""
    rows = [[a, b, c, d] for a, b, c, d in CONVENTIONS]
    header = [
        "library or text",
        "objective as written",
        "α of the sum form (scaling)",
        "intercept penalised",
    ]
    caption = (
        "Conventions. Every L2 objective is, up to a constant factor, the sum form "
        "Σ(y − ŷ)² + α‖w‖² (Σ log-loss + α‖w‖² for the log-loss rows); the scaling in "
        "brackets says how α depends on the training-set size m for a fixed parameter "
        "(`m`: α stays put, `none`: α grows like m). scikit-learn's MLP divides its "
        "penalty by the size of each minibatch, the one convention here where the batch "
        "size matters."
    )
    return markdown_table(header, rows, caption, "tbl-conventions", align="llll")


def table_scalings() -> str:
    """The four scalings of the study."""
    rows = [[f"`{s}`", PENALTY_AS_WRITTEN[s], ALPHA_FORMULA[s]] for s in SCALINGS]
    return markdown_table(
        ["scaling", "penalty as written", "α = m·c"],
        rows,
        "The four penalty scalings: the same objective, (1/2m)Σ(ŷ − y)² + (c/2)·Σⱼ wⱼ² over "
        "j ≥ 1, with a different factor c for each scaling.",
        "tbl-scalings",
        align="lll",
    )


def lambda_spread(tuning: pd.DataFrame) -> pd.DataFrame:
    """How many-fold λ* (conditional method) varies over the m above degree + 2, max/min,
    per degree and scaling, with its standard error: the two tunings use independent
    designs, so SE(log spread)² = SE(log α* at the max)² + SE(log α* at the min)²."""
    t = tuning[(tuning.method == "conditional") & (tuning.m > tuning.degree + 2)]
    rows = []
    for (degree, scaling), g in t.groupby(["degree", "scaling"]):
        hi, lo = g.loc[g.lambda_opt.idxmax()], g.loc[g.lambda_opt.idxmin()]
        spread = hi.lambda_opt / lo.lambda_opt
        se_log = math.hypot(hi.log_alpha_se, lo.log_alpha_se) if hi.name != lo.name else 0.0
        rows.append(
            {"degree": degree, "scaling": scaling, "spread": spread, "se": spread * se_log}
        )
    return pd.DataFrame(rows).set_index(["degree", "scaling"])


def table_tuning(tuning: pd.DataFrame) -> str:
    """How many-fold λ* varies across m under each scaling, per degree."""
    t = tuning[(tuning.method == "conditional") & (tuning.m > tuning.degree + 2)]
    spreads = lambda_spread(tuning)
    rows = []
    for degree, g in t.groupby("degree"):
        last = g[(g.m == g.m.max()) & (g.scaling == "m")].iloc[0]
        cells = [spreads.loc[(degree, s)] for s in SCALINGS]
        rows.append(
            [str(degree)]
            + [f"{with_se(c.spread, c.se)}×" for c in cells]
            + [with_se(last.alpha_opt, last.alpha_opt * last.log_alpha_se), fmt(last.alpha_limit)]
        )
    header = ["degree"] + [f"`{s}`" for s in SCALINGS] + [f"α* at m = {int(t.m.max()):,}", "α*∞"]
    caption = (
        "How many-fold the risk-optimal λ* varies over the design's m (above degree + 2; "
        "max/min) under each scaling, from the exact conditional risk averaged over the first "
        f"{TUNING_DESIGNS} simulated designs of each m; and α* at the largest m beside its "
        "limit α*∞ = σ²·tr(Σ⁻¹D)/(w*ᵀDΣ⁻¹Dw*). Standard errors in brackets, from the sample "
        "of designs (the delta method for a minimiser; checked against independent sets of "
        "designs in the test suite)."
    )
    return markdown_table(header, rows, caption, "tbl-tuning")


def benefit_cell(row, m: int, degree: int) -> str:
    """risk(λ = 0)/risk(λ*) as the moments of least squares allow: ∞ where its risk is
    infinite (moments of order 2 do not exist), no standard error (†) where the risk is
    finite but its variance is not (order 4)."""
    order = finite_moment_order(m, degree, 0.0)
    if math.isinf(row.benefit) or order <= 2:
        return "∞"
    if order <= 4:
        return f"{fmt(row.benefit, 3)} †"
    return with_se(row.benefit, row.benefit_se)


def table_benefit(tuning: pd.DataFrame, *, ms: list[int]) -> str:
    """What the tuned penalty gains over least squares: risk(λ = 0)/risk(λ*) per degree
    at selected m, with standard errors over the tuning designs."""
    t = tuning[(tuning.method == "conditional") & (tuning.scaling == tuning.scaling.iloc[0])]
    rows = []
    for degree, g in t.groupby("degree"):
        by_m = g.set_index("m")
        cells = []
        for m in ms:
            if m not in by_m.index:
                cells.append("–")
                continue
            cells.append(benefit_cell(by_m.loc[m], m, degree))
        rows.append([str(degree), *cells])
    header = ["degree"] + [f"m = {m:,}" for m in ms]
    caption = (
        "What the tuned penalty gains: the expected prediction risk without a penalty over "
        "the risk at the best λ, exact given each design and averaged over the first "
        f"{TUNING_DESIGNS} simulated designs of each m; standard errors in brackets (the "
        "delta method for a ratio of two means over the same designs). ∞ where least "
        "squares has no finite risk (or does not exist); † where its risk is finite but "
        "not its variance, so that no standard error holds."
    )
    return markdown_table(header, rows, caption, "tbl-benefit")


def table_transfer(transfer: pd.DataFrame, *, m0: int, ms: list[int]) -> str:
    """Extra risk from keeping the λ tuned at m0 at other m."""
    t = transfer[(transfer.m0 == m0) & transfer.m.isin(ms)]
    rows = []
    for degree, g in t.groupby("degree"):
        for m, gm in g.groupby("m"):
            r = gm.set_index("scaling")
            rows.append(
                [str(degree), f"{m:,}"]
                + [
                    extra_risk(r.risk_ratio[s] - 1, r.risk_ratio_se[s]) if s in r.index else "–"
                    for s in SCALINGS
                ]
            )
    header = ["degree", "m"] + [f"`{s}`" for s in SCALINGS]
    caption = (
        f"Extra prediction risk from tuning λ once at m = {m0} and keeping it: risk at that λ "
        "over the risk at the best λ for m, minus one; standard errors in brackets, in "
        f"percentage points, from the designs of m and of m = {m0}; from twice the best "
        "risk on, the ratio itself (×)."
    )
    return markdown_table(header, rows, caption, "tbl-transfer")


# the two directions of "tune once": tuned at a smaller m and used at a larger, and back
DIRECTIONS = ("up", "down")
# extra risks below this are shown as such: they are rounding
EXTRA_SHOWN = 0.0005


def tune_once(transfer: pd.DataFrame) -> pd.DataFrame:
    """ "Tune once" in risk terms: per degree, scaling and direction, the worst extra risk,
    risk(λ tuned at m0)/risk(best λ at m) − 1, over every pair (m0, m) of the design in
    that direction, with its standard error and the pair where it occurs. Indexed by
    (degree, scaling, direction); columns extra, se, m0, m."""
    rows = []
    for direction, pairs in (
        ("up", transfer[transfer.m > transfer.m0]),
        ("down", transfer[transfer.m < transfer.m0]),
    ):
        for (degree, scaling), g in pairs.groupby(["degree", "scaling"]):
            worst = g.loc[g.risk_ratio.idxmax()]
            rows.append(
                {
                    "degree": degree,
                    "scaling": scaling,
                    "direction": direction,
                    "extra": worst.risk_ratio - 1,
                    "se": worst.risk_ratio_se,
                    "m0": int(worst.m0),
                    "m": int(worst.m),
                }
            )
    return pd.DataFrame(rows).set_index(["degree", "scaling", "direction"]).sort_index()


def extra_risk(extra: float, se: float) -> str:
    """Extra risk as '+7.6 (0.1) %', or from double the best risk on as a ratio, '87 (2)×';
    below EXTRA_SHOWN (and its error too), '< 0.05 %': rounding, as for degree 1 under `m`,
    where the best α is the same at every m."""
    if abs(extra) < EXTRA_SHOWN and not se >= EXTRA_SHOWN:
        return f"< {100 * EXTRA_SHOWN:g} %"
    if extra >= 1:
        return f"{with_se(1 + extra, se)}×"
    # a gain (the held λ better than the tuned one, within the tuning's tolerance) keeps
    # its own minus sign, without a plus before it
    return ("+" if extra >= 0 else "") + percent_with_se(extra, se)


def tune_once_cell(row) -> str:
    """'+7.6 (0.1) % at 100 → 10,000': the worst extra risk and where it occurs."""
    return f"{extra_risk(row.extra, row.se)} at {int(row.m0):,} → {int(row.m):,}"


def table_tune_once(transfer: pd.DataFrame) -> str:
    """The worst extra risk of keeping a tuned λ, both directions, per degree and scaling."""
    worst = tune_once(transfer)
    shown = [s for s in ("m", "sqrt-m", "none") if s in set(transfer.scaling)]
    rows = []
    for degree in sorted(set(transfer.degree)):
        for direction in DIRECTIONS:
            rows.append(
                [str(degree), direction]
                + [
                    tune_once_cell(worst.loc[(degree, s, direction)])
                    if (degree, s, direction) in worst.index
                    else "–"
                    for s in shown
                ]
            )
    header = ["degree", "m₀ → m"] + [f"`{s}`" for s in shown]
    caption = (
        "Tune once, in risk terms: the worst extra prediction risk from tuning λ at one "
        "sample size m₀ and keeping it at another m, over every pair of the design's m "
        "above degree + 2; up: m > m₀, down: m < m₀. Extra risk is risk at that λ over the "
        "risk at the best λ for m, minus one; standard errors in brackets, in percentage "
        "points; from twice the best risk on, the ratio itself (×); `k` equals `none` at a fixed "
        "degree."
    )
    return markdown_table(header, rows, caption, "tbl-tune-once")


def table_sensitivity(sensitivity: pd.DataFrame, *, degrees: list[int]) -> str:
    """The best α and the cost of keeping a tuned λ across noise levels (sensitivity.csv)."""
    rows = []
    for degree in degrees:
        for _, r in sensitivity[sensitivity.degree == degree].iterrows():
            rows.append(
                [
                    str(degree),
                    fmt(r.noise_sd, 3),
                    fmt(r.noise_to_slope, 3),
                    fmt(r.alpha_m0, 3),
                    with_se(r.alpha_m, r.alpha_m_se),
                    fmt(r.alpha_limit, 3),
                    extra_risk(r.extra_m, r.extra_m_se),
                    extra_risk(r.extra_none, r.extra_none_se),
                ]
            )
    first = sensitivity.iloc[0]
    m0, m = int(first.m0), int(first.m)
    factors = sorted(set(sensitivity.noise_factor))
    header = ["degree", "σ", "σ/∣β₁∣", f"α* at {m0:,}", f"α* at {m:,}", "α*∞"]
    header += ["`m`", "`none`"]
    caption = (
        f"Sensitivity to the noise level: the risk-optimal α* at m = {m0:,} and {m:,} and its "
        f"limit, and the extra risk at m = {m:,} of the λ tuned at m = {m0:,} under `m` and "
        f"under `none`, for the design's σ times {factors[0]:g} to {factors[-1]:g} (exact risk "
        "given each design, "
        "averaged over the tuning's designs; standard errors in brackets). With the intercept "
        "unpenalised these numbers depend on σ/∣β₁∣ alone, so the rows cover other slopes too."
    )
    return markdown_table(header, rows, caption, "tbl-sensitivity")


_NOISE_DRAWS = {
    "sufficient": (
        "Φᵀε drawn as N(0, σ²G) given the points (K + 1 normals per data set of more than "
        "K + 1 points, its m values otherwise)"
    ),
    "plain": "m normal values per data set",
}


def table_provenance(manifest: dict) -> str:
    d = manifest["design"]
    run = manifest.get("engine_run", manifest["run"])  # the run that simulated
    v = manifest["versions"]
    grid, counts = d["grid"], manifest["counts"]
    design_file = f" (`{manifest['design_file']}`)" if manifest.get("design_file") else ""
    chunks = counts.get("chunks")
    replications = f"{manifest['replications']:,}" + (
        f" in {chunks:,} chunks, {counts['tasks']:,} tasks" if chunks is not None else ""
    )
    cells = (
        f"{len(grid['m'])} m × {len(grid['degree'])} degrees × "
        f"{len(grid['lambda'])} λ × {len(grid['scaling'])} scalings"
        + (f" × {len(grid['basis'])} bases" if len(grid.get("basis", [])) > 1 else "")
    )
    run_line = (
        f"{run['wall_seconds']:.1f} s wall, {run['jobs']} jobs ({run['backend']}), "
        f"{run['cores']} cores, {run['platform']}"
    )
    rows = [
        ["design", f"`{d['name']}`{design_file}, hash `{manifest['design_hash'][:12]}`"],
        ["seed", str(manifest["seed"])],
        ["replications per cell", replications],
        ["cells", cells],
        ["fits", f"{counts['fits']:,} on {counts['data_points']:,} data points"],
        ["noise", _NOISE_DRAWS.get(manifest.get("noise_draw", "plain"), "?")],
        ["steps", ", ".join(manifest.get("steps", ["engine", "theory"]))],
        ["run", run_line],
        ["versions", ", ".join(f"{k} {val}" for k, val in sorted(v.items()))],
    ]
    return markdown_table(
        ["", ""], rows, "Provenance of the results.", "tbl-provenance", align="ll"
    )
