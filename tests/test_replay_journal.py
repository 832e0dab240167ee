"""The replay journal: results appended before DuckDB commits them are folded in on open."""

from __future__ import annotations

from pathlib import Path

from replay_support import T0, make_store, query

from calibrate.records.replay import CallRecord, JobResult, ShadowAttempt
from calibrate.store import Store
from calibrate.store.journal import Journal, decode, encode, journal_path


def result(i: int, status: str = "ok") -> JobResult:
    call = CallRecord(
        f"key-{i}", "a", "m-a", "answer", status, None if status == "ok" else "HTTP 400: no",
        200 if status == "ok" else 400, 1, f"answer {i}" if status == "ok" else None, 10, 3,
        0.5, 12.0, -0.25, None, '{"mean": -0.25}', T0, T0,
    )  # fmt: skip
    attempts = (
        (ShadowAttempt(f"r-{i:04d}", "a", 0, "m-a", -0.25, f"answer {i}", 10, 3, 0.5, 12.0, "{}"),)
        if status == "ok"
        else ()
    )
    return JobResult((call,), attempts)


def test_a_result_round_trips_through_a_journal_line() -> None:
    line = encode(result(3), run_id=7)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == (result(3), 7)


def test_opening_the_store_folds_in_the_journal_and_drops_a_torn_line(tmp_path: Path) -> None:
    db = make_store(tmp_path / "s.duckdb", 5)
    path = journal_path(str(db))
    assert path is not None
    journal = Journal(path)
    for i in range(3):
        journal.append(result(i), run_id=1)
    journal.close()
    with path.open("ab") as fh:
        fh.write(encode(result(3), run_id=1)[:-20])  # killed in the middle of a write
    with Store.open(db) as store:
        assert store.recovered == 3
    assert path.stat().st_size == 0
    rows = query(db, "SELECT request_id, source, confidence FROM attempts ORDER BY 1")
    assert rows == [(f"r-{i:04d}", "shadow", -0.25) for i in range(3)]
    assert query(db, "SELECT count(*) FROM replay_calls") == [(3,)]


def test_recovery_is_idempotent_and_keeps_the_latest_state(tmp_path: Path) -> None:
    db = make_store(tmp_path / "s.duckdb", 5)
    with Store.open(db) as store:
        store.record_replay_results([result(0), result(1, "error")], run_id=1)
    path = journal_path(str(db))
    assert path is not None
    journal = Journal(path)
    journal.append(result(0), run_id=2)  # already committed
    journal.append(JobResult(result(1).calls, result(1).attempts, ("key-1",)), run_id=2)
    journal.close()
    with Store.open(db) as store:
        assert store.recovered == 2
    assert query(db, "SELECT cache_key, status FROM replay_calls ORDER BY 1") == [
        ("key-0", "ok"),
        ("key-1", "ok"),
    ]
    assert query(db, "SELECT count(*) FROM attempts") == [(2,)]


def test_a_memory_store_has_no_journal() -> None:
    assert journal_path(":memory:") is None
    with Store.open(":memory:") as store:
        assert store.open_replay_journal() is None
