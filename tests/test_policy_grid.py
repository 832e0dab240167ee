"""The engine's building blocks agree with the plain numpy they replace."""

from __future__ import annotations

import numpy as np
import pytest

from calibrate.policies import latency_ranks
from calibrate.policies.families import _grid_by_sorting, _integer_quantiles, confidence_buckets
from calibrate.policies.latency_ranks import latency_columns


def confidences(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = np.round(rng.normal(0.6, 0.2, n), int(rng.integers(1, 5)))
    values[rng.uniform(size=n) < 0.1] = np.nan
    return values


@pytest.mark.parametrize("seed", range(6))
def test_rank_in_a_grid_is_searchsorted(seed: int) -> None:
    values = confidences(seed, 3000)
    values[:3] = [np.inf, -np.inf, 1e300]
    rng = np.random.default_rng(seed)
    grid = np.unique(np.concatenate([rng.choice(values[np.isfinite(values)], 40), [-5.0, 7.0]]))
    expected = np.searchsorted(grid, values, side="right")
    expected[np.isnan(values)] = 0
    assert np.array_equal(confidence_buckets(values).rank_in(grid), expected)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("size", [1, 5, 30, 200])
def test_bucketed_grid_is_the_sorted_grid(seed: int, size: int) -> None:
    values = confidences(seed, 5000)
    assert np.array_equal(confidence_buckets(values).grid(size), _grid_by_sorting(values, size))


def test_grids_of_all_nan_constant_and_infinite_values() -> None:
    for values in ([np.nan] * 5, [0.3] * 5, [0.1, np.inf, 0.2, -np.inf] * 50, []):
        values = np.array(values, dtype=np.float64)
        for size in (1, 3, 300):
            got = confidence_buckets(values).grid(size)
            assert np.array_equal(got, _grid_by_sorting(values, size))


@pytest.mark.parametrize("seed", range(40))
def test_integer_quantiles_equal_numpy_bit_for_bit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(
        int(rng.integers(0, 50)), int(rng.integers(51, 3000)), int(rng.integers(1, 900))
    )
    q = np.linspace(0, 1, int(rng.integers(1, 60)))
    assert np.array_equal(_integer_quantiles(tokens, q), np.quantile(tokens, q))


@pytest.mark.parametrize("limit", [1 << 20, 10])
def test_latency_codes_keep_order_and_decode_to_the_sums(
    monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    monkeypatch.setattr(latency_ranks, "CODE_LIMIT", limit)
    rng = np.random.default_rng(1)
    latency_ms = np.round(rng.gamma(2.0, 300.0, size=(500, 3)), 1)
    latency_ms[0, 0] = -2.5
    sums = [(0,), (0, 1), (0, 1, 2), (2,)]
    axis, columns = latency_columns(latency_ms, sums)
    codes = np.concatenate([columns[s].codes for s in sums])
    us = np.concatenate([np.rint(latency_ms[:, list(s)] * 1000).sum(axis=1) for s in sums])
    assert np.array_equal(axis.to_us(codes), us)
    order = np.argsort(us, kind="stable")
    assert np.all(np.diff(codes[order]) >= 0)
    for s in sums:
        assert columns[s].counts.sum() == 500
        assert np.array_equal(columns[s].bins, axis.bins.of_code[columns[s].codes])
