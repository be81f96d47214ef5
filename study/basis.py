"""The standardised variable u and the polynomial basis: what the data-generating process,
the engine and the theory share (docs/model.md, docs/theory.md).

u = (x − center)/scale is uniform on [−1, 1] or standard normal. Everything that depends
only on that and on the true line lives here, once: the moments E[uⁿ], which power sum (or
moment) goes in which entry of a Gram (or moment) matrix, and the true coefficients.
"""

from __future__ import annotations

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
