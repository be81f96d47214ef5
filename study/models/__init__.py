"""The model axis: what is specific to one model family, behind one small interface.

A family says what a task draws, what it reduces each data set to, how it fits every
(degree, λ, scaling, basis) cell to those data and what it keeps per cell: a
:class:`~study.engine.tasks.DegreeResult` of co-moments, failures and kept draws. The
engine (streams, scheduling, checkpoints, merges), the summary, the checks and the report
handle every family alike. A second family is one new module here, named in
:data:`FAMILIES` and in the design key ``model.family``.

- ``gaussian`` (:mod:`study.models.gaussian`): y = β0 + β1·x + ε, ε ~ N(0, σ²), fitted by
  polynomial ridge regression (least squares with the penalty of each scaling).
- ``logistic`` (:mod:`study.models.logistic`): y ~ Bernoulli(σ(β0 + β1·x)), fitted by
  penalised polynomial logistic regression (the mean log-loss with the same penalties).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from study.design import Design
    from study.engine.tasks import DegreeResult

# family → module that implements it
FAMILIES = {"gaussian": "study.models.gaussian", "logistic": "study.models.logistic"}


class Model(Protocol):
    """What the engine asks of a model family (a module satisfies it)."""

    def run_chunks(
        self,
        design: Design,
        m: int,
        chunks: range,
        *,
        solver: str = "auto",
        noise_draw: str = "sufficient",
    ) -> dict[int, DegreeResult]:
        """Draw the data sets of size ``m`` of each chunk in ``chunks``, each from the
        chunk's own random stream (:mod:`study.engine.streams`), and return, per degree,
        the :class:`DegreeResult` of every cell with one row of co-moments per chunk.

        Each chunk's row must depend only on (design, m, chunk, noise_draw), never on the
        other chunks of the task, nor on where or when the task runs; ``solver`` may
        choose among numerically equivalent fitting paths; ``noise_draw`` among ways of
        drawing the noise that are equal in distribution (a family with one way accepts
        only the default)."""
        ...


def model_of(design: Design) -> Model:
    """The module implementing ``design.family``."""
    return importlib.import_module(FAMILIES[design.family])
