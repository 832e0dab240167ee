"""The monitor's time series over the routed requests: per day and per 7-day block summaries,
the escalation CUSUM of one segment, each tier's confidence PSI, the weekly labeled-quality test,
and the traffic-mix line of an escalation alarm.

Days are UTC calendar days; 7-day blocks count from the first monitored day (negative before it),
so no block straddles the end of the reference window.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import numpy as np

from calibrate.monitor.alarms import MIN_LABELS, Change, QualityPoint, Summary
from calibrate.monitor.routing import Routed
from calibrate.records.labels import ACCEPTABLE
from calibrate.records.outcomes import RequestLog
from calibrate.stats import drift
from calibrate.stats.intervals import Interval, wilson

BLOCK_DAYS = 7
MIN_PSI_REFERENCE = 100  # reference confidences needed for a tier's PSI
MIN_PSI_CHUNK = 30  # requests needed in a chunk before its PSI is computed
MIX_INTENTS = 3  # intents named in an escalation alarm's traffic-mix line


@dataclass(frozen=True, slots=True)
class Chunk:
    """One day or 7-day block of one segment (intervals are computed when read)."""

    segment: str
    period: str  # day | week
    start: date
    end: date
    reference: bool
    summary: Summary
    level: float

    @property
    def escalation_interval(self) -> Interval:
        return wilson(self.summary.escalated, self.summary.requests, self.level)

    @property
    def measured_quality(self) -> float | None:
        s = self.summary
        return s.served_acceptable / s.served_labeled if s.served_labeled else None

    @property
    def measured_interval(self) -> Interval:
        return wilson(self.summary.served_acceptable, self.summary.served_labeled, self.level)


@dataclass(frozen=True, slots=True)
class PsiPoint:
    """A tier's confidence PSI in one chunk against the reference window."""

    tier: str
    period: str
    start: date
    end: date
    requests: int
    reference_requests: int
    psi: float
    limit: float
    monitored: bool

    @property
    def above(self) -> bool:
        return self.monitored and self.psi > self.limit


@dataclass(frozen=True, slots=True)
class Detector:
    """The escalation-rate CUSUM of one segment over the monitored days."""

    segment: str
    alpha: float
    p0: float
    tau2: float
    h: float
    days: tuple[date, ...]
    rates: tuple[float, ...]
    upper: tuple[float, ...]
    lower: tuple[float, ...]
    first_up: date | None
    first_down: date | None


@dataclass(frozen=True, slots=True)
class Frame:
    """The calendar and the routed requests every section works on."""

    day_index: np.ndarray
    days: list[date]
    in_ref: np.ndarray
    first_monitored: int  # index of the first monitored day
    routed: Routed
    level: float

    @property
    def block(self) -> np.ndarray:
        """7-day block of each request, counted from the first monitored day (negative before)."""
        return np.floor_divide(self.day_index - self.first_monitored, BLOCK_DAYS)

    def block_span(self, b: int) -> tuple[int, int]:
        lo = self.first_monitored + BLOCK_DAYS * b
        return max(lo, 0), min(lo + BLOCK_DAYS - 1, len(self.days) - 1)

    def reference_days(self) -> np.ndarray:
        return np.unique(self.day_index[self.in_ref])


def summarise(frame: Frame, rows: np.ndarray) -> Summary:
    """The deployed config over the given request rows."""
    r = frame.routed
    escalated, kept, label = r.escalated[rows], r.kept[rows], r.served_label[rows]
    labeled, acceptable = ~np.isnan(label), label >= ACCEPTABLE
    cost = _mean(r.cost_usd[rows])
    active_days = np.unique(frame.day_index[rows]).size
    return Summary(
        requests=int(rows.size),
        escalated=int(escalated.sum()),
        kept=int(kept.sum()),
        estimated_quality=_mean(r.p_correct[rows]),
        estimated_kept_quality=_mean(r.p_correct[rows][kept]),
        estimated_kept_se=_standard_error(r.p_correct[rows][kept]),
        kept_labeled=int((labeled & kept).sum()),
        kept_acceptable=int((acceptable & kept).sum()),
        served_labeled=int(labeled.sum()),
        served_acceptable=int(acceptable.sum()),
        cost_per_1k_usd=None if cost is None else cost * 1000,
        escalation_cost_usd=_mean(r.extra_cost_usd[rows][escalated]),
        requests_per_day=rows.size / max(active_days, 1),
    )


def _mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _standard_error(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.std(ddof=1) / np.sqrt(finite.size)) if finite.size > 1 else 0.0


def chunks(frame: Frame, segment: str, mask: np.ndarray) -> Iterator[Chunk]:
    """Per day and per 7-day block: the summary of one segment's evaluable requests."""
    rows = np.flatnonzero(mask & frame.routed.evaluable)
    ref_days = set(frame.reference_days().tolist())
    for period, key in (("day", frame.day_index), ("week", frame.block)):
        keys, starts = np.unique(key[rows], return_index=True)
        for value, part in zip(keys, np.split(rows, starts[1:]), strict=True):
            lo, hi = (int(value), int(value)) if period == "day" else frame.block_span(int(value))
            yield Chunk(
                segment=segment,
                period=period,
                start=frame.days[lo],
                end=frame.days[hi],
                reference=all(d in ref_days for d in range(lo, hi + 1)),
                summary=summarise(frame, part),
                level=frame.level,
            )


def detect(
    frame: Frame, segment: str, mask: np.ndarray, alpha: float, rng: np.random.Generator
) -> tuple[Detector | None, list[tuple[str, Change]]]:
    """Two one-sided CUSUMs on this segment's daily escalation rate after the reference (none
    when the segment has no traffic in the reference window)."""
    rows = mask & frame.routed.evaluable
    n_days = len(frame.days)
    trials = np.bincount(frame.day_index[rows], minlength=n_days)
    hits = np.bincount(frame.day_index[rows & frame.routed.escalated], minlength=n_days)
    ref = frame.reference_days()
    watched = np.arange(frame.first_monitored, n_days)
    ic = drift.in_control(hits[ref], trials[ref])
    if ic.trials == 0:
        return None, []
    h = drift.cusum_threshold(trials[ref], trials[watched], ic, alpha, rng)
    cusum = drift.run_cusum(drift.standardise(hits[watched], trials[watched], ic), h)
    fired = {"up": cusum.first_up, "down": cusum.first_down}
    found = [
        (side, _change(frame, segment, cusum, side, watched, alpha))
        for side in ("up", "down")
        if fired[side] is not None
    ]
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = hits[watched] / trials[watched]
    detector = Detector(
        segment=segment,
        alpha=alpha,
        p0=ic.p0,
        tau2=ic.tau2,
        h=h,
        days=tuple(frame.days[d] for d in watched),
        rates=tuple(float(r) for r in rates),
        upper=tuple(float(s) for s in cusum.upper),
        lower=tuple(float(s) for s in cusum.lower),
        first_up=next((c.fired for s, c in found if s == "up"), None),
        first_down=next((c.fired for s, c in found if s == "down"), None),
    )
    return detector, found


def _change(
    frame: Frame,
    segment: str,
    cusum: drift.Cusum,
    side: str,
    watched: np.ndarray,
    alpha: float,
) -> Change:
    """The alarm of one side of a CUSUM that fired: when, how far over h, since when."""
    first = int(cusum.first_up if side == "up" else cusum.first_down)  # type: ignore[arg-type]
    path = cusum.upper if side == "up" else cusum.lower
    onset = cusum.onset(side) or 0
    return Change(
        segment=segment,
        fired=frame.days[watched[first]],
        onset=frame.days[watched[onset]],
        statistic=float(path[first]),
        h=cusum.h,
        alpha=alpha,
        monitored_days=int(watched.size),
    )


def psi_points(log: RequestLog, frame: Frame, alpha: float) -> list[PsiPoint]:
    """Per tier, day and 7-day block: PSI of the confidences against the reference window."""
    tiers = [
        j
        for j in range(len(log.tiers))
        if np.isfinite(log.confidence[frame.in_ref, j]).sum() >= MIN_PSI_REFERENCE
    ]
    n_days = len(frame.days) - frame.first_monitored
    chunks = n_days + -(-n_days // BLOCK_DAYS)
    alpha_chunk = alpha / max(len(tiers) * chunks, 1)
    points = []
    for j in tiers:
        conf = log.confidence[:, j]
        has = np.isfinite(conf)
        reference = conf[has & frame.in_ref]
        edges = drift.psi_edges(reference)
        expected = drift.shares(reference, edges)
        rows = np.flatnonzero(has)
        for period, key in (("day", frame.day_index), ("week", frame.block)):
            keys, starts = np.unique(key[rows], return_index=True)
            for value, part in zip(keys, np.split(rows, starts[1:]), strict=True):
                if part.size < MIN_PSI_CHUNK:
                    continue
                lo, hi = (
                    (int(value), int(value)) if period == "day" else frame.block_span(int(value))
                )
                points.append(
                    PsiPoint(
                        tier=log.tiers[j],
                        period=period,
                        start=frame.days[lo],
                        end=frame.days[hi],
                        requests=int(part.size),
                        reference_requests=int(reference.size),
                        psi=drift.psi(expected, conf[part], edges),
                        limit=drift.psi_limit(
                            reference.size, part.size, edges.size + 1, alpha_chunk
                        ),
                        monitored=lo >= frame.first_monitored,
                    )
                )
    return points


def quality_points(frame: Frame, alpha: float) -> list[QualityPoint]:
    """Per monitored 7-day block: did the measured quality of the kept requests fall below the
    reference's? Only blocks (and a reference) with at least MIN_LABELS labeled kept requests."""
    r = frame.routed
    labeled = r.evaluable & r.kept & ~np.isnan(r.served_label)
    good = r.served_label >= ACCEPTABLE
    ref = labeled & frame.in_ref
    if ref.sum() < MIN_LABELS:
        return []
    a, n = int((good & ref).sum()), int(ref.sum())
    blocks = frame.block
    weeks = int(blocks.max()) + 1
    points = []
    for b in range(weeks):
        mine = labeled & (blocks == b)
        x, k = int((good & mine).sum()), int(mine.sum())
        if k < MIN_LABELS:
            continue
        p = drift.fall_p_value((x, k), (a, n))
        lo, hi = frame.block_span(b)
        points.append(QualityPoint(frame.days[lo], frame.days[hi], k, x, p, alpha / weeks))
    return points


def mix_line(
    intent: np.ndarray, before: np.ndarray, since: np.ndarray, escalated: np.ndarray
) -> tuple[str, ...]:
    """The intents whose share of traffic moved most between the reference and the change."""
    names = sorted({str(i) for i in intent[before | since]} - {""})
    if not names or not before.any() or not since.any():
        return ()
    moves = []
    for name in names:
        mine = intent == name
        a, b = float(mine[before].mean()), float(mine[since].mean())
        rate = float(escalated[mine & since].mean()) if (mine & since).any() else 0.0
        moves.append((abs(b - a), name, a, b, rate))
    top = sorted(moves, key=lambda m: (-m[0], m[1]))[:MIX_INTENTS]
    parts = [f"{n} {a:.1%} → {b:.1%} (escalated {r:.0%})" for _, n, a, b, r in top]
    return ("intents whose share moved most: " + "; ".join(parts),)
