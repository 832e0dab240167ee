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
| `prod_called` | INTEGER | the tiers production's `prod` attempts called: bit k set for tier position k (0: no `prod` attempt on these tiers) |
| `prod_served` | INTEGER | the tier position that served in production (the logged `served_tier`, else the last `ok` `prod` attempt's tier), -1 when unknown (no `prod` attempt on these tiers, or none `ok` and none logged) |

The attempt and the label used per (request, tier) are the ones `outcomes_sql` picks; only requests
with an attempt from every tier are rows (the others are counted in `OutcomeRows.incomplete`).
`prod_called` and `prod_served` are what `outcomes_sql.production_paths` returns per request.
A sweep may add per-request columns Python decided (`add_request_column`): `rule_tier` (INTEGER,
the keyword rules' tier position, -1 none) and `router_score` (DOUBLE), read by `sections_sql`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from calibrate.records.outcomes import Outcomes
from calibrate.store.outcomes_sql import LABEL_PRIORITY, _check_costs, tier_params

RELATION = "outcome_rows"
BASE = "outcome_base"


@dataclass(frozen=True)
class Base:
    """The outcome relation's base (every request; `BASE_ONLY`): its qualified name, and the
    tiers with `prod` attempts, in the order of its `prod_status_i` / `prod_latency_ms_i` (and
    of the positions `failed_tier` / `last_ok_tier` hold)."""

    name: str
    prod_tiers: tuple[str, ...]


@dataclass(frozen=True)
class OutcomeRows:
    """A built outcome relation: its name in the SQL engine, its tiers, its row count and the
    requests left out for missing a tier."""

    relation: str
    tiers: tuple[str, ...]
    requests: int
    incomplete: int
    base: Base | None = None  # built from a store's tables (not from an in-memory table, Spark)


def tier_columns(k: int) -> list[str]:
    """The per-tier columns of tier position k."""
    return [f"conf_{k}", f"cost_usd_{k}", f"latency_ms_{k}", f"label_{k}"]


def _pivot(k: int) -> str:
    """SELECT list picking, per tier, the attempt with the lowest pick order: one `arg_min_null`
    per value (a NULL confidence of the picked attempt stays NULL; pick orders are distinct within
    a (request, tier), the attempts' key being (request_id, tier, source)), and a bit per tier
    with an attempt."""
    picks = [
        f"arg_min_null({column}, pick_order) FILTER (WHERE k = {j}) AS {name}{j}"
        for j in range(k)
        for column, name in (("confidence", "c"), ("cost_usd", "u"), ("latency_ms", "l"))
    ]
    return ",\n       ".join([*picks, "bit_or((1 << a.k)::INTEGER) AS tiers_mask"])


def _label_pivot(k: int) -> str:
    picks = [
        f"arg_min_null({column}, pick_order) FILTER (WHERE k = {j}) AS {name}{j}"
        for j in range(k)
        for column, name in (("score", "s"), ("weight", "w"))
    ]
    return ",\n       ".join(picks)


# One attempt per (request, tier), picked as `outcomes_sql` picks it: `ok` first, then `prod`,
# then by source name; one label per (request, tier) by source priority. Attempts and labels are
# grouped by request_id directly (one hash aggregation each), and the requests joined once.
_BUILD = """
CREATE OR REPLACE {temp}TABLE {base} AS
WITH tier_list AS (
    SELECT unnest($tiers::VARCHAR[]) AS tier, generate_subscripts($tiers::VARCHAR[], 1) - 1 AS k,
           unnest($price_in::DOUBLE[]) AS price_in, unnest($price_out::DOUBLE[]) AS price_out),
prod_list AS (
    SELECT unnest($prod_tiers::VARCHAR[]) AS tier,
           generate_subscripts($prod_tiers::VARCHAR[], 1) - 1 AS p),
sources AS (SELECT source, row_number() OVER (ORDER BY source) AS rank
            FROM (SELECT DISTINCT source FROM attempts)),
wide AS (
    SELECT a.request_id, {pivot},
           bit_or(CASE WHEN a.source = 'prod' THEN (1 << a.k)::INTEGER END) AS prod_called,
           arg_max(a.k, a.position) FILTER (WHERE a.source = 'prod' AND a.status = 'ok')
               AS prod_last_ok,
           arg_min(a.p, a.position) FILTER (WHERE a.source = 'prod' AND a.status <> 'ok')
               AS failed_tier,
           arg_max(a.p, a.position) FILTER (WHERE a.source = 'prod' AND a.status = 'ok')
               AS last_ok_tier{prod_pivot}
    FROM (SELECT a.request_id, t.k, p.p, a.source, a.status, a.position,
                 a.latency_ms AS logged_latency_ms,
                 CASE a.status WHEN 'ok' THEN 0 WHEN 'error' THEN 1 WHEN 'timeout' THEN 2
                               ELSE 3 END AS status_code,
                 ((a.status <> 'ok')::INT * 2 + (a.source <> 'prod')::INT) * 65536 + s.rank
                     AS pick_order,
                 CASE WHEN a.status = 'ok' AND isfinite(a.confidence) THEN a.confidence END
                     AS confidence,
                 COALESCE(a.cost_usd, (COALESCE(a.input_tokens, 0) * t.price_in
                          + COALESCE(a.output_tokens, 0) * t.price_out) / 1e6) AS cost_usd,
                 COALESCE(a.latency_ms, 0) AS latency_ms
          FROM attempts a LEFT JOIN tier_list t USING (tier) LEFT JOIN prod_list p USING (tier)
               JOIN sources s USING (source)) a
    GROUP BY a.request_id),
label_sources AS (SELECT source, row_number() OVER (ORDER BY source) AS rank
                  FROM (SELECT DISTINCT source FROM labels)),
label_wide AS (
    SELECT l.request_id, {label_pivot}
    FROM (SELECT l.request_id, t.k, {priority} * 65536 + s.rank AS pick_order, l.score,
                 l.weight
          FROM labels l JOIN tier_list t USING (tier) JOIN label_sources s USING (source)) l
    GROUP BY l.request_id){tokens_cte}
SELECT r.request_id, epoch(r.ts) AS ts_s, COALESCE(r.region, '') AS region,
       COALESCE(r.app, '') AS app, r.metadata->>'intent' AS intent,
       {input_tokens} AS input_tokens,
       {columns},
       ({labeled}) AS labeled,
       CAST(COALESCE(w.prod_called, 0) AS INTEGER) AS prod_called,
       CAST(CASE WHEN w.prod_called IS NULL THEN -1
                 ELSE COALESCE(served.k, w.prod_last_ok, -1) END AS INTEGER) AS prod_served,
       COALESCE(w.tiers_mask, 0) = {all_tiers} AS complete,
       {label_weight} AS label_weight,
       CAST(r.ts AS DATE) AS day, r.served_tier AS logged_served_tier,
       w.* EXCLUDE ({wide_only})
FROM requests r
LEFT JOIN wide w USING (request_id)
LEFT JOIN label_wide lw USING (request_id)
LEFT JOIN tier_list served ON served.tier = r.served_tier{tokens_join}
"""


# Per tier with `prod` attempts (every tier the logs name, not only the sweep's: at most one `prod`
# attempt per request and tier, the attempts' key being (request_id, tier, source)), its status
# (`STATUS_CODES`) and logged latency: what endpoint health reads from the base (`health_sql`)
# instead of joining every attempt to its request again. `failed_tier` and `last_ok_tier` are
# positions in the same list of tiers (numbers aggregate much faster than strings).
def _prod_pivot(prod_tiers: int) -> str:
    return "".join(
        f",\n           max(a.status_code) FILTER (WHERE a.source = 'prod' AND a.p = {i})"
        f" AS prod_status_{i},\n           max(a.logged_latency_ms) FILTER (WHERE a.source = 'prod'"
        f" AND a.p = {i}) AS prod_latency_ms_{i}"
        for i in range(prod_tiers)
    )


STATUS_CODES = {"ok": 0, "error": 1, "timeout": 2}
"""`prod_status_i`: the attempt's status as a number (3: any other status)."""


BASE_ONLY = ("complete", "label_weight", "day", "logged_served_tier", "failed_tier", "last_ok_tier")
"""The base's columns beyond `outcome_rows`' (and `prod_status_i`, `prod_latency_ms_i` per tier of
`BaseTiers.prod`)."""


# Only when some request has no input_tokens: the most any of its attempts reported, else the
# length of its messages / 4.
_TOKENS_CTE = """,
attempt_tokens AS (
    SELECT request_id, max(input_tokens) AS attempt_tokens FROM attempts
    WHERE request_id IN (SELECT request_id FROM requests WHERE input_tokens IS NULL)
    GROUP BY request_id)"""
_TOKENS = """CAST(COALESCE(r.input_tokens, tok.attempt_tokens,
                     CAST(length(CAST(r.messages AS VARCHAR)) / 4 AS BIGINT)) AS BIGINT)"""


def build_outcome_rows(
    con: duckdb.DuckDBPyConnection,
    tiers: Sequence[str],
    price_per_mtok: Mapping[str, tuple[float, float]],
    scratch: str | None = None,
) -> OutcomeRows:
    """(Re)create `outcome_rows` from the store's requests, attempts and labels: the temp table
    `outcome_base` holds every request (with `complete`, and `label_weight`: the largest 1/π
    weight of its picked labels, NULL when none is weighted), and `outcome_rows` is the view of
    its complete requests. One aggregation of the attempts serves both the sweep and its
    preflight (`check_sql.preflight_cells` reads the base). `scratch`: an attached writable
    database to hold the base instead (a file: DuckDB stores it compressed and pages it, so its
    size in memory stays within the memory limit; see `base_name`)."""
    names = list(tiers)
    params = tier_params(names, price_per_mtok)
    k = len(names)
    (untokened,) = con.execute(
        "SELECT count(*) FROM requests WHERE input_tokens IS NULL"
    ).fetchall()[0]
    columns = []
    for j in range(k):
        columns += [f"w.c{j} AS conf_{j}", f"w.u{j} AS cost_usd_{j}"]
        columns += [f"w.l{j} AS latency_ms_{j}", f"lw.s{j} AS label_{j}"]
    weights = ", ".join(f"lw.w{j}" for j in range(k))
    base = base_name(scratch)
    prod_tiers = [
        t
        for (t,) in con.execute(
            "SELECT DISTINCT tier FROM attempts WHERE source = 'prod' ORDER BY tier"
        ).fetchall()
    ]
    sql = _BUILD.format(
        prod_pivot=_prod_pivot(len(prod_tiers)),
        wide_only=", ".join(
            ["request_id", "tiers_mask", "prod_called", "prod_last_ok"]
            + [f"{c}{j}" for j in range(k) for c in "cul"]
        ),
        temp="" if scratch else "TEMP ",
        base=base,
        pivot=_pivot(k),
        label_pivot=_label_pivot(k),
        priority=LABEL_PRIORITY,
        tokens_cte=_TOKENS_CTE if untokened else "",
        tokens_join=" LEFT JOIN attempt_tokens tok USING (request_id)" if untokened else "",
        input_tokens=_TOKENS if untokened else "r.input_tokens",
        columns=", ".join(columns),
        labeled=" AND ".join(f"lw.s{j} IS NOT NULL" for j in range(k)) or "TRUE",
        all_tiers=(1 << k) - 1,
        label_weight=f"GREATEST({weights})" if k else "CAST(NULL AS DOUBLE)",
    )
    drop_relation(con, scratch)
    con.execute(sql, {**params, "prod_tiers": prod_tiers})
    extra = [*BASE_ONLY]
    extra += [f"prod_{c}_{i}" for i in range(len(prod_tiers)) for c in ("status", "latency_ms")]
    con.execute(
        f"CREATE TEMP VIEW {RELATION} AS SELECT * EXCLUDE ({', '.join(extra)}) "
        f"FROM {base} WHERE complete"
    )
    (rows,) = con.execute(f"SELECT count(*) FROM {RELATION}").fetchall()[0]
    (total,) = con.execute("SELECT count(*) FROM requests").fetchall()[0]
    _check_missing_costs(con, names, set(price_per_mtok))
    return OutcomeRows(
        RELATION, tuple(names), int(rows), int(total - rows), Base(base, tuple(prod_tiers))
    )


def base_name(scratch: str | None) -> str:
    """The qualified name of the outcome base: a temp table, or a table of the `scratch`
    database."""
    return f"{scratch}.{BASE}" if scratch else BASE


def drop_relation(
    con: duckdb.DuckDBPyConnection, scratch: str | None = None, *, base: bool = True
) -> None:
    """Drop `outcome_rows` (a view over its base, or a table) and, with `base`, the base, if
    present."""
    kinds = con.execute(
        "SELECT 'VIEW' FROM duckdb_views() WHERE temporary AND view_name = $name UNION ALL "
        "SELECT 'TABLE' FROM duckdb_tables() WHERE temporary AND table_name = $name",
        {"name": RELATION},
    ).fetchall()
    for (kind,) in kinds:
        con.execute(f"DROP {kind} {RELATION}")
    if base:
        con.execute(f"DROP TABLE IF EXISTS {base_name(scratch)}")


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


def register_outcome_rows(
    con: duckdb.DuckDBPyConnection,
    outcomes: Outcomes,
    production: tuple[np.ndarray, np.ndarray] | None = None,
) -> OutcomeRows:
    """(Re)create `outcome_rows` from an in-memory `Outcomes` (tests, and the reference the SQL
    aggregates are checked against); `production`: `production_paths` of its rows (called
    (n × k) bool, served tier index or -1), else no production (0, -1)."""
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
    called = np.zeros((outcomes.n, k), dtype=bool) if production is None else production[0]
    served = np.full(outcomes.n, -1) if production is None else production[1]
    bits = (called.astype(np.int64) << np.arange(k)[None, :]).sum(axis=1)
    columns["prod_called"] = pa.array(bits.astype(np.int32), pa.int32())
    columns["prod_served"] = pa.array(np.asarray(served).astype(np.int32), pa.int32())
    table = pa.table(columns)
    drop_relation(con)
    con.register("_outcome_rows_in", table)
    try:
        con.execute(f"CREATE TEMP TABLE {RELATION} AS SELECT * FROM _outcome_rows_in")
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


def add_request_column(
    con: duckdb.DuckDBPyConnection,
    rows: OutcomeRows,
    name: str,
    request_ids: np.ndarray,
    values: np.ndarray,
) -> None:
    """Add a per-request column to the relation, joined by request_id (NULL for a request not
    in `request_ids`; NaN is NULL): what Python decided per request and the SQL reads, e.g. the
    keyword rules' tier (`sections_sql.RULE_TIER`) or a router's score (`ROUTER_SCORE`)."""
    values = np.asarray(values)
    floating = values.dtype.kind == "f"
    column = pa.array(values, mask=np.isnan(values) if floating else None)
    table = pa.table({"request_id": pa.array(np.asarray(request_ids).astype(str)), name: column})
    con.register("_request_column_in", table)
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _with_column AS SELECT o.*, c.{name} "
            f"FROM {rows.relation} o LEFT JOIN _request_column_in c USING (request_id)"
        )
    finally:
        con.unregister("_request_column_in")
    drop_relation(con, base=False)  # the base stays: endpoint health reads it
    con.execute(f"ALTER TABLE _with_column RENAME TO {rows.relation}")
