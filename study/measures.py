"""Performance measures and their Monte Carlo standard errors (docs/results.md).

Every measure follows from the merged co-moments of the per-replication quantities
(see :mod:`study.engine.tasks`): for a coefficient, q = (d, d², e, e², v) with d = ŵ − w*,
e = E[ŵ | X] − w*, v = Var[ŵ | X]; for the risk, (R, R², E[R | X]). With n replications,
q̄ the mean and M = Σ(q − q̄)(q − q̄)ᵀ:

- bias = d̄, MCSE √(S²/n);
- variance S² = M_dd/(n − 1), MCSE √((m₄ − m₂²)/n), kurtosis-robust (Morris et al. 2019,
  Table 6), with m₄ − m₂² = Var((d − d̄)²) = (M_{d²d²} − 4d̄·M_{d,d²} + 4d̄²·M_dd)/n;
- SD = S, MCSE = MCSE(variance)/(2S);
- MSE = mean of d², MCSE √(Σ(d² − MSE)²/(n(n − 1)));
- Rao–Blackwell: bias_rb = ē, var_rb = v̄ + S²_e (law of total variance), with MCSEs by the
  delta method on the means of (e, e², v);
- the MCSE of each Monte Carlo minus Rao–Blackwell difference, by the delta method on all
  five means: the two estimates come from the same data sets, so their errors are
  correlated and the standard error of the difference is not the root sum of squares;
- the tail shares p_gt_t: the finite fits with |d| > t (TAIL_THRESHOLDS), counted by the
  engine over every replication, over n; binomial standard error √(p(1 − p)/n).
"""

from __future__ import annotations

import numpy as np

from study.moments import CoMoments

# The tails of the estimates: every fit is counted where its error |ŵ_j − w*_j| exceeds
# each of these (summary.csv's p_gt_1, p_gt_10, p_gt_100, over all replications).
TAIL_THRESHOLDS = (1.0, 10.0, 100.0)

D, D2, E, E2, V = range(5)
R, R2, RB = range(3)


def _delta_se(cm: CoMoments, grad: np.ndarray) -> np.ndarray:
    """√(gᵀ C g / n): standard error of a smooth function of the means with gradient g,
    C the sample covariance of the quantities (the delta method)."""
    cov = cm.cov()
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.einsum("...i,...ij,...j->...", grad, cov, grad) / cm.n
    return np.sqrt(np.clip(var, 0.0, None))


def _kurtosis(n, mean, M, i, i2):
    """Excess kurtosis m₄/m₂² − 3 of the quantity at index i (its square at i2)."""
    mu = mean[..., i]
    with np.errstate(invalid="ignore", divide="ignore"):
        m2 = M[..., i, i] / n
        var_dev2 = (M[..., i2, i2] - 4 * mu * M[..., i, i2] + 4 * mu**2 * M[..., i, i]) / n
        return (var_dev2 + m2**2) / m2**2 - 3.0


def coefficient_measures(cm: CoMoments) -> dict[str, np.ndarray]:
    """Measures of every cell and coefficient from the co-moments of (d, d², e, e², v).

    Returns a dict of arrays of the shape of ``cm.n``; cells with n < 2 give NaN.
    """
    n, mean, M = cm.n, cm.mean, cm.M
    with np.errstate(invalid="ignore", divide="ignore"):
        nn = np.where(n >= 2, n, np.nan)
        bias = np.where(n >= 1, mean[..., D], np.nan)
        var = M[..., D, D] / (nn - 1)
        mu = mean[..., D]
        var_dev2 = (M[..., D2, D2] - 4 * mu * M[..., D, D2] + 4 * mu**2 * M[..., D, D]) / nn
        var_mcse = np.sqrt(np.clip(var_dev2, 0, None) / nn)
        sd = np.sqrt(var)
        mse = np.where(n >= 1, mean[..., D2], np.nan)
        mse_mcse = np.sqrt(M[..., D2, D2] / (nn * (nn - 1)))
        e_bar, d_bar = mean[..., E], mean[..., D]
        zeros = np.zeros_like(e_bar)
        ones = np.ones_like(e_bar)
        grad_var_rb = np.stack([zeros, zeros, -2 * e_bar, ones, ones], axis=-1)
        grad_bias_diff = np.stack([ones, zeros, -ones, zeros, zeros], axis=-1)
        grad_var_diff = np.stack([-2 * d_bar, ones, 2 * e_bar, -ones, -ones], axis=-1)
        return {
            "n": n,
            "bias": bias,
            "bias_mcse": np.sqrt(var / nn),
            "var": var,
            "var_mcse": var_mcse,
            "sd": sd,
            "sd_mcse": var_mcse / (2 * sd),
            "mse": mse,
            "mse_mcse": mse_mcse,
            "kurtosis": _kurtosis(nn, mean, M, D, D2),
            "bias_rb": np.where(n >= 1, e_bar, np.nan),
            "bias_rb_mcse": np.sqrt(M[..., E, E] / (nn - 1) / nn),
            "var_rb": mean[..., V] + M[..., E, E] / (nn - 1),
            "var_rb_mcse": _delta_se(cm, grad_var_rb),
            "bias_diff_mcse": _delta_se(cm, grad_bias_diff),
            "var_diff_mcse": _delta_se(cm, grad_var_diff),
        }


def risk_measures(cm: CoMoments) -> dict[str, np.ndarray]:
    """Prediction-risk measures of every cell from the co-moments of (R, R², E[R|X])."""
    n, mean, M = cm.n, cm.mean, cm.M
    with np.errstate(invalid="ignore", divide="ignore"):
        nn = np.where(n >= 2, n, np.nan)
        ones = np.ones_like(n)
        zeros = np.zeros_like(n)
        return {
            "n": n,
            "risk": np.where(n >= 1, mean[..., R], np.nan),
            "risk_mcse": np.sqrt(M[..., R, R] / (nn - 1) / nn),
            "risk_kurtosis": _kurtosis(nn, mean, M, R, R2),
            "risk_rb": np.where(n >= 1, mean[..., RB], np.nan),
            "risk_rb_mcse": np.sqrt(M[..., RB, RB] / (nn - 1) / nn),
            "risk_diff_mcse": _delta_se(cm, np.stack([ones, zeros, -ones], axis=-1)),
        }
