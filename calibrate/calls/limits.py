"""Pacing and protection for calls to a tier: clock, rate limiter, backoff, circuit breaker, budget.

Pure asyncio bookkeeping with an injected `Clock` (monotonic seconds and a sleep), so tests can run
on a fake clock. Owns no I/O and imports nothing from calibrate. Concurrency itself is bounded by the
number of workers `dispatch` starts per tier.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    """Monotonic time in seconds and a way to wait on it."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: time.monotonic and asyncio.sleep."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class TokenBucket:
    """Refills at `per_minute / 60` per second up to one second's worth (at least 1).

    A take waits until the bucket holds min(amount, capacity), then subtracts the whole amount, so a
    request larger than the capacity waits for a full bucket and leaves it in debt instead of
    waiting forever.
    """

    def __init__(self, per_minute: float, clock: Clock) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self._clock = clock
        self._at = clock.now()

    def _refill(self) -> None:
        now = self._clock.now()
        self.level = min(self.capacity, self.level + (now - self._at) * self.rate)
        self._at = now

    def wait_s(self, amount: float) -> float:
        """Seconds until `amount` may be taken (0 when it may be taken now)."""
        self._refill()
        need = min(amount, self.capacity) - self.level
        return max(need / self.rate, 0.0)

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= amount


class RateLimiter:
    """Requests-per-minute and tokens-per-minute budgets of one tier, plus a pause after a 429."""

    def __init__(self, rpm: int | None, tpm: int | None, clock: Clock) -> None:
        self._requests = TokenBucket(rpm, clock) if rpm else None
        self._tokens = TokenBucket(tpm, clock) if tpm else None
        self._clock = clock
        self.blocked_until = 0.0

    def block_for(self, seconds: float) -> None:
        """Hold every caller of this tier back (the server said Retry-After)."""
        self.blocked_until = max(self.blocked_until, self._clock.now() + seconds)

    def wait_s(self, tokens: int) -> float:
        waits = [self.blocked_until - self._clock.now()]
        if self._requests is not None:
            waits.append(self._requests.wait_s(1))
        if self._tokens is not None:
            waits.append(self._tokens.wait_s(tokens))
        return max(max(waits), 0.0)

    async def acquire(self, tokens: int, stopped: Callable[[], bool]) -> bool:
        """Wait for room for one request of `tokens`; False if `stopped()` became true first."""
        while True:
            if stopped():
                return False
            wait = self.wait_s(tokens)
            if wait <= 0:
                break
            await self._clock.sleep(min(wait, 0.25))
        if self._requests is not None:
            self._requests.take(1)
        if self._tokens is not None:
            self._tokens.take(tokens)
        return True

    def correct_tokens(self, estimated: int, actual: int) -> None:
        """Charge the difference once the server reported the real token count."""
        if self._tokens is not None:
            self._tokens.take(actual - estimated)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: min(base·2^retry, cap) × U[0.75, 1] seconds."""

    base_s: float = 0.5
    cap_s: float = 8.0

    def delay_s(self, retry: int, rng: random.Random) -> float:
        return min(self.base_s * 2**retry, self.cap_s) * (1 - 0.25 * rng.random())


class CircuitBreaker:
    """Opens after `threshold` consecutive failed calls, or at once on a tier-wide error; an open
    breaker stays open for the rest of the run and keeps the reason."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.consecutive = 0
        self.reason: str | None = None

    @property
    def is_open(self) -> bool:
        return self.reason is not None

    def success(self) -> None:
        self.consecutive = 0

    def failure(self, message: str) -> None:
        self.consecutive += 1
        if self.consecutive >= self.threshold and self.reason is None:
            self.reason = f"{self.consecutive} consecutive failed calls, last: {message}"

    def trip(self, message: str) -> None:
        if self.reason is None:
            self.reason = message


class Budget:
    """A spending cap: a call starts only if spent + reserved + its worst-case cost ≤ the cap.

    Reservations are counted, so once every one is settled `reserved_usd` is exactly 0 (summing
    and subtracting unequal floats would leave a residue such as 1e-16, and a worker waiting
    for the reservations to drain would wait forever)."""

    def __init__(self, limit_usd: float | None) -> None:
        self.limit_usd = limit_usd
        self.spent_usd = 0.0
        self.reserved_usd = 0.0
        self.holds = 0

    def reserve(self, amount_usd: float) -> bool:
        if (
            self.limit_usd is not None
            and self.spent_usd + self.reserved_usd + amount_usd > self.limit_usd
        ):
            return False
        self.reserved_usd += amount_usd
        self.holds += 1
        return True

    def settle(self, reserved_usd: float, actual_usd: float) -> None:
        self.holds -= 1
        self.reserved_usd = self.reserved_usd - reserved_usd if self.holds else 0.0
        self.spent_usd += actual_usd
