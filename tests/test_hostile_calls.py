"""Hostile and broken input around calls and the store (issue 16 §1, §3 and four bullets of §5),
one test per item, each probing the CLI from outside over real loopback HTTP
(tests/llm_server.py) and real DuckDB files:

- §1 an API key, in every form a server may echo it, never reaches stdout, stderr, --json, a
  file or the store; a key with a stray control character is refused when it is read;
- §3 `replay --where` cannot read files, list directories or reach the network, and a runtime
  error in it is `Error:`/`Hint:`;
- §5 `--strict` on a new store creates nothing; killed runs are reported with their spend; an
  unreachable server or a refused key is retried by the next run, a cut-short body at once;
  read-only commands share a store, and a lock error names the process holding it.
"""

from __future__ import annotations

import html
import json
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from llm_server import Call, LLMServer, Reply, error
from replay_support import (
    FakeClock,
    make_store,
    prompt,
    query,
    run_replay,
    tier,
    wall,
    write_tiers,
)
from typer.testing import CliRunner

from calibrate.calls.context import RunContext
from calibrate.calls.limits import SystemClock
from calibrate.cli.app import app
from calibrate.errors import EndpointError
from calibrate.records.replay import Selection
from calibrate.replay import stage as replay_stage
from calibrate.store import Store

runner = CliRunner()

# --- §1 secrets ---------------------------------------------------------------------------------

CANARY = "sk-LEAKCANARY/7f+3a=9b_0c1d2e3f4a5b6c7d8e9f"
KEY_ENV = "CAL_CANARY_KEY"


def _canary_windows() -> set[str]:
    """Every 8-character piece of the key and of its escaped forms: finding any of them means
    some of the key got out (a prefix, or the tail a partial scrub left behind)."""
    forms = {CANARY, quote(CANARY, safe=""), quote_plus(CANARY), json.dumps(CANARY)[1:-1]}
    return {f[i : i + 8] for f in forms for i in range(len(f) - 7)}


def _free_port() -> int:
    """A loopback port nobody listens on: connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _echoing(call: Call) -> Reply | None:
    """A server that echoes the Authorization header back in every way it can."""
    auth = call.authorization or ""
    if call.model == "m-locked":
        return error(401, f"invalid key {auth}")
    if call.model == "m-lite":  # LiteLLM answers a bad key with HTTP 400
        return error(400, f"Authentication Error, Invalid proxy server token passed. {auth}")
    if call.model == "m-judge":
        return error(400, "x" * (290 - len("Bearer ")) + auth + " (the key starts at 290)")
    echoes = {
        prompt(0): lambda: error(400, f"bad request from {auth}"),
        prompt(1): lambda: error(500, f"upstream failed for {quote(auth, safe='')}"),
        prompt(2): lambda: error(400, "x" * (290 - len("Bearer ")) + auth + " trailing"),
        prompt(3): lambda: Reply(200, _answer(f"{auth.encode()!r} {json.dumps(auth)}")),
        prompt(4): lambda: Reply(422, f"<html><pre>{html.escape(auth)}</pre></html>".encode()),
        prompt(5): lambda: Reply(200, b'{"choices": [{"message": {"content": "' + auth.encode()),
        prompt(6): lambda: Reply(200, _answer("ok", logprob=auth)),
        prompt(7): lambda: Reply(200, _answer(f"{quote_plus(auth)} {auth[:20]}")),
    }
    make = echoes.get(call.prompt)
    return make() if make else None


def _answer(content: str, logprob: object = None) -> bytes:
    choice: dict = {"index": 0, "message": {"role": "assistant", "content": content}}
    if logprob is not None:
        choice["logprobs"] = {"content": [{"token": "ok", "logprob": logprob}]}
    usage = {"prompt_tokens": 10, "completion_tokens": 2}
    return json.dumps({"choices": [choice], "usage": usage}).encode()


def _store_cells(db: Path) -> str:
    """Every cell of every table as text (DuckDB compresses strings on disk, so the raw bytes
    alone could hide one)."""
    with Store.open(db) as store:
        tables = [t for (t,) in store.con.execute("SHOW TABLES").fetchall()]
        dump = {t: store.con.execute(f'SELECT * FROM "{t}"').fetchall() for t in tables}
    return json.dumps(dump, default=str)


def _no_canary(where: str, text: str) -> None:
    lowered = text.lower()
    found = sorted(w for w in _canary_windows() if w.lower() in lowered)
    assert not found, f"key pieces in {where}: {found[:5]}"


def test_the_key_in_every_form_never_leaves_the_process(tmp_path: Path) -> None:
    db = make_store(tmp_path / "s.duckdb", 12)
    dead = f"http://127.0.0.1:{_free_port()}/v1"
    keyed = {"api_key_env": KEY_ENV}
    once = {"max_retries": 1, "pause_after_failures": 100}
    authorizations: Counter[str | None] = Counter()
    seen = lambda call: authorizations.update([call.authorization])  # noqa: E731
    with LLMServer(responder=_echoing, on_call=seen) as srv:
        tiers = tmp_path / "tiers.yaml"
        write_tiers(
            tiers,
            srv.base_url,
            [
                tier("locked", "m-locked", **keyed),
                tier("lite", "m-lite", **keyed),
                tier("echo", "m-echo", limits=once, **keyed),  # the premium: judged on its own
            ],
        )
        spec = json.loads(tiers.read_text())
        spec["tiers"].insert(0, {**tier("dead", "m-dead", limits=once, **keyed), "base_url": dead})
        tiers.write_text(json.dumps(spec), encoding="utf-8")
        replay = ["replay", "--tiers", str(tiers), "--db", str(db)]
        judge = [
            *("labels", "judge", "--tiers", str(tiers), "--db", str(db), "--tier", "echo"),
            *("--judge", srv.base_url, "--judge-model", "m-judge", "--judge-key-env", KEY_ENV),
            *("--judge-price", "1,2"),
        ]
        newline = {KEY_ENV: CANARY + "\n"}  # as a .env file or a Kubernetes secret gives it
        results = {
            "dry run": runner.invoke(app, [*replay, "--dry-run"], env=newline),
            "replay": runner.invoke(app, replay, env=newline),
            "replay --json": runner.invoke(app, [*replay, "--json", "--retry-failed"], env=newline),
            "clean key": runner.invoke(app, [*replay, "--json"], env={KEY_ENV: CANARY}),
            "judge": runner.invoke(app, [*judge, "--json"], env=newline),
        }
        models = Counter(c["model"] for c in srv.calls)
    for name, result in results.items():
        assert result.exception is None or isinstance(result.exception, SystemExit), name
        _no_canary(f"{name} stdout", result.stdout)
        _no_canary(f"{name} stderr", result.stderr)
    # the key went out, stripped of its newline, on every call, and every path was taken
    assert authorizations == {f"Bearer {CANARY}": len(srv.calls)}
    assert models["m-echo"] >= 12 and models["m-judge"] >= 1
    assert models["m-locked"] >= 1 and models["m-lite"] >= 1
    for name, result in results.items():
        assert result.exception is None or isinstance(result.exception, SystemExit), name
        _no_canary(f"{name} stdout", result.stdout)
        _no_canary(f"{name} stderr", result.stderr)
    assert "tier 'locked' paused: HTTP 401: invalid key Bearer ***" in results["replay"].stderr
    assert "tier 'lite' paused: HTTP 400: Authentication Error" in results["replay"].stderr
    assert "connection error: ConnectError (Connection refused)" in results["replay"].stderr
    errors = dict(query(db, "SELECT error, count(*) FROM replay_calls GROUP BY 1"))
    clipped = ("x" * 283 + "Bearer *** trailing")[:300]  # scrubbed first, then clipped
    assert f"HTTP 400: {clipped}" in errors
    assert "truncated response: the body ends mid-JSON (gave up after 2 tries)" in errors
    for path in tmp_path.rglob("*"):
        if path.is_file():
            _no_canary(str(path), path.read_bytes().decode("latin-1"))
    _no_canary("the store's cells", _store_cells(db))


def test_a_key_with_a_control_character_inside_is_refused_unseen(tmp_path: Path) -> None:
    db = make_store(tmp_path / "s.duckdb", 2)
    with LLMServer() as srv:
        tiers = tmp_path / "tiers.yaml"
        write_tiers(tiers, srv.base_url, [tier("a", "m-a", api_key_env=KEY_ENV)])
        broken = CANARY[:12] + "\r\n" + CANARY[12:]
        result = runner.invoke(
            app, ["replay", "--tiers", str(tiers), "--db", str(db)], env={KEY_ENV: broken}
        )
        assert srv.calls == []
    assert result.exit_code == 1
    assert f"{KEY_ENV} holds a control character (U+000D) at position 13" in result.stderr
    assert "Hint:" in result.stderr
    _no_canary("stderr", result.stdout + result.stderr)


# --- §3 --where is a filter, not a shell --------------------------------------------------------


def test_where_reads_no_file_directory_or_url(tmp_path: Path) -> None:
    db = make_store(tmp_path / "s.duckdb", 3)
    private = tmp_path / "private"
    private.mkdir()
    secret = private / "TOPSECRET-listing.txt"
    secret.write_text("CONTENTS-OF-A-PRIVATE-FILE\n", encoding="utf-8")
    extensions = Path.home() / ".duckdb" / "extensions"
    installed_before = sorted(extensions.rglob("*")) if extensions.exists() else []
    with socket.socket() as listener, LLMServer() as srv:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/x.csv"
        tiers = tmp_path / "tiers.yaml"
        write_tiers(tiers, srv.base_url, [tier("a", "m-a")])
        attempts = {
            "a file": f"(SELECT count(*) FROM read_csv('{secret}')) > 0",
            "a directory": f"(SELECT count(*) FROM glob('{private}/*')) > 0",
            "a failing cast": "CAST((SELECT column0 FROM read_csv("
            f"'{secret}', header = false) LIMIT 1) AS INTEGER) > 0",
            "a URL": f"(SELECT count(*) FROM read_csv('{url}')) > 0",
            "a runtime error": "CAST(request_id AS INTEGER) > 0",
        }
        results = {
            name: runner.invoke(
                app, ["replay", "--tiers", str(tiers), "--db", str(db), "--where", where]
            )
            for name, where in attempts.items()
        }
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected to the URL
        assert srv.calls == []
    for name, result in results.items():
        out = result.stdout + result.stderr
        assert result.exit_code == 1, (name, out)
        assert isinstance(result.exception, SystemExit), (name, result.exception)
        assert "Error: --where" in result.stderr and "Hint:" in result.stderr, name
        assert "Traceback" not in out and "CONTENTS-OF-A-PRIVATE-FILE" not in out, name
    assert "TOPSECRET" not in results["a directory"].stdout + results["a directory"].stderr
    assert "--where failed while running: Conversion Error" in results["a runtime error"].stderr
    assert (sorted(extensions.rglob("*")) if extensions.exists() else []) == installed_before
    assert query(db, "SELECT count(*) FROM replay_runs") == [(0,)]


# --- §5 smaller holes -------------------------------------------------------------------------


def _sweepable_logs(path: Path, n: int = 30) -> Path:
    """n labelled requests, each answered by two tiers (enough for a sweep without --certify)."""
    rows = []
    for i in range(n):
        attempt = {"input_tokens": 10, "output_tokens": 5, "status": "ok"}
        rows.append(
            {
                "request_id": f"r-{i}",
                "timestamp": f"2026-10-01T09:{i % 60:02d}:00Z",
                "prompt": f"question {i}",
                "attempts": [
                    {"tier": "small", "confidence": 0.5 + i / 100, "latency_ms": 100, **attempt},
                    {"tier": "large", "confidence": 0.99, "latency_ms": 300, **attempt},
                ],
                "labels": {"small": i % 2, "large": 1},
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


SWEEP_TIERS = """tiers:
  - {name: small, model: m-small, price: {input_per_mtok: 0.15, output_per_mtok: 0.6}}
  - {name: large, model: m-large, price: {input_per_mtok: 2.5, output_per_mtok: 10}}
"""


def test_strict_on_a_new_store_creates_nothing(tmp_path: Path) -> None:
    logs = _sweepable_logs(tmp_path / "logs.jsonl", 5)
    with logs.open("a", encoding="utf-8") as fh:
        fh.write("this line is not JSON\n")
    tiers = tmp_path / "tiers.yaml"
    tiers.write_text(SWEEP_TIERS, encoding="utf-8")
    fresh = tmp_path / "new" / "deeper" / "s.duckdb"
    commands = {
        "ingest": ["ingest", str(logs), "--db", str(fresh), "--strict"],
        "sweep": ["sweep", str(logs), "--tiers", str(tiers), "--db", str(fresh), "--strict"],
    }
    for name, args in commands.items():
        result = runner.invoke(
            app, [*args, "--out", str(tmp_path / "o")] if name == "sweep" else args
        )
        assert result.exit_code == 1, (name, result.output)
        assert "nothing was written" in result.stderr, name
        assert not (tmp_path / "new").exists(), (
            f"{name} left {sorted((tmp_path / 'new').rglob('*'))}"
        )
    # an existing store is kept, untouched
    kept = make_store(tmp_path / "kept.duckdb", 2)
    result = runner.invoke(app, ["ingest", str(logs), "--db", str(kept), "--strict"])
    assert result.exit_code == 1
    assert query(kept, "SELECT count(*) FROM requests") == [(2,)]


def test_killed_runs_are_reported_with_their_spend(tmp_path: Path) -> None:
    db = make_store(tmp_path / "s.duckdb", 6)
    with Store.open(db) as store, store.transaction():
        store.begin_ingest_run(wall(), False)  # what a SIGKILL mid-ingest leaves behind

    def killed_after_three(done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt  # the process dies: the run never writes its end

    with LLMServer() as srv:
        tiers = write_tiers(
            tmp_path / "t.yaml", srv.base_url, [tier("a", "m-a", limits={"concurrency": 1})]
        )
        with Store.open(db) as store, pytest.raises(KeyboardInterrupt):
            context = RunContext({}, wall, SystemClock(), on_progress=killed_after_three)
            replay_stage.replay(
                store, tiers, Selection(100, 0), context, max_cost_usd=None, retry_failed=False
            )
        ((spent, calls),) = query(
            db, "SELECT sum(cost_usd), count(*) FROM replay_calls WHERE run_id = 1"
        )
        assert calls == 3 and query(db, "SELECT finished_at, cost_usd FROM replay_runs") == [
            (None, None)
        ]
        status = runner.invoke(app, ["labels", "status", "--db", str(db)])
        assert status.exit_code == 0, status.output
        assert "ingest run 2 (started 2026-11-01 00:00:00 UTC) never finished" in status.stderr
        assert (
            f"replay run 1 (started 2026-11-01 00:00:00 UTC) never finished (interrupted): it spent ${spent:.6f} on 3 stored calls"
            in status.stderr
        )
        # the next run reports it, marks it killed with its spend, and finishes the work
        summary = run_replay(db, tiers)
    assert summary.tiers[0].done == 3
    assert any(w.startswith("replay run 1 ") and f"${spent:.6f}" in w for w in summary.warnings)
    assert query(db, "SELECT run_id, stopped, cost_usd FROM replay_runs ORDER BY 1")[0] == (
        1,
        "killed",
        pytest.approx(spent),
    )


def test_an_unreachable_server_is_called_again_by_the_next_run(tmp_path: Path) -> None:
    db = make_store(tmp_path / "s.duckdb", 8)
    port = _free_port()
    tiers = write_tiers(
        tmp_path / "t.yaml",
        f"http://127.0.0.1:{port}/v1",
        [tier("a", "m-a", limits={"concurrency": 1, "max_retries": 1, "pause_after_failures": 3})],
    )
    down = run_replay(db, tiers, clock=FakeClock())
    assert down.tiers[0].paused.startswith("3 consecutive failed calls, last: connection error")
    assert (down.tiers[0].failed, down.tiers[0].not_run) == (0, 8)
    assert query(db, "SELECT count(*) FROM replay_calls") == [(0,)]
    with pytest.raises(EndpointError) as paused:
        replay_stage.raise_for_paused(down)
    assert "--retry-failed" not in (paused.value.hint or "")  # nothing needs it
    with LLMServer().start(port) as srv:  # the server is back: no --retry-failed needed
        up = run_replay(db, tiers)
        assert len(srv.calls) == 8
    assert (up.tiers[0].done, up.tiers[0].failed_before) == (8, 0)


def test_a_key_refused_with_http_400_is_retried_by_the_next_run(tmp_path: Path) -> None:
    def litellm(call: Call) -> Reply | None:
        if call.authorization != "Bearer sk-good-key-123":
            return error(400, "Authentication Error, Invalid proxy server token passed.")
        return None

    db = make_store(tmp_path / "s.duckdb", 6)
    with LLMServer(responder=litellm) as srv:
        tiers = write_tiers(tmp_path / "t.yaml", srv.base_url, [tier("a", "m-a", api_key_env="K")])
        bad = run_replay(db, tiers, environ={"K": "sk-bad-key-456"})
        assert bad.tiers[0].paused.startswith("HTTP 400: Authentication Error")
        assert query(db, "SELECT count(*) FROM replay_calls") == [(0,)]
        good = run_replay(db, tiers, environ={"K": "sk-good-key-123"})
    assert (good.tiers[0].done, good.tiers[0].failed_before) == (6, 0)


def test_the_pause_hint_names_retry_failed_when_failures_were_stored(tmp_path: Path) -> None:
    db = make_store(tmp_path / "s.duckdb", 6)
    with LLMServer(responder=lambda call: error(500, "down")) as srv:
        limits = {"concurrency": 1, "max_retries": 0, "pause_after_failures": 2}
        tiers = write_tiers(tmp_path / "t.yaml", srv.base_url, [tier("a", "m-a", limits=limits)])
        summary = run_replay(db, tiers, clock=FakeClock())
    assert summary.tiers[0].failed == 2
    with pytest.raises(EndpointError) as paused:
        replay_stage.raise_for_paused(summary)
    assert (
        "The 2 requests stored as failed before the pause are called again only with --retry-failed"
        in (paused.value.hint or "")
    )


def test_a_body_cut_short_is_retried_like_a_5xx(tmp_path: Path) -> None:
    seen: Counter[str] = Counter()

    def under_load(call: Call) -> Reply | None:
        seen[call.prompt] += 1
        return (
            Reply(200, b'{"choices": [{"message": {"content": "half an ans')
            if seen[call.prompt] == 1
            else None
        )

    db = make_store(tmp_path / "s.duckdb", 4)
    with LLMServer(responder=under_load) as srv:
        tiers = write_tiers(tmp_path / "t.yaml", srv.base_url, [tier("a", "m-a")])
        summary = run_replay(db, tiers, clock=FakeClock())
    assert (summary.tiers[0].done, summary.tiers[0].failed, summary.tiers[0].http_calls) == (
        4,
        0,
        8,
    )


def _hold(db: Path, *, read_only: bool) -> subprocess.Popen:
    """Another process holding the store open until its stdin closes."""
    code = (
        "import duckdb, sys\n"
        f"con = duckdb.connect(sys.argv[1], read_only={read_only})\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
    return holder


def test_read_only_commands_share_a_store_and_a_lock_names_its_holder(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    logs = _sweepable_logs(tmp_path / "logs.jsonl")
    tiers = tmp_path / "tiers.yaml"
    tiers.write_text(SWEEP_TIERS, encoding="utf-8")
    assert runner.invoke(app, ["ingest", str(logs), "--db", str(db)]).exit_code == 0
    sweep = ["sweep", "--db", str(db), "--tiers", str(tiers), "--no-certify", "--no-router"]
    reader = _hold(db, read_only=True)  # another sweep, reading
    try:
        result = runner.invoke(app, [*sweep, "--out", str(tmp_path / "o")])
        status = runner.invoke(app, ["labels", "status", "--db", str(db)])
    finally:
        reader.communicate("")
    assert result.exit_code == 0, result.output
    assert status.exit_code == 0, status.output
    writer = _hold(db, read_only=False)  # an ingest, writing
    try:
        blocked = runner.invoke(app, [*sweep, "--out", str(tmp_path / "o2")])
    finally:
        writer.communicate("")
    assert blocked.exit_code == 1 and isinstance(blocked.exception, SystemExit)
    assert f"Another process (PID {writer.pid}," in blocked.stderr
    assert "Wait for it to finish" in blocked.stderr
