"""Mergeable first and second co-moments of vectors of per-replication quantities.

A set of replications (a chunk) is summarised by (n, mean, M) with M = Σ_r (q_r − q̄)(q_r − q̄)ᵀ.
Two summaries merge exactly (Chan, Golub & LeVeque 1979):

    δ = q̄_B − q̄_A,  n = n_A + n_B,  q̄ = q̄_A + δ·n_B/n,  M = M_A + M_B + δδᵀ·n_A·n_B/n,

so memory does not grow with the number of replications, and merging in a fixed order
keeps results bit-identical (:meth:`CoMoments.combine` merges many at once). Because the
quantities include squares (d and d² for the error d = ŵ − w*), the central moments up to
the fourth that the Monte Carlo standard errors of docs/results.md need follow from these
co-moments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class CoMoments:
    """Count, mean and co-moment sums of p quantities, for any stack of cells.

    Attributes
    ----------
    n : ndarray of shape (...)
        Number of replications merged.
    mean : ndarray of shape (..., p)
    M : ndarray of shape (..., p, p)
        Σ_r (q_r − q̄)(q_r − q̄)ᵀ.
    """

    n: np.ndarray
    mean: np.ndarray
    M: np.ndarray

    @classmethod
    def from_samples(cls, q: np.ndarray) -> CoMoments:
        """Summarise samples q of shape (R, ..., p) along the first axis (two-pass)."""
        R = q.shape[0]
        mean = q.mean(axis=0)
        dev = (q - mean).reshape(R, -1, q.shape[-1])
        # optimize=True lets einsum hand the sum over replications to BLAS: 5× faster
        M = np.einsum("rki,rkj->kij", dev, dev, optimize=True).reshape(mean.shape + q.shape[-1:])
        return cls(n=np.full(mean.shape[:-1], float(R)), mean=mean, M=M)

    @classmethod
    def from_masked_samples(cls, q: np.ndarray, ok: np.ndarray) -> CoMoments:
        """Like :meth:`from_samples`, keeping replication r of a cell only where ok[r, ...]."""
        w = ok.astype(float)[..., None]
        n = w.sum(axis=0)
        qz = np.where(ok[..., None], q, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, qz.sum(axis=0) / np.maximum(n, 1), 0.0)
        dev = (qz - mean) * w
        M = np.einsum("r...i,r...j->...ij", dev, dev)
        return cls(n=n[..., 0], mean=mean, M=M)

    @classmethod
    def empty(cls, shape: tuple[int, ...], p: int) -> CoMoments:
        return cls(n=np.zeros(shape), mean=np.zeros(shape + (p,)), M=np.zeros(shape + (p, p)))

    def merge(self, other: CoMoments) -> CoMoments:
        """Exact merge of two summaries of disjoint sets of replications."""
        n = self.n + other.n
        safe = np.where(n > 0, n, 1.0)
        delta = other.mean - self.mean
        frac = (other.n / safe)[..., None]
        mean = self.mean + delta * frac
        weight = (self.n * other.n / safe)[..., None, None]
        M = self.M + other.M + delta[..., :, None] * delta[..., None, :] * weight
        return CoMoments(n=n, mean=mean, M=M)

    @classmethod
    def combine(cls, parts: list[CoMoments]) -> CoMoments:
        """Exact merge of many summaries of disjoint sets of replications, all at once:

            n = Σ n_b,  q̄ = Σ n_b q̄_b / n,  M = Σ M_b + Σ n_b (q̄_b − q̄)(q̄_b − q̄)ᵀ,

        the closed form of merging them one by one (Chan et al.), in one vectorised pass.
        Parts with n_b = 0 contribute nothing.
        """
        n_b = np.stack([p.n for p in parts])
        mean_b = np.stack([p.mean for p in parts])
        n = n_b.sum(axis=0)
        mean = (n_b[..., None] * mean_b).sum(axis=0) / np.where(n > 0, n, 1.0)[..., None]
        dev = (mean_b - mean) * np.sqrt(n_b)[..., None]
        M = sum(p.M for p in parts) + np.einsum("b...i,b...j->...ij", dev, dev)
        return cls(n=n, mean=mean, M=M)

    def cov(self) -> np.ndarray:
        """Sample covariance with denominator n − 1 (NaN where n < 2)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return (
                np.where((self.n >= 2)[..., None, None], self.M, np.nan)
                / (self.n - 1)[..., None, None]
            )
