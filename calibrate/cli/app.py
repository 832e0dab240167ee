"""The command line: parse options, open the store, call one stage function, print its result.

Exit codes: 0 success; 1 a problem the user can fix (`Error:` and `Hint:` on stderr, no traceback);
2 usage error; 3 only with `--check` (`diff`: the change is material; `monitor`: recalibration is
due); 130 `replay` or `labels judge` was interrupted.  Every other exception is a bug and shows a traceback without local variables.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from calibrate.cli import console
from calibrate.cli import labels as cli_labels
from calibrate.cli.common import (
    Db,
    Json,
    Logs,
    Strict,
    TiersPath,
    exit_if_interrupted,
    interruptible,
    now,
)
from calibrate.config.tiers import load_tiers, price_table
from calibrate.errors import CalibrateError
from calibrate.formats import canonical as logformat
from calibrate.ingest import stage as ingest
from calibrate.store import Store
from calibrate.store.core import DEFAULT_DB
from calibrate.sweep.selection import Objective


class _Group(TyperGroup):
    """The single error boundary: CalibrateError → `Error:`/`Hint:` on stderr, exit 1."""

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except CalibrateError as exc:
            console.print_error(exc)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Calibrate LLM routing offline: thresholds and cutoffs from your own production logs.",
)


@app.command("ingest")
def ingest_cmd(
    paths: Logs, db: Db = DEFAULT_DB, strict: Strict = False, as_json: Json = False
) -> None:
    """Load logs into the store; bad rows are quarantined in the `rejects` table.

    Example:

    \b
        calibrate ingest sample_logs/ --db .calibrate/calibrate.duckdb
    """
    with Store.open(db) as store:
        summary = ingest.ingest(store, paths, strict=strict, clock=now)
    if as_json:
        console.print_json(summary.__dict__)
    else:
        console.ingest_table(summary)


@app.command("sweep")
def sweep_cmd(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Logs to ingest first (optional with --db).")
    ] = None,
    tiers: TiersPath = Path("tiers.yaml"),
    out: Annotated[Path, typer.Option("--out", help="Folder for the five outputs.")] = Path(
        "calibrate-out"
    ),
    db: Annotated[
        Path | None, typer.Option("--db", help="Store file (default: in memory).")
    ] = None,
    max_quality_drop: Annotated[
        float,
        typer.Option(
            "--max-quality-drop", min=0.0, max=1.0, help="Largest acceptable quality drop."
        ),
    ] = 0.02,
    confidence: Annotated[
        float, typer.Option("--confidence", min=0.5, max=0.999999, help="Confidence level 1−δ.")
    ] = 0.95,
    no_certify: Annotated[
        bool,
        typer.Option("--no-certify", help="Plain empirical selection (no statistical guarantee)."),
    ] = False,
    max_relative_drop: Annotated[
        float | None,
        typer.Option(
            "--max-relative-drop",
            min=0.0,
            max=1.0,
            help="Largest acceptable drop relative to the premium tier's quality (replaces --max-quality-drop).",
        ),
    ] = None,
    per_segment: Annotated[
        str | None,
        typer.Option(
            "--per-segment", help="Certify the drop within every app, region or intent (δ/G each)."
        ),
    ] = None,
    max_latency_p95_ms: Annotated[
        float | None,
        typer.Option(
            "--max-latency-p95-ms", min=0.0, help="Only policies with p95 latency below this."
        ),
    ] = None,
    escalation_band: Annotated[
        str | None,
        typer.Option(
            "--escalation-band",
            metavar="LOW,HIGH",
            help="Only policies escalating LOW–HIGH, e.g. 0.15,0.25.",
        ),
    ] = None,
    max_cost_per_1k_usd: Annotated[
        float | None,
        typer.Option(
            "--max-cost-per-1k-usd",
            min=0.0,
            help="Budget mode: the best quality at most this cost.",
        ),
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy",
            metavar="ID",
            help="Write this frontier.csv policy (any strategy but consensus) instead of the "
            "recommendation; the report says whether it is certified.",
        ),
    ] = None,
    label_cost_usd: Annotated[
        float,
        typer.Option(
            "--label-cost-usd", min=0.0, help="Price of one label, for the break-even volume."
        ),
    ] = 1.0,
    fixed_monthly_usd: Annotated[
        float,
        typer.Option(
            "--fixed-monthly-usd", min=0.0, help="Other fixed monthly costs of calibrating."
        ),
    ] = 0.0,
    router: Annotated[
        bool,
        typer.Option(
            "--router/--no-router",
            help="Fit the learned router (TF-IDF + logistic regression on the prompt, or on "
            "a precomputed embedding when every request has one).",
        ),
    ] = True,
    embedding_key: Annotated[
        str,
        typer.Option(
            "--embedding-key",
            metavar="KEY",
            help="metadata key of a precomputed prompt embedding for the learned router.",
        ),
    ] = "embedding",
    rules: Annotated[
        Path | None,
        typer.Option(
            "--rules",
            exists=True,
            dir_okay=False,
            help="Keyword rules file (rules.yaml): sweep them in front of length cutoffs and "
            "cascades, and report what each rule catches.",
        ),
    ] = None,
    high_stakes: Annotated[
        list[str] | None,
        typer.Option(
            "--high-stakes",
            metavar="INTENT",
            help="Report consensus against the premium tier on this intent (repeatable).",
        ),
    ] = None,
    classifier_cost_usd: Annotated[
        float,
        typer.Option(
            "--classifier-cost-usd",
            min=0.0,
            help="Price of running the learned router per 1k requests (added to its cost).",
        ),
    ] = 0.0,
    classifier_monthly_usd: Annotated[
        float,
        typer.Option(
            "--classifier-monthly-usd",
            min=0.0,
            help="Fixed monthly cost of hosting the learned router (enters its break-even).",
        ),
    ] = 0.0,
    router_max_requests: Annotated[
        int,
        typer.Option(
            "--router-max-requests",
            min=0,
            help="Skip the learned router (with a warning) above this many requests: its n-gram "
            "step takes minutes at a million.",
        ),
    ] = 200_000,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the bootstrap intervals and the router's folds.")
    ] = 0,
    strict: Strict = False,
    as_json: Json = False,
) -> None:
    """Evaluate every candidate policy; write routing.yaml, frontier.csv, summary.json and reports.

    Ingests LOGS first (into an in-memory store unless --db is given); with --db and no LOGS it
    sweeps what the store already holds.

    Example:

    \b
        calibrate sweep sample_logs/ --tiers sample_logs/tiers.yaml --out out/
    """
    from calibrate import pipeline
    from calibrate.config.routing import METRICS
    from calibrate.policies.keyword_rules import load_rules
    from calibrate.sweep.candidates import RouterOptions, Strategies
    from calibrate.sweep.stage import Overheads

    tiers_config = load_tiers(tiers)
    keyword_rules = load_rules(rules, tuple(tiers_config.names)) if rules is not None else None
    objective = Objective(
        max_quality_drop,
        confidence,
        certify=not no_certify,
        max_relative_drop=max_relative_drop,
        per_segment=per_segment,
        max_latency_p95_ms=max_latency_p95_ms,
        escalation_band=parse_band(escalation_band),
        max_cost_per_1k_usd=max_cost_per_1k_usd,
        chosen_policy=policy,
    )
    with (
        Store.open(db if db is not None else ":memory:") as store,
        console.progress("sweep") as tick,
    ):
        _, result, written = pipeline.sweep_logs(
            store,
            paths or [],
            tiers_config,
            objective,
            out,
            strict=strict,
            clock=now,
            seed=seed,
            overheads=Overheads(label_cost_usd, fixed_monthly_usd),
            on_progress=tick,
            strategies=Strategies(
                RouterOptions(
                    router,
                    classifier_cost_usd,
                    max_requests=router_max_requests,
                    fixed_monthly_usd=classifier_monthly_usd,
                    embedding_key=embedding_key,
                ),
                keyword_rules,
                tuple(high_stakes or ()),
            ),
        )
    if as_json:
        console.print_json(json_summary(written))
        return
    console.metrics_table("recommendation", result.decision.recommendation.row.as_dict(), METRICS)
    for warning in result.report.warnings:
        console.warn(warning)
    if result.decision.router is not None:
        ms = result.decision.router.inference_ms_per_request
        console.err().print(f"Learned router inference: {ms:.3f} ms per request (measured).")
    console.outputs_written(written)


def parse_band(text: str | None) -> tuple[float, float] | None:
    """`LOW,HIGH` → (low, high) with 0 ≤ low ≤ high ≤ 1."""
    if text is None:
        return None
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter(
            "expected LOW,HIGH, e.g. 0.15,0.25", param_hint="--escalation-band"
        ) from None
    if not 0.0 <= low <= high <= 1.0:
        raise typer.BadParameter("need 0 ≤ LOW ≤ HIGH ≤ 1", param_hint="--escalation-band")
    return low, high


def json_summary(written: dict[str, Path]) -> dict:
    return json.loads(written["summary.json"].read_text(encoding="utf-8"))


@app.command("evaluate")
def evaluate_cmd(
    routing: Annotated[Path, typer.Argument(help="A routing.yaml written by `calibrate sweep`.")],
    paths: Annotated[list[Path] | None, typer.Argument(help="Logs to evaluate on.")] = None,
    tiers: Annotated[
        Path | None,
        typer.Option("--tiers", help="tiers.yaml, for prices when logs have no cost_usd."),
    ] = None,
    db: Annotated[
        Path | None, typer.Option("--db", help="Store file (default: in memory).")
    ] = None,
    as_json: Json = False,
) -> None:
    """The metrics of one routing.yaml on the given logs.

    Example:

    \b
        calibrate evaluate out/routing.yaml sample_logs/
    """
    from calibrate.config.routing import METRICS, load_routing
    from calibrate.sweep import evaluate

    config = load_routing(routing)
    prices = price_table(load_tiers(tiers)) if tiers is not None else {}
    with Store.open(db if db is not None else ":memory:") as store:
        if paths:
            ingest.ingest(store, paths, strict=False, clock=now)
        result = evaluate.evaluate_routing(store, config, prices, routing.parent)
    if as_json:
        console.print_json(result.as_dict())
    else:
        console.metrics_table("evaluate", result.as_dict(), METRICS)


# --- diff: one self-contained block (its imports are local so it merges cleanly) ---------------
def _non_negative(value: float) -> float:
    if value < 0:
        raise typer.BadParameter("must be ≥ 0")
    return value


def _bound_option(name: str, help_text: str) -> typer.models.OptionInfo:
    return typer.Option(name, callback=_non_negative, help=help_text)


@app.command("diff")
def diff_cmd(
    old: Annotated[
        Path,
        typer.Argument(metavar="OLD", help="The routing.yaml in use (e.g. the committed one)."),
    ],
    new: Annotated[
        Path, typer.Argument(metavar="NEW", help="The candidate routing.yaml (e.g. from a sweep).")
    ],
    check: Annotated[
        bool,
        typer.Option("--check", help="Exit 3 when the change is material, 0 when it is not."),
    ] = False,
    min_threshold_change: Annotated[
        float,
        _bound_option("--min-threshold-change", "Smallest material threshold move (absolute)."),
    ] = 0.01,
    min_cutoff_change: Annotated[
        float,
        _bound_option("--min-cutoff-change", "Smallest material rule-cutoff move (0.1 = 10%)."),
    ] = 0.10,
    min_cost_change: Annotated[
        float, _bound_option("--min-cost-change", "Smallest material cost change (0.05 = 5%).")
    ] = 0.05,
    min_quality_change: Annotated[
        float,
        _bound_option(
            "--min-quality-change", "Smallest material quality or quality-drop change (absolute)."
        ),
    ] = 0.005,
    min_escalation_change: Annotated[
        float,
        _bound_option(
            "--min-escalation-change", "Smallest material escalation-rate change (0.05 = 5 points)."
        ),
    ] = 0.05,
    min_latency_change: Annotated[
        float,
        _bound_option(
            "--min-latency-change", "Smallest material p50/p95 latency change (0.1 = 10%)."
        ),
    ] = 0.10,
    as_json: Json = False,
) -> None:
    """Explain what changed between two routing.yaml files, as Markdown for a pull request.

    Always material: a strategy or tier change, a new objective,
    certified → uncertified, a quality-drop interval newly above the limit.

    Exit codes:

    \b
        0  success; with --check: no material change
        1  a file is missing or invalid (Error: and Hint: on stderr)
        2  usage error
        3  only with --check: the change is material

    Example:

    \b
        calibrate diff routing.yaml calibrate-out/routing.yaml --check > diff.md
    """
    from calibrate.diff.compare import Materiality, diff_files
    from calibrate.report.diff_report import render_json, render_markdown

    materiality = Materiality(
        min_threshold_change=min_threshold_change,
        min_cutoff_change=min_cutoff_change,
        min_cost_change=min_cost_change,
        min_quality_change=min_quality_change,
        min_escalation_change=min_escalation_change,
        min_latency_change=min_latency_change,
    )
    result = diff_files(old, new, materiality)
    print(render_json(result) if as_json else render_markdown(result), end="")
    if check and result.material:
        raise typer.Exit(3)


# --- end of diff ----------------------------------------------------------------------------


@app.command("schema")
def schema_cmd() -> None:
    """Print the canonical log format (version 1): fields, file variants, merge rule, reject reasons.

    Example:

    \b
        calibrate schema
    """
    print(logformat.SCHEMA_DOC)


# --- replay (shadow mode) ---------------------------------------------------------------------


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD[THH:MM[:SS][Z]])") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command("replay")
def replay_cmd(
    tiers: TiersPath = Path("tiers.yaml"),
    db: Db = DEFAULT_DB,
    sample: Annotated[
        int, typer.Option("--sample", min=1, help="Uniform random sample of N matching requests.")
    ] = 1000,
    where: Annotated[
        str | None, typer.Option("--where", help="SQL condition over the requests table.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only requests at or after this date (UTC).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sample and the jitter.")] = 0,
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
    """
    from calibrate.records.replay import Selection
    from calibrate.replay import stage as replay

    tiers_config = load_tiers(tiers)
    selection = Selection(sample, seed, where, _since(since))
    with Store.open(db) as store:
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


# --- monitor ------------------------------------------------------------------------------------
# Exit code 3 (only with --check): recalibration is due. Imports are local to keep this block
# self-contained.


@app.command("monitor")
def monitor_cmd(
    baseline: Annotated[
        Path, typer.Option("--baseline", help="The deployed routing.yaml (written by `sweep`).")
    ],
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Logs to monitor (optional with --db).")
    ] = None,
    by: Annotated[
        str | None,
        typer.Option("--by", metavar="region|app", help="Also watch each region or each app."),
    ] = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Exit 3 when recalibration is due (for a nightly CI job)."),
    ] = False,
    reference_days: Annotated[
        int,
        typer.Option(
            "--reference-days",
            min=1,
            help="Reference = the first N days, when the logs do not contain routing.yaml's "
            "calibration window.",
        ),
    ] = 30,
    false_alarm_rate: Annotated[
        float,
        typer.Option(
            "--false-alarm-rate",
            min=0.0001,
            max=0.5,
            help="Chance of a drift alarm per run on stationary traffic.",
        ),
    ] = 0.05,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for monitor.md, monitor.html, monitor.json.")
    ] = Path("monitor-out"),
    db: Annotated[
        Path | None, typer.Option("--db", help="Store file (default: in memory).")
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the CUSUM threshold simulation.")
    ] = 0,
    as_json: Json = False,
) -> None:
    """Watch the escalation rate, confidence drift, label-free quality and regional health of a
    deployed routing.yaml between calibrations; say when recalibration is due.

    Example:

    \b
        calibrate monitor sample_logs/ --baseline out/routing.yaml --by region --check
    """
    from calibrate.config.routing import load_routing
    from calibrate.monitor import stage as monitor
    from calibrate.report import monitor_report

    config = load_routing(baseline)
    options = monitor.MonitorOptions(
        by=by, reference_days=reference_days, false_alarm_rate=false_alarm_rate
    )
    with Store.open(db if db is not None else ":memory:") as store:
        if paths:
            ingest.ingest(store, paths, strict=False, clock=now)
        result = monitor.monitor(store, config, options, seed=seed, base_dir=baseline.parent)
    written = monitor_report.write_outputs(result, out)
    if as_json:
        console.print_json(monitor_report.as_json(result))
    else:
        print(monitor_report.terminal_text(result))
        console.outputs_written(written)
    if check and result.recalibration_due:
        for reason in result.reasons:
            console.err().print(f"Recalibration due: {reason}", highlight=False, markup=False)
        raise typer.Exit(3)


app.add_typer(cli_labels.labels_app, name="labels")
app.command("sample")(cli_labels.sample_cmd)


def main() -> None:
    app()
