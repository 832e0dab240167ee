"""`calibrate replay` as a real process: SIGKILLed at random points and resumed, stopped by
SIGINT/SIGTERM, and run with a sentinel API key that must never reach disk or any output.

The server's call log is the judge. Each call carries the replay run's id (X-Calibrate-Replay-Run),
so every paid call is attributed to the process that made it; after each kill the store is opened
and what it holds is compared with what was paid.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from llm_server import Call, LLMServer, Reply, error
from replay_support import make_store, prompt, tier, write_tiers
from typer.testing import CliRunner

from calibrate.calls import endpoint as ep
from calibrate.cli.app import app
from calibrate.config.tiers import TiersConfig
from calibrate.replay import stage as replay
from calibrate.store import Store

pytestmark = pytest.mark.e2e  # kills replay subprocesses at random points: not in `make test-fast`

REQUESTS = 50
CHAINS = 2
KILLS_PER_CHAIN = 11  # 22 SIGKILLs in all
TIERS = [
    tier("small", "m-small", confidence="logprob_mean", limits={"concurrency": 3}),
    tier("mid", "m-mid", confidence="first_token", limits={"concurrency": 2}),
    tier("large", "m-large", confidence="verbalized", limits={"concurrency": 2}),
]
IN_FLIGHT_MAX = 3 + 2 + 2

Key = tuple[str, str, str]  # (model, first user prompt, purpose)


class Chain:
    """One store and one server; runs `calibrate replay` processes against them."""

    def __init__(self, root: Path, seed: int) -> None:
        root.mkdir()
        self.root = root
        self.db = make_store(root / "s.duckdb", REQUESTS)
        self.rng = random.Random(seed)
        self._lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.calls_this_run = 0
        self.signal_at: int | None = None
        self.signal_delay = 0.0
        self.signum = signal.SIGKILL
        self.server = LLMServer(
            root / "calls.jsonl", latency_s=(0.002, 0.02), seed=seed, on_call=self._on_call
        ).start()
        self.tiers_path = root / "tiers.yaml"
        self.tiers = write_tiers(self.tiers_path, self.server.base_url, TIERS)

    def _on_call(self, call: Call) -> None:
        with self._lock:
            self.calls_this_run += 1
            if self.calls_this_run != self.signal_at or self.proc is None:
                return
            proc, signum = self.proc, self.signum
        if self.signal_delay == 0:
            proc.send_signal(signum)
        else:
            threading.Timer(self.signal_delay, proc.send_signal, (signum,)).start()

    def run(self, signal_at: int | None = None, signum: signal.Signals = signal.SIGKILL) -> int:
        """One `calibrate replay` process; signalled when the server receives call `signal_at`."""
        with self._lock:
            self.calls_this_run = 0
            self.signal_at = signal_at
            self.signum = signum
            self.signal_delay = self.rng.choice([0.0, self.rng.uniform(0.0, 0.03)])
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "calibrate",
                    "replay",
                    "--tiers",
                    str(self.tiers_path),
                    "--db",
                    str(self.db),
                    "--sample",
                    str(REQUESTS),
                    "--seed",
                    "5",
                ],  # fmt: skip
                cwd=self.root,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        _, stderr = self.proc.communicate(timeout=120)
        assert self.proc.returncode in (0, -signal.SIGKILL, 130), stderr.decode()
        return self.proc.returncode

    def stored(self) -> tuple[int, set[Key], set[tuple[str, str]]]:
        """(last run id, keys whose results are stored, stored request × tier attempts)."""
        with Store.open(self.db) as store:
            run_id = store.con.execute("SELECT max(run_id) FROM replay_runs").fetchone()[0]
            calls = store.con.execute("SELECT cache_key FROM replay_calls WHERE status = 'ok'")
            keys = {k for (k,) in calls.fetchall()}
            attempts = set(store.con.execute("SELECT request_id, tier FROM attempts").fetchall())
            messages = dict(
                store.con.execute("SELECT request_id, messages FROM requests").fetchall()
            )
        return int(run_id), stored_keys(self.tiers, keys, attempts, messages), attempts

    def paid(self, run_id: int) -> Counter[Key]:
        """Calls the server answered 200 for one replay run."""
        return Counter(
            (c["model"], c["prompt"], c["purpose"])
            for c in self.server.calls
            if c.get("run") == str(run_id) and c["status"] == 200
        )


def stored_keys(
    tiers: TiersConfig,
    call_keys: set[str],
    attempts: set[tuple[str, str]],
    messages: dict[str, str],
) -> set[Key]:
    """Server-side keys of what the store holds: answers by cache key, confidences by attempt."""
    keys: set[Key] = set()
    for request_id, text in messages.items():
        user = prompt(int(request_id[2:]))
        for t in tiers.tiers:
            assert t.base_url is not None
            body = replay.answer_body(t, text)
            if ep.cache_key(ep.chat_url(t.base_url), body) in call_keys:
                keys.add((t.model, user, "answer"))
            if t.confidence == "verbalized" and (request_id, t.name) in attempts:
                keys.add((t.model, user, "confidence"))
    return keys


def kill_and_resume(chain: Chain, kills: int) -> dict[str, int]:
    """SIGKILL `kills` runs at random calls, then resume to the end; check the call log."""
    snapshots: list[tuple[int, set[Key]]] = []
    for _ in range(kills):
        returncode = chain.run(signal_at=chain.rng.randint(1, 12))
        assert returncode == -signal.SIGKILL, "the work ran out before the kill"
        run_id, keys, _ = chain.stored()
        snapshots.append((run_id, keys))
    assert chain.run() == 0
    final_run, final_keys, attempts = chain.stored()
    lost_total = 0
    for i, (run_id, keys) in enumerate(snapshots):
        paid = chain.paid(run_id)
        assert max(paid.values(), default=1) == 1, "a run paid the same call twice"
        lost = set(paid) - keys
        assert len(lost) <= IN_FLIGHT_MAX, f"run {run_id} lost {len(lost)} paid calls"
        lost_total += len(lost)
        assert keys <= final_keys, "a stored result disappeared"
        for later, _ in [*snapshots[i + 1 :], (final_run, set())]:
            repaid = set(chain.paid(later)) & keys
            assert not repaid, f"run {later} paid again for stored results: {sorted(repaid)[:3]}"
    every = Counter()
    for run_id in range(1, final_run + 1):
        every.update(chain.paid(run_id))
    assert sum(every.values()) - len(every) <= lost_total
    assert len(attempts) == REQUESTS * len(TIERS)
    with Store.open(chain.db) as store:
        per_cell = store.con.execute(
            "SELECT count(*), count(DISTINCT (request_id, tier)), min(source), max(source)"
            " FROM attempts"
        ).fetchone()
        failed = store.con.execute("SELECT count(*) FROM replay_calls WHERE status <> 'ok'")
        assert failed.fetchone() == (0,)
    assert per_cell == (REQUESTS * 3, REQUESTS * 3, "shadow", "shadow")
    return {"kills": kills, "duplicates": sum(every.values()) - len(every), "calls": len(every)}


def test_sigkill_at_random_points_then_resume_pays_nothing_twice(tmp_path: Path) -> None:
    chains = [Chain(tmp_path / f"chain{i}", seed=100 + i) for i in range(CHAINS)]
    try:
        with ThreadPoolExecutor(CHAINS) as pool:
            results = list(pool.map(lambda c: kill_and_resume(c, KILLS_PER_CHAIN), chains))
    finally:
        for chain in chains:
            chain.server.stop()
    assert sum(r["kills"] for r in results) >= 20


def test_sigint_and_sigterm_stop_cleanly_and_lose_nothing(tmp_path: Path) -> None:
    chain = Chain(tmp_path / "chain", seed=7)
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            assert chain.run(signal_at=chain.rng.randint(3, 10), signum=signum) == 130
            run_id, keys, _ = chain.stored()
            paid = chain.paid(run_id)
            assert paid, "the signal came after some calls"
            assert set(paid) <= keys, "a call in flight at the signal was not stored"
        assert chain.run() == 0
        final_run, _, attempts = chain.stored()
        assert len(attempts) == REQUESTS * 3
        every = Counter()
        for run_id in range(1, final_run + 1):
            every.update(chain.paid(run_id))
        assert max(every.values()) == 1, "a call was paid twice after a graceful stop"
    finally:
        chain.server.stop()


SENTINEL = "sk-SENTINEL-4f9c2e7d1b"


def test_the_api_key_reaches_no_file_output_or_error(tmp_path: Path) -> None:
    keys_received: Counter[bool] = Counter()

    def respond(call: Call) -> Reply | None:
        """Hostile server: echoes the Authorization header back in errors and in answers."""
        keys_received[call.authorization == f"Bearer {SENTINEL}"] += 1
        echo = f"you sent {call.authorization}"
        if call.model == "m-locked":
            return error(401, echo)
        if call.prompt == prompt(0):
            return error(400, echo)
        if call.prompt == prompt(1):
            return Reply(200, b'{"choices": [' + echo.encode())
        if call.prompt == prompt(2):
            return error(500, echo)
        if call.prompt == prompt(3):
            body = f'{{"choices": [{{"message": {{"content": "{echo}"}}}}]}}'
            return Reply(200, body.encode())
        return None

    store_dir = tmp_path / "store"
    store_dir.mkdir()
    db = make_store(store_dir / "s.duckdb", 8)
    runner = CliRunner()
    with LLMServer(responder=respond) as srv:
        keyed = {"api_key_env": "CAL_SENTINEL_KEY"}
        tiers = tmp_path / "tiers.yaml"
        write_tiers(
            tiers,
            srv.base_url,
            [
                tier("open", "m-open", limits={"max_retries": 1}, **keyed),
                tier("locked", "m-locked", **keyed),
            ],
        )
        args = ["replay", "--tiers", str(tiers), "--db", str(db)]
        env = {"CAL_SENTINEL_KEY": SENTINEL}
        outputs = [
            runner.invoke(app, [*args, "--dry-run"], env=env),
            runner.invoke(app, args, env=env),
            runner.invoke(app, [*args, "--json", "--retry-failed"], env=env),
        ]
        models = Counter(c["model"] for c in srv.calls)
    assert models["m-open"] >= 8 and models["m-locked"] >= 1
    assert keys_received == {True: len(srv.calls)}, "every call carried the key"
    assert outputs[0].exit_code == 0
    assert outputs[1].exit_code == 1
    assert "tier 'locked' paused: HTTP 401: you sent Bearer ***" in outputs[1].stderr
    for result in outputs:
        assert SENTINEL not in result.stdout + result.stderr
        assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = {r[0] for r in _scan(db, "SELECT error FROM replay_calls WHERE error IS NOT NULL")}
    assert len(errors) == 3
    assert sum("you sent Bearer ***" in e for e in errors) == 2
    outputs_stored = _scan(db, "SELECT output FROM replay_calls WHERE output LIKE '%Bearer%'")
    assert outputs_stored == [("you sent Bearer ***",)]
    for path in [*store_dir.rglob("*"), tmp_path / "tiers.yaml"]:
        if path.is_file():
            assert SENTINEL.encode() not in path.read_bytes(), path
    assert not _cells_containing(db, SENTINEL)


def _scan(db: Path, sql: str) -> list[tuple]:
    with Store.open(db) as store:
        return store.con.execute(sql).fetchall()


def _cells_containing(db: Path, needle: str) -> list[str]:
    """Every table and column whose text contains needle (DuckDB compresses strings on disk, so
    a byte search of the file alone could miss one)."""
    hits = []
    with Store.open(db) as store:
        tables = [t for (t,) in store.con.execute("SHOW TABLES").fetchall()]
        for table in tables:
            columns = [r[0] for r in store.con.execute(f'DESCRIBE "{table}"').fetchall()]
            for column in columns:
                found = store.con.execute(
                    f'SELECT count(*) FROM "{table}" WHERE CAST("{column}" AS VARCHAR) LIKE ?',
                    [f"%{needle}%"],
                ).fetchone()[0]
                if found:
                    hits.append(f"{table}.{column}")
    return hits
