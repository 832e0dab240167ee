"""The outcome relation: one row per complete request, one column group per tier, in SQL.

This is what the sweep aggregates at scale (`aggregates_sql`): the same table as `Outcomes`, but
kept in the SQL engine (a DuckDB temp table here, a Spark view on a lake's Parquet with
`--engine spark`), so that Python pulls only per-cell sums and the labeled rows.

Columns (tier position k = 0 … K-1, in tiers.yaml order):

| column | type | meaning (as `Outcomes` has it) |
|---|---|---|
| `request_id` | VARCHAR | the request |
| `ts_s` | DOUBLE | epoch seconds |
| `region`, `app` | VARCHAR | '' when absent |
| `intent` | VARCHAR | `metadata.intent`, NULL when absent |
| `input_tokens` | BIGINT | the request's, else the most any attempt reported, else len(messages)/4 |
| `conf_k` | DOUBLE | NULL: no signal (missing, null, non-finite, or the attempt not `ok`) |
| `cost_usd_k` | DOUBLE | the attempt's cost, or its tokens priced by tiers.yaml |
| `latency_ms_k` | DOUBLE | 0 when missing |
| `label_k` | DOUBLE | NULL when unlabeled |
| `labeled` | BOOLEAN | every `label_k` is present |

The attempt and the label used per (request, tier) are the ones `outcomes_sql` picks; only requests
with an attempt from every tier are rows (the others are counted in `OutcomeRows.incomplete`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from calibrate.records.outcomes import Outcomes
from calibrate.store.outcomes_sql import _ATTEMPTS, _LABELS, _check_costs

RELATION = "outcome_rows"


@dataclass(frozen=True)
class OutcomeRows:
    """A built outcome relation: its name in the SQL engine, its tiers, its row count and the
    requests left out for missing a tier."""

    relation: str
    tiers: tuple[str, ...]
    requests: int
    incomplete: int


def tier_columns(k: int) -> list[str]:
    """The per-tier columns of tier position k."""
    return [f"conf_{k}", f"cost_usd_{k}", f"latency_ms_{k}", f"label_{k}"]


def _pivot(k: int) -> str:
    """SELECT list turning picked (request, tier) rows into the per-tier columns."""
    parts = []
    for j in range(k):
        parts += [
            f"max(confidence) FILTER (WHERE k = {j + 1}) AS conf_{j}",
            f"max(cost_usd) FILTER (WHERE k = {j + 1}) AS cost_usd_{j}",
            f"max(latency_ms) FILTER (WHERE k = {j + 1}) AS latency_ms_{j}",
            f"max(score) FILTER (WHERE k = {j + 1}) AS label_{j}",
        ]
    return ",\n       ".join(parts)


def build_outcome_rows(
    con: duckdb.DuckDBPyConnection,
    tiers: Sequence[str],
    price_per_mtok: Mapping[str, tuple[float, float]],
) -> OutcomeRows:
    """(Re)create the temp table `outcome_rows` from the store's requests, attempts and labels."""
    names = list(tiers)
    prices = [price_per_mtok.get(name, (None, None)) for name in names]
    params = {
        "tiers": names,
        "price_in": [p[0] for p in prices],
        "price_out": [p[1] for p in prices],
    }
    k = len(names)
    has = ", ".join(f"bool_or(k = {j + 1}) AS has_{j}" for j in range(k))
    labeled = " AND ".join(f"label_{j} IS NOT NULL" for j in range(k))
    sql = f"""
CREATE OR REPLACE TEMP TABLE {RELATION} AS
WITH att AS ({_ATTEMPTS}),
picked AS (
    SELECT rid, k, best.confidence, best.cost_usd, best.latency_ms
    FROM (SELECT rid, k, arg_min({{'confidence': confidence, 'cost_usd': cost_usd,
                                   'latency_ms': latency_ms}}, pick_order) AS best
          FROM att WHERE k > 0 GROUP BY rid, k)),
tokens AS (SELECT rid, max(input_tokens) AS attempt_tokens FROM att GROUP BY rid),
lab AS ({_LABELS}),
best_label AS (SELECT rid, k, arg_min({{'score': score}}, pick_order).score AS score
               FROM lab GROUP BY rid, k),
cells AS (
    SELECT p.rid, p.k, p.confidence, p.cost_usd, p.latency_ms, b.score
    FROM picked p LEFT JOIN best_label b USING (rid, k)),
wide AS (
    SELECT rid, {_pivot(k)}, {has}
    FROM cells GROUP BY rid)
SELECT r.request_id, epoch(r.ts) AS ts_s, COALESCE(r.region, '') AS region,
       COALESCE(r.app, '') AS app, r.metadata->>'intent' AS intent,
       CAST(COALESCE(r.input_tokens, t.attempt_tokens,
                     CAST(length(CAST(r.messages AS VARCHAR)) / 4 AS BIGINT)) AS BIGINT) AS input_tokens,
       {", ".join(c for j in range(k) for c in tier_columns(j))},
       ({labeled}) AS labeled
FROM wide w
JOIN requests r ON r.rowid = w.rid
LEFT JOIN tokens t ON t.rid = w.rid
WHERE {" AND ".join(f"has_{j}" for j in range(k))}
"""
    con.execute(sql, params)
    (rows,) = con.execute(f"SELECT count(*) FROM {RELATION}").fetchall()[0]
    (total,) = con.execute("SELECT count(*) FROM requests").fetchall()[0]
    _check_missing_costs(con, names, set(price_per_mtok))
    return OutcomeRows(RELATION, tuple(names), int(rows), int(total - rows))


def _check_missing_costs(
    con: duckdb.DuckDBPyConnection, names: list[str], priced: set[str]
) -> None:
    """The same error `load_outcomes` raises when a tier's attempts have no cost and no price."""
    k = len(names)
    counts = con.execute(
        "SELECT "
        + ", ".join(f"count(*) FILTER (WHERE cost_usd_{j} IS NULL)" for j in range(k))
        + f" FROM {RELATION}"
    ).fetchall()[0]
    cost = np.zeros((1, k))
    cost[0, [j for j in range(k) if counts[j]]] = np.nan
    _check_costs(names, cost, np.ones((1, k), dtype=bool), priced)


def register_outcome_rows(con: duckdb.DuckDBPyConnection, outcomes: Outcomes) -> OutcomeRows:
    """(Re)create `outcome_rows` from an in-memory `Outcomes` (tests, and the reference the SQL
    aggregates are checked against)."""
    k = len(outcomes.tiers)
    columns: dict[str, pa.Array] = {
        "request_id": pa.array(outcomes.request_ids.astype(str), pa.string()),
        "ts_s": pa.array(outcomes.timestamp_s, pa.float64()),
        "region": pa.array(outcomes.region.astype(str), pa.string()),
        "app": pa.array(outcomes.app.astype(str), pa.string()),
        "intent": pa.array([None if i is None else str(i) for i in outcomes.intent], pa.string()),
        "input_tokens": pa.array(outcomes.input_tokens.astype(np.int64), pa.int64()),
    }
    for j in range(k):
        for name, values in zip(
            tier_columns(j),
            (outcomes.confidence, outcomes.cost_usd, outcomes.latency_ms, outcomes.label),
            strict=True,
        ):
            column = values[:, j].astype(np.float64)
            nulls = np.isnan(column) if name.startswith(("conf", "label")) else None
            columns[name] = pa.array(column, pa.float64(), mask=nulls)
    columns["labeled"] = pa.array(outcomes.labeled, pa.bool_())
    table = pa.table(columns)
    con.register("_outcome_rows_in", table)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {RELATION} AS SELECT * FROM _outcome_rows_in")
    finally:
        con.unregister("_outcome_rows_in")
    return OutcomeRows(RELATION, outcomes.tiers, outcomes.n, outcomes.incomplete)


def labeled_outcomes(con: duckdb.DuckDBPyConnection, rows: OutcomeRows) -> Outcomes:
    """The labeled rows of `outcome_rows` (every tier labeled) as an `Outcomes`, in request_id
    order: what certification, the quality intervals, calibration and the consensus vote read.
    Its `incomplete` is the relation's."""
    k = len(rows.tiers)
    table = con.sql(
        f"SELECT * FROM {rows.relation} WHERE labeled ORDER BY request_id"
    ).to_arrow_table()

    def column(name: str) -> np.ndarray:
        return table.column(name).to_numpy(zero_copy_only=False)

    def per_tier(name: str) -> np.ndarray:
        if not k:
            return np.zeros((table.num_rows, 0))
        return np.stack(
            [np.asarray(column(f"{name}_{j}"), dtype=np.float64) for j in range(k)], axis=1
        )

    intent = np.asarray(column("intent"), dtype=object)
    return Outcomes(
        tiers=rows.tiers,
        request_ids=np.asarray(column("request_id"), dtype=object),
        timestamp_s=np.asarray(column("ts_s"), dtype=np.float64),
        region=np.asarray(column("region"), dtype=object),
        app=np.asarray(column("app"), dtype=object),
        intent=intent,
        input_tokens=np.asarray(column("input_tokens"), dtype=np.int64),
        confidence=per_tier("conf"),
        cost_usd=per_tier("cost_usd"),
        latency_ms=per_tier("latency_ms"),
        label=per_tier("label"),
        incomplete=rows.incomplete,
    )
