"""Progress of a long run as named stages with totals: what stages report, what the CLI renders.

A stage calls `progress.stage(name, total, unit)` when a step starts (its total in the step's
unit: rows, calls, families, steps) and `progress.advance(n)` as work gets done; the next `stage`
call ends the step before it. The CLI renders it (cli/console.py: a Rich bar on a terminal, one
log line per stage with its time elsewhere); `NO_PROGRESS` ignores everything. Stages get it
passed in, like the clock; nothing here prints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Progress(Protocol):
    def stage(self, name: str, total: int, unit: str = "steps") -> None:
        """A new step starts (the previous one, if any, is done)."""

    def advance(self, n: int = 1) -> None:
        """n more units of the current step are done."""


class _Silent:
    def stage(self, name: str, total: int, unit: str = "steps") -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


NO_PROGRESS: Progress = _Silent()


def counter(progress: Progress, name: str, unit: str) -> Callable[[int, int], None]:
    """A `(done, total)` callback (the call dispatcher's) as a stage of `progress`: the stage
    starts with the first call's total, and each call advances it to `done`."""
    seen = {"done": 0, "total": -1}

    def update(done: int, total: int) -> None:
        if total != seen["total"]:
            progress.stage(name, total, unit)
            seen["done"], seen["total"] = 0, total
        if done > seen["done"]:
            progress.advance(done - seen["done"])
            seen["done"] = done

    return update
