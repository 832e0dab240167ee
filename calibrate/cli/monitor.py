"""`calibrate monitor`: watch a deployed routing.yaml between calibrations; exit 3 with `--check`
when recalibration is due."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from calibrate.cli import console
from calibrate.cli.common import now, open_store_for_logs
from calibrate.cli.options import Db, Json, out_folder


def monitor_cmd(
    baseline: Annotated[
        Path, typer.Option("--baseline", help="The deployed routing.yaml (written by `sweep`).")
    ],
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="LOGS", help="Logs to monitor (without them: what the store holds)."
        ),
    ] = None,
    by: Annotated[
        Literal["region", "app"] | None,
        typer.Option("--by", help="Also watch each region or each app."),
    ] = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Exit 3 when recalibration is due (for a nightly CI job)."),
    ] = False,
    reference_days: Annotated[
        int,
        typer.Option(
            "--reference-days",
            min=1,
            help="Reference = the first N days, when the logs do not contain routing.yaml's "
            "calibration window.",
        ),
    ] = 30,
    false_alarm_rate: Annotated[
        float,
        typer.Option(
            "--false-alarm-rate",
            min=0.0001,
            max=0.5,
            help="Chance of a drift alarm per run on stationary traffic.",
        ),
    ] = 0.05,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for monitor.md, monitor.html, monitor.json.")
    ] = Path("monitor-out"),
    db: Db = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the CUSUM threshold simulation.")
    ] = 0,
    as_json: Json = False,
) -> None:
    """Watch the escalation rate, confidence drift, label-free quality and regional health of a
    deployed routing.yaml between calibrations; say when recalibration is due.

    Without LOGS it monitors what the store already holds (--db, else
    .calibrate/calibrate.duckdb).

    Example:

    \b
        calibrate monitor sample_logs/ --baseline out/routing.yaml --by region --check
    """
    from calibrate import pipeline
    from calibrate.config.routing import load_routing
    from calibrate.monitor.stage import MonitorOptions
    from calibrate.report import monitor_report

    out_folder(out)
    config = load_routing(baseline)
    options = MonitorOptions(
        by=by, reference_days=reference_days, false_alarm_rate=false_alarm_rate
    )
    with open_store_for_logs(db, paths) as store:
        result, written = pipeline.monitor_logs(
            store, paths or [], config, options, out, seed=seed, base_dir=baseline.parent, clock=now
        )
    if as_json:
        console.print_json(monitor_report.as_json(result))
    else:
        print(monitor_report.terminal_text(result))
        console.outputs_written(written)
    if check and result.recalibration_due:
        for reason in result.reasons:
            console.err().print(f"Recalibration due: {reason}", highlight=False, markup=False)
        raise typer.Exit(3)
