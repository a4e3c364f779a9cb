"""API runs through the core (no HTTP): an API assistant's settings, client functions that pause the run
for the client's outputs, one active run per thread, cancel, expiry, steps. The HTTP surface is tested
with the openai SDK in test_api_runs.py."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from core.api_objects import NewMessage
from core.api_runs import ApiRuns, RunRequest
from core.errors import UnknownObject
from core.events import ApprovalRequired, RunCompleted, RunFailed
from core.models import PageQuery
from core.service import Threadline, ToolOutputsError
from core.store.api_runs import RunActive
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, tool_results

OWNER = "owner-a"
WEATHER_FUNCTION = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


async def _thread_and_assistant(service: Threadline, *, tools: list[dict[str, Any]], text: str = "Weather in Oslo?"):
    assistant = await service.objects.assistants.create(
        OWNER,
        {"model": "fake-model", "name": "Forecaster", "instructions": "You forecast.", "tools": tools, "metadata": {}},
    )
    thread = await service.objects.create_thread(
        OWNER, metadata={}, tool_resources=None, messages=[NewMessage("user", (text,))]
    )
    return thread, assistant


def _weather_script(request: dict[str, Any]) -> Reply:
    if results := tool_results(request):
        return Reply(text=f"It is {results[0]['content']}.")
    return Reply(tool_calls=(ToolCall("get_weather", {"city": "Oslo"}),))


async def test_a_client_function_pauses_the_run_until_the_client_submits_its_output(
    service: Threadline, fake_model: FakeOpenAI
) -> None:
    fake_model.script = _weather_script
    runs = ApiRuns(service)
    thread, assistant = await _thread_and_assistant(service, tools=[WEATHER_FUNCTION])
    run, handle = await runs.create(OWNER, thread.id, RunRequest(assistant_id=assistant.id))
    assert run.status == "queued"
    assert run.assistant_id == assistant.id

    async for event in handle.events():
        if isinstance(event, ApprovalRequired):
            break
    paused = await runs.get(OWNER, thread.id, run.id)
    assert paused.status == "requires_action"
    assert paused.expires_at is not None
    assert paused.expires_at - time.time() == pytest.approx(600, abs=5)
    calls = await runs.pending_calls(paused)
    assert [(name, json.loads(arguments)) for _, name, arguments in calls] == [("get_weather", {"city": "Oslo"})]
    first = fake_model.chat_requests[0]
    assert first["messages"][0] == {"role": "system", "content": "You forecast."}
    assert [t["function"]["name"] for t in first["tools"]] == ["get_weather"]

    with pytest.raises(ToolOutputsError, match="Expected tool outputs"):
        await runs.submit_tool_outputs(OWNER, thread.id, run.id, {"call_other": "x"})
    _, handle = await runs.submit_tool_outputs(OWNER, thread.id, run.id, {calls[0][0]: "sunny, 21 C"})
    result = await handle.result()
    assert isinstance(result, RunCompleted)
    assert result.text == "It is sunny, 21 C."
    done = await runs.get(OWNER, thread.id, run.id)
    assert done.status == "completed"
    steps = (await runs.steps(OWNER, thread.id, run.id, PageQuery(order="asc"))).items
    assert [(s.type, [(c.tool_name, c.output) for c in s.calls]) for s in steps] == [
        ("tool_calls", [("get_weather", "sunny, 21 C")]),
        ("message_creation", []),
    ]
    messages = await service.objects.list_messages(OWNER, thread.id, PageQuery(order="asc"))
    assert messages is not None
    assert [(m.role, m.texts, m.run_id) for m in messages.items][-1] == ("assistant", ("It is sunny, 21 C.",), run.id)
    assert await runs.message_ids(done) == [messages.items[-1].id]


async def test_run_overrides_and_additional_messages_reach_the_model(
    service: Threadline, fake_model: FakeOpenAI
) -> None:
    fake_model.script = lambda request: Reply(text="ok")
    runs = ApiRuns(service)
    thread, assistant = await _thread_and_assistant(service, tools=[])
    request = RunRequest(
        assistant_id=assistant.id,
        model="other-model",
        additional_instructions="Answer in French.",
        additional_messages=[NewMessage("user", ("And tomorrow?",))],
        temperature=0.2,
        max_completion_tokens=50,
    )
    _, handle = await runs.create(OWNER, thread.id, request)
    assert isinstance(await handle.result(), RunCompleted)
    sent = fake_model.chat_requests[-1]
    assert sent["model"] == "other-model"
    assert sent["messages"][0]["content"] == "You forecast.\n\nAnswer in French."
    assert [m["content"] for m in sent["messages"][1:]] == ["Weather in Oslo?", "And tomorrow?"]
    assert sent["temperature"] == 0.2
    assert sent["max_tokens"] == 50


async def test_one_active_run_per_thread_and_cancel_ends_a_paused_run(
    service: Threadline, fake_model: FakeOpenAI
) -> None:
    fake_model.script = _weather_script
    runs = ApiRuns(service)
    thread, assistant = await _thread_and_assistant(service, tools=[WEATHER_FUNCTION])
    run, handle = await runs.create(OWNER, thread.id, RunRequest(assistant_id=assistant.id))
    with pytest.raises(RunActive):
        await runs.create(OWNER, thread.id, RunRequest(assistant_id=assistant.id))
    async for event in handle.events():
        if isinstance(event, ApprovalRequired):
            break
    cancelled = await runs.cancel(OWNER, thread.id, run.id)
    assert cancelled.status == "cancelled"
    assert isinstance(await handle.result(), RunFailed)
    with pytest.raises(ToolOutputsError, match="cancelled"):
        await runs.submit_tool_outputs(OWNER, thread.id, run.id, {"x": "y"})
    again, handle = await runs.create(OWNER, thread.id, RunRequest(assistant_id=assistant.id))  # the thread is free
    assert again.id != run.id
    await runs.cancel(OWNER, thread.id, again.id)
    assert isinstance(await handle.result(), RunFailed)


async def test_another_owner_reaches_neither_the_thread_nor_the_run(
    service: Threadline, fake_model: FakeOpenAI
) -> None:
    fake_model.script = lambda request: Reply(text="ok")
    runs = ApiRuns(service)
    thread, assistant = await _thread_and_assistant(service, tools=[])
    run, handle = await runs.create(OWNER, thread.id, RunRequest(assistant_id=assistant.id))
    await handle.result()
    with pytest.raises(UnknownObject):
        await runs.get("owner-b", thread.id, run.id)
    with pytest.raises(UnknownObject):
        await runs.create("owner-b", thread.id, RunRequest(assistant_id=assistant.id))
    other_thread = await service.objects.create_thread("owner-b", metadata={}, tool_resources=None)
    with pytest.raises(UnknownObject, match="assistant"):
        await runs.create("owner-b", other_thread.id, RunRequest(assistant_id=assistant.id))


async def test_outputs_never_submitted_expire_the_run(
    open_service: Any, fake_model: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("core.run_plans.CLIENT_OUTPUT_SECONDS", 0.3)
    service = await open_service()
    fake_model.script = _weather_script
    runs = ApiRuns(service)
    thread, assistant = await _thread_and_assistant(service, tools=[WEATHER_FUNCTION])
    run, handle = await runs.create(OWNER, thread.id, RunRequest(assistant_id=assistant.id))
    result = await handle.result()
    assert isinstance(result, RunFailed)
    assert result.status == "expired"
    assert (await runs.get(OWNER, thread.id, run.id)).status == "expired"


async def test_the_service_stops_at_once_with_a_run_waiting_for_outputs_and_it_stays_paused(
    open_service: Any, fake_model: FakeOpenAI
) -> None:
    fake_model.script = _weather_script
    service = await open_service()
    runs = ApiRuns(service)
    thread, assistant = await _thread_and_assistant(service, tools=[WEATHER_FUNCTION])
    run, handle = await runs.create(OWNER, thread.id, RunRequest(assistant_id=assistant.id))
    async for event in handle.events():
        if isinstance(event, ApprovalRequired):
            break
    started = time.monotonic()
    await service.close()
    assert time.monotonic() - started < 5
    again = await open_service()
    assert (await ApiRuns(again).get(OWNER, thread.id, run.id)).status == "requires_action"


def _deploy_script(request: dict[str, Any]) -> Reply:
    if results := tool_results(request):
        return Reply(text=f"Result: {results[0]['content']}")
    return Reply(tool_calls=(ToolCall("deploy", {"service": "billing"}),))


@pytest.mark.parametrize(("output", "ran"), [("approve", True), ("not today", False)])
async def test_threadlines_own_tool_named_without_parameters_runs_here_and_its_approval_is_the_clients_output(
    service: Threadline, fake_model: FakeOpenAI, output: str, ran: bool
) -> None:
    """A function named like one of Threadline's tools, with no parameters, is that tool (the team's
    ``deploy``, which needs approval): Threadline runs it, and the client's output decides."""
    from tests.tool_modules import team_tools

    fake_model.script = _deploy_script
    runs = ApiRuns(service)
    thread, assistant = await _thread_and_assistant(
        service, tools=[{"type": "function", "function": {"name": "deploy"}}], text="Deploy billing."
    )
    run, handle = await runs.create(OWNER, thread.id, RunRequest(assistant_id=assistant.id))
    async for event in handle.events():
        if isinstance(event, ApprovalRequired):
            break
    first = fake_model.chat_requests[0]
    assert first["tools"][0]["function"]["parameters"]["properties"]["service"]["type"] == "string"  # its schema
    ((call_id, name, _),) = await runs.pending_calls(await runs.get(OWNER, thread.id, run.id))
    assert name == "deploy"
    _, handle = await runs.submit_tool_outputs(OWNER, thread.id, run.id, {call_id: output})
    result = await handle.result()
    assert isinstance(result, RunCompleted)
    assert (team_tools.TIMELINE == ["deployed billing"]) is ran
    assert ("billing deployed" in result.text) is ran
