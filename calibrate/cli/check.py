"""The `check` command: options parsed, one call (pipeline.check_logs), the report printed;
registered on the main app by app.py."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from calibrate.cli import console
from calibrate.cli.common import now, open_store_for_logs
from calibrate.cli.options import MEMORY, Db, Json, TiersPath, store_for_logs
from calibrate.config.tiers import load_tiers
from calibrate.errors import DataError

if TYPE_CHECKING:  # the sweep's check (scipy) loads with the command, not with every command
    from calibrate.sweep.check import CheckReport


def check_cmd(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Logs to ingest first (into memory unless --db is given)."),
    ] = None,
    tiers: TiersPath = Path("tiers.yaml"),
    db: Db = None,
    as_json: Json = False,
) -> None:
    """What these logs can support before any sweep, and the next command to run.

    Per tier: requests with an attempt (prod / shadow), confidence present and its range, cost
    and latency present, labels by source. Then the share of requests with every tier's answer
    (and with labels), per app and region too, and whether that set is a uniform sample of the
    traffic or selected by production routing.

    Bias rule: each request's production path is the tiers production called on it (kept on the
    cheapest tier, escalated to the next, and so on). A uniform sample has the traffic's mix of paths. The set is
    selected by production routing when its mix differs from the traffic's by more than
    5 points of total-variation distance and a χ² test rejects a uniform sample (p < 0.001);
    e.g. production logs alone, where the premium answer exists only where production escalated.

    Exit codes: 0 a sweep can give a trustworthy answer; 1 it cannot (Error: says why, Hint: the
    next command).

    Example:

    \b
        calibrate check sample_logs/ --tiers sample_logs/tiers.yaml
    """
    from calibrate import pipeline

    config = load_tiers(tiers)
    target = store_for_logs(db, paths)
    with open_store_for_logs(db, paths) as store:
        report = pipeline.check_logs(
            store,
            paths or [],
            config,
            clock=now,
            db=None if target == MEMORY else str(target),
            tiers_file=str(tiers),
        )
    if as_json:
        console.print_json(report.as_dict())
    else:
        _print(report)
    if not report.ok:
        steps = "; then ".join(f"`{s.command}`" for s in report.steps)
        raise DataError("; ".join(report.problems), hint=f"Next: {steps}.")


def _range(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "-"
    scale = "≤ 0, raw logprob" if high <= 0 else "0–1" if low >= 0 and high <= 1 else "other"
    return f"{low:.4g} … {high:.4g} ({scale})"


def _print(report: CheckReport) -> None:
    from calibrate.sweep.check import BIAS_P_VALUE, MAX_MIX_DISTANCE, describe_path

    console.rows_table(
        f"check: {report.requests} requests, tiers {' → '.join(report.tiers)}",
        ("tier", "source", "requests", "confidence", "range", "cost", "latency"),
        [
            (
                u.tier,
                u.source,
                u.requests,
                u.confidence_present,
                _range(u.confidence_min, u.confidence_max),
                u.cost_present,
                u.latency_present,
            )
            for u in sorted(report.uses, key=lambda u: (report.tiers.index(u.tier), u.source))
        ],
    )
    labels: list[tuple[object, ...]] = [(t, s, n) for t, s, n in report.labels] or [
        ("(none)", "-", 0)
    ]
    console.rows_table("labels by source", ("tier", "source", "labels"), labels)
    others = [f"{t} ({n})" for t, n in report.found_tiers if t not in report.tiers]
    out = console.out()
    if others:
        out.print(f"Tiers in the logs but not in tiers.yaml: {', '.join(others)}", markup=False)
    cheapest = report.tiers[0] if report.tiers else ""
    for bias in (report.complete, report.labeled):
        share = bias.size / bias.traffic if bias.traffic else 0.0
        verdict = (
            "SELECTED BY PRODUCTION ROUTING (biased)"
            if bias.biased
            else "a fair sample of the traffic by production path"
        )
        out.print(
            f"Requests with {bias.name}: {bias.size} of {bias.traffic} ({share:.1%}); {verdict}; "
            f"mix distance {bias.mix_distance:.3f} (limit {MAX_MIX_DISTANCE}), "
            f"p = {bias.p_value:.2g} (limit {BIAS_P_VALUE})",
            markup=False,
            highlight=False,
        )
    console.rows_table(
        "coverage by production path",
        ("production path", "requests", "every tier's answer", "labelled (weighted)"),
        [
            (describe_path(c.path, cheapest), c.requests, f"{c.in_set:.0f}", f"{lab.in_set:.0f}")
            for c, lab in zip(report.complete.paths, report.labeled.paths, strict=True)
        ],
    )
    console.rows_table(
        "coverage by app and region",
        ("segment", "requests", "every tier's answer", "labelled"),
        [
            (
                f"{s.column}={s.value or '(none)'}",
                s.requests,
                _pct(s.complete, s.requests),
                _pct(s.labeled, s.requests),
            )
            for s in report.segments
        ],
    )
    rate = "unknown" if report.disagreement is None else f"{report.disagreement:.1%}"
    need = "-" if report.labels_needed is None else str(report.labels_needed)
    out.print(
        f"Cheapest vs premium disagreement ({report.disagreement_basis}): {rate}. A certificate at "
        f"ε={report.max_quality_drop:g}, {report.confidence_level:.0%} confidence needs about {need} "
        "uniform labels.",
        markup=False,
        highlight=False,
    )
    for problem in report.problems:
        out.print(f"Problem: {problem}", markup=False, highlight=False)
    for step in report.steps:
        out.print(f"Next: {step.command}  # {step.why}", markup=False, highlight=False)


def _pct(part: int, whole: int) -> str:
    return f"{part} ({part / whole:.0%})" if whole else "0"
