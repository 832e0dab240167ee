"""The command line: the Typer app, its single error boundary, and `main`; each command lives in
its own module (cli/ingest.py, cli/sweep.py, cli/evaluate.py, cli/diff.py, cli/schema.py,
cli/replay.py, cli/replay_merge.py, cli/monitor.py, cli/labels.py, cli/export.py), shared options and where data lives in cli/options.py.

Exit codes: 0 success; 1 a problem the user can fix (`Error:` and `Hint:` on stderr, no traceback);
2 usage error; 3 only with `--check` (`diff`: the change is material; `monitor`: recalibration is
due); 130 `replay` or `labels judge` was interrupted.  Every other exception is a bug and shows a traceback without local variables.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from calibrate import __version__
from calibrate.cli import check as cli_check
from calibrate.cli import console
from calibrate.cli import export as cli_export
from calibrate.cli import labels as cli_labels
from calibrate.cli.diff import diff_cmd
from calibrate.cli.evaluate import evaluate_cmd
from calibrate.cli.ingest import ingest_cmd
from calibrate.cli.monitor import monitor_cmd
from calibrate.cli.replay import replay_cmd
from calibrate.cli.replay_merge import replay_merge_cmd
from calibrate.cli.schema import schema_cmd
from calibrate.cli.sweep import sweep_cmd
from calibrate.errors import CalibrateError


class _Group(TyperGroup):
    """The single error boundary: CalibrateError → `Error:`/`Hint:` on stderr, exit 1."""

    def invoke(self, ctx: Any) -> Any:  # Typer's own (vendored) click.Context
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
    rich_markup_mode=None,  # plain Click help: fits 80 columns, shows choices, wraps paragraphs
)


def _print_version(value: bool) -> None:
    if value:
        print(f"calibrate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Calibrate LLM routing offline: thresholds and cutoffs from your own production logs."""


app.command("ingest")(ingest_cmd)
app.command("sweep")(sweep_cmd)
app.command("evaluate")(evaluate_cmd)
app.command("diff")(diff_cmd)
app.command("schema")(schema_cmd)
app.command("replay")(replay_cmd)
app.command("replay-merge")(replay_merge_cmd)
app.command("monitor")(monitor_cmd)
app.add_typer(cli_labels.labels_app, name="labels")
app.command("sample")(cli_labels.sample_cmd)
app.command("export")(cli_export.export_cmd)
app.command("check")(cli_check.check_cmd)
app.command("serve-gate")(cli_export.serve_gate_cmd)


def main() -> None:
    app()
