"""Chat latency: from a mention reaching the bot to the first and the last words of its answer on screen.

    .venv/bin/python -m bench.chat_latency --platform slack|discord [--mentions 20] [--warmup 3] [--phase-mentions 5]
        Slack:   [--threads 2] [--slack-rtt-ms 50]
        Discord: [--edit-interval S]

Three processes, all on 127.0.0.1:

* the **model** (:mod:`bench.chat_model`): 0.5 s to the first token, then four characters every
  20 ms (200 characters, about 50 tokens, a second), a 60-word answer;
* the **platform** (:mod:`bench.slack_side`, :mod:`bench.discord_side`): the tests' fake Slack or
  Discord, stamping with ``time.monotonic()`` when each question goes to the bot and when each of
  the bot's calls arrives;
* the **bot** (this process): the real ``SlackBot.start`` or ``DiscordBot.start``, a fresh
  database (:mod:`bench.chat_slack`, :mod:`bench.chat_discord` say how each is driven and measured).

Each measured question is a new message in a fresh channel, one at a time, by the same person.

* B, the platform: from the question's arrival (the event's POST, the MESSAGE_CREATE's dispatch) to
  (a) the first call that shows answer text and (b) the call after which the whole answer shows;
  the reply must be the model's answer, exactly once.
* A, bare openai SDK (the reference): ``chat.completions.create(stream=True)`` with exactly the
  request body the bot sends (captured in the warm-up, its tag swapped), to the same server:
  time to the first and to the last content token, and to the end of the stream.

A and B alternate, A first for even mentions. Reported: medians, the ratios B(a)/A(first token)
(goal ≤ 1.10) and B(b)/A(last token) (goal ≤ 1.05), both as a ratio of medians and as the median
of each pair's ratio; the bot's calls per mention. Then a separate, instrumented pass
(``--phase-mentions``) times the phases inside the bot for a few more mentions, from its public
seams (the platform library's hook, the core's ``receive`` and events), so the figures above carry
no instrumentation. :mod:`bench.chat_load` uses the same three processes under load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

import openai

from bench import chat_discord, chat_slack
from bench.chat_common import (
    Answer,
    CoreWatch,
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
from bench.chat_model import add_model_arguments, chat_model_server, message_tag, reply_text
from bench.common import ModelServer, SideProcess, forbid_non_loopback, machine, summary, write_result
from core.service import Threadline

GOAL_FIRST = 1.10
GOAL_COMPLETE = 1.05


class Bot(Protocol):
    service: Threadline


class Side(Protocol):
    """A platform's bot and fake for this benchmark (:class:`bench.chat_slack.SlackLatency`, ...DiscordLatency)."""

    name: str
    label: str
    origin: str  # the phase table's origin: the question reaching the bot
    first_label: str
    complete_label: str
    min_warmup: int

    @property
    def rows(self) -> tuple[tuple[str, str], ...]:
        """The platform's own timed columns of a pair: (label, key)."""

    @property
    def bot(self) -> Bot: ...

    @property
    def fake(self) -> SideProcess: ...

    def config(self, args: argparse.Namespace) -> dict[str, Any]: ...

    def result_name(self, args: argparse.Namespace) -> str: ...

    def listening(self, phases: Phases) -> contextlib.AbstractContextManager[None]: ...

    async def ask(self, tag: str, index: int) -> Answer: ...

    def measurement_begins(self) -> None: ...

    async def after(self, args: argparse.Namespace) -> dict[str, Any]: ...

    def report(self, result: dict[str, Any]) -> list[str]: ...


def running(
    platform: str, model: ModelServer, args: argparse.Namespace, db: Path
) -> contextlib.AbstractAsyncContextManager[Side]:
    if platform == "slack":
        return chat_slack.SlackLatency.running(model, args, db)
    return chat_discord.DiscordLatency.running(model, args, db)


async def main_async(args: argparse.Namespace) -> int:
    forbid_non_loopback()
    result: dict[str, Any] = {
        "benchmark": f"{args.platform}_latency",
        "command": ".venv/bin/python -m bench.chat_latency " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "code": code_version("bots", "core"),
        "config": {
            "platform": args.platform,
            "mentions": args.mentions,
            "warmup": args.warmup,
            "phase_mentions": args.phase_mentions,
            "first_token_delay_s": args.delay,
            "chunk_delay_s": args.chunk_delay,
            "chars_per_chunk": 4,
            "answer_words": args.words,
            "answer_chars": len(reply_text("#L0000", args.words)),
            "model": "bench.chat_model in a child process on 127.0.0.1",
            "assistant": "built-in",
        },
    }
    pairs: list[dict[str, Any]] = []
    problems: list[str] = []
    calls: Counter[str] = Counter()
    phases_out: list[dict[str, float]] = []
    async with chat_model_server(delay=args.delay, chunk_delay=args.chunk_delay, words=args.words) as model:
        with tempfile.TemporaryDirectory(prefix="threadline-bench-") as tmp:
            async with running(args.platform, model, args, Path(tmp) / "bot.db") as side:
                result["config"] |= side.config(args)
                client = openai.AsyncOpenAI(api_key="sk-bench-not-a-real-key", base_url=model.base_url, max_retries=0)
                try:
                    # Warm-up through the platform: opens connections, builds the agent, captures the body.
                    await model.command("reset")
                    index = 0
                    for i in range(max(side.min_warmup, args.warmup)):
                        answer = await side.ask(f"W{i:04d}", index)
                        index += 1
                        problems += [f"warm-up W{i:04d}: {p}" for p in answer.problems]
                    captured = (await model.command("bodies"))["bodies"]
                    template = captured[-1]
                    template_tag = message_tag(str(template["messages"][-1]["content"]))
                    known = sdk_parameters()
                    # The bare SDK warms its own connection too.
                    await bare_call(client, kwargs_for(retag(template, template_tag, "W9999"), known))

                    await model.command("reset")
                    side.measurement_begins()
                    pids = [model.pid, side.fake.pid]
                    others_before, wall_before = others_cpu_s(*pids), time.monotonic()
                    for i in range(args.mentions):
                        pair = await one_pair(side, client, template, template_tag, known, i, index, args, problems)
                        index += 1
                        calls.update(pair.pop("calls"))
                        pairs.append(pair)
                    result["other_processes_cpu_s"] = others_cpu_s(*pids) - others_before
                    result["measured_wall_s"] = time.monotonic() - wall_before
                    bodies = (await model.command("bodies"))["bodies"]
                    result["bodies_identical"] = bodies_match(bodies, args.mentions)
                    result |= await side.after(args)
                    problems += result.get("threads", {}).get("problems", [])

                    if args.phase_mentions:
                        phases_out = await phase_pass(model, side, index, args)
                finally:
                    await client.close()

    result["pairs"] = pairs
    result["summary"] = summarise(pairs)
    result["calls_per_mention"] = {m: n / max(1, args.mentions) for m, n in sorted(calls.items())}
    result["phases"] = phases_out
    result["phase_medians_ms"] = phase_medians(phases_out)
    result["problems"] = problems
    result["all_ok"] = not problems and bool(result["bodies_identical"])
    path = write_result(f"{args.platform}_latency{side.result_name(args)}", result)
    report(result, side, path)
    return 0 if result["all_ok"] else 1


async def one_pair(
    side: Side,
    client: openai.AsyncOpenAI,
    template: dict[str, Any],
    template_tag: str,
    known: set[str],
    i: int,
    index: int,
    args: argparse.Namespace,
    problems: list[str],
) -> dict[str, Any]:
    """The ``i``-th measured mention through the platform (B) and its twin through the bare SDK (A)."""
    tag = f"L{i:04d}"
    body = retag(template, template_tag, f"A{i:04d}")
    order = ("A", "B") if i % 2 == 0 else ("B", "A")
    pair: dict[str, Any] = {"mention": tag, "order": "".join(order)}
    for one in order:
        if one == "A":
            bare = await bare_call(client, kwargs_for(body, known))
            if bare.text != reply_text(f"#A{i:04d}", args.words):
                problems.append(f"A {i}: wrong answer {bare.text[:40]!r}")
            pair |= {"A_first_token_s": bare.first, "A_last_token_s": bare.last, "A_end_s": bare.end}
        else:
            answer = await side.ask(tag, index)
            problems += [f"B {tag}: {p}" for p in answer.problems]
            pair |= {"B_first_visible_s": answer.first_visible_s, "B_complete_s": answer.complete_s}
            pair |= answer.columns | {"calls": answer.calls}
    print(
        f"{i + 1:3d}/{args.mentions} A first {pair['A_first_token_s'] * 1000:7.1f} ms, last "
        f"{pair['A_last_token_s'] * 1000:7.1f} ms | B first {pair['B_first_visible_s'] * 1000:7.1f} "
        f"ms, complete {pair['B_complete_s'] * 1000:7.1f} ms"
    )
    return pair


async def phase_pass(model: ModelServer, side: Side, index: int, args: argparse.Namespace) -> list[dict[str, float]]:
    """A few more mentions with the bot's public seams watched; each phase in ms after the question arrived."""
    out: list[dict[str, float]] = []
    phases = Phases()
    core = CoreWatch()
    core.phases = phases
    with core.watching(side.bot.service), side.listening(phases):
        for i in range(args.phase_mentions):
            tag = f"P{i:04d}"
            phases.now = {}
            await model.command("reset")
            answer = await side.ask(tag, index + i)
            arrivals = (await model.command("arrivals"))["arrivals"]
            stamps = {side.origin: answer.origin} | answer.stamps | phases.now
            for arrived, at in arrivals:
                if arrived == tag:
                    stamps["model: request arrived"] = at
            out.append({k: (v - answer.origin) * 1000 for k, v in sorted(stamps.items(), key=lambda kv: kv[1])})
    return out


def summarise(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    def col(name: str) -> list[float]:
        return [float(p[name]) for p in pairs]

    numeric = [k for k, v in pairs[0].items() if isinstance(v, int | float)] if pairs else []
    out: dict[str, Any] = {name: summary(col(name)) for name in numeric}
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


def report(result: dict[str, Any], side: Side, path: Path) -> None:
    cfg, s = result["config"], result["summary"]
    print(
        f"{side.label} latency: {cfg['mentions']} mentions, one at a time, each in a fresh channel; model: first token "
        f"after {cfg['first_token_delay_s']:g} s, 4 chars every {cfg['chunk_delay_s'] * 1000:g} ms, "
        f"{cfg['answer_words']} words ({cfg['answer_chars']} chars)"
    )
    print(f"{'':52}{'median ms':>10}{'p99 ms':>9}{'min ms':>9}{'max ms':>9}")
    rows = (
        ("A bare SDK: first token", "A_first_token_s"),
        ("A bare SDK: last token", "A_last_token_s"),
        ("A bare SDK: end of stream", "A_end_s"),
        (f"B {side.label}: {side.first_label}", "B_first_visible_s"),
        (f"B {side.label}: {side.complete_label}", "B_complete_s"),
        *((f"B {side.label}: {label}", key) for label, key in side.rows),
    )
    for name, key in rows:
        ms = {k: v * 1000 for k, v in s[key].items() if k != "n"}
        print(f"{name:52}{ms['median']:10.1f}{ms['p99']:9.1f}{ms['min']:9.1f}{ms['max']:9.1f}")
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
    calls = ", ".join(f"{m} {n:g}" for m, n in result["calls_per_mention"].items())
    print(f"{side.label} calls per mention: {calls}")
    if result["phase_medians_ms"]:
        print(f"phases ({len(result['phases'])} more mentions, median ms after '{side.origin}'):")
        for label, ms in result["phase_medians_ms"].items():
            print(f"  {ms:9.1f}  {label}")
    print(
        f"CPU of everything else on the machine during the measurement: {result['other_processes_cpu_s']:.1f} s "
        f"in {result['measured_wall_s']:.0f} s"
    )
    print(f"request bodies of A and B identical: {result['bodies_identical']}")
    for line in side.report(result):
        print(line)
    for problem in result["problems"]:
        print(f"PROBLEM: {problem}")
    print(f"all checks passed: {result['all_ok']}")
    print(f"results: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Chat mention latency against the bare SDK.")
    add_model_arguments(parser)
    parser.add_argument("--mentions", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--phase-mentions", type=int, default=5, help="instrumented mentions after the measurement")
    chat_slack.add_arguments(parser, load=False)
    chat_discord.add_arguments(parser, load=False)
    args = parser.parse_args()
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
