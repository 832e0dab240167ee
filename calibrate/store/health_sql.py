"""Reads for endpoint health: per tier × region × day, what the production attempts looked like.

Only `prod` attempts count (shadow replays say nothing about production endpoints). Latency
percentiles are nearest-rank (quantile_disc) over `ok` attempts; error and timeout rates are over
all prod attempts; `fallback_share` is the share of the requests whose first failed prod attempt
was at this tier and that another tier served.

`region_day_traffic` counts every request by region × UTC day × (first failed prod tier, served
tier), from the same rows the monitor's request log reads (`monitor_sql.PRODUCTION_PATHS`): the
regional health detector needs only these counts, whatever the traffic.
"""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl

from calibrate.records.outcomes import RegionDayTraffic
from calibrate.store.monitor_sql import PRODUCTION_PATHS, TIER_COSTS
from calibrate.store.outcome_rows_sql import STATUS_CODES, Base

_HEALTH = """
WITH prod AS (
    SELECT a.request_id, a.tier, a.status, a.latency_ms, COALESCE(r.region, '') AS region,
           CAST(r.ts AS DATE) AS day, r.served_tier
    FROM attempts a JOIN requests r USING (request_id)
    WHERE a.source = 'prod'
),
first_failure AS (
    SELECT request_id, arg_min(tier, rowid) AS tier
    FROM attempts WHERE source = 'prod' AND status <> 'ok'
    GROUP BY request_id
)
SELECT p.tier, p.region, p.day, count(*) AS attempts,
       quantile_disc(p.latency_ms, 0.5) FILTER (WHERE p.status = 'ok') AS latency_p50_ms,
       quantile_disc(p.latency_ms, 0.95) FILTER (WHERE p.status = 'ok') AS latency_p95_ms,
       avg((p.status = 'error')::INT) AS error_rate,
       avg((p.status = 'timeout')::INT) AS timeout_rate,
       avg((f.tier IS NOT NULL AND f.tier = p.tier
            AND COALESCE(p.served_tier, '') <> p.tier)::INT) AS fallback_share
FROM prod p LEFT JOIN first_failure f USING (request_id)
GROUP BY p.tier, p.region, p.day
ORDER BY p.tier, p.region, p.day
"""


def endpoint_health(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """One row per tier × region × day with prod attempts (see the module docstring)."""
    frame = pl.from_arrow(con.sql(_HEALTH).to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


_TRAFFIC = f"""
SELECT region, CAST(floor(ts_s / 86400) AS BIGINT) AS day, failed_tier, served_tier,
       count(*) AS requests
FROM ({PRODUCTION_PATHS})
GROUP BY ALL
ORDER BY ALL
"""


def region_day_traffic(con: duckdb.DuckDBPyConnection) -> RegionDayTraffic:
    """Requests per region × day × (first failed prod tier, served tier) (see the docstring)."""
    return _traffic(con, con.execute(_TRAFFIC).fetchnumpy())


# The same two reads from the sweep's outcome base (`outcome_rows_sql`: one row per request with its
# first failed and last ok `prod` tier, and per tier with `prod` attempts that attempt's status and
# latency), built by the one pass over the attempts the sweep makes anyway. One difference of
# definition: the first failed attempt is the lowest `position` here, the first stored row above
# (the same attempt: ingest stores a request's attempts in their order).
_HEALTH_OF_TIER = """
SELECT $prod_tiers[{n}] AS tier, region, day, count(*) AS attempts,
       quantile_disc(prod_latency_ms_{i}, 0.5) FILTER (WHERE prod_status_{i} = {ok})
           AS latency_p50_ms,
       quantile_disc(prod_latency_ms_{i}, 0.95) FILTER (WHERE prod_status_{i} = {ok})
           AS latency_p95_ms,
       avg((prod_status_{i} = {error})::INT) AS error_rate,
       avg((prod_status_{i} = {timeout})::INT) AS timeout_rate,
       avg((failed_tier IS NOT NULL AND failed_tier = {i}
            AND COALESCE(logged_served_tier, '') <> $prod_tiers[{n}])::INT) AS fallback_share
FROM {base} WHERE prod_status_{i} IS NOT NULL
GROUP BY region, day"""

_TRAFFIC_OF_BASE = """
SELECT region, CAST(floor(ts_s / 86400) AS BIGINT) AS day,
       COALESCE($prod_tiers[failed_tier + 1], '') AS failed_tier,
       COALESCE(logged_served_tier, $prod_tiers[last_ok_tier + 1], '') AS served_tier,
       count(*) AS requests
FROM {base}
GROUP BY ALL
ORDER BY ALL
"""


def endpoint_health_of_base(con: duckdb.DuckDBPyConnection, base: Base) -> pl.DataFrame:
    """`endpoint_health` read from the outcome base `base`."""
    if not base.prod_tiers:
        return endpoint_health(con)
    parts = [
        _HEALTH_OF_TIER.format(n=i + 1, i=i, base=base.name, **STATUS_CODES)
        for i in range(len(base.prod_tiers))
    ]
    sql = " UNION ALL ".join(parts) + "\nORDER BY tier, region, day"
    tiers = {"prod_tiers": list(base.prod_tiers)}
    frame = pl.from_arrow(con.sql(sql, params=tiers).to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


def region_day_traffic_of_base(con: duckdb.DuckDBPyConnection, base: Base) -> RegionDayTraffic:
    """`region_day_traffic` read from the outcome base `base`."""
    sql = _TRAFFIC_OF_BASE.format(base=base.name)
    return _traffic(con, con.execute(sql, {"prod_tiers": list(base.prod_tiers)}).fetchnumpy())


def _traffic(con: duckdb.DuckDBPyConnection, rows: dict[str, np.ndarray]) -> RegionDayTraffic:
    return RegionDayTraffic(
        region=np.asarray(rows["region"], dtype=object),
        day=np.asarray(rows["day"], dtype=np.int64),
        failed_tier=np.asarray(rows["failed_tier"], dtype=object),
        served_tier=np.asarray(rows["served_tier"], dtype=object),
        requests=np.asarray(rows["requests"], dtype=np.int64),
        tier_cost_usd={t: float(c) for t, c in con.execute(TIER_COSTS).fetchall()},
    )
