"""What the command modules share: option types, the wall clock, and the runner of stages that
pay for calls (replay, judge) with a progress bar and a clean stop on the first Ctrl-C."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from calibrate.cli import console
from calibrate.formats.detect import NAMES as FORMAT_NAMES

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
ExportTiers = Annotated[
    Path | None,
    typer.Option("--tiers", help="tiers.yaml: maps the models of gateway exports to tiers."),
]


def _log_format(value: str) -> str:
    if value not in FORMAT_NAMES:
        raise typer.BadParameter(f"use one of: {', '.join(FORMAT_NAMES)}")
    return value


LogFormat = Annotated[
    str,
    typer.Option(
        "--format",
        callback=_log_format,
        help=f"Log format: auto (detected from each file's content) or, for every file, one of "
        f"{', '.join(FORMAT_NAMES[1:])}.",
    ),
]


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
