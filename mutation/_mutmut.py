"""mutmut's command line, for mutation/mutate.py.

Imported as a module, so that mutmut's start-up does not warn that it was executed twice.
With MUTATE_SKIP_CLEAN=1 the clean run of a batch's tests is left out: the stats run that
precedes every batch has just run each of those tests without a mutant, and they passed
(mutmut stops otherwise); repeating them for every batch would cost as much as the batch.
"""

import os
import sys

import mutmut.__main__ as mutmut_main
from mutmut.workers import isolation

if os.environ.get("MUTATE_SKIP_CLEAN") == "1":
    for runner in (isolation.MutantRunner, isolation.ForkServerRunner, isolation.ForkRunner):
        runner.run_clean_tests = lambda self, tests: 0

sys.exit(mutmut_main.cli())
