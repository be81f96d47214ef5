"""Mergeable co-moments and the CSV writer against direct computations and pandas."""

import io

import numpy as np
import pandas as pd
import pytest

from study.moments import CoMoments
from study.results import to_csv


@pytest.mark.parametrize("sizes", [[50], [1, 7, 200, 3], [30, 0, 30, 0, 12]])
def test_combine_equals_summarising_all_samples_at_once(sizes):
    """Blocks of heavy-tailed samples (one of them empty), merged at once or one by one,
    give the count, mean and co-moment sums of all the samples together."""
    rng = np.random.default_rng(len(sizes))
    samples = [rng.standard_t(3, (n, 4, 3)) * [1.0, 1e3, 1e-3] + 5.0 for n in sizes]
    full = np.concatenate(samples)
    ref = CoMoments(
        n=np.full((4,), float(len(full))),
        mean=full.mean(axis=0),
        M=np.einsum("rki,rkj->kij", full - full.mean(0), full - full.mean(0)),
    )
    parts = [CoMoments.from_samples(s) if len(s) else CoMoments.empty((4,), 3) for s in samples]
    combined = CoMoments.combine(parts)
    one_by_one = parts[0]
    for part in parts[1:]:
        one_by_one = one_by_one.merge(part)
    for got in (combined, one_by_one):
        np.testing.assert_array_equal(got.n, ref.n)
        np.testing.assert_allclose(got.mean, ref.mean, rtol=1e-12)
        scale = np.sqrt(np.einsum("kii->ki", ref.M))
        assert np.all(np.abs(got.M - ref.M) <= 1e-12 * scale[:, :, None] * scale[:, None, :])


def test_to_csv_writes_what_pandas_writes():
    """Floats in shortest round-trip form, NaN as an empty field, integers, booleans and
    strings (quoted where they hold a comma or a quote), byte for byte as pandas."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(200) * 10.0 ** rng.integers(-20, 20, 200)
    x[[3, 17]] = np.nan
    x[5], x[6], x[7], x[8] = np.inf, -np.inf, 0.0, -0.0
    frame = pd.DataFrame(
        {
            "m": np.arange(200),
            "x": x,
            "ok": np.arange(200) % 3 == 0,
            "status": np.where(np.arange(200) % 2, "ok", "not identifiable").astype(object),
            "note": ['a, "b"' if i == 4 else (None if i == 9 else "c") for i in range(200)],
            "one": np.float64(0.1),
        }
    )
    assert to_csv(frame) == frame.to_csv(index=False, lineterminator="\n")
    back = pd.read_csv(io.StringIO(to_csv(frame)))
    np.testing.assert_array_equal(back["x"].to_numpy(), x)  # round trip, NaN included


def test_to_csv_leaves_other_kinds_of_column_to_pandas():
    frame = pd.DataFrame(
        {
            "mixed": np.array([0.0, -0.0, True, 1, None, "x"], dtype=object),
            "f32": np.arange(6, dtype=np.float32) / 3,
            "nullable": pd.array([1, None, 3, 4, 5, 6], dtype="Int64"),
        }
    )
    for cols in (["mixed", "f32"], ["f32", "nullable"], ["mixed"], ["nullable"]):
        part = frame[cols]
        assert to_csv(part) == part.to_csv(index=False, lineterminator="\n")
