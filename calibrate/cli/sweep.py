"""`calibrate sweep`: its options in typed groups (the objective, the economics, the strategies),
one call to `pipeline.sweep_logs`, the recommendation printed."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from calibrate.cli import console
from calibrate.cli.common import now, open_store_for_logs
from calibrate.cli.options import (
    MEMORY,
    Db,
    EngineKind,
    EngineOption,
    Json,
    LogFormat,
    SparkMaster,
    Strict,
    TiersPath,
    engine_of,
    grouped,
    out_folder,
    with_option_groups,
)
from calibrate.errors import ConfigError
from calibrate.records.engine import Engine
from calibrate.store import Store

if TYPE_CHECKING:  # the sweep's modules load when a sweep runs, not for `--help`
    from calibrate.config.tiers import TiersConfig
    from calibrate.sweep.candidates import RouterOptions, Strategies
    from calibrate.sweep.selection import Objective
    from calibrate.sweep.stage import Overheads, SweepResult


class CertifyOn(StrEnum):
    """The hypothesis certification tests (`Objective.certify_on`)."""

    drop = "drop"
    regret = "regret"


def objective_options(
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
    certify_on: Annotated[
        CertifyOn,
        typer.Option(
            "--certify-on",
            help="What certification tests: the quality drop itself (betting test on the paired "
            "differences) or the regret rate (exact binomial; conservative).",
        ),
    ] = CertifyOn.drop,
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
        Literal["app", "region", "intent"] | None,
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
    allow_biased: Annotated[
        bool,
        typer.Option(
            "--allow-biased",
            help="Sweep even when the labelled requests with every tier's answer are selected by "
            "production routing (`calibrate check`): uncertified, and the report says so.",
        ),
    ] = False,
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy",
            metavar="ID",
            help="Write this frontier.csv policy (any strategy but consensus) instead of the "
            "recommendation; the report says whether it is certified.",
        ),
    ] = None,
) -> Objective:
    """What the sweep optimises and under which constraints."""
    from calibrate.sweep.selection import Objective

    return Objective(
        max_quality_drop,
        confidence,
        certify=not no_certify,
        certify_on=certify_on.value,
        max_relative_drop=max_relative_drop,
        per_segment=per_segment,
        max_latency_p95_ms=max_latency_p95_ms,
        escalation_band=parse_band(escalation_band),
        max_cost_per_1k_usd=max_cost_per_1k_usd,
        chosen_policy=policy,
        allow_biased=allow_biased,
    )


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


def economics_options(
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
    requests_per_month: Annotated[
        float | None,
        typer.Option(
            "--requests-per-month",
            min=0.0,
            help="Your traffic, to tell whether the savings pay the calibration back "
            "(default: the logs' own rate).",
        ),
    ] = None,
) -> Overheads:
    """The fixed costs of keeping a policy calibrated (for the break-even volume) and the traffic
    that pays them back."""
    from calibrate.sweep.stage import Overheads

    return Overheads(label_cost_usd, fixed_monthly_usd, requests_per_month)


@dataclass(frozen=True)
class StrategyOptions:
    """The optional strategies as asked for; the rules file is read against the tiers by `load`."""

    router: RouterOptions
    rules: Path | None
    high_stakes: tuple[str, ...]

    def load(self, tiers: TiersConfig) -> Strategies:
        from calibrate.policies.keyword_rules import load_rules
        from calibrate.sweep.candidates import Strategies

        rules = load_rules(self.rules, tuple(tiers.names)) if self.rules is not None else None
        return Strategies(self.router, rules, self.high_stakes)


def strategy_options(
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
) -> StrategyOptions:
    """The learned router, keyword rules and the high-stakes intents."""
    from calibrate.sweep.candidates import RouterOptions

    learned = RouterOptions(
        router,
        classifier_cost_usd,
        max_requests=router_max_requests,
        fixed_monthly_usd=classifier_monthly_usd,
        embedding_key=embedding_key,
    )
    return StrategyOptions(learned, rules, tuple(high_stakes or ()))


SweepLogs = Annotated[
    list[str] | None,  # text, not Path: with --engine spark they may be URLs (s3a://…) or globs
    typer.Argument(
        metavar="LOGS",
        help="Logs to ingest first (without them: what the store holds); with --engine spark, "
        "the canonical Parquet Spark reads.",
    ),
]
Out = Annotated[Path, typer.Option("--out", help="Folder for the five outputs.")]
Seed = Annotated[
    int, typer.Option("--seed", help="Seed of the bootstrap intervals and the router's folds.")
]


@with_option_groups
def sweep_cmd(
    paths: SweepLogs = None,
    tiers: TiersPath = Path("tiers.yaml"),
    out: Out = Path("calibrate-out"),
    db: Db = None,
    objective: Objective = grouped(objective_options),
    economics: Overheads = grouped(economics_options),
    strategies: StrategyOptions = grouped(strategy_options),
    seed: Seed = 0,
    strict: Strict = False,
    as_json: Json = False,
    log_format: LogFormat = "auto",
    engine_kind: EngineOption = EngineKind.duckdb,
    spark_master: SparkMaster = None,
) -> None:
    """Evaluate every candidate policy; write routing.yaml, frontier.csv, summary.json and reports.

    Ingests LOGS first (into an in-memory store unless --db is given); without LOGS it sweeps what
    the store already holds (--db, else .calibrate/calibrate.duckdb).

    Example:

    \b
        calibrate sweep sample_logs/ --tiers sample_logs/tiers.yaml --out out/
    """
    from calibrate import pipeline
    from calibrate.config.tiers import load_tiers

    out_folder(out)
    engine = engine_of(engine_kind, spark_master, paths)
    logs = () if engine.spark else tuple(Path(p) for p in paths or ())
    tiers_config = load_tiers(tiers)
    job = pipeline.SweepJob(
        logs,
        tiers_config,
        objective,
        strategies.load(tiers_config),
        economics,
        out,
        seed=seed,
        strict=strict,
        log_format=log_format,
        engine=engine,
    )
    with sweep_store(db, logs, engine) as store, console.stages("sweep") as progress:
        result, written = pipeline.sweep_logs(store, job, clock=now, progress=progress)
    if as_json:
        console.print_json(json_summary(result))
    else:
        show_sweep(result, written)


def sweep_store(db: Path | None, logs: tuple[Path, ...], engine: Engine) -> Store:
    """The sweep's store: with --engine spark, LOGS are Spark's to read and the store is an
    in-memory one holding the labeled requests Spark extracts (--db is not used)."""
    if engine.spark:
        if db is not None:
            raise ConfigError(
                "--db is not used with --engine spark",
                hint="Spark reads the Parquet given as LOGS; drop --db.",
            )
        return Store.open(MEMORY)
    return open_store_for_logs(db, logs)


def json_summary(result: SweepResult) -> dict:
    """`--json`: summary.json's content, from the result (not read back from the file)."""
    from calibrate.report.summary_json import summary

    return summary(result).model_dump(mode="python")


def show_sweep(result: SweepResult, written: dict[str, Path]) -> None:
    """The recommendation's metrics, the decision, the warnings, the router's measured speed, the
    outputs."""
    from calibrate.config.routing import METRICS

    console.metrics_table("recommendation", result.decision.recommendation.row.as_dict(), METRICS)
    verdict = result.report.verdict  # the report's first line, said here too
    console.err().print(f"Decision: {verdict.action}. {verdict.why}.", highlight=False)
    for warning in result.report.warnings:
        console.warn(warning)
    if result.decision.router is not None:
        ms = result.decision.router.inference_ms_per_request
        console.err().print(f"Learned router inference: {ms:.3f} ms per request (measured).")
    console.outputs_written(written)
