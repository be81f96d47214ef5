"""The compiled kernel against LAPACK and against the engine's NumPy path on the same data."""

import numpy as np
import pytest

from study.basis import hankel_index
from study.conditional import (
    DECLINES,
    FIT_COUNTS,
    SolverDeclined,
    batch_moments,
    pencil_shift,
    quantities,
)
from study.design import design_from_dict
from study.engine.kernel import (
    NOT_FINITE,
    NOT_POSITIVE_DEFINITE,
    OK,
    _factorise,
    _jacobi,
    pencil_moments,
)
from study.engine.streams import chunk_power_sums
from study.engine.tasks import alpha_grid
from study.moments import CoMoments

from conftest import small_design


def _symmetric_batch(rng, p, n):
    """Positive semi-definite matrices with the hard cases: rank-deficient, repeated
    eigenvalues, already diagonal, and eigenvalues spread over twelve decades."""
    Q = np.linalg.qr(rng.standard_normal((n, p, p)))[0]
    lam = 10.0 ** rng.uniform(-12, 0, (n, p))
    lam[0::4, 0] = 0.0  # a zero eigenvalue (the unpenalised intercept)
    lam[1::4, :] = 0.5  # all equal
    lam[2::4, : p // 2] = 2.0  # a repeated one
    C = np.einsum("nij,nj,nkj->nik", Q, lam, Q)
    C[3] = np.diag(np.arange(p, dtype=float))  # diagonal: nothing to rotate
    return (C + np.swapaxes(C, 1, 2)) / 2


@pytest.mark.parametrize("p", [1, 2, 3, 5, 8, 13])
def test_jacobi_eigendecomposition_matches_lapack(p):
    rng = np.random.default_rng(p)
    C = _symmetric_batch(rng, p, 40)
    work = np.ascontiguousarray(np.moveaxis(C, 0, -1))  # (p, p, n): data sets last
    V = np.empty_like(work)
    assert _jacobi(work, V, np.empty((3, C.shape[0])))
    eig = np.einsum("iin->ni", work)
    V = np.moveaxis(V, -1, 0)
    ref = np.linalg.eigh(C)[0]
    scale = np.abs(ref).max(axis=1, keepdims=True)
    assert np.all(np.abs(np.sort(eig, axis=1) - ref) <= 1e-14 * scale + 1e-300)
    # C V = V Λ and VᵀV = I
    resid = np.einsum("nij,njk->nik", C, V) - V * eig[:, None, :]
    assert np.abs(resid).max(axis=(1, 2)).max() <= 1e-14 * scale.max()
    eye = np.broadcast_to(np.eye(p), C.shape)
    np.testing.assert_allclose(np.einsum("nji,njk->nik", V, V), eye, atol=1e-13)


CASES = [
    # (x distribution, m, degree, penalize_intercept, tolerance); the tolerance is set by
    # the conditioning: the kernel is at 1e-13 or better on the first two and the last
    # two, 7e-11 on [−3, 1] and 4e-8 to 1.7e-7 at degree 10 on [0, 10] (cond(G) ~ 1e13
    # there: the last bits of the power sums, which engine version 7 sums in another order,
    # move it by that much). At m = 4 < p = 8 the kernel sets to 0 what is 0 in G's null
    # space (engine version 11); the direct solves keep its rounding there, about 4e-12
    # of the risk's scale at α₀ = 1.7e-3 (tests/test_theory.py holds both to 60 digits)
    ({"distribution": "uniform", "low": -1.0, "high": 1.0}, 40, 3, False, 1e-12),
    ({"distribution": "uniform", "low": -1.0, "high": 1.0}, 4, 7, False, 2e-11),  # shifted
    ({"distribution": "uniform", "low": 0.0, "high": 10.0}, 25, 10, False, 5e-7),  # B ≠ I
    ({"distribution": "uniform", "low": -3.0, "high": 1.0}, 12, 5, True, 1e-9),
    ({"distribution": "normal", "mean": 0.5, "sd": 2.0}, 30, 4, False, 1e-12),
    ({"distribution": "uniform", "low": -1.0, "high": 1.0}, 200, 1, True, 1e-12),
]


@pytest.mark.parametrize(("x", "m", "degree", "pen", "tol"), CASES)
def test_kernel_equals_direct_solves(x, m, degree, pen, tol):
    """Means and co-moment sums of every quantity, and the kept ŵ, against an LU solve of
    (G + αP) per α on the same data, summarised by CoMoments.from_samples."""
    grid = {"grid.m": [m], "grid.degree": [degree], "grid.lambda": [0.0, 0.003, 0.1, 1.0, 30.0]}
    grid["grid.penalize_intercept"] = pen
    dgp = {"dgp.x": x, "dgp.noise_sd": 0.7}
    raw = small_design(**grid, **dgp, replications=300, block_size=300)
    design = design_from_dict(raw)
    power_sums, T = chunk_power_sums(design, m, 0, degree)
    setup = design.standard_basis(degree)
    assert setup.use_pencil
    alphas = np.unique(alpha_grid(design, m, degree))
    if m <= degree:
        alphas = alphas[alphas > 0]
    fast = batch_moments(power_sums, T, setup, alphas, design.noise_sd, keep=9, solver="compiled")
    G, b = power_sums[:, hankel_index(degree)], T[:, : degree + 1]
    coef, risk, w_hat = quantities(G, b, setup, alphas, design.noise_sd, solver="direct")
    for f, q in ((fast.coef, coef), (fast.risk, risk)):
        ref = CoMoments.from_samples(q)
        np.testing.assert_array_equal(f.n, ref.n)
        cells = tuple(range(ref.mean.ndim - 1))
        # each quantity relative to its scale over all cells (e is ~1e-16 at λ = 0); the
        # co-moment sums relative to √(M_aa·M_bb)
        scale = np.abs(ref.mean).max(axis=cells)
        assert np.all(np.abs(f.mean - ref.mean) <= tol * scale)
        sd = np.sqrt(np.diagonal(ref.M, axis1=-2, axis2=-1).max(axis=cells))
        assert np.all(np.abs(f.M - ref.M) <= tol * np.outer(sd, sd))
    np.testing.assert_array_equal(fast.n_ok, np.full(alphas.size, power_sums.shape[0]))
    np.testing.assert_allclose(fast.w_kept, w_hat[:9], rtol=tol, atol=tol * np.abs(w_hat).max())
    # the tail counts: |ŵ_j − w*_j| above 1, 10, 100, counted from the direct solves
    error = np.abs(w_hat - setup.w_star)  # (n, A, p)
    expected = np.stack([(error > t).sum(axis=0) for t in (1.0, 10.0, 100.0)], axis=-1)
    np.testing.assert_array_equal(fast.tails, expected)


def _kernel_status(power_sums, T, setup, alphas):
    k, A, p = setup.degree, alphas.size, setup.degree + 1
    c = np.ascontiguousarray
    sums = (c(power_sums[:, : 2 * k + 1].T), c(T[:, :p].T))
    penalty = (pencil_shift(alphas), alphas, setup.penalty, c(setup.F))
    dgp = (setup.v_star, setup.w_star, setup.sigma, 1.0)
    out = [np.empty(shape) for shape in ((A, p, 5), (A, p, 5, 5), (A, 3), (A, 3, 3), (0, A, p))]
    out += [np.array([1.0, 10.0, 100.0]), np.zeros((A, p, 3), dtype=np.int64)]
    return pencil_moments(*sums, *penalty, setup.B, setup.B_is_identity, *dgp, 0, *out)


def test_kernel_declines_and_the_numpy_path_takes_over():
    """A singular G (λ = 0 asked for) and a non-finite sum are reported, and
    the batch is then fitted by the NumPy path, which masks the failed data sets."""
    raw = small_design(
        **{"grid.m": [10], "grid.degree": [2], "replications": 20, "block_size": 20}
    )
    design = design_from_dict(raw)
    power_sums, T = chunk_power_sums(design, 10, 0, 2)
    setup = design.standard_basis(2)
    alphas = np.unique(alpha_grid(design, 10, 2))
    assert alphas[0] == 0 and _kernel_status(power_sums, T, setup, alphas) == OK

    singular = power_sums.copy()
    # a Gram matrix of zeros: singular in floating point too, so that LU fails on every
    # machine (ten points at one u are singular only in exact arithmetic, and whether LU
    # then fails depends on how the BLAS rounds)
    singular[3] = 0.0
    assert _kernel_status(singular, T, setup, alphas) == NOT_POSITIVE_DEFINITE
    infinite = T.copy()
    infinite[5, 1] = np.inf
    assert _kernel_status(power_sums, infinite, setup, alphas) == NOT_FINITE
    top = power_sums.copy()
    top[7, 4] = np.inf  # Σu⁴ enters only G[2, 2]: the fit would come out "finite"
    assert _kernel_status(top, T, setup, alphas) == NOT_FINITE

    # the singular batch: the factorisation fails too, so NumPy solves per α; the infinite
    # one: the pencil factorises and the non-finite data set is masked
    for bad_sums, bad_T, numpy_path in ((singular, T, "direct"), (power_sums, infinite, "pencil")):
        with pytest.raises(SolverDeclined):
            batch_moments(bad_sums, bad_T, setup, alphas, 1.0, keep=6, solver="compiled")
        got = batch_moments(bad_sums, bad_T, setup, alphas, 1.0, keep=6)
        ref = batch_moments(bad_sums, bad_T, setup, alphas, 1.0, keep=6, solver=numpy_path)
        np.testing.assert_array_equal(got.coef.mean, ref.coef.mean)
        np.testing.assert_array_equal(got.risk.M, ref.risk.M)
        np.testing.assert_array_equal(got.n_ok, ref.n_ok)
        np.testing.assert_array_equal(got.w_kept, ref.w_kept)
        assert got.n_ok[0] == 19  # the failed data set is left out, the others kept
        # and the refusal is counted with its reason, beside the route that took over
        reason = (
            "declined_not_positive_definite" if numpy_path == "direct" else "declined_not_finite"
        )
        expected = dict.fromkeys(FIT_COUNTS, 0) | {numpy_path: 20, reason: 20}
        assert dict(zip(FIT_COUNTS, got.counts.tolist(), strict=True)) == expected
    clean = batch_moments(power_sums, T, setup, alphas, 1.0, keep=0)
    assert dict(zip(FIT_COUNTS, clean.counts.tolist(), strict=True))["compiled"] == 20
    assert clean.counts.sum() == 20


def test_the_refusal_names_follow_the_kernels_status_codes():
    from study.engine import pencil
    from study.results import FITS_COLUMNS

    for i, reason in enumerate(DECLINES, start=1):
        assert getattr(pencil, reason.upper()) == i
    assert FITS_COLUMNS[6:] == list(FIT_COUNTS)


def test_jacobi_reports_a_batch_that_does_not_converge():
    C = _symmetric_batch(np.random.default_rng(1), 4, 8)
    C[5, 0, 1] = C[5, 1, 0] = np.nan
    work = np.ascontiguousarray(np.moveaxis(C, 0, -1))
    assert not _jacobi(work, np.empty_like(work), np.empty((3, 8)))


@pytest.mark.parametrize("power", [-660, 660])
def test_kernel_is_exact_under_scaling_by_powers_of_two(power):
    """Scaling the power sums and the shift by 2^±660 scales Ĝ exactly, so the pencil's
    eigenvalues must scale exactly by 2^∓660 and the fits not change at all. Unless each
    matrix is rescaled before the Jacobi sweeps, their convergence test overflows (or
    underflows) at these scales and stops early."""
    raw = small_design(
        **{"grid.m": [30], "grid.degree": [4], "replications": 40, "block_size": 40}
    )
    design = design_from_dict(raw)
    power_sums, T = chunk_power_sums(design, 30, 0, 4)
    setup = design.standard_basis(4)
    St, Tt = np.ascontiguousarray(power_sums.T), np.ascontiguousarray(T.T)
    f = 2.0**power
    args = (np.ascontiguousarray(setup.F), setup.B, setup.v_star, setup.sigma)
    plain = _factorise(St, Tt, 0.5, setup.penalty, *args)
    scaled = _factorise(St * f, Tt * f, 0.5 * f, setup.penalty, *args)
    assert plain[0] == scaled[0] == OK
    np.testing.assert_array_equal(scaled[1] * f, plain[1])  # eigenvalues
    np.testing.assert_array_equal(scaled[2] * np.sqrt(f), plain[2])  # W


def test_a_missing_cache_is_filled_by_a_separate_process(monkeypatch):
    """With no cached kernel, ensure_cached compiles it in a child process (so that this
    process then loads it from the cache); with one, it does nothing."""
    from study.engine import kernel

    calls = []
    monkeypatch.setattr(kernel.subprocess, "run", lambda args, **kw: calls.append(args))
    monkeypatch.setattr(kernel, "_is_cached", lambda: True)
    kernel.ensure_cached()
    assert calls == []
    monkeypatch.setattr(kernel, "_is_cached", lambda: False)
    kernel.ensure_cached()
    assert len(calls) == 1 and "compile_kernel()" in calls[0][-1]


def test_the_cache_check_sees_the_kernel_make_venv_compiled():
    """Else every run would compile the kernel again (numba's internals changed?)."""
    from study.engine import kernel

    assert kernel._is_cached()


@pytest.mark.slow
def test_a_run_that_compiles_the_kernel_equals_one_that_loads_it(tmp_path):
    """A first run on a machine (empty numba cache) gives the same bytes as later runs, the
    theory's files too (the tuning's risk is compiled as well)."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    outs = {}
    for name, cache in (("cold", tmp_path / "cache"), ("warm", None)):
        env = dict(os.environ)
        if cache is not None:
            env["NUMBA_CACHE_DIR"] = str(cache)
        outs[name] = tmp_path / name
        cmd = [sys.executable, "-m", "study", "simulate", str(ROOT / "simulations" / "smoke.toml")]
        subprocess.run(
            [*cmd, "--out", str(outs[name]), "--quiet", "--jobs", "2"], env=env, check=True
        )
    from study.paths import THEORY_FILES

    theory = [f for f in THEORY_FILES if (outs["warm"] / f).exists()]
    assert "tuning.csv" in theory
    assert theory == [f for f in THEORY_FILES if (outs["cold"] / f).exists()]
    for f in ("summary.csv", "risk.csv", "draws.npz", *theory):
        assert (outs["cold"] / f).read_bytes() == (outs["warm"] / f).read_bytes(), f
