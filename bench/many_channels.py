"""Many channels at once: every channel posts a message at the same moment; all must be answered once.

    .venv/bin/python -m bench.many_channels [--channels 200] [--rounds 2] [--repeats 3]

The scripted model server (:mod:`bench.fake_server`, its own process, 127.0.0.1) streams a
~200-character answer four characters a chunk with ``--chunk-delay`` (5 ms) between chunks, so
the runs overlap as they would against a real endpoint.

* B, Threadline: a fresh service and database per repetition. In each round every channel calls
  :meth:`Threadline.post` at the same moment (one ``asyncio.gather``), then every handle is read
  to its end. The second round posts again on the same threads, after the first is answered.
  Afterwards each channel's thread is read back from the store: exactly one user message and one
  assistant answer per post, in order, each answer the one for its own message; every run
  completed; the server saw exactly one request per post (no retries).
* A, bare openai SDK (the side-by-side reference): the same number of concurrent streaming
  calls, with exactly the request bodies Threadline sends (built from bodies captured in a small
  warm-up, checked against them, and checked again against every request B makes).

A and B alternate (B first in the first and third repetitions). During each run a ticker task sleeps 10 ms again
and again and records how late it wakes (event-loop lag) and the RSS. Reported: wall time per
round and in total (median over repetitions, and the ratio B/A), per-post latency, lag p99, RSS
before the load and at its peak (sampled VmRSS, and ru_maxrss), and the correctness counts.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from bench.common import (
    LagTicker,
    ModelServer,
    bench_settings,
    forbid_non_loopback,
    machine,
    model_server,
    peak_rss_kib,
    percentile,
    rss_kib,
    summary,
    write_result,
)
from bench.fake_server import reply_text, request_digest
from core.events import RunCompleted
from core.handles import RunHandle
from core.models import Author, Incoming
from core.service import Threadline

AUTHOR = Author(id="U_BENCH", name="alice")
WARMUP_CHANNELS = 4
HANDLE_TIMEOUT = 180.0


def channel_key(index: int) -> str:
    return f"bench:load:c{index:04d}"


def message_text(index: int, round_no: int) -> str:
    return f"round {round_no} question from channel #{index:04d}: what is the status of the release?"


def expected_answer(index: int, round_no: int, chars: int) -> str:
    return reply_text(f"{AUTHOR.name}: {message_text(index, round_no)}", chars)


@dataclass
class Run:
    """One side's run of the whole load (all rounds) in one repetition."""

    side: str
    repeat: int
    round_wall_s: list[float] = field(default_factory=list)
    post_all_s: list[float] = field(default_factory=list)  # B: until every post() returned
    latencies_s: list[float] = field(default_factory=list)  # each post/call: round start to its answer
    lags_s: list[float] = field(default_factory=list)
    rss_before_kib: int = 0
    rss_peak_kib: int = 0
    maxrss_after_kib: int = 0
    cpu_s: float = 0.0  # process CPU time (all threads) over the rounds
    checks: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "repeat": self.repeat,
            "round_wall_s": self.round_wall_s,
            "total_wall_s": sum(self.round_wall_s),
            "cpu_s": self.cpu_s,
            "post_all_s": self.post_all_s,
            "latency_s": summary(self.latencies_s),
            "lag_ms": {k: v * 1000 if k != "n" else v for k, v in summary(self.lags_s).items()},
            "rss_before_kib": self.rss_before_kib,
            "rss_peak_sampled_kib": self.rss_peak_kib,
            "ru_maxrss_after_kib": self.maxrss_after_kib,
            "checks": self.checks,
        }


# -- B: Threadline --------------------------------------------------------------------------------


async def run_threadline(
    server: ModelServer, db: Path, channels: int, rounds: int, chars: int, repeat: int, ticker: LagTicker
) -> Run:
    run = Run("B", repeat)
    service = await Threadline.open(bench_settings(server.base_url, db))
    answered = failed = timed_out = wrong_live = 0
    try:
        await server.command("reset")
        gc.collect()
        run.rss_before_kib = rss_kib()
        ticker.start()
        cpu = time.process_time()
        for round_no in range(1, rounds + 1):
            incoming = [
                Incoming(channel_key(i), AUTHOR, message_text(i, round_no), platform_msg_id=f"m{i}-{round_no}")
                for i in range(channels)
            ]
            start = time.perf_counter()
            handles = await asyncio.gather(*(service.post(m) for m in incoming))
            run.post_all_s.append(time.perf_counter() - start)

            async def answer(
                index: int, handle: RunHandle | None, round_no: int = round_no, start: float = start
            ) -> str:
                if handle is None:
                    return "no handle"
                try:
                    event = await asyncio.wait_for(handle.result(), timeout=HANDLE_TIMEOUT)
                except TimeoutError:
                    return "timeout"
                run.latencies_s.append(time.perf_counter() - start)
                if not isinstance(event, RunCompleted):
                    return "failed"
                return "ok" if event.text == expected_answer(index, round_no, chars) else "wrong"

            outcomes = await asyncio.gather(*(answer(i, h) for i, h in enumerate(handles)))
            run.round_wall_s.append(time.perf_counter() - start)
            counts = Counter(outcomes)
            answered += counts["ok"] + counts["wrong"]
            wrong_live += counts["wrong"]
            failed += counts["failed"]
            timed_out += counts["timeout"] + counts["no handle"]
            await service.wait_idle()
        run.cpu_s = time.process_time() - cpu
        await ticker.stop()
        run.lags_s, run.rss_peak_kib = ticker.lags, ticker.rss_peak
        run.maxrss_after_kib = peak_rss_kib()

        stats = await server.command("stats")
        bodies = (await server.command("bodies"))["bodies"]
        run.checks = {
            "posts": channels * rounds,
            "answered_live": answered,
            "failed_live": failed,
            "not_answered_in_time": timed_out,
            "wrong_answer_live": wrong_live,
            **await check_store(service, channels, rounds, chars),
            "model_requests": stats["chat_requests"],
            "bodies": [request_digest(b) for b in bodies],
        }
    finally:
        await service.close()
    return run


async def check_store(service: Threadline, channels: int, rounds: int, chars: int) -> dict[str, int]:
    """Read every channel's thread back: one user message and one answer per post, in order, and right."""
    lost = duplicated = wrong = misordered = runs_not_completed = 0
    for i in range(channels):
        thread = await service.store.current_thread(channel_key(i))
        messages = await service.store.thread_messages(thread)
        runs = await service.store.thread_runs(thread)
        runs_not_completed += sum(r.status != "completed" for r in runs) + max(0, rounds - len(runs))
        expected_roles: list[str] = []
        for round_no in range(1, rounds + 1):
            text = message_text(i, round_no)
            users = [m for m in messages if m.role == "user" and m.text == text]
            if not users:
                lost += 1
                continue
            duplicated += len(users) - 1
            turn = users[0].turn_id
            answers = [m for m in messages if m.role == "assistant" and m.turn_id == turn]
            if not answers:
                lost += 1
            duplicated += max(0, len(answers) - 1)
            wrong += sum(a.text != expected_answer(i, round_no, chars) for a in answers)
            expected_roles += ["user", "assistant"]
        strays = [m for m in messages if m.role not in ("user", "assistant")]
        duplicated += len(strays)
        if [m.role for m in messages] != expected_roles:
            misordered += 1
    return {
        "lost": lost,
        "duplicated": duplicated,
        "wrong_answer_stored": wrong,
        "threads_out_of_order": misordered,
        "runs_not_completed": runs_not_completed,
    }


# -- A: the bare SDK --------------------------------------------------------------------------


async def run_bare(
    server: ModelServer,
    kwargs: dict[tuple[int, int], dict[str, Any]],
    channels: int,
    rounds: int,
    chars: int,
    repeat: int,
    ticker: LagTicker,
) -> Run:
    run = Run("A", repeat)
    client = openai.AsyncOpenAI(api_key="sk-bench-not-a-real-key", base_url=server.base_url, max_retries=3)
    ok = wrong = failed = 0
    try:
        await server.command("reset")
        gc.collect()
        run.rss_before_kib = rss_kib()
        ticker.start()
        cpu = time.process_time()
        for round_no in range(1, rounds + 1):
            start = time.perf_counter()

            async def call(index: int, round_no: int = round_no, start: float = start) -> str:
                try:
                    stream = await client.chat.completions.create(**kwargs[(index, round_no)])
                    parts = [
                        content
                        async for chunk in stream
                        if chunk.choices and (content := chunk.choices[0].delta.content)
                    ]
                except openai.OpenAIError:
                    return "failed"
                run.latencies_s.append(time.perf_counter() - start)
                return "ok" if "".join(parts) == expected_answer(index, round_no, chars) else "wrong"

            outcomes = Counter(await asyncio.gather(*(call(i) for i in range(channels))))
            run.round_wall_s.append(time.perf_counter() - start)
            ok, wrong, failed = ok + outcomes["ok"], wrong + outcomes["wrong"], failed + outcomes["failed"]
        run.cpu_s = time.process_time() - cpu
        await ticker.stop()
        run.lags_s, run.rss_peak_kib = ticker.lags, ticker.rss_peak
        run.maxrss_after_kib = peak_rss_kib()
        stats = await server.command("stats")
        bodies = (await server.command("bodies"))["bodies"]
        run.checks = {
            "calls": channels * rounds,
            "ok": ok,
            "wrong": wrong,
            "failed": failed,
            "model_requests": stats["chat_requests"],
            "bodies": [request_digest(b) for b in bodies],
        }
    finally:
        await client.close()
    return run


# -- the bodies A sends ----------------------------------------------------------------------------


async def capture_bodies(server: ModelServer, db: Path, rounds: int, chars: int) -> list[dict[str, Any]]:
    """Run a few channels through Threadline (warming it up) and return the bodies it sent, in order."""
    service = await Threadline.open(bench_settings(server.base_url, db))
    try:
        await server.command("reset")
        for round_no in range(1, rounds + 1):
            handles = await asyncio.gather(
                *(
                    service.post(Incoming(channel_key(i), AUTHOR, message_text(i, round_no)))
                    for i in range(WARMUP_CHANNELS)
                )
            )
            for handle in handles:
                assert handle is not None
                event = await handle.result()
                assert isinstance(event, RunCompleted), event
            await service.wait_idle()
        bodies: list[dict[str, Any]] = (await server.command("bodies"))["bodies"]
    finally:
        await service.close()
    return bodies


def build_bodies(captured: list[dict[str, Any]], channels: int, rounds: int) -> dict[tuple[int, int], dict[str, Any]]:
    """Bodies for every (channel, round), from channel 0's captured ones; checked against the others."""

    def key(body: dict[str, Any]) -> tuple[int, int]:
        text = str(body["messages"][-1]["content"])
        round_no = int(text.split("round ")[1].split(" ")[0])
        index = int(text.split("#")[1].split(":")[0])
        return index, round_no

    by_key = {key(b): b for b in captured}
    templates = {r: json.dumps(by_key[(0, r)]) for r in range(1, rounds + 1)}

    def body(index: int, round_no: int) -> dict[str, Any]:
        built: dict[str, Any] = json.loads(templates[round_no].replace("#0000", f"#{index:04d}"))
        return built

    for (index, round_no), seen in by_key.items():
        if body(index, round_no) != seen:
            raise AssertionError(f"cannot rebuild the request body of channel {index}, round {round_no}")
    return {(i, r): body(i, r) for i in range(channels) for r in range(1, rounds + 1)}


def sdk_kwargs(body: dict[str, Any], known: set[str]) -> dict[str, Any]:
    kwargs = {k: v for k, v in body.items() if k in known}
    extra = {k: v for k, v in body.items() if k not in known}
    if extra:
        kwargs["extra_body"] = extra
    return kwargs


# -- main ------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> int:
    forbid_non_loopback()
    result: dict[str, Any] = {
        "benchmark": "many_channels",
        "command": ".venv/bin/python -m bench.many_channels " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "config": {
            "channels": args.channels,
            "rounds": args.rounds,
            "repeats": args.repeats,
            "reply_chars": args.reply_chars,
            "chunk_delay_s": args.chunk_delay,
            "server": "bench.fake_server in a child process on 127.0.0.1",
            "assistant": "built-in",
            "lag_ticker_interval_ms": 10,
        },
        "rss_at_start_kib": rss_kib(),
        "ru_maxrss_at_start_kib": peak_rss_kib(),
    }
    runs: list[Run] = []
    ticker = LagTicker(0.010)
    with tempfile.TemporaryDirectory(prefix="threadline-bench-") as tmp:
        async with model_server(reply_chars=args.reply_chars, chunk_delay=args.chunk_delay) as server:
            captured = await capture_bodies(server, Path(tmp) / "warmup.db", args.rounds, args.reply_chars)
            probe = openai.AsyncOpenAI(api_key="x", base_url=server.base_url)
            known = set(inspect.signature(probe.chat.completions.create).parameters)
            await probe.close()
            bodies = build_bodies(captured, args.channels, args.rounds)
            expected_digests = sorted(request_digest(b) for b in bodies.values())
            kwargs = {k: sdk_kwargs(b, known) for k, b in bodies.items()}
            # Idle lag, for scale: the same ticker with nothing else running.
            ticker.start()
            await asyncio.sleep(1.0)
            await ticker.stop()
            result["idle_lag_ms"] = {k: v * 1000 if k != "n" else v for k, v in summary(ticker.lags).items()}
            result["rss_before_first_load_kib"] = rss_kib()
            result["ru_maxrss_before_first_load_kib"] = peak_rss_kib()
            for repeat in range(args.repeats):
                # B first in the first repetition, so ru_maxrss shows what Threadline's load adds.
                order = ("B", "A") if repeat % 2 == 0 else ("A", "B")
                for side in order:
                    if side == "A":
                        run = await run_bare(
                            server, kwargs, args.channels, args.rounds, args.reply_chars, repeat, ticker
                        )
                    else:
                        db = Path(tmp) / f"repeat{repeat}.db"
                        run = await run_threadline(
                            server, db, args.channels, args.rounds, args.reply_chars, repeat, ticker
                        )
                    run.checks["bodies_as_built"] = sorted(run.checks.pop("bodies")) == expected_digests
                    runs.append(run)
                    print(f"repeat {repeat + 1} {side}: {sum(run.round_wall_s):.2f} s, checks {run.checks}")
                    if side == "B" and "ru_maxrss_after_first_B_kib" not in result:
                        result["ru_maxrss_after_first_B_kib"] = run.maxrss_after_kib
    ticker.close()

    result["runs"] = [r.as_dict() for r in runs]
    result["summary"] = summarise(runs, args.rounds)
    result["ru_maxrss_at_end_kib"] = peak_rss_kib()
    b_checks = [r.checks for r in runs if r.side == "B"]
    a_checks = [r.checks for r in runs if r.side == "A"]
    result["all_ok"] = all(
        c["answered_live"] == c["posts"]
        and c["lost"] == 0
        and c["duplicated"] == 0
        and c["wrong_answer_stored"] == 0
        and c["wrong_answer_live"] == 0
        and c["threads_out_of_order"] == 0
        and c["runs_not_completed"] == 0
        and c["model_requests"] == c["posts"]
        and c["bodies_as_built"]
        for c in b_checks
    ) and all(c["ok"] == c["calls"] and c["model_requests"] == c["calls"] and c["bodies_as_built"] for c in a_checks)
    path = write_result("many_channels", result)
    report(result, path)
    return 0 if result["all_ok"] else 1


def summarise(runs: list[Run], rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for side in ("A", "B"):
        mine = [r for r in runs if r.side == side]
        out[side] = {
            "total_wall_s_median": statistics.median(sum(r.round_wall_s) for r in mine),
            "round_wall_s_median": [statistics.median(r.round_wall_s[i] for r in mine) for i in range(rounds)],
            "latency_s_median": statistics.median(statistics.median(r.latencies_s) for r in mine),
            "latency_s_p99_median": statistics.median(percentile(r.latencies_s, 99) for r in mine),
            "cpu_s_median": statistics.median(r.cpu_s for r in mine),
            "lag_ms_p50_median": statistics.median(statistics.median(r.lags_s) * 1000 for r in mine),
            "lag_ms_p99_median": statistics.median(percentile(r.lags_s, 99) * 1000 for r in mine),
            "lag_samples_median": statistics.median(len(r.lags_s) for r in mine),
            "lag_ms_max": max(max(r.lags_s, default=0.0) for r in mine) * 1000,
            "rss_before_kib_median": statistics.median(r.rss_before_kib for r in mine),
            "rss_peak_sampled_kib_max": max(r.rss_peak_kib for r in mine),
        }
    a, b = out["A"], out["B"]
    out["ratio_B_over_A"] = {
        "total_wall_median": b["total_wall_s_median"] / a["total_wall_s_median"],
        "round_wall_median": [y / x for x, y in zip(a["round_wall_s_median"], b["round_wall_s_median"], strict=True)],
        "cpu_median": b["cpu_s_median"] / a["cpu_s_median"],
        "lag_p99": b["lag_ms_p99_median"] / a["lag_ms_p99_median"],
    }
    b_checks = [r.checks for r in runs if r.side == "B"]
    out["B_checks_total"] = {
        key: sum(int(c[key]) for c in b_checks)
        for key in (
            "posts",
            "answered_live",
            "failed_live",
            "not_answered_in_time",
            "wrong_answer_live",
            "lost",
            "duplicated",
            "wrong_answer_stored",
            "threads_out_of_order",
            "runs_not_completed",
            "model_requests",
        )
    }
    return out


def report(result: dict[str, Any], path: Path) -> None:
    cfg, s = result["config"], result["summary"]
    a, b, ratio = s["A"], s["B"], s["ratio_B_over_A"]
    print(
        f"many channels: {cfg['channels']} channels post at once, {cfg['rounds']} round(s), {cfg['repeats']} repeats; "
        f"reply {cfg['reply_chars']} chars, chunk delay {cfg['chunk_delay_s'] * 1000:g} ms"
    )
    print(
        f"{'':20}{'wall s':>8}{'round 1, 2.. s':>16}{'CPU s':>8}{'lag p50 ms':>12}{'lag p99 ms':>12}{'(ticks)':>8}"
        f"{'latency p99 s':>15}"
    )
    for name, side in (("A bare openai SDK", a), ("B Threadline.post", b)):
        per_round = " ".join(f"{x:.2f}" for x in side["round_wall_s_median"])
        print(
            f"{name:20}{side['total_wall_s_median']:8.2f}{per_round:>16}{side['cpu_s_median']:8.2f}"
            f"{side['lag_ms_p50_median']:12.1f}{side['lag_ms_p99_median']:12.1f}{side['lag_samples_median']:8.0f}"
            f"{side['latency_s_p99_median']:15.2f}"
        )
    per_round = " ".join(f"{x:.2f}" for x in ratio["round_wall_median"])
    print(
        f"{'ratio B/A':20}{ratio['total_wall_median']:8.2f}{per_round:>16}{ratio['cpu_median']:8.2f}"
        f"{'':12}{ratio['lag_p99']:12.2f}"
    )
    print("(medians over the repeats; lag p99 is the median of each run's p99; a stalled loop ticks rarely)")
    print(f"idle event-loop lag p99: {result['idle_lag_ms']['p99']:.2f} ms")
    checks = s["B_checks_total"]
    print(
        f"B, all repeats: {checks['posts']} posts, {checks['answered_live']} answered, {checks['lost']} lost, "
        f"{checks['duplicated']} duplicated, {checks['wrong_answer_stored']} wrong, "
        f"{checks['runs_not_completed']} runs not completed, {checks['model_requests']} model requests"
    )
    mib = 1024
    before, after_b = result["rss_before_first_load_kib"], result["ru_maxrss_after_first_B_kib"]
    print(
        f"RSS before the first load {before / mib:.1f} MiB "
        f"(ru_maxrss {result['ru_maxrss_before_first_load_kib'] / mib:.1f}); "
        f"ru_maxrss after the first B load {after_b / mib:.1f} MiB (+{(after_b - before) / mib:.1f}); "
        f"at the end {result['ru_maxrss_at_end_kib'] / mib:.1f} MiB; "
        f"sampled peak A {a['rss_peak_sampled_kib_max'] / mib:.1f}, B {b['rss_peak_sampled_kib_max'] / mib:.1f} MiB"
    )
    print(f"all checks passed: {result['all_ok']}")
    print(f"results: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Many channels posting at once through Threadline.")
    parser.add_argument("--channels", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of one post per channel (default 2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reply-chars", type=int, default=200)
    parser.add_argument("--chunk-delay", type=float, default=0.005, help="seconds between streamed chunks")
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
