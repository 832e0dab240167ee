"""Choosing the policy to deploy from the evaluated frontier.

A selector takes the frontier (one row per policy, from `policies.evaluate_families`, plus a
`certified` column from `certify`) and the objective and returns a `Recommendation`. Label-free
constraints (latency bound, escalation band, budget) filter the candidates first; then
`select_certified` takes the cheapest certified policy (or, in budget mode, the best certified one
under the budget), `select_empirical` the cheapest whose *measured* drop is at most ε, and
`select_chosen` the one policy the user named (`--policy`), certified or not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import polars as pl

from calibrate.errors import ConfigError, DataError
from calibrate.policies.frontier import frame_policies, frontier_row
from calibrate.policies.optimum import Target
from calibrate.records.policy import FrontierRow, Policy

# How each `certify_on` test certifies, for the recommendation's reason.
CERTIFICATION_METHODS = {
    "regret": "Learn-then-Test, fixed-sequence, exact binomial",
    "drop": "Learn-then-Test, fixed-sequence, betting test on the paired drop; "
    "Waudby-Smith & Ramdas, JRSSB 2024",
}

# Rounding guard for "drop ≤ ε": metrics are exact ratios of integers, ε is user input.
_EPS_SLACK = 1e-12


@dataclass(frozen=True)
class Objective:
    """What the user asked for. `max_relative_drop` replaces the absolute drop when set;
    `per_segment` names a segment column (app, region or intent) whose every value must meet the
    drop; the next three are label-free constraints on the candidates. `certify_on` is the
    hypothesis certification tests: "drop" (the default: betting test on the paired quality drop
    itself) or "regret" (binomial test on the regret rate, which bounds the drop)."""

    max_quality_drop: float = 0.02
    confidence_level: float = 0.95
    certify: bool = True
    max_relative_drop: float | None = None
    per_segment: str | None = None
    max_latency_p95_ms: float | None = None
    escalation_band: tuple[float, float] | None = None
    max_cost_per_1k_usd: float | None = None
    chosen_policy: str | None = None
    certify_on: str = "drop"
    allow_biased: bool = False
    """Sweep even when the evaluable set is selected by production routing (`sweep/check.py`):
    uncertified, with the report saying the estimate is biased."""

    @property
    def delta(self) -> float:
        return 1.0 - self.confidence_level


Method = Literal["certified", "empirical", "budget", "chosen"]


@dataclass(frozen=True)
class Recommendation:
    """The chosen policy (its frontier row), which selector chose it, and why. `fallback`: the
    selector found no certified policy (none under the budget, in budget mode) and fell back to
    always-premium (the best measured one under the budget); `certified` is then false, in
    routing.yaml and summary.json too: the premium tier is the reference every drop is measured
    against, not a certified policy."""

    row: FrontierRow
    method: Method
    certified: bool
    reason: str
    fallback: bool = False


Selector = Callable[[pl.DataFrame, Objective], Recommendation]


def mark_pareto(frontier: pl.DataFrame) -> pl.DataFrame:
    """Flag policies that no other policy beats on both cost (lower) and quality (higher)."""
    order = frontier.with_row_index("_row").sort(
        ["cost_per_1k_requests_usd", "quality", "_row"], descending=[False, True, False]
    )
    best_so_far = order["quality"].cum_max().shift(1, fill_value=float("-inf"))
    flagged = order.with_columns(pareto=pl.col("quality") > best_so_far)
    return flagged.sort("_row").drop("_row")


def mark_certified_pareto(frontier: pl.DataFrame) -> pl.DataFrame:
    """Add `certified_pareto`: the certified policies no other certified policy beats on both cost
    and quality (the certified frontier; the measured one, `pareto`, is over every policy)."""
    rows = frontier.with_row_index("_at")
    certified = mark_pareto(rows.filter(pl.col("certified")).drop("pareto"))
    on = certified.filter(pl.col("pareto"))["_at"]
    return rows.with_columns(certified_pareto=pl.col("_at").is_in(on.implode())).drop("_at")


def constrained(frontier: pl.DataFrame, objective: Objective) -> pl.DataFrame:
    """Policies meeting the label-free constraints (always-premium is kept as the safe fallback)."""
    keep = pl.lit(True)
    if objective.max_latency_p95_ms is not None:
        keep &= pl.col("latency_p95_ms") <= objective.max_latency_p95_ms
    if objective.escalation_band is not None:
        low, high = objective.escalation_band
        keep &= (pl.col("strategy") == "always") | pl.col("escalation_rate").is_between(low, high)
    if objective.max_cost_per_1k_usd is not None:
        keep &= pl.col("cost_per_1k_requests_usd") <= objective.max_cost_per_1k_usd + _EPS_SLACK
    return frontier.with_row_index("_row").filter(keep)


def measured_target(objective: Objective, max_drop: float) -> Target:
    """What `select_empirical` asks of a policy, with the same tolerance, for the exact search of
    each cascade family's measured optimum (the latency bound is checked on its row afterwards)."""
    budget = objective.max_cost_per_1k_usd
    return Target(
        max_drop=max_drop + _EPS_SLACK,
        escalation_band=objective.escalation_band,
        max_cost_per_1k_usd=None if budget is None else budget + _EPS_SLACK,
    )


def _best(candidates: pl.DataFrame, objective: Objective) -> FrontierRow:
    """Cheapest candidate; in budget mode the best quality under the budget."""
    if objective.max_cost_per_1k_usd is not None:
        order = ["quality", "cost_per_1k_requests_usd", "_row"], [True, False, False]
    else:
        order = (
            ["cost_per_1k_requests_usd", "quality", "escalation_rate", "_row"],
            [
                False,
                True,
                False,
                False,
            ],
        )
    return frontier_row(
        candidates.sort(order[0], descending=order[1], nulls_last=True).row(0, named=True)
    )


def _require_labels(frontier: pl.DataFrame) -> None:
    if frontier["labeled"][0] == 0:
        raise DataError(
            "no request is labeled for every tier, so quality cannot be measured",
            hint="Add `labels` to the logs (or import labels) for a sample of requests.",
        )


def _premium(frontier: pl.DataFrame, premium: Policy) -> FrontierRow:
    return frontier_row(frontier.filter(pl.col("policy") == premium.id).row(0, named=True))


def select_empirical(
    frontier: pl.DataFrame, objective: Objective, max_drop: float
) -> Recommendation:
    """Cheapest policy whose measured quality drop vs always-premium is ≤ ε (no guarantee)."""
    _require_labels(frontier)
    feasible = constrained(frontier, objective).filter(
        pl.col("quality_drop") <= max_drop + _EPS_SLACK
    )
    if feasible.is_empty():
        raise DataError(
            "no policy meets the constraints (latency, escalation band or budget)",
            hint="Relax --max-latency-p95-ms, --escalation-band or --max-cost-per-1k-usd.",
        )
    reason = (
        f"cheapest of {feasible.height} policies whose measured quality drop is at most "
        f"{max_drop:.4g} (empirical, no statistical guarantee)"
    )
    return Recommendation(
        row=_best(feasible, objective), method="empirical", certified=False, reason=reason
    )


def select_certified(
    frontier: pl.DataFrame, objective: Objective, premium: Policy, max_drop: float
) -> Recommendation:
    """Cheapest certified policy meeting the constraints and cheaper than always-premium (the drop
    test certifies escalating everything for free, which costs as much or more); always-premium
    when there is none."""
    _require_labels(frontier)
    premium_cost = _premium(frontier, premium).metrics.cost_per_1k_requests_usd
    candidates = constrained(frontier, objective).filter(
        pl.col("certified") & (pl.col("cost_per_1k_requests_usd") < premium_cost * (1 - 1e-9))
    )
    guarantee = (
        f"quality drop at most {max_drop:.4g} with probability ≥ {objective.confidence_level:g} "
        f"({CERTIFICATION_METHODS[objective.certify_on]})"
    )
    if candidates.is_empty() and objective.max_cost_per_1k_usd is not None:
        affordable = constrained(frontier, objective)
        if not affordable.is_empty():
            return Recommendation(
                row=_best(affordable, objective),
                method="budget",
                certified=False,
                reason="no policy under the budget could be certified; this is the best measured "
                "quality under it, with no guarantee",
                fallback=True,
            )
    if candidates.is_empty():
        reason = (
            f"no policy cheaper than always-premium could be certified ({guarantee}) under the "
            "constraints; falling back to always-premium"
        )
        return Recommendation(  # always-premium is the reference, not a certified policy
            row=_premium(frontier, premium),
            method="certified",
            certified=False,
            reason=reason,
            fallback=True,
        )
    count = candidates.height
    return Recommendation(
        row=_best(candidates, objective),
        method="certified",
        certified=True,
        reason=f"{'best' if objective.max_cost_per_1k_usd is not None else 'cheapest'} of {count} certified policies: {guarantee}",
    )


def select_chosen(frontier: pl.DataFrame, policy: str, max_drop: float) -> Recommendation:
    """The policy the user named, whatever it measures (the report says whether it is certified
    and meets the limit)."""
    _require_labels(frontier)
    found = frontier.filter(pl.col("policy") == policy)
    if found.is_empty():
        found = _by_display_id(frontier, policy)
    if found.is_empty():
        raise ConfigError(
            f"--policy {policy}: no such policy in this sweep",
            hint="Use an id from the `policy` column of frontier.csv (consensus rows cannot be "
            "chosen: write a `strategy: consensus` routing.yaml and `calibrate evaluate` it).",
        )
    row = frontier_row(found.row(0, named=True))
    drop = row.metrics.quality_drop
    meets = drop <= max_drop + _EPS_SLACK
    reason = (
        f"chosen with --policy; {'certified' if row.certified else 'not certified'}, measured "
        f"quality drop {drop:+.4f} {'within' if meets else 'above'} the limit {max_drop:.4g}"
    )
    return Recommendation(row=row, method="chosen", certified=row.certified, reason=reason)


def _by_display_id(frontier: pl.DataFrame, name: str) -> pl.DataFrame:
    """The one policy the reports print as `name` (thresholds to 4 significant digits)."""
    rows = [i for i, p in enumerate(frame_policies(frontier)) if p.display_id == name]
    if len(rows) > 1:
        ids = ", ".join(frontier["policy"][rows[:3]].to_list())
        raise ConfigError(
            f"--policy {name}: {len(rows)} policies print as this id in the report",
            hint=f"Use the full id from frontier.csv's `policy` column, e.g. {ids}.",
        )
    return frontier[rows]
