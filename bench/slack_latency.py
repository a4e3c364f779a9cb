"""Slack latency: from a mention's signed event to the first and the last words of the answer visible in Slack.

    .venv/bin/python -m bench.slack_latency [--mentions 20] [--warmup 3] [--phase-mentions 5] [--threads 2]

Three processes, all on 127.0.0.1:

* the **model** (:mod:`bench.slack_model_server`): 0.5 s to the first token, then four characters
  every 20 ms (200 characters, about 50 tokens, a second), a 60-word answer (~370 characters);
* **Slack** (this module with ``--serve-slack``): :class:`tests.fakes.slack_server.FakeSlack`
  stamping every Web API call with ``time.monotonic()`` as it arrives, and sending the signed
  ``app_mention`` events (it stamps the moment it POSTs each one, and when the 200 comes back);
* the **bot** (this process): the real ``SlackBot.start`` serving Bolt over HTTP, a fresh database.

Each measured mention is a new top-level message in a fresh channel, one at a time, by the same
person (so ``users.info`` is cached after the warm-up, as it is for anyone who spoke before).

* B, Slack: from the event's POST to (a) the first Web API call carrying answer text (the
  ``chat.startStream``) and (b) the ``chat.stopStream`` that completes the answer; the reply must
  be the model's answer, exactly once, in the mention's thread.
* A, bare openai SDK (the reference): ``chat.completions.create(stream=True)`` with exactly the
  request body the bot sends (captured in the warm-up, its tag swapped), to the same server:
  time to the first and to the last content token, and to the end of the stream.

A and B alternate, A first for even mentions. Reported: medians, the ratios B(a)/A(first token)
(goal ≤ 1.10) and B(b)/A(last token) (goal ≤ 1.05), both as a ratio of medians and as the median
of each pair's ratio. Then a separate, instrumented pass (``--phase-mentions``) times the phases
inside the bot for a few more mentions, so the figures above carry no instrumentation.

Slack offers the thread status in every thread here (as it does for an app with its AI features), so each
answer's path has its ``assistant.threads.setStatus`` calls ("is thinking…" before the answer, cleared when its
text starts). ``--threads 2`` then measures two Slack threads of one channel answered at once against one
alone, in the same run: follow-ups without a mention in threads the bot answered in, alternating which goes
first; reported are the medians of both and their ratio.
:mod:`bench.slack_load` uses the same three processes under load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import openai
from slack_sdk.web.async_client import AsyncWebClient

import bots.slack.app
from bench.chat_common import (
    Phases,
    bare_call,
    bodies_match,
    kwargs_for,
    others_cpu_s,
    phase_medians,
    retag,
    sdk_parameters,
)
from bench.common import ModelServer, bench_settings, child_server, forbid_non_loopback, machine, summary, write_result
from bench.slack_model_server import message_tag, reply_text, slack_model_server
from bots.slack.adapter import SlackAdapter
from bots.slack.app import EVENTS_PATH, SlackBot
from bots.slack.config import SlackSettings
from bots.slack.render import SlackReply
from core.events import Event
from core.handles import RunHandle
from core.service import Threadline
from tests.fakes.slack_server import FakeSlack, app_mention, channel_message, event_callback, signed_headers

__all__ = [
    "SECRET",
    "Mention",
    "Seen",
    "SlackProcess",
    "see_mentions",
    "shared_session",
    "slack_process",
    "start_bot",
]

SECRET = "bench-signing-secret"
USER = "U_ALICE"
DELAY = 0.5
CHUNK_DELAY = 0.02
WORDS = 60
TEXT_METHODS = ("chat.startStream", "chat.appendStream", "chat.stopStream", "chat.postMessage", "chat.update")
GOAL_FIRST = 1.10
GOAL_COMPLETE = 1.05


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


async def serve_slack(rtt: float) -> None:
    """The child: FakeSlack on 127.0.0.1; JSON commands on stdin, one JSON answer a line on stdout."""
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
        while line := await asyncio.to_thread(sys.stdin.readline):
            command: dict[str, Any] = json.loads(line)
            op = command.get("op")
            answer: dict[str, Any] = {"ok": True}
            if op == "send":
                base = time.monotonic()
                answer["base"] = base
                for spec in command["events"]:
                    slack.waiting.add((spec["channel"], spec.get("thread_ts") or spec["ts"]))
                    task = asyncio.create_task(_send_event(session, command["url"], spec, base, sends))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            elif op == "wait":
                try:
                    await slack.wait_until(lambda: not slack.waiting, float(command["timeout"]), "every answer")
                    await asyncio.gather(*tasks)
                except TimeoutError as exc:
                    answer = {"ok": False, "error": str(exc)[:500], "unanswered": len(slack.waiting)}
            elif op == "report":
                answer["sends"] = sends
                answer["rows"] = slack.rows
                answer["messages"] = [
                    [m.channel, m.ts, m.thread_ts, m.text, m.streaming, bool(m.blocks)] for m in slack.messages.values()
                ]
                answer["reactions"] = sorted(slack.reactions)
            elif op == "fail_next":
                for _ in range(int(command["count"])):
                    slack.fail_next(command["method"], retry_after=int(command["retry_after"]))
            elif op == "reset":
                await asyncio.gather(*tasks)
                sends = []
                slack.clear()
            else:
                answer = {"ok": False, "error": f"unknown op {op!r}"}
            print(json.dumps(answer), flush=True)


# == the parent's view of Slack ==================================================================


@dataclass
class SlackProcess:
    """FakeSlack and the event sender in a child process (this module with ``--serve-slack``)."""

    api_url: str
    bot_token: str
    _process: asyncio.subprocess.Process
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def command(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        async with self._lock:
            self._process.stdin.write(json.dumps({"op": op, **fields}).encode() + b"\n")
            await self._process.stdin.drain()
            line = await self._process.stdout.readline()
        if not line:
            raise RuntimeError("the Slack process ended")
        answer: dict[str, Any] = json.loads(line)
        return answer

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
    args = [sys.executable, "-m", "bench.slack_latency", "--serve-slack", "--slack-rtt-ms", str(rtt * 1000)]
    async with child_server(args, what="Slack process") as (hello, process):
        yield SlackProcess(hello["api_url"], hello["bot_token"], process)


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


# == the bot and the reference ==================================================================


async def start_bot(model: ModelServer, slack: SlackProcess, db: Path) -> SlackBot:
    return await SlackBot.start(bench_settings(model.base_url, db), slack.settings())


def events_url(bot: SlackBot) -> str:
    return f"http://127.0.0.1:{bot.port}{EVENTS_PATH}"


@contextlib.asynccontextmanager
async def shared_session(enabled: bool) -> AsyncIterator[None]:
    """Experiment, off by default: give the bot's Web API client one aiohttp session for all its calls.

    ``bots.slack.app.web_client`` builds ``AsyncWebClient`` without ``session=``, so slack_sdk opens a
    new ``aiohttp.ClientSession`` (a new connection; against Slack, a new TLS handshake) per call.
    """
    if not enabled:
        yield
        return
    original = bots.slack.app.web_client
    shared = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))  # no pool limit: calls never queue

    def with_session(settings: SlackSettings, session: aiohttp.ClientSession | None = None) -> AsyncWebClient:
        client = original(settings, session)
        client.session = shared
        return client

    bots.slack.app.web_client = with_session
    try:
        yield
    finally:
        bots.slack.app.web_client = original
        await shared.close()


@contextlib.contextmanager
def instrumented(phases: Phases) -> Iterator[None]:
    """Wrap a few methods of the adapter and the core to stamp phases; restored afterwards."""
    saved: list[tuple[type, str, Any]] = []

    def patch(cls: type, name: str, make: Callable[[Any], Any]) -> None:
        original = cls.__dict__[name]
        saved.append((cls, name, original))
        setattr(cls, name, make(original))

    def around(before: str | None, after: str | None) -> Callable[[Any], Any]:
        def make(original: Any) -> Any:
            @functools.wraps(original)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                if before:
                    phases.first(before)
                result = await original(*args, **kwargs)
                if after:
                    phases.first(after)
                return result

            return wrapper

        return make

    def put(original: Any) -> Any:
        @functools.wraps(original)
        def wrapper(self: RunHandle, event: Event) -> None:
            if event.type == "text_delta":
                phases.first("core: first text delta")
                phases.last("core: last text delta")
            elif event.type in ("run_started", "run_completed", "run_failed"):
                phases.first(f"core: {event.type}")
            original(self, event)

        return wrapper

    patch(SlackAdapter, "_converse", around("bot: listener called", None))
    patch(SlackAdapter, "_name", around(None, "bot: name known"))
    patch(Threadline, "post", around(None, "bot: post() returned"))
    patch(SlackAdapter, "_render", around("bot: status set (or reaction added), render starts", "bot: render returned"))
    patch(SlackReply, "_stream_append", around("bot: first append", None))
    patch(SlackReply, "_finish_message", around("bot: finish message", None))
    patch(RunHandle, "put", put)
    try:
        yield
    finally:
        for cls, name, original in reversed(saved):
            setattr(cls, name, original)


# == the benchmark ================================================================================


async def one_b(slack: SlackProcess, url: str, mention: Mention) -> tuple[Seen, dict[str, Any]]:
    await slack.command("reset")
    await slack.command("send", url=url, events=[mention.spec()])
    waited = await slack.command("wait", timeout=30)
    if not waited["ok"]:
        raise RuntimeError(f"mention {mention.tag} was not answered: {waited}")
    report = await slack.command("report")
    return see_mentions(report)[mention.where], report


def check_b(seen: Seen, mention: Mention, words: int) -> list[str]:
    problems = []
    if seen.status != 200:
        problems.append(f"event answered HTTP {seen.status}")
    if seen.replies != [mention.expected(words)]:
        problems.append(f"replies {seen.replies!r}")
    if seen.unfinished or seen.stream_starts != 1:
        problems.append(f"{seen.stream_starts} streams started, {seen.unfinished} unfinished")
    return problems


async def main_async(args: argparse.Namespace) -> int:
    forbid_non_loopback()
    result: dict[str, Any] = {
        "benchmark": "slack_latency",
        "command": ".venv/bin/python -m bench.slack_latency " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "config": {
            "mentions": args.mentions,
            "warmup": args.warmup,
            "phase_mentions": args.phase_mentions,
            "first_token_delay_s": args.delay,
            "chunk_delay_s": args.chunk_delay,
            "chars_per_chunk": 4,
            "answer_words": args.words,
            "answer_chars": len(reply_text("#L0000", args.words)),
            "model": "bench.slack_model_server in a child process on 127.0.0.1",
            "slack": "tests.fakes.slack_server.FakeSlack and the event sender in a child process on 127.0.0.1",
            "assistant": "built-in",
            "shared_session": args.shared_session,
            "slack_rtt_ms": args.slack_rtt_ms,
            "slack_thread_status": "offered in every thread (assistant.threads.setStatus)",
            "threads": args.threads,
            "thread_rounds": args.thread_rounds if args.threads > 1 else 0,
        },
    }
    pairs: list[dict[str, Any]] = []
    problems: list[str] = []
    method_counts: dict[str, int] = {}
    phases_out: list[dict[str, float]] = []
    async with (
        slack_model_server(delay=args.delay, chunk_delay=args.chunk_delay, words=args.words) as model,
        slack_process(args.slack_rtt_ms / 1000) as slack,
        shared_session(args.shared_session),
    ):
        with tempfile.TemporaryDirectory(prefix="threadline-bench-") as tmp:
            bot = await start_bot(model, slack, Path(tmp) / "slack.db")
            url = events_url(bot)
            client = openai.AsyncOpenAI(api_key="sk-bench-not-a-real-key", base_url=model.base_url, max_retries=0)
            try:
                # Warm-up through Slack: caches the person's name, opens connections, captures the body.
                # At least two: a person's first message is handed to the core before their name is
                # looked up, so it carries their id; the body captured last must carry the name.
                await model.command("reset")
                for i in range(max(2, args.warmup)):
                    mention = Mention(f"CWARM{i:03d}", f"1700000000.{i + 1:06d}", f"W{i:04d}")
                    seen, _ = await one_b(slack, url, mention)
                    problems += [f"warm-up {mention.tag}: {p}" for p in check_b(seen, mention, args.words)]
                captured = (await model.command("bodies"))["bodies"]
                template = captured[-1]
                template_tag = message_tag(str(template["messages"][-1]["content"]))
                known = sdk_parameters()
                # The bare SDK warms its own connection too.
                await bare_call(client, kwargs_for(retag(template, template_tag, "W9999"), known))

                await model.command("reset")
                pids = (model._process.pid, slack._process.pid)
                others_before, wall_before = others_cpu_s(*pids), time.monotonic()
                for i in range(args.mentions):
                    mention = Mention(f"CLAT{i:04d}", f"1700001000.{i + 1:06d}", f"L{i:04d}")
                    body = retag(template, template_tag, f"A{i:04d}")
                    order = ("A", "B") if i % 2 == 0 else ("B", "A")
                    pair: dict[str, Any] = {"mention": mention.tag, "order": "".join(order)}
                    for side in order:
                        if side == "A":
                            bare = await bare_call(client, kwargs_for(body, known))
                            if bare.text != reply_text(f"#A{i:04d}", args.words):
                                problems.append(f"A {i}: wrong answer {bare.text[:40]!r}")
                            pair |= {"A_first_token_s": bare.first, "A_last_token_s": bare.last, "A_end_s": bare.end}
                        else:
                            seen, _ = await one_b(slack, url, mention)
                            problems += [f"B {mention.tag}: {p}" for p in check_b(seen, mention, args.words)]
                            for method, n in seen.methods.items():
                                method_counts[method] = method_counts.get(method, 0) + n
                            pair |= {
                                "B_first_visible_s": seen.first_visible_s,
                                "B_complete_s": seen.complete_s,
                                "B_ack_s": seen.acked - seen.posted,
                                "B_appends": seen.methods.get("chat.appendStream", 0),
                            }
                    pairs.append(pair)
                    print(
                        f"{i + 1:3d}/{args.mentions} A first {pair['A_first_token_s'] * 1000:7.1f} ms, last "
                        f"{pair['A_last_token_s'] * 1000:7.1f} ms | B first {pair['B_first_visible_s'] * 1000:7.1f} "
                        f"ms, complete {pair['B_complete_s'] * 1000:7.1f} ms"
                    )
                result["other_processes_cpu_s"] = others_cpu_s(*pids) - others_before
                result["measured_wall_s"] = time.monotonic() - wall_before
                bodies = (await model.command("bodies"))["bodies"]
                result["bodies_identical"] = bodies_match(bodies, args.mentions)

                if args.phase_mentions:
                    phases_out = await phase_pass(model, slack, url, args)
                if args.threads > 1:
                    result["threads"] = await thread_pass(slack, url, args)
                    problems += result["threads"]["problems"]
            finally:
                await client.close()
                await bot.stop()

    result["pairs"] = pairs
    result["summary"] = summarise(pairs)
    result["slack_calls_per_mention"] = {m: n / max(1, args.mentions) for m, n in sorted(method_counts.items())}
    result["phases"] = phases_out
    result["phase_medians_ms"] = phase_medians(phases_out)
    result["problems"] = problems
    result["all_ok"] = not problems and bool(result["bodies_identical"])
    name = "slack_latency" + (f"-rtt{args.slack_rtt_ms:g}" if args.slack_rtt_ms else "")
    name += f"-threads{args.threads}" if args.threads > 1 else ""
    path = write_result(name + ("-shared-session" if args.shared_session else ""), result)
    report(result, path)
    return 0 if result["all_ok"] else 1


async def many_b(slack: SlackProcess, url: str, mentions: list[Mention]) -> dict[tuple[str, str], Seen]:
    """Send ``mentions`` at the same moment and wait until every one is answered; what Slack saw of each."""
    await slack.command("reset")
    await slack.command("send", url=url, events=[m.spec() for m in mentions])
    waited = await slack.command("wait", timeout=30)
    if not waited["ok"]:
        raise RuntimeError(f"{len(mentions)} questions at once were not all answered: {waited}")
    return see_mentions(await slack.command("report"))


async def thread_pass(slack: SlackProcess, url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Follow-ups in ``args.threads`` Slack threads of one channel at the same moment, against a follow-up in one
    of them alone, in the same rounds (alone first in even rounds). Each round's threads are begun by mentions
    answered one at a time (not measured); each follow-up is a reply without a mention, as people write them."""
    rounds: list[dict[str, Any]] = []
    problems: list[str] = []
    for r in range(args.thread_rounds):
        channel = f"CTHR{r:04d}"
        starts = [Mention(channel, f"1700003{r:03d}.{k + 1:06d}", f"R{r:03d}S{k}") for k in range(args.threads)]
        for start in starts:  # the threads, begun one at a time
            begun, _ = await one_b(slack, url, start)
            problems += [f"round {r} start {start.tag}: {p}" for p in check_b(begun, start, args.words)]

        row: dict[str, Any] = {"round": r, "order": "one,all" if r % 2 == 0 else "all,one"}
        for n, side in enumerate(row["order"].split(","), start=1):
            asked = [follow_up(start, n) for start in (starts[:1] if side == "one" else starts)]
            seen = await many_b(slack, url, asked)
            for mention in asked:
                problems += [f"round {r} {side}: {p}" for p in check_b(seen[mention.where], mention, args.words)]
            if side == "one":
                one = seen[asked[0].where]
                row |= {"one_first_visible_s": one.first_visible_s, "one_complete_s": one.complete_s}
            else:
                each = [seen[m.where] for m in asked]
                row |= {
                    "all_first_visible_s": [x.first_visible_s for x in each],
                    "all_complete_s": [x.complete_s for x in each],
                }
        rounds.append(row)
        print(
            f"threads round {r + 1:2d}/{args.thread_rounds}: alone first {row['one_first_visible_s'] * 1000:6.1f} ms, "
            f"complete {row['one_complete_s'] * 1000:6.1f} ms | {args.threads} at once first "
            f"{max(row['all_first_visible_s']) * 1000:6.1f} ms, complete {max(row['all_complete_s']) * 1000:6.1f} ms "
            "(the later)"
        )
    return {"threads": args.threads, "rounds": rounds, "summary": summarise_threads(rounds), "problems": problems}


def follow_up(start: Mention, n: int) -> Mention:
    """The ``n``-th follow-up in the Slack thread that ``start`` began: a reply in it, without a mention."""
    ts = f"{start.ts[:-6]}{int(start.ts[-6:]) + 100 * n:06d}"
    return Mention(start.channel, ts, f"{start.tag}F{n}", thread_ts=start.ts)


def summarise_threads(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians alone and at once (every thread's, and the later of each round's), and their ratios."""
    one_first = [float(r["one_first_visible_s"]) for r in rounds]
    one_complete = [float(r["one_complete_s"]) for r in rounds]
    all_first = [float(x) for r in rounds for x in r["all_first_visible_s"]]
    all_complete = [float(x) for r in rounds for x in r["all_complete_s"]]
    later_first = [max(r["all_first_visible_s"]) for r in rounds]
    later_complete = [max(r["all_complete_s"]) for r in rounds]
    out: dict[str, Any] = {
        "alone_first_visible_s": summary(one_first),
        "alone_complete_s": summary(one_complete),
        "at_once_first_visible_s": summary(all_first),
        "at_once_complete_s": summary(all_complete),
        "at_once_later_first_visible_s": summary(later_first),
        "at_once_later_complete_s": summary(later_complete),
    }
    median = {k: v["median"] for k, v in out.items()}
    out["ratio_at_once_over_alone"] = {
        "first_visible": median["at_once_first_visible_s"] / median["alone_first_visible_s"],
        "complete": median["at_once_complete_s"] / median["alone_complete_s"],
        "later_first_visible": median["at_once_later_first_visible_s"] / median["alone_first_visible_s"],
        "later_complete": median["at_once_later_complete_s"] / median["alone_complete_s"],
        "complete_median_of_rounds": statistics.median(max(r["all_complete_s"]) / r["one_complete_s"] for r in rounds),
    }
    return out


async def phase_pass(
    model: ModelServer, slack: SlackProcess, url: str, args: argparse.Namespace
) -> list[dict[str, float]]:
    """A few more mentions with the bot instrumented; each phase in ms after the event's POST."""
    out: list[dict[str, float]] = []
    phases = Phases()
    with instrumented(phases):
        for i in range(args.phase_mentions):
            mention = Mention(f"CPHS{i:04d}", f"1700002000.{i + 1:06d}", f"P{i:04d}")
            phases.now = {}
            await model.command("reset")
            seen, _ = await one_b(slack, url, mention)
            arrivals = (await model.command("arrivals"))["arrivals"]
            stamps: dict[str, float] = {"slack: event POSTed": seen.posted, "slack: event acked (HTTP 200)": seen.acked}
            stamps |= phases.now
            for tag, at in arrivals:
                if tag == mention.tag:
                    stamps["model: request arrived"] = at
            for method, times in seen.stamps.items():
                stamps[f"slack: first {method}"] = times[0]
                if len(times) > 1:
                    stamps[f"slack: last {method}"] = times[-1]
            out.append({k: (v - seen.posted) * 1000 for k, v in sorted(stamps.items(), key=lambda kv: kv[1])})
    return out


def summarise(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    def col(name: str) -> list[float]:
        return [float(p[name]) for p in pairs]

    out: dict[str, Any] = {
        name: summary(col(name))
        for name in ("A_first_token_s", "A_last_token_s", "A_end_s", "B_first_visible_s", "B_complete_s", "B_ack_s")
    }
    out["B_appends"] = summary(col("B_appends"))
    first = [p["B_first_visible_s"] / p["A_first_token_s"] for p in pairs]
    complete = [p["B_complete_s"] / p["A_last_token_s"] for p in pairs]
    complete_end = [p["B_complete_s"] / p["A_end_s"] for p in pairs]
    out["ratio_first_visible_over_first_token"] = {
        "of_medians": out["B_first_visible_s"]["median"] / out["A_first_token_s"]["median"],
        "median_of_pairs": statistics.median(first),
        "max_of_pairs": max(first),
        "goal": GOAL_FIRST,
    }
    out["ratio_complete_over_last_token"] = {
        "of_medians": out["B_complete_s"]["median"] / out["A_last_token_s"]["median"],
        "median_of_pairs": statistics.median(complete),
        "max_of_pairs": max(complete),
        "goal": GOAL_COMPLETE,
    }
    out["ratio_complete_over_stream_end"] = {
        "of_medians": out["B_complete_s"]["median"] / out["A_end_s"]["median"],
        "median_of_pairs": statistics.median(complete_end),
    }
    out["difference_ms_median_of_pairs"] = {
        "first": statistics.median((p["B_first_visible_s"] - p["A_first_token_s"]) * 1000 for p in pairs),
        "complete_vs_last_token": statistics.median((p["B_complete_s"] - p["A_last_token_s"]) * 1000 for p in pairs),
        "complete_vs_stream_end": statistics.median((p["B_complete_s"] - p["A_end_s"]) * 1000 for p in pairs),
    }
    return out


def report(result: dict[str, Any], path: Path) -> None:
    cfg, s = result["config"], result["summary"]
    print(
        f"Slack latency: {cfg['mentions']} mentions, one at a time, each in a fresh channel; model: first token after "
        f"{cfg['first_token_delay_s']:g} s, 4 chars every {cfg['chunk_delay_s'] * 1000:g} ms, "
        f"{cfg['answer_words']} words ({cfg['answer_chars']} chars)"
    )
    if cfg["slack_rtt_ms"] or cfg["shared_session"]:
        print(
            f"[simulated round trip to Slack's Web API: {cfg['slack_rtt_ms']:g} ms, TCP+TLS handshake per new "
            f"connection; experiment, shared Web API session: {cfg['shared_session']}]"
        )
    print(f"{'':42}{'median ms':>10}{'p99 ms':>9}{'min ms':>9}{'max ms':>9}")
    rows = (
        ("A bare SDK: first token", "A_first_token_s"),
        ("A bare SDK: last token", "A_last_token_s"),
        ("A bare SDK: end of stream", "A_end_s"),
        ("B Slack: first answer text visible", "B_first_visible_s"),
        ("B Slack: complete answer (stopStream)", "B_complete_s"),
        ("B Slack: event acknowledged", "B_ack_s"),
    )
    for name, key in rows:
        ms = {k: v * 1000 for k, v in s[key].items() if k != "n"}
        print(f"{name:42}{ms['median']:10.1f}{ms['p99']:9.1f}{ms['min']:9.1f}{ms['max']:9.1f}")
    first, complete = s["ratio_first_visible_over_first_token"], s["ratio_complete_over_last_token"]
    end = s["ratio_complete_over_stream_end"]
    diff = s["difference_ms_median_of_pairs"]
    print(
        f"first visible / first token: {first['of_medians']:.3f} (median of pairs {first['median_of_pairs']:.3f}, "
        f"worst {first['max_of_pairs']:.3f}; goal <= {GOAL_FIRST}); B-A {diff['first']:.1f} ms"
    )
    print(
        f"complete / last token:       {complete['of_medians']:.3f} (median of pairs "
        f"{complete['median_of_pairs']:.3f}, worst {complete['max_of_pairs']:.3f}; goal <= {GOAL_COMPLETE}); "
        f"B-A {diff['complete_vs_last_token']:.1f} ms"
    )
    print(
        f"complete / end of stream:    {end['of_medians']:.3f} (median of pairs {end['median_of_pairs']:.3f}); "
        f"B-A {diff['complete_vs_stream_end']:.1f} ms"
    )
    calls = ", ".join(f"{m} {n:g}" for m, n in result["slack_calls_per_mention"].items())
    print(f"Slack Web API calls per mention: {calls}")
    if result["phase_medians_ms"]:
        print(f"phases (instrumented pass, {len(result['phases'])} mentions, median ms after the event's POST):")
        for label, ms in result["phase_medians_ms"].items():
            print(f"  {ms:9.1f}  {label}")
    print(
        f"CPU of everything else on the machine during the measurement: {result['other_processes_cpu_s']:.1f} s "
        f"in {result['measured_wall_s']:.0f} s"
    )
    print(f"request bodies of A and B identical: {result['bodies_identical']}")
    if "threads" in result:
        report_threads(result["threads"])
    for problem in result["problems"]:
        print(f"PROBLEM: {problem}")
    print(f"all checks passed: {result['all_ok']}")
    print(f"results: {path}")


def report_threads(threads: dict[str, Any]) -> None:
    s, n = threads["summary"], threads["threads"]
    print(
        f"{n} Slack threads of one channel answered at once against one alone ({len(threads['rounds'])} rounds, "
        "follow-ups without a mention):"
    )
    print(f"{'':52}{'median ms':>10}{'p99 ms':>9}")
    rows = (
        ("one thread alone: first answer text visible", "alone_first_visible_s"),
        ("one thread alone: complete answer", "alone_complete_s"),
        (f"{n} at once: first answer text visible (each)", "at_once_first_visible_s"),
        (f"{n} at once: complete answer (each)", "at_once_complete_s"),
        (f"{n} at once: complete answer (the later of the {n})", "at_once_later_complete_s"),
    )
    for name, key in rows:
        print(f"{name:52}{s[key]['median'] * 1000:10.1f}{s[key]['p99'] * 1000:9.1f}")
    ratio = s["ratio_at_once_over_alone"]
    print(
        f"at once / alone: first visible {ratio['first_visible']:.3f}, complete {ratio['complete']:.3f}, the later's "
        f"complete {ratio['later_complete']:.3f} (median of rounds {ratio['complete_median_of_rounds']:.3f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Slack mention latency against the bare SDK.")
    parser.add_argument("--mentions", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--phase-mentions", type=int, default=5, help="instrumented mentions after the measurement")
    parser.add_argument("--delay", type=float, default=DELAY, help="model: seconds to the first token")
    parser.add_argument("--chunk-delay", type=float, default=CHUNK_DELAY, help="model: seconds between chunks")
    parser.add_argument("--words", type=int, default=WORDS, help="model: words in every answer")
    parser.add_argument(
        "--shared-session",
        action="store_true",
        help="experiment: give the bot's Web API client one aiohttp session (slack_sdk otherwise opens one per call)",
    )
    parser.add_argument(
        "--slack-rtt-ms",
        type=float,
        default=0.0,
        help="simulate a network to Slack's Web API: this round-trip time, and a TCP+TLS handshake per new connection",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="also measure follow-ups in this many Slack threads of one channel at once against one alone (e.g. 2)",
    )
    parser.add_argument("--thread-rounds", type=int, default=10, help="rounds of --threads (each: alone and at once)")
    parser.add_argument("--serve-slack", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_slack:
        asyncio.run(serve_slack(args.slack_rtt_ms / 1000))
        return
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
