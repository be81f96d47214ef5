"""The rules of docs/design-files.md, key by key, called directly on small in-memory designs.

Every refusal is one line of the form ``SOURCE: key 'KEY': got VALUE; expected ALLOWED``
(study.design's module docstring): the tables below give, for each key, a bad value and the
whole line it must produce, and the boundary values the docs allow. A validated design
written back (``Design.to_dict``, then as TOML text) must read as the same design, and a
key left out must take the default the docs give.
"""

import math
import os
import stat
import threading

import numpy as np
import pytest

import study.design as design_module
from study.design import (
    MAX_DESIGN_BYTES,
    DesignError,
    MinibatchSpec,
    design_from_dict,
    load_design,
)

from conftest import small_design, to_toml, write_design

SCALINGS_TEXT = "['none', 'm', 'sqrt-m', 'k']"
NAME_RULE = (
    "a safe folder name: letters, digits, '.', '_' or '-', at most 64, "
    "starting with a letter or digit"
)
LOGISTIC_NOISE = (
    "no such key with model.family = 'logistic': its labels are 0 or 1 with probability "
    "σ(β0 + β1·x), and there is no noise level to set"
)
TOP_KEYS = (
    "name, seed, replications, block_size, dgp, grid, output, model, precision, tuning, minibatch"
)

# case: (dotted changes to the small design, key named, the value as shown, what is allowed)
REFUSED = {
    # name
    "name with a slash": ({"name": "a/b"}, "name", "'a/b'", NAME_RULE),
    "name not a string": ({"name": 5}, "name", "5", NAME_RULE),
    "name a bool": ({"name": True}, "name", "true", NAME_RULE),
    # seed: an integer ≥ 0
    "seed negative": ({"seed": -1}, "seed", "-1", "an integer ≥ 0"),
    "seed a float": ({"seed": 1.5}, "seed", "1.5", "an integer ≥ 0"),
    "seed false": ({"seed": False}, "seed", "false", "an integer ≥ 0"),
    # replications: an integer ≥ 2
    "replications 1": ({"replications": 1}, "replications", "1", "an integer ≥ 2"),
    "replications true": ({"replications": True}, "replications", "true", "an integer ≥ 2"),
    "replications a string": (
        {"replications": "70"},
        "replications",
        "'70'",
        "an integer ≥ 2",
    ),
    # block_size: an integer from 1 to 100,000
    "block_size 0": ({"block_size": 0}, "block_size", "0", "an integer from 1 to 100000"),
    "block_size above": (
        {"block_size": 100_001},
        "block_size",
        "100001",
        "an integer from 1 to 100000",
    ),
    "block_size a float": (
        {"block_size": 20.0},
        "block_size",
        "20.0",
        "an integer from 1 to 100000",
    ),
    # dgp: finite numbers; σ ≥ 0
    "intercept a string": ({"dgp.intercept": "1"}, "dgp.intercept", "'1'", "a finite number"),
    "intercept a bool": ({"dgp.intercept": True}, "dgp.intercept", "true", "a finite number"),
    "intercept nan": ({"dgp.intercept": math.nan}, "dgp.intercept", "nan", "a finite number"),
    "slope inf": ({"dgp.slope": math.inf}, "dgp.slope", "inf", "a finite number"),
    "slope a list": ({"dgp.slope": [2.0]}, "dgp.slope", "[2.0]", "a finite number"),
    "noise_sd negative": (
        {"dgp.noise_sd": -0.5},
        "dgp.noise_sd",
        "-0.5",
        "a finite number ≥ 0",
    ),
    "noise_sd a string": (
        {"dgp.noise_sd": "0.7"},
        "dgp.noise_sd",
        "'0.7'",
        "a finite number ≥ 0",
    ),
    "noise_sd inf": ({"dgp.noise_sd": math.inf}, "dgp.noise_sd", "inf", "a finite number ≥ 0"),
    "noise_sd with the logistic family": (
        {"model": {"family": "logistic"}, "dgp.noise_sd": 0.7},
        "dgp.noise_sd",
        "0.7",
        LOGISTIC_NOISE,
    ),
    # model.family
    "unknown family": (
        {"model": {"family": "poisson"}},
        "model.family",
        "'poisson'",
        "one of ['gaussian', 'logistic']",
    ),
    "family not a string": (
        {"model": {"family": 1}},
        "model.family",
        "1",
        "one of ['gaussian', 'logistic']",
    ),
    # dgp.x
    "x not a table": ({"dgp.x": 3}, "dgp.x", "3", "a table"),
    "x a string": ({"dgp.x": "uniform"}, "dgp.x", "'uniform'", "a table"),
    "dgp not a table": ({"dgp": [1]}, "dgp", "[1]", "a table"),
    "output not a table": ({"output": 10}, "output", "10", "a table"),
    "grid is a bool": ({"grid": False}, "grid", "false", "a table"),
    "model a number": ({"model": 1}, "model", "1", "a table"),
    "model a string": ({"model": "logistic"}, "model", "'logistic'", "a table"),
    "x distribution unknown": (
        {"dgp.x": {"distribution": "cauchy", "low": 0.0, "high": 1.0}},
        "dgp.x.distribution",
        "'cauchy'",
        "one of ['uniform', 'normal']",
    ),
    "x distribution missing": (
        {"dgp.x": {"low": 0.0, "high": 1.0}},
        "dgp.x.distribution",
        "None",
        "one of ['uniform', 'normal']",
    ),
    "x low a string": (
        {"dgp.x": {"distribution": "uniform", "low": "0", "high": 1.0}},
        "dgp.x.low",
        "'0'",
        "a finite number",
    ),
    "x high nan": (
        {"dgp.x": {"distribution": "uniform", "low": 0.0, "high": math.nan}},
        "dgp.x.high",
        "nan",
        "a finite number",
    ),
    "x high equal to low": (
        {"dgp.x": {"distribution": "uniform", "low": -1.5, "high": -1.5}},
        "dgp.x.high",
        "-1.5",
        "a number greater than dgp.x.low = -1.5",
    ),
    "x high below low": (
        {"dgp.x": {"distribution": "uniform", "low": 0.25, "high": -3}},
        "dgp.x.high",
        "-3.0",
        "a number greater than dgp.x.low = 0.25",
    ),
    "x mean inf": (
        {"dgp.x": {"distribution": "normal", "mean": -math.inf, "sd": 1.0}},
        "dgp.x.mean",
        "-inf",
        "a finite number",
    ),
    "x sd a string": (
        {"dgp.x": {"distribution": "normal", "mean": 0.0, "sd": "1"}},
        "dgp.x.sd",
        "'1'",
        "a finite number",
    ),
    "x sd zero": (
        {"dgp.x": {"distribution": "normal", "mean": 0.0, "sd": 0}},
        "dgp.x.sd",
        "0.0",
        "a finite number > 0",
    ),
    "x sd negative": (
        {"dgp.x": {"distribution": "normal", "mean": 0.0, "sd": -2.0}},
        "dgp.x.sd",
        "-2.0",
        "a finite number > 0",
    ),
    # grid.m: integers ≥ 1, no duplicates
    "m empty": ({"grid.m": []}, "grid.m", "[]", "a non-empty list of integers ≥ 1"),
    "m not a list": ({"grid.m": 5}, "grid.m", "5", "a non-empty list of integers ≥ 1"),
    "m zero": ({"grid.m": [3, 0]}, "grid.m", "0", "integers ≥ 1"),
    "m a float": ({"grid.m": [3, 8.0]}, "grid.m", "8.0", "integers ≥ 1"),
    "m repeated": (
        {"grid.m": [3, 8, 3]},
        "grid.m",
        "[3, 8, 3]",
        "a list of integers ≥ 1 without duplicates (3 repeats)",
    ),
    # grid.degree: integers 1-12
    "degree 13": ({"grid.degree": [1, 13]}, "grid.degree", "13", "integers from 1 to 12"),
    "degree 0": ({"grid.degree": [0]}, "grid.degree", "0", "integers from 1 to 12"),
    "degree empty": (
        {"grid.degree": []},
        "grid.degree",
        "[]",
        "a non-empty list of integers from 1 to 12",
    ),
    "degree repeated": (
        {"grid.degree": [2, 1, 2]},
        "grid.degree",
        "[2, 1, 2]",
        "a list of integers from 1 to 12 without duplicates (2 repeats)",
    ),
    # grid.lambda: finite numbers ≥ 0
    "lambda negative": ({"grid.lambda": [0.0, -1.0]}, "grid.lambda", "-1.0", "finite numbers ≥ 0"),
    "lambda a string": ({"grid.lambda": ["1"]}, "grid.lambda", "'1'", "finite numbers ≥ 0"),
    "lambda not a list": (
        {"grid.lambda": 0.5},
        "grid.lambda",
        "0.5",
        "a non-empty list of finite numbers ≥ 0",
    ),
    "lambda repeated as int and float": (
        {"grid.lambda": [2, 0.5, 2.0]},
        "grid.lambda",
        "[2, 0.5, 2.0]",
        "a list of finite numbers ≥ 0 without duplicates (2.0 repeats)",
    ),
    # grid.scaling
    "scaling unknown": (
        {"grid.scaling": ["m", "n"]},
        "grid.scaling",
        "'n'",
        f"scalings among {SCALINGS_TEXT}",
    ),
    "scaling not a string": (
        {"grid.scaling": [1]},
        "grid.scaling",
        "1",
        f"scalings among {SCALINGS_TEXT}",
    ),
    "scaling empty": (
        {"grid.scaling": []},
        "grid.scaling",
        "[]",
        f"a non-empty list of scalings among {SCALINGS_TEXT}",
    ),
    "scaling repeated": (
        {"grid.scaling": ["k", "k"]},
        "grid.scaling",
        "['k', 'k']",
        f"a list of scalings among {SCALINGS_TEXT} without duplicates ('k' repeats)",
    ),
    # grid.basis
    "basis unknown": (
        {"grid.basis": ["monomial", "legendre"]},
        "grid.basis",
        "'legendre'",
        "bases among ['monomial', 'orthonormal']",
    ),
    "basis not a string": (
        {"grid.basis": [0]},
        "grid.basis",
        "0",
        "bases among ['monomial', 'orthonormal']",
    ),
    "basis empty": (
        {"grid.basis": []},
        "grid.basis",
        "[]",
        "a non-empty list of bases among ['monomial', 'orthonormal']",
    ),
    "basis a string": (
        {"grid.basis": "monomial"},
        "grid.basis",
        "'monomial'",
        "a non-empty list of bases among ['monomial', 'orthonormal']",
    ),
    "basis repeated": (
        {"grid.basis": ["orthonormal", "orthonormal"]},
        "grid.basis",
        "['orthonormal', 'orthonormal']",
        "a list of bases among ['monomial', 'orthonormal'] without duplicates "
        "('orthonormal' repeats)",
    ),
    # grid.penalize_intercept
    "penalize_intercept a string": (
        {"grid.penalize_intercept": "yes"},
        "grid.penalize_intercept",
        "'yes'",
        "true or false",
    ),
    "penalize_intercept 0": (
        {"grid.penalize_intercept": 0},
        "grid.penalize_intercept",
        "0",
        "true or false",
    ),
    # output.keep_draws: 0 to replications, at most 10,000
    "keep_draws negative": (
        {"output.keep_draws": -1},
        "output.keep_draws",
        "-1",
        "an integer ≥ 0",
    ),
    "keep_draws above replications": (
        {"output.keep_draws": 71},
        "output.keep_draws",
        "71",
        "an integer from 0 to 70 (the replications, at most 10,000: every kept draw of every "
        "cell is held in memory)",
    ),
    "keep_draws above 10,000": (
        {"replications": 20_000, "output.keep_draws": 10_001},
        "output.keep_draws",
        "10001",
        "an integer from 0 to 10,000 (the replications, at most 10,000: every kept draw of "
        "every cell is held in memory)",
    ),
    # [precision]
    "target_mcse zero": (
        {"precision": {"target_mcse": 0.0, "max_replications": 500}},
        "precision.target_mcse",
        "0.0",
        "a finite number > 0",
    ),
    "target_mcse negative": (
        {"precision": {"target_mcse": -0.01, "max_replications": 500}},
        "precision.target_mcse",
        "-0.01",
        "a finite number > 0",
    ),
    "target_mcse a string": (
        {"precision": {"target_mcse": "0.01", "max_replications": 500}},
        "precision.target_mcse",
        "'0.01'",
        "a finite number",
    ),
    "max_replications below replications": (
        {"precision": {"target_mcse": 0.01, "max_replications": 69}},
        "precision.max_replications",
        "69",
        "an integer from 70 to 1000000000",
    ),
    "max_replications above 10^9": (
        {"precision": {"target_mcse": 0.01, "max_replications": 10**9 + 1}},
        "precision.max_replications",
        "1000000001",
        "an integer from 70 to 1000000000",
    ),
    # [tuning]: from the largest degree + 3 (here 3 + 3) to 10^7
    "reference_m below the largest degree + 3": (
        {"tuning": {"reference_m": 5}},
        "tuning.reference_m",
        "5",
        "an integer from 6 (the largest degree + 3) to 10,000,000",
    ),
    "reference_m above 10^7": (
        {"tuning": {"reference_m": 10**7 + 1}},
        "tuning.reference_m",
        "10000001",
        "an integer from 6 (the largest degree + 3) to 10,000,000",
    ),
    "reference_m a float": (
        {"tuning": {"reference_m": 100.0}},
        "tuning.reference_m",
        "100.0",
        "an integer from 6 (the largest degree + 3) to 10,000,000",
    ),
    "reference_m a bool": (
        {"tuning": {"reference_m": True}},
        "tuning.reference_m",
        "true",
        "an integer from 6 (the largest degree + 3) to 10,000,000",
    ),
    "reference_m with degree 7": (
        {"grid.degree": [7, 2], "tuning": {"reference_m": 9}},
        "tuning.reference_m",
        "9",
        "an integer from 10 (the largest degree + 3) to 10,000,000",
    ),
    # [minibatch]
    "minibatch m 1": ({"minibatch": {"m": 1}}, "minibatch.m", "1", "an integer from 2 to 100000"),
    "minibatch m above": (
        {"minibatch": {"m": 100_001}},
        "minibatch.m",
        "100001",
        "an integer from 2 to 100000",
    ),
    "minibatch degree 0": (
        {"minibatch": {"degree": 0}},
        "minibatch.degree",
        "0",
        "an integer from 1 to 10",
    ),
    "minibatch degree 11": (
        {"minibatch": {"degree": 11}},
        "minibatch.degree",
        "11",
        "an integer from 1 to 10",
    ),
    "minibatch lambda 0": (
        {"minibatch": {"lambda": 0}},
        "minibatch.lambda",
        "0.0",
        "a finite number > 0",
    ),
    "minibatch lambda negative": (
        {"minibatch": {"lambda": -2.0}},
        "minibatch.lambda",
        "-2.0",
        "a finite number > 0",
    ),
    "minibatch lambda a string": (
        {"minibatch": {"lambda": "2"}},
        "minibatch.lambda",
        "'2'",
        "a finite number",
    ),
    "minibatch batch size above m": (
        {"minibatch": {"m": 50, "batch_size": [10, 51]}},
        "minibatch.batch_size",
        "51",
        "integers from 1 to minibatch.m = 50",
    ),
    "minibatch batch size 0": (
        {"minibatch": {"batch_size": [0]}},
        "minibatch.batch_size",
        "0",
        "integers from 1 to minibatch.m = 200",
    ),
    "minibatch batch sizes empty": (
        {"minibatch": {"batch_size": []}},
        "minibatch.batch_size",
        "[]",
        "a non-empty list of integers from 1 to minibatch.m = 200",
    ),
    "minibatch batch size repeated": (
        {"minibatch": {"batch_size": [4, 4]}},
        "minibatch.batch_size",
        "[4, 4]",
        "a list of integers from 1 to minibatch.m = 200 without duplicates (4 repeats)",
    ),
    "minibatch seeds 0": (
        {"minibatch": {"seeds": 0}},
        "minibatch.seeds",
        "0",
        "an integer from 1 to 100",
    ),
    "minibatch seeds 101": (
        {"minibatch": {"seeds": 101}},
        "minibatch.seeds",
        "101",
        "an integer from 1 to 100",
    ),
    "minibatch steps 99": (
        {"minibatch": {"steps": 99}},
        "minibatch.steps",
        "99",
        "an integer from 100 to 1000000",
    ),
    "minibatch steps above 10^6": (
        {"minibatch": {"steps": 10**6 + 1, "seeds": 1, "batch_size": [1]}},
        "minibatch.steps",
        "1000001",
        "an integer from 100 to 1000000",
    ),
    # seeds × steps × batch sizes × 2 ≤ 10^7: 3 seeds, 2 batch sizes: at most 833,333 steps
    "minibatch too much work": (
        {"minibatch": {"seeds": 3, "batch_size": [5, 1], "steps": 833_334}},
        "minibatch.steps",
        "833334",
        "at most 833,333 with 3 seeds and 2 batch sizes (the experiment's SGD steps, "
        "seeds × steps × batch sizes × 2, at most 10,000,000)",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_bad_value_is_refused_naming_key_value_and_rule(case):
    changes, key, shown, allowed = REFUSED[case]
    raw = small_design()
    for dotted, value in changes.items():
        *path, last = dotted.split(".")
        table = raw
        for part in path:
            table = table[part]
        table[last] = value
    with pytest.raises(DesignError) as info:
        design_from_dict(raw, "d.toml")
    assert str(info.value) == f"d.toml: key '{key}': got {shown}; expected {allowed}"


def test_source_defaults_to_design():
    with pytest.raises(DesignError) as info:
        design_from_dict(small_design(seed=-3))
    assert str(info.value) == "design: key 'seed': got -3; expected an integer ≥ 0"


# the values at the edges of what the docs allow are accepted, and kept as given
ACCEPTED = {
    "seed 0": ({"seed": 0}, "seed", 0),
    "replications 2": ({"replications": 2, "output.keep_draws": 2}, "replications", 2),
    "block_size 1": ({"block_size": 1}, "block_size", 1),
    "block_size 100,000": ({"block_size": 100_000}, "block_size", 100_000),
    "noise_sd 0": ({"dgp.noise_sd": 0}, "noise_sd", 0.0),
    "keep_draws 0": ({"output.keep_draws": 0}, "keep_draws", 0),
    "keep_draws = replications": ({"output.keep_draws": 70}, "keep_draws", 70),
    "keep_draws 10,000": (
        {"replications": 20_000, "output.keep_draws": 10_000},
        "keep_draws",
        10_000,
    ),
    "degree 12": ({"grid.degree": [12]}, "degree", (12,)),
    "m 1": ({"grid.m": [3, 1]}, "m", (1, 3)),
    "lambda 0 alone": ({"grid.lambda": [0]}, "lam", (0.0,)),
    "penalize_intercept true": ({"grid.penalize_intercept": True}, "penalize_intercept", True),
    "reference_m at degree + 3": ({"tuning": {"reference_m": 6}}, "reference_m", 6),
    "reference_m 10^7": ({"tuning": {"reference_m": 10**7}}, "reference_m", 10**7),
    "max_replications = replications": (
        {"precision": {"target_mcse": 0.5, "max_replications": 70}},
        "max_replications",
        70,
    ),
    "max_replications 10^9": (
        {"precision": {"target_mcse": 0.5, "max_replications": 10**9}},
        "max_replications",
        10**9,
    ),
    "target_mcse an integer": (
        {"precision": {"target_mcse": 1, "max_replications": 100}},
        "target_mcse",
        1.0,
    ),
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_edge_values_are_accepted(case):
    changes, attribute, expected = ACCEPTED[case]
    design = design_from_dict(small_design(**changes), "d.toml")
    value = getattr(design, attribute)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("changes", "minibatch", "expected"),
    [
        # the work bound is inclusive: 5 seeds × 1,000,000 steps × 1 size × 2 = 10^7
        ({}, {"seeds": 5, "steps": 10**6, "batch_size": [7]}, (200, 2, 2.0, (7,), 5, 10**6)),
        ({}, {"m": 2, "degree": 10, "lambda": 1e-3}, (2, 10, 1e-3, (1, 2), 4, 20_000)),
        (
            {},
            {"m": 100_000, "seeds": 100, "steps": 100, "batch_size": [1]},
            (100_000, 2, 2.0, (1,), 100, 100),
        ),
    ],
)
def test_minibatch_edge_values_are_accepted(changes, minibatch, expected):
    design = design_from_dict(small_design(**changes, minibatch=minibatch), "d.toml")
    assert design.minibatch == MinibatchSpec(*expected)


# --- missing and unknown keys ----------------------------------------------------------

REQUIRED = [
    "name",
    "seed",
    "replications",
    "dgp",
    "grid",
    "output",
    "dgp.intercept",
    "dgp.slope",
    "dgp.noise_sd",
    "dgp.x",
    "grid.m",
    "grid.degree",
    "grid.lambda",
    "grid.scaling",
    "grid.penalize_intercept",
    "output.keep_draws",
]


@pytest.mark.parametrize("key", REQUIRED)
def test_each_required_key_is_required(key):
    raw = small_design()
    *path, last = key.split(".")
    table = raw
    for part in path:
        table = table[part]
    del table[last]
    with pytest.raises(DesignError) as info:
        design_from_dict(raw, "d.toml")
    assert str(info.value) == f"d.toml: missing key '{key}'"


@pytest.mark.parametrize(
    ("x", "missing"),
    [
        ({"distribution": "uniform", "low": 0.0}, "dgp.x.high"),
        ({"distribution": "uniform", "high": 1.0}, "dgp.x.low"),
        ({"distribution": "normal", "mean": 0.0}, "dgp.x.sd"),
        ({"distribution": "normal", "sd": 1.0}, "dgp.x.mean"),
    ],
)
def test_each_key_of_the_x_law_is_required(x, missing):
    with pytest.raises(DesignError) as info:
        design_from_dict(small_design(**{"dgp.x": x}), "d.toml")
    assert str(info.value) == f"d.toml: missing key '{missing}'"


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("precision", "precision.target_mcse"),
        ("precision", "precision.max_replications"),
        ("tuning", "tuning.reference_m"),
        ("model", "model.family"),
    ],
)
def test_keys_of_an_optional_table_are_required_once_it_is_given(table, key):
    given = {
        "precision": {"target_mcse": 0.1, "max_replications": 100},
        "tuning": {"reference_m": 50},
        "model": {"family": "gaussian"},
    }[table]
    raw = small_design(**{table: dict(given)})
    del raw[table][key.split(".")[1]]
    with pytest.raises(DesignError) as info:
        design_from_dict(raw, "d.toml")
    assert str(info.value) == f"d.toml: missing key '{key}'"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # a close key is suggested, and the keys allowed at that level are listed in order
        (
            {"reps": 5},
            f"unknown key 'reps'; did you mean 'replications'? (allowed here: {TOP_KEYS})",
        ),
        ({"zzzzzz": 1}, f"unknown key 'zzzzzz' (allowed here: {TOP_KEYS})"),
        (
            {"grid.lamda": [1.0]},
            "unknown key 'grid.lamda'; did you mean 'grid.lambda'? (allowed here: grid.m, "
            "grid.degree, grid.lambda, grid.scaling, grid.basis, grid.penalize_intercept)",
        ),
        (
            {"dgp.x": {"distribution": "normal", "meen": 0.0, "sd": 1.0}},
            "unknown key 'dgp.x.meen'; did you mean 'dgp.x.mean'? "
            "(allowed here: dgp.x.distribution, dgp.x.mean, dgp.x.sd)",
        ),
        (
            {"model": {"familly": "logistic"}},
            "unknown key 'model.familly'; did you mean 'model.family'? "
            "(allowed here: model.family)",
        ),
        (
            {"minibatch": {"step": 100}},
            "unknown key 'minibatch.step'; did you mean 'minibatch.steps'? (allowed here: "
            "minibatch.m, minibatch.degree, minibatch.lambda, minibatch.batch_size, "
            "minibatch.seeds, minibatch.steps)",
        ),
    ],
)
def test_unknown_key_names_the_allowed_ones(changes, message):
    raw = small_design()
    for dotted, value in changes.items():
        *path, last = dotted.split(".")
        table = raw
        for part in path:
            table = table[part]
        table[last] = value
    with pytest.raises(DesignError) as info:
        design_from_dict(raw, "d.toml")
    assert str(info.value) == f"d.toml: {message}"


# --- defaults --------------------------------------------------------------------------


def test_optional_keys_take_the_documented_defaults():
    raw = small_design()
    del raw["block_size"]
    design = design_from_dict(raw)
    assert design.block_size is None
    assert design.family == "gaussian"
    assert design.basis == ("monomial",)
    assert design.reference_m == 100
    assert design.target_mcse is None and design.max_replications is None
    assert design.minibatch is None
    assert design.replications_by_m == ()


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        # every key of [minibatch] is optional: m 200, degree 2, λ 2, B = 1, 10 and 100
        # where below m, and m; 4 seeds; 20,000 steps
        ({}, (200, 2, 2.0, (1, 10, 100, 200), 4, 20_000)),
        ({"m": 50}, (50, 2, 2.0, (1, 10, 50), 4, 20_000)),
        ({"m": 10}, (10, 2, 2.0, (1, 10), 4, 20_000)),
        ({"m": 100, "degree": 3}, (100, 3, 2.0, (1, 10, 100), 4, 20_000)),
        ({"m": 101, "lambda": 1}, (101, 2, 1.0, (1, 10, 100, 101), 4, 20_000)),
        ({"m": 2, "seeds": 7, "steps": 300}, (2, 2, 2.0, (1, 2), 7, 300)),
        # given sizes are kept (sorted), whatever m is
        ({"m": 30, "batch_size": [30, 3]}, (30, 2, 2.0, (3, 30), 4, 20_000)),
    ],
)
def test_minibatch_defaults(table, expected):
    design = design_from_dict(small_design(minibatch=table), "d.toml")
    assert design.minibatch == MinibatchSpec(*expected)
    assert isinstance(design.minibatch.lam, float)


def test_grid_lists_are_sorted_except_scalings_and_bases():
    design = design_from_dict(
        small_design(
            **{
                "grid.m": [40, 3, 8],
                "grid.degree": [3, 1, 2],
                "grid.lambda": [0.5, 0, 2],
                "grid.scaling": ["k", "none", "sqrt-m"],
                "grid.basis": ["orthonormal", "monomial"],
            }
        )
    )
    assert design.m == (3, 8, 40) and design.degree == (1, 2, 3)
    assert design.lam == (0.0, 0.5, 2.0) and all(type(v) is float for v in design.lam)
    assert design.scaling == ("k", "none", "sqrt-m")
    assert design.basis == ("orthonormal", "monomial")
    assert design.columns == (
        ("orthonormal", "k"),
        ("orthonormal", "none"),
        ("orthonormal", "sqrt-m"),
        ("monomial", "k"),
        ("monomial", "none"),
        ("monomial", "sqrt-m"),
    )


def test_numbers_are_normalised_to_floats():
    design = design_from_dict(
        small_design(
            **{
                "dgp.intercept": -3,
                "dgp.slope": 2,
                "dgp.noise_sd": 1,
                "dgp.x": {"distribution": "uniform", "low": -1, "high": 3},
            }
        )
    )
    for value in (design.intercept, design.slope, design.noise_sd, design.x.low, design.x.high):
        assert type(value) is float
    assert (design.intercept, design.slope, design.noise_sd) == (-3.0, 2.0, 1.0)
    assert (design.x.low, design.x.high, design.x.center, design.x.scale) == (-1.0, 3.0, 1.0, 2.0)
    normal = design_from_dict(
        small_design(**{"dgp.x": {"distribution": "normal", "mean": -2, "sd": 3}})
    )
    assert normal.x.mean == -2.0 and normal.x.sd == 3.0
    assert normal.x.center == -2.0 and normal.x.scale == 3.0
    assert normal.x.low is None and normal.x.high is None


# --- a design written back reads as the same design -----------------------------------

FULL = small_design(
    **{
        "name": "full.design_1",
        "seed": 0,
        "replications": 71,
        "block_size": 13,
        "dgp.intercept": -0.25,
        "dgp.slope": 1.5,
        "dgp.noise_sd": 0.0,
        "dgp.x": {"distribution": "normal", "mean": 0.5, "sd": 2.0},
        "grid.m": [5, 9, 40],
        "grid.degree": [1, 4],
        "grid.lambda": [0.0, 0.25],
        "grid.scaling": ["sqrt-m", "none"],
        "grid.basis": ["orthonormal", "monomial"],
        "grid.penalize_intercept": True,
        "output.keep_draws": 71,
        "precision": {"target_mcse": 0.02, "max_replications": 5000},
        "tuning": {"reference_m": 60},
        "minibatch": {
            "m": 120,
            "degree": 3,
            "lambda": 0.5,
            "batch_size": [1, 12, 120],
            "seeds": 2,
            "steps": 500,
        },
    }
)
LOGISTIC = small_design(
    **{
        "model": {"family": "logistic"},
        "dgp.x": {"distribution": "uniform", "low": -2.0, "high": 6.0},
    }
)
del LOGISTIC["dgp"]["noise_sd"]


@pytest.mark.parametrize(
    "raw", [small_design(), FULL, LOGISTIC], ids=["small", "full", "logistic"]
)
def test_to_dict_gives_back_the_file(raw, tmp_path):
    design = design_from_dict(raw, "d.toml")
    written = design.to_dict()
    assert written == raw
    # and as a file: the same design again
    path = write_design(tmp_path / "again.toml", written)
    assert load_design(path) == design
    assert design_from_dict(written) == design


def test_full_design_is_read_completely():
    design = design_from_dict(FULL)
    assert design.minibatch == MinibatchSpec(120, 3, 0.5, (1, 12, 120), 2, 500)
    assert design.minibatch.to_dict() == FULL["minibatch"]
    assert (design.target_mcse, design.max_replications, design.reference_m) == (0.02, 5000, 60)
    assert design.basis == ("orthonormal", "monomial") and design.penalize_intercept is True
    assert design.x.to_dict() == {"distribution": "normal", "mean": 0.5, "sd": 2.0}
    assert design.block_size == 13 and design.keep_draws == 71 and design.seed == 0


def test_logistic_design_has_no_noise_level():
    design = design_from_dict(LOGISTIC)
    assert design.family == "logistic" and math.isnan(design.noise_sd)
    written = design.to_dict()
    assert "noise_sd" not in written["dgp"] and written["model"] == {"family": "logistic"}
    assert written["dgp"]["x"] == {"distribution": "uniform", "low": -2.0, "high": 6.0}


@pytest.mark.parametrize(
    ("changes", "absent"),
    [
        # a default-valued optional key is not written, so that the hash stays that of a
        # design without it
        ({"model": {"family": "gaussian"}}, "model"),
        ({"grid.basis": ["monomial"]}, "basis"),
        ({"tuning": {"reference_m": 100}}, "tuning"),
    ],
)
def test_default_valued_optional_keys_are_left_out(changes, absent):
    design = design_from_dict(small_design(**changes))
    written = design.to_dict()
    assert absent not in written and absent not in written["grid"]
    assert written == small_design()
    assert design.hash == design_from_dict(small_design()).hash


def test_hash_ignores_block_size_tuning_and_minibatch_only():
    base = design_from_dict(FULL)
    raw = dict(FULL)
    for key in ("block_size", "tuning", "minibatch"):
        del raw[key]
    assert design_from_dict(raw).hash == base.hash
    for changes in (
        {"precision": None},
        {"grid.basis": ["monomial"]},
        {"grid.penalize_intercept": False},
        {"output.keep_draws": 70},
        {"dgp.x": {"distribution": "normal", "mean": 0.5, "sd": 2.5}},
    ):
        other = {**FULL, **{k: v for k, v in changes.items() if "." not in k}}
        for dotted, value in changes.items():
            if "." in dotted:
                table, key = dotted.split(".")
                other[table] = {**other[table], key: value}
        other = {k: v for k, v in other.items() if v is not None}
        assert design_from_dict(other).hash != base.hash, changes


# --- replications per m, and the problem of one degree ----------------------------------


def test_with_replications_sets_the_replications_of_each_m():
    design = design_from_dict(small_design())
    assert design.replications_of(8) == 70
    by_dict = design.with_replications({40: 300, 3: 100})
    assert by_dict.replications_by_m == ((3, 100), (40, 300))
    assert [by_dict.replications_of(m) for m in (3, 8, 40)] == [100, 70, 300]
    assert by_dict.replications == 70 and design.replications_by_m == ()
    by_pairs = design.with_replications([(np.int64(8), np.int64(90)), ("3", 80.0)])
    assert by_pairs.replications_by_m == ((3, 80), (8, 90))
    assert all(type(v) is int for pair in by_pairs.replications_by_m for v in pair)
    assert [by_pairs.replications_of(m) for m in (3, 8, 40)] == [80, 90, 70]
    assert by_dict.with_replications(None).replications_by_m == ()
    assert by_dict.with_replications(None) == design
    # the rest of the design is unchanged
    assert by_dict.to_dict() == design.to_dict() and by_dict.hash == design.hash


def test_true_coefficients_in_x_and_in_u():
    """w* = (β0, β1, 0, …) in 1, x, …; with u = (x − c)/s, v* = (β0 + β1·c, β1·s, 0, …)."""
    design = design_from_dict(
        small_design(
            **{
                "dgp.intercept": -0.5,
                "dgp.slope": 3.0,
                "dgp.x": {"distribution": "uniform", "low": 1.0, "high": 5.0},
            }
        )
    )
    np.testing.assert_array_equal(design.true_coefficients_of(3), [-0.5, 3.0, 0.0, 0.0])
    np.testing.assert_array_equal(
        design.true_coefficients_of(2, standardised=True), [-0.5 + 3.0 * 3.0, 3.0 * 2.0, 0.0]
    )
    np.testing.assert_array_equal(design.true_coefficients_of(1, standardised=False), [-0.5, 3.0])


def test_standard_basis_of_a_degree_is_that_of_the_design():
    """x uniform on [0, 4]: u = (x − 2)/2, so 1, u, u² = 1, −1 + x/2, 1 − x + x²/4."""
    design = design_from_dict(
        small_design(
            **{
                "dgp.intercept": 1.5,
                "dgp.slope": -2.0,
                "dgp.x": {"distribution": "uniform", "low": 0.0, "high": 4.0},
                "grid.penalize_intercept": True,
                "grid.degree": [2],
            }
        )
    )
    mono = design.standard_basis(2)
    B = np.array([[1.0, 0.0, 0.0], [-1.0, 0.5, 0.0], [1.0, -1.0, 0.25]])
    np.testing.assert_allclose(mono.B, B, atol=1e-15)
    np.testing.assert_allclose(mono.penalty, B @ B.T, atol=1e-15)  # D = I: intercept too
    np.testing.assert_allclose(mono.w_star, [1.5, -2.0, 0.0])
    np.testing.assert_allclose(mono.v_star, [1.5 - 4.0, -4.0, 0.0])
    # orthonormal: ψ0 = 1, ψ1 = √3·u, so v* = (−2.5, −4, 0) is w = (−2.5, −4/√3, 0)
    ortho = design.standard_basis(2, "orthonormal")
    np.testing.assert_allclose(ortho.w_star, [-2.5, -4.0 / math.sqrt(3.0), 0.0], atol=1e-12)
    np.testing.assert_allclose(ortho.v_star, [-2.5, -4.0, 0.0])
    assert ortho.degree == 2
    # ψ2 = √5·(3u² − 1)/2, so φ(u) = B·ψ with 1 = ψ0, u = ψ1/√3, u² = ψ0/3 + 2ψ2/(3√5);
    # with the intercept penalised D = I: the penalty is BBᵀ and its root F is B itself
    B_ortho = np.array(
        [
            [1.0, 0.0, 0.0],
            [0.0, 1.0 / math.sqrt(3.0), 0.0],
            [1.0 / 3.0, 0.0, 2.0 / (3.0 * math.sqrt(5.0))],
        ]
    )
    np.testing.assert_allclose(ortho.B, B_ortho, atol=1e-14)
    np.testing.assert_allclose(ortho.penalty, B_ortho @ B_ortho.T, atol=1e-14)
    np.testing.assert_allclose(ortho.F, B_ortho, atol=1e-14)


# --- reading the file ------------------------------------------------------------------

EXPECTED_FILE = "expected a regular UTF-8 TOML file of at most 1 MiB"


def _stat_as(mode, like):
    """os.stat reporting ``mode`` (and the rest of ``like``'s stat) for every path."""
    fields = list(os.stat(like))
    fields[stat.ST_MODE] = mode
    return lambda path: os.stat_result(fields)


@pytest.mark.parametrize(
    ("mode", "kind"),
    [(stat.S_IFBLK | 0o600, "a block device"), (0o644, "not a regular file")],
)
def test_other_kinds_of_file_are_refused_by_name(mode, kind, tmp_path, monkeypatch):
    path = write_design(tmp_path / "d.toml", small_design())
    monkeypatch.setattr(design_module.os, "stat", _stat_as(mode, path))
    with pytest.raises(DesignError) as info:
        load_design(path)
    assert str(info.value) == f"{path}: design file is {kind}; {EXPECTED_FILE}"


def test_a_path_that_cannot_be_resolved_is_refused(tmp_path):
    loop = tmp_path / "loop.toml"
    loop.symlink_to(loop)
    with pytest.raises(DesignError) as info:
        load_design(loop)
    message = str(info.value)
    assert message.startswith(f"{loop}: design file cannot be read (OSError: ")
    assert message.endswith(f"; {EXPECTED_FILE}") and len(message.splitlines()) == 1


def test_file_removed_after_the_stat_is_not_found(tmp_path, monkeypatch):
    real = write_design(tmp_path / "real.toml", small_design())
    gone = tmp_path / "gone.toml"
    monkeypatch.setattr(design_module.os, "stat", _stat_as(stat.S_IFREG | 0o644, real))
    with pytest.raises(DesignError) as info:
        load_design(gone)
    assert str(info.value) == f"{gone}: design file not found"


def test_open_failing_after_the_stat_is_refused(tmp_path, monkeypatch):
    real = write_design(tmp_path / "real.toml", small_design())
    inside_a_file = real / "d.toml"  # not a directory: open fails with ENOTDIR
    monkeypatch.setattr(design_module.os, "stat", _stat_as(stat.S_IFREG | 0o644, real))
    with pytest.raises(DesignError) as info:
        load_design(inside_a_file)
    message = str(info.value)
    assert message.startswith(f"{inside_a_file}: design file cannot be read (NotADirectoryError: ")
    assert message.endswith(f"; {EXPECTED_FILE}")


def test_read_error_is_refused_and_the_file_closed(tmp_path, monkeypatch):
    path = write_design(tmp_path / "d.toml", small_design())
    opened, closed = [], []
    real_open, real_close = os.open, os.close

    def failing_read(fd, n):
        raise OSError(5, "Input/output error")

    def spy_open(*args):
        opened.append(real_open(*args))
        return opened[-1]

    monkeypatch.setattr(design_module.os, "open", spy_open)
    monkeypatch.setattr(design_module.os, "close", lambda fd: closed.append(fd) or real_close(fd))
    monkeypatch.setattr(design_module.os, "read", failing_read)
    with pytest.raises(DesignError) as info:
        load_design(path)
    assert str(info.value) == (
        f"{path}: design file cannot be read (OSError: [Errno 5] Input/output error); "
        f"{EXPECTED_FILE}"
    )
    assert closed == opened and len(opened) == 1


def _chunked_read(limit, requested):
    real_read = os.read

    def read(fd, n):
        requested.append(n)
        return real_read(fd, min(n, limit))

    return read


def test_a_design_read_in_small_pieces_is_the_same_design(tmp_path, monkeypatch):
    """os.read may return fewer bytes than asked: the pieces are put back together."""
    path = write_design(tmp_path / "d.toml", FULL)
    whole = load_design(path)
    requested = []
    monkeypatch.setattr(design_module.os, "read", _chunked_read(7, requested))
    assert load_design(path) == whole
    assert len(requested) > 10


def test_a_growing_file_read_in_pieces_stops_after_one_mib_and_one_byte(tmp_path, monkeypatch):
    """stat said 100 bytes; the file holds 3 MiB, read 64 KiB at a time: exactly 1 MiB + 1
    bytes are read, and the file is refused."""
    path = tmp_path / "d.toml"
    text = to_toml(small_design()).encode()
    path.write_bytes(text + b"#" + b"x" * (3 * MAX_DESIGN_BYTES) + b"\n")
    real_stat, real_fstat = os.stat, os.fstat

    def small(info):
        fields = list(info)
        fields[stat.ST_SIZE] = 100
        return os.stat_result(fields)

    got = []
    real_read = os.read

    def read(fd, n):
        data = real_read(fd, min(n, 65536))
        got.append(len(data))
        return data

    monkeypatch.setattr(design_module.os, "stat", lambda p: small(real_stat(p)))
    monkeypatch.setattr(design_module.os, "fstat", lambda fd: small(real_fstat(fd)))
    monkeypatch.setattr(design_module.os, "read", read)
    with pytest.raises(DesignError) as info:
        load_design(path)
    assert str(info.value) == f"{path}: design file is more than 1,048,576 bytes; {EXPECTED_FILE}"
    assert sum(got) == MAX_DESIGN_BYTES + 1


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_put_in_place_after_the_stat_does_not_block(tmp_path, monkeypatch):
    """The stat saw a regular file; by the open a FIFO is there. Opening must not wait for
    a writer, and the open file is then refused for what it is."""
    real = write_design(tmp_path / "real.toml", small_design())
    fifo = tmp_path / "d.toml"
    os.mkfifo(fifo)
    monkeypatch.setattr(design_module.os, "stat", _stat_as(stat.S_IFREG | 0o644, real))
    result = {}

    def target():
        try:
            load_design(fifo)
        except DesignError as exc:
            result["message"] = str(exc)
        except BaseException as exc:  # reported below
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=3)
    if thread.is_alive():  # a reader stuck in open(): unblock it so that the test can end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(timeout=3)
        pytest.fail("opening the design blocked on a FIFO")
    assert result == {"message": f"{fifo}: design file is a FIFO (named pipe); {EXPECTED_FILE}"}


def test_design_is_opened_without_blocking_or_becoming_a_terminal(tmp_path, monkeypatch):
    """The open flags: read only, O_NONBLOCK (a FIFO must not block), O_NOCTTY (a terminal
    must not become the controlling one), O_CLOEXEC (not inherited by worker processes)."""
    path = write_design(tmp_path / "d.toml", small_design())
    flags = []
    real_open = os.open

    def spy(p, f, *rest):
        flags.append(f)
        return real_open(p, f, *rest)

    monkeypatch.setattr(design_module.os, "open", spy)
    load_design(path)
    assert len(flags) == 1
    # the flags a platform lacks (Windows has none of the three) are asked of no one
    wanted = 0
    for name in ("O_NONBLOCK", "O_NOCTTY", "O_CLOEXEC"):
        wanted |= getattr(os, name, 0)
    assert flags[0] & wanted == wanted
    assert flags[0] & (os.O_WRONLY | os.O_RDWR) == 0
