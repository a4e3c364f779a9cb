"""Runs end to end: the real openai client and openai-agents against a scripted model server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from core.events import RunCompleted, RunFailed, TextDelta, ToolCallFinished, ToolCallStarted
from tests.fakes.openai_server import Error, FakeOpenAI, Hang, Reply, ToolCall, last_user_text, tool_results
from tests.helpers import CHANNEL, StoreDatabase, ask, collect, post
from tests.tool_modules import team_tools


async def test_answer_streams_and_history_is_sent(service, fake_model: FakeOpenAI) -> None:
    first = await ask(service, "hello")
    assert isinstance(first[-1], RunCompleted)
    assert first[-1].text == "echo: alice: hello"
    assert "".join(e.text for e in first if isinstance(e, TextDelta)) == "echo: alice: hello"

    await ask(service, "again")
    messages = fake_model.chat_requests[-1]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1]["content"] == "alice: hello"
    assert messages[2]["content"] == "echo: alice: hello"
    assert messages[0]["content"].startswith("You help the team.")


async def test_usage_and_steps_are_stored(service, fake_model: FakeOpenAI) -> None:
    fake_model.script = lambda req: (
        Reply(text="Ticket is open.", prompt_tokens=30, completion_tokens=5)
        if tool_results(req)
        else Reply(tool_calls=(ToolCall("lookup_ticket", {"ticket_id": 42}),), prompt_tokens=20, completion_tokens=3)
    )
    handle = await post(service, "what about ticket 42?")
    events = await collect(handle)
    assert isinstance(events[-1], RunCompleted)
    run = await service.store.get_run(handle.run_id)
    assert run.status == "completed"
    assert (run.input_tokens, run.output_tokens) == (50, 8)
    steps = await service.store.run_steps(handle.run_id)
    tool_steps = [s for s in steps if s.type == "tool_calls"]
    assert [(s.tool_name, s.status) for s in tool_steps] == [("lookup_ticket", "completed")]
    assert tool_steps[0].arguments == '{"ticket_id": 42}'
    assert "out of toner" in (tool_steps[0].output or "")
    assert tool_steps[0].duration_ms is not None
    assert any(s.type == "message_creation" for s in steps)


async def test_tool_loop_with_a_teams_own_tool_module(service, fake_model: FakeOpenAI) -> None:
    def script(req: dict[str, Any]) -> Reply:
        if results := tool_results(req):
            return Reply(text=f"Found: {results[0]['content']}")
        return Reply(tool_calls=(ToolCall("lookup_ticket", {"ticket_id": 7}),))

    fake_model.script = script
    events = await ask(service, "ticket 7?")
    offered = {t["function"]["name"]: t["function"] for t in fake_model.chat_requests[0]["tools"]}
    assert offered["lookup_ticket"]["parameters"]["properties"]["ticket_id"]["type"] == "integer"
    assert offered["lookup_ticket"]["description"] == "Look up a ticket in the team's tracker."
    started = [e for e in events if isinstance(e, ToolCallStarted)]
    finished = [e for e in events if isinstance(e, ToolCallFinished)]
    assert [e.tool for e in started] == ["lookup_ticket"]
    assert finished[0].output.startswith("Ticket 7:")
    assert isinstance(events[-1], RunCompleted)
    assert events[-1].text == "Found: Ticket 7: printer on floor 3 is out of toner (open)"


async def test_two_tool_calls_in_one_turn_run_concurrently(service, fake_model: FakeOpenAI) -> None:
    fake_model.script = lambda req: (
        Reply(text="both done")
        if tool_results(req)
        else Reply(tool_calls=(ToolCall("slow_step", {"label": "a"}), ToolCall("slow_step", {"label": "b"})))
    )
    events = await ask(service, "do both")
    assert isinstance(events[-1], RunCompleted)
    # Sequential execution would give start a, end a, start b, end b.
    assert team_tools.TIMELINE[:2] == ["start a", "start b"]
    results = tool_results(fake_model.chat_requests[-1])
    assert sorted(r["content"] for r in results) == ["a done", "b done"]


async def test_tool_that_raises_or_times_out_becomes_a_result(service, fake_model: FakeOpenAI) -> None:
    def script(req: dict[str, Any]) -> Reply:
        if results := tool_results(req):
            return Reply(text=" | ".join(r["content"] for r in results))
        return Reply(tool_calls=(ToolCall("broken_tool", {"reason": "maintenance"}), ToolCall("stuck_tool", {})))

    fake_model.script = script
    events = await ask(service, "try the tools")
    assert isinstance(events[-1], RunCompleted)
    broken, stuck = (r["content"] for r in tool_results(fake_model.chat_requests[-1]))
    assert "tracker is down: maintenance" in broken
    assert "timed out" in stuck


async def test_a_call_to_a_tool_that_does_not_exist_is_answered_not_fatal(service, fake_model: FakeOpenAI) -> None:
    """Models make up tool names; the run goes on with an error result the model can read."""

    def script(req: dict[str, Any]) -> Reply:
        if results := tool_results(req):
            return Reply(text="sorry: " + results[0]["content"])
        return Reply(tool_calls=(ToolCall("make_coffee", {"strength": "double"}),))

    fake_model.script = script
    events = await ask(service, "coffee?")
    assert isinstance(events[-1], RunCompleted), events[-1]
    [result] = tool_results(fake_model.chat_requests[-1])
    assert "make_coffee" in result["content"]


async def test_messages_queued_during_a_run_are_answered_in_order(service, fake_model: FakeOpenAI) -> None:
    release = asyncio.Event()

    async def script(req: dict[str, Any]) -> Reply:
        text = last_user_text(req)
        if text.endswith("first"):
            await release.wait()
        return Reply(text=f"answer to {text.split(': ', 1)[1]}")

    fake_model.script = script
    first = await post(service, "first")
    second = await post(service, "second")
    third = await post(service, "third")
    # The later messages are stored at once, while the first run is still waiting on the model.
    stored = await service.store.thread_messages(await service.store.current_thread(CHANNEL))
    assert [m.text for m in stored] == ["first", "second", "third"]
    assert (await service.store.get_run(second.run_id)).status == "queued"
    release.set()
    results = [await h.result() for h in (first, second, third)]
    assert [r.text for r in results if isinstance(r, RunCompleted)] == [
        "answer to first",
        "answer to second",
        "answer to third",
    ]
    # Each answer sits right after its question; the second run did not see the third message.
    second_request = fake_model.chat_requests[1]["messages"]
    assert [m["content"] for m in second_request[1:]] == ["alice: first", "answer to first", "alice: second"]
    stored = await service.store.thread_messages(await service.store.current_thread(CHANNEL))
    assert [m.text for m in stored] == [
        "first",
        "answer to first",
        "second",
        "answer to second",
        "third",
        "answer to third",
    ]


async def test_channels_do_not_share_threads(service, fake_model: FakeOpenAI) -> None:
    await ask(service, "secret plan", channel="slack:T1:C1")
    await ask(service, "hi", channel="slack:T1:C2")
    contents = [m["content"] for m in fake_model.chat_requests[-1]["messages"][1:]]
    assert contents == ["alice: hi"]


async def test_429_and_500_are_retried(service, fake_model: FakeOpenAI) -> None:
    answers = iter([Error(429, "slow down", retry_after_ms=10), Error(500, "boom"), Reply(text="finally")])
    fake_model.script = lambda req: next(answers)
    events = await ask(service, "hello")
    assert isinstance(events[-1], RunCompleted)
    assert events[-1].text == "finally"
    assert len(fake_model.chat_requests) == 3


async def test_persistent_model_errors_fail_with_a_message(service, fake_model: FakeOpenAI) -> None:
    fake_model.script = lambda req: Error(503, "overloaded", retry_after_ms=1)
    handle = await post(service, "hello")
    result = await handle.result()
    assert isinstance(result, RunFailed)
    assert result.status == "failed"
    assert "try again later" in result.message
    assert "503" not in result.message
    run = await service.store.get_run(handle.run_id)
    assert run.status == "failed"
    assert "503" in (run.last_error or "") or "overloaded" in (run.last_error or "")
    assert len(fake_model.chat_requests) == 3  # one try and two retries


async def test_model_timeout_ends_failed_with_a_message(open_service, fake_model: FakeOpenAI) -> None:
    service = await open_service(model_timeout=0.3, model_max_retries=1)
    fake_model.script = lambda req: Hang()
    handle = await post(service, "hello")
    result = await handle.result()
    assert isinstance(result, RunFailed)
    assert result.status == "failed"
    assert "did not answer in time" in result.message
    assert (await service.store.get_run(handle.run_id)).status == "failed"


async def test_run_time_limit_ends_expired(open_service, fake_model: FakeOpenAI) -> None:
    service = await open_service(run_timeout=0.5)
    fake_model.script = lambda req: Reply(tool_calls=(ToolCall("slow_step", {"label": "x"}),))
    handle = await post(service, "loop forever")
    result = await handle.result()
    assert isinstance(result, RunFailed)
    assert result.status == "expired"
    assert (await service.store.get_run(handle.run_id)).status == "expired"


async def test_cancel_stops_the_active_run_and_queued_ones(service, fake_model: FakeOpenAI) -> None:
    fake_model.script = lambda req: Hang()
    first = await post(service, "one")
    second = await post(service, "two")
    while (await service.store.get_run(first.run_id)).status != "in_progress" or not fake_model.chat_requests:
        await asyncio.sleep(0.01)
    assert await service.cancel(CHANNEL) == 2
    for handle in (first, second):
        result = await handle.result()
        assert isinstance(result, RunFailed)
        assert result.status == "cancelled"
        assert (await service.store.get_run(handle.run_id)).status == "cancelled"


async def test_duplicate_platform_message_is_answered_once(service, fake_model: FakeOpenAI) -> None:
    handle = await post(service, "hello", msg_id="1700000000.000100")
    await handle.result()
    from core.models import Incoming
    from tests.helpers import ALICE

    again = await service.post(Incoming(CHANNEL, ALICE, "hello", platform_msg_id="1700000000.000100"))
    assert again is None
    assert len(fake_model.chat_requests) == 1


async def test_without_a_model_endpoint_the_run_explains_what_to_set(open_service, fake_model: FakeOpenAI) -> None:
    service = await open_service(openai_api_key=None, openai_base_url=None)
    result = await (await post(service, "hello")).result()
    assert isinstance(result, RunFailed)
    assert "OPENAI_API_KEY" in result.message
    assert "OPENAI_BASE_URL" in result.message
    assert fake_model.chat_requests == []


async def test_a_message_sent_without_a_model_is_not_replayed_once_one_is_set(
    open_service, fake_model: FakeOpenAI
) -> None:
    unconfigured = await open_service(openai_api_key=None, openai_base_url=None)
    result = await (await post(unconfigured, "hello?")).result()
    assert isinstance(result, RunFailed)
    await unconfigured.close()
    configured = await open_service()
    assert isinstance(await (await post(configured, "second try")).result(), RunCompleted)
    sent = [m["content"] for m in fake_model.chat_requests[-1]["messages"] if m["role"] == "user"]
    assert sent == ["alice: second try"]  # the unanswered first message is not sent along


async def test_an_unexpected_error_fails_only_that_run(service, fake_model: FakeOpenAI, monkeypatch) -> None:
    original = service._context.build
    calls = 0

    async def flaky_build(**kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("disk on fire")
        return await original(**kwargs)

    monkeypatch.setattr(service._context, "build", flaky_build)
    first = await post(service, "one")
    second = await post(service, "two")
    failed = await first.result()
    assert isinstance(failed, RunFailed)
    assert "disk on fire" not in failed.message
    assert "disk on fire" in ((await service.store.get_run(first.run_id)).last_error or "")
    answered = await second.result()
    assert isinstance(answered, RunCompleted)


async def test_a_tool_calls_step_is_recorded_before_the_tool_runs(
    service, fake_model: FakeOpenAI, monkeypatch, database: StoreDatabase
) -> None:
    """A crash between the two would leave a run that looks untouched by tools, answered again after the
    restart: the tool would run twice. So the step is in the database when the tool starts."""
    from tests.tool_modules import team_tools

    seen: list[list[str]] = []

    class Timeline(list[str]):
        def append(self, entry: str) -> None:
            if entry.startswith("start "):  # slow_step begins: what does the database know?
                steps = database.rows("SELECT tool_name FROM run_steps WHERE type = 'tool_calls'")
                seen.append([r[0] for r in steps])
            super().append(entry)

    monkeypatch.setattr(team_tools, "TIMELINE", Timeline())
    busy: list[asyncio.Task[None]] = []

    def script(req: dict[str, Any]) -> Reply:
        if tool_results(req):
            return Reply(text="done")
        # The store's thread is busy for a moment as the tool call arrives (as under load): whatever records
        # the step waits behind it, and the tool must wait for that record.
        busy.append(asyncio.ensure_future(service.store.call(lambda db: time.sleep(0.3))))
        return Reply(tool_calls=(ToolCall("slow_step", {"label": "a"}),))

    fake_model.script = script
    assert isinstance(await (await post(service, "do a slow step")).result(), RunCompleted)
    await asyncio.gather(*busy)
    assert seen == [["slow_step"]]
