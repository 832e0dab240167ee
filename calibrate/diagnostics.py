"""Checks that catch a misleading recommendation: uninformative confidence, bad escalation rates,
and the break-even escalation rate of each tier pair."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score

from calibrate.records import Outcomes

HEALTHY_ESCALATION = (0.10, 0.40)
MIN_AUROC = 0.55


@dataclass(frozen=True)
class BreakEven:
    """Escalating from `cheap` to `expensive` saves money only below `escalation_rate`."""

    cheap: str
    expensive: str
    cheap_cost_per_1k_usd: float
    expensive_cost_per_1k_usd: float
    escalation_rate: float


def confidence_auroc(outcomes: Outcomes) -> dict[str, float | None]:
    """AUROC of each tier's confidence for "its answer is acceptable" (label ≥ 0.5), labeled rows.

    None when it cannot be computed (no confidence, or only one class)."""
    result: dict[str, float | None] = {}
    for j, tier in enumerate(outcomes.tiers):
        conf, label = outcomes.confidence[:, j], outcomes.label[:, j]
        usable = ~np.isnan(conf) & ~np.isnan(label)
        good = label[usable] >= 0.5
        if usable.sum() < 2 or good.all() or not good.any():
            result[tier] = None
        else:
            result[tier] = float(roc_auc_score(good, conf[usable]))
    return result


def break_even(frontier: pl.DataFrame, tiers: tuple[str, ...]) -> list[BreakEven]:
    """e* = 1 − c_cheap / c_expensive for every ordered tier pair (c = mean cost per request)."""
    always = frontier.filter(pl.col("strategy") == "always")
    cost = dict(zip(always["tiers"], always["cost_per_1k_requests_usd"], strict=True))
    rows = []
    for cheap, expensive in itertools.combinations(tiers, 2):
        c1, c2 = cost[cheap], cost[expensive]
        rows.append(BreakEven(cheap, expensive, c1, c2, 1.0 - c1 / c2 if c2 > 0 else float("nan")))
    return rows


def warnings_for(
    row: dict, auroc: dict[str, float | None], incomplete: int, rejected: int
) -> list[str]:
    """Plain-language warnings about the recommendation and the data behind it."""
    notes = []
    low, high = HEALTHY_ESCALATION
    if row["strategy"] != "always" and not low <= row["escalation_rate"] <= high:
        notes.append(
            f"The recommended escalation rate {row['escalation_rate']:.1%} is outside the "
            f"{low:.0%}–{high:.0%} a healthy cascade usually shows."
        )
    for tier, value in auroc.items():
        if value is None:
            continue
        if value < 0.5:
            notes.append(
                f"Tier {tier}: confidence is inverted (AUROC {value:.3f} < 0.5): higher confidence "
                "means *worse* answers. Negate the signal or fix how it is computed."
            )
        elif value < MIN_AUROC:
            notes.append(
                f"Tier {tier}: confidence barely separates good from bad answers (AUROC "
                f"{value:.3f} < {MIN_AUROC}); thresholds on it are close to random routing."
            )
    if incomplete:
        notes.append(
            f"{incomplete} requests lack an attempt for some tier and were left out; "
            "`calibrate replay` fills them in."
        )
    if rejected:
        notes.append(f"{rejected} input rows were rejected at ingest (see the `rejects` table).")
    return notes
