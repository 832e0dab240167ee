"""`calibrate serve-gate`: the webhook behind Portkey's guardrails, applying routing.yaml's rule.

Portkey's `default.webhook` guardrail POSTs its hook context (`request.json`, `response.json`, ...)
and reads `verdict`; with `deny: true` a false verdict answers 446, which the exported `fallback`
strategy turns into the next target. Two paths:

- `/confidence/<tier>` (output guardrail): the answer's confidence by the tier's own method,
  computed by the same function replay uses (`calls.endpoint`), on routing.yaml's scale; verdict
  `confidence ≥ escalate_below`. No logprobs → false (escalate), as a missing confidence does in
  calibrate.
- `/rule/<i>` (input guardrail): verdict true iff keyword rule i is the first rule whose pattern
  matches (Python `re.search`) the prompt text — the messages' contents joined by newlines, as the
  store builds it.

A stdlib threaded HTTP server; the caller passes host and port (loopback by default).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from calibrate.calls.endpoint import confidence_from_logprobs, parse_completion
from calibrate.config.routing import RoutingConfig
from calibrate.config.tiers import TiersConfig
from calibrate.export.common import keyword_rules, refuse, steps
from calibrate.formats.logprobs import LOGPROB_METHODS
from calibrate.policies.keyword_rules import first_match

MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class GateRules:
    """Per deciding tier (method, scale, escalate_below); the keyword rules' patterns in order."""

    thresholds: dict[str, tuple[str, str, float]]
    patterns: tuple[str, ...]


def gate_rules(config: RoutingConfig, tiers: TiersConfig | None) -> GateRules:
    chain = steps(config, tiers, "portkey")
    for s in chain:
        if s.method not in LOGPROB_METHODS:
            raise refuse(
                "portkey",
                f"tier {s.tier!r} decides on {s.method}; the gate reads the answer's logprobs "
                "and cannot ask the model a second question",
                "Use logprob_mean, logprob_min or first_token for this tier.",
            )
    return GateRules(
        {s.tier: (s.method, s.scale, s.escalate_below) for s in chain},
        tuple(p for _, p, _ in keyword_rules(config)),
    )


def prompt_text(request_json: Any) -> str:
    """The messages' contents joined by newlines (a non-string content as its JSON text)."""
    messages = (request_json or {}).get("messages") or []
    parts = []
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        parts.append(
            "" if content is None else content if isinstance(content, str) else json.dumps(content)
        )
    return "\n".join(parts)


def verdict(rules: GateRules, path: str, context: Any) -> tuple[int, dict]:
    """(HTTP status, body) for one webhook call."""
    parts = path.strip("/").split("/")
    if len(parts) == 2 and parts[0] == "confidence" and parts[1] in rules.thresholds:
        method, scale, tau = rules.thresholds[parts[1]]
        try:
            completion = parse_completion(context["response"]["json"])
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            return 200, {"verdict": False, "data": {"reason": f"no answer to score: {exc}"}}
        value, why = confidence_from_logprobs(method, completion, scale)
        ok = value is not None and not math.isnan(value) and value >= tau
        return 200, {
            "verdict": ok,
            "data": {
                "tier": parts[1],
                "method": method,
                "scale": scale,
                "confidence": value,
                "escalate_below": tau,
                "reason": why,
            },  # fmt: skip
        }
    if len(parts) == 2 and parts[0] == "rule" and parts[1].isdigit():
        k = int(parts[1])
        if k >= len(rules.patterns):
            return 404, {"error": f"no keyword rule {k}"}
        request = context.get("request", {}).get("json") if isinstance(context, dict) else None
        winner = int(first_match(list(rules.patterns), [prompt_text(request)])[0])
        return 200, {"verdict": winner == k, "data": {"rule": k, "first_match": winner}}
    return 404, {"error": f"no gate at {path}"}


def _handler(rules: GateRules) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY_BYTES:
                self._send(413, {"error": "body too large"})
                return
            try:
                context = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._send(400, {"error": "body is not JSON"})
                return
            self._send(*verdict(rules, self.path, context))

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    return Handler


def make_server(rules: GateRules, host: str, port: int) -> ThreadingHTTPServer:
    """The bound server (port 0: any free port, see `.server_port`); call `serve_forever()`."""
    server = ThreadingHTTPServer((host, port), _handler(rules))
    server.daemon_threads = True
    return server


def serve(rules: GateRules, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    """Serve until interrupted; `on_ready` gets the base URL once bound."""
    with make_server(rules, host, port) as server:
        on_ready(f"http://{host}:{server.server_port}")
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
