"""`labels import`: every bad row is rejected with its line and reason while the good rows land;
answer-text labels; the conflict rule; weights; the same source priority as the outcome table."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from label_support import clock, make_store, query

from calibrate.errors import LabelFileError
from calibrate.ingest import stage as ingest
from calibrate.labels import stage as labels
from calibrate.records.labels import SOURCE_PRIORITY
from calibrate.store import Store
from calibrate.store.labels_sql import PICKED_LABELS

PRICES = {"small": (1.0, 1.0), "large": (1.0, 1.0)}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return make_store(tmp_path, n=12)[0]


def run_import(db: Path, path: Path, **kw: object):
    options = {"tiers": None, "source": "human", "strict": False, "clock": clock} | kw
    with Store.open(db) as store:
        return labels.import_labels(store, path, **options)


def stored(db: Path) -> list[tuple]:
    return query(
        db, "SELECT request_id, tier, score, source FROM labels WHERE source <> 'log' ORDER BY 1, 2"
    )


BAD_CSV = """request_id,tier,score,source,labeler,labeled_at
r-0001,small,1,human,ana,2026-10-05T10:00:00Z
r-9999,small,1,human,ana,
r-0002,small,1.5,human,ana,
r-0003,medium,1,human,ana,
r-0001,small,0,human,bob,
r-0004,large,0,human,ana,
r-0005,small,abc,human,ana,
r-0006,small,-0.1,human,ana,
r-0007,,1,human,ana,
r-0008,large,1,log,ana,
r-0009,small,1,human,ana,yesterday
"""


def test_each_bad_row_is_rejected_with_its_line_and_reason_while_good_rows_land(
    tmp_path: Path, db: Path
) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(BAD_CSV, encoding="utf-8")
    summary = run_import(db, path)
    got = [(r.line, r.field, r.reason) for r in summary.first_rejects]
    assert got[:4] == [
        (3, "request_id", "unknown request_id: r-9999"),
        (4, "score", "score out of range: 1.5 (must be in [0, 1])"),
        (5, "tier", "unknown tier: medium (known: large, small)"),
        (
            6,
            "score",
            "duplicate label: request_id r-0001 tier small source human is already given on line 2",
        ),
    ]
    assert got[4][:2] == (8, "score") and got[4][2].startswith("bad value: score:")
    assert got[5] == (9, "score", "score out of range: -0.1 (must be in [0, 1])")
    assert got[6] == (10, "tier", "missing field: tier (or answer)")
    assert got[7][:2] == (11, "source") and "'human', 'reference' or 'judge'" in got[7][2]
    assert got[8][:2] == (12, "labeled_at") and "yesterday" in got[8][2]
    assert summary.rejected == 9 and summary.rows_read == 11
    assert stored(db) == [("r-0001", "small", 1.0, "human"), ("r-0004", "large", 0.0, "human")]
    kept = query(db, "SELECT line, field, reason, raw FROM label_rejects ORDER BY line")
    assert [(line, field) for line, field, _, _ in kept] == [(r[0], r[1]) for r in got]
    assert json.loads(kept[0][3])[0] == "r-9999"  # the raw row is kept: nothing is lost
    assert dict(summary.rejects_by_reason)["score out of range"] == 2


def test_strict_stores_nothing_and_names_the_lines(tmp_path: Path, db: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(BAD_CSV, encoding="utf-8")
    with pytest.raises(LabelFileError) as caught:
        run_import(db, path, strict=True)
    assert f"{path}:3: request_id: unknown request_id: r-9999" in caught.value.message
    assert "(and 6 more)" in caught.value.message
    assert stored(db) == []
    assert query(db, "SELECT count(*) FROM label_runs") == [(0,)]


def test_jsonl_rows_are_checked_one_by_one(tmp_path: Path, db: Path) -> None:
    lines = [
        {"request_id": "r-0001", "tier": "small", "score": 0.5, "labeler": "ana"},
        "not json",
        [1, 2],
        {"request_id": "r-0002", "tier": "small", "score": True},
        {"request_id": "r-0003", "tier": "small", "score": 1, "colour": "red"},
        {"request_id": 7, "tier": "small", "score": 1},
        {"request_id": "r-0004", "tier": "large", "score": 1, "source": "judge"},
    ]
    path = tmp_path / "labels.jsonl.gz"
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n\n"
    path.write_bytes(gzip.compress(text.encode()))
    summary = run_import(db, path)
    got = [(r.line, r.field, r.reason.split(":")[0]) for r in summary.first_rejects]
    assert got == [
        (2, None, "invalid JSON"),
        (3, None, "wrong type"),
        (4, "score", "bad value"),
        (5, "colour", "unknown column"),
        (6, "request_id", "bad value"),
    ]
    assert stored(db) == [("r-0001", "small", 0.5, "human"), ("r-0004", "large", 1.0, "judge")]


def test_parquet_rows_are_numbered_from_one(tmp_path: Path, db: Path) -> None:
    path = tmp_path / "labels.parquet"
    table = pa.table(
        {
            "request_id": ["r-0001", "r-0002", "r-nope"],
            "tier": ["small", "large", "small"],
            "score": [1.0, 2.0, 0.0],
            "labeled_at": [datetime(2026, 10, 5, tzinfo=UTC)] * 3,
        }
    )
    pq.write_table(table, path)
    summary = run_import(db, path)
    assert [(r.line, r.field) for r in summary.first_rejects] == [(2, "score"), (3, "request_id")]
    assert stored(db) == [("r-0001", "small", 1.0, "human")]
    assert query(db, "SELECT labeled_at FROM labels WHERE source = 'human'") == [
        (datetime(2026, 10, 5, tzinfo=UTC),)
    ]


def test_a_label_may_name_the_answer_text_instead_of_the_tier(tmp_path: Path) -> None:
    db, work = make_store(tmp_path, n=12)
    outputs = dict(
        ((rid, tier), out)
        for rid, tier, out in query(db, "SELECT request_id, tier, output FROM attempts")
    )
    same = next(r for r in work.truth if outputs[(r, "small")] == outputs[(r, "large")])
    differ = next(r for r in work.truth if outputs[(r, "small")] != outputs[(r, "large")])
    rows = [
        {
            "request_id": same,
            "answer": "  " + outputs[(same, "small")].replace(" ", "\n "),
            "score": 1,
        },
        {"request_id": differ, "answer": outputs[(differ, "small")], "score": 0},
        {"request_id": differ, "answer": "an answer nobody gave", "score": 1},
    ]
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    summary = run_import(db, path)
    assert stored(db) == sorted(
        [
            (same, "large", 1.0, "human"),
            (same, "small", 1.0, "human"),
            (differ, "small", 0.0, "human"),
        ]
    )
    (bad,) = summary.first_rejects
    assert (bad.line, bad.field) == (3, "answer")
    assert bad.reason == f"answer not found: the text matches no stored answer of request {differ}"


def _label_file(tmp_path: Path, name: str, rows: list[dict]) -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_newest_label_of_a_source_wins_and_the_loser_is_kept(tmp_path: Path, db: Path) -> None:
    def one(name: str, score: float, when: str) -> Path:
        row = {"request_id": "r-0001", "tier": "small", "score": score, "labeled_at": when}
        return _label_file(tmp_path, name, [row])

    first = run_import(db, one("a.jsonl", 1, "2026-10-05T10:00:00Z"))
    assert first.resolved.new == 1
    newer = run_import(db, one("b.jsonl", 0, "2026-10-06T10:00:00Z"))
    assert (newer.resolved.replaced, newer.resolved.stored) == (1, 1)
    older = run_import(db, one("c.jsonl", 1, "2026-10-01T10:00:00+02:00"))
    assert (older.resolved.older_than_stored, older.resolved.stored) == (1, 0)
    assert stored(db) == [("r-0001", "small", 0.0, "human")]
    history = query(db, "SELECT score, superseded_by FROM label_history ORDER BY labeled_at")
    assert history == [(1.0, None), (1.0, newer.run_id)]
    again = run_import(db, one("b.jsonl", 0, "2026-10-06T10:00:00Z"))
    assert (again.resolved.unchanged, again.resolved.replaced) == (1, 0)


def test_human_labels_outrank_judge_labels_in_the_outcome_table(tmp_path: Path, db: Path) -> None:
    judged = [{"request_id": f"r-000{i}", "tier": t, "score": 1, "source": "judge"}
              for i in range(3) for t in ("small", "large")]  # fmt: skip
    run_import(db, _label_file(tmp_path, "judge.jsonl", judged))
    human = [{"request_id": "r-0001", "tier": "small", "score": 0}]
    summary = run_import(db, _label_file(tmp_path, "human.jsonl", human))
    assert summary.resolved.overrides == 1
    with Store.open(db) as store:
        out = store.outcomes(["small", "large"], PRICES)
    row = list(out.request_ids).index("r-0001")
    assert out.label[row].tolist() == [0.0, 1.0]
    # a judge label arriving later is hidden behind the human one, and says so
    late = [{"request_id": "r-0001", "tier": "small", "score": 0.6, "source": "judge",
             "labeled_at": "2027-01-01T00:00:00Z"}]  # fmt: skip
    hidden = run_import(db, _label_file(tmp_path, "late.jsonl", late))
    assert (hidden.resolved.replaced, hidden.resolved.overridden) == (1, 1)
    with Store.open(db) as store:
        assert store.outcomes(["small", "large"], PRICES).label[row].tolist() == [0.0, 1.0]


def test_the_source_priority_is_the_one_the_outcome_table_uses(tmp_path: Path) -> None:
    """Every combination of the four sources on one request × tier: Store.outcomes and the
    label store (weights, status) must pick the same label. Guards a drift in outcomes_sql."""
    rows, labels_rows = [], []
    sources = SOURCE_PRIORITY
    for mask in range(1, 16):
        rid = f"q-{mask:02d}"
        present = [s for k, s in enumerate(sources) if mask >> k & 1]
        row = {
            "request_id": rid,
            "timestamp": "2026-10-01T00:00:00Z",
            "prompt": "x",
            "attempts": [{"tier": "small", "output": "a"}, {"tier": "large", "output": "b"}],
            "labels": {"small": 0.0, "large": 1.0} if "log" in present else {"large": 1.0},
        }
        rows.append(json.dumps(row))
        labels_rows += [
            {"request_id": rid, "tier": "small", "score": (k + 1) / 10, "source": s}
            for k, s in enumerate(sources)
            if s in present and s != "log"
        ]
    logs = tmp_path / "logs.jsonl"
    logs.write_text("\n".join(rows) + "\n", encoding="utf-8")
    db = tmp_path / "s.duckdb"
    with Store.open(db) as store:
        ingest.ingest(store, [logs], strict=False, clock=clock)
        labels.import_labels(
            store,
            _label_file(tmp_path, "l.jsonl", labels_rows),
            tiers=None,
            source="human",
            strict=False,
            clock=clock,
        )
        out = store.outcomes(["small", "large"], PRICES)
        picked = dict(
            store.con.execute(
                f"SELECT request_id, score FROM ({PICKED_LABELS}) WHERE tier = 'small'",
                {"tiers": ["small", "large"]},
            ).fetchall()
        )
    for i, rid in enumerate(out.request_ids):
        mask = int(rid[2:])
        best = next(s for k, s in enumerate(sources) if mask >> k & 1)
        expected = 0.0 if best == "log" else (sources.index(best) + 1) / 10
        assert out.label[i, 0] == pytest.approx(expected), (rid, best)
        assert picked[rid] == pytest.approx(expected), (rid, best)


def test_wide_sheet_empty_cells_are_not_labels_and_weights_come_from_the_row(
    tmp_path: Path, db: Path
) -> None:
    path = tmp_path / "sheet.csv"
    path.write_text(
        "request_id,stratum,inclusion_prob,prompt,answer_small,score_small,score_large,labeler\n"
        'r-0001,uniform,0.25,"a prompt\nwith two lines",x,1,0,ana\n'
        "r-0002,complex,0.5,p,x,,,\n"
        "r-0003,complex,2,p,x,1,1,ana\n"
        "r-0004,near_threshold,0.5,p,x,0,,ana\n",
        encoding="utf-8",
    )
    summary = run_import(db, path)
    assert summary.rows_unlabeled == 1
    assert [(r.line, r.field) for r in summary.first_rejects] == [(5, "inclusion_prob")]
    rows = query(
        db,
        "SELECT request_id, tier, score, weight, stratum, labeler FROM labels"
        " WHERE source = 'human' ORDER BY 1, 2",
    )
    assert rows == [
        ("r-0001", "large", 0.0, 4.0, "uniform", "ana"),
        ("r-0001", "small", 1.0, 4.0, "uniform", "ana"),
        ("r-0004", "small", 0.0, 2.0, "near_threshold", "ana"),
    ]
    with Store.open(db) as store:
        weights = store.label_weights(["small", "large"])
        ids = np.array(["r-0000", "r-0001", "r-0004"], dtype=object)
        assert weights.for_requests(ids).tolist() == [1.0, 4.0, 2.0]
        assert weights.strata_for(ids).tolist() == ["", "uniform", "near_threshold"]


def test_a_weight_that_contradicts_the_inclusion_probability_is_rejected(
    tmp_path: Path, db: Path
) -> None:
    row = {"request_id": "r-0001", "tier": "small", "score": 1, "weight": 3, "inclusion_prob": 0.5}
    summary = run_import(db, _label_file(tmp_path, "w.jsonl", [row]))
    (bad,) = summary.first_rejects
    assert (bad.field, bad.reason) == (
        "weight",
        "bad value: weight 3 is not 1/inclusion_prob (2); give one of them",
    )


def test_mixed_weights_across_tiers_are_counted(tmp_path: Path, db: Path) -> None:
    rows = [
        {"request_id": "r-0001", "tier": "small", "score": 1, "weight": 3},
        {"request_id": "r-0001", "tier": "large", "score": 1},
    ]
    run_import(db, _label_file(tmp_path, "m.jsonl", rows))
    with Store.open(db) as store:
        weights = store.label_weights(["small", "large"])
    assert (weights.mixed, weights.weight.tolist()) == (1, [3.0])


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("l.txt", "x", "unsupported label file type"),
        ("l.csv", "request_id,tier,score,colour\n", "unknown column(s): colour"),
        ("l.csv", "request_id,tier\n", "no score column"),
        ("l.csv", "", "empty file"),
    ],
)
def test_an_unusable_file_is_an_error(
    tmp_path: Path, db: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LabelFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_import(db, path)


def test_not_utf8_and_missing_files_are_errors(tmp_path: Path, db: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_bytes(b"request_id,tier,score\nr-0001,small,\xff\n")
    with pytest.raises(LabelFileError, match="not UTF-8"):
        run_import(db, path)
    with pytest.raises(LabelFileError, match="label file not found"):
        run_import(db, tmp_path / "missing.csv")


def test_tiers_from_tiers_yaml_limit_what_labels_may_name(tmp_path: Path, db: Path) -> None:
    rows = [{"request_id": "r-0001", "tier": "large", "score": 1}]
    summary = run_import(db, _label_file(tmp_path, "t.jsonl", rows), tiers=("small",))
    (bad,) = summary.first_rejects
    assert bad.reason == "unknown tier: large (known: small)"
