"""The compiled Newton solver of the logistic family (study.engine.newton) against its NumPy
reference, scikit-learn and the optimality condition; its determinism row by row, its own
exponential and logarithm against libm, and its place in the kernel's cache."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from numba import njit
from scipy.special import expit
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from study.basis import standard_basis
from study.design import XDistribution
from study.engine import kernel, newton
from study.models.logistic import (
    _no_minimiser,
    fit_chunk,
    newton_path,
    newton_path_numpy,
)

from conftest import ROOT

X = XDistribution("uniform", low=-0.5, high=2.0)  # asymmetric: B ≠ I, a dense penalty in u


def _data(rng, n, m, low=-0.4, high=1.0, *, b=(-0.3, 2.0, -1.5)):
    """n data sets of m points: u uniform on [low, high] (asymmetric about 0: the monomials
    of u are far from orthogonal), labels from the log-odds b0 + b1·u + b2·u² (curved, so
    that every degree has something to fit). The last row's labels are all 0."""
    u = rng.uniform(low, high, (n, m))
    eta = b[0] + b[1] * u + b[2] * u * u
    y = (rng.random((n, m)) < expit(eta)).astype(float)
    y[-1] = 0.0
    return u, y


def _ridge_penalty(degree, penalize_intercept=False):
    """diag(0, 1, …, 1) (or the identity): the penalty in u when x is u itself."""
    P = np.eye(degree + 1)
    if not penalize_intercept:
        P[0, 0] = 0.0
    return P


def _gradient(u, y, P, c, v):
    """∇J(v) = Φᵀ(σ(Φv) − y)/m + c·Pv for one data set, from the Vandermonde matrix Φ: the
    optimality condition, computed independently of the solvers' power sums."""
    phi = np.vander(u, v.size, increasing=True)
    return phi.T @ (expit(phi @ v) - y) / u.size + c * (P @ v)


def assert_solved(u, y, P, cs, fit, v, iterations, tol=1e-10):
    """Every fit asked for (``fit``, (A, n)) converged, and its solution v[a, r] is a zero
    of ∇J, to ``tol``."""
    assert (iterations[fit] > 0).all(), np.argwhere(fit & (iterations <= 0))
    for a, r in np.argwhere(fit):
        g = _gradient(u[r], y[r], P, cs[a], v[a, r])
        assert np.abs(g).max() <= tol, (a, r, cs[a], np.abs(g).max())


def _agree(v, its, v_ref, its_ref, rtol):
    """The same fits fail, and the others agree to rtol, relative to max(1, |v_ref|∞)."""
    np.testing.assert_array_equal(its >= 0, its_ref >= 0)
    ok = its_ref >= 0
    np.testing.assert_array_equal(np.isnan(v).any(axis=2), ~ok)
    scale = np.maximum(1.0, np.abs(v_ref[ok]).max(axis=1))
    worst = (np.abs(v[ok] - v_ref[ok]).max(axis=1) / scale).max()
    assert worst <= rtol, worst


@pytest.mark.parametrize("degree", [1, 3, 7])
@pytest.mark.parametrize("m", [6, 13, 60, 400, 2000])
def test_the_compiled_solver_equals_the_numpy_reference(degree, m):
    """Random problems on an asymmetric u range: every c from the largest down to 0 (where
    only the rows without separation are fitted), and a row whose labels are all equal,
    which has no minimiser at c > 0 with the intercept unpenalised (NaN in both) and one
    with it penalised (fitted in both)."""
    rng = np.random.default_rng(1000 * degree + m)
    n = 40 if m < 2000 else 12
    u, y = _data(rng, n, m)
    cs = np.array([1.0, 0.1, 1e-3, 0.0])
    for penalize in (False, True):
        P = _ridge_penalty(degree, penalize)
        fit = ~_no_minimiser(u, y, degree, cs, penalize)
        assert fit[:3, -1].all() == penalize and not fit[3, -1]  # the row of equal labels
        v, its = newton_path(u, y, P, cs, fit)
        v_ref, its_ref = newton_path_numpy(u, y, P, cs, fit)
        _agree(v, its, v_ref, its_ref, rtol=1e-9)
        assert (its[~fit] == -1).all() and np.isnan(v[~fit]).all()
        assert_solved(u, y, P, cs, fit, v, its)  # nothing here is ill-posed
    if m > 4 * (degree + 1):  # c = 0 fits exist, and were compared
        assert fit[3].sum() > n // 2


@pytest.mark.parametrize("degree", [1, 3])
def test_the_engines_penalty_in_u_equals_the_numpy_reference(degree):
    """The penalty of an asymmetric x range in u (dense: B ≠ I), as fit_chunk passes it."""
    rng = np.random.default_rng(degree)
    basis = standard_basis(X, degree, intercept=-0.5, slope=1.7)
    for m in (8, 50, 300):
        u, y = _data(rng, 60, m, -1.0, 1.0)
        cs = np.array([2.0, 0.2, 0.02, 0.0]) / m
        fit = ~_no_minimiser(u, y, degree, cs, False)
        v, its = newton_path(u, y, basis.penalty, cs, fit)
        v_ref, its_ref = newton_path_numpy(u, y, basis.penalty, cs, fit)
        _agree(v, its, v_ref, its_ref, rtol=1e-9)
        assert_solved(u, y, basis.penalty, cs, fit, v, its)


def _sklearn(x, y, degree, alpha):
    """LogisticRegression(C = 1/α) on the monomials x, …, x^k, by its Newton solver with a
    tight tolerance: its default, L-BFGS, stops within about 10⁻⁶ of these cubic fits."""
    features = np.vander(x, degree + 1, increasing=True)[:, 1:]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        C = 1 / alpha if alpha > 0 else np.inf
        model = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12, max_iter=1000)
        model.fit(features, y)
    return np.concatenate([model.intercept_, model.coef_[0]])


@pytest.mark.parametrize("degree", [1, 3])
def test_fit_chunk_equals_scikit_learn_with_c_one_over_alpha(degree):
    """The engine's path (fit_chunk: the compiled solver, raw coefficients) against
    LogisticRegression(C = 1/α) on the monomials of x, α = m·c: to 10⁻⁹ of the largest
    coefficient (measured: 5·10⁻¹²)."""
    rng = np.random.default_rng(10 + degree)
    basis = standard_basis(X, degree, intercept=-0.5, slope=1.7)
    compared = 0
    for m in (40, 250):
        u = rng.uniform(-1.0, 1.0, (6, m))
        x = X.center + X.scale * u
        y = (rng.random((6, m)) < expit(-0.5 + 1.7 * x)).astype(float)
        alphas = np.array([0.0, 0.05, 1.0, 20.0])
        w, no_min, _ = fit_chunk(u, y, basis, alphas, False)
        for a, alpha in enumerate(alphas):
            for r in range(u.shape[0]):
                if no_min[a, r]:
                    continue
                ref = _sklearn(x[r], y[r], degree, alpha)
                np.testing.assert_allclose(w[a, r], ref, rtol=0, atol=1e-9 * np.abs(ref).max())
                compared += 1
    assert compared >= 40


def _near_separated(m):
    """u on a grid, labels 1 above a threshold except for the two points beside it, which
    swap labels: the classes overlap by one pair, so the unpenalised log-loss has a
    minimiser, but a steep one (slope ~150 at m = 400)."""
    u = np.linspace(-1.0, 1.0, m) * 0.9 + 0.1
    y = (u > 0.13).astype(float)
    b = np.searchsorted(u, 0.13)
    y[b - 1], y[b] = 1.0, 0.0
    return u[None], y[None]


def test_a_near_separated_data_set_takes_many_iterations_and_reaches_the_optimum():
    u, y = _near_separated(400)
    P = _ridge_penalty(1)
    cs = np.array([0.0])
    fit = ~_no_minimiser(u, y, 1, cs, False)
    assert fit.all()  # not separated by a line
    v, its = newton_path(u, y, P, cs, fit)
    assert its[0, 0] >= 12  # against about 5 for the random problems
    assert np.abs(v[0, 0, 1]) > 100  # steep
    assert_solved(u, y, P, cs, fit, v, its, tol=1e-12)
    v_ref, its_ref = newton_path_numpy(u, y, P, cs, fit)
    _agree(v, its, v_ref, its_ref, rtol=1e-9)


@pytest.mark.parametrize("bug", ["gradient only", "gradient and objective"])
def test_a_halved_penalty_gradient_is_caught(monkeypatch, bug):
    """The solver run as Python (numba's py_func, which reproduces the compiled solver bit
    for bit), with the penalty's term of the gradient halved: alone, its steps no longer
    descend the objective near the optimum and the line search fails the fits; together
    with the objective's (and the Hessian's), as if c/2 were passed on, the solver
    converges, to the minimiser of another objective. :func:`assert_solved`, which the
    tests above apply to the compiled solver, refuses both."""
    rng = np.random.default_rng(3)
    u, y = _data(rng, 3, 30)
    u, y = u[:2], y[:2]  # rows with both labels
    P = _ridge_penalty(3)
    cs = np.array([0.5, 0.05])
    fit = np.ones((2, 2), dtype=bool)
    compiled = newton_path(u, y, P, cs, fit)
    # the Python solver looks its helpers up in the module at each call
    real_newton = newton._newton.py_func
    monkeypatch.setattr(newton, "_newton", real_newton)
    as_python = newton.newton_path.py_func(u, y, P, cs, fit)
    assert compiled[0].tobytes() == as_python[0].tobytes()
    np.testing.assert_array_equal(compiled[1], as_python[1])
    assert_solved(u, y, P, cs, fit, *compiled)

    if bug == "gradient only":
        right = newton._newton_system

        def halved(u, y, eta, e, v, c, P, wg, wh, pw, sums, grad, hess):
            right(u, y, eta, e, v, c, P, wg, wh, pw, sums, grad, hess)
            grad -= 0.5 * c * (P @ v)  # (c/2)·Pv where c·Pv belongs

        monkeypatch.setattr(newton, "_newton_system", halved)
    else:

        def halved(u, y, P, c, *rest):
            return real_newton(u, y, P, 0.5 * c, *rest)

        monkeypatch.setattr(newton, "_newton", halved)
    v_bad, its_bad = newton.newton_path.py_func(u, y, P, cs, fit)
    if bug == "gradient and objective":
        assert (its_bad > 0).all()  # converged, to the wrong point
    with pytest.raises(AssertionError):
        assert_solved(u, y, P, cs, fit, v_bad, its_bad)


def test_results_are_bit_identical_again_and_whatever_the_rest_of_the_batch():
    """A row's fits depend on that row alone: fitting the batch again, or a sub-batch in
    another order (with other rows' masks around it), gives the same bits."""
    rng = np.random.default_rng(7)
    u, y = _data(rng, 30, 80)
    P = standard_basis(X, 3, intercept=-0.5, slope=1.7).penalty
    cs = np.array([0.3, 0.01, 0.0])
    fit = ~_no_minimiser(u, y, 3, cs, False)
    v, its = newton_path(u, y, P, cs, fit)
    again = newton_path(u, y, P, cs, fit)
    assert v.tobytes() == again[0].tobytes() and its.tobytes() == again[1].tobytes()
    rows = np.array([17, 3, 29, 4, 11])
    v_sub, its_sub = newton_path(u[rows], y[rows], P, cs, fit[:, rows])
    assert v_sub.tobytes() == v[:, rows].tobytes()
    np.testing.assert_array_equal(its_sub, its[:, rows])
    one = newton_path(u[rows[:1]], y[rows[:1]], P, cs, fit[:, rows[:1]])
    assert one[0].tobytes() == v[:, rows[:1]].tobytes()


def test_a_singular_hessian_or_non_finite_data_fail_the_fit_in_both_solvers():
    """u all 0 with both labels (every x ties: no separation, but at c = 0 only the
    intercept is determined: the Hessian is singular) and a row with a NaN: failed fits
    (NaN, −1), no exception; the rows beside them are fitted as usual."""
    rng = np.random.default_rng(11)
    u, y = _data(rng, 4, 25)
    u[0] = 0.0
    y[0, :10] = 1.0
    u[1, 5] = np.nan
    P = _ridge_penalty(2)
    cs = np.array([0.0])
    fit = np.ones((1, 4), dtype=bool)
    fit[0, 3] = False  # the row of equal labels
    v, its = newton_path(u, y, P, cs, fit)
    with np.errstate(invalid="ignore"):  # the NaN row
        v_ref, its_ref = newton_path_numpy(u, y, P, cs, fit)
    np.testing.assert_array_equal(its[0, :2], [-1, -1])
    assert its[0, 2] > 0
    _agree(v, its, v_ref, its_ref, rtol=1e-9)


@pytest.mark.slow
def test_the_solver_compiled_in_a_process_equals_the_one_it_loads_from_the_cache(tmp_path):
    """Strict IEEE arithmetic: machine code compiled where it runs (an empty numba cache,
    the solver called directly) gives the bits of the code every run loads from the cache."""
    rng = np.random.default_rng(5)
    u, y = _data(rng, 40, 70)
    P = standard_basis(X, 3, intercept=-0.5, slope=1.7).penalty
    cs = np.array([0.5, 0.01, 0.0])
    fit = ~_no_minimiser(u, y, 3, cs, False)
    np.savez(tmp_path / "in.npz", u=u, y=y, P=np.ascontiguousarray(P), cs=cs, fit=fit)
    code = (
        "import sys, numpy as np; sys.path.insert(0, sys.argv[1]);"
        "from study.engine.newton import newton_path; d = np.load(sys.argv[2]);"
        "v, its = newton_path(*(d[k] for k in ('u', 'y', 'P', 'cs', 'fit')));"
        "np.savez(sys.argv[3], v=v, its=its)"
    )
    files = [str(tmp_path / "in.npz"), str(tmp_path / "out.npz")]
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    subprocess.run([sys.executable, "-c", code, str(ROOT), *files], env=env, check=True)
    there = np.load(tmp_path / "out.npz")
    v, its = newton_path(u, y, P, cs, fit)
    assert there["v"].tobytes() == v.tobytes()
    np.testing.assert_array_equal(there["its"], its)


@njit(error_model="numpy")
def _exp_minus_all(a, out):
    for i in range(a.size):
        out[i] = newton._exp_minus(a[i])


@njit(error_model="numpy")
def _log1p_unit_all(x, out):
    for i in range(x.size):
        out[i] = newton._log1p_unit(x[i])


def _ulps(value, ref):
    """|value − ref| in units in the last place of ref (exact where both are 0, ∞ or NaN)."""
    same = (value == ref) | (np.isnan(value) & np.isnan(ref))
    spacing = np.spacing(np.abs(ref).astype(float))
    return np.where(same, 0.0, np.abs(value - ref) / np.where(ref == 0, 5e-324, spacing))


def test_the_solvers_exponential_and_logarithm_are_libms_to_two_units_in_the_last_place():
    """e^−a over its whole range (subnormal results, 0, ∞ and NaN included) and log(1 + x)
    on [0, 1], against math.exp and math.log1p."""
    rng = np.random.default_rng(0)
    a = np.concatenate(
        [
            rng.random(20000) * 0.7,
            rng.random(20000) * 40,
            rng.random(20000) * 760,
            np.arange(0.0, 760.0, math.log(2) / 3),  # on and between the reduction points
            [0.0, 5e-324, 1e-300, 708.39, 708.4, 744.44, 745.13, 745.14, 1e4, np.inf, np.nan],
        ]
    )
    out = np.empty_like(a)
    _exp_minus_all(a, out)
    ref = np.array([math.exp(-t) if t == t else math.nan for t in a])
    assert _ulps(out, ref).max() <= 2
    assert (out[a > 745.14] == 0).all() and np.isnan(out[-1])
    x = np.concatenate(
        [rng.random(20000), np.exp(-rng.random(20000) * 700), [0.0, 5e-324, 1e-300, 1.0, np.nan]]
    )
    out = np.empty_like(x)
    _log1p_unit_all(x, out)
    ref = np.array([math.log1p(t) if t == t else math.nan for t in x])
    assert _ulps(out, ref).max() <= 2


def test_every_compiled_function_of_the_solver_is_in_the_kernels_cache_check():
    """Else a stale cache of one of them would go unnoticed (ensure_cached) and a run would
    compile it in its own process; the engine's newton_path is the kernel's."""
    compiled = {f.py_func for f in kernel._COMPILED}
    mine = {
        f.py_func
        for f in vars(newton).values()
        if hasattr(f, "py_func") and f.py_func.__module__ == newton.__name__
    }
    assert mine and mine <= compiled
    assert kernel.loaded().newton_path is newton.newton_path
