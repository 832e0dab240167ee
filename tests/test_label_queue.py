"""The labelling queue: strata, allocation, exact inclusion probabilities, the review sheet."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from itertools import combinations
from math import comb
from pathlib import Path

import numpy as np
import pytest
from label_support import HARD_INTENT, clock, make_store, query

from calibrate.config.patterns import SYNTAX_HINT
from calibrate.config.tiers import TiersConfig
from calibrate.errors import ConfigError, DataError
from calibrate.labels import queue as label_queue
from calibrate.labels.queue import Design, allocate, draw, kept_tier, second_phase_prob, strata
from calibrate.records.labels import Population
from calibrate.store import Store

TIERS = TiersConfig.model_validate(
    {"tiers": [{"name": "small", "model": "s"}, {"name": "large", "model": "l"}]}
)


def population(conf: list[float], intent: list[str] | None = None, tokens: list[int] | None = None) -> Population:  # fmt: skip
    n = len(conf)
    return Population(
        tiers=("small", "large"),
        request_ids=np.array([f"r-{i}" for i in range(n)], dtype=object),
        confidence=np.column_stack([conf, np.full(n, 0.9)]),
        input_tokens=np.array(tokens or [10] * n),
        intent=np.array(intent or ["x"] * n, dtype=object),
        keyword_hit=np.zeros(n, dtype=bool),
    )


def test_kept_and_strata() -> None:
    pop = population(
        [0.9, 0.55, 0.52, 0.2, np.nan, 0.95, 0.51],
        intent=["x", "x", "x", "x", "x", "hard", "x"],
        tokens=[10, 10, 10, 10, 10, 10, 900],
    )
    assert kept_tier(pop, {"small": 0.5}).tolist() == [0, 0, 0, -1, -1, 0, 0]
    label, notes = strata(pop, Design(n=4, thresholds={"small": 0.5}, near_share=0.4,
                                      intents=("hard",), long_input_tokens=500))  # fmt: skip
    # kept: 0, 1, 2, 5, 6; complex: 5 (intent), 6 (long); near: the lowest 40% of the kept
    # confidences (0.51, 0.52) = 6 (already complex) and 2
    assert label.tolist() == ["", "", "near_threshold", "", "", "complex", "complex"]
    assert notes == ()
    label, notes = strata(pop, Design(n=4, intents=("hard",)))
    assert label.tolist() == ["", "", "", "", "", "complex", ""]  # no thresholds: no near stratum
    assert "no thresholds given" in notes[0]


def test_keyword_rules_decide_kept_and_ruled_requests_are_never_near_a_threshold() -> None:
    pop = population([0.9, 0.55, 0.52, 0.2, 0.51, 0.95, 0.1])
    # rows 2 and 6 are sent to small by a rule (6 whatever its low confidence), row 3 to large
    pop = replace(pop, ruled=np.array([-1, -1, 0, 1, -1, -1, 0]))

    assert kept_tier(pop, {"small": 0.5}).tolist() == [0, 0, 0, -1, 0, 0, 0]
    label, _ = strata(pop, Design(n=4, thresholds={"small": 0.5}, near_share=0.5))
    # near: the lowest half of the four kept by confidence (0.9, 0.55, 0.51, 0.95), not the
    # ruled 0.52 and 0.1
    assert label.tolist() == ["", "near_threshold", "", "", "near_threshold", "", ""]


def test_sample_with_a_hybrids_rules_keeps_ruled_requests_out_of_the_near_stratum(
    tmp_path: Path,
) -> None:
    db, _ = make_store(tmp_path, n=120)
    rule = ("chargeback", "small")
    design = Design(
        n=60, uniform_share=0.7, thresholds={"small": 0.5}, near_share=1.0, rules=(rule,)
    )
    out = tmp_path / "review.csv"
    with Store.open(db) as store:
        label_queue.sample(store, TIERS, design, out, seed=3, clock=clock)
        recorded = store.con.execute("SELECT design FROM label_samples").fetchall()[0][0]
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    near = [r for r in rows if r["stratum"] == "near_threshold"]
    assert near and not any("chargeback" in r["prompt"] for r in near)
    assert '"rules": [["chargeback", "small"]]' in recorded
    with Store.open(db) as store, pytest.raises(ConfigError, match="keyword rule to xl"):
        label_queue.sample(store, TIERS, replace(design, rules=(("x", "xl"),)), out, seed=3,
                           clock=clock)  # fmt: skip


def test_allocation_splits_evenly_and_passes_on_what_a_stratum_cannot_take() -> None:
    assert allocate(10, {"complex": 100, "near_threshold": 100}) == {
        "complex": 5,
        "near_threshold": 5,
    }
    assert allocate(10, {"complex": 2, "near_threshold": 100}) == {
        "complex": 2,
        "near_threshold": 8,
    }
    assert allocate(10, {"complex": 0, "near_threshold": 3}) == {"complex": 0, "near_threshold": 3}


def test_second_phase_probability_by_enumeration() -> None:
    """N = 7, uniform draw of 3, stratum of 4 with 2 allocated: enumerate every uniform draw."""
    big_n, n_u, members, alloc = 7, 3, [0, 1, 2, 3], 2
    total = 0.0
    draws = list(combinations(range(big_n), n_u))
    for uniform in draws:
        if 0 in uniform:
            continue
        left = len([m for m in members if m not in uniform])
        total += min(1.0, alloc / left)
    exact = total / comb(big_n - 1, n_u)
    assert second_phase_prob(big_n, n_u, len(members), alloc) == pytest.approx(exact)
    assert second_phase_prob(10, 4, 1, 1) == 1.0
    assert second_phase_prob(10, 4, 5, 0) == 0.0


def test_draw_sizes_and_uniform_share() -> None:
    rng = np.random.default_rng(0)
    conf = rng.random(1000).tolist()
    pop = population(conf, intent=["hard" if i % 9 == 0 else "x" for i in range(1000)])
    d = draw(pop, Design(n=90, thresholds={"small": 0.5}, intents=("hard",)), rng)
    assert d.rows.size == 90 == np.unique(d.rows).size
    assert (d.stratum == "uniform").sum() == 63  # ⌈0.7 × 90⌉
    assert d.allocation == {"uniform": 63, "complex": 14, "near_threshold": 13}
    # nothing targeted: everything is uniform
    d = draw(pop, Design(n=90), rng)
    assert (d.stratum == "uniform").sum() == 90
    assert np.allclose(d.inclusion_prob, 90 / 1000)


def test_design_checks() -> None:
    with pytest.raises(ConfigError, match="below 2/3"):
        Design(n=10, uniform_share=0.5)
    with pytest.raises(ConfigError, match="--n"):
        Design(n=0)


def test_sample_writes_the_sheet_and_records_the_queue(tmp_path: Path) -> None:
    db, _ = make_store(tmp_path, n=120)
    out = tmp_path / "queue" / "review.csv"
    design = Design(
        n=30, thresholds={"small": 0.5}, intents=(HARD_INTENT,), keywords=("chargeback",)
    )
    with Store.open(db) as store:
        summary = label_queue.sample(store, TIERS, design, out, seed=5, clock=clock)
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert summary.rows == len(rows) == 30
    assert dict((h, n) for h, n, _ in summary.strata) == {
        h: sum(r["stratum"] == h for r in rows) for h in ("uniform", "complex", "near_threshold")
    }
    assert all(r["score_small"] == r["score_large"] == "" for r in rows)
    stored = dict(query(db, "SELECT request_id, inclusion_prob FROM label_sample_items"))
    assert {r["request_id"]: float(r["inclusion_prob"]) for r in rows} == stored
    complex_rows = [r for r in rows if r["stratum"] == "complex"]
    assert complex_rows and all("chargeback" in r["prompt"] for r in complex_rows)
    # the same seed gives the same sheet
    again = tmp_path / "again.csv"
    with Store.open(db) as store:
        label_queue.sample(store, TIERS, design, again, seed=5, clock=clock)
    second = list(csv.DictReader(io.StringIO(again.read_text(encoding="utf-8"))))
    assert [r.pop("sample_id") for r in second] == ["2"] * 30
    assert second == [{k: v for k, v in r.items() if k != "sample_id"} for r in rows]


def test_sample_errors(tmp_path: Path) -> None:
    db, _ = make_store(tmp_path, n=5)
    with Store.open(db) as store, pytest.raises(ConfigError, match="not a cheap tier"):
        label_queue.sample(store, TIERS, Design(n=3, thresholds={"large": 0.5}), tmp_path / "o.csv",
                           seed=0, clock=clock)  # fmt: skip
    empty = tmp_path / "empty.duckdb"
    with Store.open(empty) as store, pytest.raises(DataError, match="nothing to sample"):
        label_queue.sample(store, TIERS, Design(n=3), tmp_path / "o.csv", seed=0, clock=clock)
    with Store.open(db) as store, pytest.raises(ConfigError, match="not a valid regular"):
        label_queue.sample(store, TIERS, Design(n=3, keywords=("(",)), tmp_path / "o.csv",
                           seed=0, clock=clock)  # fmt: skip


def test_keywords_use_the_engine_and_syntax_of_every_user_pattern(tmp_path: Path) -> None:
    """`sample --keyword` is compiled by config/patterns.py like rules.yaml's patterns: the same
    RE2 syntax (look-ahead refused, with the same hint), matched case-insensitively."""
    db, _ = make_store(tmp_path, n=60)
    with Store.open(db) as store, pytest.raises(ConfigError) as exc:
        label_queue.sample(store, TIERS, Design(n=3, keywords=("charge(?=back)",)),
                           tmp_path / "o.csv", seed=0, clock=clock)  # fmt: skip
    assert exc.value.message.startswith(
        "--keyword 'charge(?=back)' is not a valid regular expression in RE2 syntax:"
    )
    assert exc.value.hint is not None and exc.value.hint.startswith(SYNTAX_HINT)
    out = tmp_path / "review.csv"
    design = Design(n=30, keywords=("CHARGE\\w+",))
    with Store.open(db) as store:
        label_queue.sample(store, TIERS, design, out, seed=1, clock=clock)
        texts = store.prompt_texts([f"r-{i:04d}" for i in range(60)])
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    complex_rows = [r for r in rows if r["stratum"] == "complex"]
    assert complex_rows and all("chargeback" in r["prompt"] for r in complex_rows)
    assert any("chargeback" in t for t in texts) and not any("CHARGE" in t for t in texts)
