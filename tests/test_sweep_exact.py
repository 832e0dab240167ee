"""The vectorized grid sweep agrees exactly with a brute-force per-policy, per-request loop."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from outcomes_support import random_outcomes

from calibrate.policies import latency_ranks
from calibrate.policies.families import Family, default_families, evaluate_families
from calibrate.records.outcomes import Outcomes

pytestmark = pytest.mark.e2e  # exact sweeps checked against brute force: not in `make test-fast`


def brute_force(
    o: Outcomes,
    kind: str,
    path: tuple[int, ...],
    params: tuple,
    scores: np.ndarray | None = None,
    overhead_usd: float = 0.0,
    forced: np.ndarray | None = None,
) -> dict[str, float]:
    """Plain Python: walk each request through the policy (`forced`: keyword rules' tier, -1 for
    none; a ruled request is served by that tier alone)."""
    cost = score = 0.0
    lats, escalated, labeled = [], 0, 0
    for i in range(o.n):
        if forced is not None and forced[i] >= 0:
            stop, touched = int(forced[i]), [int(forced[i])]
        elif kind == "router":
            stop = path[0] if scores[i] >= params[0] else path[1]
            touched = [stop]
        elif kind == "always":
            stop, touched = path[0], [path[0]]
        elif kind in ("length", "rules"):
            cheap = params[0] is not None and o.input_tokens[i] <= params[0]
            stop = path[0] if cheap else path[1]
            touched = [stop]
        else:
            touched = []
            stop = path[-1]
            for j, tau in zip(path[:-1], params, strict=True):
                touched.append(j)
                c = o.confidence[i, j]
                if not math.isnan(c) and c >= tau:
                    stop = j
                    break
            else:
                touched.append(path[-1])
        req_cost = sum(round(o.cost_usd[i, j] * 1e9) for j in touched) + round(overhead_usd * 1e9)
        req_lat = sum(round(o.latency_ms[i, j] * 1000) for j in touched)
        cost += req_cost
        lats.append(req_lat)
        escalated += stop > path[0]
        if not np.isnan(o.label[i]).any():
            labeled += 1
            score += round(o.label[i, stop] * 1e6)
    lats.sort()
    rank50, rank95 = max(1, math.ceil(o.n * 50 / 100)), max(1, math.ceil(o.n * 95 / 100))
    return {
        "cost_per_1k_requests_usd": cost / 1e9 / o.n * 1000,
        "quality": score / 1e6 / labeled,
        "escalation_rate": 1 - (o.n - escalated) / o.n,
        "latency_p50_ms": lats[rank50 - 1] / 1000,
        "latency_p95_ms": lats[rank95 - 1] / 1000,
    }


def parse(row: dict) -> tuple:
    if row["strategy"] in ("length", "rules"):
        return (row["cutoff_tokens"],)
    return tuple(row["thresholds"])


def assert_matches_brute_force(o: Outcomes, families: list[Family]) -> pl.DataFrame:
    """Every row of the vectorized frame equals the brute-force loop; returns the frame."""
    frame = evaluate_families(o, families)
    index = {t: j for j, t in enumerate(o.tiers)}
    routers = {(f.path): f for f in families if f.kind == "router"}
    forced = next((f.forced for f in families if f.forced is not None), None)
    checked = 0
    for row in frame.iter_rows(named=True):
        path = tuple(index[t] for t in row["tiers"])
        router = routers.get(path) if row["strategy"] == "router" else None
        extra = (router.scores, router.overhead_usd) if router is not None else (None, 0.0)
        ruled = forced if row["strategy"] in ("rules", "hybrid") else None
        expected = brute_force(o, row["strategy"], path, parse(row), *extra, forced=ruled)
        for key, value in expected.items():
            assert row[key] == value, (row["policy"], key, row[key], value)
        checked += 1
    assert checked == frame.height
    return frame


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_vectorized_sweep_matches_brute_force(k: int, seed: int) -> None:
    o = random_outcomes(seed, n=150, k=k)
    families = default_families(o, {2: 9, 3: 5, 4: 3})
    frame = assert_matches_brute_force(o, families)
    # every family and every grid point is present: 2 tiers → 1 + 2 + 1·(10) + 1·(cutoffs+1) …
    assert frame.filter(frame["strategy"] == "cascade").height >= (k - 1) * 2


def test_grid_covers_every_distinct_threshold_when_few() -> None:
    o = random_outcomes(3, n=120, k=2)
    families = default_families(o, {2: 1000})
    cascade = [f for f in families if f.kind == "cascade"][0]
    distinct = np.unique(o.confidence[:, 0][~np.isnan(o.confidence[:, 0])])
    assert np.array_equal(cascade.grids[0], distinct)


def with_columns(o: Outcomes, **changes: np.ndarray) -> Outcomes:
    fields = {name: getattr(o, name) for name in o.__dataclass_fields__}
    return Outcomes(**{**fields, **changes})


def test_ties_on_grid_points_and_heavy_latency_ties() -> None:
    """Quantile grids (more distinct values than the grid) whose 4-digit thresholds equal data
    values, and latencies from a handful of values: every rank falls in a one-value bin."""
    rng = np.random.default_rng(7)
    o = random_outcomes(7, n=400, k=3)
    conf = np.round(rng.uniform(0, 1, size=(o.n, 3)), 3)
    conf[rng.uniform(size=conf.shape) < 0.05] = np.nan
    latency = rng.choice([120.0, 250.0, 250.0, 900.0, 4000.0], size=(o.n, 3))
    latency[0, 2] = -30.0  # codes start below zero
    o = with_columns(o, confidence=conf, latency_ms=latency)
    families = default_families(o, {2: 12, 3: 6, 4: 3})
    cascade = [f for f in families if f.kind == "cascade"][0]
    assert np.isin(cascade.grids[0], conf).sum() >= 10  # thresholds sit exactly on data values
    assert_matches_brute_force(o, families)


def test_a_tier_without_any_confidence_always_escalates() -> None:
    o = random_outcomes(8, n=150, k=3)
    conf = o.confidence.copy()
    conf[:, 1] = np.nan
    o = with_columns(o, confidence=conf)
    families = default_families(o, {2: 9, 3: 5})
    assert [f.grids[0].size for f in families if f.kind == "cascade" and f.path[0] == 1] == [0]
    assert_matches_brute_force(o, families)


def test_latencies_too_fine_for_unit_codes_are_ranked(monkeypatch: pytest.MonkeyPatch) -> None:
    """µs-precision latencies (and a negative one) over a range wider than CODE_LIMIT codes: the
    engine switches to ranks of the distinct sums; results stay exact."""
    monkeypatch.setattr(latency_ranks, "CODE_LIMIT", 1000)
    rng = np.random.default_rng(9)
    o = random_outcomes(9, n=200, k=3)
    latency = np.round(rng.gamma(2.0, 300.0, size=(o.n, 3)), 3)
    latency[3, 1] = -5.25
    o = with_columns(o, latency_ms=latency)
    assert_matches_brute_force(o, default_families(o, {2: 9, 3: 5}))


def test_long_inputs_and_a_single_threshold_routing() -> None:
    """Input lengths over a wide range (no lookup table), and one-policy families as `evaluate`
    builds them from a routing.yaml (thresholds that need not be data values)."""
    rng = np.random.default_rng(10)
    o = random_outcomes(10, n=150, k=3)
    o = with_columns(o, input_tokens=rng.integers(1, 5_000_000, size=o.n))
    families = [
        *default_families(o, {2: 9, 3: 4}),
        Family("cascade", (0, 2), (np.array([0.5]),)),
        Family("cascade", (0, 1, 2), (np.array([-1.0]), np.array([7.0]))),
        Family("length", (1, 2), (np.array([2_500_000]),)),
    ]
    assert_matches_brute_force(o, families)


@pytest.mark.parametrize("n", [1, 2, 5])
def test_tiny_inputs_with_constant_lengths_and_latencies(n: int) -> None:
    o = random_outcomes(11 + n, n=n, k=3)
    o = with_columns(
        o,
        input_tokens=np.full(n, 40),
        latency_ms=np.full((n, 3), 250.0),
        label=np.ones((n, 3)),
    )
    assert_matches_brute_force(o, default_families(o, {2: 9, 3: 5}))


@pytest.mark.parametrize("k", [2, 3])
def test_walking_one_policy_agrees_with_its_frontier_row(k: int) -> None:
    """`assignment.assign` (used by certification, intervals and segments) serves every request as
    the engine assumes: same cost, escalation and quality for every policy."""
    from calibrate.policies.assignment import assign
    from calibrate.policies.families import policy_index

    o = random_outcomes(100 + k, 400, k)
    families = default_families(o, {2: 9, 3: 4})
    frame = evaluate_families(o, families)
    index = policy_index(o, families)
    assert set(index) == set(frame["policy"])
    labeled = o.labeled
    for row in frame.iter_rows(named=True):
        walked = assign(o, *index[row["policy"]])
        assert walked.cost_usd.sum() / o.n * 1000 == pytest.approx(
            row["cost_per_1k_requests_usd"], rel=1e-9
        )
        assert walked.escalated.mean() == pytest.approx(row["escalation_rate"], abs=1e-12)
        assert walked.label[labeled].mean() == pytest.approx(row["quality"], abs=1e-9)


@pytest.mark.parametrize("k", [2, 3])
def test_router_families_match_brute_force(k: int) -> None:
    """A learned router decides up front on a per-request score (ties on grid points, a score
    grid from the scores, one tier paid plus the classifier's price)."""
    from calibrate.policies.families import threshold_grid

    rng = np.random.default_rng(20 + k)
    o = random_outcomes(20 + k, n=300, k=k)
    scores = rng.choice(np.round(rng.uniform(0, 1, 25), 3), size=o.n)
    grid = threshold_grid(scores, 9)
    families = [
        Family("router", (0, k - 1), (grid,), scores=scores, overhead_usd=2.5e-6),
        *default_families(o, {2: 5, 3: 3}),
    ]
    if k == 3:  # a second router on its own path (a sweep fits one router per path)
        families.append(Family("router", (1, 2), (np.array([0.5]),), scores=scores[::-1].copy()))
    frame = assert_matches_brute_force(o, families)
    routed = frame.filter(frame["strategy"] == "router")
    assert grid.size == 9 and routed.height == 10 + (2 if k == 3 else 0)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_keyword_rule_families_match_brute_force(k: int) -> None:
    """Keyword rules in front of length cutoffs (`rules`) and cascades (`hybrid`): a ruled request
    is served by its rule's tier alone under every option (no cheap call paid in a hybrid), the
    rest follow the cutoff or the cascade; escalation counts ruled requests sent past the path's
    first tier."""
    from calibrate.policies.families import keyword_families

    rng = np.random.default_rng(40 + k)
    o = random_outcomes(40 + k, n=300, k=k)
    forced = np.where(rng.uniform(size=o.n) < 0.3, rng.integers(0, k, o.n), -1)
    families = keyword_families(o, forced, {2: 9, 3: 4, 4: 3})
    assert {f.kind for f in families} == {"rules", "hybrid"}
    assert all(f.path[-1] == k - 1 for f in families if f.kind == "hybrid")
    frame = assert_matches_brute_force(o, families)
    # "every unmatched request to tier b" is kept once per b, on the pair (cheapest tier, b)
    nones = frame.filter(pl.col("policy").str.ends_with("@none"))["policy"].to_list()
    assert nones == [f"rules:{o.tiers[0]}>{t}@none" for t in o.tiers[1:]]


@pytest.mark.parametrize("k", [2, 3])
def test_walking_a_keyword_policy_agrees_with_its_frontier_row(k: int) -> None:
    from calibrate.policies.assignment import assign, served_labels
    from calibrate.policies.families import keyword_families, policy_index

    rng = np.random.default_rng(60 + k)
    o = random_outcomes(60 + k, 400, k)
    forced = np.where(rng.uniform(size=o.n) < 0.25, rng.integers(0, k, o.n), -1)
    families = keyword_families(o, forced, {2: 9, 3: 4})
    frame = evaluate_families(o, families)
    index = policy_index(o, families)
    labeled = o.labeled
    for row in frame.iter_rows(named=True):
        walked = assign(o, *index[row["policy"]])
        assert (walked.served_tier[forced >= 0] == forced[forced >= 0]).all()
        assert walked.cost_usd.sum() / o.n * 1000 == pytest.approx(
            row["cost_per_1k_requests_usd"], rel=1e-9
        )
        assert walked.escalated.mean() == pytest.approx(row["escalation_rate"], abs=1e-12)
        assert walked.label[labeled].mean() == pytest.approx(row["quality"], abs=1e-9)
        served = served_labels(o, [index[row["policy"]]])[0]
        assert np.array_equal(served[labeled], walked.label[labeled].astype(np.float32))
