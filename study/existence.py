"""Which moments of the fitted coefficients exist: the one rule behind every "finite
moments" column, figure filter and check (see docs/theory.md)."""

from __future__ import annotations

import math


def finite_moment_order(m: int, degree: int, lam: float) -> float:
    """Order below which the moments of the fitted coefficients are finite.

    With λ > 0 the matrix A = G + αD is bounded away from singular (G₀₀ = m and the penalty
    holds every other direction), so ŵ = A⁻¹b has moments of every order: returns inf.

    With λ = 0, ŵ = G⁻¹b is of order 1/s where s is the smallest singular value of the
    design matrix Φ, and s is small when all m points crowd round the roots of some
    degree-k polynomial p. Take l = ⌊k/j⌋ root locations of multiplicity j: every point
    within δ of one of them has |p(x_i)| ≲ δ^j, so s ≲ δ^j, and for any continuous x the
    event has probability of order δ^(m−l) (each point near one of the locations, the l
    locations free). Hence P(s < ε) ≍ ε^((m − ⌊k/j⌋)/j) and

        E|ŵ|^r < ∞  exactly when  r < min over j = 1…k of (m − ⌊k/j⌋)/j.

    j = 1 gives m − k: the parabola through three points (m = 3, k = 2) has no finite
    mean. Clustering at one point (j = k) gives (m − 1)/k, which governs high degrees:
    degree 5 needs m > 11 for a finite variance and m > 21 for the fourth moment that the
    Monte Carlo standard error of a variance needs. The default study's sample kurtosis
    mostly agrees: above 10 in 83 % of the unpenalised cells of order ≤ 4 (median 474) and
    in 1 % of those above (median 0). Cells just below 4 can look tame at a feasible number
    of replications (degree 5, m = 20, order 3.8: kurtosis 0.5): an infinite moment shows
    only in rare draws, so a sample does not prove it finite. And cells just above a
    threshold behave as if their tails were heavier: with an order between 4 and 6 the
    median kurtosis is 4.2 (11.8 at degree 2, m = 10, order 4.5), against 0.02 from order 6
    on, so their variance MCSEs converge slowly.

    Returns
    -------
    float
        The order (≤ 0 when not identifiable) for λ = 0; inf for λ > 0.
    """
    if lam > 0:
        return math.inf
    return float(min((m - degree // j) / j for j in range(1, degree + 1)))
