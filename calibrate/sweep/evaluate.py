"""Stage: the metrics of one given routing.yaml on the stored logs, against what it expected.

The config is turned back into a one-policy family and evaluated by the same exact engine as the
sweep, so `evaluate` on the sweep's own data reproduces the numbers in `expected`, and the new
logs' own interval of each metric comes from the sweep's `policy_intervals` (at routing.yaml's
confidence level, bootstrap seeded). The rule: a metric is `outside` when it differs from
`expected` by more than √(h_cal² + h_new²), h_cal being routing.yaml's interval end minus
`expected` and h_new the new logs' own half-width, each on the side of the deviation (both
estimates have sampling error). Outside routing.yaml's interval but within that bound is `within
noise`, not a flag; without the new logs' interval (latency percentiles have no method) or
without `expected`, the plain rule applies (outside the interval is `outside`); `not measured`
(quality without labels) is never a flag. A hand-written routing.yaml has no `expected` and no
`intervals`: nothing to compare against. Metrics keep full precision; rounding is for the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from calibrate.config.routing import (
    RoutingConfig,
    classifier_path,
    policy_of,
    round_metric,
)
from calibrate.policies.assignment import assign
from calibrate.policies.consensus import consensus_row
from calibrate.policies.families import Family, evaluate_families, policy_index
from calibrate.policies.frontier import FrontierRow, frontier_row
from calibrate.policies.keyword_rules import forced_tiers
from calibrate.policies.router_files import stored_scores
from calibrate.records.outcomes import DataWindow, Outcomes
from calibrate.records.policy import Policy
from calibrate.store import Store
from calibrate.sweep.stage import policy_intervals

CheckStatus = Literal["inside", "within noise", "outside", "no interval", "not measured"]
DEFAULT_LEVEL = 0.95  # the new logs' intervals when routing.yaml names no confidence level


@dataclass(frozen=True)
class MetricCheck:
    """One measured metric next to routing.yaml's expected value and interval (None: the file has
    none) and the new logs' own interval (`new`; None: no method for it). `h_cal` and `h_new` are
    the half-widths on the side of the deviation, None when the plain interval rule applied."""

    name: str
    measured: float  # full precision; NaN: these logs cannot measure it
    expected: float | None
    interval: tuple[float, float] | None
    new: tuple[float, float] | None
    status: CheckStatus
    h_cal: float | None = None
    h_new: float | None = None

    @property
    def deviation(self) -> float | None:
        """Measured minus expected, at the file's precision."""
        if self.expected is None or math.isnan(self.measured):
            return None
        return round_metric(self.name, self.measured) - self.expected

    @property
    def tolerance(self) -> float | None:
        """The combined half-width √(h_cal² + h_new²) the deviation is held to (None: plain rule)."""
        if self.h_cal is None or self.h_new is None:
            return None
        return math.hypot(self.h_cal, self.h_new)


def check_metric(
    name: str,
    measured: float,
    expected: float | None,
    interval: tuple[float, float] | None,
    new: tuple[float, float] | None = None,
) -> MetricCheck:
    """Compare at the file's precision (routing.yaml rounds `expected` and `intervals` with
    `round_metric`), both ends inclusive: inside the interval, else within the combined half-width
    of the two samples, else outside. Without `expected` or the new logs' interval, the plain
    rule: outside the interval is outside."""
    if new is not None and any(math.isnan(end) for end in new):
        new = None
    if math.isnan(measured):
        return MetricCheck(name, measured, expected, interval, new, "not measured")
    if interval is None or any(math.isnan(end) for end in interval):
        return MetricCheck(name, measured, expected, None, new, "no interval")
    low, high = interval
    value = round_metric(name, measured)
    inside = low <= value <= high
    if expected is None or new is None:
        return MetricCheck(
            name, measured, expected, interval, new, "inside" if inside else "outside"
        )
    up = value >= expected
    h_cal = max(high - expected if up else expected - low, 0.0)
    h_new = max(measured - new[0] if up else new[1] - measured, 0.0)
    status: CheckStatus = "inside"
    if not inside:
        noise = abs(value - expected) <= math.hypot(h_cal, h_new)
        status = "within noise" if noise else "outside"
    return MetricCheck(name, measured, expected, interval, new, status, h_cal, h_new)


def _given(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one config (full precision, the names of routing.yaml's `expected`), the new
    logs' own intervals (`new_intervals`, at `new_level`) and their checks against routing.yaml's
    `expected` and `intervals` (`level`: the intervals' confidence level; without it the plain
    interval rule applies)."""

    policy: str
    metrics: dict[str, float]
    expected: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    level: float | None
    window: DataWindow
    new_intervals: dict[str, tuple[float, float]]

    @property
    def new_level(self) -> float:
        return DEFAULT_LEVEL if self.level is None else self.level

    @property
    def compared(self) -> bool:
        """Does routing.yaml record anything to compare against (a hand-written one does not)?"""
        return bool(self.expected or self.intervals)

    @property
    def checks(self) -> tuple[MetricCheck, ...]:
        new = self.new_intervals if self.level is not None else {}
        return tuple(
            check_metric(m, v, _given(self.expected.get(m)), self.intervals.get(m), new.get(m))
            for m, v in self.metrics.items()
        )

    @property
    def outside(self) -> tuple[MetricCheck, ...]:
        """The metrics flagged: `evaluate --check` exits 3."""
        return tuple(c for c in self.checks if c.status == "outside")

    def as_dict(self) -> dict:
        w, checks = self.window, self.checks
        return {
            "policy": self.policy,
            "requests": w.requests,
            "labeled": w.labeled,
            **self.metrics,
            "expected": self.expected,
            "intervals": {m: list(i) for m, i in self.intervals.items()},
            "confidence_level": self.level,
            "new_intervals": {m: list(i) for m, i in self.new_intervals.items()},
            "compared": self.compared,
            "checks": {c.name: c.status for c in checks},
            "h_cal": {c.name: c.h_cal for c in checks if c.h_cal is not None},
            "h_new": {c.name: c.h_new for c in checks if c.h_new is not None},
            "outside": [c.name for c in self.outside],
            "window": {"start": w.start, "end": w.end},
        }


def measure(
    outcomes: Outcomes, family: Family, policy_id: str, level: float, seed: int = 0
) -> tuple[FrontierRow, dict[str, tuple[float, float]]]:
    """The policy's metrics on `outcomes` (the exact engine) and their intervals at `level` (the
    sweep's `policy_intervals`: bootstrap seeded by `seed`, labels unweighted as the engine's)."""
    frame = evaluate_families(outcomes, [family])
    row = frontier_row(frame.filter(pl.col("policy") == policy_id).row(0, named=True))
    chosen = assign(outcomes, *policy_index(outcomes, [family])[policy_id])
    intervals = policy_intervals(outcomes, chosen, None, seed, level)
    return row, {m: (i.low, i.high) for m, i in intervals.items()}


def family_for(
    policy: Policy, tier_order: tuple[str, ...], forced: np.ndarray | None = None
) -> Family:
    """The family holding `policy` as one of its rows (indices into tier_order; `forced`: the tier
    index its keyword rules give each request, -1 for none). A cutoff of None is the "none" option
    of a one-cutoff grid."""
    index = {name: j for j, name in enumerate(tier_order)}
    path = tuple(index[t] for t in policy.tiers)
    if policy.strategy == "always":
        return Family("always", path)
    if policy.cascading:
        grids = tuple(np.array([t]) for t in policy.thresholds)
        return Family(policy.strategy, path, grids, forced=forced)
    cutoff = 0 if policy.cutoff_tokens is None else policy.cutoff_tokens
    return Family(policy.strategy, path, (np.array([cutoff], dtype=np.int64),), forced=forced)


def keyword_forced(store: Store, config: RoutingConfig, outcomes: Outcomes) -> np.ndarray | None:
    """The tier index (into the outcomes' tiers) each request's first matching keyword rule
    names, -1 for none; None when the config has no keyword rules."""
    keywords = [(r.pattern, r.tier) for r in config.rules if r.pattern is not None]
    if not keywords:
        return None
    texts = store.prompt_texts(outcomes.request_ids.tolist())
    return forced_tiers(keywords, texts, outcomes.tiers)


def router_family(
    store: Store, config: RoutingConfig, outcomes: Outcomes, base_dir: Path
) -> Family:
    """The config's router as a one-policy family: each request scored from the model file (a
    request the router was trained on keeps its cross-fitted score, as in the sweep)."""
    assert config.classifier is not None
    ids = outcomes.request_ids.tolist()
    scores = stored_scores(store, classifier_path(config, base_dir), ids)
    index = {name: j for j, name in enumerate(outcomes.tiers)}
    return Family(
        "router",
        tuple(index[t.name] for t in config.tiers),
        (np.array([config.classifier.min_score]),),
        scores=scores,
        overhead_usd=config.classifier.cost_per_1k_requests_usd / 1000.0,
    )


def evaluate_routing(
    store: Store,
    config: RoutingConfig,
    prices: dict[str, tuple[float, float]],
    base_dir: Path = Path("."),
    seed: int = 0,
) -> Evaluation:
    """Evaluate the config's policy on every stored request that has all of its tiers
    (`base_dir`: where routing.yaml is, for a router's model file; `seed`: the bootstrap's, the
    sweep's default). A consensus gets no new intervals (the sweep never recommends one, so no
    routing.yaml has intervals for it)."""
    used = [t.name for t in config.tiers if t.name != config.premium_tier]
    order = (*used, config.premium_tier)
    outcomes = store.outcomes(order, prices)
    policy = policy_of(config)
    level = config.objective.confidence_level if config.objective is not None else None
    new: dict[str, tuple[float, float]] = {}
    if config.strategy == "consensus":
        labeled_ids = outcomes.request_ids[outcomes.labeled].tolist()
        answers = store.answer_codes(labeled_ids, outcomes.tiers)
        voters = tuple(order.index(t.name) for t in config.tiers)
        frame = consensus_row(outcomes, answers, voters)
        row = frontier_row(frame.filter(pl.col("policy") == policy.id).row(0, named=True))
    else:
        if config.strategy == "router":
            family = router_family(store, config, outcomes, base_dir)
        else:
            family = family_for(policy, order, keyword_forced(store, config, outcomes))
        row, new = measure(
            outcomes, family, policy.id, DEFAULT_LEVEL if level is None else level, seed
        )
    return Evaluation(
        policy=row.policy.id,
        metrics={
            m: float("nan") if v is None else float(v) + 0.0  # + 0.0: -0.0 → 0.0
            for m, v in row.metrics.as_dict().items()
        },
        expected=dict(config.expected),
        intervals=dict(config.intervals),
        level=level,
        window=store.data_window(outcomes),
        new_intervals=new,
    )
