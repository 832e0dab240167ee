"""95% intervals for the recommended policy: quality, quality drop and savings, and rates.

Quality and drop use a paired percentile bootstrap over the labeled requests (the policy's served
label and the premium label of the same request are resampled together), seeded by the caller. A
resample of n pairs drawn with replacement is, for both means, a multinomial count of each distinct
(served, premium) pair, so the replicates are drawn as such counts: the work grows with the distinct
pairs (four with 0/1 labels), not with the labeled requests times the resamples.
Savings is a ratio of cost totals over *all* requests (no labels needed), so it uses the delta
method for a ratio estimator, exact enough at these sample sizes and cheap at a million requests.
Rates (escalation) carry Wilson intervals.

`mean_interval_of_sums` and `savings_interval_of_sums` are the same intervals from exact integer
sums (n, Σx, Σx², … of values in integer units, e.g. nano-USD, as SQL aggregates give them): the
moments are exact rationals, rounded once to floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.stats import binomtest, norm

from calibrate.records.sections import CostSums
from calibrate.stats.estimators import hajek_mean, weighted_paired_difference

BOOTSTRAP_RESAMPLES = 2000
_CHUNK = 250  # resamples drawn at once (bounds memory at chunk × labeled rows)
_CHUNK_CELLS = 1 << 22  # resamples × distinct pairs drawn at once (bounds memory at 32 MB)


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def bootstrap_quality(
    served: np.ndarray,
    premium: np.ndarray,
    rng: np.random.Generator,
    level: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> tuple[Interval, Interval]:
    """Percentile intervals for mean(served) and mean(premium − served), resampled in pairs."""
    n = served.size
    if n == 0:
        nan = Interval(float("nan"), float("nan"))
        return nan, nan
    pairs, counts = np.unique(np.stack([served, premium], axis=1), axis=0, return_counts=True)
    chunk = max(1, min(resamples, _CHUNK_CELLS // len(pairs)))
    quality, drop = [], []
    for start in range(0, resamples, chunk):
        draws = rng.multinomial(n, counts / n, size=min(chunk, resamples - start))
        q = draws @ pairs[:, 0] / n
        quality.append(q)
        drop.append(draws @ pairs[:, 1] / n - q)
    tails = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    q_lo, q_hi = np.percentile(np.concatenate(quality), tails)
    d_lo, d_hi = np.percentile(np.concatenate(drop), tails)
    return Interval(float(q_lo), float(q_hi)), Interval(float(d_lo), float(d_hi))


def savings_interval(
    policy_cost: np.ndarray, premium_cost: np.ndarray, level: float = 0.95
) -> Interval:
    """Interval for 1 − Σ policy / Σ premium by the delta method for a ratio of means."""
    n = policy_cost.size
    ratio = policy_cost.sum() / premium_cost.sum()
    resid = policy_cost - ratio * premium_cost
    se = np.sqrt((resid**2).sum() / max(n - 1, 1) / n) / premium_cost.mean()
    z = norm.ppf((1 + level) / 2)
    return Interval(float(1 - ratio - z * se), float(1 - ratio + z * se))


def wilson(successes: int, n: int, level: float = 0.95) -> Interval:
    """Wilson score interval for a binomial rate (for reporting, not for certification)."""
    if n == 0:
        return Interval(float("nan"), float("nan"))
    ci = binomtest(successes, n).proportion_ci(confidence_level=level, method="wilson")
    return Interval(float(ci.low), float(ci.high))


def mean_interval(values: np.ndarray, level: float = 0.95) -> Interval:
    """Normal-approximation interval for a mean over many requests (cost per request)."""
    n = values.size
    if n < 2:
        return Interval(float("nan"), float("nan"))
    half = norm.ppf((1 + level) / 2) * values.std(ddof=1) / np.sqrt(n)
    return Interval(float(values.mean() - half), float(values.mean() + half))


def mean_interval_of_sums(
    n: int, total: int, total_sq: int, per_unit: int, level: float = 0.95
) -> Interval:
    """`mean_interval` of n values x/per_unit (x integers) from Σx and Σx², exactly."""
    if n < 2:
        return Interval(float("nan"), float("nan"))
    mean = float(Fraction(total, n * per_unit))
    variance = Fraction(n * total_sq - total * total, n * (n - 1) * per_unit * per_unit)
    half = norm.ppf((1 + level) / 2) * math.sqrt(variance) / np.sqrt(n)
    return Interval(float(mean - half), float(mean + half))


def savings_interval_of_sums(
    n: int,
    policy: tuple[int, int],
    premium: tuple[int, int],
    cross: int,
    level: float = 0.95,
) -> Interval:
    """`savings_interval` from exact integer sums of the per-request costs p and q (any one
    unit): `policy` (Σp, Σp²), `premium` (Σq, Σq²), `cross` Σpq. Σ(p − r·q)² for r = Σp/Σq is
    expanded exactly."""
    (p, p2), (q, q2) = policy, premium
    if n == 0 or q == 0:
        return Interval(float("nan"), float("nan"))
    ratio = Fraction(p, q)
    resid_sq = p2 - 2 * ratio * cross + ratio * ratio * q2
    se = math.sqrt(resid_sq / (max(n - 1, 1) * n)) / float(Fraction(q, n))
    z = norm.ppf((1 + level) / 2)
    r = float(ratio)
    return Interval(float(1 - r - z * se), float(1 - r + z * se))


def policy_intervals_of_sums(
    served: np.ndarray,
    premium: np.ndarray,
    weights: np.ndarray | None,
    cost: CostSums,
    escalated: int,
    seed: int,
    level: float,
) -> dict[str, Interval]:
    """`sweep.stage.policy_intervals` from the labeled rows alone (`served`, `premium`: the
    policy's and premium's label of each labeled request; `weights` their 1/π, or None) and the
    exact cost sums over all requests (nano-USD)."""
    if weights is None:
        quality, drop = bootstrap_quality(served, premium, np.random.default_rng(seed), level)
    else:
        q = hajek_mean(served, weights, level)
        d = weighted_paired_difference(premium, served, weights, level)
        quality, drop = Interval(q.low, q.high), Interval(d.low, d.high)
    n = cost.requests
    per_request = mean_interval_of_sums(n, cost.cost, cost.cost_sq, 10**9, level)
    return {
        "quality": quality,
        "quality_drop": drop,
        "cost_per_1k_requests_usd": Interval(per_request.low * 1000.0, per_request.high * 1000.0),
        "savings_vs_premium": savings_interval_of_sums(
            n, (cost.cost, cost.cost_sq), (cost.premium, cost.premium_sq), cost.cross, level
        ),
        "escalation_rate": wilson(escalated, n, level),
    }
