"""Gateway exports in (issue 15 §1): each format's fixture ingested into a real DuckDB store, the
requests it groups, their tiers, costs (USD), latencies (ms), statuses and confidences, the
retry/fallback/escalation rule, content detection and the refusal of look-alikes.

Fixtures: tests/data/formats/ (written from the upstream definitions; see docs/formats.md).
"""

from __future__ import annotations

import csv
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from calibrate.calls import endpoint as ep
from calibrate.cli.app import app
from calibrate.config.tiers import TiersConfig, load_tiers
from calibrate.errors import ConfigError, DataError, LogFormatError
from calibrate.formats import detect
from calibrate.formats.gateway import Call, Unit
from calibrate.formats.grouping import group
from calibrate.formats.tier_map import TierMap, TierSpec
from calibrate.ingest.stage import ingest
from calibrate.records.outcomes import IngestSummary
from calibrate.store.core import Store

DATA = Path(__file__).parent / "data" / "formats"
TIERS = DATA / "tiers.yaml"
BATCH_FILES = [
    "batch_small_input.jsonl",
    "batch_small_output.jsonl",
    "batch_small_errors.jsonl",
    "batch_large_input.jsonl",
    "batch_large_output.jsonl",
]
runner = CliRunner()


def clock() -> datetime:
    return datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path / "store.duckdb") as opened:
        yield opened


def load(store: Store, *paths: Path | str, tiers: TiersConfig | None = None, **kw: Any):
    files = [p if isinstance(p, Path) else DATA / p for p in paths]
    kw.setdefault("strict", False)
    return ingest(store, files, clock=clock, tiers=tiers or load_tiers(TIERS), **kw)


def requests(store: Store) -> dict[str, dict[str, Any]]:
    rows = store.con.execute(
        "SELECT request_id, ts, app, region, served_tier, metadata, messages::VARCHAR "
        "FROM requests ORDER BY request_id"
    ).fetchall()
    return {
        r[0]: {
            "ts": r[1].astimezone(UTC),
            "app": r[2],
            "region": r[3],
            "served": r[4],
            "metadata": json.loads(r[5]),
            "messages": json.loads(r[6]),
        }
        for r in rows
    }


def attempts(store: Store, request_id: str) -> list[dict[str, Any]]:
    rows = store.con.execute(
        "SELECT tier, source, status, model, confidence, cost_usd, latency_ms, input_tokens, "
        "output_tokens, output, extra FROM attempts WHERE request_id = ? ORDER BY position",
        [request_id],
    ).fetchall()
    keys = [
        "tier",
        "source",
        "status",
        "model",
        "confidence",
        "cost_usd",
        "latency_ms",
        "input_tokens",
        "output_tokens",
        "output",
        "extra",
    ]
    out = []
    for row in rows:
        item = dict(zip(keys, row, strict=True))
        item["extra"] = json.loads(item["extra"]) if item["extra"] else {}
        out.append(item)
    return out


def steps(store: Store, request_id: str) -> list[tuple[str, str, str | None]]:
    """(tier, status, how it was reached) per attempt, in order."""
    return [
        (a["tier"], a["status"], a["extra"].get("reached_by")) for a in attempts(store, request_id)
    ]


def rejects(store: Store) -> list[tuple[str, int, str]]:
    rows = store.con.execute("SELECT file, line, reason FROM rejects ORDER BY file, line")
    return [(Path(f).name, line, reason) for f, line, reason in rows.fetchall()]


def counts(summary: IngestSummary) -> tuple[int, int, int]:
    return summary.rows_read, summary.rows_kept, summary.rows_rejected


# --- LiteLLM -------------------------------------------------------------------------------------


def test_litellm_payload_groups_by_trace_id_and_tells_retries_from_escalations(store) -> None:
    summary = load(store, "litellm_payload.jsonl")
    assert summary.formats == (("litellm-payload", 1),)
    assert counts(summary) == (9, 8, 1)  # 10 records: 9 LLM calls, 1 embedding ignored
    assert summary.ignored_records == 1
    got = requests(store)
    assert set(got) == {"tr-escalate", "tr-retry", "tr-fallback", "tr-timeout", "e1"}

    # a cascade: the small tier answered, production asked the large tier (an escalation)
    assert steps(store, "tr-escalate") == [
        ("small", "ok", "first"),
        ("large", "ok", "escalation"),
    ]
    small, large = attempts(store, "tr-escalate")
    assert small["confidence"] == pytest.approx(-0.9)  # mean logprob of -0.9, -1.3, -0.5
    assert large["confidence"] == pytest.approx(-0.1)
    assert small["cost_usd"] == pytest.approx(0.0000675) and large["cost_usd"] == 0.001125
    assert small["latency_ms"] == pytest.approx(420, abs=0.01)
    assert large["latency_ms"] == pytest.approx(1200, abs=0.01)
    assert (small["input_tokens"], small["output_tokens"]) == (250, 50)
    assert small["model"] == "gpt-4o-mini-2024-07-18"
    assert large["output"] == "Refunds are processed within 5-7 business days."
    assert got["tr-escalate"]["served"] == "large"
    assert got["tr-escalate"]["ts"] == datetime(2026, 9, 21, 14, 13, 20, tzinfo=UTC)
    assert (got["tr-escalate"]["app"], got["tr-escalate"]["region"]) == ("support-bot", "eu-west-1")
    assert got["tr-escalate"]["metadata"]["intent"] == "refund"
    assert got["tr-escalate"]["messages"] == [
        {"role": "user", "content": "How long do refunds take?"}
    ]

    # a 429 then the same tier again: one attempt, a retry, not an escalation
    (retry,) = attempts(store, "tr-retry")
    assert (retry["tier"], retry["status"], retry["extra"]["reached_by"]) == (
        "small",
        "ok",
        "first",
    )
    assert retry["extra"]["retries"] == 1
    assert retry["extra"]["retry_latency_ms"] == pytest.approx(80, abs=0.01)
    assert got["tr-retry"]["served"] == "small"

    # a server error on small, the large tier answers: a fallback
    assert steps(store, "tr-fallback") == [("small", "error", "first"), ("large", "ok", "fallback")]
    assert attempts(store, "tr-fallback")[0]["extra"]["error"] == "500 InternalServerError"
    assert attempts(store, "tr-fallback")[0]["confidence"] is None

    # a timeout: a failed attempt, nothing served
    (timeout,) = attempts(store, "tr-timeout")
    assert (timeout["status"], timeout["latency_ms"]) == ("timeout", pytest.approx(30_000))
    assert got["tr-timeout"]["served"] is None

    # no trace_id (an older payload): the call is its own request
    assert got["e1"]["app"] == "shop-bot" and steps(store, "e1") == [("small", "ok", "first")]

    # the model no tier claims is reported with its calls and quarantined, never dropped
    assert summary.unmapped_models == (("legacy (also gpt-3.5-turbo, openai/gpt-3.5-turbo)", 1),)
    assert rejects(store) == [
        (
            "litellm_payload.jsonl",
            9,
            "unknown model: legacy (also gpt-3.5-turbo, openai/gpt-3.5-turbo): no tier claims "
            "it (add it to a tier's aliases)",
        )
    ]


def _spend_rows() -> list[dict[str, str]]:
    with (DATA / "litellm_spend.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _stored(store: Store) -> tuple[list, list]:
    reqs = store.con.execute(
        "SELECT request_id, ts, app, region, served_tier, messages::VARCHAR, metadata::VARCHAR "
        "FROM requests ORDER BY request_id"
    ).fetchall()
    atts = store.con.execute(
        "SELECT request_id, position, tier, status, confidence, cost_usd, latency_ms, "
        "input_tokens, output_tokens, output, extra::VARCHAR FROM attempts "
        "ORDER BY request_id, position"
    ).fetchall()
    return reqs, atts


def test_litellm_payload_keeps_the_clients_metadata_not_the_proxys_headers(
    tmp_path: Path, store
) -> None:
    # the real proxy (tests/test_litellm_proxy_ingest.py) snapshots the client's metadata as
    # requester_metadata after adding the request headers to it; a forwarded provider key in them
    # must not reach the store
    record = json.loads((DATA / "litellm_payload.jsonl").read_text().splitlines()[0])
    record["metadata"]["requester_metadata"].update(
        headers={"x-api-key": "sk-ant-forwarded-secret", "user-agent": "httpx"},
        used_client_oauth_token=False,
    )
    path = tmp_path / "payload.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    load(store, path)
    meta = requests(store)["tr-escalate"]["metadata"]
    assert meta["intent"] == "refund" and "headers" not in meta
    assert "used_client_oauth_token" not in meta
    dump = store.con.execute("SELECT metadata::VARCHAR FROM requests").fetchall()
    assert "sk-ant-forwarded-secret" not in str(dump)


def test_litellm_spend_logs_from_csv_json_and_parquet_agree(tmp_path: Path) -> None:
    with Store.open(tmp_path / "csv.duckdb") as store:
        summary = load(store, "litellm_spend.csv")
        assert summary.formats == (("litellm-spend", 1),)
        assert counts(summary) == (8, 8, 0)
        got = requests(store)
        assert set(got) == {"sess-escalate", "sess-retry", "sess-5xx", "sess-timeout"}
        assert steps(store, "sess-escalate") == [
            ("small", "ok", "first"),
            ("large", "ok", "escalation"),
        ]
        small, large = attempts(store, "sess-escalate")
        assert small["confidence"] == pytest.approx(-0.9)
        assert (small["cost_usd"], small["latency_ms"]) == (pytest.approx(0.0000525), 380)
        assert (large["cost_usd"], large["latency_ms"]) == (pytest.approx(0.000875), 1100)
        assert got["sess-escalate"]["ts"] == datetime(2026, 10, 1, 9, 30, tzinfo=UTC)
        assert got["sess-escalate"]["messages"] == [
            {"role": "user", "content": "Where is my parcel?"}  # from proxy_server_request
        ]
        assert attempts(store, "sess-retry")[0]["extra"]["retries"] == 1
        assert steps(store, "sess-5xx") == [
            ("small", "error", "first"),
            ("large", "ok", "fallback"),
        ]
        assert steps(store, "sess-timeout") == [
            ("small", "timeout", "first"),
            ("large", "ok", "fallback"),
        ]
        # logged without logprobs: no confidence, not an invented one
        assert attempts(store, "sess-timeout")[1]["confidence"] is None
        expected = _stored(store)

    rows = _spend_rows()
    as_json = tmp_path / "spend.json"  # like GET /spend/logs: a JSON array, JSON columns as JSON
    json_columns = ("metadata", "request_tags", "messages", "response", "proxy_server_request")
    records = [{k: (json.loads(v) if k in json_columns else v) for k, v in r.items()} for r in rows]
    as_json.write_text(json.dumps(records, indent=2), encoding="utf-8")
    as_parquet = tmp_path / "spend.parquet"  # typed columns: timestamps, integers, floats
    pq.write_table(pacsv.read_csv(DATA / "litellm_spend.csv"), as_parquet)
    assert pq.read_schema(as_parquet).field("startTime").type.__str__().startswith("timestamp")
    for path in (as_json, as_parquet):
        with Store.open(tmp_path / f"{path.suffix[1:]}.duckdb") as store:
            summary = load(store, path)
            assert summary.formats == (("litellm-spend", 1),) and counts(summary) == (8, 8, 0)
            assert _stored(store) == expected


# --- Langfuse ------------------------------------------------------------------------------------


def test_langfuse_observations_api_v1_and_v2_group_by_trace_across_files(store) -> None:
    summary = load(store, "langfuse_api_v1.json", "langfuse_v2.jsonl")
    assert summary.formats == (("langfuse", 2),)
    assert counts(summary) == (10, 9, 1)
    assert summary.ignored_records == 1  # the SPAN observation
    assert summary.unmapped_models == (("claude-3-5-haiku-20241022", 1),)
    got = requests(store)
    assert set(got) == {"lf-escalate", "lf-solo", "lf-timeout", "lf-retry", "lf-5xx"}

    # the trace's small call is in the v1 page, its escalation in the v2 lines
    assert steps(store, "lf-escalate") == [("small", "ok", "first"), ("large", "ok", "escalation")]
    small, large = attempts(store, "lf-escalate")
    assert (small["cost_usd"], small["latency_ms"]) == (pytest.approx(0.0000975), 640)
    assert (large["cost_usd"], large["latency_ms"]) == (pytest.approx(0.001925), 1400)
    assert (large["input_tokens"], large["output_tokens"]) == (410, 90)  # v2 usageDetails
    assert small["confidence"] is None and large["confidence"] is None  # Langfuse: no logprobs
    assert got["lf-escalate"]["messages"][0] == {
        "role": "system",
        "content": "You are a sales assistant.",
    }
    assert got["lf-escalate"]["metadata"]["intent"] == "pricing"
    assert got["lf-escalate"]["served"] == "large"

    # no endTime: Langfuse's latency is in seconds -> 1.25 s = 1250 ms
    assert attempts(store, "lf-solo")[0]["latency_ms"] == pytest.approx(1250)

    # level ERROR: the status message says which failure it was
    assert steps(store, "lf-timeout") == [
        ("small", "timeout", "first"),
        ("large", "ok", "fallback"),
    ]
    assert steps(store, "lf-5xx") == [("small", "error", "first"), ("large", "ok", "fallback")]
    (retry,) = attempts(store, "lf-retry")
    assert (retry["status"], retry["extra"]["retries"]) == ("ok", 1)
    assert (got["lf-retry"]["app"], got["lf-retry"]["region"]) == ("sales-bot", "ap-southeast-2")


# --- OpenTelemetry -------------------------------------------------------------------------------

ESCALATE, RETRY, FALLBACK, TIMEOUT = (
    "5b8efff798038103d269b633813fc60c",
    "0af7651916cd43dd8448eb211c80319c",
    "4bf92f3577b34da6a3ce929d0e0e4736",
    "a3ce929d0e0e47364bf92f3577b34da6",
)


def test_otel_genai_spans_group_by_trace_id(store) -> None:
    summary = load(store, "otel_traces.jsonl")
    assert summary.formats == (("otel", 1),)
    assert counts(summary) == (8, 7, 1)
    assert summary.ignored_records == 1  # the invoke_agent span
    assert summary.unmapped_models == (("llama-3.1-8b-instant", 1),)
    got = requests(store)
    assert set(got) == {ESCALATE, RETRY, FALLBACK, TIMEOUT}
    assert steps(store, ESCALATE) == [("small", "ok", "first"), ("large", "ok", "escalation")]
    small, large = attempts(store, ESCALATE)
    assert (small["latency_ms"], large["latency_ms"]) == (pytest.approx(500), pytest.approx(1400))
    assert small["cost_usd"] is None and small["confidence"] is None  # OTel: no cost, no logprobs
    assert (small["input_tokens"], small["output_tokens"]) == (180, 22)
    assert small["model"] == "gpt-4o-mini-2024-07-18"  # gen_ai.response.model
    assert small["output"] == "30 days."  # gen_ai.output.messages parts
    assert (got[ESCALATE]["app"], got[ESCALATE]["region"]) == ("returns-bot", "us-east-1")
    assert got[ESCALATE]["ts"] == datetime(2026, 10, 2, 0, 13, 20, 10000, tzinfo=UTC)

    (retry,) = attempts(store, RETRY)  # error.type 429, then the same model again
    assert (retry["status"], retry["extra"]["retries"]) == ("ok", 1)
    assert retry["extra"]["retry_latency_ms"] == pytest.approx(60)
    # the older gen_ai.prompt.N / gen_ai.completion.N attributes
    assert steps(store, FALLBACK) == [("small", "error", "first"), ("large", "ok", "fallback")]
    assert got[FALLBACK]["messages"] == [{"role": "user", "content": "Can I return a gift?"}]
    assert attempts(store, FALLBACK)[1]["output"] == "Yes, with the gift receipt."
    (timeout,) = attempts(store, TIMEOUT)
    assert (timeout["status"], timeout["latency_ms"]) == ("timeout", pytest.approx(60_000))
    assert got[TIMEOUT]["served"] is None


# --- OpenAI Batch --------------------------------------------------------------------------------


def test_openai_batch_joins_outputs_to_inputs_by_custom_id(store) -> None:
    summary = load(store, *BATCH_FILES)
    assert summary.formats == (("openai-batch", 5),)
    assert counts(summary) == (9, 9, 0)  # output and error lines are the calls
    got = requests(store)
    assert set(got) == {"q1", "q2", "q3", "q4"}  # `q1#small` and `q1#large` are request q1
    for request_id in got:
        assert got[request_id]["served"] is None  # independent runs: nothing was served
        for a in attempts(store, request_id):
            assert a["source"] == "shadow"
            assert a["latency_ms"] is None and a["cost_usd"] is None  # Batch carries neither
            assert "reached_by" not in a["extra"]
    small, large = attempts(store, "q1")
    assert (small["tier"], small["confidence"], small["output"]) == ("small", -0.35, "negative")
    assert (large["tier"], large["confidence"]) == ("large", -0.01)
    assert got["q1"]["ts"] == datetime.fromtimestamp(1791000041, UTC)  # first call's `created`
    assert got["q1"]["messages"][1]["content"].startswith("Sentiment of: 'Arrived broken")
    assert (got["q1"]["app"], got["q1"]["metadata"]["intent"]) == ("review-tagger", "sentiment")
    # q3 failed with a 500 in the first batch and was resubmitted: one small attempt, a retry
    small3 = attempts(store, "q3")[0]
    assert (small3["status"], small3["output"], small3["extra"]["retries"]) == ("ok", "neutral", 1)
    # q4 expired: an error without a time takes the earliest `created` of the batch outputs
    small4 = attempts(store, "q4")[0]
    assert small4["status"] == "error" and small4["extra"]["error"].startswith("batch_expired")
    assert got["q4"]["ts"] == datetime.fromtimestamp(1791000040, UTC)


def test_openai_batch_reused_custom_ids_join_by_model(tmp_path: Path, store) -> None:
    def line(obj: dict) -> str:
        return json.dumps(obj) + "\n"

    def body(model: str, text: str, created: int) -> dict:
        return {
            "model": model,
            "created": created,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1},
        }

    mini = tmp_path / "a_in.jsonl"
    mini.write_text(
        line(
            {
                "custom_id": "r1",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            }
        )
    )
    big = tmp_path / "b_in.jsonl"
    big.write_text(
        line(
            {
                "custom_id": "r1",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
            }
        )
    )
    out = tmp_path / "c_out.jsonl"
    out.write_text(
        line(
            {
                "id": "b1",
                "custom_id": "r1",
                "response": {
                    "status_code": 200,
                    "body": body("gpt-4o-2024-08-06", "hello", 1791000000),
                },
                "error": None,
            }
        )
        + line(
            {
                "id": "a1",
                "custom_id": "r1",
                "response": {
                    "status_code": 200,
                    "body": body("gpt-4o-mini-2024-07-18", "hey", 1791000001),
                },
                "error": None,
            }
        )
        + line(
            {
                "id": "x1",
                "custom_id": "r1",
                "response": None,
                "error": {"code": "batch_expired", "message": "expired"},
            }
        )
    )
    summary = load(store, mini, big, out)
    assert counts(summary) == (3, 2, 1)
    assert [(a["tier"], a["output"]) for a in attempts(store, "r1")] == [
        ("large", "hello"),
        ("small", "hey"),
    ]
    ((_, _, reason),) = rejects(store)
    assert reason.startswith("bad value: custom_id appears in 2 input lines")


# --- Helicone ------------------------------------------------------------------------------------


def test_helicone_export_groups_by_session_and_reads_stored_cost(store) -> None:
    summary = load(store, "helicone_export.jsonl", "helicone_export.csv")
    assert summary.formats == (("helicone", 2),)
    assert counts(summary) == (11, 10, 1)
    assert summary.unmapped_models == (("o3-mini (also o3-mini-2025-01-31)", 1),)
    got = requests(store)
    assert set(got) == {"hs-escalate", "hs-retry", "hs-5xx", "hs-csv", "h7", "h8"}
    assert steps(store, "hs-escalate") == [("small", "ok", "first"), ("large", "ok", "escalation")]
    small, large = attempts(store, "hs-escalate")
    assert (small["cost_usd"], small["latency_ms"], small["confidence"]) == (
        pytest.approx(0.0000078),
        350,
        pytest.approx(-1.0),
    )
    assert large["cost_usd"] == pytest.approx(0.00018)  # costUSD
    assert (got["hs-escalate"]["app"], got["hs-escalate"]["region"]) == (
        "shop-assistant",
        "us-west-2",
    )
    assert attempts(store, "hs-retry")[0]["extra"]["retries"] == 1  # 429 then 200
    assert steps(store, "hs-5xx") == [("small", "error", "first"), ("large", "ok", "fallback")]
    (timeout,) = attempts(store, "h7")  # 504 Gateway Timeout, no session: its own request
    assert (timeout["status"], timeout["latency_ms"]) == ("timeout", 60_000)
    # the export tool's CSV: `cost` is ClickHouse's stored USD x 1e9
    csv_small, csv_large = attempts(store, "hs-csv")
    assert csv_small["cost_usd"] == pytest.approx(8.1e-6)
    assert csv_large["cost_usd"] == pytest.approx(2.95e-4)
    assert (csv_small["latency_ms"], csv_large["latency_ms"]) == (500, 1400)
    assert steps(store, "hs-csv") == [("small", "ok", "first"), ("large", "ok", "escalation")]


# --- detection -----------------------------------------------------------------------------------

EXPECTED_FORMATS = {
    "litellm_payload.jsonl": "litellm-payload",
    "litellm_spend.csv": "litellm-spend",
    "langfuse_api_v1.json": "langfuse",
    "langfuse_v2.jsonl": "langfuse",
    "otel_traces.jsonl": "otel",
    "helicone_export.jsonl": "helicone",
    "helicone_export.csv": "helicone",
    **dict.fromkeys(BATCH_FILES, "openai-batch"),
}


def test_detection_picks_the_format_of_every_fixture_from_content(tmp_path: Path) -> None:
    assert {p.name for p in DATA.iterdir() if p.suffix != ".yaml"} == set(EXPECTED_FORMATS)
    for name, fmt in EXPECTED_FORMATS.items():
        assert detect.detect_file(DATA / name) == fmt, name
        renamed = tmp_path / f"export-{len(name)}.jsonl"  # the name says nothing
        if not name.endswith(".csv"):
            renamed.write_bytes((DATA / name).read_bytes())
            assert detect.detect_file(renamed) == fmt, name
    for canonical in ("ingest_good.jsonl", "ingest_good.csv", "ingest_malformed.jsonl"):
        assert detect.detect_file(DATA.parent / canonical) == "canonical"


def test_a_whole_directory_of_mixed_exports_is_read_by_format(tmp_path: Path, store) -> None:
    summary = load(store, DATA, DATA.parent / "ingest_good.jsonl")
    assert dict(summary.formats) == {
        "litellm-payload": 1,
        "litellm-spend": 1,
        "langfuse": 2,
        "otel": 1,
        "openai-batch": 5,
        "helicone": 2,
    }
    assert summary.files == 13
    again = load(store, DATA)
    assert (again.files, again.files_skipped, again.rows_read) == (0, 12, 0)


LOOK_ALIKES = {
    # OpenAI chat-completions responses logged bare: no custom_id / response wrapper
    "chat.jsonl": (
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1790000000,
            "model": "gpt-4o",
            "choices": [],
            "usage": {"prompt_tokens": 1},
        },
        "openai-batch",
        "body, custom_id",
    ),
    # Langfuse traces instead of observations
    "traces.json": (
        {
            "id": "t1",
            "timestamp": "2026-10-01T00:00:00Z",
            "name": "chat",
            "sessionId": "s",
            "userId": "u",
            "latency": 1.2,
            "totalCost": 0.01,
            "observations": ["o1"],
            "htmlPath": "/project/p/traces/t1",
            "tags": [],
        },
        "langfuse",
        "start_time, trace_id, type",
    ),
    # LiteLLM_ErrorLogs rows instead of LiteLLM_SpendLogs
    "errors.jsonl": (
        {
            "request_id": "x",
            "startTime": "2026-10-01T00:00:00",
            "endTime": "2026-10-01T00:00:01",
            "api_base": "",
            "model_group": "cheap",
            "litellm_model_name": "gpt-4o-mini",
            "model_id": "1",
            "request_kwargs": {},
            "exception_type": "RateLimitError",
            "exception_string": "429",
            "status_code": "429",
        },
        "litellm-spend",
        "spend",
    ),
    # OTLP logs, not traces
    "logs.jsonl": ({"resourceLogs": []}, "otel", "resource_spans"),
}


@pytest.mark.parametrize("name", sorted(LOOK_ALIKES))
def test_a_look_alike_is_refused_naming_the_closest_format(tmp_path: Path, store, name) -> None:
    record, closest, lacking = LOOK_ALIKES[name]
    path = tmp_path / name
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        load(store, DATA / "litellm_payload.jsonl", path)
    assert f"the closest is {closest} " in caught.value.message
    assert caught.value.message.endswith(f"they lack its fields: {lacking}")
    assert "--format" in (caught.value.hint or "")
    assert store.request_count() == 0  # refused before anything was written
    assert store.con.execute("SELECT count(*) FROM ingest_runs").fetchone() == (0,)


def test_records_of_no_known_shape_still_go_to_the_canonical_reader(tmp_path: Path, store) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_text('{"request_id": "r1", "prompt": "hi"}\n', encoding="utf-8")
    summary = ingest(store, [path], strict=False, clock=clock)
    assert summary.formats == () and summary.rows_rejected == 1
    assert rejects(store)[0][2] == "missing field: timestamp"


def test_format_option_forces_one_format(store) -> None:
    summary = load(store, "litellm_payload.jsonl", log_format="otel")
    assert counts(summary) == (10, 0, 10)
    assert {r[2] for r in rejects(store)} == {"missing field: resource_spans (not a otel record)"}


def test_canonical_logs_need_no_tiers_and_exports_need_them(store) -> None:
    canonical = ingest(store, [DATA.parent / "ingest_good.jsonl"], strict=False, clock=clock)
    assert canonical.rows_kept > 0 and canonical.formats == ()
    with pytest.raises(ConfigError) as caught:
        ingest(store, [DATA / "otel_traces.jsonl"], strict=False, clock=clock)
    assert "holds OpenTelemetry GenAI traces (OTLP/JSON) records" in caught.value.message
    assert "--tiers" in (caught.value.hint or "")


def test_strict_refuses_an_export_with_an_unknown_model(store) -> None:
    with pytest.raises(LogFormatError, match="unknown model: llama-3.1-8b-instant"):
        load(store, "otel_traces.jsonl", strict=True)
    assert store.request_count() == 0


# --- tiers, the retry rule, the confidence ------------------------------------------------------


def test_aliases_provider_prefixes_and_dated_versions_map_to_tiers() -> None:
    tiers = TierMap.build(
        [
            TierSpec("small", ("gpt-4o-mini", "cheap"), "logprob_mean"),
            TierSpec("large", ("openai/gpt-4o",), "logprob_mean"),
        ]
    )
    assert tiers.tier_of(["cheap"]) == "small"  # a LiteLLM model_group alias
    assert tiers.tier_of(["azure/gpt-4o-mini"]) == "small"  # a provider prefix
    assert tiers.tier_of(["gpt-4o-mini-2024-07-18"]) == "small"  # a dated version
    assert tiers.tier_of(["gpt-4o-2024-08-06"]) == "large"
    assert tiers.tier_of(["unknown", "GPT-4O"]) == "large"  # any of the call's names, any case
    assert tiers.tier_of(["gpt-4.1"]) is None
    # two tiers on dated versions of one model: only the exact name decides
    pinned = TierMap.build(
        [
            TierSpec("old", ("gpt-4o-2024-05-13",), "none"),
            TierSpec("new", ("gpt-4o-2024-08-06",), "none"),
        ]
    )
    assert pinned.tier_of(["gpt-4o-2024-08-06"]) == "new"
    assert pinned.tier_of(["gpt-4o"]) is None
    with pytest.raises(ValueError, match="claimed by tiers small and large"):
        TierMap.build([TierSpec("small", ("m",), "none"), TierSpec("large", ("M",), "none")])


def test_tiers_yaml_refuses_an_alias_two_tiers_claim() -> None:
    with pytest.raises(ValueError, match="alias 'x' is claimed by tiers a and b"):
        TiersConfig.model_validate(
            {
                "tiers": [
                    {"name": "a", "model": "m", "aliases": ["x"]},
                    {"name": "b", "model": "n", "aliases": ["x"]},
                ]
            }
        )


def _call(n: int, model: str, status: str = "ok", second: float | None = None) -> Call:
    start = datetime(2026, 10, 1, 9, 0, int(second if second is not None else n), tzinfo=UTC)
    unit = Unit(0, n, {"n": n})
    return Call(unit, f"c{n}", "trace", start, (model,), status)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("calls", "expected"),
    [
        # the same tier again after a 429: a retry, one attempt
        ([("small", "error"), ("small", "ok")], [("small", "ok", "first", 1)]),
        # an answer, then another tier: an escalation
        (
            [("small", "ok"), ("large", "ok")],
            [("small", "ok", "first", 0), ("large", "ok", "escalation", 0)],
        ),
        # an error or a timeout, then another tier: a fallback, not an escalation
        (
            [("small", "timeout"), ("large", "ok")],
            [("small", "timeout", "first", 0), ("large", "ok", "fallback", 0)],
        ),
        (
            [("large", "error"), ("small", "ok")],
            [("large", "error", "first", 0), ("small", "ok", "fallback", 0)],
        ),
        # escalated, then the large tier was retried after a 500
        (
            [("small", "ok"), ("large", "error"), ("large", "ok")],
            [("small", "ok", "first", 0), ("large", "ok", "escalation", 1)],
        ),
    ],
)
def test_retries_and_fallbacks_are_not_escalations(calls, expected) -> None:
    tiers = TierMap.build(
        [TierSpec("small", ("small",), "none"), TierSpec("large", ("large",), "none")]
    )
    made = [_call(i + 1, model, status) for i, (model, status) in enumerate(calls)]
    (request,) = group(reversed(made), tiers, "test").requests  # order comes from time
    got = [
        (a["tier"], a["status"], a["reached_by"], a.get("retries", 0))
        for a in request.record["attempts"]
    ]
    assert got == expected


def test_confidence_is_computed_by_the_tiers_method_as_replay_does(tmp_path: Path, store) -> None:
    tiers = tmp_path / "tiers.yaml"
    tiers.write_text(
        TIERS.read_text(encoding="utf-8")
        .replace("confidence: logprob_mean", "confidence: first_token", 1)
        .replace("confidence: logprob_mean", "confidence: verbalized"),
        encoding="utf-8",
    )
    load(store, "litellm_payload.jsonl", tiers=load_tiers(tiers))
    small, large = attempts(store, "tr-escalate")
    record = json.loads((DATA / "litellm_payload.jsonl").read_text().splitlines()[0])
    replayed, _ = ep.confidence_from_logprobs(
        "first_token", ep.parse_completion(record["response"])
    )
    assert small["confidence"] == pytest.approx(replayed) == pytest.approx(math.exp(-0.9))
    assert large["confidence"] is None  # a verbalized tier: logprobs are not its confidence


def test_cli_ingest_reads_exports_with_tiers_and_explains_without(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    export = str(DATA / "otel_traces.jsonl")
    missing = runner.invoke(app, ["ingest", export, "--db", str(db)])
    assert missing.exit_code == 1
    assert (
        missing.stderr.startswith("Error: ") and "Hint: Pass --tiers tiers.yaml" in missing.stderr
    )
    done = runner.invoke(app, ["ingest", export, "--db", str(db), "--tiers", str(TIERS)])
    assert done.exit_code == 0, done.stderr
    assert "Gateway exports read: otel (1 files)." in done.stderr
    assert "llama-3.1-8b-instant (1 calls)" in done.stderr
    forced = runner.invoke(
        app, ["ingest", export, "--db", str(db), "--tiers", str(TIERS), "--format", "nope"]
    )
    assert forced.exit_code == 2


def test_requests_are_filed_under_their_first_call_and_conflicts_name_it(
    tmp_path: Path, store
) -> None:
    """Requests go to the store in batches that mix files; each is filed back under the file
    and line of its first call, and a reject of the store names that file and line."""
    first = load(store, "langfuse_api_v1.json", "langfuse_v2.jsonl")
    rows = store.con.execute(
        "SELECT request_id, source_file, source_line FROM requests ORDER BY request_id"
    ).fetchall()
    assert [(r, Path(f).name, line) for r, f, line in rows] == [
        ("lf-5xx", "langfuse_v2.jsonl", 4),
        ("lf-escalate", "langfuse_api_v1.json", 1),
        ("lf-retry", "langfuse_v2.jsonl", 2),
        ("lf-solo", "langfuse_api_v1.json", 3),
        ("lf-timeout", "langfuse_api_v1.json", 4),
    ]
    assert first.rows_rejected == 1
    # a later export of the same trace with another prompt: the store keeps the first copy
    changed = tmp_path / "again.jsonl"
    lines = (DATA / "langfuse_v2.jsonl").read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[3])  # lf-5xx's first call
    record["input"] = json.dumps({"messages": [{"role": "user", "content": "Other question"}]})
    changed.write_text(json.dumps(record) + "\n" + lines[4] + "\n", encoding="utf-8")
    again = load(store, changed)
    assert counts(again) == (2, 0, 2)  # both calls belong to the rejected request
    (reject,) = [r for r in rejects(store) if r[0] == "again.jsonl"]
    assert reject[1] == 1
    assert reject[2].startswith("duplicate request_id lf-5xx with conflicting content")
    assert "langfuse_v2.jsonl line 4" in reject[2]
    assert store.con.execute("SELECT count(*) FROM ingested_files").fetchone() == (3,)
