"""Replay over real loopback HTTP against tests/llm_server.py: results, cache, resume, faults,
limits, circuit breaker, budget, dry run. Timing-dependent behaviour runs on a fake clock."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from llm_server import Call, LLMServer, Reply, error
from replay_support import FakeClock, make_store, prompt, query, run_replay, tier, wall, write_tiers

from calibrate.errors import CalibrateError, ConfigError, DataError, EndpointError
from calibrate.records.replay import Selection
from calibrate.replay import stage as replay
from calibrate.store import Store

pytestmark = (
    pytest.mark.e2e
)  # replays through the real loopback LLM server: not in `make test-fast`


@pytest.fixture
def server():
    with LLMServer() as srv:
        yield srv


def answers(srv: LLMServer, **match: object) -> list[dict]:
    return [c for c in srv.calls if all(c.get(k) == v for k, v in match.items())]


def test_every_sampled_request_gets_one_shadow_attempt_per_tier(tmp_path: Path, server) -> None:
    db = make_store(tmp_path / "s.duckdb", 30)
    tiers = write_tiers(
        tmp_path / "tiers.yaml",
        server.base_url,
        [
            tier("small", "m-small", confidence="logprob_mean"),
            tier("mid", "m-mid", confidence="logprob_min"),
            tier("large", "m-large", confidence="first_token"),
        ],
    )
    summary = run_replay(db, tiers, sample=12, seed=7)
    assert [(t.done, t.failed, t.not_run) for t in summary.tiers] == [(12, 0, 0)] * 3
    rows = query(
        db,
        "SELECT tier, count(*), count(DISTINCT request_id), count(confidence), min(source),"
        " max(source), min(status) FROM attempts GROUP BY tier ORDER BY tier",
    )
    assert rows == [(t, 12, 12, 12, "shadow", "shadow", "ok") for t in ("large", "mid", "small")]
    assert len(server.calls) == 36
    assert all(c["logprobs"] for c in server.calls)
    # logprobs were asked for, and each method derives its own number from the same tokens
    stats = query(
        db,
        "SELECT a.tier, a.confidence, c.logprob_stats FROM attempts a JOIN replay_calls c"
        " ON c.cache_key = a.extra->>'cache_key'",
    )
    key = {"small": "mean", "mid": "min", "large": "first_token"}
    for name, confidence, raw in stats:
        assert confidence == pytest.approx(json.loads(raw)[key[name]])
    # cost = usage × the tier's price (1 and 2 USD per Mtok)
    row = query(db, "SELECT input_tokens, output_tokens, cost_usd FROM replay_calls LIMIT 1")[0]
    assert row[2] == pytest.approx((row[0] * 1 + row[1] * 2) / 1e6)


def test_same_seed_same_sample_and_a_rerun_calls_nothing(tmp_path: Path, server) -> None:
    db = make_store(tmp_path / "s.duckdb", 40)
    tiers = write_tiers(tmp_path / "t.yaml", server.base_url, [tier("a", "m-a")])
    run_replay(db, tiers, sample=10, seed=3)
    first = {r[0] for r in query(db, "SELECT request_id FROM attempts")}
    again = run_replay(db, tiers, sample=10, seed=3)
    assert (again.tiers[0].done, again.tiers[0].http_calls) == (0, 0)
    assert len(server.calls) == 10
    run_replay(db, tiers, sample=10, seed=4)
    assert {r[0] for r in query(db, "SELECT request_id FROM attempts")} != first


def test_identical_calls_are_made_once(tmp_path: Path, server) -> None:
    db = make_store(tmp_path / "s.duckdb", 10, prompts=lambda i: f"same question {i % 2}")
    tiers = write_tiers(tmp_path / "t.yaml", server.base_url, [tier("a", "m-a")])
    summary = run_replay(db, tiers)
    assert summary.tiers[0].done == 10
    assert len(server.calls) == 2
    assert query(db, "SELECT count(*), count(DISTINCT extra->>'cache_key') FROM attempts") == [
        (10, 2)
    ]


def test_a_new_request_with_stored_messages_is_served_from_the_cache(
    tmp_path: Path, server
) -> None:
    db = make_store(tmp_path / "s.duckdb", 4, prompts=lambda i: "same question")
    tiers = write_tiers(tmp_path / "t.yaml", server.base_url, [tier("a", "m-a")])
    run_replay(db, tiers, sample=1)
    summary = run_replay(db, tiers, sample=4)
    assert (summary.tiers[0].cached, summary.tiers[0].http_calls) == (3, 0)
    assert len(server.calls) == 1
    assert query(db, "SELECT count(*) FROM attempts") == [(4,)]


def test_429_retry_after_is_honoured_on_a_fake_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    seen: list[tuple[str, float]] = []

    def respond(call: Call) -> Reply | None:
        seen.append((call.prompt, clock.t))
        if call.prompt == prompt(0) and sum(p == prompt(0) for p, _ in seen) <= 2:
            return error(429, "slow down", retry_after="7")
        return None

    db = make_store(tmp_path / "s.duckdb", 3)
    with LLMServer(responder=respond) as srv:
        tiers = write_tiers(
            tmp_path / "t.yaml", srv.base_url, [tier("a", "m-a", limits={"concurrency": 1})]
        )
        summary = run_replay(db, tiers, clock=clock)
    assert summary.tiers[0].done == 3
    times = [t for p, t in seen if p == prompt(0)]
    assert len(times) == 3
    assert times[1] - times[0] >= 7
    assert times[2] - times[1] >= 7
    assert query(db, "SELECT tries FROM replay_calls ORDER BY tries DESC LIMIT 1") == [(3,)]


def test_retries_stop_at_the_limit_and_the_failure_is_recorded(tmp_path: Path) -> None:
    clock = FakeClock()

    def respond(call: Call) -> Reply | None:
        return error(500, "upstream exploded") if call.prompt == prompt(1) else None

    db = make_store(tmp_path / "s.duckdb", 4)
    with LLMServer(responder=respond) as srv:
        limits = {"concurrency": 2, "max_retries": 2}
        tiers = write_tiers(tmp_path / "t.yaml", srv.base_url, [tier("a", "m-a", limits=limits)])
        summary = run_replay(db, tiers, clock=clock)
        assert len(answers(srv, prompt=prompt(1))) == 3
        assert (summary.tiers[0].done, summary.tiers[0].failed) == (3, 1)
        assert any("--retry-failed" in w for w in summary.warnings)
        assert clock.sleeps, "backoff slept between the tries"
        rows = query(
            db, "SELECT status, http_status, tries, error FROM replay_calls WHERE status <> 'ok'"
        )
        assert rows == [("error", 500, 3, "HTTP 500: upstream exploded (gave up after 3 tries)")]
        # a stored failure is skipped on the next run, and retried with --retry-failed
        again = run_replay(db, tiers, clock=clock)
        assert (again.tiers[0].failed_before, again.tiers[0].http_calls) == (1, 0)
        run_replay(db, tiers, clock=clock, retry_failed=True)
        assert len(answers(srv, prompt=prompt(1))) == 6


def test_a_malformed_response_becomes_a_recorded_error(tmp_path: Path) -> None:
    def respond(call: Call) -> Reply | None:
        return Reply(200, b'{"choices": "none"}') if call.prompt == prompt(2) else None

    db = make_store(tmp_path / "s.duckdb", 5)
    with LLMServer(responder=respond) as srv:
        tiers = write_tiers(tmp_path / "t.yaml", srv.base_url, [tier("a", "m-a")])
        summary = run_replay(db, tiers)
        assert len(answers(srv, prompt=prompt(2))) == 1  # never retried: it may have been paid
    assert (summary.tiers[0].done, summary.tiers[0].failed) == (4, 1)
    ((status, error_text),) = query(
        db, "SELECT status, error FROM replay_calls WHERE status = 'error'"
    )
    assert status == "error"
    assert error_text.startswith("malformed response:")
    assert query(db, "SELECT count(*) FROM attempts") == [(4,)]


def test_dropped_connections_and_5xx_are_retried(tmp_path: Path) -> None:
    clock = FakeClock()
    counts: Counter[str] = Counter()

    def respond(call: Call) -> Reply | None:
        counts[call.prompt] += 1
        if counts[call.prompt] == 1:
            return Reply(drop=True) if call.n % 2 else error(503, "busy")
        return None

    db = make_store(tmp_path / "s.duckdb", 6)
    with LLMServer(responder=respond) as srv:
        tiers = write_tiers(tmp_path / "t.yaml", srv.base_url, [tier("a", "m-a")])
        summary = run_replay(db, tiers, clock=clock)
    assert (summary.tiers[0].done, summary.tiers[0].http_calls) == (6, 12)


def test_concurrency_never_exceeds_each_tiers_limit(tmp_path: Path) -> None:
    db = make_store(tmp_path / "s.duckdb", 40)
    with LLMServer(latency_s=(0.005, 0.02), seed=5) as srv:
        tiers = write_tiers(
            tmp_path / "t.yaml",
            srv.base_url,
            [
                tier("a", "m-a", limits={"concurrency": 3}),
                tier("b", "m-b", limits={"concurrency": 5}),
                tier("c", "m-c", limits={"concurrency": 1}),
            ],
        )
        run_replay(db, tiers)
        assert srv.max_in_flight == {"m-a": 3, "m-b": 5, "m-c": 1}
    assert query(db, "SELECT count(*) FROM attempts") == [(120,)]


def test_a_tier_refusing_the_key_is_paused_not_hammered(tmp_path: Path) -> None:
    def respond(call: Call) -> Reply | None:
        return error(401, "invalid api key") if call.model == "m-b" else None

    db = make_store(tmp_path / "s.duckdb", 20)
    with LLMServer(responder=respond) as srv:
        tiers = write_tiers(
            tmp_path / "t.yaml",
            srv.base_url,
            [tier("a", "m-a"), tier("b", "m-b", limits={"concurrency": 2})],
        )
        summary = run_replay(db, tiers)
        assert len(answers(srv, model="m-b")) <= 2
    a, b = summary.tiers
    assert (a.done, b.done, b.failed) == (20, 0, 0)
    assert b.paused == "HTTP 401: invalid api key"
    assert b.not_run == 20  # not recorded as failures: a fixed key replays them all
    with pytest.raises(EndpointError, match="tier 'b' paused: HTTP 401"):
        replay.raise_for_paused(summary)


def test_a_tier_that_keeps_failing_is_paused_after_n_failures(tmp_path: Path) -> None:
    clock = FakeClock()

    def respond(call: Call) -> Reply | None:
        return error(500, "down") if call.model == "m-b" else None

    db = make_store(tmp_path / "s.duckdb", 20)
    with LLMServer(responder=respond) as srv:
        limits = {"concurrency": 1, "max_retries": 1, "pause_after_failures": 3}
        tiers = write_tiers(
            tmp_path / "t.yaml", srv.base_url, [tier("a", "m-a"), tier("b", "m-b", limits=limits)]
        )
        summary = run_replay(db, tiers, clock=clock)
        assert len(answers(srv, model="m-b")) == 6  # 3 requests × 2 tries, then paused
    b = summary.tiers[1]
    assert (b.failed, b.not_run) == (3, 17)
    assert b.paused == "3 consecutive failed calls, last: HTTP 500: down"


def test_a_long_retry_after_pauses_the_tier(tmp_path: Path) -> None:
    clock = FakeClock()
    db = make_store(tmp_path / "s.duckdb", 5)
    with LLMServer(responder=lambda c: error(429, "quota", retry_after="3600")) as srv:
        tiers = write_tiers(tmp_path / "t.yaml", srv.base_url, [tier("a", "m-a")])
        summary = run_replay(db, tiers, clock=clock)
    assert summary.tiers[0].paused == "HTTP 429: quota; the server asks to wait 3600 s"
    assert sum(clock.sleeps) < 3600


def test_no_logprobs_means_missing_confidence_with_a_reason(tmp_path: Path) -> None:
    db = make_store(tmp_path / "s.duckdb", 5)
    with LLMServer(logprobs=False) as srv:
        tiers = write_tiers(tmp_path / "t.yaml", srv.base_url, [tier("a", "m-a")])
        summary = run_replay(db, tiers)
    assert summary.tiers[0].done == 5
    assert summary.warnings == (
        "tier 'a': no confidence for 5 answers (the tier returned no logprobs)",
    )
    rows = query(db, "SELECT confidence, extra->>'confidence_missing' FROM attempts")
    assert rows == [(None, "the tier returned no logprobs")] * 5


def test_minus_9999_from_the_server_is_clipped(tmp_path: Path) -> None:
    def respond(call: Call) -> Reply | None:
        tokens = [{"token": "a", "logprob": -0.5, "top_logprobs": []},
                  {"token": "b", "logprob": -9999.0, "top_logprobs": [{"token": "c", "logprob": -3.0}]}]  # fmt: skip
        body = {"choices": [{"message": {"content": "ab"}, "logprobs": {"content": tokens}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2}}  # fmt: skip
        return Reply(200, json.dumps(body).encode())

    db = make_store(tmp_path / "s.duckdb", 1)
    with LLMServer(responder=respond) as srv:
        tiers = write_tiers(
            tmp_path / "t.yaml", srv.base_url, [tier("a", "m-a", confidence="logprob_min")]
        )
        run_replay(db, tiers)
    ((confidence, extra),) = query(db, "SELECT confidence, extra FROM attempts")
    assert confidence == -3.0
    assert json.loads(extra)["logprobs"]["clipped"] == 1


def test_verbalized_asks_a_second_call_and_counts_its_cost(tmp_path: Path, server) -> None:
    db = make_store(tmp_path / "s.duckdb", 4)
    tiers = write_tiers(
        tmp_path / "t.yaml", server.base_url, [tier("v", "m-v", confidence="verbalized")]
    )
    summary = run_replay(db, tiers)
    assert summary.tiers[0].http_calls == 8
    assert Counter(c["purpose"] for c in server.calls) == {"answer": 4, "confidence": 4}
    assert not any(c["logprobs"] for c in server.calls)
    rows = query(
        db,
        "SELECT a.confidence, a.cost_usd, sum(c.cost_usd) FROM attempts a JOIN replay_calls c"
        " ON c.cache_key IN (a.extra->>'cache_key', a.extra->>'confidence_cache_key')"
        " GROUP BY a.request_id, a.confidence, a.cost_usd",
    )
    assert len(rows) == 4
    for confidence, cost, calls_cost in rows:
        assert confidence == 0.75
        assert cost == pytest.approx(calls_cost)


def test_budget_stops_before_the_cap_and_a_rerun_continues(tmp_path: Path, server) -> None:
    db = make_store(tmp_path / "s.duckdb", 20)
    price = {"input_per_mtok": 1000, "output_per_mtok": 1000}
    tiers = write_tiers(
        tmp_path / "t.yaml",
        server.base_url,
        [tier("a", "m-a", price=price, params={"max_tokens": 5}, limits={"concurrency": 2})],
    )
    with Store.open(db) as store:
        plan = replay.plan_replay(store, tiers, Selection(20, 0), retry_failed=False, clock=wall)
    per_call = plan.cost_usd / 20
    cap = per_call * 7.5
    summary = run_replay(db, tiers, max_cost_usd=cap)
    assert summary.stopped == "budget"
    assert summary.cost_usd <= cap
    assert 0 < summary.tiers[0].done < 20
    assert summary.tiers[0].not_run == 20 - summary.tiers[0].done
    stored = query(db, "SELECT sum(cost_usd) FROM replay_calls")[0][0]
    assert stored == pytest.approx(summary.cost_usd)
    rest = run_replay(db, tiers)
    assert rest.stopped is None
    assert summary.tiers[0].done + rest.tiers[0].done == 20
    assert len(server.calls) == 20


def test_dry_run_prints_the_plan_and_calls_nothing(tmp_path: Path, server) -> None:
    db = make_store(tmp_path / "s.duckdb", 10)
    tiers = write_tiers(
        tmp_path / "t.yaml",
        server.base_url,
        [
            tier("a", "m-a", params={"max_tokens": 100}),
            {"name": "b", "model": "gpt-4o-mini", "confidence": "verbalized"},
        ],
    )
    with Store.open(db) as store:
        plan = replay.plan_replay(store, tiers, Selection(6, 0), retry_failed=False, clock=wall)
    a, b = plan.tiers
    assert (plan.selected, a.calls, b.calls) == (6, 6, 12)
    assert a.output_tokens == 600
    assert a.output_tokens_basis == "100 (max_tokens)"
    assert a.cost_usd == pytest.approx((a.input_tokens * 1 + 600 * 2) / 1e6)
    assert a.price_source == "tiers.yaml"
    assert b.price_source.startswith("genai-prices")
    assert b.output_tokens_basis == "256 (default: no max_tokens, no stored answers)"
    assert server.calls == []
    assert query(db, "SELECT count(*) FROM replay_runs") == [(0,)]


def test_where_and_since_filter_before_sampling(tmp_path: Path, server) -> None:
    db = make_store(tmp_path / "s.duckdb", 30, days=10)
    tiers = write_tiers(tmp_path / "t.yaml", server.base_url, [tier("a", "m-a")])
    summary = run_replay(
        db, tiers, where="request_id < 'r-0020'", since=datetime(2026, 10, 6, tzinfo=UTC)
    )
    ids = sorted(r[0] for r in query(db, "SELECT request_id FROM attempts"))
    assert summary.selected == len(ids) == 10
    assert all(i < "r-0020" and int(i[2:]) % 10 >= 5 for i in ids)


@pytest.mark.parametrize(
    "where", ["no_such_column = 1", "1 = 1); DROP TABLE requests; SELECT (1", "app ="]
)
def test_a_bad_where_is_a_user_error(tmp_path: Path, server, where: str) -> None:
    db = make_store(tmp_path / "s.duckdb", 3)
    tiers = write_tiers(tmp_path / "t.yaml", server.base_url, [tier("a", "m-a")])
    with pytest.raises(CalibrateError, match="--where is not a valid condition"):
        run_replay(db, tiers, where=where)
    assert query(db, "SELECT count(*) FROM requests") == [(3,)]


def test_user_errors_before_any_call(tmp_path: Path, server) -> None:
    db = make_store(tmp_path / "s.duckdb", 3)
    keyed = write_tiers(
        tmp_path / "k.yaml", server.base_url, [tier("a", "m-a", api_key_env="CAL_TEST_KEY")]
    )
    with pytest.raises(ConfigError, match="CAL_TEST_KEY is not set"):
        run_replay(db, keyed, environ={"OTHER": "x"})
    no_url = write_tiers(tmp_path / "u.yaml", server.base_url, [tier("a", "m-a")])
    no_url = no_url.model_copy(
        update={"tiers": (no_url.tiers[0].model_copy(update={"base_url": None}),)}
    )
    with pytest.raises(ConfigError, match="has no base_url"):
        run_replay(db, no_url)
    with pytest.raises(DataError, match="no stored request matches"):
        run_replay(db, keyed, where="false", environ={"CAL_TEST_KEY": "k"})
    assert server.calls == []


def test_replayed_attempts_feed_the_sweep_outcomes(tmp_path: Path, server) -> None:
    db = make_store(tmp_path / "s.duckdb", 8)
    tiers = write_tiers(
        tmp_path / "t.yaml", server.base_url, [tier("small", "m-s"), tier("large", "m-l")]
    )
    run_replay(db, tiers)
    with Store.open(db) as store:
        outcomes = store.outcomes(tiers.names, {})
    assert outcomes.n == 8
    assert outcomes.incomplete == 0
    assert (outcomes.cost_usd > 0).all()


def test_a_timeout_is_retried(tmp_path: Path) -> None:
    clock = FakeClock()
    counts: Counter[str] = Counter()

    def respond(call: Call) -> Reply | None:
        counts[call.prompt] += 1
        return (
            Reply(latency_s=1.0) if counts[call.prompt] == 1 and call.prompt == prompt(0) else None
        )

    db = make_store(tmp_path / "s.duckdb", 2)
    with LLMServer(responder=respond) as srv:
        limits = {"timeout_s": 0.1}
        tiers = write_tiers(tmp_path / "t.yaml", srv.base_url, [tier("a", "m-a", limits=limits)])
        summary = run_replay(db, tiers, clock=clock)
    assert (summary.tiers[0].done, summary.tiers[0].http_calls) == (2, 3)
    assert counts[prompt(0)] == 2


def test_replay_command_dry_run_and_json(tmp_path: Path, server) -> None:
    from typer.testing import CliRunner

    from calibrate.cli.app import app

    db = make_store(tmp_path / "s.duckdb", 5)
    tiers = tmp_path / "t.yaml"
    write_tiers(tiers, server.base_url, [tier("a", "m-a"), {"name": "b", "model": "gpt-4o"}])
    runner = CliRunner()
    args = ["replay", "--tiers", str(tiers), "--db", str(db), "--sample", "3"]
    plan = runner.invoke(app, [*args, "--dry-run"], catch_exceptions=False)
    assert plan.exit_code == 0
    assert "replay plan: 3 sampled requests" in plan.stdout
    assert "a: $1 / $2 per Mtok in / out from tiers.yaml" in plan.stderr
    assert "b: $2.5 / $10 per Mtok in / out from genai-prices 0.2" in plan.stderr
    assert server.calls == []
    done = runner.invoke(app, [*args, "--json"], catch_exceptions=False)
    assert done.exit_code == 0
    data = json.loads(done.stdout)
    assert [(t["tier"], t["done"]) for t in data["tiers"]] == [("a", 3), ("b", 3)]
    assert data["stopped"] is None
    bad = runner.invoke(app, [*args, "--since", "last tuesday"])
    assert bad.exit_code == 2
    missing = runner.invoke(app, [*args, "--where", "nope = 1"])
    assert missing.exit_code == 1
    assert missing.stderr.lstrip().startswith("Error: --where is not a valid condition")
