"""Slack for the Slack benchmarks, in its own process: FakeSlack stamping every Web API call, and the event sender.

``python -m bench.slack_side [--rtt-ms 50]``: starts :class:`TimedSlack` (a
:class:`tests.fakes.slack_server.FakeSlack` offering the thread status in every thread), prints one
JSON line ``{"api_url": ..., "bot_token": ...}``, then answers JSON commands on stdin, one JSON
answer a line on stdout:

* ``{"op": "send", "url": ..., "events": [{"at", "channel", "ts", "user", "text", "event_id"[, "thread_ts"]}]}``:
  each one POSTed to ``url`` as a signed ``app_mention`` (with ``thread_ts``: a follow-up in that
  thread, a message without a mention) ``at`` seconds after the command (an event's own ``"url"``, if it
  has one, instead of the command's: a load balancer's choice of replica);
* ``{"op": "wait", "timeout": s}``: until every sent question is answered (its reply finished and
  its thread's status cleared, or its reaction taken off);
* ``{"op": "report"}``: what was sent (``sends``: the stamps of each POST and of its 200), every
  Web API call (``rows``), the messages and the reactions left;
* ``{"op": "fail_next", "method", "count", "retry_after"}``: answer the next calls of ``method`` with 429;
* ``{"op": "reset"}``: forget all that.

Stamps are ``time.monotonic()`` (CLOCK_MONOTONIC, comparable across processes on Linux). ``--rtt-ms``
puts a simulated network in front of the Web API (:func:`network`).

The parent's side: :func:`slack_process` runs this module as a child; :func:`see_mentions` reads a
report into one :class:`Seen` per question.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.chat_model import reply_text
from bench.common import SideProcess, child_server, forbid_non_loopback, json_commands
from bots.slack.config import SlackSettings
from tests.fakes.slack_server import FakeSlack, app_mention, channel_message, event_callback, signed_headers

__all__ = ["SECRET", "TEXT_METHODS", "Mention", "Seen", "SlackProcess", "see_mentions", "slack_process"]

SECRET = "bench-signing-secret"
USER = "U_ALICE"
TEXT_METHODS = ("chat.startStream", "chat.appendStream", "chat.stopStream", "chat.postMessage", "chat.update")


# == the Slack side, in its own process ==========================================================


class TimedSlack(FakeSlack):
    """FakeSlack that stamps every Web API call and knows which mentions are fully answered.

    It offers the thread status in every thread (``status_in_any_thread``), as Slack does for an app with its
    AI features, so the status calls are in the measured path; a mention is answered once its reply is finished
    and its thread's status cleared (or, where the bot fell back on it, its reaction taken off)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.status_in_any_thread = True
        # [monotonic s, method, channel, thread ts, message ts, characters of text, ok]
        self.rows: list[list[Any]] = []
        self.finished: set[tuple[str, str]] = set()  # (channel, thread ts) with a finished reply
        self.removed: set[tuple[str, str]] = set()  # (channel, message ts) with the reaction taken off
        self.cleared: set[tuple[str, str]] = set()  # (channel, thread ts) whose status was cleared
        self.waiting: set[tuple[str, str]] = set()

    def clear(self) -> None:
        self.calls.clear()
        self.messages.clear()
        self.reactions.clear()
        self._failed.clear()
        self.rows.clear()
        self.finished.clear()
        self.removed.clear()
        self.cleared.clear()
        self.statuses.clear()
        self.waiting.clear()

    def _answer(
        self, method: str, params: dict[str, Any], token: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        stamp = time.monotonic()
        status, answer, headers = super()._answer(method, params, token)
        ok = bool(answer.get("ok"))
        message_ts = str(params.get("ts") or answer.get("ts") or "")
        thread = str(params.get("thread_ts") or params.get("timestamp") or "")
        if not thread and message_ts in self.messages:
            thread = self.messages[message_ts].thread_ts or ""
        channel = str(params.get("channel") or params.get("channel_id") or "")
        if method.startswith("chat.") and method.endswith("Stream"):
            chars = len(self._stream_text(params))
        else:
            chars = len(str(params.get("text") or ""))
        self.rows.append([stamp, method, channel, thread, message_ts, chars, ok])
        if ok:
            key = (channel, thread)
            if method == "reactions.remove":
                self.removed.add(key)
            elif method == "assistant.threads.setStatus" and params.get("status") == "":
                self.cleared.add(key)
            elif method == "chat.stopStream" or (method == "chat.postMessage" and not params.get("blocks")):
                self.finished.add(key)
            if key in self.finished and (key in self.removed or key in self.cleared):
                self.waiting.discard(key)
        return status, answer, headers


async def _send_event(
    session: aiohttp.ClientSession, url: str, spec: dict[str, Any], base: float, sends: list[dict[str, Any]]
) -> None:
    await asyncio.sleep(max(0.0, base + float(spec["at"]) - time.monotonic()))
    thread = spec.get("thread_ts")
    if thread:  # a reply in a Slack thread the bot answered in: a follow-up, no mention
        event = channel_message(spec["channel"], spec["user"], spec["text"], spec["ts"], thread_ts=thread)
    else:
        event = app_mention(spec["channel"], spec["user"], spec["text"], spec["ts"])
    body = json.dumps(event_callback(event, spec["event_id"])).encode()
    headers = signed_headers(SECRET, body)
    record: dict[str, Any] = {
        "channel": spec["channel"],
        "ts": spec["ts"],
        "thread": thread or spec["ts"],  # where the answer goes
        "event_id": spec["event_id"],
    }
    sends.append(record)
    record["posted"] = time.monotonic()
    try:
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            record["status"] = response.status
    except aiohttp.ClientError as exc:
        record["status"] = 0
        record["error"] = repr(exc)
    record["acked"] = time.monotonic()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, not_before: float) -> None:
    """Copy bytes from ``reader`` to ``writer``, ``delay`` s after each was read (or after ``not_before``)."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def read() -> None:
        while data := await reader.read(65536):
            queue.put_nowait((time.monotonic(), data))
        queue.put_nowait((time.monotonic(), b""))

    reading = asyncio.create_task(read())
    try:
        while True:
            at, data = await queue.get()
            await asyncio.sleep(max(0.0, max(at, not_before) + delay - time.monotonic()))
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        reading.cancel()
        with contextlib.suppress(Exception):
            writer.close()


async def network(target_port: int, rtt: float) -> asyncio.Server:
    """A TCP proxy that behaves like a link with round-trip time ``rtt`` to an HTTPS server.

    Each way takes rtt/2, and a new connection's first bytes reach the server only after two
    round trips (the TCP handshake and a TLS 1.3 handshake), as against Slack. A connection kept
    open pays the half round trip alone.
    """

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ready = time.monotonic() + 2 * rtt
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        with contextlib.suppress(asyncio.CancelledError):  # the child is ending
            await asyncio.gather(_pump(reader, up_writer, rtt / 2, ready), _pump(up_reader, writer, rtt / 2, 0.0))

    return await asyncio.start_server(connection, "127.0.0.1", 0)


async def serve(rtt: float) -> None:
    """The child: TimedSlack on 127.0.0.1; JSON commands on stdin, one JSON answer a line on stdout."""
    forbid_non_loopback()
    sends: list[dict[str, Any]] = []
    tasks: set[asyncio.Task[None]] = set()
    connector = aiohttp.TCPConnector(limit=0)
    slack = TimedSlack()
    async with slack, aiohttp.ClientSession(connector=connector) as session:
        api_url = slack.api_url
        if rtt > 0:
            proxy = await network(int(slack.base_url.rsplit(":", 1)[1]), rtt)
            api_url = f"http://127.0.0.1:{proxy.sockets[0].getsockname()[1]}/api/"
        print(json.dumps({"api_url": api_url, "bot_token": slack.bot_token}), flush=True)

        async def answer(op: str, command: dict[str, Any]) -> dict[str, Any]:
            nonlocal sends
            reply: dict[str, Any] = {"ok": True}
            if op == "send":
                base = time.monotonic()
                reply["base"] = base
                for spec in command["events"]:
                    slack.waiting.add((spec["channel"], spec.get("thread_ts") or spec["ts"]))
                    url = spec.get("url") or command["url"]  # an event's own: the load balancer's choice
                    task = asyncio.create_task(_send_event(session, url, spec, base, sends))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            elif op == "wait":
                try:
                    await slack.wait_until(lambda: not slack.waiting, float(command["timeout"]), "every answer")
                    await asyncio.gather(*tasks)
                except TimeoutError as exc:
                    reply = {"ok": False, "error": str(exc)[:500], "unanswered": len(slack.waiting)}
            elif op == "report":
                reply["sends"] = sends
                reply["rows"] = slack.rows
                reply["messages"] = [
                    [m.channel, m.ts, m.thread_ts, m.text, m.streaming, bool(m.blocks)] for m in slack.messages.values()
                ]
                reply["reactions"] = sorted(slack.reactions)
            elif op == "fail_next":
                for _ in range(int(command["count"])):
                    slack.fail_next(command["method"], retry_after=int(command["retry_after"]))
            elif op == "reset":
                await asyncio.gather(*tasks)
                sends = []
                slack.clear()
            else:
                reply = {"ok": False, "error": f"unknown op {op!r}"}
            return reply

        await json_commands(answer)


# == the parent's view of Slack ==================================================================


@dataclass
class SlackProcess(SideProcess):
    """FakeSlack and the event sender in a child process (this module)."""

    api_url: str
    bot_token: str

    def settings(self, **overrides: Any) -> SlackSettings:
        values: dict[str, Any] = {
            "bot_token": self.bot_token,
            "signing_secret": SECRET,
            "api_url": self.api_url,
            "port": 0,
            "host": "127.0.0.1",
        }
        values.update(overrides)
        return SlackSettings(**values)


@contextlib.asynccontextmanager
async def slack_process(rtt: float = 0.0) -> AsyncIterator[SlackProcess]:
    """The Slack side in a child process; ``rtt`` > 0 puts a simulated network in front of its Web API."""
    args = [sys.executable, "-m", "bench.slack_side", "--rtt-ms", str(rtt * 1000)]
    async with child_server(args, what="Slack process") as (hello, process):
        yield SlackProcess(process, api_url=hello["api_url"], bot_token=hello["bot_token"])


@dataclass(frozen=True)
class Mention:
    """A question: a top-level mention, or with ``thread_ts`` a follow-up in that Slack thread (no mention)."""

    channel: str
    ts: str
    tag: str
    user: str = USER
    thread_ts: str | None = None

    @property
    def text(self) -> str:
        mention = "" if self.thread_ts else "<@U_BOT> "
        return f"{mention}question #{self.tag}: what is the status of the release?"

    @property
    def where(self) -> tuple[str, str]:
        """(channel, thread ts) of the answer."""
        return self.channel, self.thread_ts or self.ts

    def spec(self, at: float = 0.0) -> dict[str, Any]:
        spec = {
            "at": at,
            "channel": self.channel,
            "ts": self.ts,
            "user": self.user,
            "text": self.text,
            "event_id": f"Ev{self.channel}{self.ts.replace('.', '')}",
        }
        if self.thread_ts:
            spec["thread_ts"] = self.thread_ts
        return spec

    def expected(self, words: int) -> str:
        return reply_text(self.text, words)


@dataclass
class Seen:
    """What Slack saw of one mention: monotonic stamps, and the replies left in its thread."""

    posted: float = float("nan")
    acked: float = float("nan")
    status: int = 0
    first_text: float = float("nan")  # the first call carrying answer text
    complete: float = float("nan")  # the last chat.stopStream (or, without streaming, the last text call)
    reaction_removed: float = float("nan")
    replies: list[str] = field(default_factory=list)  # finished replies without blocks
    unfinished: int = 0  # messages still streaming
    stream_starts: int = 0
    methods: dict[str, int] = field(default_factory=dict)
    stamps: dict[str, list[float]] = field(default_factory=dict)  # method: each ok call's stamp

    @property
    def first_visible_s(self) -> float:
        return self.first_text - self.posted

    @property
    def complete_s(self) -> float:
        return self.complete - self.posted


def see_mentions(report: dict[str, Any]) -> dict[tuple[str, str], Seen]:
    """Each sent mention's :class:`Seen`, by (channel, ts), from a Slack process ``report``."""
    seen: dict[tuple[str, str], Seen] = {}
    for send in report["sends"]:
        seen[(send["channel"], send.get("thread", send["ts"]))] = Seen(
            posted=send["posted"], acked=send.get("acked", float("nan")), status=send.get("status", 0)
        )
    stream_done: dict[tuple[str, str], float] = {}
    last_text: dict[tuple[str, str], float] = {}
    for stamp, method, channel, thread, _message_ts, chars, ok in report["rows"]:
        one = seen.get((channel, thread))
        if one is None:
            continue
        one.methods[method] = one.methods.get(method, 0) + 1
        if not ok:
            continue
        one.stamps.setdefault(method, []).append(stamp)
        if method in TEXT_METHODS and chars > 0:
            if math.isnan(one.first_text):
                one.first_text = stamp
            last_text[(channel, thread)] = stamp
        if method == "chat.startStream":
            one.stream_starts += 1
        elif method == "chat.stopStream":
            stream_done[(channel, thread)] = stamp
        elif method == "reactions.remove":
            one.reaction_removed = stamp
    for key, one in seen.items():
        one.complete = stream_done.get(key, last_text.get(key, float("nan")))
    for channel, _ts, thread, text, streaming, blocks in report["messages"]:
        one = seen.get((channel, thread))
        if one is None:
            continue
        if streaming:
            one.unfinished += 1
        elif not blocks:
            one.replies.append(text)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--rtt-ms",
        type=float,
        default=0.0,
        help="simulate a network to the Web API: this round-trip time, and a TCP+TLS handshake per new connection",
    )
    args = parser.parse_args()
    asyncio.run(serve(args.rtt_ms / 1000))


if __name__ == "__main__":
    main()
