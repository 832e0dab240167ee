"""Calibration diagnostics and failure modes weigh each labeled request by 1/π: an integer weight
counts exactly like that many copies of the request."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from outcomes_support import random_outcomes

from calibrate.policies.assignment import assign, take_rows
from calibrate.policies.families import Family
from calibrate.stats.reliability import tier_calibrations
from calibrate.sweep.failure_modes import failure_modes


def _copies(seed: int, n: int):
    """Outcomes whose labels follow the confidence, integer weights, and the rows repeated."""
    o = random_outcomes(seed, n, 2)
    rng = np.random.default_rng(seed)
    p_ok = np.nan_to_num(o.confidence, nan=0.5)
    label = (rng.uniform(size=p_ok.shape) < p_ok).astype(np.float64)
    label[np.isnan(o.label)] = np.nan
    o = dataclasses.replace(o, label=label)
    weights = rng.integers(1, 4, o.n).astype(np.float64)
    repeated = take_rows(o, np.repeat(np.arange(o.n), weights.astype(int)))
    return o, weights, repeated


@pytest.mark.parametrize("n", [300, 3000])  # Platt below 1,000 labels, isotonic above
def test_weighted_calibration_equals_the_repeated_requests(n: int) -> None:
    o, weights, repeated = _copies(3, n)
    weighted = tier_calibrations(o, weights)
    plain = tier_calibrations(repeated)
    for w, p in zip(weighted, plain, strict=True):
        assert w.auroc == pytest.approx(p.auroc, abs=1e-12)
        assert w.brier == pytest.approx(p.brier, abs=1e-12)
        assert w.method == p.method
        if w.method == "platt":  # a smooth curve: the same at any point, whatever the grid
            for x in (0.2, 0.5, 0.8):
                assert w.p_correct(x) == pytest.approx(p.p_correct(x), abs=1e-3)
    unweighted = tier_calibrations(o)
    assert all(u.auroc != w.auroc for u, w in zip(unweighted, weighted, strict=True))


def test_weighted_failure_modes_equal_the_repeated_requests() -> None:
    o, weights, repeated = _copies(5, 800)
    family, option = Family("cascade", (0, 1), (np.array([0.5]),)), (0,)
    weighted = failure_modes(o, assign(o, family, option), 0.3, weights=weights)
    plain = failure_modes(repeated, assign(repeated, family, option), 0.3)
    assert weighted.kept_quality == pytest.approx(plain.kept_quality, abs=1e-12)
    assert weighted.cheapest_gap == pytest.approx(plain.cheapest_gap, abs=1e-12)
    for w, p in zip(weighted.segments, plain.segments, strict=True):
        assert w.kept_quality == pytest.approx(p.kept_quality, abs=1e-12)
        assert w.premium_quality == pytest.approx(p.premium_quality, abs=1e-12)
