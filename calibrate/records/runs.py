"""Runs that never finished: an ingest or a replay (or judge) run killed before it wrote its end.

Such a run keeps `finished_at` NULL for good. What it committed stays (ingest commits whole files,
replay every result as it arrives), so the same command finishes the work; what it spent is the
cost of the calls it stored. Imports nothing from calibrate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class UnfinishedRun:
    """One run that never finished; `calls` and `cost_usd` are 0 for an ingest run."""

    kind: str  # "ingest" or "replay"
    run_id: int
    started_at: datetime
    calls: int
    cost_usd: float

    def describe(self) -> str:
        """One line for a summary or `labels status`."""
        started = self.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if self.kind == "ingest":
            return (
                f"ingest run {self.run_id} (started {started}) never finished (interrupted): "
                "the files it committed are kept; ingest the same paths again to finish"
            )
        return (
            f"replay run {self.run_id} (started {started}) never finished (interrupted): it "
            f"spent ${self.cost_usd:.6f} on {self.calls} stored calls, which are not paid again; "
            "the same command resumes it"
        )
