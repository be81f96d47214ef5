"""mutmut's command line, for mutation/mutate.py.

Imported as a module, so that mutmut's start-up does not warn that it was executed twice.
With MUTATE_SKIP_CLEAN=1 mutmut's clean run of a batch's tests is left out. The first call
of a `make mutate` ran every test once without a mutant (the recording of which tests
reach which function), and mutmut stops when one fails; later calls load that recording,
so their clean run would repeat those same tests for every batch, costing as much as the
batch. What it also did, warm the parent process up (numba's cache, lazy imports) before
the mutants fork from it, each mutant now pays inside its time limit, which
[tool.mutmut] timeout_constant leaves room for.
"""

import os
import sys

import mutmut.__main__ as mutmut_main
from mutmut.workers import isolation

if os.environ.get("MUTATE_SKIP_CLEAN") == "1":
    for runner in (isolation.MutantRunner, isolation.ForkServerRunner, isolation.ForkRunner):
        runner.run_clean_tests = lambda self, tests: 0

sys.exit(mutmut_main.cli())
