"""Stage: the metrics of one given routing.yaml on the stored logs, against what it expected.

The config is turned back into a one-policy family and evaluated by the same exact engine as the
sweep, so `evaluate` on the sweep's own data reproduces the numbers in `expected`. Each measured
metric is then checked against routing.yaml's interval for it (the calibration's confidence
interval): `outside` when the measured value, at the file's precision, falls outside it (the
traffic, the models or the prompts moved since calibration), `not measured` when these logs
cannot measure it (quality without labels), which is never a flag. A hand-written routing.yaml
has no `expected` and no `intervals`: nothing to compare against. Metrics keep full precision;
rounding is for the human table.
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
from calibrate.policies.consensus import consensus_row
from calibrate.policies.families import Family, evaluate_families
from calibrate.policies.frontier import frontier_row
from calibrate.policies.keyword_rules import forced_tiers
from calibrate.policies.router_files import stored_scores
from calibrate.records.outcomes import DataWindow, Outcomes
from calibrate.records.policy import Policy
from calibrate.store import Store

CheckStatus = Literal["inside", "outside", "no interval", "not measured"]


@dataclass(frozen=True)
class MetricCheck:
    """One measured metric next to routing.yaml's expected value and interval (None: the file has
    none)."""

    name: str
    measured: float  # full precision; NaN: these logs cannot measure it
    expected: float | None
    interval: tuple[float, float] | None
    status: CheckStatus


def check_metric(
    name: str, measured: float, expected: float | None, interval: tuple[float, float] | None
) -> MetricCheck:
    """Compare at the file's precision (routing.yaml rounds `expected` and `intervals` with
    `round_metric`), both ends inclusive."""
    if math.isnan(measured):
        return MetricCheck(name, measured, expected, interval, "not measured")
    if interval is None or any(math.isnan(end) for end in interval):
        return MetricCheck(name, measured, expected, None, "no interval")
    low, high = interval
    inside = low <= round_metric(name, measured) <= high
    return MetricCheck(name, measured, expected, interval, "inside" if inside else "outside")


def _given(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one config (full precision, the names of routing.yaml's `expected`) and their
    checks against its `expected` and `intervals` (`level`: the intervals' confidence level)."""

    policy: str
    metrics: dict[str, float]
    expected: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    level: float | None
    window: DataWindow

    @property
    def compared(self) -> bool:
        """Does routing.yaml record anything to compare against (a hand-written one does not)?"""
        return bool(self.expected or self.intervals)

    @property
    def checks(self) -> tuple[MetricCheck, ...]:
        return tuple(
            check_metric(m, v, _given(self.expected.get(m)), self.intervals.get(m))
            for m, v in self.metrics.items()
        )

    @property
    def outside(self) -> tuple[MetricCheck, ...]:
        """The metrics outside routing.yaml's interval: `evaluate --check` exits 3."""
        return tuple(c for c in self.checks if c.status == "outside")

    def as_dict(self) -> dict:
        w = self.window
        return {
            "policy": self.policy,
            "requests": w.requests,
            "labeled": w.labeled,
            **self.metrics,
            "expected": self.expected,
            "intervals": {m: list(i) for m, i in self.intervals.items()},
            "confidence_level": self.level,
            "compared": self.compared,
            "checks": {c.name: c.status for c in self.checks},
            "outside": [c.name for c in self.outside],
            "window": {"start": w.start, "end": w.end},
        }


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
) -> Evaluation:
    """Evaluate the config's policy on every stored request that has all of its tiers
    (`base_dir`: where routing.yaml is, for a router's model file)."""
    used = [t.name for t in config.tiers if t.name != config.premium_tier]
    order = (*used, config.premium_tier)
    outcomes = store.outcomes(order, prices)
    policy = policy_of(config)
    if config.strategy == "consensus":
        answers = store.tier_outputs(outcomes.request_ids.tolist(), outcomes.tiers)
        voters = tuple(order.index(t.name) for t in config.tiers)
        frame = consensus_row(outcomes, answers, voters)
    elif config.strategy == "router":
        frame = evaluate_families(outcomes, [router_family(store, config, outcomes, base_dir)])
    else:
        family = family_for(policy, order, keyword_forced(store, config, outcomes))
        frame = evaluate_families(outcomes, [family])
    row = frontier_row(frame.filter(pl.col("policy") == policy.id).row(0, named=True))
    return Evaluation(
        policy=row.policy.id,
        metrics={
            m: float("nan") if v is None else float(v) + 0.0  # + 0.0: -0.0 → 0.0
            for m, v in row.metrics.as_dict().items()
        },
        expected=dict(config.expected),
        intervals=dict(config.intervals),
        level=config.objective.confidence_level if config.objective is not None else None,
        window=store.data_window(outcomes),
    )
