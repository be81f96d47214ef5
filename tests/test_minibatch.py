"""Minibatch SGD on the penalised log-loss (study.minibatch): the penalty divided by m has
the full-batch fixed point for every batch size; divided by the batch size B it has the
fixed point of c = λ/B."""

import numpy as np
import pytest

from study import fit_polynomial_logistic
from study.engine.sgd import compiled_steps
from study.minibatch import minibatch_logistic

M, DEGREE, LAM = 200, 2, 2.0
BATCHES = (1, 10, 100, M)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    x = rng.uniform(-0.5, 2.0, M)  # an asymmetric range
    y = (rng.uniform(size=M) < 1 / (1 + np.exp(-(-0.8 + 1.7 * x)))).astype(float)
    return x, y


def _step(B):
    """B = 1 carries the most gradient noise, and the average of a finite run keeps an
    offset that grows with the step size (about 2.5 % at η₀ = 1 after 20,000 steps): a
    quarter of the step brings it below 1 %."""
    return 0.25 if B == 1 else 1.0


def _gap(w, exact):
    return float(np.abs(w - exact).max() / np.abs(exact).max())


def test_the_penalty_divided_by_m_has_one_fixed_point_for_every_batch_size(data):
    x, y = data
    exact = fit_polynomial_logistic(x, y, degree=DEGREE, lam=LAM, scaling="m")  # c = λ/m
    # 30 and 150 do not divide m: the points left over wait for another epoch
    for B in (*BATCHES, 30, 150):
        w = minibatch_logistic(
            x, y, degree=DEGREE, lam=LAM, batch_size=B, divisor="m", seed=1, step=_step(B)
        )
        assert _gap(w, exact) < (0.01 if B == 1 else 0.005), B


def test_the_penalty_divided_by_the_batch_size_solves_alpha_m_lambda_over_b(data):
    x, y = data
    exact = {
        B: fit_polynomial_logistic(x, y, degree=DEGREE, lam=LAM / B, scaling="none")  # c = λ/B
        for B in BATCHES
    }
    for B in BATCHES:
        w = minibatch_logistic(
            x, y, degree=DEGREE, lam=LAM, batch_size=B, divisor="batch", seed=1, step=_step(B)
        )
        assert _gap(w, exact[B]) < (0.01 if B == 1 else 0.005), B
    # and those are different models: α = m·λ/B from 400 down to 2
    assert _gap(exact[1], exact[M]) > 0.5
    assert np.abs(exact[1][1:]).max() < 0.5 * np.abs(exact[M][1:]).max()  # more shrinkage


def test_the_run_is_deterministic_given_its_seed(data):
    x, y = data
    kwargs = dict(degree=DEGREE, lam=LAM, batch_size=10, steps=2000)
    a = minibatch_logistic(x, y, seed=5, **kwargs)
    assert np.array_equal(a, minibatch_logistic(x, y, seed=5, **kwargs))
    assert not np.array_equal(a, minibatch_logistic(x, y, seed=6, **kwargs))


@pytest.mark.parametrize(
    ("B", "divisor", "degree"), [(1, "m", 2), (7, "batch", 3), (30, "m", 1), (M, "batch", 2)]
)
def test_the_compiled_steps_are_the_numpy_loops(data, B, divisor, degree):
    """The compiled loop takes the NumPy loop's batches (the same permutations of the same
    generator) and steps: equal to rounding after thousands of steps, where other batches
    move the average by far more (another seed). B = 7 and 30 leave points over each
    epoch; B = m is one batch, the whole data set whatever the seed."""
    x, y = data
    kw = dict(degree=degree, lam=LAM, batch_size=B, divisor=divisor, steps=3000, step=_step(B))
    compiled = minibatch_logistic(x, y, seed=11, run_steps=compiled_steps, **kw)
    numpy_loop = minibatch_logistic(x, y, seed=11, **kw)
    np.testing.assert_allclose(compiled, numpy_loop, rtol=1e-12, atol=1e-13)
    if B < M:
        other = minibatch_logistic(x, y, seed=12, **kw)
        assert np.abs(other - numpy_loop).max() > 1e-6


def test_the_compiled_steps_draw_their_permutations_in_blocks(data, monkeypatch):
    """The permutations come a block of epochs at a time: blocks of 3 epochs (and a last
    block of one) give the numbers of one block for the whole run."""
    from study.engine import sgd

    x, y = data
    kw = dict(degree=2, lam=LAM, batch_size=40, steps=106, seed=3)  # 22 epochs of 5 steps
    whole = minibatch_logistic(x, y, run_steps=compiled_steps, **kw)
    monkeypatch.setattr(sgd, "ORDER_BLOCK", 3 * M)
    assert np.array_equal(minibatch_logistic(x, y, run_steps=compiled_steps, **kw), whole)
    np.testing.assert_allclose(whole, minibatch_logistic(x, y, **kw), rtol=1e-12)


def test_the_compiled_steps_are_the_kernels_and_load_from_its_cache(data):
    """sgd_epochs is compiled with the kernel (else a stale cache would go unnoticed and a
    run would compile it in its own process), and a run calls it with the argument types
    of the kernel's warm-up: one signature, the one in numba's cache."""
    from study.engine import kernel, sgd

    assert sgd.sgd_epochs in kernel._COMPILED
    assert kernel.loaded().sgd_epochs is sgd.sgd_epochs
    x, y = data
    minibatch_logistic(x, y, degree=3, lam=LAM, batch_size=30, steps=200, run_steps=compiled_steps)
    assert len(sgd.sgd_epochs.signatures) == 1
    assert sgd.sgd_epochs.stats.cache_hits and not sgd.sgd_epochs.stats.cache_misses


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "'batch_size'"),
        ({"batch_size": M + 1}, "'batch_size'"),
        ({"divisor": "k"}, "'divisor'"),
    ],
)
def test_bad_options_are_refused(data, kwargs, message):
    x, y = data
    with pytest.raises(ValueError, match=message):
        minibatch_logistic(x, y, degree=1, lam=1.0, **({"batch_size": 5} | kwargs))
