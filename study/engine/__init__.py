"""The simulation engine: Monte Carlo only, from a design to checkpoints to result tables.

- :mod:`study.engine.streams`: the chunks of replications, their random streams, the draws;
- :mod:`study.engine.plan`: chunks grouped into tasks by cost, longest first;
- :mod:`study.engine.tasks`: one task (m, chunks) → a typed
  :class:`~study.engine.tasks.TaskResult` (co-moments per chunk and cell), through the model
  of the design (:mod:`study.models`);
- :mod:`study.engine.kernel`: the compiled (numba) inner loops: the Gaussian model's, and
  the logistic model's Newton solver (:mod:`study.engine.newton`);
- :mod:`study.engine.store`: self-verifying checkpoints (written atomically, :mod:`study.files`);
- :mod:`study.engine.merge`: checkpoints merged chunk by chunk into ``summary.csv``,
  ``risk.csv`` and ``draws.npz``;
- :mod:`study.engine.costs`, :mod:`study.engine.budget`: the estimate before a run;
- :mod:`study.engine.run`: scheduling (joblib), progress, the commit of a results folder;
  :mod:`study.engine.worker` what a worker runs, and :mod:`study.engine.dask_workers` what
  a run's local Dask cluster installs in its workers.

Nothing here imports the theory or the report.
"""

# Bump whenever a change to the engine changes what a task computes: checkpoints written
# by another engine version are refused, never merged with new ones.
# 4: a task also counts how each data set was fitted (fits.csv); the numbers of 3 unchanged.
# 5: the noise enters as Φᵀε ~ N(0, σ²G), K + 1 normals per data set, not m (new numbers).
# 6: streams keyed by (seed, m, chunk) with a chunk length fixed by m, co-moments kept per
#    chunk and merged chunk by chunk: results no longer depend on block_size (new numbers).
# 7: the power sums Σu^p come from the compiled kernel (its own summation order): the same
#    draws, the sums and so every column changed in the last bits only.
# 8: a task also counts the fits whose |ŵ_j − w*_j| exceeds 1, 10 and 100 (summary.csv's
#    p_gt_*, over all replications); the numbers of 7 unchanged.
# 9: the logistic family's Newton solver is compiled (study.engine.newton): its own sums
#    and σ, so the logistic numbers changed in the last bits (the same draws, the same
#    stopping rules); the gaussian numbers of 8 unchanged.
# 10: the sufficient noise draw factors G by Cholesky (it was an eigendecomposition), and a
#    data set of at most K + 1 points draws its m noise values (it drew K + 1): new Monte
#    Carlo numbers for the gaussian family; the Rao–Blackwell and theory columns unchanged.
# 11: on data sets of m < p points (G singular) the fits set to 0 what is exactly 0 in G's
#    null space (1 − α₀Λ, Wᵀb, WᵀGv* of the pencil; the direct route solves with a factor
#    of G of rank m): the Rao–Blackwell columns of such cells were rounding times about
#    1/α at small α (Var[ŵ|X] off by 3e-3 at α = 1e-4, a factor of 10⁵ at 1e-8, on the
#    pencil; the direct route, where the pencil is not stable, keeps a first-order part);
#    on the default design summary.csv moved by at most 1.3e-7; cells of m ≥ p unchanged.
ENGINE_VERSION = 11
