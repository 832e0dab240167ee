"""summary.json: the canonical machine-readable result of a sweep, and its schema.

`SweepSummary` (pydantic, unknown keys rejected) is the file's shape; docs/summary.schema.json is
generated from it (`schema_text`) and a test keeps the committed copy equal. The numbers are those
of routing.yaml and report.md, rounded the same way (`routing.round_metric`), with NaN and
infinities as null so every JSON reader accepts it. Nothing here computes a metric.
"""

from __future__ import annotations

import json
import math
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict

from calibrate.config.routing import GENERATED_BY, round_metric
from calibrate.policies.frontier import frontier_rows
from calibrate.records.policy import FrontierRow, Strategy
from calibrate.stats.reliability import TierCalibration
from calibrate.sweep.certify import Stage
from calibrate.sweep.failure_modes import SegmentRow
from calibrate.sweep.selection import Method
from calibrate.sweep.stage import SweepResult


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Window(_Strict):
    """First and last request timestamp (ISO 8601, UTC)."""

    start: str | None
    end: str | None


class ObjectiveSummary(_Strict):
    max_quality_drop: float
    confidence_level: float


class LabelsNeeded(_Strict):
    """About how many more uniform labels would likely certify `policy` (a certifiable policy
    cheaper than the recommendation, after a fallback or a shortfall), and what it saves."""

    policy: str
    more_labels: int
    savings_vs_premium: float


class StageSummary(_Strict):
    """Learn-then-Test evidence of one decision stage of the recommendation: the regret events
    and their bound (both tests), the stage's ε (`max_drop`) and p-value, and with the drop test
    the measured drop and its upper confidence bound."""

    tier: str
    labeled: int
    regret_count: int
    regret_ucb: float
    delta: float
    test: Literal["drop", "regret"]
    max_drop: float
    p_value: float | None
    drop: float | None
    drop_ucb: float | None


class Selection(_Strict):
    """How the recommendation was chosen. `test`: what certification tests (or, with
    --no-certify, what `exceed_risk` was computed with); `shortfall`: the certified pick saves less
    than half of the best measured policy; `exceed_risk`: for an uncertified pick, the risk that
    its drop exceeds ε (null when nothing can bound it)."""

    method: Method
    certified: bool
    reason: str
    fallback: bool
    max_regret: float
    test: Literal["drop", "regret"]
    certification_method: str
    delta: float
    certification_labels: int
    exceed_risk: float | None
    shortfall: bool
    labels_needed: LabelsNeeded | None
    stages: list[StageSummary]


class PolicySummary(_Strict):
    """One policy and its metrics (null: not measurable, e.g. quality without labels). A threshold
    of `Infinity` (escalate every request) is written as JSON's non-standard Infinity."""

    policy: str
    strategy: Strategy
    tiers: list[str]
    thresholds: list[float]
    cutoff_tokens: int | None
    quality: float | None
    quality_drop: float | None
    escalation_rate: float | None
    cost_per_1k_requests_usd: float | None
    savings_vs_premium: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None


class BreakEvenSummary(_Strict):
    """Escalating cheap → expensive saves money only below `escalation_rate`."""

    cheap: str
    expensive: str
    escalation_rate: float | None
    observed_rate: float | None


class ConfidenceSummary(_Strict):
    """One tier's confidence signal: `method` and `scale` as in tiers.yaml (`scale` null: the tier
    has no confidence); `reliability`: [mean confidence, share acceptable, count]."""

    tier: str
    method: str
    scale: str | None
    labeled: int
    auroc: float | None
    ece: float | None
    brier: float | None
    mapping: str | None
    reliability: list[tuple[float, float, int]]


class HardSegment(_Strict):
    segment: str
    labeled: int
    cheapest_quality: float | None
    premium_quality: float | None
    escalation_rate: float
    empirical_escalation_rate: float | None


class FailureModesSummary(_Strict):
    escalation_rate: float
    hard_segments: list[HardSegment]
    under_escalated_segments: list[str]


class EconomicsSummary(_Strict):
    """`requests_per_month`: the volume the overhead is paid back from (--requests-per-month, else
    the logs' rate); `pays_back`: whether the savings at it cover the overhead."""

    fixed_monthly_usd: float
    break_even_requests_per_month: float | None
    latency_p95_overhead_ms: float
    requests_per_month: float | None
    pays_back: bool | None


class KeywordRuleSummary(_Strict):
    """What one keyword rule of `--rules` catches."""

    name: str
    pattern: str
    tier: str
    hits: int
    labeled: int
    quality_by_tier: dict[str, float | None]
    fine_on_cheapest: bool


class ConsensusSummary(_Strict):
    """Always-premium or one consensus set on one high-stakes intent (`--high-stakes`)."""

    intent: str
    policy: str
    requests: int
    labeled: int
    quality: float | None
    gain_vs_premium: float | None
    cost_per_1k_requests_usd: float


class SweepSummary(_Strict):
    """summary.json, written by `calibrate sweep`."""

    version: Literal[1]
    generated_by: str
    requests: int
    labeled: int
    rejected: int
    incomplete: int
    window: Window
    logs_sha256: str
    tiers: list[str]
    objective: ObjectiveSummary
    selection: Selection
    intervals: dict[str, tuple[float | None, float | None]]
    recommendation: PolicySummary
    baselines: list[PolicySummary]
    pareto: list[PolicySummary]
    break_even: list[BreakEvenSummary]
    confidence: list[ConfidenceSummary]
    failure_modes: FailureModesSummary
    economics: EconomicsSummary
    warnings: list[str]
    policies_evaluated: int
    keyword_rules: list[KeywordRuleSummary]
    consensus_high_stakes: list[ConsensusSummary]


def summary_text(result: SweepResult) -> str:
    """summary.json's text."""
    return json.dumps(summary(result).model_dump(mode="python"), indent=2) + "\n"


def schema_text() -> str:
    """docs/summary.schema.json's text: the JSON Schema of `SweepSummary`."""
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **SweepSummary.model_json_schema(),
    }
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def summary(result: SweepResult) -> SweepSummary:
    """The canonical machine-readable result (summary.json)."""
    decision, report = result.decision, result.report
    w, rec, ev = decision.window, decision.recommendation, report.evidence
    needed, certification = ev.labels_needed, decision.certification
    frontier = report.frontier
    return SweepSummary(
        version=1,
        generated_by=GENERATED_BY,
        requests=w.requests,
        labeled=w.labeled,
        rejected=report.rejected,
        incomplete=w.incomplete,
        window=Window(start=w.start, end=w.end),
        logs_sha256=w.logs_sha256,
        tiers=list(decision.tiers.names),
        objective=ObjectiveSummary(
            max_quality_drop=decision.objective.max_quality_drop,
            confidence_level=decision.objective.confidence_level,
        ),
        selection=Selection(
            method=rec.method,
            certified=rec.certified,
            reason=rec.reason,
            fallback=rec.fallback,
            max_regret=round(ev.max_regret, 6),
            test=ev.test,
            certification_method="" if certification is None else certification.method,
            delta=round(certification.delta, 6) if certification else decision.objective.delta,
            certification_labels=ev.certification_labels,
            exceed_risk=_significant(ev.exceed_risk),
            shortfall=ev.shortfall,
            labels_needed=None
            if needed is None
            else LabelsNeeded(
                policy=needed.policy.id,
                more_labels=needed.more_labels,
                savings_vs_premium=round(needed.savings_vs_premium, 4),
            ),
            stages=[_stage(st) for st in ev.stages],
        ),
        intervals={
            name: (_json_round(i.low, 4), _json_round(i.high, 4))
            for name, i in decision.intervals.items()
        },
        recommendation=_policy(rec.row),
        baselines=[
            _policy(r) for r in frontier_rows(frontier.filter(pl.col("strategy") == "always"))
        ],
        pareto=[_policy(r) for r in frontier_rows(frontier.filter("pareto"))],
        break_even=[
            BreakEvenSummary(
                cheap=b.cheap,
                expensive=b.expensive,
                escalation_rate=_json_float(round(b.escalation_rate, 4)),
                observed_rate=_json_round(b.observed_rate, 4),
            )
            for b in report.break_even
        ],
        confidence=[_calibration(c, decision.confidence_methods) for c in report.calibration],
        failure_modes=FailureModesSummary(
            escalation_rate=round(report.failure_modes.escalation_rate, 4),
            hard_segments=[_segment(s) for s in report.failure_modes.hard],
            under_escalated_segments=[
                f"{s.column}={s.value}" for s in report.failure_modes.under_escalated
            ],
        ),
        economics=EconomicsSummary(
            fixed_monthly_usd=round(report.economics.fixed_monthly_usd, 2),
            break_even_requests_per_month=_json_round(
                report.economics.break_even_requests_per_month, 0
            ),
            latency_p95_overhead_ms=round(report.economics.latency_p95_overhead_ms, 1),
            requests_per_month=_json_round(report.economics.requests_per_month, 0),
            pays_back=report.economics.pays_back,
        ),
        warnings=list(report.warnings),
        policies_evaluated=frontier.height,
        keyword_rules=[
            KeywordRuleSummary(
                name=h.name,
                pattern=h.pattern,
                tier=h.tier,
                hits=h.hits,
                labeled=h.labeled,
                quality_by_tier={t: _json_round(q, 4) for t, q in h.quality_by_tier},
                fine_on_cheapest=h.fine_on_cheapest,
            )
            for h in report.rule_hits
        ],
        consensus_high_stakes=_consensus(report.consensus_slices),
    )


def _stage(st: Stage) -> StageSummary:
    return StageSummary(
        tier=st.tier,
        labeled=st.labeled,
        regret_count=st.regret_count,
        regret_ucb=round(st.regret_ucb, 6),
        delta=round(st.delta, 6),
        test=st.test,
        max_drop=round(st.max_regret, 6),
        p_value=_significant(st.p_value),
        drop=_json_round(st.drop, 6),
        drop_ucb=_json_round(st.drop_ucb, 6),
    )


def _significant(x: float | None) -> float | None:
    """A p-value or risk to 4 significant digits."""
    return None if x is None else float(f"{x:.4g}")


def _policy(row: FrontierRow) -> PolicySummary:
    policy = row.policy
    return PolicySummary(
        policy=policy.id,
        strategy=policy.strategy,
        tiers=list(policy.tiers),
        thresholds=list(policy.thresholds),
        cutoff_tokens=policy.cutoff_tokens,
        **{m: _json_float(round_metric(m, v)) for m, v in row.metrics.as_dict().items()},
    )


def _consensus(slices: pl.DataFrame | None) -> list[ConsensusSummary]:
    if slices is None:
        return []
    return [
        ConsensusSummary(
            intent=r["slice"],
            policy=r["policy"],
            requests=r["requests"],
            labeled=r["labeled"],
            quality=_json_round(r["quality"], 4),
            gain_vs_premium=_json_round(r["gain_vs_premium"], 4),
            cost_per_1k_requests_usd=round(r["cost_per_1k_requests_usd"], 6),
        )
        for r in slices.iter_rows(named=True)
    ]


def _json_float(x: float) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else x


def _json_round(x: float | None, digits: int) -> float | None:
    return None if x is None else _json_float(round(x, digits))


def _segment(s: SegmentRow) -> HardSegment:
    return HardSegment(
        segment=f"{s.column}={s.value}",
        labeled=s.labeled,
        cheapest_quality=_json_round(s.cheapest_quality, 4),
        premium_quality=_json_round(s.premium_quality, 4),
        escalation_rate=round(s.escalation_rate, 4),
        empirical_escalation_rate=_json_round(s.alt_escalation_rate, 4),
    )


def _calibration(
    c: TierCalibration, methods: dict[str, tuple[str, str | None]]
) -> ConfidenceSummary:
    method, scale = methods[c.tier]
    return ConfidenceSummary(
        tier=c.tier,
        method=method,
        scale=scale,
        labeled=c.labeled,
        auroc=_json_round(c.auroc, 4),
        ece=_json_round(c.ece, 4),
        brier=_json_round(c.brier, 4),
        mapping=c.method,
        reliability=[(round(x, 4), round(y, 4), k) for x, y, k in c.curve],
    )
