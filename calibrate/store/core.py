"""Store: owns the DuckDB connection, migrations and transactions.

Ingest writes live in `store/ingest_*.py`; the reads the sweep needs live in `store/outcomes_sql.py`.
Stages receive an open `Store`; they never build SQL themselves.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from calibrate.errors import CalibrateError
from calibrate.records import DataWindow, Outcomes
from calibrate.store import (
    ingest_file,
    ingest_rules,
    ingest_runs,
    ingest_sql,
    ingest_typed,
    outcomes_sql,
)
from calibrate.store.migrations import apply_migrations

DEFAULT_DB = Path(".calibrate") / "calibrate.duckdb"


class Store:
    """An open calibrate store (a DuckDB file or `:memory:`)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: str) -> None:
        self.con = con
        self.path = path

    @classmethod
    def open(cls, path: str | Path = DEFAULT_DB) -> Store:
        """Open or create the store and bring its schema up to date."""
        target = str(path)
        if target != ":memory:":
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(target)
        except duckdb.IOException as exc:
            raise CalibrateError(
                f"cannot open store {target}: {exc}",
                hint="Another calibrate process may hold it open; pass another --db.",
            ) from None
        apply_migrations(con)
        return cls(con, target)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing: commit on success, roll back on any exception."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def table_counts(self) -> dict[str, int]:
        """Row counts of the main tables (for summaries and tests)."""
        tables = ("requests", "attempts", "labels", "rejects", "ingest_runs")
        return {t: self.con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}

    def outcomes(
        self, tiers: Sequence[str], price_per_mtok: Mapping[str, tuple[float, float]]
    ) -> Outcomes:
        """The per-request × tier table the sweep evaluates policies on."""
        return outcomes_sql.load_outcomes(self.con, tiers, price_per_mtok)

    def data_window(self, outcomes: Outcomes) -> DataWindow:
        """Provenance: time window of the requests and a digest of the ingested files."""
        return outcomes_sql.data_window(self.con, outcomes)

    def rejected_rows(self) -> int:
        return int(self.con.execute("SELECT count(*) FROM rejects").fetchone()[0])

    # --- ingest ---

    def prepare_ingest(self) -> None:
        """Create the connection-local macros and tables ingest uses; no DuckDB progress bar
        (long statements would draw one on the terminal)."""
        self.con.execute("SET enable_progress_bar = false")
        ingest_rules.prepare(self.con)
        ingest_typed.prepare(self.con)

    def begin_ingest_run(self, started_at: datetime, strict: bool) -> int:
        return ingest_runs.begin_run(self.con, started_at, strict)

    def finish_ingest_run(self, run_id: int, finished_at: datetime, counts: Sequence[int]) -> None:
        ingest_runs.finish_run(self.con, run_id, finished_at, counts)

    def file_ingested(self, file_sha256: str) -> bool:
        return ingest_runs.file_ingested(self.con, file_sha256)

    def ingest_batch(
        self,
        batch: pa.Table,
        raw_rejects: Sequence[tuple[int, str | None, str, str]],
        where: tuple[str, str, int],
    ) -> ingest_sql.BatchResult:
        """Validate and merge one batch of (line, text) rows; `where` = (file, sha256, run_id)."""
        return ingest_sql.ingest_batch(self.con, batch, raw_rejects, where)

    def read_log_file(self, path: Path) -> int:
        """DuckDB reads a whole JSONL file (plain or gzip); returns its number of non-blank lines."""
        return ingest_file.read(self.con, str(path))

    def check_log_file(
        self, blanks: Sequence[int], where: tuple[str, str, int]
    ) -> ingest_file.FileCheck:
        """Number the read lines (given the blank ones), validate and merge them."""
        file, _, run_id = where
        ingest_file.number(self.con, blanks)
        return ingest_file.check(self.con, file, run_id)

    def quarantine_log_lines(self, raw: pa.Table, where: tuple[str, str, int]) -> None:
        """Store the checked file's rejects on these (line, text) lines, with their raw text."""
        ingest_file.quarantine(self.con, raw, where)

    def finish_log_file(self, where: tuple[str, str, int]) -> list[tuple[int, str | None, str]]:
        """Store the rejects left without raw text, free the file's temp tables, and return the
        first few (line, field, reason) for --strict."""
        return ingest_file.finish(self.con, where)

    def discard_log_file(self) -> None:
        """Drop what read_log_file read (the file goes through the line path instead)."""
        ingest_file.drop(self.con)

    def record_ingested_file(self, where: tuple[str, str, int], counts: Sequence[int]) -> None:
        ingest_runs.record_file(self.con, where, counts)

    def rejects_by_kind(self, run_id: int) -> list[tuple[str, int]]:
        return ingest_runs.rejects_by_kind(self.con, run_id)

    def request_count(self) -> int:
        return ingest_runs.request_count(self.con)
