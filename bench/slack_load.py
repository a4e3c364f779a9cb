"""Slack under load: 500 mentions across 100 channels through the HTTP endpoint, each answered exactly once.

    .venv/bin/python -m bench.slack_load [--channels 100] [--per-channel 5] [--gap 1.0] [--repeats 2]
                                         [--sides BAC] [--users-info-429 N] [--profile]

The same three processes as :mod:`bench.slack_latency` (the scripted model and Slack each in a
child process, the bot here), the same model: 0.5 s to the first token, then about 50 tokens a
second, a 60-word answer (about 2.0 s in all). Every side runs the same schedule: each channel's
first message at the same moment, its next ones ``--gap`` seconds apart, less than an answer
takes, so they queue behind each other in the channel's thread; 20 people take turns.

* B, Slack: signed ``app_mention`` events POSTed to Bolt's HTTP endpoint; a fresh bot and
  database each repetition, one warm-up mention (untimed) before the load. Per mention: from its
  POST to the first answer text in Slack and to the ``chat.stopStream`` that completes it.
* A, bare openai SDK (the reference): one sequential caller per channel, an ideal bot that
  starts the next call when its message has arrived and the previous answer is done, sending
  exactly the request bodies B sent (captured from the server). Per call: from the message's
  arrival to the first and last token.
* C, the core alone (splits B's overhead): the same messages posted straight to
  ``Threadline.post`` as the adapter posts them, read from the run handles; B/C is the Slack
  adapter's share, C/A the core's.
* S, an experiment (``--sides BACS``): B with one shared aiohttp session given to the bot's Web
  API client (the adapter lets slack_sdk open a new session, and connection, per call).

Sides run one after another, B first in odd repetitions (A replays its bodies), in reverse order
in even ones. Reported: p50 and p99 of every side and the ratios between them; each against the
model's own streaming time for one answer (A's median call, start to last token); the "service"
time of each answer (from the later of its arrival and the previous answer's completion; A: the
call itself); Slack Web API calls per answer by method (no history reads: ``conversations.history``
and ``.replies`` must be 0); event acknowledgement times (Slack retries after 3 s) and the time
from the event's POST to ``Threadline.post``; CPU time and event-loop lag in the bot's process.

Checked for B and S: every event acknowledged with 200; in Slack, exactly one finished reply per
mention, the right one, in its thread, one stream each, and no reaction left; every mention
reached the core in its channel's order; in the core's store, each channel's thread holds its
questions and answers alternating, in order, each answer the right one, every run completed;
one model request per mention, with the bodies of the first B. ``--users-info-429 N`` makes
Slack rate-limit the first N ``users.info`` calls of each load (429, Retry-After 1 s), as it
does when many new people speak at once; ``--profile`` runs cProfile in the bot's process
during B's first load and prints where its time goes by package.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import math
import pstats
import re
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
    post_stamps,
    run_bare,
    run_core,
    tcp_counters,
)
from bench.common import (
    REPO,
    RESULTS,
    LagTicker,
    ModelServer,
    forbid_non_loopback,
    machine,
    percentile,
    write_result,
)
from bench.fake_server import request_digest
from bench.slack_latency import (
    CHUNK_DELAY,
    DELAY,
    WORDS,
    Mention,
    SlackProcess,
    events_url,
    see_mentions,
    shared_session,
    slack_process,
    start_bot,
)
from bench.slack_model_server import message_tag, reply_text, slack_model_server
from bots.slack.adapter import channel_key
from core.models import Author, Incoming

HISTORY_METHODS = ("conversations.history", "conversations.replies")


def pids(model: ModelServer, slack: SlackProcess) -> dict[str, int]:
    """The child processes whose CPU is accounted: the model's and Slack's."""
    return {"model": model._process.pid, "slack": slack._process.pid}


PERSON_NAME = "User"  # what FakeSlack's users.info gives as everyone's display name


def channel_id(index: int) -> str:
    return f"CLOAD{index:03d}"


def mentions(channels: int, per_channel: int, users: int) -> list[list[Mention]]:
    """Each channel's mentions in order: tags ``c042m3`` (one width: every answer has one length)."""
    return [
        [
            Mention(channel_id(c), f"{1700100000 + c}.{k + 1:06d}", f"c{c:03d}m{k}", user=f"U_P{(c + k) % users:02d}")
            for k in range(per_channel)
        ]
        for c in range(channels)
    ]


# -- B: through Slack ----------------------------------------------------------------------------


async def run_slack(
    model: ModelServer,
    slack: SlackProcess,
    db: Path,
    plan: list[list[Mention]],
    args: argparse.Namespace,
    repeat: int,
    ticker: LagTicker,
    profiler: cProfile.Profile | None = None,
    side: str = "B",
) -> tuple[Run, list[dict[str, Any]]]:
    run = Run(side, repeat)
    stack = contextlib.AsyncExitStack()
    await stack.enter_async_context(shared_session(side == "S"))
    bot = await start_bot(model, slack, db)
    try:
        url = events_url(bot)
        # One warm-up mention (the model connection, the built agent), then a clean slate.
        warm = Mention("CWARMUP", "1700000000.000001", "w000m0")
        await slack.command("send", url=url, events=[warm.spec()])
        await slack.command("wait", timeout=30)
        await bot.service.wait_idle()
        await slack.command("reset")
        await model.command("reset")
        if args.users_info_429:
            await slack.command("fail_next", method="users.info", count=args.users_info_429, retry_after=1)

        specs = [m.spec(at=k * args.gap) for channel in plan for k, m in enumerate(channel)]
        gc.collect()
        ticker.start()
        tcp_before = tcp_counters()
        children_before = children_cpu(pids(model, slack))
        cpu = time.process_time()
        start = time.monotonic()
        if profiler is not None:
            profiler.enable()
        posted_to_core: dict[str, float] = {}
        with post_stamps(posted_to_core):
            await slack.command("send", url=url, events=specs)
            waited = await slack.command("wait", timeout=args.timeout)
        if profiler is not None:
            profiler.disable()
        run.wall_s = time.monotonic() - start
        run.cpu_s = time.process_time() - cpu
        await ticker.stop()
        run.lags_s = ticker.lags
        run.tcp = {k: v - tcp_before[k] for k, v in tcp_counters().items()}
        run.children_cpu_s = {k: v - children_before[k] for k, v in children_cpu(pids(model, slack)).items()}
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
        overtaking = 0  # mentions that reached the core before an earlier one of their channel
        for channel in plan:
            previous_done = float("-inf")
            order = [posted_to_core.get(m.ts, float("inf")) for m in channel]
            overtaking += sum(any(later < order[k] for later in order[k + 1 :]) for k in range(len(order)))
            for m in channel:
                if m.ts in posted_to_core and (m.channel, m.ts) in seen:
                    run.to_core_s.append(posted_to_core[m.ts] - seen[(m.channel, m.ts)].posted)
                one = seen.get((m.channel, m.ts))
                if one is None:
                    missing_reply += 1
                    continue
                bad_status += one.status != 200
                run.ack_s.append(one.acked - one.posted)
                slow_acks += one.acked - one.posted > 3.0
                missing_reply += not one.replies
                duplicate_reply += max(0, len(one.replies) - 1)
                wrong_reply += sum(r != m.expected(args.words) for r in one.replies)
                unfinished += one.unfinished
                extra_streams += max(0, one.stream_starts - 1)
                if not math.isnan(one.complete):
                    run.first_s.append(one.first_visible_s)
                    run.complete_s.append(one.complete_s)
                    run.service_s.append(one.complete - max(one.posted, previous_done))
                    previous_done = one.complete
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
            "posted_to_core_out_of_order": overtaking,
            "history_reads": sum(run.methods.get(m, 0) for m in HISTORY_METHODS),
            **await check_store(bot.service, threads(plan, args.words), args.words),
            "model_requests": stats["chat_requests"],
        }
    finally:
        await bot.stop()
        await stack.aclose()
    return run, bodies


def threads(plan: list[list[Mention]], words: int) -> list[tuple[str, list[tuple[str, str]]]]:
    """Each channel's key in the core, and its questions (as the core stores them) with their expected answers."""
    return [
        (
            channel_key("T01", channel[0].channel),
            [(m.text.removeprefix("<@U_BOT> "), m.expected(words)) for m in channel],
        )
        for channel in plan
    ]


# -- C: the core alone, no Slack ------------------------------------------------------------------


def incoming(m: Mention) -> Incoming:
    """What the adapter posts to the core for a mention."""
    text = m.text.removeprefix("<@U_BOT>").strip()
    return Incoming(channel_key("T01", m.channel), Author(m.user, PERSON_NAME), text, platform_msg_id=m.ts)


def _digest_without_authors(body: dict[str, Any]) -> str:
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


_AUTHOR = re.compile(r"^[^:\n]{1,80}: ")


# -- main -------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> int:
    forbid_non_loopback()
    plan = mentions(args.channels, args.per_channel, args.users)
    result: dict[str, Any] = {
        "benchmark": "slack_load",
        "command": ".venv/bin/python -m bench.slack_load " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
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
            "users_info_429": args.users_info_429,
            "model": "bench.slack_model_server in a child process on 127.0.0.1",
            "slack": "FakeSlack and the event sender in a child process (bench.slack_latency --serve-slack)",
        },
    }
    runs: list[Run] = []
    ticker = LagTicker(0.010)
    profiler = cProfile.Profile() if args.profile else None
    bodies: dict[str, dict[str, Any]] = {}
    async with (
        slack_model_server(delay=args.delay, chunk_delay=args.chunk_delay, words=args.words) as model,
        slack_process() as slack,
    ):
        with tempfile.TemporaryDirectory(prefix="threadline-bench-") as tmp:
            for repeat in range(args.repeats):
                # B first of all (A replays its bodies); then the order turns round.
                order = args.sides if repeat % 2 == 0 else args.sides[::-1]
                for side in order:
                    if side in "BS":
                        run, sent = await run_slack(
                            model,
                            slack,
                            Path(tmp) / f"load{side}{repeat}.db",
                            plan,
                            args,
                            repeat,
                            ticker,
                            profiler if repeat == 0 and side == "B" else None,
                            side,
                        )
                    elif side == "C":
                        warm = Mention("CWARMUP", "1700000000.000001", "w000m0")
                        run, sent = await run_core(
                            model,
                            pids(model, slack),
                            Path(tmp) / f"core{repeat}.db",
                            plan,
                            args,
                            repeat,
                            ticker,
                            incoming=incoming,
                            warm=warm,
                        )
                    else:
                        run = await run_bare(model, pids(model, slack), plan, bodies, args, repeat, ticker)
                    if side != "A":
                        if not bodies:
                            bodies = {message_tag(str(b["messages"][-1]["content"])): b for b in sent}
                        digest = request_digest if side != "C" else _digest_without_authors
                        run.checks["bodies_as_first_B"] = sorted(map(digest, sent)) == sorted(
                            map(digest, bodies.values())
                        )
                    runs.append(run)
                    print(
                        f"repeat {repeat + 1} {side}: wall {run.wall_s:.2f} s, complete p50 "
                        f"{statistics.median(run.complete_s):.3f} s p99 {percentile(run.complete_s, 99):.3f} s, "
                        f"checks {run.checks}"
                    )
    ticker.close()
    result["runs"] = [r.as_dict() for r in runs]
    result["summary"] = summarise(runs, sum(len(c) for c in plan))
    result["all_ok"] = all(checks_pass(r) for r in runs)
    name = "slack_load" + ("-profiled" if args.profile else "") + ("-users-info-429" if args.users_info_429 else "")
    if profiler is not None:
        result["profile"] = profile_breakdown(profiler, name)
    path = write_result(name, result)
    report(result, path)
    return 0 if result["all_ok"] else 1


SLACK_ZERO_CHECKS = (
    "events_not_200",
    "missing_reply",
    "duplicate_reply",
    "wrong_reply",
    "unfinished_stream",
    "extra_stream_starts",
    "reactions_left",
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
        and all(c[k] == 0 for k in SLACK_ZERO_CHECKS)
    )


def _group(filename: str) -> str:
    """The package a profiled function belongs to: a site-packages distribution, the repo's top folder, stdlib."""
    path = filename.replace("\\", "/")
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if path.startswith(str(REPO) + "/"):
        return "/".join(path.removeprefix(str(REPO) + "/").split("/")[:2])
    if "/python3." in path:
        rest = path.split("/python3.", 1)[1].split("/", 1)
        return "stdlib " + (rest[1].split("/", 1)[0].removesuffix(".py") if len(rest) > 1 else "?")
    return filename  # built-ins: "~" and "<...>"


def profile_breakdown(profiler: cProfile.Profile, name: str) -> dict[str, Any]:
    """Own time (tottime) by package and the top functions, from B's first load (a profiled run)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.pstats"
    profiler.dump_stats(path)
    stats = pstats.Stats(profiler)
    raw: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())
    groups: Counter[str] = Counter()
    builtins: Counter[str] = Counter()
    for (filename, _line, function), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        group = _group(filename)
        groups[group] += tottime
        if group == "~":
            builtins[function] += tottime
    top = sorted(raw.items(), key=lambda kv: -kv[1][2])[:30]
    return {
        "pstats": str(path),
        "total_own_s": total,
        "by_package_s": dict(groups.most_common(25)),
        "builtins_s": dict(builtins.most_common(15)),
        "top_functions": [
            {"function": f"{_group(f)}:{Path(f).name}:{line}:{fn}", "own_s": v[2], "cum_s": v[3], "calls": v[1]}
            for (f, line, fn), v in top
        ],
    }


SIDE_NAMES = {
    "A": "A bare SDK, ideal queue",
    "C": "C core alone, no Slack",
    "B": "B Slack",
    "S": "S Slack, shared session",
}
RATIO_KEYS = ("first_p50_s", "first_p99_s", "complete_p50_s", "complete_p99_s", "service_p50_s", "service_p99_s")


def summarise(runs: list[Run], mentions_per_run: int) -> dict[str, Any]:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    out: dict[str, Any] = {}
    sides = [side for side in "ACBS" if any(r.side == side for r in runs)]
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
            "slack_process_cpu_s": med([r.children_cpu_s["slack"] for r in mine]),
            "other_processes_cpu_s": max(r.children_cpu_s["others"] for r in mine),
        }
        if side in "BS":
            out[side]["ack_p50_ms"] = med([statistics.median(r.ack_s) * 1000 for r in mine])
            out[side]["ack_p99_ms"] = med([percentile(r.ack_s, 99) * 1000 for r in mine])
            out[side]["ack_max_ms"] = max(max(r.ack_s) for r in mine) * 1000
            out[side]["to_core_p50_ms"] = med([statistics.median(r.to_core_s) * 1000 for r in mine])
            out[side]["to_core_p99_ms"] = med([percentile(r.to_core_s, 99) * 1000 for r in mine])
            out[side]["to_core_max_ms"] = max(max(r.to_core_s) for r in mine) * 1000
            methods: Counter[str] = Counter()
            for r in mine:
                methods.update(r.methods)
            out[side]["calls_per_answer"] = {
                m: n / (mentions_per_run * len(mine)) for m, n in sorted(methods.items(), key=lambda kv: -kv[1])
            }
            out[side]["history_reads"] = sum(methods.get(m, 0) for m in HISTORY_METHODS)
    out["ratios"] = {}
    for x, y in (("B", "A"), ("C", "A"), ("B", "C"), ("S", "A"), ("S", "C"), ("S", "B")):
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


def report(result: dict[str, Any], path: Path) -> None:
    cfg, s = result["config"], result["summary"]
    print(
        f"Slack load: {cfg['channels']} channels x {cfg['per_channel']} mentions, {cfg['gap_s']:g} s apart in a "
        f"channel, {cfg['repeats']} repeats; model {cfg['first_token_delay_s']:g} s to the first token, "
        f"{cfg['chunk_delay_s'] * 1000:g} ms a 4-char chunk, {cfg['answer_words']} words"
        + (f"; users.info answers 429 {cfg['users_info_429']} time(s) first" if cfg["users_info_429"] else "")
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
    print(
        "the model's own serving time (in its process, to the end of the stream) p50/p99: "
        + ", ".join(
            f"{side} {s[side]['model_served_p50_s']:.3f}/{s[side]['model_served_p99_s']:.3f} s"
            for side in SIDE_NAMES
            if side in s
        )
    )
    print(
        "CPU s of the model's / Slack's processes / (max) everything else on the machine during the load: "
        + ", ".join(
            f"{side} {s[side]['model_process_cpu_s']:.2f}/{s[side]['slack_process_cpu_s']:.2f}"
            f"/{s[side]['other_processes_cpu_s']:.2f}"
            for side in SIDE_NAMES
            if side in s
        )
    )
    print(
        "accept-queue overflows / SYN retransmits on the machine during the loads (all repeats): "
        + ", ".join(
            f"{side} {s[side]['listen_overflows']}/{s[side]['syn_retransmits']}" for side in SIDE_NAMES if side in s
        )
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
    for side in "BS":
        if side not in s:
            continue
        one = s[side]
        print(
            f"{side}: event acks p50 {one['ack_p50_ms']:.1f} ms, p99 {one['ack_p99_ms']:.1f} ms, max "
            f"{one['ack_max_ms']:.1f} ms; event POST to Threadline.post p50 {one['to_core_p50_ms']:.1f} ms, p99 "
            f"{one['to_core_p99_ms']:.1f} ms, max {one['to_core_max_ms']:.1f} ms; CPU "
            f"{one['cpu_ms_per_answer']:.1f} ms an answer"
        )
        calls = ", ".join(f"{m} {n:.3g}" for m, n in one["calls_per_answer"].items())
        print(f"{side}: Slack Web API calls per answer: {calls}; history reads: {one['history_reads']}")
    if "profile" in result:
        prof = result["profile"]
        print(f"profile of B's first load (cProfile, so slower than above): {prof['total_own_s']:.2f} s own time")
        for group, seconds in prof["by_package_s"].items():
            print(f"  {seconds:7.2f} s {seconds / prof['total_own_s'] * 100:5.1f} %  {group}")
        print(f"  pstats: {prof['pstats']}")
    for r in result["runs"]:
        if not checks_pass_dict(r):
            print(f"CHECKS FAILED, {r['side']} repeat {r['repeat'] + 1}: {r['checks']}")
    print(f"all checks passed: {result['all_ok']}")
    print(f"results: {path}")


def checks_pass_dict(run: dict[str, Any]) -> bool:
    one = Run(run["side"], run["repeat"], checks=run["checks"])
    return checks_pass(one)


def main() -> None:
    parser = argparse.ArgumentParser(description="Many Slack mentions at once through the HTTP endpoint.")
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--per-channel", type=int, default=5)
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between a channel's mentions")
    parser.add_argument("--users", type=int, default=20, help="people taking turns to mention the bot")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--delay", type=float, default=DELAY, help="model: seconds to the first token")
    parser.add_argument("--chunk-delay", type=float, default=CHUNK_DELAY, help="model: seconds between chunks")
    parser.add_argument("--words", type=int, default=WORDS, help="model: words in every answer")
    parser.add_argument("--profile", action="store_true", help="cProfile the bot's process during B's first load")
    parser.add_argument(
        "--sides",
        default="BAC",
        help="which sides, in the first repeat's order (B first): A bare SDK, B Slack, C core alone, "
        "S experiment: B with one shared aiohttp session for the Web API client (default BAC)",
    )
    parser.add_argument(
        "--users-info-429",
        type=int,
        default=0,
        help="Slack answers the first N users.info calls of each load with 429, Retry-After 1 s",
    )
    args = parser.parse_args()
    if not args.sides.startswith("B") or set(args.sides) - set("ABCS"):
        parser.error("--sides: letters from A, B, C, S, starting with B")
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
