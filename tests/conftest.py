import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest

from study.paths import RESULT_FILES

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def fresh_kept_sums(monkeypatch):
    """Every test starts without the x power sums that chunk_power_sums keeps per process
    (study.engine.streams) and without the tuning's designs (study.theory.tuning): none
    kept by a test before it, perhaps under a monkeypatched stream, can answer its x-only
    draws. (Module- and session-scoped fixtures run before it, and loky workers reused
    from test to test keep their own.)"""
    from collections import OrderedDict

    from study.engine import streams
    from study.theory import tuning

    monkeypatch.setattr(streams, "_KEPT", OrderedDict())
    monkeypatch.setattr(tuning, "_SUMS_CACHE", {})


SMALL = {
    "name": "small",
    "seed": 12345,
    "replications": 70,  # not a multiple of the block size: a partial last block
    "block_size": 20,
    "dgp": {
        "intercept": 1.0,
        "slope": 2.0,
        "noise_sd": 0.7,  # σ ≠ 1: a wrong power of σ shows
        "x": {"distribution": "uniform", "low": -1.0, "high": 1.0},
    },
    "grid": {
        "m": [3, 8, 40],
        "degree": [1, 2, 3],
        "lambda": [0.0, 0.5],
        "scaling": ["none", "m", "sqrt-m", "k"],
        "penalize_intercept": False,
    },
    "output": {"keep_draws": 10},
}


def small_design(**changes) -> dict:
    """A copy of SMALL with dotted-key changes, e.g. small_design(**{"grid.m": [5]}). The
    values are copied too, so that a later dotted key (``"dgp.x.high"`` after ``"dgp.x"``)
    never changes the caller's object."""
    d = copy.deepcopy(SMALL)
    for key, value in changes.items():
        *path, last = key.split(".")
        t = d
        for p in path:
            t = t[p]
        t[last] = copy.deepcopy(value)
    return d


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, int | str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def to_toml(d: dict) -> str:
    """The design file of ``d``; a top-level key whose value is None is left out."""
    lines, tables = [], []
    for k, v in d.items():
        if v is not None:
            (tables if isinstance(v, dict) else lines).append((k, v))
    out = [f"{k} = {_toml_value(v)}" for k, v in lines]
    for name, table in tables:
        out.append(f"\n[{name}]")
        out += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(out) + "\n"


def write_design(path: Path, d: dict) -> Path:
    path.write_text(to_toml(d))
    return path


# every result file a run of SMALL commits: check.csv is written by `study check`, not the
# run, and SMALL has no [minibatch] table, so no minibatch.csv
RESULTS = tuple(
    n for n in RESULT_FILES if n not in ("manifest.json", "check.csv", "minibatch.csv")
)


def result_bytes(folder: Path) -> dict[str, bytes]:
    """The bytes of each of RESULTS in ``folder``."""
    return {name: (folder / name).read_bytes() for name in RESULTS}


def one_line(stderr: str) -> str:
    """The only line of ``stderr``, which holds no traceback."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def run_cli(*args, cwd=None, check=False) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "study", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def smoke_results(tmp_path_factory) -> Path:
    """The smoke design, simulated once per test session."""
    out = tmp_path_factory.mktemp("smoke") / "smoke"
    run_cli("simulate", ROOT / "simulations" / "smoke.toml", "--out", out, "--quiet", check=True)
    return out


# A small logistic design for the report's section on logistic regression: m = 5 and 10
# (separation is common), 100 (the λ of every scaling matched there: 0.01, 0.1 and 1 give
# α = 1) and 1000; an asymmetric x range and a line other than the default's
LOGISTIC_SMALL = {
    "name": "logistic-small",
    "seed": 11,
    "replications": 300,
    "model": {"family": "logistic"},
    "dgp": {
        "intercept": -0.5,
        "slope": 1.7,
        "x": {"distribution": "uniform", "low": -0.5, "high": 2.0},
    },
    "grid": {
        "m": [5, 10, 100, 1000],
        "degree": [1, 2],
        "lambda": [0.0, 0.01, 0.1, 1.0, 10.0],
        "scaling": ["none", "m", "sqrt-m"],
        "penalize_intercept": False,
    },
    "output": {"keep_draws": 20},
}


@pytest.fixture(scope="session")
def logistic_results(tmp_path_factory) -> Path:
    """LOGISTIC_SMALL, simulated once per test session."""
    folder = tmp_path_factory.mktemp("logistic-small")
    design = write_design(folder / "design.toml", LOGISTIC_SMALL)
    out = folder / "results"
    run_cli("simulate", design, "--out", out, "--quiet", check=True)
    return out
