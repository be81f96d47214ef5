"""The report's section on logistic regression: every number it quotes recomputed from the
results files, the figures' plotted values against the same files, and the refusals of
`study report` for results of the wrong family, in one line."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from study.numbers import fmt, percent_with_se, with_se
from study.report.figures._style import FIGURE_WIDTH, mc_handle
from study.report.figures.logistic import (
    grid_best,
    separation_rates,
)
from study.report.logistic import NOT_RUN, logistic_section

from conftest import LOGISTIC_SMALL, run_cli


@pytest.fixture(scope="module")
def section(logistic_results):
    text, short, figs = logistic_section(logistic_results)
    files = {
        name: pd.read_csv(logistic_results / f"{name}.csv")
        for name in ("summary", "risk", "fits", "tuning")
    }
    return text, short, figs, files


def test_without_logistic_results_the_section_says_so():
    assert logistic_section(None) == (NOT_RUN, "", {})


def test_the_separation_rates_are_counted_from_fits_csv(section):
    """The shares at λ = 0 against a count over fits.csv written out here: the data sets
    without an estimate over all data sets of the cell, the same under every scaling."""
    text, _, figs, files = section
    fits = files["fits"]
    zero = fits[fits["lambda"] == 0]
    for (m, k), g in zero.groupby(["m", "degree"]):
        counts = g.no_estimate.to_numpy()
        assert (counts == counts[0]).all()  # one fit per data set, whatever the scaling
        total = int(g.fitted.iloc[0] + g.no_estimate.iloc[0] + g.not_converged.iloc[0])
        assert total == LOGISTIC_SMALL["replications"]
        share = counts[0] / total
        se = np.sqrt(share * (1 - share) / total)
        if m in (5, 10):
            assert percent_with_se(share, se) in text
        rates = separation_rates(fits).set_index(["m", "degree"])
        assert rates.loc[(m, k), "share"] == share
    # the plotted points are the shares in percent
    ax = figs["fig-logistic-separation"].axes[0]
    for k in LOGISTIC_SMALL["grid"]["degree"]:
        line = next(li for li in ax.get_lines() if li.get_gid() == f"separation:{k}")
        g = zero[(zero.degree == k) & (zero.scaling == "m")].sort_values("m")
        expected = 100 * g.no_estimate / (g.fitted + g.no_estimate + g.not_converged)
        np.testing.assert_allclose(line.get_ydata(), expected)
    assert ax.get_ylabel().endswith("at λ = 0 (%)")  # a share of the unpenalised fits
    # a share's axis: 0 to 100 % in view, upright, with a small margin only
    low, high = ax.get_ylim()
    assert -5 <= low <= 0 and 100 <= high <= 105, (low, high)
    # at m = 5 separation is common: the rule is not vacuous here
    assert zero[zero.m == 5].no_estimate.min() > 0.2 * LOGISTIC_SMALL["replications"]


def _matched(tuning):
    """α0 and the λ of each scaling, worked out here: at m0 = 100, of the grid values whose
    λ/100 ('none') and λ/10 ('sqrt-m') are on the grid too (1 and 10), the one nearest α*
    of degree 2 on a log scale."""
    best = tuning[(tuning.m == 100) & (tuning.degree == 2)].alpha_opt.iloc[0]
    alpha0 = min((1.0, 10.0), key=lambda a: abs(np.log(a / best)))
    return alpha0, {"none": alpha0 / 100, "m": alpha0, "sqrt-m": alpha0 / 10}


def test_the_bias_quoted_is_the_matched_cells_of_summary_csv(section):
    """The λ of every scaling that gives the same α at m = 100; the paragraph quotes the
    slope's bias at m = 100 and at the largest m for each, with its MCSE, and the figure
    plots exactly those cells with ±1.96 MCSE bars."""
    text, short, figs, files = section
    s = files["summary"]
    alpha0, lams = _matched(files["tuning"])
    assert f"α = {alpha0:g} at m = 100" in text

    def cell(m, k, scaling):
        g = s[(s.coef == 1) & (s.degree == k) & (s.m == m) & (s.scaling == scaling)]
        return g[np.isclose(g["lambda"], lams[scaling])].iloc[0]

    for scaling in lams:
        for m in (100, 1000):
            row = cell(m, 2, scaling)
            assert with_se(row.bias, row.bias_mcse) in text
    for scaling in ("none", "m"):
        row = cell(1000, 2, scaling)
        assert with_se(row.bias, row.bias_mcse) in short
    # the claim is made only where the numbers bear it out
    none, ng, ng0 = cell(1000, 2, "none"), cell(1000, 2, "m"), cell(100, 2, "m")
    apart = abs(none.bias) - abs(ng.bias) > 2 * np.hypot(none.bias_mcse, ng.bias_mcse)
    fades = abs(ng0.bias) - abs(ng.bias) > 2 * np.hypot(ng0.bias_mcse, ng.bias_mcse)
    assert ("it stays however many points there are" in text) == (apart and fades)
    assert ("behaves the same way" in short) == apart
    fig = figs["fig-logistic-bias"]
    for ax, k in zip(fig.axes, LOGISTIC_SMALL["grid"]["degree"], strict=True):
        for scaling, lam in lams.items():
            line = next(li for li in ax.get_lines() if li.get_gid() == f"mc:{scaling}:{k}")
            g = s[(s.coef == 1) & (s.degree == k) & (s.scaling == scaling)]
            g = g[np.isclose(g["lambda"], lam)].sort_values("m")
            np.testing.assert_allclose(np.asarray(line.get_ydata(), float), g.bias)
            np.testing.assert_allclose(np.asarray(line.get_xdata(), float), g.m)
    # a strip on the printed page: its text width, one row of panels less than half as tall
    width, height = fig.get_size_inches()
    assert width == pytest.approx(FIGURE_WIDTH) and height < width / 2
    # the legend names each scaling with its matched λ, then the two kinds of marks
    texts = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    for scaling, lam in lams.items():
        assert sum(t.startswith(f"‘{scaling}’") and t.endswith(f"λ = {lam:g}") for t in texts) == 1
    marks = texts[len(lams) :]
    assert len(marks) == 2 and marks[0] == mc_handle().get_label()
    assert marks[1].startswith("large-m theory")
    # the bars are ±1.96 MCSE: the half-lengths of one panel's 'none' bars
    ax = fig.axes[1]
    g = s[(s.coef == 1) & (s.degree == 2) & (s.scaling == "none")]
    g = g[np.isclose(g["lambda"], lams["none"])].sort_values("m")
    expected = np.sort(1.96 * g.bias_mcse.to_numpy())
    found = [
        np.sort([abs(seg[1][1] - seg[0][1]) / 2 for seg in c.get_segments()])
        for c in ax.collections
        if len(c.get_segments()) == len(g)
    ]
    assert any(np.allclose(f, expected, rtol=1e-9) for f in found)


def test_the_bias_figure_draws_its_theory_as_its_legend_shows_and_says_what_is_matched(section):
    """Each theory line has the dashes and the width of the legend's theory mark and its
    scaling's colour, some of them have points, and the title names where λ is matched, in
    one closed parenthesis."""
    _, _, figs, files = section
    fig = figs["fig-logistic-bias"]
    (legend,) = fig.legends
    (mark,) = [h for h in legend.legend_handles if h.get_label().startswith("large-m theory")]
    lams = _matched(files["tuning"])[1]
    for ax in fig.axes:
        lines = [li for li in ax.get_lines() if (li.get_gid() or "").startswith("theory:")]
        assert sorted(li.get_gid().split(":")[1] for li in lines) == sorted(lams)
        for line in lines:
            assert line.get_linestyle() == mark.get_linestyle(), line.get_gid()
            assert line.get_linewidth() == mark.get_linewidth(), line.get_gid()
            mc = next(li for li in ax.get_lines() if li.get_gid() == "mc" + line.get_gid()[6:])
            assert line.get_color() == mc.get_color()
    assert any(len(li.get_xdata()) for ax in fig.axes for li in ax.get_lines())
    title = fig.get_suptitle()
    assert "m = 100 " in title and "every scaling" in title
    assert title.count("(") == title.count(")") == 1 and title.endswith(")")


def test_the_section_is_written_in_sentence_case(section):
    """Prose, headings in bold included, is in sentence case: no run of three words in
    capitals (an abbreviation such as MCSE stands alone)."""
    text, short, _, _ = section
    assert "[@albert1984]" in text  # the paragraph on separation is among them
    for prose in (text, short):
        assert re.search(r"\b[A-Z]{2,}\b(\W+\b[A-Z]{2,}\b){2,}", prose) is None


def test_the_estimators_own_bias_is_quoted_where_the_expansion_applies(logistic_results):
    """The paragraph written here, not through the module's fixture, so that a tool that
    attributes the fixture to the first test alone still sees this test reach it."""
    from study.report.logistic import bias_paragraph, read_logistic

    design, t = read_logistic(logistic_results)
    alpha0, lams = _matched(t["tuning"])
    text = bias_paragraph(design, t["summary"], 100, alpha0, lams, 2, "fig-logistic-bias")
    s = t["summary"]
    zero = s[(s.coef == 1) & (s.degree == 2) & (s["lambda"] == 0) & (s.scaling == "m")]
    zero = zero[zero.asym_step <= 0.1].sort_values("m").iloc[0]
    assert f"at m = {int(zero.m):,} and degree 2" in text
    assert with_se(zero.bias, zero.bias_mcse) in text
    seen = zero.bias * np.sign(zero.true) > 2 * zero.bias_mcse
    assert ("away from zero, as the theory says" in text) == bool(
        seen and np.sign(zero.bias_asym1) == np.sign(zero.bias)
    )


def test_the_best_penalty_is_tuning_csv_and_the_grid_best_is_risk_csv(section):
    text, _, figs, files = section
    tuning, risk = files["tuning"], files["risk"]
    fig = figs["fig-logistic-tuned"]
    ax_a, ax_l = fig.axes[:2]
    # each panel says what it shows
    assert ax_a.get_title("left").startswith("α*(m)")
    assert ax_l.get_title("left").startswith("λ*(m)")
    (limit_mark,) = [h for h in fig.legends[0].legend_handles if h.get_label() == "limit α*∞"]
    for k in LOGISTIC_SMALL["grid"]["degree"]:
        g = tuning[(tuning.degree == k) & (tuning.scaling == "m")].sort_values("m")
        line = next(li for li in ax_a.get_lines() if li.get_gid() == f"alpha:{k}")
        applies = g.asym_leverage <= 0.1
        np.testing.assert_allclose(line.get_ydata(), np.where(applies, g.alpha_opt, np.nan))
        none = next(li for li in ax_l.get_lines() if li.get_gid() == f"lambda_none:{k}")
        np.testing.assert_allclose(none.get_ydata(), np.where(applies, g.alpha_opt / g.m, np.nan))
        # a degree's α* and λ* drawn alike, the dotted guides (the expansion outside its
        # range) thinner than both
        assert line.get_linewidth() == none.get_linewidth()
        guides = [
            li
            for ax in (ax_a, ax_l)
            for li in ax.get_lines()
            if li.get_linestyle() == ":" and li.get_color() == line.get_color()
        ]
        assert len(guides) == 2
        assert all(li.get_linewidth() < line.get_linewidth() for li in guides)
        limit = next(li for li in ax_a.get_lines() if li.get_gid() == f"alpha_limit:{k}")
        assert limit.get_ydata()[0] == g.alpha_limit.iloc[0]
        # drawn as its legend mark (dashed, as wide), apart from the solid α*
        assert limit.get_linestyle() == limit_mark.get_linestyle() != line.get_linestyle()
        assert limit.get_linewidth() == limit_mark.get_linewidth()
    # the grid's best by Monte Carlo, recomputed: the λ > 0 cell of least risk under 'm'
    best = grid_best(risk)
    part = risk[(risk.scaling == "m") & (risk["lambda"] > 0)]
    for (m, k), g in part.groupby(["m", "degree"]):
        row = best[(best.m == m) & (best.degree == k)].iloc[0]
        assert row.alpha_best == g.loc[g.risk.idxmin(), "alpha"]
    assert "@fig-logistic-tuned" in text


def test_the_section_numbers_are_labelled_figures_and_cite_their_sources(section):
    text, short, _, _ = section
    for name in ("fig-logistic-separation", "fig-logistic-bias", "fig-logistic-tuned"):
        assert f"{{#{name}}}" in text and f"@{name}" in text
    assert "@albert1984" in text and "@coxsnell1968" in text
    # fmt writes NaN as "–" and an infinity as "∞": neither belongs in a quoted number
    assert not re.search(r"\bnan\b|\binf\b|–|∞", text + short)
    # a bare * (α*, λ*) would open Markdown emphasis and vanish from the rendered text
    for part in (text, short):
        stripped = part.replace("**", "")
        assert all(stripped[i - 1] == "\\" for i, c in enumerate(stripped) if c == "*")


def test_report_refuses_results_of_the_wrong_family_in_one_line(logistic_results, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "_quarto.yml").write_text("project:\n  type: default\n")
    proc = run_cli("report", logistic_results, "--no-render", "--project", project)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "logistic" in lines[0] and "--logistic" in lines[0]
    assert not (project / "_generated").exists()
    manifest = json.loads((logistic_results / "manifest.json").read_text())
    assert manifest["design"]["model"]["family"] == "logistic"


def test_the_tuning_paragraph_quotes_tuning_csv(section):
    """Per degree: α* at the first and last m where the expansion applies, the fold between
    them and the limit, as tuning.csv has them; and the count of agreeing pairs."""
    text, _, _, files = section
    tu = files["tuning"]
    tu = tu[(tu.scaling == "m") & (tu.asym_leverage <= 0.1)].sort_values(["degree", "m"])
    assert not tu.empty
    for k, g in tu.groupby("degree"):
        lo, hi = g.iloc[0], g.iloc[-1]
        if len(g) > 1:
            fold = g.alpha_opt.max() / g.alpha_opt.min()
            assert (
                f"at degree {k}, from {fmt(lo.alpha_opt)} at m = {int(lo.m):,} to "
                f"{fmt(hi.alpha_opt)} at m = {int(hi.m):,} ({fmt(fold, 2)}-fold), "
                f"limit {fmt(lo.alpha_limit)}"
            ) in text
        else:
            assert f"at degree {k}, {fmt(lo.alpha_opt)} at m = {int(lo.m):,}" in text


def test_the_check_paragraph_is_the_checks_own_counts(section, logistic_results):
    from study.check import check

    text, _, _, _ = section
    result = check(logistic_results)
    assert result.ok and "it passes" in text
    assert f"{result.n_bias - result.n_bias_fail:,} of {result.n_bias:,} biases" in text
    assert f"{result.n_small_m:,} comparisons left out" in text


def test_every_branch_of_the_bias_claims(section, logistic_results):
    """The claims switch with the numbers: with the bias without the m set to shrink like
    Ng's, "stays" is not written; with Ng's bias held at its m = 100 value, "fades" is not;
    the estimator's own bias is called away from zero, towards zero or not distinguishable
    from zero as the simulated value says."""
    from study.report.logistic import _own_bias_verdict, bias_paragraph, read_logistic

    design, t = read_logistic(logistic_results)
    alpha0, lams = _matched(t["tuning"])
    s = t["summary"]
    args = (design, None, 100, alpha0, lams, 2, "fig-logistic-bias")

    def cell(m, scaling):
        g = s[(s.coef == 1) & (s.degree == 2) & (s.m == m) & (s.scaling == scaling)]
        return g[np.isclose(g["lambda"], lams[scaling])].index[0]

    shrink = s.copy()
    shrink.loc[cell(1000, "none"), "bias"] = shrink.loc[cell(1000, "m"), "bias"]
    text = bias_paragraph(args[0], shrink, *args[2:])
    assert "it stays" not in text and "does not show it staying" in text
    held = s.copy()
    held.loc[cell(1000, "m"), ["bias", "bias_mcse"]] = held.loc[
        cell(100, "m"), ["bias", "bias_mcse"]
    ].to_numpy()
    text = bias_paragraph(args[0], held, *args[2:])
    assert "fades" not in text and "cannot tell the bias at m = 1,000" in text
    row = pd.Series({"bias": 0.3, "bias_mcse": 0.05, "true": 1.7, "bias_asym1": 0.2})
    assert _own_bias_verdict(row) == "away from zero, as the theory says"
    assert _own_bias_verdict(row.copy().replace({0.3: -0.3})).startswith("towards zero, against")
    assert _own_bias_verdict(row.copy().replace({0.3: 0.05})).startswith("which at this m")


def test_the_grid_comparison_counts_agreement_and_misses():
    """On made-up tables where the grid's minimum is sharp: the expansion's α* near it is
    counted as agreeing, one far from it as a miss, and a flat risk as unresolved."""

    from study.report.logistic import tuning_paragraph

    alphas = np.array([0.1, 0.3, 1.0, 3.0, 10.0])
    risk_rows, tuning_rows = [], []
    for m, best, flat in ((200, 1.2, False), (500, 30.0, False), (1000, 1.0, True)):
        for a in alphas:
            curve = 1.0 if flat else 1.0 + np.log(a) ** 2
            risk_rows.append(
                dict(
                    m=m,
                    degree=1,
                    scaling="m",
                    basis="monomial",
                    alpha=a,
                    risk=curve,
                    risk_mcse=1e-3,
                    status="ok",
                    **{"lambda": a},
                )
            )
        tuning_rows.append(
            dict(
                m=m,
                degree=1,
                scaling="m",
                basis="monomial",
                alpha_opt=best,
                alpha_limit=1.0,
                asym_leverage=0.05,
                boundary="",
            )
        )
    text = tuning_paragraph(
        pd.DataFrame(tuning_rows),
        pd.DataFrame(risk_rows),
        "fig-logistic-tuned",
    )
    assert "agrees at 1 of the 2 (m, degree) pairs" in text
    assert "(m = 200 at degree 1); not at m = 500, degree 1." in text
    assert "At the other 1 pairs where the expansion applies the risk is too flat" in text
