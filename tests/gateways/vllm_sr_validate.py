"""Run `vllm-sr config validate --config F` for each F in one process (the model catalog it loads
is cached across calls); print one JSON line {file: exit code}."""

import json
import sys

from cli.main import main

codes = {}
for path in sys.argv[1:]:
    try:
        main(["config", "validate", "--config", path], standalone_mode=False)
        codes[path] = 0
    except SystemExit as exc:
        codes[path] = exc.code if isinstance(exc.code, int) else 1
print(json.dumps(codes))
