"""Every bad design or command line: one line naming key, value and what is allowed;
exit status 2; no traceback; nothing written."""

import math
import os
import socket
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import study.design as design_module
from study.basis import change_of_basis, penalty_root, standard_moments
from study.cli import main
from study.design import (
    MAX_DEGREE,
    MAX_DESIGN_BYTES,
    DesignError,
    XDistribution,
    design_from_dict,
    load_design,
)
from study.scaling import SCALINGS, alpha

from conftest import ROOT, run_cli, small_design, to_toml, write_design

X_UNIFORM = {"distribution": "uniform", "low": -1.0, "high": 1.0}

BAD_DESIGNS = {
    "unknown key": ({"grid.lamda": [0.1]}, ["grid.lamda", "did you mean 'grid.lambda'"]),
    "unknown top key": ({"replicates": 5}, ["replicates", "replications"]),
    "wrong type": ({"seed": "abc"}, ["seed", "'abc'", "integer"]),
    "bool as int": ({"replications": True}, ["replications", "integer"]),
    "m < 1": ({"grid.m": [0, 5]}, ["grid.m", "0", "integers ≥ 1"]),
    "m not integer": ({"grid.m": [2.5]}, ["grid.m", "2.5", "integers ≥ 1"]),
    "m empty": ({"grid.m": []}, ["grid.m", "non-empty"]),
    "degree < 1": ({"grid.degree": [0]}, ["grid.degree", "0", "integers from 1"]),
    "degree not integer": ({"grid.degree": ["2"]}, ["grid.degree", "'2'"]),
    "degree too large": ({"grid.degree": [40]}, ["grid.degree", "40"]),
    "negative lambda": ({"grid.lambda": [-0.1]}, ["grid.lambda", "-0.1", "≥ 0"]),
    "nan lambda": ({"grid.lambda": [math.nan]}, ["grid.lambda", "nan", "finite"]),
    "inf lambda": ({"grid.lambda": [math.inf]}, ["grid.lambda", "inf", "finite"]),
    "unknown scaling": ({"grid.scaling": ["m", "n"]}, ["grid.scaling", "'n'", "sqrt-m"]),
    "duplicate m": ({"grid.m": [5, 5]}, ["grid.m", "duplicates"]),
    "duplicate lambda": ({"grid.lambda": [1, 1.0]}, ["grid.lambda", "duplicates"]),
    "duplicate scaling": ({"grid.scaling": ["m", "m"]}, ["grid.scaling", "duplicates"]),
    "replications < 2": ({"replications": 1}, ["replications", "1", "≥ 2"]),
    "block_size < 1": ({"block_size": 0}, ["block_size", "0", "from 1 to 100000"]),
    "block_size huge": ({"block_size": 10**7}, ["block_size", "10000000"]),
    "keep_draws huge": (
        {"replications": 10**6, "output.keep_draws": 10**5},
        ["output.keep_draws", "100000", "at most 10,000"],
    ),
    "noise_sd < 0": ({"dgp.noise_sd": -1.0}, ["dgp.noise_sd", "-1.0", "≥ 0"]),
    "nan intercept": ({"dgp.intercept": math.nan}, ["dgp.intercept", "nan", "finite"]),
    "inf slope": ({"dgp.slope": -math.inf}, ["dgp.slope", "-inf", "finite"]),
    "empty range": ({"dgp.x": {**X_UNIFORM, "high": -1.0}}, ["dgp.x.high", "greater than"]),
    "reversed range": ({"dgp.x": {**X_UNIFORM, "low": 2.0}}, ["dgp.x.high", "greater than"]),
    "nan in range": ({"dgp.x": {**X_UNIFORM, "low": math.nan}}, ["dgp.x.low", "nan"]),
    "unknown distribution": (
        {"dgp.x": {"distribution": "cauchy", "low": 0.0, "high": 1.0}},
        ["dgp.x.distribution", "'cauchy'", "uniform"],
    ),
    "normal sd": ({"dgp.x": {"distribution": "normal", "mean": 0.0, "sd": 0.0}}, ["dgp.x.sd"]),
    "normal mean": (
        {"dgp.x": {"distribution": "normal", "mean": "zero", "sd": 1.0}},
        ["dgp.x.mean", "'zero'", "a finite number"],
    ),
    "x key of other law": ({"dgp.x": {**X_UNIFORM, "sd": 1.0}}, ["dgp.x.sd", "unknown key"]),
    "name unsafe": ({"name": "../escape"}, ["name", "'../escape'", "safe folder name"]),
    "name with slash": ({"name": "a/b"}, ["name", "'a/b'"]),
    "name dot": ({"name": ".."}, ["name"]),
    "penalize_intercept": ({"grid.penalize_intercept": "yes"}, ["grid.penalize_intercept"]),
    "keep_draws > replications": ({"output.keep_draws": 1000}, ["output.keep_draws", "1000"]),
    "table expected": ({"grid": 3}, ["grid", "a table"]),
    "minibatch batch size 0": (
        {"minibatch": {"batch_size": [1, 0]}},
        ["minibatch.batch_size", "0", "integers from 1 to minibatch.m = 200"],
    ),
    "minibatch batch size above m": (
        {"minibatch": {"m": 50, "batch_size": [10, 60]}},
        ["minibatch.batch_size", "60", "minibatch.m = 50"],
    ),
    "minibatch lambda 0": ({"minibatch": {"lambda": 0}}, ["minibatch.lambda", "> 0"]),
    "minibatch unknown key": (
        {"minibatch": {"batch": [1]}},
        ["unknown key 'minibatch.batch'", "minibatch.batch_size"],
    ),
    "minibatch steps": ({"minibatch": {"steps": 50}}, ["minibatch.steps", "50", "100"]),
    "minibatch seeds": ({"minibatch": {"seeds": 0}}, ["minibatch.seeds", "from 1 to 100"]),
    "minibatch m": ({"minibatch": {"m": 1}}, ["minibatch.m", "from 2"]),
    "minibatch too much work": (
        {"minibatch": {"seeds": 100, "steps": 100_000}},
        ["minibatch.steps", "100000", "at most 12,500 with 100 seeds and 4 batch sizes"],
    ),
}


def _remove(d, dotted):
    *path, last = dotted.split(".")
    for p in path:
        d = d[p]
    del d[last]


def _check_refused(tmp_path, monkeypatch, capsys, text, fragments, extra=()):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.toml").write_text(text)
    code = main(["simulate", "d.toml", "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert not (tmp_path / "simulations").exists(), "nothing may be written"


@pytest.mark.parametrize("case", sorted(BAD_DESIGNS))
def test_bad_design_is_refused(case, tmp_path, monkeypatch, capsys):
    changes, fragments = BAD_DESIGNS[case]
    text = to_toml(small_design(**changes))
    _check_refused(tmp_path, monkeypatch, capsys, text, fragments)


@pytest.mark.parametrize("key", ["seed", "grid.m", "dgp.x", "output.keep_draws", "dgp"])
def test_missing_key_is_refused(key, tmp_path, monkeypatch, capsys):
    d = small_design()
    _remove(d, key)
    _check_refused(tmp_path, monkeypatch, capsys, to_toml(d), [f"missing key '{key}'"])


def test_malformed_toml(tmp_path, monkeypatch, capsys):
    _check_refused(tmp_path, monkeypatch, capsys, "name = 'x'\nseed = = 3\n", ["not valid TOML"])


def test_unreadable_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for target in ("missing.toml", "."):
        assert main(["simulate", target]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and target in err
    assert not (tmp_path / "simulations").exists()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--jobs", "0"], ["--jobs", "'0'", "an integer from 1 to"]),
        (["--jobs", "100000"], ["--jobs", "'100000'", "an integer from 1 to"]),
        (["--jobs", "two"], ["--jobs", "'two'"]),
        (["--backend", "spark"], ["--backend", "'spark'", "loky", "dask"]),
        (["--frsh"], ["--frsh"]),
    ],
)
def test_bad_command_line(args, fragments, tmp_path):
    (tmp_path / "d.toml").write_text(to_toml(small_design()))
    proc = run_cli("simulate", "d.toml", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr
    assert not (tmp_path / "simulations").exists()


def test_subprocess_design_error_has_no_traceback(tmp_path):
    (tmp_path / "d.toml").write_text(to_toml(small_design(**{"grid.m": [0]})))
    proc = run_cli("simulate", "d.toml", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("study: error: d.toml: key 'grid.m': got 0")


def test_lambda_zero_with_m_at_most_degree_is_accepted():
    """Those cells are not identifiable: the design is accepted and they are reported so."""
    design = load_design(ROOT / "simulations" / "smoke.toml")
    assert 0.0 in design.lam and min(design.m) <= max(design.degree)
    assert not design.identifiable(3, 3, 0.0) and design.identifiable(3, 3, 0.1)
    assert design.identifiable(3, 2, 0.0)


def test_block_size_is_optional_and_not_part_of_the_identity(tmp_path):
    """Leaving block_size out, or giving any allowed value, is the same design to its
    checkpoints (the hash); the value is kept for the manifest, and checked when given."""
    raw = small_design()
    del raw["block_size"]
    without = design_from_dict(raw)
    assert without.block_size is None and "block_size" not in without.to_dict()
    for value in (1, 256, 100_000):
        given = design_from_dict({**raw, "block_size": value})
        assert given.block_size == value and given.to_dict()["block_size"] == value
        assert given.hash == without.hash
    assert design_from_dict({**raw, "seed": 1}).hash != without.hash
    path = write_design(tmp_path / "d.toml", raw)
    assert load_design(path) == without


def test_shipped_designs_are_valid():
    for path in sorted((ROOT / "simulations").glob("*.toml")):
        design = load_design(path)
        assert path.stem == design.name
    default = load_design(ROOT / "simulations" / "default.toml")
    assert default.replications >= 10_000 and min(default.m) == 3
    assert max(default.m) >= 10_000 and set(default.scaling) == {"none", "m", "sqrt-m", "k"}


def test_help_documents_every_option():
    proc = run_cli("simulate", "--help")
    options = ("--jobs", "--backend", "--scheduler", "--out", "--fresh", "--quiet", "DESIGN")
    for option in (*options, "--no-theory", "--dry-run", "dask"):
        assert option.lower() in proc.stdout.lower()
    theory = run_cli("theory", "--help").stdout
    assert "RESULTS" in theory.upper() and "nothing is simulated" in theory


# --- reading a design file safely ------------------------------------------------------

EXPECTED_FILE = "expected a regular UTF-8 TOML file of at most 1 MiB"


def _refusal(path) -> str:
    """The one-line message of load_design(path), which must finish at once."""
    result = {}

    def target():
        try:
            load_design(path)
        except DesignError as exc:
            result["message"] = str(exc)
        except BaseException as exc:  # reported below
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=10)
    if thread.is_alive() and stat.S_ISFIFO(os.stat(path).st_mode):
        # unblock a reader stuck in open() so that the test process can end
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    assert not thread.is_alive(), f"load_design({path}) blocked"
    assert "error" not in result, result.get("error")
    assert "message" in result, "the file was accepted"
    message = result["message"]
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"{path}: design file ") and message.endswith(EXPECTED_FILE)
    return message


def test_directory_is_refused(tmp_path):
    assert "is a directory" in _refusal(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "d.toml"
    os.mkfifo(fifo)
    start = time.monotonic()
    assert "is a FIFO" in _refusal(fifo)
    assert time.monotonic() - start < 5


def test_socket_is_refused(tmp_path):
    path = tmp_path / "s.toml"
    sock = socket.socket(getattr(socket, "AF_UNIX", socket.AF_INET))
    try:
        if sock.family == socket.AF_INET or len(str(path)) > 100:
            pytest.skip("no Unix sockets, or a temporary path too long for one")
        sock.bind(str(path))
        assert "is a socket" in _refusal(path)
    finally:
        sock.close()


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero here")
def test_dev_zero_is_refused():
    assert "is a character device" in _refusal(Path("/dev/zero"))


def _padded(size: int) -> bytes:
    """A valid design of exactly `size` bytes: the small design and a comment."""
    text = to_toml(small_design()).encode()
    return text + b"#" + b"x" * (size - len(text) - 2) + b"\n"


def test_file_of_one_mib_is_read_and_one_more_byte_refused(tmp_path):
    path = tmp_path / "d.toml"
    path.write_bytes(_padded(MAX_DESIGN_BYTES))
    assert MAX_DESIGN_BYTES == 1 << 20 and path.stat().st_size == MAX_DESIGN_BYTES
    assert load_design(path).name == "small"
    path.write_bytes(_padded(MAX_DESIGN_BYTES + 1))
    assert "is 1,048,577 bytes, more than 1 MiB" in _refusal(path)


def test_file_growing_after_stat_is_read_at_most_one_mib_and_one_byte(tmp_path, monkeypatch):
    """Whatever stat said, no more than 1 MiB + 1 bytes are read."""
    path = tmp_path / "d.toml"
    path.write_bytes(_padded(3 * MAX_DESIGN_BYTES))
    real_stat, real_fstat, real_read = os.stat, os.fstat, os.read

    def small(info):
        fields = list(info)
        fields[stat.ST_SIZE] = 100
        return os.stat_result(fields)

    read = []

    def counting_read(fd, n):
        data = real_read(fd, n)
        read.append(len(data))
        return data

    monkeypatch.setattr(design_module.os, "stat", lambda p: small(real_stat(p)))
    monkeypatch.setattr(design_module.os, "fstat", lambda fd: small(real_fstat(fd)))
    monkeypatch.setattr(design_module.os, "read", counting_read)
    assert "is more than 1,048,576 bytes" in _refusal(path)
    assert sum(read) == MAX_DESIGN_BYTES + 1


def test_non_utf8_file_is_refused(tmp_path):
    path = tmp_path / "d.toml"
    path.write_bytes(to_toml(small_design()).replace("small", "sm\xe9ll").encode("latin-1"))
    assert "is not UTF-8 (byte 0xe9 at offset" in _refusal(path)


def test_symlink_to_a_design_is_read(tmp_path):
    target = write_design(tmp_path / "real.toml", small_design())
    link = tmp_path / "link.toml"
    link.symlink_to(target)
    assert load_design(link) == load_design(target)


# --- names ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a\n", "a\nb", "\na", "a ", "-a", ".a", "a" * 65, ""])
def test_unsafe_names_are_refused(name):
    with pytest.raises(DesignError) as info:
        design_from_dict(small_design(name=name), "d.toml")
    message = str(info.value)
    assert message.startswith("d.toml: key 'name': got ") and "safe folder name" in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize("name", ["a", "default", "bench-fit", "v1.2_x", "A" * 64])
def test_safe_names_are_accepted(name):
    assert design_from_dict(small_design(name=name)).name == name


# --- numbers that cannot be represented ------------------------------------------------


def _uniform(low, high):
    return {"distribution": "uniform", "low": low, "high": high}


def _normal(mean, sd):
    return {"distribution": "normal", "mean": mean, "sd": sd}


UNREPRESENTABLE = {
    "lambda 1e308": (
        {"grid.lambda": [0.0, 1e308]},
        ["'grid.lambda': got 1e+308", "1e12·m", "scaling 'none'", "α = inf"],
    ),
    "lambda 1e308 with scaling m": (
        {"grid.lambda": [1e308], "grid.scaling": ["m"]},
        ["'grid.lambda': got 1e+308", "scaling 'm' at m = 3", "α = 1e+308"],
    ),
    "lambda just above 1e12": (
        {"grid.lambda": [0.1, 1.01e12], "grid.scaling": ["sqrt-m", "none"]},
        ["'grid.lambda': got 1010000000000.0", "scaling 'none' at m = 3"],
    ),
    "x far from 0 for its width": (
        {"dgp.x": _uniform(1e6, 1e6 + 1)},
        ["'dgp.x.high': got 1000001.0", "dgp.x.low = 1000000.0", "(1 + |center|/scale)^K"],
    ),
    "x negative, far from 0": (
        {"dgp.x": _uniform(-2001.0, -2000.0)},
        ["'dgp.x.low': got -2001.0", "dgp.x.high = -2000.0", "at most 1e8"],
    ),
    "x range overflows": (
        {"dgp.x": _uniform(-1.7e308, 1.7e308)},
        ["'dgp.x.high': got 1.7e+308", "dgp.x.low = -1.7e+308", "below 1e300"],
    ),
    "x range too narrow": (
        {"dgp.x": _uniform(0.0, 1e-200), "grid.degree": [3]},
        ["'dgp.x.high': got 1e-200", "half-width", "1e-300"],
    ),
    "x range subnormal": (
        {"dgp.x": _uniform(0.0, 5e-324)},
        ["'dgp.x.high': got 5e-324", "half-width", "(here 0;"],
    ),
    "x range too narrow for the coefficients": (
        {"dgp.x": _uniform(0.0, 1e-20), "grid.degree": [3]},
        ["'dgp.x.high': got 1e-20", "at most 1e+50", "fourth power"],
    ),
    "normal sd overflows": (
        {"dgp.x": _normal(0.0, 1e200)},
        ["'dgp.x.sd': got 1e+200", "dgp.x.mean = 0.0", "below 1e300"],
    ),
    "normal mean overflows": (
        {"dgp.x": _normal(-1e300, 1.0)},
        ["'dgp.x.mean': got -1e+300", "below 1e300"],
    ),
    "normal sd too small": (
        {"dgp.x": _normal(0.0, 1e-100)},
        ["'dgp.x.sd': got 1e-100", "an sd of at least", "1e-300"],
    ),
    "normal far from 0": (
        {"dgp.x": _normal(1e5, 1.0)},
        ["'dgp.x.mean': got 100000.0", "(1 + |center|/scale)^K"],
    ),
    "noise variance overflows": (
        {"dgp.noise_sd": 1e200},
        ["'dgp.noise_sd': got 1e+200", "at most 1e150", "σ²"],
    ),
    "slope overflows the power sums": (
        {"dgp.slope": 1e300},
        ["'dgp.slope': got 1e+300", "the largest m = 40", "power sums"],
    ),
    "intercept overflows the power sums": (
        {"dgp.intercept": -1e299},
        ["'dgp.intercept': got -1e+299", "power sums"],
    ),
    "intercept overflows the co-moments": (
        {"dgp.intercept": 1e30},
        ["'dgp.intercept': got 1e+30", "at most 1e+20", "eighth power"],
    ),
    "noise overflows the co-moments": (
        {"dgp.noise_sd": 1e25},
        ["'dgp.noise_sd': got 1e+25", "at most 1e+20"],
    ),
    "slope on a wide range": (
        {"dgp.slope": 1e10, "dgp.x": _uniform(-1e12, 1e12), "grid.degree": [1]},
        ["'dgp.slope': got 10000000000.0", "(here 1e+22)"],
    ),
    "m beyond 2^53": (
        {"grid.m": [3, 2**60]},
        ["'grid.m': got 1152921504606846976", "2^53"],
    ),
}


@pytest.mark.parametrize("case", sorted(UNREPRESENTABLE))
def test_unrepresentable_design_is_refused(case):
    changes, fragments = UNREPRESENTABLE[case]
    with pytest.raises(DesignError) as info:
        design_from_dict(small_design(**changes), "d.toml")
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith("d.toml: key '") and "; expected " in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_unrepresentable_design_file_is_refused(tmp_path):
    path = write_design(tmp_path / "d.toml", small_design(**{"grid.lambda": [1e308]}))
    with pytest.raises(DesignError, match=r"d\.toml: key 'grid\.lambda': got 1e\+308; expected"):
        load_design(path)


ORDINARY = {
    "uniform [-1, 1]": {},
    "uniform [0, 2]": {"dgp.x": _uniform(0.0, 2.0)},
    "uniform [-3, 7]": {"dgp.x": _uniform(-3.0, 7.0)},
    "uniform [1, 5], degree 7": {"dgp.x": _uniform(1.0, 5.0), "grid.degree": [7]},
    "uniform [0, 1000], degree 2": {"dgp.x": _uniform(0.0, 1000.0), "grid.degree": [2]},
    "uniform [0, 10], degree 10": {"dgp.x": _uniform(0.0, 10.0), "grid.degree": [10]},
    "uniform [2, 3]": {"dgp.x": _uniform(2.0, 3.0)},
    "uniform [0, 0.01], degree 12": {"dgp.x": _uniform(0.0, 0.01), "grid.degree": [12]},
    "normal(0, 1)": {"dgp.x": _normal(0.0, 1.0)},
    "normal(5, 2), degree 7": {"dgp.x": _normal(5.0, 2.0), "grid.degree": [7]},
    "normal(0, 1), degree 12": {"dgp.x": _normal(0.0, 1.0), "grid.degree": list(range(1, 13))},
    "default grid": {
        "grid.m": [3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000],
        "grid.degree": [1, 2, 3, 5, 7],
        "grid.lambda": [0.0, 0.01, 0.1, 1.0, 10.0],
    },
    "large lambda and m": {"grid.lambda": [0.0, 1e12], "grid.m": [3, 10**7]},
    "no noise, no signal": {"dgp.intercept": 0.0, "dgp.slope": 0.0, "dgp.noise_sd": 0.0},
    "large responses": {"dgp.intercept": -1e15, "dgp.slope": 1e15, "dgp.noise_sd": 1e15},
}


@pytest.mark.parametrize("case", sorted(ORDINARY))
def test_ordinary_design_is_accepted(case):
    design = design_from_dict(small_design(**ORDINARY[case]))
    assert math.isfinite(design.x.center) and design.x.scale > 0


def test_x_standardisation_does_not_overflow():
    x = XDistribution("uniform", low=-1.7e308, high=1.7e308)
    assert x.center == 0.0 and x.scale == 1.7e308
    x = XDistribution("uniform", low=1.5e308, high=1.7e308)
    assert math.isclose(x.center, 1.6e308) and math.isclose(x.scale, 0.1e308)


@given(
    low=st.floats(-1e6, 1e6),
    width=st.floats(1e-6, 1e6),
    mean=st.floats(-1e6, 1e6),
    sd=st.floats(1e-6, 1e6),
    normal=st.booleans(),
    intercept=st.floats(-1e20, 1e20),
    slope=st.floats(-1e20, 1e20),
    noise_sd=st.floats(0.0, 1e20),
    m=st.lists(st.integers(1, 10**9), min_size=1, max_size=5, unique=True),
    degree=st.lists(st.integers(1, MAX_DEGREE), min_size=1, max_size=4, unique=True),
    lam=st.lists(
        st.one_of(st.just(0.0), st.floats(1e-12, 1e15)), min_size=1, max_size=4, unique=True
    ),
    scaling=st.lists(st.sampled_from(SCALINGS), min_size=1, max_size=4, unique=True),
)
@settings(max_examples=300, deadline=None)
def test_accepted_designs_have_finite_alpha_and_change_of_basis(
    low, width, mean, sd, normal, intercept, slope, noise_sd, m, degree, lam, scaling
):
    x = _normal(mean, sd) if normal else _uniform(low, low + width)
    if not normal:
        assume(x["high"] > x["low"])
    dgp = {"dgp.x": x, "dgp.intercept": intercept, "dgp.slope": slope, "dgp.noise_sd": noise_sd}
    grid = {"grid.m": m, "grid.degree": degree, "grid.lambda": lam, "grid.scaling": scaling}
    raw = small_design(**dgp, **grid, replications=2, **{"output.keep_draws": 0})
    try:
        design = design_from_dict(raw, "d.toml")
    except DesignError as exc:
        message = str(exc)
        assert len(message.splitlines()) == 1 and message.startswith("d.toml: key '")
        return
    for mm in design.m:
        for k in design.degree:
            for lam_value in design.lam:
                for s in design.scaling:
                    a = alpha(lam_value, m=mm, degree=k, scaling=s)
                    assert math.isfinite(a) and 0 <= a <= 1e12 * mm
    K = max(design.degree)
    B = change_of_basis(design.x.center, design.x.scale, K)
    P = penalty_root(B) @ penalty_root(B).T
    assert np.isfinite(B).all() and np.isfinite(P).all()
    assert np.isfinite(standard_moments(design.x.distribution, 2 * K)).all()
