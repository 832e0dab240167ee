"""The exported configs, checked by the real gateways (marker `gateways`; `make test-gateways`
installs them): vLLM Semantic Router's own validator, the Portkey gateway on loopback in front of
the test LLM server with `calibrate serve-gate` behind its guardrails, and LiteLLM's Router and
proxy. A component that is not installed skips its test with the reason; nothing is faked."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from export_support import cascade2, cascade3, hybrid, length_rules, write_routing
from llm_server import LLMServer
from replay_support import make_store, run_replay, tier
from replay_support import write_tiers as write_replay_tiers

from calibrate.config.routing import load_routing, policy_of
from calibrate.config.tiers import load_tiers, price_table
from calibrate.export import gate
from calibrate.export.targets import export_routing
from calibrate.policies.assignment import assign
from calibrate.store import Store
from calibrate.sweep.evaluate import evaluate_routing, family_for, keyword_forced

pytestmark = pytest.mark.gateways

ROOT = Path(__file__).resolve().parent.parent
GATEWAYS = ROOT / ".gateways"
PORTKEY_JS = GATEWAYS / "node_modules/@portkey-ai/gateway/build/start-server.js"
LITELLM_VENV = GATEWAYS / "litellm-venv/bin"
HERE = Path(__file__).resolve().parent / "gateways"
INSTALL = "run `make test-gateways`, which installs it"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, headers: dict | None = None, timeout_s: float = 180) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            r = httpx.get(url, headers=headers, timeout=5)
            if r.status_code < 500:
                return r
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout_s} s")
        time.sleep(0.5)


# --- vLLM Semantic Router -------------------------------------------------------------------


def test_vllm_sr_validator_accepts_exports_and_does_not_range_check(tmp_path: Path) -> None:
    if shutil.which("vllm-sr", path=str(Path(sys.executable).parent)) is None:
        pytest.skip(f"vllm-sr is not installed in this virtualenv ({INSTALL})")
    tiers = tmp_path / "tiers.yaml"
    from export_support import write_tiers

    write_tiers(tiers)
    files = []
    for name, config, approximate in [
        ("c2", cascade2(-0.4), False),
        ("c3", cascade3(-0.4, -0.9), True),
        ("hybrid", hybrid(-0.4), True),
        ("length", length_rules(300), True),
    ]:
        out = tmp_path / f"{name}.vllm-sr.yaml"
        out.write_text(export_routing(write_routing(tmp_path / f"{name}.yaml", config), "vllm-sr",
                                      tiers, approximate).text)  # fmt: skip
        files.append(out)
    # a threshold outside [0, 1]: the router would reject it at load time, the CLI's structural
    # check does not; our export refuses the raw threshold that would give it
    bad = tmp_path / "bad.vllm-sr.yaml"
    bad.write_text(files[0].read_text().replace("threshold: 0.8666666666666667", "threshold: 1.7"))
    assert "threshold: 1.7" in bad.read_text()
    run = subprocess.run(
        [sys.executable, str(HERE / "vllm_sr_validate.py"), *map(str, [*files, bad])],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    codes = json.loads(run.stdout.strip().splitlines()[-1])
    assert codes == {str(f): 0 for f in [*files, bad]}, run.stdout[-3000:]


# --- Portkey ----------------------------------------------------------------------------------


def _portkey_or_skip() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not on PATH")
    if not PORTKEY_JS.exists():
        pytest.skip(f"@portkey-ai/gateway is not installed in .gateways/ ({INSTALL})")
    return node


class Portkey:
    def __init__(self, node: str, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [node, "--require", str(HERE / "loopback.cjs"), str(PORTKEY_JS), "--headless",
             f"--port={port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_http(self.url + "/v1/models", timeout_s=60)

    def chat(self, config: dict, prompt: str) -> httpx.Response:
        return httpx.post(
            self.url + "/v1/chat/completions",
            headers={"x-portkey-config": json.dumps(config)},
            json={"model": "set-by-config", "messages": [{"role": "user", "content": prompt}]},
            timeout=60,
        )

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


PROMPTS = [f"question {i}: {w}" for i, w in enumerate(["what is the refund policy?"] * 30)]
KEYWORD_PROMPTS = [
    *(f"my invoice {i} is wrong" for i in range(5)),
    *(f"where is my order {i}" for i in range(5)),
]


def _served_by_evaluate(db: Path, routing_path: Path, tiers_path: Path) -> dict[str, str]:
    """Each request's tier as `calibrate evaluate` assigns it (its family, walked per request)."""
    config = load_routing(routing_path)
    prices = price_table(load_tiers(tiers_path))
    order = (*[t.name for t in config.tiers if t.name != config.premium_tier], config.premium_tier)
    with Store.open(db) as store:
        outcomes = store.outcomes(order, prices)
        family = family_for(policy_of(config), order, keyword_forced(store, config, outcomes))
        served = assign(outcomes, family, (0,) * len(family.grids)).served_tier
        texts = store.prompt_texts(outcomes.request_ids.tolist())
        escalation = evaluate_routing(store, config, prices).metrics["escalation_rate"]
    assert len(set(texts)) == len(texts)
    return {t: outcomes.tiers[j] for t, j in zip(texts, served, strict=True)} | {
        "_escalation_rate": escalation
    }


@pytest.mark.parametrize("strategy", ["cascade", "hybrid"])
def test_portkey_serves_the_tier_evaluate_assigns(tmp_path: Path, strategy: str) -> None:
    node = _portkey_or_skip()
    prompts = [f"request {i}: please check the refund policy" for i in range(40)]
    if strategy == "hybrid":
        prompts += KEYWORD_PROMPTS
    with LLMServer() as llm:
        tiers_path = tmp_path / "tiers.yaml"
        tiers = write_replay_tiers(
            tiers_path, llm.base_url,
            [tier("small", "gpt-4o-mini", api_key_env="TEST_KEY"),
             tier("large", "gpt-4.1", api_key_env="TEST_KEY")],
        )  # fmt: skip
        db = make_store(tmp_path / "calibrate.duckdb", len(prompts), prompts=lambda i: prompts[i])
        run_replay(db, tiers, environ={"TEST_KEY": "sk-test"})
        with Store.open(db) as store:
            conf = store.outcomes(("small", "large"), price_table(tiers)).confidence[:, 0]
        tau = float(np.median(conf))  # confidences straddle the threshold
        config = cascade2(tau) if strategy == "cascade" else hybrid(tau)
        routing_path = write_routing(tmp_path / "routing.yaml", config)
        expected = _served_by_evaluate(db, routing_path, tiers_path)
        rules = gate.gate_rules(config, tiers)
        server = gate.make_server(rules, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        exported = export_routing(routing_path, "portkey", tiers_path,
                                  gate_url=f"http://127.0.0.1:{server.server_port}")  # fmt: skip
        portkey_config = json.loads(exported.text.replace("${TEST_KEY}", "sk-test"))
        portkey = Portkey(node, free_port())
        try:
            models = {"gpt-4o-mini": "small", "gpt-4.1": "large"}
            served = {}
            for p in prompts:
                r = portkey.chat(portkey_config, p)
                assert r.status_code == 200, r.text[:500]
                served[p] = models[r.json()["model"]]
            bogus = portkey.chat({"strategy": {"mode": "bogus"}, "targets": []}, "hello")
        finally:
            portkey.stop()
            server.shutdown()
            server.server_close()
    escalation = expected.pop("_escalation_rate")
    assert served == expected
    assert {"small", "large"} <= set(served.values())
    cascade_rows = [p for p in prompts if p not in KEYWORD_PROMPTS]
    assert np.mean([served[p] == "large" for p in cascade_rows]) == pytest.approx(
        escalation
        if strategy == "cascade"
        else np.mean([expected[p] == "large" for p in cascade_rows])
    )
    assert bogus.status_code == 400


# --- LiteLLM ----------------------------------------------------------------------------------


def _litellm_or_skip() -> Path:
    if not (LITELLM_VENV / "litellm").exists():
        pytest.skip(f"litellm[proxy] is not installed in .gateways/litellm-venv ({INSTALL})")
    return LITELLM_VENV


def test_litellm_router_proxy_and_the_documented_snippet(tmp_path: Path) -> None:
    venv = _litellm_or_skip()
    prompts = [f"request {i}: please check the refund policy" for i in range(20)]
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "TEST_KEY": "sk-test",
           "LITELLM_MASTER_KEY": "sk-" + secrets.token_hex(24)}  # fmt: skip
    with LLMServer() as llm:
        tiers_path = tmp_path / "tiers.yaml"
        write_replay_tiers(
            tiers_path, llm.base_url,
            [tier(n, m, api_key_env="TEST_KEY")
             for n, m in [("small", "gpt-4o-mini"), ("medium", "gpt-4.1-mini"), ("large", "gpt-4.1")]],
        )  # fmt: skip
        routing_path = write_routing(tmp_path / "routing.yaml", cascade3(-0.45, -0.5))
        out = tmp_path / "litellm.yaml"
        out.write_text(export_routing(routing_path, "litellm", tiers_path).text)
        (tmp_path / "prompts.json").write_text(json.dumps(prompts))
        run = subprocess.run(
            [str(venv / "python"), str(HERE / "litellm_check.py"), str(out),
             str(ROOT / "docs/deploy.md"), str(tmp_path / "prompts.json")],
            capture_output=True, text=True, timeout=600, env=env,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        result = json.loads(run.stdout.strip().splitlines()[-1])
        assert result["groups"] == ["large", "medium", "small"]
        assert result["missing_fallbacks"] == []
        # what the snippet served equals routing.yaml's rule on the server's own logprobs
        expected = []
        for p in prompts:
            model = "gpt-4o-mini"
            for nxt, tau in [("gpt-4.1-mini", -0.45), ("gpt-4.1", -0.5)]:
                if _mean_logprob(llm, model, p) >= tau:
                    break
                model = nxt
            expected.append(model)
        assert [m.split("/")[-1] for m in result["served_models"]] == expected
        assert len(set(expected)) >= 2
        port = free_port()
        proxy = subprocess.Popen(
            [str(venv / "litellm"), "--config", str(out), "--host", "127.0.0.1", "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        try:
            headers = {"Authorization": f"Bearer {env['LITELLM_MASTER_KEY']}"}
            info = wait_http(f"http://127.0.0.1:{port}/v1/model/info", headers, 240).json()
        finally:
            proxy.terminate()
            proxy.wait(30)
    by_group = {d["model_name"]: d["model_info"] for d in info["data"]}
    assert by_group["small"]["calibrate_escalate_below"] == -0.45
    assert by_group["small"]["calibrate_escalate_to"] == "medium"
    assert by_group["medium"]["calibrate_escalate_below"] == -0.5
    assert "calibrate_escalate_below" not in by_group["large"]


def _mean_logprob(llm: LLMServer, model: str, prompt: str) -> float:
    r = httpx.post(llm.base_url + "/chat/completions", json={
        "model": model, "logprobs": True, "messages": [{"role": "user", "content": prompt}]})  # fmt: skip
    lps = [t["logprob"] for t in r.json()["choices"][0]["logprobs"]["content"]]
    return sum(lps) / len(lps)
