"""Chat under load: 500 mentions across 100 channels through Slack or Discord, each answered exactly once.

    .venv/bin/python -m bench.chat_load --platform slack|discord [--channels 100] [--per-channel 5] [--gap 1.0]
        [--repeats 2] [--sides BAC] [--profile]
        Slack:   [--users-info-429 N]
        Discord: [--edit-interval S] [--probe-after N]

The same three processes as :mod:`bench.chat_latency` (the scripted model and the platform each in
a child process, the bot here), the same model: 0.5 s to the first token, then about 50 tokens a
second, a 60-word answer (about 2.0 s in all). Every side runs the same schedule: each channel's
first message at the same moment, its next ones ``--gap`` seconds apart, less than an answer takes,
so they queue behind each other in the channel's thread; 20 people take turns. ``--gap 0`` sends
them all at once.

* B, the platform (:mod:`bench.chat_slack`, :mod:`bench.chat_discord`): signed events POSTed to
  Bolt's HTTP endpoint, or MESSAGE_CREATEs on the gateway; a fresh bot and database each
  repetition, one warm-up mention (untimed) before the load. Per mention: from its arrival to the
  first answer text on screen and to the call that completes it.
* A, bare openai SDK (the reference): one sequential caller per channel, an ideal bot that starts
  the next call when its message has arrived and the previous answer is done, sending exactly the
  request bodies B sent (captured from the server). Per call: from the message's arrival to the
  first and last token.
* C, the core alone (splits B's overhead): the same messages posted straight to ``Threadline.post``
  as the adapter posts them, read from the run handles; B/C is the adapter's share, C/A the core's.

Sides run one after another, B first in odd repetitions (A replays its bodies), in reverse order
in even ones. Reported: p50 and p99 of every side and the ratios between them; each against the
model's own streaming time for one answer (A's median call, start to last token); the "service"
time of each answer (from the later of its arrival and the previous answer's completion; A: the
call itself); the bot's platform calls per answer; the time from the mention's arrival to
``Threadline.receive`` (the adapters' way into the core); CPU time and event-loop lag in the bot's
process. Checked for B: the platform's checks (see its module), and every mention reached the core
in its channel's order; in the core's store, each channel's thread holds its questions and answers
alternating, in order, each answer the right one, every run completed; one model request per
mention, with the bodies of the first B. ``--profile`` runs cProfile in the bot's process during
B's first load and prints where its time goes by package.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from bench import chat_discord, chat_slack
from bench.chat_common import Question, Run, code_version, run_bare, run_core
from bench.chat_model import add_model_arguments, chat_model_server, message_tag, reply_text
from bench.common import (
    REPO,
    RESULTS,
    LagTicker,
    ModelServer,
    SideProcess,
    forbid_non_loopback,
    machine,
    percentile,
    write_result,
)
from bench.fake_server import request_digest
from core.models import Incoming

STORE_ZERO_CHECKS = (
    "store_lost",
    "store_duplicated",
    "store_wrong_answer",
    "store_threads_out_of_order",
    "store_runs_not_completed",
)
RATIO_KEYS = ("first_p50_s", "first_p99_s", "complete_p50_s", "complete_p99_s", "service_p50_s", "service_p99_s")


class Platform(Protocol):
    """A platform's fake and bot for this benchmark (:class:`bench.chat_slack.SlackLoad`, ...DiscordLoad)."""

    name: str
    label: str

    @property
    def zero_checks(self) -> tuple[str, ...]: ...

    @property
    def fake(self) -> SideProcess: ...

    def config(self, args: argparse.Namespace) -> dict[str, Any]: ...

    def result_name(self, args: argparse.Namespace) -> str: ...

    def describe(self, config: dict[str, Any]) -> str: ...

    def plan(self, channels: int, per_channel: int, users: int) -> Sequence[Sequence[Any]]: ...

    def warm(self, channels: int) -> Any: ...

    def incoming(self, q: Any) -> Incoming: ...

    def core_digest(self, body: dict[str, Any]) -> str: ...

    async def run_b(
        self,
        model: ModelServer,
        db: Path,
        plan: Any,
        args: argparse.Namespace,
        run: Run,
        ticker: LagTicker,
        profiling: contextlib.AbstractContextManager[Any],
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]: ...

    def summarise_b(self, runs: list[Run], extras: list[dict[str, Any]]) -> dict[str, Any]: ...

    def report_b(self, b: dict[str, Any]) -> list[str]: ...

    def report_extras(self, result: dict[str, Any]) -> list[str]: ...


def running(platform: str, args: argparse.Namespace) -> contextlib.AbstractAsyncContextManager[Platform]:
    if platform == "slack":
        return chat_slack.SlackLoad.running(args)
    return chat_discord.DiscordLoad.running(args)


@contextlib.contextmanager
def profiled(profiler: cProfile.Profile | None) -> Any:
    if profiler is None:
        yield
        return
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()


async def main_async(args: argparse.Namespace) -> int:
    forbid_non_loopback()
    result: dict[str, Any] = {
        "benchmark": f"{args.platform}_load",
        "command": ".venv/bin/python -m bench.chat_load " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "code": code_version("bots", "core"),
        "config": {
            "platform": args.platform,
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
            "model": "bench.chat_model in a child process on 127.0.0.1",
        },
    }
    runs: list[Run] = []
    extras: list[dict[str, Any]] = []
    ticker = LagTicker(0.010)
    profiler = cProfile.Profile() if args.profile else None
    bodies: dict[str, dict[str, Any]] = {}
    async with (
        chat_model_server(delay=args.delay, chunk_delay=args.chunk_delay, words=args.words) as model,
        running(args.platform, args) as platform,
    ):
        result["config"] |= platform.config(args)
        plan = platform.plan(args.channels, args.per_channel, args.users)
        pids = {"model": model.pid, platform.name: platform.fake.pid}
        with tempfile.TemporaryDirectory(prefix="threadline-bench-") as tmp:
            for repeat in range(args.repeats):
                # B first of all (A replays its bodies); then the order turns round.
                order = args.sides if repeat % 2 == 0 else args.sides[::-1]
                for side in order:
                    run = Run(side, repeat)
                    if side == "B":
                        profiling = profiled(profiler if repeat == 0 else None)
                        db = Path(tmp) / f"load{repeat}.db"
                        sent, extra = await platform.run_b(model, db, plan, args, run, ticker, profiling)
                        extras.append(extra)
                    elif side == "C":
                        core: Callable[[Question], Incoming] = platform.incoming
                        run, sent = await run_core(
                            model,
                            pids,
                            Path(tmp) / f"core{repeat}.db",
                            plan,
                            args,
                            repeat,
                            ticker,
                            incoming=core,
                            warm=platform.warm(args.channels),
                        )
                    else:
                        run = await run_bare(model, pids, plan, bodies, args, repeat, ticker)
                    if side != "A":
                        if not bodies:
                            bodies = {message_tag(str(b["messages"][-1]["content"])): b for b in sent}
                        digest = request_digest if side == "B" else platform.core_digest
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
    result["platform_extras"] = extras
    result["summary"] = summarise(platform, runs, extras, sum(len(c) for c in plan))
    result["all_ok"] = all(checks_pass(platform, r.side, r.checks) for r in runs)
    name = f"{args.platform}_load{platform.result_name(args)}" + ("-profiled" if args.profile else "")
    if profiler is not None:
        result["profile"] = profile_breakdown(profiler, name)
    path = write_result(name, result)
    report(platform, result, path)
    return 0 if result["all_ok"] else 1


def checks_pass(platform: Platform, side: str, c: dict[str, Any]) -> bool:
    if side == "A":
        return bool(c["wrong"] == 0 and c["failed"] == 0 and c["bodies_as_B"])
    if side == "C":
        return bool(c["wrong"] == 0 and c["failed"] == 0 and c["bodies_as_first_B"])
    return bool(
        c["all_answered_in_time"]
        and c["model_requests"] == c["mentions"]
        and c["bodies_as_first_B"]
        and all(c[k] == 0 for k in (*platform.zero_checks, *STORE_ZERO_CHECKS))
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


def summarise(platform: Platform, runs: list[Run], extras: list[dict[str, Any]], per_run: int) -> dict[str, Any]:
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
            "cpu_ms_per_answer": med([r.cpu_s for r in mine]) / per_run * 1000,
            "lag_p99_ms": med([percentile(r.lags_s, 99) * 1000 for r in mine]),
            "lag_max_ms": max(max(r.lags_s, default=0.0) for r in mine) * 1000,
            "model_served_p50_s": med([statistics.median(r.model_served_s) for r in mine]),
            "model_served_p99_s": med([percentile(r.model_served_s, 99) for r in mine]),
            "listen_overflows": sum(r.tcp.get("ListenOverflows", 0) for r in mine),
            "syn_retransmits": sum(r.tcp.get("TCPSynRetrans", 0) for r in mine),
            "model_process_cpu_s": med([r.children_cpu_s["model"] for r in mine]),
            "platform_process_cpu_s": med([r.children_cpu_s[platform.name] for r in mine]),
            "other_processes_cpu_s": max(r.children_cpu_s["others"] for r in mine),
        }
        if side == "B":
            b = out[side]
            b["to_core_p50_ms"] = med([statistics.median(r.to_core_s) * 1000 for r in mine])
            b["to_core_p99_ms"] = med([percentile(r.to_core_s, 99) * 1000 for r in mine])
            b["to_core_max_ms"] = max(max(r.to_core_s) for r in mine) * 1000
            calls: Counter[str] = Counter()
            for r in mine:
                calls.update(r.methods)
            b["calls_per_answer"] = {
                m: n / (per_run * len(mine)) for m, n in sorted(calls.items(), key=lambda kv: -kv[1])
            }
            b |= platform.summarise_b(mine, extras)
    out["ratios"] = {}
    for x, y in (("B", "A"), ("C", "A"), ("B", "C")):
        if x in out and y in out:
            out["ratios"][f"{x}/{y}"] = {key: out[x][key] / out[y][key] for key in RATIO_KEYS} | {
                "cpu": out[x]["cpu_s"] / out[y]["cpu_s"],
                "wall": out[x]["wall_s"] / out[y]["wall_s"],
            }
    if "A" in out:
        model_time = out["A"]["service_p50_s"]  # the model's own streaming time for one answer: to the last token
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


def report(platform: Platform, result: dict[str, Any], path: Path) -> None:
    cfg, s = result["config"], result["summary"]
    label = platform.label
    print(
        f"{label} load: {cfg['channels']} channels x {cfg['per_channel']} mentions, {cfg['gap_s']:g} s apart in a "
        f"channel, {cfg['repeats']} repeats; model {cfg['first_token_delay_s']:g} s to the first token, "
        f"{cfg['chunk_delay_s'] * 1000:g} ms a 4-char chunk, {cfg['answer_words']} words" + platform.describe(cfg)
    )
    print(
        f"{'seconds':27}{'first p50':>10}{'p99':>8}{'complete p50':>14}{'p99':>8}{'service p50':>13}{'p99':>8}"
        f"{'wall s':>8}{'CPU s':>8}{'lag p99 ms':>12}"
    )
    names = {"A": "A bare SDK, ideal queue", "C": f"C core alone, no {label}", "B": f"B {label}"}
    present = [side for side in names if side in s]
    for side in present:
        one = s[side]
        print(
            f"{names[side]:27}{one['first_p50_s']:10.3f}{one['first_p99_s']:8.3f}{one['complete_p50_s']:14.3f}"
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
        + ", ".join(f"{x} {s[x]['model_served_p50_s']:.3f}/{s[x]['model_served_p99_s']:.3f} s" for x in present)
    )
    print(
        f"CPU s of the model's / {label}'s processes / (max) everything else on the machine during the load: "
        + ", ".join(
            f"{x} {s[x]['model_process_cpu_s']:.2f}/{s[x]['platform_process_cpu_s']:.2f}"
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
            f"B: from the mention's arrival to Threadline.receive p50 {b['to_core_p50_ms']:.1f} ms, p99 "
            f"{b['to_core_p99_ms']:.1f} ms, max {b['to_core_max_ms']:.1f} ms; CPU {b['cpu_ms_per_answer']:.1f} ms "
            "an answer"
        )
        calls = ", ".join(f"{m} {n:.3g}" for m, n in b["calls_per_answer"].items())
        print(f"B: {label} calls per answer: {calls}")
        for line in platform.report_b(b):
            print(line)
    if "profile" in result:
        prof = result["profile"]
        print(f"profile of B's first load (cProfile, so slower than above): {prof['total_own_s']:.2f} s own time")
        for group, seconds in prof["by_package_s"].items():
            print(f"  {seconds:7.2f} s {seconds / prof['total_own_s'] * 100:5.1f} %  {group}")
        print(f"  pstats: {prof['pstats']}")
    for line in platform.report_extras(result):
        print(line)
    for r in result["runs"]:
        if not checks_pass(platform, r["side"], r["checks"]):
            print(f"CHECKS FAILED, {r['side']} repeat {r['repeat'] + 1}: {r['checks']}")
    print(f"all checks passed: {result['all_ok']}")
    print(f"results: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Many chat mentions at once through Slack or Discord.")
    add_model_arguments(parser)
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--per-channel", type=int, default=5)
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between a channel's mentions (0: all at once)")
    parser.add_argument("--users", type=int, default=20, help="people taking turns to mention the bot")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--profile", action="store_true", help="cProfile the bot's process during B's first load")
    parser.add_argument(
        "--sides",
        default="BAC",
        help="which sides, in the first repeat's order (B first): A bare SDK, B the platform, C core alone",
    )
    chat_slack.add_arguments(parser, load=True)
    chat_discord.add_arguments(parser, load=True)
    args = parser.parse_args()
    if not args.sides.startswith("B") or set(args.sides) - set("ABC"):
        parser.error("--sides: letters from A, B, C, starting with B")
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
