"""Penalised polynomial logistic regression, one data set at a time: the asker's own model.

The objective is the mean log-loss with the study's penalty,

    J(w) = (1/m) Σ_i [log(1 + exp(η_i)) − y_i·η_i] + (c/2) Σ_{j≥1} w_j²,   η = Φw,

with c = λ, λ/m, λ/√m or λ/k for the four scalings, and α = m·c as for least squares.
scikit-learn's ``LogisticRegression`` minimises ½‖w‖² + C·Σ log-loss, which divided by C·m
is J with c = 1/(C·m): it is this fit with C = 1/α.

Unlike least squares, J may have no minimiser:

- with λ = 0, when a polynomial of the degree separates the two classes, even with ties on
  its zero set (complete or quasi-complete separation, Albert and Anderson 1984): the
  log-loss then decreases for ever along that polynomial and the coefficients diverge;
- with λ > 0 and the intercept unpenalised, when every label is the same: the intercept
  alone diverges.

:func:`separable` decides the first exactly, by counting the roots a separating polynomial
needs along the sorted x (the tests check it against a linear programme: among the w with
s_i·φ(x_i)ᵀw ≥ 0 for every point, s = 2y − 1, and |w_j| ≤ 1, the largest Σ s_i·φ(x_i)ᵀw is
0 when the classes overlap and positive when some polynomial separates them).

The fit works in the standardised variable u = (x − center)/scale, as the ridge fit does,
by Newton's method with a backtracking line search on J (J is strictly convex where it
has a minimiser), and maps the coefficients back.
"""

from __future__ import annotations

import numpy as np

from study.basis import change_of_basis, check_basis, penalty_matrix
from study.fit import (
    check_fit_inputs,
    check_identifiable,
    data_standardisation,
    orthonormal_features,
)
from study.scaling import alpha as scaling_alpha

# Newton stops when its full step moves no coefficient (in u) by more than this, relative
# (the error after that step is of its square: rounding)
NEWTON_TOL = 1e-10
NEWTON_MAX_ITER = 200
# ... or when the Newton decrement gᵀH⁻¹g is below this, relative to the objective: far
# below what rounding resolves in the objective itself, and where the steps stop shrinking
# on an ill-conditioned Hessian
DECREMENT_FLOOR = 1e-24


class NoEstimate(ValueError):
    """The penalised log-loss has no minimiser for these data (module docstring)."""


def _check_inputs(x, y, degree, lam):
    """The checks of every one-data-set fit, and labels 0 and 1 only."""
    x, y, degree = check_fit_inputs(x, y, degree, lam)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"y must hold labels 0 and 1 only. Got {np.unique(y)[:5]!r} instead.")
    return x, y, degree


def _standard_features(x: np.ndarray, degree: int) -> tuple[np.ndarray, np.ndarray]:
    """φ(u) for u = (x − center)/scale of the data's own range, and B with φ(u) = B·φ(x)."""
    center, scale = data_standardisation(x)
    u = (x - center) / scale
    return np.vander(u, degree + 1, increasing=True), change_of_basis(center, scale, degree)


def separable(x, y, *, degree: int) -> bool:
    """Whether a nonzero polynomial p of degree ≤ ``degree`` separates the labels ``y``
    (0/1) at the points ``x``: p ≥ 0 at every point labelled 1, p ≤ 0 at every point
    labelled 0 (ties on its zero set allowed), and nonzero at some point. Then the
    unpenalised log-loss has no minimiser; all labels equal counts as separable (a constant
    separates them).

    Decided exactly, in exact comparisons of the x values, by counting the roots such a p
    needs. Without loss, p is nonzero at every point whose x carries one label (a root
    there can move into the gap beside it), and zero at every x that carries both. Along
    the sorted distinct x, p must change sign in each gap between two opposite required
    signs (one root), and has a root at each x with both labels: a simple one where p
    changes sign there, a double one where it does not. The fewest roots, counted with
    their multiplicity, follow from a pass over the points that keeps, for each sign p may
    have after the current point, the fewest roots so far; p exists exactly when that
    number is at most the degree (the product of its roots is one) and some x carries a
    single label (else that product is zero at every point and separates nothing)."""
    x, y, degree = _check_inputs(x, y, degree, 0.0)
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    bounds = np.flatnonzero(np.diff(xs)) + 1
    groups = [set(g.tolist()) for g in np.split(ys, bounds)]
    one_label = any(len(labels) == 1 for labels in groups)
    inf = float("inf")
    # fewest roots so far, for p positive (index 1) or negative (index 0) after the point
    cost = [0.0, 0.0]
    for labels in groups:
        new = [inf, inf]
        if len(labels) == 1:  # one label: p has its sign there
            s = int(next(iter(labels)) == 1.0)
            # keep the sign through the gap, or change it once in the gap
            new[s] = min(cost[s], cost[1 - s] + 1)
        else:  # both labels: a root at this x, simple if the sign changes across it
            for after in (0, 1):
                new[after] = min(cost[after] + 2, cost[1 - after] + 1)
        cost = new
    # at least one x with a single label: where every x carries both, the only such p is
    # zero at every point, separates nothing, and the log-loss has a (non-unique) minimiser
    return min(cost) <= degree and one_label


def fit_polynomial_logistic(
    x,
    y,
    *,
    degree: int,
    lam: float,
    scaling: str = "m",
    basis: str = "monomial",
    penalize_intercept: bool = False,
    x_distribution=None,
) -> np.ndarray:
    """Fit a degree-k polynomial logistic regression with one of the study's scalings.

    Minimises (1/m)Σ log-loss + (c/2)Σ_{j≥1} w_j² (all j with ``penalize_intercept``),
    c = λ, λ/m, λ/√m or λ/k for ``scaling`` = "none", "m", "sqrt-m", "k": scikit-learn
    ``LogisticRegression(C=1/α)`` with α = m·c on the features x, …, x^k.

    Parameters
    ----------
    x : ndarray of shape (m,)
    y : ndarray of shape (m,)
        Labels 0 and 1.
    degree : int
        Polynomial degree k ≥ 1.
    lam : float
        λ ≥ 0 as written in the penalty.
    scaling : {"none", "m", "sqrt-m", "k"}, default="m"
    basis : {"monomial", "orthonormal"}, default="monomial"
        As in :func:`study.fit_polynomial_ridge` (``x_distribution`` needed for the
        orthonormal basis).
    penalize_intercept : bool, default=False

    Returns
    -------
    ndarray of shape (degree + 1,)
        The coefficients in ``basis``.

    Raises
    ------
    NoEstimate
        (a ValueError) When the objective has no minimiser: λ = 0 with data that a
        polynomial of the degree separates (:func:`separable`), or λ > 0 with an
        unpenalised intercept and every label the same.
    ValueError
        On bad inputs, or λ = 0 with fewer than k + 1 distinct x values.
    """
    x, y, degree = _check_inputs(x, y, degree, lam)
    m = x.size
    c = scaling_alpha(lam, m=m, degree=degree, scaling=scaling) / m
    check_identifiable(x, degree, c)
    if c == 0 and separable(x, y, degree=degree):
        raise NoEstimate(
            f"With lam = 0 the labels are separated by a polynomial of degree {degree}: the "
            "log-loss has no minimiser (the coefficients diverge); use lam > 0"
        )
    if c > 0 and not penalize_intercept and y.min() == y.max():
        raise NoEstimate(
            f"Every label is {int(y[0])}: with the intercept unpenalised it diverges; "
            "use penalize_intercept=True or data with both labels"
        )
    D = penalty_matrix(degree, penalize_intercept=penalize_intercept)
    if check_basis(basis) == "orthonormal":
        phi, B = orthonormal_features(x, degree, x_distribution), np.eye(degree + 1)
    else:
        phi, B = _standard_features(x, degree)
    # w = Bᵀv, so wᵀDw = vᵀ(BDBᵀ)v
    v = _newton(phi, y, c * (B @ D @ B.T))
    return B.T @ v


def sigmoid(eta):
    """σ(η) = 1/(1 + e^−η), without overflow (as ½(1 + tanh(η/2)))."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(eta, dtype=float)))


def _loss(eta: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.logaddexp(0.0, eta) - y * eta))


def _newton(phi: np.ndarray, y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """argmin (1/m)Σ log-loss(Φv) + ½vᵀPv by Newton's method with backtracking."""
    m, p = phi.shape
    v = np.zeros(p)
    eta = phi @ v
    objective = _loss(eta, y) + 0.5 * v @ P @ v
    for _ in range(NEWTON_MAX_ITER):
        prob = sigmoid(eta)
        grad = phi.T @ (prob - y) / m + P @ v
        hess = (phi.T * (prob * (1.0 - prob))) @ phi / m + P
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while True:
            trial = v - t * step
            eta_trial = phi @ trial
            value = _loss(eta_trial, y) + 0.5 * trial @ P @ trial
            # Armijo, with rounding-level slack once the steps reach the precision limit
            slack = 1e-13 * abs(objective)
            if value <= objective - 1e-4 * t * (grad @ step) + slack or t < 1e-10:
                break
            t *= 0.5
        # converged when the full Newton step is negligible (a step the line search
        # shortened says nothing about the distance to the minimum), or when the Newton
        # decrement gᵀH⁻¹g, the objective's distance to its minimum, is at rounding level
        moved = np.max(np.abs(step)) <= NEWTON_TOL * max(1.0, np.max(np.abs(trial)))
        floor = 0.0 <= grad @ step <= DECREMENT_FLOOR * max(1.0, abs(objective))
        v, eta, objective = trial, eta_trial, value
        if moved or floor:
            return v
    raise RuntimeError(
        f"Newton's method did not converge in {NEWTON_MAX_ITER} iterations (|step| "
        f"{np.max(np.abs(step)):.3g})"
    )
