"""Design files: read a TOML design, validate every key, and describe its tasks and cells.

A design is validated completely before anything is written, and every problem is
reported as one line naming the key, the value given and what is allowed
(:class:`DesignError`). The keys are documented in docs/design-files.md. That the engine can
represent the design's numbers is checked by :mod:`study.limits`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
import stat
import tomllib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.basis import BASES, StandardBasis, standard_basis, true_coefficients
from study.limits import check_representable
from study.scaling import SCALINGS, check_scaling

if TYPE_CHECKING:
    import numpy as np

MAX_DEGREE = 12
MAX_BLOCK_SIZE = 100_000
MAX_KEEP_DRAWS = 10_000
X_DISTRIBUTIONS = ("uniform", "normal")
# used with fullmatch: with match and "$", a trailing newline ("a\n") would pass
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# a design is a few hundred bytes: anything larger is not a design, and is not read whole
MAX_DESIGN_BYTES = 1 << 20
_EXPECTED_FILE = "expected a regular UTF-8 TOML file of at most 1 MiB"

# Every key a design file may hold, with what it must be. Nested tables are dicts.
_SCHEMA: dict[str, Any] = {
    "name": "str",
    "seed": "int",
    "replications": "int",
    "block_size": "int",
    "dgp": {
        "intercept": "float",
        "slope": "float",
        "noise_sd": "float",
        "x": "table",
    },
    "grid": {
        "m": "list",
        "degree": "list",
        "lambda": "list",
        "scaling": "list",
        "basis": "list",
        "penalize_intercept": "bool",
    },
    "output": {"keep_draws": "int"},
    "model": {"family": "str"},
    "precision": {"target_mcse": "float", "max_replications": "int"},
    "tuning": {"reference_m": "int"},
    "minibatch": {
        "m": "int",
        "degree": "int",
        "lambda": "float",
        "batch_size": "list",
        "seeds": "int",
        "steps": "int",
    },
}
# Keys that may be left out, with the value they then take.
_OPTIONAL = {
    "model": {"family": "gaussian"},
    "block_size": None,
    "precision": None,
    "tuning": None,
    "grid.basis": None,
    "dgp.noise_sd": None,  # required by the gaussian family, refused by the logistic one
    "minibatch": None,
    **{
        f"minibatch.{key}": None
        for key in ("m", "degree", "lambda", "batch_size", "seeds", "steps")
    },
}
# [grid] basis: the bases the coefficients (and so the penalty) are written in; the first
# is the default
DEFAULT_BASES = (BASES[0],)
# [tuning] reference_m: the m at which the matched comparison tunes each scaling's λ
REFERENCE_M = 100
MAX_REFERENCE_M = 10**7
# [minibatch]: the minibatch experiment of the theory step (study.theory.minibatch); the defaults
# of its keys, and the bounds that keep it a few seconds of work
MINIBATCH_DEFAULTS = {
    "m": 200,
    "degree": 2,
    "lambda": 2.0,
    "batch_size": [1, 10, 100, 200],  # without the key: 1, 10, 100 below m, and m
    "seeds": 4,
    "steps": 20_000,
}
MAX_MINIBATCH_M = 100_000
MAX_MINIBATCH_STEPS = 1_000_000
MAX_MINIBATCH_SEEDS = 100
# the SGD steps of the whole experiment (seeds × steps × batch sizes × 2 divisors) at most;
# a compiled step costs about 0.2 µs and 60 ns per point of its batch (study.engine.costs,
# which the run's estimate counts): 2 s for the defaults, but this bounds steps, not points
# (10⁷ steps at B = 1,000 would take some ten minutes): --dry-run shows the estimate
MAX_MINIBATCH_WORK = 10_000_000


@dataclass(frozen=True)
class MinibatchSpec:
    """[minibatch]: penalised logistic regression of degree ``degree`` on one data set of
    ``m`` points, trained by minibatch SGD with each batch size, the penalty divided by m
    and by the batch size, ``seeds`` runs of at least ``steps`` steps each."""

    m: int
    degree: int
    lam: float
    batch_sizes: tuple[int, ...]
    seeds: int
    steps: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "m": self.m,
            "degree": self.degree,
            "lambda": self.lam,
            "batch_size": list(self.batch_sizes),
            "seeds": self.seeds,
            "steps": self.steps,
        }


# The model families (study.models); the first is the default.
FAMILIES = ("gaussian", "logistic")  # the keys of study.models.FAMILIES (tested)
_X_KEYS = {"uniform": ("distribution", "low", "high"), "normal": ("distribution", "mean", "sd")}


class DesignError(ValueError):
    """A design file or a command-line value that cannot be used; the message is one line."""


@dataclass(frozen=True)
class XDistribution:
    """Distribution of the input x: uniform on [low, high] or normal(mean, sd)."""

    distribution: str
    low: float | None = None
    high: float | None = None
    mean: float | None = None
    sd: float | None = None

    @property
    def center(self) -> float:
        """Centre of the standardised variable u = (x − center) / scale."""
        if self.distribution == "uniform":
            # halved first so that low + high cannot overflow; halving is exact, so this is
            # the same number as (low + high)/2 whenever that is finite
            return self.low / 2 + self.high / 2
        return self.mean

    @property
    def scale(self) -> float:
        """Scale of u = (x − center) / scale: u is uniform on [−1, 1] or standard normal."""
        if self.distribution == "uniform":
            # as for the centre: high − low overflows on [−1.7e308, 1.7e308], this does not
            return self.high / 2 - self.low / 2
        return self.sd

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Design:
    """A validated simulation design (docs/design-files.md)."""

    name: str
    seed: int
    replications: int
    block_size: int | None  # the most replications one task may hold; None: sized by cost
    intercept: float
    slope: float
    noise_sd: float
    x: XDistribution
    m: tuple[int, ...]
    degree: tuple[int, ...]
    lam: tuple[float, ...]
    scaling: tuple[str, ...]
    penalize_intercept: bool
    keep_draws: int
    family: str = FAMILIES[0]
    # [precision]: replications are added, a chunk at a time, until every finite-variance
    # bias has an MCSE ≤ target_mcse or m has max_replications (study.engine.precision)
    target_mcse: float | None = None
    max_replications: int | None = None
    # the replications of each m where they differ from `replications` (set by a run with
    # [precision], recorded in its manifest; never read from a design file)
    replications_by_m: tuple[tuple[int, int], ...] = ()
    # [tuning]: the m at which each scaling's λ is tuned and then held fixed as m grows
    # (the theory step's matched comparison, matched.csv)
    reference_m: int = REFERENCE_M
    # [grid] basis: the coefficients of the monomials in x, or of polynomials orthonormal
    # under the distribution of x (study.basis.BASES); every basis is fitted to the same data
    basis: tuple[str, ...] = DEFAULT_BASES
    # [minibatch]: the theory step's minibatch experiment (minibatch.csv), or None
    minibatch: MinibatchSpec | None = None

    @property
    def columns(self) -> tuple[tuple[str, str], ...]:
        """The (basis, scaling) pairs of the cells' last axis, basis outermost: the engine's
        arrays have one column per pair, and the result tables name both."""
        return tuple((b, s) for b in self.basis for s in self.scaling)

    def replications_of(self, m: int) -> int:
        """The replications of m: ``replications``, or what a run with [precision] set."""
        for value, count in self.replications_by_m:
            if value == m:
                return count
        return self.replications

    def with_replications(self, by_m) -> Design:
        """The design with the replications of each m in ``by_m`` ({m: count}, or pairs)."""
        pairs = by_m.items() if isinstance(by_m, dict) else by_m or ()
        return replace(self, replications_by_m=tuple(sorted((int(m), int(n)) for m, n in pairs)))

    # --- identity ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The design as the nested mapping of the TOML file (normalised types)."""
        return {
            "name": self.name,
            "seed": self.seed,
            "replications": self.replications,
            **({"block_size": self.block_size} if self.block_size is not None else {}),
            "dgp": {
                "intercept": self.intercept,
                "slope": self.slope,
                # the logistic family has no noise level
                **({"noise_sd": self.noise_sd} if self.family != "logistic" else {}),
                "x": self.x.to_dict(),
            },
            "grid": {
                "m": list(self.m),
                "degree": list(self.degree),
                "lambda": list(self.lam),
                "scaling": list(self.scaling),
                # the default basis is left out, so that designs written before the basis
                # axis keep their hash
                **({"basis": list(self.basis)} if self.basis != DEFAULT_BASES else {}),
                "penalize_intercept": self.penalize_intercept,
            },
            "output": {"keep_draws": self.keep_draws},
            # the default family is left out, so that designs written before the model axis
            # keep their hash, and with it their checkpoints
            **({"model": {"family": self.family}} if self.family != FAMILIES[0] else {}),
            **(
                {
                    "precision": {
                        "target_mcse": self.target_mcse,
                        "max_replications": self.max_replications,
                    }
                }
                if self.target_mcse is not None
                else {}
            ),
            **(
                {"tuning": {"reference_m": self.reference_m}}
                if self.reference_m != REFERENCE_M
                else {}
            ),
            **({"minibatch": self.minibatch.to_dict()} if self.minibatch else {}),
        }

    @property
    def hash(self) -> str:
        """SHA-256 of the canonical JSON of the design without ``block_size`` (how the work
        is cut never changes a number), ``[tuning]`` and ``[minibatch]`` (read by the theory
        step alone): what a checkpoint must match."""
        identity = self.to_dict()
        identity.pop("block_size", None)
        identity.pop("tuning", None)
        identity.pop("minibatch", None)
        text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    # --- structure ---------------------------------------------------------------------
    def standard_basis(self, degree: int, basis: str = DEFAULT_BASES[0]) -> StandardBasis:
        """The problem of a degree-``degree`` fit whose coefficients are those of ``basis``,
        in the standardised variable (:func:`study.basis.standard_basis`)."""
        return standard_basis(
            self.x,
            degree,
            intercept=self.intercept,
            slope=self.slope,
            penalize_intercept=self.penalize_intercept,
            basis=basis,
        )

    def true_coefficients_of(self, degree: int, *, standardised: bool = False) -> np.ndarray:
        """w* = (β0, β1, 0, …, 0) of a degree-``degree`` fit, or with ``standardised`` its
        coefficients v* in u = (x − center)/scale (:func:`study.basis.true_coefficients`)."""
        return true_coefficients(
            degree, intercept=self.intercept, slope=self.slope, x=self.x if standardised else None
        )

    def identifiable(self, m: int, degree: int, lam: float) -> bool:
        """False for λ = 0 with m ≤ degree: fewer points than coefficients."""
        return lam > 0 or m > degree


# --- reading and validation ------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    return repr(value)


class _Checker:
    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, value: Any, allowed: str) -> DesignError:
        return DesignError(f"{self.source}: key '{key}': got {_fmt(value)}; expected {allowed}")

    def integer(self, key: str, value: Any, minimum: int, maximum: int | None = None) -> int:
        allowed = (
            f"an integer ≥ {minimum}"
            if maximum is None
            else (f"an integer from {minimum} to {maximum}")
        )
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, value, allowed)
        if value < minimum or (maximum is not None and value > maximum):
            raise self.fail(key, value, allowed)
        return value

    def number(self, key: str, value: Any, *, minimum: float | None = None) -> float:
        allowed = "a finite number" if minimum is None else f"a finite number ≥ {minimum:g}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, value, allowed)
        value = float(value)
        if not math.isfinite(value) or (minimum is not None and value < minimum):
            raise self.fail(key, value, allowed)
        return value

    def unique_list(self, key: str, value: Any, what: str, check) -> tuple:
        if not isinstance(value, list) or not value:
            raise self.fail(key, value, f"a non-empty list of {what}")
        items = []
        for item in value:
            try:
                items.append(check(item))
            except DesignError:
                raise self.fail(key, item, what) from None
        seen = set()
        for item in items:
            if item in seen:
                raise self.fail(
                    key, value, f"a list of {what} without duplicates ({item!r} repeats)"
                )
            seen.add(item)
        return tuple(items)


def _check_keys(chk: _Checker, table: dict, schema: dict, prefix: str) -> None:
    for key in table:
        if key not in schema:
            full = prefix + key
            valid = [prefix + k for k in schema]
            close = difflib.get_close_matches(full, valid, n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise DesignError(
                f"{chk.source}: unknown key '{full}'{hint} (allowed here: {', '.join(valid)})"
            )
    for key, kind in schema.items():
        full = prefix + key
        if key not in table:
            if full in _OPTIONAL:
                continue
            raise DesignError(f"{chk.source}: missing key '{full}'")
        if isinstance(kind, dict) or kind == "table":
            if not isinstance(table[key], dict):
                raise chk.fail(full, table[key], "a table")
            if isinstance(kind, dict):
                _check_keys(chk, table[key], kind, full + ".")


def _x_distribution(chk: _Checker, x: dict) -> XDistribution:
    dist = x.get("distribution")
    if dist not in X_DISTRIBUTIONS:
        raise chk.fail("dgp.x.distribution", dist, f"one of {list(X_DISTRIBUTIONS)}")
    allowed_keys = _X_KEYS[dist]
    _check_keys(chk, x, {k: "float" for k in allowed_keys}, "dgp.x.")
    if dist == "uniform":
        low = chk.number("dgp.x.low", x["low"])
        high = chk.number("dgp.x.high", x["high"])
        if not high > low:
            raise chk.fail("dgp.x.high", high, f"a number greater than dgp.x.low = {low:g}")
        return XDistribution("uniform", low=low, high=high)
    mean = chk.number("dgp.x.mean", x["mean"])
    sd = chk.number("dgp.x.sd", x["sd"])
    if not sd > 0:
        raise chk.fail("dgp.x.sd", sd, "a finite number > 0")
    return XDistribution("normal", mean=mean, sd=sd)


def _grid(chk: _Checker, grid: dict) -> tuple:
    """The validated grid: (m, degree, λ, scaling, basis, penalize_intercept)."""
    m = chk.unique_list("grid.m", grid["m"], "integers ≥ 1", lambda v: chk.integer("grid.m", v, 1))
    degree = chk.unique_list(
        "grid.degree",
        grid["degree"],
        f"integers from 1 to {MAX_DEGREE}",
        lambda v: chk.integer("grid.degree", v, 1, MAX_DEGREE),
    )
    lam = chk.unique_list(
        "grid.lambda",
        grid["lambda"],
        "finite numbers ≥ 0",
        lambda v: chk.number("grid.lambda", v, minimum=0.0),
    )

    def _scaling(v):
        try:
            return check_scaling(v)
        except ValueError:
            raise chk.fail("grid.scaling", v, f"one of {list(SCALINGS)}") from None

    scaling = chk.unique_list(
        "grid.scaling", grid["scaling"], f"scalings among {list(SCALINGS)}", _scaling
    )

    def _basis(v):
        if not isinstance(v, str) or v not in BASES:
            raise chk.fail("grid.basis", v, f"one of {list(BASES)}")
        return v

    basis = DEFAULT_BASES
    if "basis" in grid:
        basis = chk.unique_list("grid.basis", grid["basis"], f"bases among {list(BASES)}", _basis)
    penalize_intercept = grid["penalize_intercept"]
    if not isinstance(penalize_intercept, bool):
        raise chk.fail("grid.penalize_intercept", penalize_intercept, "true or false")
    return m, degree, lam, scaling, basis, penalize_intercept


def design_from_dict(raw: dict, source: str = "design") -> Design:
    """Validate a design given as the nested mapping of its TOML file.

    Raises
    ------
    DesignError
        With one line naming the key, the value given and what is allowed.
    """
    chk = _Checker(source)
    _check_keys(chk, raw, _SCHEMA, "")
    name = raw["name"]
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        raise chk.fail(
            "name",
            name,
            "a safe folder name: letters, digits, '.', '_' or '-', at most 64, "
            "starting with a letter or digit",
        )
    seed = chk.integer("seed", raw["seed"], 0)
    replications = chk.integer("replications", raw["replications"], 2)
    # optional: at most this many replications per task (tasks are sized by cost without
    # it); bounded so that a task's arrays stay small
    block_size = raw.get("block_size")
    if block_size is not None:
        block_size = chk.integer("block_size", block_size, 1, MAX_BLOCK_SIZE)
    dgp, grid, output = raw["dgp"], raw["grid"], raw["output"]
    intercept = chk.number("dgp.intercept", dgp["intercept"])
    slope = chk.number("dgp.slope", dgp["slope"])
    # a [model] table given has its key (_check_keys), and without it the default holds
    family = raw.get("model", _OPTIONAL["model"])["family"]
    if family not in FAMILIES:
        raise chk.fail("model.family", family, f"one of {list(FAMILIES)}")
    if family == "logistic":
        if "noise_sd" in dgp:
            raise chk.fail(
                "dgp.noise_sd",
                dgp["noise_sd"],
                "no such key with model.family = 'logistic': its labels are 0 or 1 with "
                "probability σ(β0 + β1·x), and there is no noise level to set",
            )
        noise_sd = math.nan
    elif "noise_sd" not in dgp:
        raise DesignError(f"{chk.source}: missing key 'dgp.noise_sd'")
    else:
        noise_sd = chk.number("dgp.noise_sd", dgp["noise_sd"], minimum=0.0)
    x = _x_distribution(chk, dgp["x"])

    m, degree, lam, scaling, basis, penalize_intercept = _grid(chk, grid)
    keep_draws = chk.integer("output.keep_draws", output["keep_draws"], 0)
    if keep_draws > min(replications, MAX_KEEP_DRAWS):
        raise chk.fail(
            "output.keep_draws",
            keep_draws,
            f"an integer from 0 to {min(replications, MAX_KEEP_DRAWS):,} (the replications, "
            f"at most {MAX_KEEP_DRAWS:,}: every kept draw of every cell is held in memory)",
        )
    target_mcse = max_replications = None
    if "precision" in raw:
        precision = raw["precision"]
        target_mcse = chk.number("precision.target_mcse", precision["target_mcse"])
        if not target_mcse > 0:
            raise chk.fail("precision.target_mcse", target_mcse, "a finite number > 0")
        max_replications = chk.integer(
            "precision.max_replications", precision["max_replications"], replications, 10**9
        )
    reference_m = REFERENCE_M
    if "tuning" in raw:
        lowest = max(degree) + 3  # where every degree's least-squares risk is finite
        reference_m = raw["tuning"]["reference_m"]
        if (
            isinstance(reference_m, bool)
            or not isinstance(reference_m, int)
            or not lowest <= reference_m <= MAX_REFERENCE_M
        ):
            raise chk.fail(
                "tuning.reference_m",
                reference_m,
                f"an integer from {lowest} (the largest degree + 3) to {MAX_REFERENCE_M:,}",
            )
    minibatch = _minibatch(chk, raw["minibatch"]) if "minibatch" in raw else None
    design = Design(
        name=name,
        seed=seed,
        replications=replications,
        block_size=block_size,
        intercept=intercept,
        slope=slope,
        noise_sd=noise_sd,
        x=x,
        m=tuple(sorted(m)),
        degree=tuple(sorted(degree)),
        lam=tuple(sorted(lam)),
        scaling=scaling,
        penalize_intercept=penalize_intercept,
        keep_draws=keep_draws,
        family=family,
        target_mcse=target_mcse,
        max_replications=max_replications,
        reference_m=reference_m,
        basis=basis,
        minibatch=minibatch,
    )
    check_representable(design, chk.fail)
    return design


def _minibatch(chk: _Checker, table: dict) -> MinibatchSpec:
    """[minibatch], each key defaulting to MINIBATCH_DEFAULTS."""
    raw = MINIBATCH_DEFAULTS | table
    m = chk.integer("minibatch.m", raw["m"], 2, MAX_MINIBATCH_M)
    if "batch_size" not in table:  # the default sizes below m, and m itself
        raw["batch_size"] = [b for b in (1, 10, 100) if b < m] + [m]
    degree = chk.integer("minibatch.degree", raw["degree"], 1, 10)
    lam = chk.number("minibatch.lambda", raw["lambda"])
    if not lam > 0:
        # the penalty is what the experiment is about; and at λ = 0 the fit may not exist
        raise chk.fail("minibatch.lambda", lam, "a finite number > 0")
    batch_sizes = chk.unique_list(
        "minibatch.batch_size",
        raw["batch_size"],
        f"integers from 1 to minibatch.m = {m}",
        lambda b: chk.integer("minibatch.batch_size", b, 1, m),
    )
    seeds = chk.integer("minibatch.seeds", raw["seeds"], 1, MAX_MINIBATCH_SEEDS)
    steps = chk.integer("minibatch.steps", raw["steps"], 100, MAX_MINIBATCH_STEPS)
    work = seeds * steps * len(batch_sizes) * 2
    if work > MAX_MINIBATCH_WORK:
        most = MAX_MINIBATCH_WORK // (seeds * len(batch_sizes) * 2)
        raise chk.fail(
            "minibatch.steps",
            steps,
            f"at most {most:,} with {seeds} seeds and {len(batch_sizes)} batch sizes (the "
            f"experiment's SGD steps, seeds × steps × batch sizes × 2, at most "
            f"{MAX_MINIBATCH_WORK:,})",
        )
    return MinibatchSpec(m, degree, lam, tuple(sorted(batch_sizes)), seeds, steps)


def _read_design_text(path: Path) -> str:
    """The text of a design file: a regular file of at most 1 MiB of UTF-8.

    Anything else (a directory, a FIFO, a device such as /dev/zero, a socket, a huge or
    binary file) is refused without blocking and without reading more than 1 MiB + 1 bytes.
    """

    def refuse(what: str) -> DesignError:
        return DesignError(f"{path}: design file {what}; {_EXPECTED_FILE}")

    def check_kind(mode: int) -> None:
        if stat.S_ISREG(mode):
            return
        kinds = (
            (stat.S_ISDIR, "a directory"),
            (stat.S_ISFIFO, "a FIFO (named pipe)"),
            (stat.S_ISSOCK, "a socket"),
            (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"),
        )
        kind = next((name for test, name in kinds if test(mode)), "not a regular file")
        raise refuse(f"is {kind}")

    def check_size(size: int) -> None:
        if size > MAX_DESIGN_BYTES:
            raise refuse(f"is {size:,} bytes, more than 1 MiB")

    try:
        # stat first: opening a FIFO for reading blocks until a writer comes, and a device
        # may have side effects
        info = os.stat(path)
    except FileNotFoundError:
        raise DesignError(f"{path}: design file not found") from None
    except (OSError, ValueError) as exc:
        raise refuse(f"cannot be read ({exc.__class__.__name__}: {exc})") from None
    check_kind(info.st_mode)
    check_size(info.st_size)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        # O_NONBLOCK: should the path have been replaced by a FIFO since the stat, opening
        # does not block; fstat then sees what was actually opened
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise DesignError(f"{path}: design file not found") from None
    except OSError as exc:
        raise refuse(f"cannot be read ({exc.__class__.__name__}: {exc})") from None
    try:
        info = os.fstat(fd)
        check_kind(info.st_mode)
        check_size(info.st_size)
        chunks, size = [], 0
        while size <= MAX_DESIGN_BYTES:  # the file may grow after the fstat
            chunk = os.read(fd, MAX_DESIGN_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise refuse(f"cannot be read ({exc.__class__.__name__}: {exc})") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > MAX_DESIGN_BYTES:
        raise refuse(f"is more than {MAX_DESIGN_BYTES:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refuse(
            f"is not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def load_design(path: str | Path) -> Design:
    """Read and validate a TOML design file.

    Raises
    ------
    DesignError
        If the file cannot be read or is not a regular UTF-8 file of at most 1 MiB, is not
        valid TOML, any key is missing, unknown or out of range, or the design's numbers
        cannot be represented (see :func:`study.limits.check_representable`).
    """
    path = Path(path)
    text = _read_design_text(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DesignError(f"{path}: not valid TOML ({exc})") from None
    return design_from_dict(raw, source=str(path))
