"""Per-tier token prices for replay: tiers.yaml first, else the offline `genai-prices` table.

`tier_prices()` returns a `TierPrice` per tier saying where its price came from; a tier priced by
neither is a ConfigError, because replay must say what it will cost before it starts. genai-prices
ships its table inside the package and is used offline (its optional auto-update is never started).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import version

from calibrate.config.tiers import Tier, TiersConfig
from calibrate.errors import ConfigError

_MTOK = 1_000_000


@dataclass(frozen=True, slots=True)
class TierPrice:
    """USD per million tokens, and where it came from."""

    input_per_mtok: float
    output_per_mtok: float
    source: str

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / _MTOK


def tier_prices(tiers: TiersConfig, clock: Callable[[], datetime]) -> dict[str, TierPrice]:
    """One price per tier; raises ConfigError naming every tier without one."""
    prices: dict[str, TierPrice] = {}
    missing = []
    for tier in tiers.tiers:
        price = _from_tiers_yaml(tier) or _from_table(tier, clock())
        if price is None:
            missing.append(f"{tier.name} (model {tier.model})")
        else:
            prices[tier.name] = price
    if missing:
        raise ConfigError(
            f"no price for tier {', '.join(missing)}: not in tiers.yaml, and the genai-prices "
            "table does not know the model",
            hint="Add `price: {input_per_mtok: ..., output_per_mtok: ...}` to the tier in "
            "tiers.yaml (0 for a self-hosted model).",
        )
    return prices


def _from_tiers_yaml(tier: Tier) -> TierPrice | None:
    if tier.price is None:
        return None
    return TierPrice(tier.price.input_per_mtok, tier.price.output_per_mtok, "tiers.yaml")


def _from_table(tier: Tier, when: datetime) -> TierPrice | None:
    """Look the model up in genai-prices (imported here: it is only needed for unpriced tiers)."""
    from genai_prices import Usage, calc_price

    def per_mtok(usage: Usage) -> float:
        return float(calc_price(usage, tier.model, genai_request_timestamp=when).total_price)

    try:
        found = calc_price(Usage(input_tokens=_MTOK), tier.model, genai_request_timestamp=when)
        output = per_mtok(Usage(output_tokens=_MTOK))
    except LookupError:
        return None
    source = f"genai-prices {version('genai-prices')} ({found.provider.id}/{found.model.id})"
    return TierPrice(float(found.total_price), output, source)
