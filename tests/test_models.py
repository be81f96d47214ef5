"""The model axis: the design key model.family, and a second family that plugs in as one
module and runs through the engine, the merge and the result files untouched."""

from __future__ import annotations

import sys
import types

import numpy as np
import pandas as pd
import pytest
from test_design import _check_refused

import study.design
import study.models
from study.conditional import FIT_COUNTS
from study.design import DesignError, design_from_dict
from study.engine.streams import chunk_size, chunk_span
from study.engine.tasks import DegreeResult, alpha_grid
from study.moments import CoMoments
from study.steps import simulate

from conftest import small_design, to_toml


def test_the_family_defaults_to_gaussian_and_keeps_the_hash():
    plain = design_from_dict(small_design())
    explicit = design_from_dict({**small_design(), "model": {"family": "gaussian"}})
    assert plain.family == explicit.family == "gaussian"
    # designs written before the model axis keep their hash, hence their checkpoints
    assert plain.hash == explicit.hash
    assert "model" not in plain.to_dict()


def test_every_family_of_the_design_has_a_module():
    assert set(study.design.FAMILIES) == set(study.models.FAMILIES)
    for family in study.design.FAMILIES:
        raw = {**small_design(), "model": {"family": family}}
        if family == "logistic":  # its labels have no noise level
            del raw["dgp"]["noise_sd"]
        design = design_from_dict(raw)
        assert callable(study.models.model_of(design).run_chunks)


@pytest.mark.parametrize(
    ("model", "fragments"),
    [
        ({"family": "probit"}, ["model.family", "'probit'", "gaussian"]),
        ({"family": 3}, ["model.family", "3"]),
        ({"kind": "gaussian"}, ["unknown key 'model.kind'"]),
        ("gaussian", ["model", "a table"]),
    ],
)
def test_a_bad_family_is_refused_in_one_line(model, fragments, tmp_path, monkeypatch, capsys):
    text = to_toml({**small_design(), "model": model})
    _check_refused(tmp_path, monkeypatch, capsys, text, fragments)


def test_design_from_dict_names_the_key():
    with pytest.raises(DesignError, match=r"key 'model\.family': got 'probit'"):
        design_from_dict({**small_design(), "model": {"family": "probit"}})


# --- a second family in one module ----------------------------------------------------


def _toy_chunk(design, m, c):
    """Chunk c of the toy family: coefficient j of every cell drawn as N(j + α, 1) from a
    stream of (seed, m, c), shape (n, L, C, k + 1) per degree."""
    rng = np.random.default_rng([design.seed, m, c])
    n = chunk_size(design, m, c)
    L, C = len(design.lam), len(design.scaling)
    out = {}
    for k in design.degree:
        alphas = alpha_grid(design, m, k)  # (L, C)
        out[k] = rng.standard_normal((n, L, C, k + 1)) + np.arange(k + 1) + alphas[..., None]
    return out


def _stack(parts):
    return CoMoments(*(np.stack([getattr(p, f) for p in parts]) for f in ("n", "mean", "M")))


def _toy_run_chunks(design, m, chunks, *, solver="auto", noise_draw="sufficient"):
    """A toy family: every quantity of the Gaussian family's layout is the draw of
    :func:`_toy_chunk`, with one row of co-moments per chunk."""
    L, C = len(design.lam), len(design.scaling)
    drawn = [_toy_chunk(design, m, c) for c in chunks]
    out = {}
    for k in design.degree:
        qs = [d[k] for d in drawn]
        coef = _stack([CoMoments.from_samples(np.repeat(q[..., None], 5, axis=-1)) for q in qs])
        risk = _stack(
            [CoMoments.from_samples(np.repeat(q.sum(axis=-1)[..., None], 3, axis=-1)) for q in qs]
        )
        q = np.concatenate(qs)
        start = chunk_span(design.replications, m, chunks[0])[0]
        keep = int(np.clip(design.keep_draws - start, 0, q.shape[0]))
        draws = np.moveaxis(q[:keep], 0, 2)
        n_failed = np.zeros((L, C), dtype=np.int64)
        fit_counts = np.zeros((L, C, len(FIT_COUNTS)), dtype=np.int64)
        fit_counts[..., FIT_COUNTS.index("direct")] = q.shape[0]
        first = np.stack([qc[0] for qc in qs])  # each chunk's first draw
        tails = np.zeros((L, C, k + 1, 3), dtype=np.int64)  # the toy family counts none
        out[k] = DegreeResult(coef, risk, n_failed, draws, fit_counts, first, tails)
    return out


def test_a_second_family_runs_through_the_engine_untouched(tmp_path, monkeypatch):
    module = types.ModuleType("toy_family")
    module.run_chunks = _toy_run_chunks
    monkeypatch.setitem(sys.modules, "toy_family", module)
    monkeypatch.setitem(study.models.FAMILIES, "toy", "toy_family")
    monkeypatch.setattr(study.design, "FAMILIES", (*study.design.FAMILIES, "toy"))
    raw = {**small_design(replications=600, block_size=300), "model": {"family": "toy"}}
    design = design_from_dict(raw)
    simulate(design, tmp_path / "toy", theory=False, progress=False, jobs=1)
    summary = pd.read_csv(tmp_path / "toy" / "summary.csv")
    # the mean of each cell is the mean of its 600 draws (chunks of 256, 256 and 88, one
    # per task), drawn again here from the same streams
    for (m, k), rows in summary.groupby(["m", "degree"]):
        q = np.concatenate([_toy_chunk(design, m, c)[k] for c in range(3)])
        np.testing.assert_allclose(
            rows["bias"].to_numpy(), q.mean(axis=0).ravel(), rtol=1e-12, atol=1e-12
        )
    assert (summary["n"] == 600).all()
    assert (pd.read_csv(tmp_path / "toy" / "fits.csv")["direct"] == 600).all()
    # the toy's means are j + α: far from the Gaussian family's, so it did run
    row = summary[(summary.m == 40) & (summary.degree == 3) & (summary.coef == 3)]
    expected = 3 + row["alpha"].to_numpy()
    assert np.all(np.abs(row["bias"].to_numpy() - expected) < 5 / np.sqrt(600))
