"""Slack for :mod:`bench.chat_latency` and :mod:`bench.chat_load` (``--platform slack``).

The bot is the real ``SlackBot.start`` serving Bolt over HTTP in the benchmark's process, a fresh
database; Slack is :mod:`bench.slack_side` in a child process, which POSTs the signed events and
stamps every Web API call as it arrives. The bot is reached only as Slack and the tests reach it: its
HTTP endpoint, its Bolt app (a middleware stamps when Bolt hands an event on, for the phase table),
its service (:class:`bench.chat_common.CoreWatch`).

* Latency: each question a new top-level mention in a fresh channel, by the same person (so
  ``users.info`` is cached after the warm-up, as it is for anyone who spoke before). "First
  visible" is the first Web API call carrying answer text (the ``chat.startStream``), "complete" the
  ``chat.stopStream`` that finishes the answer, both from the event's POST. ``--threads 2`` then
  measures follow-ups in two Slack threads of one channel at once against one alone.
* Load: 20 people take turns; checked in Slack: every event acknowledged with 200, exactly one
  finished reply per mention, the right one, in its thread, one stream each, no reaction left, no
  history read. ``--users-info-429 N`` has Slack rate-limit the first N ``users.info`` calls.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.chat_common import Answer, CoreWatch, Delivery, Phases, Run, check_store, follow_queues, measuring
from bench.common import LagTicker, ModelServer, bench_settings, summary
from bench.fake_server import request_digest
from bench.slack_side import Mention, Seen, SlackProcess, see_mentions, slack_process
from bots.slack.adapter import channel_key
from bots.slack.app import EVENTS_PATH, SlackBot
from core.models import Author, Incoming

__all__ = ["SlackLatency", "SlackLoad"]

HISTORY_METHODS = ("conversations.history", "conversations.replies")
PERSON_NAME = "User"  # what FakeSlack's users.info gives as everyone's display name
TEAM = "T01"  # FakeSlack's team
FAKE = "tests.fakes.slack_server.FakeSlack and the event sender (bench.slack_side) in a child process"


def add_arguments(parser: argparse.ArgumentParser, *, load: bool) -> None:
    """This platform's options of :mod:`bench.chat_latency` (``load`` False) or :mod:`bench.chat_load`."""
    group = parser.add_argument_group("Slack")
    if load:
        group.add_argument(
            "--users-info-429",
            type=int,
            default=0,
            help="Slack answers the first N users.info calls of each load with 429, Retry-After 1 s",
        )
        return
    group.add_argument(
        "--slack-rtt-ms",
        type=float,
        default=0.0,
        help="simulate a network to Slack's Web API: this round-trip time, and a TCP+TLS handshake per new connection",
    )
    group.add_argument(
        "--threads",
        type=int,
        default=0,
        help="also measure follow-ups in this many Slack threads of one channel at once against one alone (e.g. 2)",
    )
    group.add_argument("--thread-rounds", type=int, default=10, help="rounds of --threads (each: alone and at once)")


async def start_bot(model: ModelServer, slack: SlackProcess, db: Path) -> tuple[SlackBot, str]:
    """The real bot against the fake, and the URL of its events endpoint."""
    bot = await SlackBot.start(bench_settings(model.base_url, db), slack.settings())
    return bot, f"http://127.0.0.1:{bot.port}{EVENTS_PATH}"


async def ask_many(slack: SlackProcess, url: str, mentions: Sequence[Mention]) -> dict[tuple[str, str], Seen]:
    """Send ``mentions`` at the same moment and wait until every one is answered; what Slack saw of each."""
    await slack.command("reset")
    await slack.command("send", url=url, events=[m.spec() for m in mentions])
    waited = await slack.command("wait", timeout=30)
    if not waited["ok"]:
        raise RuntimeError(f"{len(mentions)} question(s) were not all answered: {waited}")
    return see_mentions(await slack.command("report"))


def problems_of(seen: Seen, mention: Mention, words: int) -> list[str]:
    problems = []
    if seen.status != 200:
        problems.append(f"event answered HTTP {seen.status}")
    if seen.replies != [mention.expected(words)]:
        problems.append(f"replies {seen.replies!r}")
    if seen.unfinished or seen.stream_starts != 1:
        problems.append(f"{seen.stream_starts} streams started, {seen.unfinished} unfinished")
    return problems


# == one mention at a time =========================================================================


@dataclass
class SlackLatency:
    """The bot and Slack for :mod:`bench.chat_latency`."""

    fake: SlackProcess
    bot: SlackBot
    url: str
    words: int
    name = "slack"
    label = "Slack"
    origin = "slack: event POSTed"
    first_label = "first answer text visible (chat.startStream)"
    complete_label = "complete answer (chat.stopStream)"
    min_warmup = 2  # a person's first message reaches the core before their name is known: the body to replay is later
    rows = (("event acknowledged (HTTP 200)", "B_ack_s"),)
    _phases: Phases | None = field(default=None, init=False)

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, model: ModelServer, args: argparse.Namespace, db: Path) -> AsyncIterator[SlackLatency]:
        async with slack_process(args.slack_rtt_ms / 1000) as slack:
            bot, url = await start_bot(model, slack, db)
            try:
                side = cls(slack, bot, url, args.words)
                side._stamp_bolt()
                yield side
            finally:
                await bot.stop()

    def config(self, args: argparse.Namespace) -> dict[str, Any]:
        return {
            "slack": FAKE,
            "slack_rtt_ms": args.slack_rtt_ms,
            "slack_thread_status": "offered in every thread (assistant.threads.setStatus)",
            "threads": args.threads,
            "thread_rounds": args.thread_rounds if args.threads > 1 else 0,
        }

    def result_name(self, args: argparse.Namespace) -> str:
        name = f"-rtt{args.slack_rtt_ms:g}" if args.slack_rtt_ms else ""
        return name + (f"-threads{args.threads}" if args.threads > 1 else "")

    def _stamp_bolt(self) -> None:
        """A Bolt middleware (public API: ``app.use``), stamping when Bolt hands an event on, in the phase pass."""
        app = self.bot.app
        assert app is not None

        async def stamp(next: Callable[[], Awaitable[None]]) -> None:
            if self._phases is not None:
                self._phases.first("bot: Bolt hands the event on (signature checked)")
            await next()

        app.use(stamp)

    @contextlib.contextmanager
    def listening(self, phases: Phases) -> Iterator[None]:
        self._phases = phases
        try:
            yield
        finally:
            self._phases = None

    async def ask(self, tag: str, index: int) -> Answer:
        mention = Mention(f"C{tag}", f"{1700000000 + index}.000100", tag)
        seen = (await ask_many(self.fake, self.url, [mention]))[mention.where]
        stamps = {"slack: event acked (HTTP 200)": seen.acked}
        for method, times in seen.stamps.items():
            stamps[f"slack: first {method}"] = times[0]
            if len(times) > 1:
                stamps[f"slack: last {method}"] = times[-1]
        return Answer(
            seen.posted,
            seen.first_text,
            seen.complete,
            problems_of(seen, mention, self.words),
            Counter(seen.methods),
            {"B_ack_s": seen.acked - seen.posted, "B_appends": seen.methods.get("chat.appendStream", 0)},
            stamps,
        )

    def measurement_begins(self) -> None:
        """Nothing of Slack's to start afresh."""

    async def after(self, args: argparse.Namespace) -> dict[str, Any]:
        """``--threads``: follow-ups in that many Slack threads of one channel at once, against one alone."""
        if args.threads < 2:
            return {}
        return {"threads": await thread_pass(self.fake, self.url, args)}

    def report(self, result: dict[str, Any]) -> list[str]:
        lines = []
        if result["config"]["slack_rtt_ms"]:
            lines.append(
                f"[simulated round trip to Slack's Web API: {result['config']['slack_rtt_ms']:g} ms, TCP+TLS "
                "handshake per new connection]"
            )
        lines.append(f"appends per answer: median {result['summary']['B_appends']['median']:g}")
        if "threads" in result:
            lines += report_threads(result["threads"])
        return lines


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
            begun = (await ask_many(slack, url, [start]))[start.where]
            problems += [f"round {r} start {start.tag}: {p}" for p in problems_of(begun, start, args.words)]

        row: dict[str, Any] = {"round": r, "order": "one,all" if r % 2 == 0 else "all,one"}
        for n, side in enumerate(row["order"].split(","), start=1):
            asked = [follow_up(start, n) for start in (starts[:1] if side == "one" else starts)]
            seen = await ask_many(slack, url, asked)
            for mention in asked:
                problems += [f"round {r} {side}: {p}" for p in problems_of(seen[mention.where], mention, args.words)]
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


def report_threads(threads: dict[str, Any]) -> list[str]:
    s, n = threads["summary"], threads["threads"]
    lines = [
        f"{n} Slack threads of one channel answered at once against one alone ({len(threads['rounds'])} rounds, "
        "follow-ups without a mention):",
        f"{'':52}{'median ms':>10}{'p99 ms':>9}",
    ]
    rows = (
        ("one thread alone: first answer text visible", "alone_first_visible_s"),
        ("one thread alone: complete answer", "alone_complete_s"),
        (f"{n} at once: first answer text visible (each)", "at_once_first_visible_s"),
        (f"{n} at once: complete answer (each)", "at_once_complete_s"),
        (f"{n} at once: complete answer (the later of the {n})", "at_once_later_complete_s"),
    )
    lines += [f"{name:52}{s[key]['median'] * 1000:10.1f}{s[key]['p99'] * 1000:9.1f}" for name, key in rows]
    ratio = s["ratio_at_once_over_alone"]
    lines.append(
        f"at once / alone: first visible {ratio['first_visible']:.3f}, complete {ratio['complete']:.3f}, the later's "
        f"complete {ratio['later_complete']:.3f} (median of rounds {ratio['complete_median_of_rounds']:.3f})"
    )
    return lines


# == under load ====================================================================================


_AUTHOR = re.compile(r"^[^:\n]{1,80}: ")


@dataclass
class SlackLoad:
    """Slack for :mod:`bench.chat_load`: the plan, side B through Slack, and what the core alone is posted."""

    fake: SlackProcess
    name = "slack"
    label = "Slack"
    zero_checks = (
        "events_not_200",
        "missing_reply",
        "duplicate_reply",
        "wrong_reply",
        "unfinished_stream",
        "extra_stream_starts",
        "reactions_left",
        "posted_to_core_out_of_order",
        "history_reads",
    )

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, args: argparse.Namespace) -> AsyncIterator[SlackLoad]:
        async with slack_process() as slack:
            yield cls(slack)

    def config(self, args: argparse.Namespace) -> dict[str, Any]:
        return {"users_info_429": args.users_info_429, "slack": FAKE}

    def result_name(self, args: argparse.Namespace) -> str:
        return "-users-info-429" if args.users_info_429 else ""

    def describe(self, config: dict[str, Any]) -> str:
        n = config["users_info_429"]
        return f"; users.info answers 429 {n} time(s) first" if n else ""

    @staticmethod
    def plan(channels: int, per_channel: int, users: int) -> list[list[Mention]]:
        """Each channel's mentions in order: tags ``c042m3`` (one width: every answer has one length)."""
        return [
            [
                Mention(
                    f"CLOAD{c:03d}", f"{1700100000 + c}.{k + 1:06d}", f"c{c:03d}m{k}", user=f"U_P{(c + k) % users:02d}"
                )
                for k in range(per_channel)
            ]
            for c in range(channels)
        ]

    @staticmethod
    def warm(channels: int) -> Mention:
        return Mention("CWARMUP", "1700000000.000001", "w000m0")

    @staticmethod
    def incoming(m: Mention) -> Incoming:
        """What the adapter posts to the core for a mention."""
        text = m.text.removeprefix("<@U_BOT>").strip()
        return Incoming(channel_key(TEAM, m.channel), Author(m.user, PERSON_NAME), text, platform_msg_id=m.ts)

    @staticmethod
    def core_digest(body: dict[str, Any]) -> str:
        """A body's digest with the "name: " before people's messages taken out. C posts what the adapter
        posts once it knows a person's name; B posts a person's first message before that (with their id,
        ``users.info`` comes after), so which of B's messages carry an id depends on timing."""
        messages = [
            {**m, "content": _AUTHOR.sub("", m["content"])}
            if m.get("role") == "user" and isinstance(m.get("content"), str)
            else m
            for m in body.get("messages", [])
        ]
        return request_digest({**body, "messages": messages})

    async def run_b(
        self,
        model: ModelServer,
        db: Path,
        plan: list[list[Mention]],
        args: argparse.Namespace,
        run: Run,
        ticker: LagTicker,
        profiling: contextlib.AbstractContextManager[Any],
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """B: the plan's events POSTed to a fresh bot; fills ``run``, returns the bodies the model received."""
        slack = self.fake
        bot, url = await start_bot(model, slack, db)
        try:
            # One warm-up mention (the model connection, the built agent), then a clean slate.
            await ask_many(slack, url, [self.warm(args.channels)])
            await bot.service.wait_idle()
            await slack.command("reset")
            await model.command("reset")
            if args.users_info_429:
                await slack.command("fail_next", method="users.info", count=args.users_info_429, retry_after=1)

            specs = [m.spec(at=k * args.gap) for channel in plan for k, m in enumerate(channel)]
            core = CoreWatch()
            with core.watching(bot.service):
                async with measuring(run, ticker, {"model": model.pid, self.name: slack.pid}):
                    with profiling:
                        await slack.command("send", url=url, events=specs)
                        waited = await slack.command("wait", timeout=args.timeout)
            run.model_served_s = (await model.command("served"))["served"]
            await bot.service.wait_idle()

            report = await slack.command("report")
            seen = see_mentions(report)
            stats = await model.command("stats")
            bodies: list[dict[str, Any]] = (await model.command("bodies"))["bodies"]
            for each in seen.values():
                for method, n in each.methods.items():
                    run.methods[method] = run.methods.get(method, 0) + n
            unattributed = Counter(row[1] for row in report["rows"]) - Counter(run.methods)
            run.methods |= {f"{m} (not in a mention's thread)": n for m, n in unattributed.items()}
            wrong_reply = missing_reply = duplicate_reply = unfinished = extra_streams = bad_status = slow_acks = 0
            deliveries: list[list[Delivery | None]] = []
            for channel in plan:
                mine: list[Delivery | None] = []
                for m in channel:
                    one = seen.get(m.where)
                    if one is None:
                        missing_reply += 1
                        mine.append(None)
                        continue
                    bad_status += one.status != 200
                    run.ack_s.append(one.acked - one.posted)
                    slow_acks += one.acked - one.posted > 3.0
                    missing_reply += not one.replies
                    duplicate_reply += max(0, len(one.replies) - 1)
                    wrong_reply += sum(r != m.expected(args.words) for r in one.replies)
                    unfinished += one.unfinished
                    extra_streams += max(0, one.stream_starts - 1)
                    mine.append(Delivery(m.ts, one.posted, one.first_text, one.complete))
                deliveries.append(mine)
            threads = [
                (
                    channel_key(TEAM, channel[0].channel),
                    [(m.text.removeprefix("<@U_BOT> "), m.expected(args.words)) for m in channel],
                )
                for channel in plan
            ]
            run.checks = {
                "mentions": len(specs),
                "all_answered_in_time": bool(waited["ok"]),
                "events_not_200": bad_status,
                "acks_over_3s": slow_acks,
                "missing_reply": missing_reply,
                "duplicate_reply": duplicate_reply,
                "wrong_reply": wrong_reply,
                "unfinished_stream": unfinished,
                "extra_stream_starts": extra_streams,
                "reactions_left": len(report["reactions"]),
                "posted_to_core_out_of_order": follow_queues(run, deliveries, core.reached),
                "history_reads": sum(run.methods.get(m, 0) for m in HISTORY_METHODS),
                **await check_store(bot.service, threads, args.words),
                "model_requests": stats["chat_requests"],
            }
        finally:
            await bot.stop()
        return bodies, {}

    def summarise_b(self, runs: list[Run], extras: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "ack_p50_ms": statistics.median([statistics.median(r.ack_s) * 1000 for r in runs]),
            "ack_p99_ms": statistics.median([summary(r.ack_s)["p99"] * 1000 for r in runs]),
            "ack_max_ms": max(max(r.ack_s) for r in runs) * 1000,
            "history_reads": sum(r.methods.get(m, 0) for r in runs for m in HISTORY_METHODS),
        }

    def report_b(self, b: dict[str, Any]) -> list[str]:
        return [
            f"B: event acks p50 {b['ack_p50_ms']:.1f} ms, p99 {b['ack_p99_ms']:.1f} ms, max {b['ack_max_ms']:.1f} ms "
            f"(Slack retries after 3 s); history reads: {b['history_reads']}"
        ]

    def report_extras(self, result: dict[str, Any]) -> list[str]:
        return []
