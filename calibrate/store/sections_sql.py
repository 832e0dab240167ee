"""The chosen policy's report sections as aggregates over the outcome relation, in portable SQL.

`section_sums(query, relation, tiers, chosen, alternative)` walks every row of `outcome_rows`
(`outcome_rows_sql`) through the chosen policy's stop rule written in SQL (`stage_sql`: a cascade
keeps a request at the first tier whose confidence is ≥ its threshold, NULL never keeps, +inf
keeps nothing; a length rule sends input_tokens ≤ N to the cheaper tier; always-one-tier stops
at once; a router keeps on its score like a cascade and adds its price per request; keyword
rules first (`rules`, `hybrid`) send a request to their tier alone), and returns what the
sections need from all requests (`records.sections.SectionSums`): requests per stop, exact cost
sums and sums of squares (nano-USD in DECIMAL(38,0)), requests and escalations per segment value
and per region × week, and production as logged (counts, costs, exact latency percentiles by a
bucket histogram then the values of the two buckets that hold the ranks). Routers and keyword
rules decide on per-request values Python computes (scores, prompt matches): the relation then
carries them as the columns `ROUTER_SCORE` and `RULE_TIER` (`outcome_rows_sql.add_request_column`).

The SQL is the common subset of DuckDB and Spark SQL (`exact_sql`), built with the relation's
name and literal numbers, and run by an `AggregateQuery`: sql → {column: numpy array}.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from calibrate.records.policy import Policy
from calibrate.records.sections import (
    CostSums,
    ProductionSums,
    SectionSums,
    SegmentCount,
    WeekCount,
)
from calibrate.store.exact_sql import (
    double,
    exact_product_sum_sql,
    exact_sum_sql,
    nano_usd,
)

AggregateQuery = Callable[[str], Mapping[str, np.ndarray]]
"""Runs one aggregate query: its columns as numpy arrays (integers may come as Python ints or
Decimals in object arrays, NULL as None)."""

SEGMENTS = ("app", "region", "intent")  # `failure_modes.segment_columns`, in its order
PERCENTILES = (50, 95)  # `grid.PERCENTILES`
_LATENCY_BUCKETS = 4096


class UnsupportedPolicy(ValueError):
    """A policy whose stop rule needs per-request values the outcome relation does not hold."""


def duckdb_query(con: duckdb.DuckDBPyConnection) -> AggregateQuery:
    """The aggregate runner on a DuckDB connection (fully read: DuckDB 2 refuses other work
    while a result is half read)."""

    def run(sql: str) -> dict[str, np.ndarray]:
        table = con.sql(sql).to_arrow_table()
        return {name: _numpy(table.column(name)) for name in table.column_names}

    return run


def _numpy(column: pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_decimal(column.type) or column.null_count:
        return np.array(column.to_pylist(), dtype=object)
    return column.to_numpy()


def _int(value: object) -> int:
    """An exact integer from what a runner returns for a COUNT or an exact sum (text, `exact_sql`;
    None: an empty sum)."""
    return 0 if value is None else int(value)  # type: ignore[call-overload]


# --- the stop rule ---------------------------------------------------------------------------


def _positions(policy: Policy, tiers: Sequence[str]) -> list[int]:
    return [list(tiers).index(t) for t in policy.tiers]


def _keeps_sql(column: str, threshold: float) -> str:
    """`cascade.keeps` in SQL: confidence ≥ τ; NULL never keeps, nothing keeps under +inf."""
    if math.isinf(threshold):
        return "FALSE" if threshold > 0 else f"({column} IS NOT NULL)"
    return f"({column} >= {double(threshold)})"


RULE_TIER = "rule_tier"
"""Optional column of the relation for `rules` and `hybrid` policies: the tier position the first
matching keyword rule sends the request to, -1 when none matches (`Family.forced`)."""
ROUTER_SCORE = "router_score"
"""Optional column of the relation for `router` policies: the learned router's score
(`Family.scores`; NULL never keeps)."""


def stage_sql(policy: Policy, tiers: Sequence[str]) -> str:
    """The index along `policy.tiers` of the stage each row stops at, -1 where a keyword rule
    decides (an INTEGER expression over the relation's columns; `rules` and `hybrid` read
    `RULE_TIER`, `router` reads `ROUTER_SCORE`)."""
    path = _positions(policy, tiers)
    if policy.strategy == "always":
        return "0"
    if policy.strategy in ("cascade", "hybrid", "router"):
        scores = [ROUTER_SCORE] if policy.strategy == "router" else [f"conf_{j}" for j in path]
        keeps = [_keeps_sql(c, t) for c, t in zip(scores, policy.thresholds, strict=False)]
        whens = " ".join(f"WHEN {k} THEN {s}" for s, k in enumerate(keeps))
        stop = f"(CASE {whens} ELSE {len(path) - 1} END)"
    elif policy.strategy in ("length", "rules"):
        stop = "1"
        if policy.cutoff_tokens is not None:
            stop = f"(CASE WHEN input_tokens <= {int(policy.cutoff_tokens)} THEN 0 ELSE 1 END)"
    else:
        raise UnsupportedPolicy(f"{policy.id}: a {policy.strategy} policy has no stop rule")
    if policy.keyword_rules_first:
        return f"(CASE WHEN {RULE_TIER} >= 0 THEN -1 ELSE {stop} END)"
    return stop


def escalated_sql(policy: Policy, tiers: Sequence[str], stage: str = "stage") -> str:
    """1 where the row is served past the path's first tier (a keyword rule's tier: when it is
    dearer than the path's first), else 0."""
    past = f"CASE WHEN {stage} > 0 THEN 1 ELSE 0 END"
    if not policy.keyword_rules_first:
        return f"({past})"
    first = _positions(policy, tiers)[0]
    return f"(CASE WHEN {stage} = -1 THEN (CASE WHEN {RULE_TIER} > {first} THEN 1 ELSE 0 END) ELSE {past} END)"


def cost_sql(
    policy: Policy, tiers: Sequence[str], stage: str = "stage", overhead_usd: float = 0.0
) -> str:
    """The nano-USD a row pays when it stops at `stage` (cascades pay every tier touched, others
    the serving tier plus `overhead_usd`, a router's price per request; a keyword rule's tier
    alone), over the per-tier columns `c_k` of `_rows_sql`."""
    path = _positions(policy, tiers)
    extra = ""
    if not policy.cascading and overhead_usd:
        extra = f" + {nano_usd(double(overhead_usd))}"
    paid = [
        " + ".join(f"c_{j}" for j in path[: s + 1]) if policy.cascading else f"c_{path[s]}{extra}"
        for s in range(len(path))
    ]
    whens = " ".join(f"WHEN {stage} = {s} THEN {c}" for s, c in enumerate(paid))
    if policy.keyword_rules_first:
        ruled = " ".join(f"WHEN {RULE_TIER} = {j} THEN c_{j}" for j in range(len(tiers)))
        whens = f"WHEN {stage} = -1 THEN (CASE {ruled} END) {whens}"
    return f"(CASE {whens} END)"


def _inputs(policies: Sequence[Policy | None]) -> str:
    """The optional per-request columns the policies read."""
    names = []
    if any(p is not None and p.keyword_rules_first for p in policies):
        names.append(RULE_TIER)
    if any(p is not None and p.strategy == "router" for p in policies):
        names.append(ROUTER_SCORE)
    return "".join(f"{n}, " for n in names)


def _rows_sql(
    relation: str,
    tiers: Sequence[str],
    chosen: Policy,
    alternative: Policy | None,
    overhead_usd: float = 0.0,
) -> str:
    """CTEs `q` (per-tier nano-USD, the chosen stop and escalation, the alternative's) and `r`
    (q plus the chosen policy's cost)."""
    nano = ", ".join(f"{nano_usd(f'cost_usd_{j}')} AS c_{j}" for j in range(len(tiers)))
    alt = "0"
    if alternative is not None:
        alt = escalated_sql(alternative, tiers, stage_sql(alternative, tiers))
    return f"""WITH q AS (
    SELECT region, app, intent, ts_s, labeled, prod_called, prod_served, {_inputs([chosen, alternative])}
           {", ".join(f"latency_ms_{j}" for j in range(len(tiers)))},
           {nano},
           {stage_sql(chosen, tiers)} AS stage,
           {alt} AS alt_escalated
    FROM {relation}),
r AS (SELECT q.*, {cost_sql(chosen, tiers, overhead_usd=overhead_usd)} AS cost,
             {escalated_sql(chosen, tiers)} AS escalated FROM q)
"""


def row_stops(
    query: AggregateQuery,
    relation: str,
    tiers: Sequence[str],
    policy: Policy,
    overhead_usd: float = 0.0,
) -> Mapping[str, np.ndarray]:
    """Per row (request_id order): the stage `policy` stops at, its cost in nano-USD and whether
    it escalates. Not an aggregate (its size is the traffic's): what tests check the stop rule
    with."""
    rows = _rows_sql(relation, tiers, policy, None, overhead_usd).replace(
        "SELECT region,", "SELECT request_id, region,", 1
    )
    return query(rows + "SELECT request_id, stage, cost, escalated FROM r ORDER BY request_id")


# --- the sums --------------------------------------------------------------------------------


def section_sums(
    query: AggregateQuery,
    relation: str,
    tiers: Sequence[str],
    chosen: Policy,
    alternative: Policy | None = None,
    overhead_usd: float = 0.0,
) -> SectionSums:
    """Everything the chosen policy's sections need from all rows of `relation` (module
    docstring); `alternative` adds its escalations per segment; `overhead_usd`: a router's
    price per request. Two scans of the relation (money and production per stop; counts per
    segment and week), then two of production's rows for its latency percentiles and one of the
    labeled rows."""
    k = len(tiers)
    rows = _rows_sql(relation, tiers, chosen, alternative, overhead_usd)
    money = _Money.of(query(_money_sql(rows, k)), len(chosen.tiers), k)
    segments, weeks = _counts(query(_counts_sql(rows)), alternative is not None)
    return SectionSums(
        tiers=tuple(tiers),
        path=chosen.tiers,
        stage_counts=money.stage_counts,
        ruled=money.ruled,
        escalated=money.escalated,
        cost=money.cost,
        segments=segments,
        weeks=weeks,
        labeled=money.labeled,
        ts_range=money.ts_range,
        production=_production(query, rows, relation, money),
    )


def _called(j: int) -> str:
    return f"(prod_called & {1 << j}) <> 0"


def _money_sql(rows: str, k: int) -> str:
    """Per (stop, production's served tier, production called more than one tier): requests,
    labeled ones, time range, exact cost sums of the policy and premium, and production's cost
    (the called tiers') and latency range (their latencies summed in tier order, as numpy sums a
    row)."""
    premium = f"c_{k - 1}"
    prod_cost = " + ".join(
        f"(CASE WHEN {_called(j)} THEN COALESCE(c_{j}, 0) ELSE 0 END)" for j in range(k)
    )
    return (
        rows
        + f""", m AS (
    SELECT stage, escalated, prod_served, labeled, ts_s, cost, {premium} AS premium,
           CASE WHEN (prod_called & (prod_called - 1)) <> 0 THEN 1 ELSE 0 END AS prod_multi,
           {prod_cost} AS prod_cost, {_prod_latency_sql(k)} AS prod_latency
    FROM r)
SELECT stage, prod_served, prod_multi, COUNT(*) AS requests, SUM(escalated) AS escalated,
       SUM(CASE WHEN labeled THEN 1 ELSE 0 END) AS labeled,
       MIN(ts_s) AS ts_min, MAX(ts_s) AS ts_max,
       {exact_sum_sql("cost")} AS cost, {exact_product_sum_sql("cost", "cost")} AS cost_sq,
       {exact_sum_sql("premium")} AS premium,
       {exact_product_sum_sql("premium", "premium")} AS premium_sq,
       {exact_product_sum_sql("cost", "premium")} AS cross_sum,
       {exact_sum_sql("prod_cost")} AS prod_cost,
       MIN(prod_latency) AS latency_lo, MAX(prod_latency) AS latency_hi
FROM m GROUP BY stage, prod_served, prod_multi"""
    )


def _prod_latency_sql(k: int) -> str:
    """Production's latency of a row: the called tiers' latencies summed in tier order."""
    return " + ".join(
        f"(CASE WHEN {_called(j)} THEN latency_ms_{j} ELSE 0.0e0 END)" for j in range(k)
    )


@dataclass(frozen=True)
class _Money:
    """`_money_sql`'s groups summed up: per stop (`ruled`: stopped by a keyword rule), over all
    requests, and production's part."""

    stage_counts: tuple[int, ...]
    ruled: int
    escalated: int
    cost: CostSums
    labeled: int
    ts_range: tuple[float, float] | None
    served: tuple[int, ...]
    prod_escalated: int
    prod_cost: int
    prod_premium: int
    prod_chosen: int
    latency_range: tuple[float, float] | None

    @classmethod
    def of(cls, got: Mapping[str, np.ndarray], stops: int, k: int) -> _Money:
        groups = [dict(zip(got, values, strict=True)) for values in zip(*got.values(), strict=True)]
        total = {c: sum(_int(g[c]) for g in groups) for c in _MONEY}
        counts, served = [0] * stops, [0] * k
        for g in groups:
            if int(g["stage"]) >= 0:
                counts[int(g["stage"])] += _int(g["requests"])
        prod = [g for g in groups if int(g["prod_served"]) >= 0]
        for g in prod:
            served[int(g["prod_served"])] += _int(g["requests"])
        ruled = sum(_int(g["requests"]) for g in groups if int(g["stage"]) < 0)
        n = sum(counts) + ruled
        return cls(
            stage_counts=tuple(counts),
            ruled=ruled,
            escalated=total["escalated"],
            cost=CostSums(n, *(total[c] for c in _MONEY[:5])),
            labeled=total["labeled"],
            ts_range=(
                float(min(g["ts_min"] for g in groups)),
                float(max(g["ts_max"] for g in groups)),
            )
            if n
            else None,
            served=tuple(served),
            prod_escalated=sum(_int(g["requests"]) for g in prod if int(g["prod_multi"])),
            prod_cost=sum(_int(g["prod_cost"]) for g in prod),
            prod_premium=sum(_int(g["premium"]) for g in prod),
            prod_chosen=sum(_int(g["cost"]) for g in prod),
            latency_range=(
                float(min(g["latency_lo"] for g in prod)),
                float(max(g["latency_hi"] for g in prod)),
            )
            if prod
            else None,
        )


_MONEY = ("cost", "cost_sq", "premium", "premium_sq", "cross_sum", "labeled", "escalated")

# Epoch seconds truncated toward zero (as `failure_modes.escalation_timeline` casts them), the day,
# and the Monday starting its week (1970-01-01 was a Thursday).
_SECOND = "(CASE WHEN ts_s < 0 THEN CEIL(ts_s) ELSE FLOOR(ts_s) END)"
_DAY = f"FLOOR({_SECOND} / 86400)"
_WEEK_DAY = f"CAST({_DAY} - ({_DAY} + 3 - 7 * FLOOR(({_DAY} + 3) / 7)) AS BIGINT)"


def _counts_sql(rows: str) -> str:
    """Requests and escalations (the policy's, the alternative's) per app, region, intent and
    region × week: one scan, one grouping set each."""
    return (
        rows
        + f"""SELECT GROUPING(app) AS g_app, GROUPING(region) AS g_region,
       GROUPING(intent) AS g_intent, GROUPING(week_day) AS g_week,
       app, region, intent, week_day, COUNT(*) AS requests,
       SUM(escalated) AS escalated, SUM(alt_escalated) AS alt_escalated
FROM (SELECT app, region, intent, {_WEEK_DAY} AS week_day, alt_escalated, escalated
      FROM r) AS s
GROUP BY GROUPING SETS ((app), (region), (intent), (week_day, region))"""
    )


def _counts(
    got: Mapping[str, np.ndarray], with_alt: bool
) -> tuple[tuple[SegmentCount, ...], tuple[WeekCount, ...]]:
    """Segment rows per column (None left out, values sorted as text) and region × week rows."""
    groups = [dict(zip(got, values, strict=True)) for values in zip(*got.values(), strict=True)]
    segments = []
    for column in SEGMENTS:
        mine = [
            g
            for g in groups
            if not int(g[f"g_{column}"]) and (column != "region" or int(g["g_week"]))
        ]
        segments += sorted(
            (
                SegmentCount(
                    column,
                    str(g[column]),
                    _int(g["requests"]),
                    _int(g["escalated"]),
                    _int(g["alt_escalated"]) if with_alt else None,
                )
                for g in mine
                if g[column] is not None
            ),
            key=lambda seg: seg.value,
        )
    weeks = tuple(
        WeekCount(
            int(g["week_day"]),
            None if g["region"] is None else str(g["region"]),
            _int(g["requests"]),
            _int(g["escalated"]),
        )
        for g in groups
        if not int(g["g_week"])
    )
    return tuple(segments), weeks


# --- production as logged --------------------------------------------------------------------


def _production(query: AggregateQuery, rows: str, relation: str, money: _Money) -> ProductionSums:
    n = sum(money.served)
    p50 = p95 = math.nan
    if n and money.latency_range is not None:
        prod = (
            rows
            + f""", p AS (SELECT {_prod_latency_sql(len(money.served))} AS latency_ms
    FROM r WHERE prod_served >= 0)
"""
        )
        ranks = [_rank(pct, n) for pct in PERCENTILES]
        p50, p95 = _order_statistics(query, prod, money.latency_range, ranks)
    labeled = query(
        f"SELECT request_id, prod_served FROM {relation} WHERE labeled ORDER BY request_id"
    )
    return ProductionSums(
        requests=n,
        escalated=money.prod_escalated,
        served=money.served,
        cost_nano_usd=money.prod_cost,
        premium_nano_usd=money.prod_premium,
        chosen_nano_usd=money.prod_chosen,
        latency_p50_ms=p50,
        latency_p95_ms=p95,
        labeled_ids=np.asarray(labeled["request_id"], dtype=object),
        labeled_served=np.asarray(labeled["prod_served"], dtype=np.int64),
    )


def _rank(pct: int, n: int) -> int:
    """`grid.percentile_rank`: the 1-based nearest rank."""
    return max(1, (pct * n + 99) // 100)


def _order_statistics(
    query: AggregateQuery, prows: str, bounds: tuple[float, float], ranks: list[int]
) -> list[float]:
    """The values at 1-based `ranks` of p.latency_ms, exactly: a histogram over equal-width
    buckets (the bucket map is monotone, so buckets are ordered like their values), then the
    distinct values of the buckets holding the ranks."""
    lo, hi = bounds
    scale = _LATENCY_BUCKETS / (hi - lo) if hi > lo else math.inf
    if not math.isfinite(scale):
        if hi == lo:
            return [lo for _ in ranks]
        bucket = "0"  # a span too small (or too large) to cut: every value in one bucket
    else:
        bucket = f"FLOOR((latency_ms - {double(lo)}) * {double(scale)})"
    hist = query(
        prows + f"SELECT b, COUNT(*) AS requests FROM (SELECT {bucket} AS b FROM p) AS h GROUP BY b"
    )
    order = np.argsort(hist["b"].astype(np.float64), kind="stable")
    buckets = hist["b"].astype(np.float64)[order]
    cum = np.cumsum(hist["requests"].astype(np.int64)[order])
    at = [int(np.searchsorted(cum, r, side="left")) for r in ranks]  # bucket holding rank r
    wanted = ", ".join(str(int(buckets[i])) for i in sorted(set(at)))
    values = query(
        prows
        + f"""SELECT b, latency_ms, COUNT(*) AS requests
FROM (SELECT latency_ms, {bucket} AS b FROM p) AS h WHERE b IN ({wanted})
GROUP BY b, latency_ms"""
    )
    of_bucket = values["b"].astype(np.float64)
    out = []
    for r, i in zip(ranks, at, strict=True):
        inside = np.flatnonzero(of_bucket == buckets[i])
        vals = values["latency_ms"].astype(np.float64)[inside]
        counts = values["requests"].astype(np.int64)[inside]
        by_value = np.argsort(vals, kind="stable")
        before = int(cum[i - 1]) if i else 0
        pos = int(np.searchsorted(np.cumsum(counts[by_value]), r - before, side="left"))
        out.append(float(vals[by_value][pos]))
    return out
