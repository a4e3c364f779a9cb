"""Discord latency: from a mention's MESSAGE_CREATE to the first words and to the whole answer visible in Discord.

    .venv/bin/python -m bench.discord_latency [--mentions 20] [--warmup 3] [--phase-mentions 5]

Three processes, all on 127.0.0.1:

* the **model** (:mod:`bench.slack_model_server`): 0.5 s to the first token, then four characters
  every 20 ms (200 characters, about 50 tokens, a second), a 60-word answer;
* **Discord** (:mod:`bench.discord_side`): :class:`tests.fakes.discord_server.FakeDiscord` (REST,
  gateway, per-channel rate-limit buckets of 5 requests per 5 s), stamping with
  ``time.monotonic()`` the moment it dispatches each MESSAGE_CREATE on the gateway and the moment
  each REST call arrives;
* the **bot** (this process): the real ``DiscordBot.start`` (discord.py connected to the fake's
  gateway, the default ``edit_interval`` of 1 s), a fresh database.

Each measured mention is a new message in a fresh channel, one at a time, by the same person.

* B, Discord: from the MESSAGE_CREATE's dispatch to (a) the ``POST /channels/{id}/messages``
  that shows the first words of the reply and (b) the REST call after which the reply's content
  is the whole answer (a ``PATCH`` of it); the reply must be the model's answer, exactly once:
  one message replying to the mention, and nothing else from the bot in the channel.
* A, bare openai SDK (the reference): ``chat.completions.create(stream=True)`` with exactly the
  request body the bot sends (captured in the warm-up, its tag swapped), to the same server:
  time to the first and to the last content token, and to the end of the stream.

A and B alternate, A first for even mentions. Reported: medians, the ratios B(a)/A(first token)
(goal ≤ 1.10) and B(b)/A(last token) (goal ≤ 1.05), both as a ratio of medians and as the median
of each pair's ratio; REST calls per mention by route; 429s served; how long discord.py held
requests for its rate-limit buckets; warnings logged. Then a separate, instrumented pass
(``--phase-mentions``) times the phases inside the bot for a few more mentions, so the figures
above carry no instrumentation. :mod:`bench.discord_load` uses the same three processes under load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import functools
import logging
import math
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import discord
import discord.http
import openai

from bench.chat_common import (
    Phases,
    bare_call,
    bodies_match,
    code_version,
    kwargs_for,
    others_cpu_s,
    phase_medians,
    retag,
    sdk_parameters,
)
from bench.common import ModelServer, bench_settings, forbid_non_loopback, machine, summary, write_result
from bench.discord_side import (
    CREATE,
    EDIT,
    DiscordProcess,
    Question,
    Seen,
    channel_id,
    discord_process,
    routes,
    see_questions,
)
from bench.slack_model_server import message_tag, reply_text, slack_model_server
from bots.discord.app import DiscordBot
from bots.discord.config import DiscordSettings
from bots.discord.conversation import ConversationCog
from bots.discord.render import _ChannelSink
from bots.live import LiveText
from core.events import Event
from core.handles import RunHandle
from core.service import Threadline

__all__ = [
    "CHUNK_DELAY",
    "DELAY",
    "WORDS",
    "FinishStamps",
    "LogCapture",
    "RateLimitWaits",
    "quiet",
    "start_bot",
]

DELAY = 0.5
CHUNK_DELAY = 0.02
WORDS = 60
GOAL_FIRST = 1.10
GOAL_COMPLETE = 1.05


# == the bot ====================================================================================


async def start_bot(model: ModelServer, fake: DiscordProcess, db: Path, **overrides: Any) -> DiscordBot:
    """The real adapter against the fake: ``DiscordSettings`` as a person would set them, but the addresses."""
    settings = DiscordSettings(token=fake.token, api_url=fake.api_base, gateway_url=fake.gateway_url, **overrides)
    return await DiscordBot.start(bench_settings(model.base_url, db), settings, guild_ready_timeout=0.05)


async def quiet(bot: DiscordBot) -> None:
    """Wait until the core has no work and the adapter shows no run (its last calls are made)."""
    await bot.service.wait_idle()
    await bot.client.replies._idle.wait()


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


@dataclass
class FinishStamps:
    """When each answer's ``LiveText.finish`` (the last edit, on RunCompleted) was called and returned, by tag."""

    called: dict[str, float] = field(default_factory=dict)
    returned: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        original = LiveText.finish

        async def finish(live: LiveText[Any], tail: str = "") -> list[Any]:
            tag = message_tag(live._text + tail)
            self.called.setdefault(tag, time.monotonic())
            try:
                return await original(live, tail)
            finally:
                self.returned.setdefault(tag, time.monotonic())

        LiveText.finish = finish  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            LiveText.finish = original  # type: ignore[method-assign]


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


# == phases inside the bot (the instrumented pass) ================================================


@contextlib.contextmanager
def instrumented(phases: Phases, bot: DiscordBot) -> Iterator[None]:
    """Wrap a few methods of discord.py, the adapter and the core to stamp phases; restored afterwards."""
    saved: list[tuple[type, str, Any]] = []
    parsers = bot.client._connection.parsers  # discord.py's gateway event -> bound parse_* method

    def patch(cls: type, name: str, make: Callable[[Any], Any]) -> None:
        original = cls.__dict__[name]
        saved.append((cls, name, original))
        setattr(cls, name, make(original))

    def around(before: str | None, after: str | None, *, last: bool = False) -> Callable[[Any], Any]:
        def make(original: Any) -> Any:
            @functools.wraps(original)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                if before:
                    (phases.last if last else phases.first)(before)
                result = await original(*args, **kwargs)
                if after:
                    (phases.last if last else phases.first)(after)
                return result

            return wrapper

        return make

    def parsed(original: Callable[[Any], None]) -> Callable[[Any], None]:
        @functools.wraps(original)
        def wrapper(data: Any) -> None:
            phases.first("bot: discord.py parses the MESSAGE_CREATE")
            original(data)

        return wrapper

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

    parse = parsers["MESSAGE_CREATE"]
    parsers["MESSAGE_CREATE"] = parsed(parse)
    patch(ConversationCog, "_take", around("bot: the cog takes the message", None))
    patch(Threadline, "post", around(None, "bot: post() returned"))
    patch(RunHandle, "put", put)
    patch(_ChannelSink, "post", around("bot: POST of the first words starts", "bot: POST returned"))
    patch(_ChannelSink, "edit", around("bot: last edit starts", "bot: last edit returned", last=True))
    patch(LiveText, "finish", around("bot: finish() called", None, last=True))
    try:
        yield
    finally:
        parsers["MESSAGE_CREATE"] = parse
        for cls, name, original in reversed(saved):
            setattr(cls, name, original)


# == the benchmark ================================================================================


async def one_b(fake: DiscordProcess, bot: DiscordBot, question: Question, words: int) -> tuple[Seen, dict[str, Any]]:
    """Send one mention, wait until its whole answer shows and the bot is quiet; what Discord saw."""
    await fake.command("reset")
    await fake.command("send", messages=[question.spec(words)])
    waited = await fake.command("wait", timeout=30)
    if not waited["ok"]:
        raise RuntimeError(f"mention {question.tag} was not answered: {waited}")
    await quiet(bot)
    report = await fake.command("report")
    return see_questions(report, {question.tag: question.expected(words)})[question.tag], report


def check_b(seen: Seen, report: dict[str, Any], question: Question, words: int) -> list[str]:
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


def question(index: int, tag: str) -> Question:
    return Question(channel_id(index), tag)


async def main_async(args: argparse.Namespace) -> int:
    forbid_non_loopback()
    result: dict[str, Any] = {
        "benchmark": "discord_latency",
        "command": ".venv/bin/python -m bench.discord_latency " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "code": code_version("bots", "core"),
        "config": {
            "mentions": args.mentions,
            "warmup": args.warmup,
            "phase_mentions": args.phase_mentions,
            "first_token_delay_s": args.delay,
            "chunk_delay_s": args.chunk_delay,
            "chars_per_chunk": 4,
            "answer_words": args.words,
            "answer_chars": len(reply_text("#L0000", args.words)),
            "edit_interval_s": args.edit_interval,
            "model": "bench.slack_model_server in a child process on 127.0.0.1",
            "discord": "tests.fakes.discord_server.FakeDiscord (bench.discord_side) in a child process on 127.0.0.1",
            "rate_limit": "5 requests per 5 s per channel and message route (FakeDiscord's default)",
            "assistant": "built-in",
        },
    }
    pairs: list[dict[str, Any]] = []
    problems: list[str] = []
    route_counts: Counter[str] = Counter()
    phases_out: list[dict[str, float]] = []
    waits = RateLimitWaits()
    logs = LogCapture()
    channels = args.warmup + args.mentions + args.phase_mentions
    overrides = {"edit_interval": args.edit_interval} if args.edit_interval is not None else {}
    async with (
        slack_model_server(delay=args.delay, chunk_delay=args.chunk_delay, words=args.words) as model,
        discord_process(channels=max(100, channels)) as fake,
    ):
        with tempfile.TemporaryDirectory(prefix="threadline-bench-") as tmp, logs.installed(), waits.watching():
            bot = await start_bot(model, fake, Path(tmp) / "discord.db", **overrides)
            client = openai.AsyncOpenAI(api_key="sk-bench-not-a-real-key", base_url=model.base_url, max_retries=0)
            try:
                # Warm-up through Discord: opens connections, builds the agent, captures the body.
                await model.command("reset")
                for i in range(max(1, args.warmup)):
                    q = question(i, f"W{i:04d}")
                    seen, report = await one_b(fake, bot, q, args.words)
                    problems += [f"warm-up {q.tag}: {p}" for p in check_b(seen, report, q, args.words)]
                captured = (await model.command("bodies"))["bodies"]
                template = captured[-1]
                template_tag = message_tag(str(template["messages"][-1]["content"]))
                known = sdk_parameters()
                # The bare SDK warms its own connection too.
                await bare_call(client, kwargs_for(retag(template, template_tag, "W9999"), known))

                await model.command("reset")
                waits.clear()
                pids = (model._process.pid, fake.pid)
                others_before, wall_before = others_cpu_s(*pids), time.monotonic()
                for i in range(args.mentions):
                    q = question(args.warmup + i, f"L{i:04d}")
                    body = retag(template, template_tag, f"A{i:04d}")
                    order = ("A", "B") if i % 2 == 0 else ("B", "A")
                    pair: dict[str, Any] = {"mention": q.tag, "order": "".join(order)}
                    for side in order:
                        if side == "A":
                            bare = await bare_call(client, kwargs_for(body, known))
                            if bare.text != reply_text(f"#A{i:04d}", args.words):
                                problems.append(f"A {i}: wrong answer {bare.text[:40]!r}")
                            pair |= {"A_first_token_s": bare.first, "A_last_token_s": bare.last, "A_end_s": bare.end}
                        else:
                            seen, report = await one_b(fake, bot, q, args.words)
                            problems += [f"B {q.tag}: {p}" for p in check_b(seen, report, q, args.words)]
                            route_counts.update(routes(report))
                            pair |= {
                                "B_first_visible_s": seen.first_visible_s,
                                "B_complete_s": seen.complete_s,
                                "B_edits": seen.edits,
                                "B_calls": [[r, (s - seen.dispatched) * 1000] for r, s in seen.stamps],
                            }
                    pairs.append(pair)
                    print(
                        f"{i + 1:3d}/{args.mentions} A first {pair['A_first_token_s'] * 1000:7.1f} ms, last "
                        f"{pair['A_last_token_s'] * 1000:7.1f} ms | B first {pair['B_first_visible_s'] * 1000:7.1f} "
                        f"ms, complete {pair['B_complete_s'] * 1000:7.1f} ms ({pair['B_edits']} edits)"
                    )
                result["other_processes_cpu_s"] = others_cpu_s(*pids) - others_before
                result["measured_wall_s"] = time.monotonic() - wall_before
                result["ratelimit_waits"] = waits.as_dict()
                bodies = (await model.command("bodies"))["bodies"]
                result["bodies_identical"] = bodies_match(bodies, args.mentions)

                if args.phase_mentions:
                    phases_out = await phase_pass(model, fake, bot, args)
            finally:
                await client.close()
                await bot.stop()

    result["pairs"] = pairs
    result["summary"] = summarise(pairs)
    result["rest_calls_per_mention"] = {r: n / max(1, args.mentions) for r, n in sorted(route_counts.items())}
    result["phases"] = phases_out
    result["phase_medians_ms"] = phase_medians(phases_out)
    result["log_warnings"] = logs.records
    result["heartbeat_races_logged"] = logs.heartbeat_races
    result["problems"] = problems
    result["all_ok"] = not problems and bool(result["bodies_identical"])
    name = "discord_latency" + (f"-edit{args.edit_interval:g}" if args.edit_interval is not None else "")
    path = write_result(name, result)
    print_report(result, path)
    return 0 if result["all_ok"] else 1


async def phase_pass(
    model: ModelServer, fake: DiscordProcess, bot: DiscordBot, args: argparse.Namespace
) -> list[dict[str, float]]:
    """A few more mentions with the bot instrumented; each phase in ms after the MESSAGE_CREATE's dispatch."""
    out: list[dict[str, float]] = []
    phases = Phases()
    with instrumented(phases, bot):
        for i in range(args.phase_mentions):
            q = question(args.warmup + args.mentions + i, f"P{i:04d}")
            phases.now = {}
            await model.command("reset")
            seen, report = await one_b(fake, bot, q, args.words)
            arrivals = (await model.command("arrivals"))["arrivals"]
            stamps: dict[str, float] = {"discord: MESSAGE_CREATE dispatched": seen.dispatched}
            stamps |= phases.now
            for tag, at in arrivals:
                if tag == q.tag:
                    stamps["model: request arrived"] = at
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
            out.append({k: (v - seen.dispatched) * 1000 for k, v in sorted(stamps.items(), key=lambda kv: kv[1])})
    return out


def summarise(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    def col(name: str) -> list[float]:
        return [float(p[name]) for p in pairs]

    out: dict[str, Any] = {
        name: summary(col(name))
        for name in ("A_first_token_s", "A_last_token_s", "A_end_s", "B_first_visible_s", "B_complete_s")
    }
    out["B_edits"] = summary(col("B_edits"))
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


def print_report(result: dict[str, Any], path: Path) -> None:
    cfg, s = result["config"], result["summary"]
    interval = cfg["edit_interval_s"]
    print(
        f"Discord latency: {cfg['mentions']} mentions, one at a time, each in a fresh channel; model: first token "
        f"after {cfg['first_token_delay_s']:g} s, 4 chars every {cfg['chunk_delay_s'] * 1000:g} ms, "
        f"{cfg['answer_words']} words ({cfg['answer_chars']} chars); edit interval "
        + ("1 s (the default)" if interval is None else f"{interval:g} s")
    )
    print(f"{'':46}{'median ms':>10}{'p99 ms':>9}{'min ms':>9}{'max ms':>9}")
    rows = (
        ("A bare SDK: first token", "A_first_token_s"),
        ("A bare SDK: last token", "A_last_token_s"),
        ("A bare SDK: end of stream", "A_end_s"),
        ("B Discord: first words visible (POST)", "B_first_visible_s"),
        ("B Discord: whole answer visible (last PATCH)", "B_complete_s"),
    )
    for name, key in rows:
        ms = {k: v * 1000 for k, v in s[key].items() if k != "n"}
        print(f"{name:46}{ms['median']:10.1f}{ms['p99']:9.1f}{ms['min']:9.1f}{ms['max']:9.1f}")
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
    print(f"edits per answer: median {s['B_edits']['median']:g}, max {s['B_edits']['max']:g}")
    calls = ", ".join(f"{r} {n:g}" for r, n in result["rest_calls_per_mention"].items())
    print(f"REST calls per mention: {calls}")
    waits = result["ratelimit_waits"]
    print(
        f"discord.py rate-limit holds: {waits['before_request']['count']} before a request "
        f"({waits['before_request']['total_s']:.2f} s), {waits['after_request']['count']} after one "
        f"({waits['after_request']['total_s']:.2f} s)"
    )
    if result["phase_medians_ms"]:
        print(f"phases (instrumented pass, {len(result['phases'])} mentions, median ms after the MESSAGE_CREATE):")
        for label, ms in result["phase_medians_ms"].items():
            print(f"  {ms:9.1f}  {label}")
    print(
        f"CPU of everything else on the machine during the measurement: {result['other_processes_cpu_s']:.1f} s "
        f"in {result['measured_wall_s']:.0f} s"
    )
    print(f"request bodies of A and B identical: {result['bodies_identical']}")
    for line in result["log_warnings"][:10]:
        print(f"LOGGED: {line}")
    for problem in result["problems"]:
        print(f"PROBLEM: {problem}")
    print(f"all checks passed: {result['all_ok']}")
    print(f"results: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Discord mention latency against the bare SDK.")
    parser.add_argument("--mentions", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--phase-mentions", type=int, default=5, help="instrumented mentions after the measurement")
    parser.add_argument("--delay", type=float, default=DELAY, help="model: seconds to the first token")
    parser.add_argument("--chunk-delay", type=float, default=CHUNK_DELAY, help="model: seconds between chunks")
    parser.add_argument("--words", type=int, default=WORDS, help="model: words in every answer")
    parser.add_argument(
        "--edit-interval", type=float, default=None, help="experiment: DiscordSettings.edit_interval (default 1.0)"
    )
    args = parser.parse_args()
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
