"""Stage: read routing.yaml (and tiers.yaml), export it to one target, write the file.

`export_routing` returns the `Export`; `write_export` writes its text where the user asked (and
nowhere else).
"""

from __future__ import annotations

from pathlib import Path

from calibrate.config.routing import load_routing
from calibrate.config.tiers import load_tiers
from calibrate.errors import ConfigError
from calibrate.export import litellm, portkey, vllm_sr
from calibrate.export.common import TARGETS, Export

DEFAULT_NAMES = {"vllm-sr": "vllm-sr.yaml", "portkey": "portkey.json", "litellm": "litellm.yaml"}


def export_routing(
    routing_path: Path,
    target: str,
    tiers_path: Path | None = None,
    approximate: bool = False,
    gate_url: str = portkey.DEFAULT_GATE_URL,
) -> Export:
    if target not in TARGETS:
        raise ConfigError(
            f"unknown export target {target!r}", hint=f"Use one of {', '.join(TARGETS)}."
        )
    config = load_routing(routing_path)
    tiers = load_tiers(tiers_path) if tiers_path is not None else None
    if target == "vllm-sr":
        return vllm_sr.export(config, tiers, approximate)
    if target == "portkey":
        return portkey.export(config, tiers, approximate, gate_url)
    return litellm.export(config, tiers, approximate)


def write_export(result: Export, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(result.text, encoding="utf-8")
    return out
