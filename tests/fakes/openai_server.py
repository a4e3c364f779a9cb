"""A scripted OpenAI-compatible server speaking the real Chat Completions wire format.

Tests give it a *script*: a function that looks at the request (messages, tools
offered) and returns what the model should answer. The real ``openai`` client
talks to it over HTTP on 127.0.0.1, so streaming, tool-call deltas, usage and
error handling are exercised exactly as they are against a real endpoint.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.loopback import serve_on_loopback

__all__ = ["Error", "FakeOpenAI", "Hang", "Raw", "Reply", "ToolCall", "image_urls", "last_user_text"]


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str = ""


@dataclass(frozen=True)
class Reply:
    """What the fake model answers: text, tool calls, or both."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    delay: float = 0.0  # seconds before the first byte
    chunk_delay: float = 0.0  # seconds between streamed chunks
    prompt_tokens: int = 11
    completion_tokens: int = 7
    stall: bool = False  # streamed: after the text, say nothing more (no finish, no [DONE]) until the client gives up


@dataclass(frozen=True)
class Error:
    """An HTTP error in the OpenAI error format."""

    status: int
    message: str = "scripted error"
    retry_after_ms: int | None = None


@dataclass(frozen=True)
class Hang:
    """Never answer (until the client gives up, or the test ends).

    ``headers``: first send ``200`` and the event-stream headers, then say nothing."""

    seconds: float = 3600.0
    headers: bool = False


@dataclass(frozen=True)
class Raw:
    """Any body with any status, as a proxy's error page or a wrong base URL would answer."""

    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"  # empty: no Content-Type header
    status: int = 200


Answer = Reply | Error | Hang | Raw
Script = Callable[[dict[str, Any]], Answer | Awaitable[Answer]]


def last_user_text(request: dict[str, Any]) -> str:
    for message in reversed(request.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "".join(part.get("text", "") for part in content)
            return str(content or "")
    return ""


def image_urls(request: dict[str, Any], *, last: bool = True) -> list[str]:
    """The image parts' URLs (``data:`` URLs for bytes) of the request's last user message, or of every
    message with ``last=False``, in order: what the model is shown."""
    messages = [m for m in request.get("messages", []) if m.get("role") == "user"]
    urls = []
    for message in messages[-1:] if last else messages:
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            if part.get("type") == "image_url":
                urls.append(part["image_url"]["url"])
    return urls


def tool_results(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool-result messages at the end of the conversation (after the last assistant call)."""
    out: list[dict[str, Any]] = []
    for message in reversed(request.get("messages", [])):
        if message.get("role") != "tool":
            break
        out.append(message)
    return list(reversed(out))


def offered_tools(request: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in request.get("tools", []) or []]


def _default_script(request: dict[str, Any]) -> Answer:
    return Reply(text=f"echo: {last_user_text(request)}")


@dataclass
class FakeOpenAI:
    """Run with ``async with FakeOpenAI(script) as fake:``; ``fake.base_url`` ends in ``/v1``."""

    script: Script = _default_script
    requests: list[dict[str, Any]] = field(default_factory=list)
    embedding_dim: int = 8
    embeddings_error: Error | Raw | None = None  # set: /v1/embeddings answers with this
    stalls: list[float] = field(default_factory=list)  # time.monotonic() when each scripted silence began
    authorizations: list[tuple[str, str]] = field(default_factory=list)  # (path, Authorization header) per request
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None
    base_url: str = ""

    async def __aenter__(self) -> FakeOpenAI:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        self._runner, base = await serve_on_loopback(app)
        self.base_url = f"{base}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if "messages" in r]

    @property
    def embedding_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if "input" in r]

    async def _answer(self, body: dict[str, Any]) -> Answer:
        result = self.script(body)
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            result = await result  # type: ignore[misc]
        return result  # type: ignore[return-value]

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.authorizations.append((request.path, request.headers.get("Authorization", "")))
        answer = await self._answer(body)
        if isinstance(answer, Raw):
            return _raw(answer)
        if isinstance(answer, Hang):
            hanging: web.StreamResponse | None = None
            if answer.headers:
                hanging = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await hanging.prepare(request)
            self.stalls.append(time.monotonic())
            await asyncio.sleep(answer.seconds)
            return hanging or web.Response(status=504)
        if isinstance(answer, Error):
            headers = {}
            if answer.retry_after_ms is not None:
                headers["retry-after-ms"] = str(answer.retry_after_ms)
            payload = {"error": {"message": answer.message, "type": "scripted", "code": None}}
            return web.json_response(payload, status=answer.status, headers=headers)
        if answer.delay:
            await asyncio.sleep(answer.delay)
        completion_id = f"chatcmpl-{next(self._ids)}"
        calls = [(c.id or f"call_{next(self._ids)}", c.name, json.dumps(c.arguments)) for c in answer.tool_calls]
        finish = "tool_calls" if calls else "stop"
        usage = {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens,
        }
        model = body.get("model", "fake-model")
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": answer.text or None}
            if calls:
                message["tool_calls"] = [
                    {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
                    for cid, name, args in calls
                ]
            return web.json_response(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": usage,
                }
            )

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(delta: dict[str, Any] | None, finish_reason: str | None = None, **extra: Any) -> None:
            chunk: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }
            chunk.update(extra)
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            if answer.chunk_delay:
                await asyncio.sleep(answer.chunk_delay)

        await send({"role": "assistant", "content": ""})
        for piece in _pieces(answer.text):
            await send({"content": piece})
        for index, (cid, name, args) in enumerate(calls):
            await send(
                {
                    "tool_calls": [
                        {"index": index, "id": cid, "type": "function", "function": {"name": name, "arguments": ""}}
                    ]
                }
            )
            for fragment in _pieces(args, size=7):
                await send({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
        if answer.stall:
            self.stalls.append(time.monotonic())
            await asyncio.sleep(3600)
        await send({}, finish)
        if (body.get("stream_options") or {}).get("include_usage"):
            await send(None, usage=usage)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        self.authorizations.append((request.path, request.headers.get("Authorization", "")))
        if isinstance(self.embeddings_error, Raw):
            return _raw(self.embeddings_error)
        if self.embeddings_error is not None:
            error = self.embeddings_error
            payload = {"error": {"message": error.message, "type": "scripted", "code": None}}
            return web.json_response(payload, status=error.status)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for i, text in enumerate(inputs):
            vector = _embed(str(text), self.embedding_dim)
            if body.get("encoding_format") == "base64":
                encoded: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            else:
                encoded = vector
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        tokens = sum(len(str(t).split()) for t in inputs)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model", "fake-embedding"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


def _raw(answer: Raw) -> web.Response:
    headers = {"Content-Type": answer.content_type} if answer.content_type else {}
    return web.Response(body=answer.body, status=answer.status, headers=headers)


def _pieces(text: str, size: int = 4) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _embed(text: str, dim: int) -> list[float]:
    """A deterministic bag-of-words embedding: texts sharing words are close."""
    vector = [0.0] * dim
    for word in text.lower().split():
        vector[hash_word(word) % dim] += 1.0
    norm = sum(v * v for v in vector) ** 0.5 or 1.0
    return [v / norm for v in vector]


def hash_word(word: str) -> int:
    return sum((i + 1) * ord(c) for i, c in enumerate(word))
