"""Endpoint health for the sweep report (strategy 4): no cost benefit on its own, it says where the
logged production traffic was not served as intended.

Per tier × region × day: prod latency p50/p95, error and timeout rates and the fallback share
(`store.endpoint_health`). Outage windows and the traffic that silently got a cheaper tier come from
`monitor_health` (the same detector `monitor` runs), with the whole data window as reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import polars as pl

from calibrate.stats.regional_health import Health, degraded_mask, regional_health
from calibrate.store import Store


@dataclass(frozen=True)
class EndpointHealth:
    """The per tier × region × day table and the regional outages."""

    table: pl.DataFrame
    health: Health

    def downgraded_by_region(self) -> dict[str, int]:
        """Per region, the requests served by a cheaper tier because the intended one failed."""
        out: dict[str, int] = {}
        for row in self.health.days:
            out[row.region] = out.get(row.region, 0) + row.degraded
        return dict(sorted(out.items()))


def endpoint_health(store: Store, tiers: tuple[str, ...]) -> EndpointHealth:
    """Health of the stored production traffic over every day of the logs."""
    log = store.request_log(list(tiers))
    days_of = np.array(
        [datetime.fromtimestamp(float(t), UTC).date() for t in log.timestamp_s], dtype=object
    )
    days: list[date] = sorted(set(days_of.tolist()))
    position = {d: i for i, d in enumerate(days)}
    day_index = np.array([position[d] for d in days_of.tolist()], dtype=np.int64)
    region = np.array([str(r) or "(none)" for r in log.region], dtype=object)
    degraded = degraded_mask(log.served_tier, log.failed_tier, log.tier_cost_usd)
    health = regional_health(
        region,
        day_index,
        days,
        np.ones(log.n, dtype=bool),
        degraded,
        (log.failed_tier, log.served_tier),
    )
    return EndpointHealth(store.endpoint_health(), health)
