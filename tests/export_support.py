"""routing.yaml and tiers.yaml fixtures for the export tests: 2- and 3-tier cascades, a hybrid with
keyword rules, a length rule, a learned router."""

from __future__ import annotations

import json
from pathlib import Path

from calibrate.config.routing import RoutingConfig, dump_routing

TIERS = {
    "small": "gpt-4o-mini",
    "medium": "gpt-4.1-mini",
    "large": "gpt-4.1",
}


def routing(
    strategy: str, tiers: list[dict], rules: list[dict] | None = None, **extra
) -> RoutingConfig:
    return RoutingConfig.model_validate(
        {
            "strategy": strategy,
            "tiers": [{"model": TIERS.get(t["name"], t["name"]), **t} for t in tiers],
            "rules": rules or [],
            "premium_tier": tiers[-1]["name"],
            "objective": {"max_quality_drop": 0.02, "confidence_level": 0.95},
            "certified": True,
            "selection": "certified",
            "expected": {"quality": 0.9},
            "calibrated_on": {
                "requests": 10,
                "labeled": 5,
                "window": {"start": None, "end": None},
                "logs_sha256": "ab" * 32,
            },
            **extra,
        }
    )


def cascade2(tau: float = -0.5) -> RoutingConfig:
    return routing("cascade", [{"name": "small", "escalate_below": tau}, {"name": "large"}])


def cascade3(tau1: float = -0.5, tau2: float = -0.8) -> RoutingConfig:
    return routing(
        "cascade",
        [
            {"name": "small", "escalate_below": tau1},
            {"name": "medium", "escalate_below": tau2},
            {"name": "large"},
        ],
    )


KEYWORDS = [
    {"name": "invoice", "pattern": "(?i)\\binvoice\\b", "tier": "large"},
    {"name": "order", "pattern": "(?i)where is my order", "tier": "small"},
]


def hybrid(tau: float = -0.5) -> RoutingConfig:
    return routing(
        "hybrid", [{"name": "small", "escalate_below": tau}, {"name": "large"}], rules=KEYWORDS
    )


def length_rules(cutoff: int = 400) -> RoutingConfig:
    return routing(
        "rules",
        [{"name": "small"}, {"name": "large"}],
        rules=[{"tier": "small", "max_input_tokens": cutoff}, {"tier": "large"}],
    )


def keyword_rules_only() -> RoutingConfig:
    return routing(
        "rules", [{"name": "small"}, {"name": "large"}], rules=[*KEYWORDS, {"tier": "small"}]
    )


def router() -> RoutingConfig:
    return routing(
        "router",
        [{"name": "small"}, {"name": "large"}],
        classifier={"file": "router.json", "min_score": 0.4},
    )


def write_routing(path: Path, config: RoutingConfig) -> Path:
    path.write_text(dump_routing(config), encoding="utf-8")
    return path


def write_tiers(
    path: Path,
    base_url: str = "http://127.0.0.1:8800/v1",
    confidence: str = "logprob_mean",
    **methods: str,
) -> Path:
    tiers = [
        {
            "name": n,
            "model": m,
            "base_url": base_url,
            "api_key_env": "OPENAI_API_KEY",
            "confidence": methods.get(n, confidence),
        }  # fmt: skip
        for n, m in TIERS.items()
    ]
    path.write_text(json.dumps({"tiers": tiers}), encoding="utf-8")
    return path
