"""Compositions for commands that span stages (no logic of its own).

`sweep_logs`: ingest the given logs, run the sweep, write the outputs. `evaluate_logs` and
`monitor_logs`: ingest the given logs, then evaluate a routing.yaml on the store, or monitor it (and
write the monitor's outputs). `diff_routing`: compare two routing.yaml files and, given a target,
their exports to that gateway (diff and export are sibling stages; the composition is here).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from calibrate.config.routing import RoutingConfig
from calibrate.config.tiers import TiersConfig, price_table
from calibrate.diff import compare
from calibrate.errors import ConfigError
from calibrate.export import changes
from calibrate.ingest import stage as ingest
from calibrate.monitor import stage as monitor
from calibrate.records.engine import Engine
from calibrate.records.progress import NO_PROGRESS, Progress
from calibrate.report import diff_report, monitor_report
from calibrate.report import sweep_report as report
from calibrate.store import Store, spark_engine
from calibrate.sweep import evaluate
from calibrate.sweep import stage as sweep
from calibrate.sweep.candidates import Source, Strategies
from calibrate.sweep.check import CheckReport, check_store
from calibrate.sweep.selection import Objective


@dataclass(frozen=True)
class SweepJob:
    """What one `calibrate sweep` does: the logs to ingest first (none: sweep what the store
    holds), the tiers, what to optimise, which strategies, the fixed costs, where to write."""

    logs: tuple[Path, ...]
    tiers: TiersConfig
    objective: Objective
    strategies: Strategies
    overheads: sweep.Overheads
    out_dir: Path
    seed: int = 0
    strict: bool = False
    log_format: str = "auto"
    engine: Engine = Engine()


def sweep_logs(
    store: Store,
    job: SweepJob,
    *,
    clock: Callable[[], datetime],
    on_progress: Callable[[int, int], None] | None = None,
    progress: Progress | None = None,
) -> tuple[sweep.SweepResult, dict[str, Path]]:
    """Ingest (when logs are given), sweep, and write routing.yaml, frontier.csv, summary.json,
    report.md and report.html into the job's out_dir; `progress` hears of every stage."""
    progress = progress or NO_PROGRESS
    if job.engine.spark:
        return _sweep_on_spark(store, job, clock=clock, on_progress=on_progress, progress=progress)
    if job.logs:
        summary = ingest.ingest(
            store,
            list(job.logs),
            strict=job.strict,
            clock=clock,
            tiers=job.tiers,
            log_format=job.log_format,
            progress=progress,
        )
        ingest.raise_for_rejected_files(summary)
    return _sweep_and_write(store, job, job.strategies, None, on_progress, progress)


def _sweep_and_write(
    store: Store,
    job: SweepJob,
    strategies: Strategies,
    source: Source | None,
    on_progress: Callable[[int, int], None] | None,
    progress: Progress,
) -> tuple[sweep.SweepResult, dict[str, Path]]:
    """Run the sweep (on `source` when the relation was built elsewhere) and write its outputs."""
    result = sweep.run_sweep(
        store,
        job.tiers,
        job.objective,
        seed=job.seed,
        overheads=job.overheads,
        on_progress=on_progress,
        strategies=strategies,
        progress=progress,
        source=source,
    )
    progress.stage("write", 1)
    return result, report.write_outputs(result, job.out_dir)


def _sweep_on_spark(
    store: Store,
    job: SweepJob,
    *,
    clock: Callable[[], datetime],
    on_progress: Callable[[int, int], None] | None,
    progress: Progress,
) -> tuple[sweep.SweepResult, dict[str, Path]]:
    """`sweep_logs` with the outcome relation and every aggregate in Spark over the Parquet the
    job names; only the labeled requests' records come to this machine, ingested into `store`."""
    if job.strategies.keyword_rules is not None:
        raise ConfigError(
            "--rules is not available with --engine spark (keyword rules read every prompt here)",
            hint="Sweep without --rules, or with the default --engine duckdb on a store.",
        )
    strategies = replace(job.strategies, router=replace(job.strategies.router, enabled=False))
    progress.stage("spark", 1)
    session = spark_engine.open_session(job.engine.master)
    try:
        prices = price_table(job.tiers)
        rows = spark_engine.build_outcome_rows(session, job.engine.parquet, job.tiers.names, prices)
        with tempfile.TemporaryDirectory(prefix="calibrate-labeled-") as extract:
            files = spark_engine.export_labeled(session, job.engine.parquet, extract)
            ingest.ingest(
                store, [Path(f) for f in files], strict=False, clock=clock, tiers=job.tiers
            )
        local = store.outcome_rows(job.tiers.names, prices)
        source = Source(
            rows,
            spark_engine.SparkEngine(session),
            store.labeled_outcomes(local),
            None,
            external=True,
            logs_sha256=spark_engine.logs_digest(job.engine.parquet),
        )
        return _sweep_and_write(store, job, strategies, source, on_progress, progress)
    finally:
        session.stop()


def evaluate_logs(
    store: Store,
    logs: Sequence[Path],
    config: RoutingConfig,
    prices: dict[str, tuple[float, float]],
    base_dir: Path,
    *,
    clock: Callable[[], datetime],
    tiers: TiersConfig | None = None,
) -> evaluate.Evaluation:
    """Ingest the logs (when given), then evaluate the routing config on the store (`base_dir`:
    where routing.yaml is, for a router's model file; `tiers` maps the models of gateway exports)."""
    if logs:
        ingest.ingest(store, list(logs), strict=False, clock=clock, tiers=tiers)
    return evaluate.evaluate_routing(store, config, prices, base_dir)


def monitor_logs(
    store: Store,
    logs: Sequence[Path],
    config: RoutingConfig,
    options: monitor.MonitorOptions,
    out_dir: Path,
    *,
    seed: int,
    base_dir: Path,
    clock: Callable[[], datetime],
) -> tuple[monitor.MonitorResult, dict[str, Path]]:
    """Ingest the logs (when given), monitor the deployed config on the store, and write
    monitor.md, monitor.html and monitor.json into out_dir."""
    if logs:
        ingest.ingest(store, list(logs), strict=False, clock=clock)
    result = monitor.monitor(store, config, options, seed=seed, base_dir=base_dir)
    return result, monitor_report.write_outputs(result, out_dir)


def diff_routing(
    old: Path,
    new: Path,
    materiality: compare.Materiality,
    *,
    export_to: str | None = None,
    tiers: Path | None = None,
    as_json: bool = False,
) -> tuple[compare.ConfigDiff, str]:
    """Compare two routing.yaml files; with `export_to`, also export both to that gateway (with
    the same tiers.yaml) and explain the exported file's change. Returns the diff and its Markdown
    (or JSON)."""
    result = compare.diff_files(old, new, materiality)
    if export_to is None:
        text = diff_report.render_json(result) if as_json else diff_report.render_markdown(result)
        return result, text
    exported = changes.compare_exports(old, new, export_to, tiers)
    if as_json:
        return result, diff_report.render_json_with_export(result, exported)
    return result, diff_report.render_markdown_with_export(result, exported)


def check_logs(
    store: Store,
    paths: Sequence[Path],
    tiers: TiersConfig,
    *,
    clock: Callable[[], datetime],
    db: str | None,
    tiers_file: str,
) -> CheckReport:
    """Ingest the given logs (when any), then say what they can support (`calibrate check`)."""
    if paths:
        ingest.raise_for_rejected_files(
            ingest.ingest(store, list(paths), strict=False, clock=clock, tiers=tiers)
        )
    logs = " ".join(str(p) for p in paths) or "LOGS…"
    return check_store(
        store,
        tiers.names,
        db=db,
        tiers_file=tiers_file,
        logs=logs,
        tiers_config=tiers,
    )
