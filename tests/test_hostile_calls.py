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
import re
import socket
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from llm_server import Call, LLMServer, Reply, error
from replay_support import make_store, prompt, query, tier, write_tiers
from typer.testing import CliRunner, Result

from calibrate.cli.app import app
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
