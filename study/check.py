"""Does the simulation agree with theory, and with a second implementation of itself?
``study check RESULTS_DIR``.

First an audit from the seeds (:mod:`study.audit`): a plain, separate implementation
recomputes from the documented random streams the first data set's estimates of every
chunk (up to 64) of every cell, and the conditional means of chunk 0, and compares them
with the engine's records one by one; any mismatch fails the check and is named. It tests
what the comparisons below cannot: α, the penalty, the basis, the x values, the noise and
the ridge solution itself. Then two comparisons, cell by cell:

1. Monte Carlo against Rao–Blackwell (the exact conditional moments averaged over the
   same simulated designs): z = (MC − RB) / SE(MC − RB) for the bias and the variance of
   every coefficient and for the risk. Both estimates come from the same data sets, so
   SE is the standard error of their difference (README, ``*_diff_mcse``). If the engine is
   right, each z is standard normal. The z of one run are correlated (common random
   numbers), so the rule is on the largest |z| alone, with a Bonferroni limit
   (:func:`z_limit`): its false-alarm rate is at most FALSE_ALARM whatever the
   correlation. The share of |z| beyond 2 is reported (4.6 % if they were independent),
   not judged: its spread under the correlation of a design is not known.
2. Rao–Blackwell against the large-m theory, at every m. Each comparison is accepted within
   z_limit(n) standard errors (the Bonferroni limit over its n theory comparisons, so that
   Monte Carlo noise fails at most 1 % of clean runs) plus what the expansion leaves out.
   The bias is compared with the theory and its 1/m term (``bias_asym1``, docs/theory.md),
   allowing for STEP_TOL times the size of the next, O(1/m²), term (``bias_asym1_bound``).
   The variance and the risk, whose 1/m terms are not derived, allow for
   STEP_TOL·E[h²]/m of the theory's value, h = φᵀ(Σ + ρD)⁻¹φ the leverage of a point,
   the relative size of those terms (``asym_leverage``). Where the expansion's step
   (‖T‖/m for the bias, E[h²]/m for the others) exceeds
   :data:`study.results.MAX_EXPANSION_STEP`, m is too small for it: those
   comparisons are left out and counted.

Cells whose estimator lacks the moments a comparison needs are flagged and left out of
the criteria (their Monte Carlo averages never settle, whatever the number of
replications): the bias needs a finite variance (``finite_moments`` > 2), the variance
and the risk a finite fourth moment (> 4). See :func:`study.theory.largem.finite_moment_order`.

The logistic family has no Rao–Blackwell estimates: its audit recomputes the first
estimates with a plain Newton fit and the fits without an estimate by the separation
rule (:func:`study.audit._first_logistic`), there are no z-values, and its Monte Carlo
bias, variance and risk take the place of the Rao–Blackwell ones in comparison 2, against
the logistic theory (:mod:`study.theory.logistic`), within z_limit(n) MCSEs plus the
remainder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from study.audit import AuditResult, audit
from study.numbers import percent, significant
from study.paths import CHECK_FILE, DRAWS_FILE, MANIFEST_FILE, RISK_FILE, SUMMARY_FILE
from study.results import (
    MAX_EXPANSION_STEP,
    STATUS_NEGATIVE_VARIANCE,
    STATUS_NON_FINITE,
    basis_label,
    read_table,
    usable_cells,
)

# the largest |z| fails the check with probability at most this on a correct run
FALSE_ALARM = 0.01
# What the theory's remainders may be, in units of their predicted size: for the bias the
# O(1/m²) term (bias_asym1_bound; the exact mean was up to 2.0 times it away, at m = 10),
# for the variance and the risk E[h²]/m of the value, h the leverage of a point (clean
# runs of five designs were up to 1.9 times it away)
STEP_TOL = 3.0
# rounding: least squares' Rao–Blackwell bias is 0 up to this, relative to the coefficients
ROUNDING = 1e-8
KEYS = ["m", "degree", "lambda", "scaling", "basis", "coef"]
CHECK_COLUMNS = (
    KEYS
    + ["measure", "mc", "rb", "rb_mcse", "z"]
    + ["asym", "asym_remainder", "asym_allowed", "rel_gap_asym", "se_gap_asym"]
    + ["finite_moments", "flag"]
)


@dataclass
class CheckResult:
    table: pd.DataFrame
    n_z: int
    max_abs_z: float
    share_beyond_2: float
    n_flagged: int
    largest_m: int
    impossible: list[str] = field(default_factory=list)
    audit: AuditResult | None = None
    # Rao–Blackwell against the large-m theory at every m: the bias (with its 1/m term),
    # the variance and the risk; comparisons made, failed, left out for too small an m
    n_bias: int = 0
    n_bias_fail: int = 0
    n_asym: int = 0
    n_asym_fail: int = 0
    n_small_m: int = 0
    worst_asym: str = ""
    asym_z_limit: float = math.nan
    family: str = "gaussian"

    @property
    def ok(self) -> bool:
        if self.family == "logistic":  # no z-values: the audit and the theory decide
            return (
                self.n_bias + self.n_asym > 0
                and self.audit is not None
                and self.audit.ok
                and not self.impossible
                and self.n_asym_fail == 0
                and self.n_bias_fail == 0
            )
        return (
            self.n_z > 0
            and self.audit is not None
            and self.audit.ok
            and not self.impossible
            and self.max_abs_z <= z_limit(self.n_z)
            and self.n_asym_fail == 0
            and self.n_bias_fail == 0
        )

    def summary_line(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        audited = "no audit" if self.audit is None else self.audit.line()
        if self.family == "logistic":
            return (
                f"{verdict}: {audited}; Monte Carlo vs large-m theory (logistic: no "
                f"Rao–Blackwell estimates) at every m the expansion reaches: bias (with its "
                f"1/m term) {self.n_bias - self.n_bias_fail} of {self.n_bias} and variance "
                f"and risk {self.n_asym - self.n_asym_fail} of {self.n_asym} within "
                f"{self.asym_z_limit:.2f} MCSE (Bonferroni) + the remainder of the expansion "
                f"({STEP_TOL:g}× its size); {self.n_small_m} left out where m is too small "
                f"for the expansion{self.worst_asym}"
                + (
                    "; nothing compared: every m of the design is too small for the "
                    "expansion, so the check cannot pass"
                    if self.n_bias + self.n_asym == 0
                    else ""
                )
                + (
                    f"; {len(self.impossible)} cells with non-finite or impossible values, "
                    f"e.g. {self.impossible[0]}"
                    if self.impossible
                    else ""
                )
            )
        return (
            f"{verdict}: {audited}; {self.n_z} z-values (MC vs Rao–Blackwell), max |z| = "
            f"{self.max_abs_z:.2f} (limit {z_limit(self.n_z):.2f}: Bonferroni over "
            f"{self.n_z:,}, false alarms ≤ {100 * FALSE_ALARM:g} % however they correlate), "
            f"{percent(self.share_beyond_2)} beyond 2 (4.6 % if independent; reported, not "
            f"judged); {self.n_flagged} comparisons left out "
            f"for infinite moments; Rao–Blackwell vs large-m theory at every m: bias (with "
            f"its 1/m term) {self.n_bias - self.n_bias_fail} of {self.n_bias} and variance and "
            f"risk {self.n_asym - self.n_asym_fail} of {self.n_asym} within "
            f"{self.asym_z_limit:.2f} SE (Bonferroni, as above) + the remainder of the "
            f"expansion ({STEP_TOL:g}× the O(1/m²) term of the bias, {STEP_TOL:g}·E[h²]/m of a "
            f"variance or risk); {self.n_small_m} left out where m is too small for the "
            f"expansion{self.worst_asym}"
            + (
                f"; {len(self.impossible)} cells with non-finite or impossible values, e.g. "
                f"{self.impossible[0]}"
                if self.impossible
                else ""
            )
        )


def z_limit(n: int, rate: float = FALSE_ALARM) -> float:
    """The Bonferroni limit for the largest of n standard normal |z|: P(max |z| > limit)
    ≤ n·P(|Z| > limit) = rate, whatever their correlation (equality if they exclude each
    other, far less if they move together)."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(1 - rate / (2 * max(n, 1)))


def _remainder(frame: pd.DataFrame, measure: str, asym: str) -> pd.Series:
    """What the large-m theory in each row may leave out (NaN where m is too small for the
    expansion): for the bias STEP_TOL times the size of the O(1/m²) term (and rounding, as
    least squares' bias is 0), for the variance and the risk STEP_TOL·E[h²]/m of the
    theory's value (``asym_leverage``, the relative size of their underived 1/m terms)."""
    if measure == "bias":
        keys = KEYS[:-1]
        scale = frame.groupby(keys, sort=False).true.transform(lambda t: t.abs().max())
        return STEP_TOL * frame["bias_asym1_bound"] + ROUNDING * np.maximum(scale, 1.0)
    usable = frame["asym_leverage"] <= MAX_EXPANSION_STEP
    return (STEP_TOL * frame["asym_leverage"] * frame[asym].abs()).where(usable)


def _rows(frame, measure, mc, rb, se, asym, needed, coef=True):
    z = (frame[mc] - frame[rb]) / frame[se].where(frame[se] > 0)
    gap = frame[rb] - frame[asym]
    out = frame[KEYS].copy() if coef else frame[KEYS[:-1]].assign(coef=-1)
    out["measure"] = measure
    out["mc"] = frame[mc]
    out["rb"] = frame[rb]
    out["rb_mcse"] = frame[f"{rb}_mcse"]
    out["z"] = z
    out["asym"] = frame[asym]
    out["asym_remainder"] = _remainder(frame, measure, asym)
    out["asym_allowed"] = np.nan  # filled in by _theory_comparisons
    out["rel_gap_asym"] = gap / frame[asym].abs()
    out["se_gap_asym"] = gap / frame[f"{rb}_mcse"].where(frame[f"{rb}_mcse"] > 0)
    out["finite_moments"] = frame["finite_moments"]
    flag = np.where(usable_cells(frame, needed), "", f"moments of order {needed} infinite")
    out["flag"] = np.where(usable_cells(frame), flag, frame["status"])
    return out


def unique_comparisons(table: pd.DataFrame) -> pd.Series:
    """Mask of the first of equal comparisons: λ = 0 is one cell under every scaling, and
    is counted once; so is its risk under every basis (the same fitted function, whose risk
    the two bases compute with different rounding)."""
    same = table.duplicated(["m", "degree", "coef", "measure", "mc", "rb"])
    risk_at_0 = (table.measure == "risk") & (table["lambda"] == 0)
    same |= risk_at_0 & table.duplicated(["m", "degree", "measure", "lambda"])
    return ~same


def counted_comparisons(table: pd.DataFrame, *, need_z: bool = True) -> pd.Series:
    """Mask of the comparisons the criteria count: not flagged, with a z (unless
    ``need_z`` is false: the logistic family has none), each once."""
    with_z = table.z.notna() if need_z else True
    return (table.flag == "") & with_z & unique_comparisons(table)


def _rb(columns: dict | None, measure: str) -> tuple[str, str]:
    """The columns a measure is compared with (Rao–Blackwell, or the Monte Carlo value
    itself where ``columns`` names it) and the standard error of the z-value's numerator."""
    if columns is None:
        return f"{measure}_rb", f"{measure}_diff_mcse"
    return columns[measure], f"{columns[measure]}_mcse"


def check(results_dir: Path) -> CheckResult:
    """Audit the engine from the seeds, and compare Monte Carlo, Rao–Blackwell and large-m
    theory in a results folder."""
    import json

    from study.design import design_from_dict
    from study.files import load_npz

    manifest = json.loads((results_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    # with [precision], the replications each m reached
    design = design_from_dict(manifest["design"]).with_replications(
        manifest.get("replications_by_m", {})
    )
    audited = audit(
        design,
        load_npz(results_dir / DRAWS_FILE),
        noise_draw=manifest.get("noise_draw", "sufficient"),
    )
    summary = read_table(results_dir / SUMMARY_FILE)
    risk = read_table(results_dir / RISK_FILE)
    logistic = design.family == "logistic"
    # the logistic family has no Rao–Blackwell estimates: its Monte Carlo numbers, with
    # their MCSEs, are compared with the theory directly, and there are no z-values
    rb = {"bias": "bias", "var": "var", "risk": "risk"} if logistic else None
    table = pd.concat(
        [
            _rows(summary, "bias", "bias", *_rb(rb, "bias"), "bias_asym1", 2),
            _rows(summary, "var", "var", *_rb(rb, "var"), "var_asym", 4),
            _rows(risk, "risk", "risk", *_rb(rb, "risk"), "risk_asym", 4, coef=False),
        ],
        ignore_index=True,
    )[CHECK_COLUMNS]
    if logistic:
        table["z"] = np.nan
    unique = unique_comparisons(table)
    usable = counted_comparisons(table, need_z=not logistic)
    z = table.z[usable].abs().dropna()  # the logistic family's rows have no z
    theory = _theory_comparisons(table, usable, "Monte Carlo" if logistic else "Rao–Blackwell")
    bad = table[table.flag.isin([STATUS_NON_FINITE, STATUS_NEGATIVE_VARIANCE])]
    impossible = [
        f"m = {m}, degree {k}, λ = {lam:g}, {s}{basis_label(b)} ({flag})"
        for (m, k, lam, s, b), flag in bad.groupby(KEYS[:-1], sort=True).flag.first().items()
    ]
    return CheckResult(
        family=design.family,
        table=table,
        n_z=int(z.size),
        max_abs_z=float(z.max()) if z.size else float("nan"),
        share_beyond_2=float((z > 2).mean()) if z.size else float("nan"),
        n_flagged=int((table.flag.str.startswith("moments") & unique).sum()),
        largest_m=int(table.m.max()),
        impossible=impossible,
        audit=audited,
        **theory,
    )


def _theory_comparisons(
    table: pd.DataFrame, usable: pd.Series, estimate: str = "Rao–Blackwell"
) -> dict:
    """Rao–Blackwell against the large-m theory in every counted row whose m the expansion
    reaches (module docstring): ``asym_allowed`` = z_limit(n)·SE + the remainder, filled
    in the table; the counts for CheckResult, and the worst failure named."""
    compared = usable & table.asym.notna() & table.asym_remainder.notna()
    n = int(compared.sum())
    limit = z_limit(n)
    table["asym_allowed"] = (limit * table.rb_mcse.fillna(0) + table.asym_remainder).where(
        compared
    )
    used = table[compared]
    gap = (used.rb - used.asym).abs()
    failed = gap > used.asym_allowed
    is_bias = used.measure == "bias"
    worst = ""
    if failed.any():
        excess = ((gap - used.asym_allowed) / used.asym_allowed)[failed]
        w = used.loc[excess.idxmax()]
        coef = f", w{w.coef}" if w.coef >= 0 else ""
        worst = (
            f" (worst: {w.measure} at m = {w.m}, degree {w.degree}, λ = {w['lambda']:g}, "
            f"{w.scaling}{basis_label(w.basis)}{coef}: {estimate} {w.rb:.6g}, theory "
            f"{w.asym:.6g} ± "
            f"{w.asym_allowed:.2g})"
        )
    return dict(
        n_bias=int(is_bias.sum()),
        n_bias_fail=int((failed & is_bias).sum()),
        n_asym=int((~is_bias).sum()),
        n_asym_fail=int((failed & ~is_bias).sum()),
        n_small_m=int((usable & table.asym.notna() & table.asym_remainder.isna()).sum()),
        worst_asym=worst,
        asym_z_limit=limit,
    )


def format_table(table: pd.DataFrame) -> str:
    """Every comparison, one line each, aligned."""
    shown = table.copy()
    shown["coef"] = shown["coef"].map(lambda c: "-" if c < 0 else str(c))
    return shown.to_string(
        index=False,
        float_format=lambda v: significant(v, 4),
        na_rep="",
    )


def write_check(result: CheckResult, results_dir: Path) -> Path:
    from study.files import atomic_write_text
    from study.results import to_csv

    path = results_dir / CHECK_FILE
    atomic_write_text(path, to_csv(result.table))
    return path
