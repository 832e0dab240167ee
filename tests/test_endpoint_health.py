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


@pytest.mark.parametrize("tiers", [["small", "medium", "large"], ["small", "large"]])
def test_the_outcome_base_gives_the_same_health_and_traffic(
    sample_logs: Path, tiers: list[str]
) -> None:
    """Once the sweep's outcome base is built, endpoint health and the region × day traffic are
    read from it (no second pass over the attempts): the same tables, also when the sweep's
    tiers leave out a tier production called (`medium` with two tiers)."""
    from calibrate.config.tiers import load_tiers, price_table

    store = Store.open(":memory:")
    ingest(store, [sample_logs], strict=False, clock=lambda: datetime(2026, 11, 1, tzinfo=UTC))
    store.con.execute(  # a missing latency and region: still counted, not in the percentiles
        "UPDATE attempts SET latency_ms = NULL WHERE source = 'prod' AND hash(request_id) % 7 = 0"
    )
    store.con.execute("UPDATE requests SET region = NULL WHERE hash(request_id) % 11 = 0")
    table, traffic = store.endpoint_health(), store.region_day_traffic()
    prices = price_table(load_tiers(sample_logs / "tiers.yaml"))
    rows = store.outcome_rows(tiers, prices)
    assert rows.base is not None and set(rows.base.prod_tiers) == {"small", "medium", "large"}
    assert store.endpoint_health().equals(table)
    assert table.height > 100 and table["fallback_share"].sum() > 0
    got = store.region_day_traffic()
    for field in ("region", "day", "failed_tier", "served_tier", "requests"):
        np.testing.assert_array_equal(getattr(got, field), getattr(traffic, field))
    assert got.tier_cost_usd == traffic.tier_cost_usd
