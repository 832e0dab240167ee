"""routing.yaml → a Portkey gateway config (JSON for `x-portkey-config` or a saved config).

A `fallback` strategy on status 446 over one target per step: each keyword rule's tier first, behind
an input guardrail (`default.webhook`, `deny: true`) that passes only the requests whose first
matching rule it is; then the cascade's deciding tiers, each behind an output guardrail that passes
only answers whose confidence ≥ escalate_below; then the last tier, unguarded. The webhook is
`calibrate serve-gate` (gate.py), which applies routing.yaml's rule with replay's own confidence
function, so the served tier is the one `calibrate evaluate` assigns. Targets are named after the
tiers, ready for Portkey's conditional routing on metadata (one exported config per segment).
API keys are `${ENV}` placeholders naming tiers.yaml's api_key_env, filled at deploy time.
"""

from __future__ import annotations

import json

from calibrate.config.routing import RoutingConfig
from calibrate.config.tiers import TiersConfig
from calibrate.export.common import (
    Export,
    TargetThreshold,
    cascade_tiers,
    keyword_rules,
    refuse,
    refuse_unsupported_strategy,
)
from calibrate.export.gate import gate_rules

TARGET = "portkey"
DEFAULT_GATE_URL = "http://127.0.0.1:8788"


def _target(name: str, model: str, tiers: TiersConfig | None, logprobs: bool) -> dict:
    spec = tiers.tier(name) if tiers is not None and name in tiers.names else None
    target: dict = {"name": name, "provider": "openai"}
    target["api_key"] = "${" + ((spec.api_key_env if spec else None) or "OPENAI_API_KEY") + "}"
    if spec is not None and spec.base_url:
        target["custom_host"] = spec.base_url
    params: dict = {"model": model}
    if logprobs:
        params["logprobs"] = True
    target["override_params"] = params
    return target


def _guard(url: str) -> list[dict]:
    return [{"default.webhook": {"webhookURL": url}, "deny": True}]


def export(
    config: RoutingConfig,
    tiers: TiersConfig | None,
    approximate: bool,
    gate_url: str = DEFAULT_GATE_URL,
) -> Export:
    refuse_unsupported_strategy(config, TARGET)
    if any(r.max_input_tokens is not None for r in config.rules):
        raise refuse(
            TARGET,
            "the input-length rule counts the provider's input tokens, which neither Portkey's "
            "conditional routing nor an input guardrail sees before the call",
            "Export a cascade or keyword-rules row, or apply the length cutoff in your "
            "application.",
        )
    rules = gate_rules(config, tiers)
    gate = gate_url.rstrip("/")
    models = {t.name: t.model for t in config.tiers}
    targets, exact, held = [], [], []
    for i, (name, pattern, tier) in enumerate(keyword_rules(config)):
        t = _target(tier, models[tier], tiers, logprobs=False)
        t["name"] = f"rule-{i}-{tier}"
        t["input_guardrails"] = _guard(f"{gate}/rule/{i}")
        targets.append(t)
        exact.append(f"keyword rule {name!r} ({pattern!r}) → target {t['name']} (input guardrail)")
    path = cascade_tiers(config)
    if path is not None:
        for step in path[0]:
            method, scale, tau = rules.thresholds[step.name]
            t = _target(step.name, step.model, tiers, logprobs=True)
            t["output_guardrails"] = _guard(f"{gate}/confidence/{step.name}")
            targets.append(t)
            exact.append(
                f"{step.name}: escalate_below {tau!r} on {method} ({scale} scale) → gate, same "
                "scale"
            )
            held.append(
                TargetThreshold(
                    step.name,
                    tau,
                    tau,
                    f"calibrate serve-gate on routing.yaml ({gate}/confidence/{step.name})",
                    f"{method}, {scale} scale (same)",
                )
            )
        last = path[1]
    else:
        default = [r for r in config.rules if r.pattern is None]
        name = default[0].tier if default else config.tiers[0].name
        last = next(t for t in config.tiers if t.name == name)
    targets.append(_target(last.name, last.model, tiers, logprobs=False))
    exact.append(f"last tier {last.name} → final fallback target")
    document = {"strategy": {"mode": "fallback", "on_status_codes": [446]}, "targets": targets}
    not_expressed = (
        "provider errors do not escalate (on_status_codes is [446] only; add 429/5xx to taste)",
        "routing.yaml's expected metrics and certification (kept in routing.yaml)",
    )
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return Export(TARGET, text, tuple(exact), (), not_expressed, tuple(held))
