"""`calibrate ingest`: load logs into the store (`--db`, else the default store, created when
missing)."""

from __future__ import annotations

from calibrate.cli import console
from calibrate.cli.common import now
from calibrate.cli.options import Db, Json, Logs, Strict, store_file


def ingest_cmd(paths: Logs, db: Db = None, strict: Strict = False, as_json: Json = False) -> None:
    """Load logs into the store; bad rows are quarantined in the `rejects` table.

    Example:

    \b
        calibrate ingest sample_logs/ --db .calibrate/calibrate.duckdb
    """
    from calibrate.ingest import stage as ingest
    from calibrate.store import Store

    with Store.open(store_file(db)) as store:
        summary = ingest.ingest(store, paths, strict=strict, clock=now)
    if as_json:
        console.print_json(summary.__dict__)
    else:
        console.ingest_table(summary)
