"""Discord for :mod:`bench.chat_latency` and :mod:`bench.chat_load` (``--platform discord``).

The bot is the real ``DiscordBot.start`` (discord.py connected to the fake's gateway, the default
``edit_interval`` of 1 s) in the benchmark's process, a fresh database; Discord is
:mod:`bench.discord_side` in a child process (REST, gateway, per-channel rate-limit buckets of 5
requests per 5 s), stamping the moment it dispatches each MESSAGE_CREATE and the moment each REST
call arrives. The bot is reached as Discord and the tests reach it: the gateway, a discord.py
listener (``add_listener``, stamping when discord.py dispatches the message, for the phase table), its
service (:class:`bench.chat_common.CoreWatch`) and ``replies.wait_idle()``; discord.py's own
rate-limit buckets are timed (:class:`RateLimitWaits`).

* Latency: each question a new message in a fresh channel (a fresh thread in the core, fresh
  buckets), by the same person. "First visible" is the ``POST /channels/{id}/messages`` with the
  first words of the reply, "complete" the REST call after which the reply shows the whole answer
  (a ``PATCH`` of it), both from the MESSAGE_CREATE's dispatch. Checked: the reply is the model's
  answer, exactly once, one message replying to the mention, and nothing else from the bot.
* Load: 20 people take turns; checked in Discord: exactly one reply per mention, the right one, no
  other message from the bot, each channel's replies in the order of its mentions, no history read.
  ``--probe-after N`` sends N single mentions after each B load, to see whether an idle bot's
  in-between edits come back after a burst.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import logging
import math
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import discord
import discord.http

from bench.chat_common import Answer, CoreWatch, Delivery, Phases, Run, check_store, follow_queues, measuring
from bench.common import LagTicker, ModelServer, bench_settings, summary
from bench.discord_side import (
    CREATE,
    EDIT,
    HISTORY,
    DiscordProcess,
    Question,
    Seen,
    author,
    busiest_second,
    channel_id,
    discord_process,
    routes,
    see_questions,
)
from bench.fake_server import request_digest
from bots.discord.app import DiscordBot
from bots.discord.config import DiscordSettings
from core.models import Author, Incoming

__all__ = ["DiscordLatency", "DiscordLoad", "LogCapture", "RateLimitWaits"]

FAKE = {
    "discord": "tests.fakes.discord_server.FakeDiscord (bench.discord_side) in a child process on 127.0.0.1",
    "rate_limit": "5 requests per 5 s per channel and message route (FakeDiscord's default)",
}


def add_arguments(parser: argparse.ArgumentParser, *, load: bool) -> None:
    """This platform's options of :mod:`bench.chat_latency` (``load`` False) or :mod:`bench.chat_load`."""
    group = parser.add_argument_group("Discord")
    group.add_argument(
        "--edit-interval", type=float, default=None, help="experiment: DiscordSettings.edit_interval (default 1.0)"
    )
    if load:
        group.add_argument(
            "--probe-after",
            type=int,
            default=0,
            help="after each B load, this many single mentions (fresh channels) to see how an idle bot edits again",
        )
        group.add_argument("--probe-every", type=float, default=10.0, help="seconds between those mentions")


async def start_bot(model: ModelServer, fake: DiscordProcess, db: Path, args: argparse.Namespace) -> DiscordBot:
    """The real adapter against the fake: ``DiscordSettings`` as a person would set them, but the addresses."""
    overrides = {"edit_interval": args.edit_interval} if args.edit_interval is not None else {}
    settings = DiscordSettings(token=fake.token, api_url=fake.api_base, gateway_url=fake.gateway_url, **overrides)
    return await DiscordBot.start(bench_settings(model.base_url, db), settings, guild_ready_timeout=0.05)


async def quiet(bot: DiscordBot) -> None:
    """Wait until the core has no work and the adapter shows no run (its last calls are made)."""
    await bot.service.wait_idle()
    await bot.client.replies.wait_idle()


async def ask(fake: DiscordProcess, bot: DiscordBot, question: Question, words: int) -> tuple[Seen, dict[str, Any]]:
    """Send one mention, wait until its whole answer shows and the bot is quiet; what Discord saw."""
    await fake.command("reset")
    await fake.command("send", messages=[question.spec(words)])
    waited = await fake.command("wait", timeout=60)
    if not waited["ok"]:
        raise RuntimeError(f"mention {question.tag} was not answered: {waited}")
    await quiet(bot)
    report = await fake.command("report")
    return see_questions(report, {question.tag: question.expected(words)})[question.tag], report


def edit_interval(config: dict[str, Any]) -> str:
    interval = config["edit_interval_s"]
    return "1 s (the default)" if interval is None else f"{interval:g} s"


_ROUTE: contextvars.ContextVar[str] = contextvars.ContextVar("discord route", default="?")


@dataclass
class RateLimitWaits:
    """How long discord.py's rate-limit buckets held the bot's requests (each hold of 1 ms or more), by route.

    ``before``: a request waiting for its bucket before it is sent; ``after``: the request that spent
    the bucket's last token, whose caller discord.py keeps asleep until the bucket resets, after
    Discord has answered (``Ratelimit.__aexit__``). Entries are (route, seconds held).
    """

    before: list[tuple[str, float]] = field(default_factory=list)
    after: list[tuple[str, float]] = field(default_factory=list)

    def clear(self) -> None:
        self.before.clear()
        self.after.clear()

    def as_dict(self) -> dict[str, Any]:
        def one(held: list[tuple[str, float]]) -> dict[str, Any]:
            by_route: dict[str, list[float]] = {}
            for route, seconds in held:
                by_route.setdefault(route, []).append(seconds)
            return {
                "count": len(held),
                "total_s": sum(s for _, s in held),
                "max_s": max((s for _, s in held), default=0.0),
                "by_route": {r: {"count": len(v), "total_s": sum(v), "max_s": max(v)} for r, v in by_route.items()},
            }

        return {"before_request": one(self.before), "after_request": one(self.after)}

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        ratelimit, client = discord.http.Ratelimit, discord.http.HTTPClient
        acquire, exit_, request = ratelimit.acquire, ratelimit.__aexit__, client.request

        async def routed_request(http: discord.http.HTTPClient, route: discord.http.Route, **kwargs: Any) -> Any:
            token = _ROUTE.set(route.key)
            try:
                return await request(http, route, **kwargs)
            finally:
                _ROUTE.reset(token)

        async def timed_acquire(bucket: discord.http.Ratelimit) -> None:
            start = time.monotonic()
            try:
                await acquire(bucket)
            finally:
                if (held := time.monotonic() - start) >= 0.001:
                    self.before.append((_ROUTE.get(), held))

        async def timed_exit(bucket: discord.http.Ratelimit, *exc: Any) -> None:
            start = time.monotonic()
            try:
                await exit_(bucket, *exc)
            finally:
                if (held := time.monotonic() - start) >= 0.001:
                    self.after.append((_ROUTE.get(), held))

        client.request = routed_request  # type: ignore[method-assign,assignment]
        ratelimit.acquire = timed_acquire  # type: ignore[method-assign,assignment]
        ratelimit.__aexit__ = timed_exit  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            client.request = request  # type: ignore[method-assign]
            ratelimit.acquire = acquire  # type: ignore[method-assign]
            ratelimit.__aexit__ = exit_  # type: ignore[method-assign]


# discord.py's KeepAliveHandler notes when a heartbeat was sent only after the send has returned, in
# its own thread; over loopback the fake's HEARTBEAT_ACK can be handled first, and the "latency" is
# then measured from the previous heartbeat, one interval (41.25 s) back. Not the bot being late.
HEARTBEAT_RACE = "Can't keep up, shard ID %s websocket is %.1fs behind."
HEARTBEAT_INTERVAL_S = 41.25


def _one_interval_late(record: logging.LogRecord) -> bool:
    late = record.args[1] if isinstance(record.args, tuple) and len(record.args) == 2 else None
    return isinstance(late, float) and abs(late - HEARTBEAT_INTERVAL_S) < 1.0


class LogCapture(logging.Handler):
    """Every warning and error logged in this process (the bot's, discord.py's, the core's), while installed.

    Two known, harmless ones are left out: discord.py saying voice is not installed, and its heartbeat
    race on loopback (counted in ``heartbeat_races``).
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []
        self.heartbeat_races = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "discord.client" and "voice will NOT be supported" in record.getMessage():
            return  # said at every start: voice support is not installed, and not used
        if record.name == "discord.gateway" and record.msg == HEARTBEAT_RACE and _one_interval_late(record):
            self.heartbeat_races += 1
            return
        self.records.append(f"{record.levelname} {record.name}: {record.getMessage()}"[:300])

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        root = logging.getLogger()
        root.addHandler(self)
        try:
            yield
        finally:
            root.removeHandler(self)


# == one mention at a time =========================================================================


@dataclass
class DiscordLatency:
    """The bot and Discord for :mod:`bench.chat_latency`."""

    fake: DiscordProcess
    bot: DiscordBot
    words: int
    waits: RateLimitWaits
    logs: LogCapture
    name = "discord"
    label = "Discord"
    origin = "discord: MESSAGE_CREATE dispatched"
    first_label = "first words visible (POST)"
    complete_label = "whole answer visible (last PATCH)"
    min_warmup = 1
    rows = ()
    _phases: Phases | None = field(default=None, init=False)

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, model: ModelServer, args: argparse.Namespace, db: Path) -> AsyncIterator[DiscordLatency]:
        channels = args.warmup + args.mentions + args.phase_mentions
        waits, logs = RateLimitWaits(), LogCapture()
        async with discord_process(channels=max(100, channels)) as fake:
            with logs.installed(), waits.watching():
                bot = await start_bot(model, fake, db, args)
                try:
                    yield cls(fake, bot, args.words, waits, logs)
                finally:
                    await bot.stop()

    def config(self, args: argparse.Namespace) -> dict[str, Any]:
        return {"edit_interval_s": args.edit_interval} | FAKE

    def result_name(self, args: argparse.Namespace) -> str:
        return f"-edit{args.edit_interval:g}" if args.edit_interval is not None else ""

    @contextlib.contextmanager
    def listening(self, phases: Phases) -> Iterator[None]:
        """A discord.py listener (public API: ``add_listener``) stamping when discord.py dispatches a message."""

        async def on_message(message: discord.Message) -> None:
            phases.first("bot: discord.py dispatches the message (on_message)")

        self.bot.client.add_listener(on_message, "on_message")
        try:
            yield
        finally:
            self.bot.client.remove_listener(on_message, "on_message")

    async def ask(self, tag: str, index: int) -> Answer:
        question = Question(channel_id(index), tag)
        seen, report = await ask(self.fake, self.bot, question, self.words)
        stamps: dict[str, float] = {}
        for _stamp, _method, route, _channel, _mid, _status, _q, _content in report["rows"]:
            if route == "POST /channels/{id}/typing":
                stamps.setdefault("discord: typing POST arrives", _stamp)
        edits = 0
        for route, at in seen.stamps:
            if route == CREATE:
                stamps["discord: POST with the first words arrives"] = at
            elif route == EDIT:
                edits += 1
                whole = at == seen.complete
                stamps[
                    "discord: PATCH with the whole answer arrives" if whole else f"discord: PATCH {edits} arrives"
                ] = at
        return Answer(
            seen.dispatched,
            seen.first_text,
            seen.complete,
            problems_of(seen, report, question, self.words),
            routes(report),
            {"B_edits": seen.edits},
            stamps,
        )

    def measurement_begins(self) -> None:
        self.waits.clear()  # holds of the warm-up do not count

    async def after(self, args: argparse.Namespace) -> dict[str, Any]:
        return {
            "ratelimit_waits": self.waits.as_dict(),
            "log_warnings": self.logs.records,
            "heartbeat_races_logged": self.logs.heartbeat_races,
        }

    def report(self, result: dict[str, Any]) -> list[str]:
        waits = result["ratelimit_waits"]
        lines = [
            f"edit interval {edit_interval(result['config'])}; edits per answer: median "
            f"{result['summary']['B_edits']['median']:g}, max {result['summary']['B_edits']['max']:g}",
            f"discord.py rate-limit holds: {waits['before_request']['count']} before a request "
            f"({waits['before_request']['total_s']:.2f} s), {waits['after_request']['count']} after one "
            f"({waits['after_request']['total_s']:.2f} s)",
        ]
        return lines + [f"LOGGED: {line}" for line in result["log_warnings"][:10]]


def problems_of(seen: Seen, report: dict[str, Any], question: Question, words: int) -> list[str]:
    problems = []
    if seen.replies != [question.expected(words)]:
        problems.append(f"replies {seen.replies!r}")
    if seen.posts != 1:
        problems.append(f"{seen.posts} messages posted for it")
    others = [m for m in report["messages"] if m[2] != seen.id]
    if others:
        problems.append(f"{len(others)} other messages from the bot: {[m[3][:60] for m in others]!r}")
    if report["rate_limited"]:
        problems.append(f"{report['rate_limited']} 429s served")
    if math.isnan(seen.complete) or seen.complete < seen.first_text:
        problems.append("the whole answer was never shown")
    return problems


# == under load ====================================================================================


@dataclass
class DiscordLoad:
    """Discord for :mod:`bench.chat_load`: the plan, side B through Discord, and what the core alone is posted."""

    fake: DiscordProcess
    name = "discord"
    label = "Discord"
    zero_checks = (
        "missing_reply",
        "duplicate_reply",
        "wrong_reply",
        "never_complete",
        "extra_posts",
        "other_bot_messages",
        "channels_replies_out_of_order",
        "posted_to_core_out_of_order",
        "history_reads",
    )

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, args: argparse.Namespace) -> AsyncIterator[DiscordLoad]:
        async with discord_process(channels=args.channels + 1 + args.probe_after) as fake:
            yield cls(fake)

    def config(self, args: argparse.Namespace) -> dict[str, Any]:
        probes = {"probe_after": args.probe_after, "probe_every_s": args.probe_every}
        return {"edit_interval_s": args.edit_interval} | probes | FAKE

    def result_name(self, args: argparse.Namespace) -> str:
        return f"-edit{args.edit_interval:g}" if args.edit_interval is not None else ""

    def describe(self, config: dict[str, Any]) -> str:
        return f"; edit interval {edit_interval(config)}"

    @staticmethod
    def plan(channels: int, per_channel: int, users: int) -> list[list[Question]]:
        """Each channel's mentions in order: tags ``c042m3`` (one width: every answer has one length)."""
        return [
            [Question(channel_id(c), f"c{c:03d}m{k}", author=(c + k) % users) for k in range(per_channel)]
            for c in range(channels)
        ]

    @staticmethod
    def warm(channels: int) -> Question:
        """The untimed warm-up mention, in a channel of its own (after the plan's)."""
        return Question(channel_id(channels), "w000m0")

    @staticmethod
    def incoming(q: Question) -> Incoming:
        """What the adapter posts to the core for a mention (the author's display name is their global name)."""
        person = author(q.author)
        return Incoming(q.key, Author(str(person.id), person.name.title()), q.text, platform_msg_id=f"core-{q.tag}")

    core_digest = staticmethod(request_digest)

    async def run_b(
        self,
        model: ModelServer,
        db: Path,
        plan: list[list[Question]],
        args: argparse.Namespace,
        run: Run,
        ticker: LagTicker,
        profiling: contextlib.AbstractContextManager[Any],
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """B through the gateway to a fresh bot; fills ``run``, returns the bodies the model received and the
        extras (rate-limit holds, logged warnings, 429s)."""
        fake = self.fake
        waits, logs, core = RateLimitWaits(), LogCapture(), CoreWatch()
        expected = {q.tag: q.expected(args.words) for channel in plan for q in channel}
        with logs.installed(), waits.watching():
            bot = await start_bot(model, fake, db, args)
            try:
                # One warm-up mention (the model connection, the built agent), then a clean slate.
                await ask(fake, bot, self.warm(args.channels), args.words)
                await fake.command("reset")
                await model.command("reset")
                waits.clear()
                logs.records.clear()

                specs = [q.spec(args.words, at=k * args.gap) for channel in plan for k, q in enumerate(channel)]
                with core.watching(bot.service):
                    async with measuring(run, ticker, {"model": model.pid, self.name: fake.pid}) as start:
                        with profiling:
                            await fake.command("send", messages=specs)
                            waited = await fake.command("wait", timeout=args.timeout)
                    await quiet(bot)
                run.model_served_s = (await model.command("served"))["served"]

                report = await fake.command("report")
                seen = see_questions(report, expected)
                stats = await model.command("stats")
                bodies: list[dict[str, Any]] = (await model.command("bodies"))["bodies"]
                run.methods = dict(routes(report))
                sent_ids = {one.id for one in seen.values()}
                replies_by_channel: dict[str, list[str]] = {}
                for channel_of, _mid, question, _content, _versions in report["messages"]:
                    replies_by_channel.setdefault(channel_of, []).append(question)
                tag_of = {one.id: tag for tag, one in seen.items()}
                missing = duplicate = wrong = unfinished = extra_posts = replies_misordered = 0
                completed_to_visible: list[float] = []  # RunCompleted emitted -> the whole answer reaches Discord
                deliveries: list[list[Delivery | None]] = []
                for channel in plan:
                    replied = [tag_of.get(q, "?") for q in replies_by_channel.get(str(channel[0].channel), [])]
                    replies_misordered += replied != [q.tag for q in channel]
                    mine: list[Delivery | None] = []
                    for q in channel:
                        one = seen.get(q.tag)
                        if one is None:
                            missing += 1
                            mine.append(None)
                            continue
                        missing += not one.replies
                        duplicate += max(0, len(one.replies) - 1)
                        wrong += sum(r != expected[q.tag] for r in one.replies)
                        extra_posts += max(0, one.posts - 1)
                        unfinished += math.isnan(one.complete)
                        if q.tag in core.completed and not math.isnan(one.complete):
                            completed_to_visible.append(one.complete - core.completed[q.tag])
                        mine.append(Delivery(one.id, one.dispatched, one.first_text, one.complete))
                    deliveries.append(mine)
                others = [m for m in report["messages"] if m[2] not in sent_ids]
                threads = [(ch[0].key, [(q.text, expected[q.tag]) for q in ch]) for ch in plan]
                run.checks = {
                    "mentions": len(specs),
                    "all_answered_in_time": bool(waited["ok"]),
                    "missing_reply": missing,
                    "duplicate_reply": duplicate,
                    "wrong_reply": wrong,
                    "never_complete": unfinished,
                    "extra_posts": extra_posts,
                    "other_bot_messages": len(others),
                    "channels_replies_out_of_order": replies_misordered,
                    "posted_to_core_out_of_order": follow_queues(run, deliveries, core.reached),
                    "history_reads": run.methods.get(HISTORY, 0),
                    **await check_store(bot.service, threads, args.words),
                    "model_requests": stats["chat_requests"],
                }
                busiest = busiest_second(report)
                first_dispatch = min((one.dispatched for one in seen.values()), default=math.nan)
                extras = {
                    "busiest_second_calls": busiest["calls"],
                    "busiest_second_starts_s": busiest["from"] - first_dispatch,
                    "rest_calls_per_s_mean": busiest["mean_per_s"],
                    "completed_to_visible_s": summary(completed_to_visible),
                    "rate_limited_429": report["rate_limited"],
                    "ratelimit_waits": waits.as_dict(),
                    "log_warnings": list(logs.records),
                    "heartbeat_races_logged": logs.heartbeat_races,
                    "other_bot_messages": [m[3][:100] for m in others[:5]],
                }
                if args.probe_after:
                    extras["after_load_probes"] = await probe_after(fake, bot, args, loaded=start + run.wall_s)
            finally:
                await bot.stop()
        return bodies, extras

    def summarise_b(self, runs: list[Run], extras: list[dict[str, Any]]) -> dict[str, Any]:
        def med(values: list[float]) -> float:
            return statistics.median(values)

        out: dict[str, Any] = {
            "history_reads": sum(r.methods.get(HISTORY, 0) for r in runs),
            "rate_limited_429": sum(e["rate_limited_429"] for e in extras),
            "ratelimit_holds": {
                when: {
                    "count": sum(e["ratelimit_waits"][when]["count"] for e in extras),
                    "total_s": sum(e["ratelimit_waits"][when]["total_s"] for e in extras),
                    "max_s": max(e["ratelimit_waits"][when]["max_s"] for e in extras),
                }
                for when in ("before_request", "after_request")
            },
        }
        holds_by_route: dict[str, dict[str, float]] = {}
        for e in extras:
            for when in ("before_request", "after_request"):
                for route, held in e["ratelimit_waits"][when]["by_route"].items():
                    one = holds_by_route.setdefault(f"{when}: {route}", {"count": 0, "total_s": 0.0, "max_s": 0.0})
                    one["count"] += held["count"]
                    one["total_s"] += held["total_s"]
                    one["max_s"] = max(one["max_s"], held["max_s"])
        out["ratelimit_holds_by_route"] = holds_by_route
        out["completed_to_visible_p50_ms"] = med([e["completed_to_visible_s"]["median"] * 1000 for e in extras])
        out["completed_to_visible_p99_ms"] = med([e["completed_to_visible_s"]["p99"] * 1000 for e in extras])
        out["completed_to_visible_max_ms"] = max(e["completed_to_visible_s"]["max"] * 1000 for e in extras)
        out["log_warnings"] = sum(len(e["log_warnings"]) for e in extras)
        out["busiest_second_calls"] = max(e["busiest_second_calls"] for e in extras)
        out["rest_calls_per_s_mean"] = med([e["rest_calls_per_s_mean"] for e in extras])
        return out

    def report_b(self, b: dict[str, Any]) -> list[str]:
        holds = b["ratelimit_holds"]
        lines = [
            f"B: REST calls a second: {b['rest_calls_per_s_mean']:.1f} on average from the first to the last, "
            f"{b['busiest_second_calls']} in the busiest second (Discord allows a bot 50 a second in all)",
            f"B: history reads {b['history_reads']}; 429s served {b['rate_limited_429']}; discord.py rate-limit "
            f"holds (all repeats): {holds['before_request']['count']} before a request "
            f"({holds['before_request']['total_s']:.2f} s, max {holds['before_request']['max_s']:.2f} s), "
            f"{holds['after_request']['count']} after one ({holds['after_request']['total_s']:.2f} s, max "
            f"{holds['after_request']['max_s']:.2f} s); warnings logged {b['log_warnings']}",
        ]
        lines += [
            f"   {what}: {held['count']} holds, {held['total_s']:.2f} s in all, max {held['max_s']:.2f} s"
            for what, held in b["ratelimit_holds_by_route"].items()
        ]
        lines.append(
            f"B: from RunCompleted to the whole answer in Discord: p50 {b['completed_to_visible_p50_ms']:.1f} ms, "
            f"p99 {b['completed_to_visible_p99_ms']:.1f} ms, max {b['completed_to_visible_max_ms']:.1f} ms"
        )
        return lines

    def report_extras(self, result: dict[str, Any]) -> list[str]:
        lines = []
        for extra in result["platform_extras"]:
            for probe in extra.get("after_load_probes", []):
                lines.append(
                    f"B, {probe['s_after_load']:5.1f} s after the load: one mention alone, {probe['edits']} edits "
                    f"(an idle bot: 2), whole answer after {probe['complete_s']:.3f} s"
                )
            lines += [f"LOGGED: {line}" for line in extra["log_warnings"][:5]]
        return lines


async def probe_after(fake: DiscordProcess, bot: DiscordBot, args: argparse.Namespace, loaded: float) -> list[Any]:
    """After the load: one mention at a time in fresh channels, ``--probe-every`` s apart; each one's edits.

    An idle bot edits an answer once in between (at 1 s) and once at the end: do the in-between
    edits come back as soon as the load is over?
    """
    probes: list[dict[str, Any]] = []
    for i in range(args.probe_after):
        await asyncio.sleep(max(0.0, loaded + i * args.probe_every - time.monotonic()))
        q = Question(channel_id(args.channels + 1 + i), f"p{i:03d}m0")
        sent = time.monotonic()
        one, _ = await ask(fake, bot, q, args.words)
        probes.append(
            {"s_after_load": sent - loaded, "posts": one.posts, "edits": one.edits, "complete_s": one.complete_s}
        )
    return probes
