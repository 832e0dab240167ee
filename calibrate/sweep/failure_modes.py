"""Failure modes of a policy: over-escalation, and silent under-escalation per segment.

Over-escalation is visible on cost dashboards; under-escalation is not: a segment whose requests are
kept on a cheap tier that answers them badly while the premium tier would have answered well. For
each segment (app, region, intent) this module compares the *kept* requests' quality with what the
premium tier gave the same requests, lists the worst segments with example request ids, and names
the hard segments (where the cheapest tier alone is far below premium) with how much of them the
policy escalates — next to an alternative policy (the uncertified empirical choice) when given.

`failure_modes` and `escalation_timeline` walk every request; `failure_modes_of_sums` and
`escalation_timeline_of_sums` give the same values from the SQL aggregates over all requests
(`records.sections.SectionSums`) and the labeled rows alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from calibrate.policies.assignment import Assignment
from calibrate.records.labels import ACCEPTABLE
from calibrate.records.outcomes import Outcomes
from calibrate.records.sections import SectionSums

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
    sample = _Labeled.of(outcomes, policy, labeled, weights)
    rows = []
    for column, values in segment_columns(outcomes).items():
        names, codes = _factorize(values)
        requests = _per_code(codes, len(names))
        escalated = _per_code(codes, len(names), policy.escalated)
        alt = None if alternative is None else _per_code(codes, len(names), alternative.escalated)
        rows += [
            SegmentRow(
                column=column,
                value=value,
                requests=int(requests[c]),
                escalation_rate=float(escalated[c] / requests[c]),
                alt_escalation_rate=None if alt is None else float(alt[c] / requests[c]),
                **sample.segment(codes[labeled] == c, premium),
            )
            for c, value in enumerate(names)
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


def failure_modes_of_sums(
    labeled: Outcomes,
    policy: Assignment,
    sums: SectionSums,
    savings_vs_premium: float,
    weights: np.ndarray | None = None,
) -> FailureModes:
    """`failure_modes` from the labeled rows (`labeled`, the policy walked on them, `weights`
    per labeled row) and the counts over all requests in `sums` (the alternative's escalations
    come with them, when it was given)."""
    premium = len(labeled.tiers) - 1
    everyone = np.ones(labeled.n, dtype=bool)
    sample = _Labeled.of(labeled, policy, everyone, weights)
    codes = {c: _factorize(v) for c, v in segment_columns(labeled).items()}
    rows = []
    for seg in sums.segments:
        names, of_row = codes[seg.column]
        member = of_row == (names.index(seg.value) if seg.value in names else -2)
        rows.append(
            SegmentRow(
                column=seg.column,
                value=seg.value,
                requests=seg.requests,
                escalation_rate=float(seg.escalated / seg.requests),
                alt_escalation_rate=None
                if seg.alt_escalated is None
                else float(seg.alt_escalated / seg.requests),
                **sample.segment(member, premium),
            )
        )
    kept = policy.served_tier != premium
    return FailureModes(
        escalation_rate=float(sums.escalated / sums.requests) if sums.requests else 0.0,
        costs_more_than_premium=savings_vs_premium < 0,
        kept_labeled=int(kept.sum()),
        kept_quality=_mean(policy.label[kept], _at(weights, kept)),
        kept_premium_quality=_mean(labeled.label[kept, premium], _at(weights, kept)),
        cheapest_gap=_mean(labeled.label[:, premium] - labeled.label[:, 0], weights) or 0.0,
        segments=tuple(rows),
    )


def _factorize(values: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The distinct values as text, sorted (None left out), and each row's index among them (-1
    for None): one pass over the rows, however many values (segments hold few)."""
    seen: dict[object, int] = {}
    first = np.fromiter(
        (seen.setdefault(v, len(seen)) for v in values.tolist()), np.int64, values.size
    )
    names = sorted({str(v) for v in seen if v is not None})
    position = {name: i for i, name in enumerate(names)}
    recode = np.array([-1 if v is None else position[str(v)] for v in seen], dtype=np.int64)
    return names, recode[first]


def _per_code(codes: np.ndarray, n: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Per code 0..n-1: how many rows (or how many flagged by `weights`): exact integers."""
    w = None if weights is None else weights.astype(np.float64)
    return np.bincount(codes + 1, weights=w, minlength=n + 1)[1:]


@dataclass(frozen=True)
class _Labeled:
    """The labeled requests alone (in request order), with the policy's served tier and label:
    what the quality columns of a segment read."""

    label: np.ndarray
    served_tier: np.ndarray
    served_label: np.ndarray
    request_ids: np.ndarray
    weights: np.ndarray | None

    @classmethod
    def of(
        cls, outcomes: Outcomes, policy: Assignment, labeled: np.ndarray, w: np.ndarray | None
    ) -> _Labeled:
        return cls(
            outcomes.label[labeled],
            policy.served_tier[labeled],
            policy.label[labeled],
            outcomes.request_ids[labeled],
            None if w is None else w[labeled],
        )

    def segment(self, member: np.ndarray, premium: int) -> dict:
        """The quality columns of a segment's `SegmentRow` (`member`: over the labeled rows)."""
        kept = member & (self.served_tier != premium)
        regret = kept & (self.served_label < ACCEPTABLE) & (self.label[:, premium] >= ACCEPTABLE)
        return {
            "labeled": int(member.sum()),
            "cheapest_quality": _mean(self.label[member, 0], _at(self.weights, member)),
            "premium_quality": _mean(self.label[member, premium], _at(self.weights, member)),
            "kept_labeled": int(kept.sum()),
            "kept_quality": _mean(self.served_label[kept], _at(self.weights, kept)),
            "kept_premium_quality": _mean(self.label[kept, premium], _at(self.weights, kept)),
            "examples": tuple(str(r) for r in self.request_ids[regret][:EXAMPLES]),
        }


def _at(weights: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if weights is None else weights[rows]


def escalation_timeline(outcomes: Outcomes, policy: Assignment) -> pl.DataFrame:
    """Requests and escalations of the policy per week (Monday) and region."""
    names, codes = _factorize(outcomes.region)
    frame = pl.DataFrame(
        {
            "ts": outcomes.timestamp_s.astype(np.float64),
            "region_code": np.where(codes < 0, len(names), codes),  # last: a missing region
            "escalated": policy.escalated.astype(np.int64),
        }
    )
    return (
        frame.with_columns(
            week=pl.from_epoch(pl.col("ts").cast(pl.Int64), time_unit="s")
            .dt.truncate("1w")
            .dt.date()
        )
        .group_by("week", "region_code")
        .agg(requests=pl.len(), escalated=pl.col("escalated").sum())
        .with_columns(
            region=pl.col("region_code").replace_strict(
                list(range(len(names) + 1)), [*names, "None"], return_dtype=pl.Utf8
            )
        )
        .select("week", "region", "requests", "escalated")
        .sort("week", "region")
    )


def escalation_timeline_of_sums(sums: SectionSums) -> pl.DataFrame:
    """`escalation_timeline` from the per region × week counts (a missing region reads "None")."""
    weeks = sorted(sums.weeks, key=lambda w: (w.week_day, "None" if w.region is None else w.region))
    return pl.DataFrame(
        {
            "week": pl.Series([w.week_day for w in weeks], dtype=pl.Int32).cast(pl.Date),
            "region": pl.Series(
                ["None" if w.region is None else w.region for w in weeks], dtype=pl.Utf8
            ),
            "requests": pl.Series([w.requests for w in weeks], dtype=pl.UInt32),
            "escalated": pl.Series([w.escalated for w in weeks], dtype=pl.Int64),
        }
    )
