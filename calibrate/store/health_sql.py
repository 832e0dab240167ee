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
    rows = con.execute(_TRAFFIC).fetchnumpy()
    return RegionDayTraffic(
        region=np.asarray(rows["region"], dtype=object),
        day=np.asarray(rows["day"], dtype=np.int64),
        failed_tier=np.asarray(rows["failed_tier"], dtype=object),
        served_tier=np.asarray(rows["served_tier"], dtype=object),
        requests=np.asarray(rows["requests"], dtype=np.int64),
        tier_cost_usd={t: float(c) for t, c in con.execute(TIER_COSTS).fetchall()},
    )
