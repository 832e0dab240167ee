"""The chosen policy's report sections as sums over every request (what `store/sections_sql`
computes in the SQL engine; the sections add the labeled rows in Python).

Money is in exact integers of nano-USD (rint(cost_usd·1e9) per tier, as the grid engine sums
it), so every sum and sum of squares is exact and independent of the engine's summation order.
Counts are plain integers. Nothing here holds one value per request except the labeled rows'
production tiers (`ProductionSums.labeled_served`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CostSums:
    """Over all requests, with c the chosen policy's cost and q premium's (nano-USD): n, Σc, Σc²,
    Σq, Σq², Σcq. What a cost interval and the savings' delta-method interval need."""

    requests: int
    cost: int
    cost_sq: int
    premium: int
    premium_sq: int
    cross: int


@dataclass(frozen=True)
class SegmentCount:
    """One value of a segment column (app, region, intent): its requests, how many the chosen
    policy escalates and how many the alternative does (None without an alternative)."""

    column: str
    value: str
    requests: int
    escalated: int
    alt_escalated: int | None


@dataclass(frozen=True)
class WeekCount:
    """Requests and the chosen policy's escalations of one region in one week (`week_day`: the
    Monday starting it, in days since 1970-01-01; `region` None when absent)."""

    week_day: int
    region: str | None
    requests: int
    escalated: int


@dataclass(frozen=True)
class ProductionSums:
    """Production as logged on the requests it served (`prod_served` ≥ 0): their count, how many
    called more than one tier, how many each tier position served, the called tiers' cost, the
    premium tier's and the chosen policy's cost on them (nano-USD), the nearest-rank p50 and p95
    of the called tiers' summed latency, and per labeled request (request_id order) the tier
    position production served (-1: none)."""

    requests: int
    escalated: int
    served: tuple[int, ...]
    cost_nano_usd: int
    premium_nano_usd: int
    chosen_nano_usd: int
    latency_p50_ms: float
    latency_p95_ms: float
    labeled_ids: np.ndarray
    labeled_served: np.ndarray


@dataclass(frozen=True)
class SectionSums:
    """Everything the chosen policy's sections read from all requests (module docstring).

    `path`: the chosen policy's tiers (names); `stage_counts[s]`: requests stopping at stage s of
    the path; `ruled`: requests a keyword rule decided (no stage); `escalated`: requests served
    past the path's first tier; `labeled`: requests labeled for every tier; `ts_range`: (min,
    max) epoch seconds, None without requests."""

    tiers: tuple[str, ...]
    path: tuple[str, ...]
    stage_counts: tuple[int, ...]
    ruled: int
    escalated: int
    cost: CostSums
    segments: tuple[SegmentCount, ...]
    weeks: tuple[WeekCount, ...]
    labeled: int
    ts_range: tuple[float, float] | None
    production: ProductionSums

    @property
    def requests(self) -> int:
        return self.cost.requests

    def known_intents(self) -> list[str]:
        """The intents of the requests, sorted."""
        return sorted(s.value for s in self.segments if s.column == "intent")
