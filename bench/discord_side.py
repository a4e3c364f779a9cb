"""Discord for the Discord benchmarks, in its own process: FakeDiscord stamping what it sends and what arrives.

``python -m bench.discord_side --channels 100``: starts :class:`TimedDiscord` (a
:class:`tests.fakes.discord_server.FakeDiscord` with 100 guild text channels, 3000..3099, and
its per-channel rate-limit buckets of 5 requests per 5 s), prints one JSON line
``{"api_base": ..., "gateway_url": ..., "token": ...}``, then answers JSON commands on stdin, one
JSON answer a line on stdout:

* ``{"op": "send", "messages": [{"at", "channel", "author", "tag", "text", "expect"}, ...]}``: each
  message is dispatched as a MESSAGE_CREATE mentioning the bot, ``at`` seconds after the command;
  ``expect`` is the answer the bot should show for it;
* ``{"op": "wait", "timeout": s}``: until every sent message's reply shows its expected answer;
* ``{"op": "report"}``: what was sent (``sends``: tag, channel, message id, and the
  ``time.monotonic()`` of the MESSAGE_CREATE's dispatch), every REST call (``rows``), the bot's
  messages, and the 429s served;
* ``{"op": "reset"}``: forget all that (after the bot has gone quiet).

Stamps are ``time.monotonic()`` (CLOCK_MONOTONIC, comparable across processes on Linux): a
MESSAGE_CREATE is stamped just before its frame is written to the gateway socket, a REST call when
its request has been read, before it is handled. A row is ``[stamp, method, route, channel id,
message id, status, id of the message the bot's message replies to, content after the call]``,
``route`` with ids as ``{id}`` (``POST /channels/{id}/messages``); the last three only for the
message routes (create, edit) when they succeed.

The parent's side: :func:`discord_process` runs this module as a child; :func:`see_questions`
reads a report into one :class:`Seen` per question.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bench.chat_model import reply_text
from bench.common import SideProcess, child_server, forbid_non_loopback, json_commands
from tests.fakes.discord_server import ALICE, BOT_TOKEN, CHANNEL_ID, GUILD_ID, THREAD_ID, FakeDiscord, User, _Reply

__all__ = [
    "CREATE",
    "EDIT",
    "HISTORY",
    "DiscordProcess",
    "Question",
    "Seen",
    "author",
    "busiest_second",
    "channel_id",
    "discord_process",
    "routes",
    "see_questions",
]

CREATE = "POST /channels/{id}/messages"
EDIT = "PATCH /channels/{id}/messages/{id}"
HISTORY = "GET /channels/{id}/messages"
_ID = re.compile(r"/\d+")
_MESSAGE = re.compile(r"/channels/(\d+)/messages(?:/(\d+))?")
_CHANNEL = re.compile(r"/channels/(\d+)")


def author(index: int) -> User:
    """Person ``index`` (0: ALICE, the fake's default author; then person01, person02...)."""
    return ALICE if index == 0 else User(id=5100 + index, name=f"person{index:02d}")


# == the Discord side, in its own process ========================================================


class TimedDiscord(FakeDiscord):
    """FakeDiscord that stamps MESSAGE_CREATEs and REST calls and knows which questions are fully answered."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.rows: list[list[Any]] = []
        self.sends: list[dict[str, Any]] = []
        self.dispatch_stamps: dict[str, float] = {}  # message id -> stamp of its MESSAGE_CREATE
        self.waiting: dict[str, str] = {}  # question id -> the answer its reply should show
        self.tasks: set[asyncio.Task[None]] = set()

    def clear(self) -> None:
        self.rows.clear()
        self.sends.clear()
        self.dispatch_stamps.clear()
        self.waiting.clear()
        self.calls.clear()
        self.messages.clear()
        self.history.clear()
        self.reactions.clear()
        self.typing.clear()
        self.rate_limited = 0

    async def _dispatch_locked(self, event: str, data: dict[str, Any]) -> int:
        if event == "MESSAGE_CREATE":
            self.dispatch_stamps[str(data["id"])] = time.monotonic()
        return await super()._dispatch_locked(event, data)

    async def _answer(
        self,
        request: web.Request,
        path: str,
        body: Any,
        files: list[tuple[str, str, bytes]],
        query: dict[str, str],
    ) -> _Reply:
        stamp = time.monotonic()
        reply = await super()._answer(request, path, body, files, query)
        route = f"{request.method} {_ID.sub('/{id}', path)}"
        found = _MESSAGE.fullmatch(path) or _CHANNEL.match(path)
        channel = found.group(1) if found else None
        message_id = found.group(2) if found and found.re is _MESSAGE else None
        row: list[Any] = [stamp, request.method, route, channel, message_id, reply.status, None, None]
        answer = reply.body
        if route in (CREATE, EDIT) and reply.status == 200 and isinstance(answer, dict):
            question = str((answer.get("message_reference") or {}).get("message_id") or "") or None
            content = str(answer.get("content") or "")
            row[4], row[6], row[7] = str(answer["id"]), question, content
            if question is not None and self.waiting.get(question) == content:
                del self.waiting[question]
        self.rows.append(row)
        return reply

    async def send_at(self, base: float, spec: dict[str, Any]) -> None:
        await asyncio.sleep(max(0.0, base + float(spec["at"]) - time.monotonic()))
        message_id = self._snowflake()
        self.waiting[str(message_id)] = str(spec["expect"])
        self.sends.append({"tag": spec["tag"], "channel": spec["channel"], "id": str(message_id)})
        await self.send_message(
            spec["text"], author=author(int(spec["author"])), channel_id=int(spec["channel"]), message_id=message_id
        )

    def report(self) -> dict[str, Any]:
        sends = [s | {"dispatched": self.dispatch_stamps.get(s["id"], math.nan)} for s in self.sends]
        messages = [
            [
                str(channel),
                str(m["id"]),
                str((m.get("message_reference") or {}).get("message_id") or "") or None,
                m["content"],
                len(self.history.get(int(m["id"]), [])),
            ]
            for channel, mine in self.messages.items()
            for m in mine
        ]
        return {"sends": sends, "rows": self.rows, "messages": messages, "rate_limited": self.rate_limited}


async def serve(channels: int, rate_limit: tuple[int, float] | None) -> None:
    """The child: TimedDiscord on 127.0.0.1; JSON commands on stdin, one JSON answer a line on stdout."""
    forbid_non_loopback()
    fake = TimedDiscord(extra_channels=max(0, channels - 2), rate_limit=rate_limit)
    async with fake:
        print(json.dumps({"api_base": fake.api_base, "gateway_url": fake.gateway_url, "token": BOT_TOKEN}), flush=True)

        async def answer(op: str, command: dict[str, Any]) -> dict[str, Any]:
            reply: dict[str, Any] = {"ok": True}
            if op == "send":
                base = time.monotonic()
                reply["base"] = base
                for spec in command["messages"]:
                    task = asyncio.create_task(fake.send_at(base, spec))
                    fake.tasks.add(task)
                    task.add_done_callback(fake.tasks.discard)
            elif op == "wait":
                try:
                    await asyncio.gather(*fake.tasks)
                    await fake.wait_until(lambda: not fake.waiting, float(command["timeout"]), "every answer")
                except TimeoutError as exc:
                    reply = {"ok": False, "error": str(exc)[:500], "unanswered": len(fake.waiting)}
            elif op == "report":
                reply |= fake.report()
            elif op == "reset":
                await asyncio.gather(*fake.tasks)
                fake.clear()
            else:
                reply = {"ok": False, "error": f"unknown op {op!r}"}
            return reply

        await json_commands(answer)


# == the parent's view of Discord ================================================================


@dataclass
class DiscordProcess(SideProcess):
    """TimedDiscord in a child process (this module)."""

    api_base: str
    gateway_url: str
    token: str


@contextlib.asynccontextmanager
async def discord_process(
    channels: int = 100, rate_limit: tuple[int, float] | None = (5, 5.0)
) -> AsyncIterator[DiscordProcess]:
    """The Discord side in a child process for the length of the block."""
    args = [sys.executable, "-m", "bench.discord_side", "--channels", str(channels)]
    args += ["--rate-limit", "off" if rate_limit is None else f"{rate_limit[0]},{rate_limit[1]:g}"]
    async with child_server(args, what="Discord process") as (hello, process):
        yield DiscordProcess(
            process, api_base=hello["api_base"], gateway_url=hello["gateway_url"], token=hello["token"]
        )


def channel_id(index: int) -> int:
    """The ``index``-th guild text channel: 3000, 3001, then the extra ones, 3002... (skipping the thread's 3100)."""
    return CHANNEL_ID + index + (CHANNEL_ID + index >= THREAD_ID)


@dataclass(frozen=True)
class Question:
    """A message mentioning the bot in a channel; the scripted model's answer names its tag."""

    channel: int
    tag: str
    author: int = 0  # see :func:`author`

    @property
    def text(self) -> str:
        """The message as its author wrote it after the mention (what the adapter hands to the core)."""
        return f"question #{self.tag}: what is the status of the release?"

    @property
    def key(self) -> str:
        return f"discord:{GUILD_ID}:{self.channel}"

    def expected(self, words: int) -> str:
        return reply_text(self.text, words)

    def spec(self, words: int, at: float = 0.0) -> dict[str, Any]:
        return {
            "at": at,
            "channel": self.channel,
            "author": self.author,
            "tag": self.tag,
            "text": self.text,
            "expect": self.expected(words),
        }


@dataclass
class Seen:
    """What Discord saw of one question: monotonic stamps, and the bot's messages replying to it."""

    id: str = ""
    channel: str = ""
    dispatched: float = math.nan  # the MESSAGE_CREATE went out
    first_text: float = math.nan  # the first call that put answer text on screen (the POST of the reply)
    complete: float = math.nan  # the call after which the reply showed the whole answer
    replies: list[str] = field(default_factory=list)  # contents of the bot's messages replying to it, now
    posts: int = 0  # successful POSTs of messages replying to it
    edits: int = 0  # successful PATCHes of those messages
    stamps: list[tuple[str, float]] = field(default_factory=list)  # (route, stamp) of each successful call on them

    @property
    def first_visible_s(self) -> float:
        return self.first_text - self.dispatched

    @property
    def complete_s(self) -> float:
        return self.complete - self.dispatched


def see_questions(report: dict[str, Any], expected: dict[str, str]) -> dict[str, Seen]:
    """Each sent question's :class:`Seen`, by tag; ``expected``: tag -> the answer its reply should show."""
    by_id: dict[str, tuple[str, Seen]] = {}
    for send in report["sends"]:
        by_id[send["id"]] = (send["tag"], Seen(send["id"], str(send["channel"]), float(send["dispatched"])))
    for stamp, _method, route, _channel, _mid, status, question, content in report["rows"]:
        if question not in by_id or status != 200:
            continue
        tag, one = by_id[question]
        one.stamps.append((route, stamp))
        if route == CREATE:
            one.posts += 1
        elif route == EDIT:
            one.edits += 1
        if content and math.isnan(one.first_text):
            one.first_text = stamp
        if content == expected.get(tag) and math.isnan(one.complete):
            one.complete = stamp
    for _channel, _mid, question, content, _edits in report["messages"]:
        if question in by_id:
            by_id[question][1].replies.append(content)
    return {tag: one for tag, one in by_id.values()}


def routes(report: dict[str, Any]) -> Counter[str]:
    """REST calls by route and status (``PATCH /channels/{id}/messages/{id} 429``: a 429 served)."""
    return Counter(
        f"{route}" + ("" if status < 300 else f" {status}") for _s, _m, route, _c, _i, status, _q, _t in report["rows"]
    )


def busiest_second(report: dict[str, Any]) -> dict[str, Any]:
    """The most REST calls that arrived within any one second (Discord allows a bot 50 a second in all), and when."""
    stamps = sorted(row[0] for row in report["rows"])
    best, at, start = 0, math.nan, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= 1.0:
            start += 1
        if end - start + 1 > best:
            best, at = end - start + 1, stamps[start]
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else math.nan
    return {"calls": best, "from": at, "mean_per_s": len(stamps) / span if span else math.nan}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--channels", type=int, default=100, help="guild text channels: 3000, 3001, ...")
    parser.add_argument(
        "--rate-limit", default="5,5", help="per-channel bucket of the message routes: LIMIT,SECONDS, or off"
    )
    args = parser.parse_args()
    rate_limit: tuple[int, float] | None = None
    if args.rate_limit != "off":
        limit, per = args.rate_limit.split(",")
        rate_limit = (int(limit), float(per))
    asyncio.run(serve(args.channels, rate_limit))


if __name__ == "__main__":
    main()
