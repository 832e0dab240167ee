"""Shadow results: what one replay call and one replay job leave in the store.

`TierRun` is a tier as replay calls it (endpoint, price, expected answer length). From a call's
outcome this module builds its `CallRecord` (cost from usage × price, confidence from logprobs or
a verbalized answer, text scrubbed of the API key) and from a finished job the `ShadowAttempt`
rows of its requests. Pure: no I/O, no httpx.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from calibrate.calls import endpoint as ep
from calibrate.calls.pricing import TierPrice
from calibrate.config.tiers import Tier
from calibrate.formats.logprobs import LOGPROB_METHODS
from calibrate.records.replay import CallRecord, Job, ShadowAttempt

VERBALIZED_OUTPUT_TOKENS = 8
VERBALIZED_PROMPT_TOKENS = 40


@dataclass(frozen=True, slots=True)
class TierRun:
    """One tier as the dispatcher calls it."""

    tier: Tier
    position: int
    endpoint: ep.Endpoint
    price: TierPrice
    output_tokens: int
    """Expected output tokens per answer (max_tokens, else the stored mean): budgets and tpm."""
    output_basis: str

    @property
    def verbalized(self) -> bool:
        return self.tier.confidence == "verbalized"

    def reserve_usd(self, job: Job) -> float:
        """Worst-case cost of what the job still has to call."""
        cost = 0.0
        if job.answer is None or not job.answer.ok:
            cost += self.price.cost_usd(job.input_tokens, self.output_tokens)
        if self.verbalized:
            prompt = job.input_tokens + self.output_tokens + VERBALIZED_PROMPT_TOKENS
            cost += self.price.cost_usd(prompt, VERBALIZED_OUTPUT_TOKENS)
        return cost


def failed_for_good(stored: CallRecord | None) -> bool:
    """A stored failure that a run skips unless --retry-failed. Not one whose server could not be
    reached, nor a 400 about the key: those are transient (this version never stores them;
    stores written before it may hold some), and the next run calls them again."""
    if stored is None or stored.ok:
        return False
    error = stored.error or ""
    unreached = error.startswith("connection error")
    refused_key = stored.http_status == 400 and ep.is_auth_message(error)
    return not (unreached or refused_key)


def failed_key(stored: CallRecord | None) -> tuple[str, ...]:
    """The key of a stored failure that a new call replaces (with --retry-failed)."""
    return (stored.cache_key,) if stored is not None and not stored.ok else ()


def confidence_body(run: TierRun, messages_json: str, answer: str | None) -> bytes:
    messages = ep.verbalized_messages(json.loads(messages_json), answer)
    return ep.encode(ep.chat_body(run.tier.model, messages, dict(run.tier.params), False))


def completion_record(
    run: TierRun,
    body: bytes,
    purpose: str,
    completion: ep.Completion,
    tries: int,
    latency_ms: float,
    when: tuple[datetime, datetime],
) -> CallRecord:
    """The stored form of a 200 reply; a missing usage is estimated from the text (chars / 4)."""
    scrub = run.endpoint.scrub
    stats = ep.logprob_stats(completion)
    confidence, missing = _confidence(run.tier, purpose, completion)
    prompt = completion.input_tokens
    output = completion.output_tokens
    cost = run.price.cost_usd(
        prompt if prompt is not None else len(body) // 4,
        output if output is not None else len(completion.output or "") // 4,
    )
    return CallRecord(
        cache_key=ep.cache_key(run.endpoint.url, body),
        tier=run.tier.name,
        model=run.tier.model,
        purpose=purpose,
        status="ok",
        error=None,
        http_status=200,
        tries=tries,
        output=scrub(completion.output) if completion.output is not None else None,
        input_tokens=prompt,
        output_tokens=output,
        cost_usd=cost,
        latency_ms=latency_ms,
        confidence=confidence,
        confidence_missing=scrub(missing) if missing else None,
        logprob_stats=json.dumps(stats, sort_keys=True) if stats else None,
        started_at=when[0],
        finished_at=when[1],
    )


def _confidence(
    tier: Tier, purpose: str, completion: ep.Completion
) -> tuple[float | None, str | None]:
    """(value on the tier's scale, why it is missing) for this call; an answer of a verbalized
    tier, and a judge's verdict, have neither."""
    method = tier.confidence
    if purpose == "judge":
        return None, None
    if purpose == "confidence":
        return ep.parse_verbalized(completion.output)
    if method in LOGPROB_METHODS:
        return ep.confidence_from_logprobs(method, completion, tier.scale)
    if method == "none":
        return None, "confidence: none in tiers.yaml"
    return None, None


def failure_record(
    run: TierRun,
    body: bytes,
    purpose: str,
    failure: ep.Failure,
    tries: int,
    when: tuple[datetime, datetime],
    suffix: str,
) -> CallRecord:
    """The stored form of a call that failed for good (retried only with --retry-failed)."""
    return CallRecord(
        cache_key=ep.cache_key(run.endpoint.url, body),
        tier=run.tier.name,
        model=run.tier.model,
        purpose=purpose,
        status="error",
        error=run.endpoint.scrub(failure.message) + suffix,
        http_status=failure.http_status,
        tries=tries,
        output=None,
        input_tokens=None,
        output_tokens=None,
        cost_usd=0.0,
        latency_ms=0.0,
        confidence=None,
        confidence_missing=None,
        logprob_stats=None,
        started_at=when[0],
        finished_at=when[1],
    )


def shadow_attempts(
    run: TierRun, job: Job, answer: CallRecord, confidence: CallRecord | None, run_id: int
) -> tuple[ShadowAttempt, ...]:
    """One attempts row per request of the job. A verbalized confidence costs its second call
    too, and its latency is added (the router waits for it before deciding)."""
    second = confidence
    extra = _attempt_extra(run, answer, second, run_id)
    return tuple(
        ShadowAttempt(
            request_id=request_id,
            tier=run.tier.name,
            position=run.position,
            model=run.tier.model,
            confidence=second.confidence if second else answer.confidence,
            output=answer.output,
            input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
            cost_usd=answer.cost_usd + (second.cost_usd if second else 0.0),
            latency_ms=answer.latency_ms + (second.latency_ms if second else 0.0),
            extra_json=extra,
        )
        for request_id in job.request_ids
    )


def _attempt_extra(run: TierRun, answer: CallRecord, second: CallRecord | None, run_id: int) -> str:
    """attempts.extra of a replayed attempt: provenance, confidence details, logprob summary."""
    values = {
        "replay_run": run_id,
        "cache_key": answer.cache_key,
        "confidence_cache_key": second.cache_key if second else None,
        "confidence_method": run.tier.confidence,
        "confidence_scale": run.tier.scale,
        "confidence_missing": second.confidence_missing if second else answer.confidence_missing,
        "price_source": run.price.source,
        "cost_estimated": answer.input_tokens is None or answer.output_tokens is None,
        "logprobs": json.loads(answer.logprob_stats) if answer.logprob_stats else None,
    }
    return json.dumps({k: v for k, v in values.items() if v is not None}, sort_keys=True)
