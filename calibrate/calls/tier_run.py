"""A tier as replay and the judge call it: the checks that it can be called, its endpoint with the
key read from the environment at call time, and how many answer tokens a call is expected to cost."""

from __future__ import annotations

from collections.abc import Mapping

from calibrate.calls import endpoint as ep
from calibrate.calls.call_records import TierRun
from calibrate.calls.pricing import TierPrice
from calibrate.calls.secrets import read_api_key
from calibrate.config.tiers import Tier
from calibrate.errors import ConfigError
from calibrate.store import Store

DEFAULT_OUTPUT_TOKENS = 256


def check_tier(tier: Tier) -> None:
    """A tier must have an http(s) base_url and must not stream to be called."""
    if not tier.base_url or not tier.base_url.startswith(("http://", "https://")):
        what = (
            f"base_url {tier.base_url!r} is not an http(s) URL" if tier.base_url else "no base_url"
        )
        raise ConfigError(
            f"tier {tier.name!r} has {what}, so it cannot be called",
            hint="Set `base_url: https://.../v1` (any OpenAI-compatible endpoint) on the tier.",
        )
    if tier.params.get("stream") is True:
        raise ConfigError(
            f"tier {tier.name!r}: params.stream is true; replay reads whole responses",
            hint="Remove `stream` from the tier's params.",
        )


def tier_run(
    store: Store, tier: Tier, position: int, price: TierPrice, environ: Mapping[str, str] | None
) -> TierRun:
    """The tier's endpoint (with its key, read from the environment now) and expectations."""
    headers, secret = {}, None
    if tier.api_key_env and environ is not None:
        secret = read_api_key(environ, tier.api_key_env, tier.name)
        headers = {"Authorization": f"Bearer {secret}"}
    assert tier.base_url is not None
    endpoint = ep.Endpoint(
        ep.chat_url(tier.base_url), tier.model, tier.limits.timeout_s, headers, secret
    )
    output_tokens, basis = _expected_output(store, tier)
    return TierRun(tier, position, endpoint, price, output_tokens, basis)


def _expected_output(store: Store, tier: Tier) -> tuple[int, str]:
    """Expected answer tokens and where the number comes from."""
    for key in ("max_tokens", "max_completion_tokens"):
        value = tier.params.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, f"{value} ({key})"
    mean, n = store.mean_output_tokens(tier.name)
    if mean is not None:
        expected = max(1, round(mean))
        return expected, f"{expected} (mean of {n} stored answers)"
    return (
        DEFAULT_OUTPUT_TOKENS,
        f"{DEFAULT_OUTPUT_TOKENS} (default: no max_tokens, no stored answers)",
    )
