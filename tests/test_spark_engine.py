"""`--engine spark`: the Spark view `outcome_rows` over canonical Parquet is, row for row, the
relation `build_outcome_rows` builds in DuckDB from a store that ingested the same Parquet; the same
aggregate SQL text gives the same numbers on both.

Spark runs in local mode (Java 17+ and the `spark` extra). Without them these tests are skipped,
unless CALIBRATE_REQUIRE_SPARK=1 (set by `.ci/run`), which makes the skip a failure.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import shutil
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from calibrate.errors import DataError
from calibrate.ingest.stage import ingest
from calibrate.store import Store
from calibrate.store.outcome_rows_sql import OutcomeRows, build_outcome_rows

pytestmark = pytest.mark.e2e  # starts a JVM: seconds

TIERS = ["small", "medium", "large"]
PRICES = {"small": (0.15, 0.60), "medium": (0.40, 1.60), "large": (2.00, 8.00)}
CLOCK = datetime(2026, 11, 1, tzinfo=UTC)


def _missing() -> list[str]:
    missing = [] if shutil.which("java") or os.environ.get("JAVA_HOME") else ["java (JRE 17+)"]
    if importlib.util.find_spec("pyspark") is None:
        missing.append("pyspark (pip install -e '.[spark]')")
    return missing


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    missing = _missing()
    if missing:
        reason = f"Spark engine tests need {' and '.join(missing)}"
        if os.environ.get("CALIBRATE_REQUIRE_SPARK") == "1":
            pytest.fail(f"CALIBRATE_REQUIRE_SPARK=1 but {reason}")
        pytest.skip(reason)
    from calibrate.store import spark_engine

    session = spark_engine.open_session("local[2]")
    yield session
    session.stop()


def canonical_parquet(log: Path, out: Path) -> Path:
    """A JSONL log as canonical Parquet, written by DuckDB from the JSON (bench/ingest_scale.py's
    `parquet_file` does the same for the bench log)."""
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT * FROM read_json('{log}', format='newline_delimited')) TO '{out}'"
        " (FORMAT parquet)"
    )
    con.close()
    return out


def in_duckdb(
    parquet: Path, labels: Sequence[tuple] = (), prices: dict = PRICES
) -> tuple[OutcomeRows, list[dict]]:
    """The relation DuckDB builds from a store that ingested `parquet` (plus `labels` rows of
    other sources: request_id, tier, score, source)."""
    with Store.open(":memory:") as store:
        ingest(store, [parquet], strict=True, clock=lambda: CLOCK)
        for row in labels:
            store.con.execute(
                "INSERT INTO labels (request_id, tier, score, source, run_id) VALUES (?, ?, ?, ?, 1)",
                list(row),
            )
        built = build_outcome_rows(store.con, TIERS, prices)
        table = store.con.sql("SELECT * FROM outcome_rows ORDER BY request_id").to_arrow_table()
    # the store's relation also has a base (every request, for the preflight and endpoint
    # health); Spark's view has none: compare the relation alone
    assert built.base is not None
    return dataclasses.replace(built, base=None), table.to_pylist()


def in_spark(
    spark: Any, parquet: Path | str, labels: Path | None = None, prices: dict = PRICES
) -> tuple[OutcomeRows, list[dict]]:
    from calibrate.store import spark_engine

    built = spark_engine.build_outcome_rows(
        spark, str(parquet), TIERS, prices, labels=None if labels is None else str(labels)
    )
    table = spark_engine.run(spark, "SELECT * FROM outcome_rows ORDER BY request_id")
    return built, table.to_pylist()


def test_the_demo_gives_the_same_relation_in_spark_and_duckdb(
    spark: Any, sample_logs: Path, tmp_path: Path
) -> None:
    parquet = canonical_parquet(sample_logs / "requests.jsonl.gz", tmp_path / "demo.parquet")
    duck_built, duck = in_duckdb(parquet)
    spark_built, rows = in_spark(spark, parquet)
    assert duck_built.requests == 10_000 and spark_built == duck_built
    assert [r["request_id"] for r in rows] == [r["request_id"] for r in duck]
    assert rows == duck
    assert sum(r["labeled"] for r in rows) > 0 and any(r["intent"] for r in rows)


ATTEMPT = pa.struct(
    [
        ("tier", pa.string()),
        ("source", pa.string()),
        ("status", pa.string()),
        ("confidence", pa.float64()),
        ("output", pa.string()),
        ("input_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("cost_usd", pa.float64()),
        ("latency_ms", pa.float64()),
    ]
)
SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("region", pa.string()),
        ("app", pa.string()),
        ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("prompt", pa.string()),
        ("input_tokens", pa.int64()),
        ("attempts", pa.list_(ATTEMPT)),
        ("metadata", pa.struct([("intent", pa.string()), ("channel", pa.string())])),
        (
            "labels",
            pa.struct([("small", pa.float64()), ("medium", pa.float64()), ("large", pa.float64())]),
        ),
    ]
)


def att(tier: str, source: str = "prod", status: str = "ok", **fields: Any) -> dict:
    return {"tier": tier, "source": source, "status": status, "output": f"{tier} says", **fields}


def full(tier: str, conf: float, cost: float, latency: float, **fields: Any) -> dict:
    return att(tier, "shadow" if tier != "small" else "prod", confidence=conf, cost_usd=cost,
               latency_ms=latency, **fields)  # fmt: skip


def row(rid: str, attempts: list[dict] | None, **fields: Any) -> dict:
    base = {
        "request_id": rid,
        "timestamp": datetime(2026, 10, 1, 9, 30, 0, 123457, tzinfo=UTC),
        "messages": [{"role": "user", "content": f"question {rid}"}],
        "input_tokens": 40,
        "attempts": attempts,
    }
    return {**base, **fields}


HOSTILE = [
    row(  # no large attempt: not a row, counted as incomplete
        "e-missing-tier", [full("small", 0.9, 1e-4, 80), full("medium", 0.8, 2e-4, 90)]
    ),
    row(  # a failed prod attempt before an ok shadow one: the ok one counts
        "e-failed-first",
        [
            full("small", 0.9, 1e-4, 80),
            att("medium", "prod", "error", confidence=0.99, cost_usd=5e-5, latency_ms=30),
            att("medium", "shadow", confidence=0.61, cost_usd=3e-4, latency_ms=700),
            full("large", 0.97, 2e-3, 1500),
        ],
        labels={"small": 1.0, "medium": None, "large": 1.0},
        metadata={"intent": "refund_policy", "channel": "chat"},
        region="eu-west-1",
        app="support",
    ),
    row(  # a prod and a shadow attempt, both ok: prod counts; a timeout has no confidence
        "e-prod-and-shadow",
        [
            att("small", "shadow", confidence=0.2, cost_usd=9e-4, latency_ms=5),
            att("small", "prod", confidence=0.7, cost_usd=1e-4, latency_ms=300.5),
            full("medium", 0.5, 2e-4, 400),
            att("large", "shadow", "timeout", confidence=0.99, cost_usd=1e-3),
        ],
        labels={"small": 0.0, "medium": 0.5, "large": 1.0},
        metadata={"intent": None, "channel": "web"},
    ),
    row(  # absent confidences and costs: priced from the tokens by tiers.yaml; no latency: 0
        "e-no-confidence-no-cost",
        [
            att("small", input_tokens=100, output_tokens=10),
            att("medium", "shadow", input_tokens=120, output_tokens=None, latency_ms=10.0),
            att("large", "shadow", confidence=None, cost_usd=None, output_tokens=7),
        ],
        input_tokens=None,
        labels={"small": 1.0, "medium": 1.0, "large": 1.0},
    ),
    row(  # no input_tokens anywhere but in an attempt of a tier the sweep does not use
        "e-tokens-from-another-tier",
        [
            full("small", 0.3, 1e-4, 80),
            full("medium", 0.4, 2e-4, 90),
            full("large", 0.5, 3e-4, 100),
            att("xl", "shadow", input_tokens=999, cost_usd=1.0),
        ],
        input_tokens=None,
    ),
    row(  # no token counts at all: a quarter of the messages' JSON, escapes and all
        "e-tokens-from-messages",
        [full("small", 0.3, 1e-4, 80), full("medium", 0.4, 2e-4, 90), full("large", 0.5, 3e-4, 1)],
        input_tokens=None,
        messages=[
            {"role": "system", "content": None},
            {"role": "user", "content": 'a/b "q" \\ \n\t \x01 é 日本 \u2028 <tag> ' * 3},
        ],
    ),
    row(  # a prompt instead of messages, no tokens: its one-message JSON
        "e-prompt",
        [full("small", 0.3, 1e-4, 80), full("medium", 0.4, 2e-4, 90), full("large", 0.5, 3e-4, 1)],
        input_tokens=None,
        messages=None,
        prompt="Where is my order #123? It’s late.",
    ),
    row("e-no-attempts", None),
    row(  # only a failed attempt for a tier: it still counts, without confidence
        "e-only-failed",
        [
            full("small", 0.3, 1e-4, 80),
            att("medium", "prod", "error", confidence=0.4, cost_usd=2e-4, latency_ms=90),
            full("large", 0.5, 3e-4, 100),
        ],
        labels={"small": None, "medium": None, "large": 0.25},
    ),
]
# labels of other sources (request_id, tier, score, source): human beats the log, the log beats a
# judge and a reference; a source the sweep does not know comes last
OTHER_LABELS = [
    ("e-failed-first", "small", 0.0, "human"),
    ("e-failed-first", "medium", 0.75, "judge"),
    ("e-failed-first", "large", 0.5, "judge"),
    ("e-prod-and-shadow", "medium", 0.25, "reference"),
    ("e-prod-and-shadow", "medium", 1.0, "human"),
    ("e-only-failed", "small", 0.5, "reference"),
    ("e-only-failed", "small", 0.125, "judge"),
    ("e-only-failed", "medium", 0.375, "zz-custom"),
    ("e-tokens-from-messages", "large", 1.0, "judge"),
]


def write(rows: list[dict], path: Path) -> Path:
    pq.write_table(pa.Table.from_pylist(rows, SCHEMA), path)
    return path


@pytest.mark.parametrize("by", ["position", "lambda"])
def test_hostile_rows_give_the_same_relation_in_spark_and_duckdb(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, by: str
) -> None:
    """Attempts read by position (up to 8 per request) or, for longer lists, with Spark's lambda
    functions: the same picks."""
    from calibrate.store import spark_engine

    if by == "lambda":
        monkeypatch.setattr(spark_engine, "_MAX_SLOTS", 1)
    parquet = write(HOSTILE, tmp_path / "hostile.parquet")
    duck_built, duck = in_duckdb(parquet)
    spark_built, rows = in_spark(spark, parquet)
    assert spark_built == duck_built
    assert (duck_built.requests, duck_built.incomplete) == (7, 2)
    assert rows == duck
    by_id = {r["request_id"]: r for r in rows}
    assert by_id["e-failed-first"]["conf_1"] == 0.61  # the ok shadow attempt, not the failed one
    assert (
        by_id["e-prod-and-shadow"]["cost_usd_0"] == 1e-4
        and by_id["e-prod-and-shadow"]["conf_2"] is None
    )
    assert by_id["e-no-confidence-no-cost"]["cost_usd_0"] == (100 * 0.15 + 10 * 0.60) / 1e6
    assert by_id["e-tokens-from-another-tier"]["input_tokens"] == 999


def test_labels_of_two_sources_pick_the_same_label(spark: Any, tmp_path: Path) -> None:
    parquet = write(HOSTILE, tmp_path / "hostile.parquet")
    labels = tmp_path / "labels.parquet"
    pq.write_table(
        pa.table(
            {
                name: [r[i] for r in OTHER_LABELS]
                for i, name in enumerate(("request_id", "tier", "score", "source"))
            }
        ),
        labels,
    )
    duck_built, duck = in_duckdb(parquet, OTHER_LABELS)
    spark_built, rows = in_spark(spark, parquet, labels)
    assert spark_built == duck_built
    assert rows == duck
    by_id = {r["request_id"]: r for r in rows}
    first = by_id["e-failed-first"]
    assert (first["label_0"], first["label_1"], first["label_2"]) == (0.0, 0.75, 1.0)
    only_failed = by_id["e-only-failed"]
    assert (only_failed["label_0"], only_failed["label_1"]) == (0.5, 0.375)
    assert by_id["e-prod-and-shadow"]["label_1"] == 1.0


def test_non_finite_confidences_read_as_no_signal(spark: Any, tmp_path: Path) -> None:
    """Ingest rejects a NaN or an infinite confidence; Spark reads the files as they are and,
    as the relation's contract says, gives no confidence: the row of a store holding none."""
    nan = [dict(r) for r in HOSTILE[1:3]]
    nan[0]["attempts"] = [dict(a) for a in nan[0]["attempts"]]
    nan[1]["attempts"] = [dict(a) for a in nan[1]["attempts"]]
    none = [dict(r, attempts=[dict(a) for a in r["attempts"]]) for r in nan]
    nan[0]["attempts"][0]["confidence"] = math.nan
    nan[1]["attempts"][2]["confidence"] = math.inf
    none[0]["attempts"][0]["confidence"] = None
    none[1]["attempts"][2]["confidence"] = None
    _, duck = in_duckdb(write(none, tmp_path / "none.parquet"))
    _, rows = in_spark(spark, write(nan, tmp_path / "nan.parquet"))
    assert rows == duck
    assert rows[0]["conf_0"] is None and rows[1]["conf_1"] is None


def test_a_tier_without_cost_or_price_is_the_same_error(spark: Any, tmp_path: Path) -> None:
    parquet = write(HOSTILE, tmp_path / "hostile.parquet")
    unpriced = {k: v for k, v in PRICES.items() if k != "small"}
    with pytest.raises(DataError) as duck:
        in_duckdb(parquet, prices=unpriced)
    with pytest.raises(DataError) as in_spark_error:
        in_spark(spark, parquet, prices=unpriced)
    assert str(in_spark_error.value) == str(duck.value)
    assert "tier 'small'" in str(duck.value)


# Sums are exact integers (nano-USD) cast to BIGINT: a float SUM depends on the order of its terms,
# and an integer SUM is a HUGEINT in DuckDB
AGGREGATE = """
SELECT region, COUNT(*) AS requests,
       CAST(SUM(CAST(FLOOR(cost_usd_0 * 1e9 + 0.5) AS BIGINT)) AS BIGINT) AS cost_nano_usd_0,
       CAST(SUM(CASE WHEN labeled THEN 1 ELSE 0 END) AS BIGINT) AS labeled,
       MIN(latency_ms_2) AS fastest_ms, CAST(FLOOR(MAX(conf_0) * 100) AS BIGINT) AS top_conf
FROM outcome_rows GROUP BY region ORDER BY region
"""


def test_the_same_aggregate_sql_gives_the_same_numbers(
    spark: Any, sample_logs: Path, tmp_path: Path
) -> None:
    from calibrate.store import spark_engine

    parquet = canonical_parquet(sample_logs / "requests.jsonl.gz", tmp_path / "demo.parquet")
    with Store.open(":memory:") as store:
        ingest(store, [parquet], strict=True, clock=lambda: CLOCK)
        build_outcome_rows(store.con, TIERS, PRICES)
        duck = store.con.sql(AGGREGATE).to_arrow_table().to_pylist()
    spark_engine.build_outcome_rows(spark, str(parquet), TIERS, PRICES)
    assert spark_engine.run(spark, AGGREGATE).to_pylist() == duck
    columns = spark_engine.query(spark, AGGREGATE)
    assert list(columns["region"]) == [r["region"] for r in duck]
    assert columns["requests"].tolist() == [r["requests"] for r in duck]
    assert len(duck) > 1 and sum(r["requests"] for r in duck) == 10_000


def test_a_sweep_on_spark_writes_the_same_frontier_and_routing_as_on_duckdb(
    spark: Any, sample_logs: Path, tmp_path: Path
) -> None:
    """The whole `calibrate sweep`, once with the store's DuckDB and once with `--engine spark`
    on the same canonical Parquet: frontier.csv and routing.yaml are byte for byte the same."""
    import subprocess
    import sys

    parquet = canonical_parquet(sample_logs / "requests.jsonl.gz", tmp_path / "demo.parquet")
    common = ["--tiers", str(sample_logs / "tiers.yaml"), "--no-router"]
    runs = {
        "duckdb": ["--db", str(tmp_path / "store.duckdb")],
        "spark": ["--engine", "spark", "--spark-master", "local[2]"],
    }
    for name, options in runs.items():
        argv = [sys.executable, "-m", "calibrate", "sweep", str(parquet), *common, *options]
        done = subprocess.run(
            [*argv, "--out", str(tmp_path / name)], capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-2000:]
    for output in ("frontier.csv", "routing.yaml"):
        duck = (tmp_path / "duckdb" / output).read_text(encoding="utf-8")
        assert (tmp_path / "spark" / output).read_text(encoding="utf-8") == duck, output
    assert "policies evaluated exactly" in (tmp_path / "spark" / "report.md").read_text("utf-8")


def test_a_path_spark_cannot_read_is_an_error_with_a_hint(spark: Any, tmp_path: Path) -> None:
    from calibrate.store import spark_engine

    missing = str(tmp_path / "nowhere" / "*.parquet")
    with pytest.raises(DataError, match="cannot read .*nowhere") as raised:
        spark_engine.build_outcome_rows(spark, missing, TIERS, PRICES)
    assert "canonical Parquet" in (raised.value.hint or "")
