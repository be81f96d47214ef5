"""The sufficient-statistic noise draw: given the points, Φᵀε ~ N(0, σ²G) exactly, K + 1
normals per data set instead of m (a data set of at most K + 1 points draws its m values).
Checked against the plain draw of m normal values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
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


@pytest.mark.parametrize(("m", "K"), [(14, 5), (20, 7), (40, 3)])
def test_the_factor_is_the_cholesky_factor_of_the_gram_matrix(m, K):
    """Φᵀε = L·z with G = LLᵀ (L lower triangular, positive diagonal): exact in
    distribution. Against scipy's Cholesky, another LAPACK build."""
    rng = np.random.default_rng(m)
    u = rng.uniform(-1.0, 1.0, (50, m))  # well-conditioned G: every pivot far above the floor
    phi = u[..., None] ** np.arange(K + 1)
    G = np.swapaxes(phi, 1, 2) @ phi
    R = np.stack([sufficient_noise(G, np.tile(e, (50, 1))) for e in np.eye(K + 1)], axis=-1)
    reference = np.stack([scipy.linalg.cholesky(g, lower=True) for g in G])
    np.testing.assert_allclose(R, reference, rtol=1e-9, atol=1e-12 * np.abs(reference).max())
    scale = np.abs(G).max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), G, atol=1e-12 * scale.max(), rtol=0)


def test_a_gram_matrix_that_rounding_made_singular_falls_back_to_its_eigenvalues():
    """A G with a negative eigenvalue at rounding level, as a G whose points nearly
    coincide can come out: its Cholesky factorisation fails, and its factor comes from the
    eigendecomposition with that eigenvalue as 0 (no noise along its eigenvector). The
    other G of the stack keep the factor they have alone."""
    rng = np.random.default_rng(3)
    Q = np.linalg.qr(rng.standard_normal((4, 4)))[0]
    bad = (Q * np.array([3.0, 1.5, 0.25, -1e-13])) @ Q.T
    u = rng.uniform(-1, 1, (2, 9))
    phi = u[..., None] ** np.arange(4)
    good = np.swapaxes(phi, 1, 2) @ phi
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(bad)
    G = np.stack([good[0], bad, good[1]])
    z = rng.standard_normal((3, 4))
    out = sufficient_noise(G, z)
    np.testing.assert_array_equal(out[[0, 2]], sufficient_noise(good, z[[0, 2]]))
    R = np.stack([sufficient_noise(G[[1]], e[None])[0] for e in np.eye(4)], axis=1)
    np.testing.assert_allclose(R @ R.T, bad, atol=1e-12)
    assert abs(Q[:, 3] @ out[1]) < 1e-12  # nothing along the dropped direction
    assert abs(Q[:, 3] @ R).max() < 1e-12


def test_a_nearly_singular_gram_takes_its_eigenvalues_and_the_audit_agrees():
    """Nine points of degree 7 in seven clusters (two pairs 1e-5 apart): G has a Cholesky
    factor, but a pivot below CHOLESKY_PIVOT_FLOOR of its largest diagonal entry (1.6e-12),
    so its factor is the eigendecomposition's (within rounding of singular, the engine's G
    and the audit's could fall on either side of Cholesky's own failure); a G of nine
    spread points keeps Cholesky's. The audit's own reimplementation gives the same noise
    scores."""
    from study import audit
    from study.engine.streams import CHOLESKY_PIVOT_FLOOR, _eigen_factor

    u = np.array(
        [
            [-0.9, -0.6, -0.3, 0.0, 0.3, 0.6, 0.6 + 1e-5, 0.9, 0.9 + 1e-5],
            [-0.9, -0.6, -0.3, 0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
        ]
    )
    phi = u[..., None] ** np.arange(8)
    G = np.swapaxes(phi, 1, 2) @ phi
    L = np.linalg.cholesky(G)
    pivots = np.diagonal(L, axis1=1, axis2=2).min(axis=1) ** 2
    largest = np.diagonal(G, axis1=1, axis2=2).max(axis=1)
    assert pivots[0] < CHOLESKY_PIVOT_FLOOR * largest[0] < pivots[1] / 100
    z = np.random.default_rng(2).standard_normal((2, 8))
    out = sufficient_noise(G, z)
    np.testing.assert_allclose(out[0], _eigen_factor(G[0]) @ z[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out[1], L[1] @ z[1], rtol=1e-12, atol=1e-14)
    assert np.abs(out[0] - L[0] @ z[0]).max() > 1e-3  # not Cholesky's factor there
    for row in range(2):
        mine = audit._noise_scores(u[row], z[row], 7)
        np.testing.assert_allclose(mine, out[row], rtol=1e-6, atol=1e-9 * np.abs(out[row]).max())


@pytest.mark.parametrize("m", [1, 3, 4])
def test_a_data_set_of_at_most_k_plus_1_points_draws_its_own_noise(m):
    """With m ≤ K + 1 the sufficient draw is the plain one, number for number (m normals,
    no more than K + 1, and no factor of a G that is singular for m ≤ K): Φᵀε lies in the
    range of Φᵀ. With K + 2 points it draws K + 1 normals, other numbers."""
    design = design_from_dict(small_design(replications=300, **{"dgp.noise_sd": 0.6}))
    S, T = chunk_power_sums(design, m, 1, 3)
    S_plain, T_plain = chunk_power_sums(design, m, 1, 3, noise_draw="plain")
    np.testing.assert_array_equal(S, S_plain)
    np.testing.assert_array_equal(T, T_plain)
    S5, T5 = chunk_power_sums(design, 5, 1, 3)
    assert not np.allclose(T5, chunk_power_sums(design, 5, 1, 3, noise_draw="plain")[1])


def _fits(power_sums, T, k):
    G, b = power_sums[:, hankel_index(k)], T[:, : k + 1]
    return np.linalg.solve(G, b[..., None])[..., 0]


def _standardised(design, S, T, k):
    """(ŵ − E[ŵ|X]) / SD[ŵ|X] per data set and coefficient: N(0, 1) given each design if
    the noise is drawn right, whatever the designs (the sharpest check of the draw)."""
    G = S[:, hankel_index(k)]
    mean = _fits(S, _noise_free(design, S)[:, : k + 1], k)
    sd = design.noise_sd * np.sqrt(np.diagonal(np.linalg.inv(G), axis1=1, axis2=2))
    return (_fits(S, T, k) - mean) / sd


def test_the_estimates_have_the_distribution_of_the_plain_draw():
    """Two-sample tests on 6,000 least-squares fits per draw (different noise, same x): the
    slope and the cubic coefficient agree in distribution. Standardised by their
    conditional SD, every coefficient of both draws is N(0, 1): mean square within four
    standard errors of 1, and a noise SD 10 % too large is far outside."""
    design = design_from_dict(RAW)
    S, T_plain = block_power_sums(design, 12, 3, noise_draw="plain")
    S2, T_suff = block_power_sums(design, 12, 3)
    np.testing.assert_array_equal(S, S2)  # the same x stream
    plain, suff = _fits(S, T_plain, 3), _fits(S, T_suff, 3)
    assert not np.allclose(plain, suff)  # other numbers
    for j in (1, 3):
        assert stats.ks_2samp(plain[:, j], suff[:, j]).pvalue > 1e-3, j
    n = S.shape[0]
    band = 4 * np.sqrt(2 / n)
    for T in (T_plain, T_suff):
        t = _standardised(design, S, T, 3)
        assert np.all(np.abs((t**2).mean(axis=0) - 1) < band), (t**2).mean(axis=0)
        assert np.all(np.abs(t.mean(axis=0)) < 4 / np.sqrt(n))
        assert stats.kstest(t[:, 3], "norm").pvalue > 1e-3
    # the check has the power to see a noise SD 10 % too large (mean square 1.21)
    line = _noise_free(design, S)
    wrong = _standardised(design, S, line + 1.1 * (T_suff - line), 3)
    assert np.all((wrong**2).mean(axis=0) - 1 > 2 * band)


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
