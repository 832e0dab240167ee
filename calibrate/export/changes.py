"""What changes in a gateway's config when routing.yaml changes: both routing.yaml files exported to
one target → a frozen `ExportChange` (a unified diff of the two exported files and each threshold
on the target's own scale).

A side the target cannot express is not an error here: its `ExportSide` carries the refusal's
reason and hint, so `calibrate diff --export-to` can say why in the pull request. Problems with the
files themselves (unreadable routing.yaml or tiers.yaml) still raise.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from calibrate.export.common import Export, ExportRefused, TargetThreshold
from calibrate.export.targets import export_routing

_DIGITS = 4  # a threshold change smaller than this rounding is "no change"


@dataclass(frozen=True, slots=True)
class ExportSide:
    """One routing.yaml exported to the target, or why it cannot be."""

    routing_path: str
    export: Export | None
    refused: str | None = None  # the refusal's message and hint when export is None


@dataclass(frozen=True, slots=True)
class ThresholdShift:
    """One deciding tier's threshold as the target holds it, in both files.

    status: unchanged | moved | only old | only new."""

    tier: str
    old_escalate_below: float | None
    new_escalate_below: float | None
    old_value: float | None  # on the target's scale
    new_value: float | None
    change: float | None  # new − old on the target's scale, rounded
    field: str
    scale: str
    status: str


@dataclass(frozen=True, slots=True)
class ExportChange:
    """Both exports of one target and what differs between them."""

    target: str
    old: ExportSide
    new: ExportSide
    unified_diff: str  # "" when both files are identical or a side was refused
    thresholds: tuple[ThresholdShift, ...]

    @property
    def changed(self) -> bool | None:
        """Does the exported file differ? None when a side could not be exported."""
        if self.old.export is None or self.new.export is None:
            return None
        return self.old.export.text != self.new.export.text


def export_side(routing_path: Path, target: str, tiers_path: Path | None) -> ExportSide:
    try:
        return ExportSide(str(routing_path), export_routing(routing_path, target, tiers_path))
    except ExportRefused as refused:
        reason = str(refused) + (f"\nHint: {refused.hint}" if refused.hint else "")
        return ExportSide(str(routing_path), None, reason)


def compare_exports(
    old_path: Path, new_path: Path, target: str, tiers_path: Path | None = None
) -> ExportChange:
    """Export both routing.yaml files to `target` (with the same tiers.yaml) and compare them."""
    old = export_side(old_path, target, tiers_path)
    new = export_side(new_path, target, tiers_path)
    text = ""
    if old.export is not None and new.export is not None:
        text = "".join(
            difflib.unified_diff(
                old.export.text.splitlines(keepends=True),
                new.export.text.splitlines(keepends=True),
                fromfile=f"{old_path} → {target}",
                tofile=f"{new_path} → {target}",
            )
        )
    return ExportChange(target, old, new, text, _shifts(old.export, new.export))


def _held(export: Export | None) -> dict[str, TargetThreshold]:
    return {} if export is None else {t.tier: t for t in export.thresholds}


def _shifts(old: Export | None, new: Export | None) -> tuple[ThresholdShift, ...]:
    """Every deciding tier of either exported file, the new file's order first."""
    before, after = _held(old), _held(new)
    shifts = []
    for tier in list(after) + [t for t in before if t not in after]:
        o, n = before.get(tier), after.get(tier)
        change = None
        if o is not None and n is not None:
            change = round(n.value - o.value, _DIGITS) + 0.0
            status = "unchanged" if change == 0 else "moved"
        else:
            status = "only old" if n is None else "only new"
        shown = n or o
        assert shown is not None
        shifts.append(
            ThresholdShift(
                tier,
                None if o is None else o.escalate_below,
                None if n is None else n.escalate_below,
                None if o is None else o.value,
                None if n is None else n.value,
                change,
                shown.field,
                shown.scale,
                status,
            )
        )
    return tuple(shifts)
