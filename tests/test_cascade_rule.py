"""One cascade rule (`policies.cascade`): the vectorized grid engine, the per-request walk of one
policy (`assign`) and the monitor's routing of a deployed routing.yaml all follow it, on many
seeded random inputs with 2–4 tiers, tied and missing confidences and failed attempts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibrate.config.routing import ObjectiveSpec, policy_of, routing_from
from calibrate.monitor.routing import route
from calibrate.policies.assignment import assign
from calibrate.policies.cascade import cascade_stops, keeps, threshold_bins
from calibrate.policies.families import Family, default_families, evaluate_family
from calibrate.policies.grid import percentile_rank
from calibrate.records.outcomes import DataWindow, Outcomes
from calibrate.records.policy import FrontierRow, Policy, PolicyMetrics
from calibrate.store.monitor_sql import RequestLog

CASES = 40


def random_case(seed: int) -> tuple[Outcomes, np.ndarray]:
    """Outcomes over 2–4 tiers with heavy confidence ties, missing confidences, and failed
    attempts (no confidence, an unacceptable answer); also which attempts failed."""
    rng = np.random.default_rng(seed)
    k, n = int(rng.integers(2, 5)), int(rng.integers(20, 160))
    conf = rng.choice(np.round(rng.uniform(0, 1, 10), 2), size=(n, k))
    conf[rng.uniform(size=(n, k)) < 0.1] = np.nan  # no signal
    failed = rng.uniform(size=(n, k)) < 0.08
    conf[failed] = np.nan
    label = rng.choice([0.0, 0.5, 1.0], size=(n, k))
    label[failed] = 0.0
    label[rng.uniform(size=n) < 0.3] = np.nan  # unlabeled requests
    outcomes = Outcomes(
        tiers=tuple(f"t{j}" for j in range(k)),
        request_ids=np.array([f"r{i}" for i in range(n)], dtype=object),
        timestamp_s=np.zeros(n),
        region=np.array(["r"] * n, dtype=object),
        app=np.array(["a"] * n, dtype=object),
        intent=np.array([None] * n, dtype=object),
        input_tokens=rng.choice([10, 20, 40], size=n),
        confidence=conf,
        cost_usd=np.round(rng.uniform(1e-6, 1e-3, size=(n, k)) * (1 + np.arange(k)), 9),
        latency_ms=np.round(rng.gamma(2.0, 300.0, size=(n, k)), 1),
        label=label,
        incomplete=0,
    )
    return outcomes, failed


def thresholds_of(family: Family, option: tuple[int, ...]) -> list[float]:
    """The option's threshold per deciding tier (+inf: the grid's last option)."""
    return [
        float(grid[a]) if a < grid.size else math.inf
        for grid, a in zip(family.grids, option, strict=True)
    ]


def reference_sums(o: Outcomes, path: tuple[int, ...], stop: np.ndarray) -> dict[str, object]:
    """What the engine reports for one policy, from each request's stop under the rule: stop
    counts, cost (nano-USD, every tier touched), score (micro, labeled rows), p50/p95 (µs)."""
    rows = np.arange(o.n)
    touched = np.arange(len(path))[None, :] <= stop[:, None]
    cost = np.rint(o.cost_usd[:, list(path)] * 1e9)
    latency = np.rint(o.latency_ms[:, list(path)] * 1000)
    served = np.array(path)[stop]
    labeled = o.labeled
    ordered = np.sort((latency * touched).sum(axis=1))
    return {
        "stops": np.bincount(stop, minlength=len(path)).tolist(),
        "cost": float((cost * touched).sum()),
        "score": float(np.rint(o.label[rows[labeled], served[labeled]] * 1e6).sum()),
        "latency": [float(ordered[percentile_rank(p, o.n) - 1]) for p in (50, 95)],
    }


@pytest.mark.parametrize("seed", range(CASES))
def test_grid_engine_and_assign_follow_the_cascade_rule(seed: int) -> None:
    o, _ = random_case(seed)
    families = [f for f in default_families(o, {2: 6, 3: 4, 4: 3}) if f.kind == "cascade"]
    checked = 0
    for family in families:
        result = evaluate_family(o, family)
        deciding = list(family.path[:-1])
        for p, option in enumerate(map(tuple, result.options.tolist())):
            stop = cascade_stops(o.confidence[:, deciding], thresholds_of(family, option))
            expected = reference_sums(o, family.path, stop)
            got = {
                "stops": result.stop_counts[p].tolist(),
                "cost": float(result.cost_nano_usd[p]),
                "score": float(result.score_micro[p]),
                "latency": [float(result.latency_p50_us[p]), float(result.latency_p95_us[p])],
            }
            assert got == expected, (family.path, option)
            assert np.array_equal(assign(o, family, option).stage, stop), (family.path, option)
            checked += 1
    assert checked == sum(math.prod(g.size + 1 for g in f.grids) for f in families)
    assert checked > 2 * len(families)  # real grids, not just "escalate everything"


def test_the_rule_in_words() -> None:
    """First tier whose confidence ≥ its threshold; NaN escalates; +inf escalates everything."""
    conf = np.array([[0.9, 0.1], [0.5, 0.7], [np.nan, 0.7], [np.nan, np.nan], [0.5, 0.69]])
    assert cascade_stops(conf, [0.5, 0.7]).tolist() == [0, 0, 1, 2, 0]
    assert cascade_stops(conf, [0.6, 0.7]).tolist() == [0, 1, 1, 2, 2]
    assert cascade_stops(conf, [math.inf, math.inf]).tolist() == [2, 2, 2, 2, 2]
    assert not keeps(np.array([math.inf]), math.inf).any()


@pytest.mark.parametrize("seed", range(10))
def test_threshold_bins_state_the_rule_for_a_whole_grid(seed: int) -> None:
    rng = np.random.default_rng(seed)
    grid = np.unique(np.round(rng.uniform(0, 1, 8), 2))
    conf = rng.choice([*grid, *np.round(rng.uniform(0, 1, 8), 3), np.nan, np.inf], size=300)
    bins = threshold_bins(conf, grid)
    for a, tau in enumerate([*grid.tolist(), math.inf]):
        assert np.array_equal(bins > a, keeps(conf, tau)), tau


def request_log(o: Outcomes, failed: np.ndarray, tiers: list[str]) -> RequestLog:
    """The outcomes of `tiers` (a config's) as the monitor reads them; a failed attempt left no
    answer at all."""
    n, columns = o.n, [o.tiers.index(t) for t in tiers]
    return RequestLog(
        tiers=tuple(tiers),
        request_ids=o.request_ids,
        timestamp_s=o.timestamp_s,
        region=o.region,
        app=o.app,
        intent=np.array([""] * n, dtype=object),
        input_tokens=o.input_tokens.astype(np.int64),
        served_tier=np.array([""] * n, dtype=object),
        failed_tier=np.array([""] * n, dtype=object),
        answered=~failed[:, columns],
        confidence=o.confidence[:, columns],
        label=o.label[:, columns],
        cost_usd=o.cost_usd[:, columns],
        tier_cost_usd={t: 1.0 for t in tiers},
    )


def deployed(policy: Policy, tiers: tuple[str, ...]):
    """routing.yaml for `policy` (metrics do not matter to the routing)."""
    metrics = PolicyMetrics(*[0.0] * 7)
    return routing_from(
        FrontierRow(policy, 1, 1, metrics),
        {t: f"m-{t}" for t in tiers},
        tiers[-1],
        ObjectiveSpec(max_quality_drop=0.02, confidence_level=0.95),
        "empirical",
        False,
        DataWindow(1, 1, 0, None, None, "x"),
    )


@pytest.mark.parametrize("seed", range(CASES))
def test_the_monitor_routes_a_deployed_cascade_by_the_rule(seed: int) -> None:
    """Request by request: the monitor's serving tier is the rule's, and a request is unevaluable
    exactly when it reaches a deciding tier whose attempt is missing."""
    o, failed = random_case(seed)
    rng = np.random.default_rng(seed + 1000)
    k = len(o.tiers)
    size = int(rng.integers(2, k + 1))
    path = tuple(sorted(rng.choice(k - 1, size=size - 1, replace=False).tolist())) + (k - 1,)
    taus = tuple(float(t) for t in np.round(rng.uniform(0, 1, size - 1), 2))
    names = tuple(o.tiers[j] for j in path)
    config = deployed(Policy("cascade", names, taus), o.tiers)
    assert policy_of(config) == Policy("cascade", names, taus)
    config_tiers = [t.name for t in config.tiers]
    assert config_tiers == list(names)
    got = route(request_log(o, failed, config_tiers), config, ())  # no P(correct) mapping
    for i in range(o.n):
        serving, evaluable = names[-1], True
        for tier, tau in zip(names[:-1], taus, strict=True):
            j = o.tiers.index(tier)
            evaluable &= not failed[i, j]
            c = o.confidence[i, j]
            if not math.isnan(c) and c >= tau:
                serving = tier
                break
        assert config_tiers[got.stage[i]] == serving, i
        assert bool(got.evaluable[i]) == evaluable, i
