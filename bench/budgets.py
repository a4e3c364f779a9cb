"""What budgets cost: a turn with budgets vs the same turn without, and a reservation vs runs in the period.

    .venv/bin/python -m bench.budgets [--turns 100] [--runs 1000,10000,100000]

* Turns: two services in this process on one scripted model server (:mod:`bench.fake_server`,
  its own process, 127.0.0.1), each on its own database: N without a ``[budgets]`` section, B with
  a channel and a user budget per day and month (four budgets, never reached). Each turn is a new
  message in the side's channel, answered until ``RunCompleted``; the sides alternate in a random
  order every round, after a warm-up. Reported: median and p99 per side and the ratio of medians.
* Reservations: one store with ``--runs`` finished runs of one channel and one person this month;
  the median and p95 time of :meth:`BudgetStore.reserve` (four budgets, each summed over those runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import bench_settings, forbid_non_loopback, machine, model_server, percentile, summary, write_result
from core.budgets import BudgetConfig, Limit
from core.events import RunCompleted
from core.models import Author, Incoming
from core.service import Threadline
from core.store.budgets import BudgetStore, Subjects
from core.store.store import Store
from core.usage import ModelUsage

BUDGETS = """
[budgets]
channel = { day = "1000M tokens", month = "1000M tokens" }
user = { day = "1000M tokens", month = "1000M tokens" }
"""
PERSON = Author(id="U_BENCH", name="bench", key="slack:U_BENCH")


async def _turn(service: Threadline, channel: str, n: int) -> float:
    start = time.perf_counter()
    handle = await service.post(Incoming(channel, PERSON, f"question {n}", platform_msg_id=uuid.uuid4().hex))
    assert handle is not None
    async for event in handle.events():
        if isinstance(event, RunCompleted):
            break
    else:
        raise RuntimeError("a turn did not complete")
    elapsed = time.perf_counter() - start
    await service.wait_idle()
    return elapsed


async def turns(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    assistants = folder / "budgets.toml"
    assistants.write_text(BUDGETS)
    async with model_server(reply_chars=200, chunk_delay=args.chunk_delay) as server:
        plain = await Threadline.open(bench_settings(server.base_url, folder / "n.db"))
        budgeted = await Threadline.open(bench_settings(server.base_url, folder / "b.db", assistants_file=assistants))
        sides = {"N": (plain, "slack:T1:CN"), "B": (budgeted, "slack:T1:CB")}
        times: dict[str, list[float]] = {"N": [], "B": []}
        rng = random.Random(args.seed)
        try:
            for n in range(args.warmup + args.turns):
                order = list(sides)
                rng.shuffle(order)
                for side in order:
                    service, channel = sides[side]
                    elapsed = await _turn(service, channel, n)
                    if n >= args.warmup:
                        times[side].append(elapsed)
        finally:
            await plain.close()
            await budgeted.close()
    result: dict[str, Any] = {side: summary(values) for side, values in times.items()}
    result["ratio_median_B_N"] = result["B"]["median"] / result["N"]["median"]
    result["ratio_p99_B_N"] = result["B"]["p99"] / result["N"]["p99"]
    return result


async def reservations(count: int, samples: int, folder: Path) -> dict[str, Any]:
    store = await Store.open(folder / f"r{count}.db")
    try:
        posted = await store.post_user_message(
            channel="slack:T1:C1",
            author_id="U1",
            author_name="u",
            text="q",
            item={"role": "user", "content": "q"},
            tokens=1,
            platform_msg_id=None,
            actor=json.dumps({"key": "slack:U1", "roles": []}),
        )
        assert posted is not None
        run = posted[1]
        now = time.time()

        def fill(db: Any) -> None:
            with db.atomic():
                db.execute("UPDATE runs SET model = 'm' WHERE id = ?", [run.id])
                db.conn.executemany(
                    "INSERT INTO runs (id, thread_id, channel, status, created_at, model, input_tokens, output_tokens,"
                    " total_tokens, actor, trigger_message_id)"
                    " SELECT ?, thread_id, channel, 'completed', ?, 'm', 100, 50, 150, actor, trigger_message_id"
                    " FROM runs WHERE id = ?",
                    [(f"run_fill_{i}", now - 1 - i % 3600, run.id) for i in range(count)],
                )

        await store.call(fill)
        config = BudgetConfig({s: {"day": Limit(1e12), "month": Limit(1e12)} for s in ("channel", "user")})
        budgets = BudgetStore(store, config, {})
        subjects = Subjects("slack:T1:C1", "slack:U1")
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            refused = await budgets.reserve(
                run.id, subjects, run_started=run.created_at, expected=ModelUsage("m", 1000, 4096), now=time.time()
            )
            times.append(time.perf_counter() - start)
            assert refused is None
        return {
            "runs": count,
            "median_ms": statistics.median(times) * 1000,
            "p95_ms": percentile(times, 95) * 1000,
        }
    finally:
        await store.close()


async def main_async(args: argparse.Namespace) -> int:
    forbid_non_loopback()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        turn = await turns(args, folder)
        reserve = [await reservations(int(n), args.samples, folder) for n in args.runs.split(",")]
    print(f"turns ({args.turns} a side, median / p99 ms):")
    for side, label in (("N", "no budgets"), ("B", "4 budgets")):
        print(f"  {side} {label:<11} {turn[side]['median'] * 1000:7.2f} / {turn[side]['p99'] * 1000:7.2f}")
    print(f"  B/N median {turn['ratio_median_B_N']:.3f}, p99 {turn['ratio_p99_B_N']:.3f}")
    print("one reservation (4 budgets), by runs in the channel's and person's month:")
    for row in reserve:
        print(f"  {row['runs']:>7} runs: median {row['median_ms']:.2f} ms, p95 {row['p95_ms']:.2f} ms")
    path = write_result("budgets", {"machine": machine(), "args": vars(args), "turns": turn, "reserve": reserve})
    print(f"written to {path}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="What budgets cost per turn and per reservation.")
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    parser.add_argument("--runs", default="1000,10000,100000")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
