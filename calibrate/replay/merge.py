"""Stage: `replay-merge` — other stores' replay results (shards replayed on other machines) into
this store, with no duplicate and no lost result.

Each other store is merged in the order given, each in its own transaction, by
`Store.merge_replay_from` (`store/merge_sql.py` has the rules: what is skipped, what replaces what,
how runs are renumbered). Never prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from calibrate.errors import DataError
from calibrate.records.replay import MergeCounts
from calibrate.store import Store


def merge_replays(store: Store, others: Sequence[Path]) -> tuple[MergeCounts, ...]:
    """Merge each other store's shadow attempts, calls and runs into `store`; what each brought."""
    for other in others:
        if not other.is_file():
            raise DataError(
                f"no store at {other}",
                hint="Pass the store files the shards replayed into (`calibrate replay --shard "
                "I/N --db FILE`).",
            )
    return tuple(store.merge_replay_from(other) for other in others)
