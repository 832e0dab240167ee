"""How far the recommended cascade is from the exact optimum (bench/optimum_gap.py, tests/test_optimum.py;
not part of the runtime).

`population` makes a seeded table of requests over 2–4 tiers: each tier is right more often than
the one below it and on easier requests, its confidence is informative but noisy (3% missing),
and a request costs its input tokens times the tier's price. `exhaustive_cost` is the cheapest
policy among always-one-tier and every cascade over an ordered subset of the tiers meeting a
quality-drop limit, over every threshold: it is written apart from the engine (plain numpy, one
loop over the first stage's thresholds for 4 tiers), on this reduction: between two consecutive
labeled confidences of a tier a threshold keeps the same labeled requests, so quality is the
same, and the lowest such threshold is the cheapest (requests stop earlier and pay fewer tiers);
hence the thresholds worth trying are the smallest confidence above each labeled one, the
smallest of all, and +inf. The tests check the reduction against a brute force over every
distinct confidence on small tables.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from calibrate.records.outcomes import Outcomes

PRICES = {2: (1.0, 8.0), 3: (1.0, 3.0, 10.0), 4: (1.0, 2.5, 6.0, 20.0)}  # per 10M tokens
_SLACK = 1e-12


def population(
    seed: int, n: int, k: int, labeled_share: float = 1.0, digits: int | None = None
) -> Outcomes:
    """n requests over k tiers (`digits`: confidences rounded, for ties); `labeled_share` of them
    labeled (0/1 for every tier)."""
    rng = np.random.default_rng(seed)
    difficulty = rng.uniform(size=n)
    skill = np.linspace(0.45, 0.9, k)
    p_ok = np.clip(skill[None, :] + 0.6 * (0.5 - difficulty[:, None]), 0.02, 0.99)
    ok = rng.uniform(size=(n, k)) < p_ok
    conf = np.clip(0.4 * p_ok + 0.3 * ok + rng.normal(0.0, 0.15, (n, k)), 0.0, 1.0)
    if digits is not None:
        conf = np.round(conf, digits)
    conf[rng.uniform(size=(n, k)) < 0.03] = np.nan
    label = ok.astype(np.float64)
    label[rng.uniform(size=n) >= labeled_share] = np.nan
    tokens = rng.integers(50, 2000, n)
    cost = np.round(tokens[:, None] * np.array(PRICES[k])[None, :] * 1e-7, 12)
    text = np.array(["x"] * n, dtype=object)
    return Outcomes(
        tiers=tuple(f"t{j}" for j in range(k)),
        request_ids=np.array([f"r{i}" for i in range(n)], dtype=object),
        timestamp_s=np.zeros(n),
        region=text,
        app=text,
        intent=np.array([None] * n, dtype=object),
        input_tokens=tokens,
        confidence=conf,
        cost_usd=cost,
        latency_ms=np.round(rng.gamma(2.0, 300.0, size=(n, k)), 1),
        label=label,
        incomplete=0,
    )


def exhaustive_cost(o: Outcomes, max_drop: float) -> float:
    """The least total cost (nano-USD, summed over requests) of an always-one-tier policy or a
    cascade over any ordered subset of the tiers whose quality drop vs the last tier is ≤
    max_drop, over every threshold."""
    labeled = o.labeled
    cost = np.rint(o.cost_usd * 1e9)
    score = np.rint(np.nan_to_num(o.label) * 1e6)
    floor = score[labeled, -1].sum() - max_drop * 1e6 * labeled.sum()
    k = len(o.tiers)
    best = min(
        (cost[:, j].sum() for j in range(k) if score[labeled, j].sum() >= floor - _SLACK * 1e6),
        default=math.inf,
    )
    for size in range(2, k + 1):
        for path in itertools.combinations(range(k), size):
            best = min(best, _cascade_cost(o, list(path), cost, score, floor))
    return float(best)


def _candidates(confidence: np.ndarray, labeled: np.ndarray) -> np.ndarray:
    """Thresholds worth trying for one tier (ascending, finite; +inf is the extra option)."""
    values = np.unique(confidence[np.isfinite(confidence)])
    marks = np.unique(confidence[labeled & np.isfinite(confidence)])
    above = np.searchsorted(values, marks, side="right")
    return np.unique(np.r_[values[:1], values[above[above < values.size]]])


def _cascade_cost(
    o: Outcomes, path: list[int], cost: np.ndarray, score: np.ndarray, floor: float
) -> float:
    """The cheapest cascade over `path` meeting the score floor."""
    labeled = o.labeled
    options = []
    for j in path[:-1]:
        grid = _candidates(o.confidence[:, j], labeled)
        b = np.searchsorted(grid, o.confidence[:, j], side="right")
        b[np.isnan(o.confidence[:, j])] = 0
        options.append((grid.size + 1, b))  # option a keeps b > a; a = grid.size is +inf
    paid = np.cumsum(cost[:, path], axis=1)  # a request stopping at stage s pays tiers 0..s
    got = np.where(labeled[:, None], score[:, path], 0.0)
    if len(options) == 1:
        return _last_two(options[0], paid, got, floor, 0.0, 0.0)
    if len(options) == 2:
        return _two_stages(options, paid, got, floor, 0.0, 0.0)
    (g0, b0), rest = options[0], options[1:]
    best = math.inf
    for a in range(g0):  # requests with b0 > a stop at the first tier
        stop = b0 > a
        head_cost, head_score = paid[stop, 0].sum(), got[stop, 0].sum()
        go = ~stop
        sub = [(g, b[go]) for g, b in rest]
        best = min(best, _two_stages(sub, paid[go, 1:], got[go, 1:], floor, head_cost, head_score))
    return best


def _last_two(
    option: tuple[int, np.ndarray],
    paid: np.ndarray,
    got: np.ndarray,
    floor: float,
    head_cost: float,
    head_score: float,
) -> float:
    """One deciding stage over these requests (paid/got: their two stops' columns)."""
    g, b = option

    def kept(w: np.ndarray) -> np.ndarray:  # per option a: Σ over b > a
        return np.append(np.bincount(b, w, g)[::-1].cumsum()[::-1][1:], 0.0)

    cost = head_cost + kept(paid[:, 0]) + (paid[:, 1].sum() - kept(paid[:, 1]))
    score = head_score + kept(got[:, 0]) + (got[:, 1].sum() - kept(got[:, 1]))
    ok = score >= floor - _SLACK * 1e6
    return float(cost[ok].min()) if ok.any() else math.inf


def _two_stages(
    options: list[tuple[int, np.ndarray]],
    paid: np.ndarray,
    got: np.ndarray,
    floor: float,
    head_cost: float,
    head_score: float,
) -> float:
    """Two deciding stages over these requests: 2-D prefix sums over their (b1, b2) cells."""
    (g1, b1), (g2, b2) = options
    shape = (g1, g2)
    cell = b1 * g2 + b2

    def hist(w: np.ndarray) -> np.ndarray:
        return np.bincount(cell, w, shape[0] * shape[1]).reshape(shape)

    def at_or_below(h: np.ndarray, axis: int) -> np.ndarray:  # Σ_{b ≤ a} along axis
        return np.cumsum(h, axis=axis)

    def above(h: np.ndarray, axis: int) -> np.ndarray:  # Σ_{b > a} along axis
        return h.sum(axis=axis, keepdims=True) - at_or_below(h, axis)

    def metric(w: np.ndarray) -> np.ndarray:
        first = above(hist(w[:, 0]).sum(axis=1), 0)[:, None]  # b1 > a1
        second = above(at_or_below(hist(w[:, 1]), 0), 1)  # b1 ≤ a1, b2 > a2
        last = at_or_below(at_or_below(hist(w[:, 2]), 0), 1)  # b1 ≤ a1, b2 ≤ a2
        return first + second + last

    cost = head_cost + metric(paid)
    score = head_score + metric(got)
    ok = score >= floor - _SLACK * 1e6
    return float(cost[ok].min()) if ok.any() else math.inf
