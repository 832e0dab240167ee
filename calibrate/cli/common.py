"""What the command modules share at run time: the wall clock, and the runner of stages that pay
for calls (replay, judge) with a progress bar and a clean stop on the first Ctrl-C. (Option types
live in cli/options.py.)"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer

from calibrate.cli import console
from calibrate.cli.options import MEMORY, store_for_logs
from calibrate.records.progress import counter
from calibrate.store import Store

if TYPE_CHECKING:
    from calibrate.calls.context import RunContext

T = TypeVar("T")


def now() -> datetime:
    return datetime.now(UTC)


def open_store_for_logs(db: Path | None, logs: Sequence[Path] | None) -> Store:
    """The store of `sweep`, `evaluate` and `monitor` (`options.store_for_logs`). Without LOGS they
    write nothing to it, so it is opened read-only and other readers (two sweeps, say) share it."""
    target = store_for_logs(db, logs)
    return Store.open(target, read_only=target != MEMORY and not logs)


def interruptible(label: str, run: Callable[[RunContext], T]) -> T:
    """Run a stage that pays for calls (replay, judge) with a progress bar and the first Ctrl-C or
    SIGTERM as a clean stop: `run` gets the RunContext (environment, clocks, stop flag, progress)."""
    from calibrate.calls import interrupts
    from calibrate.calls.context import RunContext
    from calibrate.calls.limits import SystemClock

    with interrupts.stop_on_signals() as stop, console.stages(label) as progress:
        context = RunContext(
            environ=os.environ,
            clock=now,
            timer=SystemClock(),
            interrupted=stop.is_set,
            on_progress=counter(progress, "calls", "calls"),
        )
        return run(context)


def exit_if_interrupted(stopped: str | None) -> None:
    if stopped == "interrupted":
        raise typer.Exit(130)
