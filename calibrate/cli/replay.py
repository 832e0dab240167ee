"""`calibrate replay`: call every tier for a sample of stored requests (shadow mode), or print the
plan with `--dry-run`."""

from __future__ import annotations

import functools
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from calibrate.cli import console
from calibrate.cli.common import exit_if_interrupted, interruptible, now
from calibrate.cli.options import (
    Db,
    Json,
    TiersPath,
    existing_store,
    grouped,
    with_option_groups,
)

if TYPE_CHECKING:
    from calibrate.records.replay import Selection, Shard


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD[THH:MM[:SS][Z]])") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def selection_options(
    sample: Annotated[
        int, typer.Option("--sample", min=1, help="Uniform random sample of N matching requests.")
    ] = 1000,
    where: Annotated[
        str | None,
        typer.Option(
            "--where",
            help="SQL condition over the requests table. A filter, not a shell: it runs sealed "
            "inside the store (no files, URLs or extensions) but may read any stored table.",
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only requests at or after this date (UTC).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sample and the jitter.")] = 0,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="I/N",
            help="Replay only part I of N (0 <= I < N) of the sample, split by a hash of the "
            "request id, so N runners can replay in parallel; `calibrate replay-merge` brings "
            "their stores together.",
        ),
    ] = None,
) -> Selection:
    """Which stored requests to replay."""
    from calibrate.records.replay import Selection

    return Selection(sample, seed, where, _since(since), _shard(shard))


def _shard(value: str | None) -> Shard | None:
    from calibrate.records.replay import Shard

    if value is None:
        return None
    try:
        return Shard.parse(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--shard'") from None


@with_option_groups
def replay_cmd(
    tiers: TiersPath = Path("tiers.yaml"),
    db: Db = None,
    selection: Selection = grouped(selection_options),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and its estimated cost; call nothing.")
    ] = False,
    max_cost_usd: Annotated[
        float | None,
        typer.Option("--max-cost-usd", min=0.0, help="Stop before this run's spend would pass X."),
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Call again requests that failed for good.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Call every tier for sampled requests (shadow mode); results become shadow attempts.

    Concurrent within each tier's limits, retried on 429/5xx/timeouts, committed as they arrive:
    run the same command again after a crash or Ctrl-C and nothing stored is paid twice.

    Example:

    \b
        calibrate replay --tiers tiers.yaml --sample 500 --dry-run
        calibrate replay --tiers tiers.yaml --sample 500 --max-cost-usd 5
        calibrate replay --tiers tiers.yaml --sample 500 --shard 0/4 --db shard0.duckdb
    """
    from calibrate.config.tiers import load_tiers
    from calibrate.replay import stage as replay
    from calibrate.store import Store

    tiers_config = load_tiers(tiers)
    with Store.open(existing_store(db), read_only=dry_run) as store:
        if dry_run:
            plan = replay.plan_replay(
                store, tiers_config, selection, retry_failed=retry_failed, clock=now
            )
            if as_json:
                console.print_json(asdict(plan))
            else:
                console.replay_plan(plan)
            return
        summary = interruptible(
            "replay",
            functools.partial(
                replay.replay,
                store,
                tiers_config,
                selection,
                max_cost_usd=max_cost_usd,
                retry_failed=retry_failed,
            ),
        )
    if as_json:
        console.print_json(asdict(summary))
    else:
        console.replay_summary(summary)
    replay.raise_for_paused(summary)
    exit_if_interrupted(summary.stopped)
