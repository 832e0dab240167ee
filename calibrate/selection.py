"""Choosing the policy to deploy from the evaluated frontier.

A selector takes the frontier (one row per policy, from `policies.evaluate_families`) and the
objective and returns a `Recommendation`. `select_empirical` is the plain rule ("cheapest policy whose
measured quality drop is at most ε"); a certifying selector with a statistical guarantee plugs in
with the same signature.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from calibrate.errors import DataError

# Rounding guard for "drop ≤ ε": metrics are exact ratios of integers, ε is user input.
_EPS_SLACK = 1e-12


@dataclass(frozen=True)
class Objective:
    """What the user asked for."""

    max_quality_drop: float = 0.02
    confidence_level: float = 0.95
    certify: bool = True


@dataclass(frozen=True)
class Recommendation:
    """The chosen policy (its frontier row) and why it was chosen."""

    row: dict
    method: str
    certified: bool
    reason: str


Selector = Callable[[pl.DataFrame, Objective], Recommendation]


def mark_pareto(frontier: pl.DataFrame) -> pl.DataFrame:
    """Flag policies that no other policy beats on both cost (lower) and quality (higher)."""
    order = frontier.with_row_index("_row").sort(
        ["cost_per_1k_requests_usd", "quality", "_row"], descending=[False, True, False]
    )
    best_so_far = order["quality"].cum_max().shift(1, fill_value=float("-inf"))
    flagged = order.with_columns(pareto=pl.col("quality") > best_so_far)
    return flagged.sort("_row").drop("_row")


def select_empirical(frontier: pl.DataFrame, objective: Objective) -> Recommendation:
    """Cheapest policy whose measured quality drop vs always-premium is ≤ ε (no guarantee)."""
    if frontier["labeled"][0] == 0:
        raise DataError(
            "no request is labeled for every tier, so quality cannot be measured",
            hint="Add `labels` to the logs (or import labels) for a sample of requests.",
        )
    feasible = frontier.with_row_index("_row").filter(
        pl.col("quality_drop") <= objective.max_quality_drop + _EPS_SLACK
    )
    best = feasible.sort(
        ["cost_per_1k_requests_usd", "quality", "escalation_rate", "_row"],
        descending=[False, True, False, False],
    ).row(0, named=True)
    best.pop("_row")
    reason = (
        f"cheapest of {feasible.height} policies whose measured quality drop is at most "
        f"{objective.max_quality_drop:g} (empirical, no statistical guarantee)"
    )
    return Recommendation(row=best, method="empirical", certified=False, reason=reason)
