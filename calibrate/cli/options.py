"""The options commands share, where data lives, and option groups.

Where data lives, one rule for every command: `--db FILE` names the store; without it the store is
`.calibrate/calibrate.duckdb` in the working directory (`DEFAULT_DB`). `ingest` creates it; every
other command reads a store that must exist. The one exception: `sweep`, `evaluate` and `monitor`
given LOGS and no `--db` ingest them into an in-memory store and leave the default store alone.

An option group turns several options into one typed value: a command declares
`objective: Objective = grouped(objective_options)` and `with_option_groups` puts the options of
`objective_options` in its place on the command line, then calls the command with what
`objective_options` returned.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import typer

from calibrate.errors import DataError, OutputError
from calibrate.formats.detect import NAMES as FORMAT_NAMES
from calibrate.records.engine import LOCAL_MASTER, Engine

DEFAULT_DB = Path(".calibrate") / "calibrate.duckdb"
MEMORY = ":memory:"

Logs = Annotated[
    list[Path],
    typer.Argument(
        metavar="LOGS", help="Log files or folders (.jsonl, .jsonl.gz, .parquet, .csv)."
    ),
]
Db = Annotated[
    Path | None,
    typer.Option(
        "--db",
        show_default=False,
        help=f"DuckDB store file (default: {DEFAULT_DB}; sweep, evaluate and monitor given LOGS "
        "and no --db work in memory).",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
Strict = Annotated[
    bool, typer.Option("--strict", help="Any bad row is an error and nothing is written.")
]
TiersPath = Annotated[
    Path, typer.Option("--tiers", help="tiers.yaml: the model tiers, cheapest first.")
]
ExportTiers = Annotated[
    Path | None,
    typer.Option("--tiers", help="tiers.yaml: maps the models of gateway exports to tiers."),
]


def _log_format(value: str) -> str:
    if value not in FORMAT_NAMES:
        raise typer.BadParameter(f"use one of: {', '.join(FORMAT_NAMES)}")
    return value


LogFormat = Annotated[
    str,
    typer.Option(
        "--format",
        callback=_log_format,
        help=f"Log format: auto (detected from each file's content) or, for every file, one of "
        f"{', '.join(FORMAT_NAMES[1:])}.",
    ),
]


class EngineKind(StrEnum):
    """`--engine`: where the sweep computes its outcome relation and aggregates."""

    duckdb = "duckdb"
    spark = "spark"


EngineOption = Annotated[
    EngineKind,
    typer.Option(
        "--engine",
        help="Where the sweep's aggregates are computed: duckdb (the store) or spark (PySpark "
        "over canonical Parquet given as LOGS: paths, globs or URLs such as s3a://bucket/path; needs "
        "the `spark` extra and Java 17+).",
    ),
]
SparkMaster = Annotated[
    str | None,
    typer.Option(
        "--spark-master",
        metavar="URL",
        show_default=False,
        help=f"Spark master with --engine spark (default {LOCAL_MASTER}: this machine; "
        "spark://HOST:7077, yarn, k8s://HOST:PORT: a cluster).",
    ),
]


def engine_of(kind: EngineKind, master: str | None, logs: Sequence[str] | None) -> Engine:
    """The engine asked for: spark reads LOGS (canonical Parquet, as given) and needs them;
    --spark-master only goes with --engine spark."""
    if kind is EngineKind.duckdb:
        if master is not None:
            raise typer.BadParameter("needs --engine spark", param_hint="--spark-master")
        return Engine()
    if not logs:
        raise DataError(
            "--engine spark reads canonical Parquet, and no LOGS were given",
            hint="Pass the Parquet as LOGS: a path, a glob or a URL, e.g. "
            "calibrate sweep 's3a://bucket/logs/2026-11/*.parquet' --engine spark --tiers tiers.yaml",
        )
    return Engine("spark", master or LOCAL_MASTER, tuple(logs))


def store_file(db: Path | None) -> Path:
    """The store `ingest` writes to (created when missing)."""
    return db if db is not None else DEFAULT_DB


def existing_store(db: Path | None) -> Path:
    """The store a command reads: --db, else the default store; it must exist."""
    path = store_file(db)
    if not path.is_file():
        given = "" if db is not None else " (the default store: no --db was given)"
        raise DataError(
            f"no store at {path}{given}",
            hint="Run `calibrate ingest LOGS` first (add --db FILE to use another store), or pass "
            "--db with the store you ingested into.",
        )
    return path


def store_for_logs(db: Path | None, logs: Sequence[Path] | None) -> Path | str:
    """The store of `sweep`, `evaluate` and `monitor`: given LOGS, --db or else an in-memory store
    seeded from them; without LOGS, the existing store (--db, else the default one)."""
    if logs:
        return db if db is not None else MEMORY
    return existing_store(db)


# --- where outputs go: checked before any work, so a long run never ends in a bad path ----------


def out_folder(path: Path) -> Path:
    """`--out` of sweep and monitor: a folder (created when missing); no file in its way."""
    if path.exists() and not path.is_dir():
        raise OutputError(
            f"--out {path} is a file; it must name a folder for the outputs",
            hint=f"Pass a folder (e.g. --out {path.parent / (path.stem + '-out')}) or move the file.",
        )
    _no_file_above(path)
    return path


def out_file(path: Path, name: str) -> Path:
    """`--out` of sample and export: a file (replaced when present), not a folder; `name` is the
    usual file name, for the hint."""
    if path.is_dir():
        raise OutputError(
            f"--out {path} is a folder; it must name the file to write",
            hint=f"Pass a file, e.g. --out {path / name}",
        )
    _no_file_above(path)
    return path


def _no_file_above(path: Path) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(
                    f"--out {path}: {parent} is a file, not a folder",
                    hint="Pass an --out path whose folders are folders.",
                )
            return


# --- option groups ---------------------------------------------------------------------------

T = TypeVar("T")


@dataclass(frozen=True)
class OptionGroup:
    """Stands as the default of a command parameter whose value `parse` builds from its own
    options."""

    parse: Callable[..., Any]


def grouped(parse: Callable[..., T]) -> T:
    """`objective: Objective = grouped(objective_options)`: the parameter's value is what `parse`
    returns from its options (typed as that value, so mypy checks the pairing)."""
    return cast(T, OptionGroup(parse))


def _parameters(function: Callable[..., Any]) -> list[inspect.Parameter]:
    """The function's parameters with their annotations evaluated (not its return annotation,
    which may name a type imported only for type checking: domain modules load lazily)."""
    evaluated = []
    for param in inspect.signature(function).parameters.values():
        annotation = param.annotation
        if isinstance(param.default, OptionGroup):
            annotation = inspect.Parameter.empty
        elif isinstance(annotation, str):
            annotation = eval(annotation, function.__globals__)  # what `inspect` does for eval_str
        evaluated.append(param.replace(annotation=annotation))
    return evaluated


def with_option_groups(command: Callable[..., T]) -> Callable[..., T]:
    """The command with each `grouped(parse)` parameter replaced, where it stands, by the options
    of `parse` (all keyword-only: Click passes them by name)."""
    flat: list[inspect.Parameter] = []
    groups: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {}
    for param in _parameters(command):
        if not isinstance(param.default, OptionGroup):
            flat.append(param)
            continue
        options = _parameters(param.default.parse)
        groups[param.name] = (param.default.parse, tuple(option.name for option in options))
        flat.extend(options)
    names = [param.name for param in flat]
    if len(set(names)) != len(names):
        raise TypeError(f"{command.__name__}: an option group repeats an option name")

    @functools.wraps(command)
    def run(**given: Any) -> T:
        for name, (parse, options) in groups.items():
            given[name] = parse(**{option: given.pop(option) for option in options})
        return command(**given)

    flat = [param.replace(kind=inspect.Parameter.KEYWORD_ONLY) for param in flat]
    run.__signature__ = inspect.Signature(flat)  # type: ignore[attr-defined]
    run.__annotations__ = {param.name: param.annotation for param in flat}
    return run
