"""A real LiteLLM proxy on loopback writes its `StandardLoggingPayload` records to a local file,
and `calibrate ingest` of that file gives the requests the client made (issue 15 §1; marker
`gateways`, `make test-gateways` installs the proxy).

LiteLLM (1.108.7) has no built-in logger that writes the payload to a local file: its payload
loggers ship it to S3, GCS, Azure Blob or an HTTP endpoint (`generic_api`). The proxy's documented
path for anything else is a custom callback, so the proxy here loads
tests/gateways/litellm_payload_file.py (`litellm_settings.callbacks`), which appends
`kwargs["standard_logging_object"]` as JSON lines, serialized by LiteLLM's own `safe_dumps`.
No database: the proxy runs without DATABASE_URL. Every answer and error is LiteLLM's own
`mock_response` (no upstream model is called); the retry, fallback and timeout are the proxy's
router at work.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from calibrate.cli.app import app
from calibrate.store import Store

pytestmark = pytest.mark.gateways

ROOT = Path(__file__).resolve().parent.parent
LITELLM_VENV = ROOT / ".gateways/litellm-venv/bin"
CALLBACK = Path(__file__).resolve().parent / "gateways/litellm_payload_file.py"
INSTALL = "run `make test-gateways`, which installs it"

# tiers.yaml prices equal LiteLLM's bundled cost map for these models (USD per million tokens),
# so the cost LiteLLM writes can be checked against tokens x price
TIERS = """
tiers:
  - name: small
    model: gpt-4o-mini
    aliases: [small, small-eu, small-pool]
    price: {input_per_mtok: 0.15, output_per_mtok: 0.60}
    confidence: logprob_mean
  - name: large
    model: gpt-4o
    aliases: [large]
    price: {input_per_mtok: 2.50, output_per_mtok: 10.00}
    confidence: logprob_mean
"""
PRICE_PER_TOKEN = {"small": (0.15e-6, 0.60e-6), "large": (2.50e-6, 10.00e-6)}
TIER_OF_GROUP = {"small": "small", "small-eu": "small", "small-pool": "small", "large": "large"}


def _deployment(group: str, model: str, mock: str, **extra: Any) -> dict[str, Any]:
    return {"model_name": group, "litellm_params": {"model": model, "mock_response": mock, **extra}}


CONFIG = {
    "model_list": [
        _deployment("small", "openai/gpt-4o-mini", "small answer"),
        _deployment("large", "openai/gpt-4o", "large answer"),
        # a regional deployment that fails with a 500; the router falls back to `large`
        _deployment("small-eu", "openai/gpt-4o-mini", "litellm.InternalServerError"),
        # a pool whose first deployment is rate-limited (429); the router retries the group
        _deployment("small-pool", "openai/gpt-4o-mini", "litellm.RateLimitError", order=1),
        _deployment("small-pool", "openai/gpt-4o-mini", "small answer", order=2),
        # a model no tier claims
        _deployment("legacy", "openai/gpt-3.5-turbo", "legacy answer"),
    ],
    "litellm_settings": {"callbacks": "litellm_payload_file.payload_file"},
    "router_settings": {"num_retries": 1, "retry_after": 0, "fallbacks": [{"small-eu": ["large"]}]},
    # lets a request ask for a mocked timeout (`mock_timeout`); off by default in the proxy
    "general_settings": {"dangerously_allow_mock_testing_request_params": True},
}

# (model group, prompt, extra body): the client's calls, in order
CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("small", "refund?", {"metadata": {"app": "support", "region": "eu", "intent": "refund"}}),
    # an app-level cascade, tied by a trace id: small answered, the app asked large
    ("small", "cascade by trace", {"litellm_trace_id": "cascade-trace-1"}),
    ("large", "cascade by trace", {"litellm_trace_id": "cascade-trace-1"}),
    # the same, tied by a session id
    ("small", "cascade by session", {"litellm_session_id": "cascade-session-2"}),
    ("large", "cascade by session", {"litellm_session_id": "cascade-session-2"}),
    ("small-eu", "fallback", {}),
    ("small-pool", "retry", {}),
    ("small", "timeout", {"mock_timeout": True, "timeout": 0.2}),
    ("legacy", "unmapped", {}),
]
# payload records the proxy writes: one per call, plus the router's failed try before its
# fallback (small-eu) and before its retry (small-pool)
EXPECTED_RECORDS = len(CALLS) + 2


def _litellm_or_skip() -> Path:
    if not (LITELLM_VENV / "litellm").exists():
        pytest.skip(f"litellm[proxy] is not installed in .gateways/litellm-venv ({INSTALL})")
    return LITELLM_VENV


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(proc: subprocess.Popen, url: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the LiteLLM proxy exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


def _records(path: Path, count: int, timeout_s: float = 60) -> list[dict[str, Any]]:
    """The payload lines, once the proxy's (asynchronous) callbacks have written `count`."""
    deadline = time.monotonic() + timeout_s
    while True:
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return [json.loads(line) for line in lines]
        time.sleep(0.2)


def _run_proxy(venv: Path, work: Path) -> tuple[Path, list[int]]:
    """Start the proxy on loopback, make CALLS through it, stop it; the payload file and the
    HTTP status of each call."""
    shutil.copy(CALLBACK, work / CALLBACK.name)  # the proxy imports callbacks beside its config
    config = work / "config.yaml"
    config.write_text(json.dumps(CONFIG), encoding="utf-8")  # JSON is YAML
    log = work / "logs" / "litellm_payload.jsonl"
    log.parent.mkdir()
    master_key = "sk-" + secrets.token_hex(24)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_MASTER_KEY=master_key, PAYLOAD_LOG=str(log)
    )
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proxy = subprocess.Popen(
        [str(venv / "litellm"), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=work,
    )  # fmt: skip
    try:
        _wait_up(proxy, base + "/health/liveliness")
        codes = []
        with httpx.Client(headers={"Authorization": f"Bearer {master_key}"}, timeout=60) as client:
            for group, prompt, extra in CALLS:
                body = {"model": group, "messages": [{"role": "user", "content": prompt}], **extra}
                codes.append(client.post(base + "/v1/chat/completions", json=body).status_code)
        _records(log, EXPECTED_RECORDS)
    finally:
        proxy.terminate()
        proxy.wait(30)
    return log, codes


def _attempts(store: Store, request_id: str) -> list[dict[str, Any]]:
    cursor = store.con.execute(
        "SELECT tier, status, model, cost_usd, latency_ms, input_tokens, output_tokens, output, "
        "extra FROM attempts WHERE request_id = ? AND source = 'prod' ORDER BY position",
        [request_id],
    )
    keys = [column[0] for column in cursor.description]
    out = [dict(zip(keys, row, strict=True)) for row in cursor.fetchall()]
    for a in out:
        a["extra"] = json.loads(a["extra"]) if a["extra"] else {}
    return out


def _assert_units(
    by_prompt: dict[str, list[dict[str, Any]]],
    requests: dict[str, tuple],
    attempts: dict[str, list[dict[str, Any]]],
) -> None:
    """Costs in USD as LiteLLM wrote them, and equal to its tokens x the model's price; latency in
    ms from the payload's epoch-second start and end; a request starts at its first call."""
    for prompt, calls in by_prompt.items():
        if prompt == "unmapped":
            continue
        assert requests[prompt][0].timestamp() == pytest.approx(calls[0]["startTime"])
        assert json.loads(requests[prompt][5]) == [{"role": "user", "content": prompt}]
        last = {}  # the attempt of a tier is its last call (earlier ones are retries)
        for call in calls:
            last[TIER_OF_GROUP[call["model_group"]]] = call
        for attempt in attempts[prompt]:
            call = last[attempt["tier"]]
            assert attempt["cost_usd"] == call["response_cost"]
            assert attempt["latency_ms"] == pytest.approx(  # times are kept to the microsecond
                (call["endTime"] - call["startTime"]) * 1000, abs=1e-3
            )
            assert attempt["latency_ms"] > 0
            if attempt["status"] == "ok":
                per_in, per_out = PRICE_PER_TOKEN[attempt["tier"]]
                tokens = (call["prompt_tokens"], call["completion_tokens"])
                assert (attempt["input_tokens"], attempt["output_tokens"]) == tokens
                assert tokens[0] > 0 and tokens[1] > 0
                assert attempt["cost_usd"] == pytest.approx(
                    tokens[0] * per_in + tokens[1] * per_out
                )
                assert attempt["output"] == f"{attempt['tier']} answer"
            else:
                assert attempt["cost_usd"] == 0.0 and attempt["output"] is None


def test_ingest_of_what_the_litellm_proxy_wrote(tmp_path: Path) -> None:
    venv = _litellm_or_skip()
    log, codes = _run_proxy(venv, tmp_path)
    assert codes == [200, 200, 200, 200, 200, 200, 200, 408, 200]
    records = _records(log, EXPECTED_RECORDS, timeout_s=0)
    assert len(records) == EXPECTED_RECORDS
    by_prompt: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(records, key=lambda r: r["startTime"]):
        by_prompt.setdefault(r["messages"][0]["content"], []).append(r)

    (tmp_path / "tiers.yaml").write_text(TIERS, encoding="utf-8")
    db = tmp_path / "store.duckdb"
    result = CliRunner().invoke(
        app, ["ingest", str(log.parent), "--tiers", str(tmp_path / "tiers.yaml"), "--db", str(db),
              "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["formats"] == [["litellm-payload", 1]]
    assert (summary["rows_read"], summary["rows_kept"], summary["rows_rejected"]) == (11, 10, 1)
    assert summary["unmapped_models"] == [["legacy (also openai/gpt-3.5-turbo)", 1]]

    # each request is keyed by the trace id LiteLLM wrote: the client's trace or session id, or
    # the proxy's own id shared by a router's retries and fallbacks
    trace = {prompt: {r["trace_id"] for r in rs} for prompt, rs in by_prompt.items()}
    assert trace["cascade by trace"] == {"cascade-trace-1"}
    assert trace["cascade by session"] == {"cascade-session-2"}
    assert all(len(ids) == 1 for ids in trace.values())
    request_of = {prompt: next(iter(ids)) for prompt, ids in trace.items()}

    with Store.open(db) as store:
        rows = store.con.execute(
            "SELECT request_id, ts, app, region, served_tier, metadata::VARCHAR, "
            "messages::VARCHAR FROM requests"
        ).fetchall()
        requests = {r[0]: r[1:] for r in rows}
        assert set(requests) == {request_of[p] for _, p, _ in CALLS if p != "unmapped"}
        steps = {
            prompt: [(a["tier"], a["status"], a["extra"]["reached_by"]) for a in _attempts(store, rid)]
            for prompt, rid in request_of.items()
        }  # fmt: skip
        attempts = {prompt: _attempts(store, rid) for prompt, rid in request_of.items()}

    assert steps == {
        "refund?": [("small", "ok", "first")],
        "cascade by trace": [("small", "ok", "first"), ("large", "ok", "escalation")],
        "cascade by session": [("small", "ok", "first"), ("large", "ok", "escalation")],
        "fallback": [("small", "error", "first"), ("large", "ok", "fallback")],
        "retry": [("small", "ok", "first")],
        "timeout": [("small", "timeout", "first")],
        "unmapped": [],
    }
    served = {p: requests[request_of[p]][3] for p in request_of if p != "unmapped"}
    assert served == {"refund?": "small", "cascade by trace": "large", "timeout": None,
                      "cascade by session": "large", "fallback": "large", "retry": "small"}  # fmt: skip

    _assert_units(
        by_prompt, {p: requests[r] for p, r in request_of.items() if r in requests}, attempts
    )

    fallback_error = attempts["fallback"][0]["extra"]["error"]
    assert fallback_error == "500 InternalServerError"
    assert attempts["timeout"][0]["extra"]["error"] == "408 Timeout"
    # the 429 and the retry on the pool's second deployment: one attempt, the 429 counted
    (retried,) = attempts["retry"]
    first_try = by_prompt["retry"][0]
    assert first_try["status"] == "failure"
    assert first_try["error_information"]["error_code"] == "429"
    assert retried["extra"]["retries"] == 1 and retried["extra"]["retry_cost_usd"] == 0.0
    assert retried["extra"]["retry_latency_ms"] == pytest.approx(
        (first_try["endTime"] - first_try["startTime"]) * 1000, abs=1e-3
    )

    # the client's metadata gives app and region; the headers the proxy adds do not reach the store
    _, app_, region, _, meta, _ = requests[request_of["refund?"]]
    assert (app_, region) == ("support", "eu")
    metadata = json.loads(meta)
    assert metadata["intent"] == "refund" and metadata["log_format"] == "litellm-payload"
    assert "headers" not in metadata
    assert "headers" in by_prompt["refund?"][0]["metadata"]["requester_metadata"]
