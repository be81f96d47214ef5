"""The theory: pure mathematics about the designs, nothing simulated from the engine's streams.

- :mod:`study.theory.largem`: the large-m bias, variance and risk of every cell;
- :mod:`study.theory.tuning`: the exact conditional risk, the risk-optimal penalty and
  how well a penalty tuned at one m transfers to another;
- :mod:`study.theory.step`: the step of a run that adds these beside the Monte Carlo
  results (the large-m columns, ``tuning.csv``, ``transfer.csv``).

Which moments exist is in :mod:`study.existence`, shared with the checks and the report.
"""
