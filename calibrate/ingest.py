"""Stage: ingest log files into the store -> IngestSummary.

Readers stream each file as batches of raw rows; the store validates and merges each batch in SQL
and quarantines bad rows. Non-strict: one transaction per file, so a crash never leaves a half file
marked as ingested. Strict: one transaction around everything; the first bad row aborts it and
nothing is written. Never prints; progress goes to an optional callback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from calibrate import readers
from calibrate.errors import LogFormatError
from calibrate.records import IngestSummary
from calibrate.store.core import Store

Progress = Callable[[str, int], None]
"""on_progress(file, rows_read_so_far_in_file), called after every batch."""


@dataclass(frozen=True, slots=True)
class _FileCounts:
    rows_read: int = 0
    rows_kept: int = 0
    rows_rejected: int = 0


def ingest(
    store: Store,
    paths: Iterable[str | Path],
    *,
    strict: bool,
    clock: Callable[[], datetime],
    batch_rows: int = 50_000,
    on_progress: Progress | None = None,
) -> IngestSummary:
    """Ingest every supported file under `paths`; already-ingested files are skipped."""
    if batch_rows < 1:
        raise ValueError("batch_rows must be positive")
    files = readers.expand_paths(paths)
    store.prepare_ingest()
    with store.transaction() if strict else nullcontext():
        run_id = _begin(store, clock, strict)
        totals, skipped = _FileCounts(), 0
        for path in files:
            counts = _ingest_file(store, path, run_id, strict, batch_rows, on_progress)
            if counts is None:
                skipped += 1
                continue
            totals = _FileCounts(
                *(a + b for a, b in zip(_tuple(totals), _tuple(counts), strict=False))
            )
        done = len(files) - skipped
        with nullcontext() if strict else store.transaction():
            store.finish_ingest_run(run_id, clock(), (done, *_tuple(totals)))
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
    )


def _tuple(counts: _FileCounts) -> tuple[int, int, int]:
    return counts.rows_read, counts.rows_kept, counts.rows_rejected


def _begin(store: Store, clock: Callable[[], datetime], strict: bool) -> int:
    with nullcontext() if strict else store.transaction():
        return store.begin_ingest_run(clock(), strict)


def _ingest_file(
    store: Store,
    path: Path,
    run_id: int,
    strict: bool,
    batch_rows: int,
    on_progress: Progress | None,
) -> _FileCounts | None:
    """Ingest one file (None when its bytes were ingested before)."""
    sha = readers.file_sha256(path)
    if store.file_ingested(sha):
        return None
    where = (str(path), sha, run_id)
    read = rejected = 0
    with nullcontext() if strict else store.transaction():
        for batch in readers.read_batches(path, batch_rows):
            raw = [(r.line, r.field, r.reason, r.raw) for r in batch.rejects]
            result = store.ingest_batch(batch.lines, raw, where)
            if strict and result.rows_rejected:
                raise _strict_error(path, result.rejects, result.rows_rejected)
            read += result.rows_read
            rejected += result.rows_rejected
            if on_progress is not None:
                on_progress(str(path), read)
        counts = _FileCounts(read, read - rejected, rejected)
        store.record_ingested_file(where, _tuple(counts))
    return counts


def _strict_error(
    path: Path, rejects: tuple[tuple[int, str | None, str], ...], total: int
) -> LogFormatError:
    shown = [f"{path}:{line}: {field or '-'}: {reason}" for line, field, reason in rejects[:3]]
    more = f" (and {total - len(shown)} more in this batch)" if total > len(shown) else ""
    return LogFormatError(
        "bad rows with --strict, nothing was written:\n  " + "\n  ".join(shown) + more,
        hint="Fix these rows, or run without --strict to quarantine them in the `rejects` table.",
    )
