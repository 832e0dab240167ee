"""OpenTelemetry GenAI traces as OTLP/JSON files (the collector's `file` exporter: one
`TracesData` object per line, `resourceSpans` -> `scopeSpans` -> `spans`).

Upstream definitions: open-telemetry/semantic-conventions (docs/gen-ai, up to v1.36) and its
successor open-telemetry/semantic-conventions-genai: inference spans carry `gen_ai.operation.name`,
`gen_ai.request.model`, `gen_ai.response.model`, `gen_ai.usage.input_tokens` /
`output_tokens`, `error.type`; content is opt-in, as `gen_ai.input.messages` /
`gen_ai.output.messages` / `gen_ai.system_instructions` (JSON text or structured values), as the
`gen_ai.client.inference.operation.details` event, or in the older shapes still emitted
(`gen_ai.prompt.N.role|content`, `gen_ai.completion.N.content`, the `gen_ai.content.prompt` /
`gen_ai.content.completion` events, `gen_ai.user.message` ... `gen_ai.choice` events). The OTLP
JSON mapping writes lowerCamelCase keys, hex ids and 64-bit integers as strings; snake_case keys
are read too. The conventions define no cost and no logprobs: both stay null. Resource attributes
`service.name` and `cloud.region` become the request's app and region. Mapping: docs/formats.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from calibrate.formats import chat, fields
from calibrate.formats.gateway import Call, GatewayFormat, RawReject, Unit, keys, names, per_unit

_CALL_OPERATIONS = {"chat", "text_completion", "generate_content", "completion"}
_INDEXED = re.compile(r"^gen_ai\.(prompt|completion)\.(\d+)\.(role|content)$")
_MESSAGE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}


def _get(obj: Mapping[str, Any], camel: str) -> Any:
    """A key in lowerCamelCase (the OTLP/JSON mapping) or snake_case (protobuf field names)."""
    return obj[camel] if camel in obj else obj.get(fields.snake(camel))


def _list(obj: Any, camel: str) -> list[Any]:
    value = _get(obj, camel) if isinstance(obj, Mapping) else None
    return value if isinstance(value, list) else []


def any_value(value: Any) -> Any:
    """An OTLP AnyValue (`{"stringValue": ...}`, `intValue` as a string, arrays, kv lists)."""
    if not isinstance(value, Mapping):
        return value
    for camel in ("stringValue", "boolValue", "doubleValue"):
        if (v := _get(value, camel)) is not None:
            return v
    if (v := _get(value, "intValue")) is not None:
        return fields.as_count(v) if fields.as_count(v) is not None else fields.as_float(v)
    if (v := _get(value, "arrayValue")) is not None:
        return [any_value(x) for x in _list(v, "values")]
    if (v := _get(value, "kvlistValue")) is not None:
        return attributes(_list(v, "values"))
    return None


def attributes(items: Any) -> dict[str, Any]:
    """OTLP `[{"key": k, "value": AnyValue}]` as a dict."""
    out: dict[str, Any] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping) and isinstance(item.get("key"), str):
            out[item["key"]] = any_value(item.get("value"))
    return out


def spans(record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The spans of one TracesData object, each with its resource's attributes."""
    out: list[Mapping[str, Any]] = []
    for resource_spans in _list(record, "resourceSpans"):
        resource = attributes(_list(_get(resource_spans, "resource") or {}, "attributes"))
        scopes = _list(resource_spans, "scopeSpans") or _list(
            resource_spans, "instrumentationLibrarySpans"
        )
        for scope in scopes:
            for span in _list(scope, "spans"):
                if isinstance(span, Mapping):
                    out.append({"resource": resource, "span": span})
    return out


def _indexed(attrs: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    """`gen_ai.prompt.N.role|content` (or completion) as messages, in N order."""
    found: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        match = _INDEXED.match(key)
        if match and match.group(1) == kind:
            found.setdefault(int(match.group(2)), {})[match.group(3)] = value
    return [
        {
            "role": m.get("role", "user" if kind == "prompt" else "assistant"),
            "content": m.get("content"),
        }
        for _, m in sorted(found.items())
    ]


def _content(attrs: Mapping[str, Any], events: list[tuple[str, dict[str, Any]]]) -> tuple:
    """(messages, output text) from span attributes and span events, newest conventions first."""
    inputs, outputs = attrs.get("gen_ai.input.messages"), attrs.get("gen_ai.output.messages")
    system = attrs.get("gen_ai.system_instructions")
    event_messages: list[dict[str, Any]] = []
    for name, ev in events:
        if name == "gen_ai.client.inference.operation.details":
            inputs = fields.first(inputs, ev.get("gen_ai.input.messages"))
            outputs = fields.first(outputs, ev.get("gen_ai.output.messages"))
            system = fields.first(system, ev.get("gen_ai.system_instructions"))
        elif name == "gen_ai.content.prompt":
            inputs = fields.first(inputs, ev.get("gen_ai.prompt"))
        elif name == "gen_ai.content.completion":
            outputs = fields.first(outputs, ev.get("gen_ai.completion"))
        elif name in _MESSAGE_EVENTS:
            event_messages.append({"role": _MESSAGE_EVENTS[name], "content": ev.get("content")})
        elif name == "gen_ai.choice":
            outputs = fields.first(outputs, ev.get("message"), ev.get("content"))
    messages = (
        chat.messages(fields.json_value(inputs)) or _indexed(attrs, "prompt") or event_messages
    )
    system = fields.json_value(system)
    system_text = system if isinstance(system, str) else chat.answer_text({"parts": system})
    if messages and system_text:
        messages = [{"role": "system", "content": system_text}, *messages]
    completion = _indexed(attrs, "completion")
    output = chat.answer_text(fields.json_value(outputs)) if outputs is not None else None
    if output is None and completion:
        output = completion[0].get("content")
    return messages or None, output


def _failure(span: Mapping[str, Any], attrs: Mapping[str, Any], events: list) -> str | None:
    """The error text of a failed span (status ERROR, or an `error.type`), else None."""
    status = _get(span, "status") or {}
    code = status.get("code") if isinstance(status, Mapping) else None
    error_type = attrs.get("error.type")
    if code not in (2, "2", "STATUS_CODE_ERROR", "ERROR") and error_type is None:
        return None
    texts = [str(error_type)] if error_type is not None else []
    if isinstance(status, Mapping) and status.get("message"):
        texts.append(str(status["message"]))
    for name, ev in events:
        if name == "exception":
            texts += [str(ev[k]) for k in ("exception.type", "exception.message") if k in ev]
    return "; ".join(dict.fromkeys(texts)) or "error"


def _call(unit: Unit) -> Call | tuple[int, RawReject] | None:
    span, resource = unit.record["span"], unit.record["resource"]
    attrs = attributes(_list(span, "attributes"))
    operation = attrs.get("gen_ai.operation.name")
    model_names = names(attrs.get("gen_ai.request.model"), attrs.get("gen_ai.response.model"))
    if not model_names or (operation is not None and operation not in _CALL_OPERATIONS):
        return None  # not an inference span (tools, agents, embeddings, plain HTTP spans)
    start = fields.epoch_nanos(_get(span, "startTimeUnixNano"))
    if start is None:
        return unit.reject("startTimeUnixNano", "bad value: startTimeUnixNano is not a time")
    end = fields.epoch_nanos(_get(span, "endTimeUnixNano"))
    events = [
        (str(ev.get("name")), attributes(_list(ev, "attributes")))
        for ev in _list(span, "events")
        if isinstance(ev, Mapping)
    ]
    error = _failure(span, attrs, events)
    http = fields.as_count(
        fields.first(attrs.get("http.response.status_code"), attrs.get("error.type"))
    )
    messages, output = _content(attrs, events)
    meta = {
        key: attrs[attr]
        for key, attr in (
            ("conversation_id", "gen_ai.conversation.id"),
            ("provider", "gen_ai.provider.name"),
            ("system", "gen_ai.system"),
        )
        if attrs.get(attr) is not None
    }
    return Call(
        unit=unit,
        call_id=str(_get(span, "spanId")),
        key=fields.as_str(_get(span, "traceId")),
        start=start,
        models=model_names,
        model=fields.first(attrs.get("gen_ai.response.model"), attrs.get("gen_ai.request.model")),
        status="ok" if error is None else chat.failure(http, error),
        messages=messages,
        output=output if error is None else None,
        input_tokens=fields.as_count(
            fields.first(
                attrs.get("gen_ai.usage.input_tokens"), attrs.get("gen_ai.usage.prompt_tokens")
            )
        ),
        output_tokens=fields.as_count(
            fields.first(
                attrs.get("gen_ai.usage.output_tokens"), attrs.get("gen_ai.usage.completion_tokens")
            )
        ),
        latency_ms=fields.between_ms(start, end),
        error=error,
        app=fields.as_str(resource.get("service.name")),
        region=fields.as_str(resource.get("cloud.region")),
        metadata=meta,
    )


TRACES = GatewayFormat(
    name="otel",
    title="OpenTelemetry GenAI traces (OTLP/JSON)",
    signatures=(frozenset({"resource_spans"}),),
    vocabulary=keys(
        """resource_spans resource_logs resource_metrics trace_id span_id parent_span_id name
        kind start_time_unix_nano end_time_unix_nano attributes events links status
        trace_state flags dropped_attributes_count"""
    ),
    convert=per_unit(_call),
    snake_keys=True,
    units=spans,
)
