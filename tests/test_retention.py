"""Retention (THREADLINE_RETENTION_DAYS): old conversation data goes, and only that.

The conversations are real runs against the scripted model; "old" is made by moving rows' times
back 40 days, as if they had been written then.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlite_utils import Database

from core.events import ApprovalRequired
from core.knowledge.base import Upload
from core.models import conversation_key
from core.service import Threadline
from core.store.retention import RetentionCounts
from tests.conftest import ServiceFactory
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, last_user_text, tool_results
from tests.helpers import CHANNEL, StoreDatabase, ask, collect, post

OTHER = "console:local:other"
VECTOR_STORE = "api:owner1:vs_kept"
DAYS = 40 * 86400.0


def script(req: dict[str, Any]) -> Reply:
    if results := tool_results(req):
        return Reply(text=f"Done: {results[0]['content']}")
    question = last_user_text(req)
    if "ticket" in question:
        return Reply(tool_calls=(ToolCall("lookup_ticket", {"ticket_id": 7}),))
    if "deploy" in question:
        return Reply(tool_calls=(ToolCall("deploy", {"service": "billing"}),))
    return Reply(text=f"echo: {question}")


async def age_everything(service: Threadline) -> None:
    """Every row written so far becomes 40 days older."""

    def age(db: Database) -> None:
        for table in ("threads", "messages", "runs", "run_steps", "approvals", "files"):
            db.execute(f"UPDATE {table} SET created_at = created_at - ?", [DAYS])

    await service.store.call(age)


async def count(service: Threadline, sql: str, *params: Any) -> int:
    return int(await service.store.call(lambda db: db.execute(sql, list(params)).fetchone()[0]))


async def test_retention_deletes_old_data_and_keeps_what_it_must(
    open_service: ServiceFactory, fake_model: FakeOpenAI, caplog: pytest.LogCaptureFixture, database: StoreDatabase
) -> None:
    fake_model.script = script
    service = await open_service(retention_days=30.0, retention_keep_last=3)

    # An old conversation with a tool call and a decided approval, then /reset: a closed thread.
    await ask(service, "hello there")
    await ask(service, "check ticket 7")
    handle = await post(service, "deploy it")
    approval = next(e for e in await _until_approval(handle))
    await service.decide(approval.approval_id, approve=False, decided_by="U_BOB")
    await collect(handle)
    closed = await service.store.current_thread(CHANNEL)
    closed_runs = [r.id for r in await service.store.thread_runs(closed)]
    await service.reset(CHANNEL)
    # The current thread: three old turns...
    for text in ("first old", "second old", "third old"):
        await ask(service, text)
    # ...another channel's closed thread whose run still waits for approval...
    paused = await post(service, "deploy now", channel=OTHER)
    await _until_approval(paused)
    paused_thread = await service.store.current_thread(OTHER)
    await service.reset(OTHER)
    # ...an old file in the channel, and an old file of an API vector store.
    old_file = Upload("zanzibar.txt", b"The zanzibar protocol rotates keys weekly.")
    assert (await service.knowledge.add(CHANNEL, old_file)).file.status == "completed"
    assert (await service.knowledge.add(VECTOR_STORE, Upload("api.txt", b"Quokka notes."))).file.status == "completed"
    await age_everything(service)
    # Recent: one more turn and one more file.
    await ask(service, "fresh question")
    await service.knowledge.add(CHANNEL, Upload("recent.txt", b"Recent notes about otters."))

    current = await service.store.current_thread(CHANNEL)
    before = await service.store.thread_messages(current)
    expected_messages = await count(service, "SELECT count(*) FROM messages WHERE thread_id = ?", closed) + 4
    expected_steps = await count(
        service, f"SELECT count(*) FROM run_steps WHERE run_id IN ({','.join('?' * len(closed_runs))})", *closed_runs
    )

    with caplog.at_level(logging.INFO, logger="core.retention"):
        counts = await service.retention.run_once()

    # The closed thread went with its runs, their steps and the approval.
    assert await count(service, "SELECT count(*) FROM threads WHERE id = ?", closed) == 0
    assert await count(service, "SELECT count(*) FROM runs WHERE thread_id = ?", closed) == 0
    # The current thread lost its two oldest turns; its last 3 messages' turns (one old, one new) stay.
    after = await service.store.thread_messages(current)
    assert [m.text for m in after] == [m.text for m in before[4:]]
    assert [m.text for m in after if m.role == "user"] == ["third old", "fresh question"]
    assert counts == RetentionCounts(
        threads=1, messages=expected_messages, runs=5, run_steps=expected_steps + 2, approvals=1, files=1
    )
    # The paused run's thread, though closed and old, stays whole.
    assert (await service.store.get_run(paused.run_id)).status == "requires_action"
    assert len(await service.store.thread_messages(paused_thread)) == 1
    # Files: the old one is gone, with its chunks and its full-text rows; the others stay.
    assert [f.name for f in await service.knowledge.files(CHANNEL)] == ["recent.txt"]
    assert await service.knowledge.search(CHANNEL, "zanzibar protocol") == []
    full_text = (  # the full-text index holds none of its words: FTS5's table, or PostgreSQL's column (m026)
        "SELECT count(*) FROM chunks WHERE search_vector @@ to_tsquery('english', 'zanzibar')"
        if database.is_postgres
        else "SELECT count(*) FROM chunks_search WHERE chunks_search MATCH 'zanzibar'"
    )
    assert await count(service, full_text) == 0
    assert await count(service, "SELECT count(*) FROM file_contents WHERE data = ?", old_file.data) == 0
    assert [f.name for f in await service.knowledge.files(VECTOR_STORE)] == ["api.txt"]
    # One line with the counts.
    [line] = [r.getMessage() for r in caplog.records if r.name == "core.retention"]
    assert f"deleted 1 threads, {expected_messages} messages, 5 runs" in line
    assert "1 approvals, 1 files older than 30 days" in line

    # A second pass finds nothing more.
    assert (await service.retention.run_once()).total == 0


async def test_without_retention_days_nothing_is_deleted(open_service: ServiceFactory) -> None:
    service = await open_service()
    await ask(service, "keep me")
    await service.reset(CHANNEL)
    await age_everything(service)
    assert not service.retention.enabled
    assert (await service.retention.run_once()).total == 0
    assert await count(service, "SELECT count(*) FROM messages") == 2


async def test_keep_last_zero_keeps_only_recent_turns(open_service: ServiceFactory) -> None:
    service = await open_service(retention_days=30.0, retention_keep_last=0)
    await ask(service, "old")
    await age_everything(service)
    counts = await service.retention.run_once()
    assert (counts.messages, counts.runs, counts.threads) == (2, 1, 0)  # the current thread itself stays
    assert await service.store.thread_messages(await service.store.current_thread(CHANNEL)) == []
    await ask(service, "new")  # and works as before
    assert [m.text for m in await service.store.thread_messages(await service.store.current_thread(CHANNEL))] == [
        "new",
        "echo: alice: new",
    ]


async def _until_approval(handle: Any) -> list[ApprovalRequired]:
    async for event in handle.events():
        if isinstance(event, ApprovalRequired):
            return [event]
    raise AssertionError("the run ended without asking for approval")


SUMMARY_MARK = "You keep the running summary"


async def test_retention_deletes_a_summary_with_the_last_message_it_covers(
    open_service: ServiceFactory, fake_model: FakeOpenAI
) -> None:
    """Deleting every message a summary covers deletes the summary too (all it says is older than the
    cutoff), and the next question is sent on its own."""
    service = await open_service(retention_days=30.0, retention_keep_last=0)
    thread = await service.store.current_thread(CHANNEL)
    history = [
        ("user" if n % 2 == 0 else "assistant", f"message number {n} about the quarterly plan", 20) for n in range(400)
    ]
    rows = [(role, text, {"role": role, "content": text}, tokens) for role, text, tokens in history]
    await service.store.import_messages(thread, CHANNEL, rows)

    def summarising(req: dict[str, Any]) -> Reply:
        if req["messages"][0]["content"].startswith(SUMMARY_MARK):
            return Reply(text="SUMMARY: the quarterly plan was agreed")
        return Reply(text=f"echo: {last_user_text(req)}")

    fake_model.script = summarising
    await ask(service, "what did we decide?")
    summary, until = await service.store.thread_summary(thread)
    assert summary == "SUMMARY: the quarterly plan was agreed"
    assert until is not None
    await age_everything(service)

    counts = await service.retention.run_once()

    assert counts.messages == 402  # everything: keep_last is 0
    assert await service.store.thread_summary(thread) == (None, None)
    events = await ask(service, "and what is next?")
    assert events[-1].type == "run_completed"
    request = fake_model.chat_requests[-1]["messages"]
    assert summary not in request[0]["content"]
    assert request[-1] == {"role": "user", "content": "alice: and what is next?"}
    assert [m.text for m in await service.store.thread_messages(thread)] == [
        "and what is next?",
        "echo: alice: and what is next?",
    ]


async def test_a_summary_stays_while_some_message_it_covers_is_left(
    open_service: ServiceFactory, fake_model: FakeOpenAI
) -> None:
    """Only the oldest half of what the summary covers is old enough to go: the summary and its mark stay."""
    service = await open_service(retention_days=30.0, retention_keep_last=20)
    thread = await service.store.current_thread(CHANNEL)
    texts = [f"message number {n} about the quarterly plan" for n in range(400)]
    rows = [
        ("user" if n % 2 == 0 else "assistant", t, {"role": "user" if n % 2 == 0 else "assistant", "content": t}, 20)
        for n, t in enumerate(texts)
    ]
    await service.store.import_messages(thread, CHANNEL, rows)

    def summarising(req: dict[str, Any]) -> Reply:
        if req["messages"][0]["content"].startswith(SUMMARY_MARK):
            return Reply(text="SUMMARY")
        return Reply(text="ok")

    fake_model.script = summarising
    await ask(service, "what did we decide?")
    summary, until = await service.store.thread_summary(thread)
    assert summary == "SUMMARY"
    assert until is not None

    def age_oldest(db: Database) -> None:  # the first 50 messages only: the summary covers far more
        db.execute(
            "UPDATE messages SET created_at = created_at - ? WHERE id IN"
            " (SELECT id FROM messages WHERE thread_id = ? ORDER BY turn_id, id LIMIT 50)",
            [DAYS, thread],
        )
        db.execute("UPDATE threads SET created_at = created_at - ? WHERE id = ?", [DAYS, thread])

    await service.store.call(age_oldest)
    counts = await service.retention.run_once()
    assert counts.messages == 50
    assert await service.store.thread_summary(thread) == (summary, until)


async def test_a_conversation_inside_a_channel_goes_whole_and_the_channels_own_keeps_its_last(
    open_service: ServiceFactory,
) -> None:
    """A Slack thread's conversation keeps no last messages: all old, it goes with its record, and a new reply
    begins a new one. The channel's own conversation keeps its last messages, and the record of its assistant."""
    service = await open_service(retention_days=30.0, retention_keep_last=2)
    slack = "slack:T1:C1"
    thread = conversation_key(slack, "1700000000.000100")
    await ask(service, "in the channel", channel=slack)
    await ask(service, "in the thread", channel=thread)
    await age_everything(service)

    counts = await service.retention.run_once()
    assert counts.threads == 1
    assert await service.conversation_state(thread) == (False, False)
    assert await count(service, "SELECT count(*) FROM channels WHERE key = ?", thread) == 0
    assert len(await service.store.thread_messages(await service.store.current_thread(slack))) == 2
    await ask(service, "a later reply", channel=thread)
    assert [m.text for m in await service.store.thread_messages(await service.store.current_thread(thread))] == [
        "a later reply",
        "echo: alice: a later reply",
    ]
