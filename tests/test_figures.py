"""Tests for study.report.figures: each figure is built from the smoke results, draws what the
data say (one marker per finite Monte Carlo cell, in its scaling's colour), tolerates
missing theory columns and writes nothing."""

from __future__ import annotations

import os

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from study.existence import finite_moment_order
from study.report import figures as F
from study.report.figures import measures
from study.scaling import PENALTY_AS_WRITTEN, SCALINGS
from study.scaling import alpha as scaling_alpha

# --- inputs ------------------------------------------------------------------------------


THEORY = ["bias_asym", "var_asym"]


@pytest.fixture(scope="module")
def summary_theory(smoke_results) -> pd.DataFrame:
    """summary.csv with the theory columns (stand-ins if the results do not have them)."""
    s = pd.read_csv(smoke_results / "summary.csv")
    if not set(THEORY) <= set(s.columns):
        s["bias_asym"] = s["bias_rb"] * 1.01
        s["var_asym"] = s["var_rb"] * 1.01
    return s


@pytest.fixture(scope="module")
def summary(summary_theory) -> pd.DataFrame:
    """summary.csv without any theory column (as before the theory is merged in)."""
    return summary_theory.drop(columns=[*THEORY, "finite_moments"], errors="ignore")


@pytest.fixture(scope="module")
def risk(smoke_results) -> pd.DataFrame:
    return pd.read_csv(smoke_results / "risk.csv")


@pytest.fixture(scope="module")
def draws(smoke_results) -> dict[str, np.ndarray]:
    with np.load(smoke_results / "draws.npz") as z:
        return {k: z[k] for k in z.files}


DEGREE = 3
LAMS = np.geomspace(1e-4, 1e2, 61)


@pytest.fixture(scope="module")
def risk_curves(summary) -> pd.DataFrame:
    """A made-up convex risk in α (the figure only draws what it is given)."""
    rows = []
    for m in sorted(summary["m"].unique()):
        for s in SCALINGS:
            for lam in LAMS:
                a = scaling_alpha(lam, m=int(m), degree=DEGREE, scaling=s)
                risk = 4 / m * (1 - 0.5 * a / (a + 1)) + (a / m) ** 2
                rows.append(
                    {"m": int(m), "degree": DEGREE, "scaling": s, "lambda": lam, "risk": risk}
                )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tuning_made_up(risk_curves) -> pd.DataFrame:
    rows = []
    for (m, s), d in risk_curves.groupby(["m", "scaling"]):
        i = int(np.argmin(d["risk"].to_numpy()))
        lam = float(d["lambda"].iloc[i])
        a = scaling_alpha(lam, m=int(m), degree=DEGREE, scaling=s)
        for method, f in (("asymptotic", 1.0), ("conditional", 1.2)):
            rows.append(
                {
                    "m": int(m),
                    "degree": DEGREE,
                    "scaling": s,
                    "method": method,
                    "lambda_opt": lam * f,
                    "alpha_opt": a * f,
                    "risk_opt": float(d["risk"].iloc[i]),
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tuning(smoke_results, tuning_made_up) -> pd.DataFrame:
    path = smoke_results / "tuning.csv"
    if path.exists():
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    return tuning_made_up


def lines_by_gid(fig: Figure, prefix: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            gid = line.get_gid()
            if gid and gid.startswith(prefix):
                out.setdefault(gid, []).append(line)
    return out


def expected_cells(summary, *, degree, lam, scaling, coef, col="bias", order=2):
    d = summary[
        (summary["degree"] == degree)
        & np.isclose(summary["lambda"], lam)
        & (summary["scaling"] == scaling)
        & (summary["coef"] == coef)
    ]
    d = d[(d["status"] == "ok") & np.isfinite(d[col])]
    finite = np.array([finite_moment_order(m, degree, lam) for m in d["m"]])
    return d[finite > order].sort_values("m")


def same_color(a, b) -> bool:
    return np.allclose(mcolors.to_rgb(a), mcolors.to_rgb(b))


# --- shared conventions ------------------------------------------------------------------


def test_every_scaling_has_a_distinct_colour_marker_and_label():
    assert list(F.SCALING_COLORS) == list(SCALINGS)
    assert len({mcolors.to_hex(c) for c in F.SCALING_COLORS.values()}) == len(SCALINGS)
    assert len(set(F.SCALING_MARKERS.values())) == len(SCALINGS)
    for s in SCALINGS:
        # the name quoted: the scaling 'm' is not the sample size m
        assert F.SCALING_LABELS[s] == f"‘{s}’: {PENALTY_AS_WRITTEN[s]}"


def test_usable_cells_follow_the_order_of_finite_moments(summary, summary_theory):
    # With and without the finite_moments column the same rows are usable.
    for order in (2, 4):
        np.testing.assert_array_equal(
            F.usable_cells(summary, order), F.usable_cells(summary_theory, order)
        )
    rows = pd.DataFrame(
        {
            "m": [3, 10, 10, 3],
            "degree": [2, 2, 3, 3],
            "lambda": [0.0, 0.0, 0.0, 0.1],
            "status": ["ok", "ok", "ok", "ok"],
        }
    )
    # Three points and a parabola: no mean; degree 3 at m = 10: a variance but no fourth
    # moment; any penalty: every moment.
    np.testing.assert_array_equal(F.usable_cells(rows, 2), [False, True, True, True])
    np.testing.assert_array_equal(F.usable_cells(rows, 4), [False, True, False, True])
    rows["status"] = "not identifiable"
    assert not F.usable_cells(rows, 0).any()


def test_coef_symbol():
    assert F.coef_symbol(2) == "ŵ₂"
    assert F.coef_symbol(10, hat=False) == "w₁₀"


# --- bias, variance, MSE, |bias|/SD ------------------------------------------------------


@pytest.mark.parametrize("lam, degree", [(1.0, 3), (0.0, 2), (0.1, 1)])
def test_fig_bias_one_marker_per_finite_cell_in_the_scaling_colour(summary_theory, lam, degree):
    coefs = list(range(degree + 1))
    fig = F.fig_bias(summary_theory, degree=degree, coefs=coefs, lam=lam)
    assert isinstance(fig, Figure)
    assert fig.get_size_inches()[0] == pytest.approx(F.FIGURE_WIDTH)
    assert len(fig.axes) == len(coefs) * len(SCALINGS)
    mc = lines_by_gid(fig, "mc:")
    assert len(mc) == len(coefs) * len(SCALINGS)
    for s in SCALINGS:
        for j in coefs:
            (line,) = mc[f"mc:{s}:{j}"]
            want = expected_cells(summary_theory, degree=degree, lam=lam, scaling=s, coef=j)
            np.testing.assert_array_equal(line.get_xdata(), want["m"])
            np.testing.assert_allclose(line.get_ydata(), want["bias"])
            assert same_color(line.get_color(), F.SCALING_COLORS[s])
            assert line.get_marker() == F.SCALING_MARKERS[s]
            (rb,) = lines_by_gid(fig, f"rb:{s}:{j}")[f"rb:{s}:{j}"]
            np.testing.assert_allclose(rb.get_ydata(), want["bias_rb"])
            (th,) = lines_by_gid(fig, f"theory:{s}:{j}")[f"theory:{s}:{j}"]
            np.testing.assert_allclose(th.get_ydata(), want["bias_asym"])


def test_figures_leave_out_cells_without_the_moments_they_need(summary):
    # λ = 0, degree 3: m = 3 is not identifiable; m = 10 has a variance (order 3) but no
    # fourth moment, so it has a bias point and no variance point.
    bias = F.fig_bias(summary, degree=3, coefs=[3], lam=0.0)
    var = F.fig_variance(summary, degree=3, coefs=[3], lam=0.0)
    for s in SCALINGS:
        (b,) = lines_by_gid(bias, f"mc:{s}:3")[f"mc:{s}:3"]
        np.testing.assert_array_equal(b.get_xdata(), [10, 100, 1000])
        (v,) = lines_by_gid(var, f"mc:{s}:3")[f"mc:{s}:3"]
        np.testing.assert_array_equal(v.get_xdata(), [100, 1000])
    for ax in bias.axes:
        for line in ax.get_lines():
            assert 3 not in set(np.asarray(line.get_xdata(), dtype=float))


@pytest.mark.parametrize("func", [F.fig_bias, F.fig_variance, F.fig_mse_split, F.fig_bias_over_sd])
def test_missing_theory_columns_are_tolerated(summary, summary_theory, func):
    assert not set(THEORY) & set(summary.columns)
    without = func(summary)
    assert lines_by_gid(without, "theory:") == {}
    assert lines_by_gid(without, "mc:")
    if func in (F.fig_bias, F.fig_variance, F.fig_bias_over_sd):
        assert lines_by_gid(func(summary_theory), "theory:")
    # Without the Rao–Blackwell columns too.
    bare = summary.drop(columns=[c for c in summary.columns if c.endswith("_rb")])
    assert lines_by_gid(func(bare), "rb:") == {}


@pytest.mark.parametrize("sd", [False, True])
def test_fig_variance_log_log_with_theory_and_guide(summary_theory, sd):
    fig = F.fig_variance(summary_theory, sd=sd, coefs=(1, 3))
    col = "sd" if sd else "var"
    for ax in fig.axes:
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    for s in SCALINGS:
        want = expected_cells(
            summary_theory, degree=3, lam=1.0, scaling=s, coef=3, col=col, order=4
        )
        (line,) = lines_by_gid(fig, f"mc:{s}:3")[f"mc:{s}:3"]
        np.testing.assert_allclose(line.get_ydata(), want[col])
        (th,) = lines_by_gid(fig, f"theory:{s}:3")[f"theory:{s}:3"]
        expect = np.sqrt(want["var_asym"]) if sd else want["var_asym"]
        np.testing.assert_allclose(th.get_ydata(), expect)
        # the Rao–Blackwell line, under its own name, is the Rao–Blackwell variance (or SD)
        (rb,) = lines_by_gid(fig, f"rb:{s}:3")[f"rb:{s}:3"]
        expect = np.sqrt(want["var_rb"]) if sd else want["var_rb"]
        np.testing.assert_allclose(rb.get_ydata(), expect)
    guides = lines_by_gid(fig, "guide")["guide"]
    assert len(guides) == 2 * len(SCALINGS)
    x, y = guides[0].get_xdata(), guides[0].get_ydata()
    slope = np.polyfit(np.log(x), np.log(y), 1)[0]
    assert slope == pytest.approx(-0.5 if sd else -1.0)


def test_fig_mse_split_parts_add_up(summary):
    fig = F.fig_mse_split(summary, coefs=(1,))
    for s in SCALINGS:
        want = expected_cells(summary, degree=3, lam=1.0, scaling=s, coef=1, col="mse", order=4)
        (mse,) = lines_by_gid(fig, f"mc:{s}:1")[f"mc:{s}:1"]
        (b2,) = lines_by_gid(fig, f"bias2:{s}:1")[f"bias2:{s}:1"]
        (var,) = lines_by_gid(fig, f"var:{s}:1")[f"var:{s}:1"]
        n = want["n"].to_numpy()
        # MSE = bias² + (n − 1)/n · S², exactly, from the same replications.
        np.testing.assert_allclose(
            mse.get_ydata(), b2.get_ydata() + (n - 1) / n * var.get_ydata(), rtol=1e-9
        )
        assert same_color(mse.get_color(), F.SCALING_COLORS[s])


def test_fig_bias_over_sd_ratio(summary_theory):
    fig = F.fig_bias_over_sd(summary_theory, coefs=(1, 3))
    assert len(fig.axes) == 2
    for s in SCALINGS:
        want = expected_cells(summary_theory, degree=3, lam=1.0, scaling=s, coef=1)
        (line,) = lines_by_gid(fig, f"mc:{s}:1")[f"mc:{s}:1"]
        np.testing.assert_allclose(line.get_ydata(), want["bias"].abs() / want["sd"])
        (th,) = lines_by_gid(fig, f"theory:{s}:1")[f"theory:{s}:1"]
        assert same_color(th.get_color(), F.SCALING_COLORS[s])
    # The story of the study on the smoke data: at the largest m the ratio is smallest
    # under "m" and largest under "none".
    last = {s: lines_by_gid(fig, f"mc:{s}:1")[f"mc:{s}:1"][0].get_ydata()[-1] for s in SCALINGS}
    assert last["m"] < last["sqrt-m"] < last["none"]


def test_every_public_name_is_exported():
    for name in F.__all__:
        assert getattr(F, name) is not None
    assert F.fig_measure is measures.fig_measure


@pytest.mark.parametrize("overlay", [False, True])
def test_fig_measure_draws_any_measure_in_either_layout(summary_theory, overlay):
    # A measure the report does not draw: the Rao–Blackwellised bias, with the Monte Carlo
    # bias as a trace; the same function lays out grid and overlay.
    rb = measures.Measure(
        title="Rao–Blackwell bias",
        ylabel="RB bias of {sym}",
        estimate=lambda d, z: (d["bias_rb"], z * d["bias_rb_mcse"]),
        order=2,
        traces=(
            measures.Trace(
                "plain", lambda d: d["bias"], {"linewidth": 0.5}, {"label": "bias"}, ("bias",)
            ),
            measures.Trace("absent", lambda d: d["nope"], {}, {"label": "x"}, ("nope",)),
        ),
        overlay=overlay,
    )
    coefs = (1, 3)
    fig = F.fig_measure(summary_theory, rb, coefs=coefs)
    assert len(fig.axes) == (len(coefs) if overlay else len(coefs) * len(SCALINGS))
    for s in SCALINGS:
        for j in coefs:
            want = expected_cells(summary_theory, degree=3, lam=1.0, scaling=s, coef=j)
            (mc,) = lines_by_gid(fig, f"mc:{s}:{j}")[f"mc:{s}:{j}"]
            np.testing.assert_allclose(mc.get_ydata(), want["bias_rb"])
            (plain,) = lines_by_gid(fig, f"plain:{s}:{j}")[f"plain:{s}:{j}"]
            assert same_color(plain.get_color(), F.SCALING_COLORS[s])
    assert lines_by_gid(fig, "absent:") == {}
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "bias" in labels and "x" not in labels
    if not overlay:
        assert fig.axes[0].get_ylabel() == "RB bias of " + F.coef_symbol(1)


def test_the_four_measure_figures_are_the_one_grid(summary_theory):
    for func, measure in [
        (F.fig_bias, measures.BIAS),
        (F.fig_mse_split, measures.MSE),
        (F.fig_bias_over_sd, measures.BIAS_OVER_SD),
    ]:
        a, b = func(summary_theory), F.fig_measure(summary_theory, measure)
        assert sorted(lines_by_gid(a, "")) == sorted(lines_by_gid(b, ""))
    sd = F.fig_variance(summary_theory, sd=True)
    assert sd.get_suptitle() == F.fig_measure(summary_theory, measures.SD).get_suptitle()


# --- draws ---------------------------------------------------------------------------------


def test_fig_fitted_curves(draws):
    fig = F.fig_fitted_curves(draws, degree=3, m_small=10, m_large=1000, lam=1.0, n_curves=7)
    assert len(fig.axes) == 2 * (1 + len(SCALINGS))
    fits = lines_by_gid(fig, "fit:")
    assert set(fits) == {f"fit:{c}:{m}" for c in ["lambda0", *SCALINGS] for m in (10, 1000)}
    assert all(len(v) == 7 for v in fits.values())
    for s in SCALINGS:
        assert all(
            same_color(line.get_color(), F.SCALING_COLORS[s])
            for m in (10, 1000)
            for line in fits[f"fit:{s}:{m}"]
        )
    assert len(lines_by_gid(fig, "truth")["truth"]) == 2 * (1 + len(SCALINGS))
    # A fitted curve is the polynomial of a kept draw.
    w = draws["coef_k3"][
        list(draws["m"]).index(10),
        list(draws["lambda"]).index(1.0),
        list(draws["scaling"]).index("none"),
        0,
    ]
    line = fits["fit:none:10"][0]
    np.testing.assert_allclose(
        line.get_ydata(), np.polynomial.polynomial.polyval(line.get_xdata(), w)
    )


def test_fig_fitted_curves_not_identifiable_panel(draws):
    fig = F.fig_fitted_curves(draws, degree=3, m_small=3, m_large=100)
    assert "fit:lambda0:3" not in lines_by_gid(fig, "fit:")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "not identifiable" in texts


def test_fig_parabola_tail(draws):
    fig = F.fig_parabola_tail(draws, m=3, degree=2, lam=1.0, m_many=100)
    tails = lines_by_gid(fig, "tail:")
    assert set(tails) == {"tail:lambda0:3", "tail:lambda0:100"} | {f"tail:{s}:3" for s in SCALINGS}
    keep = draws["coef_k2"].shape[3]
    t0 = tails["tail:lambda0:3"][0]
    assert t0.get_ydata().min() == pytest.approx(1 / keep)
    # No penalty, no finite mean: the unpenalised tail reaches farther than any penalised one.
    for s in SCALINGS:
        (ts,) = tails[f"tail:{s}:3"]
        assert same_color(ts.get_color(), F.SCALING_COLORS[s])
        assert np.max(ts.get_xdata()) < np.max(t0.get_xdata())
    ax_tail = t0.axes
    assert ax_tail.get_xscale() == "log" and ax_tail.get_yscale() == "log"


def test_fig_sampling_distributions(draws):
    fig = F.fig_sampling_distributions(
        draws, degree=3, coefs=(2, 3), lam=1.0, ms=(3, 10, 100, 1000, 10000)
    )
    assert len(fig.axes) == 2 * (1 + len(SCALINGS))
    bodies = {}
    for ax in fig.axes:
        for coll in ax.collections:
            if coll.get_gid() and coll.get_gid().startswith("violin:"):
                bodies[coll.get_gid()] = coll
    # 10000 is not in the smoke design; λ = 0 with m = 3 < 4 coefficients is not identifiable.
    want = {
        f"violin:{c}:{j}:{m}"
        for c in ["lambda0", *SCALINGS]
        for j in (2, 3)
        for m in (3, 10, 100, 1000)
    } - {"violin:lambda0:2:3", "violin:lambda0:3:3"}
    assert set(bodies) == want
    edge = bodies["violin:m:3:100"].get_edgecolor()[0]
    assert same_color(edge[:3], F.SCALING_COLORS["m"])
    # The mean bar sits at the mean of all kept draws.
    (bar,) = lines_by_gid(fig, "mean:none:3:1000")["mean:none:3:1000"]
    w = draws["coef_k3"][
        list(draws["m"]).index(1000),
        list(draws["lambda"]).index(1.0),
        list(draws["scaling"]).index("none"),
        :,
        3,
    ]
    assert bar.get_ydata()[0] == pytest.approx(w.mean())


# --- risk and tuning -----------------------------------------------------------------------


def test_fig_mse_split_rows_span_every_mse_and_variance(summary):
    """A row's y range is what the caption promises: from a third of the smallest MSE or
    positive variance of the row's panels (at most six decades below the largest) to three
    times the largest, whatever matplotlib would choose by itself."""
    fig = F.fig_mse_split(summary, coefs=(1, 3))
    for r, j in enumerate((1, 3)):
        values = []
        for s in SCALINGS:
            d = expected_cells(summary, degree=3, lam=1.0, scaling=s, coef=j, col="mse", order=4)
            values += d["mse"][d["mse"] > 0].tolist() + d["var"][d["var"] > 0].tolist()
        hi = max(values)
        lo = max(min(values), hi * 1e-6)
        ax = fig.axes[r * len(SCALINGS)]
        np.testing.assert_allclose(ax.get_ylim(), (lo / 3, hi * 3), rtol=1e-12)


def test_fig_risk_vs_lambda_draws_each_scaling_in_its_colour(risk_curves, risk, tuning):
    """Every curve and its label are a shade of their scaling's colour, 0.85·(1 − t + t·c)
    for one t in (0, 1] (white mixed in, then darkened a little for print), and within a
    panel t grows with m: the curves of one scaling are told apart by lightness alone."""
    fig = F.fig_risk_vs_lambda(risk_curves, risk, tuning, degree=DEGREE, ms=(10, 100, 1000))
    curves = lines_by_gid(fig, "curve:")
    labels = {t.get_gid(): t for ax in fig.axes for t in ax.texts if t.get_gid()}
    shades: dict[str, list[tuple[int, float]]] = {}
    for gid, (line,) in curves.items():
        _, s, m = gid.split(":")
        c = np.asarray(mcolors.to_rgb(F.SCALING_COLORS[s]))
        got = np.asarray(mcolors.to_rgb(line.get_color())) / 0.85
        # got = 1 − t(1 − c): t from the channel where the colour differs most from white
        i = int(np.argmax(1 - c))
        t = (1 - got[i]) / (1 - c[i])
        assert 0 < t <= 1 + 1e-12, gid
        np.testing.assert_allclose(got, 1 - t * (1 - c), atol=1e-9, err_msg=gid)
        assert same_color(labels[f"label:{s}:{m}"].get_color(), line.get_color()), gid
        shades.setdefault(s, []).append((int(m), t))
    assert set(shades) == set(SCALINGS)
    for s, pairs in shades.items():
        ts = [t for _, t in sorted(pairs)]
        assert ts == sorted(ts) and ts[-1] == pytest.approx(1.0), s


def test_fig_risk_vs_lambda(risk_curves, risk, tuning):
    ms = (10, 100, 1000, 10000)
    fig = F.fig_risk_vs_lambda(risk_curves, risk, tuning, degree=DEGREE, ms=ms)
    assert len(fig.axes) == len(SCALINGS)
    have = (10, 100, 1000)  # 10000 has no curve
    assert set(lines_by_gid(fig, "curve:")) == {f"curve:{s}:{m}" for s in SCALINGS for m in have}
    opts = lines_by_gid(fig, "opt:")
    for s in SCALINGS:
        for m in have:
            (o,) = opts[f"opt:{s}:{m}"]
            t = tuning[
                (tuning["scaling"] == s)
                & (tuning["m"] == m)
                & (tuning["method"] == "conditional")
                & (tuning["degree"] == DEGREE)
            ]
            lam_opt = t["lambda_opt"].iloc[0]
            assert 0 < lam_opt < np.inf
            assert o.get_xdata()[0] == pytest.approx(lam_opt)
            # Simulated points: the λ > 0 cells of risk.csv.
            (mc,) = lines_by_gid(fig, f"mc:{s}:{m}")[f"mc:{s}:{m}"]
            r = risk[
                (risk["scaling"] == s)
                & (risk["m"] == m)
                & (risk["degree"] == DEGREE)
                & (risk["lambda"] > 0)
            ]
            np.testing.assert_allclose(np.asarray(mc.get_ydata(), dtype=float), r["risk"])
    # Without the optional inputs: optimum from the curve itself, no simulated points.
    bare = F.fig_risk_vs_lambda(risk_curves, degree=DEGREE, ms=ms)
    assert lines_by_gid(bare, "mc:") == {}
    assert len(lines_by_gid(bare, "opt:")) == len(SCALINGS) * len(have)


@pytest.mark.parametrize(
    "limit",
    [0.98, {3: 0.98}, pd.Series({3: 0.98}), pd.DataFrame({"degree": [3], "alpha_limit": [0.98]})],
)
def test_fig_tuned_lambda(tuning, limit):
    fig = F.fig_tuned_lambda(tuning, limit, degree=DEGREE)
    assert len(fig.axes) == 2
    lam_lines = lines_by_gid(fig, "lambda:")
    assert set(lam_lines) == {
        f"lambda:{meth}:{s}" for meth in ("asymptotic", "conditional") for s in SCALINGS
    }
    for s in SCALINGS:
        (line,) = lam_lines[f"lambda:asymptotic:{s}"]
        t = tuning[
            (tuning["scaling"] == s)
            & (tuning["method"] == "asymptotic")
            & (tuning["degree"] == DEGREE)
        ].sort_values("m")
        np.testing.assert_allclose(line.get_ydata(), t["lambda_opt"])
        assert same_color(line.get_color(), F.SCALING_COLORS[s])
    # α* does not depend on the scaling: one line per method.
    assert set(lines_by_gid(fig, "alpha:")) == {"alpha:asymptotic:all", "alpha:conditional:all"}
    (lim,) = lines_by_gid(fig, "alpha_limit")["alpha_limit"]
    assert lim.get_ydata()[0] == pytest.approx(0.98)


def test_fig_tuned_lambda_without_limit_and_with_disagreeing_alphas(tuning):
    t = tuning.drop(columns="alpha_limit", errors="ignore")
    t.loc[t["scaling"] == "none", "alpha_opt"] *= 2
    fig = F.fig_tuned_lambda(t, None, degree=DEGREE, methods=("asymptotic",))
    assert lines_by_gid(fig, "alpha_limit") == {}
    assert set(lines_by_gid(fig, "alpha:")) == {f"alpha:asymptotic:{s}" for s in SCALINGS}


# --- purity and errors ---------------------------------------------------------------------


def test_figures_write_no_files(
    tmp_path, monkeypatch, summary_theory, risk, draws, risk_curves, tuning
):
    empty = tmp_path / "cwd"
    empty.mkdir()
    monkeypatch.chdir(empty)
    figs = [
        F.fig_fitted_curves(draws),
        F.fig_parabola_tail(draws),
        F.fig_bias(summary_theory),
        F.fig_variance(summary_theory),
        F.fig_mse_split(summary_theory),
        F.fig_bias_over_sd(summary_theory),
        F.fig_sampling_distributions(draws),
        F.fig_risk_vs_lambda(risk_curves, risk, tuning),
        F.fig_tuned_lambda(tuning, 0.98),
    ]
    for fig in figs:
        assert isinstance(fig, Figure)
        fig.canvas.draw()  # layout and text are computed without writing anything
    assert os.listdir(empty) == []


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s, d: F.fig_bias(s, lam=0.5), "'lam' parameter"),
        (lambda s, d: F.fig_bias(s, degree=9), "'degree' parameter"),
        (lambda s, d: F.fig_variance(s, coefs=(5,)), "'coefs' parameter"),
        (lambda s, d: F.fig_bias_over_sd(s, scalings=("mean",)), "'scalings' parameter"),
        (lambda s, d: F.fig_fitted_curves(d, degree=5), "'degree' parameter"),
        (lambda s, d: F.fig_fitted_curves(d, m_small=7), "'m' parameter"),
        (lambda s, d: F.fig_sampling_distributions(d, ms=(7,)), "'ms' parameter"),
    ],
)
def test_bad_arguments_name_the_parameter(summary, draws, call, message):
    with pytest.raises(ValueError, match=message):
        call(summary, draws)


def test_fig_tuned_lambda_takes_the_limit_from_the_tuning_table(tuning_made_up):
    t = tuning_made_up.assign(alpha_limit=0.5)
    (lim,) = lines_by_gid(F.fig_tuned_lambda(t, degree=DEGREE), "alpha_limit")["alpha_limit"]
    assert lim.get_ydata()[0] == pytest.approx(0.5)


def test_the_matched_figure_plots_the_numbers_of_matched_csv():

    from study.report.figures import fig_matched

    rows = []
    for s, bias, ratio in (
        ("m", [-0.9, -0.3, -0.05], [1.2, 1.0, 1.01]),
        ("none", [-0.2, -0.3, -0.31], [1.5, 1.0, 9.0]),
    ):
        for m, b, r in zip((10, 100, 1000), bias, ratio, strict=True):
            for coef in (0, 1):
                rows.append(
                    dict(
                        m0=100,
                        m=m,
                        degree=3,
                        scaling=s,
                        coef=coef,
                        bias=b + coef,
                        bias_se=0.01,
                        variance=0.5 / m,
                        variance_se=0.001 / m,
                        risk_ratio=r,
                        risk_ratio_se=0.002,
                    )
                )
    matched = pd.DataFrame(rows)
    fig = fig_matched(matched, degrees=[3], scalings=["none", "m"])
    lines = {ln.get_gid(): ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid()}
    bias = lines["matched:bias:3:m"]
    np.testing.assert_allclose(bias.get_xdata(), [10, 100, 1000])
    np.testing.assert_allclose(bias.get_ydata(), [0.1, 0.7, 0.95])  # coef 1: b + 1
    np.testing.assert_allclose(lines["matched:variance:3:none"].get_ydata(), [0.05, 0.005, 0.0005])
    extra = lines["matched:extra_risk:3:none"]  # m0 itself (extra risk 0) is left off the log axis
    np.testing.assert_allclose(extra.get_xdata(), [10, 1000])
    np.testing.assert_allclose(extra.get_ydata(), [0.5, 8.0])
    with pytest.raises(ValueError, match="'degrees'"):
        fig_matched(matched, degrees=[5])


def test_the_degrees_figure_plots_alpha_and_the_gain_where_least_squares_settles():
    from study.report.figures import fig_degrees

    rows = []
    for k in (2, 5):
        for i, m in enumerate((5, 8, 50, 500)):
            for scaling in ("m", "none"):
                rows.append(
                    dict(
                        m=m,
                        degree=k,
                        scaling=scaling,
                        method="conditional",
                        alpha_opt=0.5 * k + i,
                        log_alpha_se=0.01,
                        alpha_limit=2.0 * k,
                        benefit=10.0 / (i + 1) + 1,
                        benefit_se=0.1,
                    )
                )
    tuning = pd.DataFrame(rows)
    fig = fig_degrees(tuning)
    lines = {ln.get_gid(): ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid()}
    np.testing.assert_allclose(lines["alpha:5"].get_ydata(), [2.5, 3.5, 4.5, 5.5])
    np.testing.assert_allclose(lines["alpha_limit:2"].get_ydata(), [4.0, 4.0])
    # the gain is drawn only where least squares' risk has a finite variance (moments of order 4)
    for k in (2, 5):
        shown = [m for m in (5, 8, 50, 500) if finite_moment_order(m, k, 0.0) > 4]
        benefit = lines[f"benefit:{k}"]
        np.testing.assert_allclose(benefit.get_xdata(), shown)
        expected = {5: 11.0, 8: 6.0, 50: 10 / 3 + 1, 500: 3.5}
        np.testing.assert_allclose(benefit.get_ydata(), [expected[m] for m in shown])
    assert len(lines["benefit:5"].get_xdata()) < 4  # m = 5 and 8 left out at degree 5


def test_the_bias_bars_are_z_mcse_wide_and_sit_on_the_bias(summary_theory):
    """Each Monte Carlo bar of the bias figure spans bias ± 1.96·bias_mcse of summary.csv
    (not the SD, whose bars would be √n times wider)."""
    lam = float(summary_theory["lambda"].max())
    fig = F.fig_bias(summary_theory, degree=DEGREE, coefs=[1], lam=lam)
    checked = 0
    for ax in fig.axes:
        for cont in ax.containers:
            gid = cont.lines[0].get_gid() or ""
            if not gid.startswith("mc:"):
                continue
            _, scaling, coef = gid.split(":")
            rows = summary_theory[
                (summary_theory.degree == DEGREE)
                & (summary_theory["lambda"] == lam)
                & (summary_theory.scaling == scaling)
                & (summary_theory.coef == int(coef))
            ].set_index("m")
            for (x0, lo), (_, hi) in (seg for seg in cont.lines[2][0].get_segments()):
                row = rows.loc[int(round(x0))]
                assert (lo + hi) / 2 == pytest.approx(row.bias, rel=1e-9, abs=1e-12)
                assert (hi - lo) / 2 == pytest.approx(1.96 * row.bias_mcse, rel=1e-9)
                checked += 1
    assert checked >= 8


def test_the_measures_table_shows_bias_sd_and_mse_with_their_mcse():
    from study.numbers import with_se
    from study.report.tables import table_measures

    rows = []
    for scaling in ("none", "m"):
        for m, base in ((10, 0.4), (100, 0.05)):
            rows.append(
                dict(
                    m=m,
                    degree=3,
                    coef=1,
                    scaling=scaling,
                    alpha=1.0,
                    **{"lambda": 1.0},
                    bias=-base,
                    bias_mcse=base / 50,
                    sd=2 * base,
                    sd_mcse=base / 40,
                    var=(2 * base) ** 2,
                    var_mcse=base / 30,
                    mse=5 * base**2,
                    mse_mcse=base**2 / 20,
                )
            )
    text = table_measures(pd.DataFrame(rows), degree=3, lam=1.0, coef=1, ms=[10, 100])
    for r in rows:
        cells = [with_se(r[c], r[f"{c}_mcse"]) for c in ("bias", "sd", "mse")]
        assert f"| `{r['scaling']}` | {r['m']:,} | 1.00 | " + " | ".join(cells) + " |" in text
        assert with_se(r["var"], r["var_mcse"]) not in text


def test_the_bases_figure_plots_alpha_against_the_degree_in_both_bases():
    from study.report.figures import fig_bases

    rows = []
    for k in (1, 3, 5):
        for basis, scale in (("monomial", 1.0), ("orthonormal", 0.75)):
            rows.append(
                dict(
                    degree=k,
                    basis=basis,
                    m0=100,
                    m=10_000,
                    alpha_m0=scale * k + 0.5,
                    alpha_m0_se=0.01,
                    alpha_m=scale * k + 0.1,
                    alpha_m_se=0.02,
                    alpha_limit=scale * k,
                    # each row's own coefficients: the two bases' differ
                    hkb=0.75 * k if basis == "orthonormal" else 0.9 * k,
                )
            )
    fig = fig_bases(pd.DataFrame(rows))
    lines = {
        ln.get_gid(): np.asarray(ln.get_xydata(), dtype=float)
        for ax in fig.axes
        for ln in ax.get_lines()
        if ln.get_gid()
    }
    np.testing.assert_allclose(lines["bases:m:orthonormal"][:, 0], [1, 3, 5])
    np.testing.assert_allclose(lines["bases:m:orthonormal"][:, 1], [0.85, 2.35, 3.85])
    np.testing.assert_allclose(lines["bases:m0:monomial"][:, 1], [1.5, 3.5, 5.5])
    np.testing.assert_allclose(lines["bases:limit:monomial"][:, 1], [1, 3, 5])
    # the Hoerl–Kennard–Baldwin line is the orthonormal rows' (its closed form holds there)
    np.testing.assert_allclose(lines["bases:hkb"][:, 1], [0.75, 2.25, 3.75])
    # every panel says what its axes are
    for ax in fig.axes:
        assert ax.get_xlabel() == "degree k (number of penalised weights)"
        assert ax.get_ylabel() == "risk-optimal sum-form α*"


# --- what the figures show, cell by cell (mutation survivors of the third `make mutate`) ---


def test_the_unpenalised_fits_are_drawn_thinner_than_the_true_line(draws):
    """The parabola panel draws many fits over the true line: each thinner than it, so the
    truth stays visible through them."""
    fig = F.fig_parabola_tail(draws, m=3, degree=2, lam=1.0, m_many=100)
    fits = lines_by_gid(fig, "fit:lambda0")["fit:lambda0"]
    (truth,) = lines_by_gid(fig, "truth")["truth"]
    assert fits and all(f.get_linewidth() < truth.get_linewidth() for f in fits)


def test_the_unpenalised_fits_are_the_kept_polynomials_over_the_x_range(draws):
    """Each fit of the parabola panel is a kept draw's polynomial, drawn over the design's
    x range (here an asymmetric one), not over the index of its points."""
    fig = F.fig_parabola_tail(draws, m=3, degree=2, lam=1.0, m_many=100, x_range=(-0.5, 2.0))
    fits = lines_by_gid(fig, "fit:lambda0")["fit:lambda0"]
    assert fits
    for line in fits:
        x, y = (np.asarray(v, dtype=float) for v in (line.get_xdata(), line.get_ydata()))
        assert x[0] == -0.5 and x[-1] == 2.0 and np.all(np.diff(x) > 0)
        # a quadratic through its points: the second differences on the even grid agree
        second = np.diff(y, 2)
        np.testing.assert_allclose(second, second[0], rtol=1e-6, atol=1e-9)


def test_a_risk_curves_label_moves_to_its_optimum_within_two_and_a_half_decades():
    """The label "m = …" sits at the curve's left end, unless the optimum is within 2.5
    decades of it (the label would cover it); then beside the optimum."""
    from study.report.figures._style import new_figure
    from study.report.figures.tuning import _risk_curve

    lam = np.logspace(-5, 3, 81)
    d = pd.DataFrame({"lambda": lam, "risk": 1.0 + (np.log10(lam) + 1.0) ** 2})
    for decades, at_left in ((2.45, False), (2.55, True)):
        ax = new_figure(2.0).subplots()
        _risk_curve(ax, d, lam[0] * 10**decades, color="black", key="m:10", m=10)
        (label,) = [t for t in ax.texts if t.get_gid() == "label:m:10"]
        assert (label.xy[0] == lam[0]) == at_left, decades


def test_the_mean_marks_of_the_violins_end_where_they_are_drawn(draws):
    """The mean of each sampling distribution is a bar of half a violin's width whose ends
    are cut flat (no cap reaching past its ends into the neighbouring violin)."""
    fig = F.fig_sampling_distributions(draws, degree=3, lam=1.0)
    means = [
        ln for ax in fig.axes for ln in ax.get_lines() if (ln.get_gid() or "").startswith("mean:")
    ]
    assert means
    for line in means:
        assert line.get_solid_capstyle() == "butt"
        x = line.get_xdata()
        assert x[1] - x[0] == pytest.approx(0.5)


def test_a_log_axis_leaves_out_a_value_of_zero(summary_theory):
    """On a log axis (the variance) a cell whose value is 0 cannot be drawn: it is left out
    rather than sent to −∞."""
    s = summary_theory.copy()
    cell = (s.degree == 3) & (s["lambda"] == 1.0) & (s.scaling == "m") & (s.coef == 1)
    first = s[cell & (s.status == "ok")].sort_values("m").index[-1]
    s.loc[first, "var"] = 0.0
    fig = F.fig_variance(s, coefs=(1,))
    (line,) = lines_by_gid(fig, "mc:m:1")["mc:m:1"]
    assert s.loc[first, "m"] not in line.get_xdata()
    assert np.all(line.get_ydata() > 0)


def test_the_bias_over_sd_figure_draws_the_lambda_it_is_given(summary_theory):
    lam = 0.1  # of the smoke design; not the default 1
    fig = F.fig_bias_over_sd(summary_theory, coefs=(1,), lam=lam)
    want = expected_cells(summary_theory, degree=3, lam=lam, scaling="m", coef=1)
    assert len(want) >= 2
    (line,) = lines_by_gid(fig, "mc:m:1")["mc:m:1"]
    np.testing.assert_allclose(line.get_ydata(), want["bias"].abs() / want["sd"])


def test_the_second_tuning_method_is_drawn_with_markers(tuning):
    """Lines for the first method, markers for the second (so that they can be told apart
    where they coincide): in both panels."""
    fig = F.fig_tuned_lambda(tuning, None, degree=DEGREE)
    for gid, lines in lines_by_gid(fig, "alpha:").items():
        (line,) = lines
        if gid.startswith("alpha:conditional"):
            assert line.get_marker() == "o" and line.get_linestyle() == "None"
        else:
            assert line.get_marker() in (None, "None", "") and line.get_linestyle() == "-"


def test_the_matched_legend_shows_m0_as_drawn():
    from study.report.figures import fig_matched

    rows = [
        dict(m0=100, m=m, degree=3, scaling=s, coef=c, bias=0.1, bias_se=0.01,
             variance=0.5 / m, variance_se=0.001, risk_ratio=1.0 + (m != 100), risk_ratio_se=0.01)
        for m in (10, 100, 1000) for s in ("m", "none") for c in (0, 1)
    ]  # fmt: skip
    fig = fig_matched(pd.DataFrame(rows), degrees=[3], scalings=["none", "m"])
    marks = [
        ln for ax in fig.axes for ln in ax.get_lines()
        if ln.get_linestyle() == ":" and list(ln.get_xdata()) == [100, 100]
    ]  # fmt: skip
    assert marks
    (handle,) = [h for h in fig.legends[0].legend_handles if h.get_label() == "m₀ = 100"]
    for mark in marks:
        assert same_color(handle.get_color(), mark.get_color())
        assert handle.get_linestyle() == mark.get_linestyle()


def test_the_tail_panel_names_its_guide_in_the_legend(draws):
    fig = F.fig_parabola_tail(draws, m=3, degree=2, lam=1.0, m_many=100)
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    labels += [
        t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()
    ]
    assert "∝ log(t)/t (no finite mean)" in labels


def test_the_minibatch_legend_shows_each_artist_as_drawn():
    """The legend's entries look like what they name: SGD runs as small squares, the exact
    fits as open circles, Ng's fit as a dashed line."""
    rows = [
        dict(divisor=d, batch_size=b, seed=s, alpha=2.0, coef=j, sgd=1.0, exact=1.0, exact_m=1.0)
        for d in ("m", "batch") for b in (1, 10) for s in (0, 1) for j in (0, 1)
    ]  # fmt: skip
    fig = F.fig_minibatch(pd.DataFrame(rows))
    handles = {h.get_label(): h for h in fig.legends[0].legend_handles}
    exact = [h for label, h in handles.items() if label.startswith("exact full-batch")][0]
    (drawn,) = [ln for ln in fig.axes[0].get_lines() if ln.get_gid() == "exact"]
    assert exact.get_marker() == drawn.get_marker() == "o"
    assert exact.get_markerfacecolor() == drawn.get_markerfacecolor() == "white"
    sgd = [h for label, h in handles.items() if label.startswith("SGD")][0]
    (run,) = [ln for ln in fig.axes[0].get_lines() if ln.get_gid() == "sgd-0"]
    assert sgd.get_marker() == run.get_marker() == "s"
