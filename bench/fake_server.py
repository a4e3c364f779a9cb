"""The scripted model server in its own process, so its work does not share the benchmark's event loop.

``python -m bench.fake_server --reply-chars 200 --chunk-delay 0``: starts :class:`FakeOpenAI` on
127.0.0.1, prints one JSON line ``{"base_url": ...}``, then answers one-line commands on stdin:

* ``stats``: ``{"chat_requests": n, "distinct_bodies": k}`` since the last reset;
* ``bodies``: ``{"bodies": [...]}``, every chat request body since the last reset, in arrival order;
* ``reset``: forget the requests seen so far.

It exits at end of input. The reply is ``re: <last user text>.`` padded to ``--reply-chars``, so
every answer says which message it answers (the many-channels benchmark checks that).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
from collections.abc import Callable
from typing import Any

from tests.fakes.openai_server import FakeOpenAI, Reply, last_user_text

__all__ = ["answer_commands", "reply_text", "request_digest"]

FILLER = (
    "Here is a short, plain answer that stands in for what a model would write in a team chat. "
    "It carries no meaning; it only has a realistic length and is streamed a few characters a chunk. "
)


def reply_text(user_text: str, chars: int) -> str:
    """What the scripted model answers to ``user_text``: exactly ``chars`` characters (at least the prefix)."""
    head = f"re: {user_text}. "
    if len(head) >= chars:
        return head
    body = FILLER * (chars // len(FILLER) + 1)
    return head + body[: chars - len(head)]


def request_digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


async def serve(reply_chars: int, chunk_delay: float) -> None:
    def script(request: dict[str, Any]) -> Reply:
        return Reply(text=reply_text(last_user_text(request), reply_chars), chunk_delay=chunk_delay)

    async with FakeOpenAI(script) as fake:
        await answer_commands(fake)


async def answer_commands(
    fake: FakeOpenAI,
    extra: dict[str, Callable[[], dict[str, Any]]] | None = None,
    on_reset: Callable[[], None] | None = None,
) -> None:
    """Print the server's address, then answer one-line commands on stdin until it closes.

    ``stats``, ``bodies`` and ``reset`` always; ``extra`` adds commands of a server's own.
    """
    print(json.dumps({"base_url": fake.base_url}), flush=True)
    while line := await asyncio.to_thread(sys.stdin.readline):
        command = line.strip()
        chats = fake.chat_requests
        answer: dict[str, Any]
        if command == "stats":
            answer = {"chat_requests": len(chats), "distinct_bodies": len({request_digest(b) for b in chats})}
        elif command == "bodies":
            answer = {"bodies": chats}
        elif command == "reset":
            fake.requests.clear()
            if on_reset is not None:
                on_reset()
            answer = {"ok": True}
        elif extra and command in extra:
            answer = extra[command]()
        else:
            answer = {"error": f"unknown command {command!r}"}
        print(json.dumps(answer), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reply-chars", type=int, default=200)
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    args = parser.parse_args()
    asyncio.run(serve(args.reply_chars, args.chunk_delay))


if __name__ == "__main__":
    main()
