"""Runs replay jobs: per-tier workers, rate limits, retries, circuit breaker, budget, durable writes.

Each tier gets `limits.concurrency` workers, so no more calls are in flight than that. A worker
takes a job, reserves its worst-case cost from the budget, waits for the rate limiter, calls
(retrying 429, 5xx, timeouts, cut-short bodies and connection errors with backoff, honouring
Retry-After), and makes the result durable (appended to the store's journal) before it takes the
next job: a call that was paid is either stored or was in flight. DuckDB commits are grouped
behind the journal: whatever results are waiting go into one transaction, in a thread, while the
event loop keeps calling. A call whose server cannot be reached is not stored at all
(`Unreached`): the next run calls it again. Records are built by `call_records`; owns no SQL.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from calibrate import __version__
from calibrate.calls import endpoint as ep
from calibrate.calls.call_records import (
    VERBALIZED_PROMPT_TOKENS,
    TierRun,
    completion_record,
    confidence_body,
    failed_key,
    failure_record,
    shadow_attempts,
)
from calibrate.calls.context import RunContext
from calibrate.calls.limits import Backoff, Budget, CircuitBreaker, RateLimiter
from calibrate.records.replay import CallRecord, Job, JobResult
from calibrate.store import Journal, Store

MAX_RETRY_AFTER_S = 120.0
"""A longer Retry-After (a spent daily quota, say) pauses the tier instead of sleeping."""


@dataclass(frozen=True, slots=True)
class Unreached:
    """A call whose server could not be reached on any try (refused, reset, dropped): nothing is
    stored, so the next run calls it again without --retry-failed."""

    message: str


@dataclass
class TierState:
    """Mutable per-tier bookkeeping of one run."""

    run: TierRun
    limiter: RateLimiter
    breaker: CircuitBreaker
    queue: deque[Job] = field(default_factory=deque)
    missing: Counter[str] = field(default_factory=Counter)
    done: int = 0
    failed: int = 0
    unreached: int = 0
    """Jobs left unstored because the server could not be reached (`unreached_reason`)."""
    unreached_reason: str | None = None
    http_calls: int = 0
    cost_usd: float = 0.0


class Dispatcher:
    """Calls every queued job of every tier; `run()` returns when all are done or stopped."""

    def __init__(
        self,
        store: Store,
        run_id: int,
        tiers: Sequence[TierRun],
        context: RunContext,
        *,
        seed: int,
        budget: Budget,
        backoff: Backoff | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.context = context
        self.clock = context.timer
        self.wall = context.clock
        self.rng = random.Random(seed)
        self.budget = budget
        self.interrupted = context.interrupted
        self.on_progress = context.on_progress
        self.backoff = backoff or Backoff()
        self.stopped: str | None = None
        self.states = {
            t.tier.name: TierState(
                t,
                RateLimiter(t.tier.limits.rpm, t.tier.limits.tpm, self.clock),
                CircuitBreaker(t.tier.limits.pause_after_failures),
            )
            for t in tiers
        }
        self._writes: asyncio.Queue[tuple[JobResult, asyncio.Future[None] | None] | None] | None = (
            None
        )
        self._settled: asyncio.Condition
        self._journal: Journal | None = None
        self._appended = self._committed = 0
        self._finished = 0
        self._total = 0

    def _halted(self) -> bool:
        """No new job may start: interrupted, or the budget is spent."""
        if self.stopped is None and self.interrupted():
            self.stopped = "interrupted"
        return self.stopped is not None

    async def run(
        self, jobs: Sequence[Job], client_for: Callable[[TierRun], httpx.AsyncClient]
    ) -> None:
        """Call every job; results are committed as they arrive. `client_for(tier)` gives each
        worker its client (the caller closes them)."""
        for job in jobs:
            self.states[job.tier].queue.append(job)
        self._total = len(jobs)
        if self.on_progress is not None:
            self.on_progress(0, self._total)  # the total, before the first call ends
        self._writes = asyncio.Queue()
        self._settled = asyncio.Condition()
        self._journal = self.store.open_replay_journal()
        writer = asyncio.create_task(self._writer())
        workers = [
            self._worker(state, client_for(state.run))
            for state in self.states.values()
            for _ in range(min(state.run.tier.limits.concurrency, len(state.queue)))
        ]
        try:
            await asyncio.gather(*workers)
        finally:
            await self._writes.put(None)
            await writer
            if self._journal is not None:
                self._journal.close()

    async def _worker(self, state: TierState, client: httpx.AsyncClient) -> None:
        while state.queue and not self._halted() and not state.breaker.is_open:
            job = state.queue.popleft()
            reserved = state.run.reserve_usd(job)
            if not await self._reserve(reserved):
                state.queue.appendleft(job)
                return
            result, paid = None, 0.0
            try:
                result, paid = await self._execute(state, job, client)
            finally:
                self.budget.settle(reserved, paid)
                state.cost_usd += paid
                async with self._settled:
                    self._settled.notify_all()
            if result is None:
                state.queue.appendleft(job)
                continue
            if isinstance(result, Unreached):
                state.unreached += 1
                state.unreached_reason = result.message
            else:
                await self._write(result)
                self._count(state, job, result)
            self._finished += 1
            if self.on_progress is not None:
                self.on_progress(self._finished, self._total)

    async def _reserve(self, amount_usd: float) -> bool:
        """Reserve a job's worst-case cost. While other jobs hold reservations, wait for them to
        settle (their actual cost is usually lower); with none left, the budget is spent."""
        while not self.budget.reserve(amount_usd):
            if self.budget.reserved_usd <= 0 or self._halted():
                self.stopped = self.stopped or "budget"
                return False
            async with self._settled:
                await self._settled.wait()
        return True

    def _count(self, state: TierState, job: Job, result: JobResult) -> None:
        if result.attempts:
            state.done += len(job.request_ids)
            for attempt in result.attempts:
                if attempt.confidence is None:
                    reason = json.loads(attempt.extra_json).get("confidence_missing", "unknown")
                    state.missing[reason] += 1
        elif any(not c.ok for c in result.calls):
            state.failed += len(job.request_ids)

    async def _write(self, result: JobResult) -> None:
        """Make the result durable before the worker moves on: appended to the journal (then
        committed in the background), or, for a store without one, committed."""
        assert self._writes is not None
        if self._journal is not None:
            self._journal.append(result, self.run_id)
            self._appended += 1
            await self._writes.put((result, None))
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._writes.put((result, done))
        await done

    async def _writer(self) -> None:
        """Commit waiting results in groups, one transaction each, off the event loop; empty
        the journal whenever everything appended to it is committed."""
        assert self._writes is not None
        closing = False
        while not closing:
            item = await self._writes.get()
            if item is None:
                return
            batch = [item]
            while not self._writes.empty():
                more = self._writes.get_nowait()
                if more is None:
                    closing = True
                    break
                batch.append(more)
            try:
                results = [r for r, _ in batch]
                await asyncio.to_thread(self.store.record_replay_results, results, self.run_id)
            except BaseException as exc:
                for _, done in batch:
                    if done is not None:
                        done.set_exception(exc)
                raise
            for _, done in batch:
                if done is not None:
                    done.set_result(None)
            self._committed += len(batch)
            if self._journal is not None and self._committed == self._appended:
                self._journal.clear()

    async def _execute(
        self, state: TierState, job: Job, client: httpx.AsyncClient
    ) -> tuple[JobResult | Unreached | None, float]:
        """Answer (and, for `verbalized`, ask for a confidence).

        Returns what is left to store (None when abandoned: interrupted or tier paused; Unreached
        when the server could not be reached) and what the calls cost. A verbalized answer is
        stored before its second call is paid for."""
        run, paid = state.run, 0.0
        answer = job.answer if job.answer is not None and job.answer.ok else None
        if answer is None:
            called = await self._call(state, client, job.body, job.purpose, job.input_tokens)
            if called is None or isinstance(called, Unreached):
                return called, paid
            answer = called
            paid += answer.cost_usd
            replaces = failed_key(job.answer)
            if not answer.ok or not run.verbalized:
                attempts = shadow_attempts(run, job, answer, None, self.run_id) if answer.ok else ()
                return JobResult((answer,), attempts, replaces), paid
            await self._write(JobResult((answer,), (), replaces))
        # Only verbalized jobs get here: any other job with a stored answer is complete.
        body = confidence_body(run, job.messages_json, answer.output)
        tokens = job.input_tokens + (answer.output_tokens or 0) + VERBALIZED_PROMPT_TOKENS
        confidence = await self._call(state, client, body, "confidence", tokens)
        if confidence is None or isinstance(confidence, Unreached):
            return confidence, paid
        paid += confidence.cost_usd
        replaces = failed_key(job.confidence_call)
        if not confidence.ok:
            return JobResult((confidence,), (), replaces), paid
        attempts = shadow_attempts(run, job, answer, confidence, self.run_id)
        return JobResult((confidence,), attempts, replaces), paid

    async def _call(
        self,
        state: TierState,
        client: httpx.AsyncClient,
        body: bytes,
        purpose: str,
        tokens: int,
    ) -> CallRecord | Unreached | None:
        """One logical call with retries; None when abandoned (interrupted or tier paused)."""
        run, limits = state.run, state.run.tier.limits
        started = self.wall()
        for attempt in range(limits.max_retries + 1):
            if self.interrupted() or state.breaker.is_open:
                return None
            if not await state.limiter.acquire(tokens + run.output_tokens, self.interrupted):
                return None
            state.http_calls += 1
            t0 = self.clock.now()
            posted = await ep.post(client, run.endpoint, body)
            latency_ms = (self.clock.now() - t0) * 1000
            outcome = ep.classify(posted, run.endpoint) if isinstance(posted, ep.Reply) else posted
            if isinstance(outcome, ep.Completion):
                used = (outcome.input_tokens or tokens) + (outcome.output_tokens or 0)
                state.limiter.correct_tokens(tokens + run.output_tokens, used)
                state.breaker.success()
                return completion_record(
                    run, body, purpose, outcome, attempt + 1, latency_ms, (started, self.wall())
                )
            if outcome.kind == "tier":
                state.breaker.trip(outcome.message)
                return None
            retryable = outcome.kind in ("retry", "connection")
            if retryable and attempt < limits.max_retries:
                if not await self._wait_to_retry(state, outcome, attempt):
                    return None
                continue
            gave_up = f" (gave up after {attempt + 1} tries)" if retryable else ""
            state.breaker.failure(outcome.message)
            if outcome.kind == "connection":
                return Unreached(outcome.message + gave_up)
            return failure_record(
                run, body, purpose, outcome, attempt + 1, (started, self.wall()), gave_up
            )
        raise AssertionError("unreachable: the last try returns")

    async def _wait_to_retry(self, state: TierState, failure: ep.Failure, attempt: int) -> bool:
        """Sleep before a retry (Retry-After when given, else backoff); False to abandon."""
        delay = failure.retry_after_s
        if delay is not None and delay > MAX_RETRY_AFTER_S:
            state.breaker.trip(f"{failure.message}; the server asks to wait {delay:.0f} s")
            return False
        if delay is not None:
            state.limiter.block_for(delay)
        else:
            delay = self.backoff.delay_s(attempt, self.rng)
        deadline = self.clock.now() + delay
        while (left := deadline - self.clock.now()) > 0:
            if self.interrupted():
                return False
            await self.clock.sleep(min(left, 0.25))
        return True


async def run_jobs(dispatcher: Dispatcher, jobs: Sequence[Job]) -> None:
    """Run `jobs` with one one-connection client per worker: httpcore scans its whole pool on
    every request, so many small pools are much faster than one big one. The context's
    `transport`, when given, is shared by every worker instead."""
    transport = dispatcher.context.transport
    headers = {
        "User-Agent": f"calibrate/{__version__}",
        "X-Calibrate-Replay-Run": str(dispatcher.run_id),
    }
    ssl_context = httpx.create_ssl_context()  # once: loading the CA bundle is slow
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients: list[httpx.AsyncClient] = []

    def client_for(run: TierRun) -> httpx.AsyncClient:
        if transport is not None and clients:
            return clients[0]
        own = transport or httpx.AsyncHTTPTransport(verify=ssl_context, limits=one)
        clients.append(httpx.AsyncClient(transport=own, headers=headers))
        return clients[-1]

    try:
        await dispatcher.run(jobs, client_for)
    finally:
        for client in clients:
            await client.aclose()
