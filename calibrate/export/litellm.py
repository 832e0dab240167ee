"""routing.yaml → a LiteLLM proxy config (`model_list` + `router_settings.fallbacks`).

LiteLLM has no answer-confidence cascade: its fallbacks fire on errors, and its complexity / auto
routers decide before the call. So each tier becomes a model group (model_name = the tier's name),
the cascade's order becomes error fallbacks, and the calibrated thresholds ride along as data in
`model_info` (`calibrate_escalate_below`, `calibrate_confidence_method`, `calibrate_escalate_to`),
served by `/v1/model/info`. LiteLLM does not enforce them: the calling application or a custom
callback applies them (docs/deploy.md has the tested snippet). Keyword and length rules have no
LiteLLM equivalent and are refused. API keys are `os.environ/NAME` references (LiteLLM's syntax).
"""

from __future__ import annotations

from dataclasses import replace

import yaml

from calibrate.config.routing import RoutingConfig
from calibrate.config.tiers import TiersConfig
from calibrate.export.common import (
    Export,
    TargetThreshold,
    cascade_tiers,
    refuse,
    refuse_unsupported_strategy,
    steps,
)

TARGET = "litellm"


def _deployment(name: str, model: str, tiers: TiersConfig | None, info: dict) -> dict:
    spec = tiers.tier(name) if tiers is not None and name in tiers.names else None
    params: dict = {"model": f"openai/{model}"}
    if spec is not None and spec.base_url:
        params["api_base"] = spec.base_url
    params["api_key"] = "os.environ/" + ((spec.api_key_env if spec else None) or "OPENAI_API_KEY")
    return {
        "model_name": name,
        "litellm_params": params,
        "model_info": {"calibrate_tier": name, **info},
    }


def export(config: RoutingConfig, tiers: TiersConfig | None, approximate: bool) -> Export:
    refuse_unsupported_strategy(config, TARGET)
    if config.rules:
        raise refuse(
            TARGET,
            "keyword and input-length rules have no LiteLLM equivalent (its pattern routing "
            "matches model names, not prompts)",
            "Export a cascade or single-tier row, or apply the rules in your application.",
        )
    chain = steps(config, tiers, TARGET)
    path = cascade_tiers(config)
    order = [*path[0], path[1]] if path is not None else [config.tiers[0]]
    by_tier = {s.tier: s for s in chain}
    deployments, fallbacks, exact, held = [], [], [], []
    for k, t in enumerate(order):
        info: dict = {}
        step = by_tier.get(t.name)
        if step is not None:
            nxt = order[k + 1].name
            info = {
                "calibrate_confidence_method": step.method,
                "calibrate_confidence_scale": step.scale,
                "calibrate_escalate_below": step.escalate_below,
                "calibrate_escalate_to": nxt,
            }
            fallbacks.append({t.name: [nxt]})
            held.append(
                TargetThreshold(
                    t.name,
                    step.escalate_below,
                    step.escalate_below,
                    f"model_info.calibrate_escalate_below of {t.name}",
                    f"{step.described} (same; data only, not enforced)",
                )
            )
            exact.append(
                f"{t.name}: escalate_below {step.escalate_below!r} ({step.described}) → model_info "
                "(data only)"
            )
        deployments.append(_deployment(t.name, t.model, tiers, info))
    exact.append("tier order → model groups and error fallbacks")
    document: dict = {"model_list": deployments}
    if fallbacks:
        document["router_settings"] = {"fallbacks": fallbacks}
    not_expressed = (
        "LiteLLM cannot enforce the confidence thresholds by itself: the application or a custom "
        "callback must compare the answer's confidence with calibrate_escalate_below and call "
        "calibrate_escalate_to (docs/deploy.md)",
        "routing.yaml's expected metrics and certification (kept in routing.yaml)",
    )
    result = Export(TARGET, "", tuple(exact), (), not_expressed, tuple(held))
    header = "".join(
        f"# {line}\n"
        for line in [
            "LiteLLM proxy config written by `calibrate export --to litellm` from routing.yaml.",
            *result.statement(),
        ]
    )
    body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    return replace(result, text=header + body)
