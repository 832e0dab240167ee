"""Which format a log file is in, from the keys of its first records (never from its name).

A format claims a record when the record's top-level keys include all of one of the format's
signatures (the canonical format: `request_id` and `timestamp`, or the flattened `attempt_tier`
column). The first of the file's first records that some format claims decides. When none is
claimed, each format's vocabulary says how much of a record's keys it explains. The file is
refused, naming the closest format and the fields it lacks, when a gateway format explains more
than the canonical format does and either at least half of the keys (a look-alike: an export of
the wrong table, a bare chat completion, traces instead of observations) or every key the
canonical format knows is absent. Otherwise the canonical reader takes the file and rejects bad
rows one by one with the reason. Imports formats only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibrate.errors import DataError
from calibrate.formats import canonical, export_files
from calibrate.formats.gateway import GatewayFormat, record_keys, signature_gap
from calibrate.formats.helicone import REQUESTS
from calibrate.formats.langfuse import OBSERVATIONS
from calibrate.formats.litellm import PAYLOAD, SPEND_LOGS
from calibrate.formats.openai_batch import BATCH
from calibrate.formats.otel import TRACES

CANONICAL = "canonical"
AUTO = "auto"
GATEWAYS: tuple[GatewayFormat, ...] = (SPEND_LOGS, PAYLOAD, OBSERVATIONS, TRACES, BATCH, REQUESTS)
NAMES: tuple[str, ...] = (AUTO, CANONICAL, *(g.name for g in GATEWAYS))
SNIFF_RECORDS = 20
LOOK_ALIKE = 0.5

_CANONICAL_SIGNATURES = (
    frozenset({"request_id", "timestamp"}),
    frozenset({f"{canonical.ATTEMPT_PREFIX}tier"}),
)
_CANONICAL_VOCABULARY = (
    frozenset(canonical.REQUEST_FIELDS)
    | {canonical.ATTEMPT_PREFIX + f for f in canonical.ATTEMPT_FIELDS}
    | {canonical.LABEL_COLUMN}
)


@dataclass(frozen=True, slots=True)
class _Candidate:
    name: str
    title: str
    signatures: tuple[frozenset[str], ...]
    vocabulary: frozenset[str]
    snake_keys: bool


_CANDIDATES = (
    _Candidate(
        CANONICAL, "the canonical format", _CANONICAL_SIGNATURES, _CANONICAL_VOCABULARY, False
    ),
    *(_Candidate(g.name, g.title, g.signatures, g.vocabulary, g.snake_keys) for g in GATEWAYS),
)


def gateway(name: str) -> GatewayFormat:
    for fmt in GATEWAYS:
        if fmt.name == name:
            return fmt
    raise KeyError(name)


def claims(candidate: _Candidate, record: Mapping[str, Any]) -> bool:
    return not signature_gap(candidate.signatures, record, snake_keys=candidate.snake_keys)


def detect_records(records: Sequence[Mapping[str, Any]], path: Path) -> str:
    """The format of a file whose first records these are (see the module docstring)."""
    for record in records:
        for candidate in _CANDIDATES:
            if claims(candidate, record):
                return candidate.name
    best, score, record = _closest(records)
    canonical_score = max((_explained(_CANDIDATES[0], r) for r in records), default=0.0)
    if best is None or best.name == CANONICAL:
        return CANONICAL
    if score >= LOOK_ALIKE or canonical_score == 0.0:
        raise _look_alike(path, best, record)
    return CANONICAL


def detect_file(path: Path) -> str:
    """The format of one file, from its first records."""
    return detect_records(export_files.first_records(path, SNIFF_RECORDS), path)


def _explained(candidate: _Candidate, record: Mapping[str, Any]) -> float:
    keys = record_keys(record, snake_keys=candidate.snake_keys)
    return len(keys & candidate.vocabulary) / len(keys) if keys else 0.0


def _closest(
    records: Sequence[Mapping[str, Any]],
) -> tuple[_Candidate | None, float, Mapping[str, Any]]:
    """The candidate that explains most of some record's keys (canonical wins ties)."""
    best: tuple[_Candidate | None, float, Mapping[str, Any]] = (None, 0.0, {})
    for record in records:
        for candidate in _CANDIDATES:
            score = _explained(candidate, record)
            if score > best[1]:
                best = (candidate, score, record)
    return best


def _look_alike(path: Path, fmt: _Candidate, record: Mapping[str, Any]) -> DataError:
    lacking = ", ".join(signature_gap(fmt.signatures, record, snake_keys=fmt.snake_keys))
    return DataError(
        f"{path}: these records match no log format; the closest is {fmt.name} "
        f"({fmt.title}), and they lack its fields: {lacking}",
        hint=(
            "Export the records that format describes (docs/formats.md), force a format with "
            "--format NAME, or convert the logs to the canonical format (`calibrate schema`)."
        ),
    )
