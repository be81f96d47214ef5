"""What the report's figures plot, checked against the results tables they are drawn from.

Small in-memory results (summary.csv, risk.csv, tuning.csv, matched.csv, bases.csv and
draws.npz look-alikes) with values chosen so that a wrong row, factor or power shows; every
expected value is recomputed here with pandas/NumPy from the rule in the docstrings of
study.report.figures (the selection of cells, ±z·MCSE bars, the curves' data, the axis
ranges and the legend entries)."""

from __future__ import annotations

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

from study.report.figures import _select, _style, draws, measures, tuning

SCALINGS = ("none", "m", "sqrt-m", "k")
COLORS = {"none": "#D55E00", "m": "#0072B2", "sqrt-m": "#009E73", "k": "#CC79A7"}
MARKERS = {"none": "o", "m": "s", "sqrt-m": "^", "k": "D"}
WRITTEN = {"none": "(λ/2)Σw²", "m": "(λ/2m)Σw²", "sqrt-m": "(λ/2√m)Σw²", "k": "(λ/2k)Σw²"}
LABELS = {s: f"‘{s}’: {WRITTEN[s]}" for s in SCALINGS}
M_LABEL = "m (training points)"


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def gid_lines(fig, gid):
    return [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() == gid]


def one_line(fig, gid):
    (ln,) = gid_lines(fig, gid)
    return ln


def gids(fig, prefix=""):
    return {
        ln.get_gid()
        for ax in fig.axes
        for ln in ax.get_lines()
        if ln.get_gid() and ln.get_gid().startswith(prefix)
    }


def bars(fig, gid):
    """(axes, x, y, lower end, upper end) of the error bars whose marker line has ``gid``."""
    for ax in fig.axes:
        for cont in ax.containers:
            if cont.lines[0].get_gid() == gid:
                segs = cont.lines[2][0].get_segments()
                lo = np.array([s[0][1] for s in segs])
                hi = np.array([s[1][1] for s in segs])
                xs = np.array([s[0][0] for s in segs])
                return ax, xs, np.asarray(cont.lines[0].get_ydata(), float), lo, hi
    raise AssertionError(f"no error bars with gid {gid}")


def legend_texts(fig):
    (leg,) = fig.legends
    return [t.get_text() for t in leg.get_texts()]


def legend_columns(fig):
    """The columns of the figure's legend as laid out: the distinct left edges of its
    entries' texts after drawing the legend alone (public API in place of the private
    ``Legend._ncols``; cheap). The rows follow: ⌈entries / columns⌉."""
    (leg,) = fig.legends
    renderer = FigureCanvasAgg(fig).get_renderer()
    leg.draw(renderer)
    return len({round(t.get_window_extent(renderer).x0, 1) for t in leg.get_texts()})


def tick_labels(ax):
    fmt = ax.xaxis.get_major_formatter()
    return [fmt(v, i) for i, v in enumerate(ax.get_xticks())]


def same_color(a, b):
    return np.allclose(mcolors.to_rgba(a)[:3], mcolors.to_rgb(b))


# --- a summary.csv ------------------------------------------------------------------------

MS = (4, 8, 30, 100, 300, 1000, 3000)
# λ = 0: the order of the finite moments per m (1 → nothing, 2.5 → a bias, 4.5 → every measure)
ORDER0 = {4: 1.0, 8: 2.5, 30: 4.5, 100: 12.0, 300: 40.0, 1000: 150.0, 3000: 500.0}
TRUE = {0: 1.0, 1: 2.0, 2: 0.0, 3: 0.0}


def make_summary(seed=7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for degree in (2, 3):
        for lam in (0.0, 0.5, 1.0):
            for si, s in enumerate(SCALINGS):
                for j in range(degree + 1):
                    for m in MS:
                        var = (1 + si + j) * rng.uniform(0.5, 2.0) / m
                        bias = rng.normal(0, 1) * (1 + si) / m**0.5 + (0.3 if lam else 0.0)
                        rows.append(
                            dict(
                                m=m,
                                degree=degree,
                                **{"lambda": lam},
                                scaling=s,
                                coef=j,
                                status="ok",
                                finite_moments=ORDER0[m] if lam == 0 else np.inf,
                                true=TRUE[j],
                                bias=bias,
                                bias_mcse=rng.uniform(0.05, 0.2) * var**0.5,
                                var=var,
                                var_mcse=rng.uniform(0.05, 0.3) * var,
                                sd=var**0.5,
                                sd_mcse=rng.uniform(0.05, 0.3) * var**0.5,
                                mse=bias**2 + var,
                                mse_mcse=rng.uniform(0.05, 0.3) * (bias**2 + var),
                                bias_rb=bias * 1.1 + 0.01,
                                var_rb=var * 0.8,
                                bias_asym=bias * 0.7 - 0.02,
                                var_asym=var * 1.3,
                            )
                        )
    d = pd.DataFrame(rows)
    at = (d.degree == 3) & (d["lambda"] == 1.0)
    # a cell that is not identifiable, a non-finite bias, a variance of 0, a bar that would
    # reach below 0 on a log axis, a negative bias
    d.loc[at & (d.scaling == "k") & (d.coef == 1) & (d.m == 300), "status"] = "not identifiable"
    d.loc[at & (d.scaling == "sqrt-m") & (d.coef == 3) & (d.m == 100), ["bias", "var"]] = np.nan
    d.loc[at & (d.scaling == "m") & (d.coef == 3) & (d.m == 1000), "var"] = 0.0
    d.loc[at & (d.scaling == "none") & (d.coef == 1) & (d.m == 30), "var_mcse"] = 1.0
    d.loc[at & (d.scaling == "none") & (d.coef == 1) & (d.m == 100), "bias"] = -0.4
    return d


@pytest.fixture(scope="module")
def summary():
    return make_summary()


def cells(summary, *, degree, lam, s, j, order):
    d = summary[
        (summary.degree == degree)
        & (summary["lambda"] == lam)
        & (summary.scaling == s)
        & (summary.coef == j)
    ].sort_values("m")
    return d[(d.status == "ok") & (d.finite_moments > order)]


# --- the measure figures --------------------------------------------------------------------


def test_bias_markers_bars_and_lines_follow_the_usable_rows(summary):
    z = 2.5
    scalings = ["none", "sqrt-m", "k"]
    fig = measures.fig_bias(summary, degree=3, coefs=[1, 3], lam=1.0, z=z, scalings=scalings)
    assert len(fig.axes) == 6
    for s in scalings:
        for j in (1, 3):
            d = cells(summary, degree=3, lam=1.0, s=s, j=j, order=2)
            shown = d[np.isfinite(d.bias)]  # a linear axis keeps negative values
            ax, x, y, lo, hi = bars(fig, f"mc:{s}:{j}")
            np.testing.assert_array_equal(x, shown.m)
            np.testing.assert_allclose(y, shown.bias)
            np.testing.assert_allclose(lo, shown.bias - z * shown.bias_mcse)
            np.testing.assert_allclose(hi, shown.bias + z * shown.bias_mcse)
            line = one_line(fig, f"mc:{s}:{j}")
            assert same_color(line.get_color(), COLORS[s])
            assert line.get_marker() == MARKERS[s]
            # the lines cover every usable row, each in the scaling's colour
            rb = one_line(fig, f"rb:{s}:{j}")
            np.testing.assert_array_equal(rb.get_xdata(), d.m)
            np.testing.assert_allclose(rb.get_ydata(), d.bias_rb)
            assert same_color(rb.get_color(), COLORS[s])
            th = one_line(fig, f"theory:{s}:{j}")
            np.testing.assert_allclose(th.get_ydata(), d.bias_asym)
            assert th.get_linestyle() == "--"
            assert ax.get_yscale() == "linear" and ax.get_xscale() == "log"
            np.testing.assert_allclose(ax.get_xlim(), (4 / 1.5, 3000 * 1.5))
            # a zero line in every panel
            assert any(
                np.allclose(ln.get_ydata(), 0) and ln.get_gid() is None for ln in ax.get_lines()
            )
    # the left-out cells: not identifiable, non-finite
    assert 300 not in bars(fig, "mc:k:1")[1]
    assert 100 not in bars(fig, "mc:sqrt-m:3")[1]
    assert -0.4 in bars(fig, "mc:none:1")[2]
    assert legend_texts(fig) == [f"Monte Carlo ± {z:g} MCSE", "Rao–Blackwell", "large-m theory"]
    assert fig.get_suptitle() == "Bias, degree 3, λ = 1"


def test_bias_at_lambda_zero_needs_a_finite_variance(summary):
    fig = measures.fig_bias(summary, degree=3, coefs=[2], lam=0.0, scalings=["m", "k"])
    for s in ("m", "k"):
        # m = 4 (order 1) left out, m = 8 (order 2.5) kept
        np.testing.assert_array_equal(bars(fig, f"mc:{s}:2")[1], MS[1:])
    assert len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == [LABELS["m"], LABELS["k"]]


def test_every_wrapper_draws_degree_3_coefs_1_and_3_at_lambda_1_with_196_mcse(summary):
    want = {
        measures.fig_bias: ("bias", "bias_mcse", 2, "Bias"),
        measures.fig_variance: ("var", "var_mcse", 4, "Variance"),
        measures.fig_mse_split: ("mse", "mse_mcse", 4, "MSE = bias² + variance"),
    }
    for func, (col, mcse, order, title) in want.items():
        fig = func(summary, scalings=["k"])
        assert len(fig.axes) == 2
        assert fig.get_suptitle() == f"{title}, degree 3, λ = 1"
        for s in ("k",):
            for j in (1, 3):
                d = cells(summary, degree=3, lam=1.0, s=s, j=j, order=order)
                d = d[np.isfinite(d[col]) & ((d[col] > 0) if order == 4 else True)]
                _, x, y, _, hi = bars(fig, f"mc:{s}:{j}")
                np.testing.assert_array_equal(x, d.m)
                np.testing.assert_allclose(y, d[col])
                np.testing.assert_allclose(hi - y, 1.96 * d[mcse])
        plt.close(fig)
    fig = measures.fig_bias_over_sd(summary, scalings=["k", "sqrt-m"])
    assert [ax.get_title() for ax in fig.axes] == [
        "ŵ₁ (coefficient of x¹)",
        "ŵ₃ (coefficient of x³)",
    ]
    for s in ("k", "sqrt-m"):
        d = cells(summary, degree=3, lam=1.0, s=s, j=3, order=2)
        d = d[np.isfinite(d.bias)]
        _, x, y, _, hi = bars(fig, f"mc:{s}:3")
        np.testing.assert_allclose(hi - y, 1.96 * d.bias_mcse / d.sd)
    assert fig.get_suptitle() == "Bias relative to the standard deviation, degree 3, λ = 1"


def test_variance_is_log_log_with_bars_clipped_at_a_tenth_and_a_1_over_m_guide(summary):
    z = 1.5
    fig = measures.fig_variance(
        summary, degree=3, coefs=[1, 3], lam=1.0, z=z, scalings=["none", "m"]
    )
    for s in ("none", "m"):
        for j in (1, 3):
            d = cells(summary, degree=3, lam=1.0, s=s, j=j, order=4)
            shown = d[np.isfinite(d["var"]) & (d["var"] > 0)]
            ax, x, y, lo, hi = bars(fig, f"mc:{s}:{j}")
            np.testing.assert_array_equal(x, shown.m)
            np.testing.assert_allclose(y, shown["var"])
            np.testing.assert_allclose(hi, shown["var"] + z * shown.var_mcse)
            # the lower bar stops at a tenth of the value where it would reach below that
            np.testing.assert_allclose(
                lo, np.maximum(shown["var"] - z * shown.var_mcse, 0.1 * shown["var"])
            )
            assert ax.get_yscale() == "log"
            np.testing.assert_allclose(one_line(fig, f"rb:{s}:{j}").get_ydata(), d.var_rb)
            np.testing.assert_allclose(one_line(fig, f"theory:{s}:{j}").get_ydata(), d.var_asym)
            # the guide: ∝ 1/m over the last five points, three times above the last one
            (guide,) = [ln for ln in ax.get_lines() if ln.get_gid() == "guide"]
            gx, gy = np.asarray(guide.get_xdata()), np.asarray(guide.get_ydata())
            np.testing.assert_allclose(gx[[0, -1]], [shown.m.iloc[-5], shown.m.iloc[-1]])
            np.testing.assert_allclose(gy[-1], 3 * shown["var"].iloc[-1])
            np.testing.assert_allclose(gy * gx, gy[-1] * gx[-1])
            np.testing.assert_allclose(gx[1], np.sqrt(gx[0] * gx[-1]))
            assert guide.get_linestyle() == ":"
            (ann,) = [t for t in ax.texts if t.get_text() == "∝ 1/m"]
            np.testing.assert_allclose(ann.xy, (gx[1], gy[1]))
    # the bar of none/ŵ₁ at m = 30 (MCSE 1) is the clipped one
    _, x, y, lo, _ = bars(fig, "mc:none:1")
    assert lo[list(x).index(30)] == pytest.approx(0.1 * y[list(x).index(30)])
    # a variance of 0 has no place on the log axis
    assert 1000 not in bars(fig, "mc:m:3")[1]
    assert legend_texts(fig) == [
        f"Monte Carlo ± {z:g} MCSE",
        "Rao–Blackwell",
        "large-m theory",
        "slope guide",
    ]
    assert legend_columns(fig) == 4  # up to four entries: one row
    assert fig.axes[0].get_ylabel() == "variance of ŵ₁"
    assert fig.axes[2].get_ylabel() == "variance of ŵ₃"
    assert all(ax.get_xlabel() == M_LABEL for ax in fig.axes[2:])
    assert all(ax.get_xlabel() == "" for ax in fig.axes[:2])


def test_sd_is_the_square_root_of_the_variance_lines_with_a_1_over_sqrt_m_guide(summary):
    fig = measures.fig_variance(summary, degree=2, coefs=[0], lam=0.5, scalings=["k"], sd=True)
    d = cells(summary, degree=2, lam=0.5, s="k", j=0, order=4)
    _, x, y, _, hi = bars(fig, "mc:k:0")
    np.testing.assert_allclose(y, d.sd)
    np.testing.assert_allclose(hi - y, 1.96 * d.sd_mcse)
    np.testing.assert_allclose(one_line(fig, "rb:k:0").get_ydata(), np.sqrt(d.var_rb))
    np.testing.assert_allclose(one_line(fig, "theory:k:0").get_ydata(), np.sqrt(d.var_asym))
    guide = one_line(fig, "guide")
    gx, gy = np.asarray(guide.get_xdata()), np.asarray(guide.get_ydata())
    np.testing.assert_allclose(gy * np.sqrt(gx), gy[-1] * np.sqrt(gx[-1]))
    assert [t.get_text() for t in fig.axes[0].texts] == ["∝ 1/√m"]
    assert legend_texts(fig)[-1] == "slope guide ∝ 1/√m"
    assert fig.axes[0].get_ylabel() == "SD of ŵ₀"
    assert fig.get_suptitle() == "Sd, degree 2, λ = 0.5"


def test_variance_at_lambda_zero_needs_a_fourth_moment(summary):
    fig = measures.fig_variance(summary, degree=3, coefs=[1], lam=0.0, scalings=["none"])
    np.testing.assert_array_equal(bars(fig, "mc:none:1")[1], MS[2:])  # 4.5 > 4 kept, 2.5 not


def test_the_mse_split_draws_bias_squared_and_variance_and_spans_every_mse_and_variance(summary):
    z = 3.0
    fig = measures.fig_mse_split(
        summary, degree=3, coefs=[1, 3], lam=1.0, z=z, scalings=["none", "m"]
    )
    for r, j in enumerate((1, 3)):
        span = []
        for s in ("none", "m"):
            d = cells(summary, degree=3, lam=1.0, s=s, j=j, order=4)
            _, x, y, _, hi = bars(fig, f"mc:{s}:{j}")
            shown = d[np.isfinite(d.mse) & (d.mse > 0)]
            np.testing.assert_allclose(y, shown.mse)
            np.testing.assert_allclose(hi - y, z * shown.mse_mcse)
            np.testing.assert_allclose(one_line(fig, f"bias2:{s}:{j}").get_ydata(), d.bias**2)
            np.testing.assert_allclose(one_line(fig, f"var:{s}:{j}").get_ydata(), d["var"])
            v = d["var"]
            span += list(shown.mse) + list(v[v > 0])
        hi_, lo_ = max(span), min(span)
        np.testing.assert_allclose(fig.axes[2 * r].get_ylim(), (lo_ / 3, hi_ * 3))
    assert legend_texts(fig) == [f"MSE (Monte Carlo ± {z:g} MCSE)", "bias²", "variance"]
    assert fig.axes[0].get_ylabel() == "MSE of ŵ₁"


def test_the_y_range_of_a_row_covers_at_most_six_decades():
    rows = []
    for s in ("m", "none"):
        for i, m in enumerate((10, 100, 1000)):
            v = 10.0 ** (-3 * i) if s == "m" else 2.0
            rows.append(
                dict(
                    m=m,
                    degree=1,
                    **{"lambda": 1.0},
                    scaling=s,
                    coef=1,
                    status="ok",
                    bias=0.0,
                    var=v,
                    mse=v,
                    mse_mcse=v / 10,
                )
            )
    fig = measures.fig_mse_split(pd.DataFrame(rows), degree=1, coefs=[1], scalings=["m", "none"])
    # the largest value 2, the smallest 1e-6 → bounded at 2e-6
    np.testing.assert_allclose(fig.axes[0].get_ylim(), (2e-6 / 3, 6.0))


def test_the_ylabel_names_the_true_value_when_the_table_has_it(summary):
    fig = measures.fig_bias(summary, degree=3, coefs=[1, 2], lam=0.5, scalings=["m"])
    assert [ax.get_ylabel() for ax in fig.axes] == [
        "bias of ŵ₁ (true w₁ = 2)",
        "bias of ŵ₂ (true w₂ = 0)",
    ]
    assert fig.axes[0].get_title() == LABELS["m"]
    assert same_color(fig.axes[0].title.get_color(), COLORS["m"])
    assert fig.axes[0].get_xlabel() == ""
    assert fig.axes[1].get_xlabel() == M_LABEL
    plt.close(fig)
    fig = measures.fig_bias(summary.drop(columns="true"), degree=3, coefs=[1], scalings=["m"])
    assert fig.axes[0].get_ylabel() == "bias of ŵ₁"


def test_bias_over_sd_puts_every_scaling_in_one_panel_per_coefficient(summary):
    z = 2.0
    fig = measures.fig_bias_over_sd(summary, degree=3, coefs=[0, 1], lam=1.0, z=z)
    assert len(fig.axes) == 2
    for ax_i, j in enumerate((0, 1)):
        for s in SCALINGS:
            d = cells(summary, degree=3, lam=1.0, s=s, j=j, order=2)
            ratio = d.bias.abs() / d.sd
            ok = np.isfinite(ratio) & (ratio > 0)
            ax, x, y, lo, hi = bars(fig, f"mc:{s}:{j}")
            assert ax is fig.axes[ax_i]
            np.testing.assert_array_equal(x, d.m[ok])
            np.testing.assert_allclose(y, ratio[ok])
            np.testing.assert_allclose(hi - y, z * (d.bias_mcse / d.sd)[ok])
            th = one_line(fig, f"theory:{s}:{j}")
            np.testing.assert_allclose(th.get_ydata(), d.bias_asym.abs() / np.sqrt(d.var_asym))
            assert same_color(th.get_color(), COLORS[s])
        assert fig.axes[ax_i].get_yscale() == "log"
        assert fig.axes[ax_i].get_xlabel() == M_LABEL
    assert fig.axes[0].get_ylabel() == "|bias| / SD  (dimensionless)"
    assert legend_texts(fig) == [LABELS[s] for s in SCALINGS] + ["large-m theory"]
    assert legend_columns(fig) == 3  # beyond four entries: three columns
    (leg,) = fig.legends
    for h, s in zip(leg.legend_handles, SCALINGS, strict=False):
        assert h.get_marker() == MARKERS[s] and same_color(h.get_color(), COLORS[s])


def test_the_traces_need_their_columns(summary):
    fig = measures.fig_bias_over_sd(summary.drop(columns="var_asym"), degree=3, coefs=[1])
    assert gids(fig, "theory:") == set()
    assert legend_texts(fig) == [LABELS[s] for s in SCALINGS]
    plt.close(fig)
    fig = measures.fig_bias(
        summary.drop(columns="bias_asym"), degree=3, coefs=[1], scalings=["m", "k"]
    )
    assert gids(fig, "theory:") == set() and gids(fig, "rb:") == {"rb:m:1", "rb:k:1"}
    assert legend_texts(fig) == ["Monte Carlo ± 1.96 MCSE", "Rao–Blackwell"]


def test_the_rows_are_picked_by_degree_and_lambda(summary):
    rows = _select.cell_rows(summary, 2, 0.5)
    assert set(rows.degree) == {2} and set(rows["lambda"]) == {0.5}
    assert len(rows) == len(MS) * 3 * 4
    assert len(_select.cell_rows(summary, 3, 0.5 + 1e-12)) == len(MS) * 4 * 4


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(degree=4), "The 'degree' parameter must be one of [2, 3]. Got 4 instead."),
        (dict(lam=2.0), "The 'lam' parameter must be one of [0.0, 0.5, 1.0]. Got 2.0 instead."),
        (
            dict(coefs=[1, 4]),
            "The 'coefs' parameter must be one of [0, 1, 2, 3] (degree 3). Got 4 instead.",
        ),
        (dict(scalings=[]), "The 'scalings' parameter must name at least one scaling. Got []."),
        (dict(scalings=["m", "bad"]), "'scalings'"),
    ],
)
def test_bad_arguments_of_the_measure_figures(summary, kw, message):
    with pytest.raises(ValueError) as e:
        measures.fig_bias(summary, **kw)
    # the whole message, where a whole one is given; a quoted name, where only it is
    if message.startswith("'"):
        assert message in str(e.value)
    else:
        assert str(e.value) == message


def test_a_summary_without_a_needed_column_is_refused(summary):
    with pytest.raises(ValueError) as e:
        measures.fig_bias(summary.drop(columns="coef"))
    assert "The 'summary' parameter must have a column 'coef'." in str(e.value)


# --- shared style helpers -------------------------------------------------------------------


def test_the_style_helpers():
    assert _style.SCALING_LABELS == LABELS
    assert _style.SCALING_COLORS == COLORS and _style.SCALING_MARKERS == MARKERS
    assert _style.coef_symbol(3) == "ŵ₃" and _style.coef_symbol(12, hat=False) == "w₁₂"
    assert _style.column_color("lambda0") == "#000000"
    assert _style.column_color("k") == COLORS["k"]
    assert _style.column_title("lambda0", 2.0) == "λ = 0\n(every scaling)"
    assert _style.column_title("sqrt-m", 0.5) == "sqrt-m: (λ/2√m)Σw²\nλ = 0.5"
    np.testing.assert_allclose(_style.shade("#0072B2", 0.0), (1, 1, 1))
    np.testing.assert_allclose(_style.shade("#0072B2", 1.0), mcolors.to_rgb("#0072B2"))
    r, g, b = mcolors.to_rgb("#D55E00")
    np.testing.assert_allclose(
        _style.shade("#D55E00", 0.25), (0.75 + 0.25 * r, 0.75 + 0.25 * g, 0.75 + 0.25 * b)
    )
    cols = _style.degree_colors([1, 4, 7])
    assert list(cols) == [1, 4, 7]
    import matplotlib as mpl

    np.testing.assert_allclose(cols[1], mpl.colormaps["viridis"](0.0))
    np.testing.assert_allclose(cols[7], mpl.colormaps["viridis"](0.85))
    fig = _style.new_figure(2.5)
    np.testing.assert_allclose(fig.get_size_inches(), (6.5, 2.5))
    assert fig.get_layout_engine() is not None
    h = _style.mc_handle()
    assert h.get_label() == "Monte Carlo ± 1.96 MCSE" and h.get_linestyle() == "None"
    assert _style.theory_handle().get_label() == "large-m theory"
    sh = _style.scaling_handle("sqrt-m")
    assert sh.get_label() == LABELS["sqrt-m"] and sh.get_marker() == "^"


def test_the_slope_guide_needs_two_positive_points():
    fig = _style.new_figure(2)
    ax = fig.subplots()
    _style.slope_guide(ax, [10, 100, 1000], [np.nan, -1.0, 5.0], -1.0, "g")
    assert ax.get_lines() == []
    # a zero is no positive point either: one point left, no guide (on a log axis a guide
    # through 0 could not be drawn)
    _style.slope_guide(ax, [10, 100, 1000], [0.0, np.nan, 5.0], -1.0, "g")
    assert ax.get_lines() == []
    _style.slope_guide(ax, [10, 100], [2.0, 1.0], -2.0, "g", factor=5.0)
    (line,) = ax.get_lines()
    np.testing.assert_allclose(line.get_xdata(), [10, np.sqrt(1000), 100])
    np.testing.assert_allclose(
        line.get_ydata(), 5.0 * (np.array([10, np.sqrt(1000), 100]) / 100) ** -2
    )
    assert line.get_gid() == "guide"


def test_the_slope_guide_takes_none_as_a_missing_value():
    """Values as a plain list with None where a cell has no number (as NaN is): the guide
    runs over the others, ending factor times above the last."""
    fig = _style.new_figure(2)
    ax = fig.subplots()
    _style.slope_guide(ax, [10, 100, 1000, 10_000], [1.0, None, 0.01, 0.001], -1.0, "g")
    (line,) = ax.get_lines()
    xs = np.array([10.0, np.sqrt(10 * 10_000), 10_000.0])
    np.testing.assert_allclose(line.get_xdata(), xs)
    np.testing.assert_allclose(line.get_ydata(), 3 * 0.001 * (xs / 10_000) ** -1)


# --- draws.npz ------------------------------------------------------------------------------

D_MS = (3, 10, 100, 1000)
D_LAMS = (0.0, 1.0)
KEEP = 40


def make_draws(seed=3):
    rng = np.random.default_rng(seed)
    out = {"m": np.array(D_MS), "lambda": np.array(D_LAMS), "scaling": np.array(SCALINGS)}
    for k in (2, 3):
        w = np.empty((len(D_MS), len(D_LAMS), len(SCALINGS), KEEP, k + 1))
        for i, m in enumerate(D_MS):
            for li, lam in enumerate(D_LAMS):
                for si in range(len(SCALINGS)):
                    centre = np.array([1.0, 2.0] + [0.0] * (k - 1)) + 0.1 * (si + 1) * lam
                    if lam == 0 and m <= k + 1 and k == 2:
                        noise = 6.0 * rng.standard_cauchy((KEEP, k + 1))  # a heavy tail
                    else:
                        noise = rng.normal(0, 3.0 / np.sqrt(m) / (1 + 3 * lam), (KEEP, k + 1))
                    w[i, li, si] = centre + noise
        out[f"coef_k{k}"] = w
    # degree 3: three points are not identifiable; at m = 10 some fits are not either
    out["coef_k3"][0, 0] = np.nan
    out["coef_k3"][1, 0, :, :5] = np.nan
    return out


@pytest.fixture(scope="module")
def dr():
    return make_draws()


def test_the_fitted_curves_are_the_kept_polynomials_and_their_mean(dr):
    xr = (-0.5, 2.0)
    fig = draws.fig_fitted_curves(
        dr,
        degree=3,
        m_small=10,
        m_large=100,
        lam=1.0,
        scalings=["m", "k"],
        n_curves=7,
        intercept=0.3,
        slope=-1.5,
        x_range=xr,
    )
    x = np.linspace(*xr, 201)
    truth = 0.3 - 1.5 * x
    axes = np.array(fig.axes).reshape(2, 3)
    for c, (col, lam, si) in enumerate((("lambda0", 0.0, 1), ("m", 1.0, 1), ("k", 1.0, 3))):
        for r, (m, mi) in enumerate(((10, 1), (100, 2))):
            w = dr["coef_k3"][mi, D_LAMS.index(lam), si]
            w = w[np.isfinite(w).all(axis=1)]
            y = w @ np.vander(x, 4, increasing=True).T
            ax = axes[r, c]
            fits = [ln for ln in ax.get_lines() if ln.get_gid() == f"fit:{col}:{m}"]
            assert len(fits) == 7
            for ln, yc in zip(fits, y[:7], strict=True):
                np.testing.assert_allclose(ln.get_xdata(), x)
                np.testing.assert_allclose(ln.get_ydata(), yc)
            mean = [ln for ln in ax.get_lines() if ln.get_gid() == f"mean:{col}:{m}"]
            np.testing.assert_allclose(mean[0].get_ydata(), y.mean(axis=0))
            color = "#000000" if col == "lambda0" else COLORS[col]
            assert same_color(mean[0].get_color(), color) and same_color(
                fits[0].get_color(), color
            )
            assert mean[0].get_linewidth() > fits[0].get_linewidth()
            (tr,) = [ln for ln in ax.get_lines() if ln.get_gid() == "truth"]
            np.testing.assert_allclose(tr.get_ydata(), truth)
            # layered: the fits, their mean above them, then the truth, the α label on top
            label = ax.texts[0].get_zorder()
            assert fits[0].get_zorder() < mean[0].get_zorder() < tr.get_zorder() < label
            np.testing.assert_allclose(ax.get_ylim(), (truth.min() - 2.5, truth.max() + 2.5))
            np.testing.assert_allclose(ax.get_xlim(), xr)
            alpha = {"lambda0": 0.0, "m": 1.0, "k": m * 1.0 / 3}[col]
            from study.numbers import alpha_label

            assert [t.get_text() for t in ax.texts] == [f"α = {alpha_label(alpha)}"]
            assert ax.get_ylabel() == (f"m = {m}\nfitted y" if c == 0 else "")
            assert ax.get_xlabel() == ("x" if r == 1 else "")
    assert axes[0, 0].get_title() == "λ = 0\n(every scaling)"
    assert axes[0, 2].get_title() == "k: (λ/2k)Σw²\nλ = 1"
    assert legend_texts(fig) == ["fits to 7 data sets", "mean of the kept fits", "true line"]
    assert fig.get_suptitle() == "Degree-3 polynomial fits"


def test_the_fitted_curves_by_default(dr):
    fig = draws.fig_fitted_curves(dr, scalings=["sqrt-m"])
    assert len(fig.axes) == 4  # λ = 0 and one scaling, m = 10 and 1000
    x = np.linspace(-1, 1, 201)
    w = dr["coef_k3"][3, 1, 2]  # m = 1000, λ = 1, sqrt-m
    fits = gid_lines(fig, "fit:sqrt-m:1000")
    assert len(fits) == 30
    np.testing.assert_allclose(fits[4].get_ydata(), np.polynomial.polynomial.polyval(x, w[4]))
    np.testing.assert_allclose(fig.axes[0].get_ylim(), (-1 - 2.5, 3 + 2.5))
    np.testing.assert_allclose(fig.axes[0].get_xlim(), (-1, 1))
    assert len(gid_lines(fig, "mean:lambda0:10")) == 1
    from study.numbers import alpha_label

    # sqrt-m, λ = 1 at m = 1000: α = √1000
    ax = one_line(fig, "mean:sqrt-m:1000").axes
    assert ax.texts[0].get_text() == f"α = {alpha_label(np.sqrt(1000))}"
    assert ax.get_ylim() == fig.axes[0].get_ylim()


def test_a_not_identifiable_cell_is_marked_and_given_no_curves(dr):
    fig = draws.fig_fitted_curves(
        dr, degree=3, m_small=3, m_large=10, scalings=["none"], ylim=(-4, 5)
    )
    assert gids(fig, "fit:lambda0:3") == set() and gids(fig, "mean:lambda0:3") == set()
    assert "not identifiable" in [t.get_text() for t in fig.axes[0].texts]
    assert len(gid_lines(fig, "fit:lambda0:10")) == 30  # 35 of 40 fits identifiable
    np.testing.assert_allclose(fig.axes[0].get_ylim(), (-4, 5))


def test_lambda_zero_is_read_under_any_scaling_the_draws_hold(dr):
    d = dict(dr, scaling=np.array(["none", "k", "m", "sqrt-m"]))
    # the λ = 0 column is read under 'm' (any scaling gives the same fit): here index 2
    w = _select.draw_cell(d, 3, 100, 0.0, scaling="m")
    np.testing.assert_array_equal(w, dr["coef_k3"][2, 0, 2])
    one = dict(dr, scaling=np.array(["none"]), coef_k3=dr["coef_k3"][:, :, :1])
    np.testing.assert_array_equal(
        _select.draw_cell(one, 3, 100, 0.0, scaling="m"), dr["coef_k3"][2, 0, 0]
    )
    with pytest.raises(ValueError, match="The 'scaling' parameter must be one of"):
        _select.draw_cell(one, 3, 100, 1.0, scaling="m")


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda d: _select.draw_cell(d, 4, 10, 1.0, scaling="m"),
            "The 'degree' parameter must be one of [2, 3] (the degrees in draws). Got 4 instead.",
        ),
        (
            lambda d: _select.draw_cell(d, 3, 11, 1.0, scaling="m"),
            "The 'm' parameter must be one of [3, 10, 100, 1000] (the m values in draws). "
            "Got 11 instead.",
        ),
        (
            lambda d: _select.draw_cell(d, 3, 10, 0.5, scaling="m"),
            "The 'lam' parameter must be one of [0.0, 1.0] (the λ values in draws). "
            "Got 0.5 instead.",
        ),
        (
            lambda d: draws.fig_parabola_tail(d, coef=3),
            "The 'coef' parameter must be one of [0, 1, 2] (degree 2). Got 3 instead.",
        ),
        (
            lambda d: draws.fig_sampling_distributions(d, ms=[5, 7]),
            "The 'ms' parameter must name m values among [3, 10, 100, 1000]. Got none.",
        ),
        (
            lambda d: _select.draws_axes(dict(d, basis=np.array(["monomial", "orthonormal"])), 3),
            "The 'draws' parameter must hold the cells of one basis. Got the bases "
            "['monomial', 'orthonormal'] instead",
        ),
    ],
)
def test_bad_arguments_of_the_draws_figures(dr, call, message):
    with pytest.raises(ValueError) as e:
        call(dr)
    assert message in str(e.value)


def test_draws_axes_and_cell_selection(dr):
    coef, ms, lams, scalings = _select.draws_axes(dict(dr, basis=np.array(["orthonormal"])), 2)
    assert coef.shape == (4, 2, 4, KEEP, 3) and scalings == list(SCALINGS)
    np.testing.assert_array_equal(ms, D_MS)
    assert lams.dtype == float
    np.testing.assert_array_equal(
        _select.draw_cell(dr, 2, 1000, 1.0, scaling="k"), dr["coef_k2"][3, 1, 3]
    )
    assert _select.panel_columns(["k", "m"], 2) == [("lambda0", 0.0), ("k", 2.0), ("m", 2.0)]
    assert _select.cell_scaling("lambda0") == "m" and _select.cell_scaling("k") == "k"
    w = np.array([[1.0, 2.0], [np.nan, 1.0], [3.0, np.inf], [4.0, 5.0]])
    np.testing.assert_array_equal(_select.identifiable(w), [[1.0, 2.0], [4.0, 5.0]])


def survival(values):
    v = np.sort(np.abs(values[np.isfinite(values)]))
    n = v.size
    return v, np.array([(np.abs(values[np.isfinite(values)]) >= t).sum() / n for t in v])


def test_the_parabola_tail_is_the_empirical_survival_function(dr):
    fig = draws.fig_parabola_tail(
        dr,
        m=3,
        degree=2,
        coef=2,
        lam=1.0,
        m_many=100,
        n_curves=12,
        scalings=["none", "m"],
        intercept=-1.0,
        slope=0.5,
        x_range=(0.0, 3.0),
    )
    ax_fit, ax_tail = fig.axes
    cells_ = {
        "tail:lambda0:3": dr["coef_k2"][0, 0, 1],
        "tail:lambda0:100": dr["coef_k2"][2, 0, 1],
        "tail:none:3": dr["coef_k2"][0, 1, 0],
        "tail:m:3": dr["coef_k2"][0, 1, 1],
    }
    for gid, w in cells_.items():
        ln = one_line(fig, gid)
        v, p = survival(w[:, 2])
        np.testing.assert_allclose(ln.get_xdata(), v)
        np.testing.assert_allclose(ln.get_ydata(), p)  # P(|ŵ₂| ≥ v_(i)) = (n − i)/n
        assert ln.get_drawstyle() == "steps-pre"
        assert ln.axes is ax_tail
    assert same_color(one_line(fig, "tail:none:3").get_color(), COLORS["none"])
    assert same_color(one_line(fig, "tail:lambda0:3").get_color(), "#000000")
    assert ax_tail.get_xscale() == "log" and ax_tail.get_yscale() == "log"
    np.testing.assert_allclose(ax_tail.get_ylim(), (0.5 / KEEP, 1.5))
    lows = [np.quantile(np.abs(w[:, 2]), 0.1) for w in cells_.values()]
    assert ax_tail.get_xlim()[0] == pytest.approx(min(lows) / 2)
    # the guide ∝ log(t)/t through the λ = 0 curve at its 10 % point
    v = np.sort(np.abs(dr["coef_k2"][0, 0, 1][:, 2]))
    t10 = v[int(0.9 * KEEP)]
    assert t10 > 3
    g = one_line(fig, "guide")
    ts = np.asarray(g.get_xdata())
    np.testing.assert_allclose(ts[[0, -1]], [max(t10 / 3, 2.0), 30 * t10])
    assert len(ts) == 40
    np.testing.assert_allclose(g.get_ydata(), 0.25 * (t10 / ts) * np.log(ts) / np.log(t10))
    # the left panel: the first twelve identifiable parabolas through three points
    x = np.linspace(0.0, 3.0, 201)
    fits = gid_lines(fig, "fit:lambda0")
    assert len(fits) == 12
    np.testing.assert_allclose(
        fits[11].get_ydata(), np.polynomial.polynomial.polyval(x, dr["coef_k2"][0, 0, 1][11])
    )
    truth = -1.0 + 0.5 * x
    np.testing.assert_allclose(one_line(fig, "truth").get_ydata(), truth)
    np.testing.assert_allclose(ax_fit.get_ylim(), (truth.min() - 4, truth.max() + 4))
    np.testing.assert_allclose(ax_fit.get_xlim(), (0, 3))
    assert ax_fit.get_title() == "λ = 0: degree 2 through m = 3 points (12 data sets)"
    assert ax_tail.get_title() == "Tail of the x² coefficient, degree 2, m = 3"
    assert ax_tail.get_xlabel() == "t (threshold on |ŵ₂|, dimensionless)"
    assert ax_tail.get_ylabel() == "P(|ŵ₂| > t)  (fraction of data sets)"
    assert legend_texts(fig) == [
        "λ = 0, m = 3",
        "λ = 0, m = 100",
        f"{LABELS['none']}, λ = 1, m = 3",
        f"{LABELS['m']}, λ = 1, m = 3",
        "∝ log(t)/t (no finite mean)",
    ]


def test_the_parabola_tail_by_default_and_without_m_many(dr):
    fig = draws.fig_parabola_tail(dr)
    assert gids(fig, "tail:") == {"tail:lambda0:3", "tail:lambda0:100"} | {
        f"tail:{s}:3" for s in SCALINGS
    }
    assert len(gid_lines(fig, "fit:lambda0")) == 30
    np.testing.assert_allclose(one_line(fig, "truth").get_ydata(), 1 + 2 * np.linspace(-1, 1, 201))
    plt.close(fig)
    fig = draws.fig_parabola_tail(dr, m_many=50, scalings=["k"])  # 50 is not in the draws
    assert gids(fig, "tail:") == {"tail:lambda0:3", "tail:k:3"}


def test_the_sampling_distributions_are_the_central_draws_and_the_mean_of_all(dr):
    central = 0.8
    fig = draws.fig_sampling_distributions(
        dr,
        degree=3,
        coefs=[1, 3],
        lam=1.0,
        ms=[1000, 10, 77],
        scalings=["none", "m"],
        central=central,
    )
    axes = np.array(fig.axes).reshape(2, 3)
    q = (1 - central) / 2
    ms = [1000, 10]
    for r, j in enumerate((1, 3)):
        pen = []
        for c, (col, li, si) in enumerate((("lambda0", 0, 1), ("none", 1, 0), ("m", 1, 1))):
            ax = axes[r, c]
            for p, m in enumerate(ms):
                v = dr["coef_k3"][D_MS.index(m), li, si][:, j]
                v = v[np.isfinite(v)]
                lo, hi = np.quantile(v, [q, 1 - q])
                inner = v[(v >= lo) & (v <= hi)]
                if col != "lambda0":
                    pen.append(inner)
                (mean,) = [ln for ln in ax.get_lines() if ln.get_gid() == f"mean:{col}:{j}:{m}"]
                np.testing.assert_allclose(mean.get_xdata(), [p - 0.25, p + 0.25])
                np.testing.assert_allclose(mean.get_ydata(), [v.mean()] * 2)
                (body,) = [b for b in ax.collections if b.get_gid() == f"violin:{col}:{j}:{m}"]
                ys = body.get_paths()[0].vertices[:, 1]
                xs = body.get_paths()[0].vertices[:, 0]
                assert ys.min() == pytest.approx(inner.min()) and ys.max() == pytest.approx(
                    inner.max()
                )
                assert xs.min() == pytest.approx(p - 0.4, abs=0.02)
                assert xs.max() == pytest.approx(p + 0.4, abs=0.02)
            assert tick_labels(ax) == ["1000", "10"]
            np.testing.assert_allclose(ax.get_xticks(), [0, 1])
            np.testing.assert_allclose(ax.get_xlim(), (-0.6, 1.6))
            assert ax.get_title() == ("" if r else _style.column_title(col, 1.0 if c else 0.0))
        # the penalised draws' range, padded by 8 % of it, and 0
        lo = min(v.min() for v in pen)
        hi = max(v.max() for v in pen)
        pad = 0.08 * (hi - lo)
        for c in range(3):
            np.testing.assert_allclose(axes[r, c].get_ylim(), (min(lo, 0) - pad, max(hi, 0) + pad))
    assert axes[0, 0].get_ylabel() == "ŵ₁ (coefficient of x¹)"
    assert axes[1, 0].get_ylabel() == "ŵ₃ (coefficient of x³)"
    assert axes[1, 1].get_xlabel() == M_LABEL and axes[0, 1].get_xlabel() == ""
    # a zero line for the coefficients whose true value is 0 (j ≥ 2), not for ŵ₁
    zero = [
        ln
        for ln in axes[1, 1].get_lines()
        if ln.get_gid() is None and np.allclose(ln.get_ydata(), 0)
    ]
    assert len(zero) == 1
    assert not [
        ln
        for ln in axes[0, 1].get_lines()
        if ln.get_gid() is None and np.allclose(ln.get_ydata(), 0)
    ]
    assert fig.get_suptitle() == (
        f"Sampling distributions, degree 3: central 80% of the {KEEP} kept draws per cell"
    )
    assert legend_texts(fig) == ["mean of the kept draws", "true value 0"]


def test_violins_beyond_the_penalised_range_are_cut_and_marked(dr):
    fig = draws.fig_sampling_distributions(
        dr, degree=2, coefs=[2], lam=1.0, ms=[3, 1000], scalings=["m"]
    )
    ax0 = fig.axes[0]
    ylim = ax0.get_ylim()
    w = dr["coef_k2"][0, 0, 1][:, 2]
    lo, hi = np.quantile(w, [0.01, 0.99])
    inner = w[(w >= lo) & (w <= hi)]
    marks = {
        ln.get_marker(): ln for ln in ax0.get_lines() if ln.get_gid() == "clipped:lambda0:2:3"
    }
    want = {
        mk for beyond, mk in ((inner.max() > ylim[1], "^"), (inner.min() < ylim[0], "v")) if beyond
    }
    assert want and set(marks) == want
    for mk, ln in marks.items():
        assert ln.get_ydata()[0] == (1.0 if mk == "^" else 0.0)
        assert ln.get_xdata()[0] == 0
    # the penalised cells are within the range: no marks
    assert gids(fig, "clipped:m") == set()
    assert not [ln for ln in fig.axes[1].get_lines() if (ln.get_gid() or "").startswith("clip")]


def test_the_sampling_distributions_by_default(dr):
    fig = draws.fig_sampling_distributions(dr, scalings=["k"])
    assert len(fig.axes) == 4  # coefficients 2 and 3, λ = 0 and one scaling
    assert gids(fig, "mean:k:3:") == {"mean:k:3:10", "mean:k:3:100", "mean:k:3:1000"}
    assert "central 98%" in fig.get_suptitle()
    # the title at the size of every panel's title (8 pt), not matplotlib's larger default
    (title,) = [t for t in fig.findobj(Text) if t.get_text() == fig.get_suptitle()]
    assert title.get_fontsize() == fig.axes[0].title.get_fontsize() == 8
    w = dr["coef_k3"][1, 1, 3][:, 2]
    np.testing.assert_allclose(one_line(fig, "mean:k:2:10").get_ydata()[0], w.mean())
    plt.close(fig)
    fig = draws.fig_sampling_distributions(dr, degree=3, coefs=[3], ms=None, scalings=["m"])
    # λ = 0 at m = 3 is not identifiable: a note, no violin; every m shown
    assert gids(fig, "mean:lambda0:3:") == {f"mean:lambda0:3:{m}" for m in D_MS[1:]}
    assert "not\nidentifiable" in [t.get_text() for t in fig.axes[0].texts]
    assert tick_labels(fig.axes[0]) == ["3", "10", "100", "1000"]


# --- the tuned penalty --------------------------------------------------------------------

R_MS = (10, 100, 1000)
GRID = np.geomspace(1e-3, 1e2, 26)


def make_risk_curves():
    rows = []
    for degree in (2, 3):
        for m in R_MS:
            for si, s in enumerate(SCALINGS):
                for lam in [0.0, *GRID]:
                    a = max(lam, 1e-12) * (m if s == "none" else 1.0)
                    r = (1 + si) * (1 / m + 0.2 * a / m + 0.5 / (m * (1 + a)))
                    rows.append(dict(m=m, degree=degree, scaling=s, **{"lambda": lam}, risk=r))
    rc = pd.DataFrame(rows)
    rc.loc[(rc.m == 100) & (rc.scaling == "k") & (rc["lambda"] == GRID[3]), "risk"] = np.nan
    return rc


def make_risk():
    rows = []
    for m in R_MS:
        for s in SCALINGS:
            for lam in (0.0, 0.1, 1.0, 10.0):
                rows.append(
                    dict(
                        m=m,
                        degree=3,
                        scaling=s,
                        **{"lambda": lam},
                        status="ok",
                        risk=1.0 / m + lam / 100,
                        risk_mcse=0.03 / m + lam / 1000,
                    )
                )
                rows.append(
                    dict(
                        m=m,
                        degree=2,
                        scaling=s,
                        **{"lambda": lam},
                        status="ok",
                        risk=5.0,
                        risk_mcse=1.0,
                    )
                )
    r = pd.DataFrame(rows)
    r.loc[(r.m == 100) & (r.scaling == "m") & (r["lambda"] == 10.0), "status"] = "failed"
    r.loc[(r.m == 1000) & (r.scaling == "m") & (r["lambda"] == 0.1), "risk"] = np.inf
    return r


@pytest.fixture(scope="module")
def rc():
    return make_risk_curves()


@pytest.fixture(scope="module")
def risk():
    return make_risk()


def curve(rc, s, m, degree=3):
    d = rc[(rc.degree == degree) & (rc.scaling == s) & (rc.m == m)].sort_values("lambda")
    return d[(d["lambda"] > 0) & np.isfinite(d.risk)]


def test_the_risk_curves_optima_and_simulated_points(rc, risk):
    z = 2.5
    lam_between = float(np.sqrt(GRID[10] * GRID[11]))
    tun = pd.DataFrame(
        [
            dict(m=10, degree=3, scaling="m", method="conditional", lambda_opt=GRID[7]),
            dict(m=100, degree=3, scaling="m", method="conditional", lambda_opt=lam_between),
            dict(m=100, degree=3, scaling="m", method="asymptotic", lambda_opt=GRID[2]),
            dict(m=100, degree=2, scaling="m", method="conditional", lambda_opt=GRID[2]),
            dict(m=1000, degree=3, scaling="m", method="conditional", lambda_opt=np.inf),
            dict(m=10, degree=3, scaling="k", method="conditional", lambda_opt=0.0),
            dict(m=100, degree=3, scaling="k", method="conditional", lambda_opt=1e5),
        ]
    )
    fig = tuning.fig_risk_vs_lambda(rc, risk, tun, degree=3, scalings=["m", "k"], z=z)
    assert len(fig.axes) == 2
    for s in ("m", "k"):
        for m in R_MS:
            d = curve(rc, s, m)
            ln = one_line(fig, f"curve:{s}:{m}")
            np.testing.assert_allclose(ln.get_xdata(), d["lambda"])
            np.testing.assert_allclose(ln.get_ydata(), d.risk)
            assert ln.axes is fig.axes[("m", "k").index(s)]
            # the simulated risk at the grid λ > 0 with usable cells and finite risk
            rr = risk[
                (risk.degree == 3)
                & (risk.scaling == s)
                & (risk.m == m)
                & (risk["lambda"] > 0)
                & (risk.status == "ok")
                & np.isfinite(risk.risk)
            ]
            ax, x, y, lo, hi = bars(fig, f"mc:{s}:{m}")
            np.testing.assert_allclose(x, rr["lambda"])
            np.testing.assert_allclose(y, rr.risk)
            np.testing.assert_allclose(hi - y, z * rr.risk_mcse)
            np.testing.assert_allclose(y - lo, z * rr.risk_mcse)
            mc = one_line(fig, f"mc:{s}:{m}")
            assert mc.get_markerfacecolor() == "white"
            # the simulated risk in its curve's colour, with the scaling's marker
            assert same_color(mc.get_color(), mcolors.to_rgb(ln.get_color()))
            assert mc.get_marker() == MARKERS[s]
    # the optimum of the tuning table, on the curve
    np.testing.assert_allclose(
        one_line(fig, "opt:m:10").get_xydata(), [[GRID[7], curve(rc, "m", 10).risk.iloc[7]]]
    )
    d = curve(rc, "m", 100)
    r0, r1 = d.risk.iloc[10], d.risk.iloc[11]
    np.testing.assert_allclose(
        one_line(fig, "opt:m:100").get_xydata(), [[lam_between, np.sqrt(r0 * r1)]]
    )  # halfway on log axes
    # λ* = ∞ or 0: the minimum of the curve instead
    for s, m in (("m", 1000), ("k", 10)):
        d = curve(rc, s, m)
        i = int(np.argmin(d.risk.to_numpy()))
        np.testing.assert_allclose(
            one_line(fig, f"opt:{s}:{m}").get_xydata(), [[d["lambda"].iloc[i], d.risk.iloc[i]]]
        )
    # outside the curve: no marker
    assert "opt:k:100" not in gids(fig, "opt:") and "opt:k:1000" in gids(fig, "opt:")
    assert 10.0 not in bars(fig, "mc:m:100")[1] and 0.1 not in bars(fig, "mc:m:1000")[1]
    for ax in fig.axes:
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        assert ax.get_xlabel() == "λ as written"
    assert fig.axes[0].get_title() == LABELS["m"]
    assert fig.axes[0].get_ylabel() == "expected prediction risk E[R(ŵ)]\n(squared units of y)"
    assert legend_texts(fig) == ["expected risk", "optimum λ*", f"Monte Carlo ± {z:g} MCSE"]
    # the legend's optimum looks like the markers it names
    opt = one_line(fig, "opt:m:100")
    assert handle(fig, "optimum λ*").get_markersize() == opt.get_markersize()
    # and its Monte Carlo entry is a hollow marker, as the simulated points are, not a line
    mc_entry = handle(fig, f"Monte Carlo ± {z:g} MCSE")
    assert mc_entry.get_marker() not in ("None", "", None, " ")
    assert mc_entry.get_linestyle() == "None" and mc_entry.get_markerfacecolor() == "white"
    assert handle(fig, "optimum λ*").get_markeredgecolor() == opt.get_markeredgecolor()
    assert fig.get_suptitle() == "Prediction risk against λ, degree 3 (darker: larger m)"
    assert fig.get_size_inches()[0] == pytest.approx(6.5)  # the page width


def test_risk_curves_are_darker_for_larger_m(rc):
    fig = tuning.fig_risk_vs_lambda(rc, degree=2, scalings=["sqrt-m"], curve_label="exact")
    for m, t in zip(R_MS, (0.35, 0.675, 1.0), strict=True):
        want = 0.85 * np.asarray(_style.shade(COLORS["sqrt-m"], t))
        np.testing.assert_allclose(
            mcolors.to_rgb(one_line(fig, f"curve:sqrt-m:{m}").get_color()), want
        )
        np.testing.assert_allclose(
            mcolors.to_rgb(one_line(fig, f"opt:sqrt-m:{m}").get_color()), want
        )
        d = curve(rc, "sqrt-m", m, degree=2)
        i = int(np.argmin(d.risk.to_numpy()))
        np.testing.assert_allclose(
            one_line(fig, f"opt:sqrt-m:{m}").get_xdata(), [d["lambda"].iloc[i]]
        )
    assert legend_texts(fig) == ["exact", "optimum λ*"]
    assert gids(fig, "mc:") == set()
    assert fig.get_suptitle().startswith("Prediction risk against λ, degree 2")
    plt.close(fig)
    fig = tuning.fig_risk_vs_lambda(rc, degree=2, ms=[100, 7], scalings=["m"])
    assert gids(fig, "curve:") == {"curve:m:100"}
    np.testing.assert_allclose(
        mcolors.to_rgb(one_line(fig, "curve:m:100").get_color()),
        0.85 * np.asarray(mcolors.to_rgb(COLORS["m"])),
    )


def test_the_risk_figure_by_default(rc, risk):
    fig = tuning.fig_risk_vs_lambda(rc, risk, scalings=["none"])
    assert len(fig.axes) == 1
    assert gids(fig, "curve:") == {f"curve:none:{m}" for m in R_MS}
    rr = risk[
        (risk.degree == 3) & (risk.scaling == "none") & (risk.m == 10) & (risk["lambda"] > 0)
    ]
    _, x, y, _, hi = bars(fig, "mc:none:10")
    np.testing.assert_allclose(hi - y, 1.96 * rr.risk_mcse)
    assert legend_texts(fig)[-1] == "Monte Carlo ± 1.96 MCSE"


def test_the_curve_label_sits_at_the_left_end_unless_the_optimum_is_there(rc):
    tun = pd.DataFrame(
        [
            dict(
                m=10, degree=3, scaling="none", method="conditional", lambda_opt=GRID[0] * 10**2.4
            ),
            dict(
                m=100, degree=3, scaling="none", method="conditional", lambda_opt=GRID[0] * 10**2.6
            ),
        ]
    )
    fig = tuning.fig_risk_vs_lambda(rc, tuning=tun, degree=3, scalings=["none"], ms=[10, 100])
    ax = fig.axes[0]
    labels = {t.get_gid(): t for t in ax.texts}
    d100 = curve(rc, "none", 100)
    assert labels["label:none:10"].get_text() == "m = 10"
    np.testing.assert_allclose(
        labels["label:none:10"].xy, one_line(fig, "opt:none:10").get_xydata()[0]
    )
    np.testing.assert_allclose(labels["label:none:100"].xy, (GRID[0], d100.risk.iloc[0]))
    assert labels["label:none:100"].get_text() == "m = 100"


@pytest.mark.parametrize(
    "kw, message",
    [
        # the allowed values as plain numbers, as every refusal names them
        (dict(degree=5), "must be one of [2, 3] (the degrees in risk_curves). Got 5 instead."),
        (dict(ms=[7]), f"must name m values among {sorted(R_MS)}. Got none."),
        (dict(scalings=["x"]), "'scalings'"),
    ],
)
def test_bad_arguments_of_the_risk_figure(rc, kw, message):
    with pytest.raises(ValueError) as e:
        tuning.fig_risk_vs_lambda(rc, **kw)
    assert message in str(e.value)
    assert str(e.value).startswith("The '" + next(iter(kw)) + "' parameter must")
    if "degree" in kw:
        assert "2)" in str(e.value) or "2," in str(e.value)
        assert "3)" in str(e.value) or "3]" in str(e.value)


T_MS = (10, 100, 1000, 10000)


def make_tuning(alpha_same=True):
    rows = []
    for degree in (2, 3):
        for meth, f in (("asymptotic", 1.0), ("conditional", 1.3), ("other", 0.5)):
            for si, s in enumerate(SCALINGS):
                for m in T_MS:
                    a = f * (2.0 + 5.0 / np.sqrt(m)) * degree
                    if not alpha_same:
                        a *= 1 + 0.1 * si
                    lam = {"none": a / m, "m": a, "sqrt-m": a / np.sqrt(m), "k": a * degree / m}[s]
                    rows.append(
                        dict(
                            m=m,
                            degree=degree,
                            scaling=s,
                            method=meth,
                            lambda_opt=lam,
                            alpha_opt=a,
                            alpha_limit=2.0 * degree,
                        )
                    )
    t = pd.DataFrame(rows)
    at = (t.degree == 3) & (t.method == "asymptotic")
    t.loc[at & (t.scaling == "none") & (t.m == 100), "lambda_opt"] = np.inf
    t.loc[at & (t.scaling == "k") & (t.m == 1000), "lambda_opt"] = 0.0
    return t.sample(frac=1.0, random_state=1)  # rows out of order: the lines sort by m


def test_the_tuned_lambda_and_alpha_per_method(rc):
    tun = make_tuning()
    fig = tuning.fig_tuned_lambda(tun, degree=3)
    ax_l, ax_a = fig.axes
    t3 = tun[tun.degree == 3]
    for meth, line in (("asymptotic", True), ("conditional", False)):
        for s in SCALINGS:
            d = t3[(t3.method == meth) & (t3.scaling == s)].sort_values("m")
            d = d[np.isfinite(d.lambda_opt) & (d.lambda_opt > 0)]
            ln = one_line(fig, f"lambda:{meth}:{s}")
            assert ln.axes is ax_l
            np.testing.assert_array_equal(ln.get_xdata(), d.m)
            np.testing.assert_allclose(ln.get_ydata(), d.lambda_opt)
            assert same_color(ln.get_color(), COLORS[s])
            if line:
                assert ln.get_linestyle() == "-" and ln.get_marker() in (None, "None", "")
            else:
                assert ln.get_linestyle() == "None" and ln.get_marker() == MARKERS[s]
                assert ln.get_markerfacecolor() == "white"
        # α* agrees across the scalings: one curve
        a = one_line(fig, f"alpha:{meth}:all")
        assert a.axes is ax_a
        d = t3[(t3.method == meth) & (t3.scaling == "none")].sort_values("m")
        np.testing.assert_allclose(a.get_ydata(), d.alpha_opt)
        np.testing.assert_array_equal(a.get_xdata(), d.m)
        assert (a.get_marker() == "o") != line
        # one method drawn alike on both panels: α*'s line as wide as each λ* line
        for s in SCALINGS:
            lam = one_line(fig, f"lambda:{meth}:{s}")
            assert (a.get_linewidth(), a.get_linestyle()) == (
                lam.get_linewidth(),
                lam.get_linestyle(),
            )
    assert gids(fig, "lambda:other") == set()
    # the suptitle as large as the panels' titles
    (sup,) = [t for t in fig.findobj(Text) if t.get_text() == fig.get_suptitle()]
    assert sup.get_text() and sup.get_fontsize() == ax_a.title.get_fontsize()
    assert gids(fig, "alpha:") == {"alpha:asymptotic:all", "alpha:conditional:all"}
    # the limit α*∞ of the table: on both panels (λ* → α*∞ under 'm')
    np.testing.assert_allclose(one_line(fig, "alpha_limit").get_ydata(), [6.0, 6.0])
    np.testing.assert_allclose(one_line(fig, "lambda_limit_m").get_ydata(), [6.0, 6.0])
    assert one_line(fig, "lambda_limit_m").axes is ax_l
    assert [t.get_text() for t in ax_a.texts] == [r"$\alpha^*_\infty$ = 6"]
    assert ax_a.get_ylim()[0] == 0
    for ax in fig.axes:
        assert ax.get_xscale() == "log" and ax.get_xlabel() == M_LABEL
        np.testing.assert_allclose(ax.get_xlim(), (10 / 1.5, 10000 * 1.5))
    assert ax_l.get_yscale() == "log" and ax_a.get_yscale() == "linear"
    assert ax_l.get_ylabel() == "optimal λ* as written (dimensionless)"
    assert ax_a.get_ylabel() == "optimal sum-form α* = m·c(λ*)\n(dimensionless)"
    assert ax_l.get_title() == "λ*(m): what to set under each scaling"
    assert ax_a.get_title() == "α*(m): the same for every scaling"
    assert legend_texts(fig) == [LABELS[s] for s in SCALINGS] + [
        "large-m theory (lines)",
        "exact risk over simulated designs (markers)",
        r"limit $\alpha^*_\infty$ as m → ∞",
    ]
    assert legend_columns(fig) == 3  # seven entries in three columns
    markers = one_line(fig, "lambda:conditional:m")
    h = handle(fig, "exact risk over simulated designs (markers)")
    assert h.get_linestyle() == markers.get_linestyle() == "None"
    assert h.get_markerfacecolor() == markers.get_markerfacecolor()
    assert fig.get_suptitle() == "Risk-optimal penalty, degree 3"


def test_disagreeing_alphas_are_drawn_per_scaling_and_the_limit_may_be_given(rc):
    tun = make_tuning(alpha_same=False).drop(columns="alpha_limit")
    fig = tuning.fig_tuned_lambda(tun, degree=2, scalings=["none", "k"], methods=["conditional"])
    t2 = tun[(tun.degree == 2) & (tun.method == "conditional")]
    for s in ("none", "k"):
        ln = one_line(fig, f"alpha:conditional:{s}")
        np.testing.assert_allclose(ln.get_ydata(), t2[t2.scaling == s].sort_values("m").alpha_opt)
        assert same_color(ln.get_color(), COLORS[s])
    assert gids(fig, "alpha_limit") == set() and gids(fig, "lambda_limit") == set()
    assert legend_texts(fig) == [
        LABELS["none"],
        LABELS["k"],
        "exact risk over simulated designs (lines)",
    ]
    assert legend_columns(fig) == 3  # up to four entries: one row
    plt.close(fig)
    # a method without a name of its own is labelled by its key
    fig = tuning.fig_tuned_lambda(
        tun, degree=2, scalings=["none"], methods=["conditional", "other"]
    )
    assert legend_texts(fig)[-1] == "other (markers)"
    plt.close(fig)
    fig = tuning.fig_tuned_lambda(tun, 7.5, degree=2, scalings=["none", "m"])
    np.testing.assert_allclose(one_line(fig, "alpha_limit").get_ydata(), [7.5, 7.5])
    np.testing.assert_allclose(one_line(fig, "lambda_limit_m").get_ydata(), [7.5, 7.5])
    plt.close(fig)
    for limit in (
        {2: 7.5, 3: 1.0},
        pd.Series({2: 7.5}),
        pd.DataFrame({"degree": [3, 2], "alpha_limit": [1.0, 7.5]}),
    ):
        assert tuning._scalar_alpha_limit(limit, 2) == 7.5
    for limit in (
        {3: 1.0},
        pd.Series({3: 1.0}),
        pd.DataFrame({"degree": [3], "alpha_limit": [1.0]}),
        None,
    ):
        assert tuning._scalar_alpha_limit(limit, 2) is None
    # without 'm' among the scalings, the λ panel has no limit line; a limit the mapping
    # lacks, or an infinite one, is no line at all
    fig = tuning.fig_tuned_lambda(tun, 7.5, degree=2, scalings=["k"])
    assert gids(fig, "lambda_limit") == set() and gids(fig, "alpha_limit") == {"alpha_limit"}
    assert legend_columns(fig) == 4
    plt.close(fig)
    fig = tuning.fig_tuned_lambda(tun, np.inf, degree=2, scalings=["m"])
    assert gids(fig, "alpha_limit") == set() and gids(fig, "lambda_limit") == set()
    plt.close(fig)
    with pytest.raises(ValueError) as e:
        tuning.fig_tuned_lambda(tun, degree=4)
    assert str(e.value) == (
        "The 'degree' parameter must be one of [2, 3] (the degrees in tuning). Got 4 instead."
    )


def make_matched():
    rows = []
    for degree in (2, 3):
        for si, s in enumerate(SCALINGS):
            for m in (10, 100, 1000, 10000):
                for coef in (0, 1):
                    rows.append(
                        dict(
                            m0=1000,
                            m=m,
                            degree=degree,
                            scaling=s,
                            coef=coef,
                            bias=-0.1 * (si + 1) * np.log10(m) + coef + degree / 10,
                            bias_se=0.01 * (si + 1),
                            variance=(si + 1 + coef) / m,
                            variance_se=(si + 1) / m * 0.4,
                            risk_ratio=1.0
                            if m == 1000
                            else 1 + 0.05 * (si + 1) * abs(np.log10(m) - 3),
                            risk_ratio_se=0.02 * (si + 1) + 0.1 * (m == 10),
                        )
                    )
    return pd.DataFrame(rows).sample(frac=1.0, random_state=2)


def test_the_matched_figure_lines_and_bands():
    matched = make_matched()
    z = 2.5
    fig = tuning.fig_matched(matched, degrees=[3, 2], coef=0, scalings=["m", "k"], z=z)
    axes = np.array(fig.axes).reshape(2, 3)
    for r, k in enumerate((3, 2)):
        for s in ("m", "k"):
            g = matched[(matched.degree == k) & (matched.coef == 0) & (matched.scaling == s)]
            g = g.sort_values("m")
            extra = g.risk_ratio - 1
            keep = extra > 1e-5
            want = {
                "bias": (g.m, g.bias, g.bias - z * g.bias_se, g.bias + z * g.bias_se),
                "variance": (
                    g.m,
                    g.variance,
                    np.maximum(g.variance - z * g.variance_se, 0.5 * g.variance),
                    g.variance + z * g.variance_se,
                ),
                "extra_risk": (
                    g.m[keep],
                    extra[keep],
                    np.maximum(extra[keep] - z * g.risk_ratio_se[keep], 0.5 * extra[keep]),
                    extra[keep] + z * g.risk_ratio_se[keep],
                ),
            }
            for c, (name, (x, y, lo, hi)) in enumerate(want.items()):
                ln = one_line(fig, f"matched:{name}:{k}:{s}")
                assert ln.axes is axes[r, c]
                np.testing.assert_allclose(ln.get_xdata(), x)
                np.testing.assert_allclose(ln.get_ydata(), y)
                assert same_color(ln.get_color(), COLORS[s]) and ln.get_marker() == MARKERS[s]
                (band,) = [
                    p
                    for p in axes[r, c].collections
                    if same_color(p.get_facecolor()[0], COLORS[s])
                ]
                v = band.get_paths()[0].vertices
                n = len(x)
                # fill_between: the lower edge forwards, the upper edge backwards
                np.testing.assert_allclose(v[1 : n + 1, 1], lo)
                np.testing.assert_allclose(v[n + 2 : 2 * n + 2, 1], np.asarray(hi)[::-1])
                np.testing.assert_allclose(v[1 : n + 1, 0], x)
        assert axes[r, 0].get_yscale() == "linear"
        assert axes[r, 1].get_yscale() == "log" and axes[r, 2].get_yscale() == "log"
        assert axes[r, 2].get_ylim()[0] == pytest.approx(1e-5)
        assert axes[r, 0].get_ylabel() == f"degree {k}"
        for ax in axes[r]:
            np.testing.assert_allclose(ax.get_xlim(), (10 / 1.5, 10000 * 1.5))
            assert any(
                np.allclose(ln.get_xdata(), 1000) for ln in ax.get_lines() if ln.get_gid() is None
            )
        assert any(
            np.allclose(ln.get_ydata(), 0) for ln in axes[r, 0].get_lines() if ln.get_gid() is None
        )
    assert [ax.get_title() for ax in axes[0]] == [
        "bias of ŵ₀",
        "variance of ŵ₀",
        "extra risk over the best λ for m",
    ]
    assert [ax.get_xlabel() for ax in axes[1]] == [M_LABEL] * 3
    assert [ax.get_xlabel() for ax in axes[0]] == [""] * 3
    assert legend_texts(fig) == [LABELS["m"], LABELS["k"], "m₀ = 1,000"]
    assert fig.get_suptitle() == "λ tuned at m₀ = 1,000 under each scaling, then held fixed"


def test_the_matched_figure_by_default():
    matched = make_matched()
    fig = tuning.fig_matched(matched, degrees=[2])
    assert gids(fig, "matched:bias:") == {f"matched:bias:2:{s}" for s in SCALINGS}
    g = matched[(matched.degree == 2) & (matched.coef == 1) & (matched.scaling == "none")]
    g = g.sort_values("m")
    np.testing.assert_allclose(one_line(fig, "matched:bias:2:none").get_ydata(), g.bias)
    (band,) = [
        p for p in fig.axes[0].collections if same_color(p.get_facecolor()[0], COLORS["none"])
    ]
    v = band.get_paths()[0].vertices
    np.testing.assert_allclose(v[1:5, 1], g.bias - 1.96 * g.bias_se)
    assert fig.axes[0].get_title() == "bias of ŵ₁"
    with pytest.raises(ValueError) as e:
        tuning.fig_matched(matched, degrees=[3, 4, 5])
    assert str(e.value) == (
        "The 'degrees' parameter must hold degrees of matched.csv, [2, 3]. Got [4, 5] instead."
    )


def make_degrees_tuning():
    rows = []
    for k in (1, 3):
        for i, m in enumerate((4, 6, 20, 200, 2000)):
            for s, f in (("sqrt-m", 1.0), ("m", 9.0)):
                for meth, g in (("conditional", 1.0), ("asymptotic", 4.0)):
                    rows.append(
                        dict(
                            m=m,
                            degree=k,
                            scaling=s,
                            method=meth,
                            alpha_opt=f * g * (k + 1.0 / (i + 1)),
                            log_alpha_se=0.05 * (i + 1),
                            alpha_limit=f * g * k,
                            benefit=1 + 3.0 / (i + 1) + k,
                            benefit_se=0.2 * (i + 1) if i != 4 else np.nan,
                        )
                    )
    return pd.DataFrame(rows)


def test_the_degrees_figure_alpha_bands_and_benefit():
    tun = make_degrees_tuning()
    z = 2.0
    fig = tuning.fig_degrees(tun, z=z)
    ax_a, ax_b = fig.axes
    from study.existence import finite_moment_order

    colors = _style.degree_colors([1, 3])
    for k in (1, 3):
        g = tun[(tun.method == "conditional") & (tun.scaling == "sqrt-m") & (tun.degree == k)]
        ln = one_line(fig, f"alpha:{k}")
        assert ln.axes is ax_a
        np.testing.assert_allclose(ln.get_xdata(), g.m)
        np.testing.assert_allclose(ln.get_ydata(), g.alpha_opt)
        np.testing.assert_allclose(mcolors.to_rgba(ln.get_color()), colors[k])
        (band,) = [
            p for p in ax_a.collections if np.allclose(p.get_facecolor()[0][:3], colors[k][:3])
        ]
        v = band.get_paths()[0].vertices
        # translucent, so that the lines and the other degree's band show through
        assert band.get_alpha() is not None and 0 < band.get_alpha() < 1
        f = np.exp(z * g.log_alpha_se.to_numpy())
        np.testing.assert_allclose(v[1:6, 1], g.alpha_opt / f)
        np.testing.assert_allclose(v[7:12, 1], (g.alpha_opt * f)[::-1])
        np.testing.assert_allclose(one_line(fig, f"alpha_limit:{k}").get_ydata(), [k, k])
        keep = np.array([finite_moment_order(m, k, 0.0) > 4 for m in g.m])
        assert 0 < keep.sum() < 5 or k == 1
        b = one_line(fig, f"benefit:{k}")
        assert b.axes is ax_b
        np.testing.assert_allclose(b.get_xdata(), g.m[keep])
        np.testing.assert_allclose(b.get_ydata(), g.benefit[keep])
        (bb,) = [
            p for p in ax_b.collections if np.allclose(p.get_facecolor()[0][:3], colors[k][:3])
        ]
        v = bb.get_paths()[0].vertices
        assert bb.get_alpha() is not None and 0 < bb.get_alpha() < 1
        n = int(keep.sum())
        bse = np.nan_to_num(g.benefit_se[keep].to_numpy())
        bv = g.benefit[keep].to_numpy()
        np.testing.assert_allclose(v[1 : n + 1, 1], np.maximum(bv - z * bse, 1.0))
        np.testing.assert_allclose(v[n + 2 : 2 * n + 2, 1], (bv + z * bse)[::-1])
        # a degree's two lines drawn alike: one line width, one marker and its size
        style = ("get_linewidth", "get_marker", "get_markersize", "get_linestyle")
        assert [getattr(b, f)() for f in style] == [getattr(ln, f)() for f in style], k
    for ax in fig.axes:
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        assert ax.get_xlabel() == M_LABEL
        np.testing.assert_allclose(ax.get_xlim(), (4 / 1.5, 2000 * 1.5))
        # drawn in the report's style (the rc settings every figure shares)
        assert not ax.spines["top"].get_visible() and not ax.spines["right"].get_visible()
        assert ax.xaxis.label.get_fontsize() == _style.RC["axes.labelsize"]
        assert {t.label1.get_fontsize() for t in ax.yaxis.get_major_ticks()} == {
            _style.RC["ytick.labelsize"]
        }
    top = ax_b.get_ylim()[1]
    ticks = [t for t in (1, 1.1, 1.2, 1.5, 2, 3, 5, 10, 20, 50, 100) if t <= top]
    np.testing.assert_allclose(ax_b.get_yticks(), ticks)
    assert ax_b.yaxis.get_major_formatter()(1.5, 0) == "1.5×"
    assert ax_a.get_ylabel() == "risk-optimal sum-form α*"
    assert ax_b.get_ylabel() == "risk(λ = 0) / risk(λ*)"
    assert legend_texts(fig) == ["degree 1", "degree 3"]


def test_the_degrees_figure_names_round_gains_up_to_its_top():
    """The gain axis names round values a reader compares: every tick of one significant
    figure (or 1.1, 1.2, 1.5 for gains of less than double), every 1-2-5 value from 1× to
    the top named, none above it; here with gains up to about 75×."""
    tun = make_degrees_tuning()
    tun["benefit"] *= 15.0
    ax_b = tuning.fig_degrees(tun).axes[1]
    top = ax_b.get_ylim()[1]
    assert 55 < top < 100
    ticks = list(ax_b.get_yticks())
    assert all(t <= top for t in ticks)
    assert all(t in (1.1, 1.2, 1.5) or float(f"{t:.0e}") == t for t in ticks), ticks
    series = [d * 10**e for e in range(3) for d in (1, 2, 5) if d * 10**e <= top]
    assert set(series) <= set(ticks)


def test_the_degrees_figure_by_default_uses_196_standard_errors_alpha_left_gain_right():
    tun = make_degrees_tuning()
    fig = tuning.fig_degrees(tun)
    g = tun[(tun.method == "conditional") & (tun.scaling == "sqrt-m") & (tun.degree == 3)]
    band = [p for p in fig.axes[0].collections][1]
    v = band.get_paths()[0].vertices
    np.testing.assert_allclose(v[1:6, 1], g.alpha_opt / np.exp(1.96 * g.log_alpha_se))
    ax_a, ax_b = fig.axes
    assert ax_a.get_subplotspec().get_geometry() == (1, 2, 0, 0)
    assert ax_b.get_subplotspec().get_geometry() == (1, 2, 1, 1)
    assert fig.get_size_inches()[0] == pytest.approx(6.5)  # the page width
    assert ax_a.get_title() == "α*(m) and its limit α*∞ (dashed)"
    assert ax_b.get_title() == "what the tuned penalty gains over least squares"


def test_the_bases_figure_bars_and_legend():
    rows = []
    for k in (1, 2, 4):
        for basis, f in (("orthonormal", 0.5), ("monomial", 2.0)):
            rows.append(
                dict(
                    degree=k,
                    basis=basis,
                    m0=300,
                    m=20000,
                    alpha_m0=f * k + 1,
                    alpha_m=f * k + 0.3,
                    alpha_m_se=0.05 * k * f,
                    alpha_limit=f * k,
                    hkb=0.7 * k if basis == "orthonormal" else 99.0,
                )
            )
    bases = pd.DataFrame(rows).iloc[::-1]
    fig = tuning.fig_bases(bases)
    (ax,) = fig.axes
    for basis, _f in (("orthonormal", 0.5), ("monomial", 2.0)):
        g = bases[bases.basis == basis].sort_values("degree")
        _, x, y, lo, hi = bars(fig, f"bases:m:{basis}")
        np.testing.assert_allclose(x, [1, 2, 4])
        np.testing.assert_allclose(y, g.alpha_m)
        np.testing.assert_allclose(hi - y, 1.96 * g.alpha_m_se)
        np.testing.assert_allclose(y - lo, 1.96 * g.alpha_m_se)
        m0 = one_line(fig, f"bases:m0:{basis}")
        np.testing.assert_allclose(m0.get_ydata(), g.alpha_m0)
        assert m0.get_markerfacecolor() == "white"
        np.testing.assert_allclose(
            one_line(fig, f"bases:limit:{basis}").get_ydata(), g.alpha_limit
        )
        assert same_color(m0.get_color(), tuning.BASIS_COLORS[basis])
    np.testing.assert_allclose(one_line(fig, "bases:hkb").get_ydata(), [0.7, 1.4, 2.8])
    assert ax.get_yscale() == "log"
    np.testing.assert_allclose(ax.get_xticks(), [1, 2, 4])
    assert legend_texts(fig) == [
        "monomials 1, x, …, xᵏ",
        "orthonormal polynomials",
        "m = 300",
        "m = 20,000",
        "limit α*∞",
        "σ²k/Σw*ⱼ² (Hoerl et al.)",
    ]
    hkb = one_line(fig, "bases:hkb")
    h = handle(fig, "σ²k/Σw*ⱼ² (Hoerl et al.)")
    assert (h.get_linewidth(), h.get_linestyle()) == (hkb.get_linewidth(), hkb.get_linestyle())
    plt.close(fig)
    fig = tuning.fig_bases(bases[bases.basis == "monomial"])
    assert gids(fig, "bases:") == {"bases:m0:monomial", "bases:m:monomial", "bases:limit:monomial"}
    assert legend_texts(fig)[0] == "monomials 1, x, …, xᵏ" and len(legend_texts(fig)) == 5


# --- what the survivors of the first focused run showed -----------------------------------


def test_the_variance_and_sd_specifications():
    # built here, not at import, so that the specification itself is what is checked
    var, sd = measures._spread(False), measures._spread(True)
    assert (var.title, var.ylabel, var.order, var.log) == (
        "Variance",
        "variance of {sym}",
        4,
        True,
    )
    assert (sd.title, sd.ylabel, sd.order, sd.log) == ("Sd", "SD of {sym}", 4, True)
    assert [t.gid for t in var.traces] == ["rb", "theory"] == [t.gid for t in sd.traces]
    assert [t.needs for t in var.traces] == [("var_rb",), ("var_asym",)]
    assert var.guide == (-1.0, "∝ 1/m", "slope guide")
    assert sd.guide == (-0.5, "∝ 1/√m", "slope guide ∝ 1/√m")
    d = pd.DataFrame(
        {
            "var": [4.0],
            "var_mcse": [0.5],
            "sd": [2.0],
            "sd_mcse": [0.25],
            "var_rb": [9.0],
            "var_asym": [16.0],
        }
    )
    v, e = var.estimate(d, 2.0)
    assert (v.iloc[0], e.iloc[0]) == (4.0, 1.0)
    v, e = sd.estimate(d, 2.0)
    assert (v.iloc[0], e.iloc[0]) == (2.0, 0.5)
    assert [t.values(d).iloc[0] for t in sd.traces] == [3.0, 4.0]
    assert [t.values(d).iloc[0] for t in var.traces] == [9.0, 16.0]
    assert [t.legend["label"] for t in var.traces] == ["Rao–Blackwell", "large-m theory"]


def test_the_bases_figure_draws_every_line_against_the_degree():
    rows = [
        dict(
            degree=k,
            basis=b,
            m0=100,
            m=1000,
            alpha_m0=k + 1.0,
            alpha_m=k + 0.5,
            alpha_m_se=0.1,
            alpha_limit=float(k),
            hkb=0.5 * k,
        )
        for k in (2, 3, 6)
        for b in ("monomial", "orthonormal")
    ]
    fig = tuning.fig_bases(pd.DataFrame(rows))
    for gid in ("bases:hkb", "bases:m0:monomial", "bases:m:orthonormal", "bases:limit:monomial"):
        np.testing.assert_allclose(np.asarray(one_line(fig, gid).get_xdata(), float), [2, 3, 6])
    for basis, color in tuning.BASIS_COLORS.items():
        for gid in (f"bases:m0:{basis}", f"bases:m:{basis}", f"bases:limit:{basis}"):
            assert same_color(one_line(fig, gid).get_color(), color)
    assert same_color(one_line(fig, "bases:hkb").get_color(), "black")
    assert one_line(fig, "bases:hkb").get_linestyle() == ":"
    assert one_line(fig, "bases:limit:monomial").get_linestyle() == "--"


def handle(fig, label):
    (leg,) = fig.legends
    (h,) = [
        h
        for h, t in zip(leg.legend_handles, leg.get_texts(), strict=True)
        if t.get_text() == label
    ]
    return h


def test_the_alpha_box_sits_in_the_top_left_corner_the_panels_share_y_and_the_legend_matches(dr):
    fig = draws.fig_fitted_curves(
        dr, degree=2, m_small=10, m_large=100, scalings=["m"], n_curves=5
    )
    axes = fig.axes
    for ax in axes:
        (t,) = ax.texts
        np.testing.assert_allclose(t.get_position(), (0.04, 0.96))
        assert t.get_transform() == ax.transAxes
        assert (t.get_ha(), t.get_va()) == ("left", "top")
        assert axes[0].get_shared_y_axes().joined(axes[0], ax)
        assert axes[0].get_shared_x_axes().joined(axes[0], ax)
    # the true line is dashed black
    for tr in gid_lines(fig, "truth"):
        assert same_color(tr.get_color(), "black") and tr.get_linestyle() == "--"
    assert fig.get_size_inches()[0] == pytest.approx(6.5)  # the page width
    # the legend's entries look like what they name
    mean, fit = one_line(fig, "mean:m:10"), gid_lines(fig, "fit:m:10")[0]
    assert handle(fig, "mean of the kept fits").get_linewidth() == mean.get_linewidth()
    assert handle(fig, "fits to 5 data sets").get_linewidth() == fit.get_linewidth()
    truth = gid_lines(fig, "truth")[0]
    assert mean.get_linewidth() > max(truth.get_linewidth(), fit.get_linewidth())  # thick


def test_the_parabolas_true_line_is_black_and_the_zero_line_of_the_violins_grey(dr):
    fig = draws.fig_parabola_tail(dr, scalings=["m"])
    assert same_color(one_line(fig, "truth").get_color(), "black")
    assert one_line(fig, "truth").get_linestyle() == "--"
    assert fig.get_size_inches()[0] == pytest.approx(6.5)  # the page width
    many, few = one_line(fig, "tail:lambda0:100"), one_line(fig, "tail:lambda0:3")
    assert many.get_linestyle() != few.get_linestyle()  # λ = 0 at m_many stands apart
    assert same_color(many.get_color(), "0.5")
    plt.close(fig)
    fig = draws.fig_sampling_distributions(dr, degree=2, coefs=[2], ms=[10], scalings=["m"])
    for ax in fig.axes:
        (zero,) = [ln for ln in ax.get_lines() if ln.get_gid() is None]
        assert same_color(zero.get_color(), "0.5") and np.allclose(zero.get_ydata(), 0)
    assert fig.axes[0].get_shared_y_axes().joined(fig.axes[0], fig.axes[1])
    (zero,) = [ln for ln in fig.axes[0].get_lines() if ln.get_gid() is None]
    assert handle(fig, "true value 0").get_linewidth() == zero.get_linewidth()
    assert handle(fig, "mean of the kept draws").get_linewidth() == (
        one_line(fig, "mean:m:2:10").get_linewidth()
    )
