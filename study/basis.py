"""The standardised variable u and the polynomial basis: what the data-generating process,
the engine and the theory share (docs/model.md, docs/theory.md).

u = (x − center)/scale is uniform on [−1, 1] or standard normal. Everything that depends
only on that and on the true line lives here, once: the change of basis φ(u) = B·φ(x), the
penalty D and its root, the moments E[uⁿ], which power sum (or moment) goes in which entry
of a Gram (or moment) matrix, the true coefficients, the rule for when one factorisation of
the pencil is accurate, and :class:`StandardBasis`, which bundles them for one degree: the
engine, the conditional moments and the theory all take it.

Numerics: the raw moment matrix Σ_ij = E[x^{i+j}] is hopelessly ill-conditioned away from
[−1, 1] (uniform on [0, 10] with k = 10 has a condition number far beyond 1e16), so all
linear algebra is done in u. With w = Bᵀv the prediction is φ(x)ᵀw = φ(u)ᵀv, and

    Σ_u = B Σ Bᵀ,   P = B D Bᵀ (penalty wᵀDw = vᵀPv),   v* = (β0 + β1·center, β1·scale, 0, …),

the prediction risk is basis-free, (ŵ − w*)ᵀΣ(ŵ − w*) = (v̂ − v*)ᵀΣ_u(v̂ − v*), and means and
covariances map back by w = Bᵀv and Cov w = Bᵀ(Cov v)B.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from study.design import XDistribution


def standard_moments(distribution: str, n_max: int) -> np.ndarray:
    """Moments E[uⁿ], n = 0, …, n_max, of the standardised variable u.

    Parameters
    ----------
    distribution : {"uniform", "normal"}
        u is uniform on [−1, 1] (E[uⁿ] = 1/(n + 1) for even n) or standard normal
        (E[uⁿ] = (n − 1)!! for even n); odd moments are 0.
    n_max : int
        Highest order, ≥ 0.

    Returns
    -------
    ndarray of shape (n_max + 1,)
    """
    if n_max < 0:
        raise ValueError(f"The 'n_max' parameter must be ≥ 0. Got {n_max!r} instead.")
    n = np.arange(n_max + 1)
    mu = np.zeros(n_max + 1)
    even = n % 2 == 0
    if distribution == "uniform":
        mu[even] = 1.0 / (n[even] + 1)
    elif distribution == "normal":
        # (n − 1)!! for even n: 1, 1, 3, 15, 105, …
        mu[even] = np.cumprod(np.concatenate([[1.0], np.arange(1, n_max, 2, dtype=float)]))[
            : even.sum()
        ]
    else:
        raise ValueError(
            f"The 'distribution' parameter must be 'uniform' or 'normal'. Got {distribution!r} "
            "instead."
        )
    return mu


def hankel_index(degree: int) -> np.ndarray:
    """Index array I with I[i, j] = i + j: the Hankel matrix of a sequence s is s[..., I].

    The Gram matrix G = ΦᵀΦ of the basis 1, u, …, u^degree is S[..., I] for the power sums
    S_p = Σu^p, and the moment matrix E[φφᵀ] is μ[I] for the moments μ_n = E[uⁿ].
    """
    r = np.arange(degree + 1)
    return r[:, None] + r[None, :]


def true_coefficients(
    degree: int, *, intercept: float, slope: float, x: XDistribution | None = None
) -> np.ndarray:
    """Coefficients of the true line β0 + β1·x as a polynomial of degree ``degree``.

    Without ``x``, those of the raw monomials 1, x, …, x^degree: w* = (β0, β1, 0, …, 0).
    With ``x``, those of 1, u, …, u^degree for u = (x − x.center)/x.scale:
    v* = (β0 + β1·center, β1·scale, 0, …, 0), so that φ(u)ᵀv* = φ(x)ᵀw*.

    Returns
    -------
    ndarray of shape (degree + 1,)
    """
    w = np.zeros(degree + 1)
    if x is None:
        w[:2] = intercept, slope
    else:
        w[:2] = intercept + slope * float(x.center), slope * float(x.scale)
    return w


def change_of_basis(center: float, scale: float, degree: int) -> np.ndarray:
    """Matrix B with φ(u) = B·φ(x) for u = (x − center)/scale.

    Parameters
    ----------
    center, scale : float
        Standardisation of x; scale > 0.
    degree : int
        Polynomial degree k.

    Returns
    -------
    ndarray of shape (k + 1, k + 1)
        Lower triangular: u^j = Σ_{i≤j} C(j, i)·(−center)^{j−i}·x^i / scale^j.
    """
    B = np.zeros((degree + 1, degree + 1))
    for j in range(degree + 1):
        for i in range(j + 1):
            B[j, i] = comb(j, i) * (-center) ** (j - i) / scale**j
    return B


def penalty_matrix(degree: int, *, penalize_intercept: bool = False) -> np.ndarray:
    """D = diag(0, 1, …, 1), or the identity when the intercept is penalised too."""
    d = np.ones(degree + 1)
    if not penalize_intercept:
        d[0] = 0.0
    return np.diag(d)


def penalty_root(B: np.ndarray, *, penalize_intercept: bool = False) -> np.ndarray:
    """F with P = BDBᵀ = FFᵀ: the columns of B whose coefficient is penalised."""
    return B if penalize_intercept else B[:, 1:]


# The bases the coefficients may be written in: the monomials 1, x, …, x^k, or polynomials
# orthonormal under the distribution of x (normalised Legendre in u for uniform x,
# normalised probabilists' Hermite in u for normal x), the constant first.
BASES = ("monomial", "orthonormal")


def check_basis(basis: str) -> str:
    if basis not in BASES:
        raise ValueError(
            f"The 'basis' parameter must be one of {list(BASES)}. Got {basis!r} instead."
        )
    return basis


def orthonormal_coefficients(distribution: str, degree: int) -> np.ndarray:
    """Matrix L whose row j holds the coefficients of ψ_j in 1, u, …, u^k: ψ(u) = L·φ(u),
    with E[ψ(u)ψ(u)ᵀ] = I for u uniform on [−1, 1] (ψ_j = √(2j + 1)·P_j, Legendre) or
    standard normal (ψ_j = He_j/√(j!), probabilists' Hermite). Lower triangular, ψ_0 = 1,
    so that the first coefficient stays the intercept."""
    from numpy.polynomial import hermite_e, legendre

    L = np.zeros((degree + 1, degree + 1))
    for j in range(degree + 1):
        unit = np.zeros(j + 1)
        unit[j] = 1.0
        if distribution == "uniform":
            L[j, : j + 1] = legendre.leg2poly(unit) * np.sqrt(2 * j + 1)
        elif distribution == "normal":
            L[j, : j + 1] = hermite_e.herme2poly(unit) / np.sqrt(
                float(np.prod(np.arange(1, j + 1)))
            )
        else:
            raise ValueError(
                f"The 'distribution' parameter must be 'uniform' or 'normal'. Got "
                f"{distribution!r} instead."
            )
    return L


def pencil_is_stable(center: float, scale: float) -> bool:
    """Whether the pencil factorisation is accurate for this standardisation.

    Far from the origin (|center| > scale) the raw-coefficient penalty, seen in u, is so
    anisotropic that its small generalised eigenvalues lose all relative accuracy, and an
    α of hundreds multiplies that error into the fit (seen: errors of 10⁻¹ on [−4.6, −4.2]
    at degree 5). There a direct solve per α is accurate to about 10⁻¹¹; on ranges that
    contain or touch 0, [0, 10] at degree 10 included, the pencil is accurate to 10⁻¹⁰.
    """
    return abs(center) <= scale


# --- one degree's problem in the standardised basis ---------------------------------------


@dataclass(frozen=True)
class StandardBasis:
    """One problem (x distribution, degree, true line, penalty) in the standardised basis.

    Attributes
    ----------
    degree : int
        Polynomial degree k.
    B : ndarray of shape (k + 1, k + 1)
        φ(u) = B·φ(x); raw coefficients are w = Bᵀv.
    sigma : ndarray of shape (k + 1, k + 1)
        Σ_u = E[φ(u)φ(u)ᵀ] = B Σ Bᵀ.
    penalty : ndarray of shape (k + 1, k + 1)
        P = B D Bᵀ.
    mu : ndarray of shape (4k + 1,)
        Moments E[uⁿ] up to n = 4k (what the sandwich term needs).
    v_star, w_star : ndarray of shape (k + 1,)
        True coefficients in the u basis and in the raw basis.
    F : ndarray of shape (k + 1, k + 1) or (k + 1, k)
        A root of the penalty, P = FFᵀ (:func:`penalty_root`).
    use_pencil : bool
        Whether one factorisation of the pencil (G, P) is accurate (:func:`pencil_is_stable`).
    B_is_identity : bool
        u = x (then ŵ = v̂ needs no product).
    """

    degree: int
    B: np.ndarray
    sigma: np.ndarray
    penalty: np.ndarray
    mu: np.ndarray
    v_star: np.ndarray
    w_star: np.ndarray
    F: np.ndarray
    use_pencil: bool
    B_is_identity: bool

    def to_raw(self, v: np.ndarray) -> np.ndarray:
        """Raw coefficients w = Bᵀv for v of shape (..., k + 1)."""
        return np.asarray(v) @ self.B

    def cov_to_raw(self, cov: np.ndarray) -> np.ndarray:
        """Raw covariance Bᵀ C B for C of shape (..., k + 1, k + 1)."""
        return np.swapaxes(self.B, 0, 1) @ np.asarray(cov) @ self.B

    def fourth_moment(self, b: np.ndarray) -> np.ndarray:
        """E[φ(u)φ(u)ᵀ(φ(u)ᵀb)²] exactly from the moments, for b of shape (..., k + 1).

        Entry (i, j) is Σ_{k,l} b_k b_l E[u^{i+j+k+l}].
        """
        return np.einsum("ijkl,...k,...l->...ij", self._hankel4(), b, b)

    def quartic(self, M: np.ndarray) -> np.ndarray:
        """E[φ(u)φ(u)ᵀ M φ(u)φ(u)ᵀ] exactly from the moments, for M of shape (..., p, p).

        Entry (i, j) is Σ_{k,l} M_kl E[u^{i+j+k+l}].
        """
        return np.einsum("ijkl,...kl->...ij", self._hankel4(), M)

    def _hankel4(self) -> np.ndarray:
        """E[u^{i+j+k+l}] for i, j, k, l = 0 … k."""
        r = np.arange(self.degree + 1)
        return self.mu[
            r[:, None, None, None]
            + r[None, :, None, None]
            + r[None, None, :, None]
            + r[None, None, None, :]
        ]


def standard_basis(
    x: XDistribution,
    degree: int,
    *,
    intercept: float,
    slope: float,
    penalize_intercept: bool = False,
    basis: str = "monomial",
) -> StandardBasis:
    """Build the standardised-basis description of one problem (see the module docstring).

    Parameters
    ----------
    x : XDistribution
        Distribution of x; u = (x − x.center)/x.scale.
    degree : int
        Polynomial degree k ≥ 1.
    intercept, slope : float
        β0 and β1 of the true line.
    penalize_intercept : bool, default=False
        D = I instead of diag(0, 1, …, 1).
    basis : {"monomial", "orthonormal"}, default="monomial"
        The coefficients w, and so the penalty wᵀDw, of the monomials 1, x, …, x^k, or of
        the polynomials ψ(u) = L·φ(u) orthonormal under the distribution of x
        (:func:`orthonormal_coefficients`): then φ(u) = L⁻¹ψ(u), so B = L⁻¹, and
        everything downstream (the engine, the conditional moments, the theory) is the same
        code with another B.

    Returns
    -------
    StandardBasis
    """
    if isinstance(degree, bool) or int(degree) != degree or degree < 1:
        raise ValueError(f"The 'degree' parameter must be an integer ≥ 1. Got {degree!r} instead.")
    degree = int(degree)
    c, s = float(x.center), float(x.scale)
    v_star = true_coefficients(degree, intercept=intercept, slope=slope, x=x)
    if check_basis(basis) == "monomial":
        B = change_of_basis(c, s, degree)
        w_star = true_coefficients(degree, intercept=intercept, slope=slope)
        # the orthonormal basis is defined in u: its penalty is as well conditioned on any
        # x range, so one factorisation of the pencil serves
        use_pencil = pencil_is_stable(c, s)
    else:
        # ψ = Lφ(u) and φ(u)ᵀv = ψᵀw give v = Lᵀw, w = L⁻ᵀv = Bᵀv with B = L⁻¹
        B = np.linalg.inv(orthonormal_coefficients(x.distribution, degree))
        w_star = B.T @ v_star
        use_pencil = True
    D = penalty_matrix(degree, penalize_intercept=penalize_intercept)
    F = penalty_root(B, penalize_intercept=penalize_intercept)
    mu = standard_moments(x.distribution, 4 * degree)
    return StandardBasis(
        degree=degree,
        B=B,
        sigma=mu[hankel_index(degree)],
        penalty=B @ D @ B.T,
        mu=mu,
        v_star=v_star,
        w_star=w_star,
        F=F,
        use_pencil=use_pencil,
        B_is_identity=bool(np.array_equal(B, np.eye(degree + 1))),
    )
