"""The [grid] basis axis: the same data fitted in the monomials and in polynomials
orthonormal under the distribution of x, through the engine, the theory and the checks."""

import math

import numpy as np
import pandas as pd
import pytest
from numpy.polynomial import hermite_e, legendre
from sklearn.linear_model import LinearRegression, Ridge

from study.check import check, counted_comparisons
from study.design import DesignError, design_from_dict
from study.engine.streams import draw_chunk_data, n_chunks
from study.files import load_npz
from study.report.assets import report_basis_cells
from study.results import read_table
from study.scaling import alpha
from study.steps import simulate

from conftest import small_design

BOTH = {"grid.basis": ["monomial", "orthonormal"]}
# asymmetric x ranges, so that a basis built for [−1, 1] or N(0, 1) would show
X_CASES = [
    {"distribution": "uniform", "low": -0.5, "high": 2.0},
    {"distribution": "normal", "mean": 1.5, "sd": 0.6},
]


def _psi(x, spec, k):
    """ψ₀ … ψ_k at x from NumPy's Legendre / Hermite_e Vandermonde matrices, normalised
    by hand (E[ψ_j²] = 1: 2j + 1 for Legendre on [−1, 1], j! for Hermite_e)."""
    j = np.arange(k + 1)
    if spec["distribution"] == "uniform":
        u = (2 * x - spec["low"] - spec["high"]) / (spec["high"] - spec["low"])
        return legendre.legvander(u, k) * np.sqrt(2 * j + 1)
    u = (x - spec["mean"]) / spec["sd"]
    return hermite_e.hermevander(u, k) / np.sqrt([math.factorial(i) for i in j])


def _run(tmp_path, raw, name="run", **kwargs):
    design = design_from_dict(raw)
    out = tmp_path / name
    simulate(design, out, progress=False, **kwargs)
    return design, out


@pytest.mark.parametrize("x", X_CASES)
def test_orthonormal_cells_equal_scikit_learn_ridge_on_numpy_features(tmp_path, x):
    """Every kept ŵ of the orthonormal basis is scikit-learn's Ridge (α = m·c, the
    intercept ψ₀ = 1 unpenalised) on ψ(x) of the same data, and its risk is the mean of
    ‖ŵ − w*‖² (the features are orthonormal, so E[(f̂ − f)²] is that), with w* found by
    least squares of the true line on ψ."""
    raw = small_design(
        **BOTH, **{"dgp.x": x, "replications": 33, "output.keep_draws": 33, "grid.m": [5, 40]}
    )
    design, out = _run(tmp_path, raw, noise_draw="plain")
    draws = load_npz(out / "draws.npz")
    risk = read_table(out / "risk.csv")
    summary = read_table(out / "summary.csv")
    assert list(draws["basis"]) == ["monomial"] * 4 + ["orthonormal"] * 4
    compared = 0
    for i_m, m in enumerate(design.m):
        data = [draw_chunk_data(design, m, c) for c in range(n_chunks(design.replications, m))]
        xs = np.concatenate([d[0] for d in data])
        ys = np.concatenate([d[1] for d in data])
        for k in design.degree:
            grid_x = np.linspace(-3, 3, 7 + k)
            line = design.intercept + design.slope * grid_x
            w_star = np.linalg.lstsq(_psi(grid_x, x, k), line, rcond=None)[0]
            for i_l, lam in enumerate(design.lam):
                if not design.identifiable(m, k, lam):
                    continue
                for i_c, (b, scaling) in enumerate(design.columns):
                    if b != "orthonormal":
                        continue
                    a = alpha(lam, m=m, degree=k, scaling=scaling)
                    fits = []
                    for xi, yi in zip(xs, ys, strict=True):
                        psi = _psi(xi, x, k)[:, 1:]
                        model = LinearRegression() if a == 0 else Ridge(alpha=a, tol=1e-12)
                        model.fit(psi, yi)
                        fits.append([model.intercept_, *model.coef_])
                    fits = np.array(fits)
                    engine = draws[f"coef_k{k}"][i_m, i_l, i_c]
                    tol = 1e-6 if m <= k + 1 and lam == 0 else 1e-8
                    scale = np.abs(fits).max(axis=0)
                    assert np.all(np.abs(engine - fits) <= tol * scale), (m, k, lam, scaling)
                    rows = summary[
                        (summary.m == m)
                        & (summary.degree == k)
                        & (summary["lambda"] == lam)
                        & (summary.scaling == scaling)
                        & (summary.basis == "orthonormal")
                    ].sort_values("coef")
                    # every replication is kept: the summary is the fits' own mean
                    np.testing.assert_allclose(rows.true, w_star, rtol=1e-12, atol=1e-12)
                    np.testing.assert_allclose(
                        rows["mean"], fits.mean(axis=0), rtol=1e-7, atol=1e-9 * scale.max()
                    )
                    row = risk[
                        (risk.m == m)
                        & (risk.degree == k)
                        & (risk["lambda"] == lam)
                        & (risk.scaling == scaling)
                        & (risk.basis == "orthonormal")
                    ]
                    expected = ((fits - w_star) ** 2).sum(axis=1).mean()
                    np.testing.assert_allclose(row.risk.item(), expected, rtol=1e-7)
                    compared += 1
    assert compared > 20


def test_adding_the_orthonormal_basis_leaves_the_monomial_cells_unchanged(tmp_path):
    """The monomial rows of a design with both bases are the rows of the same design
    without the key, to the byte; at λ = 0 the fitted function does not depend on the
    basis, so the two bases' risks agree to rounding, and with λ > 0 they differ."""
    x = X_CASES[0]
    _, one = _run(tmp_path, small_design(**{"dgp.x": x}), "one")
    design, both = _run(tmp_path, small_design(**BOTH, **{"dgp.x": x}), "both")
    for name in ("summary.csv", "risk.csv"):
        alone = read_table(one / name)
        mixed = read_table(both / name)
        mono = mixed[mixed.basis == "monomial"].reset_index(drop=True)
        pd.testing.assert_frame_equal(mono, alone)
    risk = read_table(both / "risk.csv").query("status == 'ok'")
    keys = ["m", "degree", "lambda", "scaling"]
    paired = risk[risk.basis == "monomial"].merge(
        risk[risk.basis == "orthonormal"], on=keys, suffixes=("_mono", "_orth")
    )
    at0 = paired[paired["lambda"] == 0]
    assert len(at0) > 10
    np.testing.assert_allclose(at0.risk_orth, at0.risk_mono, rtol=1e-8)
    penalised = paired[paired["lambda"] > 0]
    assert (np.abs(penalised.risk_orth / penalised.risk_mono - 1) > 1e-3).mean() > 0.5
    # the design's hash, and so its checkpoints, do not change without the key
    assert (
        design_from_dict(small_design()).hash
        == design_from_dict(small_design(**{"grid.basis": ["monomial"]})).hash
    )
    assert design.hash != design_from_dict(small_design(**{"dgp.x": x})).hash


@pytest.mark.parametrize("x", X_CASES)
def test_study_check_passes_on_both_bases_and_catches_a_wrong_basis(tmp_path, x):
    """study check audits and compares with theory the orthonormal cells too (they are
    in its table, and its audit recomputes them); a basis column rescaled in the engine by
    1 % is caught by the audit, named by its basis."""
    raw = small_design(
        **BOTH, **{"dgp.x": x, "replications": 200, "grid.m": [8, 60], "grid.lambda": [0.0, 0.3]}
    )
    _, out = _run(tmp_path, raw, "good")
    result = check(out)
    assert result.ok, result.summary_line()
    orth = result.table[result.table.basis == "orthonormal"]
    assert len(orth) > 0 and orth.asym.notna().sum() > 20
    # λ = 0 is one fitted function under every scaling and basis: its risk counts once
    counted = result.table[counted_comparisons(result.table)]
    risk0 = counted[(counted.measure == "risk") & (counted["lambda"] == 0)]
    assert len(risk0) > 0 and not risk0.duplicated(["m", "degree"]).any()
    assert (result.audit.table.basis == "orthonormal").sum() > 50
    if x["distribution"] != "uniform":
        return  # the injected bug once is enough

    import study.basis as basis_module

    real = basis_module.orthonormal_coefficients

    def off(distribution, degree):
        L = real(distribution, degree).copy()
        L[-1] *= 1.01  # the highest ψ 1 % too large
        return L

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(basis_module, "orthonormal_coefficients", off)
        _, bad = _run(tmp_path, raw, "bad")
    result = check(bad)
    assert not result.audit.ok
    assert set(result.audit.mismatches.basis) == {"orthonormal"}
    assert "orthonormal basis" in result.audit.line()


def test_the_report_reads_the_monomial_cells_of_a_design_with_both_bases(tmp_path):
    design, out = _run(tmp_path, small_design(**BOTH))
    summary, risk, draws = report_basis_cells(
        design,
        read_table(out / "summary.csv"),
        read_table(out / "risk.csv"),
        load_npz(out / "draws.npz"),
    )
    assert set(summary.basis) == set(risk.basis) == {"monomial"}
    full = load_npz(out / "draws.npz")
    assert draws["coef_k2"].shape[2] == len(design.scaling)
    np.testing.assert_array_equal(draws["coef_k2"], full["coef_k2"][:, :, : len(design.scaling)])
    assert list(draws["scaling"]) == list(design.scaling)


def test_the_report_refuses_a_design_without_the_monomial_basis(tmp_path):
    """Its theory files and its figures of fitted curves are the monomials': one line,
    exit status 2, nothing written into the project."""
    from conftest import ROOT, run_cli

    _, out = _run(tmp_path, small_design(**{"grid.basis": ["orthonormal"]}))
    project = tmp_path / "project"
    project.mkdir()
    (project / "_quarto.yml").write_text((ROOT / "report" / "_quarto.yml").read_text())
    proc = run_cli("report", out, "--no-render", "--project", project)
    line = proc.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, proc.stderr
    assert proc.returncode == 2 and "grid.basis" in line and "'monomial'" in line, line
    assert sorted(p.name for p in project.iterdir()) == ["_quarto.yml"]


def test_figures_refuse_draws_of_two_bases(tmp_path):
    from study.report.figures._select import draw_cell

    design, out = _run(tmp_path, small_design(**BOTH))
    draws = load_npz(out / "draws.npz")
    with pytest.raises(ValueError, match="one basis"):
        draw_cell(draws, 2, 8, 0.5, scaling="m")
    _, _, picked = report_basis_cells(
        design, read_table(out / "summary.csv"), read_table(out / "risk.csv"), draws
    )
    assert draw_cell(picked, 2, 8, 0.5, scaling="m").shape == (10, 3)


def test_tables_written_before_the_basis_axis_read_as_monomial(tmp_path):
    _, out = _run(tmp_path, small_design())
    summary = pd.read_csv(out / "summary.csv").drop(columns="basis")
    summary.to_csv(tmp_path / "old.csv", index=False)
    read = read_table(tmp_path / "old.csv")
    assert list(read.columns) == list(pd.read_csv(out / "summary.csv").columns)
    assert set(read.basis) == {"monomial"}


@pytest.mark.parametrize(
    "value, expected",
    [
        (["monomial", "legendre"], "key 'grid.basis': got 'legendre'; expected bases among"),
        (["orthonormal", "orthonormal"], "without duplicates"),
        ([], "a non-empty list of bases"),
        ("orthonormal", "a non-empty list of bases"),
    ],
)
def test_a_bad_basis_is_refused_in_one_line(value, expected):
    with pytest.raises(DesignError) as info:
        design_from_dict(small_design(**{"grid.basis": value}))
    message = str(info.value)
    assert expected in message and "\n" not in message


@pytest.mark.slow
def test_the_bases_design_passes_study_check_in_both_bases(tmp_path):
    """simulations/bases.toml, as shipped: the audit, the Monte Carlo against
    Rao–Blackwell and Rao–Blackwell against the large-m theory all pass, with the
    orthonormal cells among the comparisons counted."""
    from conftest import ROOT, run_cli

    out = tmp_path / "bases"
    run_cli("simulate", ROOT / "simulations" / "bases.toml", "--out", out, "-q", check=True)
    result = check(out)
    assert result.ok, result.summary_line()
    counted = result.table[counted_comparisons(result.table)]
    assert (counted.basis == "orthonormal").sum() > 300
    assert (result.audit.table.basis == "orthonormal").sum() > 3000
