"""Values passed between the replay modules and the store: frozen dataclasses, no I/O.

A `Job` is one distinct chat call to make for a tier (requests with identical messages share it);
a `CallRecord` is the durable outcome of one HTTP call (a `replay_calls` row); a `ShadowAttempt` is
the `attempts` row (source='shadow') a successful job gives each of its requests. `ReplayPlan` is
what `--dry-run` prints; `ReplaySummary` is what a run did. `Shard` is `--shard I/N` (and the rule
splitting a sample); `MergeCounts` is what `replay-merge` took from one store. Imports nothing
from calibrate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Shard:
    """Part `index` of `count` (`--shard I/N`): the sampled requests whose shard number is `index`.

    A request's shard number is the first 8 bytes of the SHA-256 of its request_id (UTF-8), read
    as a big-endian unsigned integer, modulo `count`: in Python
    `int.from_bytes(hashlib.sha256(rid.encode()).digest()[:8], "big") % count`. It depends on the
    request id alone, so it is the same on every machine and DuckDB version."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= I < N")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`I/N` (0 <= I < N) -> Shard; ValueError saying what is wrong."""
        match = re.fullmatch(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*", text)
        if match is None:
            raise ValueError(f"{text!r} is not I/N (two whole numbers, e.g. 0/4)")
        return cls(int(match[1]), int(match[2]))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True, slots=True)
class Selection:
    """Which requests to replay: filter (`where`, `since`), then a seeded uniform sample, then
    (with `shard`) this shard's part of that sample."""

    sample: int
    seed: int
    where: str | None = None
    since: datetime | None = None
    shard: Shard | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """One selected request that lacks an attempt for `tier`."""

    request_id: str
    tier: str
    messages_json: str
    input_tokens: int
    """Best estimate of the prompt's tokens: logged input_tokens, else characters / 4."""


@dataclass(frozen=True, slots=True)
class CallRecord:
    """The final outcome of one chat call (after retries); keyed by `cache_key`."""

    cache_key: str
    tier: str
    model: str
    purpose: str  # "answer", "confidence" (the second call of `verbalized`) or "judge"
    status: str  # "ok" or "error"
    error: str | None
    http_status: int | None
    tries: int
    output: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float
    latency_ms: float
    confidence: float | None
    confidence_missing: str | None
    logprob_stats: str | None  # JSON: n_tokens, clipped, mean, min, first_token
    started_at: datetime
    finished_at: datetime

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True, slots=True)
class Job:
    """One distinct call for a tier, fanned out to every request in `request_ids`.

    `answer` is set when the answer call is already stored (cache hit); `confidence_call` likewise
    for the second call of a `verbalized` tier. `purpose` is stored with the call: "answer" for
    replay, "judge" for a judge's verdict (a judge job has no `request_ids`: it makes no attempts).
    """

    tier: str
    cache_key: str
    body: bytes
    messages_json: str
    request_ids: tuple[str, ...]
    input_tokens: int
    answer: CallRecord | None = None
    confidence_call: CallRecord | None = None
    purpose: str = "answer"


@dataclass(frozen=True, slots=True)
class ShadowAttempt:
    """An `attempts` row written by replay (source='shadow', status='ok')."""

    request_id: str
    tier: str
    position: int
    model: str
    confidence: float | None
    output: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float
    latency_ms: float
    extra_json: str


@dataclass(frozen=True, slots=True)
class JobResult:
    """What one job leaves in the store: its calls, and attempts when it succeeded.

    `replaces` names stored failures these calls supersede (a run with --retry-failed)."""

    calls: tuple[CallRecord, ...]
    attempts: tuple[ShadowAttempt, ...]
    replaces: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TierPlan:
    """The plan for one tier: calls to make, what they should cost, and where the price came from."""

    tier: str
    requests: int
    calls: int
    cached: int
    failed_before: int
    input_tokens: int
    output_tokens: int
    output_tokens_basis: str
    cost_usd: float
    input_per_mtok: float
    output_per_mtok: float
    price_source: str


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """`--dry-run` output: selected requests and one TierPlan per tier."""

    selected: int
    tiers: tuple[TierPlan, ...]

    @property
    def calls(self) -> int:
        return sum(t.calls for t in self.tiers)

    @property
    def cost_usd(self) -> float:
        return sum(t.cost_usd for t in self.tiers)


@dataclass(frozen=True, slots=True)
class TierOutcome:
    """What a run did for one tier, in requests (`http_calls` counts every try)."""

    tier: str
    done: int
    cached: int
    failed: int
    failed_before: int
    not_run: int
    http_calls: int
    cost_usd: float
    price_source: str
    paused: str | None


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    """What one `replay` run did; `stopped` is None, "budget" or "interrupted"."""

    run_id: int
    selected: int
    tiers: tuple[TierOutcome, ...]
    cost_usd: float
    stopped: str | None
    warnings: tuple[str, ...]

    @property
    def paused(self) -> tuple[TierOutcome, ...]:
        return tuple(t for t in self.tiers if t.paused)


@dataclass(frozen=True, slots=True)
class MergeCounts:
    """What `replay-merge` took from one other store: rows copied and rows already present."""

    source: str
    attempts: int
    attempts_present: int
    calls: int
    calls_present: int
    failed_calls_replaced: int
    runs: int
