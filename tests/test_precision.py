"""Precision on demand: a design's [precision] table makes the run add chunks until every
finite-variance bias has an MCSE at or below the target, or its m reaches the cap."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from study.check import check
from study.design import design_from_dict
from study.engine.precision import settled
from study.engine.streams import chunk_length
from study.steps import simulate

from conftest import run_cli, small_design, write_design

TARGET = 0.012


def _raw(**changes):
    raw = small_design(
        **{"name": "prec", "seed": 9, "replications": 300, "output.keep_draws": 0},
        **{"grid.m": [4, 40, 400], "grid.degree": [1, 2], "grid.lambda": [0.0, 0.5]},
        **{"dgp.noise_sd": 1.5, "dgp.x": {"distribution": "uniform", "low": -0.3, "high": 1.7}},
        **changes,
    )
    raw["precision"] = {"target_mcse": TARGET, "max_replications": 12_000}
    return raw


@pytest.fixture(scope="module")
def precise(tmp_path_factory):
    out = tmp_path_factory.mktemp("precision") / "prec"
    simulate(design_from_dict(_raw()), out, jobs=2, progress=False)
    return out


def _files(out):
    return {f: (out / f).read_bytes() for f in ("summary.csv", "risk.csv", "draws.npz")}


def test_every_finite_variance_bias_meets_the_target_or_is_listed(precise):
    manifest = json.loads((precise / "manifest.json").read_text())
    report, by_m = manifest["precision"], manifest["replications_by_m"]
    summary = pd.read_csv(precise / "summary.csv")
    assert report["rounds"] >= 2 and report["infinite_variance_cells"] > 0
    for m, n in by_m.items():  # whole chunks, from 300 rounded up, at most the cap
        assert n % chunk_length(int(m)) == 0 and 300 < n <= 12_000
        assert (summary[summary.m == int(m)].n.max()) == n
    above = summary[settled(summary) & (summary.bias_mcse > TARGET).to_numpy()]
    named = {line.split(": bias")[0] for line in report["unmet"]}
    for _, r in above.iterrows():  # every cell above the target is named, with its reason
        cell = f"m = {r.m}, degree {r.degree}, λ = {r['lambda']:g}, {r.scaling}, w{r.coef}"
        assert cell in named or r["lambda"] == 0, cell
        assert by_m[str(r.m)] == 12_000 // chunk_length(r.m) * chunk_length(r.m)  # capped
    # the m that could reach the target did: no cell of m = 400 is above it
    assert (summary[settled(summary) & (summary.m == 400)].bias_mcse <= TARGET).all()
    assert by_m["400"] < 12_000


def test_a_precision_run_is_audited_and_checked(precise):
    result = check(precise)
    assert result.ok, result.summary_line()
    assert result.audit.n > 1000


def test_it_is_the_same_with_one_job_and_after_losing_the_last_rounds_chunks(tmp_path, precise):
    """Reproducible and resumable: one job gives the same bytes; so does a rerun after the
    checkpoints of every chunk beyond the first round are deleted (the rounds replay from
    the checkpoints and compute only what is missing)."""
    again = tmp_path / "again"
    simulate(design_from_dict(_raw()), again, jobs=1, progress=False)
    assert _files(again) == _files(precise)
    lost = 0
    for ckpt in (again / "checkpoints").glob("m*-c*-*.ckpt"):
        m, first = int(ckpt.name[1:].split("-")[0]), int(ckpt.name.split("-c")[1].split("-")[0])
        if first * chunk_length(m) >= 300:  # beyond the first round (300 → whole chunks)
            ckpt.unlink()
            lost += 1
    assert lost > 0
    report = simulate(design_from_dict(_raw()), again, jobs=2, progress=False)
    assert report.n_resumed > 0
    assert _files(again) == _files(precise)


def test_the_theory_step_replays_the_rounds_without_simulating(tmp_path, precise):
    from study.steps import theory

    copy = tmp_path / "copy"
    shutil.copytree(precise, copy)
    theory(copy, progress=False)
    assert _files(copy) == _files(precise)


@pytest.mark.parametrize(
    ("precision", "key"),
    [
        ({"target_mcse": 0.0, "max_replications": 1000}, "precision.target_mcse"),
        ({"target_mcse": 0.01, "max_replications": 100}, "precision.max_replications"),
        ({"target_mcse": 0.01}, "precision.max_replications"),
        ({"target_mcse": 0.01, "max_replications": 1000, "measure": "var"}, "precision.measure"),
    ],
)
def test_a_bad_precision_table_is_refused_in_one_line_naming_the_key(tmp_path, precision, key):
    raw = _raw()
    raw["precision"] = precision
    path = write_design(tmp_path / "bad.toml", raw)
    proc = run_cli("simulate", path, "--out", tmp_path / "out", "--dry-run")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


def test_without_precision_the_design_and_its_hash_are_unchanged():
    plain = design_from_dict(small_design())
    assert "precision" not in plain.to_dict() and plain.target_mcse is None
    precise = design_from_dict(_raw())
    assert precise.to_dict()["precision"] == {"target_mcse": TARGET, "max_replications": 12_000}
    assert (
        precise.hash
        != design_from_dict({k: v for k, v in _raw().items() if k != "precision"}).hash
    )
    assert np.all([precise.replications_of(m) == 300 for m in precise.m])
