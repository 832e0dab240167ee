"""Consensus (strategy 5): a set of tiers answers every request in parallel; the majority of
their normalised answers wins, a tie goes to the most expensive tier's answer. Quality is the label
of the chosen answer (the label of the dearest tier giving it), cost the sum of the set's costs,
latency the slowest of the set (the calls run in parallel).

A tier without an `ok` answer abstains. Each set of ≥ 3 tiers is evaluated by the same exact engine
as every other policy: the set becomes one virtual tier (per request: summed cost, maximum latency,
the chosen answer's label) placed just before the premium tier, and "always the virtual tier" is
its one policy. Consensus policies are reported next to the others and never selected by the
sweep (they cost more than always-premium); a routing.yaml with `strategy: consensus` names the
voting tiers, and `evaluate` scores it with `consensus_row`.

Answers are compared normalised (case, punctuation and spacing folded, a leading courtesy word
such as "Sure." dropped); the store normalises them in SQL and hands over one id per distinct
normalised answer (`Store.answer_codes`), so the vote works on integers. The vote only decides
which label the virtual tier carries; its cost and latency do not depend on it. So the vote is
taken on the labeled requests alone (`codes` holds their ids, in the order of `outcomes.labeled`):
exact, with answers read for the labels, not for the traffic. At scale (`consensus_frame_from_cells`)
the cost and latency of every vote are aggregated in SQL over all requests and only the labeled
requests are in memory.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import polars as pl

from calibrate.policies.assignment import take_rows
from calibrate.policies.families import Family, evaluate_families, family_frame, premium_family
from calibrate.policies.family_cells import evaluate_rows
from calibrate.policies.frontier import policy_columns
from calibrate.policies.grid import GridResult
from calibrate.records.cells import StopRows
from calibrate.records.outcomes import Outcomes
from calibrate.records.policy import Policy
from calibrate.store import aggregates_sql
from calibrate.store.aggregates_sql import Query

MIN_VOTERS = 3


def chosen_tier(codes: np.ndarray, voters: tuple[int, ...]) -> np.ndarray:
    """Per request, the tier (index into the codes' columns: the tiers) whose answer the vote
    picks: among the answers with the most votes, the one the dearest tier gave; the last voter
    when none answered. `codes` are the normalised answers' ids (-1: no answer), vectorized."""
    codes = codes[:, list(voters)]  # (n, v)
    valid = codes >= 0
    same = (codes[:, :, None] == codes[:, None, :]) & valid[:, :, None] & valid[:, None, :]
    votes = same.sum(axis=2)  # votes for the answer voter j gave (0 when j did not answer)
    best = valid & (votes == votes.max(axis=1, keepdims=True))
    dearest = len(voters) - 1 - np.argmax(best[:, ::-1], axis=1)
    chosen = np.asarray(voters, dtype=np.int64)[dearest]
    chosen[~valid.any(axis=1)] = voters[-1]
    return chosen


def consensus_outcomes(outcomes: Outcomes, voters: tuple[int, ...], chosen: np.ndarray) -> Outcomes:
    """`outcomes` with one virtual tier for the vote inserted before the premium tier."""
    rows = np.arange(outcomes.n)
    virtual = {
        "confidence": np.full(outcomes.n, np.nan),
        "cost_usd": outcomes.cost_usd[:, list(voters)].sum(axis=1),
        "latency_ms": outcomes.latency_ms[:, list(voters)].max(axis=1),
        "label": outcomes.label[rows, chosen],
    }
    # a request labeled for every tier stays labeled; the chosen answer's label is then known
    virtual["label"][~outcomes.labeled] = np.nan
    columns = {
        name: np.insert(getattr(outcomes, name), -1, values, axis=1)
        for name, values in virtual.items()
    }
    name = Policy("consensus", tuple(outcomes.tiers[j] for j in voters)).tiers_text
    tiers = (*outcomes.tiers[:-1], name, outcomes.tiers[-1])
    return dataclasses.replace(outcomes, tiers=tiers, **columns)


def consensus_row(outcomes: Outcomes, codes: np.ndarray, voters: tuple[int, ...]) -> pl.DataFrame:
    """The one frontier row of the vote among `voters` (indices into the outcomes' tiers; the
    premium tier is the last of the outcomes); `codes`: the labeled requests' answer ids."""
    k = len(outcomes.tiers)
    chosen = np.full(outcomes.n, voters[-1], dtype=np.int64)  # unlabeled: no label to choose
    chosen[outcomes.labeled] = chosen_tier(codes, voters)
    augmented = consensus_outcomes(outcomes, voters, chosen)
    frame = evaluate_families(augmented, [Family("always", (k - 1,))])
    policy = Policy("consensus", tuple(outcomes.tiers[j] for j in voters))
    return frame.with_columns(
        *policy_columns([policy] * frame.height).values(),
        escalation_rate=pl.lit(1.0),  # every request reaches beyond the cheapest tier
    )


def consensus_frame(outcomes: Outcomes, codes: np.ndarray) -> pl.DataFrame | None:
    """One frontier row per set of ≥ 3 tiers (None with fewer than 3 tiers); `codes`: the
    labeled requests' answer ids."""
    k = len(outcomes.tiers)
    frames = [
        consensus_row(outcomes, codes, voters)
        for size in range(MIN_VOTERS, k + 1)
        for voters in itertools.combinations(range(k), size)
    ]
    return pl.concat(frames, how="vertical") if frames else None


def consensus_slices(
    outcomes: Outcomes, codes: np.ndarray, slices: dict[str, np.ndarray]
) -> pl.DataFrame | None:
    """Per slice (name → row mask; the user's high-stakes intents): always-premium and every
    consensus set on the slice's requests alone, with the quality gain over premium per extra
    dollar per 1k requests (`codes`: the labeled requests' answer ids). None with fewer than 3
    tiers."""
    k = len(outcomes.tiers)
    if k < MIN_VOTERS:
        return None
    frames = []
    labeled = np.flatnonzero(outcomes.labeled)
    for name, mask in slices.items():
        sub = take_rows(outcomes, mask)
        premium = evaluate_families(sub, [Family("always", (k - 1,))])
        voted = consensus_frame(sub, codes[mask[labeled]])
        assert voted is not None, "the slice has the same k >= MIN_VOTERS tiers"
        frames.append(_slice_frame(name, premium, voted))
    return pl.concat(frames, how="vertical") if frames else None


def _slice_frame(name: str, premium: pl.DataFrame, voted: pl.DataFrame) -> pl.DataFrame:
    """One slice's rows: always-premium and each vote, with the gain over premium per extra
    dollar per 1k requests."""
    frame = pl.concat([premium, voted.select(premium.columns)], how="vertical")
    base_q = premium["quality"][0]
    base_cost = premium["cost_per_1k_requests_usd"][0]
    return frame.select(
        pl.lit(name).alias("slice"),
        "policy",
        "strategy",
        "requests",
        "labeled",
        "quality",
        (pl.col("quality") - base_q).alias("gain_vs_premium"),
        "cost_per_1k_requests_usd",
        (pl.col("cost_per_1k_requests_usd") - base_cost).alias("extra_cost_per_1k_usd"),
    )


def consensus_row_from_cells(
    labeled: Outcomes,
    codes: np.ndarray,
    voters: tuple[int, ...],
    rows: StopRows,
    premium: GridResult,
) -> pl.DataFrame:
    """`consensus_row` from the vote's SQL aggregate (`rows`: `aggregates_sql.consensus_rows`),
    the labeled requests (`codes`: their answer ids, in the order of `labeled.labeled`) and the
    premium tier's metrics."""
    k = len(labeled.tiers)
    chosen = np.full(labeled.n, voters[-1], dtype=np.int64)
    chosen[labeled.labeled] = chosen_tier(codes, voters)
    augmented = consensus_outcomes(labeled, voters, chosen)
    family = Family("always", (k - 1,))
    result = evaluate_rows(augmented, family, [rows])
    frame = family_frame(augmented, family, result, premium)
    policy = Policy("consensus", tuple(labeled.tiers[j] for j in voters))
    return frame.with_columns(
        *policy_columns([policy] * frame.height).values(),
        escalation_rate=pl.lit(1.0),
    )


def consensus_frame_from_cells(
    labeled: Outcomes, codes: np.ndarray, query: Query, relation: str
) -> pl.DataFrame | None:
    """`consensus_frame` with every vote's cost and latency aggregated in SQL over `relation`
    (every request) and its quality from the labeled requests (`codes`: their answer ids)."""
    k = len(labeled.tiers)
    if k < MIN_VOTERS:
        return None
    reference = premium_family(labeled)
    stops = [(0, (k - 1,))]
    premium_rows = aggregates_sql.stop_rows(query, relation, [], stops)
    premium = evaluate_rows(labeled, reference, premium_rows)
    frames = [
        consensus_row_from_cells(
            labeled, codes, voters, aggregates_sql.consensus_rows(query, relation, voters), premium
        )
        for size in range(MIN_VOTERS, k + 1)
        for voters in itertools.combinations(range(k), size)
    ]
    return pl.concat(frames, how="vertical")


def consensus_slices_from_cells(
    labeled: Outcomes,
    codes: np.ndarray,
    slices: dict[str, tuple[str, ...]],
    query: Query,
    relation: str,
) -> pl.DataFrame | None:
    """`consensus_slices` with each slice's cost and latency aggregated in SQL over its requests
    (`slices`: name → its intents) and its quality from its labeled requests (`codes`: the
    labeled requests' answer ids)."""
    k = len(labeled.tiers)
    if k < MIN_VOTERS:
        return None
    frames = []
    for name, intents in slices.items():
        mask = np.isin(labeled.intent.astype(str), list(intents)) & np.array(
            [i is not None for i in labeled.intent], dtype=bool
        )
        sub, rows = take_rows(labeled, mask), aggregates_sql.with_intents(relation, intents)
        reference = premium_family(sub)
        premium_rows = aggregates_sql.stop_rows(query, rows, [], [(0, (k - 1,))])
        result = evaluate_rows(sub, reference, premium_rows)
        premium = family_frame(sub, reference, result, result)
        voted = consensus_frame_from_cells(sub, codes[mask], query, rows)
        assert voted is not None, "the slice has the same k >= MIN_VOTERS tiers"
        frames.append(_slice_frame(name, premium, voted))
    return pl.concat(frames, how="vertical") if frames else None
