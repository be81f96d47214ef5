"""Polynomial ridge fits from power sums: one factorisation serves every α.

Every fit of the study is a ridge regression in sum form (docs/model.md),

    ŵ = argmin_w Σ_i (φ(x_i)ᵀw − y_i)² + α·wᵀDw,   D = diag(0, 1, …, 1) (or I),

with φ(x) = (1, x, …, x^k) in raw monomials. Raw monomials are ill-conditioned away from
[−1, 1], so the fit is computed in the standardised variable u = (x − center)/scale, where
φ(u) = B·φ(x) for a lower-triangular B. With w = Bᵀv the penalty is α·vᵀ(BDBᵀ)v, so the
problem in u is again a ridge problem, with penalty matrix P = BDBᵀ, and maps back exactly.

Everything a fit needs is in the power sums S_p = Σ u^p (p ≤ 2K) and T_p = Σ u^p·y
(p ≤ K): G = ΦᵀΦ and b = Φᵀy of every degree k ≤ K are leading blocks of the Hankel
matrix [S_{i+j}] and of the vector [T_i].

For many α on one data set the generalised eigendecomposition of the pencil (G, P) is
computed once: with G = LLᵀ and L⁻¹PL⁻ᵀ = QΛQᵀ, W = L⁻ᵀQ satisfies WᵀGW = I and
WᵀPW = Λ, hence

    (G + αP)⁻¹ = W·diag(1/(1 + αΛ))·Wᵀ,

and the estimate, its conditional mean A⁻¹Gv* and covariance σ²A⁻¹GA⁻¹ are all cheap
elementwise products for every α.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from study.basis import (  # noqa: F401  (names of the fit API)
    change_of_basis,
    check_basis,
    hankel_index,
    orthonormal_coefficients,
    penalty_matrix,
    penalty_root,
    pencil_is_stable,
)
from study.scaling import alpha as scaling_alpha


def power_sums(
    u: np.ndarray, y: np.ndarray | None, max_degree: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Power sums S_p = Σ u^p (p ≤ 2K) and T_p = Σ u^p·y (p ≤ K) along the last axis.

    Parameters
    ----------
    u : ndarray of shape (..., m)
    y : ndarray of shape (..., m), or None for S alone
    max_degree : int
        K, the largest degree that will be fitted.

    Returns
    -------
    S : ndarray of shape (..., 2K + 1)
    T : ndarray of shape (..., K + 1), or None when y is None
    """
    u = np.asarray(u, dtype=float)
    sums = np.empty(u.shape[:-1] + (2 * max_degree + 1,))  # S_p = Σ u^p
    sums[..., 0] = u.shape[-1]
    T = None
    if y is not None:
        y = np.asarray(y, dtype=float)
        T = np.empty(u.shape[:-1] + (max_degree + 1,))
        T[..., 0] = y.sum(axis=-1)
    power = u.copy()
    for p in range(1, 2 * max_degree + 1):
        sums[..., p] = power.sum(axis=-1)
        if T is not None and p <= max_degree:
            T[..., p] = np.einsum("...i,...i->...", power, y)
        if p < 2 * max_degree:
            power *= u
    return sums, T


@dataclass
class PencilFactor:
    """Generalised eigendecomposition of (G, P) for a stack of data sets.

    Attributes
    ----------
    W : ndarray of shape (n, k + 1, k + 1)
        WᵀGW = I and WᵀPW = diag(eig).
    eig : ndarray of shape (n, k + 1)
        Generalised eigenvalues, ≥ 0.
    """

    W: np.ndarray
    eig: np.ndarray


def factorise(G: np.ndarray, F: np.ndarray) -> PencilFactor:
    """Factorise the pencil (G, FFᵀ) of each data set; G must be positive definite.

    With G = LLᵀ, H = L⁻¹F and the eigendecomposition HHᵀ = UΛUᵀ, W = L⁻ᵀU gives
    WᵀGW = I and WᵀFFᵀW = Λ. (An SVD of H would keep the small eigenvalues more accurate,
    but where the pencil is used (:func:`pencil_is_stable`) both give the same fits to
    50-digit references within 10⁻⁹, and the eigendecomposition is a third faster.)

    Raises
    ------
    numpy.linalg.LinAlgError
        If any G in the stack is not numerically positive definite.
    """
    L = np.linalg.cholesky(G)
    eye = np.broadcast_to(np.eye(G.shape[-1]), G.shape)
    Linv = np.linalg.solve(L, eye)  # L⁻¹, triangular but small: a batched solve is fine
    H = Linv @ F
    eig, U = np.linalg.eigh(H @ np.swapaxes(H, -1, -2))
    eig = np.clip(eig, 0.0, None)
    W = np.swapaxes(Linv, -1, -2) @ U
    return PencilFactor(W=W, eig=eig)


def solve_or_nan(A: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve a stack of systems A[i]·X[i] = rhs[i], leaving NaN where one is singular.

    One batched solve; should any system of the stack be singular (rare), each is solved
    on its own and those that fail stay NaN, so that one bad system does not lose the rest.

    Parameters
    ----------
    A : ndarray of shape (n, ..., p, p)
    rhs : ndarray of shape (n, ..., p, q)
        With the leading axes of A (broadcast it first if it is shared).

    Returns
    -------
    ndarray of the shape of rhs
        NaN in the entries X[i] of the systems i that failed.
    """
    try:
        return np.linalg.solve(A, rhs)
    except np.linalg.LinAlgError:
        X = np.full(rhs.shape, np.nan)
        for i in range(A.shape[0]):
            try:
                X[i] = np.linalg.solve(A[i], rhs[i])
            except np.linalg.LinAlgError:
                pass
        return X


def _solve_one(sums, T, degree: int, alpha: float, B: np.ndarray, *, penalize_intercept: bool):
    """One fit from power sums. For a single α a factorisation of the pencil buys nothing,
    and on a singular G (m ≤ k) a Cholesky factor can come out numerically "successful"
    and wrong, so this solves A = G + αFFᵀ directly (LU with pivoting)."""
    G = sums[..., hankel_index(degree)]
    b = T[..., : degree + 1]
    F = penalty_root(B, penalize_intercept=penalize_intercept)
    # v = (G + αFFᵀ)⁻¹ b
    return np.linalg.solve(G + alpha * (F @ F.T), b[..., None])[..., 0]


def fit_polynomial_ridge(
    x: np.ndarray,
    y: np.ndarray,
    *,
    degree: int,
    lam: float,
    scaling: str = "m",
    penalize_intercept: bool = False,
    basis: str = "monomial",
    x_distribution=None,
) -> np.ndarray:
    """Fit a degree-k polynomial by ridge regression with one of the study's scalings.

    Minimises the mean-loss objective of Andrew Ng's course,

        J(w) = (1/2m) Σ_i (φ(x_i)ᵀw − y_i)² + (c/2) Σ_{j≥1} w_j²,

    with c = λ, λ/m, λ/√m or λ/k for ``scaling`` = "none", "m", "sqrt-m" or "k";
    equivalently the sum-form ridge problem with α = m·c (scikit-learn ``Ridge(alpha=α)``
    on the features x, …, x^k with ``fit_intercept=True``).

    Parameters
    ----------
    x : ndarray of shape (m,)
        Inputs.
    y : ndarray of shape (m,)
        Responses.
    degree : int
        Polynomial degree k ≥ 1.
    lam : float
        Regularisation parameter λ ≥ 0 as written in the penalty.
    scaling : {"none", "m", "sqrt-m", "k"}, default="m"
        How the penalty is divided; "m" is Ng's (λ/2m)·Σw².
    penalize_intercept : bool, default=False
        Penalise w_0 as well.
    basis : {"monomial", "orthonormal"}, default="monomial"
        Write the polynomial, and so the penalty Σ_{j≥1} w_j², in the monomials
        1, x, …, x^k, or in the polynomials ψ_0 = 1, ψ_1, …, ψ_k orthonormal under
        ``x_distribution`` (normalised Legendre in u = (x − center)/scale for uniform x,
        normalised probabilists' Hermite for normal x): the same fits at λ = 0, different
        ones with a penalty.
    x_distribution : XDistribution or mapping, optional
        Needed for ``basis="orthonormal"``: ``{"distribution": "uniform", "low": a,
        "high": b}`` or ``{"distribution": "normal", "mean": μ, "sd": s}`` (or a design's
        ``x``).

    Returns
    -------
    ndarray of shape (degree + 1,)
        Coefficients of 1, x, …, x^degree, or of ψ_0, …, ψ_k.

    Raises
    ------
    ValueError
        On inputs of the wrong shape, non-finite values, λ < 0, an unknown scaling, or
        λ = 0 with fewer than degree + 1 distinct points (the fit is not identifiable).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([-1.0, 0.0, 1.0]); y = np.array([1.0, 0.0, 1.0])
    >>> fit_polynomial_ridge(x, y, degree=2, lam=0.0).round(12) + 0.0
    array([0., 0., 1.])
    """
    x, y, degree = check_fit_inputs(x, y, degree, lam)
    a = scaling_alpha(lam, m=x.size, degree=degree, scaling=scaling)
    check_identifiable(x, degree, a)
    if check_basis(basis) == "orthonormal":
        return _fit_orthonormal(x, y, degree, a, x_distribution, penalize_intercept)
    center, scale = data_standardisation(x)
    B = change_of_basis(center, scale, degree)
    sums, T = power_sums((x - center) / scale, y, degree)
    v = _solve_one(sums, T, degree, a, B, penalize_intercept=penalize_intercept)
    return B.T @ v


def check_fit_inputs(x, y, degree, lam) -> tuple[np.ndarray, np.ndarray, int]:
    """x and y as float arrays and the degree as an int, after checking them and λ (the
    checks every one-data-set fit shares)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.ndim != 1 or y.shape != x.shape or x.size == 0:
        raise ValueError(
            f"x and y must be 1-d arrays of the same non-zero length. Got shapes {x.shape} "
            f"and {y.shape} instead."
        )
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x and y must be finite. Got NaN or infinity instead.")
    if isinstance(degree, bool) or not isinstance(degree, int | np.integer) or degree < 1:
        raise ValueError(f"The 'degree' parameter must be an integer ≥ 1. Got {degree!r} instead.")
    if not np.isfinite(lam) or lam < 0:
        raise ValueError(f"The 'lam' parameter must be a finite number ≥ 0. Got {lam!r} instead.")
    return x, y, int(degree)


def check_identifiable(x: np.ndarray, degree: int, alpha: float) -> None:
    """Refuse an unpenalised fit with fewer distinct x values than coefficients."""
    if alpha == 0 and np.unique(x).size <= degree:
        raise ValueError(
            f"With lam = 0 a degree-{degree} fit needs at least {degree + 1} distinct x values. "
            f"Got {np.unique(x).size} instead: the coefficients are not identifiable."
        )


def data_standardisation(x: np.ndarray) -> tuple[float, float]:
    """center and scale of u = (x − center)/scale from the data's own range (u in [−1, 1])."""
    lo, hi = x.min(), x.max()
    center = (lo + hi) / 2
    scale = (hi - lo) / 2 if hi > lo else max(abs(center), 1.0)
    return center, scale


def _fit_orthonormal(x, y, degree: int, alpha: float, x_distribution, penalize_intercept: bool):
    """Ridge on the features ψ(u) orthonormal under ``x_distribution``: ‖Ψw − y‖² + αwᵀDw,
    solved from its normal equations (Ψ is well conditioned: that is the point of it)."""
    features = orthonormal_features(x, degree, x_distribution)
    D = penalty_matrix(degree, penalize_intercept=penalize_intercept)
    return np.linalg.solve(features.T @ features + alpha * D, features.T @ y)


def orthonormal_features(x: np.ndarray, degree: int, x_distribution) -> np.ndarray:
    """ψ_0(x) … ψ_k(x), shape (m, k + 1): the polynomials orthonormal under
    ``x_distribution`` (a mapping or an XDistribution), ψ_0 = 1.

    Raises
    ------
    ValueError
        Without ``x_distribution``, or with one that is not a valid uniform or normal one.
    """
    if x_distribution is None:
        raise ValueError(
            "basis='orthonormal' needs x_distribution, e.g. {'distribution': 'uniform', "
            "'low': -1, 'high': 1}: the polynomials are orthonormal under it."
        )
    get = (
        x_distribution.get
        if isinstance(x_distribution, dict)
        else (lambda key, default=None: getattr(x_distribution, key, default))
    )
    kind = get("distribution")
    if kind == "uniform":
        low, high = float(get("low")), float(get("high"))
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise ValueError(f"x_distribution needs finite low < high. Got {low!r}, {high!r}.")
        center, scale = low / 2 + high / 2, high / 2 - low / 2
    elif kind == "normal":
        center, scale = float(get("mean")), float(get("sd"))
        if not (np.isfinite(center) and np.isfinite(scale) and scale > 0):
            raise ValueError(
                f"x_distribution needs a finite mean and sd > 0. Got {center!r}, {scale!r}."
            )
    else:
        raise ValueError(
            f"x_distribution['distribution'] must be 'uniform' or 'normal'. Got {kind!r} instead."
        )
    L = orthonormal_coefficients(kind, degree)
    return np.vander((x - center) / scale, degree + 1, increasing=True) @ L.T
