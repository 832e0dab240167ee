"""What every gateway format turns its records into: `Call`s, one per LLM call, in the units the
canonical format uses (USD, milliseconds, tokens, UTC), plus the records it rejects or ignores.

A format module (litellm.py, langfuse.py, otel.py, openai_batch.py, helicone.py) describes itself
with a `GatewayFormat`: its name, the top-level keys that identify it (detect.py), and `convert`,
which reads the `Unit`s of all its files at once (a request may span files; a Batch output needs
its input file). grouping.py turns the calls into canonical requests. Pure; no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from calibrate.formats import fields
from calibrate.formats.jsonl import RawReject

Status = Literal["ok", "error", "timeout"]
Source = Literal["prod", "shadow"]


@dataclass(frozen=True, slots=True)
class Unit:
    """One record of an export file: `line` is the physical line of a one-record-per-line file
    (JSONL, CSV), else the record's ordinal in the file (JSON arrays and `data` pages, Parquet
    rows, OTLP spans)."""

    file: int
    line: int
    record: Mapping[str, Any]

    def raw(self) -> str:
        return json.dumps(self.record, ensure_ascii=False, default=str)

    def reject(self, field_name: str | None, reason: str) -> tuple[int, RawReject]:
        return self.file, RawReject(self.line, field_name, reason, self.raw())


@dataclass(frozen=True, slots=True)
class Call:
    """One LLM call as a gateway logged it.

    `key` groups calls into one request (the format's trace/session key; None: the call is its
    own request, named `call_id`). `models` are the names to map to a tier, most specific first.
    `logprobs` are the answer's per-token logprobs, when the export carries them. `metadata`
    holds request-level context (user metadata, session, user); `app`/`region` come from it.
    `extra` goes into the attempt's extra fields (cache hits, HTTP status).
    """

    unit: Unit
    call_id: str
    key: str | None
    start: datetime
    models: tuple[str, ...]
    status: Status
    source: Source = "prod"
    model: str | None = None
    messages: list[dict[str, Any]] | None = None
    output: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    latency_ms: float | None = None
    logprobs: tuple[float, ...] | None = None
    error: str | None = None
    app: str | None = None
    region: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Conversion:
    """What a format made of its files' units: calls, rejected units (file index, reject) and
    the number of records that are not LLM calls (spans, events, embeddings...)."""

    calls: list[Call] = field(default_factory=list)
    rejects: list[tuple[int, RawReject]] = field(default_factory=list)
    ignored: int = 0

    def add(self, result: Call | tuple[int, RawReject] | None) -> None:
        if result is None:
            self.ignored += 1
        elif isinstance(result, Call):
            self.calls.append(result)
        else:
            self.rejects.append(result)


@dataclass(frozen=True)
class GatewayFormat:
    """A gateway export format.

    A record is this format when its top-level keys (snake_case when `snake_keys`) include all of
    one of `signatures`; `vocabulary` is every top-level key its records (or look-alikes of them)
    carry, so detect.py can name the closest format of a record that matches none.
    `units` splits one file record into call records (OTLP: a batch of spans).
    """

    name: str
    title: str
    signatures: tuple[frozenset[str], ...]
    vocabulary: frozenset[str]
    convert: Callable[[Sequence[Unit]], Conversion]
    snake_keys: bool = False
    units: Callable[[Mapping[str, Any]], list[Mapping[str, Any]]] | None = None

    def lacking(self, record: Mapping[str, Any]) -> tuple[str, ...]:
        """The fields of the signature the record comes closest to that it lacks (none: the
        record is this format)."""
        return signature_gap(self.signatures, record, snake_keys=self.snake_keys)


def record_keys(record: Mapping[str, Any], *, snake_keys: bool) -> frozenset[str]:
    return frozenset(fields.snake(str(k)) if snake_keys else str(k) for k in record)


def signature_gap(
    signatures: Sequence[frozenset[str]], record: Mapping[str, Any], *, snake_keys: bool
) -> tuple[str, ...]:
    """The missing keys of the signature the record comes closest to; () when it has one whole."""
    present = record_keys(record, snake_keys=snake_keys)
    gaps: list[frozenset[str]] = sorted((sig - present for sig in signatures), key=len)
    return tuple(sorted(gaps[0]))


def per_unit(
    convert_one: Callable[[Unit], Call | tuple[int, RawReject] | None],
) -> Callable[[Sequence[Unit]], Conversion]:
    """A `convert` for formats whose units convert one by one."""

    def convert(units: Sequence[Unit]) -> Conversion:
        out = Conversion()
        for unit in units:
            out.add(convert_one(unit))
        return out

    return convert


def keys(text: str) -> frozenset[str]:
    """A set of record keys written as whitespace-separated words."""
    return frozenset(text.split())


def names(*values: Any) -> tuple[str, ...]:
    """The distinct non-empty strings among values, in order (a call's model names)."""
    seen: dict[str, None] = {}
    for value in values:
        if isinstance(value, str) and value.strip():
            seen.setdefault(value.strip(), None)
    return tuple(seen)


def user_segments(meta: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(app, region) from user metadata keys `app` and `region` (any case)."""
    lowered = {str(k).lower(): v for k, v in meta.items()}
    app, region = lowered.get("app"), lowered.get("region")
    return (
        app if isinstance(app, str) and app else None,
        region if isinstance(region, str) and region else None,
    )


def plain(meta: Mapping[str, Any], drop: Iterable[str] = ()) -> dict[str, Any]:
    """Metadata without null values and without the given keys (case-insensitive)."""
    dropped = {d.lower() for d in drop}
    return {k: v for k, v in meta.items() if v is not None and str(k).lower() not in dropped}
