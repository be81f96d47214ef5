"""The audit from the seeds catches the bugs the Monte Carlo vs Rao–Blackwell comparison
cannot see: each test injects one into the engine, runs a small design, and asserts that
`study check` fails and names what failed; the unmutated run passes."""

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest

import study.design
import study.engine.streams
import study.engine.tasks
from study.audit import audit, chunk_length
from study.check import check
from study.design import design_from_dict
from study.engine.streams import CHUNK_DATA_SETS, CHUNK_POINTS
from study.engine.streams import chunk_length as engine_chunk_length
from study.files import load_npz
from study.steps import simulate

from conftest import run_cli, small_design

# σ ≠ 1, a nonzero intercept, an asymmetric x range, 300 replications (chunks of 256 and 44)
RAW = small_design(
    replications=300,
    **{
        "dgp.noise_sd": 0.6,
        "dgp.intercept": -0.5,
        "dgp.x": {"distribution": "uniform", "low": -0.5, "high": 2.0},
        "grid.m": [5, 40, 2000],
        "grid.degree": [1, 3],
        "grid.lambda": [0.0, 0.1, 2.0],
        "output.keep_draws": 0,
    },
)


def _run(tmp_path, name="run"):
    out = tmp_path / name
    simulate(design_from_dict(RAW), out, progress=False, jobs=1)
    return out


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("clean"))


def test_the_audit_layout_is_the_engines():
    """The audit writes the chunk rule again; both agree (and the streams are keyed alike)."""
    assert (CHUNK_DATA_SETS, CHUNK_POINTS) == (256, 1 << 22)
    for m in (1, 3, 16_384, 16_385, 100_000, 10**7):
        assert chunk_length(m) == engine_chunk_length(m)


def test_the_clean_run_passes_and_every_cell_is_audited(clean):
    result = check(clean)
    assert result.ok, result.summary_line()
    table = result.audit.table
    design = design_from_dict(RAW)
    # every identifiable cell and coefficient, on both chunks' first data sets, and on
    # chunk 0's means of e, e² and Var[ŵ|X]
    for k in design.degree:
        n_cells = sum(
            len(design.scaling) for m in design.m for lam in design.lam if lam > 0 or m > k
        )
        rows = table[table.degree == k]
        assert (rows.what == "ŵ of the chunk's first data set").sum() == 2 * n_cells * (k + 1)
        assert rows.what.str.startswith("chunk 0").sum() == 3 * n_cells * (k + 1)
    assert result.summary_line().startswith("PASS: audit from the seeds: ")


def _mutated(tmp_path, monkeypatch, patch):
    patch(monkeypatch)
    out = _run(tmp_path, "mutated")
    monkeypatch.undo()
    return check(out)


def _scaled_alpha(monkeypatch):
    grid = study.engine.tasks.alpha_grid  # the cell loop every family shares

    def wrong(design, m, degree):
        return grid(design, m, degree) * (1.5 if m == 40 else 1.0)

    monkeypatch.setattr(study.engine.tasks, "alpha_grid", wrong)


def _penalised_intercept(monkeypatch):
    basis = study.design.Design.standard_basis

    def wrong(self, degree, *args):
        return basis(dataclasses.replace(self, penalize_intercept=True), degree, *args)

    monkeypatch.setattr(study.design.Design, "standard_basis", wrong)


def _shifted_x(monkeypatch):
    draw = study.engine.streams.draw_u
    monkeypatch.setattr(study.engine.streams, "draw_u", lambda *a: draw(*a) + 0.02)


def _noise_sd_off(monkeypatch):
    noise = study.engine.streams.sufficient_noise
    monkeypatch.setattr(study.engine.streams, "sufficient_noise", lambda *a: 1.1 * noise(*a))


def _wrong_basis_column(monkeypatch):
    basis = study.design.Design.standard_basis

    def wrong(self, degree, *args):  # the cubic's column of the change of basis, 1 % off
        b = basis(self, degree, *args)
        if degree != 3:
            return b
        B = b.B.copy()
        B[:, -1] *= 1.01
        return dataclasses.replace(b, B=B)

    monkeypatch.setattr(study.design.Design, "standard_basis", wrong)


def _other_seed(monkeypatch):
    streams = study.engine.streams.chunk_streams
    monkeypatch.setattr(
        study.engine.streams, "chunk_streams", lambda seed, m, c: streams(seed + 1, m, c)
    )


MUTATIONS = {
    "α × 1.5 at m = 40": (_scaled_alpha, {"m": 40}),
    "the intercept penalised": (_penalised_intercept, {}),
    "x shifted by 2 % of its half-width": (_shifted_x, {}),
    "noise SD 10 % too large": (_noise_sd_off, {"what": "ŵ of the chunk's first data set"}),
    "a wrong basis column": (_wrong_basis_column, {"degree": 3}),
    "the streams of another seed": (_other_seed, {}),
}


@pytest.mark.parametrize("name", MUTATIONS)
def test_an_injected_bug_fails_the_check_naming_the_cell(tmp_path, monkeypatch, name):
    patch, where = MUTATIONS[name]
    result = _mutated(tmp_path, monkeypatch, patch)
    assert not result.ok
    bad = result.audit.mismatches
    assert len(bad) > 0, name
    for column, value in where.items():
        assert (bad[column] == value).all(), (name, bad[column].unique())
    line = result.summary_line()
    assert line.startswith("FAIL: audit from the seeds: ") and "first mismatch: m = " in line


def test_the_alpha_bug_passes_the_old_comparison(tmp_path, monkeypatch):
    """Why the audit exists: with α wrong at one m, Monte Carlo and Rao–Blackwell still
    agree (the z-values stay normal). The audit sees it, and so does the comparison of the
    Rao–Blackwell bias with the theory at every m (it used to look at the largest m only,
    where α was right)."""
    result = _mutated(tmp_path, monkeypatch, _scaled_alpha)
    assert result.max_abs_z <= 5 and not result.audit.ok
    assert result.n_bias_fail > 0 and "bias at m = 40," in result.worst_asym
    failed = result.table[result.table.asym_allowed.notna()]
    failed = failed[(failed.rb - failed.asym).abs() > failed.asym_allowed]
    assert set(failed.m) == {40}


def test_a_statistically_valid_run_passes_the_theory_comparisons(tmp_path, monkeypatch):
    """Streams of another seed: a valid run that only the audit refuses (it was not
    drawn from the design's seed). Rao–Blackwell against the theory at every m must not
    raise a false alarm on it."""
    result = _mutated(tmp_path, monkeypatch, _other_seed)
    assert not result.audit.ok
    assert result.n_bias > 50 and result.n_asym > 50
    assert result.n_bias_fail == 0 and result.n_asym_fail == 0, result.worst_asym


def test_a_result_file_edited_after_the_run_fails_naming_it(tmp_path, clean):
    out = tmp_path / "edited"
    shutil.copytree(clean, out)
    summary = pd.read_csv(out / "summary.csv")
    at = summary.m == 40
    summary.loc[at, "bias"] = summary.loc[at, "bias"] * 1.02
    summary.to_csv(out / "summary.csv", index=False)
    proc = run_cli("check", out, "--brief")
    assert proc.returncode == 2 and "PASS" not in proc.stdout
    assert "summary.csv" in proc.stderr and proc.stderr.count("\n") == 1


def test_edited_fingerprints_are_named(tmp_path, clean):
    """A record of the engine that disagrees with the seeds is named by its cell."""
    draws = load_npz(clean / "draws.npz")
    design = design_from_dict(json.loads((clean / "manifest.json").read_text())["design"])
    draws["first_k3"] = draws["first_k3"].copy()
    draws["first_k3"][2, 1, 1, 0, 2] += 1e-6  # m = 2000, chunk 1, λ = 0.1, "none", w2
    bad = audit(design, draws).mismatches
    assert len(bad) == 1
    row = bad.iloc[0]
    assert (row.m, row.degree, row["lambda"], row.scaling, row.coef, row.chunk) == (
        2000,
        3,
        0.1,
        "none",
        2,
        1,
    )
    draws = load_npz(clean / "draws.npz")
    draws["chunk0_mean_k1"] = draws["chunk0_mean_k1"].copy()
    draws["chunk0_mean_k1"][0, 2, 3, 1, 4] *= 1 + 1e-6  # m = 5, λ = 2, "k", Var[ŵ1|X]
    bad = audit(design, draws).mismatches
    assert len(bad) == 1 and bad.iloc[0].what == "chunk 0 mean of Var[ŵ|X]"
    assert np.isfinite(bad.iloc[0].engine)
    # a cell where a fit of chunk 0 failed is not comparable: its three means are left out
    draws["chunk0_n_k1"] = draws["chunk0_n_k1"].copy()
    draws["chunk0_n_k1"][0, 2, 3, 1] -= 1
    result = audit(design, draws)
    assert result.ok and result.n == audit(design, load_npz(clean / "draws.npz")).n - 3
    # a missing record of the first estimates is a mismatch
    draws = load_npz(clean / "draws.npz")
    draws["first_k1"] = draws["first_k1"].copy()
    draws["first_k1"][1, 0, 1, 2, 0] = np.nan
    assert len(audit(design, draws).mismatches) == 1


def test_large_data_sets_are_audited_in_pieces_with_the_same_verdict(clean, monkeypatch):
    """Data sets of more points than a piece are factorised piece by piece (bounded memory):
    every recomputed number stays within its allowance, and close to the whole-data one."""
    design = design_from_dict(json.loads((clean / "manifest.json").read_text())["design"])
    draws = load_npz(clean / "draws.npz")
    whole = audit(design, draws).table
    monkeypatch.setattr("study.audit._PIECE_POINTS", 7)  # m = 40 and 2,000 in pieces
    pieces = audit(design, draws)
    assert pieces.ok and pieces.n == len(whole)
    gap = (pieces.table.audit - whole.audit).abs()
    assert (gap <= pieces.table.allowed).all()
