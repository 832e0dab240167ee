"""`replay --shard I/N` and `replay-merge`, over real loopback HTTP against tests/llm_server.py: the
shards split one sample disjointly, and merged they equal one unsharded run, with no duplicate."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from llm_server import Call, LLMServer, Reply
from replay_support import make_store, prompt, query, run_replay, tier, write_tiers
from typer.testing import CliRunner

from calibrate.cli.app import app
from calibrate.config.tiers import TiersConfig
from calibrate.errors import DataError
from calibrate.records.replay import Shard
from calibrate.replay.merge import merge_replays
from calibrate.store import Store

N_REQUESTS, SAMPLE, SEED = 60, 40, 5
ATTEMPTS = (
    "SELECT request_id, tier, output, confidence, cost_usd FROM attempts"
    " WHERE source = 'shadow' ORDER BY request_id, tier"
)


@pytest.fixture
def server():
    with LLMServer() as srv:
        yield srv


def two_tiers(tmp_path: Path, base_url: str) -> TiersConfig:
    return write_tiers(
        tmp_path / "tiers.yaml",
        base_url,
        [tier("small", "m-small", confidence="logprob_mean"), tier("large", "m-large")],
    )


def shard_number(request_id: str, count: int) -> int:
    """The documented rule, written independently of the store's SQL."""
    return int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big") % count


def replayed_ids(db: Path) -> set[str]:
    return {r[0] for r in query(db, "SELECT DISTINCT request_id FROM attempts")}


def merge(target: Path, *others: Path) -> list[dict]:
    done = CliRunner().invoke(
        app, ["replay-merge", *map(str, others), "--db", str(target), "--json"]
    )
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def table_sizes(db: Path) -> tuple:
    return query(
        db,
        "SELECT (SELECT count(*) FROM attempts), (SELECT count(*) FROM replay_calls),"
        " (SELECT count(*) FROM replay_runs)",
    )[0]


def test_two_shards_merged_equal_one_unsharded_run(tmp_path: Path, server) -> None:
    tiers = two_tiers(tmp_path, server.base_url)
    whole, s0, s1, target = (
        make_store(tmp_path / f"{name}.duckdb", N_REQUESTS)
        for name in ("whole", "s0", "s1", "target")
    )
    run_replay(whole, tiers, sample=SAMPLE, seed=SEED)
    first = run_replay(s0, tiers, sample=SAMPLE, seed=SEED, shard=Shard(0, 2))
    # the other shard through the command line: --shard reaches the selection
    cli = CliRunner().invoke(
        app,
        ["replay", "--tiers", str(tmp_path / "tiers.yaml"), "--db", str(s1)]
        + ["--sample", str(SAMPLE), "--seed", str(SEED), "--shard", "1/2", "--json"],
    )
    assert cli.exit_code == 0, cli.output

    # disjoint, covering the unsharded selection, each by the documented hash rule
    ids0, ids1, all_ids = replayed_ids(s0), replayed_ids(s1), replayed_ids(whole)
    assert len(all_ids) == SAMPLE
    assert ids0 and ids1 and not ids0 & ids1
    assert ids0 | ids1 == all_ids
    assert {shard_number(r, 2) for r in ids0} == {0}
    assert {shard_number(r, 2) for r in ids1} == {1}
    assert (first.selected, json.loads(cli.stdout)["selected"]) == (len(ids0), len(ids1))

    merged = merge(target, s0, s1)
    assert [(m["attempts"], m["attempts_present"], m["runs"]) for m in merged] == [
        (2 * len(ids0), 0, 1),
        (2 * len(ids1), 0, 1),
    ]
    assert query(target, ATTEMPTS) == query(whole, ATTEMPTS)
    assert query(
        target,
        "SELECT count(*) - count(DISTINCT (request_id, tier, source)) FROM attempts",
    ) == [(0,)]
    keys = "SELECT cache_key, status, output FROM replay_calls ORDER BY cache_key"
    assert query(target, keys) == query(whole, keys)
    # runs renumbered 1, 2 in the order merged; every copied row points at its own run
    assert query(target, "SELECT run_id, selected FROM replay_runs ORDER BY run_id") == [
        (1, len(ids0)),
        (2, len(ids1)),
    ]
    assert query(
        target,
        "SELECT count(*) FROM attempts WHERE (extra->>'replay_run')::BIGINT <> run_id"
        " OR run_id NOT IN (SELECT run_id FROM replay_runs)",
    ) == [(0,)]

    # merging the same shard again, or a shard into a store holding it, adds nothing
    before = table_sizes(target)
    again = merge(target, s1, s0)
    assert [(m["attempts"], m["calls"], m["runs"]) for m in again] == [(0, 0, 0)] * 2
    assert table_sizes(target) == before
    assert query(target, ATTEMPTS) == query(whole, ATTEMPTS)

    # merging into one of the shards gives the same attempts
    merge(s0, s1)
    assert query(s0, ATTEMPTS) == query(whole, ATTEMPTS)


def test_the_shards_of_one_sample_split_it_for_any_n(tmp_path: Path) -> None:
    """The store's shard rule is the documented one, and N shards partition the sample."""
    db = make_store(tmp_path / "s.duckdb", 50)
    with Store.open(db) as store:
        _, whole = store.replay_candidates(_selection(None), ["a"])
        parts = [store.replay_candidates(_selection(Shard(i, 3)), ["a"])[1] for i in range(3)]
    all_ids = [c.request_id for c in whole]
    assert len(all_ids) == 20
    for i, part in enumerate(parts):
        assert {shard_number(c.request_id, 3) for c in part} <= {i}
    assert sorted(c.request_id for part in parts for c in part) == sorted(all_ids)


def _selection(shard: Shard | None):
    from calibrate.records.replay import Selection

    return Selection(20, 1, None, None, shard)


def test_an_empty_shard_of_a_sample_is_not_an_error(tmp_path: Path, server) -> None:
    tiers = two_tiers(tmp_path, server.base_url)
    db = make_store(tmp_path / "s.duckdb", 5)
    summaries = [run_replay(db, tiers, sample=1, shard=Shard(i, 2)) for i in range(2)]
    assert sorted(s.selected for s in summaries) == [0, 1]
    with pytest.raises(DataError, match="no stored request matches"):
        run_replay(db, tiers, sample=1, where="app = 'nope'", shard=Shard(0, 2))


@pytest.mark.parametrize("shard", ["2/2", "0/0", "a/b", "1/2/3", "-1/2", "1", ""])
def test_a_bad_shard_is_a_usage_error(tmp_path: Path, shard: str) -> None:
    db = make_store(tmp_path / "s.duckdb", 3)
    write_tiers(tmp_path / "t.yaml", "http://127.0.0.1:9", [tier("a", "m-a")])
    args = ["replay", "--tiers", str(tmp_path / "t.yaml"), "--db", str(db), "--shard", shard]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 2, done.output
    assert "--shard" in done.stderr


def test_a_request_missing_in_the_target_is_an_error_naming_it(tmp_path: Path, server) -> None:
    tiers = two_tiers(tmp_path, server.base_url)
    shard = make_store(tmp_path / "shard.duckdb", 10)
    target = make_store(tmp_path / "target.duckdb", 4)
    run_replay(shard, tiers, shard=Shard(1, 2))
    expected = min(r for r in replayed_ids(shard) if int(r[2:]) >= 4)
    done = CliRunner().invoke(app, ["replay-merge", str(shard), "--db", str(target)])
    assert done.exit_code == 1
    assert f"request_id '{expected}'" in done.stderr
    assert "nothing was merged" in done.stderr
    assert table_sizes(target) == (0, 0, 0)


def test_a_store_cannot_be_merged_into_itself_or_be_missing(tmp_path: Path) -> None:
    db = make_store(tmp_path / "s.duckdb", 3)
    with Store.open(db) as store:
        with pytest.raises(DataError, match="no store at"):
            merge_replays(store, [tmp_path / "nope.duckdb"])
        with pytest.raises(Exception, match="is this store"):
            merge_replays(store, [db])


def test_a_failed_call_here_is_replaced_by_the_other_stores_result(tmp_path: Path) -> None:
    broken = [True]

    def refuse(call: Call) -> Reply | None:
        malformed = broken[0] and call.prompt == prompt(2)
        return Reply(200, b'{"choices": "none"}') if malformed else None

    a, b = make_store(tmp_path / "a.duckdb", 5), make_store(tmp_path / "b.duckdb", 5)
    with LLMServer(responder=refuse) as srv:
        tiers = write_tiers(tmp_path / "t.yaml", srv.base_url, [tier("x", "m-x")])
        run_replay(a, tiers)
        broken[0] = False
        run_replay(b, tiers)
    assert query(a, "SELECT count(*) FROM replay_calls WHERE status = 'error'") == [(1,)]
    (counts,) = merge(a, b)
    assert (counts["attempts"], counts["calls"], counts["failed_calls_replaced"]) == (1, 1, 1)
    assert query(a, "SELECT count(*), count(*) FILTER (status = 'ok') FROM replay_calls") == [
        (5, 5)
    ]
    assert query(a, ATTEMPTS) == query(b, ATTEMPTS)
