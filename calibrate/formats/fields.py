"""Typed values out of gateway export records, whatever the file type carried them as.

The same field arrives as a JSON number, a numeric string (CSV), a Decimal string (Langfuse
prices), a datetime (Parquet), JSON text inside a CSV cell, or camelCase in one export and
snake_case in another. Every reader here returns None rather than guess: a value that does not
parse is absent. Pure; imports nothing from calibrate.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")
_NAIVE_SPACE = re.compile(r"^\d{4}-\d{2}-\d{2} \d")


def snake(key: str) -> str:
    """`startTime` -> `start_time`; snake_case keys are unchanged."""
    return _CAMEL.sub(r"_\1", key).lower()


def snake_keys(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record with top-level keys in snake_case (the first spelling of a key wins)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        out.setdefault(snake(str(key)), value)
    return out


def json_value(value: Any) -> Any:
    """JSON text (an object or an array, as CSV cells and some APIs carry them) parsed; any
    other value unchanged."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def as_dict(value: Any) -> dict[str, Any]:
    parsed = json_value(value)
    return parsed if isinstance(parsed, dict) else {}


def as_str(value: Any) -> str | None:
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float) and math.isfinite(value):
        return str(value)
    return None


def as_float(value: Any) -> float | None:
    """A finite number (numbers, numeric strings); None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    try:  # Decimal, numpy scalars
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def as_count(value: Any) -> int | None:
    """A non-negative whole number (42, 42.0, "42"); None otherwise."""
    number = as_float(value)
    if number is None or number < 0 or number != int(number):
        return None
    return int(number)


def as_time(value: Any) -> datetime | None:
    """A UTC datetime from a datetime, an RFC 3339 / ISO 8601 string (a naive one is UTC, as the
    exports write UTC), or epoch seconds; None otherwise."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        text = value.strip()
        if _NAIVE_SPACE.match(text):
            text = text.replace(" ", "T", 1)
        try:
            stamp = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            number = as_float(text)
            return epoch_seconds(number) if number is not None else None
        return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
    number = as_float(value)
    return epoch_seconds(number) if number is not None else None


def epoch_seconds(seconds: float) -> datetime | None:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def epoch_nanos(value: Any) -> datetime | None:
    """OTLP's `...UnixNano` (an integer, as a string in OTLP/JSON) as a UTC datetime."""
    number = as_count(value)
    return epoch_seconds(number / 1e9) if number else None


def rfc3339(stamp: datetime) -> str:
    """`2026-10-01T09:30:00.123456Z` (microseconds only when present)."""
    text = stamp.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def between_ms(start: datetime | None, end: datetime | None) -> float | None:
    """end - start in milliseconds; None when either is missing or end is before start."""
    if start is None or end is None or end < start:
        return None
    return (end - start).total_seconds() * 1000.0


def first(*values: Any) -> Any:
    """The first value that is neither None nor an empty string."""
    for value in values:
        if value is not None and value != "":
            return value
    return None
