"""The Parquet lane of ingest: DuckDB reads a nested Parquet file's typed columns and inserts the rows
that typed tests prove good, set-wise, with no JSON round trip.

`plan` reads the file's Arrow schema: every column the canonical format names must have a type this
lane understands (strings, integers, floats, booleans, timestamps to the microsecond, and lists,
structs and maps of those, where the format allows them); else it returns None and the whole file
takes the line path. Row by row, a row is *direct* when typed tests show that every rule of
store/ingest/rules.py holds and its request_id is unique in the file and new to the store; it is
then inserted straight from the file. The other rows (a broken rule, a repeated request_id) are
returned by number: the stage turns just those into JSON records (formats/readers.py, as the line
path always did) and sends them through the line path, which rejects or merges them with the exact
rule chains. The stored values are the ones the line path stores for the same row
(tests/test_ingest_paths.py compares the two). Only the store imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from calibrate.formats import canonical as lf


@dataclass(frozen=True, slots=True)
class Plan:
    """SQL over the columns of read_parquet for one file's schema."""

    plain: str
    request: str
    attempts: str | None
    """The select list of one attempt's typed columns from `a`, an element of `attempts`."""
    labels: str | None


_STRINGS = ("region", "app", "served_tier", "reference", "prompt")
_NUMBERS = ("confidence", "cost_usd", "latency_ms")
_COUNTS = ("input_tokens", "output_tokens")


def _base(t: pa.DataType) -> pa.DataType:
    return t.value_type if pa.types.is_dictionary(t) else t


def _is_string(t: pa.DataType) -> bool:
    t = _base(t)
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_int(t: pa.DataType) -> bool:
    """Integers Python and DuckDB read alike (no uint64: it may exceed BIGINT)."""
    return pa.types.is_integer(t) and not pa.types.is_uint64(t)


def _is_number(t: pa.DataType) -> bool:
    return _is_int(t) or pa.types.is_float32(t) or pa.types.is_float64(t)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t)


def _json_value(t: pa.DataType, top: bool) -> bool:
    """A value written into JSON text (metadata, extras, messages) the same way by Python's json
    and DuckDB's to_json: strings, booleans, integers, lists and structs of those; a float only
    at the top (where it is tested finite: Python would write NaN)."""
    t = _base(t)
    if _is_string(t) or pa.types.is_boolean(t) or _is_int(t):
        return True
    if pa.types.is_floating(t) and not pa.types.is_float16(t):
        return top
    if _is_list(t):
        return _json_value(t.value_type, top=False)
    if pa.types.is_struct(t):
        return all(_json_value(f.type, top=False) for f in t)
    return False


def _q(name: str) -> str:
    """A SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _s(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _finite(expr: str, t: pa.DataType) -> str:
    """SQL: the value is not a non-finite float (NULL counts as fine)."""
    return f"coalesce(isfinite({expr}), true)" if pa.types.is_floating(t) else "true"


def _entries(items: Sequence[tuple[str, str]]) -> str:
    """SQL: a JSON object of the non-NULL (key, SQL value) pairs, in order (NULL when none)."""
    pairs = ", ".join(f"{{'key': {_s(k)}, 'value': to_json({v})}}" for k, v in items)
    return f"list_filter([{pairs}], lambda e: e.value IS NOT NULL)"


def plan(path: Path) -> Plan | None:
    """The SQL that reads this file's rows, or None when a column has a type this lane does not
    read (the file then takes the line path)."""
    schema = pq.read_schema(path)
    types = {f.name: f.type for f in schema}
    if len(types) < len(schema) or f"{lf.ATTEMPT_PREFIX}tier" in types:
        return None  # a column named twice, or the flattened form
    if not _is_string(types.get("request_id", pa.null())) or "timestamp" not in types:
        return None
    extras = [name for name in types if name not in lf.REQUEST_FIELDS]
    if not all(_json_value(types[n], top=True) for n in extras):
        return None
    parts = [
        _timestamp(types["timestamp"]),
        _messages(types),
        _input_tokens(types.get("input_tokens")),
        _metadata(types, extras),
    ]
    attempts = _attempts(types.get("attempts"))
    labels = _labels(types.get("labels"))
    if any(p is None for p in parts) or attempts is False or labels is False:
        return None
    if any(n in types and not _is_string(types[n]) for n in _STRINGS):
        return None
    (ts, ts_ok), (messages, messages_ok), (tokens, tokens_ok), (metadata, metadata_ok) = [
        p for p in parts if p is not None
    ]
    checks = ["request_id <> ''", ts_ok, messages_ok, tokens_ok, metadata_ok]
    checks += [f"({found[1]})" for found in (attempts, labels) if isinstance(found, tuple)]
    request = ", ".join(
        [
            "request_id",
            f"{ts} AS ts",
            f"{messages} AS messages",
            f"{tokens} AS input_tokens",
            f"{metadata} AS metadata",
            *(f"{c} AS {c}" if c in types else f"NULL AS {c}" for c in _STRINGS[:4]),
        ]
    )
    return Plan(
        plain="coalesce(" + " AND ".join(checks) + ", false)",
        request=request,
        attempts=attempts[0] if isinstance(attempts, tuple) else None,
        labels=labels[0] if isinstance(labels, tuple) else None,
    )


def _timestamp(t: pa.DataType) -> tuple[str, str] | None:
    """(typed value, check): an RFC 3339 string as the rules read it, or a timestamp (naive: UTC)."""
    if _is_string(t):
        value = "ing_ts(to_json(timestamp))"
    elif pa.types.is_timestamp(t) and t.unit != "ns":
        value = "timestamp" if t.tz else "timezone('UTC', timestamp)"
    else:
        return None
    return value, f"{value} IS NOT NULL"


def _messages(types: dict[str, pa.DataType]) -> tuple[str, str] | None:
    """(messages JSON, check): a list of structs, or the prompt as one user message."""
    messages, prompt = types.get("messages"), types.get("prompt")
    if prompt is not None and not _is_string(prompt):
        return None
    if messages is None:
        if prompt is None:
            return None
        return "to_json([{'role': 'user', 'content': prompt}])", "prompt IS NOT NULL"
    if not (_is_list(messages) and pa.types.is_struct(messages.value_type)):
        return None
    if not _json_value(messages.value_type, top=False):
        return None
    only = "len(list_filter(messages, lambda m: m IS NULL)) = 0"
    if prompt is None:
        return "to_json(messages)", f"messages IS NOT NULL AND {only}"
    value = "coalesce(to_json(messages), to_json([{'role': 'user', 'content': prompt}]))"
    check = f"CASE WHEN messages IS NULL THEN prompt IS NOT NULL ELSE prompt IS NULL AND {only} END"
    return value, check


def _count(expr: str, t: pa.DataType) -> str:
    """SQL: a whole number >= 0 below 9e18, as ing_count reads it (NULL is fine)."""
    if _is_int(t):
        return f"coalesce({expr} >= 0 AND {expr}::DOUBLE < 9e18, true)"
    return f"coalesce(ing_whole_double({expr}::DOUBLE), true)"


def _input_tokens(t: pa.DataType | None) -> tuple[str, str] | None:
    if t is None:
        return "NULL::BIGINT", "true"
    if not _is_number(t):
        return None
    return "TRY_CAST(input_tokens::DOUBLE AS BIGINT)", _count("input_tokens", t)


def _metadata(types: dict[str, pa.DataType], extras: list[str]) -> tuple[str, str] | None:
    """(metadata JSON, check): the row's metadata without its NULL values, then its other columns
    (NULL ones left out); a column whose name the metadata already holds makes the row odd."""
    t = types.get("metadata")
    own: list[tuple[str, str]] = []
    checks = [_finite(_q(n), types[n]) for n in extras]
    if t is None:
        entries = ""
    elif pa.types.is_struct(t) and _json_value(t, top=True):
        own = [(f.name, f"metadata.{_q(f.name)}") for f in t]
        checks += [_finite(v, f.type) for (_, v), f in zip(own, t, strict=True)]
        entries = _entries(own)
    elif pa.types.is_map(t) and _is_string(t.key_type) and _json_value(t.item_type, top=False):
        entries = (
            "list_transform(list_filter(map_entries(metadata), lambda e: e.value IS NOT NULL),"
            " lambda e: {'key': e.key, 'value': to_json(e.value)})"
        )
        checks.append("len(map_keys(metadata)) = len(list_distinct(map_keys(metadata)))")
        checks += [f"NOT list_contains(map_keys(metadata), {_s(n)})" for n in extras]
    else:
        return None
    names = {k for k, _ in own}
    checks += [f"(metadata.{_q(n)} IS NULL OR {_q(n)} IS NULL)" for n in extras if n in names]
    lists = [e for e in (entries, _entries([(n, _q(n)) for n in extras]) if extras else None) if e]
    present = [f"{_q(n)} IS NOT NULL" for n in ("metadata", *extras) if n in types]
    if not lists:
        return "NULL::JSON", "true"
    joined = lists[0] if len(lists) == 1 else f"list_concat({lists[0]}, {lists[1]})"
    value = f"to_json(map_from_entries({joined}))"
    if (t is None or pa.types.is_struct(t)) and not names & set(extras):
        # the common case, a row without NULLs, written as a struct
        items = [*own, *((n, _q(n)) for n in extras)]
        full = " AND ".join(f"{v} IS NOT NULL" for _, v in items)
        struct = "{" + ", ".join(f"{_s(k)}: {v}" for k, v in items) + "}"
        value = f"CASE WHEN {full} THEN to_json({struct}) ELSE {value} END"
    value = f"CASE WHEN {' OR '.join(present)} THEN {value} END"
    return value, " AND ".join(checks) or "true"


_ATTEMPT_STRINGS = ("tier", "model", "source", "output", "status")


def _attempts(t: pa.DataType | None) -> tuple[str, str] | None | bool:
    """(typed columns of one attempt `a`, check), None without an attempts column, False for a
    type this lane does not read."""
    if t is None:
        return None
    if not (_is_list(t) and pa.types.is_struct(t.value_type)):
        return False
    fields = {f.name: f.type for f in t.value_type}
    if len(fields) < t.value_type.num_fields or "tier" not in fields:
        return False
    unknown = [n for n in fields if n not in lf.ATTEMPT_FIELDS]
    if any(n in fields and not _is_string(fields[n]) for n in _ATTEMPT_STRINGS):
        return False
    if any(n in fields and not _is_number(fields[n]) for n in (*_NUMBERS, *_COUNTS)):
        return False
    if not all(_json_value(fields[n], top=True) for n in unknown):
        return False

    def field(name: str) -> str:
        return f"a.{_q(name)}" if name in fields else "NULL"

    checks = [
        "a IS NOT NULL AND a.tier <> ''",
        f"coalesce({field('source')} IN {tuple(lf.SOURCES)}, true)",
        f"coalesce({field('status')} IN {tuple(lf.STATUSES)}, true)",
        *(_finite(f"a.{_q(n)}", fields[n]) for n in unknown),
    ]
    if "confidence" in fields:
        checks.append("coalesce(isfinite(a.confidence::DOUBLE), true)")
    for name in ("cost_usd", "latency_ms"):
        if name in fields:
            checks.append(f"coalesce(isfinite(a.{name}::DOUBLE) AND a.{name} >= 0, true)")
    checks += [_count(f"a.{n}", fields[n]) for n in _COUNTS if n in fields]
    values = {
        **{n: f"{field(n)}::VARCHAR" for n in _ATTEMPT_STRINGS},
        **{n: f"{field(n)}::DOUBLE" for n in _NUMBERS},
        **{n: f"TRY_CAST({field(n)}::DOUBLE AS BIGINT)" for n in _COUNTS},
    }
    extra = (
        "CASE WHEN len({e}) > 0 THEN to_json(map_from_entries({e}))::VARCHAR END".format(
            e=_entries([(n, f"a.{_q(n)}") for n in unknown])
        )
        if unknown
        else "NULL::VARCHAR"
    )
    values["source"] = f"coalesce({values['source']}, '{lf.DEFAULT_SOURCE}')"
    values["status"] = f"coalesce({values['status']}, '{lf.DEFAULT_STATUS}')"
    typed = ", ".join(
        [*(f"{values[k]} AS {k}" for k in lf.ATTEMPT_FIELDS), f"({extra})::JSON AS extra"]
    )
    check = (
        "attempts IS NULL OR (len(list_filter(attempts, lambda a: NOT coalesce("
        + " AND ".join(checks)
        + ", false))) = 0 AND len(list_distinct(list_transform(attempts, lambda a: hash(a.tier, "
        + f"coalesce({field('source')}, '{lf.DEFAULT_SOURCE}'))))) = len(attempts))"
    )
    return typed, check


def _labels(t: pa.DataType | None) -> tuple[str, str] | None | bool:
    """(label entries [{key, value}] without NULL values, check), None without a labels
    column, False for a type this lane does not read."""
    if t is None:
        return None
    if pa.types.is_struct(t) and all(_is_number(f.type) for f in t):
        pairs = ", ".join(
            f"{{'key': {_s(f.name)}, 'value': labels.{_q(f.name)}::DOUBLE}}" for f in t
        )
        entries = f"list_filter([{pairs}], lambda e: e.value IS NOT NULL)"
        distinct = "true"
    elif pa.types.is_map(t) and _is_string(t.key_type) and _is_number(t.item_type):
        entries = (
            "list_transform(list_filter(map_entries(labels), lambda e: e.value IS NOT NULL),"
            " lambda e: {'key': e.key, 'value': e.value::DOUBLE})"
        )
        distinct = "len(map_keys(labels)) = len(list_distinct(map_keys(labels)))"
    else:
        return False
    check = (
        f"labels IS NULL OR ({distinct} AND len(list_filter({entries},"
        " lambda e: NOT coalesce(e.value BETWEEN 0 AND 1, false))) = 0)"
    )
    return f"CASE WHEN labels IS NOT NULL THEN {entries} END", check


def ingest_file(
    con: duckdb.DuckDBPyConnection, path: Path, found: Plan, file: str, run_id: int
) -> tuple[int, np.ndarray]:
    """Insert the file's direct rows; returns (rows in the file, the other rows' numbers)."""
    source = "read_parquet($path, file_row_number = true)"
    params = {"path": str(path)}
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE ing_pq AS
            SELECT file_row_number + 1 AS line, request_id AS rid, {found.plain} AS plain
            FROM {source}""",
        params,
    )
    con.execute("""
        CREATE OR REPLACE TEMP TABLE ing_pq_odd AS
        SELECT line FROM ing_pq AS f
        WHERE NOT plain
           OR rid IN (SELECT rid FROM ing_pq WHERE rid IS NOT NULL GROUP BY rid HAVING count(*) > 1)
           OR EXISTS (SELECT 1 FROM requests AS s WHERE s.request_id = f.rid)""")
    rows = int(con.execute("SELECT count(*) FROM ing_pq").fetchall()[0][0])
    odd = con.execute("SELECT line FROM ing_pq_odd ORDER BY line").fetchnumpy()["line"]
    direct = "true" if not len(odd) else "file_row_number + 1 NOT IN (SELECT line FROM ing_pq_odd)"
    where = {**params, "file": file, "run": run_id}
    con.execute(
        f"""INSERT INTO requests BY NAME
            SELECT {found.request}, $file AS source_file, file_row_number + 1 AS source_line,
                   $run AS run_id
            FROM {source} WHERE {direct}""",
        where,
    )
    if found.attempts is not None:
        con.execute(
            f"""INSERT INTO attempts BY NAME
                SELECT request_id, position, {found.attempts}, $run AS run_id
                FROM (SELECT request_id, unnest(attempts) AS a,
                             generate_subscripts(attempts, 1) - 1 AS position
                      FROM {source} WHERE {direct} AND attempts IS NOT NULL)""",
            {**params, "run": run_id},
        )
    if found.labels is not None:
        con.execute(
            f"""INSERT INTO labels BY NAME
                SELECT request_id, e.key AS tier, e.value AS score, '{lf.LABEL_SOURCE}' AS source,
                       $run AS run_id
                FROM (SELECT request_id, unnest({found.labels}) AS e FROM {source}
                      WHERE {direct} AND labels IS NOT NULL)""",
            {**params, "run": run_id},
        )
    con.execute("DROP TABLE ing_pq")
    con.execute("DROP TABLE ing_pq_odd")
    return rows, odd
