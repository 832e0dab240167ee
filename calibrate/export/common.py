"""What every export target shares: the `Export` value, the refusal, the cascade path of a
routing.yaml and each deciding tier's confidence method and threshold, range-checked once.

routing.yaml records a threshold per tier (`escalate_below`: escalate when confidence < it) on the
tier's own confidence scale. Method and scale are the routed tier's own `confidence: {method,
scale}` when routing.yaml carries it (every sweep writes it), else the tier's `confidence` in
tiers.yaml (a plain method string there means its natural scale: formats/logprobs.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from calibrate.config.routing import RoutedTier, RoutingConfig
from calibrate.config.tiers import TiersConfig
from calibrate.errors import CalibrateError
from calibrate.formats.logprobs import NATURAL_SCALE

TARGETS = ("vllm-sr", "portkey", "litellm")


class ExportRefused(CalibrateError):
    """The target cannot express this routing.yaml exactly (or at all)."""


@dataclass(frozen=True)
class Step:
    """One deciding tier of a cascade: keep its answer iff confidence (by `method`, on `scale`:
    raw_logprob or probability) ≥ escalate_below."""

    tier: str
    model: str
    method: str
    escalate_below: float
    scale: str = ""

    @property
    def described(self) -> str:
        """`logprob_mean, probability scale`: how the threshold is read."""
        return f"{self.method}, {self.scale} scale"


@dataclass(frozen=True)
class TargetThreshold:
    """One deciding tier's threshold as the target holds it: `value` on the target's own scale
    (`scale`) in the config field `field`, from routing.yaml's `escalate_below`."""

    tier: str
    escalate_below: float
    value: float
    field: str
    scale: str


@dataclass(frozen=True)
class Export:
    """The target's config text and the statement of what it does and does not carry."""

    target: str
    text: str
    exact: tuple[str, ...]
    approximated: tuple[str, ...] = ()
    not_expressed: tuple[str, ...] = ()
    thresholds: tuple[TargetThreshold, ...] = ()  # in cascade order; () without a cascade

    def statement(self) -> list[str]:
        """One line per fact, for the CLI and for comment headers."""
        lines = [f"exact: {x}" for x in self.exact]
        lines += [f"approximated: {x}" for x in self.approximated]
        lines += [f"not expressed: {x}" for x in self.not_expressed]
        return lines


def refuse(target: str, reason: str, hint: str) -> ExportRefused:
    return ExportRefused(f"cannot export to {target}: {reason}", hint=hint)


def cascade_tiers(config: RoutingConfig) -> tuple[list[RoutedTier], RoutedTier] | None:
    """(deciding tiers, last tier) of a cascade or hybrid — the same path `evaluate` walks —
    or None for the other strategies."""
    if config.strategy not in ("cascade", "hybrid"):
        return None
    deciding = [t for t in config.tiers[:-1] if t.escalate_below is not None]
    return deciding, config.tiers[-1]


def confidence_method(
    tier: RoutedTier, tiers: TiersConfig | None, target: str
) -> tuple[str, str | None]:
    """The tier's confidence (method, scale): routing.yaml's own field if it has one (the scale
    the sweep computed the threshold on), else tiers.yaml's (scale None for `none`)."""
    own = tier.confidence
    if own is not None:
        return own.method, own.scale
    if tiers is None:
        raise refuse(
            target,
            f"tier {tier.name!r} has a threshold but routing.yaml does not say its confidence "
            "method (the scale of escalate_below)",
            "Pass --tiers tiers.yaml (the file the sweep used): its `confidence` fields say it.",
        )
    if tier.name not in tiers.names:
        raise refuse(
            target,
            f"tier {tier.name!r} of routing.yaml is not in the tiers file",
            "Pass the tiers.yaml the sweep used.",
        )
    declared = tiers.tier(tier.name)
    return declared.confidence, declared.scale


def steps(config: RoutingConfig, tiers: TiersConfig | None, target: str) -> list[Step]:
    """The cascade's deciding steps with range-checked thresholds ([] without a cascade)."""
    path = cascade_tiers(config)
    if path is None:
        return []
    out = []
    for t in path[0]:
        assert t.escalate_below is not None
        method, scale = confidence_method(t, tiers, target)
        check_threshold(t.name, method, t.escalate_below, target, scale)
        out.append(Step(t.name, t.model, method, t.escalate_below, scale or ""))
    return out


def check_threshold(
    tier: str, method: str, tau: float, target: str, scale: str | None = None
) -> None:
    """A threshold must be finite and on its scale (None: the method's natural one); else the
    file is not what it says."""
    if method == "none":
        raise refuse(
            target,
            f"tier {tier!r} has escalate_below but its confidence method is `none`",
            "Give the tier a confidence method in tiers.yaml and sweep again.",
        )
    if not math.isfinite(tau):
        raise refuse(
            target,
            f"tier {tier!r}: escalate_below {tau} is not a finite number",
            "Drop the tier from the cascade instead (it would escalate every request).",
        )
    scale = scale or NATURAL_SCALE[method]
    if scale == "raw_logprob" and tau > 0:
        raise refuse(
            target,
            f"tier {tier!r}: escalate_below {tau:g} is above 0, but a {method} confidence on the "
            "raw_logprob scale (a token log-probability) is ≤ 0: every request would escalate",
            "Check tiers.yaml's `confidence` for this tier: the logs' confidences look like "
            "another scale (`confidence: {method: ..., scale: probability}`).",
        )
    if scale == "probability" and not 0 <= tau <= 1:
        raise refuse(
            target,
            f"tier {tier!r}: escalate_below {tau:g} is outside [0, 1], the probability scale "
            f"of {method}",
            "Check tiers.yaml's `confidence` for this tier.",
        )


def refuse_unsupported_strategy(config: RoutingConfig, target: str) -> None:
    """The learned router and consensus run calibrate's own model file / vote: no gateway here
    has them."""
    if config.strategy == "router":
        raise refuse(
            target,
            "strategy `router` scores each prompt with calibrate's learned classifier "
            f"({config.classifier.file if config.classifier else 'router.json'}); {target} "
            "cannot load it",
            "Export the best cascade or rules row instead (calibrate sweep writes them to "
            "frontier.csv), or call the classifier in your application.",
        )
    if config.strategy == "consensus":
        raise refuse(
            target,
            "strategy `consensus` (majority vote of normalised answers) has no equivalent in "
            f"{target}",
            "Export a cascade or rules row instead.",
        )


def keyword_rules(config: RoutingConfig) -> list[tuple[str, str, str]]:
    """(name, pattern, tier) of each keyword rule, in order (name: the rule's or `rule-<i>`)."""
    return [
        (r.name or f"rule-{i + 1}", r.pattern, r.tier)
        for i, r in enumerate(config.rules)
        if r.pattern is not None
    ]
