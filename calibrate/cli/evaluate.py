"""`calibrate evaluate`: the metrics of one routing.yaml on the given logs or the store, next to
what the file expected; exit 3 with `--check` when a metric is outside its interval by more than
the sampling error of both samples."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from calibrate.cli import console
from calibrate.cli.common import now, open_store_for_logs
from calibrate.cli.options import Db, Json


def evaluate_cmd(
    routing: Annotated[
        Path,
        typer.Argument(
            help="A routing.yaml written by `calibrate sweep`, or a hand-written one (strategy "
            "and tiers suffice)."
        ),
    ],
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="LOGS", help="Logs to evaluate on (without them: what the store holds)."
        ),
    ] = None,
    tiers: Annotated[
        Path | None,
        typer.Option(
            "--tiers",
            help="tiers.yaml, for prices when logs have no cost_usd and for gateway exports.",
        ),
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Exit 3 when a metric is outside routing.yaml's interval for it by more than "
            "the sampling error of both samples (flagged OUTSIDE).",
        ),
    ] = False,
    db: Db = None,
    as_json: Json = False,
) -> None:
    """The metrics of one routing.yaml on the given logs, next to its expected values and
    intervals. A metric outside its interval is flagged OUTSIDE when the difference exceeds
    the sampling error of both samples, else shown as noise.

    Without LOGS it evaluates what the store already holds (--db, else
    .calibrate/calibrate.duckdb). A metric these logs cannot measure (quality without labels)
    is not compared; a hand-written routing.yaml has nothing to compare against.

    Exit codes:

    \b
        0  success; with --check: no metric flagged OUTSIDE
        1  a file is missing or invalid (Error: and Hint: on stderr)
        2  usage error
        3  only with --check: a metric is flagged OUTSIDE

    Example:

    \b
        calibrate evaluate out/routing.yaml new_logs/ --tiers tiers.yaml --check
    """
    from calibrate import pipeline
    from calibrate.config.routing import load_routing
    from calibrate.config.tiers import load_tiers, price_table

    config = load_routing(routing)
    tiers_config = load_tiers(tiers) if tiers is not None else None
    prices = price_table(tiers_config) if tiers_config is not None else {}
    with open_store_for_logs(db, paths) as store:
        result = pipeline.evaluate_logs(
            store, paths or [], config, prices, routing.parent, clock=now, tiers=tiers_config
        )
    if as_json:
        console.print_json(result.as_dict())
    else:
        console.evaluation(result)
    if check and result.outside:
        raise typer.Exit(3)
