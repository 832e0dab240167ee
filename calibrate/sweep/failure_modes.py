"""Failure modes of a policy: over-escalation, and silent under-escalation per segment.

Over-escalation is visible on cost dashboards; under-escalation is not: a segment whose requests are
kept on a cheap tier that answers them badly while the premium tier would have answered well. For
each segment (app, region, intent) this module compares the *kept* requests' quality with what the
premium tier gave the same requests, lists the worst segments with example request ids, and names
the hard segments (where the cheapest tier alone is far below premium) with how much of them the
policy escalates — next to an alternative policy (the uncertified empirical choice) when given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from calibrate.policies.assignment import Assignment
from calibrate.records.labels import ACCEPTABLE
from calibrate.records.outcomes import Outcomes

HEALTHY_ESCALATION = (0.10, 0.40)
"""The one healthy escalation band, for every strategy (the report states it with its source,
`report/framing.py`): a rule of thumb of this tool, not a published norm."""
HARD_GAP = 0.10  # a segment whose cheapest-tier gap to premium exceeds the overall gap by this
UNDER_GAP = 0.05  # kept requests this far below premium: silent under-escalation
MIN_LABELED = 20
EXAMPLES = 3


@dataclass(frozen=True)
class SegmentRow:
    """One segment under the policy (and under the alternative, when there is one)."""

    column: str
    value: str
    requests: int
    escalation_rate: float
    alt_escalation_rate: float | None
    labeled: int
    cheapest_quality: float | None
    premium_quality: float | None
    kept_labeled: int
    kept_quality: float | None
    kept_premium_quality: float | None
    examples: tuple[str, ...]

    @property
    def kept_gap(self) -> float | None:
        if self.kept_quality is None or self.kept_premium_quality is None:
            return None
        return self.kept_premium_quality - self.kept_quality

    @property
    def cheapest_gap(self) -> float | None:
        if self.cheapest_quality is None or self.premium_quality is None:
            return None
        return self.premium_quality - self.cheapest_quality


@dataclass(frozen=True)
class FailureModes:
    escalation_rate: float
    costs_more_than_premium: bool
    kept_labeled: int
    kept_quality: float | None
    kept_premium_quality: float | None
    cheapest_gap: float
    segments: tuple[SegmentRow, ...]

    @property
    def over_escalating(self) -> bool:
        return self.escalation_rate > HEALTHY_ESCALATION[1]

    @property
    def hard(self) -> tuple[SegmentRow, ...]:
        bar = self.cheapest_gap + HARD_GAP
        rows = [
            s for s in self.segments if (s.cheapest_gap or 0) >= bar and s.labeled >= MIN_LABELED
        ]
        return tuple(sorted(rows, key=lambda s: (-(s.cheapest_gap or 0), s.column, s.value)))

    @property
    def under_escalated(self) -> tuple[SegmentRow, ...]:
        rows = [
            s
            for s in self.segments
            if (s.kept_gap or 0) >= UNDER_GAP and s.kept_labeled >= MIN_LABELED
        ]
        return tuple(sorted(rows, key=lambda s: (-(s.kept_gap or 0), s.column, s.value)))


def segment_columns(outcomes: Outcomes) -> dict[str, np.ndarray]:
    """The segment columns a report breaks down by."""
    return {"app": outcomes.app, "region": outcomes.region, "intent": outcomes.intent}


def _mean(values: np.ndarray, weights: np.ndarray | None = None) -> float | None:
    """The mean, or the weighted (Hájek) mean when the labels carry 1/π weights."""
    if not values.size:
        return None
    return float(values.mean() if weights is None else np.average(values, weights=weights))


def failure_modes(
    outcomes: Outcomes,
    policy: Assignment,
    savings_vs_premium: float,
    alternative: Assignment | None = None,
    weights: np.ndarray | None = None,
) -> FailureModes:
    """Over- and under-escalation per segment; quality means weighted by `weights` (per request,
    1/inclusion probability of its labels) when the labels come from a stratified sample."""
    premium = len(outcomes.tiers) - 1
    kept = policy.served_tier != premium
    labeled = outcomes.labeled
    rows = [
        _segment(outcomes, policy, alternative, column, value, values == value, weights)
        for column, values in segment_columns(outcomes).items()
        for value in sorted({str(v) for v in values if v is not None})
    ]
    both = kept & labeled
    return FailureModes(
        escalation_rate=float(policy.escalated.mean()) if outcomes.n else 0.0,
        costs_more_than_premium=savings_vs_premium < 0,
        kept_labeled=int(both.sum()),
        kept_quality=_mean(policy.label[both], _at(weights, both)),
        kept_premium_quality=_mean(outcomes.label[both, premium], _at(weights, both)),
        cheapest_gap=_mean(
            outcomes.label[labeled, premium] - outcomes.label[labeled, 0], _at(weights, labeled)
        )
        or 0.0,
        segments=tuple(rows),
    )


def _segment(
    outcomes: Outcomes,
    policy: Assignment,
    alternative: Assignment | None,
    column: str,
    value: str,
    member: np.ndarray,
    weights: np.ndarray | None = None,
) -> SegmentRow:
    premium = len(outcomes.tiers) - 1
    labeled = member & outcomes.labeled
    kept = labeled & (policy.served_tier != premium)
    regret = kept & (policy.label < ACCEPTABLE) & (outcomes.label[:, premium] >= ACCEPTABLE)
    return SegmentRow(
        column=column,
        value=value,
        requests=int(member.sum()),
        escalation_rate=float(policy.escalated[member].mean()),
        alt_escalation_rate=None
        if alternative is None
        else float(alternative.escalated[member].mean()),
        labeled=int(labeled.sum()),
        cheapest_quality=_mean(outcomes.label[labeled, 0], _at(weights, labeled)),
        premium_quality=_mean(outcomes.label[labeled, premium], _at(weights, labeled)),
        kept_labeled=int(kept.sum()),
        kept_quality=_mean(policy.label[kept], _at(weights, kept)),
        kept_premium_quality=_mean(outcomes.label[kept, premium], _at(weights, kept)),
        examples=tuple(str(r) for r in outcomes.request_ids[regret][:EXAMPLES]),
    )


def _at(weights: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if weights is None else weights[rows]


def escalation_timeline(outcomes: Outcomes, policy: Assignment) -> pl.DataFrame:
    """Requests and escalations of the policy per week (Monday) and region."""
    frame = pl.DataFrame(
        {
            "ts": outcomes.timestamp_s.astype(np.float64),
            "region": [str(r) for r in outcomes.region],
            "escalated": policy.escalated.astype(np.int64),
        }
    )
    return (
        frame.with_columns(
            week=pl.from_epoch(pl.col("ts").cast(pl.Int64), time_unit="s")
            .dt.truncate("1w")
            .dt.date()
        )
        .group_by("week", "region")
        .agg(requests=pl.len(), escalated=pl.col("escalated").sum())
        .sort("week", "region")
    )
