"""The rules of the audit from the seeds and of `study check` (docs/checks.md), each on small
in-memory inputs against an independent reference: the audit's recomputed numbers against
normal equations on the documented streams, its pieces against NumPy's polynomial classes,
Gauss quadrature and closed forms; the check's table, counts and verdict against the rules
written out on hand-made result tables (shifted either way, at the edge of each limit)."""

import json
import math
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
from numpy.polynomial import HermiteE, Legendre, Polynomial

import study.audit as A
import study.check as C
from study.design import design_from_dict

from conftest import small_design

# σ ≠ 1, a nonzero intercept, an asymmetric x range; 300 replications: two chunks of small m
# (256 and 44), so chunk 0 holds 256 data sets and chunk 1 is partial
UNIFORM = small_design(
    replications=300,
    **{
        "dgp.noise_sd": 0.7,
        "dgp.intercept": -0.4,
        "dgp.slope": 1.3,
        "dgp.x": {"distribution": "uniform", "low": -0.5, "high": 2.0},
        "grid.m": [3, 9, 40],
        "grid.degree": [1, 3],
        "grid.lambda": [0.0, 0.4],
        "grid.basis": ["monomial", "orthonormal"],
        "output.keep_draws": 0,
    },
)
# normal x, the intercept penalised, a single chunk
NORMAL = small_design(
    replications=40,
    **{
        "dgp.noise_sd": 1.6,
        "dgp.intercept": 0.8,
        "dgp.slope": -0.6,
        "dgp.x": {"distribution": "normal", "mean": 1.5, "sd": 0.5},
        "grid.m": [6, 25],
        "grid.degree": [2],
        "grid.lambda": [0.0, 0.2, 3.0],
        "grid.penalize_intercept": True,
        "grid.basis": ["orthonormal", "monomial"],
        "output.keep_draws": 0,
    },
)


# --- an independent reference: normal equations on the documented streams ------------------


def _center_scale(raw):
    x = raw["dgp"]["x"]
    if x["distribution"] == "uniform":
        return (x["low"] + x["high"]) / 2, (x["high"] - x["low"]) / 2
    return x["mean"], x["sd"]


def _alpha(lam, m, k, scaling):
    # the written definitions: λ·Σw²/2 against the mean loss, Ng's (÷ m), ÷ √m, × m/k
    return {"none": m * lam, "m": lam, "sqrt-m": lam * m**0.5, "k": lam * m / k}[scaling]


def _features(raw, u, p, basis):
    """The features of the points u (any shape) along a new last axis."""
    center, scale = _center_scale(raw)
    if basis == "monomial":
        return (center + scale * u)[..., None] ** np.arange(p)
    if raw["dgp"]["x"]["distribution"] == "uniform":
        return np.stack([Legendre.basis(j)(u) * math.sqrt(2 * j + 1) for j in range(p)], -1)
    return np.stack([HermiteE.basis(j)(u) / math.sqrt(math.factorial(j)) for j in range(p)], -1)


def _to_basis(raw, p, basis):
    """M with features(u) = M·(1, u, …, u^K), K the design's largest degree, so that the
    features' noise scores are M·Φᵤᵀε (coefficients from NumPy's Polynomial algebra)."""
    K = max(raw["grid"]["degree"])
    center, scale = _center_scale(raw)
    M = np.zeros((p, K + 1))
    for j in range(p):
        if basis == "monomial":
            coef = (Polynomial([center, scale]) ** j).coef
        elif raw["dgp"]["x"]["distribution"] == "uniform":
            coef = Legendre.basis(j).convert(kind=Polynomial).coef * math.sqrt(2 * j + 1)
        else:
            coef = HermiteE.basis(j).convert(kind=Polynomial).coef / math.sqrt(math.factorial(j))
        M[j, : coef.size] = coef
    return M


def _line(raw, u):
    center, scale = _center_scale(raw)
    return raw["dgp"]["intercept"] + raw["dgp"]["slope"] * (center + scale * u)


def _w_star(raw, p, basis):
    """The w with features·w = β0 + β1·x, by least squares on a grid of u."""
    u = np.linspace(-1, 1, 3 * p + 5)
    return np.linalg.lstsq(_features(raw, u, p, basis), _line(raw, u), rcond=None)[0]


def _draw(raw, rng, size):
    if raw["dgp"]["x"]["distribution"] == "uniform":
        return rng.uniform(-1.0, 1.0, size)
    return rng.standard_normal(size)


def _streams(raw, m, chunk):
    seqs = np.random.SeedSequence(raw["seed"], spawn_key=(m, chunk)).spawn(2)
    return [np.random.default_rng(s) for s in seqs]


def _chunk_len(m):
    n = 256
    while n > 1 and n * m > 1 << 22:
        n //= 2
    return n


def _columns(raw):
    return [(b, s) for b in raw["grid"].get("basis", ["monomial"]) for s in raw["grid"]["scaling"]]


def _penalty(raw, p):
    D = np.eye(p)
    if not raw["grid"]["penalize_intercept"]:
        D[0, 0] = 0
    return D


def reference_draws(raw) -> dict[str, np.ndarray]:
    """The records a correct engine writes for the audit (docs/results.md, draws.npz),
    computed by normal equations: ŵ = (ΦᵀΦ + αD)⁻¹(Φᵀ(β0 + β1·x) + σ·Φᵀε), with Φᵀε from
    the K + 1 normals of the data set (Φᵤᵀε = L·z, ΦᵤᵀΦᵤ = LLᵀ, scipy's Cholesky, or the
    eigendecomposition's factor where a pivot is below 1e-10 of the largest diagonal
    entry), or from its m noise values where m ≤ K + 1 (Φᵤᵀε summed)."""
    ms, lams, cols = raw["grid"]["m"], raw["grid"]["lambda"], _columns(raw)
    K, sigma, R = max(raw["grid"]["degree"]), raw["dgp"]["noise_sd"], raw["replications"]
    n_chunks = [-(-R // _chunk_len(m)) for m in ms]
    out = {}
    for k in raw["grid"]["degree"]:
        p = k + 1
        first = np.full((len(ms), max(n_chunks), len(lams), len(cols), p), np.nan)
        means = np.full((len(ms), len(lams), len(cols), p, 5), np.nan)
        counts = np.zeros((len(ms), len(lams), len(cols), p), dtype=np.int64)
        D = _penalty(raw, p)
        for i_m, m in enumerate(ms):
            for c in range(n_chunks[i_m]):
                rng_x, rng_z = _streams(raw, m, c)
                u = _draw(raw, rng_x, m)
                phi_u = np.vander(u, K + 1, increasing=True)
                if m <= K + 1:  # the data set's own m noise values
                    scores_u = phi_u.T @ rng_z.standard_normal(m)
                else:  # Cholesky, or the eigendecomposition below a pivot of 1e-10
                    gram = phi_u.T @ phi_u
                    L = scipy.linalg.cholesky(gram, lower=True)
                    if np.diag(L).min() ** 2 < 1e-10 * np.diag(gram).max():
                        ev, V = np.linalg.eigh(gram)
                        ev = np.where(ev > (K + 1) * np.finfo(float).eps * ev[-1], ev, 0.0)
                        L = V * np.sqrt(ev)
                    scores_u = L @ rng_z.standard_normal(K + 1)
                for i_l, lam in enumerate(lams):
                    if lam == 0 and m <= k:
                        continue
                    for i_c, (b, s) in enumerate(cols):
                        F = _features(raw, u, p, b)
                        rhs = F.T @ _line(raw, u) + sigma * _to_basis(raw, p, b) @ scores_u
                        G = F.T @ F + _alpha(lam, m, k, s) * D
                        first[i_m, c, i_l, i_c] = np.linalg.solve(G, rhs)
            n = min(_chunk_len(m), R)
            U = _draw(raw, _streams(raw, m, 0)[0], (n, m))
            for i_l, lam in enumerate(lams):
                if lam == 0 and m <= k:
                    continue
                for i_c, (b, s) in enumerate(cols):
                    w_star = _w_star(raw, p, b)
                    F = _features(raw, U, p, b)  # (n, m, p): every data set at once
                    gram = np.swapaxes(F, -1, -2) @ F
                    inv = np.linalg.inv(gram + _alpha(lam, m, k, s) * D)
                    e = (inv @ (np.swapaxes(F, -1, -2) @ _line(raw, U)[..., None]))[
                        ..., 0
                    ] - w_star
                    var = sigma**2 * np.diagonal(inv @ gram @ inv, axis1=-2, axis2=-1)
                    acc = np.stack([e, e**2, var], axis=1).sum(axis=0)
                    means[i_m, i_l, i_c, :, 2:] = (acc / n).T
                    counts[i_m, i_l, i_c] = n
        out |= {f"first_k{k}": first, f"chunk0_mean_k{k}": means, f"chunk0_n_k{k}": counts}
    return out


@pytest.fixture(scope="module")
def uniform_case():
    return design_from_dict(UNIFORM), reference_draws(UNIFORM)


@pytest.fixture(scope="module")
def normal_case():
    return design_from_dict(NORMAL), reference_draws(NORMAL)


# --- the audit -------------------------------------------------------------------------------


def _expected_rows(raw):
    """(first-data-set rows, chunk-0 rows) the audit must compare: every identifiable cell
    and coefficient, on the first data set of every chunk, and three means over chunk 0."""
    first = chunk0 = 0
    for m in raw["grid"]["m"]:
        chunks = -(-raw["replications"] // _chunk_len(m))
        for k in raw["grid"]["degree"]:
            cells = sum(lam > 0 or m > k for lam in raw["grid"]["lambda"]) * len(_columns(raw))
            first += chunks * cells * (k + 1)
            chunk0 += 3 * cells * (k + 1)
    return first, chunk0


@pytest.mark.parametrize("case", ["uniform_case", "normal_case"])
def test_the_audit_recomputes_what_normal_equations_give(case, request):
    design, draws = request.getfixturevalue(case)
    raw = UNIFORM if case == "uniform_case" else NORMAL
    result = A.audit(design, draws)
    table = result.table
    assert list(table.columns) == A.AUDIT_COLUMNS
    first, chunk0 = _expected_rows(raw)
    assert (table.what == "ŵ of the chunk's first data set").sum() == first
    for name in ("e", "e²", "Var[ŵ|X]"):
        assert (table.what == f"chunk 0 mean of {name}").sum() == chunk0 // 3
    assert result.n == first + chunk0
    # the audit's own numbers against the reference, to far better than any bug
    scale = np.maximum(table.engine.abs(), 1e-3)
    assert ((table.audit - table.engine).abs() / scale).max() < 1e-7
    assert result.ok and len(result.mismatches) == 0
    assert (table.allowed > 0).all() and np.isfinite(table.allowed).all()
    line = result.line()
    assert (
        line
        == f"audit from the seeds: {result.n} of {result.n} recomputed numbers match the engine's"
    )
    # the allowances: cond_S ≥ p for columns scaled to norm 1 (Σσᵢ² = p), so a ŵ_j may move
    # at least 10⁻⁹·p·|ŵ_j| and a Var[ŵ_j|X] at least 10⁻⁸·p of itself
    p = table.degree + 1
    first = table.what == "ŵ of the chunk's first data set"
    assert (table.allowed[first] >= 1e-9 * p[first] * table.audit[first].abs()).all()
    var = table.what == "chunk 0 mean of Var[ŵ|X]"
    assert (table.allowed[var] >= 1e-8 * p[var] * table.audit[var]).all()


def test_chunk0_in_slices_gives_the_same_numbers_and_allowances(normal_case, monkeypatch):
    """Slicing chunk 0 bounds memory and changes nothing: the means are over all its data
    sets, the allowances the largest over them."""
    design, draws = normal_case
    whole = A.audit(design, draws, noise_draw="plain").table
    monkeypatch.setattr(A, "_SLICE_POINTS", 5 * 25)  # 20 and 5 data sets per slice
    sliced = A.audit(design, draws, noise_draw="plain").table
    assert len(sliced) == len(whole)
    np.testing.assert_allclose(sliced.audit, whole.audit, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(sliced.allowed, whole.allowed, rtol=1e-12)


def test_a_record_off_by_a_millionth_is_named_by_its_cell(uniform_case):
    design, clean = uniform_case
    cols = _columns(UNIFORM)
    draws = dict(clean)
    draws["first_k3"] = clean["first_k3"].copy()
    # m = 9, chunk 1, λ = 0.4, (orthonormal, sqrt-m), w2 of the cubic, up; and m = 40,
    # chunk 0, λ = 0, (monomial, k), w0, down
    i_c = cols.index(("orthonormal", "sqrt-m"))
    draws["first_k3"][1, 1, 1, i_c, 2] *= 1 + 1e-6
    draws["first_k3"][2, 0, 0, cols.index(("monomial", "k")), 0] *= 1 - 1e-6
    result = A.audit(design, draws)
    assert not result.ok
    bad = result.mismatches
    keys = ["m", "degree", "lambda", "scaling", "basis", "coef", "chunk", "what"]
    what = "ŵ of the chunk's first data set"
    assert list(bad[keys].itertuples(index=False, name=None)) == [
        (9, 3, 0.4, "sqrt-m", "orthonormal", 2, 1, what),
        (40, 3, 0.0, "k", "monomial", 0, 0, what),
    ]
    row = bad.iloc[0]
    assert row.engine == draws["first_k3"][1, 1, 1, i_c, 2]
    line = result.line()
    assert line.startswith(f"audit from the seeds: {result.n - 2} of {result.n} recomputed ")
    assert "first mismatch: m = 9, degree 3, λ = 0.4, sqrt-m, orthonormal basis, w2 (ŵ of " in line
    assert line.endswith(f"engine {row.engine:.6g}, audit {row.audit:.6g}")


def test_chunk0_means_off_either_way_are_mismatches_named_by_cell(uniform_case):
    design, clean = uniform_case
    draws = dict(clean)
    draws["chunk0_mean_k1"] = clean["chunk0_mean_k1"].copy()
    # (m index, λ index, column, coef, quantity: 2 e, 3 e², 4 Var[ŵ|X], relative change)
    moved = [(0, 1, 0, 1, 2, 1e-5), (1, 1, 5, 1, 3, -1e-5), (2, 0, 7, 1, 4, 1e-5)]
    for i_m, i_l, i_c, coef, q, by in moved:
        draws["chunk0_mean_k1"][i_m, i_l, i_c, coef, q] *= 1 + by
    bad = A.audit(design, draws).mismatches.sort_values("m")
    cols = _columns(UNIFORM)
    expected = [
        (
            UNIFORM["grid"]["m"][i_m],
            1,
            UNIFORM["grid"]["lambda"][i_l],
            *cols[i_c][::-1],
            coef,
            "chunk 0 mean of " + {2: "e", 3: "e²", 4: "Var[ŵ|X]"}[q],
            0,
        )
        for i_m, i_l, i_c, coef, q, _ in moved
    ]
    got = list(
        bad[["m", "degree", "lambda", "scaling", "basis", "coef", "what", "chunk"]].itertuples(
            index=False, name=None
        )
    )
    assert got == expected


def test_a_missing_record_is_a_mismatch_and_a_failed_fit_leaves_its_means_out(uniform_case):
    design, clean = uniform_case
    n = sum(_expected_rows(UNIFORM))
    draws = dict(clean)
    draws["first_k1"] = clean["first_k1"].copy()
    draws["first_k1"][2, 0, 1, 3, 0] = np.nan
    result = A.audit(design, draws)
    assert len(result.mismatches) == 1 and not result.ok
    draws = dict(clean)
    draws["chunk0_n_k3"] = clean["chunk0_n_k3"].copy()
    draws["chunk0_n_k3"][2, 1, 4, 2] -= 1  # a fit of chunk 0 failed: w2's 3 means left out
    result = A.audit(design, draws)
    assert result.ok and result.n == n - 3
    kept = result.table[(result.table.m == 40) & (result.table.degree == 3)]
    cell = kept[(kept["lambda"] == 0.4) & (kept.scaling == "none") & (kept.basis == "orthonormal")]
    assert set(cell[cell.coef == 2].what) == {"ŵ of the chunk's first data set"}
    assert len(cell[cell.coef == 1]) == 2 + 3  # two chunks' first data sets


def test_an_audit_with_nothing_to_compare_fails():
    empty = A.AuditResult(pd.DataFrame(columns=A.AUDIT_COLUMNS))
    assert empty.n == 0 and not empty.ok


def test_the_plain_noise_draw_audits_the_conditional_means_alone(normal_case):
    design, draws = normal_case
    result = A.audit(design, draws, noise_draw="plain")
    assert set(result.table.what) == {f"chunk 0 mean of {w}" for w in ("e", "e²", "Var[ŵ|X]")}
    assert result.ok


def test_alpha_is_each_scalings_definition():
    for m, k, lam in [(7, 3, 0.3), (400, 2, 1.7), (1, 1, 0.0)]:
        for s in ("none", "m", "sqrt-m", "k"):
            assert A.alpha(lam, m, k, s) == pytest.approx(_alpha(lam, m, k, s), rel=1e-15)
    assert A.alpha(0.5, 16, 4, "sqrt-m") == 2.0 and A.alpha(0.5, 16, 4, "k") == 2.0


def test_the_chunk_length_halves_above_the_points_limit():
    """256 data sets, halved while a chunk would hold more than 2²² points (docs/engine.md):
    256·16,384 = 2²² exactly stays, one point more halves, 128·32,769 > 2²² halves twice,
    and never below one data set."""
    ms = (1, 16_384, 16_385, 32_769, 1 << 22, 1 << 23)
    assert [A.chunk_length(m) for m in ms] == [_chunk_len(m) for m in ms]
    assert A.chunk_length(16_384) == 256 and A.chunk_length(16_385) == 128  # the edge


def test_the_change_to_powers_of_x_is_the_binomial_expansion():
    center, scale, K = 0.75, 1.25, 4
    T = A._u_to_x_powers(center, scale, K)
    u = np.linspace(-1, 1, 9)
    x = center + scale * u
    np.testing.assert_allclose(
        np.vander(u, K + 1, increasing=True) @ T.T,
        np.vander(x, K + 1, increasing=True),
        rtol=1e-13,
        atol=1e-13,
    )
    assert A._to_x(design_from_dict(UNIFORM)) == (0.75, 1.25)
    assert A._to_x(design_from_dict(NORMAL)) == (1.5, 0.5)


@pytest.mark.parametrize("m, K", [(40, 3), (2, 3), (4, 3), (5, 4), (7, 4)])
def test_the_noise_scores_have_the_gram_matrix_as_covariance(m, K):
    """Φᵤᵀε = L·z (m > K + 1: K + 1 normals) or Φᵤᵀε (m ≤ K + 1: the m noise values): over
    the unit vectors z the scores' outer products add up to ΦᵤᵀΦᵤ (so Cov = ΦᵤᵀΦᵤ, as
    Φᵤᵀε has), including a singular Gram (m ≤ K)."""
    u = np.random.default_rng(m).uniform(-0.3, 1.0, m)
    S = np.stack([A._noise_scores(u, e, K) for e in np.eye(min(m, K + 1))], axis=1)
    gram = np.vander(u, K + 1, increasing=True).T @ np.vander(u, K + 1, increasing=True)
    assert np.isfinite(S).all()
    np.testing.assert_allclose(S @ S.T, gram, rtol=1e-9, atol=1e-9 * np.abs(gram).max())
    if m > K + 1:  # the Cholesky factor itself: lower triangular
        np.testing.assert_array_equal(np.triu(S, 1), 0.0)


def test_both_sufficient_noise_draws_raise_no_warning():
    """The engine's draw of Φᵀε and the audit's plain reimplementation of it run with every
    warning an error: nothing deprecated (NumPy deprecates, then removes) and nothing
    invalid, also on a singular Gram matrix (m ≤ K, which the engine's factor meets only if
    called on it directly, and a G of more points that its eigenvalues must factor)."""
    import warnings

    from study.engine.streams import sufficient_noise

    rng = np.random.default_rng(7)
    for m, K in ((40, 3), (2, 3), (6, 3)):
        u = rng.uniform(-0.3, 1.0, m)
        if m == 6:
            u = np.repeat(u[:2], 3)  # two distinct points: a rank-2 Gram of 6 points
        phi = np.vander(u, K + 1, increasing=True)
        z = rng.standard_normal(K + 1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            engine = sufficient_noise((phi.T @ phi)[None], z[None])[0]
            audit = A._noise_scores(u, z[: min(m, K + 1)], K)
        assert np.isfinite(engine).all() and np.isfinite(audit).all()


@pytest.mark.parametrize("m, K, seed", [(2, 4, 0), (1, 3, 1), (3, 5, 2), (2, 3, 3)])
def test_the_noise_scores_of_a_singular_gram_lie_in_its_range(m, K, seed):
    """Φᵤᵀε lies in the row space of Φᵤ: summed from the m noise values, not a factor of
    the singular ΦᵤᵀΦᵤ with rounding noise blown up by a square root."""
    u = np.random.default_rng(seed).uniform(-1, 1, m)
    phi = np.vander(u, K + 1, increasing=True)
    null = np.linalg.svd(phi)[2][m:]  # the directions Φᵤ maps to 0
    z = np.random.default_rng(seed + 10).standard_normal((m, 20))
    scores = np.stack([A._noise_scores(u, zz, K) for zz in z.T], axis=1)
    assert np.abs(null @ scores).max() <= 1e-12 * np.abs(scores).max()


def test_a_gram_of_coinciding_points_falls_back_to_its_eigenvalues():
    """More points than coefficients, but only two distinct (dyadic, so ΦᵤᵀΦᵤ is exact and
    of rank 2): no Cholesky factor; the scores come from the eigendecomposition, inside
    the range of Φᵤᵀ and with ΦᵤᵀΦᵤ as covariance."""
    u = np.array([-0.5, 0.25, -0.5, 0.25, -0.5, 0.25])
    K = 3
    phi = np.vander(u, K + 1, increasing=True)
    gram = phi.T @ phi
    S = np.stack([A._noise_scores(u, e, K) for e in np.eye(K + 1)], axis=1)
    np.testing.assert_allclose(S @ S.T, gram, atol=1e-12 * np.abs(gram).max())
    null = np.linalg.svd(phi)[2][2:]
    assert np.abs(null @ S).max() <= 1e-12 * np.abs(S).max()


def test_the_penalty_leaves_the_intercept_free_unless_asked():
    np.testing.assert_array_equal(A._penalty(4, False), np.diag([0.0, 1, 1, 1]))
    np.testing.assert_array_equal(A._penalty(3, True), np.eye(3))


@pytest.mark.parametrize("raw", [UNIFORM, NORMAL], ids=["legendre", "hermite"])
def test_the_orthonormal_features_are_orthonormal_and_their_coefficients_agree(raw):
    design = design_from_dict(raw)
    K = 5
    if raw is UNIFORM:
        nodes, weights = np.polynomial.legendre.leggauss(K + 2)
        weights = weights / 2
    else:
        nodes, weights = np.polynomial.hermite_e.hermegauss(K + 2)
        weights = weights / math.sqrt(2 * math.pi)
    psi = A._orthonormal(design, nodes, K)
    np.testing.assert_allclose(psi.T @ (weights[:, None] * psi), np.eye(K + 1), atol=1e-12)
    L = A._orthonormal_coefficients(design, K)
    np.testing.assert_allclose(np.vander(nodes, K + 1, increasing=True) @ L.T, psi, atol=1e-11)
    np.testing.assert_allclose(
        L,
        _to_basis(raw | {"grid": raw["grid"] | {"degree": [K]}}, K + 1, "orthonormal"),
        atol=1e-12,
    )
    assert np.all(np.diag(L) > 0)  # leading coefficients positive: ψ_j, not −ψ_j


@pytest.mark.parametrize("raw", [UNIFORM, NORMAL], ids=["uniform", "normal"])
def test_the_true_coefficients_give_the_line_in_each_basis(raw):
    design = design_from_dict(raw)
    for p in (1, 2, 4):
        for b in ("monomial", "orthonormal"):
            w = A._true(design, p, b)
            if p == 1:
                # the constant alone: the line's value at the centre of x
                center, _ = _center_scale(raw)
                expected = raw["dgp"]["intercept"] + (
                    raw["dgp"]["slope"] * center if b != "monomial" else 0
                )
                assert w == pytest.approx([expected], rel=1e-12)
                continue
            np.testing.assert_allclose(w, _w_star(raw, p, b), rtol=1e-10, atol=1e-12)


def test_the_cells_are_the_identifiable_ones_basis_outermost():
    design = design_from_dict(UNIFORM)
    cells = A._cells(design, 3, 3, "orthonormal")  # λ = 0 and m ≤ k: not identifiable
    assert [(c[1], c[2], c[3], c[5]) for c in cells] == [
        (0.4, 4 + i, s, "orthonormal") for i, s in enumerate(["none", "m", "sqrt-m", "k"])
    ]
    assert [c[0] for c in cells] == [1] * 4
    assert [c[4] for c in cells] == pytest.approx([1.2, 0.4, 0.4 * 3**0.5, 0.4])
    cells = A._cells(design, 9, 3, "monomial")
    assert [(c[0], c[2]) for c in cells] == [(i, j) for i in range(2) for j in range(4)]


def test_the_r_factor_in_pieces_is_that_of_the_whole(monkeypatch):
    x = np.random.default_rng(3).uniform(-0.5, 2.0, (2, 23))
    R = A._r_factor(x, 3)
    phi = np.vander(x[0], 4, increasing=True)
    np.testing.assert_allclose(R[0].T @ R[0], phi.T @ phi, rtol=1e-12)
    monkeypatch.setattr(A, "_PIECE_POINTS", 5)
    Rp = A._r_factor(x, 3)
    np.testing.assert_allclose(
        np.swapaxes(Rp, -1, -2) @ Rp, np.swapaxes(R, -1, -2) @ R, rtol=1e-11
    )
    assert Rp.shape == (2, 4, 4)


@pytest.mark.parametrize("low, high, m", [(0.0, 3.0, 30), (0.05, 0.3, 5)])
def test_the_ridge_solution_bound_and_inverse_follow_their_definitions(low, high, m):
    rng = np.random.default_rng(8)
    x = rng.uniform(low, high, m)
    Phi = np.vander(x, 4, increasing=True)
    y = 1 - x + 0.3 * rng.standard_normal(m)
    R = np.linalg.qr(Phi, mode="r")
    rhs = np.linalg.qr(Phi)[0].T @ y
    alphas = np.array([0.0, 0.5, 40.0])
    D = np.diag([0.0, 1, 1, 1])
    w, reach, cond, inv = A._ridge(R, rhs, alphas, D)
    for i, a in enumerate(alphas):
        G = Phi.T @ Phi + a * D
        np.testing.assert_allclose(w[i], np.linalg.solve(G, Phi.T @ y), rtol=1e-9)
        np.testing.assert_allclose(inv[i] @ inv[i].T, np.linalg.inv(G), rtol=1e-8)
        # cond_S: ‖·‖_F·‖·⁻¹‖_F of [R; √α·D] with its columns scaled to norm 1
        stacked = np.vstack([R, math.sqrt(a) * D])
        S = np.linalg.norm(stacked, axis=0)
        scaled = stacked / S
        expected = np.linalg.norm(scaled) * np.linalg.norm(np.linalg.pinv(scaled))
        assert cond[i] == pytest.approx(expected, rel=1e-8)
        assert cond[i] >= np.linalg.cond(scaled) * (1 - 1e-12)
        np.testing.assert_allclose(reach[i], expected * np.max(S * np.abs(w[i])) / S, rtol=1e-8)


def test_a_comparison_block_judges_each_gap_against_its_allowance():
    cells = [(0, 0.5, 1, "m", 0.5, "monomial"), (1, 2.0, 3, "k", 4.0, "orthonormal")]
    engine = np.array([[1.0, 2.0], [3.0, np.nan]])
    audit_values = np.array([[1.0 + 1e-6, 2.0 - 3e-6], [3.0, 0.0]])
    allowed = np.full((2, 2), 2e-6)
    block = A._block(17, 1, cells, "what", 4, engine, audit_values, allowed)
    assert list(block["ok"]) == [True, False, True, False]  # a NaN record is a mismatch
    assert list(block["lambda"]) == [0.5, 0.5, 2.0, 2.0]
    assert list(block["scaling"]) == ["m", "m", "k", "k"]
    assert list(block["basis"]) == ["monomial", "monomial", "orthonormal", "orthonormal"]
    assert list(block["coef"]) == [0, 1, 0, 1]
    assert set(block["m"]) == {17} and set(block["degree"]) == {1} and set(block["chunk"]) == {4}
    kept = A._block(
        17, 1, cells, "what", 4, engine, audit_values, allowed, [[True, False], [False, True]]
    )
    assert list(kept["coef"]) == [0, 1] and list(kept["ok"]) == [True, False]
    # a gap of exactly the allowance passes
    edge = A._block(
        5, 0, cells[:1], "w", 0, np.array([[1.0]]), np.array([[1.5]]), np.array([[0.5]])
    )
    assert list(edge["ok"]) == [True]


# --- the logistic audit's plain fit --------------------------------------------------------


def test_the_plain_newton_fit_zeroes_the_penalised_gradient():
    """The objective is convex: its minimiser is where the gradient of mean log-loss +
    (c/2)·wᵀDw vanishes, the intercept unpenalised."""
    rng = np.random.default_rng(4)
    x = rng.uniform(-0.5, 2.0, 60)
    y = (rng.random(60) < 1 / (1 + np.exp(-(-0.5 + 1.7 * x)))).astype(float)
    F = np.vander(x, 3, increasing=True)
    D = np.diag([0.0, 1, 1])
    alpha = 0.8
    w, reach = A._logistic_newton(F, y, alpha / 60, D)
    prob = 1 / (1 + np.exp(-(F @ w)))
    grad = F.T @ (prob - y) / 60 + alpha / 60 * D @ w
    assert np.abs(grad).max() < 1e-12
    assert (reach >= 1).all() and np.isfinite(reach).all()


def test_the_plain_newton_fits_rounding_reach_is_in_scaled_coordinates():
    """reach_j = 1 + cond(H)·‖w̃‖∞/s_j, H the Hessian in w̃ = s·w, s the columns' largest
    |entries| (docs/checks.md): on x in [0.1, 0.4] the powers' columns are far below 1."""
    rng = np.random.default_rng(6)
    x = rng.uniform(0.1, 0.4, 80)
    y = (rng.random(80) < 1 / (1 + np.exp(-(-1 + 4 * x)))).astype(float)
    F = np.vander(x, 3, increasing=True)
    D = np.diag([0.0, 1, 1])
    c = 0.05
    w, reach = A._logistic_newton(F, y, c, D)
    s = np.abs(F).max(axis=0)
    G = F / s
    prob = 1 / (1 + np.exp(-(F @ w)))
    H = (G.T * (prob * (1 - prob))) @ G / 80 + c * D / np.outer(s, s)
    expected = 1 + np.linalg.cond(H) * np.abs(s * w).max() / s
    np.testing.assert_allclose(reach, expected, rtol=1e-6)
    grad = F.T @ (prob - y) / 80 + c * D @ w
    assert np.abs(grad).max() < 1e-12


@pytest.mark.parametrize(
    "labels, k, separable",
    [
        ([0, 0, 1, 1], 1, True),
        ([0, 1, 0, 1], 2, False),
        ([0, 1, 0, 1], 3, True),
        ([1, 0, 0, 1], 2, True),
        ([1, 0, 0, 1], 1, False),
    ],
)
def test_separation_is_at_most_k_label_changes_along_sorted_x(labels, k, separable):
    u = np.array([0.3, -0.7, 0.9, 0.1])
    order = np.argsort(u)
    y = np.empty(4)
    y[order] = labels  # the labels along the sorted points
    assert A._separable_plain(u, y, k) is separable


def test_tied_points_are_refused_by_the_separation_rule():
    with pytest.raises(ValueError, match="tied x"):
        A._separable_plain(np.array([0.1, 0.1, 0.5]), np.array([0.0, 1.0, 1.0]), 1)


# --- the check -------------------------------------------------------------------------------

CHECK_RAW = small_design(
    replications=30,
    **{
        "dgp.noise_sd": 0.7,
        "dgp.intercept": -0.4,
        "dgp.x": {"distribution": "uniform", "low": -0.5, "high": 2.0},
        "grid.m": [3, 12],
        "grid.degree": [1],
        "grid.lambda": [0.0, 0.5],
        "grid.scaling": ["none", "m"],
        "output.keep_draws": 0,
    },
)


def _tables(seed=0):
    """summary and risk tables of CHECK_RAW's cells: every z-value within ±1.5, every
    Rao–Blackwell value within its allowance of the theory; λ = 0 the same numbers under
    every scaling, as one cell is."""
    rows, risk = [], []
    for m in CHECK_RAW["grid"]["m"]:
        for lam in CHECK_RAW["grid"]["lambda"]:
            for s in CHECK_RAW["grid"]["scaling"]:
                # λ = 0: one stream for every scaling (the same cell, the same numbers)
                cell = (
                    m,
                    round(10 * lam),
                    0 if lam == 0 else 1 + CHECK_RAW["grid"]["scaling"].index(s),
                )
                r = np.random.default_rng([seed, *cell])
                fm = 2.0 if (m == 3 and lam == 0) else math.inf
                for coef in (0, 1):
                    rb = r.normal(0, 0.1)
                    se = 0.01 + 0.01 * r.random()
                    rows.append(
                        dict(
                            m=m,
                            degree=1,
                            **{"lambda": lam},
                            scaling=s,
                            basis="monomial",
                            coef=coef,
                            true=[-0.4, 2.0][coef],
                            bias=rb + r.uniform(-1.5, 1.5) * se,
                            bias_rb=rb,
                            bias_rb_mcse=se / 2,
                            bias_diff_mcse=se,
                            bias_asym1=rb + r.uniform(-1, 1) * 0.001,
                            bias_asym1_bound=0.002,
                            var=0.5 + r.uniform(-1.5, 1.5) * 0.02,
                            var_rb=0.5,
                            var_rb_mcse=0.01,
                            var_diff_mcse=0.02,
                            var_asym=0.5 * (1 + r.uniform(-0.01, 0.01)),
                            asym_leverage=0.6 if m == 3 else 0.2,
                            finite_moments=fm,
                            status="ok",
                        )
                    )
                risk.append(
                    dict(
                        m=m,
                        degree=1,
                        **{"lambda": lam},
                        scaling=s,
                        basis="monomial",
                        risk=0.3 + r.uniform(-1.5, 1.5) * 0.01,
                        risk_rb=0.3,
                        risk_rb_mcse=0.005,
                        risk_diff_mcse=0.01,
                        risk_asym=0.3 * (1 + r.uniform(-0.01, 0.01)),
                        asym_leverage=0.6 if m == 3 else 0.2,
                        finite_moments=fm,
                        status="ok",
                    )
                )
    return pd.DataFrame(rows), pd.DataFrame(risk)


@pytest.fixture(scope="module")
def check_inputs():
    return reference_draws(CHECK_RAW)


@pytest.fixture(scope="module")
def clean_check(tmp_path_factory, check_inputs):
    """The check of the unmoved tables, once for the tests that move one value from it."""
    summary, risk = _tables()
    return C.check(_folder(tmp_path_factory.mktemp("clean"), check_inputs, summary, risk))


def _folder(tmp_path, draws, summary, risk, raw=CHECK_RAW):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "manifest.json").write_text(json.dumps({"design": raw}))
    np.savez(tmp_path / "draws.npz", **draws)
    summary.to_csv(tmp_path / "summary.csv", index=False)
    risk.to_csv(tmp_path / "risk.csv", index=False)
    return tmp_path


def test_the_check_table_is_the_rule_written_out(tmp_path, check_inputs):
    summary, risk = _tables()
    # a difference without a standard error has no z, and is not counted
    summary.loc[
        (summary.m == 12)
        & (summary["lambda"] == 0.5)
        & (summary.scaling == "none")
        & (summary.coef == 0),
        "bias_diff_mcse",
    ] = 0.0
    result = C.check(_folder(tmp_path, check_inputs, summary, risk))
    t = result.table
    assert t.z.isna().sum() == 1
    assert list(t.columns) == C.CHECK_COLUMNS
    assert len(t) == 2 * len(summary) + len(risk)
    bias = t[t.measure == "bias"].reset_index(drop=True)
    np.testing.assert_allclose(bias.mc, summary.bias)
    np.testing.assert_allclose(bias.rb, summary.bias_rb)
    np.testing.assert_allclose(bias.rb_mcse, summary.bias_rb_mcse)
    np.testing.assert_allclose(
        bias.z,
        (summary.bias - summary.bias_rb)
        / summary.bias_diff_mcse.where(summary.bias_diff_mcse > 0),
    )
    np.testing.assert_allclose(bias.asym, summary.bias_asym1)
    gap = summary.bias_rb - summary.bias_asym1
    np.testing.assert_allclose(bias.rel_gap_asym, gap / summary.bias_asym1.abs())
    np.testing.assert_allclose(bias.se_gap_asym, gap / summary.bias_rb_mcse)
    # λ = 0 counted once: at m = 12 its rows under 'none' repeat those under 'm' (2 biases,
    # 2 variances, 1 risk); at m = 3 they are flagged (finite_moments 2)
    assert result.n_z == (t.z.notna() & (t.flag == "")).sum() - 5
    # the bias's remainder: 3 × the O(1/m²) term + 10⁻⁸ of the largest |w*| of the cell (≥ 1)
    np.testing.assert_allclose(bias.asym_remainder, 3 * 0.002 + 1e-8 * 2.0, rtol=1e-12)
    var = t[t.measure == "var"].reset_index(drop=True)
    np.testing.assert_allclose(var.z, (summary["var"] - summary.var_rb) / summary.var_diff_mcse)
    np.testing.assert_allclose(var.rb_mcse, summary.var_rb_mcse)
    # the variance's: 3·E[h²]/m of the theory's value, none where the step exceeds 0.5
    small = summary.asym_leverage > 0.5
    assert var.asym_remainder[small].isna().all()
    np.testing.assert_allclose(
        var.asym_remainder[~small], (3 * 0.2 * summary.var_asym.abs())[~small]
    )
    r = t[t.measure == "risk"].reset_index(drop=True)
    assert (r.coef == -1).all()
    np.testing.assert_allclose(r.z, (risk.risk - risk.risk_rb) / risk.risk_diff_mcse)
    np.testing.assert_allclose(
        r.asym_remainder[risk.asym_leverage <= 0.5],
        3 * 0.2 * risk.risk_asym[risk.asym_leverage <= 0.5],
    )
    # flags: order 2 leaves out the bias (needs > 2) and the variance and risk (> 4)
    low = t.finite_moments == 2.0
    assert (t.flag[low & (t.measure == "bias")] == "moments of order 2 infinite").all()
    assert (t.flag[low & (t.measure != "bias")] == "moments of order 4 infinite").all()
    assert (t.flag[~low] == "").all()
    # counted once each: λ = 0 is one cell under both scalings
    counted = t[(t.flag == "") & t.z.notna()].drop_duplicates(
        ["m", "degree", "coef", "measure", "mc", "rb"]
    )
    assert result.n_z == len(counted)
    assert result.max_abs_z == pytest.approx(counted.z.abs().max())
    assert result.share_beyond_2 == pytest.approx((counted.z.abs() > 2).mean())
    flagged = t[low].drop_duplicates(["m", "degree", "coef", "measure"])
    assert result.n_flagged == len(flagged) == 5
    assert result.largest_m == 12
    # theory: compared where m is large enough; the allowance is z_limit(n)·SE + remainder
    compared = counted[counted.asym_remainder.notna()]
    assert result.n_bias == (compared.measure == "bias").sum()
    assert result.n_asym == (compared.measure != "bias").sum()
    assert result.n_small_m == counted.asym_remainder.isna().sum() > 0
    limit = C.z_limit(len(compared))
    assert result.asym_z_limit == limit
    allowed = t.loc[compared.index, "asym_allowed"]
    np.testing.assert_allclose(allowed, limit * compared.rb_mcse + compared.asym_remainder)
    assert t.asym_allowed.drop(compared.index).isna().all()
    assert result.ok and result.n_bias_fail == result.n_asym_fail == 0 and result.worst_asym == ""
    assert result.summary_line().startswith("PASS: audit from the seeds: ")


def test_the_share_beyond_2_is_reported_not_judged(tmp_path, check_inputs):
    summary, risk = _tables()
    for coef, z in [(0, 2.6), (1, -2.2)]:  # two counted z-values beyond 2, below the limit
        i = summary.index[
            (summary.m == 12)
            & (summary["lambda"] == 0.5)
            & (summary.scaling == "none")
            & (summary.coef == coef)
        ][0]
        summary.loc[i, "bias"] = summary.loc[i, "bias_rb"] + z * summary.loc[i, "bias_diff_mcse"]
    # and one of exactly 2, which is not beyond it: (1 − 0.5)/0.25
    i = summary.index[
        (summary.m == 12)
        & (summary["lambda"] == 0.5)
        & (summary.scaling == "m")
        & (summary.coef == 0)
    ][0]
    summary.loc[i, ["bias", "bias_rb", "bias_diff_mcse", "bias_asym1"]] = [1.0, 0.5, 0.25, 0.5]
    result = C.check(_folder(tmp_path, check_inputs, summary, risk))
    assert result.share_beyond_2 == pytest.approx(2 / result.n_z)
    assert result.max_abs_z == pytest.approx(2.6)
    assert result.ok
    assert (
        f", {100 * 2 / result.n_z:.1f} % beyond 2 (4.6 % if independent; reported, not judged); "
        in result.summary_line()
    )


def _shifted(summary, column, by):
    out = summary.copy()
    i = out.index[(out.m == 12) & (out["lambda"] == 0.5) & (out.scaling == "m") & (out.coef == 1)][
        0
    ]
    out.loc[i, column] += by(out.loc[i])
    return out


@pytest.mark.parametrize("sign", [1, -1])
def test_the_largest_z_fails_the_check_just_beyond_its_limit_either_way(
    tmp_path, check_inputs, clean_check, sign
):
    summary, risk = _tables()
    n_z = clean_check.n_z
    limit = C.z_limit(n_z)  # the shifted z replaces one of the same n
    for factor, ok in [(limit - 0.02, True), (limit + 0.02, False)]:
        moved = _shifted(
            summary, "bias", lambda r, f=factor: r.bias_rb - r.bias + sign * f * r.bias_diff_mcse
        )
        result = C.check(_folder(tmp_path / f"{factor}", check_inputs, moved, risk))
        assert result.n_z == n_z
        assert result.max_abs_z == pytest.approx(factor)
        assert result.ok is ok
        line = result.summary_line()
        assert line.startswith("PASS: " if ok else "FAIL: ")
        assert (
            f"max |z| = {factor:.2f} (limit {limit:.2f}: Bonferroni over {n_z:,}, "
            "false alarms ≤ 1 % however they correlate)" in line
        )


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("measure", ["bias", "var"])
def test_rao_blackwell_off_the_theory_fails_either_way_and_is_named(
    tmp_path, check_inputs, clean_check, sign, measure
):
    summary, risk = _tables()
    clean = clean_check
    row = clean.table[
        (clean.table.measure == measure)
        & (clean.table.m == 12)
        & (clean.table["lambda"] == 0.5)
        & (clean.table.scaling == "m")
        & (clean.table.coef == 1)
    ].iloc[0]
    asym_col = "bias_asym1" if measure == "bias" else "var_asym"
    for excess, ok in [(0.98, True), (1.02, False)]:
        # Rao–Blackwell and Monte Carlo moved together (z unchanged) to excess × the allowance
        target = row.asym + sign * excess * row.asym_allowed
        moved = summary.copy()
        i = moved.index[
            (moved.m == 12) & (moved["lambda"] == 0.5) & (moved.scaling == "m") & (moved.coef == 1)
        ][0]
        rb_col = f"{measure}_rb"
        delta = target - moved.loc[i, rb_col]
        moved.loc[i, [rb_col, measure]] += delta
        # the theory stays put (read back from summary.csv: equal to rounding)
        assert moved.loc[i, asym_col] == pytest.approx(row.asym, rel=1e-12)
        result = C.check(_folder(tmp_path / f"{excess}", check_inputs, moved, risk))
        assert result.max_abs_z == pytest.approx(clean.max_abs_z)
        assert result.ok is ok, result.summary_line()
        fails = (result.n_bias_fail, result.n_asym_fail)
        if ok:
            assert fails == (0, 0) and result.worst_asym == ""
            continue
        assert fails == ((1, 0) if measure == "bias" else (0, 1))
        assert result.worst_asym.startswith(
            f" (worst: {measure} at m = 12, degree 1, λ = 0.5, m, w1: Rao–Blackwell "
        )
        assert f"theory {row.asym:.6g} ± {row.asym_allowed:.2g})" in result.worst_asym
        line = result.summary_line()
        assert line.startswith("FAIL: ") and line.endswith(result.worst_asym)
        n_b, n_a = result.n_bias, result.n_asym
        if measure == "bias":
            assert (
                f"bias (with its 1/m term) {n_b - 1} of {n_b} and variance and risk "
                f"{n_a} of {n_a} within" in line
            )
        else:
            assert (
                f"bias (with its 1/m term) {n_b} of {n_b} and variance and risk "
                f"{n_a - 1} of {n_a} within" in line
            )


@pytest.mark.parametrize("status", ["non-finite", "negative variance"])
def test_an_impossible_cell_fails_the_check_and_is_named(tmp_path, check_inputs, status):
    summary, risk = _tables()
    at = (summary.m == 12) & (summary["lambda"] == 0.5) & (summary.scaling == "none")
    summary.loc[at, "status"] = status
    result = C.check(_folder(tmp_path, check_inputs, summary, risk))
    assert result.impossible == [f"m = 12, degree 1, λ = 0.5, none ({status})"]
    assert not result.ok
    assert result.summary_line().endswith(
        "; 1 cells with non-finite or impossible values, e.g. "
        f"m = 12, degree 1, λ = 0.5, none ({status})"
    )


def test_the_verdict_needs_the_audit(tmp_path, check_inputs, monkeypatch):
    summary, risk = _tables()
    folder = _folder(tmp_path, check_inputs, summary, risk)
    draws = dict(check_inputs)
    draws["first_k1"] = draws["first_k1"].copy()
    draws["first_k1"][1, 0, 1, 0, 1] += 1e-3
    np.savez(folder / "draws.npz", **draws)
    result = C.check(folder)
    assert not result.audit.ok and not result.ok
    line = result.summary_line()
    assert line.startswith("FAIL: audit from the seeds: ")
    # the monomial basis is not named
    assert (
        "; first mismatch: m = 12, degree 1, λ = 0.5, none, w1 "
        "(ŵ of the chunk's first data set): engine " in line
    )
    assert result.max_abs_z <= C.z_limit(result.n_z)
    result.audit = None
    assert not result.ok and result.summary_line().startswith("FAIL: no audit; ")


def test_the_z_limit_is_the_bonferroni_closed_form():
    """n·P(|Z| > limit) = rate: n·erfc(limit/√2) = rate, the documented examples."""
    for n in (1, 2, 37, 612, 9096):
        assert n * math.erfc(C.z_limit(n) / math.sqrt(2)) == pytest.approx(0.01, rel=1e-9)
    assert round(C.z_limit(612), 2) == 4.31 and round(C.z_limit(9096), 2) == 4.87  # docs
    assert C.z_limit(0) == C.z_limit(1) == pytest.approx(NormalDist().inv_cdf(0.995))
    assert 40 * math.erfc(C.z_limit(40, rate=0.2) / math.sqrt(2)) == pytest.approx(0.2, rel=1e-9)
    assert C.FALSE_ALARM == 0.01 and C.STEP_TOL == 3.0


def _result(**changes):
    audit = A.AuditResult(pd.DataFrame({c: [1] for c in A.AUDIT_COLUMNS}).assign(ok=True))
    base = dict(
        table=pd.DataFrame(),
        n_z=100,
        max_abs_z=1.0,
        share_beyond_2=0.03,
        n_flagged=2,
        largest_m=50,
        audit=audit,
        n_bias=10,
        n_asym=12,
        n_small_m=3,
        asym_z_limit=3.5,
    )
    return C.CheckResult(**(base | changes))


def test_the_gaussian_verdict_rule_and_its_line():
    assert _result().ok
    limit = C.z_limit(100)
    assert _result(max_abs_z=limit).ok and not _result(max_abs_z=limit + 1e-9).ok
    assert not _result(n_z=0).ok
    assert not _result(n_bias_fail=1).ok and not _result(n_asym_fail=1).ok
    assert not _result(impossible=["x"]).ok
    line = _result(share_beyond_2=0.0312, n_bias_fail=1, n_asym_fail=2).summary_line()
    assert line.startswith(
        "FAIL: audit from the seeds: 1 of 1 recomputed numbers match the engine's; "
    )
    assert (
        "; 100 z-values (MC vs Rao–Blackwell), max |z| = 1.00 "
        f"(limit {limit:.2f}: Bonferroni over 100, " in line
    )
    assert (
        "3.1 % beyond 2 (4.6 % if independent; reported, not judged); "
        "2 comparisons left out for infinite moments" in line
    )
    assert "bias (with its 1/m term) 9 of 10 and variance and risk 10 of 12 within 3.50 SE" in line
    assert (
        "(3× the O(1/m²) term of the bias, 3·E[h²]/m of a variance or risk); "
        "3 left out where m is too small" in line
    )


def test_the_logistic_verdict_rule_and_its_line():
    kw = dict(family="logistic", n_z=0, max_abs_z=math.nan)
    assert _result(**kw).ok
    assert not _result(**kw, n_bias=0, n_asym=0).ok
    assert _result(**kw, n_bias=0).ok and _result(**kw, n_asym=0).ok
    assert not _result(**kw, n_bias_fail=1).ok and not _result(**kw, n_asym_fail=1).ok
    assert not _result(**kw, impossible=["c"]).ok and not _result(**kw, audit=None).ok
    bad = A.AuditResult(pd.DataFrame({c: [1] for c in A.AUDIT_COLUMNS}).assign(ok=False))
    assert not _result(**kw, audit=bad).ok
    line = _result(**kw, n_bias_fail=2).summary_line()
    assert line.startswith("FAIL: audit from the seeds: 1 of 1 ")
    assert (
        "bias (with its 1/m term) 8 of 10 and variance and risk 12 of 12 "
        "within 3.50 MCSE (Bonferroni)" in line
    )
    assert "3 left out where m is too small" in line and "z-values" not in line
    empty = _result(**kw, n_bias=0, n_asym=0, impossible=["m = 5 (non-finite)"]).summary_line()
    assert empty.startswith("FAIL: ")
    assert (
        "; nothing compared: every m of the design is too small for the expansion, "
        "so the check cannot pass" in empty
    )
    assert empty.endswith(
        "; 1 cells with non-finite or impossible values, e.g. m = 5 (non-finite)"
    )


def test_unique_comparisons_count_lambda_zero_and_its_risk_once():
    t = pd.DataFrame(
        dict(
            m=[5, 5, 5, 5, 5, 9],
            degree=1,
            coef=[1, 1, -1, -1, 1, 1],
            measure=["bias", "bias", "risk", "risk", "bias", "bias"],
            mc=[0.1, 0.1, 0.2, 0.2, 0.1, 0.1],
            rb=[0.3, 0.3, 0.4, 0.4000001, 0.3, 0.3],
            **{"lambda": [0.0, 0.0, 0.0, 0.0, 0.5, 0.0]},
        )
    )
    # λ = 0 under another scaling: the same; its risk in another basis: the same up to rounding;
    # a λ > 0 cell with equal numbers, and another m, count
    assert list(C.unique_comparisons(t)) == [True, False, True, False, False, True]
    t["flag"] = ["", "", "", "", "", "moments of order 2 infinite"]
    t["z"] = [1.0, 1.0, np.nan, 1.0, 1.0, 1.0]
    assert list(C.counted_comparisons(t)) == [True, False, False, False, False, False]
    assert list(C.counted_comparisons(t, need_z=False)) == [True, False, True, False, False, False]


def test_the_check_file_and_the_printed_table(tmp_path, clean_check):
    _, risk = _tables()
    result = clean_check
    path = C.write_check(result, tmp_path)
    assert path == tmp_path / "check.csv"
    back = pd.read_csv(path, keep_default_na=False, na_values=[""])
    assert list(back.columns) == C.CHECK_COLUMNS and len(back) == len(result.table)
    np.testing.assert_allclose(back.z, result.table.z)
    text = C.format_table(result.table)
    lines = text.splitlines()
    assert len(lines) == len(result.table) + 1
    assert lines[0].split()[:6] == C.KEYS
    risk_lines = [line for line in lines[1:] if " risk " in line]
    assert len(risk_lines) == len(risk) and all(line.split()[5] == "-" for line in risk_lines)
    assert all(line.split()[5] in ("0", "1") for line in lines[1:] if " risk " not in line)


# --- the logistic family: the audit's labels and separation rule, the check without z ------

LOGISTIC = {
    "name": "logistic-rules",
    "seed": 11,
    "replications": 300,  # two chunks of small m
    "model": {"family": "logistic"},
    "dgp": {
        "intercept": -0.5,
        "slope": 1.7,
        "x": {"distribution": "uniform", "low": -0.5, "high": 2.0},
    },
    "grid": {
        "m": [4, 30],
        "degree": [1, 2],
        "lambda": [0.0, 0.5],
        "scaling": ["none", "m"],
        "basis": ["monomial", "orthonormal"],
        "penalize_intercept": False,
    },
    "output": {"keep_draws": 0},
}


def _newton_reference(F, y, c, D):
    """argmin mean log-loss + (c/2)·wᵀDw by damped Newton on the unscaled features, or None
    where the iterates run away (no minimiser)."""
    w = np.zeros(F.shape[1])

    def f(w):
        eta = F @ w
        return np.mean(np.logaddexp(0, eta) - y * eta) + 0.5 * c * w @ D @ w

    for _ in range(200):
        prob = 0.5 * (1 + np.tanh(F @ w / 2))
        grad = F.T @ (prob - y) / len(y) + c * D @ w
        hess = (F.T * (prob * (1 - prob))) @ F / len(y) + c * D
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while f(w - t * step) > f(w) + 1e-14 * abs(f(w)) and t > 1e-10:
            t /= 2
        w = w - t * step
        if np.abs(w).max() > 1e3:
            return None
        if t == 1 and np.abs(step).max() < 1e-13 * max(1, np.abs(w).max()):
            break
    return w


def logistic_reference_draws(raw):
    """first_k* of a correct engine: labels y = [r < 1/(1 + exp(−(β0 + β1·x)))], r uniform
    from the noise stream; no estimate where λ = 0 and the labels change at most k times along
    the sorted x (separation), or where the labels are all equal and the intercept is free."""
    ms, lams, cols = raw["grid"]["m"], raw["grid"]["lambda"], _columns(raw)
    out = {}
    for k in raw["grid"]["degree"]:
        p = k + 1
        n_chunks = [-(-raw["replications"] // _chunk_len(m)) for m in ms]
        first = np.full((len(ms), max(n_chunks), len(lams), len(cols), p), np.nan)
        for i_m, m in enumerate(ms):
            for c in range(n_chunks[i_m]):
                rng_x, rng_r = _streams(raw, m, c)
                u = rng_x.uniform(-1, 1, m)
                prob = 1 / (1 + np.exp(-_line(raw, u)))
                y = (rng_r.random(m) < prob).astype(float)
                changes = np.count_nonzero(np.diff(y[np.argsort(u)]))
                for i_l, lam in enumerate(lams):
                    if lam == 0 and m <= k:
                        continue
                    if (lam == 0 and changes <= k) or (lam > 0 and changes == 0):
                        continue  # no minimiser: NaN
                    for i_c, (b, s) in enumerate(cols):
                        fit = _newton_reference(
                            _features(raw, u, p, b), y, _alpha(lam, m, k, s) / m, _penalty(raw, p)
                        )
                        first[i_m, c, i_l, i_c] = np.nan if fit is None else fit
        out[f"first_k{k}"] = first
    return out


@pytest.fixture(scope="module")
def logistic_case():
    return design_from_dict(LOGISTIC), logistic_reference_draws(LOGISTIC)


def test_the_logistic_audit_recomputes_the_first_fits_and_their_absence(logistic_case):
    design, draws = logistic_case
    result = A.audit(design, draws)
    t = result.table
    assert set(t.what) == {"ŵ of the chunk's first data set"}  # no conditional moments
    assert result.n == _expected_rows(LOGISTIC)[0]
    none = t.engine.isna()
    assert none.any() and (~none).any()  # separation occurs at m = 4, not everywhere
    assert t.audit[none].isna().all()  # the audit finds no minimiser exactly there
    fitted = t[~none]
    assert (
        (fitted.audit - fitted.engine).abs() <= 1e-9 * np.maximum(1, fitted.engine.abs())
    ).all()
    assert result.ok, result.line()
    # a fit 10⁻⁸ off is named; an estimate where there is no minimiser is a mismatch too
    moved = dict(draws)
    moved["first_k2"] = draws["first_k2"].copy()
    i = np.argwhere(np.isfinite(draws["first_k2"][1, 1, 1]))[0]
    moved["first_k2"][1, 1, 1][tuple(i)] *= 1 + 1e-8
    bad = A.audit(design, moved).mismatches
    assert len(bad) == 1
    row = bad.iloc[0]
    assert (row.m, row.degree, row["lambda"], row.chunk) == (30, 2, 0.5, 1)
    assert (row.basis, row.scaling, row.coef) == (*_columns(LOGISTIC)[i[0]], i[1])
    moved = dict(draws)
    moved["first_k1"] = draws["first_k1"].copy()
    where = np.argwhere(np.isnan(draws["first_k1"][0, :, 0]))[0]  # m = 4, λ = 0, separable
    moved["first_k1"][0, where[0], 0, where[1], where[2]] = 0.25
    bad = A.audit(design, moved).mismatches
    assert len(bad) == 1 and bad.iloc[0].m == 4 and bad.iloc[0]["lambda"] == 0.0


def _logistic_tables():
    """The gaussian tables made logistic: no Rao–Blackwell columns, the Monte Carlo value
    and its MCSE compared with the theory directly."""
    summary, risk = _tables()
    summary = summary.drop(
        columns=[
            "bias_rb",
            "bias_rb_mcse",
            "bias_diff_mcse",
            "var_rb",
            "var_rb_mcse",
            "var_diff_mcse",
        ]
    )
    summary["bias_mcse"], summary["var_mcse"] = 0.01, 0.02
    summary["bias_asym1"] = summary.bias + 0.001
    summary["var_asym"] = summary["var"] * 1.002
    risk = risk.drop(columns=["risk_rb", "risk_rb_mcse", "risk_diff_mcse"]).assign(risk_mcse=0.01)
    risk["risk_asym"] = risk.risk * 1.002
    return summary, risk


@pytest.fixture(scope="module")
def logistic_check_draws():
    return logistic_reference_draws(
        CHECK_RAW
        | {
            "model": {"family": "logistic"},
            "dgp": {k: v for k, v in CHECK_RAW["dgp"].items() if k != "noise_sd"},
        }
    )


@pytest.mark.parametrize("sign", [1, -1])
def test_the_logistic_check_compares_monte_carlo_with_theory_and_fails_either_way(
    tmp_path, logistic_check_draws, sign
):
    raw = CHECK_RAW | {
        "model": {"family": "logistic"},
        "dgp": {k: v for k, v in CHECK_RAW["dgp"].items() if k != "noise_sd"},
    }
    summary, risk = _logistic_tables()
    clean = C.check(_folder(tmp_path / "clean", logistic_check_draws, summary, risk, raw))
    t = clean.table
    assert t.z.isna().all() and clean.family == "logistic"
    # no z-values, so none counted: the comparisons are the theory's
    assert clean.n_z == 0 and math.isnan(clean.max_abs_z) and math.isnan(clean.share_beyond_2)
    np.testing.assert_allclose(t[t.measure == "bias"].rb, summary.bias)
    np.testing.assert_allclose(t[t.measure == "bias"].rb_mcse, 0.01)
    assert clean.n_bias > 0 and clean.n_asym > 0
    assert clean.ok, clean.summary_line()
    assert clean.summary_line().startswith("PASS: audit from the seeds: ")
    # comparisons were made: the line does not say there were none
    assert "nothing compared" not in clean.summary_line()
    # one bias moved 8 MCSE past its theory, up or down
    i = summary.index[
        (summary.m == 12)
        & (summary["lambda"] == 0.5)
        & (summary.scaling == "none")
        & (summary.coef == 1)
    ][0]
    moved = summary.copy()
    moved.loc[i, "bias"] = (
        moved.loc[i, "bias_asym1"] + sign * (clean.asym_z_limit + 8) * 0.01 + sign * 3 * 0.002
    )
    result = C.check(_folder(tmp_path / "moved", logistic_check_draws, moved, risk, raw))
    assert not result.ok and result.n_bias_fail == 1 and result.n_asym_fail == 0
    assert result.worst_asym.startswith(
        " (worst: bias at m = 12, degree 1, λ = 0.5, none, w1: Monte Carlo "
    )
