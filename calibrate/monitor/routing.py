"""The deployed routing.yaml applied to every logged request, for `monitor`.

`route(log, config, calibration, decided)` walks each request through the config with production's
rule (first what is decided before any call: `decided` holds the tier a keyword rule or a learned
router sends the request to, computed by the caller from the prompts; then a cascade by the rule of
`policies.cascade`, with each tier's `escalate_below`; length rules route on input_tokens), and gives
per request the serving tier, what it paid and the calibrated P(correct) of its answer. A cascade
request is unevaluable when the logs lack the attempt of a tier it reaches before the last. `calibrations` refits each
tier's confidence → P(correct) mapping on the labeled requests of the reference window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calibrate.config.routing import RoutingConfig, policy_of
from calibrate.errors import ConfigError
from calibrate.policies.cascade import cascade_stops
from calibrate.records.outcomes import Outcomes, RequestLog
from calibrate.stats.reliability import TierCalibration, tier_calibrations


@dataclass(frozen=True, slots=True)
class Routed:
    """The deployed config applied to each request (index into the config's tiers)."""

    evaluable: np.ndarray
    stage: np.ndarray
    escalated: np.ndarray
    kept: np.ndarray
    p_correct: np.ndarray
    served_label: np.ndarray
    cost_usd: np.ndarray
    extra_cost_usd: np.ndarray


def route(
    log: RequestLog,
    config: RoutingConfig,
    calibration: tuple[TierCalibration, ...],
    decided: np.ndarray | None = None,
) -> Routed:
    """Walk every request through the deployed config (`decided`: per request the config tier a
    keyword rule or the router sends it to, -1 for none); P(correct) of the answer it would get."""
    stage, evaluable = _stages(log, config, decided is not None)
    if decided is not None:
        ruled = decided >= 0
        stage, evaluable = np.where(ruled, decided, stage), evaluable | ruled
    rows = np.arange(log.n)
    conf = log.confidence[rows, stage]
    p_correct = np.full(log.n, np.nan)
    for j, cal in enumerate(calibration):
        at = stage == j
        if cal.mapping_x and at.any():
            p_correct[at] = np.interp(conf[at], cal.mapping_x, cal.mapping_y)
    if config.strategy in ("cascade", "hybrid"):
        on_path = np.isin(np.arange(len(log.tiers)), cascade_path(config))
        touched = (np.arange(len(log.tiers))[None, :] <= stage[:, None]) & on_path[None, :]
        cost = np.where(touched, log.cost_usd, 0.0).sum(axis=1)
        if decided is not None:  # a ruled request pays its rule's tier alone
            cost = np.where(decided >= 0, log.cost_usd[rows, stage], cost)
    else:
        cost = log.cost_usd[rows, stage]
    if config.classifier is not None:
        cost = cost + config.classifier.cost_per_1k_requests_usd / 1000.0
    escalated = stage > 0
    return Routed(
        evaluable=evaluable,
        stage=stage,
        escalated=escalated,
        kept=stage < len(log.tiers) - 1,
        p_correct=p_correct,
        served_label=log.label[rows, stage],
        cost_usd=cost,
        extra_cost_usd=np.where(escalated, cost - log.cost_usd[:, 0], np.nan),
    )


def _stages(log: RequestLog, config: RoutingConfig, decided: bool) -> tuple[np.ndarray, np.ndarray]:
    """Index of the config tier serving each request, and whether the logs can say (a cascade
    needs the confidence of every tier a request reaches before the last; a router's choice
    comes in `decided`)."""
    n = log.n
    if config.strategy == "consensus" or (config.strategy == "router" and not decided):
        what = {"router": "a learned router without its scores", "consensus": "a consensus"}
        raise ConfigError(
            f"monitor cannot follow {what[config.strategy]}",
            hint="Monitor a cascade, rules, hybrid or router config, or use `calibrate evaluate`.",
        )
    if config.strategy in ("single", "router"):
        return np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)
    if config.strategy == "rules":
        index = {t: j for j, t in enumerate(log.tiers)}
        stage, undecided = np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)
        for rule in (r for r in config.rules if r.pattern is None):  # keyword rules: `decided`
            cutoff = rule.max_input_tokens
            take = undecided & (log.input_tokens <= cutoff if cutoff is not None else True)
            stage[take] = index[rule.tier]
            undecided &= ~take
        return stage, np.ones(n, dtype=bool)
    path = np.array(cascade_path(config))
    step = cascade_stops(log.confidence[:, path[:-1]], policy_of(config).thresholds)
    reached = np.arange(path.size - 1)[None, :] <= step[:, None]  # the deciding tiers it reaches
    evaluable = ~(reached & ~log.answered[:, path[:-1]]).any(axis=1)
    return path[step], evaluable


def cascade_path(config: RoutingConfig) -> list[int]:
    """The config tiers a cascade or hybrid walks (indices into the config's tiers): those with
    escalate_below, then the last (a hybrid's other tiers are reached by keyword rules only)."""
    names = [t.name for t in config.tiers]
    return [names.index(tier) for tier in policy_of(config).tiers]


def calibrations(log: RequestLog, in_ref: np.ndarray) -> tuple[TierCalibration, ...]:
    """Each tier's confidence → P(correct) mapping, refitted on the labeled reference requests."""
    rows = np.flatnonzero(in_ref)
    reference = Outcomes(
        tiers=log.tiers,
        request_ids=log.request_ids[rows],
        timestamp_s=log.timestamp_s[rows],
        region=log.region[rows],
        app=log.app[rows],
        intent=log.intent[rows],
        input_tokens=log.input_tokens[rows],
        confidence=log.confidence[rows],
        cost_usd=log.cost_usd[rows],
        latency_ms=np.zeros(log.confidence[rows].shape),
        label=log.label[rows],
        incomplete=0,
    )
    return tier_calibrations(reference)
