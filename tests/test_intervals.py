"""The recommendation's intervals: the paired bootstrap drawn as multinomial counts of the distinct
(served, premium) pairs is the index bootstrap, in distribution."""

from __future__ import annotations

import numpy as np
import pytest

from calibrate.stats.intervals import bootstrap_quality


def index_bootstrap(
    served: np.ndarray, premium: np.ndarray, seed: int, resamples: int
) -> tuple[np.ndarray, np.ndarray]:
    """The textbook paired bootstrap: resample request indices with replacement."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, served.size, size=(resamples, served.size))
    quality = served[idx].mean(axis=1)
    return quality, premium[idx].mean(axis=1) - quality


@pytest.mark.parametrize("fractional", [False, True])
def test_counts_bootstrap_matches_the_index_bootstrap(fractional: bool) -> None:
    rng = np.random.default_rng(3)
    n = 300
    premium = (rng.uniform(size=n) < 0.9).astype(np.float64)
    served = np.where(rng.uniform(size=n) < 0.8, premium, 1.0 - premium)
    if fractional:  # fractional scores: many distinct pairs
        served = np.round(served * 0.6 + rng.uniform(0, 0.4, size=n), 3)
    resamples = 20_000
    quality, drop = bootstrap_quality(
        served, premium, np.random.default_rng(5), level=0.9, resamples=resamples
    )
    ref_q, ref_d = index_bootstrap(served, premium, 7, resamples)
    tails = [5, 95]
    # both estimate the same percentiles; the Monte Carlo error at 20,000 resamples is ~0.002
    assert [quality.low, quality.high] == pytest.approx(np.percentile(ref_q, tails), abs=0.006)
    assert [drop.low, drop.high] == pytest.approx(np.percentile(ref_d, tails), abs=0.006)
    se = served.std() / np.sqrt(n)  # and the interval has the width the normal theory gives
    assert quality.high - quality.low == pytest.approx(2 * 1.645 * se, rel=0.1)


def test_bootstrap_is_seeded_and_chunk_independent() -> None:
    rng = np.random.default_rng(1)
    served = rng.uniform(size=5_000).round(6)  # 5,000 distinct pairs: several chunks
    premium = rng.uniform(size=5_000).round(6)
    a = bootstrap_quality(served, premium, np.random.default_rng(9))
    b = bootstrap_quality(served, premium, np.random.default_rng(9))
    assert a == b
    assert a[0].low < served.mean() < a[0].high
    assert a[1].low < premium.mean() - served.mean() < a[1].high


def test_no_labeled_request_gives_nan_intervals() -> None:
    quality, drop = bootstrap_quality(np.array([]), np.array([]), np.random.default_rng(0))
    assert np.isnan([quality.low, quality.high, drop.low, drop.high]).all()
