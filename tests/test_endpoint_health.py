"""Endpoint health in the sweep report: the sample logs' outage (eu-west-1, large tier,
2026-10-08..2026-10-11) is found with its region, tier and days."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from calibrate.ingest.stage import ingest
from calibrate.stats.regional_health import degraded_mask, regional_health
from calibrate.store import Store
from calibrate.sweep.endpoint_health import endpoint_health


@pytest.mark.e2e
def test_the_sample_outage_is_found(sample_logs: Path) -> None:
    store = Store.open(":memory:")
    ingest(store, [sample_logs], strict=False, clock=lambda: datetime(2026, 11, 1, tzinfo=UTC))
    found = endpoint_health(store)
    (outage,) = found.health.outages
    assert (outage.region, outage.start, outage.end) == (
        "eu-west-1",
        date(2026, 10, 8),
        date(2026, 10, 11),
    )
    assert [(a, b) for a, b, _ in outage.fallbacks] == [("large", "medium")]
    assert found.downgraded_by_region() == {
        "ap-southeast-1": 0,
        "eu-west-1": outage.degraded,
        "sa-east-1": 0,
        "us-east-1": 0,
    }
    failing = found.table.filter(pl.col("error_rate") + pl.col("timeout_rate") > 0.5)
    assert set(failing["tier"]) == {"large"} and set(failing["region"]) == {"eu-west-1"}
    assert sorted(failing["day"]) == [date(2026, 10, d) for d in range(8, 12)]
    assert int(failing["attempts"].sum()) == outage.degraded
    healthy = found.table.filter(pl.col("day") < date(2026, 10, 1))
    assert healthy["latency_p95_ms"].min() > 0 and healthy["error_rate"].max() < 0.05


@pytest.mark.e2e
def test_counts_per_region_and_day_give_the_per_request_result(sample_logs: Path) -> None:
    """The store's grouped counts give the same health as every request through the detector."""
    store = Store.open(":memory:")
    ingest(store, [sample_logs], strict=False, clock=lambda: datetime(2026, 11, 1, tzinfo=UTC))
    log = store.request_log(["small", "medium", "large"])
    days_of = [datetime.fromtimestamp(float(t), UTC).date() for t in log.timestamp_s]
    days = sorted(set(days_of))
    position = {d: i for i, d in enumerate(days)}
    expected = regional_health(
        np.array([str(r) or "(none)" for r in log.region], dtype=object),
        np.array([position[d] for d in days_of]),
        days,
        np.ones(log.n, dtype=bool),
        degraded_mask(log.served_tier, log.failed_tier, log.tier_cost_usd),
        (log.failed_tier, log.served_tier),
    )
    assert expected.outages  # the sample's outage: the comparison covers the windows too
    assert endpoint_health(store).health == expected
