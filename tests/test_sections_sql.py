"""The chosen policy's sections from SQL aggregates over `outcome_rows` plus the labeled rows
(`store/sections_sql.py`) against the per-request functions they replace, on the same data:
random outcome tables and the sample logs' store."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pytest
from outcomes_support import random_outcomes
from polars.testing import assert_frame_equal
from test_report_first_screen import CLOCK, _attempt, _line

from calibrate.config.routing import METRIC_DIGITS
from calibrate.config.tiers import load_tiers, price_table
from calibrate.ingest.stage import ingest
from calibrate.policies.assignment import Assignment, assign, take_rows
from calibrate.policies.cascade import cascade_stops
from calibrate.policies.families import (
    Family,
    default_families,
    evaluate_families,
    family_policies,
    keyword_families,
    policy_index,
    quantize_usd,
    threshold_grid,
)
from calibrate.policies.keyword_rules import RulesFile, RuleSpec, rule_hits, rule_hits_of_counts
from calibrate.records.outcomes import Outcomes
from calibrate.records.policy import Policy
from calibrate.records.sections import SectionSums
from calibrate.stats.intervals import Interval, policy_intervals_of_sums
from calibrate.store import Store
from calibrate.store.exact_sql import double, nano_usd, rint
from calibrate.store.outcome_rows_sql import (
    add_request_column,
    build_outcome_rows,
    register_outcome_rows,
)
from calibrate.store.sections_sql import (
    ROUTER_SCORE,
    RULE_TIER,
    UnsupportedPolicy,
    duckdb_query,
    row_stops,
    section_sums,
    stage_sql,
)
from calibrate.store.sql_engine import DuckDbEngine
from calibrate.sweep.diagnostics import break_even, break_even_of_sums
from calibrate.sweep.failure_modes import (
    escalation_timeline,
    escalation_timeline_of_sums,
    failure_modes,
    failure_modes_of_sums,
)
from calibrate.sweep.stage import policy_intervals
from calibrate.sweep.verdict import production_as_logged, production_of_sums

REL = 1e-12  # exact integer sums against numpy's float sums of the same (rounded) costs


def ordered(seed: int, n: int, k: int) -> Outcomes:
    """`random_outcomes` with request ids in row order (as the store returns rows)."""
    o = random_outcomes(seed, n, k)
    return dataclasses.replace(
        o, request_ids=np.array([f"r{i:06d}" for i in range(n)], dtype=object)
    )


def segmented(seed: int, n: int, k: int) -> tuple[Outcomes, tuple[np.ndarray, np.ndarray]]:
    """`random_outcomes` with segments (None intents, '' regions), timestamps over months and a
    production path per request (some unknown)."""
    o = ordered(seed, n, k)
    rng = np.random.default_rng(seed + 1000)
    pick = lambda values: np.array(rng.choice(values, size=n).tolist(), dtype=object)  # noqa: E731
    o = dataclasses.replace(
        o,
        timestamp_s=rng.uniform(1.75e9, 1.76e9, size=n),
        region=pick(["eu", "us", "", "apac"]),
        app=pick(["bot", "tools"]),
        intent=pick(["billing", None, "refund", "contract"]),
    )
    called = rng.uniform(size=(n, k)) < 0.5
    called[np.arange(n), rng.integers(0, k, size=n)] = True
    served = np.where(rng.uniform(size=n) < 0.05, -1, rng.integers(0, k, size=n))
    called[served < 0] = False
    return o, (called, served)


def sums_for(
    o: Outcomes,
    production,
    chosen: Policy,
    alternative: Policy | None = None,
    columns: dict[str, np.ndarray] | None = None,
    overhead_usd: float = 0.0,
) -> SectionSums:
    con = duckdb.connect()
    rows = register_outcome_rows(con, o, production)
    for name, values in (columns or {}).items():
        add_request_column(con, rows, name, o.request_ids, values)
    query = duckdb_query(con)
    return section_sums(query, rows.relation, o.tiers, chosen, alternative, overhead_usd)


def _index(o: Outcomes) -> dict[str, tuple[Family, tuple]]:
    return policy_index(o, default_families(o, {2: 40, 3: 8, 4: 5}))


# --- the stop rule ---------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3, 4])
def test_sql_stop_rule_is_the_assignment_of_every_grid_policy(k: int) -> None:
    """Cascades (thresholds at data values, ties, NaN confidences, +inf), length rules (cutoffs
    at data values, none) and always: the SQL stage and cost of every row are `assign`'s."""
    o = ordered(k, 400, k)
    con = duckdb.connect()
    rows = register_outcome_rows(con, o)
    query = duckdb_query(con)
    index = _index(o)
    rng = np.random.default_rng(k)
    ids = sorted(index)
    picked = [ids[i] for i in rng.choice(len(ids), size=min(len(ids), 50), replace=False)]
    edges = [pid for pid in ids if "inf" in pid or "none" in pid]
    picked += [edges[i] for i in rng.choice(len(edges), size=min(len(edges), 20), replace=False)]
    picked += [pid for pid in ids if pid.startswith("always")]
    cost = [quantize_usd(o.cost_usd[:, j]) for j in range(k)]
    for pid in sorted(set(picked)):
        family, option = index[pid]
        chosen = assign(o, family, option)
        policy = _policy(o, family, option)
        got = row_stops(query, rows.relation, o.tiers, policy)
        assert (got["request_id"] == o.request_ids).all()
        assert (got["stage"] == chosen.stage).all(), pid
        path = np.array(family.path)
        touched = [path[: s + 1] if policy.cascading else path[s : s + 1] for s in range(len(path))]
        expected = [sum(cost[j] for j in touched[s]) for s in range(len(path))]
        paid = np.choose(chosen.stage, expected)
        assert np.array_equal(got["cost"].astype(np.float64), paid), pid


def _policy(o: Outcomes, family: Family, option: tuple) -> Policy:
    return family_policies(o, family, [option])[0]


def test_sql_stop_rule_at_infinities_and_exact_data_values() -> None:
    """Thresholds ±inf and equal to a confidence keep as `cascade_stops` does; confidences of
    ±inf are kept or not like any other value."""
    o = ordered(7, 300, 3)
    conf = o.confidence.copy()
    conf[:7, 0] = np.inf
    conf[7:14, 1] = -np.inf
    o = dataclasses.replace(o, confidence=conf)
    con = duckdb.connect()
    rows = register_outcome_rows(con, o)
    values = np.unique(conf[np.isfinite(conf)])
    for thresholds in [
        (-math.inf, math.inf),
        (math.inf, -math.inf),
        (float(values[3]), float(values[-1])),
        (float(values[0]), math.inf),
        (0.1 + 0.2, 1e-300),
    ]:
        policy = Policy("cascade", o.tiers, thresholds)
        got = row_stops(duckdb_query(con), rows.relation, o.tiers, policy)
        assert (got["stage"] == cascade_stops(conf[:, :2], thresholds)).all(), thresholds


def test_rint_and_double_literals_are_numpy_exact() -> None:
    """rint rounds halves to even as numpy does, on both signs; double round-trips."""
    con = duckdb.connect()
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999999999, 3.5000001, 1e15 + 0.5, 7.0, -7.25])
    got = con.sql(
        "SELECT " + ", ".join(f"{rint(double(float(v)))} AS v{i}" for i, v in enumerate(x))
    ).fetchall()[0]
    assert list(got) == np.rint(x).tolist()
    values = np.random.default_rng(0).standard_normal(50) * 10.0 ** np.arange(-25, 25)
    values = [*values.tolist(), 5e-324, 1.7976931348623157e308, 0.1 + 0.2, -0.0]
    back = con.sql("SELECT " + ", ".join(double(v) for v in values)).fetchall()[0]
    assert [float(v) for v in back] == values
    cost = [0.0000012345, 0.3 - 0.1, 2.5e-9, 3.5e-9]
    nano = con.sql("SELECT " + ", ".join(nano_usd(double(c)) for c in cost)).fetchall()
    assert list(nano[0]) == quantize_usd(np.array(cost)).astype(np.int64).tolist()


@pytest.mark.parametrize("k", [2, 3, 4])
def test_sql_stop_rule_of_keyword_rules_and_routers_is_the_assignment(k: int) -> None:
    """`rules` and `hybrid` (keyword rules first, read from the rule_tier column) and a router
    (its score column, plus its price per request): stage (-1: a rule decided), cost and
    escalation of every row are `assign`'s."""
    o = ordered(40 + k, 300, k)
    rng = np.random.default_rng(40 + k)
    forced = np.where(rng.uniform(size=o.n) < 0.3, rng.integers(0, k, o.n), -1)
    scores = rng.choice(np.round(rng.uniform(0, 1, 25), 3), size=o.n)
    scores[:9] = np.nan
    grid = threshold_grid(scores[~np.isnan(scores)], 9)
    families = [
        *keyword_families(o, forced, {2: 9, 3: 4, 4: 3}),
        Family("router", (0, k - 1), (grid,), scores=scores, overhead_usd=2.5e-6),
    ]
    con = duckdb.connect()
    rows = register_outcome_rows(con, o)
    add_request_column(con, rows, RULE_TIER, o.request_ids, forced)
    add_request_column(con, rows, ROUTER_SCORE, o.request_ids, scores)
    cost = [quantize_usd(o.cost_usd[:, j]) for j in range(k)]
    index = policy_index(o, families)
    ids = sorted(index)
    for pid in [ids[i] for i in rng.choice(len(ids), size=min(len(ids), 40), replace=False)]:
        family, option = index[pid]
        walked = assign(o, family, option)
        policy = _policy(o, family, option)
        got = row_stops(duckdb_query(con), rows.relation, o.tiers, policy, family.overhead_usd)
        assert (got["stage"] == walked.stage).all(), pid
        assert (got["escalated"] == walked.escalated).all(), pid
        paid = np.array(
            [sum(cost[j][i] for j in _paid(policy, family, walked, i)) for i in range(o.n)]
        )
        paid += quantize_usd(np.array(family.overhead_usd)) * (walked.stage >= 0)
        assert np.array_equal(got["cost"].astype(np.float64), paid), pid


def _paid(policy: Policy, family: Family, walked: Assignment, i: int) -> list[int]:
    """The tiers request i pays under the walked policy."""
    if walked.stage[i] < 0:
        return [int(walked.served_tier[i])]
    if policy.cascading:
        return list(family.path[: walked.stage[i] + 1])
    return [int(walked.served_tier[i])]


def test_consensus_has_no_stop_rule() -> None:
    with pytest.raises(UnsupportedPolicy):
        stage_sql(Policy("consensus", ("a", "b", "c")), ("a", "b", "c"))


# --- the sections ----------------------------------------------------------------------------


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL, abs_tol=1e-15) or (math.isnan(a) and math.isnan(b))


def check_sections(
    o: Outcomes,
    production: tuple[np.ndarray, np.ndarray],
    chosen: Assignment,
    alternative: Assignment | None,
    weights: np.ndarray | None,
    sums: SectionSums,
) -> None:
    """Every section of `sums` + the labeled rows equals its per-request reference."""
    mask = o.labeled
    labeled = take_rows(o, mask)
    on_labeled = take_rows_assignment(chosen, mask)
    w = None if weights is None else weights[mask]
    savings = 0.3
    assert failure_modes_of_sums(labeled, on_labeled, sums, savings, w) == failure_modes(
        o, chosen, savings, alternative, weights
    )
    assert_frame_equal(escalation_timeline_of_sums(sums), escalation_timeline(o, chosen))
    frontier = evaluate_families(o, [Family("always", (j,)) for j in range(len(o.tiers))])
    assert break_even_of_sums(frontier, o.tiers, sums) == break_even(frontier, o.tiers, chosen, o)
    assert sums.known_intents() == sorted({i for i in o.intent if i is not None})
    assert sums.labeled == int(mask.sum()) and sums.requests == o.n
    assert sums.ts_range == (float(o.timestamp_s.min()), float(o.timestamp_s.max()))
    _check_production(o, production, chosen, labeled, on_labeled, weights, sums)
    _check_intervals(o, chosen, labeled, on_labeled, weights, sums)


def take_rows_assignment(a: Assignment, mask: np.ndarray) -> Assignment:
    return dataclasses.replace(
        a, **{f.name: getattr(a, f.name)[mask] for f in dataclasses.fields(a) if f.name != "path"}
    )


def _check_production(o, production, chosen, labeled, on_labeled, weights, sums) -> None:
    old = production_as_logged(o, *production, chosen, weights)
    w = None if weights is None else weights[o.labeled]
    new = production_of_sums(labeled, on_labeled, o.n, sums.production, w)
    if old is None:
        assert new is None
        return
    assert new is not None
    money = ("cost_per_1k_requests_usd", "savings_vs_premium")
    assert _close(new.recommended_cost_per_1k_usd, old.recommended_cost_per_1k_usd)
    for name in money:
        assert _close(getattr(new.metrics, name), getattr(old.metrics, name)), name
    same_money = {m: getattr(old.metrics, m) for m in money}
    assert (
        dataclasses.replace(
            new,
            metrics=dataclasses.replace(new.metrics, **same_money),
            recommended_cost_per_1k_usd=old.recommended_cost_per_1k_usd,
        )
        == old
    )  # every other field bit for bit (latency percentiles, quality, shares, counts)


def _check_intervals(o, chosen, labeled, on_labeled, weights, sums) -> None:
    old = policy_intervals(o, chosen, weights, 3, 0.9)
    w = None if weights is None else weights[o.labeled]
    new = policy_intervals_of_sums(
        on_labeled.label, labeled.label[:, -1], w, sums.cost, sums.escalated, 3, 0.9
    )
    assert set(new) == set(old)
    for name in ("quality", "quality_drop", "escalation_rate"):
        assert new[name] == old[name], name
    for name in ("cost_per_1k_requests_usd", "savings_vs_premium"):
        assert _close(new[name].low, old[name].low) and _close(new[name].high, old[name].high)


def _keyword_index(o: Outcomes, seed: int) -> tuple[dict, dict[str, np.ndarray]]:
    """Keyword-rule families and a router, with the per-request columns they read."""
    rng = np.random.default_rng(seed + 7)
    k = len(o.tiers)
    forced = np.where(rng.uniform(size=o.n) < 0.3, rng.integers(0, k, o.n), -1)
    scores = rng.uniform(0, 1, size=o.n)
    families = [
        *keyword_families(o, forced, {2: 9, 3: 4, 4: 3}),
        Family(
            "router", (0, k - 1), (threshold_grid(scores, 7),), scores=scores, overhead_usd=3e-6
        ),
    ]
    return policy_index(o, families), {RULE_TIER: forced, ROUTER_SCORE: scores}


@pytest.mark.parametrize(
    ("k", "seed", "keyword"),
    [(2, 0, False), (3, 1, False), (4, 2, False), (3, 3, False), (3, 4, True), (4, 5, True)],
)
def test_sections_of_sums_equal_the_per_request_sections(k: int, seed: int, keyword: bool) -> None:
    o, production = segmented(seed, 700, k)
    index, columns = _keyword_index(o, seed) if keyword else (_index(o), {})
    rng = np.random.default_rng(seed)
    ids = sorted(index)
    weights = rng.uniform(1.0, 5.0, size=o.n) if seed % 2 else None
    chosen_ids = [ids[i] for i in rng.choice(len(ids), size=6, replace=False)]
    if keyword:  # a router and a rules policy among them, whatever the draw
        chosen_ids[:2] = [min(p for p in ids if p.startswith(s)) for s in ("router", "rules")]
    for chosen_id, alt_id in zip(
        chosen_ids,
        [None, *(ids[i] for i in rng.choice(len(ids), size=5, replace=False))],
        strict=True,
    ):
        chosen = _policy(o, *index[chosen_id])
        alternative = None if alt_id is None else _policy(o, *index[alt_id])
        overhead = index[chosen_id][0].overhead_usd
        sums = sums_for(o, production, chosen, alternative, columns, overhead)
        walked = assign(o, *index[chosen_id])
        alt = None if alt_id is None else assign(o, *index[alt_id])
        check_sections(o, production, walked, alt, weights, sums)


def test_production_unknown_on_too_many_requests_is_none() -> None:
    o, (called, served) = segmented(5, 300, 3)
    served = np.where(np.arange(o.n) % 5 == 0, -1, served)  # 80% known: below the coverage
    policy = Policy("always", (o.tiers[-1],))
    sums = sums_for(o, (called, served), policy)
    labeled = take_rows(o, o.labeled)
    walked = assign(o, Family("always", (2,)), ())
    chosen = take_rows_assignment(walked, o.labeled)
    assert production_of_sums(labeled, chosen, o.n, sums.production) is None
    assert production_as_logged(o, called, served, walked) is None


def test_rule_hits_from_counts_equal_the_per_request_hits() -> None:
    o = random_outcomes(11, 500, 3)
    winner = np.random.default_rng(3).integers(-1, 3, size=o.n)
    rules = RulesFile(
        rules=(
            RuleSpec(pattern="a", tier="t2"),
            RuleSpec(pattern="b", tier="t0", name="cheap"),
            RuleSpec(pattern="c", tier="t1"),
        )
    )
    hits = np.bincount(winner + 1, minlength=4)[1:].tolist()
    labeled = take_rows(o, o.labeled)
    assert rule_hits_of_counts(rules, hits, winner[o.labeled], labeled) == rule_hits(
        rules, winner, o
    )


# --- the sample logs' store ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sections") / "sample.duckdb"
    with Store.open(path) as store:
        root = Path(__file__).resolve().parents[1] / "sample_logs"
        ingest(store, [root], strict=False, clock=lambda: datetime(2026, 11, 1, tzinfo=UTC))
    return path


@pytest.mark.e2e
def test_sections_on_the_sample_store(sample_store: Path) -> None:
    """The relation built from the store carries production's paths; every section from it
    equals the per-request reference for the golden recommendation (and an alternative), and
    routing.yaml's intervals print the same digits."""
    root = Path(__file__).resolve().parents[1] / "sample_logs"
    tiers = load_tiers(root / "tiers.yaml")
    with Store.open(sample_store, read_only=True) as store:
        o = store.outcomes(tiers.names, price_table(tiers))
        production = store.production_paths(tiers.names, o.request_ids)
        rows = build_outcome_rows(store.con, tiers.names, price_table(tiers))
        query = DuckDbEngine(store.con).query  # fetchnumpy: exact sums survive it as text
        stored = query(f"SELECT prod_called, prod_served FROM {rows.relation} ORDER BY request_id")
        bits = (production[0].astype(np.int64) << np.arange(len(tiers.names))).sum(axis=1)
        assert (stored["prod_called"] == bits).all()
        assert (stored["prod_served"] == production[1]).all()
        assert (production[1] >= 0).mean() > 0.9  # production is known on these logs
        chosen = Policy("cascade", ("medium", "large"), (0.7556,))
        alternative = Policy("cascade", tiers.names, (0.5, 0.62))
        sums = section_sums(query, rows.relation, tiers.names, chosen, alternative)
        window = store.data_window_of(sums.requests, sums.labeled, rows.incomplete, sums.ts_range)
        assert window == store.data_window(o)
    family = Family("cascade", (1, 2), (np.array([0.7556]),))
    walked = assign(o, family, (0,))
    alt = assign(o, Family("cascade", (0, 1, 2), (np.array([0.5]), np.array([0.62]))), (0, 0))
    assert sums.stage_counts == tuple(np.bincount(walked.stage, minlength=2).tolist())
    labeled = take_rows(o, o.labeled)
    on_labeled = take_rows_assignment(walked, o.labeled)
    old = policy_intervals(o, walked, None, 0, 0.95)
    new = policy_intervals_of_sums(
        on_labeled.label, labeled.label[:, -1], None, sums.cost, sums.escalated, 0, 0.95
    )
    digits = METRIC_DIGITS
    for name, interval in new.items():
        assert _rounded(interval, digits[name]) == _rounded(old[name], digits[name]), name
    check_sections(o, production, walked, alt, None, sums)


def _rounded(interval: Interval, digits: int) -> tuple[float, float]:
    return round(interval.low, digits), round(interval.high, digits)


@pytest.mark.parametrize("tiers", [("small", "medium", "large"), ("small", "large")])
def test_the_built_relation_carries_production_paths(tmp_path: Path, tiers: tuple) -> None:
    """prod_called / prod_served of the built relation are `production_paths`: kept on the
    cheap tier, escalated, a failed prod attempt, replay only, a logged served tier."""
    lines = [
        _line("a", [_attempt("small"), _attempt("large", "shadow"), _attempt("medium", "shadow")]),
        _line("b", [_attempt("small"), _attempt("large"), _attempt("medium", "shadow")]),
        _line("c", [_attempt("small"), _attempt("large", status="error"), _attempt("medium")]),
        _line("d", [_attempt("small", "shadow"), _attempt("large", "shadow"), _attempt("medium")]),
        _line("e", [_attempt("small"), _attempt("large"), _attempt("medium")], served_tier="small"),
        _line("f", [_attempt("medium"), _attempt("large", "shadow"), _attempt("small", "shadow")]),
    ]
    logs = tmp_path / "logs.jsonl"
    logs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with Store.open(tmp_path / "s.duckdb") as store:
        ingest(store, [logs], strict=True, clock=lambda: CLOCK)
        rows = build_outcome_rows(store.con, list(tiers), {})
        got = duckdb_query(store.con)(
            f"SELECT request_id, prod_called, prod_served FROM {rows.relation} ORDER BY request_id"
        )
        called, served = store.production_paths(tiers, got["request_id"])
    assert rows.requests == 6
    bits = (called.astype(np.int64) << np.arange(len(tiers))).sum(axis=1)
    assert got["prod_called"].tolist() == bits.tolist()
    assert got["prod_served"].tolist() == served.tolist()
    assert len(set(served.tolist())) >= 3  # unknown, cheap and dearer tiers all appear
