"""The OpenAI-compatible `/v1/chat/completions` dialect: request bodies, cache keys, one HTTP
exchange, response parsing and confidence derivation.

`post()` is the only network call; it never raises for HTTP or transport problems: it returns a
`Reply` or a `Failure` that says whether a retry may help. Everything else is pure. The API key
lives only in `Endpoint.headers` (hidden from repr) and is scrubbed from every text we keep
(every form of it, before any text is clipped: `secrets.scrub`); the text of a transport
exception, which may quote request headers, is never kept. Logprobs become a confidence by
formats/logprobs.py (shared with the gateway exports). Retries, limits and the store belong to
`dispatch`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx

from calibrate.calls import secrets
from calibrate.formats import logprobs as lp

VERBALIZED_QUESTION = (
    "How likely is it that your answer above is correct? "
    "Reply with only a probability between 0 and 1."
)
_ERROR_TEXT_CHARS = 300

FailureKind = Literal["retry", "connection", "request", "tier"]
"""retry: may succeed later (429, 5xx, read timeouts, a body cut short): retried now, stored as a
failure when the tries run out; connection: the server could not be reached (refused, reset,
dropped, connect timeout): retried now, never stored, so the next run calls it again; request:
this request fails for good (400, malformed reply); tier: nothing will work for this tier (401,
403, 404, a 400 that talks about the key, a request that cannot be sent) — pause it, store
nothing."""

_AUTH_WORDS = re.compile(
    r"api[ _-]?key|authenticat|unauthori[sz]ed|invalid[ _-]?(?:proxy[ _-]?server[ _-]?)?token"
    r"|access[ _-]?token|credential|permission denied|forbidden",
    re.IGNORECASE,
)
"""A 400 whose message says this is about the key (LiteLLM answers a bad key with HTTP 400)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to call one tier. `headers` carries the key and never shows in a repr."""

    url: str
    model: str
    timeout_s: float
    headers: dict[str, str] = field(repr=False, compare=False)
    secret: str | None = field(default=None, repr=False, compare=False)

    def scrub(self, text: str) -> str:
        """Remove the API key, in every form, from text that came back from the server."""
        return secrets.scrub(text, self.secret)


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
    """One POST; transport problems become a Failure, never an exception."""
    headers = {"Content-Type": "application/json", **endpoint.headers}
    try:
        response = await client.post(
            endpoint.url, content=body, headers=headers, timeout=endpoint.timeout_s
        )
    except httpx.TransportError as exc:
        return transport_failure(exc, endpoint.timeout_s)
    return Reply(response.status_code, response.content, retry_after_s(response.headers))


def transport_failure(exc: httpx.TransportError, timeout_s: float) -> Failure:
    """What a transport exception means, in words of our own: its text may quote request headers
    (h11's "Illegal header value b'Bearer ...'"), so only its class and an OS reason are kept."""
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return Failure("connection", f"connection error: {name} after {timeout_s:g} s")
    if isinstance(exc, httpx.TimeoutException):
        return Failure("retry", f"timeout after {timeout_s:g} s ({name})")
    if isinstance(exc, httpx.LocalProtocolError | httpx.UnsupportedProtocol):
        return Failure(
            "tier",
            f"the request could not be sent ({name}): a header or the URL is malformed; "
            "check base_url and the API key variable",
        )
    reason = _os_reason(exc)
    return Failure("connection", f"connection error: {name}" + (f" ({reason})" if reason else ""))


def _os_reason(exc: BaseException) -> str | None:
    """The OS's words for the errno behind the exception ("Connection refused"), if any."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno:
            return os.strerror(seen.errno)
        seen = seen.__cause__ or seen.__context__
    return None


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
        text = _clip(endpoint.scrub(_error_text(reply.content)))
        message = f"HTTP {status}: {text}" if text else f"HTTP {status}"
        if status == 429 or status in (408, 409) or status >= 500:
            return Failure("retry", message, status, reply.retry_after_s)
        if status in (401, 403, 404) or (status == 400 and is_auth_message(text)):
            return Failure("tier", message, status)
        return Failure("request", message, status)
    try:
        data = json.loads(reply.content)
    except json.JSONDecodeError as exc:
        if _cut_short(exc):
            return Failure("retry", "truncated response: the body ends mid-JSON", status)
        return Failure("request", f"malformed response: {_clip(endpoint.scrub(str(exc)))}", status)
    except ValueError as exc:
        return Failure("request", f"malformed response: {_clip(endpoint.scrub(str(exc)))}", status)
    try:
        return parse_completion(data)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        return Failure("request", f"malformed response: {_clip(endpoint.scrub(str(exc)))}", status)


def is_auth_message(text: str | None) -> bool:
    """Whether an error message is about the API key or the caller's rights."""
    return bool(text) and _AUTH_WORDS.search(text or "") is not None


def _cut_short(exc: json.JSONDecodeError) -> bool:
    """The JSON error is at the end of the body (or in a string left open): the body was cut
    short, not garbage."""
    return exc.pos >= len(exc.doc.rstrip()) or exc.msg.startswith("Unterminated string")


def _error_text(content: bytes) -> str:
    """The provider's error message when the body has one, else the body; whole (scrub it before
    `_clip`), whitespace runs as one space."""
    text = content.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
        message = data["error"]["message"] if isinstance(data["error"], dict) else data["error"]
        text = str(message)
    except (ValueError, TypeError, KeyError):
        pass
    return " ".join(text.split())


def _clip(text: str) -> str:
    """The start of a text that is already scrubbed."""
    return text[:_ERROR_TEXT_CHARS]


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
    method: str, completion: Completion, scale: str | None = None
) -> tuple[float | None, str | None]:
    """(confidence, None) or (None, why it is missing) for a logprob-based method, on `scale`
    (None: the method's natural scale)."""
    return lp.confidence(method, completion.logprobs, scale)


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
