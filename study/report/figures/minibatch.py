"""The minibatch experiment: what SGD with batches of B reaches, with the penalty divided by
m and by B, against the exact full-batch solutions (minibatch.csv)."""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from study.report.figures._style import (
    DASHED,
    RC,
    SCALING_COLORS,
    THEORY_COLOR,
    coef_symbol,
    new_figure,
    style_legend,
)

DIVISOR_TITLES = {
    "m": "penalty (λ/2m)Σw², divided by m (Ng)",
    "batch": "penalty (λ/2B)Σw², divided by the batch size B",
}


def fig_minibatch(frame: pd.DataFrame, *, coef: int = 1) -> Figure:
    """Coefficient ``coef`` reached by minibatch SGD against the batch size B, one panel per
    divisor: every seed's run (filled markers, side by side), the exact full-batch solution
    of the problem the run solves (open circles; α = m·λ/B when the penalty is divided by
    B, written beside each) and that of Ng's problem, α = λ (dashed line, the same in both
    panels)."""
    need = {"divisor", "batch_size", "seed", "alpha", "coef", "sgd", "exact", "exact_m"}
    if missing := need - set(frame.columns):
        raise ValueError(f"minibatch table lacks the columns {sorted(missing)}")
    rows = frame[frame.coef == coef]
    if rows.empty:
        raise ValueError(f"minibatch table has no coefficient {coef}")
    divisors = [d for d in DIVISOR_TITLES if d in set(rows.divisor)]
    batch_sizes = sorted(set(rows.batch_size))
    seeds = sorted(set(rows.seed))
    symbol = coef_symbol(coef)
    with mpl.rc_context(RC):
        fig = new_figure(2.6)
        axes = fig.subplots(1, len(divisors), sharey=True, squeeze=False)[0]
        ng = float(rows.exact_m.iloc[0])
        for ax, divisor in zip(axes, divisors, strict=True):
            part = rows[rows.divisor == divisor]
            ax.axhline(ng, color=THEORY_COLOR, linestyle=DASHED, linewidth=0.9, zorder=1)
            exact = part.groupby("batch_size").exact.first().reindex(batch_sizes)
            ax.plot(
                batch_sizes, exact.to_numpy(), "o", mfc="white", mec=THEORY_COLOR, ms=7,
                mew=0.9, zorder=2, gid="exact",
            )  # fmt: skip
            # the seeds side by side, a little apart on the log axis
            spread = np.linspace(-0.06, 0.06, len(seeds)) if len(seeds) > 1 else [0.0]
            for offset, seed in zip(spread, seeds, strict=True):
                run = part[part.seed == seed].set_index("batch_size").sgd.reindex(batch_sizes)
                ax.plot(
                    np.asarray(batch_sizes) * 10**offset, run.to_numpy(), "s",
                    color=SCALING_COLORS["m" if divisor == "m" else "none"], ms=3, zorder=3,
                    gid=f"sgd-{seed}",
                )  # fmt: skip
            if divisor == "batch":  # the problem each batch size solves
                alphas = part.groupby("batch_size").alpha.first().reindex(batch_sizes)
                for i, (b, a, w) in enumerate(zip(batch_sizes, alphas, exact, strict=True)):
                    first = i == 0  # right of it; the others below left, off the line
                    ax.annotate(
                        f"α = {a:g}", (b, w), xytext=(9, 0) if first else (-6, -8),
                        textcoords="offset points", ha="left" if first else "right",
                        va="center" if first else "top", fontsize=7, color="0.25",
                    )  # fmt: skip
            ax.set_xscale("log")
            ax.set_xticks(batch_sizes, [f"{b:,}" for b in batch_sizes])
            ax.minorticks_off()
            ax.set_xlabel("batch size B")
            ax.set_title(DIVISOR_TITLES[divisor], loc="left")
        axes[0].set_ylabel(f"{symbol} reached")
        handles = [
            Line2D([], [], marker="s", ls="", color="0.3", ms=3, label="SGD, one run per seed"),
            Line2D([], [], marker="o", ls="", mfc="white", mec=THEORY_COLOR, ms=7,
                   label="exact full-batch fit of the same objective"),
            Line2D([], [], color=THEORY_COLOR, ls=DASHED,
                   label="exact fit of Ng's objective (α = λ)"),
        ]  # fmt: skip
        style_legend(fig, handles, ncols=3)
    return fig
