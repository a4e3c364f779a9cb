"""The scripted model of the chat benchmarks (Slack, Discord), in its own process: a first-token wait, then a pace.

``python -m bench.chat_model --delay 0.5 --chunk-delay 0.02 --words 60``: starts
:class:`FakeOpenAI` on 127.0.0.1, prints one JSON line ``{"base_url": ...}``, then answers one-line
commands on stdin (the same as :mod:`bench.fake_server`'s, plus ``arrivals``):

* ``stats``: ``{"chat_requests": n, "distinct_bodies": k}`` since the last reset;
* ``bodies``: ``{"bodies": [...]}``, every chat request body since the last reset, in arrival order;
* ``arrivals``: ``{"arrivals": [[tag, monotonic seconds], ...]}``, when each chat request arrived
  (``time.monotonic()``, CLOCK_MONOTONIC: comparable with the other processes' stamps on Linux);
* ``served``: ``{"served": [...]}``, seconds each chat request took to serve, to the end of its stream;
* ``reset``: forget the requests seen so far.

Every answer is ``--words`` words long and streamed as :class:`FakeOpenAI` streams: ``--delay``
seconds after the request, then four characters a chunk with ``--chunk-delay`` seconds between
chunks (0.02 s: 200 characters, about 50 tokens, a second). It starts ``Answer #<tag>:``, where
``<tag>`` is the first ``#word`` of the person's message, so each answer says which message it
answers; tags of one width give answers of one length.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import re
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from bench.common import ModelServer, child_server
from bench.fake_server import answer_commands
from tests.fakes.openai_server import FakeOpenAI, Reply, last_user_text

__all__ = ["CHUNK_DELAY", "DELAY", "WORDS", "add_model_arguments", "chat_model_server", "message_tag", "reply_text"]

DELAY = 0.5  # seconds to the first token
CHUNK_DELAY = 0.02  # seconds between chunks of four characters
WORDS = 60  # words in every answer

FILLER_TEXT = (
    "here is a plain answer that stands in for what a model would write in a team chat "
    "it carries no meaning and only has a realistic length so the words keep coming at a steady pace"
)
FILLER = FILLER_TEXT.split()
_TAG = re.compile(r"#([A-Za-z0-9_-]+)")


def message_tag(text: str) -> str:
    """The first ``#word`` of a message (without the ``#``), or ``none``."""
    found = _TAG.search(text)
    return found.group(1) if found else "none"


def reply_text(user_text: str, words: int) -> str:
    """What the scripted model answers to ``user_text``: ``words`` words, the first two naming its tag."""
    head = ["Answer", f"#{message_tag(user_text)}:"]
    body = list(itertools.islice(itertools.cycle(FILLER), max(0, words - len(head))))
    return " ".join(head + body) + "."


class TimedOpenAI(FakeOpenAI):
    """FakeOpenAI that also records how long it took to serve each request (to the end of its stream)."""

    served: list[float]

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        start = time.monotonic()
        response = await super()._chat(request)
        self.served.append(time.monotonic() - start)
        return response


async def serve(delay: float, chunk_delay: float, words: int) -> None:
    arrivals: list[tuple[str, float]] = []

    def script(request: dict[str, Any]) -> Reply:
        text = last_user_text(request)
        arrivals.append((message_tag(text), time.monotonic()))
        return Reply(text=reply_text(text, words), delay=delay, chunk_delay=chunk_delay)

    fake = TimedOpenAI(script)
    fake.served = []

    def reset() -> None:
        fake.served.clear()
        arrivals.clear()

    async with fake:
        await answer_commands(
            fake, {"arrivals": lambda: {"arrivals": arrivals}, "served": lambda: {"served": fake.served}}, reset
        )


@contextlib.asynccontextmanager
async def chat_model_server(*, delay: float, chunk_delay: float, words: int) -> AsyncIterator[ModelServer]:
    """Run this module's server in a child process for the length of the block."""
    args = [sys.executable, "-m", "bench.chat_model", "--delay", str(delay)]
    args += ["--chunk-delay", str(chunk_delay), "--words", str(words)]
    async with child_server(args, what="model server") as (hello, process):
        yield ModelServer(process, base_url=hello["base_url"])


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The chat benchmarks' common options: the platform, and this model's pace."""
    parser.add_argument("--platform", choices=("slack", "discord"), required=True)
    parser.add_argument("--delay", type=float, default=DELAY, help="model: seconds to the first token")
    parser.add_argument("--chunk-delay", type=float, default=CHUNK_DELAY, help="model: seconds between chunks")
    parser.add_argument("--words", type=int, default=WORDS, help="model: words in every answer")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--delay", type=float, default=DELAY, help="seconds before the first chunk")
    parser.add_argument("--chunk-delay", type=float, default=CHUNK_DELAY, help="seconds between 4-character chunks")
    parser.add_argument("--words", type=int, default=WORDS, help="words in every answer")
    args = parser.parse_args()
    asyncio.run(serve(args.delay, args.chunk_delay, args.words))


if __name__ == "__main__":
    main()
