"""A fake OpenAI and Anthropic API on 127.0.0.1, for the real `openai` and `anthropic` clients.

It speaks enough of OpenAI Chat Completions (`POST /v1/chat/completions`) and Anthropic Messages
(`POST /v1/messages`) for their clients and the OpenTelemetry instrumentations around them: a plain
answer, an answer with prompt-cached usage, a streamed answer (server-sent events) and the errors
HTTP 500 and 429. What each answer is follows from the request's first user message:

| message | answer |
|---|---|
| `plain` | 200 with `USAGE["plain"]` |
| `cached` | 200 with `USAGE["cached"]` (cache reads; Anthropic also cache writes) |
| any, with `"stream": true` | a streamed answer with `USAGE["stream"]` (OpenAI: only when `stream_options.include_usage`), its first byte `STREAM_WAIT_S` after the request, as a model's first token comes |
| `fail500` / `fail429` | that HTTP status with the provider's error body (no retry-after) |

The usage below is what a test expects to see stored: `input` counts every input token, cached
ones included (our convention), whatever the provider's own shape.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OPENAI_MODEL = "gpt-4o-mini-2024-07-18"
ANTHROPIC_MODEL = "claude-sonnet-4-5-20250929"
USAGE: dict[str, dict[str, dict[str, int]]] = {
    "openai": {
        "plain": {"input": 120, "output": 30, "read": 0, "write": 0},
        "cached": {"input": 2000, "output": 50, "read": 1536, "write": 0},
        "stream": {"input": 90, "output": 12, "read": 0, "write": 0},
    },
    "anthropic": {
        "plain": {"input": 140, "output": 35, "read": 0, "write": 0},
        "cached": {"input": 3100, "output": 60, "read": 2048, "write": 1024},
        "stream": {"input": 80, "output": 10, "read": 0, "write": 0},
    },
}
STATUS_TEXT = {500: "Internal Server Error", 429: "Too Many Requests"}
STREAM_WAIT_S = 0.25  # before a streamed answer's headers: the wait for the model's first token


def _openai_usage(u: dict[str, int]) -> dict[str, Any]:
    return {
        "prompt_tokens": u["input"],
        "completion_tokens": u["output"],
        "total_tokens": u["input"] + u["output"],
        "prompt_tokens_details": {"cached_tokens": u["read"], "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _anthropic_usage(u: dict[str, int]) -> dict[str, Any]:
    return {  # Anthropic reports uncached input apart from the cached parts
        "input_tokens": u["input"] - u["read"] - u["write"],
        "output_tokens": u["output"],
        "cache_read_input_tokens": u["read"],
        "cache_creation_input_tokens": u["write"],
    }


def _first_text(doc: dict) -> str:
    for m in doc.get("messages", []):
        c = m.get("content")
        if isinstance(c, str):
            return c
        if isinstance(c, list):
            for part in c:
                if isinstance(part, dict) and part.get("type") == "text":
                    return part.get("text", "")
    return ""


class _Handler(BaseHTTPRequestHandler):
    server: FakeLLMServer  # type: ignore[assignment]
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, doc: dict, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, events: Iterator[str]) -> None:
        time.sleep(STREAM_WAIT_S)  # the server's latency, not a test's wait
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in events:
            self.wfile.write(chunk.encode())
        self.wfile.flush()
        self.close_connection = True

    def do_POST(self) -> None:  # noqa: N802
        doc = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        what = _first_text(doc).strip()
        self.server.requests.append((self.path, what))
        if self.path.endswith("/chat/completions"):
            self._openai(doc, what)
        elif self.path.endswith("/messages"):
            self._anthropic(doc, what)
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    # ---- OpenAI Chat Completions -------------------------------------------------------------

    def _openai(self, doc: dict, what: str) -> None:
        if what.startswith("fail"):
            status = int(what[4:])
            kind = "rate_limit_exceeded" if status == 429 else "server_error"
            self._send(status, {"error": {"message": STATUS_TEXT[status], "type": kind, "code": kind}})
            return
        u = USAGE["openai"]["stream" if doc.get("stream") else what if what in USAGE["openai"] else "plain"]
        rid = f"chatcmpl-{what}-{uuid.uuid4().hex[:24]}"
        base = {"id": rid, "created": 1_700_000_000, "model": OPENAI_MODEL, "system_fingerprint": "fp_fake"}
        if not doc.get("stream"):
            message = {"role": "assistant", "content": f"answer to {what}", "refusal": None}
            choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
            self._send(200, {**base, "object": "chat.completion", "choices": [choice],
                             "usage": _openai_usage(u)})  # fmt: skip
            return

        def events() -> Iterator[str]:
            chunk = {**base, "object": "chat.completion.chunk"}
            for delta, finish in (({"role": "assistant", "content": ""}, None), ({"content": "streamed"}, None),
                                  ({}, "stop")):  # fmt: skip
                c = {**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                yield f"data: {json.dumps(c)}\n\n"
            if (doc.get("stream_options") or {}).get("include_usage"):
                yield f"data: {json.dumps({**chunk, 'choices': [], 'usage': _openai_usage(u)})}\n\n"
            yield "data: [DONE]\n\n"

        self._stream(events())

    # ---- Anthropic Messages ------------------------------------------------------------------

    def _anthropic(self, doc: dict, what: str) -> None:
        if what.startswith("fail"):
            status = int(what[4:])
            kind = "rate_limit_error" if status == 429 else "api_error"
            self._send(status, {"type": "error", "error": {"type": kind, "message": STATUS_TEXT[status]}})
            return
        u = USAGE["anthropic"][
            "stream" if doc.get("stream") else what if what in USAGE["anthropic"] else "plain"
        ]
        rid = f"msg_{what}_{uuid.uuid4().hex[:24]}"
        usage = _anthropic_usage(u)
        if not doc.get("stream"):
            self._send(200, {"id": rid, "type": "message", "role": "assistant", "model": ANTHROPIC_MODEL,
                             "content": [{"type": "text", "text": f"answer to {what}"}],
                             "stop_reason": "end_turn", "stop_sequence": None, "usage": usage})  # fmt: skip
            return

        def sse(event: str, data: dict) -> str:
            return f"event: {event}\ndata: {json.dumps({'type': event, **data})}\n\n"

        def events() -> Iterator[str]:
            start_usage = {**usage, "output_tokens": 1}
            yield sse("message_start", {"message": {"id": rid, "type": "message", "role": "assistant",
                      "model": ANTHROPIC_MODEL, "content": [], "stop_reason": None, "stop_sequence": None,
                      "usage": start_usage}})  # fmt: skip
            yield sse("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
            yield sse(
                "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "streamed"}}
            )
            yield sse("content_block_stop", {"index": 0})
            yield sse("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                        "usage": {"output_tokens": usage["output_tokens"]}})  # fmt: skip
            yield sse("message_stop", {})

        self._stream(events())


class FakeLLMServer(ThreadingHTTPServer):
    """`with FakeLLMServer() as llm:` serves on 127.0.0.1 at `llm.url` until the block ends."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, str]] = []
        self._thread = threading.Thread(target=self.serve_forever, name="fake-llm", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)
