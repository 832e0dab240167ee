"""Langfuse observations: the public API (`GET /api/public/observations`, v1, and
`/api/public/v2/observations`), the UI table export and the blob-storage export.

Upstream definitions: langfuse/langfuse `fern/apis/server/definition/commons.yml`
(Observation / ObservationsView: `traceId`, `type`, `startTime`, `endTime`, `model`, `usage`,
`level`, `statusMessage`, `calculatedTotalCost` in USD, `latency` in seconds) and
`observations-v2.yml` (field groups: `providedModelName`, `usageDetails`, `costDetails`,
`totalCost`; input/output as raw strings). The API writes camelCase, the blob export snake_case:
keys are read in snake_case. Only GENERATION observations are LLM calls; spans, events, tools and
the rest are counted as ignored. Langfuse carries no logprobs. Mapping: docs/formats.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from calibrate.formats import chat, fields
from calibrate.formats.gateway import (
    Call,
    GatewayFormat,
    RawReject,
    Unit,
    keys,
    names,
    per_unit,
    plain,
    user_segments,
)


def _tokens(
    record: Mapping[str, Any], usage: Mapping[str, Any], details: Mapping[str, Any]
) -> tuple:
    given = fields.first(
        details.get("input"),
        details.get("prompt_tokens"),
        record.get("input_usage"),
        usage.get("input"),
        record.get("prompt_tokens"),
    )
    produced = fields.first(
        details.get("output"),
        details.get("completion_tokens"),
        record.get("output_usage"),
        usage.get("output"),
        record.get("completion_tokens"),
    )
    return fields.as_count(given), fields.as_count(produced)


def _cost_usd(record: Mapping[str, Any], usage: Mapping[str, Any]) -> float | None:
    details = fields.as_dict(record.get("cost_details"))
    total = fields.as_float(
        fields.first(
            details.get("total"),
            record.get("total_cost"),
            record.get("calculated_total_cost"),
            usage.get("total_cost"),
        )
    )
    if total is None and details:
        parts = [fields.as_float(v) for v in details.values()]
        total = (
            sum(p for p in parts if p is not None) if any(p is not None for p in parts) else None
        )
    return total


def _latency_ms(record: Mapping[str, Any], start: Any, end: Any) -> float | None:
    """end - start; else `latency`, which the API reports in seconds."""
    measured = fields.between_ms(start, end)
    if measured is not None:
        return measured
    seconds = fields.as_float(record.get("latency"))
    return seconds * 1000.0 if seconds is not None else None


def _context(record: Mapping[str, Any], user: Mapping[str, Any]) -> dict[str, Any]:
    meta = plain(user, drop=("app", "region"))
    for key in ("session_id", "user_id", "trace_name", "environment", "prompt_name"):
        if fields.as_str(record.get(key)):
            meta.setdefault(key, record[key])
    tags = fields.json_value(record.get("tags") or record.get("trace_tags"))
    if isinstance(tags, list) and tags:
        meta.setdefault("tags", tags)
    return meta


def _messages(value: Any) -> list[dict[str, Any]] | None:
    """Chat messages, or a free-form input (any JSON) as one user message of its JSON text."""
    found = chat.messages(value)
    if found is None and value not in (None, "", {}, []):
        value = fields.json_value(value)
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        found = [{"role": "user", "content": text}]
    return found


def _call(unit: Unit) -> Call | tuple[int, RawReject] | None:
    r = fields.snake_keys(unit.record)
    kind = fields.as_str(r.get("type"))
    if kind is not None and kind.upper() != "GENERATION":
        return None
    start, end = fields.as_time(r.get("start_time")), fields.as_time(r.get("end_time"))
    if start is None:
        return unit.reject("startTime", "bad value: startTime is not a time")
    usage = fields.snake_keys(fields.as_dict(r.get("usage")))
    details = fields.as_dict(r.get("usage_details"))
    failed = str(r.get("level") or "").upper() == "ERROR"
    user = fields.as_dict(r.get("metadata"))
    app, region = user_segments(user)
    output = fields.json_value(r.get("output"))
    input_tokens, output_tokens = _tokens(r, usage, details)
    return Call(
        unit=unit,
        call_id=str(r.get("id")),
        key=fields.as_str(r.get("trace_id")),
        start=start,
        models=names(r.get("model"), r.get("provided_model_name")),
        model=fields.first(r.get("provided_model_name"), r.get("model")),
        status=chat.failure(None, r.get("status_message")) if failed else "ok",
        messages=_messages(r.get("input")),
        output=None if failed else chat.answer_text(output),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=_cost_usd(r, usage),
        latency_ms=_latency_ms(r, start, end),
        logprobs=chat.token_logprobs(output),
        error=fields.as_str(r.get("status_message")) if failed else None,
        app=app,
        region=region,
        metadata=_context(r, user),
    )


OBSERVATIONS = GatewayFormat(
    name="langfuse",
    title="Langfuse observations (public API v1/v2, UI or blob export)",
    signatures=(frozenset({"id", "trace_id", "type", "start_time"}),),
    vocabulary=keys(
        # observations (snake_case of the API's camelCase) and, for look-alikes, traces
        """id trace_id project_id type name start_time end_time completion_start_time model
        provided_model_name internal_model_id model_id model_parameters input output metadata
        usage usage_details cost_details provided_usage_details provided_cost_details
        input_usage output_usage total_usage total_cost level status_message version
        parent_observation_id prompt_id prompt_name prompt_version input_price output_price
        total_price calculated_input_cost calculated_output_cost calculated_total_cost latency
        time_to_first_token environment created_at updated_at user_id session_id trace_name
        tags trace_tags release bookmarked public timestamp html_path observations scores
        unit prompt_tokens completion_tokens total_tokens"""
    ),
    convert=per_unit(_call),
    snake_keys=True,
)
