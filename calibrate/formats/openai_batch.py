"""OpenAI Batch API files: the input JSONL (`BatchRequestInput`) and the output and error JSONL
(`BatchRequestOutput`) of one or more batches, read together and joined on `custom_id`.

Upstream definitions: openai/openai-openapi `BatchRequestInput` (`custom_id`, `method`, `url`,
`body`) and `BatchRequestOutput` (`id`, `custom_id`, `response: {status_code, request_id, body}`,
`error: {code, message}`); output order is not input order.

The `custom_id` convention: `REQUEST` or `REQUEST#ANYTHING`; everything before the first `#` is
the request, so `q17#small` and `q17#large` are two calls of request `q17`. A custom_id may repeat
across batches (it is unique only within one); an output then joins the input whose model is the
output's model family. Batch calls are independent offline runs (no call was made because another
failed or was unsure): they are `shadow` attempts. The files carry no latency and no cost (both
stay null; cost is priced from tiers.yaml later, at list price, not the batch discount). A call's
time is its response's `created`; a failed call without one takes the earliest `created` of all
the batch outputs read. Input lines without an output line did not run and are counted as
ignored. Mapping: docs/formats.md.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from calibrate.formats import chat, fields
from calibrate.formats.gateway import (
    Call,
    Conversion,
    GatewayFormat,
    RawReject,
    Unit,
    keys,
    names,
    plain,
    user_segments,
)
from calibrate.formats.tier_map import family

SEPARATOR = "#"
_LLM_URL = re.compile(r"/(chat/completions|completions|responses|messages)/?$")


@dataclass(frozen=True, slots=True)
class _Input:
    url: str | None
    model: str | None
    messages: list[dict[str, Any]] | None
    metadata: dict[str, Any]


def request_key(custom_id: str) -> str:
    return custom_id.split(SEPARATOR, 1)[0]


def _is_input(record: Mapping[str, Any]) -> bool:
    return "body" in record and "response" not in record


def _inputs(units: Sequence[Unit]) -> dict[str, list[_Input]]:
    found: dict[str, list[_Input]] = defaultdict(list)
    for unit in units:
        body = fields.as_dict(unit.record.get("body"))
        found[str(unit.record.get("custom_id"))].append(
            _Input(
                fields.as_str(unit.record.get("url")),
                fields.as_str(body.get("model")),
                chat.messages(body),
                fields.as_dict(body.get("metadata")),
            )
        )
    return found


def _match(candidates: list[_Input], model: str | None) -> _Input | None | str:
    """The input of an output line: the only one, or the one of the output's model family;
    a reason string when several remain."""
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        return None
    same = [c for c in candidates if model and c.model and family(c.model) == family(model)]
    if len(same) == 1:
        return same[0]
    return f"custom_id appears in {len(candidates)} input lines and the output names no model that tells them apart"


def _error_text(code: int | None, texts: tuple[Any, ...]) -> str:
    text = " ".join(str(t) for t in texts if t)
    return text or (f"HTTP {code}" if code is not None else "error")


def _call(
    unit: Unit, given: _Input | None, fallback: datetime | None
) -> Call | tuple[int, RawReject]:
    r = unit.record
    custom_id = str(r.get("custom_id"))
    response = fields.as_dict(r.get("response"))
    body = fields.json_value(response.get("body"))
    error = fields.as_dict(r.get("error"))
    code = fields.as_count(response.get("status_code"))
    failed = bool(error) or code is None or not 200 <= code < 300
    model = fields.first(chat.model(body), given.model if given else None)
    if model is None:
        return unit.reject(
            "response.body.model", "missing field: model (no input line has this custom_id)"
        )
    start = fields.as_time(_created(fields.as_dict(body))) or fallback
    if start is None:
        return unit.reject(
            "response.body.created", "missing field: created (no batch output has a time)"
        )
    texts = (error.get("code"), error.get("message"), chat.error_text(body) if failed else None)
    meta = given.metadata if given else {}
    app, region = user_segments(meta)
    input_tokens, output_tokens = chat.usage(body)
    return Call(
        unit=unit,
        call_id=str(fields.first(r.get("id"), custom_id)),
        key=request_key(custom_id),
        start=start,
        models=names(given.model if given else None, chat.model(body)),
        model=model,
        status=chat.failure(code, *texts) if failed else "ok",
        source="shadow",
        messages=given.messages if given else None,
        output=None if failed else chat.answer_text(body),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        logprobs=chat.token_logprobs(body),
        error=_error_text(code, texts) if failed else None,
        app=app,
        region=region,
        metadata=plain(meta, drop=("app", "region")),
        extra={"custom_id": custom_id, "http_status": code if failed else None},
    )


def _body(unit: Unit) -> dict[str, Any]:
    return fields.as_dict(fields.as_dict(unit.record.get("response")).get("body"))


def _created(body: dict[str, Any]) -> Any:
    """`created` (chat and text completions) or `created_at` (the Responses API)."""
    return fields.first(body.get("created"), body.get("created_at"))


def _not_a_call(unit: Unit, given: _Input | None) -> bool:
    """Embeddings and moderations (by the input's url or the body's object) are not LLM calls."""
    url = given.url if given else None
    kind = fields.as_str(_body(unit).get("object"))
    return (url is not None and not _LLM_URL.search(url)) or kind in ("list", "embedding")


def convert(units: Sequence[Unit]) -> Conversion:
    """Join the outputs of all batch files to their inputs on custom_id."""
    inputs = [u for u in units if _is_input(u.record)]
    outputs = [u for u in units if not _is_input(u.record)]
    by_id = _inputs(inputs)
    created = [t for u in outputs if (t := fields.as_time(_created(_body(u))))]
    fallback = min(created) if created else None
    out, joined = Conversion(), set()
    for unit in outputs:
        matched = _match(by_id.get(str(unit.record.get("custom_id")), []), chat.model(_body(unit)))
        if isinstance(matched, str):
            out.add(unit.reject("custom_id", f"bad value: {matched}; use REQUEST#TIER custom_ids"))
            continue
        if matched is not None:
            joined.add(id(matched))
        out.add(None if _not_a_call(unit, matched) else _call(unit, matched, fallback))
    out.ignored = sum(1 for found in by_id.values() for i in found if id(i) not in joined)
    return out


BATCH = GatewayFormat(
    name="openai-batch",
    title="OpenAI Batch API (input, output and error JSONL)",
    signatures=(
        frozenset({"custom_id", "body"}),
        frozenset({"custom_id", "response"}),
        frozenset({"custom_id", "error"}),
    ),
    vocabulary=keys(
        # input and output lines and, for look-alikes, a bare chat.completion body
        """custom_id method url body id response error object created model choices usage
        system_fingerprint service_tier"""
    ),
    convert=convert,
)
