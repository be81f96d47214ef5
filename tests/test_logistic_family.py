"""The logistic model family ([model] family = "logistic"): the engine's fits against
scikit-learn and the plain one-data-set fit on data drawn again from the documented
streams, the separation counts against the exact rule, the large-m theory (with its
Cox–Snell 1/m term) against Monte Carlo, `study check` on it, and the results across jobs,
block sizes and a resume."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from study.basis import standard_basis
from study.check import check
from study.design import XDistribution, design_from_dict
from study.files import load_npz
from study.logistic import fit_polynomial_logistic, separable
from study.models.logistic import newton_path, separated
from study.theory.logistic import logistic_tables

from conftest import run_cli, small_design, write_design

X = {"distribution": "uniform", "low": -0.5, "high": 2.0}  # asymmetric, not touching ±1


def _raw(**changes):
    raw = small_design(**changes)
    raw["model"] = {"family": "logistic"}
    raw["dgp"] = {"intercept": -0.5, "slope": 1.7, "x": X}
    raw["grid"]["m"] = raw["grid"].get("m", [3, 8, 40])
    return raw


def _draw(seed, m, chunk, n, x=X, b0=-0.5, b1=1.7):
    """The documented streams, drawn again: chunk c of m owns SeedSequence(seed, (m, c));
    its first child gives u uniform on [−1, 1], its second r uniform on [0, 1), and the
    label is [r < 1/(1 + exp(−(β0 + β1·x)))]."""
    x_seq, noise_seq = np.random.SeedSequence(seed, spawn_key=(m, chunk)).spawn(2)
    u = np.random.default_rng(x_seq).uniform(-1.0, 1.0, (n, m))
    center, scale = (x["low"] + x["high"]) / 2, (x["high"] - x["low"]) / 2
    xs = center + scale * u
    r = np.random.default_rng(noise_seq).random((n, m))
    return xs, (r < 1.0 / (1.0 + np.exp(-(b0 + b1 * xs)))).astype(float)


def _sklearn(x, y, degree, alpha):
    features = np.vander(x, degree + 1, increasing=True)[:, 1:]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = LogisticRegression(C=1 / alpha if alpha > 0 else np.inf, tol=1e-12, max_iter=10**4)
        model.fit(features, y)
    return np.concatenate([model.intercept_, model.coef_[0]])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A small logistic design, simulated once: m = 8 (separation is common) and 40,
    degrees 1–3, λ = 0, 0.3 and 4 under three scalings, 70 replications in blocks of 20."""
    folder = tmp_path_factory.mktemp("logistic")
    raw = _raw(**{"grid.m": [8, 40], "grid.lambda": [0.0, 0.3, 4.0]})
    raw["grid"]["scaling"] = ["none", "m", "k"]
    design_file = write_design(folder / "d.toml", raw)
    out = folder / "run"
    run_cli("simulate", design_file, "--out", out, "-q", check=True)
    return design_file, out, design_from_dict(raw)


def test_the_kept_fits_are_scikit_learns_and_the_plain_fits_on_the_documented_data(run):
    _, out, design = run
    draws = load_npz(out / "draws.npz")
    fits = pd.read_csv(out / "fits.csv")
    compared = 0
    for m in design.m:
        xs, ys = _draw(design.seed, m, 0, design.keep_draws)
        for k in design.degree:
            kept = draws[f"coef_k{k}"][design.m.index(m)]  # (λ, column, keep, k + 1)
            for i_l, lam in enumerate(design.lam):
                for i_c, (_, scaling) in enumerate(design.columns):
                    alpha = fits[
                        (fits.m == m) & (fits.degree == k) & (fits["lambda"] == lam)
                        & (fits.scaling == scaling)
                    ].alpha.iloc[0]  # fmt: skip
                    for r in range(design.keep_draws):
                        w = kept[i_l, i_c, r]
                        x, y = xs[r], ys[r]
                        exists = not (
                            (alpha == 0 and separable(x, y, degree=k))
                            or (alpha > 0 and y.min() == y.max())
                        )
                        assert np.isfinite(w).all() == exists, (m, k, lam, scaling, r)
                        if not exists:
                            continue
                        ref = _sklearn(x, y, k, alpha)
                        scale = np.abs(ref).max()
                        np.testing.assert_allclose(w, ref, rtol=0, atol=1e-6 * scale)
                        plain = fit_polynomial_logistic(
                            x, y, degree=k, lam=alpha / m, scaling="none"
                        )
                        np.testing.assert_allclose(w, plain, rtol=0, atol=1e-8 * scale)
                        compared += 1
    assert compared > 300


def test_no_estimate_is_counted_exactly_per_cell(run):
    """At λ = 0 the data sets a polynomial of the degree separates; at λ > 0 those whose
    labels are all equal: against the exact rule on the data drawn again."""
    _, out, design = run
    fits = pd.read_csv(out / "fits.csv")
    summary = pd.read_csv(out / "summary.csv")
    for m in design.m:
        xs, ys = _draw(design.seed, m, 0, design.replications)  # 70 < 256: one chunk
        for k in design.degree:
            sep = sum(separable(x, y, degree=k) for x, y in zip(xs, ys, strict=True))
            same = int((ys.min(axis=1) == ys.max(axis=1)).sum())
            rows = fits[(fits.m == m) & (fits.degree == k)]
            for lam, count in ((0.0, sep), (0.3, same), (4.0, same)):
                row = rows[rows["lambda"] == lam]
                if lam == 0 and m <= k:
                    continue  # not identifiable: not fitted
                assert (row.no_estimate == count).all(), (m, k, lam)
                assert (row.fitted == design.replications - count).all()
                assert (row.newton_iterations >= row.fitted).all()
                n = summary[(summary.m == m) & (summary.degree == k) & (summary["lambda"] == lam)]
                assert (n.n_failed == count).all() and (n.n == design.replications - count).all()
    # m = 8 separates often, m = 40 rarely
    at_zero = fits[(fits["lambda"] == 0) & (fits.degree == 1) & (fits.scaling == "m")]
    at_zero = at_zero.set_index("m").no_estimate
    assert at_zero[8] > 5 * max(at_zero[40], 1)


def test_separated_is_the_exact_rule_on_random_small_data_with_ties():
    rng = np.random.default_rng(5)
    for _ in range(300):
        m, k = int(rng.integers(2, 9)), int(rng.integers(1, 4))
        u = rng.integers(0, 5, m).astype(float) / 4  # ties
        y = rng.integers(0, 2, m).astype(float)
        assert separated(u[None], y[None], k)[0] == separable(u, y, degree=k)


def test_results_do_not_depend_on_jobs_block_size_or_a_resume(run, tmp_path):
    _, out, _ = run
    other_raw = _raw(**{"grid.m": [8, 40], "grid.lambda": [0.0, 0.3, 4.0]})
    other_raw["grid"]["scaling"] = ["none", "m", "k"]
    other_raw["block_size"] = 7
    other = write_design(tmp_path / "b.toml", other_raw)
    two = tmp_path / "two"
    run_cli("simulate", other, "--out", two, "-q", "-j", "2", check=True)
    for name in ("summary.csv", "risk.csv", "fits.csv"):
        assert (two / name).read_bytes() == (out / name).read_bytes(), name
    # a resume after losing some checkpoints
    copy = tmp_path / "copy"
    shutil.copytree(two, copy)
    for path in sorted((copy / "checkpoints").iterdir())[::2]:
        path.unlink()
    run_cli("simulate", other, "--out", copy, "-q", check=True)
    assert (copy / "summary.csv").read_bytes() == (out / "summary.csv").read_bytes()


def test_the_large_m_theory_with_its_one_over_m_term_matches_monte_carlo():
    """20,000 data sets of m = 200 at degree 2, unpenalised and penalised: the simulated
    mean is within 4 MCSE of w_c + the Cox–Snell 1/m term, while w_c alone misses by more
    than 6 MCSE somewhere (the 1/m term is what the check needs at moderate m); the
    variance is 0.9 to 1.2 times the sandwich's."""
    x = XDistribution("uniform", low=-0.5, high=2.0)
    basis = standard_basis(x, 2, intercept=-0.5, slope=1.7)
    rng = np.random.default_rng(9)
    m, R = 200, 20000
    u = rng.uniform(-1, 1, (R, m))
    xs = x.center + x.scale * u
    y = (rng.random((R, m)) < 1 / (1 + np.exp(-(-0.5 + 1.7 * xs)))).astype(float)
    for lam in (0.0, 3.0):
        fit = np.ones((1, R), dtype=bool) if lam else ~separated(u, y, 2)[None]
        v, _ = newton_path(u, y, basis.penalty, np.array([lam / m]), fit)
        w = v[0] @ basis.B
        w = w[np.isfinite(w).all(axis=1)]
        assert len(w) > 0.99 * R
        table, _ = logistic_tables([m], 2, [lam], ["m"], x=x, intercept=-0.5, slope=1.7)
        bias = w.mean(axis=0) - basis.w_star
        se = w.std(axis=0, ddof=1) / np.sqrt(len(w))
        assert np.all(np.abs(bias - table.bias_asym1) < 4 * se), (
            lam,
            (bias - table.bias_asym1) / se,
        )
        assert np.any(np.abs(bias - table.bias_asym) > 6 * se), lam
        ratio = w.var(axis=0, ddof=1) / table.var_asym
        assert np.all((ratio > 0.9) & (ratio < 1.2)), (lam, ratio)


def test_the_population_solution_solves_its_equation_by_independent_quadrature():
    from scipy import integrate

    from study.theory.logistic import LogisticLargeM

    x = XDistribution("uniform", low=-0.5, high=2.0)
    basis = standard_basis(x, 3, intercept=-0.5, slope=1.7)
    c = 0.05
    w_c = basis.to_raw(LogisticLargeM(basis, x, c).v_c)
    sig = lambda t: 1 / (1 + np.exp(-t))  # noqa: E731
    for j in range(4):
        score = integrate.quad(
            lambda t, j=j: (sig(np.polyval(w_c[::-1], t)) - sig(-0.5 + 1.7 * t)) * t**j / 2.5,
            -0.5,
            2.0,
            epsabs=1e-13,
        )[0]
        penalty = c * w_c[j] if j else 0.0
        assert abs(score + penalty) < 1e-10, j


def test_check_passes_and_fails_on_a_shifted_bias_in_either_direction(tmp_path):
    raw = _raw(**{"grid.m": [100, 400], "grid.degree": [1, 2], "replications": 1500})
    raw["grid"]["lambda"] = [0.0, 2.0]
    raw["grid"]["scaling"] = ["m", "none"]
    raw["output"]["keep_draws"] = 5
    design_file = write_design(tmp_path / "d.toml", raw)
    out = tmp_path / "run"
    run_cli("simulate", design_file, "--out", out, "-q", check=True)
    proc = run_cli("check", out, "--brief")
    assert proc.returncode == 0, proc.stdout
    assert "PASS" in proc.stdout and "Monte Carlo vs large-m theory" in proc.stdout
    result = check(out)
    assert result.n_bias > 0 and result.n_asym > 0 and result.audit.ok
    summary = pd.read_csv(out / "summary.csv")
    for sign in (1, -1):
        shifted = summary.copy()
        cell = (shifted.m == 400) & (shifted.degree == 2) & (shifted["lambda"] == 2.0)
        cell &= (shifted.scaling == "none") & (shifted.coef == 1)
        shifted.loc[cell, "bias"] += sign * 8 * shifted.loc[cell, "bias_mcse"]
        shifted.to_csv(out / "summary.csv", index=False)
        assert not check(out).ok, sign
    summary.to_csv(out / "summary.csv", index=False)


def test_the_audit_catches_a_wrong_fit(run, tmp_path):
    _, out, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    draws = dict(load_npz(copy / "draws.npz"))
    draws["first_k2"] = draws["first_k2"].copy()
    draws["first_k2"][1, 0, 2, 1, 1] *= 1.0 + 1e-6  # m = 40, chunk 0, λ = 4, scaling m, w1
    np.savez(copy / "draws.npz", **draws)
    result = check(copy)
    assert not result.audit.ok
    bad = result.audit.mismatches
    assert len(bad) == 1 and bad.iloc[0].m == 40 and bad.iloc[0].coef == 1


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"noise_sd": 1.0}, "dgp.noise_sd"),
    ],
)
def test_a_noise_level_is_refused_for_the_logistic_family(changes, fragment, tmp_path):
    raw = _raw()
    raw["dgp"] |= changes
    proc = run_cli("simulate", write_design(tmp_path / "d.toml", raw), "--out", tmp_path / "o")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "logistic" in lines[0]
    assert not (tmp_path / "o").exists()


def test_the_report_refuses_a_logistic_run_in_one_line(run):
    _, out, _ = run
    proc = run_cli("report", out, "--no-render")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "logistic" in lines[0] and "--logistic" in lines[0]


def test_check_cannot_pass_where_every_m_is_too_small_for_the_expansion(tmp_path):
    """m = 8 and 12 without a penalty: separation is common, the expansion says nothing,
    nothing is compared, and the check fails saying so (the audit still matches)."""
    raw = _raw(**{"grid.m": [8, 12], "grid.lambda": [0.0]})
    out = tmp_path / "run"
    run_cli("simulate", write_design(tmp_path / "d.toml", raw), "--out", out, "-q", check=True)
    proc = run_cli("check", out, "--brief")
    assert proc.returncode == 1
    assert "nothing compared" in proc.stdout and "FAIL" in proc.stdout
    assert check(out).audit.ok


def test_the_theory_step_of_a_logistic_design_is_the_logistic_theory():
    """In this process (the runs above go through the command line): each degree's theory
    piece holds the logistic large-m tables and the logistic tuning (the expansion's α*),
    none of the gaussian tuning's files."""
    from study.theory.step import pieces

    design = design_from_dict(_raw(**{"grid.m": [200, 1000], "grid.lambda": [0.0, 2.0]}))
    computed = [fn(*args) for fn, args in pieces(design)]
    assert len(computed) == len(design.degree)
    for k, piece in zip(design.degree, computed, strict=True):
        assert set(piece) == {"asym", "asym_risk", "tuning"}
        assert set(piece["tuning"].method) == {"expansion"}
        assert sorted(set(piece["tuning"].m)) == [200, 1000]
        table, risk = logistic_tables(
            list(design.m), k, list(design.lam), list(design.scaling), x=design.x,
            intercept=-0.5, slope=1.7,
        )  # fmt: skip
        np.testing.assert_array_equal(piece["asym"].bias_asym1, table.bias_asym1)
        np.testing.assert_array_equal(piece["asym_risk"].risk_asym, risk.risk_asym)
        # unpenalised: no large-m bias, and a Cox–Snell term of order 1/m
        zero = piece["asym"][piece["asym"]["lambda"] == 0]
        assert np.all(zero.bias_asym == 0) and np.all(zero.bias_asym1.abs() > 0)
