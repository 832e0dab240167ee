"""Which tier a logged model name belongs to: tiers.yaml's `model` and `aliases`, matched in steps.

A call names its model in several ways (LiteLLM: the model_group the client asked for, the model
sent to the provider, `openai/...`; a response: a dated version). `tier_of(names)` tries every
name of the call at each step before the next step:

1. exactly (case-insensitive) a tier's `model` or one of its `aliases`;
2. the same without a provider prefix (everything up to the last `/`): `openai/gpt-4o-mini`;
3. the same without a version suffix: a date (`-2024-07-18`, `-20241022`, `@20241022`), a
   four-digit snapshot (`-0125`), `-latest`, a Bedrock `-v1:0`.

A step that two tiers claim (e.g. two tiers on dated versions of one model) is skipped, so only an
exact name can pick between them. A name no step matches belongs to no tier (the caller reports it
with its call count). Pure; imports nothing from calibrate.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

_VERSION = re.compile(r"(?:[-@](?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest))?(?:-v\d+:\d+)?$")


@dataclass(frozen=True, slots=True)
class TierSpec:
    """What the mapping needs of one tier: its name, the names its model goes by, and how its
    confidence is computed and on which scale (tiers.yaml `confidence`; scale None: the method's
    natural one)."""

    name: str
    names: tuple[str, ...]
    confidence: str
    scale: str | None = None


def _exact(name: str) -> str:
    return name.strip().lower()


def _unprefixed(name: str) -> str:
    return _exact(name).rsplit("/", 1)[-1]


def _unversioned(name: str) -> str:
    bare = _unprefixed(name)
    return _VERSION.sub("", bare) or bare


_STEPS = (_exact, _unprefixed, _unversioned)


def family(name: str) -> str:
    """A model name without provider prefix and version suffix: `gpt-4o-mini` for
    `openai/gpt-4o-mini-2024-07-18`."""
    return _unversioned(name)


@dataclass(frozen=True)
class TierMap:
    """Model names -> tier names, one lookup table per matching step."""

    tiers: tuple[TierSpec, ...]
    _tables: tuple[dict[str, str | None], ...] = field(repr=False)

    @classmethod
    def build(cls, tiers: Sequence[TierSpec]) -> TierMap:
        """Raise ValueError when one exact name belongs to two tiers."""
        tables: list[dict[str, str | None]] = []
        for step in _STEPS:
            table: dict[str, str | None] = {}
            for tier in tiers:
                for name in tier.names:
                    key = step(name)
                    other = table.setdefault(key, tier.name)
                    if other not in (tier.name, None):
                        if step is _exact:
                            raise ValueError(
                                f"model name {name!r} is claimed by tiers {other} and {tier.name}"
                            )
                        table[key] = None  # ambiguous at this step: skipped
            tables.append(table)
        return cls(tuple(tiers), tuple(tables))

    def tier_of(self, names: Iterable[str | None]) -> str | None:
        """The tier of the first name that matches at the earliest step, else None."""
        given = [n for n in names if isinstance(n, str) and n.strip()]
        for step, table in zip(_STEPS, self._tables, strict=True):
            for name in given:
                tier = table.get(step(name))
                if tier is not None:
                    return tier
        return None

    def confidence_method(self, tier: str) -> tuple[str, str | None]:
        """(method, scale) of the tier's confidence."""
        for spec in self.tiers:
            if spec.name == tier:
                return spec.confidence, spec.scale
        raise KeyError(tier)

    @property
    def order(self) -> tuple[str, ...]:
        """Tier names, cheapest first (tiers.yaml order)."""
        return tuple(spec.name for spec in self.tiers)
