"""The report's tables (study.report.tables) and its logistic-regression text
(study.report.logistic), on small made-up results tables: every cell recomputed here from the
rows given, with the formats of study.numbers (value rounded to its standard error, which is
shown in brackets), and every conditional sentence on numbers either side of its threshold."""

from __future__ import annotations

import copy
import json
import math
from statistics import NormalDist
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from study.design import DesignError, design_from_dict
from study.numbers import fmt, percent, percent_with_se, with_se
from study.report import logistic as L
from study.report import tables as T
from study.results import TUNING_DESIGNS

from conftest import LOGISTIC_SMALL

# --- helpers ---------------------------------------------------------------------------


def _rows(text: str) -> list[list[str]]:
    """The cells of every row of a pipe table (the header first, the rule left out)."""
    out = []
    for line in text.splitlines():
        if line.startswith("| "):
            out.append([c.strip() for c in line.strip()[1:-1].split(" | ")])
    return out


def _caption(text: str) -> str:
    (line,) = [ln for ln in text.splitlines() if ln.startswith(": ")]
    return line


def _binomial(k: int, n: int) -> str:
    share = k / n
    return percent_with_se(share, math.sqrt(share * (1 - share) / n))


# --- markdown_table --------------------------------------------------------------------


def test_markdown_table_is_a_pipe_table_with_its_caption_line():
    text = T.markdown_table(
        ["a*", "b", "c"], [["x", "1", "2"], ["y", "3", "4"]], "Best λ*", "tbl-x"
    )
    assert text == (
        "| a\\* | b | c |\n|:---|---:|---:|\n| x | 1 | 2 |\n| y | 3 | 4 |\n\n"
        ": Best λ\\* {#tbl-x}\n"
    )
    # an alignment given: l, r and anything else centred
    text = T.markdown_table(["a", "b", "c"], [["1", "2", "3"]], "C", "tbl-y", align="rlc")
    assert text.splitlines()[1] == "|---:|:---|:---:|"


# --- table_measures --------------------------------------------------------------------


def _summary_rows():
    rows = []
    rng = np.random.default_rng(3)
    for degree in (2, 3):
        for lam in (0.5, 0.1):
            for coef in (0, 1):
                for m in (2000, 50, 700):
                    for scaling in ("m", "none"):
                        rows.append(
                            dict(
                                degree=degree,
                                coef=coef,
                                m=m,
                                scaling=scaling,
                                alpha=lam * (m if scaling == "none" else 1) + 0.01234,
                                bias=-rng.uniform(0.01, 0.09),
                                bias_mcse=rng.uniform(0.001, 0.009),
                                sd=rng.uniform(1, 9),
                                sd_mcse=rng.uniform(0.01, 0.09),
                                mse=rng.uniform(10, 90),
                                mse_mcse=rng.uniform(0.1, 0.9),
                                **{"lambda": lam},
                            )
                        )
    return pd.DataFrame(rows)


def test_the_measures_table_shows_each_cells_bias_sd_and_mse_with_their_mcse():
    summary = _summary_rows()
    text = T.table_measures(summary, degree=2, lam=0.5, coef=1, ms=[50, 2000])
    rows = _rows(text)
    assert rows[0] == ["scaling", "m", "α", "bias of ŵ₁", "SD", "MSE"]
    sel = summary[(summary.degree == 2) & (summary["lambda"] == 0.5) & (summary.coef == 1)]
    expected = []
    for scaling in ("none", "m"):  # the order of study.scaling.SCALINGS
        for m in (50, 2000):  # m ascending, 700 not asked for
            (r,) = sel[(sel.scaling == scaling) & (sel.m == m)].itertuples()
            expected.append(
                [
                    f"`{scaling}`",
                    f"{m:,}",
                    fmt(r.alpha),
                    with_se(r.bias, r.bias_mcse),
                    with_se(r.sd, r.sd_mcse),
                    with_se(r.mse, r.mse_mcse),
                ]
            )
    assert rows[1:] == expected
    assert "2,000" in {row[1] for row in rows}
    assert all(row[3].startswith("−") for row in rows[1:])  # a true minus sign
    caption = _caption(text)
    assert "of ŵ₁ (the coefficient of x^1^), degree 2, λ = 0.500;" in caption
    assert "Monte Carlo standard errors in brackets" in caption
    assert caption.endswith("{#tbl-measures}")


# --- table_check -----------------------------------------------------------------------


def _check_table():
    rows = []

    def add(measure, m, z, rb, asym, flag="", mc=None):
        add.i += 1
        rows.append(
            dict(
                m=m, degree=1, coef=0, measure=measure, mc=add.i if mc is None else mc,
                rb=rb, z=z, asym=asym, flag=flag, **{"lambda": 0.5},
            )
        )  # fmt: skip

    add.i = 0
    # bias: relative gaps 0.1, 0.2 and 0.6 (negative theory) at the largest m
    add("bias", 1000, 2.5, 1.1, 1.0)
    add("bias", 1000, -0.5, 2.4, 2.0)
    add("bias", 1000, 2.0, -1.6, -1.0)  # |z| = 2 is not beyond 2
    add("bias", 1000, 1.0, 0.5, math.nan)  # no theory: no gap
    add("bias", 1000, 0.1, 0.3, 0.0)  # theory 0: no relative gap
    add("bias", 100, -3.1, 5.0, 1.0)  # not the largest m: no gap, but its z counts
    add("bias", 1000, math.nan, 9.0, 1.0, flag="moments of order 2")
    add("bias", 1000, math.nan, 9.5, 1.0, flag="moments of order 2", mc=rows[-1]["mc"])
    add("bias", 1000, 7.0, 9.0, 1.0, flag="small m")  # flagged otherwise: neither
    add("bias", 1000, 0.7, 1.0, 4.0, mc=1)  # rows[0] again (same mc, rb): counted once
    rows[-1]["rb"] = 1.1
    add("bias", 1000, math.nan, 1.0, 4.0)  # no z: not counted
    # variance: 3 counted, gaps 0.5 and 0.25
    add("var", 1000, -4.25, 3.0, 2.0)
    add("var", 1000, 0.5, 5.0, 4.0)
    add("var", 10, 1.5, 8.0, 1.0)
    add("var", 1000, math.nan, 1.0, 1.0, flag="moments of order 4")
    add("var", 1000, math.nan, 1.0, 1.0, flag="moments of order 4")
    # risk: 1 counted, without a theory
    add("risk", 1000, 0.25, 1.0, math.nan)
    return pd.DataFrame(rows)


def test_the_check_table_counts_the_comparisons_of_each_measure():
    table = _check_table()
    result = SimpleNamespace(
        largest_m=1000, n_z=12345, n_bias=10, n_bias_fail=3, n_asym=2000, n_asym_fail=1,
        asym_z_limit=3.4567, n_small_m=1234,
    )  # fmt: skip
    text = T.table_check(table, result)
    rows = _rows(text)
    assert rows[0] == ["measure", "compared", "max ∣z∣", "∣z∣ > 2", "left out",
                       "gap to theory, m = 1,000"]  # fmt: skip
    # bias: z of 2.5, −0.5, 2.0, 1.0, 0.1, −3.1 counted; 2 of 6 beyond 2; left out the two
    # rows of infinite moments (not the 'small m' one); the median gap of 0.1, 0.2, 0.6.
    # variance: |z| 4.25, 0.5, 1.5, one beyond 2; two left out; the median of 0.5 and 0.25
    assert rows[1] == ["bias", "6", "3.1", "33.3 %", "2", "0.20"]
    assert rows[2] == ["variance", "3", "4.2", "33.3 %", "2", "0.38"]
    assert rows[3] == ["prediction risk", "1", "0.25", "0.0 %", "0", "–"]
    caption = _caption(text)
    limit = NormalDist().inv_cdf(1 - 0.01 / (2 * 12345))
    assert (
        f"the largest |z| of all 12,345, at most {limit:.2f} (Bonferroni: at most 1 % false"
        in caption
    )
    assert (
        "7 of 10 biases and 1,999 of 2,000 variances and risks agree within 3.46 standard"
        in caption
    )
    assert "1,234 comparisons at smaller m are left out" in caption
    assert "(4.6 % for independent z)" in caption
    # what the last column is, and what the check compares beyond it
    assert (
        "the median relative gap between Rao–Blackwell and the large-m theory at the largest "
        "m (for the bias, the theory with its 1/m term). The check compares them at every m "
        "the expansion reaches: "
    ) in caption
    assert caption.endswith("{#tbl-check}")


# --- table_conventions -----------------------------------------------------------------


def test_the_conventions_table_has_every_row_and_escapes_stars():
    text = T.table_conventions()
    rows = _rows(text)
    assert rows[0] == [
        "library or text", "objective as written", "α of the sum form (scaling)",
        "intercept penalised",
    ]  # fmt: skip
    assert text.splitlines()[1] == "|:---|:---|:---|:---|"
    assert len(rows) - 1 == len(T.CONVENTIONS)
    for row, conv in zip(rows[1:], T.CONVENTIONS, strict=True):
        assert row == list(conv)  # the cells keep their Markdown (*emphasis*)
    caption = _caption(text)
    assert caption.endswith("{#tbl-conventions}")
    assert "Σ(y − ŷ)² + α‖w‖²" in caption and "training-set size m" in caption
    assert "scikit-learn's MLP divides its penalty by the size of each minibatch" in caption


# --- lambda_spread and table_tuning ----------------------------------------------------


def _tuning():
    """Conditional tunings of degrees 1 and 2 at m = 3 (degree 1: not above degree + 2),
    4, 10 and 1,000 (degree 2 from 5), and marginal ones to be ignored."""
    rows = []
    alphas = {4: 2.0, 5: 2.5, 10: 1.0, 1000: 4.0, 3: 100.0}
    ses = {4: 0.01, 5: 0.02, 10: 0.04, 1000: 0.03, 3: 0.9}
    for degree, ms in ((1, (3, 4, 10, 1000)), (2, (4, 5, 10, 1000))):
        for m in ms:
            a = alphas[m] * degree
            lams = {"none": a / m, "m": a, "sqrt-m": a / math.sqrt(m), "k": 0.7}
            if m == 3 or (degree == 2 and m == 4):
                lams = {s: 1e-9 for s in lams}  # would be the smallest of all
            for scaling, lam in lams.items():
                for method in ("conditional", "marginal"):
                    rows.append(
                        dict(
                            m=m, degree=degree, scaling=scaling, method=method,
                            lambda_opt=lam if method == "conditional" else 1e6 * lam,
                            alpha_opt=a if method == "conditional" else 99.0,
                            log_alpha_se=ses[m], alpha_limit=4.5678 * degree,
                        )
                    )  # fmt: skip
    return pd.DataFrame(rows)


def test_the_lambda_spread_is_max_over_min_above_degree_plus_two():
    tuning = _tuning()
    spread = T.lambda_spread(tuning)
    t = tuning[(tuning.method == "conditional") & (tuning.m > tuning.degree + 2)]
    assert set(spread.index) == {(k, s) for k in (1, 2) for s in ("none", "m", "sqrt-m", "k")}
    for (k, s), g in t.groupby(["degree", "scaling"]):
        hi, lo = g.loc[g.lambda_opt.idxmax()], g.loc[g.lambda_opt.idxmin()]
        assert spread.loc[(k, s), "spread"] == pytest.approx(hi.lambda_opt / lo.lambda_opt)
        if s == "k":  # one λ at every m: one row, no error
            assert spread.loc[(k, s), "spread"] == 1.0 and spread.loc[(k, s), "se"] == 0.0
        else:
            se = hi.lambda_opt / lo.lambda_opt * math.sqrt(hi.log_alpha_se**2 + lo.log_alpha_se**2)
            assert spread.loc[(k, s), "se"] == pytest.approx(se)
    # degree 1 under 'none': 0.5 at m = 4 over 0.004 at m = 1,000
    assert spread.loc[(1, "none"), "spread"] == pytest.approx(125.0)
    assert spread.loc[(1, "none"), "se"] == pytest.approx(125 * math.hypot(0.01, 0.03))
    # under 'm': 4 at 1,000 over 1 at 10
    assert spread.loc[(1, "m"), "se"] == pytest.approx(4 * 0.05)


def test_the_tuning_table_shows_the_spreads_and_alpha_at_the_largest_m():
    tuning = _tuning()
    text = T.table_tuning(tuning)
    rows = _rows(text)
    assert rows[0] == ["degree", "`none`", "`m`", "`sqrt-m`", "`k`", "α\\* at m = 1,000", "α\\*∞"]
    # degree 1 (m = 3 is not above degree + 2): λ* under 'none' 2/4 over 4/1,000 = 125, SE
    # 125·hypot(0.01, 0.03) = 3.95; under 'm' 4 over 1 (m = 10), SE 4·hypot(0.03, 0.04) = 0.2;
    # under 'sqrt-m' (2/√4)/(4/√1,000) = 7.91, SE 7.91·hypot(0.01, 0.03) = 0.25; α* = 4 at
    # m = 1,000 with SE 4·0.03; α*∞ = 4.5678
    assert rows[1] == ["1", "125.0 (4.0)×", "4.00 (0.20)×", "7.91 (0.25)×", "1.00×",
                       "4.00 (0.12)", "4.57"]  # fmt: skip
    # degree 2: α* = 5 at m = 5, 2 at 10, 8 at 1,000 (m = 4 is not above degree + 2)
    none = (5 / 5) / (8 / 1000)
    sq = (5 / math.sqrt(5)) / (8 / math.sqrt(1000))
    assert rows[2] == [
        "2",
        f"{with_se(none, none * math.hypot(0.02, 0.03))}×",
        f"{with_se(4.0, 4 * math.hypot(0.03, 0.04))}×",
        f"{with_se(sq, sq * math.hypot(0.02, 0.03))}×",
        "1.00×",
        with_se(8.0, 8 * 0.03),
        fmt(2 * 4.5678),
    ]
    caption = _caption(text)
    assert f"averaged over the first {TUNING_DESIGNS} simulated designs of each m" in caption
    assert caption.startswith(
        ": How many-fold the risk-optimal λ\\* varies over the design's m (above degree + 2; "
        "max/min) under each scaling"
    )
    assert "Standard errors in brackets" in caption and caption.endswith("{#tbl-tuning}")


def test_the_tuning_table_has_a_row_for_a_degree_with_one_m_just_above_degree_plus_two():
    rows = []
    # 8 = 5 + 3; degree 6 has no m above 6 + 2, so no row
    for degree, m, a in ((1, 4, 2.0), (1, 10, 1.0), (5, 8, 3.0), (6, 8, 1.5)):
        for s in ("none", "m", "sqrt-m", "k"):
            rows.append(dict(m=m, degree=degree, scaling=s, method="conditional",
                             lambda_opt=a / m if s == "none" else a, alpha_opt=a,
                             log_alpha_se=0.01, alpha_limit=2.5))  # fmt: skip
    got = _rows(T.table_tuning(pd.DataFrame(rows)))
    assert got[0][5] == "α\\* at m = 10"
    assert [r[0] for r in got[1:]] == ["1", "5"]
    assert got[2][1:] == ["1.00×"] * 4 + [with_se(3.0, 0.03), "2.50"]


def test_the_scalings_table_is_labelled_and_left_aligned():
    text = T.table_scalings()
    assert text.splitlines()[1] == "|:---|:---|:---|"
    assert _rows(text)[0] == ["scaling", "penalty as written", "α = m·c"]
    assert [r[0] for r in _rows(text)[1:]] == ["`none`", "`m`", "`sqrt-m`", "`k`"]
    assert _caption(text).endswith("with a different factor c for each scaling. {#tbl-scalings}")


# --- benefit ---------------------------------------------------------------------------


def _moment_order(m: int, k: int) -> float:
    """min over j = 1…k of (m − ⌊k/j⌋)/j (study.existence's docstring)."""
    return min((m - k // j) / j for j in range(1, k + 1))


def test_the_benefit_cells_follow_the_moments_of_least_squares():
    rows = []
    ms = [3, 4, 5, 6, 7, 9, 10, 50]
    for k, mks in ((1, (3, 4, 5, 6, 10)), (2, (5, 7, 9, 10))):
        for m in mks:
            for scaling, method in (("m", "conditional"), ("none", "conditional"), ("m", "x")):
                b = 1.23456 + m / 100 if (scaling, method) == ("m", "conditional") else 77.7
                rows.append(dict(m=m, degree=k, scaling=scaling, method=method,
                                 benefit=b, benefit_se=0.0456))  # fmt: skip
    tuning = pd.DataFrame(rows)
    tuning.loc[(tuning.m == 10) & (tuning.degree == 1), "benefit"] = math.inf
    text = T.table_benefit(tuning, ms=ms)
    got = _rows(text)
    assert got[0] == ["degree"] + [f"m = {m:,}" for m in ms]
    for row, (k, mks) in zip(got[1:], ((1, (3, 4, 5, 6, 10)), (2, (5, 7, 9, 10))), strict=True):
        assert row[0] == str(k)
        for m, cell in zip(ms, row[1:], strict=True):
            b = 1.23456 + m / 100
            if m not in mks:
                assert cell == "–"
            elif (k, m) == (1, 10) or _moment_order(m, k) <= 2:
                assert cell == "∞", (k, m)
            elif _moment_order(m, k) <= 4:
                assert cell == f"{fmt(b, 3)} †", (k, m)
            else:
                assert cell == with_se(b, 0.0456), (k, m)
    # the thresholds are met exactly: order 2 at (1, 3) and (2, 5), order 4 at (1, 5), (2, 9)
    assert got[1][1:] == ["∞", "1.27 †", "1.28 †", "1.295 (0.046)", "–", "–", "∞", "–"]
    assert got[2][1:] == ["–", "–", "∞", "–", "1.30 †", "1.32 †", "1.335 (0.046)", "–"]
    caption = _caption(text)
    assert f"the first {TUNING_DESIGNS} simulated designs" in caption
    assert caption.startswith(
        ": What the tuned penalty gains: the expected prediction risk without a penalty over "
        "the risk at the best λ"
    )
    assert caption.endswith("{#tbl-benefit}")


# --- extra risk, transfer, tune once ---------------------------------------------------


@pytest.mark.parametrize(
    "extra, se, shown",
    [
        (0.0003, 0.0001, "< 0.05 %"),  # rounding
        (-0.0003, 0.0001, "< 0.05 %"),  # either side of 0
        (0.0001, math.nan, "< 0.05 %"),  # no error: still rounding
        (0.0003, 0.0005, "+" + percent_with_se(0.0003, 0.0005)),  # an error as large shows
        (0.0005, 0.0, "+" + percent_with_se(0.0005, 0.0)),  # not below the threshold
        (0.076, 0.001, "+7.60 (0.10) %"),
        (0.9, 0.02, "+90.0 (2.0) %"),
        (1.0, 0.05, "2.000 (0.050)×"),  # twice the best risk: the ratio
        (2.5, 0.2, "3.50 (0.20)×"),
    ],
)
def test_extra_risk_is_a_percentage_a_ratio_or_rounding(extra, se, shown):
    assert T.extra_risk(extra, se) == shown


def test_the_transfer_table_shows_the_extra_risk_at_each_m_and_scaling():
    cols = ["m0", "m", "degree", "scaling", "risk_ratio", "risk_ratio_se"]
    transfer = pd.DataFrame(
        [
            (100, 10, 1, "none", 1.076, 0.001),
            (100, 10, 1, "m", 3.5, 0.2),
            (100, 10, 1, "k", 1.0003, 0.0001),
            (100, 1000, 1, "m", 1.2, 0.01),
            (100, 1000, 1, "sqrt-m", 1.5, 0.02),
            (100, 500, 1, "m", 9.0, 0.1),  # an m not asked for
            (10, 1000, 1, "m", 7.0, 0.1),  # tuned at another m0
            (100, 1000, 3, "none", 2.0, 0.05),
        ],
        columns=cols,
    )
    text = T.table_transfer(transfer, m0=100, ms=[10, 1000])
    rows = _rows(text)
    assert rows[0] == ["degree", "m", "`none`", "`m`", "`sqrt-m`", "`k`"]
    assert rows[1:] == [
        ["1", "10", "+7.60 (0.10) %", "3.50 (0.20)×", "–", "< 0.05 %"],
        ["1", "1,000", "–", "+20.0 (1.0) %", "+50.0 (2.0) %", "–"],
        ["3", "1,000", "2.000 (0.050)×", "–", "–", "–"],
    ]
    caption = _caption(text)
    assert "tuning λ once at m = 100 and keeping it" in caption
    assert "from the designs of m and of m = 100;" in caption
    assert "from twice the best risk on, the ratio itself (×)." in caption
    assert caption.endswith("{#tbl-transfer}")


def test_tune_once_over_two_degrees_leaves_out_k_and_marks_missing_pairs():
    cols = ["m0", "m", "degree", "scaling", "risk_ratio", "risk_ratio_se"]
    transfer = pd.DataFrame(
        [
            (10, 100, 4, "m", 1.02, 0.001),
            (10, 2000, 4, "m", 1.10, 0.002),
            (2000, 10, 4, "m", 1.3, 0.01),
            (10, 2000, 4, "k", 50.0, 1.0),
            (10, 2000, 4, "none", 40.0, 1.5),
            (10, 100, 2, "sqrt-m", 1.0001, 0.00001),
            (100, 10, 2, "sqrt-m", 1.7, 0.03),
            (100, 100, 2, "m", 5.0, 0.1),  # the same m: neither direction
        ],
        columns=cols,
    )
    worst = T.tune_once(transfer)
    row = worst.loc[(4, "m", "down")]
    assert (row.m0, row.m, row.extra, row.se) == (2000, 10, pytest.approx(0.3), 0.01)
    assert (2, "m", "up") not in worst.index and (2, "m", "down") not in worst.index
    text = T.table_tune_once(transfer)
    rows = _rows(text)
    assert rows[0] == ["degree", "m₀ → m", "`m`", "`sqrt-m`", "`none`"]
    assert rows[1:] == [
        ["2", "up", "–", "< 0.05 % at 10 → 100", "–"],
        ["2", "down", "–", "+70.0 (3.0) % at 100 → 10", "–"],
        ["4", "up", "+10.00 (0.20) % at 10 → 2,000", "–", "40.0 (1.5)× at 10 → 2,000"],
        ["4", "down", "+30.0 (1.0) % at 2,000 → 10", "–", "–"],
    ]
    caption = _caption(text)
    assert "up: m > m₀, down: m < m₀" in caption and caption.endswith("{#tbl-tune-once}")
    assert caption.startswith(
        ": Tune once, in risk terms: the worst extra prediction risk from tuning λ at one "
        "sample size m₀ and keeping it at another m"
    )
    assert "from twice the best risk on, the ratio itself (×)" in caption


# --- sensitivity -----------------------------------------------------------------------


def test_the_sensitivity_table_has_every_column_of_the_chosen_degrees():
    rows = []
    for degree in (1, 2):
        for factor in (0.25, 4.0, 1.0):
            rows.append(
                dict(
                    degree=degree, noise_factor=factor, noise_sd=0.7 * factor,
                    noise_to_slope=0.7 * factor / 1.9, m0=100, m=20000,
                    alpha_m0=1.23456 * factor * degree, alpha_m=2.34567 * factor,
                    alpha_m_se=0.0123, alpha_limit=3.45678 * factor,
                    extra_m=0.0456 * factor, extra_m_se=0.0012,
                    extra_none=1.5 * factor, extra_none_se=0.034,
                )
            )  # fmt: skip
    sens = pd.DataFrame(rows)
    text = T.table_sensitivity(sens, degrees=[2])
    got = _rows(text)
    assert got[0] == ["degree", "σ", "σ/∣β₁∣", "α\\* at 100", "α\\* at 20,000", "α\\*∞", "`m`",
                      "`none`"]  # fmt: skip
    expected = [
        [
            "2", fmt(r.noise_sd, 3), fmt(r.noise_to_slope, 3), fmt(r.alpha_m0, 3),
            with_se(r.alpha_m, r.alpha_m_se), fmt(r.alpha_limit, 3),
            T.extra_risk(r.extra_m, r.extra_m_se), T.extra_risk(r.extra_none, r.extra_none_se),
        ]
        for r in sens[sens.degree == 2].itertuples()
    ]  # fmt: skip
    assert got[1:] == expected
    # factor 0.25: α* at 20,000 = 2.34567·0.25 = 0.586 ± 0.0123, α*∞ = 3.45678·0.25 = 0.864,
    # extra risk 0.0456·0.25 = 1.14 % ± 0.12 % under 'm' and 1.5·0.25 = 37.5 % ± 3.4 %
    # without the m
    assert got[1][4:] == ["0.586 (0.012)", "0.864", "+1.14 (0.12) %", "+37.5 (3.4) %"]
    # factor 4: an extra risk of 1.5·4 = 600 %, past twice the best risk: the ratio 1 + 6
    assert got[2][7] == "7.000 (0.034)×"
    caption = _caption(text)
    assert "the risk-optimal α\\* at m = 100 and 20,000 and its limit" in caption
    assert "the extra risk at m = 20,000 of the λ tuned at m = 100" in caption
    assert (
        "for the design's σ times 0.25 to 4 (exact risk given each design, averaged over the "
        "tuning's designs; standard errors in brackets)"
    ) in caption
    assert "With the intercept unpenalised these numbers depend on σ/∣β₁∣ alone" in caption
    assert caption.endswith("{#tbl-sensitivity}")


# --- provenance ------------------------------------------------------------------------


def _manifest(**changes):
    manifest = {
        "design": {
            "name": "tiny",
            "grid": {
                "m": [5, 10, 20],
                "degree": [1, 2],
                "lambda": [0, 0.1, 1, 10],
                "scaling": ["none", "m"],
                "basis": ["monomial", "orthonormal"],
            },
        },  # fmt: skip
        "design_file": "simulations/tiny.toml",
        "design_hash": "0123456789abcdefXYZ",
        "seed": 42,
        "replications": 12000,
        "counts": {"chunks": 1500, "tasks": 3000, "fits": 1234567, "data_points": 98765432},
        "noise_draw": "sufficient",
        "run": {
            "wall_seconds": 12.345,
            "jobs": 3,
            "backend": "loky",
            "cores": 8,
            "platform": "Linux",
        },  # fmt: skip
        "versions": {"numpy": "2.0", "study": "1.1", "pandas": "2.2"},
    }
    manifest.update(changes)
    return manifest


def test_the_provenance_table_states_the_manifest():
    rows = dict(_rows(T.table_provenance(_manifest()))[1:])
    assert rows == {
        "design": "`tiny` (`simulations/tiny.toml`), hash `0123456789ab`",
        "seed": "42",
        "replications per cell": "12,000 in 1,500 chunks, 3,000 tasks",
        "cells": "3 m × 2 degrees × 4 λ × 2 scalings × 2 bases",
        "fits": "1,234,567 on 98,765,432 data points",
        "noise": (
            "Φᵀε drawn as N(0, σ²G) given the points (K + 1 normals per data set of more "
            "than K + 1 points, its m values otherwise)"
        ),
        "steps": "engine, theory",
        "run": "12.3 s wall, 3 jobs (loky), 8 cores, Linux",
        "versions": "numpy 2.0, pandas 2.2, study 1.1",
    }
    text = T.table_provenance(_manifest())
    assert text.splitlines()[1] == "|:---|:---|"
    # a run whose theory came later: the run row is the engine's
    engine = {"wall_seconds": 99.0, "jobs": 1, "backend": "serial", "cores": 2, "platform": "Mac"}
    rows = dict(_rows(T.table_provenance(_manifest(engine_run=engine)))[1:])
    assert rows["run"] == "99.0 s wall, 1 jobs (serial), 2 cores, Mac"
    assert _caption(text) == ": Provenance of the results. {#tbl-provenance}"


def test_the_provenance_table_without_chunks_design_file_or_second_basis():
    manifest = _manifest(counts={"fits": 10, "data_points": 2000}, steps=["engine"])
    del manifest["design_file"], manifest["noise_draw"]
    manifest["design"]["grid"]["basis"] = ["monomial"]
    rows = dict(_rows(T.table_provenance(manifest))[1:])
    assert rows["design"] == "`tiny`, hash `0123456789ab`"
    assert rows["replications per cell"] == "12,000"
    assert rows["cells"] == "3 m × 2 degrees × 4 λ × 2 scalings"
    assert rows["noise"] == "m normal values per data set"
    assert rows["steps"] == "engine"
    del manifest["design"]["grid"]["basis"]
    assert dict(_rows(T.table_provenance(manifest))[1:])["cells"] == rows["cells"]
    manifest["noise_draw"] = "something new"
    assert dict(_rows(T.table_provenance(manifest))[1:])["noise"] == "?"


# --- logistic: reading, matching, cells ------------------------------------------------


def _logistic_raw(**grid):
    raw = copy.deepcopy(LOGISTIC_SMALL)
    raw["grid"].update(grid)
    return raw


def _write_results(folder, raw):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({"design": raw}))
    return folder


@pytest.mark.parametrize(
    "change, allowed",
    [
        ({"model": {"family": "gaussian"}},
         "results of model.family = 'gaussian'; expected 'logistic'"),
        ({"grid": {"lambda": [0.01, 0.1]}},
         "key 'grid.lambda' lacks 0, which the separation needs"),
        ({"grid": {"scaling": ["m", "sqrt-m"]}},
         "key 'grid.scaling' is ['m', 'sqrt-m']; the section needs 'm' and 'none'"),
        ({"grid": {"scaling": ["none", "k"]}},
         "key 'grid.scaling' is ['none', 'k']; the section needs 'm' and 'none'"),
        ({"grid": {"basis": ["orthonormal"]}}, "key 'grid.basis' lacks 'monomial'"),
    ],
)  # fmt: skip
def test_read_logistic_refuses_in_one_line_what_the_section_cannot_use(tmp_path, change, allowed):
    raw = copy.deepcopy(LOGISTIC_SMALL)
    for key, value in change.items():
        raw[key] = {**raw.get(key, {}), **value}
    if raw["model"]["family"] == "gaussian":
        raw["dgp"]["noise_sd"] = 1.0
    folder = _write_results(tmp_path / "r", raw)
    with pytest.raises(DesignError) as err:
        L.read_logistic(folder)
    message = str(err.value)
    assert message == f"option '--logistic': {folder}: {allowed}"
    assert "\n" not in message


def test_read_logistic_keeps_the_monomial_rows_of_every_table(tmp_path):
    folder = _write_results(tmp_path / "r", _logistic_raw(basis=["monomial", "orthonormal"]))
    both = pd.DataFrame(
        {"m": [5, 5, 10], "scaling": ["m"] * 3, "x": [1, 2, 3],
         "basis": ["orthonormal", "monomial", "monomial"]}
    )  # fmt: skip
    for name in ("summary", "risk", "fits"):
        both.to_csv(folder / f"{name}.csv", index=False)
    # tuning.csv without a basis (version 9): its empty boundary stays NaN, "NA" a string
    pd.DataFrame({"m": [5, 10], "boundary": ["", "NA"]}).to_csv(folder / "tuning.csv", index=False)
    design, t = L.read_logistic(folder)
    assert design.family == "logistic" and design.basis == ("monomial", "orthonormal")
    for name in ("summary", "risk", "fits"):
        assert t[name].x.tolist() == [2, 3] and t[name].index.tolist() == [0, 1]
        assert list(t[name].columns) == ["m", "scaling", "x", "basis"]
    assert t["tuning"].boundary.isna().tolist() == [True, False]
    assert t["tuning"].boundary.iloc[1] == "NA"
    # a summary written before the basis axis gets one, all monomial
    both.drop(columns="basis").to_csv(folder / "summary.csv", index=False)
    _, t = L.read_logistic(folder)
    assert t["summary"].x.tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    "best, alpha0",
    [
        (2.5, 1.0),  # log(2.5) < log(8/2.5)
        (3.0, 8.0),  # log(3) > log(8/3)
        (0.1, 1.0),  # 0.125 is nearer, but only 'm' and 'sqrt-m' have its λ on the grid
    ],
)
def test_matching_takes_the_m_nearest_100_and_the_alpha_every_scaling_can_give(best, alpha0):
    """m0 = 64, the design's m nearest 100 on a log scale (400 is nearer in absolute terms);
    α = 1 and 8 are given by λ = α/64 under 'none', α/8 under 'sqrt-m' and α under 'm'."""
    design = design_from_dict(
        _logistic_raw(m=[5, 10, 64, 160], **{"lambda": [0.0, 1 / 64, 0.125, 1.0, 8.0]})
    )
    tuning = pd.DataFrame(
        [(64, 2, best), (64, 1, 0.0123), (160, 2, 0.0123), (10, 2, 0.0123)],
        columns=["m", "degree", "alpha_opt"],
    )
    m0, a0, lams = L.matching(design, tuning, 2)
    assert m0 == 64 and a0 == alpha0
    assert lams == pytest.approx({"none": alpha0 / 64, "m": alpha0, "sqrt-m": alpha0 / 8})


def test_matching_refuses_a_grid_without_a_pair_for_none_and_m():
    design = design_from_dict(_logistic_raw(**{"lambda": [0.0, 0.3, 0.7]}))
    tuning = pd.DataFrame([(100, 2, 0.5)], columns=["m", "degree", "alpha_opt"])
    with pytest.raises(DesignError) as err:
        L.matching(design, tuning, 2)
    assert str(err.value) == (
        "key 'grid.lambda': no λ > 0 of [0.0, 0.3, 0.7] gives under 'none' the α that another "
        "gives under 'm' at m = 100 (the m nearest 100); the section's bias figure needs a "
        "pair such as 1 and 0.01"
    )


def test_cell_finds_the_one_row_lambda_to_rounding():
    frame = pd.DataFrame({"m": [10, 10, 20, 10], "lambda": [0.1 + 1e-15, 0.2, 0.1, 0.1 * 1.001],
                          "v": [1, 2, 3, 4]})  # fmt: skip
    assert L._cell(frame, m=10, lambda_=0.1).v == 1
    assert L._cell(frame, lambda_=0.2).v == 2
    with pytest.raises(ValueError, match=r"^expected one row where \{'m': 30\}, found 0$"):
        L._cell(frame, m=30)
    with pytest.raises(ValueError, match="found 3$"):
        L._cell(frame, m=10)


def test_degrees_are_listed_in_words():
    assert L._degrees([3]) == "3"
    assert L._degrees([1, 2]) == "1 and 2"
    assert L._degrees([1, 2, 5]) == "1, 2 and 5"


# --- separation ------------------------------------------------------------------------


def _fits(counts, *, n=1200, failed=(), positive_no_estimate=None):
    """fits.csv rows: λ = 0 under 'm' and 'none' (the same fits), and α = 1 under both,
    ``counts`` {(m, degree): data sets without an estimate at λ = 0}."""
    rows = []
    for (m, k), bad in counts.items():
        for lam, scaling in ((0.0, "m"), (0.0, "none"), (1.0, "m"), (1.0 / m, "none")):
            no = bad if lam == 0 else (positive_no_estimate or {}).get(m, 0)
            nc = dict(failed).get((m, k, lam), 0)
            alpha = lam * (m if scaling == "none" else 1)
            rows.append(dict(m=m, degree=k, scaling=scaling, alpha=alpha, fitted=n - no - nc,
                             no_estimate=no, not_converged=nc, **{"lambda": lam}))  # fmt: skip
    return pd.DataFrame(rows)


def test_the_separation_paragraph_quotes_the_shares_at_5_10_and_20():
    counts = {(5, 1): 300, (5, 2): 600, (20, 1): 0, (20, 2): 12, (50, 1): 0, (50, 2): 0,
              (200, 1): 0, (200, 2): 0}  # fmt: skip
    fits = _fits(counts, positive_no_estimate={5: 30, 20: 1})
    design = SimpleNamespace(m=(5, 20, 50, 200), penalize_intercept=False)
    text = L.separation_paragraph(design, fits, "fig-sep")
    shares = (
        f"at m = 5, {_binomial(300, 1200)}, {_binomial(600, 1200)}; "
        f"at m = 20, {percent(0.0)}, {_binomial(12, 1200)}. "
    )
    assert (
        f"at λ = 0 (@fig-sep), for degrees 1 and 2 (standard errors in brackets): {shares}" in text
    )
    assert "From m = 50 on, none of the 1,200 data sets of a cell separates. " in text
    assert (
        "Any λ > 0 gives every data set a fit except those whose labels are all equal (the "
        f"intercept is not penalised): {_binomial(30, 1200)} at m = 5. "
    ) in text
    assert text.endswith(
        "The Monte Carlo moments below are over the data sets with an estimate; Newton's "
        "method converged on every one of them."
    )
    assert "[@albert1984]: the fit runs off to infinity, the logistic twin of three points" in text
    # the intercept penalised: no such sentence
    design.penalize_intercept = True
    assert "Any λ > 0" not in L.separation_paragraph(design, fits, "fig-sep")


def test_the_separation_paragraph_without_5_10_20_and_with_failed_fits():
    counts = {(m, k): (40 if m == 8 and k == 1 else 0 if m >= 6 else 100 * k)
              for m in (3, 4, 6, 8, 1000) for k in (1, 2, 3)}  # fmt: skip
    failed = {(6, 2, 0.0): 3, (8, 3, 1.0): 1, (1000, 1, 0.0): 1200 - 2}
    fits = _fits(counts, n=2400, failed=failed)
    design = SimpleNamespace(m=(3, 4, 6, 8, 1000), penalize_intercept=False)
    text = L.separation_paragraph(design, fits, "fig-sep")
    assert "for degrees 1, 2 and 3 (standard errors" in text
    assert (
        "(standard errors in brackets): "
        f"at m = 3, {_binomial(100, 2400)}, {_binomial(200, 2400)}, "
        f"{_binomial(300, 2400)}; at m = 4, {_binomial(100, 2400)}, {_binomial(200, 2400)}, "
        f"{_binomial(300, 2400)}; at m = 6, {percent(0.0)}, {percent(0.0)}, {percent(0.0)}. "
    ) in text
    assert "; at m = 8, " not in text
    # separation at m = 8 after none at m = 6: none separates from m = 1,000 on, not from 6
    assert "From m = 1,000 on, none of the 2,400 data sets of a cell separates. " in text
    # λ = 0 failures counted once over the two scalings that share the fit
    assert text.endswith(
        "; Newton's method failed on 1,202 of them (a singular Hessian, a line search that "
        "could not descend, or its iteration limit: 3 at m = 6, degree 2, α = 0; "
        "1 at m = 8, degree 3, α = 1; 1,198 at m = 1,000, degree 1, α = 0), left out likewise."
    )
    assert f"{percent(0.0)} at m = 3. " in text


def test_all_equal_is_the_share_without_a_fit_at_the_smallest_m_under_m():
    fits = _fits({(5, 1): 10, (10, 1): 5}, n=800, positive_no_estimate={5: 40, 10: 8})
    fits.loc[(fits.m == 5) & (fits["lambda"] == 1.0), "not_converged"] = 200
    fits.loc[(fits.scaling == "none") & (fits["lambda"] > 0), "no_estimate"] = 0
    # 40 of 800 + 200 not converged: n counts every data set
    share = 40 / 1000
    assert L._all_equal(fits) == percent_with_se(share, math.sqrt(share * (1 - share) / 1000))


# --- bias ------------------------------------------------------------------------------


LAMS = {"none": 0.01, "m": 1.0, "sqrt-m": 0.1}


def _bias_summary(cells, *, asym=(0.25, 0.0123), own=None):
    """summary rows of degree 2, coefficient 1: ``cells`` {(m, scaling): (bias, mcse)} at
    the matched λ, with distractors at other λ, degrees and coefficients; ``own`` the
    λ = 0 rows {m: (bias, mcse, asym_step, bias_asym1)} under 'm'."""
    rows = []
    base = dict(true=1.7, bias_asym=math.nan, bias_asym1=math.nan, asym_step=0.05)
    for (m, s), (bias, mcse) in cells.items():
        extra = {}
        if m == 2000:
            extra = {"bias_asym": asym[0] if s == "none" else -0.5,
                     "bias_asym1": asym[1] if s == "m" else -0.5}  # fmt: skip
        rows.append({**base, "m": m, "degree": 2, "coef": 1, "scaling": s, "lambda": LAMS[s],
                     "bias": bias, "bias_mcse": mcse, **extra})  # fmt: skip
        for k, c, lam in ((1, 1, LAMS[s]), (2, 0, LAMS[s]), (2, 1, 10 * LAMS[s])):
            rows.append({**base, "m": m, "degree": k, "coef": c, "scaling": s, "lambda": lam,
                         "bias": 9.87, "bias_mcse": 0.01})  # fmt: skip
    for m, (bias, mcse, step, asym1) in (own or {}).items():
        for s in ("m", "none"):
            rows.append({**base, "m": m, "degree": 2, "coef": 1, "scaling": s, "lambda": 0.0,
                         "bias": bias if s == "m" else -5.0, "bias_mcse": mcse,
                         "asym_step": step, "bias_asym1": asym1})  # fmt: skip
    return pd.DataFrame(rows)


def _claims(ng0, ng, none0, none):
    """fades: |bias| under 'm' falls by more than twice the error of the difference;
    stays: the bias without the m does not so fall, and is beyond twice its own error."""

    def apart(a, b):
        return abs(a[0]) - abs(b[0]) > 2 * math.sqrt(a[1] ** 2 + b[1] ** 2)

    return apart(ng0, ng), (not apart(none0, none)) and abs(none[0]) > 2 * none[1]


@pytest.mark.parametrize(
    "ng0, ng, none0, none",
    [
        # (fades, stays) by _claims: all four outcomes occur
        # (T, T): 0.25 > 2·hypot(0.02, 0.01); 0.01 < 2·hypot(0.02, 0.01) and 0.27 > 0.02
        ((0.30, 0.02), (0.05, 0.01), (0.28, 0.02), (0.27, 0.01)),  # fades and stays
        # (F, T): 0.05 < 2·hypot(0.02, 0.02) = 0.057
        ((0.30, 0.02), (0.25, 0.02), (0.28, 0.02), (0.27, 0.01)),  # does not fade
        # (T, F): 0.28 − 0.10 > 2·hypot(0.02, 0.01)
        ((0.30, 0.02), (-0.05, 0.01), (0.28, 0.02), (0.10, 0.01)),  # shrinks without the m
        # (T, F): |0.02| = 2 MCSE, not beyond
        ((0.30, 0.02), (0.05, 0.01), (0.03, 0.02), (0.02, 0.01)),  # not told from 0
        # (F, F) at the thresholds: a fall of exactly 2·hypot(0.03, 0.04) = 0.1; a bias of
        # 2 MCSE
        ((0.25, 0.03), (0.15, 0.04), (0.28, 0.02), (0.125, 0.0625)),
    ],
)
def test_the_bias_claims_are_made_only_where_the_numbers_bear_them_out(ng0, ng, none0, none):
    cells = {(100, "m"): ng0, (2000, "m"): ng, (100, "none"): none0, (2000, "none"): none,
             (100, "sqrt-m"): (0.2, 0.01), (2000, "sqrt-m"): (-0.1234, 0.0056)}  # fmt: skip
    summary = _bias_summary(cells)
    design = SimpleNamespace(m=(10, 100, 2000))
    text = L.bias_paragraph(design, summary, 100, 1.0, LAMS, 2, "fig-b")
    fades, stays = _claims(ng0, ng, none0, none)
    assert text.startswith(
        "**The bias, with λ matched at m = 100.** @fig-b gives each scaling the λ that makes "
        "its penalty α = 1 at m = 100 (`none` λ = 0.01, `m` λ = 1, `sqrt-m` λ = 0.1; of the "
        "grid's values that every scaling's λ grid holds, the one nearest the best α there, "
        "below) and holds it. "
    )
    assert (
        f"From m = 100 to 2,000 the slope's bias at degree 2 goes from {with_se(*ng0)} to "
        f"{with_se(*ng)} under Ng's scaling and from {with_se(*none0)} to {with_se(*none)} "
        "without the m (Monte Carlo, standard errors in brackets), and from "
        f"{with_se(0.2, 0.01)} to {with_se(-0.1234, 0.0056)} under `sqrt-m`. "
    ) in text
    assert (
        "The large-m theory puts the bias without the m at 0.250 in the limit, and Ng's at "
        "0.0123 at m = 2,000, on its way to 0. "
    ) in text
    ng_text = (
        "under Ng's scaling the bias fades with m"
        if fades
        else "under Ng's scaling the simulation cannot tell the bias at m = 2,000 from that at "
        "m = 100 within twice their standard errors"
    )
    none_text = (
        "without the m it stays however many points there are"
        if stays
        else "without the m the simulation does not show it staying: it shrinks, or cannot be "
        "told from zero, within twice its standard error"
    )
    if fades and stays:
        assert f"As for least squares, {ng_text}, and {none_text}. " in text
    else:
        assert f"{ng_text[0].upper()}{ng_text[1:]}; {none_text}. " in text
    assert "bias of its own" not in text  # no λ = 0 rows


def test_the_bias_paragraph_without_sqrt_m_theory_or_with_its_own_bias():
    cells = {(100, "m"): (0.3, 0.02), (2000, "m"): (0.05, 0.01), (100, "none"): (0.28, 0.02),
             (2000, "none"): (0.27, 0.01)}  # fmt: skip
    lams = {"none": 0.01, "m": 1.0}
    own = {10: (0.9, 0.01, 0.5, 0.8), 50: (0.3, 0.05, 0.1, 0.2), 1000: (0.01, 0.001, 0.01, 0.01)}
    design = SimpleNamespace(m=(10, 100, 2000))
    for asym in ((math.nan, 0.0123), (0.25, math.nan)):
        summary = _bias_summary(cells, asym=asym, own=own)
        text = L.bias_paragraph(design, summary, 100, 1.0, lams, 2, "fig-b")
        assert "`sqrt-m`" not in text
        assert "without the m (Monte Carlo, standard errors in brackets). " in text
        assert "The large-m theory" not in text
        # the smallest m whose step is at most 0.1 (exactly 0.1 at m = 50)
        assert text.endswith(
            "Unlike least squares, the unpenalised estimator has a bias of its own: its 1/m term "
            "[@coxsnell1968] puts the slope's bias at 0.200 at m = 50 and degree 2, and the "
            f"simulation finds {with_se(0.3, 0.05)}, away from zero, as the theory says."
        )


@pytest.mark.parametrize(
    "bias, mcse, true, asym1, verdict",
    [
        (0.1, 0.05, 1.7, 0.2, "which at this m cannot be told from zero within twice its "
         "standard error"),  # exactly twice: not told apart
        (-0.1, 0.05, 1.7, 0.2, "which at this m cannot be told from zero"),
        (0.1001, 0.05, 1.7, 0.2, "away from zero, as the theory says"),
        (-0.3, 0.05, -1.7, -0.2, "away from zero, as the theory says"),
        (-0.3, 0.05, -1.7, 0.2, "away from zero, against the sign of the theory's term"),
        (0.3, 0.05, -1.7, 0.2, "towards zero, as the theory says"),
        (0.3, 0.05, -1.7, -0.2, "towards zero, against the sign of the theory's term"),
    ],
)  # fmt: skip
def test_the_own_bias_verdict(bias, mcse, true, asym1, verdict):
    z = pd.Series({"bias": bias, "bias_mcse": mcse, "true": true, "bias_asym1": asym1})
    assert L._own_bias_verdict(z).startswith(verdict)


def test_apart_is_more_than_z_standard_errors_of_the_difference():
    def row(bias, mcse):
        return pd.Series({"bias": bias, "bias_mcse": mcse})

    # |1.5| − |0.5| = 1 is exactly 2·hypot(0.3, 0.4): not more
    assert not L._apart(row(1.5, 0.3), row(0.5, 0.4))
    assert L._apart(row(1.51, 0.3), row(-0.5, 0.4))
    assert not L._apart(row(1.51, 0.3), row(-0.5, 0.4), 3.0)
    assert L._apart(row(1.51, 0.3), row(-0.5, 0.4), 1.9)
    assert not L._apart(row(0.5, 0.01), row(1.5, 0.01))  # only a larger first counts


# --- the best penalty ------------------------------------------------------------------


def _tuning_risk(spec, *, limits=None):
    """tuning.csv and risk.csv under 'm' (and distractors under 'none'): ``spec`` {(m, k):
    (α*, asym_leverage, boundary, grid minimum α or None for a flat risk)}."""
    alphas = np.array([0.1, 0.3, 1.0, 3.0, 10.0])
    tuning, risk = [], []
    for (m, k), (best, lev, boundary, grid_min) in spec.items():
        for s in ("m", "none"):
            tuning.append(dict(m=m, degree=k, scaling=s, alpha_opt=best if s == "m" else 777.0,
                               alpha_limit=(limits or {}).get(k, 1.5), asym_leverage=lev,
                               boundary=boundary))  # fmt: skip
            for a in alphas:
                curve = 1.0 if grid_min is None else 1.0 + np.log(a / grid_min) ** 2
                risk.append(dict(m=m, degree=k, scaling=s, alpha=a, risk=curve, risk_mcse=1e-3,
                                 status="ok", basis="monomial", **{"lambda": a}))  # fmt: skip
    return pd.DataFrame(tuning), pd.DataFrame(risk)


def test_the_tuning_paragraph_quotes_the_alpha_where_the_expansion_applies():
    spec = {
        (10, 1): (0.5, 0.3, "", 1.0),  # the expansion does not apply
        (50, 1): (1.2, 0.1, "", 1.0),  # applies (exactly 0.1), agrees
        (200, 1): (2.9, 0.05, "", 3.0),  # agrees
        (1000, 1): (9.0, 0.01, "upper", 10.0),  # its minimum outside the searched range
        (50, 2): (0.32, 0.09, "", None),  # flat
        (200, 2): (0.2, 0.08, "", 3.0),  # a miss
        (1000, 2): (0.25, 0.05, "", None),  # flat
    }
    tuning, risk = _tuning_risk(spec, limits={1: 3.3333, 2: 0.45678})
    text = L.tuning_paragraph(tuning, risk, "fig-t")
    assert (
        "@fig-t shows the α that minimises the expected risk of the fitted log-odds, "
        "E[(η̂(x) − η\\*(x))²], from the large-m expansion with its 1/m terms"
    ) in text
    assert "a point is at most 0.1. " in text
    assert (
        "Under Ng's scaling λ\\* = α\\* tends to a limit, but moves on the way: at degree 1, "
        "from 1.20 at m = 50 to 2.90 at m = 200 (2.4-fold), limit 3.33; at degree 2, from "
        "0.320 at m = 50 to 0.250 at m = 1,000 (1.6-fold), limit 0.457. Without the m the best "
        "λ is α\\*/m"
    ) in text
    # degree 1 where the expansion applies (the boundary not asked): m = 50 to 1,000
    fold = (1.2 / 50) / (9.0 / 1000)
    assert (
        f": it falls {fmt(fold, 2)}-fold from m = 50 to 1,000 at degree 1, and like 1/m once "
        "α\\* settles. "
    ) in text
    assert (
        "The simulation's own risk on the design's λ grid agrees at 2 of the 3 (m, degree) "
        "pairs where the expansion applies"
    ) in text
    # the rule of "resolves" and "agrees", stated
    assert (
        "pairs where the expansion applies and the grid resolves the minimum (the grid values "
        "within 1.96 standard errors of the smallest risk, the errors combined as if "
        "independent, which widens the range, do not reach an end of the grid), the grid value "
        "nearest the expansion's α\\* is among them (m = 50 at degree 1, m = 200 at degree 1); "
        "not at m = 200, degree 2."
    ) in text
    assert text.endswith(
        " At the other 2 pairs where the expansion applies the risk is too flat near its "
        "minimum for the grid to resolve it: grid values up to an end of the grid are within "
        "1.96 standard errors of the smallest risk."
    )


def test_the_tuning_paragraph_when_every_pair_agrees_or_one_m_applies():
    spec = {(20, 2): (1.1, 0.5, "", 1.0), (100, 2): (2.8, 0.05, "", 3.0),
            (100, 3): (1.05, 0.02, "", 1.0), (400, 3): (0.2, 0.5, "", 1.0)}  # fmt: skip
    tuning, risk = _tuning_risk(spec, limits={2: math.inf, 3: 2.0})
    text = L.tuning_paragraph(tuning, risk, "fig-t")
    assert (
        "Under Ng's scaling λ\\* = α\\* moves with m: at degree 2, 2.80 at m = 100, limit ∞; "
        "at degree 3, 1.05 at m = 100, limit 2.00. Without the m the best λ is α\\*/m, which "
        "falls like 1/m once α\\* settles. "
    ) in text
    assert (
        "agrees wherever it can tell: at 2 of the 2 (m, degree) pairs where the expansion applies"
    ) in text
    assert text.endswith("is among them (m = 100 at degree 2, m = 100 at degree 3).")
    # a limit of 0 does not settle either
    tuning, risk = _tuning_risk(spec, limits={2: 1.0, 3: 0.0})
    assert "moves with m: " in L.tuning_paragraph(tuning, risk, "fig-t")
    tuning, risk = _tuning_risk(spec, limits={2: 1.0, 3: 0.01})
    assert "tends to a limit, but moves on the way: " in L.tuning_paragraph(tuning, risk, "f")


def test_the_tuning_paragraph_quotes_the_fall_of_lambda_from_two_m_on():
    """Two values of m where the expansion applies at the lowest degree are enough for the
    fall of the best λ = α*/m between them; one is not."""
    spec = {(50, 1): (1.2, 0.1, "", 1.0), (400, 1): (2.0, 0.02, "", 3.0),
            (400, 2): (0.7, 0.05, "", 1.0)}  # fmt: skip
    tuning, risk = _tuning_risk(spec)
    fold = (1.2 / 50) / (2.0 / 400)  # 4.8
    assert (
        f"Without the m the best λ is α\\*/m: it falls {fmt(fold, 2)}-fold from m = 50 to 400 "
        "at degree 1, and like 1/m once α\\* settles. "
    ) in L.tuning_paragraph(tuning, risk, "fig-t")
    one = {key: value for key, value in spec.items() if key != (50, 1)}
    tuning, risk = _tuning_risk(one)
    assert "Without the m the best λ is α\\*/m, which falls like 1/m once α\\* settles. " in (
        L.tuning_paragraph(tuning, risk, "fig-t")
    )


def test_the_tuning_paragraph_where_the_expansion_never_applies():
    spec = {(20, 1): (1.1, 0.5, "", 1.0), (100, 1): (2.8, 0.05, "lower", 3.0)}
    tuning, risk = _tuning_risk(spec)
    text = L.tuning_paragraph(tuning, risk, "fig-t")
    assert text.endswith(
        "a point is at most 0.1. At no m of the design does the expansion apply, so the "
        "figure's curves are a guide only, and the Monte Carlo risk on the design's λ grid is "
        "the measure."
    )
    # with no grid cell to compare: neither agreement nor flatness is claimed
    tuning, risk = _tuning_risk({(100, 1): (2.8, 0.05, "", 3.0), (20, 1): (1.1, 0.5, "", 1.0)})
    text = L.tuning_paragraph(tuning, risk[risk.m != 100], "fig-t")
    assert "agrees" not in text and "too flat" not in text
    assert text.endswith(", which falls like 1/m once α\\* settles. ")


# --- the check -------------------------------------------------------------------------


def test_the_check_paragraph_is_the_checks_counts():
    result = SimpleNamespace(n_bias=0, n_asym=0, n_bias_fail=0, n_asym_fail=0, n_small_m=5,
                             ok=False, audit=None)  # fmt: skip
    assert L.check_paragraph(result) == ""
    result.n_asym, result.n_bias, result.n_bias_fail, result.n_asym_fail = 2500, 1, 1, 7
    text = L.check_paragraph(result)
    assert text.startswith("`study check` compares the Monte Carlo bias, variance and risk")
    assert "recomputes" not in text  # no audit: no sentence on it
    assert (
        "it fails, with 0 of 1 biases and 2,493 of 2,500 variances and risks within their "
        "limits (5 comparisons left out where m is too small"
    ) in text
    result.ok, result.n_small_m = True, 1234
    result.audit = SimpleNamespace(n=12345, mismatches=["a", "b"])
    text = L.check_paragraph(result)
    assert text.startswith(
        "`study check` recomputes 12,345 numbers of the engine's fits with its own Newton's "
        "method and finds 2 mismatches, and compares the Monte Carlo"
    )
    assert "it passes, with" in text and "(1,234 comparisons left out" in text
    result.n_bias, result.n_asym = 1, 0
    assert L.check_paragraph(result) != ""


# --- the short answer ------------------------------------------------------------------


def test_the_short_answer_quotes_the_matched_biases_and_the_separation():
    cells = {(100, "m"): (0.3, 0.02), (2000, "m"): (0.05, 0.01), (100, "none"): (0.28, 0.02),
             (2000, "none"): (-0.2734, 0.0123), (100, "sqrt-m"): (0.1, 0.01),
             (2000, "sqrt-m"): (0.1, 0.01)}  # fmt: skip
    summary = _bias_summary(cells)
    fits = _fits({(5, 1): 300, (5, 2): 600, (100, 1): 0, (100, 2): 0, (2000, 1): 0,
                  (2000, 2): 0}, positive_no_estimate={5: 30})  # fmt: skip
    design = SimpleNamespace(m=(100, 5, 2000), penalize_intercept=False)
    text = L.short_answer(design, {"summary": summary, "fits": fits}, 100, 1.0, LAMS, 2)
    # |−0.2734| − |0.05| far beyond twice hypot(0.0123, 0.01): the same behaviour
    assert text.startswith(
        "**Logistic regression**, the model of the question, behaves the same way"
    )
    assert (
        "With λ matched at m = 100 (α = 1), the slope's bias at m = 2,000 and degree 2 is "
        f"{with_se(-0.2734, 0.0123)} without the m and {with_se(0.05, 0.01)} with it. "
    ) in text
    # the separation at the smallest m, and the all-equal labels of a free intercept
    assert (
        f"(at m = 5: {_binomial(300, 1200)} at degree 1, {_binomial(600, 1200)} at degree 2 "
        "of them), and any λ > 0 restores it, except for the data sets whose labels are all "
        f"equal ({_binomial(30, 1200)} at m = 5), which have no fit while the intercept is not "
        "penalised.\n"
    ) in text
    assert text.endswith("\n") and text.count("\n") == 1
    # without the m as small as with it: not the same behaviour; the intercept penalised
    small = _bias_summary({**cells, (2000, "none"): (0.0734, 0.0123)})
    design.penalize_intercept = True
    text = L.short_answer(design, {"summary": small, "fits": fits}, 100, 1.0, LAMS, 2)
    assert "the question, has a simulation of its own (@sec-logistic)" in text
    assert text.endswith("at degree 2 of them), and any λ > 0 restores it.\n")


# --- the section -----------------------------------------------------------------------


def _section(monkeypatch, raw, line=None):
    """logistic_section on the design ``raw``, its paragraphs and figures replaced by
    markers that record what they were given: the section's own text and choices alone."""
    design = design_from_dict(raw)
    seen = {}
    t = {"summary": "S", "risk": "R", "fits": "F", "tuning": "TU"}

    def record(name, value):
        def f(*args, **kwargs):
            seen[name] = (args, kwargs)
            return value

        return f

    monkeypatch.setattr(L, "read_logistic", record("read", (design, t)))
    monkeypatch.setattr(L, "matching", record("matching", (64, 2.5, {"m": 2.5, "none": 0.04})))
    for name in ("fig_logistic_separation", "fig_logistic_bias", "fig_logistic_tuned"):
        monkeypatch.setattr(L, name, record(name, name.upper()))
    monkeypatch.setattr(L, "separation_paragraph", record("sep", "SEPARATION."))
    monkeypatch.setattr(L, "bias_paragraph", record("bias", "BIAS."))
    monkeypatch.setattr(L, "tuning_paragraph", record("tuning", "TUNING."))
    monkeypatch.setattr(L, "check", record("check", "RESULT"))
    monkeypatch.setattr(L, "check_paragraph", record("check_paragraph", ""))
    monkeypatch.setattr(L, "short_answer", record("short", "SHORT"))
    text, short, figs = L.logistic_section("DIR", line)
    return design, t, text, short, figs, seen


def test_the_section_introduces_the_design_and_orders_its_parts(monkeypatch):
    raw = _logistic_raw(degree=[3, 1, 4, 5], penalize_intercept=True)
    raw["dgp"]["x"] = {"distribution": "normal", "mean": 0.25, "sd": 1.5}
    design, t, text, short, figs, seen = _section(monkeypatch, raw)
    parts = text.split("\n\n")
    intro = parts[0]
    # the design's name, line, x distribution, degrees, penalty and sizes, as LOGISTIC_SMALL
    # and the changes above give them
    for phrase in (
        "(`logistic-small`)",
        "labels y drawn with probability σ(−0.5 + 1.7·x), x normal with mean 0.25 and SD 1.5,",
        "polynomials of degree 1, 3, 4 and 5 fitted",
        "the intercept penalised (300 data sets at each of m = 5, 10, 100, 1,000).",
    ):
        assert phrase in intro, phrase
    assert "read as log-odds" not in intro  # no least-squares line given
    assert parts[1:4] == ["SEPARATION.", "BIAS.", "TUNING."]
    assert parts[4].startswith("![How often")  # the empty check paragraph left out
    assert short == "SHORT"
    assert figs == {"fig-logistic-separation": "FIG_LOGISTIC_SEPARATION",
                    "fig-logistic-bias": "FIG_LOGISTIC_BIAS",
                    "fig-logistic-tuned": "FIG_LOGISTIC_TUNED"}  # fmt: skip
    # no degree 2: the focus is the lowest; the bias figure shows the lowest three
    assert seen["matching"][0] == (design, "TU", 1)
    assert seen["fig_logistic_bias"] == (("S", {"m": 2.5, "none": 0.04}),
                                         {"degrees": [1, 3, 4], "m0": 64})  # fmt: skip
    assert seen["bias"][0] == (design, "S", 64, 2.5, {"m": 2.5, "none": 0.04}, 1,
                               "fig-logistic-bias")  # fmt: skip
    assert seen["short"][0] == (design, t, 64, 2.5, {"m": 2.5, "none": 0.04}, 1)
    assert seen["sep"][0] == (design, "F", "fig-logistic-separation")
    assert seen["tuning"][0] == ("TU", "R", "fig-logistic-tuned")
    assert seen["read"][0] == ("DIR",)
    assert seen["check"][0] == ("DIR",) and seen["check_paragraph"][0] == ("RESULT",)
    # each figure after the text, with its label and its caption's numbers
    for name in ("fig-logistic-separation", "fig-logistic-bias", "fig-logistic-tuned"):
        assert f"](_generated/{name}.svg){{#{name}}}" in text
    assert text.endswith("{#fig-logistic-tuned}\n")
    assert text.index("{#fig-logistic-separation}") < text.index("{#fig-logistic-bias}")
    assert text.index("{#fig-logistic-bias}") < text.index("{#fig-logistic-tuned}")
    assert "![How often the unpenalised logistic fit does not exist" in text
    assert "with λ held at the value that gives α = 2.5 at m = 64 under each scaling" in text
    assert "![The risk-optimal penalty of logistic regression" in text
    assert (
        "combined as if independent); right, the λ\\* to set when the penalty is not divided"
        in text
    )
    assert (
        "its limit (dashed) and the best value of the design's λ grid by Monte Carlo (open "
        "markers, where resolved;"
    ) in text


def test_the_section_names_the_line_of_the_least_squares_study_when_it_is_the_same(monkeypatch):
    raw = _logistic_raw()
    _, _, text, _, _, seen = _section(monkeypatch, raw, line=(-0.5, 1.7))
    assert (
        "σ(−0.5 + 1.7·x), the line of the least-squares study read as log-odds, x uniform on "
        "[−0.5, 2], and polynomials of degree 1 and 2 fitted"
    ) in text
    assert "the intercept not penalised (300 data sets" in text
    assert seen["matching"][0][2] == 2  # degree 2 in the design: the focus
    _, _, text, _, _, _ = _section(monkeypatch, raw, line=(-0.5, 1.0))
    assert "read as log-odds" not in text and "σ(−0.5 + 1.7·x), x uniform" in text


def test_negative_percentages_have_a_true_minus_with_and_without_an_error():
    assert percent(0.046) == "4.6 %"
    assert percent(-0.046) == "−4.6 %"
    assert percent(-0.00123, 2) == "−0.12 %"
    assert percent_with_se(-0.05, float("nan")) == "−5.0 %"
    assert percent_with_se(-0.05, 0.0) == "−5.0 %"
    assert percent_with_se(-0.0512, 0.0031) == "−5.12 (0.31) %"  # two figures of the error
