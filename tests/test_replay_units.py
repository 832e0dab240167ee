"""Pure pieces of replay: response parsing, confidence, Retry-After, cache keys, limits, prices."""

from __future__ import annotations

import asyncio
import json
import math
import random
from datetime import UTC, datetime

import httpx
import pytest
from replay_support import FakeClock

from calibrate.calls import endpoint as ep
from calibrate.calls.limits import Backoff, Budget, CircuitBreaker, RateLimiter, TokenBucket
from calibrate.calls.pricing import tier_prices
from calibrate.config.tiers import TiersConfig
from calibrate.errors import ConfigError
from calibrate.formats.logprobs import LOGPROB_FLOOR

ENDPOINT = ep.Endpoint("http://127.0.0.1:1/v1/chat/completions", "m", 5.0, {}, "sk-secret")


def reply(data: object, status: int = 200, **headers: str) -> ep.Reply:
    content = data if isinstance(data, bytes) else json.dumps(data).encode()
    return ep.Reply(status, content, ep.retry_after_s(httpx.Headers(headers)))


def completion(logprobs: list[dict] | None, content: str = "yes") -> dict:
    choice: dict = {"index": 0, "message": {"role": "assistant", "content": content}}
    if logprobs is not None:
        choice["logprobs"] = {"content": logprobs}
    return {"choices": [choice], "usage": {"prompt_tokens": 12, "completion_tokens": 3}}


def tok(lp: float, top: list[float] | None = None) -> dict:
    return {"token": "x", "logprob": lp, "top_logprobs": [{"logprob": t} for t in top or []]}


def test_logprob_confidences() -> None:
    parsed = ep.classify(reply(completion([tok(-0.1), tok(-0.5), tok(-0.3)])), ENDPOINT)
    assert isinstance(parsed, ep.Completion)
    assert (parsed.input_tokens, parsed.output_tokens) == (12, 3)
    mean, _ = ep.confidence_from_logprobs("logprob_mean", parsed)
    low, _ = ep.confidence_from_logprobs("logprob_min", parsed)
    first, _ = ep.confidence_from_logprobs("first_token", parsed)
    assert mean == pytest.approx(-0.3)
    assert low == -0.5
    assert first == pytest.approx(math.exp(-0.1))


def test_minus_9999_is_clipped_to_the_smallest_top_logprob_or_the_floor() -> None:
    data = completion([tok(-0.2), tok(-9999.0, top=[-1.0, -7.5, -9999.0]), tok(-9999.0)])
    parsed = ep.classify(reply(data), ENDPOINT)
    assert isinstance(parsed, ep.Completion)
    assert parsed.logprobs == (-0.2, -7.5, LOGPROB_FLOOR)
    assert parsed.clipped == 2
    low, _ = ep.confidence_from_logprobs("logprob_min", parsed)
    assert low == LOGPROB_FLOOR


def test_missing_logprobs_is_a_reason_not_a_crash() -> None:
    parsed = ep.classify(reply(completion(None)), ENDPOINT)
    assert isinstance(parsed, ep.Completion)
    assert ep.confidence_from_logprobs("logprob_mean", parsed) == (
        None,
        "the tier returned no logprobs",
    )
    empty = ep.classify(reply(completion([], content="")), ENDPOINT)
    assert isinstance(empty, ep.Completion)
    assert ep.confidence_from_logprobs("first_token", empty) == (None, "the answer has no tokens")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "malformed response"),
        ({"choices": []}, "no choices"),
        ({"choices": [{"message": {"content": 3}}]}, "not a string"),
        ([1, 2], "not a JSON object"),
        ({"choices": [{"message": {"content": "a"}, "logprobs": {"content": [{}]}}]}, "logprob"),
    ],
)
def test_malformed_bodies_are_request_failures(body: object, fragment: str) -> None:
    parsed = ep.classify(reply(body), ENDPOINT)
    assert isinstance(parsed, ep.Failure)
    assert parsed.kind == "request"
    assert parsed.message.startswith("malformed response")
    assert fragment in parsed.message


@pytest.mark.parametrize(
    ("status", "kind"),
    [(429, "retry"), (500, "retry"), (503, "retry"), (408, "retry"), (400, "request"),
     (422, "request"), (401, "tier"), (403, "tier"), (404, "tier")],
)  # fmt: skip
def test_status_kinds(status: int, kind: str) -> None:
    parsed = ep.classify(reply({"error": {"message": "nope"}}, status), ENDPOINT)
    assert isinstance(parsed, ep.Failure)
    assert (parsed.kind, parsed.message, parsed.http_status) == (
        kind,
        f"HTTP {status}: nope",
        status,
    )


def test_error_text_is_scrubbed_of_the_key() -> None:
    parsed = ep.classify(reply({"error": {"message": "bad key sk-secret"}}, 400), ENDPOINT)
    assert isinstance(parsed, ep.Failure)
    assert "sk-secret" not in parsed.message
    assert "sk-secret" not in repr(ENDPOINT)


def test_retry_after_forms() -> None:
    assert ep.retry_after_s(httpx.Headers({"retry-after": "7"})) == 7.0
    assert ep.retry_after_s(httpx.Headers({"retry-after": "1.5"})) == 1.5
    assert ep.retry_after_s(httpx.Headers({"retry-after-ms": "250", "retry-after": "9"})) == 0.25
    now = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
    date = httpx.Headers({"retry-after": "Sun, 01 Nov 2026 12:00:30 GMT"})
    assert ep.retry_after_s(date, now) == 30.0
    assert ep.retry_after_s(httpx.Headers({"retry-after": "soon"})) is None
    assert ep.retry_after_s(httpx.Headers({})) is None


def test_cache_key_covers_endpoint_model_params_and_messages() -> None:
    msgs = [{"role": "user", "content": "hi"}]
    base = ep.encode(ep.chat_body("m", msgs, {"temperature": 0}, True))
    key = ep.cache_key("http://a/v1/chat/completions", base)
    assert key == ep.cache_key("http://a/v1/chat/completions", base)
    variants = [
        ("http://b/v1/chat/completions", base),
        ("http://a/v1/chat/completions", ep.encode(ep.chat_body("m2", msgs, {"temperature": 0}, True))),
        ("http://a/v1/chat/completions", ep.encode(ep.chat_body("m", msgs, {"temperature": 1}, True))),
        ("http://a/v1/chat/completions", ep.encode(ep.chat_body("m", msgs[:0], {"temperature": 0}, True))),
    ]  # fmt: skip
    assert len({ep.cache_key(u, b) for u, b in variants} | {key}) == 5


def test_params_cannot_override_model_or_messages() -> None:
    body = ep.chat_body("m", [], {"model": "other", "messages": "x", "logprobs": False}, True)
    assert (body["model"], body["messages"], body["logprobs"]) == ("m", [], True)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.8", 0.8),
        ("Confidence: 0.35.", 0.35),
        ("80%", 0.8),
        ("85", 0.85),
        ("1", 1.0),
        (".5", 0.5),
    ],
)
def test_verbalized_numbers(text: str, value: float) -> None:
    assert ep.parse_verbalized(text) == (pytest.approx(value), None)


@pytest.mark.parametrize("text", ["I am sure", "", None, "250"])
def test_verbalized_without_a_probability_is_missing(text: str | None) -> None:
    value, reason = ep.parse_verbalized(text)
    assert value is None
    assert reason and reason.startswith("verbalized confidence")


def test_token_bucket_paces_requests_on_a_fake_clock() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=60, tpm=None, clock=clock)

    async def five() -> None:
        for _ in range(5):
            assert await limiter.acquire(10, lambda: False)

    asyncio.run(five())
    assert sum(clock.sleeps) == pytest.approx(4.0)


def test_tokens_per_minute_lets_a_big_request_through_after_a_full_bucket() -> None:
    clock = FakeClock()
    bucket = TokenBucket(600, clock)  # 10 tokens/s, capacity 10
    assert bucket.wait_s(50) == 0
    bucket.take(50)
    assert bucket.wait_s(50) == pytest.approx(5.0)  # from -40 up to a full 10


def test_retry_after_blocks_the_whole_tier() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=None, tpm=None, clock=clock)
    limiter.block_for(3.0)
    assert asyncio.run(limiter.acquire(1, lambda: False))
    assert sum(clock.sleeps) == pytest.approx(3.0)
    limiter.block_for(3.0)
    assert not asyncio.run(limiter.acquire(1, lambda: True))


def test_backoff_grows_with_jitter_and_a_cap() -> None:
    rng = random.Random(1)
    delays = [Backoff(0.5, 8.0).delay_s(n, rng) for n in range(8)]
    for n, delay in enumerate(delays):
        nominal = min(0.5 * 2**n, 8.0)
        assert 0.75 * nominal <= delay <= nominal


def test_breaker_opens_after_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(3)
    for _ in range(2):
        breaker.failure("HTTP 500")
    breaker.success()
    breaker.failure("HTTP 500")
    breaker.failure("HTTP 500")
    assert not breaker.is_open
    breaker.failure("HTTP 502")
    assert breaker.reason == "3 consecutive failed calls, last: HTTP 502"


def test_budget_refuses_a_call_that_could_pass_the_cap() -> None:
    budget = Budget(1.0)
    assert budget.reserve(0.6)
    assert not budget.reserve(0.5)
    budget.settle(0.6, 0.2)
    assert budget.reserve(0.5)
    assert Budget(None).reserve(1e9)


def test_budget_reservations_drain_to_exactly_zero() -> None:
    """0.1 + 0.2 + 0.3 − 0.1 − 0.2 − 0.3 is 1.1e-16 in floats: a worker waiting for the
    reservations to drain (dispatch._reserve) would wait forever."""
    budget = Budget(1.0)
    for amount in (0.1, 0.2, 0.3):
        assert budget.reserve(amount)
    for amount in (0.1, 0.2, 0.3):
        budget.settle(amount, 0.0)
    assert (budget.reserved_usd, budget.holds) == (0.0, 0)


def test_prices_from_tiers_yaml_then_genai_prices() -> None:
    tiers = TiersConfig.model_validate(
        {
            "tiers": [
                {"name": "a", "model": "x", "price": {"input_per_mtok": 1, "output_per_mtok": 2}},
                {"name": "b", "model": "gpt-4o-mini"},
            ]
        }
    )
    prices = tier_prices(tiers, lambda: datetime(2026, 11, 1, tzinfo=UTC))
    assert prices["a"].source == "tiers.yaml"
    assert prices["b"].source.startswith("genai-prices ")
    assert (prices["b"].input_per_mtok, prices["b"].output_per_mtok) == (0.15, 0.6)


def test_a_tier_priced_nowhere_is_a_config_error() -> None:
    tiers = TiersConfig.model_validate({"tiers": [{"name": "a", "model": "no-such-model-zz9"}]})
    with pytest.raises(ConfigError, match="no price for tier a"):
        tier_prices(tiers, lambda: datetime(2026, 11, 1, tzinfo=UTC))
