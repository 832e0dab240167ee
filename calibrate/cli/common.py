"""What the command modules share at run time: the wall clock, and the runner of stages that pay
for calls (replay, judge) with a progress bar and a clean stop on the first Ctrl-C. (Option types
live in cli/options.py.)"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import typer

from calibrate.cli import console

T = TypeVar("T")


def now() -> datetime:
    return datetime.now(UTC)


def interruptible(label: str, run: Callable[..., T]) -> T:
    """Run a stage that pays for calls (replay, judge) with a progress bar and the first Ctrl-C or
    SIGTERM as a clean stop; the environment, clocks, stop flag and progress are passed in."""
    from calibrate.calls import interrupts
    from calibrate.calls.limits import SystemClock

    with interrupts.stop_on_signals() as stop, console.progress(label) as tick:
        return run(
            environ=os.environ,
            clock=now,
            timer=SystemClock(),
            interrupted=stop.is_set,
            on_progress=tick,
        )


def exit_if_interrupted(stopped: str | None) -> None:
    if stopped == "interrupted":
        raise typer.Exit(130)
