"""What a stage that pays for calls (replay, the judge) receives from outside: one `RunContext`.

The environment the API keys are read from, the wall clock (timestamps), the monotonic clock the
rate limits and backoff wait on, the stop flag (the first Ctrl-C), the HTTP transport (None: real
connections; tests pass an `httpx.MockTransport`) and the progress callback. The CLI builds it
(`cli.common.interruptible`); tests build their own. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

import httpx

from calibrate.calls.limits import Clock


def _never() -> bool:
    return False


@dataclass(frozen=True, slots=True)
class RunContext:
    """The injected parts of a run that makes calls."""

    environ: Mapping[str, str]
    """Where `api_key_env` variables are read (at call time, never stored)."""
    clock: Callable[[], datetime]
    """Wall clock: run and call timestamps."""
    timer: Clock
    """Monotonic clock and sleep: rate limits, Retry-After, backoff."""
    interrupted: Callable[[], bool] = _never
    """True once the run should stop starting calls (first Ctrl-C or SIGTERM)."""
    transport: httpx.AsyncBaseTransport | None = None
    """None: real connections, one small pool per worker; else shared by every worker."""
    on_progress: Callable[[int, int], None] | None = None
    """(jobs finished, jobs planned), after each job."""
