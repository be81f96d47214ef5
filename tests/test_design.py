"""Every bad design or command line: one line naming key, value and what is allowed;
exit status 2; no traceback; nothing written."""

import math

import pytest

from study.cli import main
from study.design import load_design

from conftest import ROOT, run_cli, small_design, to_toml

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
    "x key of other law": ({"dgp.x": {**X_UNIFORM, "sd": 1.0}}, ["dgp.x.sd", "unknown key"]),
    "name unsafe": ({"name": "../escape"}, ["name", "'../escape'", "safe folder name"]),
    "name with slash": ({"name": "a/b"}, ["name", "'a/b'"]),
    "name dot": ({"name": ".."}, ["name"]),
    "penalize_intercept": ({"grid.penalize_intercept": "yes"}, ["grid.penalize_intercept"]),
    "keep_draws > replications": ({"output.keep_draws": 1000}, ["output.keep_draws", "1000"]),
    "table expected": ({"grid": 3}, ["grid", "a table"]),
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
        (["--backend", "dask"], ["--backend", "'dask'", "loky"]),
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


def test_shipped_designs_are_valid():
    for path in sorted((ROOT / "simulations").glob("*.toml")):
        design = load_design(path)
        assert path.stem == design.name
    default = load_design(ROOT / "simulations" / "default.toml")
    assert default.replications >= 10_000 and min(default.m) == 3
    assert max(default.m) >= 10_000 and set(default.scaling) == {"none", "m", "sqrt-m", "k"}


def test_help_documents_every_option():
    proc = run_cli("simulate", "--help")
    for option in ("--jobs", "--backend", "--out", "--fresh", "--quiet", "DESIGN"):
        assert option.lower() in proc.stdout.lower()
