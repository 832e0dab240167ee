"""Store.outcomes(): the per-request × tier table the sweep reads, from a real DuckDB store."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from calibrate.config.tiers import load_tiers
from calibrate.errors import DataError
from calibrate.ingest.stage import ingest
from calibrate.store import Store, outcomes_sql
from calibrate.sweep.stage import price_table

PRICES = {"small": (0.15, 0.60), "large": (2.00, 8.00)}


def attempt(tier: str, source: str, **fields: object) -> dict:
    return {"tier": tier, "model": tier, "source": source, "status": "ok", **fields}


ROWS = [
    {  # a failed prod attempt loses to an ok shadow one; a human label beats the log's
        "request_id": "r-1",
        "input_tokens": 12,
        "attempts": [
            attempt("small", "prod", status="error", confidence=0.9, cost_usd=1e-4, latency_ms=50),
            attempt("small", "shadow", confidence=0.7, cost_usd=2e-4, latency_ms=300),
            attempt("large", "shadow", confidence=0.95, cost_usd=2e-3, latency_ms=900),
        ],
        "labels": {"small": 1, "large": 1},
        "metadata": {"intent": "refund_policy"},
    },
    {  # prod before shadow; cost from the tier's price; a timeout has no confidence
        "request_id": "r-2",
        "attempts": [
            attempt(
                "small",
                "prod",
                confidence=0.4,
                input_tokens=100,
                output_tokens=10,
                latency_ms=120.5,
            ),
            attempt("small", "shadow", confidence=0.8, cost_usd=0.5, latency_ms=10),
            attempt(
                "large", "shadow", status="timeout", confidence=0.99, input_tokens=150, cost_usd=0.1
            ),
        ],
        "metadata": {"channel": "web"},
    },
    {  # no large attempt: counted as incomplete, not used
        "request_id": "r-3",
        "attempts": [attempt("small", "prod", confidence=0.5, cost_usd=1e-4, latency_ms=80)],
        "metadata": {"intent": "order_status"},
    },
    {  # no token counts anywhere: a quarter of the messages' length
        "request_id": "r-4",
        "attempts": [
            attempt("small", "prod", confidence=0.6, cost_usd=1e-4, latency_ms=200),
            attempt("large", "shadow", confidence=0.9, cost_usd=1e-3, latency_ms=700),
        ],
        "labels": {"large": 0.5},
        "metadata": {"intent": "contract_interpretation"},
    },
]


@pytest.fixture
def store(tmp_path: Path):
    path = tmp_path / "logs.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for row in ROWS:
            full = {"timestamp": "2026-10-01T09:30:00Z", "prompt": f"question {row['request_id']}"}
            fh.write(json.dumps({**full, **row}) + "\n")
    with Store.open(tmp_path / "store.duckdb") as opened:
        ingest(opened, [path], strict=True, clock=lambda: datetime(2026, 11, 1, tzinfo=UTC))
        opened.con.execute(
            "INSERT INTO labels (request_id, tier, score, source, run_id) VALUES ('r-1', 'small', 0.0, 'human', 1), ('r-4', 'large', 0.25, 'judge', 1)"
        )
        yield opened


def test_one_row_per_complete_request_with_the_picked_attempt(store: Store) -> None:
    o = store.outcomes(["small", "large"], PRICES)
    assert o.tiers == ("small", "large")
    assert list(o.request_ids) == ["r-1", "r-2", "r-4"]
    assert o.incomplete == 1
    small_cost = (100 * 0.15 + 10 * 0.60) / 1e6
    np.testing.assert_array_equal(o.confidence, [[0.7, 0.95], [0.4, np.nan], [0.6, 0.9]])
    np.testing.assert_array_equal(o.cost_usd, [[2e-4, 2e-3], [small_cost, 0.1], [1e-4, 1e-3]])
    np.testing.assert_array_equal(o.latency_ms, [[300, 900], [120.5, 0], [200, 700]])
    np.testing.assert_array_equal(o.label, [[0.0, 1.0], [np.nan, np.nan], [np.nan, 0.5]])
    quarter = store.con.execute(
        "SELECT CAST(length(CAST(messages AS VARCHAR)) / 4 AS BIGINT) FROM requests"
        " WHERE request_id = 'r-4'"
    ).fetchone()[0]
    assert list(o.input_tokens) == [12, 150, quarter]
    assert o.input_tokens.dtype == np.int64


def test_attempts_read_in_small_batches_give_the_same_table(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cell's attempts split over batches (the failed prod attempt in one, the ok shadow one in
    another) still pick the same attempt."""
    whole = store.outcomes(["small", "large"], PRICES)
    monkeypatch.setattr(outcomes_sql, "_BATCH_ROWS", 1)
    assert store.con.sql("SELECT count(*) FROM attempts").fetchall()[0][0] == 9
    batched = store.outcomes(["small", "large"], PRICES)
    for name in ("confidence", "cost_usd", "latency_ms", "label", "input_tokens"):
        np.testing.assert_array_equal(getattr(batched, name), getattr(whole, name))
    assert list(batched.request_ids) == list(whole.request_ids)


def test_segments_carry_region_app_and_intent(store: Store) -> None:
    o = store.outcomes(["small", "large"], PRICES)
    assert list(o.intent) == ["refund_policy", None, "contract_interpretation"]
    assert list(o.region) == ["", "", ""] and list(o.app) == ["", "", ""]
    assert o.intent.dtype == object


def test_columns_follow_the_tier_order(store: Store) -> None:
    o = store.outcomes(["large", "small"], PRICES)
    np.testing.assert_array_equal(
        o.confidence[:, ::-1], store.outcomes(["small", "large"], PRICES).confidence
    )
    assert math.isnan(o.confidence[1, 0])


def test_missing_cost_without_a_price_names_the_tier(store: Store) -> None:
    with pytest.raises(DataError, match="tier 'small': 1 attempts have no cost_usd"):
        store.outcomes(["small", "large"], {"large": PRICES["large"]})


@pytest.mark.e2e
def test_sample_logs_carry_their_intents(sample_logs: Path, tmp_path: Path) -> None:
    tiers = load_tiers(sample_logs / "tiers.yaml")
    with Store.open(tmp_path / "sample.duckdb") as sample:
        ingest(sample, [sample_logs], strict=False, clock=lambda: datetime(2026, 11, 1, tzinfo=UTC))
        o = sample.outcomes(tiers.names, price_table(tiers))
    intents = set(o.intent)
    assert {"refund_policy", "contract_interpretation", "order_status"} <= intents
    assert None not in intents and len(o.intent) == o.n
