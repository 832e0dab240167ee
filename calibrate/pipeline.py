"""Compositions for commands that span stages (no logic of its own).

`sweep_logs`: ingest the given logs, run the sweep, write the outputs.
`check_logs`: ingest the given logs, say what they can support.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from calibrate.config.tiers import TiersConfig
from calibrate.ingest import stage as ingest
from calibrate.records.outcomes import IngestSummary
from calibrate.report import sweep_report as report
from calibrate.store import Store
from calibrate.sweep import stage as sweep
from calibrate.sweep.candidates import Strategies
from calibrate.sweep.check import CheckReport, check_store
from calibrate.sweep.selection import Objective


def sweep_logs(
    store: Store,
    paths: Sequence[Path],
    tiers: TiersConfig,
    objective: Objective,
    out_dir: Path,
    *,
    strict: bool,
    clock: Callable[[], datetime],
    seed: int = 0,
    overheads: sweep.Overheads | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    strategies: Strategies | None = None,
) -> tuple[IngestSummary | None, sweep.SweepResult, dict[str, Path]]:
    """Ingest (when paths are given), sweep, and write routing.yaml, frontier.csv, summary.json,
    report.md and report.html into out_dir."""
    summary = ingest.ingest(store, list(paths), strict=strict, clock=clock) if paths else None
    if summary is not None:
        ingest.raise_for_rejected_files(summary)
    result = sweep.run_sweep(
        store,
        tiers,
        objective,
        seed=seed,
        overheads=overheads,
        on_progress=on_progress,
        strategies=strategies,
    )
    return summary, result, report.write_outputs(result, out_dir)


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
            ingest.ingest(store, list(paths), strict=False, clock=clock)
        )
    logs = " ".join(str(p) for p in paths) or "LOGS…"
    return check_store(store, tiers.names, db=db, tiers_file=tiers_file, logs=logs)
