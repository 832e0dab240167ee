"""Terminal output: Rich tables, the progress bar and `Error:`/`Hint:` lines. Rich lives only here.

Data goes to stdout, messages and progress to stderr. Consoles are built when needed, never at
import time, so tests that swap the streams see the output.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from calibrate.errors import CalibrateError
from calibrate.records import IngestSummary
from calibrate.replay_records import ReplayPlan, ReplaySummary


def out() -> Console:
    return Console(soft_wrap=True)


def err() -> Console:
    return Console(stderr=True, soft_wrap=True)


def print_error(exc: CalibrateError) -> None:
    console = err()
    console.print(f"[bold red]Error:[/] {exc.message}", highlight=False, markup=True)
    if exc.hint:
        console.print(f"[bold]Hint:[/] {exc.hint}", highlight=False)


def print_json(data: object) -> None:
    print(json.dumps(data, indent=2, default=_json_default))


def _json_default(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(type(value).__name__)


@contextmanager
def progress(description: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr; yields a callback(done, total)."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err(),
        transient=True,
    )
    with bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def ingest_table(summary: IngestSummary) -> None:
    table = Table(title="ingest", show_header=True)
    for col in (
        "files",
        "files skipped",
        "rows read",
        "kept",
        "rejected",
        "requests in store",
    ):
        table.add_column(col, justify="right")
    table.add_row(
        *(
            str(v)
            for v in (
                summary.files,
                summary.files_skipped,
                summary.rows_read,
                summary.rows_kept,
                summary.rows_rejected,
                summary.requests_total,
            )
        )
    )
    out().print(table)
    if summary.rows_rejected:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in summary.rejects_by_reason)
        err().print(
            f"{summary.rows_rejected} rows rejected ({reasons}). "
            f"See the `rejects` table in {summary.db_path}.",
            highlight=False,
        )


def _fmt(metric: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if metric in ("escalation_rate", "savings_vs_premium"):
        return f"{value:.1%}"
    if metric.startswith("latency"):
        return f"{value:,.0f} ms"
    if metric.startswith("cost"):
        return f"${value:.4f}"
    return f"{value:.4f}"


def metrics_table(title: str, row: dict, metrics: tuple[str, ...]) -> None:
    """One policy's metrics, one per line (fits any terminal width)."""
    table = Table(title=f"{title}: {row['policy']}", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for m in ("requests", "labeled", *metrics):
        if m in row:
            table.add_row(m, _fmt(m, row[m]) if m in metrics else str(row[m]))
    out().print(table)


def outputs_written(paths: dict[str, Path]) -> None:
    console = err()
    console.print("Wrote:", highlight=False)
    for path in paths.values():
        console.print(f"  {path}", highlight=False)


def rows_table(title: str, header: tuple[str, ...], rows: list[tuple[object, ...]]) -> None:
    """A plain table on stdout: first column left-aligned, the others right-aligned."""
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(header):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(str(v) for v in row))
    out().print(table)


def warn(message: str) -> None:
    err().print(f"Warning: {message}", highlight=False)


def replay_plan(plan: ReplayPlan) -> None:
    """`calibrate replay --dry-run`: calls, tokens and estimated cost per tier; prices on stderr."""
    rows: list[tuple[object, ...]] = [
        (
            t.tier,
            t.requests,
            t.cached,
            t.failed_before,
            t.calls,
            f"{t.input_tokens:,}",
            f"{t.output_tokens:,}",
            f"${t.cost_usd:.4f}",
        )
        for t in plan.tiers
    ]
    rows.append(("total", "", "", "", plan.calls, "", "", f"${plan.cost_usd:.4f}"))
    header = ("tier", "to do", "cached", "skipped", "calls", "in tokens", "out tokens", "est. cost")
    rows_table(f"replay plan: {plan.selected} sampled requests", header, rows)
    console = err()
    for t in plan.tiers:
        console.print(
            f"{t.tier}: ${t.input_per_mtok:g} / ${t.output_per_mtok:g} per Mtok in / out from "
            f"{t.price_source}; output tokens per answer: {t.output_tokens_basis}",
            highlight=False,
        )


def replay_summary(summary: ReplaySummary) -> None:
    """What a replay run did, per tier; price sources and warnings on stderr."""
    rows: list[tuple[object, ...]] = [
        (
            t.tier,
            t.done,
            t.cached,
            t.failed,
            t.failed_before,
            t.not_run,
            t.http_calls,
            f"${t.cost_usd:.6f}",
        )
        for t in summary.tiers
    ]
    header = ("tier", "done", "cached", "failed", "skipped", "not run", "http calls", "cost")
    rows_table(f"replay run {summary.run_id}: {summary.selected} sampled requests", header, rows)
    console = err()
    for t in summary.tiers:
        console.print(f"{t.tier}: price from {t.price_source}", highlight=False)
    for warning in summary.warnings:
        warn(warning)
