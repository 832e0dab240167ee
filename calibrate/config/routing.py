"""routing.yaml: the deployable config (pydantic at the file edge; deterministic, diff-friendly text).

`routing_from(result)` builds it from a sweep; `dump_routing` writes stable key order and fixed
precision; `load_routing` validates a file (unknown keys rejected) for `evaluate` and `diff`.
Strategies: `single` (always one tier), `cascade` (escalate_below per non-final tier), `rules`
(keyword rules, then an input-length cutoff, then a default tier; first match wins), `hybrid`
(keyword rules, then a cascade over the tiers with escalate_below and the last tier), `router`
(a learned classifier on the prompt, in the JSON file `classifier.file` names, relative to
routing.yaml: requests scoring ≥ `min_score` go to the first tier, the rest to the second) and
`consensus` (every listed tier answers; the majority of the normalised answers wins, a tie goes to
the dearest tier's answer).
`tiers` lists every tier the config sends traffic to, cheapest first.

A hand-written file needs only `strategy` and `tiers` (and the strategy's `rules` or `classifier`):
the bookkeeping a sweep records (`premium_tier`, by default the last tier; `objective`,
`certified`, `selection`, `expected`, `intervals`, `calibrated_on`; `generated_by`, the program
and version that wrote the file) is optional, so `evaluate` can measure the config a team runs
today.
"""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from calibrate import __version__
from calibrate.config.patterns import (
    MAX_KEYWORD_RULES,
    SYNTAX_HINT,
    PatternError,
    compile_pattern,
)
from calibrate.config.tiers import load_yaml_model
from calibrate.errors import ConfigError
from calibrate.records.outcomes import DataWindow
from calibrate.records.policy import METRICS as METRICS  # re-exported for the command line
from calibrate.records.policy import FrontierRow, Policy, Strategy

ROUTER_FILE = "router.json"
GENERATED_BY = f"calibrate {__version__}"
"""`generated_by` of the files a sweep writes (routing.yaml, summary.json)."""
METRIC_DIGITS = {
    "quality": 4,
    "quality_drop": 4,
    "escalation_rate": 4,
    "cost_per_1k_requests_usd": 6,
    "savings_vs_premium": 4,
    "latency_p50_ms": 1,
    "latency_p95_ms": 1,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _number(value: object) -> object:
    if isinstance(value, str):  # YAML reads 1e400 as text, which would become inf
        raise ValueError("must be a number")
    return value


def _cut_off(value: float) -> float:
    if math.isnan(value) or value == -math.inf:
        raise ValueError("must be a finite number, or .inf (nothing kept)")
    return value


def _measured(value: float) -> float:
    if math.isinf(value):
        raise ValueError("must be a finite number, or .nan (not measured)")
    return value


CutOff = Annotated[
    float, Field(allow_inf_nan=True), BeforeValidator(_number), AfterValidator(_cut_off)
]
"""A threshold: finite, or +inf (the grid's "keep nothing" option)."""
Measured = Annotated[float, Field(allow_inf_nan=True), AfterValidator(_measured)]
"""A metric: finite, or NaN where the sweep could not measure it."""
Share = Annotated[float, Field(ge=0, le=1)]
Amount = Annotated[float, Field(ge=0, le=1e12)]


class RoutedConfidence(_Strict):
    """How a threshold's confidence is computed and on which scale (tiers.yaml `confidence`)."""

    method: Literal["logprob_mean", "logprob_min", "first_token", "verbalized"]
    scale: Literal["raw_logprob", "probability"]


class RoutedTier(_Strict):
    name: str
    model: str
    escalate_below: CutOff | None = None
    p_correct: Share | None = None  # calibrated P(acceptable answer) at escalate_below
    confidence: RoutedConfidence | None = None  # the scale of escalate_below


class Rule(_Strict):
    """A keyword rule (`pattern`, an RE2 search on the prompt: config/patterns.py), an input-length rule
    (`max_input_tokens`) or the default rule (neither)."""

    name: str | None = None
    pattern: str | None = Field(default=None, min_length=1)
    tier: str
    max_input_tokens: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_condition(self) -> Rule:
        if self.pattern is not None and self.max_input_tokens is not None:
            raise ValueError("a rule has a pattern or max_input_tokens, not both")
        if self.pattern is not None:
            try:
                compile_pattern(self.pattern)
            except PatternError as err:
                named = f" (rule {self.name!r})" if self.name else ""
                raise ValueError(
                    f"pattern is not a regular expression in RE2 syntax{named}: {err}."
                    f" {SYNTAX_HINT}"
                ) from None
        return self


class Classifier(_Strict):
    """The learned router's model file (relative to routing.yaml's directory and inside it), its
    cut-off and its price."""

    file: str = Field(min_length=1)

    @field_validator("file")
    @classmethod
    def _relative(cls, file: str) -> str:
        posix = PurePosixPath(file.replace("\\", "/"))
        if posix.is_absolute() or ".." in posix.parts or PureWindowsPath(file).drive:
            raise ValueError(
                f"{file!r} leaves routing.yaml's directory: name a file beside routing.yaml"
                " (or below it)"
            )
        return file

    min_score: CutOff
    cost_per_1k_requests_usd: Amount = 0.0


class Window(_Strict):
    start: str | None = None
    end: str | None = None


class CalibratedOn(_Strict):
    requests: int = Field(ge=0)
    labeled: int = Field(ge=0)
    window: Window
    logs_sha256: str


class ObjectiveSpec(_Strict):
    """What the sweep was asked for (the optional keys only when they were given)."""

    max_quality_drop: Share
    confidence_level: Annotated[float, Field(gt=0, lt=1)]
    max_relative_drop: Share | None = None
    per_segment: str | None = None
    max_latency_p95_ms: Amount | None = None
    escalation_band: tuple[Share, Share] | None = None
    max_cost_per_1k_usd: Amount | None = None


class CertifiedStage(_Strict):
    """One decision stage's test: its tier, its share of ε and δ, the measured drop (regret rate,
    for the regret test), its upper confidence bound and the p-value of "above ε"."""

    tier: str
    max_quality_drop: Share
    delta: Share
    measured: Annotated[float, Field(ge=-1, le=1)]
    upper_bound: Annotated[float, Field(ge=-1, le=1)]
    p_value: Share


class Certification(_Strict):
    """How `certified` was decided (docs/certification.md): the test, its method, ε and δ as
    tested, the uniform labels it used, the recommendation's stages, and for an uncertified
    recommendation the risk that its drop exceeds ε. Optional: a hand-written file has none."""

    test: Literal["drop", "regret"]
    method: str
    max_quality_drop: Share
    delta: Share
    labels: int = Field(ge=0)
    stages: tuple[CertifiedStage, ...] = ()
    exceed_risk: Share | None = None


RoutingStrategy = Literal["single", "cascade", "rules", "hybrid", "router", "consensus"]
"""The strategies routing.yaml names (a frontier `Strategy` maps onto one of them)."""


class RoutingConfig(_Strict):
    """The file `sweep` writes and `evaluate` reads."""

    version: Literal[1] = 1
    generated_by: str | None = None
    strategy: RoutingStrategy
    tiers: tuple[RoutedTier, ...] = Field(min_length=1, max_length=4)
    rules: tuple[Rule, ...] = Field(default=(), max_length=MAX_KEYWORD_RULES + 2)
    classifier: Classifier | None = None
    premium_tier: str  # filled in with the last tier's name when the file has none
    objective: ObjectiveSpec | None = None
    certified: bool = False
    selection: str | None = None
    certification: Certification | None = None
    expected: dict[str, Measured] = {}
    intervals: dict[str, tuple[Measured, Measured]] = {}
    calibrated_on: CalibratedOn | None = None

    @model_validator(mode="before")
    @classmethod
    def _premium_is_the_last_tier(cls, data: Any) -> Any:
        """A file without `premium_tier` compares against its last (dearest) tier."""
        if not isinstance(data, dict) or "premium_tier" in data:
            return data
        tiers = data.get("tiers")
        last = tiers[-1] if isinstance(tiers, list | tuple) and tiers else None
        name = last.get("name") if isinstance(last, dict) else getattr(last, "name", None)
        return {**data, "premium_tier": name} if isinstance(name, str) else data

    @model_validator(mode="after")
    def _consistent(self) -> RoutingConfig:
        names = [t.name for t in self.tiers]
        if self.strategy == "cascade":
            missing = [t.name for t in self.tiers[:-1] if t.escalate_below is None]
            if len(self.tiers) < 2 or missing:
                raise ValueError(
                    "a cascade needs ≥ 2 tiers and escalate_below on every tier but the last"
                )
        if [r.tier for r in self.rules if r.tier not in names]:
            raise ValueError("every rule must name a tier listed in `tiers`")
        keywords = [r for r in self.rules if r.pattern is not None]
        if self.rules[: len(keywords)] != tuple(keywords):
            raise ValueError("keyword rules (pattern) come before the other rules")
        if self.strategy == "rules":
            rest = self.rules[len(keywords) :]
            if not rest or len(rest) > 2 or rest[-1].max_input_tokens is not None:
                raise ValueError(
                    "rules end with at most one input-length rule and a default rule (no cutoff)"
                )
        if self.strategy == "hybrid":
            if not keywords or len(keywords) != len(self.rules):
                raise ValueError("a hybrid has keyword rules (pattern) only, then its cascade")
            if not any(t.escalate_below is not None for t in self.tiers[:-1]):
                raise ValueError("a hybrid's cascade needs escalate_below on a tier")
        elif self.strategy not in ("rules",) and self.rules:
            raise ValueError(f"a {self.strategy} config has no rules")
        if self.strategy == "consensus" and (
            len(self.tiers) < 3 or any(t.escalate_below is not None for t in self.tiers)
        ):
            raise ValueError("a consensus names ≥ 3 voting tiers and no escalate_below")
        if (self.strategy == "router") != (self.classifier is not None) or (
            self.strategy == "router" and len(self.tiers) != 2
        ):
            raise ValueError("a router names 2 tiers and a classifier (and only a router does)")
        return self


def routing_from(
    row: FrontierRow,
    tiers_models: dict[str, str],
    premium: str,
    objective: ObjectiveSpec,
    method: str,
    certified: bool,
    window: DataWindow,
    p_correct: dict[str, float] | None = None,
    intervals: dict[str, tuple[float, float]] | None = None,
    classifier_cost_per_1k: float = 0.0,
    keyword_rules: tuple[Rule, ...] = (),
    confidence: dict[str, tuple[str, str]] | None = None,
    generated_by: str | None = None,
    certification: Certification | None = None,
) -> RoutingConfig:
    """Build the config for one frontier row (a router's model file: router.json beside it;
    `keyword_rules`: the rules file's rules, for the `rules` and `hybrid` strategies;
    `confidence`: each tier's (method, scale), recorded on the tiers with a threshold;
    `generated_by`: the program and version writing the file)."""
    policy = row.policy
    path = list(policy.tiers)
    thresholds = list(policy.thresholds)
    keywords = keyword_rules if policy.keyword_rules_first else ()
    used = set(path) | {r.tier for r in keywords}
    names = [n for n in tiers_models if n in used]
    classifier = None
    if policy.strategy == "router":
        classifier = Classifier(
            file=ROUTER_FILE,
            min_score=thresholds.pop(),
            cost_per_1k_requests_usd=classifier_cost_per_1k,
        )
    tau = dict(zip(path, thresholds, strict=False))  # the path's deciding tiers
    routed = [
        RoutedTier(
            name=n,
            model=tiers_models[n],
            escalate_below=tau.get(n),
            p_correct=(p_correct or {}).get(n) if n in tau else None,
            confidence=_routed_confidence((confidence or {}).get(n)) if n in tau else None,
        )
        for n in names
    ]
    strategy_of: dict[Strategy, RoutingStrategy] = {
        "always": "single",
        "cascade": "cascade",
        "length": "rules",
        "rules": "rules",
        "hybrid": "hybrid",
        "router": "router",
        "consensus": "consensus",
    }
    strategy = strategy_of[policy.strategy]
    rules = tuple(keywords)
    if strategy == "rules":
        cutoff = policy.cutoff_tokens
        rules += ((Rule(tier=path[0], max_input_tokens=cutoff),) if cutoff is not None else ()) + (
            Rule(tier=path[1]),
        )
    return RoutingConfig(
        generated_by=generated_by,
        strategy=strategy,
        tiers=tuple(routed),
        rules=rules,
        classifier=classifier,
        premium_tier=premium,
        objective=objective,
        certified=certified,
        selection=method,
        certification=certification,
        expected={m: round_metric(m, v) for m, v in row.metrics.as_dict().items()},
        intervals=intervals or {},
        calibrated_on=CalibratedOn(
            requests=window.requests,
            labeled=window.labeled,
            window=Window(start=window.start, end=window.end),
            logs_sha256=window.logs_sha256,
        ),
    )


def _routed_confidence(spec: tuple[str, str] | None) -> RoutedConfidence | None:
    if spec is None:
        return None
    method, scale = spec
    return RoutedConfidence.model_validate({"method": method, "scale": scale})


def policy_of(config: RoutingConfig) -> Policy:
    """The policy a config deploys, the inverse of `routing_from` (its keyword rules stay in
    `config.rules`): a cascade walks the tiers with escalate_below, then the last tier."""
    names = tuple(t.name for t in config.tiers)
    if config.strategy == "single":
        return Policy.always(names[0])
    if config.strategy == "consensus":
        return Policy("consensus", names)
    if config.strategy == "router":
        assert config.classifier is not None  # the validator requires it
        return Policy("router", names, (config.classifier.min_score,))
    if config.strategy in ("cascade", "hybrid"):
        deciding = {
            t.name: t.escalate_below for t in config.tiers[:-1] if t.escalate_below is not None
        }
        return Policy(config.strategy, (*deciding, names[-1]), tuple(deciding.values()))
    keywords = any(r.pattern is not None for r in config.rules)
    rest = [r for r in config.rules if r.pattern is None]  # at most one length rule, the default
    if len(rest) == 1:  # no length rule: the default rule gets every request no keyword rule takes
        return (
            Policy("rules", (names[0], rest[0].tier)) if keywords else Policy.always(rest[0].tier)
        )
    cheap, default = rest
    strategy: Strategy = "rules" if keywords else "length"
    return Policy(strategy, (cheap.tier, default.tier), cutoff_tokens=cheap.max_input_tokens)


def round_metric(name: str, value: float) -> float:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return float("nan")
    return round(float(value), METRIC_DIGITS[name]) + 0.0  # + 0.0 turns -0.0 into 0.0


def _flow(value: object) -> str:
    """One YAML value on one line (PyYAML ends a bare scalar document with `...`; drop it)."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _given(mapping: dict) -> dict:
    """The keys that have a value, tuples as lists (YAML flow sequences)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in mapping.items() if v is not None}


def dump_routing(config: RoutingConfig) -> str:
    """Deterministic YAML: fixed key order, one tier per line, one metric per line."""
    data = config.model_dump(mode="python")
    lines = [
        f"version: {data['version']}",
        *([f"generated_by: {_flow(data['generated_by'])}"] if data["generated_by"] else []),
        f"strategy: {data['strategy']}",
        "tiers:",
        *(f"  - {_flow({k: v for k, v in t.items() if v is not None})}" for t in data["tiers"]),
    ]
    if data["rules"]:
        lines += [
            "rules:",
            *(f"  - {_flow({k: v for k, v in r.items() if v is not None})}" for r in data["rules"]),
        ]
    if data["classifier"] is not None:
        lines += [f"classifier: {_flow(data['classifier'])}"]
    lines += [f"premium_tier: {_flow(data['premium_tier'])}"]
    if data["objective"] is not None:
        lines += [f"objective: {_flow(_given(data['objective']))}"]
    lines += [f"certified: {_flow(data['certified'])}"]
    if data["selection"] is not None:
        lines += [f"selection: {_flow(data['selection'])}"]
    lines += _certification_lines(data["certification"])
    if data["expected"]:
        lines += ["expected:", *(f"  {k}: {_flow(v)}" for k, v in data["expected"].items())]
    if data["intervals"]:
        lines += ["intervals:", *(f"  {k}: {_flow(list(v))}" for k, v in data["intervals"].items())]
    if (on := data["calibrated_on"]) is not None:
        lines += [
            "calibrated_on:",
            f"  requests: {on['requests']}",
            f"  labeled: {on['labeled']}",
            f"  window: {_flow(on['window'])}",
            f"  logs_sha256: {on['logs_sha256']}",
        ]
    return "\n".join(lines) + "\n"


def _certification_lines(block: dict | None) -> list[str]:
    """The `certification` mapping, one key per line and one stage per line."""
    if block is None:
        return []
    stages = block.pop("stages")
    lines = ["certification:", *(f"  {k}: {_flow(v)}" for k, v in block.items() if v is not None)]
    if stages:
        lines += ["  stages:", *(f"    - {_flow(stage)}" for stage in stages)]
    return lines


def classifier_path(config: RoutingConfig, base_dir: Path) -> Path:
    """The router's model file, relative to routing.yaml's directory `base_dir`; a file that
    resolves outside it (through a symbolic link, say) is a ConfigError."""
    assert config.classifier is not None
    root = base_dir.resolve()
    path = (root / config.classifier.file).resolve()
    if not path.is_relative_to(root):
        raise ConfigError(
            f"classifier file {config.classifier.file} resolves to {path}, outside {root}",
            hint="Keep the classifier file `calibrate sweep` wrote beside routing.yaml.",
        )
    return path


def load_routing(path: Path) -> RoutingConfig:
    """Read and validate a routing.yaml."""
    return load_yaml_model(
        path,
        RoutingConfig,
        "routing file",
        "Use a routing.yaml written by `calibrate sweep`, or write one with only `strategy` and "
        "`tiers` (plus the strategy's `rules` or `classifier`); the keys are "
        f"{', '.join(RoutingConfig.model_fields)}.",
    )
