"""ingest(): real log files into a real DuckDB file; rejects, merges, idempotency, strict, variants."""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from calibrate.errors import LogFormatError
from calibrate.ingest.stage import ingest
from calibrate.store.core import Store

DATA = Path(__file__).parent / "data"
MALFORMED = DATA / "ingest_malformed.jsonl"
GOOD = DATA / "ingest_good.jsonl"


def clock() -> datetime:
    return datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path / "store.duckdb") as opened:
        yield opened


def rows(store: Store, sql: str) -> list[tuple]:
    return store.con.execute(sql).fetchall()


def contents(store: Store) -> dict[str, list[tuple]]:
    """Everything ingest wrote that does not depend on file paths or run ids."""
    return {
        "requests": rows(
            store,
            "SELECT request_id, ts, region, app, messages::VARCHAR, input_tokens, served_tier,"
            " reference, metadata::VARCHAR FROM requests ORDER BY request_id",
        ),
        "attempts": rows(
            store,
            "SELECT * EXCLUDE (run_id, extra), extra::VARCHAR FROM attempts"
            " ORDER BY request_id, tier, source",
        ),
        "labels": rows(store, "SELECT * EXCLUDE (run_id) FROM labels ORDER BY request_id, tier"),
    }


EXPECTED_REJECTS = {
    3: (None, "invalid JSON: Expecting ',' delimiter (col 24)"),
    4: ("request_id", "missing field: request_id"),
    5: ("timestamp", "missing field: timestamp"),
    6: ("messages", "missing field: messages (or prompt)"),
    7: ("request_id", "wrong type: request_id must be a non-empty string, got 7"),
    8: (
        "attempts[1].confidence",
        "wrong type: attempts[1].confidence must be a number or null, got string",
    ),
    9: ("input_tokens", "wrong type: input_tokens must be a non-negative integer or null, got -5"),
    10: (
        "attempts[0].output_tokens",
        "wrong type: attempts[0].output_tokens must be a non-negative integer or null, got 2.5",
    ),
    11: ("timestamp", 'wrong type: timestamp must be an RFC 3339 string, got "yesterday"'),
    12: ("attempts", "wrong type: attempts must be an array or null, got string"),
    13: (
        "attempts[0].status",
        'wrong type: attempts[0].status must be one of ok, error, timeout, got "done"',
    ),
    14: (
        "attempts[0].source",
        'wrong type: attempts[0].source must be "prod" or "shadow", got "canary"',
    ),
    15: ("labels.small", "label out of range: labels.small=1.3 (must be in [0, 1])"),
    16: ("labels.small", "wrong type: labels.small must be a number, got string"),
    17: (None, "not UTF-8: invalid byte 0xff at col 75"),
    19: (
        "request_id",
        f"duplicate request_id r-1 with conflicting content (first seen in {MALFORMED} line 1)",
    ),
    20: (
        "attempts[0].confidence",
        "wrong type: attempts[0].confidence must be a number or null, got NaN",
    ),
}


def test_each_bad_row_is_quarantined_with_line_field_and_reason(store: Store) -> None:
    summary = ingest(store, [MALFORMED], strict=False, clock=clock)

    found = rows(store, "SELECT line, field, reason FROM rejects ORDER BY line")
    assert {line: (field, reason) for line, field, reason in found} == EXPECTED_REJECTS
    assert summary.rows_read == 21  # 23 lines minus a blank and a whitespace-only line
    assert summary.rows_rejected == len(EXPECTED_REJECTS)
    assert summary.rows_kept == 4
    assert dict(summary.rejects_by_reason)["wrong type"] == 10
    assert summary.db_path == store.path
    raw = rows(store, "SELECT raw FROM rejects WHERE line = 3")[0][0]
    assert raw == '{"request_id": "r-bad" "timestamp": "2026-10-01T09:30:00Z"}'


def test_good_rows_of_a_bad_file_are_all_kept(store: Store) -> None:
    ingest(store, [MALFORMED], strict=False, clock=clock)

    requests = rows(store, "SELECT request_id, source_line, ts, messages::VARCHAR FROM requests")
    assert sorted(r[:2] for r in requests) == [("r-1", 1), ("r-18", 18), ("r-22", 22)]
    r18 = next(r for r in requests if r[0] == "r-18")
    assert r18[2] == datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
    assert json.loads(r18[3]) == [{"role": "user", "content": "hello"}]
    attempts = rows(store, "SELECT tier, source, position FROM attempts WHERE request_id = 'r-1'")
    assert sorted(attempts) == [
        ("large", "shadow", 1),
        ("medium", "shadow", 1),
        ("small", "prod", 0),
    ]
    labels = rows(store, "SELECT tier, score, source FROM labels WHERE request_id = 'r-1'")
    assert sorted(labels) == [("large", 1.0, "log"), ("medium", 0.0, "log"), ("small", 1.0, "log")]
    meta = rows(store, "SELECT metadata::VARCHAR FROM requests WHERE request_id = 'r-1'")[0][0]
    assert json.loads(meta) == {"intent": "order", "trace_id": "t-1"}


def test_same_file_twice_changes_nothing_and_is_reported_skipped(store: Store) -> None:
    first = ingest(store, [MALFORMED, GOOD], strict=False, clock=clock)
    before = contents(store) | {"rejects": rows(store, "SELECT * FROM rejects ORDER BY line")}

    second = ingest(store, [MALFORMED, GOOD], strict=False, clock=clock)

    after = contents(store) | {"rejects": rows(store, "SELECT * FROM rejects ORDER BY line")}
    assert after == before
    assert (first.files, first.files_skipped) == (2, 0)
    assert (second.files, second.files_skipped, second.rows_read) == (0, 2, 0)


def test_a_file_is_recorded_with_its_size_and_one_of_a_known_size_is_still_read(
    store: Store, tmp_path: Path
) -> None:
    """Files of a size no ingested file has are hashed while DuckDB reads them; the others are
    hashed first. Both ways record the same digest and size."""
    twin = tmp_path / "twin.jsonl"
    twin.write_bytes(GOOD.read_bytes().replace(b"r-", b"q-"))
    assert twin.stat().st_size == GOOD.stat().st_size

    ingest(store, [GOOD], strict=False, clock=clock)
    summary = ingest(store, [twin, GOOD], strict=False, clock=clock)

    assert (summary.files, summary.files_skipped, summary.rows_kept) == (1, 1, 3)
    recorded = rows(store, "SELECT path, bytes FROM ingested_files ORDER BY path")
    assert recorded == sorted((str(p), p.stat().st_size) for p in (GOOD, twin))


def test_same_rows_in_another_file_are_a_no_op(store: Store, tmp_path: Path) -> None:
    ingest(store, [GOOD], strict=False, clock=clock)
    before = contents(store)
    reordered = tmp_path / "reordered.jsonl"
    reordered.write_text("".join(reversed(GOOD.read_text().splitlines(keepends=True))))

    summary = ingest(store, [reordered], strict=False, clock=clock)

    assert contents(store) == before
    assert (summary.rows_kept, summary.rows_rejected) == (3, 0)


def test_second_file_merges_new_attempts_and_labels_and_rejects_conflicts(
    store: Store, tmp_path: Path
) -> None:
    ingest(store, [GOOD], strict=False, clock=clock)
    good = [json.loads(line) for line in GOOD.read_text().splitlines()]
    shadow = {"tier": "medium", "source": "shadow", "confidence": 0.7, "status": "ok"}
    merged = good[0] | {"attempts": [*good[0]["attempts"], shadow], "labels": {"medium": 1}}
    conflicting = good[2] | {"region": "us-east-1"}
    changed_attempt = good[1] | {"attempts": [good[1]["attempts"][0] | {"confidence": 0.5}]}
    later = tmp_path / "later.jsonl"
    later.write_text("".join(json.dumps(r) + "\n" for r in (merged, conflicting, changed_attempt)))

    summary = ingest(store, [later], strict=False, clock=clock)

    tiers = rows(store, "SELECT tier, source FROM attempts WHERE request_id = 'r-1' ORDER BY ALL")
    assert tiers == [("large", "shadow"), ("medium", "shadow"), ("small", "prod")]
    labels = rows(store, "SELECT tier, score FROM labels WHERE request_id = 'r-1' ORDER BY ALL")
    assert labels == [("large", 1.0), ("medium", 1.0), ("small", 1.0)]
    rejects = rows(store, "SELECT line, field, reason FROM rejects ORDER BY line")
    assert rejects == [
        (
            2,
            "request_id",
            f"duplicate request_id r-3 with conflicting content (first seen in {GOOD} line 3)",
        ),
        (
            3,
            "attempts[0]",
            "conflicting attempt: request_id r-2 tier small source prod differs from an earlier"
            f" copy (request first seen in {GOOD} line 2)",
        ),
    ]
    assert rows(store, "SELECT region FROM requests WHERE request_id = 'r-3'") == [("ap-south-1",)]
    assert (summary.rows_kept, summary.rows_rejected) == (1, 2)


BASE_ROW = {
    "request_id": "c-1",
    "timestamp": "2026-10-01T09:30:00Z",
    "prompt": "hi",
    "region": "eu-west-1",
    "metadata": {"intent": "x"},
}


@pytest.mark.e2e  # 32 cases, each its own store
@pytest.mark.parametrize(
    "change",
    [
        {"timestamp": "2026-10-01T09:30:00.000001Z"},
        {"region": None},
        {"app": "bot"},
        {"prompt": "hi!"},
        {"input_tokens": 3},
        {"served_tier": "small"},
        {"reference": ""},
        {"metadata": {"intent": "x", "n": None}},
        {"extra_key": 1},
    ],
    ids=lambda change: next(iter(change)),
)
@pytest.mark.parametrize("whole_files", [True, False], ids=["file-path", "line-path"])
def test_any_change_to_the_request_content_is_a_conflict_in_the_store_and_in_a_file(
    tmp_path: Path, change: dict, whole_files: bool
) -> None:
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    changed = json.dumps(BASE_ROW | change)
    first.write_text(json.dumps(BASE_ROW) + "\n")
    second.write_text(json.dumps(BASE_ROW) + "\n" + changed + "\n" + changed + "\n")

    with Store.open(tmp_path / "s.duckdb") as store:
        ingest(store, [first], strict=False, clock=clock, whole_files=whole_files)
        summary = ingest(store, [second], strict=False, clock=clock, whole_files=whole_files)
        rejects = rows(store, "SELECT line, reason FROM rejects ORDER BY line")

    conflict = f"duplicate request_id c-1 with conflicting content (first seen in {first} line 1)"
    assert rejects == [(2, conflict), (3, conflict)]
    assert (summary.rows_kept, summary.rows_rejected) == (1, 2)


def test_a_changed_copy_later_in_one_file_is_a_conflict_with_the_first(tmp_path: Path) -> None:
    log = tmp_path / "one.jsonl"
    log.write_text(json.dumps(BASE_ROW) + "\n" + json.dumps(BASE_ROW | {"app": None, "x": 1}))

    with Store.open(tmp_path / "s.duckdb") as store:
        ingest(store, [log], strict=False, clock=clock)
        rejects = rows(store, "SELECT line, reason FROM rejects")

    assert rejects == [
        (2, f"duplicate request_id c-1 with conflicting content (first seen in {log} line 1)")
    ]


def test_strict_raises_with_file_and_line_and_writes_nothing(store: Store) -> None:
    with pytest.raises(LogFormatError) as caught:
        ingest(store, [GOOD, MALFORMED], strict=True, clock=clock)

    assert f"{MALFORMED}:3: -: invalid JSON" in caught.value.message
    assert f"{MALFORMED}:4: request_id: missing field: request_id" in caught.value.message
    assert store.table_counts() == {
        "requests": 0,
        "attempts": 0,
        "labels": 0,
        "rejects": 0,
        "ingest_runs": 0,
    }
    assert rows(store, "SELECT count(*) FROM ingested_files") == [(0,)]


def test_strict_accepts_a_clean_file(store: Store) -> None:
    summary = ingest(store, [GOOD], strict=True, clock=clock)

    assert (summary.rows_kept, summary.requests_total) == (3, 3)
    assert rows(store, "SELECT strict, finished_at FROM ingest_runs") == [(True, clock())]


def write_variants(tmp_path: Path) -> dict[str, Path]:
    records = [json.loads(line) for line in GOOD.read_text().splitlines()]
    gz = tmp_path / "good.jsonl.gz"
    gz.write_bytes(gzip.compress(GOOD.read_bytes()))
    parquet = tmp_path / "good.parquet"
    pq.write_table(pa.Table.from_struct_array(pa.array(records)), parquet)
    csv = tmp_path / "good.csv"
    shutil.copy(DATA / "ingest_good.csv", csv)
    return {"gz": gz, "parquet": parquet, "csv": csv}


@pytest.mark.parametrize("variant", ["gz", "parquet", "csv"])
def test_gz_parquet_and_csv_variants_give_identical_rows(tmp_path: Path, variant: str) -> None:
    with Store.open(tmp_path / "jsonl.duckdb") as reference:
        ingest(reference, [GOOD], strict=True, clock=clock)
        expected = contents(reference)
    path = write_variants(tmp_path)[variant]

    with Store.open(tmp_path / f"{variant}.duckdb") as store:
        summary = ingest(store, [path], strict=True, clock=clock)
        assert contents(store) == expected
    assert summary.rows_kept == 3
    extra = [a for a in expected["attempts"] if a[-1] is not None]
    assert [json.loads(a[-1]) for a in extra] == [{"provider_request_id": "abc"}]


def test_small_batches_give_the_same_result_as_one_batch(tmp_path: Path) -> None:
    log = tmp_path / "many.jsonl"
    lines = []
    for i in range(60):
        row = {"request_id": f"r-{i % 50}", "timestamp": "2026-10-01T09:30:00Z", "prompt": "q"}
        row["attempts"] = [{"tier": "small", "confidence": i / 100 if i < 55 else 0.01}]
        row["labels"] = {"small": 1} if i % 2 else {}
        lines.append(json.dumps(row) if i != 30 else "{broken")
    log.write_text("\n".join(lines) + "\n")
    results = []
    for batch_rows in (7, 50_000):
        with Store.open(tmp_path / f"b{batch_rows}.duckdb") as store:
            summary = ingest(store, [log], strict=False, clock=clock, batch_rows=batch_rows)
            rejects = rows(store, "SELECT line, field, reason FROM rejects ORDER BY line")
            results.append((contents(store), rejects, summary.rows_kept, summary.rows_rejected))

    assert results[0] == results[1]
    assert results[0][1][0] == (
        31,
        None,
        "invalid JSON: Expecting property name enclosed in double quotes (col 2)",
    )
    assert len(results[0][0]["requests"]) == 49  # r-30 only appears on the broken line


def test_directories_are_expanded_and_progress_reported(store: Store, tmp_path: Path) -> None:
    nested = tmp_path / "logs" / "2026" / "10"
    nested.mkdir(parents=True)
    shutil.copy(GOOD, nested / "a.jsonl")
    (nested / "notes.txt").write_text("not a log")
    seen: list[tuple[str, int]] = []

    summary = ingest(
        store,
        [tmp_path / "logs"],
        strict=False,
        clock=clock,
        on_progress=lambda f, n: seen.append((f, n)),
    )

    assert summary.files == 1
    assert seen == [(str(nested / "a.jsonl"), 3)]


def test_a_missing_path_is_a_log_format_error(store: Store, tmp_path: Path) -> None:
    with pytest.raises(LogFormatError, match="no such file or directory"):
        ingest(store, [tmp_path / "nope.jsonl"], strict=False, clock=clock)
