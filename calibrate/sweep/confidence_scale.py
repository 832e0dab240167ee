"""One confidence scale per tier: the stored confidences of each tier, per source (prod, shadow),
must lie on one scale, the one tiers.yaml declares (`sweep` and `check`).

The rule (formats/logprobs.py `fits`): a range is on `raw_logprob` when all its values are ≤ 0 and
on `probability` when all are in [0, 1]. A tier is **mixed** when each source's range is on a
scale but no scale holds both (production probabilities in (0, 1), shadow raw logprobs < 0: a
threshold would escalate exactly the shadow half); a source whose own range is on no scale is
mixed within itself. A tier whose every range is on one scale but not the one it declares
explicitly is **misdeclared** (its thresholds would be recorded, and read by a gateway, on the
wrong scale); with the plain form, the stored scale is taken and the report says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from calibrate.config.tiers import TiersConfig
from calibrate.errors import DataError
from calibrate.formats.logprobs import SCALE_RANGE, SCALES, fits
from calibrate.store import Store
from calibrate.store.check_sql import ConfidenceRange


def _range(span: ConfidenceRange) -> str:
    return f"{span.source} confidences lie in [{span.low:.4g}, {span.high:.4g}]"


def _on(span: ConfidenceRange) -> list[str]:
    return [s for s in SCALES if fits(s, span.low, span.high)]


def _scales_text() -> str:
    return "; ".join(f"{s}: {SCALE_RANGE[s]}" for s in SCALES)


@dataclass(frozen=True)
class ScaleVerdict:
    """Per tier the scale its stored confidences are on (the scale routing.yaml records), the
    problems that stop a sweep and the warnings its report carries."""

    scales: dict[str, str]
    problems: tuple[str, ...]
    warnings: tuple[str, ...]


def judge_scales(ranges: Sequence[ConfidenceRange], tiers: TiersConfig) -> ScaleVerdict:
    """Mixed scales, or a stored scale other than one declared explicitly
    (`confidence: {method, scale}`), are problems. A tier with the plain form (`confidence:
    METHOD`, or none given) whose confidences all lie on the other scale is taken on that scale,
    with a warning: its thresholds are recorded on the scale they were computed on."""
    by_tier: dict[str, list[ConfidenceRange]] = {}
    for r in ranges:
        by_tier.setdefault(r.tier, []).append(r)
    scales, problems, warnings = {}, [], []
    for tier in tiers.tiers:
        rs, declared = by_tier.get(tier.name, []), tier.scale
        if declared is None:
            continue
        scales[tier.name] = declared
        problem = _mixed(tier.name, rs)
        if problem:
            problems.append(problem)
            continue
        common = [s for s in SCALES if all(s in _on(r) for r in rs)]
        if not rs or declared in common:
            continue
        ranges_text = ", ".join(_range(r) for r in rs)
        if tier.confidence_scale is not None:
            problems.append(
                f"tier {tier.name!r}: {ranges_text}, not on the {declared} scale tiers.yaml "
                f"declares ({SCALE_RANGE[declared]})"
            )
            continue
        scales[tier.name] = common[0]
        warnings.append(
            f"tier {tier.name!r}: `confidence: {tier.confidence}` means the {declared} scale, but "
            f"its {ranges_text} (the {common[0]} scale); thresholds are recorded on {common[0]}. "
            f"Declare it: `confidence: {{method: {tier.confidence}, scale: {common[0]}}}`"
        )
    return ScaleVerdict(scales, tuple(problems), tuple(warnings))


def _mixed(tier: str, rs: list[ConfidenceRange]) -> str | None:
    for r in rs:
        if not _on(r):
            return f"tier {tier!r}: {_range(r)}, on no one scale ({_scales_text()})"
    if not [s for s in SCALES if all(s in _on(r) for r in rs)]:
        parts = [f"{_range(r)} ({'/'.join(_on(r))})" for r in rs]
        return f"tier {tier!r} mixes confidence scales: " + ", ".join(parts)
    return None


FIX = (
    "Store one scale per tier and declare it in tiers.yaml, e.g. `confidence: {method: "
    "logprob_mean, scale: probability}` (probability = exp of the raw mean logprob; raw_logprob: "
    "the logprob itself, ≤ 0). Then bring every source onto it: convert the logs' confidences to "
    "that scale and ingest them into a fresh store, or replay the tier into a fresh store "
    "(`calibrate replay --tiers tiers.yaml --db NEW.duckdb`)."
)


def stored_scales(store: Store, tiers: TiersConfig) -> ScaleVerdict:
    """The sweep's scale check: raise DataError naming each tier, its ranges and the fix when a
    tier's stored confidences are mixed or off its explicitly declared scale."""
    verdict = judge_scales(store.confidence_ranges(tiers.names), tiers)
    if verdict.problems:
        raise DataError("; ".join(verdict.problems), hint=FIX)
    return verdict
