"""The request and answer shapes inside gateway exports: chat messages, the answer text, token
usage, per-token logprobs, and whether a failure was a timeout.

Exports carry the provider's own bodies: OpenAI chat completions (and text completions, and the
Responses API), Anthropic messages, OpenTelemetry's `parts` messages, Langfuse's free-form
input. Each reader returns None for a shape it does not know. Pure; imports formats only.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from calibrate.formats import fields
from calibrate.formats import logprobs as lp

_TIMEOUT_TEXT = re.compile(r"time[sd]?[ _-]?out|deadline exceeded", re.IGNORECASE)
TIMEOUT_HTTP = frozenset({408, 504, 524})


def messages(value: Any) -> list[dict[str, Any]] | None:
    """Chat messages `[{"role", "content"}, ...]` from a message list, a request body or wrapper
    holding `messages` (Anthropic's separate `system` or the Responses API's `instructions`
    becomes the first message), OpenTelemetry `parts` messages, or a plain prompt string."""
    value = fields.json_value(value)
    if isinstance(value, dict):
        for key in ("messages", "input", "prompt"):
            if key in value:
                found = messages(value[key])
                system = _content_text(fields.first(value.get("system"), value.get("instructions")))
                if found and system and found[0].get("role") != "system":
                    found = [{"role": "system", "content": system}, *found]
                return found
        return None
    if isinstance(value, str):
        return [{"role": "user", "content": value}] if value.strip() else None
    if not isinstance(value, list) or not value:
        return None
    out = []
    for item in value:
        if isinstance(item, str):
            out.append({"role": "user", "content": item})
            continue
        if not isinstance(item, dict):
            return None
        if "parts" in item and "content" not in item:
            out.append({"role": item.get("role", "user"), "content": _parts_text(item["parts"])})
        else:
            out.append(item)
    return out


def _parts_text(parts: Any) -> str:
    """OpenTelemetry GenAI message parts: the text parts joined."""
    texts = [
        str(p.get("content", ""))
        for p in parts or []
        if isinstance(p, dict) and p.get("type", "text") == "text"
    ]
    return "\n".join(texts)


def answer_text(body: Any) -> str | None:
    """The answer of a response body: OpenAI chat (`choices[0].message.content`), text
    completions (`choices[0].text`), the Responses API (`output[*].content[*].text`), Anthropic
    (`content[*].text`), or an assistant message / OpenTelemetry output messages."""
    body = fields.json_value(body)
    if isinstance(body, str):
        return body
    if isinstance(body, list):
        texts = [t for t in (answer_text(item) for item in body) if t is not None]
        return "\n".join(texts) if texts else None
    if not isinstance(body, dict):
        return None
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        choice = choices[0]
        message = choice.get("message")
        if isinstance(message, dict):
            return _content_text(message.get("content"))
        return fields.as_str(choice.get("text"))
    if isinstance(body.get("output"), list):
        return _content_text([c for item in body["output"] for c in _list(item, "content")])
    if "parts" in body:
        return _parts_text(body["parts"])
    if "content" in body:
        return _content_text(body["content"])
    return None


def _list(item: Any, key: str) -> list[Any]:
    value = item.get(key) if isinstance(item, dict) else None
    return value if isinstance(value, list) else []


def _content_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            str(c.get("text"))
            for c in content
            if isinstance(c, dict) and isinstance(c.get("text"), str)
        ]
        return "\n".join(texts) if texts else None
    return None


def usage(body: Any) -> tuple[int | None, int | None]:
    """(input, output) tokens of a response body's `usage`: OpenAI `prompt_tokens` /
    `completion_tokens`, or `input_tokens` / `output_tokens` (Responses API, Anthropic)."""
    block = fields.as_dict(body).get("usage")
    block = block if isinstance(block, dict) else {}
    return (
        fields.as_count(fields.first(block.get("prompt_tokens"), block.get("input_tokens"))),
        fields.as_count(fields.first(block.get("completion_tokens"), block.get("output_tokens"))),
    )


def token_logprobs(body: Any) -> tuple[float, ...] | None:
    """Per-token logprobs of `choices[0].logprobs` (None when absent or malformed)."""
    choices = fields.as_dict(body).get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    try:
        values, _ = lp.token_logprobs(choices[0].get("logprobs"))
    except (ValueError, TypeError, KeyError):
        return None
    return values


def model(body: Any) -> str | None:
    return fields.as_str(fields.as_dict(body).get("model"))


def failure(http_status: int | None, *texts: Any) -> Literal["error", "timeout"]:
    """`timeout` when the HTTP status (408, 504, 524) or any error text says the call timed out,
    else `error`."""
    if http_status in TIMEOUT_HTTP:
        return "timeout"
    if any(isinstance(t, str) and _TIMEOUT_TEXT.search(t) for t in texts):
        return "timeout"
    return "error"


def error_text(body: Any) -> str | None:
    """A short error description from an error body (`{"error": {"message": ...}}`, a string)."""
    body = fields.json_value(body)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return fields.as_str(fields.first(inner.get("message"), inner.get("type")))
        return fields.as_str(inner)
    return fields.as_str(body)
