"""`labels judge` over real loopback HTTP against tests/llm_server.py: verdicts become labels,
unparsable replies become errors (not scores), the cache makes a rerun free, the budget caps the
spend, agreement with humans, and the API key never reaches the store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from label_support import TIERS_YAML, clock, make_store, query
from llm_server import Call, LLMServer, Reply, error
from typer.testing import CliRunner

from calibrate.calls.context import RunContext
from calibrate.calls.limits import SystemClock
from calibrate.cli.app import app
from calibrate.config.tiers import TiersConfig, load_tiers
from calibrate.errors import ConfigError
from calibrate.labels import judge
from calibrate.labels import stage as labels
from calibrate.records.replay import Selection
from calibrate.stats.estimators import clopper_pearson
from calibrate.store import Store

pytestmark = pytest.mark.e2e  # judges through the real loopback LLM server: not in `make test-fast`

runner = CliRunner()
SECRET = "sk-test-judge-0123456789"


def reply(content: str) -> Reply:
    data = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 10},
    }
    return Reply(200, json.dumps(data).encode())


def fair_judge(call: Call) -> Reply:
    """SCORE: 1 when the graded answer equals the yardstick (or there is none); request ids
    divisible by 5 get a reply with no score in it."""
    text = call.body["messages"][1]["content"]
    number = int(re.search(r"question (\d+)", text).group(1))
    if number % 5 == 0:
        return reply("I would rather not say.")
    graded = text.split("Answer to grade:\n", 1)[1]
    parts = text.split(":\n")
    yardstick = parts[2].split("\n\n")[0] if "Answer to grade" not in parts[1] else None
    ok = yardstick is None or graded.strip() == yardstick.strip()
    return reply(f"Reasoning...\nSCORE: {int(ok)}")


def tiers_for(base_url: str, tmp_path: Path, **judge_extra: object) -> TiersConfig:
    data = {
        "tiers": [
            {"name": "small", "model": "m-small", "price": {"input_per_mtok": 0.1, "output_per_mtok": 0.1}},
            {"name": "large", "model": "m-large", "price": {"input_per_mtok": 2, "output_per_mtok": 8},
             "base_url": base_url, **judge_extra},
        ]
    }  # fmt: skip
    path = tmp_path / "tiers.yaml"
    path.write_text(json.dumps(data), encoding="utf-8")
    return load_tiers(path)


def run_judge(db: Path, tiers: TiersConfig, **kw: object):
    options = {"judged": tiers.names, "max_cost_usd": None, "retry_failed": False} | kw
    selection = options.pop("selection", Selection(1000, 0))
    context = RunContext(options.pop("environ", {}), clock, SystemClock())
    with Store.open(db) as store:
        return judge.judge_answers(
            store, tiers, judge.judge_tier(tiers, "large"), selection, context, **options
        )


@pytest.fixture
def server():
    with LLMServer(responder=fair_judge) as srv:
        yield srv


def test_verdicts_become_judge_labels_and_unparsable_replies_errors(tmp_path: Path, server) -> None:
    db, work = make_store(tmp_path, n=20)
    tiers = tiers_for(server.base_url, tmp_path)
    attempts_before = query(db, "SELECT count(*) FROM attempts")
    summary = run_judge(db, tiers)
    unreadable = [r for r in work.truth if int(r[2:]) % 5 == 0]
    assert summary.plan.items == 40
    assert (summary.unparsable, summary.labeled) == (2 * len(unreadable), 40 - 2 * len(unreadable))
    rows = query(
        db,
        "SELECT request_id, tier, score, labeler, detail, call_key FROM labels"
        " WHERE source = 'judge' ORDER BY 1, 2",
    )
    assert len(rows) == summary.labeled
    assert not {r[0] for r in rows} & set(unreadable)  # an unreadable reply is never a score
    assert {r[3] for r in rows} == {"judge:large (m-large)"}
    # the yardstick: the reference for every third request, else the premium answer (large
    # itself: no reference, judged on its own)
    modes = {(r[0], r[1]): r[4] for r in rows}
    assert modes[("r-0003", "small")] == "vs reference"
    assert modes[("r-0001", "small")] == "vs premium answer"
    assert modes[("r-0001", "large")] == "no reference"
    # the fair judge is right wherever the yardstick is the truth
    for rid, tier, score, *_ in rows:
        if int(rid[2:]) % 3 == 0:
            assert score == work.truth[rid][tier], (rid, tier)
    # each label points at its call; the call is a judge call, and no attempt was added
    calls = dict(query(db, "SELECT cache_key, purpose FROM replay_calls"))
    assert {calls[r[5]] for r in rows} == {"judge"}
    assert query(db, "SELECT count(*) FROM attempts") == attempts_before
    errors = query(db, "SELECT count(*), min(error) FROM replay_calls WHERE status = 'error'")
    assert errors == [(2 * len(unreadable), "unparsable judge reply: 'I would rather not say.'")]
    # the cost is the calls' cost, and it is counted
    total = query(db, "SELECT sum(cost_usd) FROM replay_calls WHERE purpose = 'judge'")[0][0]
    assert summary.cost_usd == pytest.approx(total)
    assert summary.total_judge_cost_usd == pytest.approx(total)
    assert summary.cost_usd == pytest.approx(len(server.calls) * (100 * 2 + 10 * 8) / 1e6)
    assert any("no readable SCORE line" in w for w in summary.warnings)


def test_a_rerun_is_served_from_the_cache_and_retry_failed_asks_again(
    tmp_path: Path, server
) -> None:
    db, _ = make_store(tmp_path, n=10)
    tiers = tiers_for(server.base_url, tmp_path)
    first = run_judge(db, tiers)
    made = len(server.calls)
    again = run_judge(db, tiers)
    assert (again.http_calls, len(server.calls)) == (0, made)
    assert again.plan.cached == first.labeled
    assert again.plan.failed_before == first.unparsable
    assert (again.labeled, again.resolved.unchanged) == (first.labeled, first.labeled)
    retried = run_judge(db, tiers, retry_failed=True)
    assert retried.http_calls == len(server.calls) - made > 0
    assert retried.unparsable == first.unparsable  # the same prompt gets the same reply


def test_the_budget_caps_the_spend_and_the_next_run_resumes(tmp_path: Path, server) -> None:
    db, _ = make_store(tmp_path, n=20)
    tiers = tiers_for(server.base_url, tmp_path, params={"max_tokens": 10})
    plan = run_judge(db, tiers, max_cost_usd=0.0).plan
    per_call = plan.cost_usd / plan.calls
    capped = run_judge(db, tiers, max_cost_usd=per_call * 5.5)
    assert capped.stopped == "budget"
    assert capped.cost_usd <= per_call * 5.5
    assert capped.not_run > 0
    rest = run_judge(db, tiers)
    assert rest.plan.calls == plan.calls - len(server.calls) + rest.http_calls
    assert rest.not_run == 0


def test_agreement_with_human_labels_and_its_interval(tmp_path: Path, server) -> None:
    db, work = make_store(tmp_path, n=30)
    # humans label every request with the truth, and reject r-0001's large answer, which the
    # judge (no reference: judged on its own merits) accepts: at least one miss
    work.truth["r-0001"]["large"] = 0
    rows = [
        {"request_id": rid, "tier": tier, "score": ok}
        for rid, by_tier in work.truth.items()
        for tier, ok in by_tier.items()
    ]
    path = tmp_path / "human.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with Store.open(db) as store:
        labels.import_labels(store, path, tiers=None, source="human", strict=False, clock=clock)
    summary = run_judge(db, tiers_for(server.base_url, tmp_path))
    judged = dict(
        ((rid, tier), score)
        for rid, tier, score in query(
            db, "SELECT request_id, tier, score FROM labels WHERE source = 'judge'"
        )
    )
    pairs = [(work.truth[rid][tier], score) for (rid, tier), score in judged.items()]
    misses = sum(1 for human, j in pairs if j >= 0.5 and human < 0.5)
    a = summary.agreement
    assert a is not None
    assert (a.overlap, a.misses) == (len(pairs), misses)
    assert a.agree == sum(1 for human, j in pairs if (j >= 0.5) == (human >= 0.5))
    assert a.miss_rate_interval == pytest.approx(clopper_pearson(misses, len(pairs)))
    assert misses > 0


def test_the_api_key_is_sent_but_never_stored(tmp_path: Path, server) -> None:
    db, _ = make_store(tmp_path, n=5)
    tiers = tiers_for(server.base_url, tmp_path, api_key_env="JUDGE_KEY")
    seen: list[str | None] = []
    server.on_call = lambda call: seen.append(call.authorization)
    summary = run_judge(db, tiers, environ={"JUDGE_KEY": SECRET})
    assert set(seen) == {f"Bearer {SECRET}"}
    dump = json.dumps(
        [
            query(db, f"SELECT * FROM {table}")
            for table in ("labels", "replay_calls", "replay_runs", "label_runs", "attempts")
        ],
        default=str,
    )
    assert SECRET not in dump
    assert SECRET not in repr(summary)
    with pytest.raises(ConfigError, match="JUDGE_KEY is not set"):
        run_judge(db, tiers, environ={})


def test_server_errors_are_failures_not_scores(tmp_path: Path) -> None:
    db, _ = make_store(tmp_path, n=6)

    def broken(call: Call) -> Reply:
        text = call.body["messages"][1]["content"]
        return error(400, "bad request") if "question 1\n" in text else fair_judge(call)

    with LLMServer(responder=broken) as srv:
        summary = run_judge(db, tiers_for(srv.base_url, tmp_path))
    assert summary.failed == 2  # r-0001 small and large
    assert query(
        db, "SELECT count(*) FROM labels WHERE source = 'judge' AND request_id = 'r-0001'"
    ) == [(0,)]


def test_judge_can_be_an_endpoint_from_the_command_line(tmp_path: Path, server) -> None:
    db, _ = make_store(tmp_path, n=8)
    tiers = tmp_path / "tiers.yaml"
    tiers.write_text(TIERS_YAML, encoding="utf-8")
    args = ["labels", "judge", "--judge", server.base_url, "--judge-model", "judge-m"]
    args += ["--judge-price", "1,2", "--tiers", str(tiers), "--db", str(db), "--tier", "small"]
    dry = runner.invoke(app, [*args, "--dry-run", "--json"], catch_exceptions=False)
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["items"] == 8
    assert server.calls == []
    result = runner.invoke(app, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["plan"]["model"] == "judge-m"
    assert data["labeled"] + data["unparsable"] == 8
    assert {c["model"] for c in server.calls} == {"judge-m"}
    assert query(db, "SELECT DISTINCT tier FROM labels WHERE source = 'judge'") == [("small",)]
    status = runner.invoke(app, ["labels", "status", "--db", str(db), "--markdown"])
    assert status.exit_code == 0
    assert "Judge: 8 calls" in status.stdout


def test_judge_errors_are_user_errors(tmp_path: Path) -> None:
    tiers = TiersConfig.model_validate(
        {"tiers": [{"name": "small", "model": "s"}, {"name": "large", "model": "l"}]}
    )
    with pytest.raises(ConfigError, match="neither a tier"):
        judge.judge_tier(tiers, "medium")
    with pytest.raises(ConfigError, match="the judge's model is needed"):
        judge.judge_tier(tiers, "http://127.0.0.1:1/v1")
    db, _ = make_store(tmp_path, n=3)
    with Store.open(db) as store, pytest.raises(ConfigError, match="no base_url"):
        judge.plan_judge(
            store, tiers, judge.judge_tier(tiers, "large"), Selection(5, 0),
            judged=("small",), retry_failed=False, clock=clock,
        )  # fmt: skip


def test_parse_verdict() -> None:
    assert judge.parse_verdict("fine\nSCORE: 1") == (1.0, None)
    assert judge.parse_verdict("Score = 0.25") == (0.25, None)
    assert judge.parse_verdict("score: 0 ... on reflection SCORE: **1**") == (1.0, None)
    assert judge.parse_verdict('{"score": 0}') == (0.0, None)
    assert judge.parse_verdict("SCORE: 7")[1] == "judge score out of range: 7"
    assert judge.parse_verdict("looks good")[1] == "unparsable judge reply: 'looks good'"
    assert judge.parse_verdict(None)[0] is None
