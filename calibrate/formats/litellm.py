"""LiteLLM proxy exports: rows of its `LiteLLM_SpendLogs` table and the `StandardLoggingPayload`
records its logging integrations write (S3, GCS, file, custom callbacks).

Upstream definitions: BerriAI/litellm `schema.prisma` (model LiteLLM_SpendLogs),
`litellm/proxy/spend_tracking/spend_tracking_utils.py` (how a row is filled: `session_id` is the
payload's `trace_id`, `status` is success|failure, `messages` stays `{}`, the request body is in
`proxy_server_request` and the answer in `response` only with `store_prompts_in_spend_logs`),
and `litellm/types/utils.py` (StandardLoggingPayload: epoch-second `startTime`/`endTime`,
`response_cost` in USD, `trace_id` shared by the retries and fallbacks of one request,
`error_information`). The mapping table is in docs/formats.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from calibrate.formats import chat, fields
from calibrate.formats.gateway import (
    Call,
    GatewayFormat,
    RawReject,
    Status,
    Unit,
    keys,
    names,
    per_unit,
    plain,
    user_segments,
)

_CHAT_CALLS = ("completion", "responses", "anthropic_messages", "generate_content", "chat")


def is_llm_call(call_type: Any) -> bool:
    """Completion-like call types (chat, text, responses, anthropic messages); embeddings, images,
    audio, moderation and pass-through calls are not routing decisions. Absent: assume one."""
    text = fields.as_str(call_type)
    return text is None or any(kind in text.lower() for kind in _CHAT_CALLS)


def _status(failed: bool, error_info: Mapping[str, Any], *texts: Any) -> Status:
    if not failed:
        return "ok"
    code = fields.as_count(error_info.get("error_code"))
    return chat.failure(
        code, error_info.get("error_class"), error_info.get("error_message"), *texts
    )


def _error(error_info: Mapping[str, Any], fallback: Any) -> str | None:
    parts = [fields.as_str(error_info.get(k)) for k in ("error_code", "error_class")]
    text = " ".join(p for p in parts if p)
    return text or fields.as_str(fields.json_value(fallback) if fallback else None)


# Keys the proxy itself adds to the client's metadata before it snapshots it as
# `requester_metadata` (litellm/proxy/litellm_pre_call_utils.py): the request's headers (which
# can carry a forwarded provider key) and an OAuth flag. Not the client's; never stored.
_PROXY_ADDED = ("headers", "used_client_oauth_token")


def _user_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The k/v pairs the client attached: `spend_logs_metadata` and `requester_metadata`."""
    out: dict[str, Any] = {}
    for key in ("requester_metadata", "spend_logs_metadata"):
        out.update(fields.as_dict(meta.get(key)))
    return plain(out, drop=_PROXY_ADDED)


def _context(user: dict[str, Any], end_user: Any, tags: Any) -> dict[str, Any]:
    meta = plain(user, drop=("app", "region"))
    if fields.as_str(end_user):
        meta.setdefault("user", end_user)
    tags = fields.json_value(tags)
    if isinstance(tags, list) and tags:
        meta.setdefault("tags", tags)
    return meta


def _payload_call(unit: Unit) -> Call | tuple[int, RawReject] | None:
    r = unit.record
    if not is_llm_call(r.get("call_type")):
        return None
    start, end = fields.as_time(r.get("startTime")), fields.as_time(r.get("endTime"))
    if start is None:
        return unit.reject("startTime", "bad value: startTime is not a time")
    hidden, meta = fields.as_dict(r.get("hidden_params")), fields.as_dict(r.get("metadata"))
    error_info = fields.as_dict(r.get("error_information"))
    failed = r.get("status") == "failure" or (r.get("status") is None and bool(r.get("error_str")))
    user = _user_meta(meta)
    app, region = user_segments(user)
    response = fields.json_value(r.get("response"))
    return Call(
        unit=unit,
        call_id=str(fields.first(r.get("id"), r.get("call_id"), f"line-{unit.line}")),
        key=fields.as_str(r.get("trace_id")),
        start=start,
        models=names(
            r.get("model_group"),
            r.get("model"),
            hidden.get("litellm_model_name"),
            fields.as_dict(r.get("model_map_information")).get("model_map_key"),
        ),
        model=fields.first(chat.model(response), r.get("model")),
        status=_status(failed, error_info, r.get("error_str")),
        messages=chat.messages(r.get("messages")),
        output=None if failed else chat.answer_text(response),
        input_tokens=fields.as_count(r.get("prompt_tokens")),
        output_tokens=fields.as_count(r.get("completion_tokens")),
        cost_usd=fields.as_float(r.get("response_cost")),
        latency_ms=fields.between_ms(start, end),
        logprobs=chat.token_logprobs(response),
        error=_error(error_info, r.get("error_str")) if failed else None,
        app=app,
        region=region,
        metadata=_context(user, r.get("end_user"), r.get("request_tags")),
        extra={"cache_hit": True} if r.get("cache_hit") is True else {},
    )


def _spend_call(unit: Unit) -> Call | tuple[int, RawReject] | None:
    r = unit.record
    if not is_llm_call(r.get("call_type")):
        return None
    start, end = fields.as_time(r.get("startTime")), fields.as_time(r.get("endTime"))
    if start is None:
        return unit.reject("startTime", "bad value: startTime is not a time")
    meta = fields.as_dict(r.get("metadata"))
    error_info = fields.as_dict(meta.get("error_information"))
    failed = "failure" in (r.get("status"), meta.get("status"))
    user = _user_meta(meta)
    app, region = user_segments(user)
    response = fields.json_value(r.get("response"))
    request = fields.as_dict(r.get("proxy_server_request"))
    duration = fields.as_float(r.get("request_duration_ms"))
    return Call(
        unit=unit,
        call_id=str(r.get("request_id")),
        key=fields.as_str(r.get("session_id")),
        start=start,
        models=names(r.get("model_group"), r.get("model"), request.get("model")),
        model=fields.first(chat.model(response), r.get("model")),
        status=_status(failed, error_info),
        messages=chat.messages(request) or chat.messages(r.get("messages")),
        output=None if failed else chat.answer_text(response),
        input_tokens=fields.as_count(r.get("prompt_tokens")),
        output_tokens=fields.as_count(r.get("completion_tokens")),
        cost_usd=fields.as_float(r.get("spend")),
        latency_ms=duration if duration is not None else fields.between_ms(start, end),
        logprobs=chat.token_logprobs(response),
        error=_error(error_info, None) if failed else None,
        app=app,
        region=region,
        metadata=_context(
            user, fields.first(r.get("end_user"), r.get("user")), r.get("request_tags")
        ),
        extra={"cache_hit": True} if str(r.get("cache_hit")).lower() == "true" else {},
    )


SPEND_LOGS = GatewayFormat(
    name="litellm-spend",
    title="LiteLLM spend logs (LiteLLM_SpendLogs rows)",
    signatures=(frozenset({"request_id", "spend", "startTime", "endTime"}),),
    vocabulary=keys(
        """request_id call_type api_key spend total_tokens prompt_tokens completion_tokens
        startTime endTime request_duration_ms completionStartTime model model_id model_group
        custom_llm_provider api_base user metadata cache_hit cache_key request_tags team_id
        organization_id end_user requester_ip_address messages response session_id status
        mcp_namespaced_tool_name agent_id proxy_server_request"""
    ),
    convert=per_unit(_spend_call),
)

PAYLOAD = GatewayFormat(
    name="litellm-payload",
    title="LiteLLM callback payload (StandardLoggingPayload)",
    signatures=(frozenset({"id", "call_type", "response_cost", "startTime", "endTime"}),),
    vocabulary=keys(
        """id trace_id call_id call_type stream response_cost cost_breakdown
        response_cost_failure_debug_info status status_fields custom_llm_provider total_tokens
        prompt_tokens completion_tokens startTime endTime completionStartTime response_time
        model_map_information model model_id model_group api_base metadata cache_hit cache_key
        saved_cache_cost request_tags end_user requester_ip_address user_agent messages response
        error_str error_information model_parameters hidden_params guardrail_information
        standard_built_in_tools_params"""
    ),
    convert=per_unit(_payload_call),
)
