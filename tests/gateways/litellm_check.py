"""Run in the LiteLLM virtualenv: build a litellm.Router from an exported config, check that every
fallback names a model group, then apply the thresholds with the snippet of docs/deploy.md against
an OpenAI-compatible server. Prints one JSON object."""

import asyncio
import json
import re
import sys
from pathlib import Path

import litellm
import yaml

config_path, docs_path, prompts_path = sys.argv[1:4]
config = yaml.safe_load(Path(config_path).read_text())
router = litellm.Router(model_list=config["model_list"], **config.get("router_settings", {}))
groups = {m["model_name"] for m in router.get_model_list()}
missing = [
    t
    for fb in router.fallbacks or []
    for src, dst in fb.items()
    for t in [src, *dst]
    if t not in groups
]
docs = Path(docs_path).read_text()
snippet = re.search(r"```python\n(# calibrate-litellm-snippet.*?)```", docs, re.S).group(1)
namespace: dict = {}
exec(snippet, namespace)
prompts = json.loads(Path(prompts_path).read_text())


async def serve_all():
    return [
        (await namespace["answer"](router, [{"role": "user", "content": p}], first="small")).model
        for p in prompts
    ]


print(json.dumps({"groups": sorted(groups), "missing_fallbacks": missing,
                  "served_models": asyncio.run(serve_all())}))  # fmt: skip
