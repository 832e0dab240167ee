"""`calibrate sweep --engine duckdb|spark --spark-master URL`: parsed into one `Engine` value; with
spark, LOGS are the Parquet Spark reads, kept exactly as given (URLs and globs included)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from calibrate.cli.app import app
from calibrate.cli.options import EngineKind, engine_of
from calibrate.errors import DataError
from calibrate.records.engine import LOCAL_MASTER, Engine

runner = CliRunner()


def test_duckdb_is_the_default_engine() -> None:
    assert engine_of(EngineKind.duckdb, None, ["logs/"]) == Engine()
    assert Engine().kind == "duckdb" and not Engine().spark


def test_spark_keeps_urls_and_globs_as_given() -> None:
    lake = ["s3a://bucket/logs/2026-11/*.parquet", "gs://other//double/slash.parquet"]
    engine = engine_of(EngineKind.spark, None, lake)
    assert engine == Engine("spark", LOCAL_MASTER, tuple(lake)) and engine.spark
    assert engine_of(EngineKind.spark, "spark://head:7077", lake).master == "spark://head:7077"


def test_spark_needs_parquet_and_the_master_needs_spark() -> None:
    with pytest.raises(DataError, match="no LOGS"):
        engine_of(EngineKind.spark, None, None)
    with pytest.raises(typer.BadParameter):
        engine_of(EngineKind.duckdb, "local[2]", ["logs/"])
    with pytest.raises(ValueError):
        Engine("spark")
    with pytest.raises(ValueError):
        Engine("duckdb", parquet=("x.parquet",))


def test_the_command_line_refuses_what_it_cannot_run(sample_logs: Path, tmp_path: Path) -> None:
    tiers = str(sample_logs / "tiers.yaml")
    out = str(tmp_path / "out")
    no_logs = runner.invoke(app, ["sweep", "--engine", "spark", "--tiers", tiers, "--out", out])
    assert no_logs.exit_code == 1 and "no LOGS" in no_logs.output
    master = runner.invoke(
        app, ["sweep", "x.parquet", "--spark-master", "local[2]", "--tiers", tiers, "--out", out]
    )
    assert master.exit_code == 2 and "--engine spark" in master.output
    bad = runner.invoke(app, ["sweep", "x.parquet", "--engine", "flink", "--tiers", tiers])
    assert bad.exit_code == 2


def test_spark_without_java_or_pyspark_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import builtins

    from calibrate.errors import ConfigError
    from calibrate.store import spark_engine

    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(spark_engine.shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(ConfigError, match="Java 17") as no_java:
        spark_engine.open_session()
    assert "openjdk-17-jre-headless" in (no_java.value.hint or "")
    monkeypatch.setattr(spark_engine.shutil, "which", lambda *args, **kwargs: "/usr/bin/java")
    real_import = builtins.__import__

    def no_pyspark(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("pyspark"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyspark)
    with pytest.raises(ConfigError, match="PySpark") as no_pyspark_error:
        spark_engine.open_session()
    assert "calibrate[spark]" in (no_pyspark_error.value.hint or "")
