"""The learned router on a precomputed embedding (metadata.embedding): chosen over TF-IDF when
every request has one, cross-fitted, exported as plain JSON, reproduced by `evaluate`."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from calibrate.cli.app import app
from calibrate.config.routing import round_metric
from calibrate.demo import samplegen

pytestmark = pytest.mark.e2e  # fits the embedding router on whole sweeps: not in `make test-fast`

runner = CliRunner()
DIM = 6


def with_embeddings(sample_logs: Path, out: Path, n: int, drop: int = 0) -> Path:
    """The first n sample requests, each with a noisy embedding of its intent's difficulty
    (the last `drop` without one)."""
    rng = np.random.default_rng(7)
    difficulty = {i.name: i.difficulty for i in samplegen.INTENTS}
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    with gzip.open(sample_logs / "requests.jsonl.gz", "rt", encoding="utf-8") as f:
        for k, line in zip(range(n), f, strict=False):
            row = json.loads(line)
            level = difficulty[row["metadata"]["intent"]]
            vector = rng.normal(0.0, 1.0, DIM) + np.eye(DIM)[level] * 2.0
            if k < n - drop:
                row["metadata"]["embedding"] = [round(float(v), 6) for v in vector]
            lines.append(json.dumps(row) + "\n")
    (out / "requests.jsonl").write_text("".join(lines), encoding="utf-8")
    return out


def sweep(logs: Path, out: Path, sample_logs: Path, *extra: str):
    args = ["sweep", str(logs), "--tiers", str(sample_logs / "tiers.yaml"), "--out", str(out)]
    return runner.invoke(app, [*args, *extra])


@pytest.fixture(scope="module")
def embedded_sweep(tmp_path_factory: pytest.TempPathFactory, sample_logs: Path):
    root = tmp_path_factory.mktemp("embedded")
    logs = with_embeddings(sample_logs, root / "logs", 4000)
    result = sweep(logs, root / "out", sample_logs)
    assert result.exit_code == 0, result.output
    return logs, root / "out"


def test_the_router_uses_the_embedding_and_exports_plain_json(embedded_sweep) -> None:
    _, out = embedded_sweep
    model = json.loads((out / "router.json").read_text(encoding="utf-8"))
    assert model["kind"] == "embedding" and model["key"] == "embedding"
    assert len(model["coef"]) == len(model["mean"]) == len(model["scale"]) == DIM
    frontier = (out / "frontier.csv").read_text(encoding="utf-8")
    assert "\nrouter:small>large@" in frontier


def test_evaluate_reproduces_a_chosen_embedding_router(
    embedded_sweep, sample_logs: Path, tmp_path: Path
) -> None:
    logs, out = embedded_sweep
    rows = [r for r in (out / "frontier.csv").read_text().splitlines() if r.startswith("router:")]
    policy = rows[len(rows) // 2].split(",")[0]
    result = sweep(logs, tmp_path, sample_logs, "--policy", policy)
    assert result.exit_code == 0, result.output
    args = ["evaluate", str(tmp_path / "routing.yaml"), str(logs)]
    result = runner.invoke(app, [*args, "--tiers", str(sample_logs / "tiers.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert got["policy"] == policy
    expected = got["expected"]  # --json has full precision; routing.yaml rounds
    assert {m: round_metric(m, got[m]) for m in expected} == expected


def test_embeddings_on_only_some_requests_are_a_user_error(
    sample_logs: Path, tmp_path: Path
) -> None:
    logs = with_embeddings(sample_logs, tmp_path / "logs", 600, drop=3)
    result = sweep(logs, tmp_path / "out", sample_logs)
    assert result.exit_code == 1
    assert "metadata.embedding: 3 requests lack it" in result.output
    result = sweep(logs, tmp_path / "out", sample_logs, "--embedding-key", "none_has_this")
    assert result.exit_code == 0, result.output  # the TF-IDF router instead
    model = json.loads((tmp_path / "out" / "router.json").read_text(encoding="utf-8"))
    assert "kind" not in model and set(model["analyzers"]) == {"word", "char"}
