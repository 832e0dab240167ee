"""Horvitz–Thompson and Hájek means, the paired difference, exact binomial intervals, and the
unbiasedness of the weighted estimates under the real sampling design of `calibrate sample`."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from calibrate.labels.queue import Design, draw
from calibrate.records.labels import Population
from calibrate.stats.estimators import (
    agreement,
    clopper_pearson,
    effective_sample_size,
    hajek_mean,
    horvitz_thompson_mean,
    weighted_paired_difference,
)

pytestmark = pytest.mark.e2e  # simulated sampling designs: not in `make test-fast`


def test_horvitz_thompson_by_hand() -> None:
    est = horvitz_thompson_mean(np.array([1.0, 0.0, 1.0]), np.array([0.5, 0.25, 1.0]), 10)
    assert est.value == pytest.approx(0.3)  # (1/0.5 + 0 + 1/1) / 10
    assert est.std_error**2 == pytest.approx(0.02)  # (1 − 0.5)/0.25 · 1 / 100
    assert est.low == pytest.approx(0.3 - 1.959964 * np.sqrt(0.02), abs=1e-6)


def test_hajek_by_hand_and_its_variance() -> None:
    y, w = np.array([1.0, 0.0, 1.0]), np.array([2.0, 4.0, 1.0])
    est = hajek_mean(y, w)
    assert est.value == pytest.approx(3 / 7)
    r = y - 3 / 7
    assert est.std_error**2 == pytest.approx(1.5 * (w**2 * r**2).sum() / 49)
    # only relative weights matter
    assert hajek_mean(y, w * 13.0).value == pytest.approx(est.value)
    assert hajek_mean(y, w * 13.0).std_error == pytest.approx(est.std_error)


def test_equal_weights_give_the_ordinary_mean_and_standard_error() -> None:
    y = np.random.default_rng(1).random(50)
    est = hajek_mean(y, np.ones(50))
    assert est.value == pytest.approx(y.mean())
    assert est.std_error == pytest.approx(y.std(ddof=1) / np.sqrt(50))
    assert effective_sample_size(np.ones(50)) == pytest.approx(50)
    assert effective_sample_size(np.array([1.0, 3.0])) == pytest.approx(16 / 10)


def test_paired_difference_keeps_the_pairs() -> None:
    premium = np.array([1.0, 1.0, 0.0, 1.0])
    policy = np.array([1.0, 0.0, 0.0, 1.0])
    w = np.array([1.0, 5.0, 1.0, 1.0])
    est = weighted_paired_difference(premium, policy, w)
    assert est.value == pytest.approx(5 / 8)
    assert est.value == pytest.approx(hajek_mean(premium - policy, w).value)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        hajek_mean(np.array([1.0, np.nan]), np.ones(2))
    with pytest.raises(ValueError, match="positive"):
        hajek_mean(np.array([1.0, 0.0]), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        horvitz_thompson_mean(np.array([1.0]), np.array([1.5]), 3)
    assert np.isnan(hajek_mean(np.array([]), np.array([])).value)


def test_clopper_pearson_matches_scipy() -> None:
    for k, n in ((0, 20), (3, 20), (20, 20), (7, 150)):
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        assert clopper_pearson(k, n) == pytest.approx((ci.low, ci.high))


def test_agreement_counts_misses_as_judge_ok_human_not() -> None:
    human = np.array([1, 1, 0, 0, 0, 1.0])
    judge = np.array([1, 0, 1, 0, 1, 1.0])
    a = agreement(human, judge)
    assert a is not None
    assert (a.overlap, a.agree, a.misses, a.human_unacceptable) == (6, 3, 2, 3)
    assert a.miss_rate == pytest.approx(2 / 6)
    assert a.missed_of_bad == pytest.approx(2 / 3)
    assert a.miss_rate_interval == pytest.approx(clopper_pearson(2, 6))
    assert agreement(np.array([]), np.array([])) is None


# --- unbiasedness under the design of `calibrate sample` ---------------------------------------

N_POPULATION = 3000
DRAWS = 600


def _population(seed: int = 11) -> tuple[Population, np.ndarray]:
    """Small tier quality varies by stratum: the hard intent and the confidences just above the
    threshold are much worse than the rest, exactly what the targeted strata oversample."""
    rng = np.random.default_rng(seed)
    conf = rng.random(N_POPULATION)
    hard = rng.random(N_POPULATION) < 0.15
    p_ok = np.where(hard, 0.25, np.where(conf < 0.55, 0.55, 0.93))
    y = (rng.random(N_POPULATION) < p_ok).astype(float)
    pop = Population(
        tiers=("small", "large"),
        request_ids=np.array([f"r-{i:05d}" for i in range(N_POPULATION)], dtype=object),
        confidence=np.column_stack([conf, np.full(N_POPULATION, 0.99)]),
        input_tokens=rng.integers(10, 500, N_POPULATION),
        intent=np.where(hard, "hard", "easy").astype(object),
        keyword_hit=np.zeros(N_POPULATION, dtype=bool),
    )
    return pop, y


DESIGN = Design(n=150, uniform_share=0.7, thresholds={"small": 0.5}, intents=("hard",))


@pytest.fixture(scope="module")
def simulation() -> dict[str, np.ndarray | float]:
    pop, y = _population()
    truth = float(y.mean())
    ht, hajek, plain, covered = [], [], [], []
    counts = np.zeros(N_POPULATION)
    pi = None
    for seed in range(DRAWS):
        d = draw(pop, DESIGN, np.random.default_rng(seed))
        pi = d.population_prob
        counts[d.rows] += 1
        sample_y = y[d.rows]
        ht.append(horvitz_thompson_mean(sample_y, d.inclusion_prob, N_POPULATION).value)
        est = hajek_mean(sample_y, 1 / d.inclusion_prob)
        hajek.append(est.value)
        covered.append(est.low <= truth <= est.high)
        plain.append(sample_y.mean())
    return {
        "truth": truth,
        "ht": np.array(ht),
        "hajek": np.array(hajek),
        "plain": np.array(plain),
        "covered": np.array(covered),
        "counts": counts,
        "pi": pi,
        "y": y,
    }


def _z(values: np.ndarray, truth: float) -> float:
    """How many simulated standard errors the mean over draws is from the population value."""
    return float((values.mean() - truth) / (values.std(ddof=1) / np.sqrt(values.size)))


def test_weighted_estimates_are_unbiased_where_the_unweighted_one_is_not(simulation) -> None:
    """600 seeded draws of 150 labels (105 uniform, 45 targeted) from 3,000 requests."""
    truth = simulation["truth"]
    z_ht, z_hajek, z_plain = (_z(simulation[k], truth) for k in ("ht", "hajek", "plain"))
    report = (
        f"truth {truth:.4f}; HT {simulation['ht'].mean():.4f} (z {z_ht:.2f}); Hájek "
        f"{simulation['hajek'].mean():.4f} (z {z_hajek:.2f}); unweighted "
        f"{simulation['plain'].mean():.4f} (z {z_plain:.2f})"
    )
    assert abs(z_ht) < 4, report
    assert abs(z_hajek) < 4, report
    assert abs(z_plain) > 10, report
    # and the unweighted bias is material, not just detectable
    assert truth - simulation["plain"].mean() > 0.03, report


def test_hajek_intervals_cover_the_population_value(simulation) -> None:
    assert simulation["covered"].mean() >= 0.92, simulation["covered"].mean()


def test_inclusion_probabilities_match_the_empirical_frequencies(simulation) -> None:
    pi, freq = simulation["pi"], simulation["counts"] / DRAWS
    for level in np.unique(np.round(pi, 12)):
        members = np.isclose(pi, level)
        se = np.sqrt(level * (1 - level) / (DRAWS * members.sum()))
        observed = freq[members].mean()
        assert abs(observed - level) < 5 * se + 1e-12, (level, observed, members.sum())
    # the design's expected size is what was asked for
    assert pi.sum() == pytest.approx(DESIGN.n, rel=0.01)
