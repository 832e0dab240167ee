"""Helicone request exports: `HeliconeRequest` records of its request API
(`POST /v1/request/query-clickhouse`), as its export tool writes them (JSON, JSONL or CSV).

Upstream definitions: Helicone/helicone `HeliconeRequest` (`request_id`, `request_created_at`,
`request_body`, `request_properties`, `request_model`, `response_created_at`, `response_body`,
`response_status`, `response_model`, `delay_ms`, `prompt_tokens`, `completion_tokens`,
`costUSD`) and `examples/export` (its CSV columns: `model`, `latency`, `cost`, ...). Sessions are
the `Helicone-Session-Id` property; custom properties (`Helicone-Property-App: support`) arrive
without their prefix. Helicone stores cost in ClickHouse as USD x 1e9 (`COST_PRECISION_MULTIPLIER`,
packages/cost/costCalc.ts): `costUSD` is read as USD; a plain `cost` is read as USD x 1e9 when every
cost in the export is a whole number and one reaches 1000 (no real call costs $1000), else as USD.
Mapping: docs/formats.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from calibrate.formats import chat, fields
from calibrate.formats.gateway import (
    Call,
    Conversion,
    GatewayFormat,
    RawReject,
    Status,
    Unit,
    keys,
    names,
    plain,
    user_segments,
)

COST_PRECISION_MULTIPLIER = 1_000_000_000
SESSION_PROPERTY = "helicone-session-id"
_PROPERTY_PREFIX = "helicone-property-"


def properties(record: Mapping[str, Any]) -> dict[str, Any]:
    """Request properties with `Helicone-Property-` prefixes removed."""
    props = fields.as_dict(fields.first(record.get("request_properties"), record.get("properties")))
    out: dict[str, Any] = {}
    for key, value in props.items():
        name = str(key)
        if name.lower().startswith(_PROPERTY_PREFIX):
            name = name[len(_PROPERTY_PREFIX) :]
        out[name] = value
    return out


def cost_scale(units: Sequence[Unit]) -> float:
    """1e9 when the export's plain `cost` values are Helicone's stored integers, else 1."""
    costs = [c for u in units if (c := fields.as_float(u.record.get("cost"))) is not None]
    stored = costs and all(c == int(c) for c in costs) and max(costs) >= 1000
    return float(COST_PRECISION_MULTIPLIER) if stored else 1.0


def _cost_usd(record: Mapping[str, Any], scale: float) -> float | None:
    usd = fields.as_float(fields.first(record.get("costUSD"), record.get("cost_usd")))
    if usd is not None:
        return usd
    stored = fields.as_float(record.get("cost"))
    return stored / scale if stored is not None else None


def _status(code: int | None, response: Any) -> tuple[Status, str | None]:
    if code is not None and 200 <= code < 300:
        return "ok", None
    if code is None or code <= 0:
        return "error", "no HTTP response recorded"
    text = chat.error_text(response)
    return chat.failure(code, text), f"HTTP {code}" + (f": {text}" if text else "")


def _call(unit: Unit, scale: float) -> Call | tuple[int, RawReject]:
    r = unit.record
    start = fields.as_time(r.get("request_created_at"))
    if start is None:
        return unit.reject("request_created_at", "bad value: request_created_at is not a time")
    end = fields.as_time(r.get("response_created_at"))
    request, response = (
        fields.json_value(r.get("request_body")),
        fields.json_value(r.get("response_body")),
    )
    number = fields.as_float(r.get("response_status"))
    code = int(number) if number is not None else None
    status, error = _status(code, response)
    props = properties(r)
    session = next((v for k, v in props.items() if k.lower() == SESSION_PROPERTY), None)
    app, region = user_segments(props)
    meta = plain(
        {k: v for k, v in props.items() if not k.lower().startswith("helicone-")},
        drop=("app", "region"),
    )
    for key in ("request_user_id", "country_code"):
        if fields.as_str(r.get(key)):
            meta.setdefault(key.removeprefix("request_"), r[key])
    latency = fields.as_float(fields.first(r.get("delay_ms"), r.get("latency")))
    usage_in, usage_out = chat.usage(response)
    return Call(
        unit=unit,
        call_id=str(fields.first(r.get("request_id"), r.get("response_id"), f"line-{unit.line}")),
        key=fields.as_str(session),
        start=start,
        models=names(
            r.get("model_override"),
            r.get("request_model"),
            r.get("model"),
            fields.as_dict(request).get("model"),
            r.get("response_model"),
        ),
        model=fields.first(
            r.get("response_model"), chat.model(response), r.get("model"), r.get("request_model")
        ),
        status=status,
        messages=chat.messages(request),
        output=chat.answer_text(response) if status == "ok" else None,
        input_tokens=fields.as_count(fields.first(r.get("prompt_tokens"), usage_in)),
        output_tokens=fields.as_count(fields.first(r.get("completion_tokens"), usage_out)),
        cost_usd=_cost_usd(r, scale),
        latency_ms=latency if latency is not None else fields.between_ms(start, end),
        logprobs=chat.token_logprobs(response),
        error=error,
        app=app,
        region=region,
        metadata=meta,
        extra={"http_status": code} if code is not None and code > 0 and status != "ok" else {},
    )


def convert(units: Sequence[Unit]) -> Conversion:
    """Convert every record; the cost unit is decided once per file."""
    out = Conversion()
    by_file: dict[int, list[Unit]] = {}
    for unit in units:
        by_file.setdefault(unit.file, []).append(unit)
    for file_units in by_file.values():
        scale = cost_scale(file_units)
        for unit in file_units:
            out.add(_call(unit, scale))
    return out


REQUESTS = GatewayFormat(
    name="helicone",
    title="Helicone request export",
    signatures=(frozenset({"request_created_at", "response_status"}),),
    vocabulary=keys(
        """response_id response_created_at response_body response_status response_model
        request_id request_created_at request_body request_path request_user_id
        request_properties request_model model_override helicone_user provider delay_ms
        time_to_first_token total_tokens prompt_tokens prompt_cache_write_tokens
        prompt_cache_read_tokens completion_tokens prompt_id feedback_created_at feedback_id
        feedback_rating signed_body_url llmSchema country_code asset_ids asset_urls scores
        costUSD properties target_url model latency cost"""
    ),
    convert=convert,
)
