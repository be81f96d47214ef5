"""Report assets: figures, Markdown tables and the variables file, from a results folder.

``study report RESULTS_DIR`` writes ``report/_generated/`` (figures as SVG, which both the
HTML and the PDF embed, and PNG; tables as Markdown) and ``report/_variables.yml`` (every
number the text quotes), then renders the Quarto project. The report never simulates and
no number in it is typed by hand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from study.basis import BASES
from study.check import check
from study.design import DesignError, design_from_dict
from study.existence import finite_moment_order
from study.files import atomic_write_bytes, atomic_write_text, load_npz
from study.folder import verify_file
from study.numbers import (
    as_written,
    fmt,
    nearest_on_log_scale,
    percent,
    percent_with_se,
    with_se,
)
from study.paths import (
    BASES_FILE,
    DRAWS_FILE,
    GENERATED_DIR,
    MANIFEST_FILE,
    MATCHED_FILE,
    MINIBATCH_FILE,
    REPORT_DIR,
    RISK_CURVES_FILE,
    RISK_FILE,
    SENSITIVITY_FILE,
    SUMMARY_FILE,
    TRANSFER_FILE,
    TUNING_FILE,
)
from study.report import figures, tables
from study.results import read_table, tail_column, usable_cells

VARIABLES_FILE = "_variables.yml"
FOCUS = {"degree": 3, "lam": 1.0, "coef": 1}


def _yaml(data: dict, indent: int = 0) -> str:
    """YAML for nested dicts of strings: every value quoted so that it renders verbatim."""
    lines = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(" " * indent + f"{key}:")
            lines.append(_yaml(value, indent + 2))
        else:
            lines.append(" " * indent + f"{key}: {json.dumps(str(value), ensure_ascii=False)}")
    return "\n".join(lines)


def _row(frame, **where):
    sel = frame
    for key, value in where.items():
        sel = sel[sel[key] == value]
    if len(sel) != 1:
        raise ValueError(f"expected one row for {where}, found {len(sel)}")
    return sel.iloc[0]


def build_variables(design, summary, risk, tuning, transfer, draws, result, manifest) -> dict:
    """Every number the report's text quotes, formatted."""
    k, lam = _focus_cell(design)
    focus = _focus_variables(design, summary, tuning, k, lam)
    tuning_vars = _tuning_variables(design, tuning, k)
    mcse = _mcse_variables(summary)
    transfer_vars = _transfer_variables(design, transfer, k)
    tail = _tail_variables(design, summary)
    return {
        "design": _design_variables(design),
        "dgp": _dgp_variables(design),
        "focus": focus,
        "tuning": tuning_vars,
        "transfer": transfer_vars,
        "tune": _tune_once_variables(transfer),
        "mcse": mcse,
        "check": _check_variables(result),
        "curves": {
            "m_small": "10",
            "m_large": f"{nearest_on_log_scale(design.m, 1000):,}",
            "degree": str(k),
        },
        "tail": tail,
        "run": {
            "wall": f"{manifest['run']['wall_seconds']:.0f} s",
            "cores": str(manifest["run"]["cores"]),
        },
    }


def _focus_cell(design) -> tuple[int, float]:
    """The degree and λ the text focuses on: FOCUS's where the design has them."""
    k, lam = FOCUS["degree"], FOCUS["lam"]
    if k not in design.degree:
        k = design.degree[len(design.degree) // 2]
    if lam not in design.lam:
        lam = max(design.lam)
    return k, lam


def _design_variables(d) -> dict:
    return {
        "replications": f"{d.replications:,}",
        "m_list": ", ".join(f"{m:,}" for m in d.m),
        "m_max": f"{max(d.m):,}",
        "m_min": f"{min(d.m):,}",
        "degrees": ", ".join(map(str, d.degree)),
        "lambdas": ", ".join(as_written(v) for v in d.lam),
        "n_cells": f"{len(d.m) * len(d.degree) * len(d.lam) * len(d.scaling):,}",
        "seed": str(d.seed),
    }


def _dgp_variables(d) -> dict:
    return {
        "low": as_written(d.x.low) if d.x.low is not None else "–",
        "high": as_written(d.x.high) if d.x.high is not None else "–",
        "intercept": as_written(d.intercept),
        "slope": as_written(d.slope),
        "noise_sd": as_written(d.noise_sd),
    }


def _best_alpha(tuning, m: int, degree: int) -> float:
    cond = tuning[(tuning.method == "conditional") & (tuning.scaling == tuning.scaling.iloc[0])]
    return float(_row(cond, m=m, degree=degree).alpha_opt)


def _focus_variables(design, summary, tuning, k: int, lam: float) -> dict:
    """The bias of the focus coefficient at the largest m, under `none` and `m`, and how
    many times the best α the focus λ is under `none` at the smallest m."""
    at = dict(m=max(design.m), degree=k, coef=FOCUS["coef"])
    r_none = _row(summary, scaling="none", **{"lambda": lam}, **at)
    r_m = _row(summary, scaling="m", **{"lambda": lam}, **at)
    m_small = nearest_on_log_scale(design.m, 10)
    at_small = dict(at, m=m_small)
    r_m_small = _row(summary, scaling="m", **{"lambda": lam}, **at_small)
    r_none_small = _row(summary, scaling="none", **{"lambda": lam}, **at_small)
    # the variance of the highest coefficient under `m` against m: where it peaks
    top = summary[
        (summary.scaling == "m")
        & (summary["lambda"] == lam)
        & (summary.degree == k)
        & (summary.coef == k)
    ].sort_values("m")
    peak = top.loc[top["var"].idxmax()]
    first = top.iloc[0]
    # how fast the slope's bias falls over the last two decades of m, under `m` and `sqrt-m`
    m_mid = nearest_on_log_scale(design.m, max(design.m) / 100)
    falls = {}
    for scaling, name in (("m", "m"), ("sqrt-m", "sqrt")):
        if scaling not in design.scaling:
            falls |= {f"fall_{name}": "–", f"bias_{name}_mid": "–", f"bias_{name}_last": "–"}
            continue
        mid = _row(summary, scaling=scaling, **{"lambda": lam}, **dict(at, m=m_mid))
        last = _row(summary, scaling=scaling, **{"lambda": lam}, **at)
        falls[f"fall_{name}"] = fmt(mid.bias / last.bias, 3)
        falls[f"bias_{name}_mid"] = with_se(mid.bias, mid.bias_mcse)
        falls[f"bias_{name}_last"] = with_se(last.bias, last.bias_mcse)
    return {
        **falls,
        "m_mid": f"{m_mid:,}",
        "m_span": fmt(max(design.m) / m_mid, 3),
        "var_top_first": with_se(first["var"], first.var_mcse),
        "var_top_first_m": f"{int(first.m):,}",
        "var_top_peak": with_se(peak["var"], peak.var_mcse),
        "var_top_peak_m": f"{int(peak.m):,}",
        "degree": str(k),
        "lam": as_written(lam),
        "m_small": f"{m_small:,}",
        "bias_m_small": with_se(r_m_small.bias, r_m_small.bias_mcse),
        "bias_none_small": with_se(r_none_small.bias, r_none_small.bias_mcse),
        "bias_none_max": with_se(r_none.bias, r_none.bias_mcse),
        "bias_m_max": with_se(r_m.bias, r_m.bias_mcse),
        "bias_none_limit": fmt(r_none.bias_asym),
        "none_over_best": fmt(min(design.m) * lam / _best_alpha(tuning, min(design.m), k), 2),
    }


def _tuning_variables(design, tuning, k: int) -> dict:
    """How far the tuned λ moves across m (max/min) under `none` and `m`, and α*_∞."""
    spread = tables.lambda_spread(tuning)
    alpha_limit_2 = "–"
    if 2 in design.degree:
        cond = tuning[tuning.method == "conditional"]
        alpha_limit_2 = fmt(_row(cond, m=max(design.m), degree=2, scaling="m").alpha_limit, 5)
    cond = tuning[(tuning.method == "conditional") & (tuning.scaling == tuning.scaling.iloc[0])]

    def benefit(degree: int, m: int) -> str:
        return tables.benefit_cell(_row(cond, m=m, degree=degree), m, degree)

    # the smallest m where least squares' risk and its variance are finite
    m_small = min(
        (m for m in design.m if finite_moment_order(m, k, 0.0) > 4), default=max(design.m)
    )
    k_high = max(design.degree)
    high = _row(cond, m=max(design.m), degree=k_high)
    focus = _row(cond, m=max(design.m), degree=k)
    return {
        "alpha_focus_last": with_se(focus.alpha_opt, focus.alpha_opt * focus.log_alpha_se),
        "alpha_focus_limit": fmt(focus.alpha_limit),
        "alpha_high_last": with_se(high.alpha_opt, high.alpha_opt * high.log_alpha_se),
        "alpha_high_limit": fmt(high.alpha_limit),
        "degree_high": str(k_high),
        "benefit_m_small": f"{m_small:,}",
        "benefit_small": benefit(k, m_small),
        "benefit_large": benefit(k, max(design.m)),
        "benefit_degree_high": str(max(design.degree)),
        "benefit_high": benefit(max(design.degree), max(design.m)),
        "spread_none_focus": with_se(*spread.loc[(k, "none"), ["spread", "se"]]),
        "spread_m_focus": with_se(*spread.loc[(k, "m"), ["spread", "se"]]),
        "alpha_limit_2": alpha_limit_2,
    }


def _mcse_variables(summary) -> dict:
    """The largest Monte Carlo standard error of a bias, overall and from m = 100 on."""
    finite = summary[usable_cells(summary, 2)]
    worst = finite.loc[finite.bias_mcse.idxmax()]
    m100 = finite[finite.m >= 100].bias_mcse.max()
    return {
        "bias_max": fmt(worst.bias_mcse, 2),
        "bias_max_m": f"{int(worst.m):,}",
        "bias_max_degree": str(int(worst.degree)),
        "bias_max_m100": fmt(m100, 2),
    }


def _transfer_variables(design, transfer, k: int) -> dict:
    """The extra risk at the largest m of keeping the λ tuned at m0 ≈ 100."""
    m0, m_max = nearest_on_log_scale(design.m, 100), max(design.m)
    tr = transfer[(transfer.m0 == m0) & (transfer.m == m_max) & (transfer.degree == k)]
    tr = tr.set_index("scaling")

    def extra(scaling: str) -> str:
        if scaling not in tr.index:
            return "–"
        return percent_with_se(tr.risk_ratio[scaling] - 1, tr.risk_ratio_se[scaling])

    return {
        "m0": f"{m0:,}",
        "m": f"{m_max:,}",
        "degree": str(k),
        "extra_m": extra("m"),
        "extra_none": extra("none"),
    }


def _bases_variables(design, bases, k: int) -> dict:
    """The best α in both bases (bases.csv) at the focus and the highest degree: at the
    largest m with its standard error, the limit, the Hoerl–Kennard–Baldwin value, and how
    many-fold α* moves from m0 to the largest m."""
    out = {"m0": f"{int(bases.m0.iloc[0]):,}"}
    for degree, tag in ((k, "focus"), (max(design.degree), "high")):
        for name in ("monomial", "orthonormal"):
            r = _row(bases, degree=degree, basis=name)
            key = f"{name[:4]}_{tag}"
            out[f"{key}_m"] = with_se(r.alpha_m, r.alpha_m_se)
            out[f"{key}_m0"] = fmt(r.alpha_m0, 3)
            out[f"{key}_limit"] = fmt(r.alpha_limit, 3)
            out[f"{key}_move"] = fmt(r.alpha_m / r.alpha_m0, 3)
        out[f"hkb_{tag}"] = fmt(_row(bases, degree=degree, basis="orthonormal").hkb, 3)
    return out


def _sensitivity_variables(design, sensitivity, k: int) -> dict:
    """Across the noise levels of sensitivity.csv: the range of the extra risk of keeping
    the tuned λ under `m` and under `none` (over every degree), and the noise factors."""
    out = {"factors": ", ".join(f"{f:g}" for f in sorted(set(sensitivity.noise_factor)))}
    for scaling in ("m", "none"):
        col = f"extra_{scaling}"
        lo = sensitivity.loc[sensitivity[col].idxmin()]
        hi = sensitivity.loc[sensitivity[col].idxmax()]
        out[f"{scaling}_low"] = tables.extra_risk(lo[col], lo[f"{col}_se"])
        out[f"{scaling}_high"] = tables.extra_risk(hi[col], hi[f"{col}_se"])
        out[f"{scaling}_high_where"] = f"degree {int(hi.degree)}, σ = {fmt(hi.noise_sd, 3)}"
    return out


def _matched_variables(design, matched, k: int) -> dict:
    """The matched comparison at the largest m, degree k, the slope: bias, variance and
    extra risk under `none` and `m`, each with its standard error."""
    at = matched[(matched.m == max(design.m)) & (matched.degree == k) & (matched.coef == 1)]
    at = at.set_index("scaling")
    out = {"m0": f"{int(matched.m0.iloc[0]):,}"}
    for scaling, name in (("none", "none"), ("m", "m")):
        if scaling not in at.index:
            out |= {f"{name}_{v}": "–" for v in ("bias", "variance", "extra")}
            continue
        r = at.loc[scaling]
        out[f"{name}_bias"] = with_se(r.bias, r.bias_se)
        out[f"{name}_variance"] = with_se(r.variance, r.variance_se)
        out[f"{name}_extra"] = tables.extra_risk(r.risk_ratio - 1, r.risk_ratio_se)
    return out


def _tune_once_variables(transfer) -> dict:
    """The worst extra risk of keeping a tuned λ (tables.tune_once), per scaling and
    direction, over the low degrees (≤ LOW_DEGREE) and the high ones, where it occurs."""
    worst = tables.tune_once(transfer).reset_index()
    out = {}

    def quote(rows) -> str:
        if rows.empty:
            return "–"
        w = rows.loc[rows.extra.idxmax()]
        where = f"degree {int(w.degree)}, m = {int(w.m0):,} → {int(w.m):,}"
        return f"{tables.extra_risk(w.extra, w.se)} ({where})"

    for scaling, name in (("m", "m"), ("none", "none"), ("sqrt-m", "sqrt")):
        for direction in tables.DIRECTIONS:
            sel = worst[(worst.scaling == scaling) & (worst.direction == direction)]
            out[f"{name}_{direction}"] = quote(sel)
            out[f"{name}_{direction}_low"] = quote(sel[sel.degree <= LOW_DEGREE])
            out[f"{name}_{direction}_high"] = quote(sel[sel.degree > LOW_DEGREE])
    out["low_degree"] = str(LOW_DEGREE)
    return out


# "tune once" is quoted separately for degrees up to this one and above it
LOW_DEGREE = 3


def _tail_variables(design, summary) -> dict:
    """The three-point parabola: the share of all replications of ŵ₂ at m = 3, degree 2,
    λ = 0 beyond 10 (w₂* = 0), with its binomial standard error."""
    tail = {"share_big": "–", "threshold": "10", "n": "–"}
    if 2 in design.degree and 3 in design.m and 0.0 in design.lam:
        cell = summary[
            (summary.m == 3)
            & (summary.degree == 2)
            & (summary["lambda"] == 0.0)
            & (summary.coef == 2)
        ].iloc[0]
        share, n = float(cell[tail_column(10.0)]), int(cell.n)
        tail["share_big"] = percent_with_se(share, math.sqrt(share * (1 - share) / n))
        tail["n"] = f"{n:,}"
    return tail


def _check_variables(result) -> dict:
    return {
        "n_z": f"{result.n_z:,}",
        "max_z": fmt(result.max_abs_z, 3),
        "share_2": percent(result.share_beyond_2),
        "n_flagged": f"{result.n_flagged:,}",
        "audit_n": f"{result.audit.n:,}" if result.audit is not None else "–",
        "audit_matched": (
            f"{result.audit.n - len(result.audit.mismatches):,}"
            if result.audit is not None
            else "–"
        ),
        "bias_n": f"{result.n_bias:,}",
        "bias_ok": f"{result.n_bias - result.n_bias_fail:,}",
        "asym_n": f"{result.n_asym:,}",
        "asym_ok": f"{result.n_asym - result.n_asym_fail:,}",
        "small_m": f"{result.n_small_m:,}",
        "summary": result.summary_line(),
    }


def _save_figure(fig, out_dir: Path, name: str) -> None:
    """The figure as SVG and PNG. The figures are plain :class:`~matplotlib.figure.Figure`
    objects, not pyplot's: savefig picks the SVG or Agg canvas by format, no backend is
    selected and nothing needs closing."""
    import io

    for ext in ("svg", "png"):
        buffer = io.BytesIO()
        kwargs = {"metadata": {"Date": None}} if ext == "svg" else {"dpi": 200}
        fig.savefig(buffer, format=ext, bbox_inches="tight", **kwargs)
        atomic_write_bytes(out_dir / f"{name}.{ext}", buffer.getvalue())


def report_basis(design) -> str:
    """The basis whose simulated cells the report shows: the monomials. The report's theory
    files (tuning.csv and what follows from it) are theirs, and its figures of fitted curves
    read the coefficients as those of 1, x, …, x^k; a design without the monomial basis is
    refused in one line (``study check`` works on any basis)."""
    if BASES[0] not in design.basis:
        raise DesignError(
            f"design '{design.name}': key 'grid.basis': got {list(design.basis)}; the report "
            f"needs '{BASES[0]}' among the bases (it shows the monomial cells; study check "
            "works on any basis)"
        )
    return BASES[0]


def report_basis_cells(design, summary: pd.DataFrame, risk: pd.DataFrame, draws: dict):
    """The rows of ``summary`` and ``risk`` and the kept draws (``coef_k*``, with their
    ``scaling`` and ``basis`` axes) of the report's basis (:func:`report_basis`) alone; the
    other bases' cells are for ``study check`` and for users' own analyses."""
    basis = report_basis(design)
    draws = dict(draws)
    # draws written before the basis axis have no "basis": all their columns are monomial
    columns = np.asarray(draws.get("basis", [BASES[0]] * len(draws["scaling"]))) == basis
    for key in [k for k in draws if k.startswith("coef_k")]:
        draws[key] = np.asarray(draws[key])[:, :, columns]
    draws["scaling"] = np.asarray(draws["scaling"])[columns]
    draws["basis"] = np.full(int(columns.sum()), basis)
    pick = [frame[frame["basis"] == basis].reset_index(drop=True) for frame in (summary, risk)]
    return pick[0], pick[1], draws


def _relative_gap(frame: pd.DataFrame, against: str) -> pd.Series:
    """Per run (divisor, batch size, seed): max_j |sgd_j − ref_j| / max_j |ref_j|."""
    keys = ["divisor", "batch_size", "seed"]
    diff = (frame.sgd - frame[against]).abs().groupby([frame[k] for k in keys]).max()
    size = frame[against].abs().groupby([frame[k] for k in keys]).max()
    return diff / size


# a run "reaches" an exact fit when its largest gap is at most this share of the fit's
# largest coefficient; beyond it the paragraph says how close it came
REACHED = 0.01


def _percent_up(share: float) -> str:
    """A largest gap as a percentage, rounded up to 0.01: never below the number."""
    return f"{math.ceil(share * 1e4) / 100:.2f} %"


def _percent_down(share: float) -> str:
    """A smallest gap as a percentage, rounded down to 0.1: never above the number."""
    return f"{math.floor(share * 1e3) / 10:.1f} %"


def minibatch_section(design, frame: pd.DataFrame | None) -> str:
    """The report's paragraph on the minibatch experiment and its figure, with every number
    from minibatch.csv, and each claim ("reaches", "a different model") made only where the
    numbers bear it out; for results without the experiment, one sentence saying so."""
    if frame is None or design.minibatch is None:
        return (
            "*The minibatch experiment was not run: these results were simulated from a "
            "design without a `[minibatch]` table (running `study simulate` again with a "
            "design that has one adds it, resuming the simulation).*\n"
        )
    spec = design.minibatch
    own, ng = _relative_gap(frame, "exact"), _relative_gap(frame, "exact_m")
    m, lam, k = spec.m, spec.lam, spec.degree
    small, large = min(spec.batch_sizes), max(spec.batch_sizes)
    sizes = ", ".join(f"{b:,}" for b in spec.batch_sizes)
    x = design.x
    where = (
        f"uniform on [{as_written(x.low)}, {as_written(x.high)}]"
        if x.distribution == "uniform"
        else f"normal with mean {as_written(x.mean)} and SD {as_written(x.sd)}"
    )
    gap_m, gap_b = float(ng.loc["m"].max()), float(own.loc["batch"].max())
    worst_m = ng.loc["m"].idxmax()[0]
    text = (
        f"**A minibatch experiment.** On one data set of {m:,} points, x {where} and labels "
        f"drawn from the logistic line σ({as_written(design.intercept)} + "
        f"{as_written(design.slope)}·x), a degree-{k} logistic regression with "
        f"λ = {as_written(lam)} was trained by minibatch SGD (at least {spec.steps:,} steps, "
        f"the average of the second half's iterates, {spec.seeds} "
        f"seed{'s' if spec.seeds > 1 else ''}) with batches of B = {sizes}, and set beside "
        "the exact full-batch fits (@fig-minibatch). With the penalty divided by m, "
    )
    if gap_m <= REACHED:
        text += (
            f"every batch size reaches the same model, Ng's (α = λ = {as_written(lam)}): the "
            f"largest gap of a run from it is {_percent_up(gap_m)} of its largest coefficient "
            f"(at B = {worst_m:,}; over every coefficient, batch size and seed). "
        )
    else:
        text += (
            f"the runs come within {_percent_up(gap_m)} of Ng's model (α = λ = "
            f"{as_written(lam)}) and no closer (at B = {worst_m:,}): too few steps for SGD "
            "to settle. "
        )
    verb = "reaches" if gap_b <= REACHED else "comes within the gap below of"
    text += (
        f"With the penalty divided by B, each run {verb} the exact fit of α = m·λ/B instead "
        f"(largest gap {_percent_up(gap_b)})"
    )
    if small < large:
        # the exact fits of neighbouring batch sizes, apart by more than REACHED?
        exact = frame[(frame.divisor == "batch") & (frame.seed == frame.seed.min())]
        fits = [g.sort_values("coef").exact.to_numpy() for _, g in exact.groupby("batch_size")]
        pairs = zip(fits[:-1], fits[1:], strict=True)
        apart = min(float(np.abs(a - b).max() / np.abs(b).max()) for a, b in pairs)
        text += (
            f", from α = {as_written(m * lam / small)} at B = {small:,} to "
            f"{as_written(m * lam / large)} at B = {large:,}: "
            + (
                "a different model for every batch size."
                if apart > REACHED
                else f"models that differ by as little as {_percent_down(apart)}."
            )
        )
    else:
        text += "."
    if small < m:
        slope = frame[frame.coef == 1]
        at_small = slope[(slope.divisor == "batch") & (slope.batch_size == small)]
        spread = (
            f"SD over the seeds {fmt(float(at_small.sgd.std(ddof=1)), 2)}; "
            if len(at_small) > 1
            else ""
        )
        text += (
            f" At B = {small:,} the slope ŵ₁ comes out {fmt(float(at_small.sgd.mean()))} "
            f"({spread}exact {fmt(float(at_small.exact.iloc[0]))}) against "
            f"{fmt(float(at_small.exact_m.iloc[0]))} in Ng's fit: every run there is off "
            f"Ng's model by at least {_percent_down(float(ng.loc['batch'].loc[small].min()))} "
            "of its largest coefficient."
        )
    return text + (
        "\n\n![What minibatch SGD reaches: the slope ŵ₁ of a penalised logistic regression "
        "trained with batches of B, the penalty divided by m (left) and by B (right), beside "
        "the exact full-batch fit of the objective each run minimises (open circles) and of "
        "Ng's objective (dashed).](_generated/fig-minibatch.svg){#fig-minibatch}\n"
    )


def build_assets(
    results_dir: Path,
    *,
    out_dir: Path = GENERATED_DIR,
    report_dir: Path = REPORT_DIR,
    logistic_dir: Path | None = None,
) -> list[str]:
    """Write every figure, table and the variables file; return the names written. The
    section on logistic regression (:mod:`study.report.logistic`) is built from the results
    of a logistic design in ``logistic_dir``; without one it says that none was run."""
    from study.report.logistic import SECTION, SHORT, logistic_section

    # first: a logistic folder that cannot be reported is refused before anything is written
    manifest = json.loads((results_dir / MANIFEST_FILE).read_text())
    gaussian = design_from_dict(manifest["design"])
    logistic_text, logistic_short, logistic_figures = logistic_section(
        logistic_dir, line=(gaussian.intercept, gaussian.slope)
    )
    tuning = pd.read_csv(results_dir / TUNING_FILE, keep_default_na=False, na_values=[""])
    transfer = pd.read_csv(results_dir / TRANSFER_FILE)
    # with [precision], the replications each m reached
    design = design_from_dict(manifest["design"]).with_replications(
        manifest.get("replications_by_m", {})
    )
    summary, risk, draws = report_basis_cells(
        design,
        read_table(results_dir / SUMMARY_FILE),
        read_table(results_dir / RISK_FILE),
        load_npz(results_dir / DRAWS_FILE),
    )
    result = check(results_dir)
    variables = build_variables(design, summary, risk, tuning, transfer, draws, result, manifest)
    k = int(variables["focus"]["degree"])
    lam = FOCUS["lam"] if FOCUS["lam"] in design.lam else max(design.lam)
    m_small, m_large = nearest_on_log_scale(design.m, 10), nearest_on_log_scale(design.m, 1000)
    variables["curves"]["m_small"] = f"{m_small:,}"

    out_dir.mkdir(parents=True, exist_ok=True)
    curves = pd.read_csv(results_dir / RISK_CURVES_FILE)
    matched = pd.read_csv(results_dir / MATCHED_FILE)
    sensitivity = pd.read_csv(results_dir / SENSITIVITY_FILE)
    bases = pd.read_csv(results_dir / BASES_FILE)
    variables["bases"] = _bases_variables(design, bases, k)
    variables["sensitivity"] = _sensitivity_variables(design, sensitivity, k)
    variables["matched"] = _matched_variables(design, matched, k)
    curves = curves[curves.degree == k].reset_index(drop=True)
    x_range = (
        (design.x.low, design.x.high)
        if design.x.low is not None
        else (design.x.mean - 2 * design.x.sd, design.x.mean + 2 * design.x.sd)
    )
    line = dict(intercept=design.intercept, slope=design.slope)
    made = {
        "fig-curves": figures.fig_fitted_curves(
            draws, degree=k, m_small=m_small, m_large=m_large, lam=lam, x_range=x_range, **line
        ),
        "fig-tail": figures.fig_parabola_tail(draws, lam=lam, x_range=x_range, **line),
        "fig-bias": figures.fig_bias(summary, degree=k, lam=lam),
        "fig-variance": figures.fig_variance(summary, degree=k, lam=lam),
        "fig-mse": figures.fig_mse_split(summary, degree=k, lam=lam),
        "fig-bias-sd": figures.fig_bias_over_sd(summary, degree=k, lam=lam),
        "fig-distributions": figures.fig_sampling_distributions(draws, degree=k, lam=lam),
        "fig-risk-lambda": figures.fig_risk_vs_lambda(curves, risk, tuning, degree=k),
        "fig-tuned": figures.fig_tuned_lambda(tuning),
        "fig-degrees": figures.fig_degrees(tuning),
        "fig-bases": figures.fig_bases(bases),
        "fig-matched": figures.fig_matched(
            matched,
            degrees=sorted({k, max(design.degree)}),
            scalings=[s for s in ("none", "m", "sqrt-m") if s in design.scaling],
        ),
    }
    minibatch = None
    if design.minibatch is not None:  # the theory step wrote it, and the manifest lists it
        verify_file(results_dir, MINIBATCH_FILE, manifest["files"].get(MINIBATCH_FILE))
        minibatch = pd.read_csv(results_dir / MINIBATCH_FILE)
        made["fig-minibatch"] = figures.fig_minibatch(minibatch)
    made |= logistic_figures
    for name, fig in made.items():
        _save_figure(fig, out_dir, name)

    ms_table = [m for m in design.m if m in (10, 100, 1000, 10000)] or list(design.m)[-4:]
    m0_transfer = nearest_on_log_scale(design.m, 100)
    ms_transfer = sorted({nearest_on_log_scale(design.m, v) for v in (20, 1000, 10000)})
    md = {
        "tbl-scalings": tables.table_scalings(),
        "tbl-conventions": tables.table_conventions(),
        "tbl-check": tables.table_check(result.table, result),
        "tbl-measures": tables.table_measures(
            summary, degree=k, lam=lam, coef=FOCUS["coef"], ms=ms_table
        ),
        "tbl-tuning": tables.table_tuning(tuning),
        "tbl-benefit": tables.table_benefit(
            tuning, ms=sorted({nearest_on_log_scale(design.m, v) for v in (10, 100, 1000, 10000)})
        ),
        "tbl-transfer": tables.table_transfer(transfer, m0=m0_transfer, ms=ms_transfer),
        "tbl-tune-once": tables.table_tune_once(transfer),
        "tbl-sensitivity": tables.table_sensitivity(
            sensitivity, degrees=sorted({k, max(design.degree)})
        ),
        "tbl-provenance": tables.table_provenance(manifest),
    }
    md["sec-minibatch"] = minibatch_section(design, minibatch)
    md[SECTION] = logistic_text
    md[SHORT] = logistic_short
    for name, text in md.items():
        atomic_write_text(out_dir / f"{name}.md", text)
    atomic_write_text(report_dir / VARIABLES_FILE, _yaml(variables) + "\n")
    return sorted(made) + sorted(md) + [VARIABLES_FILE]
