"""Figures of the report: pure functions, results in, a matplotlib Figure out.

Every function takes the results as read from disk (``summary.csv`` and ``risk.csv`` as
DataFrames, ``draws.npz`` as a mapping of arrays, the theory tables as DataFrames) and
returns a :class:`matplotlib.figure.Figure`. Nothing is written and pyplot's global state
is not touched: the figures are built on :class:`~matplotlib.figure.Figure` directly, so
the caller saves them (SVG and PNG) and may simply drop them afterwards.

Conventions shared by every figure
----------------------------------
- Each scaling has one colour (Okabe–Ito, colour-blind safe) and one marker,
  :data:`SCALING_COLORS` and :data:`SCALING_MARKERS`, and one label,
  :data:`SCALING_LABELS`; the unpenalised fit (λ = 0) is drawn in :data:`UNPENALISED_COLOR`.
- Monte Carlo estimates are markers with ±z·MCSE bars (z = 1.96 by default); the
  Rao–Blackwellised estimates are thin solid lines; the large-m theory (the columns
  ``bias_asym``, ``var_asym``, drawn only when the table has them) is a dashed line.
- Cells that are not identifiable (``status != "ok"``) are left out, and so are cells
  whose estimator lacks the moments a measure needs, as in ``study check``: with λ = 0 the
  least-squares coefficients have moments only below the order
  :func:`study.theory.largem.finite_moment_order` (column ``finite_moments`` of the results;
  the three-point parabola has no finite mean), and their sample moments do not settle.
  The bias and |bias|/SD need a finite variance (order > 2), the variance, SD and MSE a
  finite fourth moment (order > 4, for their MCSE). Penalised fits have every moment.
- The width is 6.5 in (a printed page), text 7–8 pt.

Artists that tests and callers may want to find carry a ``gid``: ``"mc:<scaling>:<coef>"``
for the Monte Carlo markers, ``"rb:…"`` for Rao–Blackwell lines, ``"theory:…"`` for the
large-m theory and so on (see each function).

Modules
-------
- :mod:`._style`: the colours, markers and labels per scaling, rc settings, legends, error
  bars and slope guides; :mod:`._select`: argument checks and picking cells out of the
  results.
- :mod:`.measures`: a measure against m (bias, variance or SD, MSE, |bias|/SD), all drawn
  by one function, :func:`~study.report.figures.measures.fig_measure`, from a
  :class:`~study.report.figures.measures.Measure` specification.
- :mod:`.draws`: figures of the kept draws (fitted curves, the parabola's tail, sampling
  distributions).
- :mod:`.minibatch`: what minibatch SGD reaches with the penalty divided by m and by the
  batch size, against the exact full-batch fits.
- :mod:`.tuning`: the risk against λ, the tuned λ*(m), α*(m), and the matched comparison
  (λ tuned at m₀ and held).
"""

from study.report.figures._style import (
    FIGURE_WIDTH,
    GUIDE_COLOR,
    SCALING_COLORS,
    SCALING_LABELS,
    SCALING_MARKERS,
    THEORY_COLOR,
    UNPENALISED_COLOR,
    coef_symbol,
)
from study.report.figures.draws import (
    fig_fitted_curves,
    fig_parabola_tail,
    fig_sampling_distributions,
)
from study.report.figures.measures import (
    fig_bias,
    fig_bias_over_sd,
    fig_measure,
    fig_mse_split,
    fig_variance,
)
from study.report.figures.minibatch import fig_minibatch
from study.report.figures.tuning import (
    fig_bases,
    fig_degrees,
    fig_matched,
    fig_risk_vs_lambda,
    fig_tuned_lambda,
)
from study.results import usable_cells

__all__ = [
    "fig_minibatch",
    "SCALING_COLORS",
    "SCALING_LABELS",
    "SCALING_MARKERS",
    "UNPENALISED_COLOR",
    "THEORY_COLOR",
    "GUIDE_COLOR",
    "FIGURE_WIDTH",
    "coef_symbol",
    "usable_cells",
    "fig_fitted_curves",
    "fig_parabola_tail",
    "fig_bias",
    "fig_variance",
    "fig_mse_split",
    "fig_bias_over_sd",
    "fig_measure",
    "fig_sampling_distributions",
    "fig_risk_vs_lambda",
    "fig_tuned_lambda",
    "fig_matched",
    "fig_degrees",
    "fig_bases",
]
