"""Stage: shadow replay — select requests, plan the calls and their cost, run them -> ReplaySummary.

select: a seeded uniform sample of the requests matching --where/--since (with --shard I/N, the
part of that sample in shard I: `records.replay.Shard`); every sampled request × tier without an
attempt is a candidate. plan: candidates with identical calls (same endpoint, model,
parameters, messages: one cache key) share one job; stored calls are reused, stored failures are
skipped unless retry_failed; cost is estimated from prompt length and each tier's price. run: the
`Dispatcher` makes the calls and commits each result as it arrives. Never prints.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from calibrate.calls import endpoint as ep
from calibrate.calls.call_records import (
    VERBALIZED_OUTPUT_TOKENS,
    VERBALIZED_PROMPT_TOKENS,
    TierRun,
    confidence_body,
    failed_for_good,
    shadow_attempts,
)
from calibrate.calls.context import RunContext
from calibrate.calls.dispatch import Dispatcher, TierState, run_jobs
from calibrate.calls.limits import Budget
from calibrate.calls.pricing import tier_prices
from calibrate.calls.tier_run import check_tier, tier_run
from calibrate.config.tiers import Tier, TiersConfig
from calibrate.errors import DataError, EndpointError
from calibrate.formats.logprobs import LOGPROB_METHODS
from calibrate.records.replay import (
    Candidate,
    Job,
    JobResult,
    ReplayPlan,
    ReplaySummary,
    Selection,
    TierOutcome,
    TierPlan,
)
from calibrate.records.runs import UnfinishedRun
from calibrate.store import Store

"""Expected answer length when a tier sets no max_tokens and the store has no answers of it."""


@dataclass(frozen=True, slots=True)
class _Planned:
    plan: ReplayPlan
    jobs: tuple[Job, ...]
    cached: tuple[Job, ...]
    runs: dict[str, TierRun]


def plan_replay(
    store: Store,
    tiers: TiersConfig,
    selection: Selection,
    *,
    retry_failed: bool,
    clock: Callable[[], datetime],
) -> ReplayPlan:
    """What a replay would do (calls per tier, tokens, cost, price source); calls nothing."""
    return _plan(store, tiers, selection, retry_failed, clock, environ=None).plan


def replay(
    store: Store,
    tiers: TiersConfig,
    selection: Selection,
    context: RunContext,
    *,
    max_cost_usd: float | None,
    retry_failed: bool,
) -> ReplaySummary:
    """Call every planned request × tier; results are committed as they arrive."""
    clock = context.clock
    planned = _plan(store, tiers, selection, retry_failed, clock, context.environ)
    run_id, killed = store.begin_replay_run(clock(), selection, max_cost_usd, retry_failed)
    cached = [_cached_result(planned.runs[j.tier], j, run_id) for j in planned.cached]
    if cached:
        store.record_replay_results(cached, run_id)
    dispatcher = Dispatcher(
        store,
        run_id,
        list(planned.runs.values()),
        context,
        seed=selection.seed,
        budget=Budget(max_cost_usd),
    )
    asyncio.run(run_jobs(dispatcher, planned.jobs))
    summary = _summary(run_id, planned, dispatcher, killed)
    store.finish_replay_run(
        run_id, clock(), planned.plan.selected, summary.cost_usd, summary.stopped
    )
    return summary


def raise_for_paused(summary: ReplaySummary) -> None:
    """A tier paused by its circuit breaker is an error the user must fix (key, URL, quota)."""
    if not summary.paused:
        return
    lines = "; ".join(f"tier {t.tier!r} paused: {t.paused}" for t in summary.paused)
    failed = sum(t.failed for t in summary.paused)
    retry = (
        f" The {failed} requests stored as failed before the pause are called again only with "
        "--retry-failed."
        if failed
        else ""
    )
    raise EndpointError(
        lines,
        hint="Check the tier's base_url, model and API key variable in tiers.yaml, then run the "
        "same command again: stored results are kept and not paid twice; requests the pause "
        f"left out are called.{retry}",
    )


def _plan(
    store: Store,
    tiers: TiersConfig,
    selection: Selection,
    retry_failed: bool,
    clock: Callable[[], datetime],
    environ: Mapping[str, str] | None,
) -> _Planned:
    """Select and plan; `environ` None (a dry run) reads no API key."""
    for tier in tiers.tiers:
        check_tier(tier)
    prices = tier_prices(tiers, clock)
    selected, candidates = store.replay_candidates(selection, tiers.names)
    if selected == 0 and not _other_shards_sampled(store, selection, tiers):
        raise DataError(
            "no stored request matches the selection",
            hint="Run `calibrate ingest LOGS --db FILE` first, or widen --where/--since.",
        )
    runs = {
        t.name: tier_run(store, t, k, prices[t.name], environ) for k, t in enumerate(tiers.tiers)
    }
    by_tier: dict[str, list[Candidate]] = defaultdict(list)
    for c in candidates:
        by_tier[c.tier].append(c)
    jobs, cached, plans = [], [], []
    for name, run in runs.items():
        tier_jobs, skipped = _tier_jobs(store, run, by_tier[name], retry_failed)
        jobs += [j for j in tier_jobs if not _complete(run, j)]
        cached += [j for j in tier_jobs if _complete(run, j)]
        plans.append(_tier_plan(run, by_tier[name], tier_jobs, skipped))
    return _Planned(ReplayPlan(selected, tuple(plans)), tuple(jobs), tuple(cached), runs)


def _other_shards_sampled(store: Store, selection: Selection, tiers: TiersConfig) -> bool:
    """An empty shard of a non-empty sample is no error: that runner has nothing to do."""
    if selection.shard is None:
        return False
    return store.replay_candidates(replace(selection, shard=None), tiers.names)[0] > 0


def answer_body(tier: Tier, messages_json: str) -> bytes:
    """The exact bytes sent for a request's answer (their hash is the cache key)."""
    want_logprobs = tier.confidence in LOGPROB_METHODS
    body = ep.chat_body(tier.model, json.loads(messages_json), dict(tier.params), want_logprobs)
    return ep.encode(body)


def _tier_jobs(
    store: Store, run: TierRun, candidates: Sequence[Candidate], retry_failed: bool
) -> tuple[list[Job], int]:
    """Group the tier's candidates by cache key; attach stored calls; drop stored failures."""
    groups: dict[str, list[Candidate]] = defaultdict(list)
    bodies: dict[str, bytes] = {}
    for c in candidates:
        body = answer_body(run.tier, c.messages_json)
        key = ep.cache_key(run.endpoint.url, body)
        groups[key].append(c)
        bodies[key] = body
    answers = store.stored_calls(list(groups))
    second_keys = {
        key: ep.cache_key(
            run.endpoint.url, confidence_body(run, groups[key][0].messages_json, a.output)
        )
        for key, a in answers.items()
        if a.ok and run.verbalized
    }
    seconds = store.stored_calls(list(second_keys.values()))
    jobs, skipped = [], 0
    for key, members in groups.items():
        answer = answers.get(key)
        second = seconds.get(second_keys.get(key, ""))
        if not retry_failed and any(failed_for_good(c) for c in (answer, second)):
            skipped += len(members)
            continue
        first = members[0]
        jobs.append(
            Job(
                tier=run.tier.name,
                cache_key=key,
                body=bodies[key],
                messages_json=first.messages_json,
                request_ids=tuple(c.request_id for c in members),
                input_tokens=first.input_tokens,
                answer=answer,
                confidence_call=second,
            )
        )
    return jobs, skipped


def _complete(run: TierRun, job: Job) -> bool:
    """Everything this job needs is already stored: no call to make."""
    answered = job.answer is not None and job.answer.ok
    confident = not run.verbalized or (job.confidence_call is not None and job.confidence_call.ok)
    return answered and confident


def _cached_result(run: TierRun, job: Job, run_id: int) -> JobResult:
    assert job.answer is not None
    return JobResult((), shadow_attempts(run, job, job.answer, job.confidence_call, run_id))


def _tier_plan(
    run: TierRun, candidates: Sequence[Candidate], jobs: Sequence[Job], skipped: int
) -> TierPlan:
    calls = input_tokens = output_tokens = 0
    cost = 0.0
    cached = 0
    for job in jobs:
        if _complete(run, job):
            cached += len(job.request_ids)
            continue
        if job.answer is None or not job.answer.ok:
            calls += 1
            input_tokens += job.input_tokens
            output_tokens += run.output_tokens
        if run.verbalized:
            calls += 1
            input_tokens += job.input_tokens + run.output_tokens + VERBALIZED_PROMPT_TOKENS
            output_tokens += VERBALIZED_OUTPUT_TOKENS
        cost += run.reserve_usd(job)
    price = run.price
    return TierPlan(
        tier=run.tier.name,
        requests=len(candidates),
        calls=calls,
        cached=cached,
        failed_before=skipped,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        output_tokens_basis=run.output_basis,
        cost_usd=cost,
        input_per_mtok=price.input_per_mtok,
        output_per_mtok=price.output_per_mtok,
        price_source=price.source,
    )


def _summary(
    run_id: int, planned: _Planned, dispatcher: Dispatcher, killed: Sequence[UnfinishedRun]
) -> ReplaySummary:
    outcomes, warnings = [], [run.describe() for run in killed]
    for plan in planned.plan.tiers:
        state = dispatcher.states[plan.tier]
        not_run = plan.requests - plan.cached - plan.failed_before - state.done - state.failed
        outcomes.append(
            TierOutcome(
                tier=plan.tier,
                done=state.done,
                cached=plan.cached,
                failed=state.failed,
                failed_before=plan.failed_before,
                not_run=not_run,
                http_calls=state.http_calls,
                cost_usd=state.cost_usd,
                price_source=plan.price_source,
                paused=state.breaker.reason,
            )
        )
        warnings += _tier_warnings(outcomes[-1], state)
    cost = sum(o.cost_usd for o in outcomes)
    left = sum(o.not_run for o in outcomes)
    if dispatcher.stopped == "budget":
        warnings.append(
            f"stopped at the --max-cost-usd cap (spent ${cost:.6f}); {left} request × tier "
            "results not made. Run again, with a higher cap, to continue."
        )
    elif dispatcher.stopped == "interrupted":
        warnings.append(
            f"interrupted: {left} request × tier results not made. "
            "Run the same command again to resume; stored results are not paid twice."
        )
    return ReplaySummary(
        run_id=run_id,
        selected=planned.plan.selected,
        tiers=tuple(outcomes),
        cost_usd=cost,
        stopped=dispatcher.stopped,
        warnings=tuple(warnings),
    )


def _tier_warnings(outcome: TierOutcome, state: TierState) -> list[str]:
    name = outcome.tier
    warnings = [
        f"tier {name!r}: no confidence for {n} answers ({reason})"
        for reason, n in sorted(state.missing.items())
    ]
    if state.unreached:
        warnings.append(
            f"tier {name!r}: {state.unreached} calls not made: {state.unreached_reason}. Nothing "
            "was stored for them: run the same command again once the server is reachable."
        )
    if outcome.failed:
        warnings.append(
            f"tier {name!r}: {outcome.failed} requests failed for good (see replay_calls.error); "
            "--retry-failed calls them again."
        )
    if outcome.failed_before:
        warnings.append(
            f"tier {name!r}: {outcome.failed_before} requests failed in an earlier run and were "
            "skipped; --retry-failed calls them again."
        )
    return warnings
