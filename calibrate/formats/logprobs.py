"""Token logprobs of an OpenAI-shaped answer and the confidence a tier derives from them.

One rule for every path that turns logprobs into a confidence: replay (calls/endpoint.py) and the
gateway exports (formats/chat.py) both call `token_logprobs` and `confidence`.

A confidence lives on one of two scales (tiers.yaml `confidence: {method, scale}`):
`raw_logprob` (a token log-probability, ≤ 0) or `probability` (in [0, 1]; for a logprob method,
exp of the raw value). A method's natural scale (`NATURAL_SCALE`) is what the plain string form
`confidence: logprob_mean` means. `fits(scale, low, high)` is the range rule every check uses.
Pure; imports nothing from calibrate.
"""

from __future__ import annotations

import math
from typing import Any

LOGPROB_SENTINEL = -9999.0
"""OpenAI's placeholder logprob for a token outside the top list (ecosystem.md §6.1)."""
LOGPROB_FLOOR = -20.0
"""What a placeholder becomes when no top_logprobs bound it: below any real top-20 logprob."""
LOGPROB_METHODS = ("logprob_mean", "logprob_min", "first_token")
SCALES = ("raw_logprob", "probability")
NATURAL_SCALE = {
    "logprob_mean": "raw_logprob",
    "logprob_min": "raw_logprob",
    "first_token": "probability",
    "verbalized": "probability",
}
"""The scale of the plain string form `confidence: METHOD` (`none` has no scale)."""
ALLOWED_SCALES = {
    "logprob_mean": SCALES,
    "logprob_min": SCALES,
    "first_token": SCALES,
    "verbalized": ("probability",),
}
SCALE_RANGE = {"raw_logprob": "≤ 0", "probability": "in [0, 1]"}
_STAT = {"logprob_mean": "mean", "logprob_min": "min", "first_token": "first"}


def fits(scale: str, low: float, high: float) -> bool:
    """Whether confidences from `low` to `high` can be on `scale` (raw_logprob: all ≤ 0;
    probability: all in [0, 1])."""
    if scale == "raw_logprob":
        return high <= 0
    return low >= 0 and high <= 1


def token_logprobs(block: Any) -> tuple[tuple[float, ...] | None, int]:
    """Per-token logprobs of a `choices[i].logprobs` block; a -9999 placeholder becomes the smallest
    real top logprob (or the floor), and is counted as clipped. None when the block carries no
    per-token logprobs. Raises ValueError/TypeError/KeyError on a malformed block."""
    if not isinstance(block, dict) or not isinstance(block.get("content"), list):
        return None, 0
    values: list[float] = []
    clipped = 0
    for token in block["content"]:
        lp = float(token["logprob"])
        if math.isnan(lp):
            raise ValueError("logprob is NaN")
        if lp <= LOGPROB_SENTINEL + 1:
            clipped += 1
            top = [
                float(t["logprob"])
                for t in token.get("top_logprobs") or []
                if float(t["logprob"]) > LOGPROB_SENTINEL + 1
            ]
            lp = min(top) if top else LOGPROB_FLOOR
        values.append(lp)
    return tuple(values), clipped


def summary(values: tuple[float, ...] | None, clipped: int) -> dict[str, float | int] | None:
    """n_tokens, clipped, mean, min and first_token (exp of the first logprob); None when empty."""
    if not values:
        return None
    return {
        "n_tokens": len(values),
        "clipped": clipped,
        "mean": sum(values) / len(values),
        "min": min(values),
        "first_token": math.exp(values[0]),
    }


def confidence(
    method: str, values: tuple[float, ...] | None, scale: str | None = None
) -> tuple[float | None, str | None]:
    """(confidence, None) or (None, why it is missing) for a logprob-based method: the mean
    logprob (`logprob_mean`), the minimum (`logprob_min`) or the first token's (`first_token`),
    on `scale` (None: the method's natural scale): raw, or its exp on `probability`."""
    if values is None:
        return None, "the tier returned no logprobs"
    if not values:
        return None, "the answer has no tokens"
    raw = {"mean": sum(values) / len(values), "min": min(values), "first": values[0]}
    value = raw[_STAT[method]]
    if (scale or NATURAL_SCALE[method]) == "probability":
        value = math.exp(value)
    return float(value), None
