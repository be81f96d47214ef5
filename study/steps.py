"""The pipeline of a run, one step after another, data flowing one way:

    design → engine (Monte Carlo) → theory → check → report assets → render

:func:`simulate` chains the first two into one commit of the results folder, so that a
folder is never seen with the Monte Carlo results of one design and the theory of another.
"""

from __future__ import annotations

from pathlib import Path

from study.design import Design, design_from_dict
from study.engine.run import RunReport
from study.engine.run import simulate as _simulate_engine
from study.folder import read_manifest
from study.theory.step import extend


def simulate(design: Design, results_dir: Path, *, theory: bool = True, **options) -> RunReport:
    """Run the engine on ``design`` into ``results_dir`` and, unless ``theory`` is False,
    the theory step before the commit; ``options`` go to :func:`study.engine.run.simulate`
    (jobs, backend, scheduler, fresh, progress, design_path, on_reject, solver,
    noise_draw)."""
    return _simulate_engine(design, results_dir, after=extend if theory else None, **options)


def theory(results_dir: Path, **options) -> RunReport:
    """The theory step alone, on a complete run: the Monte Carlo results merged again from
    the checkpoints (nothing simulated), the theory added, the folder committed again.
    For a run made with ``theory=False`` (``study simulate --no-theory``), or after the
    theory's code changed. ``options`` as for :func:`simulate`.

    Raises
    ------
    FolderError
        If the folder has no manifest or a task has no checkpoint.
    """
    previous = read_manifest(Path(results_dir))
    design = design_from_dict(previous["design"], str(results_dir))
    # the folder's provenance stays that of the run that simulated it
    engine_run = previous.get("engine_run", previous["run"])
    options = dict(design_path=previous.get("design_file"), engine_run=engine_run) | options
    options.setdefault("noise_draw", previous.get("noise_draw", "sufficient"))
    return simulate(design, Path(results_dir), require_complete=True, **options)
