"""The canonical log format, version 1: field names, allowed values, reject kinds and `SCHEMA_DOC`.

This module is the single statement of what a valid log row is. The ingest SQL enforces these rules
in bulk (store/ingest/rules.py, with the fast checks of store/ingest/fast_lane.py); the readers
(readers.py) map Parquet and CSV onto the same fields.
`messages_text` renders a stored conversation as text (for reviewers and judges).
It imports nothing from calibrate and does no I/O.
"""

from __future__ import annotations

import json

FORMAT_VERSION = 1

# Top-level keys with a meaning; any other key is moved into `metadata`.
REQUEST_FIELDS = (
    "request_id",
    "timestamp",
    "region",
    "app",
    "messages",
    "prompt",
    "input_tokens",
    "served_tier",
    "attempts",
    "labels",
    "reference",
    "metadata",
)
# Keys of one attempt with a meaning; any other key is kept in attempts.extra.
ATTEMPT_FIELDS = (
    "tier",
    "model",
    "source",
    "confidence",
    "output",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "latency_ms",
    "status",
)
SOURCES = ("prod", "shadow")
STATUSES = ("ok", "error", "timeout")
DEFAULT_SOURCE = "prod"
DEFAULT_STATUS = "ok"
LABEL_SOURCE = "log"
EXTRA_KEY = "_extra"

# Flattened CSV / Parquet: attempt columns carry this prefix; `label` is the label of the row's tier.
ATTEMPT_PREFIX = "attempt_"
LABEL_COLUMN = "label"
JSON_TEXT_COLUMNS = ("messages", "metadata", "attempts", "labels")

SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz", ".json", ".json.gz", ".parquet", ".csv")

# Every reject reason starts with one of these; the summary counts rejects per kind.
REJECT_KINDS = (
    "not UTF-8",
    "line too long",
    "damaged file",
    "bad CSV",
    "invalid JSON",
    "duplicate key",
    "missing field",
    "wrong type",
    "bad value",
    "label out of range",
    "duplicate attempt",
    "duplicate request_id",
    "conflicting attempt",
    "conflicting label",
    "metadata clash",
)


SCHEMA_DOC = """\
# calibrate log format, version 1

One request per record. Accepted files (directories are searched recursively, in sorted order):

- `.jsonl` / `.ndjson` / `.json` (one JSON object per line), optionally gzip-compressed (`.gz`;
  gzip is told by the file's first bytes, so a `.gz` name on plain text is read as plain text).
  UTF-8; a byte-order mark at the start and CRLF line ends are fine; blank lines are skipped.
  A line (or a CSV cell) may hold at most 16 MiB.
- `.parquet` with the same columns (nested `attempts`/`labels`/`messages`/`metadata`, or those four
  as JSON text), or flattened like the CSV below (detected by an `attempt_tier` column).
- `.csv` flattened: one row per request x attempt, with a header. Request-level columns are repeated
  on each row of the request; attempt columns carry the prefix `attempt_` (`attempt_tier`,
  `attempt_model`, `attempt_source`, `attempt_confidence`, `attempt_output`, `attempt_input_tokens`,
  `attempt_output_tokens`, `attempt_cost_usd`, `attempt_latency_ms`, `attempt_status`); `messages`
  and `metadata` hold JSON text; `label` is the label of that row's attempt tier. Rows of one
  request are grouped while they are contiguous; a request split across non-contiguous rows is read
  as several records that the merge rule below joins. An empty cell means "absent"; cells of
  numeric fields are read as numbers when they parse as numbers, other cells stay text. A request
  with no attempt has one row with empty `attempt_` cells.

## Request fields

| field | type | required | notes |
|---|---|---|---|
| request_id | string | yes | unique, non-empty |
| timestamp | string | yes | RFC 3339 with a UTC offset (`2026-10-01T09:30:00Z`); stored in UTC |
| messages | array | one of messages/prompt | chat messages `[{"role": ..., "content": ...}]` |
| prompt | string | one of messages/prompt | shorthand for `[{"role": "user", "content": prompt}]` |
| region | string or null | no | |
| app | string or null | no | |
| input_tokens | integer >= 0 or null | no | |
| served_tier | string or null | no | the tier production served |
| reference | string or null | no | a reference answer for scorers |
| metadata | object or null | no | free-form |
| attempts | array of objects or null | no | see below; position = index in the array |
| labels | object or null | no | tier -> score, a number in [0, 1]; stored with source `log` |

Any other top-level key is kept inside `metadata`. If `metadata` already has that key, both are
kept: the row's own value stays and the top-level one goes to `metadata._extra.<key>` (a row
whose metadata already holds `_extra` and needs it is rejected as `metadata clash`).

## Attempt fields

| field | type | required | notes |
|---|---|---|---|
| tier | string | yes | non-empty |
| source | "prod" or "shadow" | no | default "prod" |
| status | "ok", "error" or "timeout" | no | default "ok" |
| model | string or null | no | |
| confidence | finite number or null | no | higher = more confident; null = no signal |
| output | string or null | no | |
| input_tokens, output_tokens | integer >= 0 or null | no | |
| cost_usd | finite number >= 0 or null | no | |
| latency_ms | finite number >= 0 or null | no | |

Any other attempt key is kept in `attempts.extra` (a JSON object). Integers may be written as
`42` or `42.0`. NaN and Infinity are rejected wherever a number is expected.

## Merge rule (ingesting the same request more than once)

- A file whose SHA-256 is already in `ingested_files` is skipped as a whole and reported as skipped.
- The request-level content of a row is its timestamp (UTC), region, app, messages,
  input_tokens, served_tier, reference and metadata (minified JSON, keys in the order written);
  attempts and labels are not part of it.
- A request_id seen again (later in the same file, or in the store) with the same request-level
  content merges: attempts with a new (tier, source) and labels with a new tier are added; an attempt or a
  label equal to the stored one is a no-op; one that differs is a conflict.
- A conflict rejects the whole later row (nothing of it is written); the first copy wins. Reasons
  name where the first copy came from.

## Rejected rows

Rows that break a rule go to the `rejects` table (file, file_sha256, line, field, reason, raw) and
every good row of the same file is kept. `line` is the 1-based physical line for JSONL and CSV
(for CSV: the line of the request's first row; the header is line 1) and the 1-based row number
for Parquet. `raw` is the line as read (for CSV and Parquet: the record as JSON). With `--strict`
any rejected row is an error and nothing is written. Reason kinds:

- `not UTF-8: invalid byte 0xff at col 12`
- `line too long: 34603043 bytes (at most 16777216)` (`raw` keeps its first 4 KiB)
- `damaged file: the gzip data ends early (the file is truncated)`: the rows before the damage
  are kept, and the line the damage cuts (or the line after the last one) is this one reject;
  also for corrupt gzip data and for bytes after the gzip data that are not gzip data
- `bad CSV: ...`: a CSV record the csv module cannot read
- `invalid JSON: Expecting ',' delimiter (col 17)`
- `duplicate key: attempts[0].confidence appears twice`: a key repeated in a row, an attempt or
  `labels` (JSON readers disagree on which copy wins, so neither does); for CSV also a column
  named twice in the header, or a repeated key in a JSON cell. Inside `metadata` and `messages`
  of JSONL rows the JSON is kept as written
- `missing field: timestamp`
- `wrong type: attempts[1].confidence must be a number or null, got string`
- `bad value: timestamp "yesterday" is not RFC 3339`, `bad value: attempts[0].status "done" ...`
- `label out of range: labels.small=1.3 (must be in [0, 1])`
- `duplicate attempt: attempts[2] repeats tier small, source prod`
- `duplicate request_id r-1 with conflicting content (first seen in a.jsonl line 3)`
- `conflicting attempt: request_id r-1 tier small source prod differs from the one first seen in ...`
- `conflicting label: request_id r-1 tier small differs from the one first seen in ...`
- `metadata clash: metadata._extra exists and top-level key intent clashes`
"""


def messages_text(messages_json: str) -> str:
    """The conversation as a reviewer reads it: the text alone for one user message, else
    `role: text` blocks."""
    try:
        messages = json.loads(messages_json)
    except ValueError:
        return messages_json
    parts = []
    for m in messages if isinstance(messages, list) else []:
        content = m.get("content") if isinstance(m, dict) else m
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        parts.append((str(m.get("role", "")) if isinstance(m, dict) else "", text))
    if len(parts) == 1 and parts[0][0] == "user":
        return parts[0][1]
    return "\n\n".join(f"{role}: {text}" for role, text in parts)
