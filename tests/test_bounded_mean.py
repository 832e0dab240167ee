"""The betting test's early stopping: `rejects`, `leading_rejections` and `upper_bound` read the
observations block by block and stop once the wealth reaches 1/α, with exactly the decisions
(and the bound) of the whole computation; the drop test's fixed sequence built on them passes
exactly the options the option-by-option test over all requests passes."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from test_certify import draw_three_tiers

from calibrate.policies.assignment import decision_bins
from calibrate.policies.families import Family, threshold_grid
from calibrate.records.outcomes import Outcomes
from calibrate.stats import bounded_mean
from calibrate.sweep.certify import Budget, _DropTest


def rare_departures(rng: np.random.Generator, k: int, n: int, rates: np.ndarray) -> np.ndarray:
    """Rows that are mostly the midpoint 0.5 (as drop contributions are), with departures at the
    given per-row rates."""
    values = rng.choice([0.0, 0.25, 0.75, 1.0], size=(k, n))
    return np.where(rng.uniform(size=(k, n)) < rates[:, None], values, 0.5)


def slices(x: np.ndarray) -> Callable[[np.ndarray, int, int], np.ndarray]:
    return lambda rows, lo, hi: x[rows, lo:hi]


def whole_rejects(x: np.ndarray, m: float | np.ndarray, alpha: float) -> np.ndarray:
    return bounded_mean.max_log_wealth(x, m, alpha) >= math.log(1.0 / alpha)


@pytest.mark.parametrize("n", [1, 5, 1_024, 1_025, 3_000, 40_000, 70_000])
def test_the_wealth_read_block_by_block_is_the_same_doubles(n: int) -> None:
    """Every running sum goes on from the block before: each ln K_t is the very double the whole
    computation gives (a decision at a threshold equal to the maximum wealth stays the same)."""
    rng = np.random.default_rng(n)
    x = rare_departures(rng, 3, n, np.array([0.01, 0.05, 0.3]))
    m, alpha = np.array([0.5, 0.51, 0.6]), 0.01
    stake = np.minimum(
        bounded_mean._variance_stake(x, alpha), bounded_mean.BET_CAP / (1.0 - m[:, None])
    )
    whole = np.cumsum(np.log1p(stake * (m[:, None] - x)), axis=1)
    run, blocks = bounded_mean._Running.start(3), []
    for lo, hi in bounded_mean._blocks(0, n):
        run, log_wealths = bounded_mean._step(run, x[:, lo:hi], n, m, alpha)
        blocks.append(log_wealths)
    assert np.array_equal(np.concatenate(blocks, axis=1).view(np.int64), whole.view(np.int64))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # log1p of x = 1e6
def test_rejects_decides_as_the_whole_wealth_does() -> None:
    rng = np.random.default_rng(3)
    for n in (1, 7, 2_000, 50_000):
        x = rare_departures(rng, 12, n, rng.uniform(0.0, 0.08, size=12))
        x[3, n // 2] = np.nan  # a NaN maximum: never rejected
        x[4, -1] = 1e6  # out of range, last: a NaN wealth however early the row crosses
        m = np.concatenate([[0.0, 1.0, -0.1, 0.52], rng.uniform(0.45, 0.6, size=8)])
        for alpha in (0.3, 0.05, 1e-4, 1.0):
            got = bounded_mean.rejects(x, m, alpha)
            assert np.array_equal(got, whole_rejects(x, m, alpha)), (n, alpha)
    assert bounded_mean.rejects(np.zeros((2, 0)), 0.5, 0.05).tolist() == [False, False]


@pytest.mark.parametrize("n", [1_500, 40_000, 70_000])
def test_leading_rejections_is_the_fixed_sequence_of_rejects(n: int) -> None:
    rng = np.random.default_rng(n)
    seen = set()
    for _ in range(12):
        k = int(rng.integers(1, 40))
        rates = np.sort(rng.uniform(0.0, 0.06, size=k))  # of drops (x = 1): later rows fail
        x = np.where(rng.uniform(size=(k, n)) < rates[:, None], 1.0, 0.5)
        null_mean, alpha = float(rng.uniform(0.49, 0.56)), float(rng.choice([0.05, 1e-3]))
        decided = whole_rejects(x, null_mean, alpha)
        want = k if decided.all() else int(np.argmin(decided))
        seen.add(0 < want < k)
        got = bounded_mean.leading_rejections(slices(x), k, n, null_mean, alpha)
        assert got == want
    assert True in seen  # some sequences stop inside


def reference_upper_bound(x: np.ndarray, alpha: float, tolerance: float = 1e-5) -> float:
    """`upper_bound` with the wealth of every bisection step computed over all of x."""
    x = x.reshape(1, -1)
    low, high = float(x.mean()), 1.0 - 1e-12
    threshold, stake = math.log(1.0 / alpha), bounded_mean._variance_stake(x, alpha)

    def rejected(mean: float) -> bool:
        return bool(bounded_mean._wealth_at(x, stake, np.array([mean]))[0] >= threshold)

    if not rejected(high):
        return 1.0
    while high - low > tolerance:
        mid = (low + high) / 2.0
        low, high = (low, mid) if rejected(mid) else (mid, high)
    return high


def test_upper_bound_is_the_same_double() -> None:
    rng = np.random.default_rng(5)
    for n in (3, 1_000, 30_000):
        x = rare_departures(rng, 1, n, np.array([0.05]))[0]
        for alpha in (0.05, 0.004):
            assert bounded_mean.upper_bound(x, alpha) == reference_upper_bound(x, alpha)


def reference_fixed_sequence(
    test: _DropTest, j: int, bins: np.ndarray, reach: np.ndarray, n_options: int, budget: Budget
) -> list[int]:
    """The drop test's fixed sequence with every option's test over all of its requests."""
    level = budget.delta / len(test.groups)
    null_mean = (1.0 + budget.max_regret) / 2.0
    top, passed = n_options - 1, []
    for a in range(top, -1, -1):
        ok = all(
            whole_rejects(
                (1.0 + test.contributions(j, bins, reach, np.array([a]), rows)) / 2.0,
                null_mean,
                level,
            )[0]
            for rows in test.groups
        )
        if not (ok or (test.free(j) and a == top)):
            break
        passed.append(a)
    return passed


def fractional(o: Outcomes, rng: np.random.Generator) -> Outcomes:
    label = np.where(
        rng.uniform(size=o.label.shape) < 0.3, rng.uniform(size=o.label.shape), o.label
    )
    return Outcomes(**{**o.__dict__, "label": label})


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # log1p of a corrupt x
@pytest.mark.parametrize(("segmented", "corrupt"), [(False, False), (True, False), (False, True)])
def test_the_drop_fixed_sequence_passes_what_testing_every_option_whole_does(
    segmented: bool, corrupt: bool
) -> None:
    """Also with a label out of [0, 1] (`corrupt`), last in the certification order: it makes
    the wealth of the options that keep it NaN, so they never pass, however early they cross."""
    rng = np.random.default_rng(11)
    o = fractional(draw_three_tiers(rng, 6_000), rng)
    grids = tuple(threshold_grid(o.confidence[:, s], 60) for s in (0, 1))
    family = Family("cascade", (0, 1, 2), grids)
    segments = np.where(rng.uniform(size=o.n) < 0.5, "a", "b").astype(object) if segmented else None
    test = _DropTest(o, family, segments)
    if corrupt:
        o.label[test.rows[-1], -1] = 1e6
    bins = decision_bins(o, family)
    stops = set()
    for eps in (0.005, 0.02, 0.05, 0.1):
        budget = Budget(eps, 0.05, "drop")
        for j, b in enumerate(bins):
            reach = o.labeled & (rng.uniform(size=o.n) < (1.0 if j == 0 else 0.7))
            want = reference_fixed_sequence(test, j, b, reach, grids[j].size + 1, budget)
            assert test.fixed_sequence(j, b, reach, grids[j].size + 1, budget) == want
            stops.add(len(want))
    assert len(stops) > 2  # the sequences stop at different places
