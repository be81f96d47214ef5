"""The tuned λ across m: where the prediction risk is smallest, under each scaling.

For each degree and m, α*(m) minimises the expected prediction risk, (a) exactly given the
design, averaged over simulated designs (the first block's data sets, from the same random
streams as the simulation), and (b) by the large-m formula. The risk depends on α only, so
λ* under each scaling is the λ that gives α*: λ* = α*/m under `none`, α* under `m`.

The transfer table answers the practical question: tune λ once at m₀, keep it, and fit at
another m. Under `m` the α it implies stays put; under `none` it grows like m. The ratio
of the risk at that λ to the risk at the best λ for m says what keeping λ costs.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pandas as pd

from .basis import hankel_index
from .design import Design
from .dgp import block_power_sums
from .scaling import alpha as scaling_alpha
from .scaling import lam_from_alpha
from .theory import (
    conditional_risk,
    optimal_alpha_limit,
    optimal_lambda_asymptotic,
    optimal_lambda_conditional,
    standard_basis,
)

TUNING_COLUMNS = [
    "m", "degree", "scaling", "method", "lambda_opt", "alpha_opt", "risk_opt", "boundary",
    "alpha_limit",
]  # fmt: skip
TRANSFER_COLUMNS = ["m0", "m", "degree", "scaling", "lambda", "alpha", "risk", "risk_opt",
                    "risk_ratio"]  # fmt: skip
DESIGNS_FOR_TUNING = 400


@functools.lru_cache(maxsize=256)
def design_grams(design: Design, m: int, degree: int, n: int = DESIGNS_FOR_TUNING) -> np.ndarray:
    """Gram matrices G_u of the first n simulated designs of size m (block 0, then 1, …):
    the simulation's own designs, drawn again from the x stream alone."""
    grams = []
    block = got = 0
    while got < n and block < design.n_blocks:
        S, _ = block_power_sums(design, m, block, degree, first=n - got, noise=False)
        grams.append(S[:, hankel_index(degree)])
        got += S.shape[0]
        block += 1
    return np.concatenate(grams)


def _kw(design: Design) -> dict:
    return dict(
        x=design.x, intercept=design.intercept, slope=design.slope,
        noise_sd=design.noise_sd, penalize_intercept=design.penalize_intercept,
    )  # fmt: skip


def tuning_table(design: Design) -> pd.DataFrame:
    """λ*(m), α*(m) and the minimal risk for every m, degree and scaling, both methods."""
    rows = []
    for k in design.degree:
        limit = optimal_alpha_limit(k, **_kw(design))
        for m in design.m:
            cond = optimal_lambda_conditional(design_grams(design, m, k), m, k, "m", **_kw(design))
            asym = optimal_lambda_asymptotic(m, k, "m", **_kw(design))
            for method, tuned in (("conditional", cond), ("asymptotic", asym)):
                for s in design.scaling:
                    rows.append({
                        "m": m, "degree": k, "scaling": s, "method": method,
                        "lambda_opt": lam_from_alpha(tuned.alpha, m=m, degree=k, scaling=s),
                        "alpha_opt": tuned.alpha, "risk_opt": tuned.risk,
                        "boundary": tuned.boundary or "", "alpha_limit": limit,
                    })  # fmt: skip
    return pd.DataFrame(rows, columns=TUNING_COLUMNS)


def transfer_table(design: Design, tuning: pd.DataFrame) -> pd.DataFrame:
    """Risk at every m of the λ tuned at each m0 (conditional method), relative to the best.

    Designs with m ≤ degree + 2 are left out: there the unpenalised risk is infinite and the
    comparison says nothing about scaling.
    """
    rows = []
    cond = tuning[tuning.method == "conditional"]
    keys = zip(cond.m, cond.degree, cond.scaling, strict=True)
    best = {key: (lam, risk) for key, lam, risk in zip(keys, cond.lambda_opt, cond.risk_opt,
                                                        strict=True)}  # fmt: skip
    for k in design.degree:
        basis = standard_basis(
            design.x, k, intercept=design.intercept, slope=design.slope,
            penalize_intercept=design.penalize_intercept,
        )  # fmt: skip
        pairs = [(m0, s) for m0, s in itertools.product(design.m, design.scaling) if m0 > k + 2]
        for m in design.m:
            if m <= k + 2 or not pairs:
                continue
            lams = [float(best[(m0, k, s)][0]) for m0, s in pairs]
            alphas = np.array([scaling_alpha(lam, m=m, degree=k, scaling=s)
                               for lam, (_, s) in zip(lams, pairs, strict=True)])  # fmt: skip
            # every (m0, scaling) at this m in one batched evaluation
            risks = conditional_risk(
                design_grams(design, m, k), alphas, basis=basis, noise_sd=design.noise_sd
            )
            for (m0, s), lam, a, risk in zip(pairs, lams, alphas, risks, strict=True):
                risk_opt = float(best[(m, k, s)][1])
                rows.append({
                    "m0": m0, "m": m, "degree": k, "scaling": s, "lambda": lam, "alpha": a,
                    "risk": risk, "risk_opt": risk_opt, "risk_ratio": risk / risk_opt,
                })  # fmt: skip
    rows.sort(key=lambda r: (r["degree"], r["scaling"], r["m0"], r["m"]))
    return pd.DataFrame(rows, columns=TRANSFER_COLUMNS)
