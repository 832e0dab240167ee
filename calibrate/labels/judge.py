"""Stage: `calibrate labels judge` — an LLM judge scores tier answers, through the replay engine.

What is judged: every ok answer of the judged tiers for a seeded uniform sample of requests.
The yardstick is the request's `reference` when it has one; otherwise the premium tier's answer
(a cheaper tier's answer is acceptable when it is as correct and useful); the premium tier's own
answer without a reference is judged on its own merits.

How: each verdict is one chat call to the judge (a tier of tiers.yaml, or any OpenAI-compatible
endpoint) made by `dispatch.Dispatcher` — the same rate limits, retries, circuit breaker, budget
(`--max-cost-usd`), journal and call cache as `replay` — stored in `replay_calls` with
purpose='judge' (a judge job makes no attempts). Identical prompts share one call; a stored call is
never paid again, so a stopped run resumes. Replies are read for a `SCORE: x` line (x in [0, 1]);
an unreadable reply is recorded on its call as an error (not as a score) and is called again
only with `retry_failed`. Verdicts become labels with source=judge, the call's cache key, the
judge's name and the yardstick used. When humans labelled some of the same answers, the summary
gives the judge's agreement and miss rate with exact intervals. Never prints.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from calibrate.calls import endpoint as ep
from calibrate.calls.call_records import TierRun, failed_for_good
from calibrate.calls.context import RunContext
from calibrate.calls.dispatch import Dispatcher, run_jobs
from calibrate.calls.limits import Budget
from calibrate.calls.pricing import tier_prices
from calibrate.calls.tier_run import check_tier, tier_run
from calibrate.config.tiers import Price, Tier, TiersConfig
from calibrate.errors import ConfigError, DataError, EndpointError
from calibrate.formats.canonical import messages_text
from calibrate.records.labels import JudgePlan, JudgeSummary, LabelRow, ResolveCounts
from calibrate.records.replay import CallRecord, Job, Selection
from calibrate.records.runs import UnfinishedRun
from calibrate.stats.estimators import agreement
from calibrate.store import Store

JUDGE_INSTRUCTIONS = (
    "You grade answers of an AI assistant. Judge only the answer to grade. End your reply with "
    "one line `SCORE: 1` if it is acceptable (correct, and as useful to the user as the "
    "yardstick) or `SCORE: 0` if it is not; a number between 0 and 1 is allowed when unsure."
)
_YARDSTICK = {
    "reference": "Reference answer (known to be correct):",
    "premium": "Answer from a stronger model (usually right, not always):",
}
_SCORE = re.compile(r"score\s*[:=]\s*\**\s*(\d+(?:\.\d+)?|\.\d+)", re.IGNORECASE)
MODES = {"reference": "vs reference", "premium": "vs premium answer", "none": "no reference"}


@dataclass(frozen=True, slots=True)
class JudgeItem:
    """One answer to judge and what it is judged against."""

    request_id: str
    tier: str
    messages_json: str
    answer: str
    yardstick: str | None
    mode: str


def judge_tier(
    tiers: TiersConfig,
    judge: str,
    *,
    model: str | None = None,
    api_key_env: str | None = None,
    price: tuple[float, float] | None = None,
) -> Tier:
    """The judge as a tier: a tier of tiers.yaml by name, or an endpoint URL with `model`."""
    if judge in tiers.names:
        found = tiers.tier(judge)
        return found.model_copy(update={"confidence": "none"})
    if not judge.startswith(("http://", "https://")):
        raise ConfigError(
            f"--judge {judge!r} is neither a tier of tiers.yaml ({', '.join(tiers.names)}) "
            "nor an http(s) endpoint",
            hint="Pass a tier name, or a base URL such as https://api.openai.com/v1 with "
            "--judge-model.",
        )
    if not model:
        raise ConfigError(
            f"--judge {judge} is an endpoint, so the judge's model is needed",
            hint="Add --judge-model MODEL (and --judge-key-env VAR for its API key).",
        )
    return Tier(
        name="judge",
        model=model,
        base_url=judge,
        api_key_env=api_key_env,
        price=Price(input_per_mtok=price[0], output_per_mtok=price[1]) if price else None,
        confidence="none",
    )


def check_judge(tiers: TiersConfig, judge: Tier, judged: Sequence[str]) -> None:
    """The judged tiers must be in tiers.yaml, and the judge must be callable."""
    unknown = sorted(set(judged) - set(tiers.names))
    if unknown:
        raise ConfigError(
            f"--tier {', '.join(unknown)}: not in tiers.yaml ({', '.join(tiers.names)})",
            hint="Judge tiers listed in tiers.yaml.",
        )
    check_tier(judge)


def judge_messages(item: JudgeItem) -> list[dict[str, str]]:
    """The judge's prompt for one answer."""
    parts = ["Conversation:", messages_text(item.messages_json), ""]
    if item.mode in _YARDSTICK:
        parts += [_YARDSTICK[item.mode], item.yardstick or "", ""]
    parts += ["Answer to grade:", item.answer]
    return [
        {"role": "system", "content": JUDGE_INSTRUCTIONS},
        {"role": "user", "content": "\n".join(parts)},
    ]


def parse_verdict(text: str | None) -> tuple[float | None, str | None]:
    """(score, None) from the last `SCORE: x` line (or a JSON {"score": x}), else (None, why)."""
    found = _SCORE.findall(text or "")
    value: float | None = float(found[-1]) if found else _json_score(text or "")
    if value is None:
        return None, f"unparsable judge reply: {(text or '')[:60]!r}"
    if not 0 <= value <= 1:
        return None, f"judge score out of range: {value:g}"
    return value, None


def _json_score(text: str) -> float | None:
    try:
        data = json.loads(text.strip())
    except ValueError:
        return None
    value = data.get("score") if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def items_to_judge(
    store: Store, tiers: Sequence[str], judged: Sequence[str], selection: Selection
) -> tuple[list[JudgeItem], int]:
    """(answers to judge, answers skipped for want of a yardstick)."""
    premium = tiers[-1]
    items, skipped = [], 0
    for rid, tier, messages, answer, reference, premium_answer in store.judge_items(
        tiers, judged, selection.sample, selection.seed
    ):
        if reference is not None:
            items.append(JudgeItem(rid, tier, messages, answer, reference, "reference"))
        elif tier == premium:
            items.append(JudgeItem(rid, tier, messages, answer, None, "none"))
        elif premium_answer is not None:
            items.append(JudgeItem(rid, tier, messages, answer, premium_answer, "premium"))
        else:
            skipped += 1
    return items, skipped


@dataclass(frozen=True, slots=True)
class _Planned:
    plan: JudgePlan
    run: TierRun
    groups: dict[str, list[JudgeItem]]
    jobs: tuple[Job, ...]


def _plan(
    store: Store,
    tiers: TiersConfig,
    judge: Tier,
    judged: Sequence[str],
    selection: Selection,
    retry_failed: bool,
    environ: Mapping[str, str] | None,
    clock: Callable[[], datetime],
) -> _Planned:
    check_judge(tiers, judge, judged)
    price = tier_prices(TiersConfig(tiers=(judge,)), clock)[judge.name]
    run = tier_run(store, judge, len(tiers.tiers), price, environ)
    items, no_yardstick = items_to_judge(store, tiers.names, judged, selection)
    if not items:
        raise DataError(
            "no stored answer to judge",
            hint="Ingest logs with answers (attempt `output`), or run `calibrate replay` first.",
        )
    groups, jobs, cached, failed_before = _jobs(store, run, items, retry_failed)
    plan = JudgePlan(
        judge=judge.name,
        model=judge.model,
        items=len(items),
        calls=len(jobs),
        cached=cached,
        failed_before=failed_before,
        no_yardstick=no_yardstick,
        cost_usd=sum(run.reserve_usd(j) for j in jobs),
        price_source=price.source,
    )
    return _Planned(plan, run, groups, tuple(jobs))


def _jobs(
    store: Store, run: TierRun, items: Sequence[JudgeItem], retry_failed: bool
) -> tuple[dict[str, list[JudgeItem]], list[Job], int, int]:
    """(items by cache key, jobs to run, items cached, items whose stored call failed)."""
    judge = run.tier
    groups: dict[str, list[JudgeItem]] = defaultdict(list)
    bodies: dict[str, bytes] = {}
    for item in items:
        body = ep.encode(ep.chat_body(judge.model, judge_messages(item), dict(judge.params), False))
        key = ep.cache_key(run.endpoint.url, body)
        groups[key].append(item)
        bodies[key] = body
    stored = store.stored_calls(list(groups))
    jobs, cached, failed_before = [], 0, 0
    for key, body in bodies.items():
        call = stored.get(key)
        if call is not None and call.ok:
            cached += len(groups[key])
        elif failed_for_good(call) and not retry_failed:
            failed_before += len(groups[key])
        else:
            jobs.append(
                Job(
                    tier=judge.name,
                    cache_key=key,
                    body=body,
                    messages_json="[]",
                    request_ids=(),
                    input_tokens=len(body) // 4,
                    answer=call,
                    purpose="judge",
                )
            )
    return dict(groups), jobs, cached, failed_before


def plan_judge(
    store: Store,
    tiers: TiersConfig,
    judge: Tier,
    selection: Selection,
    *,
    judged: Sequence[str],
    retry_failed: bool,
    clock: Callable[[], datetime],
) -> JudgePlan:
    """What a judge run would do and cost; calls nothing and reads no API key."""
    return _plan(store, tiers, judge, judged, selection, retry_failed, None, clock).plan


def judge_answers(
    store: Store,
    tiers: TiersConfig,
    judge: Tier,
    selection: Selection,
    context: RunContext,
    *,
    judged: Sequence[str],
    max_cost_usd: float | None,
    retry_failed: bool,
) -> JudgeSummary:
    """Judge the selected answers; verdicts become labels with source=judge."""
    clock = context.clock
    planned = _plan(store, tiers, judge, judged, selection, retry_failed, context.environ, clock)
    replay_run, killed = store.begin_replay_run(clock(), selection, max_cost_usd, retry_failed)
    dispatcher = Dispatcher(
        store,
        replay_run,
        [planned.run],
        context,
        seed=selection.seed,
        budget=Budget(max_cost_usd),
    )
    asyncio.run(run_jobs(dispatcher, planned.jobs))
    state = dispatcher.states[judge.name]
    store.finish_replay_run(
        replay_run, clock(), planned.plan.items, state.cost_usd, dispatcher.stopped
    )
    summary = _record_verdicts(store, tiers.names, planned, replay_run, clock)
    return _summarize(store, tiers.names, planned, summary, dispatcher, killed)


@dataclass(frozen=True, slots=True)
class _Verdicts:
    run_id: int
    labels: tuple[LabelRow, ...]
    unparsable: int
    failed: int
    not_run: int
    resolved: ResolveCounts


def _record_verdicts(
    store: Store,
    tiers: Sequence[str],
    planned: _Planned,
    replay_run: int,
    clock: Callable[[], datetime],
) -> _Verdicts:
    calls = store.stored_calls(list(planned.groups))
    rows: list[LabelRow] = []
    errors: list[tuple[str, str]] = []
    unparsable = failed = not_run = 0
    for key, items in planned.groups.items():
        call = calls.get(key)
        if call is None:
            not_run += len(items)
            continue
        if not call.ok:
            failed += len(items)
            continue
        score, error = parse_verdict(call.output)
        if score is None:
            errors.append((key, error or "unparsable judge reply"))
            unparsable += len(items)
            continue
        rows += [
            _label(len(rows) + i + 1, item, score, call, planned) for i, item in enumerate(items)
        ]
    store.mark_calls_failed(errors)
    now = clock()
    with store.transaction():
        run_id = store.begin_label_run("judge", now, replay_run=replay_run)
        rejects, resolved = store.store_labels(rows, tiers, run_id, now)
        if rejects:  # the rows come from the store itself; a reject here is a bug
            raise AssertionError(f"judge labels rejected: {rejects[:3]}")
        store.finish_label_run(run_id, clock(), len(rows), resolved.stored, 0)
    return _Verdicts(run_id, tuple(rows), unparsable, failed, not_run, resolved)


def _label(
    line: int, item: JudgeItem, score: float, call: CallRecord, planned: _Planned
) -> LabelRow:
    return LabelRow(
        line=line,
        field="score",
        request_id=item.request_id,
        tier=item.tier,
        answer=item.answer,
        score=score,
        source="judge",
        labeler=f"judge:{planned.plan.judge} ({planned.plan.model})",
        labeled_at=call.finished_at,
        detail=MODES[item.mode],
        call_key=call.cache_key,
    )


def _summarize(
    store: Store,
    tiers: Sequence[str],
    planned: _Planned,
    verdicts: _Verdicts,
    dispatcher: Dispatcher,
    killed: Sequence[UnfinishedRun],
) -> JudgeSummary:
    state = dispatcher.states[planned.plan.judge]
    _, _, total_cost = store.judge_calls()
    warnings = [run.describe() for run in killed]
    if verdicts.unparsable:
        warnings.append(
            f"{verdicts.unparsable} judge replies had no readable SCORE line; they are recorded "
            "as errors in replay_calls (not as scores). --retry-failed asks again."
        )
    if dispatcher.stopped == "budget":
        warnings.append(
            f"stopped at the --max-cost-usd cap: {verdicts.not_run} answers not judged. "
            "Run again with a higher cap to continue; stored verdicts are not paid twice."
        )
    elif dispatcher.stopped == "interrupted":
        warnings.append("interrupted: run the same command again to resume.")
    if state.unreached:
        warnings.append(
            f"{state.unreached} judge calls not made: {state.unreached_reason}. Nothing was "
            "stored for them: run the same command again once the judge is reachable."
        )
    if verdicts.failed:
        warnings.append(
            f"{verdicts.failed} answers have a judge call that failed for good (see "
            "replay_calls.error); --retry-failed asks again."
        )
    if planned.plan.no_yardstick:
        warnings.append(
            f"{planned.plan.no_yardstick} answers skipped: no reference and no premium answer"
        )
    human, judged = store.judge_overlap(tiers)
    return JudgeSummary(
        run_id=verdicts.run_id,
        replay_run=dispatcher.run_id,
        plan=planned.plan,
        labeled=len(verdicts.labels),
        unparsable=verdicts.unparsable,
        failed=verdicts.failed,
        not_run=verdicts.not_run,
        http_calls=state.http_calls,
        cost_usd=state.cost_usd,
        total_judge_cost_usd=total_cost,
        stopped=dispatcher.stopped,
        resolved=verdicts.resolved,
        agreement=agreement(human, judged),
        warnings=tuple(warnings),
        paused=state.breaker.reason,
    )


def raise_if_paused(summary: JudgeSummary) -> None:
    """A judge endpoint paused by its circuit breaker is an error the user must fix."""
    if summary.paused:
        retry = (
            f" The {summary.failed} answers whose judge call failed for good are asked again "
            "only with --retry-failed."
            if summary.failed
            else ""
        )
        raise EndpointError(
            f"judge {summary.plan.judge!r} paused: {summary.paused}",
            hint="Check the judge's base_url, model and API key variable, then run the same "
            f"command again: stored verdicts are kept and not paid twice.{retry}",
        )
