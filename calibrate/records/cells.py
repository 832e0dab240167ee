"""Per-cell aggregates of the outcome relation, as the SQL engine hands them to the policy engine.

A decision stage bins each request (`StageRule`: the rank of a tier's confidence in an ascending
threshold grid, or how many descending token cutoffs are at least its input length); a stop's
`StopRows` count the requests of each (cell, latency) pair and sum their cost. `ConfidenceHistogram`
is one tier's confidences counted in equal-width buckets, from which the threshold grids' order
statistics are found with small pulls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StageRule:
    """One decision stage. kind "confidence": the number of `grid` values (ascending) at most the
    tier's confidence, 0 when it has none; kind "tokens": the number of `grid` cutoffs
    (descending) at least the request's input_tokens (`tier` unused)."""

    kind: str
    tier: int
    grid: np.ndarray


@dataclass(frozen=True)
class StopRows:
    """One stop's aggregate: per (cell, latency_us) pair, how many requests and their summed cost
    (nano-USD) when they stop there. `cell` is the flat C-order index of the bins of the stages up
    to the stop's depth."""

    cell: np.ndarray
    latency_us: np.ndarray
    requests: np.ndarray
    cost_nano_usd: np.ndarray


@dataclass(frozen=True)
class ConfidenceHistogram:
    """One tier's finite confidences in equal-width buckets: `count` of them, and per non-empty
    bucket (ascending) its id, count, minimum and maximum. A bucket id is
    min(max(⌊(c - lo)·scale⌋, 0), buckets - 1), monotone in c."""

    tier: int
    count: int
    lo: float
    scale: float
    bucket: np.ndarray
    counts: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
