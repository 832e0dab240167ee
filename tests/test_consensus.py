"""Consensus: majority of normalised answers (ties → the dearest tier's), evaluated exactly."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from outcomes_support import random_outcomes

from calibrate.ingest.stage import ingest
from calibrate.policies.consensus import consensus_frame
from calibrate.store import Store

_FILLER = re.compile(r"^(sure|certainly|of course|okay|ok)\b[\s,.!:;-]*")


def normalise(text: str) -> str:
    """The reference normalisation, in Python: case, punctuation and spacing folded, and a
    leading courtesy word ("Sure.") dropped."""
    folded = re.sub(r"\s+", " ", text.strip().lower())
    folded = _FILLER.sub("", folded)
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]+", " ", folded)).strip()


def codes_of(answers: list[list[str | None]]) -> np.ndarray:
    """The answers' ids by the reference normalisation (-1: no answer)."""
    ids: dict[str, int] = {}
    return np.array(
        [
            [-1 if a is None else ids.setdefault(normalise(a), len(ids)) for a in row]
            for row in answers
        ],
        dtype=np.int64,
    )


TRICKY = [
    "Sure. It ships  TOMORROW!",
    "it ships tomorrow",
    "  it\tships\u00a0tomorrow…",
    "Of   course, it ships tomorrow",
    "of-course it ships tomorrow",
    "okay: it ships tomorrow",
    "OK",
    "ok2 it ships",
    "okays it ships",
    "sure_thing it ships",
    "(sure) it ships",
    "No refund is due.",
    "A refund is due.",
    "Ça coûte 3€ — naïve café",
    "ça coûte 3 naïve café",
    "İstanbul'a gidiyor",
    "i̇stanbul a gidiyor",
    "Straße ½ ① x²",
    "",
    "!!!",
    "中文，答案。",
    "中文 答案",
]


def test_the_store_normalises_answers_like_the_reference(tmp_path: Path) -> None:
    """Equal ids exactly where the reference normalisation is equal (Unicode words, spaces,
    courtesy words as whole words at the start only)."""
    rows = [
        {
            "request_id": f"r{i}",
            "timestamp": "2026-05-01T00:00:00Z",
            "messages": [{"role": "user", "content": "q"}],
            "attempts": [
                {
                    "tier": t,
                    "source": "prod",
                    "output": text,
                    "cost_usd": 0.001,
                    "latency_ms": 10,
                    "status": "ok",
                }
                for t in ("a", "b")
            ],
        }
        for i, text in enumerate(TRICKY)
    ]
    log = tmp_path / "answers.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    store = Store.open(":memory:")
    ingest(store, [log], strict=True, clock=lambda: datetime(2026, 6, 1, tzinfo=UTC))
    codes = store.answer_codes([f"r{i}" for i in range(len(TRICKY))] + ["unknown"], ["a", "b"])
    assert (codes[:-1, 0] == codes[:-1, 1]).all() and (codes[-1] == -1).all()
    reference = [normalise(t) for t in TRICKY]
    same = codes[:-1, 0][:, None] == codes[:-1, 0][None, :]
    assert same.tolist() == [[x == y for y in reference] for x in reference]
    assert normalise(TRICKY[0]) == normalise(TRICKY[1]) == "it ships tomorrow"
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
    frame = consensus_frame(o, codes_of(answers)[o.labeled])
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
    assert consensus_frame(o, np.zeros((o.n, 2), dtype=np.int64)) is None
