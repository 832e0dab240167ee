"""Endpoint health for the sweep report (strategy 4): no cost benefit on its own, it says where the
logged production traffic was not served as intended.

Per tier × region × day: prod latency p50/p95, error and timeout rates and the fallback share
(`store.endpoint_health`). Outage windows and the traffic that silently got a cheaper tier come from
`monitor_health` (the same detector `monitor` runs), with the whole data window as reference, on
the requests counted per region × day × (failed tier, served tier) by the store
(`store.region_day_traffic`): the work grows with regions and days, not with the traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from calibrate.stats.regional_health import Health, degraded_mask, regional_health
from calibrate.store import Store

_EPOCH = date(1970, 1, 1)


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


def endpoint_health(store: Store) -> EndpointHealth:
    """Health of the stored production traffic over every day of the logs."""
    traffic = store.region_day_traffic()
    day_numbers = np.unique(traffic.day)
    days = [_EPOCH + timedelta(days=int(d)) for d in day_numbers]
    day_index = np.searchsorted(day_numbers, traffic.day)
    region = np.array([str(r) or "(none)" for r in traffic.region], dtype=object)
    degraded = degraded_mask(traffic.served_tier, traffic.failed_tier, traffic.tier_cost_usd)
    health = regional_health(
        region,
        day_index,
        days,
        np.ones(region.size, dtype=bool),
        degraded,
        (traffic.failed_tier, traffic.served_tier),
        counts=traffic.requests,
    )
    return EndpointHealth(store.endpoint_health(), health)
