"""Gateway calls -> canonical requests: grouping, time order, tiers, retries and escalations.

The rules (docs/formats.md states them for users):

- Calls with the same trace/session key are one request (`request_id` = the key); a call without
  one is its own request (`request_id` = its call id). A call id seen twice in one request is one
  call (overlapping exports). Calls are taken in time order (start time, then file order).
- Each call's model names map to a tier (tier_map.py). A call no tier claims is rejected with
  `unknown model: NAME` and counted per model name; it is never silently dropped.
- One attempt per tier: calls of a tier that was already called in the request are retries of it.
  The tier's last call gives the attempt (status, answer, usage, confidence, latency, cost); the
  earlier ones are counted in `retries`, `retry_cost_usd`, `retry_latency_ms`.
- How a prod attempt was reached (`reached_by`, from the call just before the tier's first call):
  `first` (the request's first call), `fallback` (that call failed: error or timeout; retrying or
  failing over is not an escalation), `escalation` (that call ended ok on another tier: production
  asked a different tier after an answer).
- `served_tier` is the tier of the last `ok` prod call; a failed call is an attempt with status
  error or timeout and no answer. Shadow calls (Batch) have neither.
- The confidence is computed from the answer's logprobs by the tier's own method (tiers.yaml
  `confidence`, formats/logprobs.py, as replay does); none when the tier's method is not a logprob
  method or the export carries no logprobs.
- The request's timestamp is its first call's start; messages, input tokens, app and region come
  from the first call that has them; the request's metadata holds the format, the number of calls
  and the calls' context (user metadata such as `intent`, session, user, tags).

Pure; imports formats only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from calibrate.formats import fields
from calibrate.formats import logprobs as lp
from calibrate.formats.gateway import Call, RawReject
from calibrate.formats.tier_map import TierMap


@dataclass(frozen=True, slots=True)
class Request:
    """A canonical request record, filed under the file and line of its first call; `calls` are
    the (file, line) of every call it holds."""

    file: int
    line: int
    record: dict[str, Any]
    calls: tuple[tuple[int, int], ...]


@dataclass
class Grouped:
    requests: list[Request] = field(default_factory=list)
    rejects: list[tuple[int, RawReject]] = field(default_factory=list)
    unmapped: Counter[str] = field(default_factory=Counter)


def group(calls: Iterable[Call], tiers: TierMap, log_format: str) -> Grouped:
    """Canonical requests from one format's calls (see the module docstring)."""
    out = Grouped()
    groups: dict[tuple[str, str], list[tuple[Call, str]]] = {}
    for call in calls:
        tier = tiers.tier_of(call.models)
        if tier is None:
            label = call.models[0] if call.models else "(no model)"
            if len(call.models) > 1:
                label += f" (also {', '.join(call.models[1:])})"
            out.unmapped[label] += 1
            reason = f"unknown model: {label}: no tier claims it (add it to a tier's aliases)"
            out.rejects.append(call.unit.reject("model", reason))
            continue
        ident = ("key", call.key) if call.key is not None else ("call", call.call_id)
        groups.setdefault(ident, []).append((call, tier))
    for ident, members in groups.items():
        out.requests.append(_request(ident[1], members, tiers, log_format))
    return out


def _ordered(members: list[tuple[Call, str]]) -> list[tuple[Call, str]]:
    members = sorted(members, key=lambda m: (m[0].start, m[0].unit.file, m[0].unit.line))
    seen: set[str] = set()
    unique = []
    for call, tier in members:
        if call.call_id not in seen:
            seen.add(call.call_id)
            unique.append((call, tier))
    return unique


def _request(
    request_id: str, members: list[tuple[Call, str]], tiers: TierMap, log_format: str
) -> Request:
    ordered = _ordered(members)
    calls = [c for c, _ in ordered]
    first = calls[0]
    record: dict[str, Any] = {
        "request_id": request_id,
        "timestamp": fields.rfc3339(first.start),
        "messages": next((c.messages for c in calls if c.messages), []),
    }
    optional = {
        "input_tokens": next((c.input_tokens for c in calls if c.input_tokens is not None), None),
        "app": next((c.app for c in calls if c.app), None),
        "region": next((c.region for c in calls if c.region), None),
        "served_tier": next(
            (t for c, t in reversed(ordered) if c.source == "prod" and c.status == "ok"), None
        ),
    }
    record.update({k: v for k, v in optional.items() if v is not None})
    record["attempts"] = _attempts(ordered, tiers)
    metadata: dict[str, Any] = {"log_format": log_format, "calls": len(calls)}
    for call in calls:
        for key, value in call.metadata.items():
            metadata.setdefault(key, value)
    record["metadata"] = metadata
    return Request(
        first.unit.file,
        first.unit.line,
        record,
        tuple((m[0].unit.file, m[0].unit.line) for m in members),
    )


def _attempts(ordered: Sequence[tuple[Call, str]], tiers: TierMap) -> list[dict[str, Any]]:
    """One attempt per tier, in the order tiers were first called."""
    by_tier: dict[str, list[Call]] = {}
    reached: dict[str, str] = {}
    for i, (call, tier) in enumerate(ordered):
        if tier not in by_tier:
            prev = ordered[i - 1][0] if i else None
            reached[tier] = (
                "first" if prev is None else "escalation" if prev.status == "ok" else "fallback"
            )
        by_tier.setdefault(tier, []).append(call)
    return [
        _attempt(tier, runs, reached[tier], *tiers.confidence_method(tier))
        for tier, runs in by_tier.items()
    ]


def _sum(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _attempt(
    tier: str, calls: list[Call], reached_by: str, method: str, scale: str | None
) -> dict[str, Any]:
    last, earlier = calls[-1], calls[:-1]
    confidence = None
    if last.status == "ok" and method in lp.LOGPROB_METHODS:
        confidence, _ = lp.confidence(method, last.logprobs, scale)
    values: dict[str, Any] = {
        "tier": tier,
        "source": last.source,
        "status": last.status,
        "model": last.model or (last.models[0] if last.models else None),
        "confidence": confidence,
        "output": last.output,
        "input_tokens": last.input_tokens,
        "output_tokens": last.output_tokens,
        "cost_usd": last.cost_usd,
        "latency_ms": last.latency_ms,
        "reached_by": reached_by if last.source == "prod" else None,
        "call_id": last.call_id,
        "error": last.error[:300] if last.error else None,
    }
    if earlier:
        values["retries"] = len(earlier)
        values["retry_cost_usd"] = _sum(c.cost_usd for c in earlier)
        values["retry_latency_ms"] = _sum(c.latency_ms for c in earlier)
    values.update(last.extra)
    return {k: v for k, v in values.items() if v is not None}
