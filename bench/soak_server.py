"""The soak benchmark's scripted model, in its own process (as :mod:`bench.fake_server`).

``python -m bench.soak_server --reply-chars 120 --chunk-delay 0.005``: prints ``{"base_url": ...}``
and answers ``stats``, ``bodies``, ``reset`` and ``attempts`` (requests in all, and per question and
stage) on stdin. It keeps no request bodies, so that 10,000 requests with their history do not pile
up (``stats`` and ``bodies`` see only the last one). A soak question's text starts ``q01234 KIND:``;
the model answers by its kind:

* ``plain``: :func:`answer_text` streamed, 4 characters a chunk;
* ``tool``: a call to ``soak_lookup(question=q01234)``; once the result is in, the answer with it;
* ``r429``: the first request 429 (``retry-after-ms: 50``), then as plain (the openai SDK retries);
* ``r500``: the first request 500, then as plain (the SDK retries after its back-off);
* ``fail``: 500 every time, so the SDK gives up after its retries and the run fails.

Anything else (warm-ups) is answered as :func:`bench.fake_server.reply_text` does.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
from collections import Counter
from typing import Any

from bench.fake_server import answer_commands, reply_text
from tests.fakes.openai_server import Answer, Error, FakeOpenAI, Reply, ToolCall, last_user_text, tool_results

__all__ = ["KINDS", "QUESTION", "SoakScript", "answer_text", "tool_output"]

KINDS = ("plain", "tool", "r429", "r500", "fail")
QUESTION = re.compile(r"\b(q\d{5}) (plain|tool|r429|r500|fail):")


def tool_output(qid: str) -> str:
    """What ``soak_lookup`` returns (bench/soak_tools.py)."""
    return f"ticket for {qid}: open"


def answer_text(qid: str, kind: str, chars: int) -> str:
    """The answer the soak expects for question ``qid`` of ``kind``."""
    return reply_text(f"{qid} with {tool_output(qid)}" if kind == "tool" else qid, chars)


class SoakScript:
    def __init__(self, reply_chars: int, chunk_delay: float) -> None:
        self.chars = reply_chars
        self.delay = chunk_delay
        self.attempts: Counter[str] = Counter()
        self.requests = 0
        self.fake: FakeOpenAI | None = None

    def __call__(self, request: dict[str, Any]) -> Answer:
        self.requests += 1
        if self.fake is not None:
            self.fake.requests.clear()
        text = last_user_text(request)
        found = QUESTION.search(text)
        if found is None:
            return Reply(text=reply_text(text, self.chars), chunk_delay=self.delay)
        qid, kind = found.groups()
        after_tool = bool(tool_results(request))
        key = f"{qid}/{'after_tool' if after_tool else 'first'}"
        self.attempts[key] += 1
        if after_tool:
            return Reply(text=answer_text(qid, kind, self.chars), chunk_delay=self.delay)
        if kind == "fail":
            return Error(500, "scripted fault: this question always fails")
        if kind == "r429" and self.attempts[key] == 1:
            return Error(429, "scripted rate limit", retry_after_ms=50)
        if kind == "r500" and self.attempts[key] == 1:
            return Error(500, "scripted fault: once")
        if kind == "tool":
            return Reply(tool_calls=(ToolCall("soak_lookup", {"question": qid}),), chunk_delay=self.delay)
        return Reply(text=answer_text(qid, kind, self.chars), chunk_delay=self.delay)


async def serve(reply_chars: int, chunk_delay: float) -> None:
    script = SoakScript(reply_chars, chunk_delay)
    async with FakeOpenAI(script) as fake:
        script.fake = fake

        def attempts() -> dict[str, Any]:
            return {"requests": script.requests, "attempts": dict(script.attempts)}

        def reset() -> None:
            script.attempts.clear()
            script.requests = 0

        await answer_commands(fake, {"attempts": attempts}, on_reset=reset)


def main() -> None:
    # A client killed mid-answer (the soak's SIGKILL) makes aiohttp log every stream it was reading.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reply-chars", type=int, default=120)
    parser.add_argument("--chunk-delay", type=float, default=0.005)
    args = parser.parse_args()
    asyncio.run(serve(args.reply_chars, args.chunk_delay))


if __name__ == "__main__":
    main()
