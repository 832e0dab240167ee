"""The 10M-request store for `make bench` (`run.py --sweep-10m`): the 1M bench store's requests and
attempts copied ten times with distinct request ids (copy c > 0: `<id>~c`), its labels kept once
(150,000 labeled requests: certification works on the labels, the sweep on the traffic). Built
once in DuckDB from the 1M store and kept next to it (git-ignored bench/data/ or --data)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import duckdb

COPIES = 10


def store_10m(store_1m: Path) -> Path:
    """The 10M store built from `store_1m` (made once)."""
    target = store_1m.with_name(store_1m.stem + "-x10.duckdb")
    if target.exists():
        return target
    started = time.perf_counter()
    tmp = target.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    shutil.copyfile(store_1m, tmp)
    con = duckdb.connect(str(tmp))
    con.execute("SET preserve_insertion_order = false")
    for copy in range(1, COPIES):
        suffix = f"~{copy}"
        con.execute(
            "INSERT INTO requests SELECT * REPLACE (request_id || ? AS request_id) FROM requests"
            " WHERE NOT contains(request_id, '~')",
            [suffix],
        )
        con.execute(
            "INSERT INTO attempts SELECT * REPLACE (request_id || ? AS request_id) FROM attempts"
            " WHERE NOT contains(request_id, '~')",
            [suffix],
        )
        con.execute("CHECKPOINT")
    (requests,) = con.execute("SELECT count(*) FROM requests").fetchall()[0]
    con.close()
    tmp.rename(target)
    print(
        f"built the 10M store ({requests:,} requests) in {time.perf_counter() - started:.0f} s → {target}"
    )
    return target
