"""docs/architecture.md stays true: its layer list is the import-linter contract, its module table
lists exactly the modules that exist, and no module sits outside a package but the allowed few."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "architecture.md").read_text()
TOP_LEVEL = {"__init__.py", "__main__.py", "errors.py", "pipeline.py"}


def _contract_layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    return layers


def _doc_layers() -> list[str]:
    block = re.search(r"```layers\n(.*?)```", DOC, re.S)
    assert block, "docs/architecture.md has no ```layers block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def _modules() -> set[str]:
    package = ROOT / "calibrate"
    return {
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if p.name != "__init__.py" and p.relative_to(package).as_posix() != "__main__.py"
    }


def test_the_documented_layers_are_the_enforced_contract():
    assert _doc_layers() == _contract_layers()


def test_every_package_is_in_a_layer_or_named_outside_them():
    packages = {p.parent.name for p in (ROOT / "calibrate").glob("*/__init__.py")}
    layered = {
        name.strip().removeprefix("calibrate.")
        for layer in _contract_layers()
        for name in layer.split("|")
    }
    assert packages - layered == {"demo"}


def test_the_module_table_lists_exactly_the_modules():
    documented = set(re.findall(r"^\| `([a-z_/]+\.py)` \|", DOC, re.M))
    assert documented == _modules()


def test_no_module_outside_a_package_but_the_entry_points():
    top = {p.name for p in (ROOT / "calibrate").glob("*.py")}
    assert top == TOP_LEVEL
