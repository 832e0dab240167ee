"""A routing policy as a value, its metrics, and one evaluated policy (a row of the frontier).

`Policy` is what a sweep evaluates and routing.yaml deploys: the strategy, the tier path (cheapest
first; a consensus' voting tiers), the threshold of each deciding tier (a cascade's or hybrid's
confidence thresholds, +inf for "escalate every request"; a router's minimum score) and an
input-length cutoff (length rules and keyword rules; None: no cutoff). Keyword rules are not part
of it: a sweep has one rules file, and the `rules` and `hybrid` strategies apply it first.

Text exists only at the edges: `id` (the `policy` column of frontier.csv, `--policy`), `display_id`
(the reports: thresholds to 4 significant digits) and the frontier.csv columns (`tiers_text`,
`thresholds_text`). This module sits below `config` so
that routing.yaml can be built from a policy and read back into one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Literal

Strategy = Literal["always", "cascade", "length", "rules", "hybrid", "router", "consensus"]
CONFIDENCE_STRATEGIES = (
    "cascade",
    "hybrid",
)  # decide on each tier's own confidence, pay every tier
THRESHOLD_STRATEGIES = ("cascade", "router", "hybrid")  # parameters are thresholds (keep iff ≥ τ)
CUTOFF_STRATEGIES = ("length", "rules")  # the parameter is an input-length cutoff


def threshold_text(threshold: float) -> str:
    """A threshold as ids and frontier.csv write it: the shortest round-trip repr, or `inf`."""
    return "inf" if math.isinf(threshold) else repr(float(threshold))


def threshold_display(threshold: float) -> str:
    """A threshold as the reports print it: 4 significant digits (`-15.457` → `-15.46`), or `inf`;
    routing.yaml and frontier.csv keep full precision."""
    return "inf" if math.isinf(threshold) else repr(float(f"{threshold:.4g}"))


@dataclass(frozen=True)
class Policy:
    """One routing policy (see the module docstring)."""

    strategy: Strategy
    tiers: tuple[str, ...]
    thresholds: tuple[float, ...] = ()
    cutoff_tokens: int | None = None

    @classmethod
    def always(cls, tier: str) -> Policy:
        return cls("always", (tier,))

    @property
    def id(self) -> str:
        """The policy's name in frontier.csv and `--policy`, e.g. `cascade:small>large@0.62`."""
        return self._name(threshold_text)

    @property
    def display_id(self) -> str:
        """The name the reports print: `id` with thresholds to 4 significant digits."""
        return self._name(threshold_display)

    def _name(self, threshold: Callable[[float], str]) -> str:
        head = f"{self.strategy}:{self.tiers_text}"
        if self.strategy in ("always", "consensus"):
            return head
        if self.strategy in CUTOFF_STRATEGIES:
            return (
                f"{head}@none" if self.cutoff_tokens is None else f"{head}@<={self.cutoff_tokens}"
            )
        return f"{head}@" + ",".join(threshold(t) for t in self.thresholds)

    @property
    def tiers_text(self) -> str:
        """frontier.csv's `tiers`: the path joined by `>`, a consensus' voters by `+`."""
        return ("+" if self.strategy == "consensus" else ">").join(self.tiers)

    @property
    def thresholds_text(self) -> str:
        """frontier.csv's `thresholds`: joined by `;` (empty without thresholds)."""
        return ";".join(threshold_text(t) for t in self.thresholds)

    @property
    def cascading(self) -> bool:
        """Decides on each tier's own confidence and pays every tier it touches."""
        return self.strategy in CONFIDENCE_STRATEGIES

    @property
    def keyword_rules_first(self) -> bool:
        """Applies the sweep's keyword rules before anything else."""
        return self.strategy in ("rules", "hybrid")

    def thresholds_by_tier(self) -> dict[str, float]:
        """A cascade's (or hybrid's) deciding tiers → their finite thresholds."""
        if not self.cascading:
            return {}
        pairs = zip(self.tiers, self.thresholds, strict=False)
        return {tier: t for tier, t in pairs if not math.isinf(t)}


@dataclass(frozen=True)
class PolicyMetrics:
    """What every command measures of a policy (NaN where there is nothing to measure). The field
    order is the order every table and routing.yaml's `expected` show them."""

    quality: float
    quality_drop: float
    escalation_rate: float
    cost_per_1k_requests_usd: float
    savings_vs_premium: float
    latency_p50_ms: float
    latency_p95_ms: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


METRICS = tuple(f.name for f in fields(PolicyMetrics))
"""The metrics of a policy, in the order every table and routing.yaml's `expected` show them."""


@dataclass(frozen=True)
class FrontierRow:
    """One evaluated policy: the policy, the requests (and labeled ones) it was measured on, its
    metrics, and whether it is on the Pareto frontier and certified."""

    policy: Policy
    requests: int
    labeled: int
    metrics: PolicyMetrics
    pareto: bool = False
    certified: bool = False

    def as_dict(self) -> dict[str, object]:
        """Flat: the policy id, strategy, counts and metrics (for terminal tables)."""
        return {
            "policy": self.policy.id,
            "strategy": self.policy.strategy,
            "requests": self.requests,
            "labeled": self.labeled,
            **self.metrics.as_dict(),
        }
