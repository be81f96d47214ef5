"""study: why Andrew Ng divides the L2 penalty by m — a Monte Carlo study.

The public entry point for one fit is :func:`fit_polynomial_ridge`; the command line
(``study simulate``, ``python -m study``) runs whole designs.
"""

from study.fit import fit_polynomial_ridge
from study.scaling import SCALINGS, alpha

__version__ = "0.1.0"
__all__ = ["fit_polynomial_ridge", "alpha", "SCALINGS", "__version__"]
