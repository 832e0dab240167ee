"""Store migrations: a store made before m004 opens, keeps its rows, and its keys stay unique;
m006 drops the content hashes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
from replay_support import T0

from calibrate.ingest import stage as ingest
from calibrate.records.replay import JobResult, ShadowAttempt
from calibrate.store import Store
from calibrate.store.migrations import MIGRATIONS

KEYED = ("requests", "attempts", "labels")


def _store_before_m004(path: Path, log: Path) -> None:
    """A store at m003 holding one ingested log (ingested with today's code, then rolled back to
    the m003 schema: the rows are what an m003 store holds)."""
    with Store.open(path.with_suffix(".new")) as store:
        ingest.ingest(store, [log], strict=False, clock=lambda: T0)
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE _calibrate_migrations (name VARCHAR PRIMARY KEY)")
    for step in MIGRATIONS[:3]:
        step(con)
        con.execute("INSERT INTO _calibrate_migrations VALUES (?)", [step.__name__])
    con.execute(f"ATTACH '{path.with_suffix('.new')}' AS new (READ_ONLY)")
    for table in ("attempts", "labels", "ingest_runs", "rejects"):
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM new.{table}")
    con.execute(
        "INSERT INTO requests BY NAME SELECT *, sha256(request_id) AS content_sha256"
        " FROM new.requests"
    )
    con.execute(
        "INSERT INTO ingested_files BY NAME SELECT * EXCLUDE (bytes) FROM new.ingested_files"
    )
    con.close()


def _primary_keys(con: duckdb.DuckDBPyConnection) -> int:
    keys = con.execute(
        "SELECT count(*) FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'"
        f" AND table_name IN {KEYED}"
    )
    return int(keys.fetchall()[0][0])


def _rows(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    """Every row of the keyed tables, without m003's content_sha256 (m006 drops it)."""
    columns = "COLUMNS(lambda c: c <> 'content_sha256')"
    return {t: con.execute(f"SELECT {columns} FROM {t} ORDER BY ALL").fetchall() for t in KEYED}


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()]


def test_an_m003_store_opens_with_its_rows_without_key_constraints_or_content_hashes(
    tmp_path: Path, sample_logs: Path
) -> None:
    db = tmp_path / "old.duckdb"
    log = sample_logs / "requests.jsonl.gz"
    _store_before_m004(db, log)
    with duckdb.connect(str(db)) as con:
        before = _rows(con)
        assert _primary_keys(con) == 3
        assert "content_sha256" in _columns(con, "requests")
    with Store.open(db) as store:
        assert _rows(store.con) == before
        assert _primary_keys(store.con) == 0
        assert "content_sha256" not in _columns(store.con, "requests")
        again = ingest.ingest(
            store, [log], strict=False, clock=lambda: datetime(2026, 2, 1, tzinfo=UTC)
        )
        assert again.files_skipped == 1
        assert _rows(store.con) == before


def test_a_shadow_attempt_already_stored_or_repeated_in_a_batch_is_skipped(tmp_path: Path) -> None:
    def attempt(output: str) -> ShadowAttempt:
        return ShadowAttempt("r-new", "a", 0, "m-a", -0.25, output, 10, 3, 0.5, 12.0, "{}")

    with Store.open(tmp_path / "s.duckdb") as store:
        first = JobResult((), (attempt("first"), attempt("second")))
        store.record_replay_results([first], run_id=1)
        store.record_replay_results([JobResult((), (attempt("third"),))], run_id=2)
        rows = store.con.execute("SELECT output, run_id FROM attempts WHERE request_id = 'r-new'")
        assert rows.fetchall() == [("first", 1)]
