"""Several processes on one database: leases, one active run per thread, takeover, notices.

Each ``Threadline`` opened here is a process as the database sees it (its own process id and
lease); the model is held on events so that each test decides when an answer may go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from core.events import RunCompleted, RunFailed
from core.models import Incoming, Run
from core.service import Threadline
from core.settings import Settings
from core.store import Store
from core.store.processes import ProcessStore
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, last_user_text, tool_results
from tests.helpers import ALICE, CHANNEL, StoreDatabase, post

OTHER_CHANNEL = "console:local:other"

SLACK_CHANNEL = "slack:T1:C1"


class HeldModel:
    """A script whose answers wait until the test releases them; ``asked`` counts requests per question."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.asked: dict[str, int] = {}
        self._arrived = asyncio.Condition()

    async def __call__(self, request: dict[str, Any]) -> Reply:
        question = last_user_text(request).split(": ", 1)[-1]
        async with self._arrived:
            self.asked[question] = self.asked.get(question, 0) + 1
            self._arrived.notify_all()
        await self.release.wait()
        return Reply(text=f"answer to {question}")

    async def wait_asked(self, question: str, times: int = 1) -> None:
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: self.asked.get(question, 0) >= times), timeout=10)


class Told(list[tuple[str, str]]):
    """A process's ``notify``: remembers what each channel was told, in order."""

    async def __call__(self, channel: str, text: str) -> None:
        self.append((channel, text))


async def begin_stop(service: Threadline) -> asyncio.Task[None]:
    """Start a graceful stop and return once it has begun (the service takes no new work)."""
    closing = asyncio.create_task(service.close())

    async def begun() -> bool:
        return service._closing

    await until(begun, "the stop begun")
    return closing


async def until(condition: Any, what: str, timeout: float = 10.0) -> None:
    """Wait for ``condition()`` (an async callable) to be true, looking again as the loop turns."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def queued_question(store: Store, text: str, msg_id: str, *, channel: str = CHANNEL, tokens: int = 1) -> Run:
    """alice's question stored by ``store``'s process, its run queued (the process may then be gone)."""
    posted = await store.post_user_message(
        channel=channel, author_id="U1", author_name="alice", text=text,
        item={"role": "user", "content": f"alice: {text}"}, tokens=tokens, platform_msg_id=msg_id,
    )  # fmt: skip
    assert posted is not None
    return posted[1]


async def cut_off_after_a_tool(database: StoreDatabase, msg_id: str) -> Run:
    """A Slack run that a process now gone was answering, and that had started a tool."""
    store = await database.open()
    try:
        posted = await store.post_user_message(
            channel=SLACK_CHANNEL, author_id="U1", author_name="alice", text="deploy",
            item={"role": "user", "content": "deploy"}, tokens=1, platform_msg_id=msg_id,
        )  # fmt: skip
        assert posted is not None
        run = await store.update_run(posted[1].id, status="in_progress")
        await store.add_step(run.id, "tool_calls", tool_name="deploy", call_id="c1", arguments="{}")
        return run
    finally:
        await store.close()


def quick(settings: Settings) -> Settings:
    """Short leases, so that what waits on a lease happens within a test."""
    return replace(settings, lease_seconds=0.6)


async def test_a_second_process_leaves_a_live_processs_run_alone(
    open_service, settings: Settings, fake_model: FakeOpenAI
) -> None:
    """Starting another process on the database (the Procfile's) must not fail a run the first is answering."""
    model = HeldModel()
    fake_model.script = model
    told = Told()

    first = await open_service()
    handle = await post(first, "slow question")
    await model.wait_asked("slow question")
    second = await open_service(notify=told)
    assert (await second.store.get_run(handle.run_id)).status == "in_progress"
    model.release.set()
    result = await handle.result()
    assert isinstance(result, RunCompleted)
    assert result.text == "answer to slow question"
    await second.wait_idle()
    assert (await second.store.get_run(handle.run_id)).status == "completed"
    assert told == []
    assert model.asked == {"slow question": 1}


async def test_one_run_per_thread_across_processes_in_the_order_asked(
    open_service, settings: Settings, fake_model: FakeOpenAI
) -> None:
    model = HeldModel()
    fake_model.script = model
    first = await open_service()
    second = await open_service()
    one = await post(first, "one")
    await model.wait_asked("one")
    two = await post(second, "two")  # the same channel and thread, through another process
    three = await post(first, "three")
    model.release.set()
    results = [await h.result() for h in (one, two, three)]
    assert [r.text for r in results if isinstance(r, RunCompleted)] == [
        "answer to one",
        "answer to two",
        "answer to three",
    ]
    runs = [await first.store.get_run(h.run_id) for h in (one, two, three)]
    for earlier, later in itertools.pairwise(runs):
        assert earlier.completed_at is not None
        assert later.started_at is not None
        assert later.started_at >= earlier.completed_at
    assert model.asked == {"one": 1, "two": 1, "three": 1}


async def test_a_run_is_cancelled_through_another_process(
    open_service, settings: Settings, fake_model: FakeOpenAI
) -> None:
    model = HeldModel()
    fake_model.script = model
    first = await open_service(**vars_of(quick(settings)))
    second = await open_service(**vars_of(quick(settings)))
    handle = await post(first, "long job")
    await model.wait_asked("long job")
    assert await second.cancel(CHANNEL) == 1
    result = await asyncio.wait_for(handle.result(), timeout=10)
    assert isinstance(result, RunFailed)
    assert result.status == "cancelled"
    assert (await first.store.get_run(handle.run_id)).status == "cancelled"


async def test_a_run_cancelled_through_another_process_never_completes_though_its_answer_comes_first(
    open_service, settings: Settings, fake_model: FakeOpenAI
) -> None:
    """The process running it learns of the cancel at its next lease tick; an answer finished before that
    is not recorded: the run ends cancelled, with no message (the API answered ``cancelling``)."""
    model = HeldModel()
    fake_model.script = model
    first = await open_service(**vars_of(quick(settings)))
    second = await open_service(**vars_of(quick(settings)))
    handle = await post(first, "quick job")
    await model.wait_asked("quick job")
    assert (await second.cancel_run(handle.run_id)).status == "cancelling"
    model.release.set()  # the answer arrives before the first process's next tick
    result = await asyncio.wait_for(handle.result(), timeout=10)
    assert isinstance(result, RunFailed)
    assert result.status == "cancelled"
    run = await first.store.get_run(handle.run_id)
    assert run.status == "cancelled"
    messages = await first.store.thread_messages(run.thread_id)
    assert [m.role for m in messages] == ["user"]


async def test_the_runs_of_a_process_elsewhere_are_taken_over_only_when_its_lease_ends(
    open_service, settings: Settings, fake_model: FakeOpenAI, tmp_path: Path, database: StoreDatabase
) -> None:
    """A process on another machine queued a question and stopped renewing its lease."""
    fake_model.script = lambda request: Reply(text=f"answer to {last_user_text(request).split(': ', 1)[-1]}")
    store = await database.open()
    gone = ProcessStore(store, platforms=None, lease_seconds=0.6)
    await gone.register()
    await store.call(lambda db: db.execute("UPDATE processes SET host = 'another-machine', pid = 1"))
    run_id = (await queued_question(store, "orphan", "m1", tokens=3)).id
    told = Told()

    survivor = await open_service(notify=told, **vars_of(quick(settings)))
    assert (await survivor.store.get_run(run_id)).status == "queued"  # its process may still be alive
    await until(lambda: _status_is(survivor, run_id, "completed"), "the orphaned run answered")
    await until(lambda: _told(told, 1), "the answer posted to its channel")
    assert told == [(CHANNEL, "answer to orphan")]
    await store.close()


async def test_notices_wait_for_a_process_that_serves_their_platform_and_are_delivered_once(
    open_service, settings: Settings, fake_model: FakeOpenAI, database: StoreDatabase
) -> None:
    """A Slack run cut off after a tool started, found by a process that serves only the console."""
    run = await cut_off_after_a_tool(database, "1700.1")

    console_told: list[tuple[str, str]] = []
    slack_told: list[tuple[str, str]] = []

    async def console_notify(channel: str, text: str) -> None:
        console_told.append((channel, text))

    async def slack_notify(channel: str, text: str) -> None:
        slack_told.append((channel, text))

    console = await open_service(notify=console_notify, platforms={"console"})
    await console.wait_idle()
    assert (await console.store.get_run(run.id)).status == "in_progress"  # not its platform: not touched
    slack = await open_service(notify=slack_notify, platforms={"slack"})
    await slack.wait_idle()
    assert (await slack.store.get_run(run.id)).status == "failed"
    assert len(slack_told) == 1
    assert slack_told[0][0] == SLACK_CHANNEL
    assert "restarted" in slack_told[0][1]
    another = await open_service(notify=slack_notify, platforms={"slack"})
    await another.wait_idle()
    assert len(slack_told) == 1
    assert console_told == []
    assert await another.processes.pending_notices() == 0


async def test_a_notice_that_cannot_be_delivered_yet_is_delivered_later(
    open_service, settings: Settings, fake_model: FakeOpenAI, database: StoreDatabase
) -> None:
    """At start the platform adapter may not exist yet (Slack, Discord): the notice waits, then arrives once."""
    await cut_off_after_a_tool(database, "1700.2")

    adapters: list[Any] = []  # filled once "the adapter" exists, as in bots/slack/app.py
    told: list[tuple[str, str]] = []

    async def notify(channel: str, text: str) -> None:
        if not adapters:
            raise RuntimeError("the Slack adapter is not connected yet")
        told.append((channel, text))

    service = await open_service(notify=notify, platforms={"slack"}, **vars_of(quick(settings)))
    assert told == []
    adapters.append(object())
    await until(lambda: _told(told, 1), "the notice delivered")
    assert "restarted" in told[0][1]
    assert await service.processes.pending_notices() == 0


async def test_a_question_redelivered_after_a_restart_is_answered_once(
    open_service, settings: Settings, fake_model: FakeOpenAI, database: StoreDatabase
) -> None:
    """Slack redelivers an event a process that died had stored: the new process answers it once."""
    fake_model.script = lambda request: Reply(text="the answer")
    store = await database.open()
    posted = await store.post_user_message(
        channel=SLACK_CHANNEL, author_id="U1", author_name="alice", text="hi", item={"role": "user", "content": "hi"},
        tokens=1, platform_msg_id="1700.3",
    )  # fmt: skip
    assert posted is not None
    await store.close()
    told = Told()

    service = await open_service(notify=told, platforms={"slack"})
    assert await service.post(Incoming(SLACK_CHANNEL, ALICE, "hi", platform_msg_id="1700.3")) is None
    await service.wait_idle()
    assert told == [(SLACK_CHANNEL, "the answer")]
    assert len(fake_model.chat_requests) == 1


async def test_processes_starting_together_migrate_one_database_once(database: StoreDatabase) -> None:
    stores = await asyncio.gather(*(database.open() for _ in range(3)))
    try:
        assert len({s.process_id for s in stores}) == 3
        assert await stores[0].applied_migrations() == await stores[2].applied_migrations()
    finally:
        for store in stores:
            await store.close()


async def test_a_process_that_exited_on_this_machine_is_gone_at_once(database: StoreDatabase) -> None:
    """No need to wait for its lease: its pid is gone (a restart answers at once)."""
    store = await database.open()
    try:
        proc = await asyncio.create_subprocess_exec("true")
        await proc.wait()
        await store.call(
            lambda db: db.execute(
                "INSERT INTO processes (id, pid, host, started, platforms, created_at, lease_until)"
                " VALUES ('proc_exited', ?, ?, '', '*', 0, ?), ('proc_alive', ?, ?, '', '*', 0, ?),"
                " ('proc_slow', ?, ?, '', '*', 0, 0)",
                [
                    proc.pid,
                    store.host,
                    time.time() + 60,
                    os.getpid(),
                    store.host,
                    time.time() + 60,
                    os.getpid(),
                    store.host,
                ],
            )
        )
        from core.store.leases import live_processes

        # proc_slow's lease ran out (its event loop too busy to renew it), but its pid runs: not gone.
        assert await store.call(lambda db: live_processes(db, store.host)) == {"proc_alive", "proc_slow"}
    finally:
        await store.close()


def vars_of(settings: Settings) -> dict[str, Any]:
    return {"lease_seconds": settings.lease_seconds}


async def _status_is(service: Threadline, run_id: str, status: str) -> bool:
    return (await service.store.get_run(run_id)).status == status


async def _told(told: list[Any], count: int) -> bool:
    return len(told) >= count


async def test_a_taken_over_run_says_where_its_earlier_answer_began(
    open_service, settings: Settings, fake_model: FakeOpenAI
) -> None:
    """The adapter keeps the message it streams into with the run; the process taking over can replace it."""
    model = HeldModel()
    fake_model.script = model
    first = await open_service()
    handle = await post(first, "long answer")
    await model.wait_asked("long answer")
    await first.showing(handle.run_id, "1700000000.000200")
    second = await open_service()
    assert await second.earlier_reply(handle.run_id) == "1700000000.000200"
    model.release.set()
    assert isinstance(await handle.result(), RunCompleted)


async def test_a_question_left_behind_that_a_lane_finds_first_is_still_shown(
    open_service, settings: Settings, fake_model: FakeOpenAI, database: StoreDatabase
) -> None:
    """A gone process's queued question in a thread this process is about to answer in: its lane gets there
    before the recovery pass does, and the answer must still reach the channel."""
    fake_model.script = lambda request: Reply(text=f"answer to {last_user_text(request).split(': ', 1)[-1]}")
    told = Told()

    service = await open_service(notify=told)  # its recovery pass at start has run: nothing was there
    store = await database.open()  # a process that stores a question and is gone
    try:
        left = await queued_question(store, "left behind", "m-left", tokens=3)
    finally:
        await store.close()
    mine = await post(service, "mine")
    assert isinstance(await mine.result(), RunCompleted)
    await service.wait_idle()
    assert (await service.store.get_run(left.id)).status == "completed"
    assert told == [(CHANNEL, "answer to left behind")]


# -- a graceful stop (SIGTERM, close()) hands its work over instead of failing it ----------------------


def graceful(settings: Settings, grace: float) -> dict[str, Any]:
    """A process that stops gracefully with ``grace`` seconds for its runs in progress, on short leases."""
    return {"shutdown_grace_seconds": grace, **vars_of(quick(settings))}


async def _status_and_owner(database: StoreDatabase, run_ids: list[str]) -> list[tuple[str, str | None]]:
    """The runs' status and owner as the database has them now, seen by no process in particular."""

    def query(conn: Any) -> list[tuple[str, str | None]]:
        marks = ",".join("?" * len(run_ids))
        rows = conn.execute(f"SELECT id, status, owner FROM runs WHERE id IN ({marks})", run_ids).fetchall()
        found = {row[0]: (row[1], row[2]) for row in rows}
        return [found[run_id] for run_id in run_ids]

    store = await database.open()
    try:
        return await store.call(query)
    finally:
        await store.close()


async def test_a_graceful_stop_hands_a_run_in_progress_and_a_queued_one_to_a_live_process(
    open_service, settings: Settings, fake_model: FakeOpenAI
) -> None:
    """A rolling restart: the stopping process's watchers hear that the answer will follow, and the process
    still running answers both questions, each once, the one cut off from the start."""
    model = HeldModel()
    fake_model.script = model
    told = Told()

    stopping = await open_service(**graceful(settings, 0.2))
    live = await open_service(notify=told, **vars_of(quick(settings)))
    one = await post(stopping, "one")
    two = await post(stopping, "two")  # queued behind it, in the same thread
    await model.wait_asked("one")
    await stopping.close()  # "one" is still waiting for the model when the grace runs out
    for handle in (one, two):
        end = await handle.result()
        assert isinstance(end, RunFailed)
        assert end.handed_over
        assert "will follow" in end.message
        assert "ask again" not in end.message
    model.release.set()
    await until(lambda: _told(told, 2), "both answers posted by the live process")
    await live.wait_idle()
    assert told == [(CHANNEL, "answer to one"), (CHANNEL, "answer to two")]
    for handle in (one, two):
        assert (await live.store.get_run(handle.run_id)).status == "completed"
    assert model.asked == {"one": 2, "two": 1}  # the cut-off answer was written again, once
    assert await live.processes.pending_notices() == 0
    another = await open_service(notify=told)
    await another.wait_idle()
    assert len(told) == 2


async def test_a_graceful_stop_of_the_only_process_leaves_its_runs_queued_for_the_next_start(
    open_service, settings: Settings, fake_model: FakeOpenAI, database: StoreDatabase
) -> None:
    model = HeldModel()
    fake_model.script = model
    only = await open_service(**graceful(settings, 0.2))
    one = await post(only, "one")
    two = await post(only, "two")
    await model.wait_asked("one")
    await only.close()
    for handle in (one, two):
        end = await handle.result()
        assert isinstance(end, RunFailed)
        assert end.handed_over
        assert "ask again" not in end.message
    # Left as recovery leaves a crashed process's runs: queued, nobody's; not failed.
    assert await _status_and_owner(database, [one.run_id, two.run_id]) == [("queued", None), ("queued", None)]
    model.release.set()
    told = Told()

    again = await open_service(notify=told)
    await until(lambda: _told(told, 2), "both answers posted at the next start")
    await again.wait_idle()
    assert told == [(CHANNEL, "answer to one"), (CHANNEL, "answer to two")]
    assert model.asked == {"one": 2, "two": 1}


async def test_a_run_past_a_tool_when_the_grace_runs_out_is_failed_and_told_once(
    open_service, settings: Settings, fake_model: FakeOpenAI
) -> None:
    """A tool cannot safely run twice: such a run is closed, and the answer's own place says so, once."""
    model = HeldModel()

    async def script(request: dict[str, Any]) -> Reply:
        if tool_results(request):  # the tool ran; the model is asked to go on, and holds
            return await model(request)
        return Reply(tool_calls=(ToolCall("lookup_ticket", {"ticket_id": 42}),))

    fake_model.script = script
    told = Told()

    stopping = await open_service(notify=told, **graceful(settings, 0.2))
    handle = await post(stopping, "ticket 42?")
    await model.wait_asked("ticket 42?")
    await stopping.close()
    end = await handle.result()
    assert isinstance(end, RunFailed)
    assert (end.status, end.handed_over) == ("failed", False)
    assert "tool" in end.message
    model.release.set()
    later = await open_service(notify=told)  # its recovery at start does not tell the channel again
    await later.wait_idle()
    assert (await later.store.get_run(handle.run_id)).status == "failed"
    assert told == []
    assert await later.processes.pending_notices() == 0
    assert model.asked == {"ticket 42?": 1}


async def test_a_run_that_finishes_within_the_grace_is_completed_by_the_stopping_process(
    open_service, settings: Settings, fake_model: FakeOpenAI
) -> None:
    """The stop takes no new work at once (the question queued behind stays queued), and lets the answer in
    progress end on its own."""
    model = HeldModel()
    fake_model.script = model
    stopping = await open_service(**graceful(settings, 30.0))
    one = await post(stopping, "one")
    two = await post(stopping, "two")
    await model.wait_asked("one")
    closing = await begin_stop(stopping)
    model.release.set()
    async with asyncio.timeout(10):  # not the whole grace: the stop ends when the answer does
        await closing
    first = await one.result()
    assert isinstance(first, RunCompleted)
    assert first.text == "answer to one"
    second = await two.result()
    assert isinstance(second, RunFailed)
    assert second.handed_over
    assert model.asked == {"one": 1}  # "two" was not started by the stopping process
    told = Told()

    again = await open_service(notify=told)
    await until(lambda: _told(told, 1), "the queued question answered at the next start")
    await again.wait_idle()
    assert told == [(CHANNEL, "answer to two")]
    assert (await again.store.get_run(one.run_id)).status == "completed"
    assert model.asked == {"one": 1, "two": 1}


async def test_a_stop_does_not_start_a_run_that_waited_for_a_slot(
    open_service, settings: Settings, fake_model: FakeOpenAI
) -> None:
    """With one run at once (THREADLINE_CONCURRENT_RUNS=1), a question in another channel waits for the slot;
    the stop frees the slot when the answer in progress ends, and the waiting question must not start then."""
    model = HeldModel()
    fake_model.script = model
    stopping = await open_service(**graceful(settings, 30.0), concurrent_runs=1)
    one = await post(stopping, "one")
    await model.wait_asked("one")
    two = await post(stopping, "two", channel=OTHER_CHANNEL)
    await until(lambda: _waiting_for_slot(stopping), "the second question waiting for the slot")
    closing = await begin_stop(stopping)
    model.release.set()
    async with asyncio.timeout(10):
        await closing
    assert isinstance(await one.result(), RunCompleted)
    second = await two.result()
    assert isinstance(second, RunFailed)
    assert second.handed_over
    assert model.asked == {"one": 1}  # "two" was not started when the slot freed
    told = Told()

    again = await open_service(notify=told)
    await until(lambda: _told(told, 1), "the waiting question answered at the next start")
    await again.wait_idle()
    assert told == [(OTHER_CHANNEL, "answer to two")]


async def _waiting_for_slot(service: Threadline) -> bool:
    return service.metrics.registry.get_sample_value("threadline_runs_waiting_for_slot") == 1


async def test_two_processes_claiming_one_thread_at_the_same_moment_start_its_run_once(
    database: StoreDatabase,
) -> None:
    """Both read the thread (no run active, one queued by a process that is gone) before either writes: only a
    claim that no other claim can interleave with keeps the run from starting twice. ``resolve`` is called
    between the claim's reads and its write, and waits there for the other claim to get as far, which only
    happens when claims interleave."""
    import threading

    left, first, second = await database.open(), await database.open(), await database.open()
    try:
        queued = await queued_question(left, "once", "m-once")
        together = threading.Barrier(2)

        def resolve(name: str | None) -> tuple[str, str]:
            # the other claim, if it could read too; when it waits for this one to end (as it should), alone
            with contextlib.suppress(threading.BrokenBarrierError):
                together.wait(timeout=1.0)
            return "team", "fake-model"

        claims = await asyncio.gather(first.claim(queued.thread_id, resolve), second.claim(queued.thread_id, resolve))
        assert sorted(kind for kind, _, _ in claims) == ["idle", "take"]
        assert [run.status for _, run, _ in claims if run is not None] == ["in_progress"]
    finally:
        for store in (left, first, second):
            await store.close()


@pytest.mark.postgresql_only
async def test_claims_in_two_threads_do_not_wait_for_each_other_on_postgresql(database: StoreDatabase) -> None:
    """A claim holds its thread's lock, not the whole database's: while one claim is stopped between its reads
    and its write (in ``resolve``), another process claims a run of another thread. With the database-wide
    write lock that second claim would wait for the first to end, which here is only after it succeeded."""
    import threading

    poster, first, second = await database.open(), await database.open(), await database.open()
    try:
        threads = []
        for channel, text in (("slack:T1:C1", "one"), ("slack:T1:C2", "two")):
            threads.append((await queued_question(poster, text, f"m-{text}", channel=channel)).thread_id)
        inside, other_claimed = threading.Event(), threading.Event()

        def held(name: str | None) -> tuple[str, str]:
            inside.set()
            other_claimed.wait(timeout=30)
            return "team", "fake-model"

        holding = asyncio.ensure_future(first.claim(threads[0], held))
        await asyncio.to_thread(inside.wait, 30)
        kind, run, _ = await second.claim(threads[1], lambda name: ("team", "fake-model"))
        waited_for_the_first = holding.done()
        other_claimed.set()
        assert (await holding)[0] == "take"
        assert (kind, run is not None) == ("take", True)
        assert not waited_for_the_first
    finally:
        for store in (poster, first, second):
            await store.close()
