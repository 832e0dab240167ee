"""`calibrate evaluate`: the metrics of one routing.yaml on the given logs or the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from calibrate.cli import console
from calibrate.cli.common import now, open_store_for_logs
from calibrate.cli.options import Db, Json


def evaluate_cmd(
    routing: Annotated[Path, typer.Argument(help="A routing.yaml written by `calibrate sweep`.")],
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
    db: Db = None,
    as_json: Json = False,
) -> None:
    """The metrics of one routing.yaml on the given logs.

    Without LOGS it evaluates what the store already holds (--db, else
    .calibrate/calibrate.duckdb).

    Example:

    \b
        calibrate evaluate out/routing.yaml sample_logs/
    """
    from calibrate import pipeline
    from calibrate.config.routing import METRICS, load_routing
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
        console.metrics_table("evaluate", result.as_dict(), METRICS)
