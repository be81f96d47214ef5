"""The steps of a run as commands: `study simulate --no-theory`, then `study theory`."""

from __future__ import annotations

import json

from study.report.tables import table_provenance

from conftest import run_cli, small_design, write_design

ENGINE_FILES = ("summary.csv", "risk.csv", "fits.csv", "draws.npz")
THEORY_FILES = (
    "tuning.csv",
    "transfer.csv",
    "risk_curves.csv",
    "matched.csv",
    "sensitivity.csv",
    "bases.csv",
)
FILES = ENGINE_FILES + THEORY_FILES


def _design(tmp_path):
    # σ ≠ 1 and an asymmetric x range, so that the theory columns depend on both
    raw = small_design(**{"dgp.noise_sd": 0.6, "dgp.x.low": -0.5, "dgp.x.high": 2.0})
    return write_design(tmp_path / "d.toml", raw)


def test_engine_then_theory_equals_one_simulate(tmp_path):
    design = _design(tmp_path)
    both, steps = tmp_path / "both", tmp_path / "steps"
    run_cli("simulate", design, "--out", both, "-q", check=True)
    run_cli("simulate", design, "--out", steps, "-q", "--no-theory", check=True)
    manifest = json.loads((steps / "manifest.json").read_text())
    assert manifest["steps"] == ["engine"] and set(manifest["files"]) == set(ENGINE_FILES)
    assert not any((steps / name).exists() for name in THEORY_FILES)
    header = (steps / "summary.csv").read_text().splitlines()[0].split(",")
    assert "bias_asym" not in header and "finite_moments" not in header

    refused = run_cli("check", steps)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and f"study theory {steps}" in refused.stderr

    proc = run_cli("theory", steps, check=True)
    assert "theory added" in proc.stdout
    for name in FILES:
        assert (both / name).read_bytes() == (steps / name).read_bytes(), name
    after = json.loads((steps / "manifest.json").read_text())
    assert after["steps"] == ["engine", "theory"]
    # the provenance stays that of the run that simulated, design file included
    assert after["design_file"] == manifest["design_file"] == str(design)
    assert after["engine_run"] == manifest["run"] and after["run"]["id"] != manifest["run"]["id"]
    assert f"(`{design}`)" in table_provenance(after)
    # every row of the provenance table under its name, with the manifest's numbers
    rows = dict(
        [c.strip() for c in line.strip("|").split("|")]
        for line in table_provenance(after).splitlines()[2:]
        if line.startswith("| ")
    )
    assert list(rows) == [
        "design", "seed", "replications per cell", "cells", "fits", "noise", "steps", "run",
        "versions",
    ]  # fmt: skip
    counts = after["counts"]
    assert rows["fits"] == f"{counts['fits']:,} on {counts['data_points']:,} data points"
    assert rows["seed"] == str(after["seed"])
    assert rows["steps"] == "engine, theory"
    # the run row is the engine's run, not the theory's that came after it
    engine = after["engine_run"]
    assert rows["run"].startswith(f"{engine['wall_seconds']:.1f} s wall, {engine['jobs']} jobs")
    later = {**after, "run": {**after["run"], "wall_seconds": 9999.0, "jobs": 77}}
    assert "9999.0 s wall" not in table_provenance(later)
    assert "77 jobs" not in table_provenance(later)
    # the check now runs (its verdict on so small a design is not the point here)
    checked = run_cli("check", steps)
    assert checked.returncode in (0, 1) and "z-values" in checked.stdout, checked.stderr


def test_theory_refuses_an_incomplete_run_and_changes_nothing(tmp_path):
    design = _design(tmp_path)
    out = tmp_path / "run"
    run_cli("simulate", design, "--out", out, "-q", "--no-theory", check=True)
    (out / "checkpoints" / "m8-c0-1.ckpt").unlink()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    proc = run_cli("theory", out)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert "1 of 3 chunks" in proc.stderr and "study simulate" in proc.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_theory_needs_a_finished_run(tmp_path):
    proc = run_cli("theory", tmp_path / "nothing")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli("theory", empty)
    assert proc.returncode == 2 and "manifest.json" in proc.stderr, proc.stderr


def test_the_theory_computed_beside_the_simulation_equals_the_serial_step(tmp_path):
    """A run computes the theory's pieces (one per degree) in its pool while it simulates;
    put together they give the bytes of the theory step computed serially, here."""
    from study.design import load_design
    from study.engine.merge import summarise
    from study.engine.store import CheckpointStore
    from study.results import to_csv
    from study.theory.step import extend

    design_file = _design(tmp_path)
    out = tmp_path / "run"
    run_cli("simulate", design_file, "--out", out, "-q", "-j", "2", check=True)
    design = load_design(design_file)
    store = CheckpointStore(out, design)
    summary, risk, _, _ = summarise(design, store, store.done())
    summary, risk, files = extend(design, summary, risk)
    texts = {"summary.csv": to_csv(summary), "risk.csv": to_csv(risk), **files}
    assert set(files) == set(THEORY_FILES)
    for name, text in texts.items():
        assert text.encode() == (out / name).read_bytes(), name
