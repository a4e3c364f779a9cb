"""Three replicas of ``python -m bots`` on one PostgreSQL, Slack in HTTP mode behind a load balancer, one killed.

The test is the load balancer: it sends each signed Slack event to the next replica in turn, so the two
questions of a channel reach two different replicas (and one conversation is answered by several). One
replica is killed with SIGKILL while it answers: its runs that had not started a tool are answered again
by the others, from the start and in the thread where they were asked; the one that had started a tool is
closed, and told of once in its thread, in place of its half-written answer. Every question is answered
exactly once or told once; nothing is lost, nothing said twice. Waiting is on the fakes' records and the
database, never on a sleep.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, last_user_text, tool_results
from tests.fakes.slack_server import FakeSlack, Posted, app_mention, event_callback, signed_headers
from tests.helpers import StoreDatabase
from tests.test_entry_points import clean_env
from tests.test_one_process import Bots, free_port

SECRET = "replicas-signing-secret"
ALICE = "U_ALICE"
CHANNELS = [f"C_TEAM{n}" for n in range(6)]
REPLICAS = 3
DOOMED = 0  # the replica that is killed
HALF = "I was about to say that "


def question_text(channel: str, n: int) -> str:
    return f"question {n} in {channel}"


def replica_env(
    tmp_path: Path,
    database: StoreDatabase,
    model: FakeOpenAI,
    slack: FakeSlack,
    assistants: Path,
    **slack_mode: str,
) -> dict[str, str]:
    """The environment of one replica: the shared database, the scripted model, the fake Slack, and the
    variables of its Slack mode (HTTP: the signing secret and a port; Socket Mode: the app token)."""
    return clean_env(
        tmp_path,
        OPENAI_BASE_URL=model.base_url,
        OPENAI_API_KEY="sk-test-not-a-real-key",
        THREADLINE_ASSISTANTS=str(assistants),
        SLACK_BOT_TOKEN=slack.bot_token,
        SLACK_API_URL=slack.api_url,
        **slack_mode,
        **database.env(),
    )


async def test_three_replicas_one_killed_mid_run_answer_every_question_exactly_once_or_tell_once(
    tmp_path: Path, postgres_url: str, team_assistants: Path
) -> None:
    database = StoreDatabase(tmp_path / "cache" / "threadline.db", postgres_url)
    # Which replica each question is sent to: a channel's two to two replicas in turn.
    routed: dict[str, int] = {}
    events: list[tuple[str, str, str]] = []  # (channel, ts, text), in the order sent
    for n in range(2):
        for index, channel in enumerate(CHANNELS):
            text = question_text(channel, n)
            routed[text] = (index + n) % REPLICAS
            events.append((channel, f"17000000{index}{n}.000100", text))
    doomed = [text for text, replica in routed.items() if replica == DOOMED]
    # What can be answered before the kill: the others' questions not waiting behind a doomed one in their channel.
    behind = {question_text(c, 1) for c in CHANNELS if question_text(c, 0) in doomed}
    answered = {text for text in routed if text not in doomed and text not in behind}
    with_tool = doomed[0]  # the killed replica had started a tool for this one: it must not run twice
    asked: Counter[str] = Counter()
    stalled: set[str] = set()

    def script(request: dict[str, Any]) -> Reply:
        text = last_user_text(request).split(": ", 1)[-1]
        if tool_results(request):  # the tool has run: the doomed replica is killed before it can answer
            stalled.add(text)
            return Reply(text=HALF, chunk_delay=0.001, stall=True)
        asked[text] += 1
        if routed.get(text) == DOOMED and asked[text] == 1:  # the doomed replica's first try never ends
            if text == with_tool:
                return Reply(tool_calls=(ToolCall("lookup_ticket", {"ticket_id": 7}),))
            stalled.add(text)
            return Reply(text=HALF, chunk_delay=0.001, stall=True)
        return Reply(text=f"Answer to: {text}", chunk_delay=0.001)

    async with FakeOpenAI(script) as model, FakeSlack(members={c: [ALICE] for c in CHANNELS}) as slack:
        ports = [free_port() for _ in range(REPLICAS)]
        replicas: list[Bots] = []
        try:
            for port in ports:
                env = replica_env(
                    tmp_path, database, model, slack, team_assistants,
                    SLACK_SIGNING_SECRET=SECRET, PORT=str(port), THREADLINE_HTTP_HOST="127.0.0.1",
                    THREADLINE_LEASE_SECONDS="3",
                )  # fmt: skip
                replicas.append(await Bots.start(env, tmp_path))
            for replica in replicas:
                await replica.wait_line("serving Slack (HTTP mode)")

            async with aiohttp.ClientSession() as http:
                for number, (channel, ts, text) in enumerate(events):
                    mention = app_mention(channel, ALICE, f"<@U_BOT> {text}", ts)
                    body = json.dumps(event_callback(mention, f"Ev{number}")).encode()
                    url = f"http://127.0.0.1:{ports[routed[text]]}/slack/events"
                    async with http.post(url, data=body, headers=signed_headers(SECRET, body)) as sent:
                        assert sent.status == 200

            try:
                await slack.wait_until(
                    lambda: stalled == set(doomed) and all(_answers(slack, events, t) for t in answered),
                    timeout=60,
                    what="the others' questions answered and the doomed replica's all begun",
                )
            except TimeoutError as exc:  # what each thread holds says why
                shown = {t: [(m.text, m.streaming) for m in _thread(slack, events, t)] for t in routed}
                runs = database.rows("SELECT status, origin, owner, reply_ref FROM runs ORDER BY created_at")
                logs = "\n".join(r.log[-3000:] for r in replicas)
                raise AssertionError(
                    f"{exc}\nstalled: {stalled}\nthreads: {shown}\nasked: {dict(asked)}\nruns: {runs}\nlogs:\n{logs}"
                ) from None
            await _wait_until_shown(database, doomed)
            replicas[DOOMED].process.send_signal(signal.SIGKILL)
            await replicas[DOOMED].process.wait()

            def settled() -> bool:
                told = _told(slack, events, with_tool)
                return all(_answers(slack, events, t) for t in routed if t != with_tool) and len(told) >= 1

            try:
                await slack.wait_until(settled, timeout=60, what="every question answered or told, after the kill")
            except TimeoutError as exc:  # what each thread holds says why
                shown = {t: [(m.text, m.streaming) for m in _thread(slack, events, t)] for t in routed}
                logs = "\n".join(r.log[-3000:] for r in replicas[1:])
                raise AssertionError(f"{exc}\nthreads: {shown}\nasked: {dict(asked)}\nlogs:\n{logs}") from None
            for replica in replicas[1:]:
                assert await replica.stop() == 0  # a clean stop, with nothing left running
        finally:
            for replica in replicas:
                await replica.kill()

    for channel, ts, text in events:
        shown = _answers(slack, events, text)
        if text == with_tool:
            assert shown == [], f"{text!r} was answered though its tool may have run: {shown}"
            assert len(_told(slack, events, text)) == 1, slack.thread(channel, ts)
        else:
            assert shown == [f"Answer to: {text}"], f"{text!r}: {shown}"
    left_streaming = [t for t in routed if any(m.streaming for m in _thread(slack, events, t))]
    assert left_streaming == []  # every half-written answer of the killed replica was closed by the others
    assert [m for m in slack.messages.values() if m.thread_ts is None] == []  # nothing at a channel's top level
    for text in routed:
        assert asked[text] == (2 if text in doomed and text != with_tool else 1), (text, asked[text])
    statuses = Counter(status for (status,) in database.rows("SELECT status FROM runs"))
    assert statuses == {"completed": len(routed) - 1, "failed": 1}


async def test_replicas_in_socket_mode_each_answer_what_reaches_their_connection_and_a_redelivery_once(
    tmp_path: Path, postgres_url: str, team_assistants: Path
) -> None:
    """Two replicas in Socket Mode: each holds a connection of the app's, Slack deals envelopes over them, and
    redelivers an event whose ack came late on another connection: every mention is answered once."""
    database = StoreDatabase(tmp_path / "cache" / "threadline.db", postgres_url)
    asked: Counter[str] = Counter()

    def script(request: dict[str, Any]) -> Reply:
        text = last_user_text(request).split(": ", 1)[-1]
        asked[text] += 1
        return Reply(text=f"Answer to: {text}", chunk_delay=0.001)

    async with FakeOpenAI(script) as model, FakeSlack(members={c: [ALICE] for c in CHANNELS}) as slack:
        replicas: list[Bots] = []
        try:
            for count in (1, 2):  # one at a time: the fake numbers connections in the order they open
                env = replica_env(tmp_path, database, model, slack, team_assistants, SLACK_APP_TOKEN=slack.app_token)
                replicas.append(await Bots.start(env, tmp_path))
                await replicas[-1].wait_line("serving Slack (Socket Mode)")
                await slack.wait_connected(count)
            events = [(c, f"17100000{i}0.000100", question_text(c, 0)) for i, c in enumerate(CHANNELS)]
            for number, (channel, ts, text) in enumerate(events):
                event = event_callback(app_mention(channel, ALICE, f"<@U_BOT> {text}", ts), f"EvS{number}")
                await slack.wait_for_ack(await slack.socket_send("events_api", event, connection=number % 2))
                if number == 0:  # its ack "came late": Slack sends it again, to the other connection
                    again = await slack.socket_send(
                        "events_api", event, connection=1, retry_attempt=1, retry_reason="timeout"
                    )
                    await slack.wait_for_ack(again)
            await slack.wait_until(
                lambda: all(_answers(slack, events, t) for _, _, t in events), timeout=60, what="every answer"
            )
            for replica in replicas:
                assert await replica.stop() == 0
        finally:
            for replica in replicas:
                await replica.kill()

    for _, _, text in events:
        assert _answers(slack, events, text) == [f"Answer to: {text}"]
        assert asked[text] == 1
    origins = {origin for (origin,) in database.rows("SELECT origin FROM runs")}
    assert len(origins) == 2  # both replicas answered
    assert all("Traceback" not in replica.log for replica in replicas)


def _thread(slack: FakeSlack, events: list[tuple[str, str, str]], text: str) -> list[Posted]:
    [(channel, ts)] = [(c, t) for c, t, q in events if q == text]
    return slack.thread(channel, ts)


def _answers(slack: FakeSlack, events: list[tuple[str, str, str]], text: str) -> list[str]:
    """The bot's finished answers in the question's thread (not half-written ones, not notes)."""
    return [m.text for m in _thread(slack, events, text) if m.text.startswith("Answer to:") and not m.streaming]


def _told(slack: FakeSlack, events: list[tuple[str, str, str]], text: str) -> list[str]:
    """The notes that a restart cut the question's answer off after a tool had started, in its thread."""
    return [m.text for m in _thread(slack, events, text) if "started using a tool" in m.text]


async def _wait_until_shown(database: StoreDatabase, questions: list[str]) -> None:
    """Until every one of the questions' runs keeps the Slack message its answer streams into (a crash before
    that leaves a message nobody knows of: a window of one store call, not what this test is about)."""
    sql = (
        "SELECT m.text FROM runs r JOIN messages m ON m.id = r.trigger_message_id"
        " WHERE r.status = 'in_progress' AND r.reply_ref IS NOT NULL"
    )
    async with asyncio.timeout(30):
        while not set(questions) <= {text for (text,) in await asyncio.to_thread(database.rows, sql)}:
            await asyncio.sleep(0.05)  # another process writes it: nothing here to wait on


pytestmark = pytest.mark.timeout(240)
