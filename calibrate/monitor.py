"""Stage: between calibrations, is the deployed routing.yaml still right for the traffic?

`monitor(store, config, options, seed)` applies the deployed config to every stored request (the
same decision rule as production: a cascade keeps a request at the first tier whose confidence is
at least its `escalate_below`), then reports per day and per 7-day block, overall and per segment:
volume, the escalation rate with its Wilson interval, the estimated quality without labels (mean
P(correct) of the served answers, CBPE-style, through each tier's mapping refitted on the labeled
requests of the reference window with `calibration`), the measured quality where labels exist, and
per tier the confidence PSI against the reference window. Two one-sided CUSUMs on the daily
escalation rate raise the alarms (`drift`), worded by `monitor_alarms`; `monitor_health` finds the
traffic that got a cheaper tier because the intended one failed. Rendering is `monitor_report`'s.

The reference window is routing.yaml's `calibrated_on.window` when the logs contain it and go on
after it; otherwise the first `reference_days` days of the logs. The detectors watch the days after
it, with a per-run false-alarm rate split between the escalation CUSUMs (60%), the PSI chunks (20%)
and, where labels keep arriving, a weekly test for a fall in the measured quality of the kept
requests (20%), Bonferroni within each (with `--by`, the overall CUSUM keeps half of its share and
the segments split the other half), so P(any drift alarm on stationary traffic) ≤ `false_alarm_rate`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np

from calibrate import drift
from calibrate.assignment import ACCEPTABLE
from calibrate.calibration import TierCalibration, tier_calibrations
from calibrate.errors import ConfigError, DataError
from calibrate.intervals import Interval, wilson
from calibrate.monitor_alarms import (
    MIN_LABELS,
    Alarm,
    Change,
    QualityPoint,
    Summary,
    confidence_shift,
    escalation_down,
    escalation_up,
    outage,
    quality_fell,
)
from calibrate.monitor_health import Health, degraded_mask, regional_health
from calibrate.records import Outcomes
from calibrate.routing import RoutingConfig
from calibrate.store import Store
from calibrate.store.monitor_sql import RequestLog

SEGMENT_COLUMNS = ("region", "app")
EPOCH = date(1970, 1, 1)
BLOCK_DAYS = 7
MIN_PSI_REFERENCE = 100  # reference confidences needed for a tier's PSI
MIN_PSI_CHUNK = 30  # requests needed in a chunk before its PSI is computed
MIX_INTENTS = 3  # intents named in an escalation alarm's traffic-mix line
CUSUM_SHARE = 0.6  # of the false-alarm rate for the escalation CUSUMs,
PSI_SHARE = 0.2  # for the PSI chunks; the rest for the labeled-quality test


@dataclass(frozen=True, slots=True)
class MonitorOptions:
    """What to monitor and how strict to be."""

    by: str | None = None
    reference_days: int = 30
    false_alarm_rate: float = 0.05
    level: float = 0.95


@dataclass(frozen=True, slots=True)
class ReferenceWindow:
    """The days the detectors take as "in control", and why those."""

    start: date
    end: date  # inclusive
    source: str  # calibrated_on | first_days
    note: str


@dataclass(frozen=True, slots=True)
class Routed:
    """The deployed config applied to each request (index into the config's tiers)."""

    evaluable: np.ndarray
    stage: np.ndarray
    escalated: np.ndarray
    kept: np.ndarray
    p_correct: np.ndarray
    served_label: np.ndarray
    cost_usd: np.ndarray
    extra_cost_usd: np.ndarray


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
class MonitorResult:
    """Everything monitor.md / monitor.html / --json are rendered from."""

    policy: str
    tiers: tuple[str, ...]
    logs_start: date
    logs_end: date
    reference: ReferenceWindow
    monitored_start: date
    requests: int
    unevaluable: int
    calibration: tuple[TierCalibration, ...]
    expected_escalation_rate: float | None
    options: MonitorOptions
    chunks: tuple[Chunk, ...]
    psi: tuple[PsiPoint, ...]
    quality: tuple[QualityPoint, ...]
    detectors: tuple[Detector, ...]
    health: Health
    alarms: tuple[Alarm, ...]

    @property
    def recalibration_due(self) -> bool:
        return any(a.recalibrate for a in self.alarms)

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(a.summary for a in self.alarms if a.recalibrate)


def monitor(
    store: Store, config: RoutingConfig, options: MonitorOptions, *, seed: int = 0
) -> MonitorResult:
    """Read the stored requests and monitor the deployed config on them."""
    return analyse(store.request_log([t.name for t in config.tiers]), config, options, seed=seed)


def analyse(
    log: RequestLog, config: RoutingConfig, options: MonitorOptions, *, seed: int = 0
) -> MonitorResult:
    """The whole monitor on one request log (pure: no store, no files)."""
    _check(log, config, options)
    day_index, days = _calendar(log.timestamp_s)
    reference = reference_window(config, days[0], days[-1], options.reference_days)
    first_ref, last_ref = days.index(reference.start), days.index(reference.end)
    in_ref = (day_index >= first_ref) & (day_index <= last_ref)
    calibration = _calibrations(log, in_ref)
    routed = route(log, config, calibration)
    if not routed.evaluable.any():
        raise DataError(
            f"no request has the attempts the deployed config needs ({', '.join(log.tiers)})",
            hint="Monitor logs of the traffic this routing.yaml routes, or add shadow attempts.",
        )
    segments = list(_segments(log, options.by))
    frame = _Frame(day_index, days, in_ref, last_ref + 1, routed, options.level)
    alpha_cusum = options.false_alarm_rate * CUSUM_SHARE
    alpha_psi = options.false_alarm_rate * PSI_SHARE
    detectors, changes = [], []
    if config.strategy != "single":
        for k, (name, mask) in enumerate(segments):
            rng = np.random.default_rng([seed, k])
            share = 1.0 if len(segments) == 1 else 0.5 if k == 0 else 0.5 / (len(segments) - 1)
            detector, found = _detect(frame, name, mask, alpha_cusum * share, rng)
            detectors.append(detector)
            changes += [(side, change, mask) for side, change in found]
    psi = _psi_points(log, frame, alpha_psi)
    quality = _quality_points(frame, options.false_alarm_rate - alpha_cusum - alpha_psi)
    health = _health(log, frame)
    alarms = _alarms(frame, changes, psi, quality, health, log.intent)
    return MonitorResult(
        policy=describe(config),
        tiers=log.tiers,
        logs_start=days[0],
        logs_end=days[-1],
        reference=reference,
        monitored_start=days[last_ref + 1],
        requests=log.n,
        unevaluable=int((~routed.evaluable).sum()),
        calibration=calibration,
        expected_escalation_rate=config.expected.get("escalation_rate"),
        options=options,
        chunks=tuple(c for name, mask in segments for c in _chunks(frame, name, mask)),
        psi=tuple(psi),
        quality=tuple(quality),
        detectors=tuple(detectors),
        health=health,
        alarms=tuple(alarms),
    )


def _check(log: RequestLog, config: RoutingConfig, options: MonitorOptions) -> None:
    if options.by is not None and options.by not in SEGMENT_COLUMNS:
        raise ConfigError(f"cannot monitor by {options.by!r}", hint="Use --by region or --by app.")
    if not 0.0 < options.false_alarm_rate < 1.0:
        raise ConfigError(
            f"false-alarm rate {options.false_alarm_rate} is not in (0, 1)",
            hint="Pass e.g. --false-alarm-rate 0.05.",
        )
    if log.n == 0:
        raise DataError("the store holds no requests", hint="Pass LOGS or a --db that has them.")
    missing = [t for j, t in enumerate(log.tiers) if not log.answered[:, j].any()]
    if missing and config.strategy == "cascade" and missing[0] != log.tiers[-1]:
        raise DataError(
            f"no request in the logs has an attempt for tier {missing[0]!r} of the routing.yaml",
            hint="Monitor with the routing.yaml that production runs, or check the tier names.",
        )


def _calendar(timestamp_s: np.ndarray) -> tuple[np.ndarray, list[date]]:
    """Day index of each request (UTC days from the first one) and every calendar day spanned."""
    epoch_day = np.floor(timestamp_s / 86400.0).astype(np.int64)
    first = int(epoch_day.min())
    n_days = int(epoch_day.max()) - first + 1
    return epoch_day - first, [EPOCH + timedelta(days=first + d) for d in range(n_days)]


def reference_window(
    config: RoutingConfig, first: date, last: date, reference_days: int
) -> ReferenceWindow:
    """routing.yaml's calibration window when the logs contain it and continue after it, else the
    first `reference_days` days."""
    window = config.calibrated_on.window
    start, end = _day(window.start), _day(window.end)
    if start is not None and end is not None and first <= start <= end < last:
        return ReferenceWindow(start, end, "calibrated_on", "routing.yaml's calibrated_on.window")
    if start is None or end is None:
        why = "routing.yaml has no calibration window"
    else:
        why = (
            f"routing.yaml's calibration window {start}..{end} is not inside these logs "
            f"({first}..{last}) with days after it"
        )
    end_day = first + timedelta(days=reference_days - 1)
    if reference_days < 1 or end_day >= last:
        raise DataError(
            f"{why}, and the logs span {(last - first).days + 1} days: too few for a "
            f"{reference_days}-day reference window and at least one day to monitor",
            hint="Pass a smaller --reference-days, or monitor a longer stretch of logs.",
        )
    return ReferenceWindow(first, end_day, "first_days", f"{why}; the first {reference_days} days")


def _day(text: str | None) -> date | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).date()


def describe(config: RoutingConfig) -> str:
    """The deployed policy in one line."""
    names = [t.name for t in config.tiers]
    if config.strategy == "single":
        return f"always {names[0]}"
    if config.strategy == "rules":
        parts = [
            f"input_tokens ≤ {r.max_input_tokens} → {r.tier}"
            if r.max_input_tokens is not None
            else f"else {r.tier}"
            for r in config.rules
        ]
        return "rules: " + ", ".join(parts)
    cuts = " / ".join(f"{t.escalate_below:g}" for t in config.tiers[:-1])
    return f"cascade {' → '.join(names)}, escalate below {cuts}"


def _calibrations(log: RequestLog, in_ref: np.ndarray) -> tuple[TierCalibration, ...]:
    """Each tier's confidence → P(correct) mapping, refitted on the labeled reference requests."""
    rows = np.flatnonzero(in_ref)
    reference = Outcomes(
        tiers=log.tiers,
        request_ids=log.request_ids[rows],
        timestamp_s=log.timestamp_s[rows],
        region=log.region[rows],
        app=log.app[rows],
        intent=log.intent[rows],
        input_tokens=log.input_tokens[rows],
        confidence=log.confidence[rows],
        cost_usd=log.cost_usd[rows],
        latency_ms=np.zeros(log.confidence[rows].shape),
        label=log.label[rows],
        incomplete=0,
    )
    return tier_calibrations(reference)


def route(
    log: RequestLog, config: RoutingConfig, calibration: tuple[TierCalibration, ...]
) -> Routed:
    """Walk every request through the deployed config; P(correct) of the answer it would get."""
    stage, evaluable = _stages(log, config)
    rows = np.arange(log.n)
    conf = log.confidence[rows, stage]
    p_correct = np.full(log.n, np.nan)
    for j, cal in enumerate(calibration):
        at = stage == j
        if cal.mapping_x and at.any():
            p_correct[at] = np.interp(conf[at], cal.mapping_x, cal.mapping_y)
    if config.strategy == "cascade":
        touched = np.arange(len(log.tiers))[None, :] <= stage[:, None]
        cost = np.where(touched, log.cost_usd, 0.0).sum(axis=1)
    else:
        cost = log.cost_usd[rows, stage]
    escalated = stage > 0
    return Routed(
        evaluable=evaluable,
        stage=stage,
        escalated=escalated,
        kept=stage < len(log.tiers) - 1,
        p_correct=p_correct,
        served_label=log.label[rows, stage],
        cost_usd=cost,
        extra_cost_usd=np.where(escalated, cost - log.cost_usd[:, 0], np.nan),
    )


def _stages(log: RequestLog, config: RoutingConfig) -> tuple[np.ndarray, np.ndarray]:
    """Index of the config tier serving each request, and whether the logs can say (a cascade
    needs the confidence of every tier a request reaches before the last)."""
    n = log.n
    if config.strategy == "single":
        return np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)
    if config.strategy == "rules":
        index = {t: j for j, t in enumerate(log.tiers)}
        stage, undecided = np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)
        for rule in config.rules:
            cutoff = rule.max_input_tokens
            take = undecided & (log.input_tokens <= cutoff if cutoff is not None else True)
            stage[take] = index[rule.tier]
            undecided &= ~take
        return stage, np.ones(n, dtype=bool)
    stage = np.full(n, len(log.tiers) - 1, dtype=np.int64)
    undecided, evaluable = np.ones(n, dtype=bool), np.ones(n, dtype=bool)
    for j, tier in enumerate(config.tiers[:-1]):
        evaluable &= ~(undecided & ~log.answered[:, j])
        keep = undecided & (log.confidence[:, j] >= tier.escalate_below)
        stage[keep] = j
        undecided &= ~keep
    return stage, evaluable


def _segments(log: RequestLog, by: str | None) -> Iterator[tuple[str, np.ndarray]]:
    yield "all", np.ones(log.n, dtype=bool)
    if by is None:
        return
    column = log.region if by == "region" else log.app
    for value in sorted({str(v) for v in column}):
        yield f"{by}={value or '(none)'}", column == value


@dataclass(frozen=True, slots=True)
class _Frame:
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


def summarise(frame: _Frame, rows: np.ndarray) -> Summary:
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


def _chunks(frame: _Frame, segment: str, mask: np.ndarray) -> Iterator[Chunk]:
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


def _detect(
    frame: _Frame, segment: str, mask: np.ndarray, alpha: float, rng: np.random.Generator
) -> tuple[Detector, list[tuple[str, Change]]]:
    """Two one-sided CUSUMs on this segment's daily escalation rate after the reference."""
    rows = mask & frame.routed.evaluable
    n_days = len(frame.days)
    trials = np.bincount(frame.day_index[rows], minlength=n_days)
    hits = np.bincount(frame.day_index[rows & frame.routed.escalated], minlength=n_days)
    ref = frame.reference_days()
    watched = np.arange(frame.first_monitored, n_days)
    ic = drift.in_control(hits[ref], trials[ref])
    h = drift.cusum_threshold(trials[ref], trials[watched], ic, alpha, rng)
    cusum = drift.run_cusum(drift.standardise(hits[watched], trials[watched], ic), h)
    found = []
    for side, first, path in (
        ("up", cusum.first_up, cusum.upper),
        ("down", cusum.first_down, cusum.lower),
    ):
        if first is not None:
            onset = cusum.onset(side)
            assert onset is not None
            change = Change(
                segment=segment,
                fired=frame.days[watched[first]],
                onset=frame.days[watched[onset]],
                statistic=float(path[first]),
                h=h,
                alpha=alpha,
                monitored_days=int(watched.size),
            )
            found.append((side, change))
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


def _psi_points(log: RequestLog, frame: _Frame, alpha: float) -> list[PsiPoint]:
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


def _quality_points(frame: _Frame, alpha: float) -> list[QualityPoint]:
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


def _health(log: RequestLog, frame: _Frame) -> Health:
    region = np.array([str(r) or "(none)" for r in log.region], dtype=object)
    degraded = degraded_mask(log.served_tier, log.failed_tier, log.tier_cost_usd)
    return regional_health(
        region,
        frame.day_index,
        frame.days,
        frame.in_ref,
        degraded,
        (log.failed_tier, log.served_tier),
    )


def _alarms(
    frame: _Frame,
    changes: list[tuple[str, Change, np.ndarray]],
    psi: list[PsiPoint],
    quality: list[QualityPoint],
    health: Health,
    intent: np.ndarray,
) -> list[Alarm]:
    alarms = []
    fell = [q for q in quality if q.fell]
    if fell:
        reference = summarise(frame, np.flatnonzero(frame.routed.evaluable & frame.in_ref))
        alarms.append(quality_fell(fell[0], reference, frame.level))
    for side, change, mask in changes:
        base = mask & frame.routed.evaluable
        ref = summarise(frame, np.flatnonzero(base & frame.in_ref))
        onset = frame.days.index(change.onset)
        since = base & (frame.day_index >= onset)
        now = summarise(frame, np.flatnonzero(since))
        word = escalation_up if side == "up" else escalation_down
        mix = _mix_line(intent, base & frame.in_ref, since, frame.routed.escalated)
        alarms.append(word(ref, now, change, frame.level, mix))
    for tier in dict.fromkeys(p.tier for p in psi):
        above = [p for p in psi if p.tier == tier and p.above]
        if above:
            first = min(above, key=lambda p: (p.end, p.period))
            fired = first.start if first.period == "day" else first.end
            chunk = (
                f"the day {first.start}" if first.period == "day" else f"{first.start}..{first.end}"
            )
            sizes = (first.reference_requests, first.requests)
            alarms.append(confidence_shift(tier, chunk, fired, first.psi, first.limit, sizes))
    alarms += [outage(o) for o in health.outages]
    return sorted(alarms, key=lambda a: (a.first_day, a.kind, a.segment))


def _mix_line(
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
