"""What a LocalCluster started for a run installs in each of its workers.

Kept apart from :mod:`study.engine.run` and :mod:`study.engine.worker` so that neither
imports ``distributed``: only a run on Dask loads this module.
"""

from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin

from study.engine import worker as engine_worker


class IgnoreCtrlC(WorkerPlugin):
    """Each worker of the run's LocalCluster leaves Ctrl-C to the run's process
    (:func:`study.engine.worker.ctrl_c_ignored`) once it has joined: those forked at the
    start, which printed a KeyboardInterrupt traceback each, and one that its nanny starts
    again after a crash (spawned; it had asyncio's SIGINT handler, which stops the worker,
    and printed a traceback too). Never registered on a cluster at an address: its workers
    are not the run's."""

    name = "study-ignore-ctrl-c"
    idempotent = True

    def setup(self, worker) -> None:
        try:
            engine_worker.ignore_ctrl_c()
        except ValueError:  # not the process's main thread: Dask's own handling stays
            pass
