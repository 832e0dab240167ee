"""Shared fixtures: golden-file comparison (`pytest --update-goldens` rewrites them)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-goldens", action="store_true", help="Rewrite tests/golden/ files.")


@pytest.fixture
def golden(request: pytest.FixtureRequest):
    """golden(name, text): assert text equals tests/golden/name (or rewrite it with --update-goldens)."""
    update = request.config.getoption("--update-goldens")

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        assert path.exists(), f"missing golden file {path}; run pytest --update-goldens"
        expected = path.read_text(encoding="utf-8")
        assert text == expected, (
            f"{name} differs from its golden file; review, then --update-goldens"
        )

    return check


@pytest.fixture(scope="session")
def sample_logs() -> Path:
    return ROOT / "sample_logs"
