"""Means and differences from labels drawn with unequal inclusion probabilities (methods.md §3.3).

A label drawn with inclusion probability π carries the weight w = 1/π (`Store.label_weights`).
- Horvitz–Thompson mean: Ŷ = (1/N) Σ y/π, unbiased when π is right and N is the population size;
  variance estimated as Σ (1−π)/π² · y² / N² (Poisson sampling).
- Hájek mean: Σ w·y / Σ w — a ratio, so N need not be known and rescaled weights give the same
  value; nearly unbiased (O(1/n)), usually with a smaller variance than HT. Its variance is the
  with-replacement linearisation n/(n−1) · Σ w²(y − ŷ)² / (Σ w)²: conservative, and equal to
  s²/n when every weight is the same (so unweighted labels get the ordinary interval).
- A weighted paired difference (premium − policy, request by request) is the Hájek mean of the
  per-request differences, so the pairing is kept.
Intervals are normal (z at `level`); `clopper_pearson` is the exact binomial interval, and
`agreement` compares a judge's verdicts with human ones. Pure numpy/scipy; imports only records.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import beta, norm

from calibrate.records.labels import ACCEPTABLE, Agreement


@dataclass(frozen=True, slots=True)
class Estimate:
    """A point estimate, its standard error and a two-sided interval at `level`."""

    value: float
    std_error: float
    low: float
    high: float
    n: int
    level: float


def _interval(value: float, variance: float, n: int, level: float) -> Estimate:
    se = float(np.sqrt(variance)) if variance >= 0 else float("nan")
    half = float(norm.ppf((1 + level) / 2)) * se
    return Estimate(float(value), se, float(value - half), float(value + half), n, level)


def _check(y: np.ndarray, other: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64)
    other = np.asarray(other, dtype=np.float64)
    if y.shape != other.shape or y.ndim != 1:
        raise ValueError(f"y and {name} must be 1-D arrays of the same length")
    if not (np.isfinite(y).all() and np.isfinite(other).all()):
        raise ValueError(f"y and {name} must be finite (select the labeled rows first)")
    return y, other


def horvitz_thompson_mean(
    y: np.ndarray, inclusion_prob: np.ndarray, population: int, level: float = 0.95
) -> Estimate:
    """(1/N) Σ y/π over the sampled units; N = `population`."""
    y, pi = _check(y, inclusion_prob, "inclusion_prob")
    if ((pi <= 0) | (pi > 1)).any():
        raise ValueError("inclusion probabilities must be in (0, 1]")
    if population <= 0:
        raise ValueError("population must be positive")
    value = float((y / pi).sum() / population)
    variance = float(((1 - pi) / pi**2 * y**2).sum() / population**2)
    return _interval(value, variance, y.size, level)


def hajek_mean(y: np.ndarray, weights: np.ndarray, level: float = 0.95) -> Estimate:
    """Σ w·y / Σ w with the with-replacement linearisation variance."""
    y, w = _check(y, weights, "weights")
    if (w <= 0).any():
        raise ValueError("weights must be positive")
    n = y.size
    if n == 0:
        nan = float("nan")
        return Estimate(nan, nan, nan, nan, 0, level)
    total = w.sum()
    value = float((w * y).sum() / total)
    variance = (
        float(n / (n - 1) * (w**2 * (y - value) ** 2).sum() / total**2) if n > 1 else float("nan")
    )
    return _interval(value, variance, n, level)


def weighted_paired_difference(
    first: np.ndarray, second: np.ndarray, weights: np.ndarray, level: float = 0.95
) -> Estimate:
    """Hájek mean of first − second, request by request (e.g. premium − policy: the drop)."""
    first, second = _check(first, second, "second")
    return hajek_mean(first - second, weights, level)


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's (Σ w)² / Σ w²: how many equally weighted labels the weighted ones are worth."""
    w = np.asarray(weights, dtype=np.float64)
    return float(w.sum() ** 2 / (w**2).sum()) if w.size else 0.0


def clopper_pearson(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact two-sided binomial interval for a rate."""
    if n == 0:
        return float("nan"), float("nan")
    alpha = 1 - level
    low = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, n - successes + 1))
    high = 1.0 if successes == n else float(beta.ppf(1 - alpha / 2, successes + 1, n - successes))
    return low, high


def agreement(human: np.ndarray, judge: np.ndarray, level: float = 0.95) -> Agreement | None:
    """The judge's agreement with humans and its miss rate on pairs both scored (None if none)."""
    human = np.asarray(human, dtype=np.float64) >= ACCEPTABLE
    judge = np.asarray(judge, dtype=np.float64) >= ACCEPTABLE
    n = int(human.size)
    if n == 0:
        return None
    agree = int((human == judge).sum())
    misses = int((judge & ~human).sum())
    bad = int((~human).sum())
    return Agreement(
        overlap=n,
        agree=agree,
        misses=misses,
        human_unacceptable=bad,
        agreement=agree / n,
        agreement_interval=clopper_pearson(agree, n, level),
        miss_rate=misses / n,
        miss_rate_interval=clopper_pearson(misses, n, level),
        missed_of_bad=misses / bad if bad else float("nan"),
        missed_of_bad_interval=clopper_pearson(misses, bad, level),
        level=level,
    )
