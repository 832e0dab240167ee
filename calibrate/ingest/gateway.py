"""Ingest of gateway exports (LiteLLM, Langfuse, OpenTelemetry, OpenAI Batch, Helicone): detect
each file's format, convert and group its calls into canonical requests, and write them through
the store's line path like any canonical batch.

`split` decides, before anything is written, which files are canonical (they keep the fast
canonical path untouched) and which are exports; `--format` forces one format for every file.
`ingest_exports` reads all export files of one format together (a request may span files, a Batch
output needs its input), files each request under the file and line of its first call, and
writes every export file of the run in one transaction (one per run in --strict). Rows of an
export file are its LLM calls: a call is rejected when its record cannot be read, its model is
claimed by no tier, or the store rejects its request; records that are not LLM calls are counted
as ignored. Never prints.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from calibrate.config.tiers import TiersConfig
from calibrate.errors import ConfigError, LogFormatError
from calibrate.formats import detect, export_files, readers
from calibrate.formats.gateway import Conversion
from calibrate.formats.grouping import Request, group
from calibrate.formats.jsonl import RawReject
from calibrate.formats.tier_map import TierMap, TierSpec
from calibrate.store.core import Store

Progress = Callable[[str, int], None]


@dataclass
class ExportCounts:
    """What the export files of one run gave (rows are LLM calls)."""

    files: int = 0
    skipped: int = 0
    rows_read: int = 0
    rows_kept: int = 0
    rows_rejected: int = 0
    ignored: int = 0
    formats: Counter[str] = field(default_factory=Counter)
    unmapped: Counter[str] = field(default_factory=Counter)

    @property
    def rows(self) -> tuple[int, int, int]:
        return self.rows_read, self.rows_kept, self.rows_rejected

    @property
    def format_files(self) -> tuple[tuple[str, int], ...]:
        return tuple(sorted(self.formats.items()))

    @property
    def unmapped_models(self) -> tuple[tuple[str, int], ...]:
        """Models no tier claims, most calls first."""
        return tuple(sorted(self.unmapped.items(), key=lambda m: (-m[1], m[0])))


@dataclass
class _File:
    path: Path
    fmt: str
    sha256: str
    size: int
    calls: int = 0
    unreadable: int = 0
    rejects: list[RawReject] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Its LLM calls, plus the records that could not be read or converted."""
        return self.calls + self.unreadable


def split(files: Sequence[Path], log_format: str) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(canonical files, (export file, format) pairs); detection errors are raised here."""
    if log_format not in detect.NAMES:
        raise LogFormatError(
            f"unknown log format: {log_format}", hint=f"Use one of: {', '.join(detect.NAMES)}."
        )
    canonical: list[Path] = []
    exports: list[tuple[Path, str]] = []
    for path in files:
        fmt = detect.detect_file(path) if log_format == detect.AUTO else log_format
        if fmt == detect.CANONICAL:
            canonical.append(path)
        else:
            exports.append((path, fmt))
    return canonical, exports


def tier_map(tiers: TiersConfig | None, exports: Sequence[tuple[Path, str]]) -> TierMap:
    """The model -> tier mapping the exports need (ConfigError without tiers.yaml)."""
    if tiers is None:
        path, fmt = exports[0]
        raise ConfigError(
            f"{path} holds {detect.gateway(fmt).title} records: mapping their models to tiers "
            "needs tiers.yaml",
            hint="Pass --tiers tiers.yaml (to ingest, sweep or evaluate; for other commands, "
            "ingest first with `calibrate ingest LOGS --tiers tiers.yaml --db FILE`). A tier's "
            "`aliases` list the names your gateway logs for its model, e.g. openai/gpt-4o-mini "
            "or a LiteLLM model_group.",
        )
    specs = [TierSpec(t.name, (t.model, *t.aliases), t.confidence, t.scale) for t in tiers.tiers]
    try:
        return TierMap.build(specs)
    except ValueError as exc:
        raise ConfigError(
            f"tiers.yaml: {exc}", hint="Give each tier model names no other tier uses."
        ) from None


def ingest_exports(
    store: Store,
    exports: Sequence[tuple[Path, str]],
    mapping: TierMap | None,
    run_id: int,
    strict: bool,
    batch_rows: int,
    on_progress: Progress | None = None,
) -> ExportCounts:
    """Convert and write the export files (see the module docstring); `mapping` is
    `tier_map(...)`, None only when there are no exports."""
    counts = ExportCounts()
    if not exports or mapping is None:
        return counts
    digests = [(path, fmt, readers.file_digest(path)) for path, fmt in exports]
    seen = store.ingested_among([d.sha256 for _, _, d in digests])
    files: list[_File] = []
    for path, fmt, digest in digests:
        if digest.sha256 in seen:  # ingested before, or the same bytes twice in this run
            counts.skipped += 1
        else:
            seen.add(digest.sha256)
            files.append(_File(path, fmt, digest.sha256, digest.size))
    for fmt in dict.fromkeys(f.fmt for f in files):
        _convert(files, fmt, mapping, counts)
    with nullcontext() if strict else store.transaction():
        rejected = _write(store, files, run_id, strict, batch_rows)
        done = []
        for index, file in enumerate(files):
            read, bad = file.rows, len(file.rejects) + rejected[index]
            done.append((str(file.path), file.sha256, file.size, (read, read - bad, bad)))
            counts.files += 1
            counts.formats[file.fmt] += 1
            counts.rows_read += read
            counts.rows_kept += read - bad
            counts.rows_rejected += bad
            if on_progress is not None:
                on_progress(str(file.path), read)
        store.record_ingested_files(done, run_id)
    return counts


def _convert(files: list[_File], fmt: str, mapping: TierMap, counts: ExportCounts) -> None:
    """Read, convert and group every file of one format."""
    spec = detect.gateway(fmt)
    mine = [i for i, f in enumerate(files) if f.fmt == fmt]
    units = []
    for i in mine:
        found, unread = export_files.read_units(spec, i, files[i].path)
        units += found
        for _, reject in unread:
            files[i].rejects.append(reject)
            files[i].unreadable += 1
    conversion: Conversion = spec.convert(units)
    counts.ignored += conversion.ignored
    for file_index, reject in conversion.rejects:
        files[file_index].rejects.append(reject)
        files[file_index].unreadable += 1
    for call in conversion.calls:
        files[call.unit.file].calls += 1
    grouped = group(conversion.calls, mapping, fmt)
    counts.unmapped.update(grouped.unmapped)
    for file_index, reject in grouped.rejects:
        files[file_index].rejects.append(reject)
    for request in grouped.requests:
        files[request.file].requests.append(request)


def _write(
    store: Store, files: list[_File], run_id: int, strict: bool, batch_rows: int
) -> list[int]:
    """Quarantine the files' rejects, then send every request through the line path, batch_rows
    at a time whatever file they come from (one store call per file would cost ~0.5 s per file:
    one-call-per-object exports have thousands), and file each one back under its own file and
    line. Returns, per file, how many of its calls are in requests the store rejected."""
    rejects = [(f.path, f.sha256, r) for f in files for r in f.rejects]
    if strict and rejects:
        raise _strict_error([(p, r.line, r.field, r.reason) for p, _, r in rejects])
    store.quarantine_rejects(
        [(str(p), sha, r.line, r.field, r.reason, r.raw) for p, sha, r in rejects], run_id
    )
    queued = [(i, r) for i, f in enumerate(files) for r in sorted(f.requests, key=lambda r: r.line)]
    rejected = [0] * len(files)
    for start in range(0, len(queued), batch_rows):
        chunk = queued[start : start + batch_rows]
        where = _chunk_where(files[chunk[0][0]].path, run_id, start)
        result = store.ingest_lines(_batch([r for _, r in chunk]), [], where)
        if strict and result.rows_rejected:
            raise _strict_error(
                [
                    (files[chunk[n - 1][0]].path, chunk[n - 1][1].line, f, why)
                    for n, f, why in result.rejects
                ]
            )
        if result.rows_rejected:
            for n in store.rejected_lines(where):
                for call_file, _ in chunk[n - 1][1].calls:
                    rejected[call_file] += 1
        moves = [
            (n, str(files[i].path), files[i].sha256, r.line) for n, (i, r) in enumerate(chunk, 1)
        ]
        store.relocate_rows(where, moves)
    return rejected


def _chunk_where(first: Path, run_id: int, start: int) -> tuple[str, str, int]:
    """A batch's provisional source (its rows are re-filed under their own files after it)."""
    label = f"{first} (gateway export batch from request {start + 1})"
    return label, hashlib.sha256(f"{run_id}\0{label}".encode()).hexdigest(), run_id


def _batch(requests: Sequence[Request]) -> pa.Table:
    """Canonical records as the line path's (line, JSON text) table, lines numbered from 1."""
    return pa.table(
        {
            "line": pa.array(range(1, len(requests) + 1), pa.int64()),
            "text": pa.array(
                [json.dumps(r.record, ensure_ascii=False) for r in requests], pa.string()
            ),
        }
    )


def _strict_error(rejects: list[tuple[Path, int, str | None, str]]) -> LogFormatError:
    shown = [f"{path}:{line}: {field or '-'}: {why}" for path, line, field, why in rejects[:3]]
    more = f" (and {len(rejects) - len(shown)} more)" if len(rejects) > len(shown) else ""
    return LogFormatError(
        "bad rows with --strict, nothing was written:\n  " + "\n  ".join(shown) + more,
        hint="Fix these rows, or run without --strict to quarantine them in the `rejects` table.",
    )
