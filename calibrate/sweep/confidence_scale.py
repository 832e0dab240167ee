"""One confidence scale per tier: the stored confidences of each tier, per source (prod, shadow),
must lie on one scale, the one tiers.yaml declares (`sweep` and `check`).

The rule (formats/logprobs.py `fits`): a range is on `raw_logprob` when all its values are ≤ 0 and
on `probability` when all are in [0, 1]. A tier is **mixed** when each source's range is on a
scale but no scale holds both (production probabilities in (0, 1), shadow raw logprobs < 0: a
threshold would escalate exactly the shadow half); a source whose own range is on no scale is
mixed within itself. A tier whose every range is on a scale but not the declared one is
**misdeclared** (its thresholds would be recorded, and read by a gateway, on the wrong scale).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from calibrate.errors import DataError
from calibrate.formats.logprobs import SCALE_RANGE, SCALES, fits
from calibrate.store import Store
from calibrate.store.check_sql import ConfidenceRange


def _range(r: ConfidenceRange) -> str:
    return f"{r.source} confidences lie in [{r.low:.4g}, {r.high:.4g}]"


def _on(r: ConfidenceRange) -> list[str]:
    return [s for s in SCALES if fits(s, r.low, r.high)]


def _scales_text() -> str:
    return "; ".join(f"{s}: {SCALE_RANGE[s]}" for s in SCALES)


def scale_problems(
    ranges: Sequence[ConfidenceRange], declared: Mapping[str, str | None]
) -> list[str]:
    """One sentence per tier whose stored confidences are not on one scale, the declared one
    (`declared`: tier -> tiers.yaml's scale, None for a tier without one)."""
    by_tier: dict[str, list[ConfidenceRange]] = {}
    for r in ranges:
        by_tier.setdefault(r.tier, []).append(r)
    problems = []
    for tier, rs in by_tier.items():
        problems += _tier_problem(tier, rs, declared.get(tier))
    return problems


def _tier_problem(tier: str, rs: list[ConfidenceRange], scale: str | None) -> list[str]:
    for r in rs:
        if not _on(r):
            return [f"tier {tier!r}: {_range(r)}, on no one scale ({_scales_text()})"]
    common = [s for s in SCALES if all(s in _on(r) for r in rs)]
    if not common:
        parts = [f"{_range(r)} ({'/'.join(_on(r))})" for r in rs]
        return [f"tier {tier!r} mixes confidence scales: " + ", ".join(parts)]
    if scale is not None and scale not in common:
        parts = [_range(r) for r in rs]
        return [
            f"tier {tier!r}: {', '.join(parts)}, not on the {scale} scale tiers.yaml declares "
            f"({SCALE_RANGE[scale]})"
        ]
    return []


FIX = (
    "Store one scale per tier and declare it in tiers.yaml, e.g. `confidence: {method: "
    "logprob_mean, scale: probability}` (probability = exp of the raw mean logprob; raw_logprob: "
    "the logprob itself, ≤ 0). Then bring every source onto it: export/convert the logs' "
    "confidences to that scale and ingest them into a fresh store, or replay the tier into a "
    "fresh store (`calibrate replay --tiers tiers.yaml --db NEW.duckdb`) with the declared scale."
)


def require_one_scale(store: Store, declared: Mapping[str, str | None]) -> None:
    """Raise DataError naming each tier, its ranges and the fix when a tier's stored confidences
    are mixed or not on its declared scale."""
    problems = scale_problems(store.confidence_ranges(list(declared)), declared)
    if problems:
        raise DataError("; ".join(problems), hint=FIX)
