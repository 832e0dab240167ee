"""Store: owns the DuckDB connection, migrations and transactions.

Ingest writes live in `store/ingest_sql.py`; the reads the sweep needs live in `store/outcomes_sql.py`;
replay's selection, call cache and results live in `store/replay_sql.py`, and its journal of
results not yet committed in `store/journal.py` (folded in whenever a file store is opened).
Stages receive an open `Store`; they never build SQL themselves.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from calibrate.errors import CalibrateError
from calibrate.records import DataWindow, Outcomes
from calibrate.replay_records import CallRecord, Candidate, JobResult, Selection
from calibrate.store import health_sql, ingest_sql, monitor_sql, outcomes_sql, replay_sql, text_sql
from calibrate.store.journal import Journal, journal_path
from calibrate.store.journal import recover as recover_journal
from calibrate.store.migrations import apply_migrations

DEFAULT_DB = Path(".calibrate") / "calibrate.duckdb"


class Store:
    """An open calibrate store (a DuckDB file or `:memory:`)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: str, recovered: int = 0) -> None:
        self.con = con
        self.path = path
        self.recovered = recovered
        """Replay results folded in from a crashed run's journal when the store was opened."""

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
        journal = journal_path(target)
        recovered = recover_journal(con, journal) if journal is not None else 0
        return cls(con, target, recovered)

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

    def request_log(self, tiers: Sequence[str]) -> monitor_sql.RequestLog:
        """Every request in time order with what each given tier answered and what production did
        (for `monitor`; requests a tier never saw are kept)."""
        return monitor_sql.load_request_log(self.con, tiers)

    def rejected_rows(self) -> int:
        return int(self.con.execute("SELECT count(*) FROM rejects").fetchone()[0])

    # --- ingest ---

    def prepare_ingest(self) -> None:
        """Create the connection-local macros and tables the ingest batches use."""
        ingest_sql.prepare(self.con)

    def begin_ingest_run(self, started_at: datetime, strict: bool) -> int:
        return ingest_sql.begin_run(self.con, started_at, strict)

    def finish_ingest_run(self, run_id: int, finished_at: datetime, counts: Sequence[int]) -> None:
        ingest_sql.finish_run(self.con, run_id, finished_at, counts)

    def file_ingested(self, file_sha256: str) -> bool:
        return ingest_sql.file_ingested(self.con, file_sha256)

    def ingest_batch(
        self,
        batch: pa.Table,
        raw_rejects: Sequence[tuple[int, str | None, str, str]],
        where: tuple[str, str, int],
    ) -> ingest_sql.BatchResult:
        """Validate and merge one batch of (line, text) rows; `where` = (file, sha256, run_id)."""
        return ingest_sql.ingest_batch(self.con, batch, raw_rejects, where)

    def record_ingested_file(self, where: tuple[str, str, int], counts: Sequence[int]) -> None:
        ingest_sql.record_file(self.con, where, counts)

    def rejects_by_kind(self, run_id: int) -> list[tuple[str, int]]:
        return ingest_sql.rejects_by_kind(self.con, run_id)

    def request_count(self) -> int:
        return ingest_sql.request_count(self.con)

    def endpoint_health(self) -> pl.DataFrame:
        """Prod latency p50/p95, error/timeout and fallback rates per tier × region × day."""
        return health_sql.endpoint_health(self.con)

    def tier_outputs(
        self, request_ids: Sequence[str], tiers: Sequence[str]
    ) -> list[list[str | None]]:
        """Each request's answer text per tier (None without an ok attempt), in the given order."""
        return text_sql.tier_outputs(self.con, request_ids, tiers)

    def prompt_texts(self, request_ids: Sequence[str]) -> list[str]:
        """Each request's prompt text (its messages' contents), in the given order."""
        return text_sql.prompt_texts(self.con, request_ids)

    # --- replay ---

    def replay_candidates(
        self, selection: Selection, tiers: Sequence[str]
    ) -> tuple[int, list[Candidate]]:
        """(sampled requests, sampled request × tier pairs with no attempt yet)."""
        return replay_sql.candidates(self.con, selection, tiers)

    def open_replay_journal(self) -> Journal | None:
        """The append-only journal replay writes results to first (None for `:memory:`).

        Leftovers of a crashed run are folded in by `Store.open`."""
        path = journal_path(self.path)
        return Journal(path) if path is not None else None

    def stored_calls(self, cache_keys: Sequence[str]) -> dict[str, CallRecord]:
        return replay_sql.stored_calls(self.con, cache_keys)

    def mean_output_tokens(self, tier: str) -> tuple[float | None, int]:
        return replay_sql.mean_output_tokens(self.con, tier)

    def record_replay_results(self, results: Sequence[JobResult], run_id: int) -> None:
        """Store calls and their attempts in one transaction (all of them or none)."""
        try:
            with self.transaction():
                replay_sql.record_results(self.con, results, run_id, fast=True)
        except duckdb.ConstraintException:
            with self.transaction():
                replay_sql.record_results(self.con, results, run_id, fast=False)

    def begin_replay_run(
        self,
        started_at: datetime,
        selection: Selection,
        max_cost_usd: float | None,
        retry_failed: bool,
    ) -> int:
        with self.transaction():
            return replay_sql.begin_run(self.con, started_at, selection, max_cost_usd, retry_failed)

    def finish_replay_run(
        self,
        run_id: int,
        finished_at: datetime,
        selected: int,
        cost_usd: float,
        stopped: str | None,
    ) -> None:
        with self.transaction():
            replay_sql.finish_run(self.con, run_id, finished_at, selected, cost_usd, stopped)
