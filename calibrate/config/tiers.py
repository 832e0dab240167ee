"""tiers.yaml: the model tiers, cheapest first (pydantic at the file edge, unknown keys rejected),
and the YAML loading every config file shares.

`load_tiers(path)` returns a frozen `TiersConfig`; every validation problem becomes a `ConfigError`
naming the file and the dotted field (`tiers.1.price.input_per_mtok: Input should be ...`).
Numbers are finite and in range (no `.inf`, `1e400` or NaN). `read_yaml` refuses a config file over
MAX_CONFIG_BYTES before parsing it, and parses with libyaml's C loader when PyYAML has it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from calibrate.errors import ConfigError
from calibrate.formats.logprobs import ALLOWED_SCALES, NATURAL_SCALE

M = TypeVar("M", bound=BaseModel)
ConfidenceMethod = Literal["logprob_mean", "logprob_min", "first_token", "verbalized", "none"]
MAX_CONFIG_BYTES = 1 << 20
"""The largest config file read (tiers, rules, routing, scorers): a hand-written file is far
smaller; a bigger one is refused before parsing (a 50 MB rules.yaml took 120 s and 3 GB)."""
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: about 10x faster
MAX_PRICE_PER_MTOK = 10_000.0
"""USD per million tokens: an order of magnitude above any model's price, below absurd."""
ConfidenceScale = Literal["raw_logprob", "probability"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Price(_Strict):
    """USD per million tokens."""

    input_per_mtok: float = Field(ge=0, le=MAX_PRICE_PER_MTOK)
    output_per_mtok: float = Field(ge=0, le=MAX_PRICE_PER_MTOK)

    def cost_usd(self, input_tokens: float, output_tokens: float) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6


class Limits(_Strict):
    """How `calibrate replay` may call the tier: in flight at once, per minute, and per call."""

    concurrency: int = Field(default=8, ge=1, le=1024)
    rpm: int | None = Field(default=None, ge=1, le=10**7)
    tpm: int | None = Field(default=None, ge=1, le=10**10)
    timeout_s: float = Field(default=60.0, gt=0, le=3600)
    max_retries: int = Field(default=4, ge=0, le=20)
    pause_after_failures: int = Field(default=5, ge=1, le=10**6)


class Tier(_Strict):
    """One model tier. `api_key_env` names an environment variable; keys are never stored.
    `aliases` are other names the tier's model has in gateway logs (a provider prefix such as
    `openai/gpt-4o-mini`, a LiteLLM model_group, a dated version): formats/tier_map.py.

    `confidence` is the method, written `confidence: METHOD` (the method's natural scale) or
    `confidence: {method: METHOD, scale: SCALE}`; after loading, `confidence` is the method,
    `confidence_scale` the declared scale (None: not declared) and `scale` the scale in force
    (declared, else the method's natural one; None for `none`): formats/logprobs.py."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    model: str = Field(min_length=1)
    aliases: tuple[Annotated[str, Field(min_length=1)], ...] = ()
    base_url: str | None = None
    api_key_env: str | None = None
    price: Price | None = None
    confidence: ConfidenceMethod = "logprob_mean"
    confidence_scale: ConfidenceScale | None = None
    limits: Limits = Limits()
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _confidence_mapping(cls, data: Any) -> Any:
        """`confidence: {method, scale}` → `confidence` + `confidence_scale`."""
        if not isinstance(data, dict) or not isinstance(data.get("confidence"), dict):
            return data
        spec = data["confidence"]
        unknown = sorted(str(k) for k in spec if k not in ("method", "scale"))
        if unknown:
            raise ValueError(
                f"confidence: unknown key {', '.join(unknown)} (allowed: method, scale)"
            )
        if "confidence_scale" in data and "scale" in spec:
            raise ValueError(
                "confidence: give the scale once (confidence.scale or confidence_scale)"
            )
        out = {k: v for k, v in data.items() if k != "confidence"}
        out["confidence"] = spec.get("method", "logprob_mean")
        if "scale" in spec:
            out["confidence_scale"] = spec["scale"]
        return out

    @model_validator(mode="after")
    def _resolve_scale(self) -> Tier:
        method, scale = self.confidence, self.confidence_scale
        if method == "none":
            if scale is not None:
                raise ValueError("confidence `none` has no scale")
            return self
        if scale is not None and scale not in ALLOWED_SCALES[method]:
            raise ValueError(
                f"confidence {method} cannot be on the {scale} scale "
                f"(allowed: {', '.join(ALLOWED_SCALES[method])})"
            )
        return self

    @property
    def scale(self) -> str | None:
        """The confidence scale: declared, else the method's natural one (None for `none`)."""
        return self.confidence_scale or NATURAL_SCALE.get(self.confidence)


class TiersConfig(_Strict):
    """The `tiers:` list, cheapest first."""

    tiers: tuple[Tier, ...] = Field(min_length=1, max_length=4)

    @field_validator("tiers")
    @classmethod
    def _unique_names(cls, tiers: tuple[Tier, ...]) -> tuple[Tier, ...]:
        names = [t.name for t in tiers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"tier names must be unique; repeated: {', '.join(dupes)}")
        claimed: dict[str, str] = {}
        for t in tiers:
            for alias in t.aliases:
                other = claimed.setdefault(alias.strip().lower(), t.name)
                if other != t.name:
                    raise ValueError(f"alias {alias!r} is claimed by tiers {other} and {t.name}")
        return tiers

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tiers)

    def tier(self, name: str) -> Tier:
        for t in self.tiers:
            if t.name == name:
                return t
        raise KeyError(name)


def render_validation_error(path: Path, err: ValidationError) -> str:
    """One line per problem: `file: dotted.field: message`."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = "unknown key (not allowed here)" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"{path}: {loc}: {msg}")
    return "\n".join(lines)


def read_yaml(path: Path, what: str) -> object:
    """Parse a YAML file (at most MAX_CONFIG_BYTES) or raise ConfigError naming the file and
    the line."""
    try:
        with path.open("rb") as fh:
            data = fh.read(
                MAX_CONFIG_BYTES + 1
            )  # bounded: a device or a huge file never fills memory
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}", hint="Check the path.") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} is a directory: {path}", hint="Name the file.") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: {what} larger than {MAX_CONFIG_BYTES // (1 << 20)} MiB",
            hint="A config file is written by hand or by calibrate; check that this is the "
            "right file (keyword rules: at most a few hundred).",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 ({exc.reason})", hint="Save it as UTF-8.") from None
    try:
        return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"{path}:{where} is not valid YAML", hint=str(exc).split("\n")[0]
        ) from None


def load_yaml_model(path: Path, model: type[M], what: str, hint: str) -> M:
    """Read a YAML file into a pydantic model; every problem is a ConfigError naming file and field."""
    data = read_yaml(path, what)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            f"invalid {what}\n{render_validation_error(path, exc)}", hint=hint
        ) from None


def load_tiers(path: Path) -> TiersConfig:
    """Read and validate tiers.yaml."""
    return load_yaml_model(
        path, TiersConfig, "tiers file", "See the tiers.yaml example in docs/formats.md."
    )


def price_table(tiers: TiersConfig) -> dict[str, tuple[float, float]]:
    """Per-tier (input, output) USD per Mtok, for attempts whose log has no cost."""
    return {
        t.name: (t.price.input_per_mtok, t.price.output_per_mtok)
        for t in tiers.tiers
        if t.price is not None
    }
