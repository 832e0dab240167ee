"""What the command modules share: option types, the wall clock, and the runner of stages that
pay for calls (replay, judge) with a progress bar and a clean stop on the first Ctrl-C."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from calibrate.cli import console
from calibrate.store import Store

if TYPE_CHECKING:
    from calibrate.calls.context import RunContext

T = TypeVar("T")

Logs = Annotated[
    list[Path], typer.Argument(help="Log files or folders (.jsonl, .jsonl.gz, .parquet, .csv).")
]
Db = Annotated[Path, typer.Option("--db", help="DuckDB store file.")]
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
Strict = Annotated[
    bool, typer.Option("--strict", help="Any bad row is an error and nothing is written.")
]
TiersPath = Annotated[
    Path, typer.Option("--tiers", help="tiers.yaml: the model tiers, cheapest first.")
]


def now() -> datetime:
    return datetime.now(UTC)


def open_store(db: Path | None, *, writes: bool) -> Store:
    """The store of --db, or an in-memory one without it. A command that writes nothing to it
    opens it read-only, so other readers (two sweeps, say) can share it."""
    return Store.open(db if db is not None else ":memory:", read_only=db is not None and not writes)


def interruptible(label: str, run: Callable[[RunContext], T]) -> T:
    """Run a stage that pays for calls (replay, judge) with a progress bar and the first Ctrl-C or
    SIGTERM as a clean stop: `run` gets the RunContext (environment, clocks, stop flag, progress)."""
    from calibrate.calls import interrupts
    from calibrate.calls.context import RunContext
    from calibrate.calls.limits import SystemClock

    with interrupts.stop_on_signals() as stop, console.progress(label) as tick:
        context = RunContext(
            environ=os.environ,
            clock=now,
            timer=SystemClock(),
            interrupted=stop.is_set,
            on_progress=tick,
        )
        return run(context)


def exit_if_interrupted(stopped: str | None) -> None:
    if stopped == "interrupted":
        raise typer.Exit(130)
