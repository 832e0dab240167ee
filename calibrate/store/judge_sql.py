"""All SQL of the judge: which answers to judge, unusable verdicts, and the judge's record.

Judge calls are ordinary `replay_calls` rows with purpose='judge'; their verdicts are labels with
source='judge'. Only the store imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np

from calibrate.store.labels_sql import PICKED_ATTEMPTS
from calibrate.store.one_row import one_row


def judge_items(
    con: duckdb.DuckDBPyConnection,
    tiers: Sequence[str],
    judged: Sequence[str],
    sample: int,
    seed: int,
) -> list[tuple[str, str, str, str, str | None, str | None]]:
    """(request_id, tier, messages, answer, reference, premium answer) for every ok answer of a
    `judged` tier, over a seeded uniform sample of `sample` requests that have one."""
    return con.execute(
        f"""
        WITH ok AS (SELECT * FROM ({PICKED_ATTEMPTS}) WHERE status = 'ok' AND output IS NOT NULL),
        sample AS (
            SELECT request_id, md5($seed || ':' || request_id) AS draw FROM requests r
            WHERE EXISTS (SELECT 1 FROM ok WHERE ok.request_id = r.request_id
                          AND list_contains($judged::VARCHAR[], ok.tier))
            ORDER BY draw LIMIT $n)
        SELECT s.request_id, o.tier, CAST(r.messages AS VARCHAR), o.output, r.reference,
               prem.output
        FROM sample s JOIN requests r USING (request_id)
        JOIN ok o ON o.request_id = s.request_id AND list_contains($judged::VARCHAR[], o.tier)
        LEFT JOIN ok prem ON prem.request_id = s.request_id AND prem.tier = $premium
        ORDER BY s.draw, list_position($tiers::VARCHAR[], o.tier)""",
        {
            "seed": str(seed),
            "n": sample,
            "judged": list(judged),
            "tiers": list(tiers),
            "premium": tiers[-1],
        },
    ).fetchall()


def mark_call_failed(con: duckdb.DuckDBPyConnection, errors: Sequence[tuple[str, str]]) -> None:
    """Record (cache_key, error) on calls whose reply cannot be used (an unparsable verdict)."""
    if errors:
        con.executemany(
            "UPDATE replay_calls SET status = 'error', error = ? WHERE cache_key = ?",
            [(error, key) for key, error in errors],
        )


def judge_overlap(
    con: duckdb.DuckDBPyConnection, tiers: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(human score, judge score) for every request × tier both labelled (same answer text
    when both know it)."""
    rows = con.execute(
        """
        SELECT h.score, j.score FROM labels h JOIN labels j USING (request_id, tier)
        WHERE h.source = 'human' AND j.source = 'judge'
          AND list_contains($tiers::VARCHAR[], h.tier)
          AND (h.answer_sha256 IS NULL OR j.answer_sha256 IS NULL
               OR h.answer_sha256 = j.answer_sha256)""",
        {"tiers": list(tiers)},
    ).fetchall()
    human = np.array([r[0] for r in rows], dtype=np.float64)
    judge = np.array([r[1] for r in rows], dtype=np.float64)
    return human, judge


def judge_calls(con: duckdb.DuckDBPyConnection) -> tuple[int, int, float]:
    """(judge calls stored, of which unusable, their total cost in USD)."""
    calls, failed, cost = one_row(
        con,
        "SELECT count(*), count(*) FILTER (WHERE status <> 'ok'), coalesce(sum(cost_usd), 0)"
        " FROM replay_calls WHERE purpose = 'judge'",
    )
    return int(calls), int(failed), float(cost)
