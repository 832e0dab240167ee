"""`calibrate export` without the real gateways: per target, which routing.yaml shapes are exported
(and how) and which are refused with the reason; threshold range and method checks; the gate's
verdicts; the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from export_support import (
    cascade2,
    cascade3,
    hybrid,
    keyword_rules_only,
    length_rules,
    router,
    routing,
    write_routing,
    write_tiers,
)
from typer.testing import CliRunner

from calibrate.cli.app import app
from calibrate.config.tiers import load_tiers
from calibrate.export import gate
from calibrate.export.common import ExportRefused
from calibrate.export.targets import export_routing

SHAPES = {
    "cascade2": cascade2(-0.6),
    "cascade3": cascade3(-0.6, -0.9),
    "hybrid": hybrid(-0.6),
    "length": length_rules(300),
    "keywords": keyword_rules_only(),
    "router": router(),
}
# (target, shape) → exported exactly / only with --approximate / refused
OUTCOME = {
    ("vllm-sr", "cascade2"): "exact", ("vllm-sr", "cascade3"): "approximate",
    ("vllm-sr", "hybrid"): "approximate", ("vllm-sr", "length"): "approximate",
    ("vllm-sr", "keywords"): "approximate", ("vllm-sr", "router"): "refused",
    ("portkey", "cascade2"): "exact", ("portkey", "cascade3"): "exact",
    ("portkey", "hybrid"): "exact", ("portkey", "length"): "refused",
    ("portkey", "keywords"): "exact", ("portkey", "router"): "refused",
    ("litellm", "cascade2"): "exact", ("litellm", "cascade3"): "exact",
    ("litellm", "hybrid"): "refused", ("litellm", "length"): "refused",
    ("litellm", "keywords"): "refused", ("litellm", "router"): "refused",
}  # fmt: skip


@pytest.fixture
def tiers(tmp_path: Path) -> Path:
    return write_tiers(tmp_path / "tiers.yaml")


def _export(tmp_path: Path, config, target: str, tiers: Path | None, approximate: bool = False):
    return export_routing(
        write_routing(tmp_path / "routing.yaml", config), target, tiers, approximate
    )


@pytest.mark.parametrize(("target", "shape"), sorted(OUTCOME))
def test_each_target_exports_or_refuses_each_shape(tmp_path, tiers, target, shape) -> None:
    outcome = OUTCOME[(target, shape)]
    if outcome == "exact":
        result = _export(tmp_path, SHAPES[shape], target, tiers)
        assert result.exact and not result.approximated
        assert result.text.strip()
    else:
        with pytest.raises(ExportRefused) as refused:
            _export(tmp_path, SHAPES[shape], target, tiers)
        assert refused.value.hint
        if outcome == "approximate":
            result = _export(tmp_path, SHAPES[shape], target, tiers, approximate=True)
            assert result.approximated
        else:
            with pytest.raises(ExportRefused):
                _export(tmp_path, SHAPES[shape], target, tiers, approximate=True)


def _decisions(text: str) -> list[dict]:
    return yaml.safe_load(text)["routing"]["decisions"]


def test_vllm_sr_converts_the_mean_logprob_threshold(tmp_path, tiers) -> None:
    text = _export(tmp_path, cascade2(-0.6), "vllm-sr", tiers).text
    (decision,) = _decisions(text)
    conf = decision["algorithm"]["confidence"]
    assert conf == {"confidence_method": "avg_logprob", "threshold": pytest.approx(0.8),
                    "escalation_order": "declared", "on_error": "skip"}  # fmt: skip
    assert [m["model"] for m in decision["modelRefs"]] == ["gpt-4o-mini", "gpt-4.1"]
    assert text.startswith("# vLLM Semantic Router config")
    # the router keeps an answer iff clamp((mean + 3) / 3) ≥ threshold: same as mean ≥ τ
    for mean in (-2.9, -0.61, -0.6, -0.59, 0.0):
        assert (max(0.0, min(1.0, (mean + 3) / 3)) >= conf["threshold"]) == (mean >= -0.6)


def test_vllm_sr_three_tiers_with_one_threshold_is_exact(tmp_path, tiers) -> None:
    result = _export(tmp_path, cascade3(-0.6, -0.6), "vllm-sr", tiers)
    assert not result.approximated
    (decision,) = _decisions(result.text)
    assert len(decision["modelRefs"]) == 3


def test_vllm_sr_hybrid_puts_keyword_decisions_first(tmp_path, tiers) -> None:
    result = _export(tmp_path, hybrid(-0.6), "vllm-sr", tiers, approximate=True)
    decisions = _decisions(result.text)
    assert [d["name"] for d in decisions] == ["invoice", "order", "calibrate-default"]
    assert [d["priority"] for d in decisions] == sorted(
        (d["priority"] for d in decisions), reverse=True
    )
    signals = yaml.safe_load(result.text)["routing"]["signals"]["keywords"]
    assert signals[0]["keywords"] == ["(?i)\\binvoice\\b"] and signals[0]["method"] == "regex"


@pytest.mark.parametrize(
    ("tau", "reason"),
    [(-3.0, "≤ -3"), (-7.5, "≤ -3"), (0.4, "above 0"), (float("inf"), "not a finite")],
)
def test_vllm_sr_refuses_thresholds_it_cannot_express(tmp_path, tiers, tau, reason) -> None:
    with pytest.raises(ExportRefused, match=reason):
        _export(tmp_path, cascade2(tau), "vllm-sr", tiers)


def test_vllm_sr_threshold_zero_means_only_certain_answers(tmp_path, tiers) -> None:
    (decision,) = _decisions(_export(tmp_path, cascade2(0.0), "vllm-sr", tiers).text)
    assert decision["algorithm"]["confidence"]["threshold"] == 1.0


@pytest.mark.parametrize("method", ["logprob_min", "first_token", "verbalized"])
def test_vllm_sr_refuses_methods_it_does_not_have(tmp_path, method) -> None:
    tiers = write_tiers(tmp_path / "tiers.yaml", small=method)
    with pytest.raises(ExportRefused, match=method):
        _export(tmp_path, cascade2(-0.6 if method == "logprob_min" else 0.6), "vllm-sr", tiers)


@pytest.mark.parametrize("target", ["vllm-sr", "portkey", "litellm"])
@pytest.mark.parametrize(
    ("method", "tau"), [("first_token", 1.2), ("verbalized", -0.1), ("logprob_mean", 0.8)]
)
def test_every_target_range_checks_the_threshold(tmp_path, target, method, tau) -> None:
    tiers = write_tiers(tmp_path / "tiers.yaml", small=method)
    with pytest.raises(ExportRefused, match="escalate_below"):
        _export(tmp_path, cascade2(tau), target, tiers)


@pytest.mark.parametrize("target", ["vllm-sr", "portkey", "litellm"])
def test_a_cascade_needs_the_confidence_method(tmp_path, target) -> None:
    with pytest.raises(ExportRefused, match="confidence method") as refused:
        _export(tmp_path, cascade2(-0.6), target, None)
    assert "--tiers" in (refused.value.hint or "")


def test_portkey_guards_each_step_and_names_no_key(tmp_path, tiers, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    result = _export(tmp_path, hybrid(-0.6), "portkey", tiers)
    config = json.loads(result.text)
    assert config["strategy"] == {"mode": "fallback", "on_status_codes": [446]}
    names = [t["name"] for t in config["targets"]]
    assert names == ["rule-0-large", "rule-1-small", "small", "large"]
    hooks = [t.get("input_guardrails") or t.get("output_guardrails") for t in config["targets"]]
    urls = [h[0]["default.webhook"]["webhookURL"] if h else None for h in hooks]
    assert urls == ["http://127.0.0.1:8788/rule/0", "http://127.0.0.1:8788/rule/1",
                    "http://127.0.0.1:8788/confidence/small", None]  # fmt: skip
    assert all(h[0]["deny"] is True for h in hooks if h)
    assert config["targets"][2]["override_params"] == {"model": "gpt-4o-mini", "logprobs": True}
    assert "sk-secret-value" not in result.text
    assert {t["api_key"] for t in config["targets"]} == {"${OPENAI_API_KEY}"}


def test_portkey_refuses_verbalized_the_gate_cannot_compute(tmp_path) -> None:
    tiers = write_tiers(tmp_path / "tiers.yaml", small="verbalized")
    with pytest.raises(ExportRefused, match="second question"):
        _export(tmp_path, cascade2(0.7), "portkey", tiers)


def test_litellm_carries_thresholds_as_data(tmp_path, tiers) -> None:
    result = _export(tmp_path, cascade3(-0.6, -0.9), "litellm", tiers)
    config = yaml.safe_load(result.text)
    info = {m["model_name"]: m["model_info"] for m in config["model_list"]}
    assert info["small"]["calibrate_escalate_below"] == -0.6
    assert info["small"]["calibrate_escalate_to"] == "medium"
    assert info["medium"]["calibrate_escalate_to"] == "large"
    assert "calibrate_escalate_below" not in info["large"]
    assert config["router_settings"]["fallbacks"] == [{"small": ["medium"]}, {"medium": ["large"]}]
    assert config["model_list"][0]["litellm_params"]["api_key"] == "os.environ/OPENAI_API_KEY"
    assert any("cannot enforce" in line for line in result.not_expressed)


def test_single_tier_exports_everywhere(tmp_path, tiers) -> None:
    single = routing("single", [{"name": "large"}])
    for target in ("vllm-sr", "portkey", "litellm"):
        assert "gpt-4.1" in _export(tmp_path, single, target, None).text


# --- the gate -------------------------------------------------------------------------------


def _answer(logprobs: list[float] | None) -> dict:
    choice: dict = {"index": 0, "message": {"role": "assistant", "content": "x"}}
    if logprobs is not None:
        choice["logprobs"] = {"content": [{"token": "t", "logprob": lp} for lp in logprobs]}
    return {"choices": [choice], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}


def test_gate_applies_the_threshold_on_the_tiers_scale(tmp_path, tiers) -> None:
    rules = gate.gate_rules(hybrid(-0.5), load_tiers(tiers))

    def verdict(lps):  # noqa: E306
        return gate.verdict(rules, "/confidence/small", {"response": {"json": _answer(lps)}})[1][
            "verdict"
        ]

    assert verdict([-0.2, -0.8]) is True  # mean -0.5 ≥ -0.5: kept
    assert verdict([-0.2, -0.81]) is False
    assert verdict(None) is False  # no logprobs: escalate
    assert gate.verdict(rules, "/confidence/large", {})[0] == 404


def test_gate_rules_take_the_first_matching_pattern(tmp_path, tiers) -> None:
    rules = gate.gate_rules(hybrid(-0.5), load_tiers(tiers))

    def passes(k: int, text: str) -> bool:  # noqa: E306
        context = {"request": {"json": {"messages": [{"role": "system", "content": "be brief"},
                                                     {"role": "user", "content": text}]}}}  # fmt: skip
        return gate.verdict(rules, f"/rule/{k}", context)[1]["verdict"]

    assert passes(0, "my INVOICE, where is my order")  # rule 0 matches first
    assert not passes(1, "my INVOICE, where is my order")
    assert passes(1, "Where is my order?")
    assert not passes(0, "hello") and not passes(1, "hello")


# --- command line ---------------------------------------------------------------------------


def test_cli_export_writes_the_file_and_states_what_it_carries(tmp_path, tiers) -> None:
    routing_path = write_routing(tmp_path / "routing.yaml", cascade2(-0.6))
    out = tmp_path / "deploy" / "pk.json"
    result = CliRunner().invoke(
        app,
        ["export", str(routing_path), "--to", "portkey", "--tiers", str(tiers), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "exact: small: escalate_below -0.6" in result.stdout
    assert json.loads(out.read_text())["targets"][-1]["name"] == "large"


def test_cli_export_refusal_is_an_error_with_a_hint(tmp_path, tiers) -> None:
    routing_path = write_routing(tmp_path / "routing.yaml", cascade3(-0.6, -0.9))
    result = CliRunner().invoke(
        app, ["export", str(routing_path), "--to", "vllm-sr", "--tiers", str(tiers)]
    )
    assert result.exit_code == 1
    assert "Error: cannot export to vllm-sr" in result.stderr and "Hint:" in result.stderr
    assert not (tmp_path / "vllm-sr.yaml").exists()


def test_cli_export_rejects_an_unknown_target(tmp_path) -> None:
    routing_path = write_routing(tmp_path / "routing.yaml", cascade2(-0.6))
    result = CliRunner().invoke(app, ["export", str(routing_path), "--to", "nginx"])
    assert result.exit_code == 2
