"""A small OpenAI-compatible `/v1/chat/completions` server on loopback, for tests and `make bench`.

Plain asyncio HTTP/1.1 with keep-alive, run in a background thread (`LLMServer().start()`) or as
a process (`python tests/llm_server.py --port 0 --latency-ms 100`, which prints its URL). It answers
deterministically, with logprobs when asked, and can inject latency, errors (429 + Retry-After,
500, malformed JSON, dropped connections) through a `responder` hook. Every call is appended to a
JSONL call log on disk at the moment it is received, with the status it will get, and the
in-flight count per model is tracked (current and maximum).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

VERBALIZED_MARK = "How likely is it that your answer above is correct?"
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
           429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}  # fmt: skip


@dataclass(frozen=True)
class Call:
    """One received chat call."""

    n: int
    model: str
    prompt: str  # content of the first user message
    purpose: str  # "answer", or "confidence" for the verbalized question
    run: str | None  # X-Calibrate-Replay-Run header
    authorization: str | None
    body: dict


@dataclass(frozen=True)
class Reply:
    """What to send: a status, extra headers and a body; `drop` closes without answering."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    latency_s: float | None = None


def error(status: int, message: str, retry_after: str | None = None) -> Reply:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = json.dumps({"error": {"message": message, "type": "test"}}).encode()
    return Reply(status, body, headers)


def _words(seed: str, n: int) -> list[str]:
    digest = hashlib.sha256(seed.encode()).hexdigest()
    return [digest[i * 4 : i * 4 + 4] for i in range(n)]


class LLMServer:
    """Start with `.start()` (background thread); stop with `.stop()`; URL in `.base_url`."""

    def __init__(
        self,
        log_path: Path | None = None,
        *,
        latency_s: tuple[float, float] = (0.0, 0.0),
        logprobs: bool = True,
        seed: int = 0,
        responder: Callable[[Call], Reply | None] | None = None,
        on_call: Callable[[Call], None] | None = None,
    ) -> None:
        self.log_path = log_path
        self.latency_s = latency_s
        self.logprobs = logprobs
        self.responder = responder
        self.on_call = on_call
        self.calls: list[dict] = []
        self.in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # --- lifecycle ---

    def start(self, port: int = 0) -> LLMServer:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", port, backlog=512)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        """Close the listener, cancel open connections, then stop the loop and its thread."""
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- HTTP ---

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                path, headers, body = request
                reply = await self._respond(path, headers, body)
                if reply.drop:
                    break
                writer.write(_encode_reply(reply))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _respond(self, path: str, headers: dict[str, str], raw: bytes) -> Reply:
        if path.rstrip("/") != "/v1/chat/completions":
            return error(404, f"no route {path}")
        try:
            body = json.loads(raw)
        except ValueError:
            return error(400, "body is not JSON")
        call = self._receive(body, headers)
        reply = (self.responder(call) if self.responder else None) or self._answer(call)
        self._log(call, reply)
        if self.on_call is not None:
            self.on_call(call)
        latency = reply.latency_s
        if latency is None:
            with self._lock:
                latency = self._rng.uniform(*self.latency_s)
        try:
            if latency > 0:
                await asyncio.sleep(latency)
        finally:
            with self._lock:
                self.in_flight[call.model] -= 1
        return reply

    def _receive(self, body: dict, headers: dict[str, str]) -> Call:
        messages = body.get("messages") or []
        users = [m.get("content", "") for m in messages if m.get("role") == "user"]
        last = users[-1] if users else ""
        model = str(body.get("model"))
        with self._lock:
            n = len(self.calls) + 1
            self.calls.append({})  # reserve the slot; filled by _log
            self.in_flight[model] = self.in_flight.get(model, 0) + 1
            self.max_in_flight[model] = max(self.max_in_flight.get(model, 0), self.in_flight[model])
        return Call(
            n=n,
            model=model,
            prompt=users[0] if users else "",
            purpose="confidence" if VERBALIZED_MARK in last else "answer",
            run=headers.get("x-calibrate-replay-run"),
            authorization=headers.get("authorization"),
            body=body,
        )

    def _log(self, call: Call, reply: Reply) -> None:
        entry = {
            "n": call.n,
            "model": call.model,
            "prompt": call.prompt,
            "purpose": call.purpose,
            "run": call.run,
            "logprobs": bool(call.body.get("logprobs")),
            "status": 0 if reply.drop else reply.status,
        }
        with self._lock:
            self.calls[call.n - 1] = entry
            if self.log_path is not None:
                with self.log_path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(entry) + "\n")

    def _answer(self, call: Call) -> Reply:
        """A deterministic answer; logprobs when the request asks and the server gives them."""
        if call.purpose == "confidence":
            content, tokens = "0.75", ["0.75"]
        else:
            tokens = _words(call.model + "|" + call.prompt, 3)
            content = " ".join(tokens)
        choice: dict = {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": content},
        }
        if call.body.get("logprobs") and self.logprobs:
            choice["logprobs"] = {
                "content": [
                    {
                        "token": t,
                        "logprob": -((int(t, 16) % 1000) / 1000),
                        "bytes": None,
                        "top_logprobs": [],
                    }  # fmt: skip
                    for t in tokens
                ]
            }
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in call.body["messages"]) // 4
        data = {
            "id": f"chatcmpl-{call.n}",
            "object": "chat.completion",
            "created": 0,
            "model": call.model,
            "choices": [choice],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(tokens),
                "total_tokens": prompt_tokens + len(tokens),
            },
        }
        return Reply(200, json.dumps(data).encode())


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes] | None:
    line = await reader.readline()
    if not line:
        return None
    _, path, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return path, headers, body


def _encode_reply(reply: Reply) -> bytes:
    head = [f"HTTP/1.1 {reply.status} {REASONS.get(reply.status, 'Status')}"]
    headers = {"Content-Type": "application/json", "Content-Length": str(len(reply.body))}
    headers |= reply.headers
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--log", type=Path, default=None)
    args = parser.parse_args()
    latency = args.latency_ms / 1000
    server = LLMServer(args.log, latency_s=(latency, latency)).start(args.port)
    print(server.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
