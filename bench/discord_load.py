"""Discord under load: 500 mentions across 100 channels through the gateway, each answered exactly once.

    .venv/bin/python -m bench.discord_load [--channels 100] [--per-channel 5] [--gap 1.0] [--repeats 2]
                                           [--sides BAC] [--edit-interval S] [--probe-after N]

The same three processes as :mod:`bench.discord_latency` (the scripted model and Discord each in
a child process, the bot here), the same model: 0.5 s to the first token, then about 50 tokens a
second, a 60-word answer (about 2.0 s in all). The schedule is :mod:`bench.slack_load`'s, so the
two platforms compare: each channel's first mention at the same moment (100 MESSAGE_CREATEs in a
burst on the one gateway connection), its next ones ``--gap`` seconds apart, less than an answer
takes, so they queue behind each other in the channel's thread; 20 people take turns.
``--gap 0`` sends all 500 at once.

* B, Discord: MESSAGE_CREATEs dispatched by FakeDiscord to the real discord.py client of
  ``DiscordBot`` (default ``edit_interval`` of 1 s, the fake's per-channel buckets of 5 requests per
  5 s on each message route); a fresh bot and database each repetition, one warm-up mention
  (untimed, in a channel of its own) before the load. Per mention: from its MESSAGE_CREATE's
  dispatch to the POST that shows the first words of its reply, and to the call after which the
  reply shows the whole answer.
* A, bare openai SDK (the reference): one sequential caller per channel, an ideal bot that starts
  the next call when its message has arrived and the previous answer is done, sending exactly the
  request bodies B sent (captured from the server).
* C, the core alone (splits B's overhead): the same messages posted straight to ``Threadline.post``
  as the adapter posts them, read from the run handles; B/C is the Discord adapter's share
  (discord.py included), C/A the core's.

Sides run one after another, B first in odd repetitions (A replays its bodies), in reverse order
in even ones. Reported: p50 and p99 of every side and the ratios between them; each against the
model's own streaming time for one answer (A's median call, start to last token); the "service"
time of each answer (from the later of its arrival and the previous answer's completion); REST
calls per answer by route (no history reads: ``GET /channels/{id}/messages`` must be 0); 429s the
fake served; how long discord.py's rate-limit buckets held requests; warnings logged; the time
from the MESSAGE_CREATE to ``Threadline.post``; CPU time and event-loop lag in the bot's process.

Checked for B: in Discord, exactly one reply per mention (a message replying to it), the right
one, and no other message from the bot; each channel's replies in the order of its mentions;
every mention reached the core in its channel's order; in the core's store, each channel's
thread holds its questions and answers alternating, in order, each answer the right one, every
run completed; one model request per mention, with the bodies of the first B.

``--probe-after N`` sends, after each B load, N single mentions in fresh channels (10 s apart)
and reports how each was edited: whether an idle bot's in-between edits come back after a burst.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.chat_common import (
    Run,
    check_store,
    children_cpu,
    code_version,
    post_stamps,
    run_bare,
    run_core,
    tcp_counters,
)
from bench.common import (
    LagTicker,
    ModelServer,
    forbid_non_loopback,
    machine,
    percentile,
    summary,
    write_result,
)
from bench.discord_latency import (
    CHUNK_DELAY,
    DELAY,
    WORDS,
    FinishStamps,
    LogCapture,
    RateLimitWaits,
    quiet,
    start_bot,
)
from bench.discord_side import (
    HISTORY,
    DiscordProcess,
    Question,
    author,
    busiest_second,
    channel_id,
    discord_process,
    routes,
    see_questions,
)
from bench.fake_server import request_digest
from bench.slack_model_server import message_tag, reply_text, slack_model_server
from bots.discord.app import DiscordBot
from core.models import Author, Incoming


def pids(model: ModelServer, fake: DiscordProcess) -> dict[str, int]:
    """The child processes whose CPU is accounted: the model's and Discord's."""
    return {"model": model._process.pid, "discord": fake.pid}


def questions(channels: int, per_channel: int, users: int) -> list[list[Question]]:
    """Each channel's mentions in order: tags ``c042m3`` (one width: every answer has one length)."""
    return [
        [Question(channel_id(c), f"c{c:03d}m{k}", author=(c + k) % users) for k in range(per_channel)]
        for c in range(channels)
    ]


def warm_question(channels: int) -> Question:
    """The untimed warm-up mention, in a channel of its own (after the plan's)."""
    return Question(channel_id(channels), "w000m0")


def incoming(q: Question) -> Incoming:
    """What the adapter posts to the core for a mention (the author's display name is their global name)."""
    person = author(q.author)
    return Incoming(q.key, Author(str(person.id), person.name.title()), q.text, platform_msg_id=f"core-{q.tag}")


# -- B: through Discord --------------------------------------------------------------------------


async def run_discord(
    model: ModelServer,
    fake: DiscordProcess,
    db: Path,
    plan: list[list[Question]],
    args: argparse.Namespace,
    repeat: int,
    ticker: LagTicker,
) -> tuple[Run, list[dict[str, Any]], dict[str, Any]]:
    """B; also returns the bodies the model received and the extras (rate-limit holds, logged warnings, 429s)."""
    run = Run("B", repeat)
    overrides = {"edit_interval": args.edit_interval} if args.edit_interval is not None else {}
    waits = RateLimitWaits()
    logs = LogCapture()
    finishes = FinishStamps()
    expected = {q.tag: q.expected(args.words) for channel in plan for q in channel}
    finish_to_visible: list[float] = []  # LiveText.finish called (RunCompleted) -> the whole answer reaches Discord
    visible_to_return: list[float] = []  # the whole answer reached Discord -> finish returned
    with logs.installed(), waits.watching(), finishes.watching():
        bot = await start_bot(model, fake, db, **overrides)
        try:
            # One warm-up mention (the model connection, the built agent), then a clean slate.
            warm = warm_question(args.channels)
            await fake.command("send", messages=[warm.spec(args.words)])
            await fake.command("wait", timeout=30)
            await quiet(bot)
            await fake.command("reset")
            await model.command("reset")
            waits.clear()
            logs.records.clear()

            specs = [q.spec(args.words, at=k * args.gap) for channel in plan for k, q in enumerate(channel)]
            gc.collect()
            ticker.start()
            tcp_before = tcp_counters()
            children_before = children_cpu(pids(model, fake))
            cpu = time.process_time()
            start = time.monotonic()
            posted_to_core: dict[str, float] = {}
            with post_stamps(posted_to_core):
                await fake.command("send", messages=specs)
                waited = await fake.command("wait", timeout=args.timeout)
                run.wall_s = time.monotonic() - start
                run.cpu_s = time.process_time() - cpu
                await ticker.stop()
                run.lags_s = ticker.lags
                run.tcp = {k: v - tcp_before[k] for k, v in tcp_counters().items()}
                run.children_cpu_s = {k: v - children_before[k] for k, v in children_cpu(pids(model, fake)).items()}
                await quiet(bot)
            run.model_served_s = (await model.command("served"))["served"]

            report = await fake.command("report")
            seen = see_questions(report, expected)
            stats = await model.command("stats")
            bodies: list[dict[str, Any]] = (await model.command("bodies"))["bodies"]
            run.methods = dict(routes(report))
            sent_ids = {one.id for one in seen.values()}
            replies_by_channel: dict[str, list[str]] = {}
            for channel, _mid, question, _content, _versions in report["messages"]:
                replies_by_channel.setdefault(channel, []).append(question)
            tag_of = {one.id: tag for tag, one in seen.items()}
            missing = duplicate = wrong = unfinished = extra_posts = 0
            replies_misordered = overtaking = 0
            for channel in plan:
                previous_done = -math.inf
                order = [posted_to_core.get(seen[q.tag].id, math.inf) if q.tag in seen else math.inf for q in channel]
                overtaking += sum(any(later < order[k] for later in order[k + 1 :]) for k in range(len(order)))
                replied = [tag_of.get(q, "?") for q in replies_by_channel.get(str(channel[0].channel), [])]
                replies_misordered += replied != [q.tag for q in channel]
                for q in channel:
                    one = seen.get(q.tag)
                    if one is None:
                        missing += 1
                        continue
                    if one.id in posted_to_core:
                        run.to_core_s.append(posted_to_core[one.id] - one.dispatched)
                    missing += not one.replies
                    duplicate += max(0, len(one.replies) - 1)
                    wrong += sum(r != expected[q.tag] for r in one.replies)
                    extra_posts += max(0, one.posts - 1)
                    if math.isnan(one.complete):
                        unfinished += 1
                        continue
                    run.first_s.append(one.first_visible_s)
                    run.complete_s.append(one.complete_s)
                    if q.tag in finishes.called and q.tag in finishes.returned:
                        finish_to_visible.append(one.complete - finishes.called[q.tag])
                        visible_to_return.append(finishes.returned[q.tag] - one.complete)
                    run.service_s.append(one.complete - max(one.dispatched, previous_done))
                    previous_done = one.complete
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
                "posted_to_core_out_of_order": overtaking,
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
                "finish_to_visible_s": summary(finish_to_visible),
                "visible_to_finish_returned_s": summary(visible_to_return),
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
    return run, bodies, extras


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
        await fake.command("reset")
        await fake.command("send", messages=[q.spec(args.words)])
        await fake.command("wait", timeout=60)
        await quiet(bot)
        one = see_questions(await fake.command("report"), {q.tag: q.expected(args.words)})[q.tag]
        probes.append(
            {"s_after_load": sent - loaded, "posts": one.posts, "edits": one.edits, "complete_s": one.complete_s}
        )
    return probes


# -- main -------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> int:
    forbid_non_loopback()
    plan = questions(args.channels, args.per_channel, args.users)
    result: dict[str, Any] = {
        "benchmark": "discord_load",
        "command": ".venv/bin/python -m bench.discord_load " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "code": code_version("bots", "core"),
        "config": {
            "channels": args.channels,
            "per_channel": args.per_channel,
            "gap_s": args.gap,
            "users": args.users,
            "repeats": args.repeats,
            "first_token_delay_s": args.delay,
            "chunk_delay_s": args.chunk_delay,
            "answer_words": args.words,
            "answer_chars": len(reply_text("#c000m0", args.words)),
            "sides": args.sides,
            "edit_interval_s": args.edit_interval,
            "probe_after": args.probe_after,
            "probe_every_s": args.probe_every,
            "model": "bench.slack_model_server in a child process on 127.0.0.1",
            "discord": "tests.fakes.discord_server.FakeDiscord (bench.discord_side) in a child process on 127.0.0.1",
            "rate_limit": "5 requests per 5 s per channel and message route (FakeDiscord's default)",
        },
    }
    runs: list[Run] = []
    extras: list[dict[str, Any]] = []
    ticker = LagTicker(0.010)
    bodies: dict[str, dict[str, Any]] = {}
    async with (
        slack_model_server(delay=args.delay, chunk_delay=args.chunk_delay, words=args.words) as model,
        discord_process(channels=args.channels + 1 + args.probe_after) as fake,
    ):
        with tempfile.TemporaryDirectory(prefix="threadline-bench-") as tmp:
            for repeat in range(args.repeats):
                # B first of all (A replays its bodies); then the order turns round.
                order = args.sides if repeat % 2 == 0 else args.sides[::-1]
                for side in order:
                    if side == "B":
                        run, sent, extra = await run_discord(
                            model, fake, Path(tmp) / f"load{repeat}.db", plan, args, repeat, ticker
                        )
                        extras.append(extra)
                    elif side == "C":
                        run, sent = await run_core(
                            model,
                            pids(model, fake),
                            Path(tmp) / f"core{repeat}.db",
                            plan,
                            args,
                            repeat,
                            ticker,
                            incoming=incoming,
                            warm=warm_question(args.channels),
                        )
                    else:
                        run = await run_bare(model, pids(model, fake), plan, bodies, args, repeat, ticker)
                    if side != "A":
                        if not bodies:
                            bodies = {message_tag(str(b["messages"][-1]["content"])): b for b in sent}
                        run.checks["bodies_as_first_B"] = sorted(map(request_digest, sent)) == sorted(
                            map(request_digest, bodies.values())
                        )
                    runs.append(run)
                    print(
                        f"repeat {repeat + 1} {side}: wall {run.wall_s:.2f} s, complete p50 "
                        f"{statistics.median(run.complete_s):.3f} s p99 {percentile(run.complete_s, 99):.3f} s, "
                        f"checks {run.checks}"
                    )
    ticker.close()
    result["runs"] = [r.as_dict() for r in runs]
    result["discord_extras"] = extras
    result["summary"] = summarise(runs, extras, sum(len(c) for c in plan))
    result["all_ok"] = all(checks_pass(r) for r in runs)
    name = "discord_load" + (f"-edit{args.edit_interval:g}" if args.edit_interval is not None else "")
    path = write_result(name, result)
    print_report(result, path)
    return 0 if result["all_ok"] else 1


DISCORD_ZERO_CHECKS = (
    "missing_reply",
    "duplicate_reply",
    "wrong_reply",
    "never_complete",
    "extra_posts",
    "other_bot_messages",
    "channels_replies_out_of_order",
    "posted_to_core_out_of_order",
    "history_reads",
    "store_lost",
    "store_duplicated",
    "store_wrong_answer",
    "store_threads_out_of_order",
    "store_runs_not_completed",
)


def checks_pass(run: Run) -> bool:
    c = run.checks
    if run.side == "A":
        return bool(c["wrong"] == 0 and c["failed"] == 0 and c["bodies_as_B"])
    if run.side == "C":
        return bool(c["wrong"] == 0 and c["failed"] == 0 and c["bodies_as_first_B"])
    return bool(
        c["all_answered_in_time"]
        and c["model_requests"] == c["mentions"]
        and c["bodies_as_first_B"]
        and all(c[k] == 0 for k in DISCORD_ZERO_CHECKS)
    )


SIDE_NAMES = {"A": "A bare SDK, ideal queue", "C": "C core alone, no Discord", "B": "B Discord"}
RATIO_KEYS = ("first_p50_s", "first_p99_s", "complete_p50_s", "complete_p99_s", "service_p50_s", "service_p99_s")


def summarise(runs: list[Run], extras: list[dict[str, Any]], mentions_per_run: int) -> dict[str, Any]:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    out: dict[str, Any] = {}
    sides = [side for side in "ACB" if any(r.side == side for r in runs)]
    for side in sides:
        mine = [r for r in runs if r.side == side]
        out[side] = {
            "first_p50_s": med([statistics.median(r.first_s) for r in mine]),
            "first_p99_s": med([percentile(r.first_s, 99) for r in mine]),
            "complete_p50_s": med([statistics.median(r.complete_s) for r in mine]),
            "complete_p99_s": med([percentile(r.complete_s, 99) for r in mine]),
            "service_p50_s": med([statistics.median(r.service_s) for r in mine]),
            "service_p99_s": med([percentile(r.service_s, 99) for r in mine]),
            "wall_s": med([r.wall_s for r in mine]),
            "cpu_s": med([r.cpu_s for r in mine]),
            "cpu_ms_per_answer": med([r.cpu_s for r in mine]) / mentions_per_run * 1000,
            "lag_p99_ms": med([percentile(r.lags_s, 99) * 1000 for r in mine]),
            "lag_max_ms": max(max(r.lags_s, default=0.0) for r in mine) * 1000,
            "model_served_p50_s": med([statistics.median(r.model_served_s) for r in mine]),
            "model_served_p99_s": med([percentile(r.model_served_s, 99) for r in mine]),
            "listen_overflows": sum(r.tcp.get("ListenOverflows", 0) for r in mine),
            "syn_retransmits": sum(r.tcp.get("TCPSynRetrans", 0) for r in mine),
            "model_process_cpu_s": med([r.children_cpu_s["model"] for r in mine]),
            "discord_process_cpu_s": med([r.children_cpu_s["discord"] for r in mine]),
            "other_processes_cpu_s": max(r.children_cpu_s["others"] for r in mine),
        }
        if side == "B":
            out[side]["to_core_p50_ms"] = med([statistics.median(r.to_core_s) * 1000 for r in mine])
            out[side]["to_core_p99_ms"] = med([percentile(r.to_core_s, 99) * 1000 for r in mine])
            out[side]["to_core_max_ms"] = max(max(r.to_core_s) for r in mine) * 1000
            calls: Counter[str] = Counter()
            for r in mine:
                calls.update(r.methods)
            out[side]["calls_per_answer"] = {
                route: n / (mentions_per_run * len(mine)) for route, n in sorted(calls.items(), key=lambda kv: -kv[1])
            }
            out[side]["history_reads"] = calls.get(HISTORY, 0)
            out[side]["rate_limited_429"] = sum(e["rate_limited_429"] for e in extras)
            out[side]["ratelimit_holds"] = {
                when: {
                    "count": sum(e["ratelimit_waits"][when]["count"] for e in extras),
                    "total_s": sum(e["ratelimit_waits"][when]["total_s"] for e in extras),
                    "max_s": max(e["ratelimit_waits"][when]["max_s"] for e in extras),
                }
                for when in ("before_request", "after_request")
            }
            holds_by_route: dict[str, dict[str, float]] = {}
            for e in extras:
                for when in ("before_request", "after_request"):
                    for route, held in e["ratelimit_waits"][when]["by_route"].items():
                        one = holds_by_route.setdefault(f"{when}: {route}", {"count": 0, "total_s": 0.0, "max_s": 0.0})
                        one["count"] += held["count"]
                        one["total_s"] += held["total_s"]
                        one["max_s"] = max(one["max_s"], held["max_s"])
            out[side]["ratelimit_holds_by_route"] = holds_by_route
            out[side]["finish_to_visible_p50_ms"] = med([e["finish_to_visible_s"]["median"] * 1000 for e in extras])
            out[side]["finish_to_visible_p99_ms"] = med([e["finish_to_visible_s"]["p99"] * 1000 for e in extras])
            out[side]["finish_to_visible_max_ms"] = max(e["finish_to_visible_s"]["max"] * 1000 for e in extras)
            out[side]["visible_to_finish_returned_p99_ms"] = med(
                [e["visible_to_finish_returned_s"]["p99"] * 1000 for e in extras]
            )
            out[side]["visible_to_finish_returned_max_ms"] = max(
                e["visible_to_finish_returned_s"]["max"] * 1000 for e in extras
            )
            out[side]["log_warnings"] = sum(len(e["log_warnings"]) for e in extras)
            out[side]["busiest_second_calls"] = max(e["busiest_second_calls"] for e in extras)
            out[side]["rest_calls_per_s_mean"] = med([e["rest_calls_per_s_mean"] for e in extras])
    out["ratios"] = {}
    for x, y in (("B", "A"), ("C", "A"), ("B", "C")):
        if x in out and y in out:
            out["ratios"][f"{x}/{y}"] = {key: out[x][key] / out[y][key] for key in RATIO_KEYS} | {
                "cpu": out[x]["cpu_s"] / out[y]["cpu_s"],
                "wall": out[x]["wall_s"] / out[y]["wall_s"],
            }
    if "A" in out:
        a = out["A"]
        model_time = a["service_p50_s"]  # the model's own streaming time for one answer: call start to last token
        out["model_time_s"] = model_time
        out["model_stream_end_s"] = med([statistics.median(r.call_end_s) for r in runs if r.side == "A"])
        out["over_model_time"] = {
            side: {
                "complete_p50": out[side]["complete_p50_s"] / model_time,
                "complete_p99": out[side]["complete_p99_s"] / model_time,
                "service_p50": out[side]["service_p50_s"] / model_time,
                "service_p99": out[side]["service_p99_s"] / model_time,
                "service_p50_over_stream_end": out[side]["service_p50_s"] / out["model_stream_end_s"],
            }
            for side in sides
        }
    return out


def print_report(result: dict[str, Any], path: Path) -> None:
    cfg, s = result["config"], result["summary"]
    interval = cfg["edit_interval_s"]
    print(
        f"Discord load: {cfg['channels']} channels x {cfg['per_channel']} mentions, {cfg['gap_s']:g} s apart in a "
        f"channel, {cfg['repeats']} repeats; model {cfg['first_token_delay_s']:g} s to the first token, "
        f"{cfg['chunk_delay_s'] * 1000:g} ms a 4-char chunk, {cfg['answer_words']} words; edit interval "
        + ("1 s (the default)" if interval is None else f"{interval:g} s")
    )
    print(
        f"{'seconds':27}{'first p50':>10}{'p99':>8}{'complete p50':>14}{'p99':>8}{'service p50':>13}{'p99':>8}"
        f"{'wall s':>8}{'CPU s':>8}{'lag p99 ms':>12}"
    )
    for side, name in SIDE_NAMES.items():
        if side in s:
            one = s[side]
            print(
                f"{name:27}{one['first_p50_s']:10.3f}{one['first_p99_s']:8.3f}{one['complete_p50_s']:14.3f}"
                f"{one['complete_p99_s']:8.3f}{one['service_p50_s']:13.3f}{one['service_p99_s']:8.3f}"
                f"{one['wall_s']:8.2f}{one['cpu_s']:8.2f}{one['lag_p99_ms']:12.1f}"
            )
    for name, ratio in s["ratios"].items():
        print(
            f"{'ratio ' + name:27}{ratio['first_p50_s']:10.3f}{ratio['first_p99_s']:8.3f}"
            f"{ratio['complete_p50_s']:14.3f}{ratio['complete_p99_s']:8.3f}{ratio['service_p50_s']:13.3f}"
            f"{ratio['service_p99_s']:8.3f}{ratio['wall']:8.2f}{ratio['cpu']:8.2f}"
        )
    present = [side for side in SIDE_NAMES if side in s]
    print(
        "the model's own serving time (in its process, to the end of the stream) p50/p99: "
        + ", ".join(f"{x} {s[x]['model_served_p50_s']:.3f}/{s[x]['model_served_p99_s']:.3f} s" for x in present)
    )
    print(
        "CPU s of the model's / Discord's processes / (max) everything else on the machine during the load: "
        + ", ".join(
            f"{x} {s[x]['model_process_cpu_s']:.2f}/{s[x]['discord_process_cpu_s']:.2f}"
            f"/{s[x]['other_processes_cpu_s']:.2f}"
            for x in present
        )
    )
    print(
        "accept-queue overflows / SYN retransmits on the machine during the loads (all repeats): "
        + ", ".join(f"{x} {s[x]['listen_overflows']}/{s[x]['syn_retransmits']}" for x in present)
    )
    if "model_time_s" in s:
        print(
            f"the model's own time for one answer (A's median call): {s['model_time_s']:.3f} s to the last token, "
            f"{s['model_stream_end_s']:.3f} s to the end of the stream"
        )
        for side, over in s["over_model_time"].items():
            print(
                f"  {side} over it: complete p50 {over['complete_p50']:.2f}, p99 {over['complete_p99']:.2f}; "
                f"service p50 {over['service_p50']:.3f}, p99 {over['service_p99']:.3f}"
            )
    if "B" in s:
        b = s["B"]
        print(
            f"B: MESSAGE_CREATE to Threadline.post p50 {b['to_core_p50_ms']:.1f} ms, p99 {b['to_core_p99_ms']:.1f} "
            f"ms, max {b['to_core_max_ms']:.1f} ms; CPU {b['cpu_ms_per_answer']:.1f} ms an answer"
        )
        calls = ", ".join(f"{route} {n:.3g}" for route, n in b["calls_per_answer"].items())
        print(f"B: REST calls per answer: {calls}")
        print(
            f"B: REST calls a second: {b['rest_calls_per_s_mean']:.1f} on average from the first to the last, "
            f"{b['busiest_second_calls']} in the busiest second (Discord allows a bot 50 a second in all)"
        )
        holds = b["ratelimit_holds"]
        print(
            f"B: history reads {b['history_reads']}; 429s served {b['rate_limited_429']}; discord.py rate-limit "
            f"holds (all repeats): {holds['before_request']['count']} before a request "
            f"({holds['before_request']['total_s']:.2f} s, max {holds['before_request']['max_s']:.2f} s), "
            f"{holds['after_request']['count']} after one ({holds['after_request']['total_s']:.2f} s, max "
            f"{holds['after_request']['max_s']:.2f} s); warnings logged {b['log_warnings']}"
        )
        for what, held in b["ratelimit_holds_by_route"].items():
            print(f"   {what}: {held['count']} holds, {held['total_s']:.2f} s in all, max {held['max_s']:.2f} s")
        print(
            f"B: from LiveText.finish (on RunCompleted) to the whole answer in Discord: p50 "
            f"{b['finish_to_visible_p50_ms']:.1f} ms, p99 {b['finish_to_visible_p99_ms']:.1f} ms, max "
            f"{b['finish_to_visible_max_ms']:.1f} ms; from there to finish() returning: p99 "
            f"{b['visible_to_finish_returned_p99_ms']:.1f} ms, max {b['visible_to_finish_returned_max_ms']:.1f} ms"
        )
    for extra in result["discord_extras"]:
        for probe in extra.get("after_load_probes", []):
            print(
                f"B, {probe['s_after_load']:5.1f} s after the load: one mention alone, {probe['edits']} edits "
                f"(an idle bot: 2), whole answer after {probe['complete_s']:.3f} s"
            )
        for line in extra["log_warnings"][:5]:
            print(f"LOGGED: {line}")
    for r in result["runs"]:
        if not checks_pass_dict(r):
            print(f"CHECKS FAILED, {r['side']} repeat {r['repeat'] + 1}: {r['checks']}")
    print(f"all checks passed: {result['all_ok']}")
    print(f"results: {path}")


def checks_pass_dict(run: dict[str, Any]) -> bool:
    return checks_pass(Run(run["side"], run["repeat"], checks=run["checks"]))


def main() -> None:
    parser = argparse.ArgumentParser(description="Many Discord mentions at once through the gateway.")
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--per-channel", type=int, default=5)
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between a channel's mentions (0: all at once)")
    parser.add_argument("--users", type=int, default=20, help="people taking turns to mention the bot")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--delay", type=float, default=DELAY, help="model: seconds to the first token")
    parser.add_argument("--chunk-delay", type=float, default=CHUNK_DELAY, help="model: seconds between chunks")
    parser.add_argument("--words", type=int, default=WORDS, help="model: words in every answer")
    parser.add_argument(
        "--edit-interval", type=float, default=None, help="experiment: DiscordSettings.edit_interval (default 1.0)"
    )
    parser.add_argument(
        "--sides",
        default="BAC",
        help="which sides, in the first repeat's order (B first): A bare SDK, B Discord, C core alone (default BAC)",
    )
    parser.add_argument(
        "--probe-after",
        type=int,
        default=0,
        help="after each B load, this many single mentions (fresh channels) to see how an idle bot edits again",
    )
    parser.add_argument("--probe-every", type=float, default=10.0, help="seconds between those mentions")
    args = parser.parse_args()
    if not args.sides.startswith("B") or set(args.sides) - set("ABC"):
        parser.error("--sides: letters from A, B, C, starting with B")
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
