"""Stage: ingest log files into the store -> IngestSummary.

JSONL files (plain or gzip) take the file path: DuckDB reads the whole file in parallel and the
store validates and merges it set-wise; only the lines DuckDB cannot read (invalid JSON, not UTF-8,
...) go through the line path, gathered into batches of batch_rows (each batch scans the store
once, so a few bad lines spread over a big file cost one batch, not one per block), and the raw
text of rejected lines is read back from the file.
Many small JSONL files are read in one scan per group (ingest/file_groups.py). Nested Parquet
takes the Parquet lane (DuckDB reads the typed columns; store/ingest/parquet_lane.py). CSV,
flattened Parquet and the rows the Parquet lane hands on take the line path: readers stream
batches of records, the store checks each batch, through the same fast lane as the file path
(`fast_lane=False`: the exact rule chains only). All give the same rows and the same rejects
(tests/test_ingest_paths.py). Memory: the line path holds one batch; the file path holds what
DuckDB's memory_limit allows (store/opening.py `memory_config`: a quarter of RAM, at most
1 GiB) and spills the rest to the temp directory next to the store. A file whose bytes were
ingested before is skipped; its SHA-256 is taken first, or, for a JSONL file of a size no ingested
file has, in a thread while DuckDB reads it.

Non-strict: one transaction per file (or group of files), so a crash never leaves a half file
marked as ingested.
Strict: one transaction around everything; any bad row aborts it and nothing is written. Never
prints; progress goes to an optional callback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from calibrate.config.tiers import TiersConfig
from calibrate.errors import LogFormatError
from calibrate.formats import readers
from calibrate.ingest import file_groups, gateway
from calibrate.ingest.file_groups import FileCounts, Reject
from calibrate.records.outcomes import IngestSummary
from calibrate.records.progress import NO_PROGRESS, Progress
from calibrate.store.core import Store

FileProgress = Callable[[str, int], None]
"""on_progress(file, rows_read_so_far_in_file), called after every batch (or file)."""


@dataclass(frozen=True, slots=True)
class _Options:
    strict: bool
    batch_rows: int
    whole_files: bool
    fast_lane: bool


def ingest(
    store: Store,
    paths: Iterable[str | Path],
    *,
    strict: bool,
    clock: Callable[[], datetime],
    batch_rows: int = 50_000,
    on_progress: FileProgress | None = None,
    whole_files: bool = True,
    fast_lane: bool = True,
    tiers: TiersConfig | None = None,
    log_format: str = "auto",
    progress: Progress | None = None,
) -> IngestSummary:
    """Ingest every supported file under `paths`; already-ingested files are skipped.

    JSONL files are read whole by DuckDB (`whole_files=False` forces the line path, which CSV and
    Parquet always take); `batch_rows` bounds the rows of one batch on the line path.
    `fast_lane=False` checks every row of the line path with the exact rule chains: the
    reference the tests compare the fast lanes against. Gateway exports (detected from content,
    or all files with `log_format`) go through ingest/gateway.py and need `tiers`. `progress`
    gets one stage, `ingest`, its total the rows of the files (`readers.count_rows`: one more pass
    over them, only when `progress` is given), advanced as each file is done; `on_progress`
    hears of each file and its rows read.
    """
    if batch_rows < 1:
        raise ValueError("batch_rows must be positive")
    files, exports = gateway.split(readers.expand_paths(paths), log_format)
    mapping = gateway.tier_map(tiers, exports) if exports else None
    options = _Options(strict, batch_rows, whole_files, fast_lane)
    rows = {p: readers.count_rows(p) for p in [*files, *(p for p, _ in exports)] if progress}
    progress = progress or NO_PROGRESS
    progress.stage("ingest", sum(rows.values()), "rows")
    store.prepare_ingest()
    with store.transaction() if strict else nullcontext():
        run_id = _begin(store, clock, strict)
        totals, skipped, refused = FileCounts(), 0, []
        for group in file_groups.groups(files, together=_together(options)):
            for path, counts in _ingest_group(store, group, run_id, options, on_progress):
                progress.advance(rows.get(path, 0))
                if counts is None:
                    skipped += 1
                    continue
                if counts.rows_read and not counts.rows_kept:
                    refused.append(f"{path} ({counts.rows_read} rows)")
                totals += counts
        found = gateway.ingest_exports(
            store, exports, mapping, run_id, strict, batch_rows, on_progress
        )
        progress.advance(sum(rows.get(p, 0) for p, _ in exports))
        skipped += found.skipped
        totals += FileCounts(*found.rows)
        done = len(files) + len(exports) - skipped
        with nullcontext() if strict else store.transaction():
            store.finish_ingest_run(run_id, clock(), (done, *totals.as_tuple()))
    return IngestSummary(
        run_id=run_id,
        files=done,
        files_skipped=skipped,
        rows_read=totals.rows_read,
        rows_kept=totals.rows_kept,
        rows_rejected=totals.rows_rejected,
        requests_total=store.request_count(),
        rejects_by_reason=tuple(store.rejects_by_kind(run_id)),
        db_path=store.path,
        formats=found.format_files,
        unmapped_models=found.unmapped_models,
        ignored_records=found.ignored,
        files_rejected=tuple(refused),
    )


def raise_for_rejected_files(summary: IngestSummary) -> None:
    """`ingest` exits 1 when every row of a file was rejected (the rows stay quarantined)."""
    if summary.files_rejected:
        raise LogFormatError(
            f"every row of {', '.join(summary.files_rejected)} was rejected: "
            + "; ".join(f"{reason} ({n} rows)" for reason, n in summary.rejects_by_reason[:3]),
            hint="Is it another format? `calibrate schema` shows the canonical one; the rejected "
            "rows and their reasons are in the store's `rejects` table.",
        )


def _together(options: _Options) -> bool:
    """Small JSONL files are read together, in one scan per group, unless --strict (where a file
    DuckDB cannot read whole is an error of its own) or the line path is forced."""
    return options.whole_files and not options.strict


def _ingest_group(
    store: Store,
    paths: list[Path],
    run_id: int,
    options: _Options,
    on_progress: FileProgress | None,
) -> list[tuple[Path, FileCounts | None]]:
    """Ingest a group of files (`file_groups.groups`): each file's counts, None for a file whose
    bytes were ingested before (or come twice). A group that cannot be read in one scan, and a
    group of one, go file by file."""
    if len(paths) > 1:
        digests = [readers.file_digest(p) for p in paths]
        seen = store.ingested_among([d.sha256 for d in digests])
        todo: list[tuple[Path, readers.Digest]] = []
        for path, digest in zip(paths, digests, strict=True):
            if digest.sha256 not in seen:
                todo.append((path, digest))
            seen.add(digest.sha256)
        found = _group(store, todo, run_id, options, on_progress) if len(todo) > 1 else None
        if found is not None:
            return [(p, found.get(p)) for p in paths]
    return [(p, _ingest_file(store, p, run_id, options, on_progress)) for p in paths]


def _group(
    store: Store,
    todo: list[tuple[Path, readers.Digest]],
    run_id: int,
    options: _Options,
    on_progress: FileProgress | None,
) -> dict[Path, FileCounts] | None:
    """The files read in one scan, checked and merged in one transaction (None: file by file)."""
    read = file_groups.read_group(store, [p for p, _ in todo], [d for _, d in todo])
    if read is None:
        return None
    parts, blanks = read
    with store.transaction():
        counts, _ = file_groups.check_group(store, parts, blanks, run_id, options.batch_rows)
        store.record_ingested_files(
            [
                (str(p.path), p.sha256, p.size, c.as_tuple())
                for p, c in zip(parts, counts, strict=True)
            ],
            run_id,
        )
    if on_progress is not None:
        for part, found in zip(parts, counts, strict=True):
            on_progress(str(part.path), found.rows_read)
    return {p.path: c for p, c in zip(parts, counts, strict=True)}


def _begin(store: Store, clock: Callable[[], datetime], strict: bool) -> int:
    with nullcontext() if strict else store.transaction():
        return store.begin_ingest_run(clock(), strict)


def _ingest_file(
    store: Store,
    path: Path,
    run_id: int,
    options: _Options,
    on_progress: FileProgress | None,
) -> FileCounts | None:
    """Ingest one file (None when its bytes were ingested before)."""
    whole = options.whole_files and readers.is_jsonl(path)
    digest = _digest(store, path, overlap=whole)
    if digest is None:
        return None
    records = _read_whole(store, path, options) if whole else None
    with nullcontext() if options.strict else store.transaction():
        found = _whole_file(store, path, records, digest, run_id, options.batch_rows)
        where = (str(path), digest.result().sha256, run_id)
        lane = store.ingest_parquet_file(path, where) if _parquet_lane(path, options) else None
        if lane is not None:
            counts = _parquet_rest(store, path, lane, where, options)
            if on_progress is not None:
                on_progress(str(path), counts.rows_read)
        elif found is None:
            counts = _line_batches(store, path, where, options, on_progress)
        else:
            counts, first = found
            if options.strict and counts.rows_rejected:
                raise _strict_error(path, first, counts.rows_rejected, "file")
            if on_progress is not None:
                on_progress(str(path), counts.rows_read)
        store.record_ingested_file(where, digest.result().size, counts.as_tuple())
    return counts


def _whole_file(
    store: Store,
    path: Path,
    records: int | None,
    digest: Future[readers.Digest],
    run_id: int,
    batch_rows: int,
) -> tuple[FileCounts, list[Reject]] | None:
    """Check and merge the `records` DuckDB read from the whole file (a group of one). None when
    the file was not read whole or its records cannot be matched to lines."""
    if records is None:
        return None
    read = file_groups.number_group(store, [path], [digest.result()], [records])
    if read is None:
        return None
    parts, blanks = read
    counts, first = file_groups.check_group(store, parts, blanks, run_id, batch_rows)
    return counts[0], [(line, field, reason) for _, line, field, reason in first]


def _read_whole(store: Store, path: Path, options: _Options) -> int | None:
    """DuckDB reads the whole file, outside the file's transaction (a reader error aborts the
    transaction it happens in): its record count, or None when the file must take the line path
    (it has a line too long or damaged gzip data; the line path rejects those lines and keeps the
    rest). With --strict the one transaction is already open, and such a file is an error."""
    found = store.read_log_files([path])
    records = None if found is None else found[0]
    if records is None and options.strict:
        rejects = [
            (r.line, r.field, r.reason)
            for batch in readers.read_batches(path, options.batch_rows)
            for r in batch.rejects
        ]
        if not rejects:
            raise LogFormatError(
                f"cannot read {path} as a whole with --strict",
                hint="Run without --strict: the file is then read line by line.",
            )
        raise _strict_error(path, rejects, len(rejects), "file")
    return records


def _digest(store: Store, path: Path, *, overlap: bool) -> Future[readers.Digest] | None:
    """The file's digest (None when its bytes were ingested before).

    With `overlap`, a file whose size no ingested file has (so it cannot have been ingested) is
    hashed in a thread while DuckDB reads it: hashlib releases the GIL."""
    if overlap and not store.size_ingested(path.stat().st_size):
        with path.open("rb"):  # an unreadable file fails here, as the hash would, not in DuckDB
            pass
        pool = ThreadPoolExecutor(max_workers=1)
        pending = pool.submit(readers.file_digest, path)
        pool.shutdown(wait=False)
        return pending
    done: Future[readers.Digest] = Future()
    done.set_result(readers.file_digest(path))
    return None if store.file_ingested(done.result().sha256) else done


def _parquet_lane(path: Path, options: _Options) -> bool:
    return options.whole_files and options.fast_lane and readers.is_parquet(path)


def _parquet_rest(
    store: Store,
    path: Path,
    lane: tuple[int, np.ndarray],
    where: tuple[str, str, int],
    options: _Options,
) -> FileCounts:
    """After the Parquet lane inserted the rows typed tests prove good, the others (a broken
    rule, a repeated request_id) go through the line path as JSON records."""
    rows, odd = lane
    read, rejected = rows - len(odd), 0
    for batch in readers.read_parquet_rows(path, odd, options.batch_rows) if len(odd) else ():
        raw = [(r.line, r.field, r.reason, r.raw) for r in batch.rejects]
        result = store.ingest_lines(batch.lines, raw, where)
        if options.strict and result.rows_rejected:
            raise _strict_error(path, list(result.rejects), result.rows_rejected, "file")
        read += result.rows_read
        rejected += result.rows_rejected
    return FileCounts(read, read - rejected, rejected)


def _line_batches(
    store: Store,
    path: Path,
    where: tuple[str, str, int],
    options: _Options,
    on_progress: FileProgress | None,
) -> FileCounts:
    """The line path: Python reads batches of lines or records, DuckDB checks each batch."""
    read = rejected = 0
    check = store.ingest_lines if options.fast_lane else store.ingest_batch
    for batch in readers.read_batches(path, options.batch_rows):
        raw = [(r.line, r.field, r.reason, r.raw) for r in batch.rejects]
        result = check(batch.lines, raw, where)
        if options.strict and result.rows_rejected:
            raise _strict_error(path, list(result.rejects), result.rows_rejected, "batch")
        read += result.rows_read
        rejected += result.rows_rejected
        if on_progress is not None:
            on_progress(str(path), read)
    return FileCounts(read, read - rejected, rejected)


def _strict_error(path: Path, rejects: list[Reject], total: int, scope: str) -> LogFormatError:
    shown = [f"{path}:{line}: {field or '-'}: {reason}" for line, field, reason in rejects[:3]]
    more = f" (and {total - len(shown)} more in this {scope})" if total > len(shown) else ""
    return LogFormatError(
        "bad rows with --strict, nothing was written:\n  " + "\n  ".join(shown) + more,
        hint="Fix these rows, or run without --strict to quarantine them in the `rejects` table.",
    )
