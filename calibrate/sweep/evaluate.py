"""Stage: the metrics of one given routing.yaml on the stored logs.

The config is turned back into a one-policy family and evaluated by the same exact engine as the
sweep, so `evaluate` on the sweep's own data reproduces the numbers in `expected`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one config, with the same names as routing.yaml's `expected`."""

    policy: str
    metrics: dict[str, float]
    expected: dict[str, float]
    window: DataWindow

    def as_dict(self) -> dict:
        w = self.window
        return {
            "policy": self.policy,
            "requests": w.requests,
            "labeled": w.labeled,
            **self.metrics,
            "expected": self.expected,
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
        labeled_ids = outcomes.request_ids[outcomes.labeled].tolist()
        answers = store.answer_codes(labeled_ids, outcomes.tiers)
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
        metrics={m: round_metric(m, v) for m, v in row.metrics.as_dict().items()},
        expected=dict(config.expected),
        window=store.data_window(outcomes),
    )
