"""Numbers the engine can represent: the checks of a design beyond each key alone.

Validating each key alone lets through designs whose numbers overflow, underflow or keep
no digits once the engine has formed them: λ = 1e308, x on [1e6, 1e6 + 1], σ = 1e200.
:func:`check_representable` refuses them; each bound is explained where it is used.

The checks report through the ``fail(key, value, allowed)`` callable of the design's
validation (:mod:`study.design`), which returns the one-line error to raise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from study.scaling import alpha

if TYPE_CHECKING:
    from study.design import Design

# fail(key, value, allowed): the error naming the key, the value given and what is allowed
Fail = Callable[[str, Any, str], Exception]

# Largest power, power sum or square formed from the design: a factor of 1e8 below the
# overflow threshold of doubles (1.8e308), for the sums over points and data sets and the
# O(1)–O(1e8) factors of the solves.
_HUGE_LOG = math.log(1e300)
# Smallest scale^(2K): its reciprocal enters the penalty in u (see below).
_TINY_LOG = math.log(1e-300)
# Largest round-off amplification (1 + |center|/scale)^K of the change of basis.
MAX_CENTRING_LOSS = 1e8
# Largest response bound |β0| + |β1|·extent + 10σ, and largest raw-coefficient scale
# (response bound × change-of-basis amplification), for the engine's co-moments.
MAX_RESPONSE = 1e20
MAX_COEFFICIENT_SCALE = 1e50
# The count S_0 = m is held in a double: integers beyond 2^53 are not represented exactly.
MAX_M = 2**53
# Largest α/m = c(λ).
MAX_ALPHA_PER_POINT = 1e12
# Extent of a normal x in standard deviations: P(|Z| > 8) ≈ 1.2e-15 per draw.
NORMAL_EXTENT_SD = 8.0
# Extent of the noise in standard deviations: P(|Z| > 10) ≈ 1.5e-23 per draw.
NOISE_EXTENT_SD = 10.0


def _log_sum(logs: list[float]) -> float:
    """log(Σ exp(l)) of the given logs without overflow; -inf for none or all -inf."""
    logs = [v for v in logs if v > -math.inf]
    if not logs:
        return -math.inf
    top = max(logs)
    return top + math.log(sum(math.exp(v - top) for v in logs))


def _log_abs(value: float) -> float:
    return math.log(abs(value)) if value else -math.inf


def _pow10(log_value: float) -> str:
    """A magnitude given by its natural log, as text that cannot overflow: '1e+320'."""
    if log_value == -math.inf:
        return "0"
    exponent = round(log_value / math.log(10), 9)  # so that log(1e50) gives 1e+50
    if -4 <= exponent < 6:
        return f"{10**exponent:.3g}"
    whole = math.floor(exponent)
    mantissa = float(f"{10 ** (exponent - whole):.3g}")
    if mantissa >= 10:
        mantissa, whole = mantissa / 10, whole + 1
    return f"{mantissa:g}e{whole:+d}"


@dataclass(frozen=True)
class _XRange:
    """The x distribution of a design as the checks see it (K: the largest degree)."""

    K: int
    center: float
    scale: float
    log_extent: float  # log of the largest |x| (mean + 8 sd for a normal x)
    u_extent: float  # the same for u = (x − center)/scale
    far_key: str  # the key to name when x is too far from 0 ...
    far: float
    narrow_key: str  # ... and when it is too narrow
    narrow: float
    where: str  # the keys and values, for the messages
    width: str  # what the scale is, for the messages

    @property
    def log_loss(self) -> float:
        """log of the change of basis' round-off amplification (1 + |center|/scale)^K."""
        return self.K * math.log1p(abs(self.center) / self.scale)


@dataclass(frozen=True)
class _Responses:
    """The bound on the responses |y| ≤ |β0| + |β1|·extent + 10σ, by its log, and the
    key (and value) of its largest term."""

    log_y: float
    key: str
    value: float


def _x_range(design: Design) -> _XRange:
    x = design.x
    common = dict(K=max(design.degree), center=x.center, scale=x.scale)
    if x.distribution == "uniform":
        # |center| + scale = max(|low|, |high|), which (unlike the sum) cannot overflow
        far_key, far = ("dgp.x.low", x.low) if abs(x.low) > abs(x.high) else ("dgp.x.high", x.high)
        return _XRange(
            **common,
            log_extent=math.log(max(abs(x.low), abs(x.high))),
            u_extent=1.0,  # u is uniform on [−1, 1]
            far_key=far_key,
            far=far,
            narrow_key="dgp.x.high",
            narrow=x.high,
            where=f"dgp.x.low = {x.low!r}, dgp.x.high = {x.high!r}",
            width="a half-width (high − low)/2",
        )
    if abs(x.mean) >= NORMAL_EXTENT_SD * x.sd:
        far_key, far = "dgp.x.mean", x.mean
    else:
        far_key, far = "dgp.x.sd", x.sd
    return _XRange(
        **common,
        log_extent=_log_sum([_log_abs(x.mean), math.log(NORMAL_EXTENT_SD) + math.log(x.sd)]),
        u_extent=NORMAL_EXTENT_SD,  # u is standard normal
        far_key=far_key,
        far=far,
        narrow_key="dgp.x.sd",
        narrow=x.sd,
        where=f"dgp.x.mean = {x.mean!r}, dgp.x.sd = {x.sd!r}",
        width="an sd",
    )


def _check_x_range(xr: _XRange, fail: Fail) -> None:
    """The x distribution: raw powers, powers of the scale, change of basis."""
    K, c, s, where = xr.K, xr.center, xr.scale, xr.where
    # Raw powers x^p, p ≤ 2K (raw moments E[x^p], the change of basis): with |x| ≤ extent
    # they stay below 1e300 when extent^(2K) does.
    if 2 * K * xr.log_extent > _HUGE_LOG:
        raise fail(
            xr.far_key,
            xr.far,
            f"an x distribution whose largest |x| (here about {_pow10(xr.log_extent)}; "
            f"{where}) is at most {_pow10(_HUGE_LOG / (2 * K))}, so that the powers |x|^p up "
            f"to p = 2K = {2 * K} (K = {K}, the largest degree) stay below 1e300",
        )
    # The penalty in u, P = BDBᵀ, has entries up to 1/scale^(2K) (B holds 1/scale^j): for
    # scale^(2K) below 1e-300 they overflow (and scale^(2K) itself underflows to 0).
    if not s > 0 or 2 * K * math.log(s) < _TINY_LOG:
        raise fail(
            xr.narrow_key,
            xr.narrow,
            f"{xr.width} of at least {_pow10(_TINY_LOG / (2 * K))} (here {s:.3g}; {where}), so "
            f"that scale^{2 * K} (K = {K}, the largest degree) stays above 1e-300 and the "
            "penalty in the standardised variable, with entries up to 1/scale^(2K), is finite",
        )
    # The fit is computed in u = (x − center)/scale and mapped back by the change of basis,
    # u^j = Σ_i C(j, i)(−center)^(j−i) x^i / scale^j: a raw coefficient is a sum of terms up
    # to (1 + |center|/scale)^K times larger than itself, so that factor multiplies the
    # round-off (1e-16). Beyond 1e8, half of the double's 16 digits are gone.
    log_loss = xr.log_loss
    if log_loss > math.log(MAX_CENTRING_LOSS):
        raise fail(
            xr.far_key,
            xr.far,
            f"an x distribution not too far from 0 for its width: (1 + |center|/scale)^K at "
            f"most 1e8 at the largest degree K = {K} (here center = {c:.6g}, scale = {s:.3g} "
            f"give {_pow10(log_loss)}; {where}): the change of basis from u back to x "
            "multiplies round-off by that factor",
        )


def _check_noise(noise_sd: float, fail: Fail) -> None:
    # The noise variance σ² scales every conditional variance the engine computes.
    if noise_sd > 1e150:
        raise fail(
            "dgp.noise_sd",
            noise_sd,
            "a standard deviation of at most 1e150, so that the noise variance σ² stays "
            "below 1e300",
        )


def _responses(design: Design, xr: _XRange) -> _Responses:
    values = {
        "dgp.intercept": design.intercept,
        "dgp.slope": design.slope,
        "dgp.noise_sd": design.noise_sd,
    }
    terms = {
        "dgp.intercept": _log_abs(design.intercept),
        "dgp.slope": _log_abs(design.slope) + xr.log_extent,
        "dgp.noise_sd": _log_abs(design.noise_sd) + math.log(NOISE_EXTENT_SD),
    }
    key = max(terms, key=terms.get)
    return _Responses(log_y=_log_sum(list(terms.values())), key=key, value=values[key])


def _check_responses(design: Design, xr: _XRange, y: _Responses, fail: Fail) -> None:
    # The responses, |y| ≤ |β0| + |β1|·extent + 10σ, enter the power sums T_p = Σ u^p·y,
    # and y·x^p on the raw scale: both are bounded by that bound × E^K × m, with E the larger
    # of the extents of x and of u (and at least 1), which must stay below 1e300.
    K = xr.K
    log_e = max(0.0, xr.log_extent, math.log(xr.u_extent))
    log_sums = y.log_y + K * log_e + math.log(max(design.m))
    if log_sums > _HUGE_LOG:
        raise fail(
            y.key,
            y.value,
            "a value for which the bound on the responses |intercept| + |slope|·extent + "
            f"10·noise_sd (here {_pow10(y.log_y)}), times extent^K = {_pow10(log_e)}^{K}, "
            f"times the largest m = {max(design.m):,}, stays below 1e300 (here "
            f"{_pow10(log_sums)}): the power sums Σu^p·y would overflow",
        )


def _check_m(ms: tuple[int, ...], fail: Fail) -> None:
    if max(ms) > MAX_M:
        raise fail(
            "grid.m",
            max(ms),
            f"integers from 1 to 2^53 = {MAX_M:,}: the count m is held in a double",
        )


def _check_co_moments(xr: _XRange, y: _Responses, fail: Fail) -> None:
    # The engine keeps per cell the co-moments of (d, d², e, e², v) and of (R, R², E[R|X]):
    # sums of products of two, so the fourth power of a coefficient's error d and the fourth
    # power of the risk R = (v̂ − v*)ᵀΣ(v̂ − v*), the eighth of the prediction error. The
    # errors scale with the responses, times a heavy tail where the fit is nearly singular
    # (λ = 0, m = K + 1): one replication's R/σ² reached 1e25 (normal x, degree 12, m = 13),
    # so R⁴ ≈ (1e25·y²)⁴ needs y ≤ 1e20 to stay below 1e260. (Seen: σ = 1e29 there, and
    # σ = 1e37 or an intercept of 1e60 on [−1, 1], overflow those sums; 1e200 fails.)
    if y.log_y > math.log(MAX_RESPONSE):
        raise fail(
            y.key,
            y.value,
            "a value for which the bound on the responses |intercept| + |slope|·extent + "
            f"10·noise_sd (here {_pow10(y.log_y)}) is at most 1e+20: the engine's co-moments "
            "hold the eighth power of the prediction errors",
        )
    # A raw coefficient's error is that of the fit in u times the change of basis, up to
    # (1 + |center|/scale)^K / min(1, scale)^K; its fourth power, times a heavy tail
    # ((d/σ)⁴ reached 1e36), must stay below 1e300 too: at most 1e50 before the tail.
    K, c, s, log_loss = xr.K, xr.center, xr.scale, xr.log_loss
    log_inverse_scale = K * max(0.0, -math.log(s))
    log_coef = y.log_y + log_inverse_scale + log_loss
    if log_coef > math.log(MAX_COEFFICIENT_SCALE):
        key, value = (
            (xr.narrow_key, xr.narrow) if log_inverse_scale >= log_loss else (xr.far_key, xr.far)
        )
        raise fail(
            key,
            value,
            f"an x distribution for which the response bound (here {_pow10(y.log_y)}) times "
            f"(1 + |center|/scale)^K / min(1, scale)^K (here "
            f"{_pow10(log_inverse_scale + log_loss)}, with center = {c:.6g}, scale = {s:.3g}, "
            f"K = {K}; {xr.where}) is at most 1e+50: the engine's co-moments hold the fourth "
            "power of the raw coefficients' errors",
        )


def _check_alpha(design: Design, fail: Fail) -> None:
    # The engine solves (G + αP)v = b with G = Σφ(u)φ(u)ᵀ, whose entries are of order m,
    # and P of order 1 on the standard range. With α/m = c(λ) above 1e12 the data term is
    # below 1e-12 of the penalty term, so at most 4 of its 16 digits survive the sum (none
    # beyond 1e16) and the fit carries (almost) no information from the data; every
    # penalised coefficient is then shrunk by a factor of about 1e-12 anyway.
    # α/m is largest at the smallest m and degree, α at the largest m and smallest degree,
    # so these two corners bound every cell.
    degree = min(design.degree)
    for lam in design.lam:
        for scaling in design.scaling:
            for m in (min(design.m), max(design.m)):
                a = alpha(lam, m=m, degree=degree, scaling=scaling)
                if not (math.isfinite(a) and a / m <= MAX_ALPHA_PER_POINT):
                    raise fail(
                        "grid.lambda",
                        lam,
                        "a λ for which every α = m·c(λ) is finite and at most 1e12·m (beyond, "
                        "the data term of G + αP is lost in the penalty's round-off); scaling "
                        f"'{scaling}' at m = {m:,}, degree {degree} gives α = {a:.3g}",
                    )


def check_representable(design: Design, fail: Fail) -> None:
    """Refuse a design whose numbers the engine cannot represent, in one line naming the key.

    In order: the x distribution (raw powers, powers of the scale, change of basis), the
    noise variance, the responses' power sums, m, the engine's co-moments (responses and
    raw coefficients) and every α = m·c(λ) of the grid. K is the largest degree.
    ``fail(key, value, allowed)`` returns the error to raise.
    """
    xr = _x_range(design)
    _check_x_range(xr, fail)
    _check_noise(design.noise_sd, fail)
    y = _responses(design, xr)
    _check_responses(design, xr, y, fail)
    _check_m(design.m, fail)
    _check_co_moments(xr, y, fail)
    _check_alpha(design, fail)
