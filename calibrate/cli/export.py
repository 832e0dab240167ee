"""The `export` and `serve-gate` commands: options parsed, one stage call each (calibrate.export);
registered on the main app by app.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from calibrate.cli import console
from calibrate.cli.options import Json, out_file
from calibrate.config.routing import load_routing
from calibrate.config.tiers import load_tiers
from calibrate.export import gate, portkey, targets

Routing = Annotated[Path, typer.Argument(help="routing.yaml written by `calibrate sweep`.")]
OptionalTiers = Annotated[
    Path | None,
    typer.Option(
        "--tiers",
        help="tiers.yaml: each tier's confidence method (the scale of its threshold), endpoint and "
        "key variable. Needed for a cascade when routing.yaml does not record the method.",
    ),
]


Target = Literal["vllm-sr", "portkey", "litellm"]  # export.common.TARGETS (a test keeps them equal)


def export_cmd(
    routing: Routing,
    to: Annotated[Target, typer.Option("--to", help="The gateway whose config to write.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Output file (default: beside routing.yaml).")
    ] = None,
    tiers: OptionalTiers = None,
    approximate: Annotated[
        bool,
        typer.Option("--approximate", help="Allow the documented approximations (docs/deploy.md)."),
    ] = False,
    gate_url: Annotated[
        str, typer.Option("--gate-url", help="portkey: where `calibrate serve-gate` listens.")
    ] = portkey.DEFAULT_GATE_URL,
    as_json: Json = False,
) -> None:
    """Write routing.yaml as the gateway's own config, or refuse with the reason.

    Example:

    \b
        calibrate export out/demo/routing.yaml --to portkey --tiers sample_logs/tiers.yaml
    """
    path = (
        out_file(out, targets.DEFAULT_NAMES[to])
        if out
        else routing.parent / targets.DEFAULT_NAMES[to]
    )
    result = targets.export_routing(routing, to, tiers, approximate, gate_url)
    path = targets.write_export(result, path)
    if as_json:
        console.print_json(
            {
                "target": to,
                "file": str(path),
                "exact": result.exact,
                "approximated": result.approximated,
                "not_expressed": result.not_expressed,
            }  # fmt: skip
        )
        return
    for line in result.statement():
        console.out().print(line, markup=False, highlight=False)
    console.outputs_written({to: path})


def serve_gate_cmd(
    routing: Routing,
    tiers: OptionalTiers = None,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0: any free port).")] = 8788,
) -> None:
    """Serve the confidence gate Portkey's guardrails call (the rule of routing.yaml).

    Example:

    \b
        calibrate serve-gate out/demo/routing.yaml --tiers sample_logs/tiers.yaml --port 8788
    """
    rules = gate.gate_rules(load_routing(routing), load_tiers(tiers) if tiers else None)
    gate.serve(rules, host, port, lambda url: console.out().print(url, highlight=False))
