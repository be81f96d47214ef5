"""The sufficient-statistic noise draw: given the points, Φᵀε ~ N(0, σ²G) exactly, K + 1
normals per data set instead of m. Checked against the plain draw of m normal values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from study.basis import hankel_index
from study.conditional import quantities
from study.design import design_from_dict
from study.engine.streams import chunk_power_sums, n_chunks, sufficient_noise
from study.steps import simulate

from conftest import small_design

# σ ≠ 1, an asymmetric x range, many replications (24 chunks, the last one short)
RAW = small_design(
    replications=6000,
    **{"dgp.noise_sd": 0.6, "dgp.x.low": -0.5, "dgp.x.high": 2.0, "grid.m": [12]},
)


def block_power_sums(design, m, K, **options):
    """The power sums of every replication of m, chunk after chunk."""
    parts = [
        chunk_power_sums(design, m, c, K, **options)
        for c in range(n_chunks(design.replications, m))
    ]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@pytest.mark.parametrize(("m", "K"), [(3, 5), (6, 5), (40, 3)])
def test_the_factor_reproduces_the_gram_matrix_also_when_singular(m, K):
    """Φᵀε = R·z with RRᵀ = G: exact in distribution. With m ≤ K, G has rank m."""
    rng = np.random.default_rng(m)
    u = rng.uniform(-1, 1, (50, m))
    phi = u[..., None] ** np.arange(K + 1)
    G = np.swapaxes(phi, 1, 2) @ phi
    R = np.stack([sufficient_noise(G, z) for z in np.eye(K + 1)], axis=-1)  # columns R e_i
    scale = np.abs(G).max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), G, atol=1e-12 * scale.max(), rtol=0)
    if m <= K:  # nothing outside the range of G: the null space of Φ gets no noise
        null = np.linalg.svd(phi)[2][:, m:]  # (50, K + 1 − m, K + 1)
        assert np.abs(np.einsum("nki,nij->nkj", null, R)).max() < 1e-10 * np.sqrt(scale.max())


def _fits(power_sums, T, k):
    G, b = power_sums[:, hankel_index(k)], T[:, : k + 1]
    return np.linalg.solve(G, b[..., None])[..., 0]


def test_the_estimates_have_the_distribution_of_the_plain_draw():
    """Two-sample tests on 6,000 least-squares fits per draw (different noise, same x): the
    slope and the cubic coefficient agree in distribution; a noise SD 10 % off does not."""
    design = design_from_dict(RAW)
    S, T_plain = block_power_sums(design, 12, 3, noise_draw="plain")
    S2, T_suff = block_power_sums(design, 12, 3)
    np.testing.assert_array_equal(S, S2)  # the same x stream
    plain, suff = _fits(S, T_plain, 3), _fits(S, T_suff, 3)
    assert not np.allclose(plain, suff)  # other numbers
    for j in (1, 3):
        assert stats.ks_2samp(plain[:, j], suff[:, j]).pvalue > 1e-3, j
        ratio = suff[:, j].var() / plain[:, j].var()
        assert abs(ratio - 1) < 0.08, (j, ratio)
    # the checks have the power to see a noise SD 10 % too large
    line = _noise_free(design, S)
    wrong = _fits(S, line + 1.1 * (T_suff - line), 3)
    assert wrong[:, 1].var() / plain[:, 1].var() > 1.15


def _noise_free(design, S):
    v = design.true_coefficients_of(1, standardised=True)
    return v[0] * S[:, :4] + v[1] * S[:, 1:5]


def test_the_conditional_moments_do_not_depend_on_the_draw():
    """E[ŵ|X], Var[ŵ|X] and E[R|X] are functions of the design points alone: identical."""
    design = design_from_dict(RAW)
    S, T_plain = block_power_sums(design, 12, 3, noise_draw="plain")
    _, T_suff = block_power_sums(design, 12, 3)
    basis, alphas = design.standard_basis(3), np.array([0.0, 0.5, 6.0])
    G = S[:, hankel_index(3)]
    a = quantities(G, T_plain[:, :4], basis, alphas, design.noise_sd)
    b = quantities(G, T_suff[:, :4], basis, alphas, design.noise_sd)
    np.testing.assert_array_equal(a[0][..., 2:], b[0][..., 2:])  # e, e², v
    np.testing.assert_array_equal(a[1][..., 2], b[1][..., 2])  # E[R|X]
    assert not np.array_equal(a[0][..., 0], b[0][..., 0])  # ŵ − w* differs


def test_a_whole_run_agrees_with_the_plain_draw(tmp_path):
    """Monte Carlo columns within their standard errors of the plain draw's; the
    Rao–Blackwell columns identical (the same x)."""
    raw = small_design(
        replications=3000,
        **{"dgp.noise_sd": 0.6, "dgp.x.low": -0.5, "dgp.x.high": 2.0, "grid.m": [8, 40]},
    )
    design = design_from_dict(raw)
    simulate(design, tmp_path / "plain", noise_draw="plain", progress=False, theory=False)
    simulate(design, tmp_path / "suff", progress=False, theory=False)
    a, b = pd.read_csv(tmp_path / "plain/summary.csv"), pd.read_csv(tmp_path / "suff/summary.csv")
    for col in ("bias_rb", "var_rb"):
        np.testing.assert_array_equal(a[col], b[col])
    ok = (a.status == "ok") & (a["lambda"] > 0)  # every moment finite
    z = (a.bias - b.bias)[ok] / np.hypot(a.bias_mcse, b.bias_mcse)[ok]
    assert np.abs(z).max() < 5 and (np.abs(z) > 2).mean() < 0.15
    assert not np.array_equal(a.bias, b.bias)
