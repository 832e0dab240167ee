"""Gateway export files as records: JSON lines, one JSON document (an array, an API page
`{"data": [...]}`, one object), CSV with a header, or Parquet; plain or gzip-compressed.

`records(path)` yields (number, record) pairs, or RawRejects for lines that are not JSON objects.
`number` is the physical line while every line holds one record, then the record's ordinal (a
line or a document holding several records: arrays, API pages); Parquet rows count from 1.
`first_records(path, n)` reads only the first n records, for detection; it never raises (a file
it cannot read is left to the canonical reader, which reports why). `read_units` gives a gateway
format's units of one file. Imports pyarrow, the standard library and formats.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import IO, Any, cast

import pyarrow as pa
import pyarrow.parquet as pq

from calibrate.errors import LogFormatError
from calibrate.formats.gateway import GatewayFormat, Unit, keys
from calibrate.formats.jsonl import RawReject

Numbered = tuple[int, dict[str, Any]]

_SURROGATE = re.compile("[\udc80-\udcff]")
# The envelope keys of API pages: Langfuse {data, meta}, Helicone {data, error}, LiteLLM
# /spend/logs/v2 {data, total, page, page_size, total_pages}, OpenAI lists {object, data, ...}.
_PAGE_KEYS = keys(
    """data meta error pagination cursor next_cursor has_more next previous total total_count
    totalCount page page_size total_pages limit offset object first_id last_id"""
)


def _open(path: Path) -> IO[bytes]:
    if path.name.lower().endswith(".gz"):
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def _kind(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    return "parquet" if name.endswith(".parquet") else "csv" if name.endswith(".csv") else "json"


def records(path: Path) -> Iterator[Numbered | RawReject]:
    """Every record of the file (see the module docstring for the numbering)."""
    try:
        kind = _kind(path)
        if kind == "parquet":
            yield from _parquet(path)
        elif kind == "csv":
            yield from _csv(path)
        else:
            yield from _json(path)
    except (OSError, EOFError, pa.ArrowException, csv.Error, UnicodeDecodeError) as exc:
        raise LogFormatError(
            f"cannot read {path}: {exc}", hint="Check that the file is complete and not corrupt."
        ) from None


def first_records(path: Path, n: int) -> list[dict[str, Any]]:
    """Up to n records from the start of the file ([] when it cannot be read)."""
    try:
        read = islice(records(path), n * 4)  # at most 3n unreadable records before n good ones
        return list(islice((r[1] for r in read if not isinstance(r, RawReject)), n))
    except (LogFormatError, ValueError, RecursionError):
        return []


def unwrap(value: Any) -> list[Any]:
    """The records of a parsed JSON value: an array's items, an API page's `data` items, or the
    value itself."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and isinstance(value.get("data"), list) and set(value) <= _PAGE_KEYS:
        return value["data"]
    return [value]


def _json(path: Path) -> Iterator[Numbered | RawReject]:
    with _open(path) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8-sig")
        head = text.readline()
        while head and not head.strip():
            head = text.readline()
        try:
            single = json.loads(head) if head.strip() else None
        except ValueError:
            single = None
        if head.strip() and single is None:  # a pretty-printed document
            yield from _numbered([(1, unwrap(json.loads(head + text.read())))])
            return
    yield from _json_lines(path)


def _json_lines(path: Path) -> Iterator[Numbered | RawReject]:
    with _open(path) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="surrogateescape")
        lines = ((n, line) for n, line in enumerate(text, start=1) if line.strip())
        yield from _numbered(_parsed(lines))


def _parsed(lines: Iterator[tuple[int, str]]) -> Iterator[tuple[int, list[Any] | RawReject]]:
    for number, line in lines:
        raw = line.rstrip("\r\n")
        if _SURROGATE.search(raw):
            byte = ord(_SURROGATE.search(raw).group()) - 0xDC00  # type: ignore[union-attr]
            text = raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            yield number, RawReject(number, None, f"not UTF-8: invalid byte 0x{byte:02x}", text)
            continue
        try:
            yield number, unwrap(json.loads(raw))
        except ValueError as exc:
            yield number, RawReject(number, None, f"invalid JSON: {exc}", raw)


def _numbered(
    groups: Iterator[tuple[int, list[Any] | RawReject]] | list[tuple[int, list[Any]]],
) -> Iterator[Numbered | RawReject]:
    """Number records: the line while each line holds one, then a running ordinal."""
    last = 0
    for line, items in groups:
        if isinstance(items, RawReject):
            last = max(last + 1, line)
            yield RawReject(last, items.field, items.reason, items.raw)
            continue
        for item in items:
            last = max(last + 1, line) if len(items) == 1 else last + 1
            if isinstance(item, dict):
                yield last, item
            else:
                raw = json.dumps(item, ensure_ascii=False)
                yield RawReject(last, None, "wrong type: a record must be a JSON object", raw)


def _csv(path: Path) -> Iterator[Numbered]:
    with _open(path) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8-sig", newline="")
        reader = csv.DictReader(text)
        for row in reader:
            record = {k: v for k, v in row.items() if k is not None and v not in ("", None)}
            if record:
                yield reader.line_num, record


def _parquet(path: Path) -> Iterator[Numbered]:
    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
        for row in batch.to_pylist():
            number += 1
            yield number, {k: _mapped(v) for k, v in row.items() if v is not None}


def _mapped(value: Any) -> Any:
    """A Parquet MAP arrives as [(key, value), ...]: back to a dict."""
    if (
        isinstance(value, list)
        and value
        and all(isinstance(i, tuple) and len(i) == 2 for i in value)
    ):
        return dict(value)
    return value


def read_units(
    fmt: GatewayFormat, file: int, path: Path
) -> tuple[list[Unit], list[tuple[int, RawReject]]]:
    """The file's units for one gateway format, and the records it could not read. A format that
    splits records (OTLP batches of spans) numbers its units, and unreadable lines, by ordinal."""
    units: list[Unit] = []
    rejects: list[tuple[int, RawReject]] = []
    ordinal = 0
    for item in records(path):
        if isinstance(item, RawReject):
            if fmt.units is not None:
                ordinal += 1
                item = RawReject(ordinal, item.field, item.reason, item.raw)
            rejects.append((file, item))
            continue
        number, record = item
        lacking = fmt.lacking(record)
        if lacking:  # possible only when --format forced the format
            ordinal += 1
            raw = json.dumps(record, ensure_ascii=False, default=str)
            reason = f"missing field: {', '.join(lacking)} (not a {fmt.name} record)"
            line = ordinal if fmt.units is not None else number
            rejects.append((file, RawReject(line, lacking[0], reason, raw)))
            continue
        if fmt.units is None:
            units.append(Unit(file, number, record))
            continue
        for sub in fmt.units(record):
            ordinal += 1
            units.append(Unit(file, ordinal, sub))
    return units, rejects
