"""`calibrate replay-merge`: other stores' replay results (the shards of `replay --shard I/N`)
into one store."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from calibrate.cli import console
from calibrate.cli.options import Db, Json, existing_store


def replay_merge_cmd(
    stores: Annotated[
        list[Path],
        typer.Argument(
            metavar="STORE...",
            help="Stores to merge from (each shard's --db), read only.",
            show_default=False,
        ),
    ],
    db: Db = None,
    as_json: Json = False,
) -> None:
    """Merge the shadow attempts, replay calls and runs of other stores into this one (--db).

    Attempts already here (same request, tier and source) and calls already here (same cache key)
    are skipped, so merging a store twice adds nothing; the other stores' runs are renumbered.
    Every replayed request must already be in this store: ingest the same logs first.

    Example:

    \b
        calibrate replay --tiers tiers.yaml --sample 5000 --shard 0/2 --db shard0.duckdb
        calibrate replay --tiers tiers.yaml --sample 5000 --shard 1/2 --db shard1.duckdb
        calibrate replay-merge shard0.duckdb shard1.duckdb --db main.duckdb
    """
    from calibrate.replay.merge import merge_replays
    from calibrate.store import Store

    with Store.open(existing_store(db)) as store:
        merged = merge_replays(store, stores)
    if as_json:
        console.print_json([asdict(m) for m in merged])
        return
    header = ("store", "attempts added", "already here", "calls added", "already here", "runs")
    rows: list[tuple[object, ...]] = [
        (m.source, m.attempts, m.attempts_present, m.calls, m.calls_present, m.runs) for m in merged
    ]
    console.rows_table("replay-merge", header, rows)
    for m in merged:
        if m.failed_calls_replaced:
            console.warn(
                f"{m.source}: {m.failed_calls_replaced} calls stored here as failed were "
                "replaced by its successful ones"
            )
