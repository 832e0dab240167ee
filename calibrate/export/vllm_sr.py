"""routing.yaml → a vLLM Semantic Router canonical config (v0.3 YAML, `vllm-sr config validate`).

A cascade is one decision with `algorithm.type: confidence`, `confidence_method: avg_logprob`,
`escalation_order: declared` (modelRefs in routing.yaml's order) and `on_error: skip` (a tier with
no usable logprobs escalates, as in calibrate). The router normalises the mean token logprob as
clamp((mean + 3) / 3, 0, 1) and keeps an answer iff that ≥ threshold (pkg/looper/confidence.go), so
a raw threshold τ becomes (τ + 3) / 3: exact for -3 < τ ≤ 0 (a threshold on the probability scale,
exp of the mean, is taken back to the raw scale first: τ_raw = ln τ). τ_raw ≤ -3 cannot be expressed (the clamp
makes every mean below -3 equal, and 0 means "unset" there). One threshold applies to every step of
a decision: a 3-tier cascade whose converted thresholds differ is refused (`approximate`: the first
step's threshold for every step). Keyword rules become regex keyword signals and the length rule a
context signal: both approximate (the router matches Go RE2 on its own view of the request text and
estimates tokens itself), so they need `approximate`.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from urllib.parse import urlparse

import yaml

from calibrate.config.routing import RoutingConfig
from calibrate.config.tiers import TiersConfig
from calibrate.export.common import (
    Export,
    Step,
    TargetThreshold,
    cascade_tiers,
    keyword_rules,
    refuse,
    refuse_unsupported_strategy,
    steps,
)

TARGET = "vllm-sr"
SHIFT = 3.0  # normalizeLogprob: (avg + 3) / 3, clamped to [0, 1]
THRESHOLD_FIELD = "decision calibrate-default: algorithm.confidence.threshold"
SCALE = "avg_logprob normalised: (τ + 3) / 3"
_NOT_RE2 = re.compile(r"\(\?(?:=|!|<=|<!|P=)|\\[1-9]")  # lookaround and backreferences


def normalized_threshold(tau: float) -> float:
    """The router's threshold for a raw mean-logprob threshold τ (exact for -3 < τ ≤ 0)."""
    return (tau + SHIFT) / SHIFT


def _threshold(step: Step) -> float:
    if step.method != "logprob_mean":
        raise refuse(
            TARGET,
            f"tier {step.tier!r} decides on {step.method}; the router's confidence cascade has "
            "avg_logprob, margin, hybrid and self_verify, none of which is the same number",
            "Use logprob_mean for this tier (tiers.yaml), replay and sweep again, or export to "
            "portkey (its gate computes every method).",
        )
    raw = raw_threshold(step)
    if raw <= -SHIFT:
        raise refuse(
            TARGET,
            f"tier {step.tier!r}: escalate_below {step.escalate_below:g} is a mean logprob ≤ -3; "
            "the router clamps every mean logprob below -3 to confidence 0 and reads threshold 0 "
            "as unset",
            "Export to portkey, or sweep with a grid that keeps thresholds above -3.",
        )
    return normalized_threshold(raw)


def raw_threshold(step: Step) -> float:
    """The step's threshold on the raw mean-logprob scale (ln τ for a probability-scale one)."""
    if step.scale != "probability":
        return step.escalate_below
    return math.log(step.escalate_below) if step.escalate_below > 0 else -math.inf


def _decision_thresholds(
    config: RoutingConfig, tiers: TiersConfig | None, approximate: bool
) -> tuple[list[Step], list[float], list[str]]:
    chain = steps(config, tiers, TARGET)
    values = [_threshold(s) for s in chain]
    approximated = []
    if len(set(values)) > 1:
        if not approximate:
            raise refuse(
                TARGET,
                "a decision has one threshold for every step, but this cascade's steps differ ("
                + ", ".join(f"{s.tier}: {s.escalate_below:g}" for s in chain)
                + ")",
                "Pass --approximate to use the first step's threshold for every step, or export "
                "to portkey (one threshold per tier).",
            )
        approximated.append(
            f"every step uses {chain[0].tier}'s threshold {values[0]!r} (routing.yaml: "
            + ", ".join(f"{s.tier} {s.escalate_below:g}" for s in chain)
            + ")"
        )
    return chain, values, approximated


def _backend(tier_name: str, model: str, tiers: TiersConfig | None) -> dict:
    ref: dict = {"name": tier_name, "provider": "openai", "protocol": "http", "weight": 100}
    spec = tiers.tier(tier_name) if tiers is not None and tier_name in tiers.names else None
    if spec is not None and spec.base_url:
        ref["protocol"] = urlparse(spec.base_url).scheme or "http"
        ref["base_url"] = spec.base_url
    else:
        ref["endpoint"] = "replace-with-host:8000"
    if spec is not None and spec.api_key_env:
        ref["api_key_env"] = spec.api_key_env  # the variable's name, never the key
    return ref


def _rule_decisions(config: RoutingConfig, approximate: bool) -> tuple[list, dict, list[str]]:
    """Keyword rules and the length rule as prioritised decisions on signals."""
    rules = keyword_rules(config)
    length = [r for r in config.rules if r.pattern is None and r.max_input_tokens is not None]
    if (rules or length) and not approximate:
        raise refuse(
            TARGET,
            "keyword and input-length rules match differently in the router (Go RE2 on its view "
            "of the request text; its own token estimate), so they are not exact",
            "Pass --approximate to map them to keyword (regex) and context signals, or export "
            "to portkey (its gate applies the keyword rules exactly).",
        )
    decisions: list[dict] = []
    signals: dict[str, list[dict]] = {}
    notes: list[str] = []
    priority = 1000
    for name, pattern, tier in rules:
        if _NOT_RE2.search(pattern):
            raise refuse(
                TARGET,
                f"rule {name!r}: pattern {pattern!r} uses lookaround or a backreference, which "
                "Go RE2 does not have",
                "Rewrite the pattern without them.",
            )
        signals.setdefault("keywords", []).append(
            {
                "name": name,
                "operator": "OR",
                "method": "regex",
                "case_sensitive": True,
                "keywords": [pattern],
            }  # fmt: skip
        )
        decisions.append(_pinned(name, priority, tier, config, {"type": "keyword", "name": name}))
        priority -= 10
        notes.append(f"keyword rule {name!r} → keyword signal (regex, RE2, on the router's text)")
    for r in length:
        name = f"input-at-most-{r.max_input_tokens}-tokens"
        signals.setdefault("context", []).append(
            {"name": name, "min_tokens": "0", "max_tokens": str(r.max_input_tokens)}
        )
        decisions.append(_pinned(name, priority, r.tier, config, {"type": "context", "name": name}))
        priority -= 10
        notes.append(
            f"input-length rule ≤ {r.max_input_tokens} tokens → context signal (the router's "
            "token estimate, not the logs' input_tokens)"
        )
    return decisions, signals, notes


def _model(config: RoutingConfig, tier: str) -> str:
    return next(t.model for t in config.tiers if t.name == tier)


def _pinned(name: str, priority: int, tier: str, config: RoutingConfig, condition: dict) -> dict:
    return {
        "name": name,
        "priority": priority,
        "rules": {"operator": "AND", "conditions": [condition]},
        "modelRefs": [{"model": _model(config, tier)}],
    }


def export(config: RoutingConfig, tiers: TiersConfig | None, approximate: bool) -> Export:
    refuse_unsupported_strategy(config, TARGET)
    decisions, signals, approximated = _rule_decisions(config, approximate)
    exact = []
    held: list[TargetThreshold] = []
    path = cascade_tiers(config)
    default: dict = {"name": "calibrate-default", "priority": 100,
                     "rules": {"operator": "AND", "conditions": []}}  # fmt: skip
    if path is not None:
        chain, values, approx = _decision_thresholds(config, tiers, approximate)
        approximated += approx
        held = [
            TargetThreshold(s.tier, s.escalate_below, values[0], THRESHOLD_FIELD, SCALE)
            for s in chain
        ]  # one threshold per decision: every step holds the first step's value
        default["modelRefs"] = [{"model": t.model} for t in (*path[0], path[1])]
        default["algorithm"] = {
            "type": "confidence",
            "confidence": {
                "confidence_method": "avg_logprob",
                "threshold": values[0],
                "escalation_order": "declared",
                "on_error": "skip",
            },
        }
        if not approx:
            exact += [
                f"{s.tier}: escalate_below {s.escalate_below!r} (mean token logprob"
                + (
                    ", probability scale) → threshold "
                    if s.scale == "probability"
                    else ") → threshold "
                )
                + f"{v!r} = "
                + ("(ln τ + 3) / 3" if s.scale == "probability" else "(τ + 3) / 3")
                for s, v in zip(chain, values, strict=True)
            ]
        exact.append("cascade order → modelRefs with escalation_order: declared")
        exact.append("no logprobs on a tier → on_error: skip (escalates)")
    else:
        last = [r for r in config.rules if r.pattern is None and r.max_input_tokens is None]
        tier = last[0].tier if last else config.tiers[0].name
        default["modelRefs"] = [{"model": _model(config, tier)}]
        exact.append(f"default tier {tier} → catch-all decision")
    decisions.append(default)
    models = sorted({t.name: t.model for t in config.tiers}.items(), key=lambda kv: kv[0])
    routing: dict = {"modelCards": [{"name": m} for _, m in models]}
    if signals:
        routing["signals"] = signals
    routing["decisions"] = decisions
    document = {
        "version": "v0.3",
        "listeners": [
            {"name": "http-8899", "address": "127.0.0.1", "port": 8899, "timeout": "300s"}
        ],
        "providers": {
            "defaults": {"model": _model(config, config.premium_tier)},
            "models": [
                {"name": m, "backend_refs": [_backend(name, m, tiers)]} for name, m in models
            ],
        },
        "routing": routing,
    }
    not_expressed = [
        "routing.yaml's expected metrics, intervals and certification (kept in routing.yaml)"
    ]
    result = Export(
        TARGET, "", tuple(exact), tuple(approximated), tuple(not_expressed), tuple(held)
    )
    header = "".join(f"# {line}\n" for line in _header(result))
    body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    return replace(result, text=header + body)


def _header(result: Export) -> list[str]:
    return [
        "vLLM Semantic Router config written by `calibrate export --to vllm-sr` from routing.yaml.",
        "Validate: vllm-sr config validate --config FILE. Listener and backends: edit to taste.",
        *result.statement(),
    ]
