"""The OpenAI-compatible `/v1/chat/completions` dialect: request bodies, cache keys, one HTTP
exchange, response parsing and confidence derivation.

`post()` is the only network call; it never raises for HTTP or transport problems: it returns a
`Reply` or a `Failure` that says whether a retry may help. Everything else is pure. The API key
lives only in `Endpoint.headers` (hidden from repr) and is scrubbed from every text we keep.
Logprobs become a confidence by formats/logprobs.py (shared with the gateway exports).
Retries, limits and the store belong to `dispatch`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx

from calibrate.formats import logprobs as lp

VERBALIZED_QUESTION = (
    "How likely is it that your answer above is correct? "
    "Reply with only a probability between 0 and 1."
)
_ERROR_TEXT_CHARS = 300

FailureKind = Literal["retry", "request", "tier"]
"""retry: may succeed later (429, 5xx, timeouts); request: this request fails for good (400,
malformed reply); tier: nothing will work for this tier (401, 403, 404) — pause it."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to call one tier. `headers` carries the key and never shows in a repr."""

    url: str
    model: str
    timeout_s: float
    headers: dict[str, str] = field(repr=False, compare=False)
    secret: str | None = field(default=None, repr=False, compare=False)

    def scrub(self, text: str) -> str:
        """Remove the API key from text that came back from the server."""
        return text.replace(self.secret, "***") if self.secret else text


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    content: bytes
    retry_after_s: float | None


@dataclass(frozen=True, slots=True)
class Failure:
    kind: FailureKind
    message: str
    http_status: int | None = None
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    """A parsed 200 reply: the answer text, token usage and per-token logprobs (None if absent)."""

    output: str | None
    input_tokens: int | None
    output_tokens: int | None
    logprobs: tuple[float, ...] | None
    clipped: int


def chat_url(base_url: str) -> str:
    return base_url.rstrip("/") + "/chat/completions"


def chat_body(
    model: str, messages: list[Any], params: dict[str, Any], want_logprobs: bool
) -> dict[str, Any]:
    """The request body: the tier's params, then model and messages (which params cannot override)."""
    body: dict[str, Any] = dict(params)
    if want_logprobs:
        body["logprobs"] = True
    body["model"] = model
    body["messages"] = messages
    return body


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def cache_key(url: str, body: bytes) -> str:
    """sha256 of (endpoint, body): the body holds the model, parameters and messages."""
    return hashlib.sha256(url.encode() + b"\n" + body).hexdigest()


def verbalized_messages(messages: list[Any], answer: str | None) -> list[Any]:
    """The second call of `verbalized`: the conversation, the answer, then the question."""
    return [
        *messages,
        {"role": "assistant", "content": answer or ""},
        {"role": "user", "content": VERBALIZED_QUESTION},
    ]


async def post(client: httpx.AsyncClient, endpoint: Endpoint, body: bytes) -> Reply | Failure:
    """One POST; transport problems become a retryable Failure, never an exception."""
    headers = {"Content-Type": "application/json", **endpoint.headers}
    try:
        response = await client.post(
            endpoint.url, content=body, headers=headers, timeout=endpoint.timeout_s
        )
    except httpx.TimeoutException as exc:
        return Failure("retry", f"timeout after {endpoint.timeout_s:g} s ({type(exc).__name__})")
    except httpx.TransportError as exc:
        detail = endpoint.scrub(str(exc))[:_ERROR_TEXT_CHARS] or type(exc).__name__
        return Failure("retry", f"connection error: {detail}")
    return Reply(response.status_code, response.content, retry_after_s(response.headers))


def retry_after_s(headers: httpx.Headers, now: datetime | None = None) -> float | None:
    """`retry-after-ms`, else `retry-after` in seconds or as an HTTP date; None when absent."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        value = _float(ms)
        if value is not None and value >= 0:
            return value / 1000
    raw = headers.get("retry-after")
    if raw is None:
        return None
    seconds = _float(raw)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    reference = now or datetime.now(when.tzinfo)
    return max((when - reference).total_seconds(), 0.0)


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def classify(reply: Reply, endpoint: Endpoint) -> Completion | Failure:
    """A 200 with a well-formed body is a Completion; anything else is a Failure of some kind."""
    status = reply.status
    if status != 200:
        text = endpoint.scrub(_error_text(reply.content))
        message = f"HTTP {status}: {text}" if text else f"HTTP {status}"
        if status == 429 or status in (408, 409) or status >= 500:
            return Failure("retry", message, status, reply.retry_after_s)
        if status in (401, 403, 404):
            return Failure("tier", message, status)
        return Failure("request", message, status)
    try:
        return parse_completion(json.loads(reply.content))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        detail = endpoint.scrub(str(exc))[:_ERROR_TEXT_CHARS]
        return Failure("request", f"malformed response: {detail}", status)


def _error_text(content: bytes) -> str:
    """The provider's error message when the body has one, else the start of the body."""
    text = content.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
        message = data["error"]["message"] if isinstance(data["error"], dict) else data["error"]
        text = str(message)
    except (ValueError, TypeError, KeyError):
        pass
    return " ".join(text.split())[:_ERROR_TEXT_CHARS]


def parse_completion(data: Any) -> Completion:
    """Read choices[0] and usage; raises ValueError/TypeError/KeyError on a malformed body."""
    if not isinstance(data, dict):
        raise ValueError("body is not a JSON object")
    choices = data["choices"]
    if not isinstance(choices, list) or not choices:
        raise ValueError("no choices")
    choice = choices[0]
    message = choice["message"]
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise ValueError("choices[0].message.content is not a string")
    usage = data.get("usage") or {}
    values, clipped = lp.token_logprobs(choice.get("logprobs"))
    return Completion(
        output=content,
        input_tokens=_count(usage.get("prompt_tokens")),
        output_tokens=_count(usage.get("completion_tokens")),
        logprobs=values,
        clipped=clipped,
    )


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def logprob_stats(completion: Completion) -> dict[str, float | int] | None:
    """Summary of the answer's token logprobs, kept with the call for later analysis."""
    return lp.summary(completion.logprobs, completion.clipped)


def confidence_from_logprobs(
    method: str, completion: Completion
) -> tuple[float | None, str | None]:
    """(confidence, None) or (None, why it is missing) for a logprob-based method."""
    return lp.confidence(method, completion.logprobs)


_NUMBER = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?|\.\d+)\s*(%?)")


def parse_verbalized(text: str | None) -> tuple[float | None, str | None]:
    """The first number in the reply as a probability ("0.8", "80%", "80" all give 0.8)."""
    match = _NUMBER.search(text or "")
    if match is None:
        return None, f"verbalized confidence is not a number: {(text or '')[:40]!r}"
    value = float(match.group(1))
    if match.group(2) or 1 < value <= 100:
        value /= 100
    if not 0 <= value <= 1:
        return None, f"verbalized confidence out of range: {match.group(0)!r}"
    return value, None
