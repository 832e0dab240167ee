"""Fast unit tests of replay and the judge through the RunContext's transport seam: an
`httpx.MockTransport` answers in-process (no sockets), on a fake clock. The end-to-end tests over
real loopback HTTP (tests/llm_server.py) stay in test_replay.py and test_judge.py."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import httpx
import label_support
from replay_support import FakeClock, make_store, prompt, query, tier, wall, write_tiers

from calibrate.calls import secrets
from calibrate.calls.context import RunContext
from calibrate.config.tiers import load_tiers
from calibrate.ingest import stage as ingest
from calibrate.labels import judge
from calibrate.records.replay import Selection
from calibrate.replay import stage as replay
from calibrate.store import Store

BASE_URL = "http://mock.invalid/v1"


def completion(content: str, prompt_tokens: int = 10, completion_tokens: int = 3) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
        },
    )


def replay_with(db: Path, tiers_path: Path, handler, **kw: object):
    tiers = write_tiers(tiers_path, BASE_URL, kw.pop("tiers", [tier("a", "m-a")]))  # type: ignore[arg-type]
    context = RunContext(
        kw.pop("environ", {}),  # type: ignore[arg-type]
        wall,
        kw.pop("timer", FakeClock()),  # type: ignore[arg-type]
        transport=httpx.MockTransport(handler),
    )
    with Store.open(db) as store:
        return replay.replay(
            store, tiers, Selection(100, 0), context, max_cost_usd=None, retry_failed=False
        )


def test_replay_sends_one_body_per_request_and_stores_the_replies(tmp_path: Path) -> None:
    db = make_store(tmp_path / "s.duckdb", 4)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = json.loads(request.content)
        return completion("echo " + body["messages"][0]["content"][:10])

    summary = replay_with(
        db,
        tmp_path / "t.yaml",
        handler,
        tiers=[tier("a", "m-a", api_key_env="KEY", confidence="none")],
        environ={"KEY": "sk-mock-123456789"},
    )
    assert (summary.tiers[0].done, summary.tiers[0].http_calls) == (4, 4)
    assert {r.url.path for r in seen} == {"/v1/chat/completions"}
    assert {r.headers["authorization"] for r in seen} == {"Bearer sk-mock-123456789"}
    assert {json.loads(r.content)["model"] for r in seen} == {"m-a"}
    prompts = sorted(json.loads(r.content)["messages"][0]["content"] for r in seen)
    assert prompts == sorted(prompt(i) for i in range(4))
    outputs = query(db, "SELECT output, cost_usd FROM attempts ORDER BY request_id")
    assert outputs[0] == ("echo question 0", (10 * 1 + 3 * 2) / 1e6)


def test_replay_honours_retry_after_on_the_fake_clock(tmp_path: Path) -> None:
    db = make_store(tmp_path / "s.duckdb", 1)
    tries: Counter[str] = Counter()

    def handler(request: httpx.Request) -> httpx.Response:
        tries["n"] += 1
        if tries["n"] == 1:
            return httpx.Response(429, headers={"Retry-After": "7"}, json={"error": "slow down"})
        return completion("ok")

    clock = FakeClock()
    summary = replay_with(db, tmp_path / "t.yaml", handler, timer=clock)
    assert (summary.tiers[0].done, summary.tiers[0].http_calls) == (1, 2)
    assert sum(clock.sleeps) >= 7


def test_replay_records_a_request_failure_once(tmp_path: Path) -> None:
    db = make_store(tmp_path / "s.duckdb", 2)

    def handler(request: httpx.Request) -> httpx.Response:
        if prompt(0) in request.content.decode():
            return httpx.Response(400, json={"error": {"message": "context length exceeded"}})
        return completion("ok")

    summary = replay_with(db, tmp_path / "t.yaml", handler)
    assert (summary.tiers[0].done, summary.tiers[0].failed) == (1, 1)
    assert query(db, "SELECT error, http_status FROM replay_calls WHERE status = 'error'") == [
        ("HTTP 400: context length exceeded", 400)
    ]


def test_judge_verdicts_through_a_mock_transport(tmp_path: Path) -> None:
    work = label_support.write_workload(tmp_path / "logs.jsonl", n=6)
    db = tmp_path / "s.duckdb"
    with Store.open(db) as store:
        ingest.ingest(store, [work.logs], strict=False, clock=label_support.clock)
    tiers_path = tmp_path / "tiers.yaml"
    tiers_path.write_text(
        label_support.TIERS_YAML.replace("m-large,", f"m-large, base_url: '{BASE_URL}',"),
        encoding="utf-8",
    )
    tiers = load_tiers(tiers_path)
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        text = json.loads(request.content)["messages"][1]["content"]
        asked.append(text)
        return completion(
            "SCORE: 1" if "wrong" not in text.split("Answer to grade:")[1] else "SCORE: 0"
        )

    context = RunContext(
        {}, label_support.clock, FakeClock(), transport=httpx.MockTransport(handler)
    )
    with Store.open(db) as store:
        summary = judge.judge_answers(
            store,
            tiers,
            judge.judge_tier(tiers, "large"),
            Selection(100, 0),
            context,
            judged=("small",),
            max_cost_usd=None,
            retry_failed=False,
        )
    assert summary.labeled == len(asked) == 6
    scores = dict(query(db, "SELECT request_id, score FROM labels WHERE source = 'judge'"))
    assert scores == {rid: float(t["small"]) for rid, t in work.truth.items()}


def test_transport_exception_text_is_never_kept(tmp_path: Path) -> None:
    """h11 quotes a bad header whole; what is kept is our own words, and the tier pauses."""
    db = make_store(tmp_path / "s.duckdb", 3)
    leak = "Illegal header value b'Bearer sk-should-never-show\\n'"

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.LocalProtocolError(leak)

    summary = replay_with(db, tmp_path / "t.yaml", handler)
    paused = summary.tiers[0].paused or ""
    assert paused.startswith("the request could not be sent (LocalProtocolError)")
    assert "sk-should" not in repr(summary)
    assert query(db, "SELECT count(*) FROM replay_calls") == [(0,)]


def test_a_refused_connection_is_not_stored_and_keeps_only_the_os_reason(tmp_path: Path) -> None:
    db = make_store(tmp_path / "s.duckdb", 2)

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("proxy said: Authorization: Bearer sk-should-never-show") from (
            ConnectionRefusedError(111, "Connection refused")
        )

    summary = replay_with(db, tmp_path / "t.yaml", handler)
    assert (summary.tiers[0].done, summary.tiers[0].failed, summary.tiers[0].not_run) == (0, 0, 2)
    assert any(
        "connection error: ConnectError (Connection refused) (gave up after 5 tries)" in w
        for w in summary.warnings
    )
    assert "sk-should" not in repr(summary)
    assert query(db, "SELECT count(*) FROM replay_calls") == [(0,)]


def test_scrub_takes_the_union_of_every_form_and_any_long_prefix() -> None:
    key = "sk-ABCDEFGH/12+34=56"
    text = (
        f"raw {key}; url {quote(key, safe='')}; lower {quote(key, safe='').lower()}; "
        f"cut {key[:9]}; repr {(key + chr(10)).encode()!r}; short sk-ABCD stays"
    )
    assert secrets.scrub(text, key) == (
        "raw ***; url ***; lower ***; cut ***; repr b'***\\n'; short sk-ABCD stays"
    )
