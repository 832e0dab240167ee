"""`calibrate check` (coverage and the bias rule), the sweep's refusal of a biased set, and ingest's
exit 1 when every row of a file is rejected. The production-only and unlabelled logs are made from
sample_logs (which has shadow attempts of every tier on every request) by dropping the shadow
attempts or the labels."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from calibrate.cli.app import app
from calibrate.store import Store
from calibrate.store.check_sql import CoverageCell
from calibrate.sweep.check import replay_size, set_bias

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_logs"
runner = CliRunner()


def _rows() -> list[dict]:
    with gzip.open(SAMPLE / "requests.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """prod.jsonl (shadow attempts dropped), unlabeled.jsonl (labels dropped) and a two-tier
    tiers.yaml (small → large) under which production-only logs hold the premium answer exactly
    where production escalated."""
    root = tmp_path_factory.mktemp("check")
    rows = _rows()
    prod = [{**r, "attempts": [a for a in r["attempts"] if a["source"] == "prod"]} for r in rows]
    unlabeled = [{k: v for k, v in r.items() if k != "labels"} for r in rows]
    for name, data in (("prod.jsonl", prod), ("unlabeled.jsonl", unlabeled)):
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
    tiers = yaml.safe_load((SAMPLE / "tiers.yaml").read_text(encoding="utf-8"))
    tiers["tiers"] = [t for t in tiers["tiers"] if t["name"] != "medium"]
    (root / "two.yaml").write_text(yaml.safe_dump(tiers), encoding="utf-8")
    return {
        "prod": root / "prod.jsonl",
        "unlabeled": root / "unlabeled.jsonl",
        "two": root / "two.yaml",
        "root": root,
    }


def test_check_sample_logs_exit_0() -> None:
    result = runner.invoke(
        app, ["check", str(SAMPLE), "--tiers", str(SAMPLE / "tiers.yaml"), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["problems"] == []
    assert report["requests"] == 10_000
    assert report["complete"]["size"] == 10_000 and not report["complete"]["biased"]
    assert report["labeled"]["size"] == 1521 and not report["labeled"]["biased"]
    uses = {(u["tier"], u["source"]): u for u in report["uses"]}
    assert uses[("small", "prod")]["requests"] == 10_000
    assert uses[("large", "shadow")]["requests"] == 7846
    assert (
        0
        < uses[("small", "prod")]["confidence_min"]
        < uses[("small", "prod")]["confidence_max"]
        <= 1
    )
    assert ("small", "log", 1521) in [tuple(x) for x in report["labels"]]
    apps = {s["value"]: s for s in report["segments"] if s["column"] == "app"}
    assert sum(s["requests"] for s in apps.values()) == 10_000
    assert report["disagreement_basis"] == "labels" and report["labels_needed"] > 0
    assert report["steps"][-1]["command"].startswith("calibrate sweep")


def test_check_production_only_logs_names_the_bias(logs: dict[str, Path]) -> None:
    result = runner.invoke(app, ["check", str(logs["prod"]), "--tiers", str(logs["two"])])
    assert result.exit_code == 1
    assert "selected by production routing" in result.stderr
    assert "0% of the 7827 requests production kept on small" in result.stderr
    assert "100% of the 2173 requests production escalated to large" in result.stderr
    assert "calibrate replay --tiers" in result.stdout and "--sample " in result.stdout
    assert "Hint: Next:" in result.stderr and "calibrate replay" in result.stderr


def test_check_production_only_three_tiers(logs: dict[str, Path]) -> None:
    """Three tiers: only the 19 requests production sent through every tier are complete."""
    result = runner.invoke(
        app, ["check", str(logs["prod"]), "--tiers", str(SAMPLE / "tiers.yaml"), "--json"]
    )
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["complete"]["size"] == 19 and report["complete"]["biased"]
    replay = [s["command"] for s in report["steps"] if s["command"].startswith("calibrate replay")]
    assert replay == [
        f"calibrate replay --tiers {SAMPLE / 'tiers.yaml'} --db .calibrate/calibrate.duckdb "
        "--sample 1000"
    ]


def test_check_passes_production_logs_with_a_uniform_shadow_sample(tmp_path: Path) -> None:
    """What `replay --sample` makes: production logs plus every tier's answer on a uniform
    sample (here every 5th request keeps its shadow attempts)."""
    rows = _rows()
    mixed = [
        r if i % 5 == 0 else {**r, "attempts": [a for a in r["attempts"] if a["source"] == "prod"]}
        for i, r in enumerate(rows)
    ]
    logs = tmp_path / "mixed.jsonl"
    logs.write_text("".join(json.dumps(r) + "\n" for r in mixed), encoding="utf-8")
    result = runner.invoke(
        app, ["check", str(logs), "--tiers", str(SAMPLE / "tiers.yaml"), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert not report["complete"]["biased"] and report["complete"]["size"] >= 2000
    assert not report["labeled"]["biased"]


def test_check_unlabeled_logs_prints_the_labels_step(logs: dict[str, Path]) -> None:
    db = logs["root"] / "unlabeled.duckdb"
    result = runner.invoke(
        app,
        ["check", str(logs["unlabeled"]), "--tiers", str(SAMPLE / "tiers.yaml"), "--db", str(db)],
    )
    assert result.exit_code == 1
    assert "no request with every tier's answer is labelled" in result.stderr
    assert f"calibrate sample --tiers {SAMPLE / 'tiers.yaml'} --db {db} --n " in result.stdout
    assert "labels judge --judge large" in result.stdout
    assert "(answer text)" in result.stdout  # the disagreement rate comes from the answers
    assert "calibrate replay" not in result.stdout  # the set with every tier's answer is fine
    # with --db and no logs, check reads the store
    again = runner.invoke(
        app, ["check", "--tiers", str(SAMPLE / "tiers.yaml"), "--db", str(db), "--json"]
    )
    assert again.exit_code == 1 and json.loads(again.stdout)["complete"]["size"] == 10_000


def test_sweep_refuses_production_only_logs(logs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["sweep", str(logs["prod"]), "--tiers", str(logs["two"]), "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "Error: no recommendation from a biased set" in result.stderr
    assert "2173 requests with every tier's answer (21.7% of 10000)" in result.stderr
    assert "Hint: Replay a uniform sample" in result.stderr and "--sample " in result.stderr
    assert not out.exists()

    allowed = runner.invoke(app, [*args, "--allow-biased", "--no-router"])
    assert allowed.exit_code == 0, allowed.output
    routing = yaml.safe_load((out / "routing.yaml").read_text(encoding="utf-8"))
    assert routing["certified"] is False
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "BIASED ESTIMATE (--allow-biased)" in report
    first_line = next(line for line in report.splitlines()[1:] if line.strip())
    assert first_line.startswith("**BIASED ESTIMATE (--allow-biased)"), first_line
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["selection"]["certified"] is False


def test_sweep_with_no_complete_request_names_the_tiers(
    logs: dict[str, Path], tmp_path: Path
) -> None:
    tiers = yaml.safe_load(logs["two"].read_text(encoding="utf-8"))
    tiers["tiers"][1]["name"] = "lage"  # a typo
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(tiers), encoding="utf-8")
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["sweep", str(logs["prod"]), "--tiers", str(path), "--out", str(out)]
    )
    assert result.exit_code == 1
    assert "(small, lage)" in result.stderr and "large (2173 requests)" in result.stderr
    assert not out.exists()


def test_ingest_exits_1_when_every_row_of_a_file_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"request_id": "b1", "timestamp": "not a time", "prompt": "hi"}\n'
        '{"request_id": "b2", "timestamp": "2026-13-45", "prompt": "hi"}\n'
    )
    good = tmp_path / "good.jsonl"
    row = next(iter(_rows()))
    good.write_text(json.dumps(row) + "\n", encoding="utf-8")
    db = tmp_path / "s.duckdb"
    result = runner.invoke(app, ["ingest", str(bad), str(good), "--db", str(db)])
    assert result.exit_code == 1
    assert f"every row of {bad} (2 rows) was rejected" in result.stderr
    assert "Hint:" in result.stderr
    assert "rows kept" in result.stdout or "kept" in result.stdout  # the summary is printed first
    with Store.open(db) as store:
        counts = store.table_counts()
    assert (
        counts["requests"] == 1 and counts["rejects"] == 2
    )  # the good row kept, the bad quarantined
    # a file with some good rows is not an error
    status = runner.invoke(app, ["ingest", str(good), "--db", str(tmp_path / "t.duckdb")])
    assert status.exit_code == 0, status.output


def _cell(path: str, requests: int, complete: int) -> CoverageCell:
    return CoverageCell(path, "", "", requests, complete, 0, 0.0, 0.0, 0.0, 0, 0)


def test_bias_rule_uniform_sample_passes_and_routing_selection_fails() -> None:
    uniform = set_bias("x", [_cell("small", 7800, 780), _cell("small>large", 2200, 205)], False)
    assert not uniform.biased and uniform.mix_distance < 0.02
    selected = set_bias("x", [_cell("small", 7800, 0), _cell("small>large", 2200, 2200)], False)
    assert selected.biased and selected.mix_distance == pytest.approx(0.78)
    # a tiny set differing by chance is not called biased (the χ² guard)
    tiny = set_bias("x", [_cell("small", 7800, 4), _cell("small>large", 2200, 3)], False)
    assert not tiny.biased
    # one production path (e.g. always-premium production): routing cannot select anything
    assert not set_bias("x", [_cell("large", 100, 10)], False).biased
    # the replay size brings the expected mix within half the limit
    n = replay_size(selected, 0)
    assert 0 < n <= 10_000
    after = set_bias(
        "x",
        [_cell("small", 7800, round(7800 * n / 10_000)), _cell("small>large", 2200, 2200)],
        False,
    )
    assert after.mix_distance <= 0.025 + 1e-3


@pytest.mark.parametrize("tiers", [["small", "medium", "large"], ["small", "large"], ["large"]])
def test_the_preflight_reads_the_same_cells_from_the_outcome_base(
    tmp_path: Path, tiers: list[str]
) -> None:
    """The sweep's preflight reads its coverage cells from the outcome relation's base (one pass
    over the attempts) instead of the attempts: the same cells, on a mix of production-only,
    shadow and unlabeled requests, with some labels carrying (different) 1/π weights."""
    from calibrate.config.tiers import load_tiers, price_table

    rows = _rows()
    mixed = [
        r
        if i % 5 == 0
        else {
            **{k: v for k, v in r.items() if k != "labels" or i % 3},
            "attempts": [a for a in r["attempts"] if a["source"] == "prod"],
        }
        for i, r in enumerate(rows)
    ]
    logs = tmp_path / "mixed.jsonl"
    logs.write_text("".join(json.dumps(r) + "\n" for r in mixed), encoding="utf-8")
    with Store.open(tmp_path / "s.duckdb") as store:
        from datetime import UTC, datetime

        from calibrate.ingest.stage import ingest

        ingest(store, [logs], strict=False, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))
        store.con.execute(
            "UPDATE labels SET weight = 1.5 + (hash(request_id || tier) % 4) "
            "WHERE hash(request_id) % 3 = 0"
        )
        expected = store.check_data(tiers, texts=False).cells
        store.outcome_rows(tiers, price_table(load_tiers(SAMPLE / "tiers.yaml")))
        got = store.preflight_cells(tiers)
    assert got == expected
    assert sum(c.labeled for c in got) and sum(c.complete for c in got) < sum(
        c.requests for c in got
    )
    assert any(c.weight_sum != c.labeled for c in got)  # the weights were read
