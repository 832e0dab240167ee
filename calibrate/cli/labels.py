"""The `labels …` commands and `sample`: options parsed, one stage call each (labels, judge,
label_queue); registered on the main app by `cli/app.py`. Each reads the existing store (`--db`,
else the default store)."""

from __future__ import annotations

import functools
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Literal

import typer

from calibrate.cli import console
from calibrate.cli.common import exit_if_interrupted, interruptible, now
from calibrate.cli.options import Db, Json, Strict, TiersPath, existing_store, out_file

# --- labels and sample: one self-contained block (its imports are local so it merges cleanly) --
labels_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,  # plain Click help, as the main app (cli/app.py)
    help="Ground truth: import labels, score answers against references, ask an LLM judge, "
    "see what is labelled.",
)

LabelTiers = Annotated[
    Path | None,
    typer.Option(
        "--tiers",
        help="tiers.yaml: labels may name only its tiers (default: every tier with a stored "
        "answer).",
    ),
]
# labels.scorers.Kind (a test keeps them equal; that module loads when a command runs)
ScorerKind = Literal["exact", "normalized", "choice", "numeric", "regex", "json"]


def _tier_names(path: Path | None) -> tuple[str, ...] | None:
    from calibrate.config.tiers import load_tiers

    return load_tiers(path).names if path is not None else None


@labels_app.command("import")
def labels_import_cmd(
    file: Annotated[
        Path, typer.Argument(help="Labels: .csv, .jsonl(.gz) or .parquet, long or wide.")
    ],
    db: Db = None,
    tiers: LabelTiers = None,
    source: Annotated[
        Literal["human", "reference", "judge"],
        typer.Option("--source", help="Source of rows without a `source` column."),
    ] = "human",
    strict: Strict = False,
    as_json: Json = False,
) -> None:
    """Import labels from a CSV, JSONL or Parquet file; bad rows are rejected with their line.

    One label per row (`request_id, tier` or `answer`, `score`), or the filled-in sheet of
    `calibrate sample` (one `score_<tier>` column per tier). Bad rows are kept in the table
    `label_rejects` with their line, field and reason while the good rows are stored.

    Conflicts: per request × tier, human labels win over reference ones, which win over judge
    ones; within one source the newest (`labeled_at`, else import time) wins.

    Example:

    \b
        calibrate labels import review.csv --db .calibrate/calibrate.duckdb
    """
    from calibrate.labels import stage as labels
    from calibrate.store import Store

    with Store.open(existing_store(db)) as store:
        summary = labels.import_labels(
            store, file, tiers=_tier_names(tiers), source=source, strict=strict, clock=now
        )
    if as_json:
        console.print_json(asdict(summary))
    else:
        console.label_import_summary(summary)


@labels_app.command("score")
def labels_score_cmd(
    db: Db = None,
    tiers: LabelTiers = None,
    scorers: Annotated[
        Path | None,
        typer.Option("--scorers", help="scorers.yaml: a scorer globally and per app."),
    ] = None,
    scorer: Annotated[
        ScorerKind | None,
        typer.Option("--scorer", help="One scorer for every app."),
    ] = None,
    as_json: Json = False,
) -> None:
    """Score every tier's answer against the request's reference (labels with source=reference).

    Scorers: exact, normalized (the default), choice, numeric, regex, json; chosen per app in
    scorers.yaml, or one for all with --scorer.

    Example:

    \b
        calibrate labels score --scorers scorers.yaml
    """
    from calibrate.labels import scorers as scoring
    from calibrate.labels import stage as labels
    from calibrate.store import Store

    if scorers is not None and scorer is not None:
        raise typer.BadParameter("give --scorers or --scorer, not both", param_hint="--scorer")
    config = (
        scoring.load_scorers(scorers)
        if scorers is not None
        else scoring.ScorersConfig(default=scoring.ScorerSpec(kind=scorer or "normalized"))
    )
    with Store.open(existing_store(db)) as store:
        summary = labels.score_references(store, config, tiers=_tier_names(tiers), clock=now)
    if as_json:
        console.print_json(asdict(summary))
    else:
        console.label_score_summary(summary)


def _price_pair(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter("expected IN,OUT USD per Mtok, e.g. 2.5,10") from None
    if low < 0 or high < 0:
        raise typer.BadParameter("prices must be ≥ 0")
    return low, high


@labels_app.command("judge")
def labels_judge_cmd(
    judge: Annotated[
        str,
        typer.Option(
            "--judge",
            metavar="TIER_OR_URL",
            help="A tier of tiers.yaml, or an OpenAI-compatible base URL (with --judge-model).",
        ),
    ],
    judge_model: Annotated[
        str | None, typer.Option("--judge-model", help="Model of a --judge URL.")
    ] = None,
    judge_key_env: Annotated[
        str | None,
        typer.Option("--judge-key-env", help="Variable holding the API key of a --judge URL."),
    ] = None,
    judge_price: Annotated[
        str | None,
        typer.Option(
            "--judge-price",
            metavar="IN,OUT",
            help="USD per Mtok of a --judge URL (default: the genai-prices table).",
        ),
    ] = None,
    tiers: TiersPath = Path("tiers.yaml"),
    db: Db = None,
    tier: Annotated[
        list[str] | None,
        typer.Option(
            "--tier",
            metavar="TIER",
            help="Judge only this tier's answers (repeatable; default all).",
        ),
    ] = None,
    sample: Annotated[
        int, typer.Option("--sample", min=1, help="Uniform random sample of N requests.")
    ] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sample.")] = 0,
    max_cost_usd: Annotated[
        float | None,
        typer.Option("--max-cost-usd", min=0.0, help="Stop before this run's spend would pass X."),
    ] = None,
    retry_failed: Annotated[
        bool,
        typer.Option("--retry-failed", help="Ask again where a call failed or was unparsable."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and its estimated cost; call nothing.")
    ] = False,
    as_json: Json = False,
) -> None:
    """An LLM judge scores tier answers (labels with source=judge), through the replay engine.

    Each answer is judged against the request's reference, else against the premium tier's
    answer. Calls are cached, resumable and capped by --max-cost-usd; unreadable replies are
    recorded as errors, not scores. When humans labelled the same answers, the judge's agreement
    and miss rate are reported with 95% intervals.

    Example:

    \b
        calibrate labels judge --judge large --tiers tiers.yaml --sample 200 --max-cost-usd 2
    """
    from calibrate.config.tiers import load_tiers
    from calibrate.labels import judge as judging
    from calibrate.records.replay import Selection
    from calibrate.report.label_report import agreement_line
    from calibrate.store import Store

    tiers_config = load_tiers(tiers)
    judge_tier = judging.judge_tier(
        tiers_config,
        judge,
        model=judge_model,
        api_key_env=judge_key_env,
        price=_price_pair(judge_price),
    )
    judged = tuple(tier) if tier else tiers_config.names
    judging.check_judge(tiers_config, judge_tier, judged)
    selection = Selection(sample, seed)
    with Store.open(existing_store(db), read_only=dry_run) as store:
        if dry_run:
            plan = judging.plan_judge(
                store,
                tiers_config,
                judge_tier,
                selection,
                judged=judged,
                retry_failed=retry_failed,
                clock=now,
            )
            console.print_json(asdict(plan)) if as_json else console.judge_plan(plan)
            return
        summary = interruptible(
            "judge",
            functools.partial(
                judging.judge_answers,
                store,
                tiers_config,
                judge_tier,
                selection,
                judged=judged,
                max_cost_usd=max_cost_usd,
                retry_failed=retry_failed,
            ),
        )
    if as_json:
        console.print_json(asdict(summary))
    else:
        console.judge_summary(summary, agreement_line(summary.agreement))
    judging.raise_if_paused(summary)
    exit_if_interrupted(summary.stopped)


@labels_app.command("status")
def labels_status_cmd(
    db: Db = None,
    tiers: LabelTiers = None,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the report's Labels section (Markdown).")
    ] = False,
    as_json: Json = False,
) -> None:
    """What is labelled per tier, app and region, and which requests no estimate can use.

    Also the labelling queues, and the judge's cost and agreement with humans.

    Example:

    \b
        calibrate labels status --tiers tiers.yaml
    """
    from calibrate.labels import stage as labels
    from calibrate.report.label_report import agreement_line, coverage_markdown
    from calibrate.store import Store

    with Store.open(existing_store(db), read_only=True) as store:
        coverage = labels.label_status(store, tiers=_tier_names(tiers))
    if as_json:
        console.print_json(asdict(coverage))
    elif markdown:
        print(coverage_markdown(coverage), end="")
    else:
        console.coverage_tables(coverage, agreement_line(coverage.agreement))


def _routing_design(
    routing: Path | None, given: list[str] | None
) -> tuple[dict[str, float], tuple[tuple[str, str], ...]]:
    """escalate_below per cheap tier and the keyword rules (pattern, tier): from a cascade or
    hybrid routing.yaml, then --threshold TIER=VALUE."""
    from calibrate.config.routing import load_routing

    found: dict[str, float] = {}
    rules: tuple[tuple[str, str], ...] = ()
    if routing is not None:
        config = load_routing(routing)
        if config.strategy not in ("cascade", "hybrid"):
            raise typer.BadParameter(
                f"{routing} is a {config.strategy!r} policy; only a cascade or a hybrid has "
                "thresholds",
                param_hint="--routing",
            )
        found = {t.name: t.escalate_below for t in config.tiers if t.escalate_below is not None}
        rules = tuple((r.pattern, r.tier) for r in config.rules if r.pattern is not None)
    for item in given or []:
        name, sep, value = item.partition("=")
        try:
            found[name.strip()] = float(value)
        except ValueError:
            raise typer.BadParameter(
                f"{item!r}: expected TIER=VALUE, e.g. small=0.73", param_hint="--threshold"
            ) from None
        if not sep or not name.strip():
            raise typer.BadParameter(f"{item!r}: expected TIER=VALUE", param_hint="--threshold")
    return found, rules


def sample_cmd(
    n: Annotated[int, typer.Option("--n", min=1, help="How many requests to label.")],
    out: Annotated[Path, typer.Option("--out", help="The review sheet to write (CSV).")],
    tiers: TiersPath = Path("tiers.yaml"),
    db: Db = None,
    uniform_share: Annotated[
        float,
        typer.Option(
            "--uniform-share", help="Share of N drawn uniformly at random (at least 2/3)."
        ),
    ] = 0.7,
    routing: Annotated[
        Path | None,
        typer.Option(
            "--routing",
            help="A cascade or hybrid routing.yaml: its thresholds (and keyword rules) define"
            " `kept`.",
        ),
    ] = None,
    threshold: Annotated[
        list[str] | None,
        typer.Option(
            "--threshold", metavar="TIER=VALUE", help="A cheap tier's threshold (repeatable)."
        ),
    ] = None,
    near_share: Annotated[
        float,
        typer.Option(
            "--near-share", help="Kept requests closest above a threshold: this share of them."
        ),
    ] = 0.1,
    long_input_tokens: Annotated[
        int | None,
        typer.Option("--long-input-tokens", min=1, help="Inputs this long are complex."),
    ] = None,
    keyword: Annotated[
        list[str] | None,
        typer.Option(
            "--keyword",
            metavar="PATTERN",
            help="Prompts matching this pattern are complex (RE2 syntax, as in rules.yaml; "
            "case-insensitive; repeatable).",
        ),
    ] = None,
    intent: Annotated[
        list[str] | None,
        typer.Option(
            "--intent",
            metavar="INTENT",
            help="Requests with this metadata.intent are complex (repeatable).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sample.")] = 0,
    as_json: Json = False,
) -> None:
    """Write a labelling queue (CSV) of N requests for humans to score, stratified.

    Strata: uniform random (at least 2/3 of N, the sample certification relies on), kept
    requests just above a threshold, and kept requests that look complex. Each row carries its
    inclusion probability; `labels import` stores 1/π as the label's weight.

    Example:

    \b
        calibrate sample --n 300 --routing out/routing.yaml --intent billing_dispute --out review.csv
    """
    from calibrate.config.tiers import load_tiers
    from calibrate.labels import queue as label_queue
    from calibrate.store import Store

    out_file(out, "review.csv")
    thresholds, rules = _routing_design(routing, threshold)
    design = label_queue.Design(
        n=n,
        uniform_share=uniform_share,
        thresholds=thresholds,
        rules=rules,
        near_share=near_share,
        long_input_tokens=long_input_tokens,
        keywords=tuple(keyword or ()),
        intents=tuple(intent or ()),
    )
    with Store.open(existing_store(db)) as store:
        summary = label_queue.sample(store, load_tiers(tiers), design, out, seed=seed, clock=now)
    if as_json:
        console.print_json(asdict(summary))
    else:
        console.sample_summary(summary)


# --- end of labels and sample ------------------------------------------------------------------
