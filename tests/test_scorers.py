"""Reference scorers one by one, scorers.yaml validation, and `labels score` on a store."""

from __future__ import annotations

from pathlib import Path

import pytest
from label_support import clock, make_store, query

from calibrate.errors import ConfigError
from calibrate.labels import stage as labels
from calibrate.labels.scorers import (
    ScorersConfig,
    ScorerSpec,
    extract_choice,
    load_scorers,
    score_answer,
)
from calibrate.store import Store


def score(kind: str, answer: str, reference: str, **options: object) -> float | None:
    return score_answer(ScorerSpec(kind=kind, **options), answer, reference).score


@pytest.mark.parametrize(
    ("kind", "answer", "reference", "expected", "options"),
    [
        ("exact", " Paris\n", "Paris", 1.0, {}),
        ("exact", "paris", "Paris", 0.0, {}),
        ("normalized", "The  Eiffel-Tower!", "eiffel tower", 1.0, {}),
        ("normalized", "Ｐａｒｉｓ.", "paris", 1.0, {}),
        ("normalized", "Lyon", "Paris", 0.0, {}),
        ("choice", "The answer is (B).", "B", 1.0, {}),
        ("choice", "B) Paris", "(B)", 1.0, {}),
        ("choice", "**C**", "B", 0.0, {}),
        ("choice", "I am not sure.", "B", 0.0, {}),
        ("choice", "F", "F", 1.0, {"letters": "ABCDEF"}),
        ("numeric", "It costs $1,234.50 in total", "1234.5", 1.0, {}),
        ("numeric", "First 3, then the result: 42", "42", 1.0, {}),
        ("numeric", "41.9", "42", 0.0, {}),
        ("numeric", "41.9", "42", 1.0, {"tolerance": 0.2}),
        ("numeric", "101", "100", 1.0, {"relative": 0.01}),
        ("numeric", "no number here", "42", 0.0, {}),
        ("regex", "Order #123 ships tomorrow", r"ships\s+tomorrow", 1.0, {}),
        ("regex", "SHIPS TOMORROW", "ships tomorrow", 1.0, {"ignore_case": True}),
        ("regex", "it ships tomorrow", "ships tomorrow", 0.0, {"full_match": True}),
        ("json", 'Here:\n```json\n{"b": [1, 2], "a": 1.0}\n```', '{"a": 1, "b": [1, 2]}', 1.0, {}),
        ("json", '{"a": true}', '{"a": 1}', 0.0, {}),
        ("json", "not json", '{"a": 1}', 0.0, {}),
    ],
)
def test_scorers(kind: str, answer: str, reference: str, expected: float, options: dict) -> None:
    assert score(kind, answer, reference, **options) == expected


@pytest.mark.parametrize(
    ("kind", "reference", "reason"),
    [
        ("choice", "Paris", "reference is not a choice letter"),
        ("numeric", "about 4 or 5", "reference is not one number"),
        ("regex", "(unclosed", "reference is not a valid regular expression"),
        ("json", "{nope", "reference is not JSON"),
    ],
)
def test_an_unusable_reference_gives_no_score(kind: str, reference: str, reason: str) -> None:
    scored = score_answer(ScorerSpec(kind=kind), "anything", reference)
    assert scored.score is None
    assert scored.detail.startswith(reason)


def test_choice_extraction() -> None:
    assert extract_choice("Answer: D", "ABCDE") == "D"
    assert extract_choice("(a) is wrong; I pick (C)", "ABCDE") == "C"
    assert extract_choice("A. Paris", "ABCDE") == "A"
    assert extract_choice("I think so", "ABCDE") is None


def test_scorers_yaml_per_app_and_bare_names(tmp_path: Path) -> None:
    path = tmp_path / "scorers.yaml"
    path.write_text(
        "default: exact\napps:\n  quiz: {kind: choice, letters: ABCD}\n  math: numeric\n",
        encoding="utf-8",
    )
    config = load_scorers(path)
    assert config.for_app("quiz").letters == "ABCD"
    assert config.for_app("math").kind == "numeric"
    assert config.for_app("other").kind == "exact"
    assert config.for_app(None).kind == "exact"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("default: fuzzy\n", "default.kind: Input should be"),
        ("apps:\n  quiz: {kind: exact, letters: AB}\n", "do not apply to the exact scorer"),
        ("default: exact\ncolour: red\n", "colour: unknown key"),
    ],
)
def test_scorers_yaml_errors_name_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "scorers.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_scorers(path)
    assert str(path) in caught.value.message
    assert message in caught.value.message


def test_labels_score_stores_reference_labels_that_humans_outrank(tmp_path: Path) -> None:
    db, work = make_store(tmp_path, n=30)
    with Store.open(db) as store:
        summary = labels.score_references(store, ScorersConfig(), tiers=None, clock=clock)
    with_reference = [rid for rid in sorted(work.truth) if int(rid[2:]) % 3 == 0]
    assert dict(summary.scored) == {"normalized": 2 * len(with_reference)}
    rows = query(
        db,
        "SELECT request_id, tier, score, labeler, detail FROM labels WHERE source = 'reference'",
    )
    assert {(r[0], r[1]): r[2] for r in rows} == {
        (rid, tier): float(work.truth[rid][tier])
        for rid in with_reference
        for tier in work.truth[rid]
    }
    assert {r[3] for r in rows} == {"scorer:normalized"}
    # running it again changes nothing
    with Store.open(db) as store:
        again = labels.score_references(store, ScorersConfig(), tiers=None, clock=clock)
    assert (again.resolved.new, again.resolved.unchanged) == (0, len(rows))


def test_per_app_scorer_and_unscorable_references(tmp_path: Path) -> None:
    db, _ = make_store(tmp_path, n=30)
    config = ScorersConfig(apps={"billing": ScorerSpec(kind="numeric")})
    with Store.open(db) as store:
        summary = labels.score_references(store, config, tiers=("small", "large"), clock=clock)
    # billing (odd ids) is scored numerically, support by normalized text
    assert dict(summary.scored).keys() == {"normalized", "numeric"}
    details = dict(
        query(db, "SELECT labeler, count(*) FROM labels WHERE source = 'reference' GROUP BY 1")
    )
    assert set(details) == {"scorer:normalized", "scorer:numeric"}
    bad = ScorersConfig(default=ScorerSpec(kind="choice"))
    with Store.open(db) as store:
        summary = labels.score_references(store, bad, tiers=None, clock=clock)
    assert summary.scored == ()
    assert summary.skipped == (("reference is not a choice letter (ABCDE)", 20),)
