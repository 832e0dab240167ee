"""drift.py: PSI and its sample-size-aware limit, the CUSUM's simulated threshold, τ², and the
regional-health windows (pure functions, no store)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest
from scipy.stats import binom

from calibrate.stats import drift
from calibrate.stats.regional_health import degraded_mask, regional_health


def test_psi_by_hand() -> None:
    edges = np.array([0.5])
    reference = drift.shares(np.array([0.1, 0.2, 0.7, 0.8]), edges)  # 2 + ½ of 5 each → ½, ½
    assert reference.tolist() == [0.5, 0.5]
    current = np.array([0.1, 0.9, 0.9, 0.9])  # counts 1, 3 → (1.5, 3.5) / 5
    q = np.array([0.3, 0.7])
    expected = float(np.sum((q - 0.5) * np.log(q / 0.5)))
    assert drift.psi(reference, current, edges) == pytest.approx(expected)


def test_psi_limit_grows_for_small_chunks_and_never_goes_below_the_effect_floor() -> None:
    small = drift.psi_limit(5000, 60, 10, 0.001)
    large = drift.psi_limit(5000, 50_000, 10, 0.001)
    assert small > 0.4
    assert large == drift.PSI_EFFECT


def test_psi_limit_holds_its_level_on_null_draws() -> None:
    """On identical distributions, a chunk of 150 exceeds its 1% limit about 1% of the time."""
    rng = np.random.default_rng(3)
    reference = rng.beta(5, 2, 4000)
    edges = drift.psi_edges(reference)
    p = drift.shares(reference, edges)
    limit = drift.psi_limit(reference.size, 150, edges.size + 1, 0.01)
    runs = 2000
    above = sum(drift.psi(p, rng.beta(5, 2, 150), edges) > limit for _ in range(runs))
    assert binom.ppf(0.0005, runs, 0.01) <= above <= binom.ppf(0.9995, runs, 0.01)


def test_tau2_is_kept_only_when_the_days_are_overdispersed() -> None:
    """Binomial days: τ² = 0 unless the 5% dispersion pre-test rejects; wandering days: τ² ≈ the
    true between-day variance."""
    rng = np.random.default_rng(0)
    n = np.full(60, 200)
    runs = 400
    positive = sum(drift.in_control(rng.binomial(n, 0.3), n).tau2 > 0 for _ in range(runs))
    assert binom.ppf(0.0005, runs, 0.05) <= positive <= binom.ppf(0.9995, runs, 0.05)
    rates = np.clip(0.3 + 0.08 * rng.standard_normal(60), 0, 1)
    assert drift.in_control(rng.binomial(n, rates), n).tau2 == pytest.approx(0.08**2, rel=0.5)


def _cusum_run(rng: np.random.Generator, alpha: float, shift: float = 0.0) -> bool:
    ref_n, mon_n = rng.poisson(120, 30), rng.poisson(120, 40)
    ic = drift.in_control(rng.binomial(ref_n, 0.2), ref_n)
    h = drift.cusum_threshold(ref_n, mon_n, ic, alpha, rng)
    cusum = drift.run_cusum(drift.standardise(rng.binomial(mon_n, 0.2 + shift), mon_n, ic), h)
    return cusum.first_up is not None or cusum.first_down is not None


@pytest.mark.e2e
def test_cusum_threshold_gives_the_stated_false_alarm_rate() -> None:
    """The simulated h is calibrated, not merely conservative: at α = 0.2 the measured rate over
    200 stationary runs lies inside the two-sided 99.9% binomial band around 0.2."""
    rng = np.random.default_rng(11)
    runs, alpha = 200, 0.2
    alarms = sum(_cusum_run(rng, alpha) for _ in range(runs))
    assert binom.ppf(0.0005, runs, alpha) <= alarms <= binom.ppf(0.9995, runs, alpha)


def test_cusum_catches_a_one_sigma_shift_in_both_directions() -> None:
    rng = np.random.default_rng(5)
    assert sum(_cusum_run(rng, 0.05, +0.05) for _ in range(20)) >= 18
    assert sum(_cusum_run(rng, 0.05, -0.05) for _ in range(20)) >= 18


def test_cusum_onset_is_the_day_after_the_path_last_stood_at_zero() -> None:
    z = np.array([0.0, -1.0, 0.2, 2.0, 2.0, 2.0, 2.0])
    cusum = drift.run_cusum(z, h=4.0)
    assert cusum.first_up == 5  # 1.5 + 1.5 + 1.5 = 4.5 > 4 on index 5
    assert cusum.onset("up") == 3
    assert cusum.first_down is None


def test_fallback_to_a_cheaper_tier_is_degraded_but_to_a_dearer_one_is_not() -> None:
    served = np.array(["medium", "large", "small", "large", ""], dtype=object)
    failed = np.array(["large", "small", "", "large", "large"], dtype=object)
    costs = {"small": 0.1, "medium": 0.5, "large": 2.0}
    assert degraded_mask(served, failed, costs).tolist() == [True, False, False, False, True]


def test_an_outage_window_is_the_run_of_degraded_days_around_a_flagged_day() -> None:
    days = [date(2026, 5, 1) + timedelta(days=d) for d in range(10)]
    day_index = np.repeat(np.arange(10), 40)
    region = np.where(np.arange(400) % 2 == 0, "eu", "us").astype(object)
    degraded = np.zeros(400, dtype=bool)
    eu = region == "eu"
    for d, count in ((4, 1), (5, 9), (6, 1)):  # one failure, a burst, one failure
        degraded[np.flatnonzero(eu & (day_index == d))[:count]] = True
    degraded[np.flatnonzero(eu & (day_index == 8))[:1]] = True  # a lone failure: no outage
    pairs = (np.where(degraded, "large", "").astype(object), np.full(400, "medium", dtype=object))
    health = regional_health(region, day_index, days, day_index < 3, degraded, pairs)
    assert [(o.region, o.start, o.end, o.degraded) for o in health.outages] == [
        ("eu", date(2026, 5, 5), date(2026, 5, 7), 11)
    ]
    assert health.outages[0].fallbacks == (("large", "medium", 11),)

    # the same rows grouped, each group with its count: the same health
    keys = np.stack([region, day_index, degraded, pairs[0]], axis=1).astype(str)
    groups, first, counts = np.unique(keys, axis=0, return_index=True, return_counts=True)
    assert len(groups) < 100
    grouped = regional_health(
        region[first],
        day_index[first],
        days,
        day_index[first] < 3,
        degraded[first],
        (pairs[0][first], pairs[1][first]),
        counts=counts,
    )
    assert grouped == health
