"""Stage: what changed between two routing.yaml files → a frozen `ConfigDiff`, and whether it matters.

Owns the comparison and the materiality rules; `diff_report.py` puts the result into words
(Markdown for a pull request, JSON). Both files are read with `routing.load_routing` (validated,
unknown keys rejected), so every problem with a file is a `ConfigError` naming it; so is a
hand-written file without what a sweep records (objective, selection, calibrated_on).

Always material: a strategy change, a tier added, removed, reordered or given another model, a new
premium tier, a keyword rule added, removed, sent to another tier or moved in priority (first match
wins), a changed objective, certified → uncertified, and a quality-drop interval whose upper
end newly exceeds the objective's limit. Material above a bound (`Materiality`, all inclusive): a
threshold move, a rule-cutoff move, and the expected cost, quality, escalation rate and latency.
Savings follow cost and are never material on their own.

Imports only `routing` and `policies` (metric names); never `cli`, `console` or another stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from calibrate.config.routing import (
    METRIC_DIGITS,
    METRICS,
    CalibratedOn,
    ObjectiveSpec,
    RoutingConfig,
    load_routing,
)
from calibrate.errors import ConfigError

_TOLERANCE = 1e-9  # a change equal to its bound is material, whatever the float noise


@dataclass(frozen=True, slots=True)
class Materiality:
    """How large a change must be to be material (`diff --check` exits 3). Bounds are inclusive."""

    min_threshold_change: float = 0.01  # absolute, in the tier's own confidence units
    min_cutoff_change: float = 0.10  # relative, input-length rule cutoffs
    min_cost_change: float = 0.05  # relative, expected cost per 1k requests
    min_quality_change: float = 0.005  # absolute, expected quality and quality drop
    min_escalation_change: float = 0.05  # absolute, expected escalation rate
    min_latency_change: float = 0.10  # relative, expected p50 and p95 latency

    def bound_for(self, metric: str) -> tuple[str, float] | None:
        """(`absolute` | `relative`, bound) for a metric; None when it is never material alone."""
        bounds = {
            "quality": ("absolute", self.min_quality_change),
            "quality_drop": ("absolute", self.min_quality_change),
            "escalation_rate": ("absolute", self.min_escalation_change),
            "cost_per_1k_requests_usd": ("relative", self.min_cost_change),
            "latency_p50_ms": ("relative", self.min_latency_change),
            "latency_p95_ms": ("relative", self.min_latency_change),
        }
        return bounds.get(metric)


@dataclass(frozen=True, slots=True)
class TierChange:
    """One tier of either file. status: unchanged | added | removed | model changed | moved."""

    name: str
    old_model: str | None
    new_model: str | None
    old_position: int | None  # 1-based place in the tier path
    new_position: int | None
    status: str


@dataclass(frozen=True, slots=True)
class ThresholdChange:
    """One tier's `escalate_below`. status: unchanged | moved | only old | only new."""

    tier: str
    old: float | None
    new: float | None
    change: float | None
    old_p_correct: float | None  # calibrated P(correct) at the threshold; None in older files
    new_p_correct: float | None
    old_escalates_to: str | None  # the next tier of the cascade
    new_escalates_to: str | None
    status: str
    note: str  # why a threshold exists on one side only
    material: bool


@dataclass(frozen=True, slots=True)
class RuleChange:
    """One input-length rule, by the tier it routes to. `max_input_tokens` None = default rule.

    status: unchanged | moved | changed (cutoff ↔ default) | only old | only new.
    """

    tier: str
    old_max_input_tokens: int | None
    new_max_input_tokens: int | None
    relative_change: float | None
    status: str
    material: bool


@dataclass(frozen=True, slots=True)
class KeywordRuleChange:
    """One keyword rule, by its pattern; positions count from 1 in the file's rules.

    status: unchanged | retargeted (another tier) | reordered (another priority among the rules
    both files have) | only old | only new. Every status but `unchanged` is material.
    """

    pattern: str
    old_tier: str | None
    new_tier: str | None
    old_position: int | None
    new_position: int | None
    status: str

    @property
    def material(self) -> bool:
        return self.status != "unchanged"


@dataclass(frozen=True, slots=True)
class MetricChange:
    """One `expected` metric with its interval. status: compared | only old | only new | not measured."""

    name: str
    old: float | None
    new: float | None
    change: float | None  # new − old, in the metric's own units
    relative_change: float | None  # change / |old|; None when old is 0 or missing
    old_interval: tuple[float, float] | None
    new_interval: tuple[float, float] | None
    bound: tuple[str, float] | None  # the materiality rule; None = informational
    status: str
    material: bool


@dataclass(frozen=True, slots=True)
class Certification:
    """`certified` and `selection` of both files."""

    old: bool
    new: bool
    old_selection: str
    new_selection: str

    @property
    def lost(self) -> bool:
        return self.old and not self.new


@dataclass(frozen=True, slots=True)
class Objective:
    """The guarantee each file was calibrated for."""

    old_max_quality_drop: float
    new_max_quality_drop: float
    old_confidence_level: float
    new_confidence_level: float
    old_options: tuple[tuple[str, str], ...] = ()
    new_options: tuple[tuple[str, str], ...] = ()

    @property
    def changed(self) -> bool:
        return (self.old_max_quality_drop, self.old_confidence_level, self.old_options) != (
            self.new_max_quality_drop,
            self.new_confidence_level,
            self.new_options,
        )


@dataclass(frozen=True, slots=True)
class QualityLimit:
    """Upper end of each file's quality-drop interval against its own max_quality_drop.

    breached is None when the file has no quality_drop interval (older files).
    """

    old_limit: float
    new_limit: float
    old_upper: float | None
    new_upper: float | None
    old_breached: bool | None
    new_breached: bool | None

    @property
    def newly_breached(self) -> bool:
        """Above the limit now, and not known to have been before."""
        return self.new_breached is True and self.old_breached is not True


@dataclass(frozen=True, slots=True)
class Provenance:
    """What one file was calibrated on."""

    requests: int
    labeled: int
    window_start: str | None
    window_end: str | None
    logs_sha256: str


@dataclass(frozen=True, slots=True)
class ConfigDiff:
    """Everything that differs between two routing.yaml files."""

    old_path: str
    new_path: str
    materiality: Materiality
    old_strategy: str
    new_strategy: str
    old_premium_tier: str
    new_premium_tier: str
    tiers: tuple[TierChange, ...]
    thresholds: tuple[ThresholdChange, ...]
    rules: tuple[RuleChange, ...]
    keyword_rules: tuple[KeywordRuleChange, ...]
    certification: Certification
    objective: Objective
    quality_limit: QualityLimit
    metrics: tuple[MetricChange, ...]
    old_data: Provenance
    new_data: Provenance

    @property
    def material(self) -> bool:
        """Would a reviewer need to look? (the rules are in the module docstring)"""
        return (
            self.old_strategy != self.new_strategy
            or self.old_premium_tier != self.new_premium_tier
            or any(t.status != "unchanged" for t in self.tiers)
            or self.objective.changed
            or self.certification.lost
            or self.quality_limit.newly_breached
            or any(c.material for c in self.thresholds + self.rules + self.metrics)
            or any(k.material for k in self.keyword_rules)
        )


def diff_files(old_path: Path, new_path: Path, materiality: Materiality) -> ConfigDiff:
    """Load and validate both files, then compare them."""
    old, new = load_routing(old_path), load_routing(new_path)
    return compare(old, new, materiality, str(old_path), str(new_path))


def compare(
    old: RoutingConfig,
    new: RoutingConfig,
    materiality: Materiality,
    old_path: str = "old",
    new_path: str = "new",
) -> ConfigDiff:
    """Compare two configs section by section (both written by a sweep)."""
    old_objective, old_selection, old_data = _recorded(old, old_path)
    new_objective, new_selection, new_data = _recorded(new, new_path)
    return ConfigDiff(
        old_path=old_path,
        new_path=new_path,
        materiality=materiality,
        old_strategy=old.strategy,
        new_strategy=new.strategy,
        old_premium_tier=old.premium_tier,
        new_premium_tier=new.premium_tier,
        tiers=compare_tiers(old, new),
        thresholds=compare_thresholds(old, new, materiality.min_threshold_change),
        rules=compare_rules(old, new, materiality.min_cutoff_change),
        keyword_rules=compare_keyword_rules(old, new),
        certification=Certification(old.certified, new.certified, old_selection, new_selection),
        objective=Objective(
            old_objective.max_quality_drop,
            new_objective.max_quality_drop,
            old_objective.confidence_level,
            new_objective.confidence_level,
            _objective_options(old_objective),
            _objective_options(new_objective),
        ),
        quality_limit=QualityLimit(
            old_objective.max_quality_drop,
            new_objective.max_quality_drop,
            _drop_upper(old),
            _drop_upper(new),
            _breached(old, old_objective),
            _breached(new, new_objective),
        ),
        metrics=compare_metrics(old, new, materiality),
        old_data=_provenance(old_data),
        new_data=_provenance(new_data),
    )


def _recorded(config: RoutingConfig, path: str) -> tuple[ObjectiveSpec, str, CalibratedOn]:
    """What a sweep records and a diff compares; a hand-written file without it is a ConfigError."""
    if config.objective is None or config.selection is None or config.calibrated_on is None:
        missing = [
            key
            for key in ("objective", "selection", "calibrated_on")
            if getattr(config, key) is None
        ]
        raise ConfigError(
            f"{path} has no {', '.join(missing)}: a hand-written routing.yaml has nothing for "
            "`diff` to compare",
            hint=f"Measure it with `calibrate evaluate {path} LOGS`, or diff routing.yaml files "
            "written by `calibrate sweep`.",
        )
    return config.objective, config.selection, config.calibrated_on


def compare_tiers(old: RoutingConfig, new: RoutingConfig) -> tuple[TierChange, ...]:
    """Tiers in the new file's order, then those only the old file has."""
    old_models = {t.name: t.model for t in old.tiers}
    new_models = {t.name: t.model for t in new.tiers}
    old_names, new_names = list(old_models), list(new_models)
    common_old = [n for n in old_names if n in new_models]
    common_new = [n for n in new_names if n in old_models]
    changes = []
    for name in new_names + [n for n in old_names if n not in new_models]:
        if name not in old_models:
            status = "added"
        elif name not in new_models:
            status = "removed"
        elif old_models[name] != new_models[name]:
            status = "model changed"
        elif common_old.index(name) != common_new.index(name):
            status = "moved"
        else:
            status = "unchanged"
        changes.append(
            TierChange(
                name,
                old_models.get(name),
                new_models.get(name),
                old_names.index(name) + 1 if name in old_models else None,
                new_names.index(name) + 1 if name in new_models else None,
                status,
            )
        )
    return tuple(changes)


def _thresholds(config: RoutingConfig) -> dict[str, tuple[float, float | None, str | None]]:
    """tier → (escalate_below, p_correct, next tier) for every tier that has a threshold."""
    tiers = config.tiers
    return {
        t.name: (t.escalate_below, t.p_correct, tiers[i + 1].name if i + 1 < len(tiers) else None)
        for i, t in enumerate(tiers)
        if t.escalate_below is not None
    }


def compare_thresholds(
    old: RoutingConfig, new: RoutingConfig, min_change: float
) -> tuple[ThresholdChange, ...]:
    """Every tier with an `escalate_below` in either file, new file's order first."""
    before, after = _thresholds(old), _thresholds(new)
    changes = []
    for tier in list(after) + [t for t in before if t not in after]:
        old_tau, old_p, old_next = before.get(tier, (None, None, None))
        new_tau, new_p, new_next = after.get(tier, (None, None, None))
        if old_tau is not None and new_tau is not None:
            change = round(new_tau - old_tau, 4) + 0.0
            status = "unchanged" if change == 0 else "moved"
            material = status == "moved" and abs(new_tau - old_tau) >= min_change - _TOLERANCE
            note = ""
        else:
            change, material = None, True
            status = "only old" if new_tau is None else "only new"
            note = _one_sided_note(tier, new if new_tau is None else old, new_tau is None)
        changes.append(
            ThresholdChange(
                tier,
                old_tau,
                new_tau,
                change,
                old_p,
                new_p,
                old_next,
                new_next,
                status,
                note,
                material,
            )
        )
    return tuple(changes)


def _one_sided_note(tier: str, other: RoutingConfig, other_is_new: bool) -> str:
    """Why `tier` has a threshold in one file only, in words about the other file."""
    side = "the new config" if other_is_new else "the old config"
    names = [t.name for t in other.tiers]
    if tier not in names:
        return f"{tier} is not a tier of {side}"
    if other.strategy != "cascade":
        verb = "uses" if other_is_new else "used"
        return f"{side} {verb} the {other.strategy} strategy, which has no thresholds"
    if names[-1] == tier:
        return f"{tier} is the final tier of {side} (it never escalates)"
    return f"{tier} has no threshold in {side}"


def _rules(config: RoutingConfig) -> dict[str, int | None]:
    """rule label → max_input_tokens (None = the default rule); a repeated tier gets `(rule N)`."""
    labels: dict[str, int | None] = {}
    for i, rule in enumerate(config.rules):
        if rule.pattern is not None:
            continue  # keyword rules: `compare_keyword_rules`
        label = rule.tier if rule.tier not in labels else f"{rule.tier} (rule {i + 1})"
        labels[label] = rule.max_input_tokens
    return labels


def compare_rules(
    old: RoutingConfig, new: RoutingConfig, min_relative_change: float
) -> tuple[RuleChange, ...]:
    """Input-length rules by the tier they route to, new file's order first."""
    before, after = _rules(old), _rules(new)
    changes = []
    for tier in list(after) + [t for t in before if t not in after]:
        if tier not in before or tier not in after:
            status, relative, material = (
                ("only new" if tier not in before else "only old"),
                None,
                True,
            )
        else:
            status, relative, material = _cutoff_change(
                before[tier], after[tier], min_relative_change
            )
        changes.append(
            RuleChange(tier, before.get(tier), after.get(tier), relative, status, material)
        )
    return tuple(changes)


def compare_keyword_rules(old: RoutingConfig, new: RoutingConfig) -> tuple[KeywordRuleChange, ...]:
    """Keyword rules by pattern, new file's order first, then the ones only the old file has."""
    before = {r.pattern: (i + 1, r.tier) for i, r in enumerate(old.rules) if r.pattern}
    after = {r.pattern: (i + 1, r.tier) for i, r in enumerate(new.rules) if r.pattern}
    common_old = [p for p in before if p in after]
    common_new = [p for p in after if p in before]
    changes = []
    for pattern in list(after) + [p for p in before if p not in after]:
        (old_pos, old_tier), (new_pos, new_tier) = (
            before.get(pattern, (None, None)),
            after.get(pattern, (None, None)),
        )
        if old_pos is None or new_pos is None:
            status = "only new" if old_pos is None else "only old"
        elif old_tier != new_tier:
            status = "retargeted"
        elif common_old.index(pattern) != common_new.index(pattern):
            status = "reordered"
        else:
            status = "unchanged"
        changes.append(KeywordRuleChange(pattern, old_tier, new_tier, old_pos, new_pos, status))
    return tuple(changes)


def _cutoff_change(
    old: int | None, new: int | None, min_relative_change: float
) -> tuple[str, float | None, bool]:
    """(status, relative change, material) of one rule present in both files."""
    if old == new:
        return "unchanged", None if old is None else 0.0, False
    if old is None or new is None:
        return "changed", None, True
    relative = (new - old) / max(old, 1)
    return "moved", round(relative, 6), abs(relative) >= min_relative_change - _TOLERANCE


def _value(values: dict[str, float], name: str) -> float | None:
    value = values.get(name)
    return None if value is None or math.isnan(value) else value


def compare_metrics(
    old: RoutingConfig, new: RoutingConfig, materiality: Materiality
) -> tuple[MetricChange, ...]:
    """Every expected metric of either file: the shared names first, then any others sorted."""
    names = set(old.expected) | set(new.expected)
    ordered = [m for m in METRICS if m in names] + sorted(names - set(METRICS))
    return tuple(
        compare_metric(
            name,
            _value(old.expected, name),
            _value(new.expected, name),
            old.intervals.get(name),
            new.intervals.get(name),
            materiality.bound_for(name),
        )
        for name in ordered
    )


def compare_metric(
    name: str,
    old: float | None,
    new: float | None,
    old_interval: tuple[float, float] | None,
    new_interval: tuple[float, float] | None,
    bound: tuple[str, float] | None,
) -> MetricChange:
    """One metric: change, relative change, and whether it crosses its bound."""
    if old is None or new is None:
        status = (
            "not measured"
            if old is None and new is None
            else ("only new" if old is None else "only old")
        )
        return MetricChange(
            name, old, new, None, None, old_interval, new_interval, bound, status, False
        )
    change = round(new - old, METRIC_DIGITS.get(name, 6)) + 0.0
    relative = (new - old) / abs(old) if old != 0 else None
    material = False
    if bound is not None and change != 0:
        kind, limit = bound
        size = (
            abs(new - old)
            if kind == "absolute"
            else (math.inf if relative is None else abs(relative))
        )
        material = size >= limit - _TOLERANCE
    rounded = None if relative is None else round(relative, 6) + 0.0
    return MetricChange(
        name, old, new, change, rounded, old_interval, new_interval, bound, "compared", material
    )


def _drop_upper(config: RoutingConfig) -> float | None:
    interval = config.intervals.get("quality_drop")
    return None if interval is None else interval[1]


def _breached(config: RoutingConfig, objective: ObjectiveSpec) -> bool | None:
    """Does the quality-drop interval reach above the objective's limit? None without an interval."""
    upper = _drop_upper(config)
    return None if upper is None else upper > objective.max_quality_drop + _TOLERANCE


def _objective_options(objective: ObjectiveSpec) -> tuple[tuple[str, str], ...]:
    """The optional objective keys a file records (relative drop, segment, constraints)."""
    spec = objective.model_dump()
    return tuple(
        (k, str(list(v)) if isinstance(v, tuple) else str(v))
        for k, v in spec.items()
        if k not in ("max_quality_drop", "confidence_level") and v is not None
    )


def _provenance(data: CalibratedOn) -> Provenance:
    return Provenance(
        data.requests, data.labeled, data.window.start, data.window.end, data.logs_sha256
    )
