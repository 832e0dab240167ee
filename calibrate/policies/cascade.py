"""The cascade rule, written once.

A request stops at the first tier whose confidence is at least that tier's threshold; a missing
confidence (no signal, or the tier's attempt failed) escalates; a request no tier keeps is served by
the last tier. A threshold of +inf escalates every request.

`keeps`, `first_stop` and `cascade_stops` are the rule. `threshold_bins` states the same decision
for a whole grid of thresholds at once (option a keeps a request iff its bin exceeds a), the form
`assignment` and certification walk and the vectorized engine (`grid`) sums over;
tests/test_cascade_rule.py pins the engine to `cascade_stops` on random inputs. Routers decide the
same way on their score (keep iff score ≥ τ).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def keeps(confidence: np.ndarray, threshold: float) -> np.ndarray:
    """Whether the tier keeps each request: confidence ≥ threshold. NaN never keeps, and nothing
    keeps under τ = +inf."""
    if math.isinf(threshold) and threshold > 0:
        return np.zeros(confidence.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        return np.greater_equal(confidence, threshold)  # False where NaN


def first_stop(keep: Sequence[np.ndarray], n: int) -> np.ndarray:
    """Per request, the index of the first stage that keeps it; len(keep) (the last tier) when
    none does."""
    stage = np.full(n, len(keep), dtype=np.int64)
    undecided = np.ones(n, dtype=bool)
    for j, kept in enumerate(keep):
        here = undecided & kept
        stage[here] = j
        undecided &= ~here
    return stage


def cascade_stops(confidence: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """The cascade rule: per request, the index of the first deciding tier whose confidence is at
    least its threshold, else len(thresholds) (the last tier). `confidence`: (n × deciding tiers)."""
    keep = [keeps(confidence[:, j], float(t)) for j, t in enumerate(thresholds)]
    return first_stop(keep, confidence.shape[0])


def threshold_bins(confidence: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Each confidence's bin in the ascending threshold grid: option a (τ = grid[a], or +inf for
    a = grid.size) keeps the request iff bin > a, i.e. iff `keeps(confidence, τ)`. NaN is bin 0."""
    bins = np.searchsorted(grid, confidence, side="right")
    bins[np.isnan(confidence)] = 0
    return bins.astype(np.int64)
