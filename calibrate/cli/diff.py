"""`calibrate diff`: what changed between two routing.yaml files, as Markdown or JSON; exit 3 with
`--check` when the change is material."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from calibrate.cli.options import Json, grouped, with_option_groups
from calibrate.export.common import TARGETS

if TYPE_CHECKING:
    from calibrate.diff.compare import Materiality


def _non_negative(value: float) -> float:
    if value < 0:
        raise typer.BadParameter("must be ≥ 0")
    return value


def _export_target(value: str | None) -> str | None:
    if value is not None and value not in TARGETS:
        raise typer.BadParameter(f"must be one of {', '.join(TARGETS)}")
    return value


def _bound_option(name: str, help_text: str) -> typer.models.OptionInfo:
    return typer.Option(name, callback=_non_negative, help=help_text)


def materiality_options(
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
) -> Materiality:
    """The smallest changes that count as material."""
    from calibrate.diff.compare import Materiality

    return Materiality(
        min_threshold_change=min_threshold_change,
        min_cutoff_change=min_cutoff_change,
        min_cost_change=min_cost_change,
        min_quality_change=min_quality_change,
        min_escalation_change=min_escalation_change,
        min_latency_change=min_latency_change,
    )


@with_option_groups
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
    materiality: Materiality = grouped(materiality_options),
    export_to: Annotated[
        str | None,
        typer.Option(
            "--export-to",
            callback=_export_target,
            help="Also export both files to this gateway (vllm-sr | portkey | litellm) and "
            "explain the change of the exported file. Never changes the exit code.",
        ),
    ] = None,
    tiers: Annotated[
        Path | None,
        typer.Option(
            "--tiers",
            help="With --export-to: tiers.yaml, each tier's confidence method (the scale of its "
            "threshold), endpoint and key variable.",
        ),
    ] = None,
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
        calibrate diff routing.yaml calibrate-out/routing.yaml --export-to vllm-sr --tiers tiers.yaml
    """
    from calibrate import pipeline

    if tiers is not None and export_to is None:
        raise typer.BadParameter("--tiers is read only with --export-to", param_hint="--tiers")
    result, text = pipeline.diff_routing(
        old, new, materiality, export_to=export_to, tiers=tiers, as_json=as_json
    )
    print(text, end="")
    if check and result.material:
        raise typer.Exit(3)
