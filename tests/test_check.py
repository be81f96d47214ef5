"""Simulation against theory: Monte Carlo vs Rao–Blackwell vs large m, and the tuned λ."""

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from study.check import check, z_limit
from study.design import design_from_dict
from study.existence import finite_moment_order
from study.folder import file_digest
from study.results import to_csv
from study.steps import simulate

from conftest import ROOT, run_cli, small_design


@pytest.fixture(scope="module")
def large_m_results(tmp_path_factory):
    """m up to 10,000, every scaling: the large-m theory must hold at the largest m."""
    grid = {"grid.m": [200, 2000, 10000], "grid.degree": [1, 2, 3], "grid.lambda": [0.0, 0.1, 1.0]}
    run = {"name": "large-m", "replications": 2000, "block_size": 500, "output.keep_draws": 0}
    raw = small_design(**run, **grid)
    out = tmp_path_factory.mktemp("large") / "large-m"
    simulate(design_from_dict(raw), out, jobs=2, progress=False)
    return out


def test_monte_carlo_agrees_with_rao_blackwell(smoke_results):
    result = check(smoke_results)
    assert result.n_z > 500
    assert result.max_abs_z <= z_limit(result.n_z)
    assert result.ok, result.summary_line()


def test_rao_blackwell_agrees_with_large_m_theory(large_m_results):
    result = check(large_m_results)
    assert result.largest_m == 10000
    assert result.n_asym >= 3 * 3 * 4 * 3  # degrees × λ × scalings × measures, at least
    assert result.n_asym_fail == 0, result.summary_line()
    # a clean run of this design had 10.1 % of its strongly correlated z-values beyond 2,
    # which the former rule (at most 10 %) called a failure; the rule on the largest |z|
    # has a known false-alarm rate whatever the share
    assert result.ok, result.summary_line()


@pytest.fixture(scope="module")
def m500_results(tmp_path_factory):
    """x on [0, 2], another line, σ = 2, m up to 500: a fixed 2 % at the largest m failed
    clean runs of this kind (O(1/m) effects)."""
    grid = {
        "grid.m": [10, 20, 50, 100, 200, 500],
        "grid.degree": [1, 2, 3, 5],
        "grid.lambda": [0.0, 0.1, 1.0],
    }
    dgp = {
        "dgp.x": {"distribution": "uniform", "low": 0.0, "high": 2.0},
        "dgp.intercept": -1.5,
        "dgp.slope": 0.7,
        "dgp.noise_sd": 2.0,
    }
    run = {"name": "m500", "seed": 77, "replications": 2000, "output.keep_draws": 0}
    out = tmp_path_factory.mktemp("m500") / "m500"
    simulate(design_from_dict(small_design(**run, **grid, **dgp)), out, jobs=2, progress=False)
    return out


def test_a_clean_run_whose_largest_m_is_500_passes_with_theory_at_every_m(m500_results):
    result = check(m500_results)
    assert result.ok, result.summary_line()
    compared = result.table[result.table.asym_allowed.notna()]
    # the bias from m = 20 on (the expansion reaches that far), the variance from m = 50
    assert set(compared[compared.measure == "bias"].m) >= {20, 50, 100, 200, 500}
    assert set(compared[compared.measure == "var"].m) >= {50, 100, 200, 500}
    assert result.n_bias > 400 and result.n_asym > 400 and result.n_small_m > 0
    # the theory's 1/m term matters here: without it, some biases miss by more than allowed
    bias = compared[compared.measure == "bias"].merge(
        pd.read_csv(m500_results / "summary.csv")[
            ["m", "degree", "lambda", "scaling", "coef", "bias_asym"]
        ],
        on=["m", "degree", "lambda", "scaling", "coef"],
    )
    assert ((bias.rb - bias.bias_asym).abs() > bias.asym_allowed).sum() > 10


def test_a_rao_blackwell_bias_moved_at_one_m_fails_the_theory_comparison(tmp_path, m500_results):
    """Monte Carlo and Rao–Blackwell biases at m = 100 both moved by 2 % (so the z-values
    barely change), committed as a run would: only the theory comparison at every m can
    see it, and names the m."""
    broken = tmp_path / "broken"
    shutil.copytree(m500_results, broken)
    summary = pd.read_csv(broken / "summary.csv")
    at = summary.m == 100
    for col in ("bias", "bias_rb"):
        summary.loc[at, col] *= 1.02
    (broken / "summary.csv").write_text(to_csv(summary))
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["files"]["summary.csv"] = file_digest(broken / "summary.csv")
    (broken / "manifest.json").write_text(json.dumps(manifest))
    result = check(broken)
    assert result.max_abs_z <= z_limit(result.n_z)
    assert not result.ok and result.n_bias_fail > 0
    assert "bias at m = 100," in result.worst_asym, result.worst_asym
    compared = result.table[result.table.asym_allowed.notna()]
    failed = compared[(compared.rb - compared.asym).abs() > compared.asym_allowed]
    assert set(failed.m) == {100}


def test_the_z_limit_is_bonferronis_and_holds_its_false_alarm_rate():
    from scipy.stats import norm

    for n in (1, 612, 9096):
        assert z_limit(n) == pytest.approx(norm.isf(0.01 / (2 * n)), rel=1e-9)
    assert z_limit(10_000, rate=0.05) == pytest.approx(norm.isf(0.05 / 20_000), rel=1e-9)
    # 4,000 runs of 500 z-values each: independent ones fail about 1 % of the time
    # (Bonferroni is nearly exact there), equicorrelated ones (ρ = 0.8) far less
    rng = np.random.default_rng(5)
    limit = z_limit(500)
    independent = np.abs(rng.standard_normal((4000, 500))).max(axis=1) > limit
    assert 0.004 < independent.mean() < 0.016  # 1 % ± 3.8 binomial SE
    common = rng.standard_normal((4000, 1))
    correlated = np.sqrt(0.8) * common + np.sqrt(0.2) * rng.standard_normal((4000, 500))
    assert (np.abs(correlated).max(axis=1) > limit).mean() < 0.01


@pytest.mark.parametrize("sign", [1, -1])
def test_check_fails_when_the_simulation_is_wrong(tmp_path, smoke_results, sign):
    """Shift one cell's Monte Carlo bias by 6 standard errors, up or down: the check must
    notice. The folder is committed as a run would commit it (the manifest records the
    shifted file), so this is the check's verdict, not the folder's integrity test."""
    broken = tmp_path / "broken"
    shutil.copytree(smoke_results, broken)
    summary = pd.read_csv(broken / "summary.csv")
    i = summary.index[(summary.m == 100) & (summary.degree == 2) & (summary.coef == 1)][0]
    summary.loc[i, "bias"] += sign * 6 * summary.loc[i, "bias_diff_mcse"]
    (broken / "summary.csv").write_text(to_csv(summary))
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["files"]["summary.csv"] = file_digest(broken / "summary.csv")
    (broken / "manifest.json").write_text(json.dumps(manifest))
    proc = run_cli("check", broken, "--brief")
    assert proc.returncode == 1
    assert proc.stdout.strip().splitlines()[-1].startswith("FAIL")


def test_check_cli_prints_every_comparison(smoke_results):
    proc = run_cli("check", smoke_results)
    assert proc.returncode == 0, proc.stdout[-500:]
    table = pd.read_csv(smoke_results / "check.csv")
    assert len(proc.stdout.splitlines()) >= len(table)
    assert proc.stdout.strip().splitlines()[-1].startswith("PASS")


def test_check_cli_refuses_a_folder_without_results(tmp_path):
    proc = run_cli("check", tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "not a study results folder" in proc.stderr


def test_infinite_moment_cells_are_flagged_and_heavy_tailed(smoke_results):
    summary = pd.read_csv(smoke_results / "summary.csv")
    ok = summary[summary.status == "ok"]
    cells = zip(ok.m, ok.degree, ok["lambda"], strict=True)
    order = np.array([finite_moment_order(m, k, lam) for m, k, lam in cells])
    np.testing.assert_array_equal(ok.finite_moments.to_numpy(), order)
    # no finite variance: the sample kurtosis is huge; plenty of moments: it is small
    assert (ok["kurtosis"][order <= 2] > 20).all()
    assert (ok["kurtosis"][order >= 9].abs() < 3).all()
    table = check(smoke_results).table
    flagged = table[table.flag.str.startswith("moments")]
    assert set(flagged.finite_moments) == {o for o in set(order) if o <= 4}
    # counted once per comparison, not once per scaling of the same λ = 0 cell
    unique = flagged.drop_duplicates(["m", "degree", "coef", "measure"])
    assert check(smoke_results).n_flagged == len(unique)


def test_finite_moment_order_examples():
    assert finite_moment_order(3, 2, 0.0) == 1  # three-point parabola: no mean
    assert finite_moment_order(3, 1, 0.0) == 2  # the slope of three points: no variance
    assert finite_moment_order(10, 5, 0.0) == pytest.approx(1.8)  # clustering at one point
    assert finite_moment_order(10, 5, 0.1) == math.inf


def _theory_rows(results, scaling, coef, degree=2, lam=1.0):
    s = pd.read_csv(results / "summary.csv")
    return s[
        (s.scaling == scaling) & (s.coef == coef) & (s.degree == degree) & (s["lambda"] == lam)
    ].sort_values("m")


def test_bias_regimes_in_the_simulation(large_m_results):
    """Under `m` bias·m settles and |bias|/SD → 0; under `none`/`k` bias → its limit;
    under `sqrt-m` |bias|/SD settles — each against the theory columns."""
    for scaling in ("m", "none", "k", "sqrt-m"):
        rows = _theory_rows(large_m_results, scaling, coef=1)
        # simulated bias within 4 MCSE of the large-m theory at the two largest m
        big = rows[rows.m >= 2000]
        assert (
            abs(big.bias - big.bias_asym) <= 4 * big.bias_mcse + 0.02 * big.bias_asym.abs()
        ).all()
    m_rows = _theory_rows(large_m_results, "m", coef=1)
    ratio = (m_rows.bias.abs() / m_rows.sd).to_numpy()
    assert ratio[-1] < ratio[0] / 3
    none = _theory_rows(large_m_results, "none", coef=1)
    assert abs(none.bias.iloc[-1]) > 50 * none.bias_mcse.iloc[-1]  # bias does not vanish
    sq = _theory_rows(large_m_results, "sqrt-m", coef=1)
    r = (sq.bias.abs() / sq.sd).to_numpy()
    r_theory = (sq.bias_asym.abs() / np.sqrt(sq.var_asym)).to_numpy()
    np.testing.assert_allclose(r[-2:], r_theory[-2:], rtol=0.15)


def test_tuned_lambda_table(large_m_results):
    tuning = pd.read_csv(large_m_results / "tuning.csv")
    assert set(tuning.scaling) == {"none", "m", "sqrt-m", "k"}
    assert set(tuning.m) == {200, 2000, 10000} and set(tuning.degree) == {1, 2, 3}
    for _, row in tuning.iterrows():
        c = {"none": row.m, "m": 1.0, "sqrt-m": math.sqrt(row.m), "k": row.m / row.degree}
        assert row.lambda_opt * c[row.scaling] == pytest.approx(row.alpha_opt, rel=1e-12)
    asym = tuning[(tuning.method == "asymptotic") & (tuning.degree == 2)]
    spread = asym.groupby("scaling").lambda_opt.agg(lambda v: v.max() / v.min())
    assert spread["m"] < 1.2 < 10 < spread["none"]  # λ* stays put under m, falls like 1/m
    cond = tuning[(tuning.method == "conditional") & (tuning.m == 10000)]
    np.testing.assert_allclose(cond.alpha_opt, cond.alpha_limit, rtol=0.1)


def test_transfer_table(large_m_results):
    transfer = pd.read_csv(large_m_results / "transfer.csv")
    t = transfer[(transfer.m0 == 200) & (transfer.m == 10000) & (transfer.degree == 2)]
    ratio = t.set_index("scaling").risk_ratio
    assert ratio["m"] < 1.05 and ratio["none"] > 1.3
    assert (transfer.risk_ratio >= 1 - 1e-6).all()


@pytest.mark.slow
def test_default_design_agrees_with_theory(tmp_path):
    """The study the report is built from: tens of thousands of comparisons must pass."""
    out = tmp_path / "default"
    design = ROOT / "simulations" / "default.toml"
    run_cli("simulate", design, "--out", out, "--jobs", "2", "--quiet", check=True)
    result = check(out)
    assert result.n_z > 5000
    assert result.ok, result.summary_line()


def test_a_theory_comparison_without_a_standard_error_is_allowed_the_remainder_alone():
    """An estimate whose MCSE is missing gets no Monte Carlo allowance: only what the
    expansion leaves out (the rule of asym_allowed)."""
    import numpy as np
    import pandas as pd

    from study.check import _theory_comparisons

    keys = dict(m=[50, 50], degree=[1, 1], scaling=["m", "m"], basis=["monomial"] * 2)
    table = pd.DataFrame(
        {**keys, "lambda": [0.0, 1.0], "coef": [0, 1], "measure": ["bias", "bias"]}
        | {"rb": [1.0, 2.0], "asym": [1.05, 2.0], "rb_mcse": [np.nan, 0.01]}
        | {"asym_remainder": [0.1, 0.02]}
    )
    out = _theory_comparisons(table, pd.Series([True, True]))
    assert table.asym_allowed[0] == 0.1
    assert table.asym_allowed[1] == pytest.approx(out["asym_z_limit"] * 0.01 + 0.02)
    assert out["n_bias"] == 2 and out["n_bias_fail"] == 0
