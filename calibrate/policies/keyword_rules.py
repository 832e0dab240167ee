"""Keyword / regular-expression rules from a rules file (`rules.yaml`), and what each one catches.

    rules:
      - {pattern: "(?i)\\binvoice\\b", tier: large}
      - {pattern: "(?i)where is my order", tier: small, name: order-status}

The first rule whose pattern matches the prompt wins (an RE2 search: config/patterns.py; at most
MAX_KEYWORD_RULES rules). For each rule the sweep reports its hits (first-match, over all
requests), how many of them are labeled, and the quality of the hits' answers on every tier: a
rule that sends its hits to a dearer tier although the cheapest tier answers them as well as the
premium one fires on a trigger word without the capability it implies. `forced_tiers` gives each
request its rule's tier: the sweep puts the rules in front of input-length cutoffs (strategy
`rules`) and of cascades (strategy `hybrid`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from calibrate.config.patterns import (
    MAX_KEYWORD_RULES,
    SYNTAX_HINT,
    PatternError,
    compile_pattern,
    first_matches,
)
from calibrate.config.tiers import load_yaml_model
from calibrate.errors import ConfigError
from calibrate.records.outcomes import Outcomes

SAME_QUALITY = 0.02  # cheapest-tier quality within this of premium on the hits: "fine on cheap"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleSpec(_Strict):
    pattern: str = Field(min_length=1)
    tier: str
    name: str | None = None


class RulesFile(_Strict):
    """rules.yaml: keyword rules in priority order."""

    rules: tuple[RuleSpec, ...] = Field(min_length=1, max_length=MAX_KEYWORD_RULES)


@dataclass(frozen=True)
class RuleHits:
    """What one rule caught (first match wins) and how every tier answered its labeled hits."""

    name: str
    pattern: str
    tier: str
    hits: int
    labeled: int
    quality_by_tier: tuple[tuple[str, float | None], ...]

    @property
    def fine_on_cheapest(self) -> bool:
        """Routes to a dearer tier, yet the cheapest tier's answers are about as good."""
        quality = dict(self.quality_by_tier)
        tiers = [t for t, _ in self.quality_by_tier]
        cheap, premium = quality[tiers[0]], quality[tiers[-1]]
        if self.tier == tiers[0] or cheap is None or premium is None:
            return False
        return cheap >= premium - SAME_QUALITY


def load_rules(path: Path, tiers: tuple[str, ...]) -> RulesFile:
    """Read and validate a rules file: known tiers, patterns that compile."""
    rules = load_yaml_model(path, RulesFile, "rules file", "See `Keyword rules` in docs/sweep.md.")
    for i, rule in enumerate(rules.rules):
        where = f"{path}: rules[{i}]"
        if rule.tier not in tiers:
            raise ConfigError(
                f"{where}.tier: unknown tier {rule.tier!r}", hint=f"Use one of: {', '.join(tiers)}."
            )
        try:
            compile_pattern(rule.pattern)
        except PatternError as err:
            named = f" (rule {rule.name!r})" if rule.name else ""
            raise ConfigError(
                f"{where}.pattern{named}: not a regular expression in RE2 syntax ({err})",
                hint=SYNTAX_HINT,
            ) from None
    return rules


def first_match(patterns: list[str], texts: list[str]) -> np.ndarray:
    """Per text, the index of the first pattern it matches (-1: none). Each distinct text is
    matched once: templated prompts repeat (on the 1M-request bench log, 2 in 5 are distinct)."""
    return np.asarray(first_matches(patterns, texts), dtype=np.int64).reshape(len(texts))


def rule_tiers(
    rules: list[tuple[str, str]], winner: np.ndarray, tiers: tuple[str, ...]
) -> np.ndarray:
    """Per text, the index in `tiers` of the tier its first matching (pattern, tier) rule names,
    from `first_match`'s winners (-1: no rule matches)."""
    to_tier = np.array([tiers.index(t) for _, t in rules] + [-1], dtype=np.int64)
    return to_tier[winner]  # winner -1 reads the trailing -1


def forced_tiers(
    rules: list[tuple[str, str]], texts: list[str], tiers: tuple[str, ...]
) -> np.ndarray:
    """`rule_tiers` of the texts' first matches."""
    return rule_tiers(rules, first_match([p for p, _ in rules], texts), tiers)


def rule_hits(rules: RulesFile, winner: np.ndarray, outcomes: Outcomes) -> tuple[RuleHits, ...]:
    """Per rule, its first-match hits (`winner`: `first_match` of the prompts) and the mean label
    of each tier on the labeled hits."""
    labeled = outcomes.labeled
    hits = [int((winner == k).sum()) for k in range(len(rules.rules))]
    return _rule_hits(rules, hits, winner, labeled, outcomes)


def rule_hits_of_counts(
    rules: RulesFile, hits: list[int], winner: np.ndarray, labeled: Outcomes
) -> tuple[RuleHits, ...]:
    """`rule_hits` from each rule's hits over all requests (`hits`, e.g. a bincount of the
    winners) and the winners of the labeled requests (`winner`, rows of `labeled`)."""
    return _rule_hits(rules, hits, winner, np.ones(labeled.n, dtype=bool), labeled)


def _rule_hits(
    rules: RulesFile, hits: list[int], winner: np.ndarray, labeled: np.ndarray, outcomes: Outcomes
) -> tuple[RuleHits, ...]:
    out = []
    for k, rule in enumerate(rules.rules):
        rows = (winner == k) & labeled
        quality = tuple(
            (t, float(outcomes.label[rows, j].mean()) if rows.any() else None)
            for j, t in enumerate(outcomes.tiers)
        )
        name = rule.name or f"rule {k + 1}"
        out.append(RuleHits(name, rule.pattern, rule.tier, hits[k], int(rows.sum()), quality))
    return tuple(out)
