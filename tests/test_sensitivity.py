"""sensitivity.csv: the best penalty and the cost of keeping it across noise levels, against
the tuning and transfer tables of designs whose σ is changed, and the invariance that lets
one noise-to-slope ratio stand for every (σ, β₁)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from study.design import design_from_dict
from study.theory.tuning import (
    NOISE_FACTORS,
    design_grams,
    optimal_lambda_conditional,
    sensitivity_table,
    transfer_table,
    tuning_table,
)

from conftest import small_design

RAW = small_design(
    **{
        "dgp.x": {"distribution": "uniform", "low": -0.5, "high": 2.0},
        "dgp.noise_sd": 0.7,
        "dgp.intercept": 1.5,
        "dgp.slope": -1.2,
        "grid.m": [20, 200],
        "grid.degree": [1, 3],
        "replications": 1000,
    }
)
RAW["tuning"] = {"reference_m": 20}


@pytest.fixture(scope="module")
def design():
    return design_from_dict(RAW)


@pytest.fixture(scope="module")
def table(design):
    return sensitivity_table(design)


def test_the_best_alpha_depends_on_noise_over_slope_alone(design):
    grams = design_grams(design, 20, 3)
    kw = dict(x=design.x, penalize_intercept=False)
    base = optimal_lambda_conditional(
        grams, 20, 3, scaling="m", intercept=1.5, slope=-1.2, noise_sd=0.7, **kw
    )
    scaled = optimal_lambda_conditional(
        grams, 20, 3, scaling="m", intercept=-4.0, slope=-3.6, noise_sd=2.1, **kw
    )
    assert scaled.alpha == pytest.approx(base.alpha, rel=1e-6)
    assert scaled.risk == pytest.approx(9 * base.risk, rel=1e-6)  # the risk scales as c²
    other = optimal_lambda_conditional(
        grams, 20, 3, scaling="m", intercept=1.5, slope=-1.2, noise_sd=1.4, **kw
    )
    assert other.alpha > 1.5 * base.alpha  # and it does depend on the ratio


def test_each_row_is_the_tuning_and_transfer_of_the_design_with_that_noise(design, table):
    for factor in (0.5, 2.0):
        row = table[(table.degree == 3) & (table.noise_factor == factor)].iloc[0]
        noisy = dataclasses.replace(design, noise_sd=factor * design.noise_sd, degree=(3,))
        tuning = tuning_table(noisy)
        cond = tuning[(tuning.method == "conditional") & (tuning.scaling == "m")]
        best = dict(zip(cond.m, cond.alpha_opt, strict=True))
        assert row.alpha_m0 == pytest.approx(best[20], rel=1e-9)
        assert row.alpha_m == pytest.approx(best[200], rel=1e-9)
        transfer = transfer_table(noisy, tuning)
        for scaling in ("m", "none"):
            t = transfer[(transfer.m0 == 20) & (transfer.m == 200) & (transfer.scaling == scaling)]
            assert row[f"extra_{scaling}"] == pytest.approx(t.risk_ratio.iloc[0] - 1, abs=1e-9)
            assert row[f"extra_{scaling}_se"] == pytest.approx(t.risk_ratio_se.iloc[0], rel=1e-6)


def test_the_limit_scales_as_the_noise_variance_and_degree_one_is_exact(design, table):
    for k in (1, 3):
        rows = table[table.degree == k].sort_values("noise_factor")
        np.testing.assert_allclose(
            rows.alpha_limit / rows.alpha_limit.iloc[0],
            (rows.noise_factor / rows.noise_factor.iloc[0]) ** 2,
            rtol=1e-12,
        )
    # one penalised coefficient: α* = σ²/β₁² given every design, so at every m
    deg1 = table[table.degree == 1]
    expected = (deg1.noise_sd / 1.2) ** 2
    np.testing.assert_allclose(deg1.alpha_m0, expected, rtol=1e-6)
    np.testing.assert_allclose(deg1.alpha_m, expected, rtol=1e-6)
    np.testing.assert_allclose(deg1.noise_to_slope, deg1.noise_sd / 1.2)
    assert sorted(set(table.noise_factor)) == sorted(NOISE_FACTORS)


@pytest.mark.slow
def test_the_noisy_design_confirms_the_sensitivity_row_by_simulation(tmp_path):
    """simulations/noisy.toml is the default study at σ × 2: its Monte Carlo agrees with
    Rao–Blackwell and the theory, and its tuning is the default's sensitivity row σ × 2."""
    from study.check import check
    from study.design import load_design

    from conftest import ROOT, run_cli

    out = tmp_path / "noisy"
    run_cli("simulate", ROOT / "simulations" / "noisy.toml", "--out", out, "-q", check=True)
    result = check(out)
    assert result.ok and result.n_z > 500, result.summary_line()
    default = load_design(ROOT / "simulations" / "default.toml")
    row = sensitivity_table(dataclasses.replace(default, degree=(7,)))
    row = row[row.noise_factor == 2.0].iloc[0]
    import pandas as pd

    tuning = pd.read_csv(out / "tuning.csv")
    cond = tuning[
        (tuning.method == "conditional") & (tuning.scaling == "m") & (tuning.degree == 7)
    ]
    best = dict(zip(cond.m, cond.alpha_opt, strict=True))
    assert best[default.reference_m] == pytest.approx(row.alpha_m0, rel=1e-12)
    assert best[max(default.m)] == pytest.approx(row.alpha_m, rel=1e-12)
