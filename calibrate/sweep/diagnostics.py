"""Checks that catch a misleading recommendation (uninformative confidence, bad escalation rates)
and the economics: break-even escalation rate of each tier pair, break-even volume, monthly costs."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import polars as pl

from calibrate.policies.assignment import Assignment
from calibrate.policies.frontier import frontier_row, frontier_rows
from calibrate.records.outcomes import Outcomes
from calibrate.records.policy import FrontierRow, Policy
from calibrate.records.sections import SectionSums
from calibrate.sweep.failure_modes import HEALTHY_ESCALATION

MIN_AUROC = 0.55


@dataclass(frozen=True)
class BreakEven:
    """Escalating from `cheap` to `expensive` saves money only below `escalation_rate`
    (e* = 1 − c_cheap / c_expensive; confidence from logprobs adds no verification cost c_v).
    `observed_rate` is the recommended policy's escalation rate at that step, when it has one."""

    cheap: str
    expensive: str
    cheap_cost_per_1k_usd: float
    expensive_cost_per_1k_usd: float
    escalation_rate: float
    observed_rate: float | None = None


def break_even(
    frontier: pl.DataFrame,
    tiers: tuple[str, ...],
    chosen: Assignment | None = None,
    outcomes: Outcomes | None = None,
) -> list[BreakEven]:
    """e* for every ordered tier pair (c = mean cost per request), next to the observed
    conditional escalation rate of each step the chosen policy takes."""
    observed = _step_rates(chosen, outcomes) if chosen is not None and outcomes is not None else {}
    return _break_even(frontier, tiers, observed)


def _break_even(
    frontier: pl.DataFrame, tiers: tuple[str, ...], observed: dict[tuple[str, str], float]
) -> list[BreakEven]:
    always = frontier.filter(pl.col("strategy") == "always")
    cost = dict(zip(always["tiers"].list.first(), always["cost_per_1k_requests_usd"], strict=True))
    rows = []
    for cheap, expensive in itertools.combinations(tiers, 2):
        c1, c2 = cost[cheap], cost[expensive]
        e_star = 1.0 - c1 / c2 if c2 > 0 else float("nan")
        rows.append(BreakEven(cheap, expensive, c1, c2, e_star, observed.get((cheap, expensive))))
    return rows


def _step_rates(chosen: Assignment, outcomes: Outcomes) -> dict[tuple[str, str], float]:
    """For each consecutive pair (a → b) of the chosen path: P(escalated past a | reached a)."""
    path = chosen.path
    rates = {}
    for j in range(len(path) - 1):
        reached = chosen.stage >= j
        if reached.any():
            passed = (chosen.stage[reached] > j).mean()
            rates[(outcomes.tiers[path[j]], outcomes.tiers[path[j + 1]])] = float(passed)
    return rates


def break_even_of_sums(
    frontier: pl.DataFrame, tiers: tuple[str, ...], sums: SectionSums
) -> list[BreakEven]:
    """`break_even` with the chosen policy's step rates from its requests per stop (`sums`)."""
    return _break_even(frontier, tiers, _step_rates_of_counts(sums.path, sums.stage_counts))


def _step_rates_of_counts(
    path: tuple[str, ...], stage_counts: tuple[int, ...]
) -> dict[tuple[str, str], float]:
    """`_step_rates` from the requests stopping at each stage of `path`."""
    rates = {}
    for j in range(len(path) - 1):
        reached = sum(stage_counts[j:])
        if reached:
            rates[(path[j], path[j + 1])] = float(sum(stage_counts[j + 1 :]) / reached)
    return rates


def warnings_for(
    row: FrontierRow, auroc: dict[str, float | None], incomplete: int, rejected: int
) -> list[str]:
    """Plain-language warnings about the recommendation and the data behind it."""
    notes = []
    low, high = HEALTHY_ESCALATION
    rate = row.metrics.escalation_rate
    if row.policy.strategy != "always" and not low <= rate <= high:
        notes.append(
            f"The recommendation sends {rate:.1%} of requests past its cheapest tier (its "
            f"escalation rate), outside the healthy band of {low:.0%}–{high:.0%} (see Failure "
            "modes)."
        )
    for tier, value in auroc.items():
        if value is None:
            continue
        if value < 0.5:
            notes.append(
                f"Tier {tier}: confidence is inverted (AUROC {value:.3f} < 0.5): higher confidence "
                "means *worse* answers. Negate the signal or fix how it is computed."
            )
        elif value < MIN_AUROC:
            notes.append(
                f"Tier {tier}: confidence barely separates good from bad answers (AUROC "
                f"{value:.3f} < {MIN_AUROC}); thresholds on it are close to random routing."
            )
    if incomplete:
        notes.append(
            f"{incomplete} requests lack an attempt for some tier and were left out; "
            "`calibrate replay` fills them in."
        )
    if rejected:
        notes.append(f"{rejected} input rows were rejected at ingest (see the `rejects` table).")
    return notes


DAILY_VOLUMES = (10_000, 100_000, 1_000_000, 10_000_000)
DAYS_PER_MONTH = 30


@dataclass(frozen=True)
class Economics:
    """What the recommendation costs to run and to keep calibrated.

    `monthly_cost_usd`: per policy shown, the model spend for 30 days at each daily volume, plus the fixed
    overhead for policies that need calibration (labels × price per label + other fixed costs).
    `break_even_requests_per_month` = fixed overhead / savings per request (None without savings);
    `requests_per_month`: the traffic it is paid back from (`--requests-per-month`, else the logs'
    own rate; None when unknown).
    """

    fixed_monthly_usd: float
    savings_per_request_usd: float
    break_even_requests_per_month: float | None
    latency_p95_overhead_ms: float
    monthly_cost_usd: tuple[tuple[Policy, tuple[float, ...]], ...]
    requests_per_month: float | None = None

    @property
    def pays_back(self) -> bool | None:
        """Whether the savings at `requests_per_month` cover the fixed overhead (None: unknown
        volume)."""
        if self.requests_per_month is None:
            return None
        be = self.break_even_requests_per_month
        return be is not None and self.requests_per_month >= be


def economics(
    frontier: pl.DataFrame,
    recommended: FrontierRow,
    premium_policy: Policy,
    labels_used: int,
    label_cost_usd: float,
    fixed_monthly_usd: float,
    max_drop: float,
    strategy_monthly_usd: dict[str, float] | None = None,
    requests_per_month: float | None = None,
) -> Economics:
    """Break-even volume, latency overhead and the monthly cost table for the strategies shown
    (`strategy_monthly_usd`: a strategy's own fixed monthly cost, e.g. hosting the router;
    `requests_per_month`: the user's volume, for `Economics.pays_back`)."""
    premium = frontier_row(
        frontier.filter(pl.col("policy") == premium_policy.id).row(0, named=True)
    )
    own = strategy_monthly_usd or {}
    calibrating = labels_used * label_cost_usd + fixed_monthly_usd
    fixed = calibrating + own.get(recommended.policy.strategy, 0.0)
    rec, prem = recommended.metrics, premium.metrics
    saving = (prem.cost_per_1k_requests_usd - rec.cost_per_1k_requests_usd) / 1000
    shown = frontier_rows(frontier.filter(pl.col("strategy") == "always"))
    shown += _cheapest_per_strategy(frontier, recommended, max_drop)
    table = []
    for row in shown:
        strategy = row.policy.strategy
        overhead = 0.0 if strategy == "always" else calibrating + own.get(strategy, 0.0)
        per_request = row.metrics.cost_per_1k_requests_usd / 1000
        table.append(
            (
                row.policy,
                tuple(per_request * v * DAYS_PER_MONTH + overhead for v in DAILY_VOLUMES),
            )
        )
    return Economics(
        fixed_monthly_usd=fixed,
        savings_per_request_usd=saving,
        break_even_requests_per_month=fixed / saving if saving > 0 else None,
        latency_p95_overhead_ms=rec.latency_p95_ms - prem.latency_p95_ms,
        monthly_cost_usd=tuple(table),
        requests_per_month=requests_per_month,
    )


def _cheapest_per_strategy(
    frontier: pl.DataFrame, recommended: FrontierRow, max_drop: float
) -> list[FrontierRow]:
    """The recommendation, plus the cheapest acceptable policy of each other non-baseline strategy
    (certified if any is, else with a measured drop of at most ε)."""
    rows = [] if recommended.policy.strategy == "always" else [recommended]
    for strategy in ("cascade", "length", "rules", "hybrid", "router"):
        if strategy == recommended.policy.strategy:
            continue
        pool = frontier.filter(pl.col("strategy") == strategy)
        if pool["certified"].any():
            pool = pool.filter(pl.col("certified"))
        else:
            pool = pool.filter(pl.col("quality_drop") <= max_drop)
        if pool.is_empty():
            continue
        rows.append(
            frontier_row(pool.sort(["cost_per_1k_requests_usd", "policy"]).row(0, named=True))
        )
    return rows
