"""The minibatch experiment of the theory step (a design's [minibatch] table,
minibatch.csv): on one data set of the design's line read as log-odds, minibatch SGD
(:func:`study.minibatch.minibatch_logistic`, its steps compiled:
:func:`study.engine.sgd.compiled_steps`) with each batch size and the penalty divided
by m and by the batch size, beside the exact full-batch fits
(:func:`study.logistic.fit_polynomial_logistic`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from study.design import DesignError
from study.engine.sgd import compiled_steps
from study.engine.streams import draw_u
from study.logistic import NoEstimate, fit_polynomial_logistic, sigmoid
from study.minibatch import DIVISORS, minibatch_logistic

MINIBATCH_COLUMNS = [
    "divisor",
    "batch_size",
    "seed",
    "alpha",
    "coef",
    "sgd",
    "exact",
    "exact_m",
]


def step_size(batch_size: int) -> float:
    """η₀ of the experiment: 1, and a quarter for B = 1, whose steps carry the most gradient
    noise (the Polyak average of a finite run keeps an offset that grows with the step)."""
    return 0.25 if batch_size == 1 else 1.0


def experiment_data(design) -> tuple[np.ndarray, np.ndarray]:
    """The experiment's one data set: m points x from the design's x distribution and labels
    y ~ Bernoulli(σ(β0 + β1·x)), the design's line read as log-odds, from the stream
    ``SeedSequence(seed, spawn_key=(0,))``, which no chunk of the engine uses (theirs are
    keyed (m, chunk))."""
    spec = design.minibatch
    rng = np.random.default_rng(np.random.SeedSequence(design.seed, spawn_key=(0,)))
    x = design.x.center + design.x.scale * draw_u(rng, design.x, spec.m)
    p = sigmoid(design.intercept + design.slope * x)
    y = (rng.random(spec.m) < p).astype(float)
    return x, y


def check_data(design) -> None:
    """Raise DesignError (one line) if the experiment's labels are all equal: its penalised
    fit, with the intercept unpenalised, would not exist. The data depend on the seed and
    [minibatch] alone, so this is known before anything runs."""
    x, y = experiment_data(design)
    if y.min() == y.max():
        m = design.minibatch.m
        raise DesignError(
            f"key 'minibatch.m': got {m}; every one of its {m} labels came out {int(y[0])}, "
            "so the penalised fit does not exist: use a larger m or another seed"
        )


def minibatch_table(design):
    """The minibatch experiment of a design with [minibatch] (``design.minibatch``): on one
    data set (:func:`experiment_data`), Polyak-averaged SGD with every batch size B, the
    penalty divided by m and by B, ``seeds`` runs each; beside every run the exact
    full-batch fit of the problem it solves (α = λ with the penalty divided by m,
    α = m·λ/B with it divided by B) and that of Ng's problem (α = λ). One row per run and
    coefficient: ``divisor``, ``batch_size``, ``seed``, ``alpha``, ``coef``, ``sgd``,
    ``exact``, ``exact_m``."""
    spec = design.minibatch
    x, y = experiment_data(design)
    k, m, lam = spec.degree, spec.m, spec.lam

    def exact(c: float) -> np.ndarray:
        try:  # c as written with scaling "none": α = m·c
            return fit_polynomial_logistic(x, y, degree=k, lam=c, scaling="none")
        except NoEstimate:
            raise DesignError(
                f"key 'minibatch.m': got {m}; every one of its {m} labels came out "
                f"{int(y[0])}, so the penalised fit does not exist: use a larger m"
            ) from None

    ng = exact(lam / m)
    seeds = np.random.SeedSequence(design.seed, spawn_key=(1,)).generate_state(spec.seeds)
    rows = []
    runs: dict[tuple, np.ndarray] = {}  # with B = m both divisors are the same run
    for divisor in DIVISORS:
        for B in spec.batch_sizes:
            c = lam / (m if divisor == "m" else B)
            target = exact(c)
            for i, seed in enumerate(seeds):
                if (B, c, i) in runs:
                    w = runs[(B, c, i)]
                else:
                    w = runs[(B, c, i)] = minibatch_logistic(
                        x,
                        y,
                        degree=k,
                        lam=lam,
                        batch_size=B,
                        divisor=divisor,
                        steps=spec.steps,
                        step=step_size(B),
                        seed=int(seed),
                        run_steps=compiled_steps,
                    )
                for j in range(k + 1):
                    rows.append(
                        {
                            "divisor": divisor,
                            "batch_size": B,
                            "seed": i,
                            "alpha": m * c,
                            "coef": j,
                            "sgd": w[j],
                            "exact": target[j],
                            "exact_m": ng[j],
                        }
                    )
    return pd.DataFrame(rows, columns=MINIBATCH_COLUMNS)
