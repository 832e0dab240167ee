"""Stage: the metrics of one given routing.yaml on the stored logs.

The config is turned back into a one-policy family and evaluated by the same exact engine as the
sweep, so `evaluate` on the sweep's own data reproduces the numbers in `expected`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calibrate.errors import ConfigError
from calibrate.policies import METRICS, Family, evaluate_families
from calibrate.records import DataWindow, Outcomes
from calibrate.router import load_router, rescore
from calibrate.routing import RoutingConfig, round_metric
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


def family_for(config: RoutingConfig, tier_order: tuple[str, ...]) -> Family:
    """The one-policy family a routing config describes (indices into tier_order)."""
    index = {name: j for j, name in enumerate(tier_order)}
    names = [t.name for t in config.tiers]
    if config.strategy == "single":
        return Family("always", (index[names[0]],))
    if config.strategy == "cascade":
        grids = tuple(np.array([t.escalate_below]) for t in config.tiers[:-1])
        return Family("cascade", tuple(index[n] for n in names), grids)
    if len(config.rules) == 1:
        return Family("always", (index[config.rules[0].tier],))
    if len(config.rules) != 2:
        raise ConfigError(
            f"rules with {len(config.rules)} entries are not supported yet",
            hint="Use one input-length rule followed by a default rule.",
        )
    cheap, default = config.rules
    path = (index[cheap.tier], index[default.tier])
    return Family("length", path, (np.array([cheap.max_input_tokens]),))


def router_family(
    store: Store, config: RoutingConfig, outcomes: Outcomes, base_dir: Path
) -> Family:
    """The config's router as a one-policy family: each request scored from the model file (a
    request the router was trained on keeps its cross-fitted score, as in the sweep)."""
    assert config.classifier is not None
    model, cross_fitted = load_router(base_dir / config.classifier.file)
    ids = outcomes.request_ids.tolist()
    scores = rescore(model, cross_fitted, ids, store.prompt_texts(ids))
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
    if config.strategy == "router":
        family = router_family(store, config, outcomes, base_dir)
    else:
        family = family_for(config, order)
    row = evaluate_families(outcomes, [family]).row(0, named=True)
    return Evaluation(
        policy=row["policy"],
        metrics={m: round_metric(m, row[m]) for m in METRICS},
        expected=dict(config.expected),
        window=store.data_window(outcomes),
    )
