"""The four penalty scalings of the study (docs/model.md).

Every scaling writes the penalty of the mean-loss objective

    J(w) = (1/2m) Σ_i (φ(x_i)ᵀw − y_i)²  +  (c/2) Σ_{j≥1} w_j²

with its own factor c = c(λ, m, k). Multiplying J by 2m gives the sum form
Σ(φᵀw − y)² + α‖Dw‖² with α = m·c, the form every fit in the package solves.
"""

from __future__ import annotations

import math

SCALINGS: tuple[str, ...] = ("none", "m", "sqrt-m", "k")

# Penalty as written in the mean-loss objective, for tables and labels.
PENALTY_AS_WRITTEN: dict[str, str] = {
    "none": "(λ/2)Σw²",
    "m": "(λ/2m)Σw²",
    "sqrt-m": "(λ/2√m)Σw²",
    "k": "(λ/2k)Σw²",
}

# α = m·c as a formula, for tables and labels.
ALPHA_FORMULA: dict[str, str] = {
    "none": "m·λ",
    "m": "λ",
    "sqrt-m": "√m·λ",
    "k": "m·λ/k",
}


def _check_scaling(scaling: str) -> None:
    if scaling not in SCALINGS:
        raise ValueError(
            f"The 'scaling' parameter must be one of {list(SCALINGS)}. Got {scaling!r} instead."
        )


def penalty_factor(lam: float, *, m: int, degree: int, scaling: str) -> float:
    """Factor c of the mean-loss penalty (c/2)·Σw² for one scaling.

    Parameters
    ----------
    lam : float
        The regularisation parameter λ as the user writes it.
    m : int
        Number of training samples.
    degree : int
        Degree k of the polynomial (the number of penalised weights).
    scaling : {"none", "m", "sqrt-m", "k"}
        Which convention divides λ.

    Returns
    -------
    float
        c = λ, λ/m, λ/√m or λ/k.
    """
    _check_scaling(scaling)
    if scaling == "none":
        return float(lam)
    if scaling == "m":
        return lam / m
    if scaling == "sqrt-m":
        return lam / math.sqrt(m)
    return lam / degree


def alpha(lam: float, *, m: int, degree: int, scaling: str) -> float:
    """Sum-form ridge parameter α = m·c, as in scikit-learn ``Ridge(alpha=α)``.

    Examples
    --------
    >>> alpha(0.1, m=100, degree=2, scaling="m")
    0.1
    >>> alpha(0.1, m=100, degree=2, scaling="none")
    10.0
    """
    _check_scaling(scaling)
    # Written out per scaling rather than as m·c so that `m` returns λ exactly.
    if scaling == "none":
        return m * float(lam)
    if scaling == "m":
        return float(lam)
    if scaling == "sqrt-m":
        return math.sqrt(m) * lam
    return m * lam / degree


def lam_from_alpha(alpha_value: float, *, m: int, degree: int, scaling: str) -> float:
    """Inverse of :func:`alpha`: the λ that gives sum-form α under a scaling."""
    _check_scaling(scaling)
    if scaling == "none":
        return alpha_value / m
    if scaling == "m":
        return float(alpha_value)
    if scaling == "sqrt-m":
        return alpha_value / math.sqrt(m)
    return alpha_value * degree / m
