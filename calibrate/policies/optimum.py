"""The measured optimum of a cascade family: its cheapest policy meeting the target on the data.

A stage's threshold matters only through the requests it keeps. Quality is measured on the labeled
requests, so every threshold between two consecutive labeled confidences of a tier keeps the same
labeled requests, and the lowest of them (the smallest confidence of any request above the lower
labeled one) is the cheapest: a lower threshold lets more requests stop at this tier, and a
cascade pays every tier it touches. These class thresholds (`classes`), one per labeled confidence
plus one below them all and escalate-all, contain the exact optimum over every real threshold.
Cost and score of every combination are prefix sums over cells (`grid.evaluate_sums`).

When the combinations exceed CELL_LIMIT (3 tiers with over ~2,000 labeled confidences, 4 tiers
with over ~160), a strided subset of the classes, plus the class of the family's best grid policy
(which keeps the same labeled requests at no more cost), is evaluated first; from its STARTS best
combinations (far enough apart) local searches evaluate windows around their incumbent: all stages
at once, each pair of stages over most of their classes (4 tiers), each stage alone over every
class, moving to the best until no window improves it. Each window is exact; the result is at
least as good as the grid's, and exact when no window was needed (tests/test_optimum.py and
bench/optimum_gap.py measure it against an exhaustive search).

With an escalation band, the lowest first-stage threshold escalating at least its low end joins
the classes (inside a class, the cheapest threshold within the band); a budget makes the best
quality under it the optimum. The latency bound is not searched: the sweep applies it to the row.

The classes are data confidences, but which ones depends on which requests carry labels, and the
search reads the labels: the result is a measured policy, never a certified one (Learn-then-Test
needs the thresholds fixed before the labels are read; certification keeps the label-free grids).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from calibrate.policies.families import (
    Family,
    SweepColumns,
    evaluate_families,
    measured,
    premium_family,
    stop_money,
    without_forced,
)
from calibrate.policies.grid import evaluate_sums
from calibrate.records.outcomes import Outcomes
from calibrate.records.policy import CONFIDENCE_STRATEGIES

CELL_LIMIT = 1 << 22  # class combinations evaluated at once (cost and score only)
STARTS = 4  # local searches, from the best strided combinations far enough apart
_ROUNDS = 8  # at most this many passes of windows per local search
# Beyond CELL_LIMIT, the share of it each evaluation gets: the strided start and a pair of stages
# over most of their classes; all stages around the incumbent.
_STRIDED, _PAIR, _CUBE = 4, 4, 16


@dataclass(frozen=True)
class Target:
    """What the measured selection asks of a policy (`sweep.selection.measured_target` makes it
    from the objective, tolerance included): quality drop ≤ `max_drop`, an escalation rate in
    `escalation_band`, a cost per 1k requests ≤ `max_cost_per_1k_usd`. With a budget the best
    quality under it is wanted, else the lowest cost."""

    max_drop: float
    escalation_band: tuple[float, float] | None = None
    max_cost_per_1k_usd: float | None = None

    def meets(self, quality_drop, escalation_rate, cost_per_1k_usd) -> np.ndarray:
        ok = np.asarray(quality_drop <= self.max_drop)
        if self.escalation_band is not None:
            low, high = self.escalation_band
            ok = ok & (escalation_rate >= low) & (escalation_rate <= high)
        if self.max_cost_per_1k_usd is not None:
            ok = ok & (cost_per_1k_usd <= self.max_cost_per_1k_usd)
        return ok

    def key(self, quality, cost_per_1k_usd) -> tuple:
        """Smaller is better."""
        if self.max_cost_per_1k_usd is not None:
            return (-quality, cost_per_1k_usd)
        return (cost_per_1k_usd, -quality)


@dataclass(frozen=True)
class Optima:
    """The measured optima that beat their family's grid: frontier rows (columns of
    `evaluate_families`) and, per policy id, the one-policy family and option to walk it."""

    rows: pl.DataFrame | None
    index: dict[str, tuple[Family, tuple[int, ...]]]


def measured_optima(
    outcomes: Outcomes,
    families: list[Family],
    frontier: pl.DataFrame,
    columns: SweepColumns,
    target: Target,
) -> Optima:
    """Per cascade (or hybrid) family, its measured optimum when it beats the family's best grid
    policy (`frontier`: the rows `evaluate_families` made of `families` with `columns`)."""
    if outcomes.n == 0 or not outcomes.labeled.any():
        return Optima(None, {})
    search = Search(outcomes, columns, target)

    def row_of(one: Family) -> pl.DataFrame:
        return evaluate_families(outcomes, [one], columns=columns).head(1)

    return search_optima(search, families, frontier, outcomes.tiers, row_of)


def search_optima(
    search: Search,
    families: list[Family],
    frontier: pl.DataFrame,
    tiers: tuple[str, ...],
    row_of: Callable[[Family], pl.DataFrame],
) -> Optima:
    target = search.target
    meets = target.meets(
        frontier["quality_drop"].to_numpy(),
        frontier["escalation_rate"].to_numpy(),
        frontier["cost_per_1k_requests_usd"].to_numpy(),
    )
    feasible = frontier.filter(pl.Series(meets))
    known = set(frontier["policy"].to_list())
    frames, index = [], {}
    for family in families:
        if family.kind not in CONFIDENCE_STRATEGIES or not family.grids:
            continue
        own = feasible.filter(
            (pl.col("strategy") == family.kind)
            & (pl.col("tiers").list.join(">") == ">".join(tiers[j] for j in family.path))
        )
        incumbent = None if own.is_empty() else _best(own, target)
        start = None if incumbent is None else tuple(incumbent["thresholds"][0])
        thresholds = search.optimum(family, start)
        if thresholds is None:
            continue
        one = _one_policy(family, thresholds)
        row = row_of(one)
        pid = row["policy"][0]
        if pid in known or (
            incumbent is not None
            and target.key(*_quality_cost(row)) >= target.key(*_quality_cost(incumbent))
        ):
            continue
        known.add(pid)
        frames.append(row)
        index[pid] = (one, (0,) * len(one.grids))
    return Optima(pl.concat(frames, how="vertical") if frames else None, index)


def _best(rows: pl.DataFrame, target: Target) -> pl.DataFrame:
    """The row the measured selection prefers (the same order as `sweep.selection`'s)."""
    if target.max_cost_per_1k_usd is not None:
        order = ["quality", "cost_per_1k_requests_usd"], [True, False]
    else:
        order = ["cost_per_1k_requests_usd", "quality", "escalation_rate"], [False, True, False]
    return rows.sort(order[0], descending=order[1], maintain_order=True).head(1)


def _quality_cost(row: pl.DataFrame) -> tuple[float, float]:
    return float(row["quality"][0]), float(row["cost_per_1k_requests_usd"][0])


def _one_policy(family: Family, thresholds: tuple[float, ...]) -> Family:
    """The family with one threshold per stage (none where it escalates everything): option 0 at
    every stage is that policy."""
    grids = tuple(np.array([t]) if math.isfinite(t) else np.array([]) for t in thresholds)
    return Family(
        family.kind,
        family.path,
        grids,
        request_ids=family.request_ids,
        forced=family.forced,
    )


@dataclass(frozen=True)
class Classes:
    """A tier's class thresholds (ascending, finite), the labeled confidences that delimit them,
    and each request's class bin: how many class thresholds are ≤ its confidence (0 without a
    signal), as `cascade.threshold_bins` gives.

    Class g keeps the labeled confidences above the g smallest; its threshold is the smallest
    confidence of any request above the g-th smallest labeled one (the smallest of all for g = 0).
    Option g < reps.size is class g; option reps.size escalates everything. Thresholds are finite:
    keeping only labeled requests of confidence +inf is not a class. `with_threshold` adds one
    more threshold inside a class (the options then number one more)."""

    reps: np.ndarray
    marks: np.ndarray
    bins: np.ndarray

    def option_of(self, threshold: float) -> int:
        """The option keeping the labeled requests `threshold` keeps, at no more cost: the
        smallest threshold above the last labeled confidence below `threshold`."""
        if math.isinf(threshold) and threshold > 0:
            return self.reps.size
        below = int(np.searchsorted(self.marks, threshold, side="left"))
        if below == 0:
            return 0
        return int(np.searchsorted(self.reps, self.marks[below - 1], side="right"))

    def with_threshold(self, threshold: float, confidence: np.ndarray) -> Classes:
        """These classes plus `threshold` (a confidence of `confidence`, this tier's)."""
        if np.isin(threshold, self.reps):
            return self
        bins = self.bins + (confidence >= threshold)
        return Classes(np.sort(np.r_[self.reps, threshold]), self.marks, bins)


def classes(confidence: np.ndarray, labeled: np.ndarray) -> Classes:
    """A tier's classes (`Classes`), from every request's confidence and which are labeled:
    O(n log labeled), no sort of the n confidences."""
    marks = np.unique(confidence[labeled])
    marks = marks[np.isfinite(marks)]
    finite = np.isfinite(confidence)
    below = np.searchsorted(marks, confidence[finite], side="left")  # labeled confidences below
    lowest = np.full(marks.size + 1, np.inf)
    np.minimum.at(lowest, below, confidence[finite])  # a group's lowest: its class threshold
    present = np.isfinite(lowest)  # every group but the last holds a labeled confidence
    bins = np.zeros(confidence.size, dtype=np.int64)
    bins[finite] = np.cumsum(present)[below]
    bins[np.isposinf(confidence)] = int(present.sum())
    return Classes(lowest[present], marks, bins)


class Search:
    """The search of one sweep: class thresholds and bins per tier (shared by the families)."""

    def __init__(self, outcomes: Outcomes, columns: SweepColumns, target: Target) -> None:
        self.outcomes, self.columns, self.target = outcomes, columns, target
        self.requests = outcomes.n
        self.tiers: dict[int, Classes] = {}
        self.premium_score = float(stop_money(columns, premium_family(outcomes))[1][0].sum())

    def space(self, family: Family) -> Space:
        stages = []
        for j in family.path[:-1]:
            if j not in self.tiers:
                self.tiers[j] = classes(self.outcomes.confidence[:, j], self.outcomes.labeled)
            stages.append(self.tiers[j])
        floor = self._band_floor(family)
        if floor is not None:
            stages[0] = stages[0].with_threshold(floor, self.outcomes.confidence[:, family.path[0]])
        bins = without_forced([c.bins for c in stages], family.forced)
        money = stop_money(self.columns, family)
        return Space(
            self,
            family,
            tuple(stages),
            tuple(c.reps for c in stages),
            tuple(bins),
            money,
            self.columns.labeled_rows,
        )

    def _band_floor(self, family: Family) -> float | None:
        """With an escalation band, the lowest first-stage threshold escalating at least its low
        end: inside a class below it, the cheapest threshold within the band (None: no band, or
        only escalate-all reaches it)."""
        band = self.target.escalation_band
        if band is None:
            return None
        confidence = self.outcomes.confidence[:, family.path[0]]
        if family.forced is not None:
            confidence = np.where(family.forced >= 0, np.nan, confidence)
        ordered = np.sort(confidence[np.isfinite(confidence) | np.isposinf(confidence)])
        values = np.unique(ordered[np.isfinite(ordered)])
        kept = ordered.size - np.searchsorted(ordered, values, side="left")
        zero = np.zeros(values.size)  # only the escalation rate is read
        escalation = measured(family, self.outcomes.n, 1, (zero, zero, kept), 0.0).escalation_rate
        reach = np.flatnonzero(np.asarray(escalation) >= band[0])
        return float(values[reach[0]]) if reach.size else None

    def optimum(self, family: Family, start: tuple[float, ...] | None) -> tuple[float, ...] | None:
        """The family's measured optimum (None when no policy of it meets the target), from its
        best grid policy's thresholds `start` when one meets the target."""
        space = self.space(family)
        sizes = [r.size + 1 for r in space.reps]
        if math.prod(sizes) <= CELL_LIMIT:
            found = space.evaluate([np.arange(r.size) for r in space.reps])
            return space.thresholds(found[0][0]) if found else None
        side = max(int((CELL_LIMIT / _STRIDED) ** (1 / len(sizes))) - 1, 1)
        picks = [np.round(np.linspace(0, r.size - 1, min(side, r.size))) for r in space.reps]
        if start is not None:  # moved to its class, unless that leaves the escalation band
            own = [c.option_of(t) for c, t in zip(space.stages, start, strict=True)]
            picks = [np.r_[p, a] for p, a in zip(picks, own, strict=True)]
        picks = [
            np.unique(p[p < r.size]).astype(np.int64)
            for p, r in zip(picks, space.reps, strict=True)
        ]
        starts = space.evaluate(picks, STARTS)
        if not starts:
            return None
        seen: set = set()
        ends = [space.descend(s, sizes, seen) for s in starts]
        return space.thresholds(min(ends, key=lambda f: f[1])[0])


def _windows(sizes: list[int]) -> list[list[int]]:
    """Window widths per stage: every stage at once around the incumbent; with three stages or
    more, each pair of stages over most of their classes, the others at the incumbent's class;
    each stage alone over all its classes."""
    d = len(sizes)
    shapes = [[max(int((CELL_LIMIT / _CUBE) ** (1 / d)) - 1, 1)] * d]
    if d > 2:
        pair = max(int(math.sqrt(CELL_LIMIT / _PAIR / 2 ** (d - 2))) - 1, 1)
        shapes += [
            [pair if j in p else 1 for j in range(d)] for p in itertools.combinations(range(d), 2)
        ]
    return shapes + [[sizes[i] if j == i else 1 for j in range(d)] for i in range(d)]


_Found = tuple[tuple[int, ...], tuple[float, float]]  # option per stage (class index), its key


@dataclass(frozen=True)
class Space:
    """One family's search space: per stage the class thresholds (option g < size: reps[g];
    option size: escalate everything) and each row's class bin, and the stops' cost (every row)
    and score (`labeled_rows`). Rows are requests, or (`weights`: requests per row) cells of
    requests sharing their class bins, followed by the labeled requests at no cost."""

    search: Search
    family: Family
    stages: tuple[Classes, ...]
    reps: tuple[np.ndarray, ...]
    bins: tuple[np.ndarray, ...]
    money: tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]
    labeled_rows: np.ndarray
    weights: np.ndarray | None = None

    def thresholds(self, option: tuple[int, ...]) -> tuple[float, ...]:
        return tuple(
            float(r[a]) if a < r.size else math.inf for r, a in zip(self.reps, option, strict=True)
        )

    def around(self, incumbent: _Found, widths: list[int]) -> list[np.ndarray]:
        """Per stage, up to `widths[j]` consecutive classes around the incumbent's."""
        picks = []
        for r, a, w in zip(self.reps, incumbent[0], widths, strict=True):
            low = max(0, min(a - w // 2, r.size - w))
            picks.append(np.arange(low, min(low + w, r.size)))  # holds a (or r.size - 1)
        return picks

    def descend(self, incumbent: _Found, sizes: list[int], seen: set) -> _Found:
        """Windows around the incumbent, moving to the best, until none improves it (`seen`: the
        (window, incumbent) pairs already evaluated by any local search of this family)."""
        windows = _windows(sizes)
        for _ in range(_ROUNDS * len(windows)):
            todo = [w for w in range(len(windows)) if (w, incumbent[0]) not in seen]
            if not todo:
                break
            seen.add((todo[0], incumbent[0]))
            for found in self.evaluate(self.around(incumbent, windows[todo[0]])):
                incumbent = found if found[1] < incumbent[1] else incumbent
        return incumbent

    def evaluate(self, picks: list[np.ndarray], count: int = 1) -> list[_Found]:
        """The best policy meeting the target among the picked classes per stage (ascending,
        distinct; escalate-all always included); with `count` > 1, up to that many, each at least
        two picks away from the better ones in some stage. Empty when none meets the target."""
        bins = [
            np.take(_picked_bins(p, r.size), b)
            for p, r, b in zip(picks, self.reps, self.bins, strict=True)
        ]
        sizes = [p.size + 1 for p in picks]
        search = self.search
        sums = evaluate_sums(bins, sizes, *self.money, self.labeled_rows)
        n, labeled = search.requests, int(self.labeled_rows.size)
        kept = None
        if search.target.escalation_band is not None:
            first = (
                sums.first_stop if self.weights is None else _kept(bins[0], sizes[0], self.weights)
            )
            kept = first.reshape((-1,) + (1,) * (len(sizes) - 1))
        m = measured(
            self.family,
            n,
            labeled,
            (sums.cost_nano_usd, sums.score_micro, kept),
            search.premium_score,
        )
        ok = search.target.meets(m.quality_drop, m.escalation_rate, m.cost_per_1k_requests_usd)
        if not ok.any():
            return []
        key = search.target.key(m.quality, m.cost_per_1k_requests_usd)
        return [
            (
                tuple(
                    int(p[a]) if a < p.size else r.size
                    for p, r, a in zip(picks, self.reps, at, strict=True)
                ),
                (float(key[0][at]), float(key[1][at])),
            )
            for at in _tops(ok, key, count)
        ]


def _kept(bins: np.ndarray, size: int, weights: np.ndarray) -> np.ndarray:
    """`GridSums.first_stop` of weighted rows: per option, the requests the first stage keeps."""
    at_least = np.bincount(bins, weights, size)[::-1].cumsum()[::-1]
    return np.append(at_least[1:], 0)


def _picked_bins(picks: np.ndarray, classes: int) -> np.ndarray:
    """Per class bin (0..classes), the bin among the picked class thresholds: how many picks are
    below it (a request in class bin b has confidence ≥ the thresholds of classes < b)."""
    if picks.size and picks[-1] - picks[0] + 1 == picks.size:  # consecutive classes
        return np.clip(np.arange(classes + 1) - picks[0], 0, picks.size)
    return np.searchsorted(picks, np.arange(classes + 1), side="left")


def _tops(ok: np.ndarray, key: tuple, count: int) -> list[tuple[int, ...]]:
    """Positions of the best `count` entries meeting the target by (key[0], key[1]), each more
    than two positions away from every better one taken in at least one axis."""
    primary = np.where(ok, key[0], np.inf)
    if count == 1:
        tied = ok & (primary == primary.min())
        at = np.argmin(np.where(tied, key[1], np.inf))
        return [tuple(int(i) for i in np.unravel_index(int(at), ok.shape))]
    rows = np.flatnonzero(ok)
    if rows.size > 1 << 12:  # the best few thousand by the first key are enough to choose from
        rows = rows[np.argpartition(primary.reshape(-1)[rows], 1 << 12)[: 1 << 12]]
    flat = [np.broadcast_to(k, ok.shape).reshape(-1)[rows] for k in key]
    taken: list[np.ndarray] = []
    for at in rows[np.lexsort((flat[1], flat[0]))]:
        position = np.array(np.unravel_index(int(at), ok.shape))
        if all(np.abs(position - t).max() > 2 for t in taken):
            taken.append(position)
            if len(taken) == count:
                break
    return [tuple(int(i) for i in t) for t in taken]
