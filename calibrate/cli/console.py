"""Terminal output: Rich tables, the progress bar and `Error:`/`Hint:` lines. Rich lives only here.

Data goes to stdout, messages and progress to stderr. Consoles are built when needed, never at
import time, so tests that swap the streams see the output. They read no Rich markup: messages
carry user data (paths, tier names, prompts) printed as written, `[` included; styles are given as
`Text` spans.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.progress import BarColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table
from rich.text import Text

from calibrate.errors import CalibrateError
from calibrate.records.labels import (
    Coverage,
    ImportSummary,
    JudgePlan,
    JudgeSummary,
    ResolveCounts,
    SampleSummary,
    ScoreSummary,
)
from calibrate.records.outcomes import IngestSummary
from calibrate.records.progress import Progress
from calibrate.records.replay import ReplayPlan, ReplaySummary

if TYPE_CHECKING:  # the evaluate stage loads when `evaluate` runs
    from calibrate.sweep.evaluate import Evaluation, MetricCheck


def out() -> Console:
    return Console(soft_wrap=True, markup=False)


def err() -> Console:
    return Console(stderr=True, soft_wrap=True, markup=False)


def print_error(exc: CalibrateError) -> None:
    console = err()
    console.print(Text.assemble(("Error:", "bold red"), " ", exc.message), highlight=False)
    if exc.hint:
        console.print(Text.assemble(("Hint:", "bold"), " ", exc.hint), highlight=False)


def print_json(data: object) -> None:
    print(json.dumps(data, indent=2, default=_json_default))


def _json_default(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(type(value).__name__)


@contextmanager
def stages(command: str) -> Iterator[Progress]:
    """The stages of a long command on stderr, as they happen: on a terminal, a Rich bar per
    stage (name, done/total, time); elsewhere (CI, a pipe, a log file) one line per finished stage
    with its count and time. Yields the `Progress` the command passes to the stages."""
    console = err()
    view: _Bars | _Lines = _Bars(console) if console.is_terminal else _Lines(console, command)
    try:
        yield view
    except KeyboardInterrupt:
        view.close(stopped=True)  # the stage it stopped in, and how far it got
        raise
    except BaseException:
        view.close(stopped=True, quiet=True)  # the error says what happened
        raise
    view.close(stopped=False)


class _Bars:
    """Rich bars, one per stage; a stage's bar fills when the next one starts."""

    def __init__(self, console: Console) -> None:
        self._bars = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f} {task.fields[unit]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._task: TaskID | None = None
        self._bars.start()

    def stage(self, name: str, total: int, unit: str = "steps") -> None:
        self._finish()
        self._task = self._bars.add_task(name, total=max(total, 0), unit=unit)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self._bars.advance(self._task, n)

    def close(self, *, stopped: bool, quiet: bool = False) -> None:
        if not stopped:
            self._finish()
        self._bars.stop()

    def _finish(self) -> None:
        if self._task is not None:
            task = next(t for t in self._bars.tasks if t.id == self._task)
            self._bars.update(self._task, completed=task.total)
            self._bars.stop_task(self._task)


class _Lines:
    """One plain line per stage when it ends: `calibrate sweep: evaluate 57 families in 3.20 s`."""

    def __init__(self, console: Console, command: str) -> None:
        self._console, self._command = console, command
        self._current: tuple[str, int, str, float] | None = None
        self._done = 0

    def stage(self, name: str, total: int, unit: str = "steps") -> None:
        self._finish("")
        self._current, self._done = (name, total, unit, time.perf_counter()), 0

    def advance(self, n: int = 1) -> None:
        self._done += n

    def close(self, *, stopped: bool, quiet: bool = False) -> None:
        if quiet:
            self._current = None
        self._finish(" (stopped)" if stopped else "")

    def _finish(self, note: str) -> None:
        if self._current is None:
            return
        name, total, unit, started = self._current
        seconds = time.perf_counter() - started
        count = f" {self._done:,}/{total:,} {unit}" if note else f" {total:,} {unit}"
        if not note and unit == "steps" and total == 1:
            count = ""
        self._console.print(
            f"calibrate {self._command}: {name}{count} in {seconds:.2f} s{note}", highlight=False
        )
        self._current = None


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
    if summary.formats:
        read = ", ".join(f"{name} ({files} files)" for name, files in summary.formats)
        err().print(f"Gateway exports read: {read}.", highlight=False, markup=False)
    if summary.ignored_records:
        err().print(
            f"{summary.ignored_records} export records are not LLM calls (ignored).",
            highlight=False,
        )
    if summary.unmapped_models:
        models = ", ".join(f"{model} ({calls} calls)" for model, calls in summary.unmapped_models)
        err().print(
            f"Models no tier claims (their calls were rejected): {models}. "
            "Add them to a tier's `aliases` in tiers.yaml.",
            highlight=False,
            markup=False,
        )
    if summary.rows_rejected:
        err().print(
            f"{_rows(summary.rows_rejected)} rejected: {_by_reason(summary.rejects_by_reason)}. "
            f"See the `rejects` table in {summary.db_path}.",
            highlight=False,
        )


def _rows(n: int, what: str = "row") -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _by_reason(counts: tuple[tuple[str, int], ...]) -> str:
    """`missing field (3 rows), invalid JSON (1 row)`: a count never reads as a field name."""
    return ", ".join(f"{reason} ({_rows(n)})" for reason, n in counts)


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


def _precise(metric: str, value: float | None) -> str:
    """A metric at routing.yaml's precision (`routing.METRIC_DIGITS`), as `evaluate` compares it;
    the unit is in the metric's name (rates as percentages)."""
    if value is None or math.isnan(value):
        return "n/a"
    if metric in ("escalation_rate", "savings_vs_premium"):
        return f"{value:.2%}"
    if metric.startswith("latency"):
        return f"{value:.1f}"
    if metric.startswith("cost"):
        return f"{value:.6f}"
    return f"{value:.4f}"


def _span(metric: str, interval: tuple[float, float] | None) -> str:
    if interval is None:
        return ""
    low, high = interval
    return f"{_precise(metric, low)}–{_precise(metric, high)}"


def _interval(check: MetricCheck) -> str:
    return _span(check.name, check.interval)


def _cell(value: str, interval: str) -> Text:
    """A value over its interval (dim), the interval's line left out when there is none."""
    return Text.assemble(value, ("\n" + interval, "dim") if interval else "")


_CHECK_TEXT = {
    "inside": "inside",
    "within noise": "inside\n(noise)",
    "outside": "OUTSIDE",
    "no interval": "",
    "not measured": "—",
}


def evaluation(result: Evaluation) -> None:
    """`calibrate evaluate`: each metric measured over these logs' own interval, next to
    routing.yaml's expected value over its interval (stdout; 80 columns), then what the
    comparison found (stderr)."""
    level = f"interval ({result.new_level:.0%})"
    table = Table(title=f"evaluate: {result.policy}", title_justify="left", box=box.SIMPLE)
    table.add_column("metric", no_wrap=True)
    table.add_column(f"measured\n{level}", justify="right", no_wrap=True)
    table.add_column(f"expected\n{level}", justify="right", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_row("requests", str(result.window.requests), "", "")
    table.add_row("labeled", str(result.window.labeled), "", "")
    for c in result.checks:
        expected = "" if c.expected is None else _precise(c.name, c.expected)
        status = Text(_CHECK_TEXT[c.status], style="bold red" if c.status == "outside" else "")
        measured = _cell(_precise(c.name, c.measured), _span(c.name, c.new))
        table.add_row(c.name, measured, _cell(expected, _interval(c)), status)
    out().print(table)
    for line in evaluation_notes(result):
        err().print(line, highlight=False, markup=False)


def _versus(c: MetricCheck) -> str:
    """The deviation against the combined half-width of both samples' intervals, in words."""
    assert c.deviation is not None and c.tolerance is not None
    sign = "≤" if c.status == "within noise" else ">"
    return (
        f"a difference of {_precise(c.name, abs(c.deviation))} {sign} "
        f"{_precise(c.name, c.tolerance)}, the combined half-width of both samples' intervals"
    )


def evaluation_notes(result: Evaluation) -> list[str]:
    """What the comparison with routing.yaml found, in sentences."""
    if not result.compared:
        return [
            "routing.yaml records no expected metrics and no intervals (a hand-written config?): "
            "nothing to compare against. The figures above are what this config does on these logs."
        ]
    notes, checks = [], result.checks
    unmeasured = [c.name for c in checks if c.status == "not measured"]
    if unmeasured:
        why = " (no request in them is labeled)" if result.window.labeled == 0 else ""
        notes.append(
            f"Not measurable on these logs{why}, so not compared: {', '.join(unmeasured)}."
        )
    compared = [c for c in checks if c.status in ("inside", "within noise", "outside")]
    plain = [c.name for c in compared if c.tolerance is None]
    if plain:
        why = "" if result.level is not None else " (routing.yaml names no confidence level)"
        notes.append(
            f"No interval of these logs to combine with{why}, so only routing.yaml's interval "
            f"counts: {', '.join(plain)}."
        )
    for c in checks:
        if c.status == "within noise":
            notes.append(
                f"{c.name} {_precise(c.name, c.measured)} is outside routing.yaml's interval "
                f"{_interval(c)} but within sampling error ({_versus(c)}): not flagged."
            )
    for c in result.outside:
        expected = "" if c.expected is None else f" (expected {_precise(c.name, c.expected)})"
        beyond = "" if c.tolerance is None else f", beyond sampling error ({_versus(c)})"
        notes.append(
            f"Warning: {c.name} {_precise(c.name, c.measured)} is outside routing.yaml's interval "
            f"{_interval(c)}{expected}{beyond}."
        )
    noise = sum(c.status == "within noise" for c in compared)
    if result.outside:
        notes.append(
            f"Warning: {len(result.outside)} of {len(compared)} metrics moved outside the "
            "intervals routing.yaml was calibrated with, by more than sampling error: these logs "
            "differ from the calibration data (traffic, prompts or models changed). Re-run "
            "`calibrate sweep` on recent logs before relying on its expected figures."
        )
    elif noise:
        notes.append(
            f"No metric moved beyond sampling error: {len(compared) - noise} of {len(compared)} "
            f"inside routing.yaml's intervals, {noise} outside them within sampling error."
        )
    elif compared:
        notes.append(
            f"All {len(compared)} metrics with an interval are inside routing.yaml's intervals."
        )
    else:
        notes.append("routing.yaml has no interval for any metric measured here: nothing flagged.")
    return notes


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


# --- labels and labelling queues ------------------------------------------------------------


def _resolved_line(resolved: ResolveCounts) -> str:
    return (
        f"stored {resolved.stored} (new {resolved.new}, replaced {resolved.replaced}, "
        f"unchanged {resolved.unchanged}); older than the stored label, kept in label_history: "
        f"{resolved.older_than_stored}; now outranking a disagreeing lower-priority label: "
        f"{resolved.overrides}; hidden behind a disagreeing higher-priority label: "
        f"{resolved.overridden}"
    )


def label_import_summary(summary: ImportSummary) -> None:
    """`labels import`: counts on stdout; conflicts and the rejected rows on stderr."""
    r = summary.resolved
    header = ("rows", "labels read", "stored", "weighted", "rejected", "rows without a score")
    values = (
        summary.rows_read,
        summary.labels_read,
        r.stored,
        r.weighted,
        summary.rejected,
        summary.rows_unlabeled,
    )
    rows_table(f"labels import run {summary.run_id}: {summary.file}", header, [values])
    console = err()
    console.print(f"Conflicts: {_resolved_line(r)}.", highlight=False)
    if summary.rejected:
        console.print(
            f"{_rows(summary.rejected, 'label row')} rejected: "
            f"{_by_reason(summary.rejects_by_reason)}:",
            highlight=False,
        )
        for bad in summary.first_rejects:
            console.print(
                f"  {summary.file}:{bad.line}: {bad.field or '-'}: {bad.reason}", highlight=False
            )
        if summary.rejected > len(summary.first_rejects):
            console.print("  … all of them are in the `label_rejects` table.", highlight=False)


def label_score_summary(summary: ScoreSummary) -> None:
    """`labels score`: labels per scorer on stdout; what could not be scored on stderr."""
    rows: list[tuple[object, ...]] = [(kind, n) for kind, n in summary.scored]
    rows.append(("acceptable (score ≥ 0.5)", summary.acceptable))
    rows_table(f"labels score run {summary.run_id}", ("scorer", "labels"), rows)
    console = err()
    console.print(f"Conflicts: {_resolved_line(summary.resolved)}.", highlight=False)
    for reason, n in summary.skipped:
        console.print(f"Not scored: {n} answers: {reason}", highlight=False)


def judge_plan(plan: JudgePlan) -> None:
    """`labels judge --dry-run`: what would be judged and what it should cost."""
    header = ("answers", "calls", "cached", "failed before", "no yardstick", "est. cost")
    values = (
        plan.items,
        plan.calls,
        plan.cached,
        plan.failed_before,
        plan.no_yardstick,
        f"${plan.cost_usd:.4f}",
    )
    rows_table(f"judge plan: {plan.judge} ({plan.model})", header, [values])
    err().print(f"{plan.judge}: price from {plan.price_source}", highlight=False)


def judge_summary(summary: JudgeSummary, agreement_text: str) -> None:
    """`labels judge`: verdicts and cost on stdout; agreement, conflicts and warnings on stderr."""
    header = ("answers", "labelled", "unparsable", "failed", "not run", "http calls", "cost")
    values = (
        summary.plan.items,
        summary.labeled,
        summary.unparsable,
        summary.failed,
        summary.not_run,
        summary.http_calls,
        f"${summary.cost_usd:.6f}",
    )
    title = f"labels judge run {summary.run_id}: {summary.plan.judge} ({summary.plan.model})"
    rows_table(title, header, [values])
    console = err()
    console.print(
        f"Judge cost so far (all runs): ${summary.total_judge_cost_usd:.6f}; "
        f"price from {summary.plan.price_source}",
        highlight=False,
    )
    console.print(agreement_text, highlight=False)
    console.print(f"Conflicts: {_resolved_line(summary.resolved)}.", highlight=False)
    for warning in summary.warnings:
        warn(warning)


def coverage_tables(coverage: Coverage, agreement_text: str) -> None:
    """`labels status`: per tier and per segment on stdout; what is unusable on stderr."""
    c = coverage
    rows_table(
        f"labels: {c.usable} of {c.complete} complete requests labelled for every tier "
        f"({c.weighted} weighted; {c.requests} requests stored)",
        ("tier", "labels by source", "used"),
        [(t, ", ".join(f"{s} {n}" for s, n in src) or "none", used) for t, src, used in c.by_tier],
    )
    rows_table(
        "labelled requests per segment",
        ("segment", "requests", "labelled", "weighted"),
        [
            (f"{s.column}={s.value or '(none)'}", s.requests, s.usable, s.weighted)
            for s in c.segments
        ],
    )
    console = err()
    console.print(
        f"Unusable: {c.partial} labelled for some tiers only"
        + (f" (e.g. {', '.join(c.partial_examples)})" if c.partial_examples else "")
        + f"; {c.incomplete_labeled} labelled but missing a tier's answer"
        + (f" (e.g. {', '.join(c.incomplete_examples)})" if c.incomplete_examples else "")
        + f"; {c.other_tier_labels} labels for other tiers; {c.rejected_rows} rejected rows.",
        highlight=False,
    )
    console.print(
        f"Queues: {c.queued} sampled, {c.queued_labeled} labelled. Judge: {c.judge_calls} calls "
        f"(${c.judge_cost_usd:.4f}), {c.judge_unparsable} unusable. {agreement_text}",
        highlight=False,
    )
    for note in c.notes:
        warn(note)


def sample_summary(summary: SampleSummary) -> None:
    """`calibrate sample`: rows per stratum on stdout; the design's notes on stderr."""
    rows_table(
        f"sample {summary.sample_id}: {summary.rows} requests of {summary.population} → "
        f"{summary.out}",
        ("stratum", "rows", "population"),
        [(h, n, size) for h, n, size in summary.strata],
    )
    for note in summary.notes:
        warn(note)
