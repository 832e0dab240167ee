"""Store: owns the DuckDB connection, migrations and transactions.

Ingest writes live in `store/ingest_*.py`; the reads the sweep needs live in `store/outcomes_sql.py`;
replay's selection, call cache and results live in `store/replay_sql.py`, and its journal of
results not yet committed in `store/journal.py` (folded in whenever a file store is opened);
labels (checks, the conflict rule, weights) live in `store/labels_sql.py`, the judge's reads in
`store/judge_sql.py`, `labels status` in `store/coverage_sql.py` and labelling queues in
`store/queue_sql.py`; another store's replay results are merged by `store/merge_sql.py`.
Stages receive an open `Store`; they never build SQL themselves.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from calibrate.errors import CalibrateError
from calibrate.records.labels import (
    Coverage,
    LabelRow,
    LabelWeights,
    Population,
    ReferenceItem,
    RejectedRow,
    ResolveCounts,
)
from calibrate.records.outcomes import DataWindow, Outcomes, RegionDayTraffic, RequestLog
from calibrate.records.replay import CallRecord, Candidate, JobResult, MergeCounts, Selection
from calibrate.records.runs import UnfinishedRun
from calibrate.store import (
    check_sql,
    coverage_sql,
    health_sql,
    judge_sql,
    labels_sql,
    merge_sql,
    monitor_sql,
    opening,
    outcome_rows_sql,
    outcomes_sql,
    queue_sql,
    replay_sql,
    runs_sql,
    text_sql,
)
from calibrate.store.ingest import fast_lane, file_path, line_path, parquet_lane, rules, runs
from calibrate.store.journal import Journal, journal_path
from calibrate.store.migrations import apply_migrations
from calibrate.store.outcome_rows_sql import OutcomeRows
from calibrate.store.sql_engine import DuckDbEngine

SCRATCH = "outcome_scratch"
"""The name the outcome base's scratch database is attached under."""


class Store:
    """An open calibrate store (a DuckDB file or `:memory:`)."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        path: str,
        recovered: int = 0,
        *,
        read_only: bool = False,
        created: tuple[Path, ...] = (),
    ) -> None:
        self.con = con
        self.con.execute("SET enable_progress_bar = false")  # commands show their own stages
        self.path = path
        self.recovered = recovered
        """Replay results folded in from a crashed run's journal when the store was opened."""
        self.read_only = read_only
        self._created = created
        self._scratch: Path | None = None  # the outcome base's file (`outcome_rows`)
        self._base: outcome_rows_sql.Base | None = None  # the outcome base, once built

    @classmethod
    def open(cls, path: str | Path, *, read_only: bool = False) -> Store:
        """Open or create the store and bring its schema up to date; `read_only` opens an
        existing store so that other readers may share it (`store/opening.py`). Which store a
        command uses is the command line's choice (cli/options.py)."""
        target = str(path)
        if target == ":memory:":
            con = duckdb.connect(target, config=opening.memory_config(None))
            apply_migrations(con)
            return cls(con, target)
        if read_only:
            return cls(opening.open_read_only(Path(target)), target, read_only=True)
        opened = opening.open_for_writing(Path(target))
        return cls(opened.con, target, opened.recovered, created=opened.created)

    def close(self) -> None:
        self.con.close()
        if self._scratch is not None:
            opening.remove_scratch(self._scratch)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """Close; a store this command created and then failed before storing anything in
        (`ingest --strict` on a new --db, say) is removed, with any folder made for it."""
        discard = exc_type is not None and bool(self._created) and opening.holds_nothing(self.con)
        self.close()
        if discard:
            opening.remove_created(self._created)

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
        return {t: self.con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in tables}

    def outcomes(
        self, tiers: Sequence[str], price_per_mtok: Mapping[str, tuple[float, float]]
    ) -> Outcomes:
        """The per-request × tier table the sweep evaluates policies on."""
        return outcomes_sql.load_outcomes(self.con, tiers, price_per_mtok)

    def outcome_rows(
        self, tiers: Sequence[str], price_per_mtok: Mapping[str, tuple[float, float]]
    ) -> OutcomeRows:
        """Build the outcome relation `outcome_rows` (one row per complete request) in this
        store's SQL engine: what the sweep aggregates instead of loading every request."""
        scratch = self._attach_scratch()
        rows = outcome_rows_sql.build_outcome_rows(self.con, tiers, price_per_mtok, scratch)
        self._base = rows.base
        return rows

    def _attach_scratch(self) -> str | None:
        """For a store file whose outcome base would crowd DuckDB's memory
        (`opening.needs_scratch`), the writable database the base is kept in (attached once,
        removed on close: `opening.scratch_file`); otherwise None: a temp table."""
        if self.path == ":memory:":
            return None
        if self._scratch is None:
            (requests,) = self.con.execute("SELECT count(*) FROM requests").fetchall()[0]
            if not opening.needs_scratch(int(requests)):
                return None
            self._scratch = opening.attach_scratch(self.con, Path(self.path), SCRATCH)
        return SCRATCH

    def labeled_outcomes(self, rows: OutcomeRows) -> Outcomes:
        """The labeled requests of the outcome relation, in memory."""
        return outcome_rows_sql.labeled_outcomes(self.con, rows)

    def add_request_column(
        self, rows: OutcomeRows, name: str, request_ids: np.ndarray, values: np.ndarray
    ) -> None:
        """Add a per-request column Python decided (a router's score, the keyword rules' tier)
        to the outcome relation, for the SQL stop rule."""
        outcome_rows_sql.add_request_column(self.con, rows, name, request_ids, values)

    def sql_engine(self) -> DuckDbEngine:
        """The runner of aggregate SQL that may also register small tables (the optimum's)."""
        return DuckDbEngine(self.con)

    def data_window(self, outcomes: Outcomes) -> DataWindow:
        """Provenance: time window of the requests and a digest of the ingested files."""
        return outcomes_sql.data_window(self.con, outcomes)

    def data_window_of(
        self, requests: int, labeled: int, incomplete: int, ts_range: tuple[float, float] | None
    ) -> DataWindow:
        """`data_window` from counts and the (min, max) epoch seconds (`SectionSums`)."""
        return outcomes_sql.window_of(self.con, requests, labeled, incomplete, ts_range)

    def production_paths(
        self, tiers: Sequence[str], request_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per request of `request_ids`: the tiers production called and the index of the tier
        that served it (-1: unknown)."""
        return outcomes_sql.production_paths(self.con, tiers, request_ids)

    def request_log(self, tiers: Sequence[str]) -> RequestLog:
        """Every request in time order with what each given tier answered and what production did
        (for `monitor`; requests a tier never saw are kept)."""
        return monitor_sql.load_request_log(self.con, tiers)

    def rejected_rows(self) -> int:
        # fetchall: a half-read result (fetchone) blocks a later `register` on this connection
        return int(self.con.execute("SELECT count(*) FROM rejects").fetchall()[0][0])

    # --- ingest ---

    def prepare_ingest(self) -> None:
        """Create the connection-local macros and tables ingest uses; no DuckDB progress bar
        (long statements would draw one on the terminal)."""
        self.con.execute("SET enable_progress_bar = false")
        rules.prepare(self.con)
        fast_lane.prepare(self.con)

    def begin_ingest_run(self, started_at: datetime, strict: bool) -> int:
        return runs.begin_run(self.con, started_at, strict)

    def finish_ingest_run(self, run_id: int, finished_at: datetime, counts: Sequence[int]) -> None:
        runs.finish_run(self.con, run_id, finished_at, counts)

    def file_ingested(self, file_sha256: str) -> bool:
        return runs.file_ingested(self.con, file_sha256)

    def ingest_batch(
        self,
        batch: pa.Table,
        raw_rejects: Sequence[tuple[int, str | None, str, str]],
        where: tuple[str, str, int],
    ) -> line_path.BatchResult:
        """Validate and merge one batch of (line, text) rows; `where` = (file, sha256, run_id)."""
        return line_path.ingest_batch(self.con, batch, raw_rejects, where)

    def ingest_lines(
        self,
        batch: pa.Table,
        raw_rejects: Sequence[tuple[int, str | None, str, str]],
        where: tuple[str, str, int],
    ) -> line_path.BatchResult:
        """`ingest_batch` with the fast lane: what cheap tests prove good goes in set-wise."""
        return line_path.ingest_lines(self.con, batch, raw_rejects, where)

    def ingest_parquet_file(
        self, path: Path, where: tuple[str, str, int]
    ) -> tuple[int, np.ndarray] | None:
        """Insert the rows of a nested Parquet file that typed tests prove good; returns the
        file's row count and the numbers of the other rows (for the line path), or None when a
        column's type takes the whole file to the line path (store/ingest/parquet_lane.py)."""
        plan = parquet_lane.plan(path)
        if plan is None:
            return None
        file, _, run_id = where
        return parquet_lane.ingest_file(self.con, path, plan, file, run_id)

    def read_log_files(self, paths: Sequence[Path]) -> list[int] | None:
        """DuckDB reads whole JSONL files (plain or gzip, all alike) in one scan; returns each
        file's number of non-blank lines (None: they cannot be read whole; call outside a
        transaction, see file_path.read_file_records)."""
        return file_path.read_file_records(self.con, [str(p) for p in paths])

    def check_log_files(
        self, blanks: Sequence[int], sources: Sequence[tuple[str, str, int]], run_id: int
    ) -> file_path.FileCheck:
        """Number the read lines across the files (given the blank ones), validate and merge
        them. `sources`: (file, sha256, first line) of each file, its lines numbered on from the
        previous file's (the first file's line 1 is 1)."""
        for table in (runs.SOURCES, runs.FILE_SOURCES):
            runs.set_sources(self.con, sources, table)
        file_path.number_lines(self.con, blanks)
        file_path.defer_file_shared_ids(self.con, [file for file, _, _ in sources])
        return file_path.check_and_merge(self.con, run_id)

    def quarantine_log_lines(self, raw: pa.Table, run_id: int) -> None:
        """Store the checked files' rejects on these (line, text) lines, with their raw text
        (lines numbered across the files, as in check_log_files)."""
        file_path.quarantine(self.con, raw, run_id)

    def finish_log_files(self, run_id: int) -> list[tuple[int, str | None, str]]:
        """Store the rejects left without raw text, free the files' temp tables, and return the
        first few (line across the files, field, reason) for --strict."""
        return file_path.finish_rejects(self.con, run_id)

    def discard_log_file(self) -> None:
        """Drop what read_log_files read (the files go through the line path instead)."""
        file_path.drop_temp_tables(self.con)

    def size_ingested(self, size: int) -> bool:
        """Whether a file of `size` bytes may have been ingested before."""
        return runs.size_ingested(self.con, size)

    def record_ingested_file(
        self, where: tuple[str, str, int], size: int, counts: Sequence[int]
    ) -> None:
        runs.record_file(self.con, where, size, counts)

    def ingested_among(self, shas: Sequence[str]) -> set[str]:
        """Which of these file digests were ingested before (one query for many files)."""
        return runs.ingested_among(self.con, shas)

    def record_ingested_files(
        self, rows: Sequence[tuple[str, str, int, Sequence[int]]], run_id: int
    ) -> None:
        """Mark many files as ingested: (file, sha256, size, (rows_read, kept, rejected))."""
        runs.record_files(self.con, rows, run_id)

    def quarantine_rejects(
        self, rows: Sequence[tuple[str, str, int, str | None, str, str]], run_id: int
    ) -> None:
        """Store rejects found before validation: (file, file_sha256, line, field, reason, raw)."""
        runs.quarantine(self.con, rows, run_id)

    def relocate_rows(
        self, where: tuple[str, str, int], moves: Sequence[tuple[int, str, str, int]]
    ) -> None:
        """Re-file the requests and rejects of a batch written under `where` (gateway exports:
        one batch holds the requests of many files): (batch line, file, sha256, file line)."""
        runs.relocate(self.con, where, moves)

    def rejected_lines(self, where: tuple[str, str, int]) -> set[int]:
        """The lines of the file `where` = (file, sha256, run_id) that this run rejected."""
        return runs.rejected_lines(self.con, where)

    def rejects_by_kind(self, run_id: int) -> list[tuple[str, int]]:
        return runs.rejects_by_kind(self.con, run_id)

    def request_count(self) -> int:
        return runs.request_count(self.con)

    def endpoint_health(self) -> pl.DataFrame:
        """Prod latency p50/p95, error/timeout and fallback rates per tier × region × day (read
        from the outcome base when `outcome_rows` built one: the same table)."""
        if self._base is not None:
            return health_sql.endpoint_health_of_base(self.con, self._base)
        return health_sql.endpoint_health(self.con)

    def region_day_traffic(self) -> RegionDayTraffic:
        """Every request counted by region × day × (first failed prod tier, served tier) (from
        the outcome base when built)."""
        if self._base is not None:
            return health_sql.region_day_traffic_of_base(self.con, self._base)
        return health_sql.region_day_traffic(self.con)

    def answer_codes(self, request_ids: Sequence[str], tiers: Sequence[str]) -> np.ndarray:
        """(requests × tiers) id of each request's normalised answer per tier (-1 without an ok
        attempt), in the given order: the consensus vote's ballots."""
        return text_sql.answer_codes(self.con, request_ids, tiers)

    def any_embedding(self, key: str) -> bool:
        """Whether some request has a precomputed embedding `metadata.<key>`."""
        return text_sql.any_embedding(self.con, key)

    def embeddings(self, request_ids: Sequence[str], key: str) -> list[list[float] | None]:
        """Each request's precomputed embedding `metadata.<key>` (None where absent), in order."""
        return text_sql.embeddings(self.con, request_ids, key)

    def prompt_texts(self, request_ids: Sequence[str]) -> list[str]:
        """Each request's prompt text (its messages' contents), in the given order."""
        return text_sql.prompt_texts(self.con, request_ids)

    # --- replay ---

    def replay_candidates(
        self, selection: Selection, tiers: Sequence[str]
    ) -> tuple[int, list[Candidate]]:
        """(sampled requests, sampled request × tier pairs with no attempt yet). A `--where`
        condition first seals this connection for good: from then on it reaches nothing but the
        store (`store/sandbox.py` has the trust model)."""
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
    ) -> tuple[int, list[UnfinishedRun]]:
        """(the new run's id, earlier replay runs that were killed, now marked so with their
        spend: `store/runs_sql.py`)."""
        with self.transaction():
            killed = runs_sql.close_killed_replay_runs(self.con)
            run_id = replay_sql.begin_run(
                self.con, started_at, selection, max_cost_usd, retry_failed
            )
        return run_id, killed

    def unfinished_runs(self) -> list[UnfinishedRun]:
        """Ingest and replay runs that never finished (killed), with the replay runs' spend."""
        return runs_sql.unfinished_runs(self.con)

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

    # --- labels ---

    def store_labels(
        self, rows: Sequence[LabelRow], known_tiers: Sequence[str], run_id: int, now: datetime
    ) -> tuple[list[RejectedRow], ResolveCounts]:
        """Check labels against the store and store the good ones by the conflict rule (newest
        per request × tier × source); returns the bad ones. The caller holds the transaction."""
        labels_sql.stage(self.con, rows)
        rejects = labels_sql.check(self.con, known_tiers)
        return rejects, labels_sql.upsert(self.con, run_id, now)

    def label_weights(self, tiers: Sequence[str]) -> LabelWeights:
        """Per request: the weight (1/inclusion probability) of the labels the sweep uses for
        `tiers`; `LabelWeights.for_requests(ids)` aligns them (1.0 for unweighted requests)."""
        return labels_sql.label_weights(self.con, tiers)

    def known_label_tiers(self) -> list[str]:
        """Tiers that answered at least one stored request (labels may name only these)."""
        return labels_sql.known_tiers(self.con)

    def begin_label_run(
        self,
        kind: str,
        started_at: datetime,
        file: str | None = None,
        file_sha256: str | None = None,
        replay_run: int | None = None,
    ) -> int:
        return labels_sql.begin_run(self.con, kind, started_at, file, file_sha256, replay_run)

    def finish_label_run(
        self, run_id: int, finished_at: datetime, rows_read: int, stored: int, rejected: int
    ) -> None:
        labels_sql.finish_run(self.con, run_id, finished_at, rows_read, stored, rejected)

    def record_label_rejects(self, run_id: int, file: str, rejects: Sequence[RejectedRow]) -> None:
        labels_sql.record_rejects(self.con, run_id, file, rejects)

    def reference_items(self, tiers: Sequence[str]) -> list[ReferenceItem]:
        """Every stored answer of `tiers` to a request that has a reference."""
        return labels_sql.reference_items(self.con, tiers)

    # --- labelling queue (calibrate sample) ---

    def sample_population(self, tiers: Sequence[str]) -> Population:
        """Requests with an attempt from every tier, sorted by request id, with what the
        sampling design needs (confidence per tier, input tokens, intent)."""
        rows = queue_sql.population(self.con, tiers)
        n = len(rows["request_id"])
        confidence = np.full((n, len(tiers)), np.nan)
        for j in range(len(tiers)):
            confidence[:, j] = labels_sql.floats(rows[f"conf_{j}"])
        return Population(
            tiers=tuple(tiers),
            request_ids=np.asarray(rows["request_id"], dtype=object),
            confidence=confidence,
            input_tokens=np.asarray(rows["input_tokens"], dtype=np.int64),
            intent=np.asarray(rows["intent"], dtype=object),
        )

    def review_rows(self, request_ids: Sequence[str], tiers: Sequence[str]) -> list[tuple]:
        """What a reviewer sees per request: context, messages, reference, each tier's answer."""
        return queue_sql.review_rows(self.con, request_ids, tiers)

    def record_sample(
        self,
        created_at: datetime,
        seed: int,
        requested: int,
        population: int,
        design_json: str,
        file: str,
        request_ids: Sequence[str],
        strata: Sequence[str] | np.ndarray,
        inclusion_prob: Sequence[float] | np.ndarray,
    ) -> int:
        """Store a labelling queue (the caller holds the transaction); returns its sample_id."""
        items = (request_ids, [str(s) for s in strata], [float(p) for p in inclusion_prob])
        return queue_sql.record_sample(
            self.con, created_at, seed, requested, population, design_json, file, items
        )

    # --- judge ---

    def judge_items(
        self, tiers: Sequence[str], judged: Sequence[str], sample: int, seed: int
    ) -> list[tuple[str, str, str, str, str | None, str | None]]:
        """(request_id, tier, messages, answer, reference, premium answer) to judge."""
        return judge_sql.judge_items(self.con, tiers, judged, sample, seed)

    def mark_calls_failed(self, errors: Sequence[tuple[str, str]]) -> None:
        """Turn stored calls whose reply is unusable into failures: (cache_key, error)."""
        with self.transaction():
            judge_sql.mark_call_failed(self.con, errors)

    def judge_overlap(self, tiers: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(human score, judge score) on every request × tier labelled by both."""
        return judge_sql.judge_overlap(self.con, tiers)

    def judge_calls(self) -> tuple[int, int, float]:
        """(judge calls stored, of which unusable, their total cost in USD)."""
        return judge_sql.judge_calls(self.con)

    def label_coverage(self, tiers: Sequence[str]) -> Coverage:
        """What is labelled per tier, app and region, and what no estimate can use (the
        judge's agreement with humans is left for the caller: it needs estimators)."""
        return coverage_sql.coverage(self.con, tiers, judge_sql.judge_calls(self.con))

    # --- check (what the logs can support; the sweep's bias preflight) ---

    def check_data(self, tiers: Sequence[str], texts: bool = True) -> check_sql.CheckData:
        """Per tier and source what the attempts carry, labels per source, and per production
        path × app × region the requests with every tier's answer and with labels (`texts`:
        also compare the cheapest and premium answers' text; without it, the sweep's preflight,
        the per-tier uses and found tiers are not read)."""
        return check_sql.check_data(self.con, tiers, texts)

    def preflight_cells(self, tiers: Sequence[str]) -> tuple[check_sql.CoverageCell, ...]:
        """`check_data(tiers, texts=False).cells` read from the outcome relation's base, which
        `outcome_rows(tiers, …)` built: the sweep's preflight without a second pass over the
        attempts."""
        if self._base is None:
            raise RuntimeError("preflight_cells before outcome_rows")
        return check_sql.preflight_cells(self.con, self._base.name, tiers)

    def found_tiers(self) -> tuple[tuple[str, int], ...]:
        """Every tier the attempts name, with its number of requests."""
        return check_sql.found_tiers(self.con)

    # --- replay-merge ---

    def merge_replay_from(self, other: Path) -> MergeCounts:
        """Copy another store's shadow attempts, replay calls and runs into this one, in one
        transaction, skipping what is already here (`store/merge_sql.py` has the rules). The
        other store is first opened like any read-only store (its migrations and journal)."""
        if Path(self.path).resolve() == other.resolve():
            raise CalibrateError(
                f"{other} is this store (--db): nothing to merge",
                hint="Pass the other stores as arguments and this one with --db.",
            )
        opening.open_read_only(other).close()
        with merge_sql.attached(self.con, other), self.transaction():
            return merge_sql.merge(self.con, str(other))

    # --- confidence scales ---

    def confidence_ranges(self, tiers: Sequence[str]) -> tuple[check_sql.ConfidenceRange, ...]:
        """Per tier and source the range of the stored confidences (the sweep's scale check)."""
        return check_sql.confidence_ranges(self.con, tiers)
