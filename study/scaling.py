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


def check_scaling(scaling: str, *, name: str = "scaling") -> str:
    """The one check of a scaling's name: return it, or raise the one-line error.

    Parameters
    ----------
    scaling : str
        The name to check.
    name : str, default "scaling"
        The parameter's name in the message.

    Raises
    ------
    ValueError
        "The '<name>' parameter must be one of [...]. Got <scaling> instead."
    """
    if scaling not in SCALINGS:
        raise ValueError(
            f"The '{name}' parameter must be one of {list(SCALINGS)}. Got {scaling!r} instead."
        )
    return scaling


def alpha(lam: float, *, m: int, degree: int, scaling: str) -> float:
    """Sum-form ridge parameter α = m·c, as in scikit-learn ``Ridge(alpha=α)``.

    Examples
    --------
    >>> alpha(0.1, m=100, degree=2, scaling="m")
    0.1
    >>> alpha(0.1, m=100, degree=2, scaling="none")
    10.0
    """
    check_scaling(scaling)
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
    check_scaling(scaling)
    if scaling == "none":
        return alpha_value / m
    if scaling == "m":
        return float(alpha_value)
    if scaling == "sqrt-m":
        return alpha_value / math.sqrt(m)
    return alpha_value * degree / m
