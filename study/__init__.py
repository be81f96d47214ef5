"""study: why Andrew Ng divides the L2 penalty by m — a Monte Carlo study.

The public entry points for one fit are :func:`fit_polynomial_ridge` and
:func:`fit_polynomial_logistic`; the command line
(``study simulate``, ``python -m study``) runs whole designs.
"""

from study.fit import fit_polynomial_ridge
from study.logistic import fit_polynomial_logistic
from study.scaling import SCALINGS, alpha

__version__ = "0.1.0"
__all__ = ["fit_polynomial_ridge", "fit_polynomial_logistic", "alpha", "SCALINGS", "__version__"]
