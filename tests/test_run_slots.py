"""How many runs a process executes at once: the adaptive bound (core/run_slots.py) and the lanes under it."""

from __future__ import annotations

import asyncio
from typing import Any

from core.events import ApprovalRequired, RunCompleted
from core.run_slots import FLOOR, TARGET_LAG, RunSlots, next_limit, smoothed_lag
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, last_user_text, tool_results
from tests.helpers import post

# -- the controller: pure logic ---------------------------------------------------------------------


def test_a_late_loop_shrinks_the_bound_to_a_share_of_the_runs_in_progress() -> None:
    assert next_limit(64, lag=TARGET_LAG * 3, running=64, waiting=500, ceiling=256) == 48
    # Never below the floor, nor above what it was.
    assert next_limit(6, lag=1.0, running=6, waiting=10, ceiling=256) == FLOOR
    assert next_limit(10, lag=1.0, running=40, waiting=0, ceiling=256) == 10


def test_an_on_time_loop_grows_the_bound_only_while_runs_wait_for_a_full_one() -> None:
    assert next_limit(64, lag=0.0, running=64, waiting=1, ceiling=256) == 72
    assert next_limit(4, lag=0.0, running=4, waiting=1, ceiling=256) == 5
    assert next_limit(64, lag=0.0, running=64, waiting=0, ceiling=256) == 64  # nobody waits
    assert next_limit(64, lag=0.0, running=20, waiting=3, ceiling=256) == 64  # slots are free
    assert next_limit(250, lag=0.0, running=250, waiting=9, ceiling=256) == 256  # the ceiling holds
    # Between half the target and the target: left as it is.
    assert next_limit(64, lag=TARGET_LAG * 0.75, running=64, waiting=9, ceiling=256) == 64


def test_one_late_look_moves_the_bound_little_and_lateness_that_lasts_shrinks_it() -> None:
    def bound_after(looks: list[float], limit: int = 64) -> int:
        lag = None
        for look in looks:
            lag = smoothed_lag(lag, look)
            limit = next_limit(limit, lag=lag, running=64, waiting=100, ceiling=256)
        return limit

    on_time = [0.0] * 20
    collection = [0.06]  # one look 60 ms late: a garbage collection
    assert bound_after(on_time + collection + on_time) >= 64  # not shrunk; grown back if at all
    assert bound_after(on_time + [TARGET_LAG * 3] * 10) == 48  # late look after look: shrunk
    assert bound_after(on_time) > 64  # on time with runs waiting: grown


def test_a_ceiling_below_the_floor_is_the_bound() -> None:
    assert next_limit(1, lag=1.0, running=1, waiting=5, ceiling=1) == 1
    assert next_limit(2, lag=0.0, running=2, waiting=5, ceiling=2) == 2


async def test_slots_admit_in_arrival_order_and_a_cancelled_waiter_gives_its_turn_away() -> None:
    slots = RunSlots(1)
    order: list[str] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def run(name: str, hold: bool = False) -> None:
        async with slots.slot():
            order.append(name)
            if hold:
                first_in.set()
                await release.wait()

    first = asyncio.create_task(run("a", hold=True))
    await first_in.wait()
    later = [asyncio.create_task(run(name)) for name in "bcd"]
    while slots.waiting < 3:
        await asyncio.sleep(0)
    later[1].cancel()  # "c" leaves the queue before its turn
    release.set()
    await asyncio.gather(first, later[0], later[2])
    assert order == ["a", "b", "d"]
    assert (slots.running, slots.waiting) == (0, 0)
    await slots.close()


# -- the lanes under a bound: end to end ----------------------------------------------------------


async def test_no_more_runs_execute_at_once_than_the_bound(open_service, fake_model: FakeOpenAI) -> None:
    fake_model.script = lambda req: Reply(text=f"echo: {last_user_text(req)}", delay=0.05)
    service = await open_service(concurrent_runs=2)
    handles = [await post(service, f"question {i}", channel=f"console:local:c{i}") for i in range(6)]
    results = [await h.result() for h in handles]
    assert all(isinstance(r, RunCompleted) for r in results)
    runs = [await service.store.get_run(h.run_id) for h in handles]
    spans = [(r.started_at, r.completed_at) for r in runs]
    assert all(start is not None and end is not None for start, end in spans)
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)  # type: ignore[operator]
    assert most == 2, spans  # unbounded, all six would overlap: each model answer takes 50 ms


async def test_a_run_waiting_for_approval_holds_no_slot(open_service, fake_model: FakeOpenAI) -> None:
    def script(req: dict[str, Any]) -> Reply:
        if "deploy" in last_user_text(req) and not tool_results(req):
            return Reply(tool_calls=(ToolCall("deploy", {"service": "billing"}),))
        return Reply(text=f"echo: {last_user_text(req)}")

    fake_model.script = script
    service = await open_service(concurrent_runs=1)
    paused = await post(service, "deploy billing", channel="console:local:ops")
    async for event in paused.events():
        if isinstance(event, ApprovalRequired):
            break
    other = await post(service, "hello", channel="console:local:general")
    result = await asyncio.wait_for(other.result(), timeout=30)
    assert isinstance(result, RunCompleted)
    assert result.text == "echo: alice: hello"
