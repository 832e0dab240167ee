"""`calibrate ingest`: load logs into the store (`--db`, else the default store, created when
missing)."""

from __future__ import annotations

from calibrate.cli import console
from calibrate.cli.common import now
from calibrate.cli.options import Db, ExportTiers, Json, LogFormat, Logs, Strict, store_file


def ingest_cmd(
    paths: Logs,
    db: Db = None,
    strict: Strict = False,
    as_json: Json = False,
    tiers: ExportTiers = None,
    log_format: LogFormat = "auto",
) -> None:
    """Load logs into the store; bad rows are quarantined in the `rejects` table.

    Example:

    \b
        calibrate ingest sample_logs/ --db .calibrate/calibrate.duckdb
        calibrate ingest litellm-logs/ --tiers tiers.yaml
    """
    from calibrate.config.tiers import load_tiers
    from calibrate.ingest import stage as ingest
    from calibrate.store import Store

    config = load_tiers(tiers) if tiers is not None else None

    with Store.open(store_file(db)) as store, console.stages("ingest") as progress:
        summary = ingest.ingest(
            store,
            paths,
            strict=strict,
            clock=now,
            tiers=config,
            log_format=log_format,
            progress=progress,
        )
    if as_json:
        console.print_json(summary.__dict__)
    else:
        console.ingest_table(summary)
    ingest.raise_for_rejected_files(summary)
