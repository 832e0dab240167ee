"""Reference scorers: score an answer against the request's `reference`, and scorers.yaml.

Kinds (each gives 1.0 or 0.0):
- `exact`: the answer equals the reference (surrounding whitespace ignored);
- `normalized`: equal after case folding, Unicode NFKC, dropping punctuation and the articles
  a/an/the, and collapsing whitespace;
- `choice`: the multiple-choice letter in the answer ("The answer is (B)", "B) Paris", "**B**")
  equals the reference's letter;
- `numeric`: the last number in the answer is within `tolerance + relative × |reference|`
  of the reference (thousands separators, `$` and `%` ignored);
- `regex`: the answer matches the reference, which is an RE2 regular expression
  (calibrate/config/patterns.py; `search` by default, `full_match: true` for the whole answer;
  `ignore_case`);
- `json`: the answer (or the first JSON block in it) equals the reference as JSON data
  (key order ignored; true is not 1).

A reference the scorer cannot use (not a letter, not a number, not a valid pattern or JSON) gives
no score and the reason; an answer it cannot read (no letter, no number, not JSON) scores 0.
`scorers.yaml` picks a scorer globally (`default`) and per app (`apps`); unknown keys are rejected.
Pure: no I/O except `load_scorers`.
"""

from __future__ import annotations

import json
import math
import re
import string
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from calibrate.config.patterns import PatternError, compile_pattern
from calibrate.config.tiers import load_yaml_model

Kind = Literal["exact", "normalized", "choice", "numeric", "regex", "json"]
KINDS: tuple[Kind, ...] = ("exact", "normalized", "choice", "numeric", "regex", "json")
_OPTIONS = {
    "choice": {"letters"},
    "numeric": {"tolerance", "relative"},
    "regex": {"ignore_case", "full_match"},
}


class ScorerSpec(BaseModel):
    """One scorer and its options (`exact` as a bare string is short for `{kind: exact}`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Kind
    letters: str = Field(default="ABCDE", pattern=r"^[A-Z]{2,26}$")
    tolerance: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    relative: float = Field(default=1e-9, ge=0.0, allow_inf_nan=False)
    ignore_case: bool = False
    full_match: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _options_fit(self) -> ScorerSpec:
        given = self.model_fields_set - {"kind"}
        wrong = sorted(given - _OPTIONS.get(self.kind, set()))
        if wrong:
            raise ValueError(f"option(s) {', '.join(wrong)} do not apply to the {self.kind} scorer")
        return self


class ScorersConfig(BaseModel):
    """scorers.yaml: the scorer for every app without its own (`default`) and per app."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: ScorerSpec = ScorerSpec(kind="normalized")
    apps: dict[str, ScorerSpec] = {}

    @field_validator("apps")
    @classmethod
    def _named(cls, apps: dict[str, ScorerSpec]) -> dict[str, ScorerSpec]:
        if any(not name for name in apps):
            raise ValueError("app names must not be empty")
        return apps

    def for_app(self, app: str | None) -> ScorerSpec:
        return self.apps.get(app or "", self.default)


def load_scorers(path: Path) -> ScorersConfig:
    """Read and validate scorers.yaml (every problem names the file and the field)."""
    return load_yaml_model(
        path,
        ScorersConfig,
        "scorers file",
        "See the scorers.yaml example in docs/labels.md (kinds: " + ", ".join(KINDS) + ").",
    )


@dataclass(frozen=True, slots=True)
class Scored:
    """A score in [0, 1] and a short note; `score` None means the reference is unusable."""

    score: float | None
    detail: str


def score_answer(spec: ScorerSpec, answer: str, reference: str) -> Scored:
    """Score one answer against one reference."""
    return _SCORERS[spec.kind](spec, answer, reference)


def _verdict(ok: bool, detail: str) -> Scored:
    return Scored(1.0 if ok else 0.0, detail)


def _exact(spec: ScorerSpec, answer: str, reference: str) -> Scored:
    return _verdict(answer.strip() == reference.strip(), "exact")


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = {ord(c): " " for c in string.punctuation}


def normalize_text(text: str) -> str:
    """Case-folded NFKC text without punctuation or articles, single spaces."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_PUNCTUATION)
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _normalized(spec: ScorerSpec, answer: str, reference: str) -> Scored:
    return _verdict(normalize_text(answer) == normalize_text(reference), "normalized")


def extract_choice(text: str, letters: str) -> str | None:
    """The multiple-choice letter an answer gives, or None."""
    cls = f"[{letters}]"
    patterns = (
        rf"(?i:answer)\s*(?:is|:|=)?\s*[:\s]*[(\[*]*({cls})\b",
        rf"^\W*({cls})\W*$",
        rf"^\s*[(\[*]*({cls})[)\].:*]",
        rf"\(({cls})\)",
    )
    for i, pattern in enumerate(patterns):
        found = re.findall(pattern, text.strip(), flags=re.MULTILINE)
        if found:
            return (found[-1] if i == 3 else found[0]).upper()
    return None


def _choice(spec: ScorerSpec, answer: str, reference: str) -> Scored:
    want = extract_choice(reference, spec.letters)
    if want is None:
        return Scored(None, f"reference is not a choice letter ({spec.letters})")
    got = extract_choice(answer, spec.letters)
    if got is None:
        return Scored(0.0, "choice: no letter found in the answer")
    return _verdict(got == want, f"choice: got {got}, want {want}")


_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")


def _numbers(text: str) -> list[float]:
    values = []
    for token in _NUMBER.findall(text):
        try:
            values.append(float(token.replace(",", "")))
        except ValueError:
            continue
    return [v for v in values if math.isfinite(v)]


def _numeric(spec: ScorerSpec, answer: str, reference: str) -> Scored:
    want = _numbers(reference.strip().replace("$", "").replace("%", ""))
    if len(want) != 1:
        return Scored(None, "reference is not one number")
    got = _numbers(answer)
    if not got:
        return Scored(0.0, "numeric: no number found in the answer")
    allowed = spec.tolerance + spec.relative * abs(want[0])
    return _verdict(
        abs(got[-1] - want[0]) <= allowed, f"numeric: got {got[-1]:g}, want {want[0]:g}"
    )


@lru_cache(maxsize=1024)
def _pattern(reference: str, ignore_case: bool) -> Any:
    """The reference compiled as RE2 (linear time: answers are model output), or why not."""
    try:
        return compile_pattern(reference, ignore_case=ignore_case)
    except PatternError as exc:
        return str(exc)


def _regex(spec: ScorerSpec, answer: str, reference: str) -> Scored:
    pattern = _pattern(reference, spec.ignore_case)
    if isinstance(pattern, str):
        return Scored(None, f"reference is not a valid regular expression ({pattern})")
    match = pattern.fullmatch(answer.strip()) if spec.full_match else pattern.search(answer)
    return _verdict(match is not None, "regex")


_FENCE = re.compile(r"```(?:json)?\s*\n(.*?)```", re.DOTALL)


def _parse_json(text: str) -> tuple[bool, object]:
    candidates = [text.strip(), *_FENCE.findall(text)]
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start >= 0:
        candidates.append(text[start:])
    for candidate in candidates:
        try:
            value, _ = json.JSONDecoder().raw_decode(candidate.strip())
        except ValueError:
            continue
        return True, value
    return False, None


def _canonical(value: object) -> object:
    """JSON data where true/false never equal 1/0 and 1 equals 1.0."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def _json(spec: ScorerSpec, answer: str, reference: str) -> Scored:
    try:
        want = json.loads(reference)
    except ValueError:
        return Scored(None, "reference is not JSON")
    ok, got = _parse_json(answer)
    if not ok:
        return Scored(0.0, "json: the answer is not JSON")
    return _verdict(_canonical(got) == _canonical(want), "json")


_SCORERS = {
    "exact": _exact,
    "normalized": _normalized,
    "choice": _choice,
    "numeric": _numeric,
    "regex": _regex,
    "json": _json,
}
