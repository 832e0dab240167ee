"""Endpoint health in the sweep report: the sample logs' outage (eu-west-1, large tier,
2026-10-08..2026-10-11) is found with its region, tier and days."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from calibrate.ingest.stage import ingest
from calibrate.store import Store
from calibrate.sweep.endpoint_health import endpoint_health


@pytest.mark.e2e
def test_the_sample_outage_is_found(sample_logs: Path) -> None:
    store = Store.open(":memory:")
    ingest(store, [sample_logs], strict=False, clock=lambda: datetime(2026, 11, 1, tzinfo=UTC))
    found = endpoint_health(store, ("small", "medium", "large"))
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
