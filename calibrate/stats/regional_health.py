"""Regional health for `monitor`: traffic production served from a cheaper tier than it meant to,
because the intended tier failed (endpoint-health data: failed `prod` attempts and `served_tier`).

A request is *degraded* when its first failed `prod` attempt was at tier T and it was served by
another tier that is not known to cost more than T (or by none). Per region and day, a day is
flagged when its degraded count is improbably high for the region's reference rate (one-sided
binomial test, Bonferroni over region-days); an outage window is a run of consecutive days with
degraded traffic that contains at least one flagged day. It imports nothing from other stages.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date

import numpy as np

from calibrate.stats.drift import excess_p_value

BASE_RATE_FLOOR = (
    0.001  # assumed failure-fallback rate of a healthy region with none in the reference
)
HEALTH_ALPHA = 0.01  # per run, split over region-days


@dataclass(frozen=True, slots=True)
class RegionDay:
    """One region's traffic on one day and how much of it was degraded."""

    region: str
    day: date
    requests: int
    degraded: int
    flagged: bool


@dataclass(frozen=True, slots=True)
class Outage:
    """Consecutive days on which a region's traffic fell back to a cheaper tier."""

    region: str
    start: date
    end: date
    requests: int
    degraded: int
    fallbacks: tuple[tuple[str, str, int], ...]  # (intended tier, served tier, requests)

    @property
    def share(self) -> float:
        return self.degraded / self.requests if self.requests else 0.0


@dataclass(frozen=True, slots=True)
class Health:
    """Degraded traffic per region and day, the outage windows and each region's reference rate."""

    days: tuple[RegionDay, ...]
    outages: tuple[Outage, ...]
    base_rates: tuple[tuple[str, float], ...]
    failed_requests: int


def degraded_mask(
    served: np.ndarray, failed: np.ndarray, tier_cost_usd: dict[str, float]
) -> np.ndarray:
    """Per request: a prod attempt failed and a tier not known to be dearer served it (or none)."""
    out = np.zeros(served.size, dtype=bool)
    for i in np.flatnonzero(failed != ""):
        intended, got = failed[i], served[i]
        if got == intended:
            continue
        dearer = tier_cost_usd.get(got, np.nan) > tier_cost_usd.get(intended, np.nan)
        out[i] = not dearer
    return out


def regional_health(
    region: np.ndarray,
    day_index: np.ndarray,
    days: list[date],
    in_reference: np.ndarray,
    degraded: np.ndarray,
    pairs: tuple[np.ndarray, np.ndarray],
    counts: np.ndarray | None = None,
) -> Health:
    """Per region × day counts, flagged days and outage windows. `pairs` = (failed, served) tiers.

    One row per request, or with `counts` one row per group of `counts[i]` requests that share
    every other column (the same result as the rows repeated)."""
    count = np.ones(region.size, dtype=np.int64) if counts is None else counts.astype(np.int64)
    regions = sorted({str(r) for r in region})
    alpha = HEALTH_ALPHA / max(len(regions) * len(days), 1)
    rows, outages, base = [], [], []
    for name in regions:
        mine = region == name
        ref = mine & in_reference
        ref_requests = int(count[ref].sum())
        ref_rate = int(count[ref & degraded].sum()) / ref_requests if ref_requests else 0.0
        rate = max(ref_rate, BASE_RATE_FLOOR)
        base.append((name, rate))
        requests = _per_day(day_index, mine, count, len(days))
        bad = _per_day(day_index, mine & degraded, count, len(days))
        flagged = [
            excess_p_value(int(b), int(n), rate) < alpha for b, n in zip(bad, requests, strict=True)
        ]
        rows += [
            RegionDay(name, days[d], int(requests[d]), int(bad[d]), flagged[d])
            for d in range(len(days))
            if requests[d]
        ]
        for start, end in _windows(bad > 0, flagged):
            span = mine & (day_index >= start) & (day_index <= end)
            outages.append(_outage(name, days, (start, end), span, degraded, pairs, count))
    outages.sort(key=lambda o: (o.start, o.region))
    failed = int(count[pairs[0] != ""].sum())
    return Health(tuple(rows), tuple(outages), tuple(base), failed)


def _per_day(day_index: np.ndarray, rows: np.ndarray, count: np.ndarray, days: int) -> np.ndarray:
    """Requests per day among `rows` (exact integers)."""
    out = np.zeros(days, dtype=np.int64)
    np.add.at(out, day_index[rows], count[rows])
    return out


def _windows(active: np.ndarray, flagged: list[bool]) -> list[tuple[int, int]]:
    """Maximal runs of active days that contain a flagged day, as (first, last) indices."""
    runs, start = [], None
    for d, on in enumerate([*active.tolist(), False]):
        if on and start is None:
            start = d
        elif not on and start is not None:
            if any(flagged[start:d]):
                runs.append((start, d - 1))
            start = None
    return runs


def _outage(
    region: str,
    days: list[date],
    span_days: tuple[int, int],
    span: np.ndarray,
    degraded: np.ndarray,
    pairs: tuple[np.ndarray, np.ndarray],
    count: np.ndarray,
) -> Outage:
    hit = span & degraded
    counts: Counter[tuple[str, str]] = Counter()
    for key, n in zip(
        zip(pairs[0][hit].tolist(), pairs[1][hit].tolist(), strict=True),
        count[hit].tolist(),
        strict=True,
    ):
        counts[key] += n
    fallbacks = tuple(
        (intended, served or "(none)", n) for (intended, served), n in sorted(counts.items())
    )
    return Outage(
        region=region,
        start=days[span_days[0]],
        end=days[span_days[1]],
        requests=int(count[span].sum()),
        degraded=int(count[hit].sum()),
        fallbacks=fallbacks,
    )
