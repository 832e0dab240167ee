"""Label files: CSV, JSONL (optionally .gz) or Parquet → validated `LabelRow`s and `RejectedRow`s.

Two shapes are accepted, told apart by their columns:
- **long**: one label per row — `request_id`, `tier` (or `answer`: the answer text judged), `score`,
  and optionally `source`, `labeler`, `labeled_at`, `weight`, `inclusion_prob`, `stratum`, `comment`;
- **wide**: one request per row with a `score_<tier>` column per tier — the review sheet
  `calibrate sample` writes (its context columns `prompt`, `reference`, `answer_<tier>`, … are
  read past). An empty score cell is "not labelled", not an error.

A CSV cell that starts with a single quote followed by `=`, `+`, `-`, `@`, a tab, a carriage
return or another quote loses that first quote: `sheet_cell` adds it when the review sheet is
written, so no cell of the sheet starts a spreadsheet formula (OWASP's advice on CSV injection),
and the text reads back exactly.

Each row is checked by a pydantic model with unknown keys rejected; a bad row (or one bad score
cell of a wide row) becomes a `RejectedRow` with its line, field and reason, and the good rows are
kept. Checks that need the store (unknown request id or tier, duplicates) happen in the store.
A CSV or Parquet file with unknown columns, or a file that cannot be read, is a LabelFileError.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from calibrate.errors import LabelFileError
from calibrate.records.labels import IMPORT_SOURCES, LabelRow, RejectedRow

LONG_COLUMNS = (
    "request_id",
    "tier",
    "answer",
    "score",
    "source",
    "labeler",
    "labeled_at",
    "weight",
    "inclusion_prob",
    "stratum",
    "comment",
)
SHARED_COLUMNS = (
    "request_id",
    "source",
    "labeler",
    "labeled_at",
    "weight",
    "inclusion_prob",
    "stratum",
    "comment",
    "sample_id",
)
CONTEXT_COLUMNS = ("app", "region", "intent", "input_tokens", "prompt", "reference")
CONTEXT_PREFIXES = ("answer_", "confidence_")
SCORE_PREFIX = "score_"
SUFFIXES = (".csv", ".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz", ".parquet")
_WEIGHT_TOLERANCE = 1e-6
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet read a cell as a formula (OWASP: CSV injection)."""
_GUARD = "'"


def sheet_cell(text: str) -> str:
    """A text cell for a CSV a spreadsheet will open: a leading quote keeps a formula start (and
    a quote already there) from being read as such; `_from_sheet_cell` takes it off again."""
    return _GUARD + text if text.startswith((*_FORMULA_START, _GUARD)) else text


def _from_sheet_cell(text: str) -> str:
    guarded = text.startswith(_GUARD) and text[1:].startswith((*_FORMULA_START, _GUARD))
    return text[1:] if guarded else text


class LabelRecord(BaseModel):
    """One label as a file states it (long shape)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    request_id: str = Field(min_length=1)
    tier: str | None = Field(default=None, min_length=1)
    answer: str | None = None
    score: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    source: Literal["human", "reference", "judge"] = "human"
    labeler: str | None = None
    labeled_at: datetime | None = None
    weight: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    inclusion_prob: float | None = Field(default=None, gt=0.0, le=1.0, allow_inf_nan=False)
    stratum: str | None = None
    comment: str | None = None
    sample_id: int | None = None

    @field_validator("score", "weight", "inclusion_prob", mode="before")
    @classmethod
    def _no_bool(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError("must be a number, not true/false")
        return value

    @field_validator("request_id", "tier", "labeler", "stratum", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        if value is not None and not isinstance(value, str):
            raise ValueError(f"must be a string, got {type(value).__name__}")
        return value


@dataclass(frozen=True, slots=True)
class LabelFile:
    """Everything read from one label file."""

    path: Path
    rows_read: int
    rows_unlabeled: int
    labels: tuple[LabelRow, ...]
    rejects: tuple[RejectedRow, ...]


def read_label_file(path: Path, default_source: str = "human") -> LabelFile:
    """Read and validate every row; raises LabelFileError when the file as a whole is unusable."""
    if default_source not in IMPORT_SOURCES:
        raise ValueError(f"unknown source {default_source!r}")
    name = path.name.lower()
    if not name.endswith(SUFFIXES):
        raise LabelFileError(
            f"{path}: unsupported label file type",
            hint="Use .csv, .jsonl (or .jsonl.gz) or .parquet.",
        )
    if not path.is_file():
        raise LabelFileError(f"label file not found: {path}", hint="Check the path.")
    labels: list[LabelRow] = []
    rejects: list[RejectedRow] = []
    rows = unlabeled = 0
    for line, record, raw in _records(path):
        rows += 1
        if isinstance(record, RejectedRow):
            rejects.append(record)
            continue
        good, bad, empty = parse_record(line, record, raw, default_source)
        labels += good
        rejects += bad
        unlabeled += empty
    return LabelFile(path, rows, unlabeled, tuple(labels), tuple(rejects))


def parse_record(
    line: int, record: dict[str, Any], raw: str, default_source: str
) -> tuple[list[LabelRow], list[RejectedRow], bool]:
    """(labels, rejects, row had no score at all) for one row of either shape."""
    values = {k: v for k, v in record.items() if not _blank(v)}
    if "score" in record:
        long = [("score", values)]
    elif any(k.startswith(SCORE_PREFIX) for k in record):
        shared = {k: v for k, v in values.items() if k in SHARED_COLUMNS}
        unknown = [k for k in values if not _wide_column(k)]
        if unknown:
            return [], [_unknown(line, unknown[0], raw)], False
        long = [
            (key, shared | {"tier": key[len(SCORE_PREFIX) :], "score": value})
            for key, value in values.items()
            if key.startswith(SCORE_PREFIX)
        ]
        if not long:
            return [], [], True
    else:
        reason = "missing field: score (or score_<tier> columns)"
        return [], [RejectedRow(line, "score", reason, raw)], False
    labels: list[LabelRow] = []
    rejects: list[RejectedRow] = []
    for field, data in long:
        result = _validate(line, field, data, raw, default_source)
        if isinstance(result, LabelRow):
            labels.append(result)
        else:
            rejects.append(result)
    return labels, _unique(rejects), False


def _validate(
    line: int, field: str, data: dict[str, Any], raw: str, default_source: str
) -> LabelRow | RejectedRow:
    data = {"source": default_source} | data
    try:
        rec = LabelRecord.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else field
        return RejectedRow(line, field if name == "score" else name, _reason(first, name), raw)
    if rec.tier is None and rec.answer is None:
        return RejectedRow(line, "tier", "missing field: tier (or answer)", raw)
    weight = rec.weight
    if rec.inclusion_prob is not None:
        implied = 1.0 / rec.inclusion_prob
        if weight is not None and abs(weight - implied) > _WEIGHT_TOLERANCE * implied:
            reason = f"bad value: weight {weight:g} is not 1/inclusion_prob ({implied:g}); give one of them"
            return RejectedRow(line, "weight", reason, raw)
        weight = implied
    labeled_at = rec.labeled_at
    if labeled_at is not None and labeled_at.tzinfo is None:
        labeled_at = labeled_at.replace(tzinfo=UTC)
    return LabelRow(
        line=line,
        field=field,
        request_id=rec.request_id,
        tier=rec.tier,
        answer=rec.answer,
        score=rec.score,
        source=rec.source,
        labeler=rec.labeler,
        labeled_at=labeled_at,
        weight=weight,
        inclusion_prob=rec.inclusion_prob if rec.inclusion_prob is not None else _pi(weight),
        stratum=rec.stratum,
        detail=rec.comment,
        raw=raw,
    )


def _pi(weight: float | None) -> float | None:
    """The inclusion probability a weight implies (none for a relative weight below 1)."""
    return 1.0 / weight if weight is not None and weight >= 1 else None


def _reason(error: Any, name: str) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "missing":
        return f"missing field: {name}"
    if kind == "extra_forbidden":
        return f"unknown column: {name}"
    if name == "score" and kind in ("greater_than_equal", "less_than_equal"):
        return f"score out of range: {value} (must be in [0, 1])"
    return f"bad value: {name}: {error['msg']} (got {_short(value)})"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "...'"


def _unique(rejects: list[RejectedRow]) -> list[RejectedRow]:
    """A bad shared cell (say inclusion_prob) is reported once for the row, not once per tier."""
    seen: set[tuple[str | None, str]] = set()
    out = []
    for r in rejects:
        if (r.field, r.reason) not in seen:
            seen.add((r.field, r.reason))
            out.append(r)
    return out


def _unknown(line: int, column: str, raw: str) -> RejectedRow:
    return RejectedRow(line, column, f"unknown column: {column}", raw)


def _wide_column(name: str) -> bool:
    return (
        name in SHARED_COLUMNS
        or name in CONTEXT_COLUMNS
        or name.startswith((SCORE_PREFIX, *CONTEXT_PREFIXES))
    )


def _blank(value: object) -> bool:
    return (
        value is None
        or (isinstance(value, str) and not value.strip())
        or (isinstance(value, float) and math.isnan(value))
    )


def check_columns(path: Path, columns: list[str]) -> None:
    """A CSV or Parquet header must have a score column and only known columns."""
    if "score" in columns:
        unknown = [c for c in columns if c not in LONG_COLUMNS]
        allowed = ", ".join(LONG_COLUMNS)
    elif any(c.startswith(SCORE_PREFIX) for c in columns):
        unknown = [c for c in columns if not _wide_column(c)]
        allowed = f"score_<tier>, {', '.join(SHARED_COLUMNS)} and the review sheet's columns"
    else:
        raise LabelFileError(
            f"{path}: no score column (columns: {', '.join(columns) or 'none'})",
            hint="Give `request_id, tier, score` (one label per row) or `request_id` and one "
            "`score_<tier>` column per tier (the sheet `calibrate sample` writes).",
        )
    if unknown:
        raise LabelFileError(
            f"{path}: unknown column(s): {', '.join(unknown)}",
            hint=f"Rename or remove them; allowed: {allowed}.",
        )


Record = tuple[int, dict[str, Any] | RejectedRow, str]


def _records(path: Path) -> Iterator[Record]:
    name = path.name.lower()
    if name.endswith(".parquet"):
        yield from _parquet_records(path)
        return
    opener = gzip.open if name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise LabelFileError(f"{path}: cannot read ({exc})", hint="Check the file.") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelFileError(
            f"{path}: not UTF-8 (byte {exc.start})", hint="Save it as UTF-8."
        ) from None
    if name.endswith(".csv"):
        yield from _csv_records(path, io.StringIO(text, newline=""))
    else:
        yield from _jsonl_records(text)


def _csv_records(path: Path, fh: IO[str]) -> Iterator[Record]:
    reader = csv.reader(fh)
    header = next(reader, None)
    if header is None:
        raise LabelFileError(f"{path}: empty file", hint="Add a header row and labels.")
    columns = [c.strip() for c in header]
    check_columns(path, columns)
    start = reader.line_num + 1
    for cells in reader:
        line, start = start, reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue
        raw = json.dumps(cells, ensure_ascii=False)
        if len(cells) != len(columns):
            reason = f"bad value: the row has {len(cells)} cells, the header {len(columns)}"
            yield line, RejectedRow(line, None, reason, raw), raw
            continue
        yield line, dict(zip(columns, map(_from_sheet_cell, cells), strict=True)), raw


def _jsonl_records(text: str) -> Iterator[Record]:
    for number, line_text in enumerate(text.splitlines(), start=1):
        if not line_text.strip():
            continue
        raw = line_text.rstrip("\r")
        try:
            value = json.loads(raw)
        except ValueError as exc:
            yield number, RejectedRow(number, None, f"invalid JSON: {exc}", raw), raw
            continue
        if not isinstance(value, dict):
            reason = f"wrong type: a row must be a JSON object, got {type(value).__name__}"
            yield number, RejectedRow(number, None, reason, raw), raw
            continue
        yield number, value, raw


def _parquet_records(path: Path) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise LabelFileError(
            f"{path}: not a readable Parquet file ({exc})", hint="Check the file."
        ) from None
    check_columns(path, table.column_names)
    for number, row in enumerate(table.to_pylist(), start=1):
        yield number, row, json.dumps(row, default=str, ensure_ascii=False)
