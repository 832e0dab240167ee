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
from pathlib import Path

import numpy as np

from calibrate.config.routing import RoutingConfig, classifier_path
from calibrate.errors import ConfigError, DataError
from calibrate.monitor.alarms import (
    Alarm,
    Change,
    QualityPoint,
    confidence_shift,
    escalation_down,
    escalation_up,
    outage,
    quality_fell,
)
from calibrate.monitor.routing import calibrations, cascade_path, route
from calibrate.monitor.series import (
    Chunk,
    Detector,
    Frame,
    PsiPoint,
    chunks,
    detect,
    mix_line,
    psi_points,
    quality_points,
    summarise,
)
from calibrate.policies.keyword_rules import forced_tiers
from calibrate.policies.router_files import stored_scores
from calibrate.records.outcomes import RequestLog
from calibrate.stats.regional_health import Health, degraded_mask, regional_health
from calibrate.stats.reliability import TierCalibration
from calibrate.store import Store

SEGMENT_COLUMNS = ("region", "app")
EPOCH = date(1970, 1, 1)
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
    store: Store,
    config: RoutingConfig,
    options: MonitorOptions,
    *,
    seed: int = 0,
    base_dir: Path | None = None,
) -> MonitorResult:
    """Read the stored requests and monitor the deployed config on them (`base_dir`: where
    routing.yaml is, for a router's model file)."""
    log = store.request_log([t.name for t in config.tiers])
    here = base_dir if base_dir is not None else Path(".")
    return analyse(log, config, options, seed=seed, decided=decided(store, config, log, here))


def decided(
    store: Store, config: RoutingConfig, log: RequestLog, base_dir: Path
) -> np.ndarray | None:
    """Per request, the config tier chosen before any call (-1: none): by the first matching
    keyword rule, or by the learned router (its first tier iff score ≥ min_score)."""
    ids = log.request_ids.tolist()
    if config.classifier is not None:
        scores = stored_scores(store, classifier_path(config, base_dir), ids)
        return np.where(scores >= config.classifier.min_score, 0, 1)
    keywords = [(r.pattern, r.tier) for r in config.rules if r.pattern is not None]
    if not keywords:
        return None
    return forced_tiers(keywords, store.prompt_texts(ids), log.tiers)


def analyse(
    log: RequestLog,
    config: RoutingConfig,
    options: MonitorOptions,
    *,
    seed: int = 0,
    decided: np.ndarray | None = None,
) -> MonitorResult:
    """The whole monitor on one request log (pure: no store, no files; `decided`: per request the
    config tier a keyword rule or the router sends it to before any call, -1 for none)."""
    _check(log, config, options)
    day_index, days = _calendar(log.timestamp_s)
    reference = reference_window(config, days[0], days[-1], options.reference_days)
    first_ref, last_ref = days.index(reference.start), days.index(reference.end)
    in_ref = (day_index >= first_ref) & (day_index <= last_ref)
    calibration = calibrations(log, in_ref)
    routed = route(log, config, calibration, decided)
    _require_evaluable(log, routed.evaluable)
    segments = list(_segments(log, options.by))
    frame = Frame(day_index, days, in_ref, last_ref + 1, routed, options.level)
    alpha_cusum = options.false_alarm_rate * CUSUM_SHARE
    alpha_psi = options.false_alarm_rate * PSI_SHARE
    detectors: list[Detector] = []
    changes: list[tuple[str, Change, np.ndarray]] = []
    if config.strategy != "single":
        detectors, changes = _detectors(frame, segments, alpha_cusum, seed)
    psi = psi_points(log, frame, alpha_psi)
    quality = quality_points(frame, options.false_alarm_rate - alpha_cusum - alpha_psi)
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
        chunks=tuple(c for name, mask in segments for c in chunks(frame, name, mask)),
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


def _require_evaluable(log: RequestLog, evaluable: np.ndarray) -> None:
    if evaluable.any():
        return
    silent = [t for j, t in enumerate(log.tiers) if not log.answered[:, j].any()]
    what = f": tier(s) {', '.join(silent)} never answered" if silent else ""
    raise DataError(
        f"no request has the attempts the deployed routing.yaml needs{what}",
        hint="Monitor the logs of the traffic this routing.yaml routes (check its tier names), "
        "or add shadow attempts for its tiers.",
    )


def _detectors(
    frame: Frame, segments: list[tuple[str, np.ndarray]], alpha: float, seed: int
) -> tuple[list[Detector], list[tuple[str, Change, np.ndarray]]]:
    """One escalation CUSUM per segment: `all` keeps half of alpha when there are segments, and
    they split the other half."""
    detectors, changes = [], []
    for k, (name, mask) in enumerate(segments):
        share = 1.0 if len(segments) == 1 else 0.5 if k == 0 else 0.5 / (len(segments) - 1)
        rng = np.random.default_rng([seed, k])
        detector, found = detect(frame, name, mask, alpha * share, rng)
        if detector is not None:
            detectors.append(detector)
            changes += [(side, change, mask) for side, change in found]
    return detectors, changes


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
    window = config.calibrated_on.window if config.calibrated_on is not None else None
    start = _day(window.start) if window is not None else None
    end = _day(window.end) if window is not None else None
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
    if config.classifier is not None:
        tau = config.classifier.min_score
        return f"learned router: {names[0]} when its score ≥ {tau:g}, else {names[1]}"
    keywords = [r for r in config.rules if r.pattern is not None]
    first = f"{len(keywords)} keyword rules, then " if keywords else ""
    if config.strategy == "rules":
        parts = [
            f"input_tokens ≤ {r.max_input_tokens} → {r.tier}"
            if r.max_input_tokens is not None
            else f"else {r.tier}"
            for r in config.rules
            if r.pattern is None
        ]
        return f"rules: {first}" + ", ".join(parts)
    path = [config.tiers[j] for j in cascade_path(config)]
    cuts = " / ".join(f"{t.escalate_below:g}" for t in path[:-1])
    return f"{first}cascade {' → '.join(t.name for t in path)}, escalate below {cuts}"


def _segments(log: RequestLog, by: str | None) -> Iterator[tuple[str, np.ndarray]]:
    yield "all", np.ones(log.n, dtype=bool)
    if by is None:
        return
    column = log.region if by == "region" else log.app
    for value in sorted({str(v) for v in column}):
        yield f"{by}={value or '(none)'}", column == value


def _health(log: RequestLog, frame: Frame) -> Health:
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
    frame: Frame,
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
        mix = mix_line(intent, base & frame.in_ref, since, frame.routed.escalated)
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
