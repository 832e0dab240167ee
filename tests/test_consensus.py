"""Consensus: majority of normalised answers (ties → the dearest tier's), evaluated exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
from outcomes_support import random_outcomes

from calibrate.policies.consensus import consensus_frame, normalise


def test_normalise_folds_case_punctuation_and_courtesy() -> None:
    assert (
        normalise("Sure. It ships  TOMORROW!")
        == normalise("it ships tomorrow")
        == ("it ships tomorrow")
    )
    assert normalise("No refund is due.") != normalise("A refund is due.")


def brute_force(o, answers, voters) -> dict[str, float]:
    """Plain Python: vote per request, pay every voter, wait for the slowest."""
    cost, lats, score, labeled = 0, [], 0, 0
    for i in range(o.n):
        ballots = {}
        for j in voters:
            if answers[i][j] is not None:
                ballots.setdefault(normalise(answers[i][j]), []).append(j)
        if ballots:
            top = max(len(v) for v in ballots.values())
            chosen = max(max(v) for v in ballots.values() if len(v) == top)
        else:
            chosen = voters[-1]
        cost += sum(round(o.cost_usd[i, j] * 1e9) for j in voters)
        lats.append(max(round(o.latency_ms[i, j] * 1000) for j in voters))
        if not np.isnan(o.label[i]).any():
            labeled += 1
            score += round(o.label[i, chosen] * 1e6)
    lats.sort()
    return {
        "cost_per_1k_requests_usd": cost / 1e9 / o.n * 1000,
        "quality": score / 1e6 / labeled,
        "latency_p50_ms": lats[max(1, math.ceil(o.n * 0.5)) - 1] / 1000,
        "latency_p95_ms": lats[max(1, math.ceil(o.n * 0.95)) - 1] / 1000,
    }


@pytest.mark.parametrize("k", [3, 4])
def test_consensus_rows_match_brute_force(k: int) -> None:
    o = random_outcomes(40 + k, n=300, k=k)
    rng = np.random.default_rng(k)
    pool = ["Yes.", "yes", "Sure, yes!", "No.", "no refund", None]
    answers = [[pool[rng.integers(len(pool))] for _ in range(k)] for _ in range(o.n)]
    frame = consensus_frame(o, [answers[i] for i in np.flatnonzero(o.labeled)])
    assert frame is not None and frame.height == (1 if k == 3 else 5)
    index = {t: j for j, t in enumerate(o.tiers)}
    for row in frame.iter_rows(named=True):
        voters = tuple(index[t] for t in row["tiers"])
        expected = brute_force(o, answers, voters)
        for key, value in expected.items():
            assert row[key] == value, (row["policy"], key, row[key], value)
        assert row["escalation_rate"] == 1.0 and row["strategy"] == "consensus"


def test_fewer_than_three_tiers_have_no_consensus() -> None:
    o = random_outcomes(1, n=20, k=2)
    assert consensus_frame(o, [["a", "a"]] * o.n) is None
