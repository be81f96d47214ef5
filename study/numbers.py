"""How the report writes numbers: the one home of every number format of the tables, the
figures' labels, the variables file (the numbers the text quotes) and the check table.

Negative numbers are written with a true minus sign (−) wherever a reader sees them in
running text or a table; the figures' labels and the check table keep Python's forms.
"""

from __future__ import annotations

import math

_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
_SUPERSCRIPTS = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def fmt(value: float, digits: int = 3) -> str:
    """A number in `digits` significant figures, without exponent noise where avoidable."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value == 0:
        return "0"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    exponent = math.floor(math.log10(abs(value)))
    if -4 <= exponent < 6:
        decimals = max(0, digits - 1 - exponent)
        return f"{value:,.{decimals}f}".replace("-", "−")
    mantissa = value / 10**exponent
    return f"{mantissa:.{digits - 1}f}·10^{exponent}^".replace("-", "−")


def with_se(value: float, se: float) -> str:
    """'value (se)' with the value rounded to the precision its standard error allows."""
    if se is None or math.isnan(se) or se <= 0 or math.isnan(value):
        return fmt(value)
    decimals = max(0, 1 - math.floor(math.log10(se)))
    if decimals > 8:
        return f"{fmt(value)} ({fmt(se, 2)})"
    return f"{value:.{decimals}f} ({se:.{decimals}f})".replace("-", "−")


def as_written(value: float) -> str:
    """A design parameter as written in a design file: 1, 0.01, −1."""
    return f"{value:g}".replace("-", "−")


def percent(share: float, decimals: int = 1) -> str:
    """A share as a percentage: 0.046 → '4.6 %', −0.046 → '−4.6 %'."""
    return f"{100 * share:.{decimals}f} %".replace("-", "−")


def percent_with_se(share: float, se: float) -> str:
    """A share as a percentage with its standard error in percentage points, rounded to
    what the error allows: (9.376, 0.16) → '937.6 (16.0) %'; without an error, as percent."""
    if se is None or math.isnan(se) or se <= 0:
        return percent(share)
    return f"{with_se(100 * share, 100 * se)} %"


def significant(value: float, digits: int) -> str:
    """Python's general format with `digits` significant figures: 1.188, 3.1e+04."""
    return f"{value:.{digits}g}"


def compact(value: float) -> str:
    """Compact number for figure labels: 1, 0.1, 1e-04 → 10⁻⁴, 10000 → 10⁴."""
    v = float(value)
    if v == 0:
        return "0"
    e = math.log10(abs(v))
    if abs(e - round(e)) < 1e-9 and abs(e) >= 4:
        return "10" + superscript(int(round(e)))
    return f"{v:g}"


def alpha_label(a: float) -> str:
    """α for a figure label: whole from 100 up, else three significant figures."""
    return f"{a:.0f}" if a >= 100 else significant(a, 3)


def subscript(n: int) -> str:
    """An integer in subscript digits: 12 → '₁₂'."""
    return str(n).translate(_SUBSCRIPTS)


def superscript(n: int) -> str:
    """An integer in superscript digits: -4 → '⁻⁴'."""
    return str(n).translate(_SUPERSCRIPTS)


def nearest_on_log_scale(values, wanted: float):
    """The element of ``values`` closest to ``wanted`` on a log scale (values > 0)."""
    return min(sorted(values), key=lambda v: abs(math.log(v) - math.log(wanted)))
