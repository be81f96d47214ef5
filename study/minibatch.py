"""What a minibatch does to the penalty: penalised logistic regression trained by minibatch
stochastic gradient descent, with the penalty divided by m or by the batch size B.

The asker wrote "batch size". Ng's cost (1/m)Σℓ_i + (λ/2m)Σ_{j≥1} w_j² has the gradient
(1/m)Σ∇ℓ_i + (λ/m)·Dw. A minibatch b of B points estimates it without bias by

    g_b(w) = (1/B)·Σ_{i∈b} ∇ℓ_i(w) + (λ/d)·Dw,   d = m,

so every batch size has the same fixed point: the full-batch solution with c = λ/m (α = λ).
Written with d = B instead, as scikit-learn's MLP does with its minibatches, the same
steps estimate the gradient of (1/m)Σℓ + (λ/2B)Σw², a different problem: c = λ/B,
α = m·λ/B, so the fitted model changes with the batch size.

:func:`minibatch_logistic` runs the steps: epochs of a seeded random permutation cut into
⌊m/B⌋ full batches (each a uniformly random set of B points, so that every step's gradient
is an unbiased estimate of the full one, whatever m/B is); step sizes
η_t = η₀/(1 + t/τ)^0.6; and the Polyak average of the iterates of the second half of the
run, which converges to the fixed point at the rate of the noise (Polyak and Juditsky
1992). It works in the standardised variable u, as the exact fit does, and returns raw
coefficients.
"""

from __future__ import annotations

import numpy as np

from study.basis import penalty_matrix
from study.logistic import _check_inputs, _standard_features, sigmoid

DIVISORS = ("m", "batch")
# the steps decay as η₀/(1 + t/τ)^0.6 with τ this many steps: ×1/6 after 20,000 steps,
# slow enough for a full batch on an ill-conditioned problem, and to 0 as the run grows,
# as the Polyak average needs to converge to the fixed point
DECAY_STEPS = 1000


def minibatch_logistic(
    x,
    y,
    *,
    degree: int,
    lam: float,
    batch_size: int,
    divisor: str = "m",
    steps: int = 20_000,
    step: float = 1.0,
    seed: int = 0,
    run_steps=None,
) -> np.ndarray:
    """Polyak-averaged minibatch SGD on the penalised mean log-loss (module docstring).

    Parameters
    ----------
    x, y : ndarray of shape (m,)
        Inputs and labels 0/1.
    degree : int
        Polynomial degree k.
    lam : float
        λ ≥ 0 as written in the penalty (λ/2d)Σ_{j≥1} w_j².
    batch_size : int
        B, from 1 to m.
    divisor : {"m", "batch"}, default="m"
        d = m (Ng: the same fixed point for every B) or d = B (the penalty divided by the
        batch size: the fixed point of c = λ/B).
    steps : int, default=20,000
        At least this many steps, in whole epochs: about the same for every batch size,
        since large batches have few steps per epoch.
    step : float, default=1.0
        η₀, in units of the inverse of the largest curvature of the loss in u (¼·max ‖φ‖²).
    seed : int, default=0
        Seed of the batches.
    run_steps : callable, optional
        The loop that takes the steps, ``run_steps(phi, y, P, c, eta0, tau, epochs, B,
        rng)`` → the Polyak average in u; by default :func:`numpy_steps`, this module's
        NumPy loop. The theory step passes the compiled one,
        :func:`study.engine.sgd.compiled_steps`: the same batches and the same numbers to
        rounding, 100 times faster at B = 1 and 3 times at B = 200 (the default
        experiment: 2 s against 22 s).

    Returns
    -------
    ndarray of shape (degree + 1,)
        Raw coefficients of 1, x, …, x^k.
    """
    x, y, degree = _check_inputs(x, y, degree, lam)
    m = x.size
    if isinstance(batch_size, bool) or not 1 <= int(batch_size) <= m:
        raise ValueError(
            f"The 'batch_size' parameter must be an integer from 1 to m = {m}. "
            f"Got {batch_size!r} instead."
        )
    if divisor not in DIVISORS:
        raise ValueError(
            f"The 'divisor' parameter must be one of {list(DIVISORS)}. Got {divisor!r} instead."
        )
    B = int(batch_size)
    phi, basis = _standard_features(x, degree)
    # the penalty in u: w = Bᵀv, so (λ/2d)·wᵀDw = (λ/2d)·vᵀPv
    P = basis @ penalty_matrix(degree) @ basis.T
    c = lam / (m if divisor == "m" else B)
    curvature = 0.25 * np.max(np.sum(phi**2, axis=1)) + c * np.linalg.norm(P, 2)
    eta0 = step / curvature
    epochs = epochs_of(m, B, steps)
    tau = DECAY_STEPS  # fixed: however long the run, its steps go to 0
    rng = np.random.default_rng(seed)
    run_steps = numpy_steps if run_steps is None else run_steps
    return basis.T @ run_steps(phi, y, P, c, eta0, tau, epochs, B, rng)


def epochs_of(m: int, B: int, steps: int) -> int:
    """Epochs of a run: at least ``steps`` steps of ⌊m/B⌋ full batches each, and 2 at least
    (the Polyak average takes the second half)."""
    return max(2, -(-int(steps) // (m // B)))


def numpy_steps(phi, y, P, c, eta0, tau, epochs, B, rng) -> np.ndarray:
    """The steps of :func:`minibatch_logistic` in NumPy: ``epochs`` epochs of a permutation
    of the m points from ``rng`` cut into ⌊m/B⌋ full batches, steps η₀/(1 + t/τ)^0.6, and
    the Polyak average of the iterates of the second half of the epochs (in u)."""
    m, p = phi.shape
    per_epoch = m // B  # full batches only (below)
    v = np.zeros(p)
    average = np.zeros(p)
    n_averaged = 0
    t = 0
    for epoch in range(epochs):
        order = rng.permutation(m)
        # each full batch of a random permutation is a uniformly random set of B points, so
        # its gradient is an unbiased estimate of the full one; the m mod B points left over
        # (a random few) wait for another epoch
        for start in range(0, per_epoch * B, B):
            batch = order[start : start + B]
            f = phi[batch]
            prob = sigmoid(f @ v)
            grad = f.T @ (prob - y[batch]) / B + c * (P @ v)
            v = v - eta0 / (1.0 + t / tau) ** 0.6 * grad
            t += 1
            if epoch >= epochs // 2:  # Polyak: average the second half
                n_averaged += 1
                average += (v - average) / n_averaged
    return average
