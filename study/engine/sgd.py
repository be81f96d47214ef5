"""The compiled loop of the minibatch experiment (:func:`study.minibatch.minibatch_logistic`
with ``run_steps=compiled_steps``, as the theory step runs it): Polyak-averaged minibatch
SGD on the penalised mean log-loss, the same steps as the NumPy loop that stays beside it
as the reference (:func:`study.minibatch.numpy_steps`), one step at a time.

The batches come in: each row of ``orders`` is one epoch's random permutation of the
points, drawn in NumPy from the run's generator (``Generator.permuted`` row by row draws
what one ``permutation(m)`` per epoch draws), so that the compiled and the NumPy loops see
the same batches and the seed means the same run in both. They agree to rounding (tested:
BLAS sums a batch's gradient in its own order), not bit for bit. Arithmetic is strict IEEE
(no fastmath): the numbers do not depend on where the machine code was compiled.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def sgd_epochs(
    phi, y, P, c, eta0, tau, orders, first_epoch, average_from, batch, v, average, state
):
    """Run the epochs of ``orders`` (first_epoch, first_epoch + 1, …), each cut into
    ⌊m/B⌋ full batches of B = ``batch`` points, updating v, the Polyak ``average`` of the
    iterates of epochs ≥ ``average_from``, and ``state`` = [steps so far, steps averaged].

    One step: g = (1/B)Σ_{i∈b} (σ(φ_iᵀv) − y_i)φ_i + c·Pv and v ← v − η₀/(1 + t/τ)^0.6·g,
    with σ(η) = ½(1 + tanh(η/2)) as :func:`study.logistic.sigmoid` writes it.
    """
    m, p = phi.shape
    per_epoch = m // batch
    grad = np.empty(p)
    t = state[0]
    n_averaged = state[1]
    for e in range(orders.shape[0]):
        averaging = first_epoch + e >= average_from
        for s in range(per_epoch):
            for j in range(p):
                grad[j] = 0.0
            for i in range(s * batch, (s + 1) * batch):
                r = orders[e, i]
                eta = 0.0
                for j in range(p):
                    eta += phi[r, j] * v[j]
                residual = 0.5 * (1.0 + math.tanh(0.5 * eta)) - y[r]
                for j in range(p):
                    grad[j] += phi[r, j] * residual
            step = eta0 / (1.0 + t / tau) ** 0.6
            for j in range(p):
                pv = 0.0
                for k in range(p):
                    pv += P[j, k] * v[k]
                grad[j] = grad[j] / batch + c * pv
            for j in range(p):
                v[j] = v[j] - step * grad[j]
            t += 1
            if averaging:
                n_averaged += 1
                for j in range(p):
                    average[j] += (v[j] - average[j]) / n_averaged
    state[0] = t
    state[1] = n_averaged


# the permutations of at most this many points are drawn at a time (8 MB of int64)
ORDER_BLOCK = 1 << 20


def compiled_steps(phi, y, P, c, eta0, tau, epochs, B, rng) -> np.ndarray:
    """:func:`study.minibatch.numpy_steps` by the compiled loop (:func:`sgd_epochs`), the
    epochs' permutations drawn from ``rng`` a block of epochs at a time."""
    from study.engine import kernel  # (which imports this module)

    run = kernel.loaded().sgd_epochs
    m, p = phi.shape
    phi, y = np.ascontiguousarray(phi, dtype=float), np.ascontiguousarray(y, dtype=float)
    P = np.ascontiguousarray(P, dtype=float)
    v, average = np.zeros(p), np.zeros(p)
    state = np.zeros(2, dtype=np.int64)  # steps taken, steps averaged
    block = max(1, ORDER_BLOCK // m)
    for first in range(0, epochs, block):
        orders = np.empty((min(block, epochs - first), m), dtype=np.int64)
        orders[:] = np.arange(m)
        rng.permuted(orders, axis=1, out=orders)  # row by row: one permutation(m) each
        args = (float(c), float(eta0), float(tau), orders, first, epochs // 2, int(B))
        run(phi, y, P, *args, v, average, state)
    return average
