"""Streamed runs over the Assistants-compatible API: the old API's server-sent events, read by the real
openai SDK's stream helpers and AssistantEventHandler callbacks, and on the wire."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import openai
import pytest
from openai.lib.streaming import AsyncAssistantEventHandler
from openai.types.beta import AssistantStreamEvent
from openai.types.beta.threads import Message, Text, TextDelta
from openai.types.beta.threads.runs import RunStep, ToolCall, ToolCallDelta

from bots.api.app import ApiServer
from bots.api.config import ApiSettings
from tests.fakes.openai_server import Error, FakeOpenAI, Reply, tool_results
from tests.fakes.openai_server import ToolCall as ScriptedCall
from tests.helpers import API_KEY_A
from tests.test_api_runs import POLL, WEATHER, assistant, texts, thread, weather_script

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks the retired API deprecated


class Recorder(AsyncAssistantEventHandler):
    """Collects what the SDK's callbacks saw."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []
        self.deltas: list[str] = []
        self.created: list[Message] = []
        self.done: list[Message] = []
        self.tool_calls: list[ToolCall] = []
        self.tool_deltas: list[ToolCallDelta] = []
        self.tools_done: list[ToolCall] = []
        self.steps_created: list[RunStep] = []
        self.steps_done: list[RunStep] = []
        self.texts_done: list[str] = []
        self.required: list[Any] = []

    async def on_event(self, event: AssistantStreamEvent) -> None:
        self.events.append(event.event)
        if event.event == "thread.run.requires_action":
            assert event.data.required_action is not None
            self.required = event.data.required_action.submit_tool_outputs.tool_calls

    async def on_text_delta(self, delta: TextDelta, snapshot: Text) -> None:
        self.deltas.append(delta.value or "")

    async def on_text_done(self, text: Text) -> None:
        self.texts_done.append(text.value)

    async def on_message_created(self, message: Message) -> None:
        self.created.append(message)

    async def on_message_done(self, message: Message) -> None:
        self.done.append(message)

    async def on_tool_call_created(self, tool_call: ToolCall) -> None:
        self.tool_calls.append(tool_call)

    async def on_tool_call_delta(self, delta: ToolCallDelta, snapshot: ToolCall) -> None:
        self.tool_deltas.append(delta)

    async def on_tool_call_done(self, tool_call: ToolCall) -> None:
        self.tools_done.append(tool_call)

    async def on_run_step_created(self, run_step: RunStep) -> None:
        self.steps_created.append(run_step)

    async def on_run_step_done(self, run_step: RunStep) -> None:
        self.steps_done.append(run_step)


async def test_a_streamed_run_fires_the_sdks_callbacks_and_names_the_message_it_stores(
    client_a: openai.AsyncOpenAI,
) -> None:
    helper = await assistant(client_a)
    on = await thread(client_a, "Stream me a reply")
    recorder = Recorder()
    async with client_a.beta.threads.runs.stream(
        thread_id=on.id, assistant_id=helper.id, event_handler=recorder
    ) as stream:
        await stream.until_done()
        run = await stream.get_final_run()
    assert recorder.events == [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.step.created",
        "thread.run.step.in_progress",
        "thread.message.created",
        "thread.message.in_progress",
        *["thread.message.delta"] * len(recorder.deltas),
        "thread.message.completed",
        "thread.run.step.completed",
        "thread.run.completed",
    ]
    assert "".join(recorder.deltas) == "echo: Stream me a reply"
    assert len(recorder.deltas) > 1
    assert recorder.texts_done == ["echo: Stream me a reply"]
    assert run.status == "completed"
    assert run.usage is not None
    assert run.usage.total_tokens == 18

    [created], [done] = recorder.created, recorder.done
    stored = (await client_a.beta.threads.messages.list(on.id, run_id=run.id)).data
    assert [m.id for m in stored] == [created.id] == [done.id]  # the streamed id is the stored message's
    assert (created.status, created.run_id, created.assistant_id) == (
        "in_progress",
        run.id,
        helper.id,
    )
    assert done == stored[0]
    assert texts(done) == ["echo: Stream me a reply"]

    steps = (await client_a.beta.threads.runs.steps.list(run.id, thread_id=on.id)).data
    assert [s.id for s in steps] == [recorder.steps_created[0].id] == [recorder.steps_done[0].id]
    assert recorder.steps_done[0] == steps[0]
    assert steps[0].step_details.type == "message_creation"
    assert steps[0].step_details.message_creation.message_id == created.id


async def test_the_function_calling_loop_streamed(client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI) -> None:
    fake_model.script = weather_script
    helper = await assistant(client_a, tools=[WEATHER])
    on = await thread(client_a)
    first = Recorder()
    async with client_a.beta.threads.runs.stream(
        thread_id=on.id, assistant_id=helper.id, event_handler=first
    ) as stream:
        await stream.until_done()
    assert first.events[-1] == "thread.run.requires_action"
    assert first.events[:3] == ["thread.run.created", "thread.run.queued", "thread.run.in_progress"]
    assert "thread.run.step.delta" in first.events
    [created], [done] = first.tool_calls, first.tools_done
    assert created.type == "function"
    assert (created.function.name, created.function.arguments) == ("get_weather", "")  # as the model begins it
    assert done.type == "function"
    assert (done.function.name, json.loads(done.function.arguments)) == ("get_weather", {"city": "Oslo"})
    assert len(first.tool_deltas) > 1  # the arguments stream as the model writes them
    [call] = first.required
    assert call.id == created.id
    run = first.current_run
    assert run is not None
    assert run.status == "requires_action"

    second = Recorder()
    async with client_a.beta.threads.runs.submit_tool_outputs_stream(
        thread_id=on.id,
        run_id=run.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "sunny, 21 C"}],
        event_handler=second,
    ) as stream:
        await stream.until_done()
    assert second.events[:3] == ["thread.run.queued", "thread.run.in_progress", "thread.run.step.completed"]
    assert second.events[-1] == "thread.run.completed"
    assert "".join(second.deltas) == "It is sunny, 21 C."
    tool_step = second.steps_done[0]
    assert tool_step.step_details.type == "tool_calls"
    assert tool_step.step_details.tool_calls[0].function.output == "sunny, 21 C"  # type: ignore[union-attr]
    [answer] = (await client_a.beta.threads.messages.list(on.id, run_id=run.id)).data
    assert [m.id for m in second.created] == [answer.id]
    assert second.done == [answer]
    steps = (await client_a.beta.threads.runs.steps.list(run.id, thread_id=on.id, order="asc")).data
    assert [s.id for s in steps] == [first.steps_created[0].id, second.steps_created[0].id]


async def test_text_before_a_tool_call_is_a_message_of_its_own_with_the_id_it_keeps(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    def script(request: dict[str, Any]) -> Reply:
        if results := tool_results(request):
            return Reply(text=f"Done: {results[0]['content']}.")
        return Reply(text="Let me check.", tool_calls=(ScriptedCall("get_weather", {"city": "Oslo"}),))

    fake_model.script = script
    helper = await assistant(client_a, tools=[WEATHER])
    on = await thread(client_a)
    first = Recorder()
    async with client_a.beta.threads.runs.stream(
        thread_id=on.id, assistant_id=helper.id, event_handler=first
    ) as stream:
        await stream.until_done()
    run = first.current_run
    assert run is not None
    assert run.status == "requires_action"
    assert [texts(m) for m in first.done] == [["Let me check."]]
    [call] = first.required

    second = Recorder()  # a new client would do the same: the ids come from the run, not from this stream
    async with client_a.beta.threads.runs.submit_tool_outputs_stream(
        thread_id=on.id, run_id=run.id, tool_outputs=[{"tool_call_id": call.id, "output": "rain"}], event_handler=second
    ) as stream:
        await stream.until_done()
    stored = (await client_a.beta.threads.messages.list(on.id, run_id=run.id, order="asc")).data
    assert [(m.id, texts(m)) for m in stored] == [
        (first.created[0].id, ["Let me check."]),
        (second.created[0].id, ["Done: rain."]),
    ]


async def test_create_thread_and_run_streamed(client_a: openai.AsyncOpenAI) -> None:
    helper = await assistant(client_a)
    recorder = Recorder()
    async with client_a.beta.threads.create_and_run_stream(
        assistant_id=helper.id, thread={"messages": [{"role": "user", "content": "Hi"}]}, event_handler=recorder
    ) as stream:
        await stream.until_done()
    assert recorder.events[:3] == ["thread.created", "thread.run.created", "thread.run.queued"]
    assert recorder.events[-1] == "thread.run.completed"
    assert "".join(recorder.deltas) == "echo: Hi"
    run = recorder.current_run
    assert run is not None
    messages = (await client_a.beta.threads.messages.list(run.thread_id, order="asc")).data
    assert [texts(m) for m in messages] == [["Hi"], ["echo: Hi"]]


async def test_a_failed_run_ends_its_stream_with_thread_run_failed(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    fake_model.script = lambda request: Error(400, "too long: internal detail")
    helper = await assistant(client_a)
    on = await thread(client_a)
    recorder = Recorder()
    async with client_a.beta.threads.runs.stream(
        thread_id=on.id, assistant_id=helper.id, event_handler=recorder
    ) as stream:
        await stream.until_done()
    assert recorder.events == ["thread.run.created", "thread.run.queued", "thread.run.in_progress", "thread.run.failed"]
    run = recorder.current_run
    assert run is not None
    assert run.last_error is not None
    assert (run.status, run.last_error.code) == ("failed", "invalid_prompt")


async def test_errors_before_the_stream_are_plain_http_errors(client_a: openai.AsyncOpenAI) -> None:
    on = await thread(client_a)
    with pytest.raises(openai.NotFoundError, match="No assistant found"):
        async with client_a.beta.threads.runs.stream(thread_id=on.id, assistant_id="asst_nope") as stream:
            await stream.until_done()


async def test_the_wire_format_is_event_and_data_frames_ending_with_done(
    api_server: ApiServer, client_a: openai.AsyncOpenAI
) -> None:
    helper = await assistant(client_a)
    on = await thread(client_a, "Hi")
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{api_server.base_url}/threads/{on.id}/runs",
            json={"assistant_id": helper.id, "stream": True},
            headers={"Authorization": f"Bearer {API_KEY_A}"},
        ) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        raw = (await response.read()).decode()
    frames = raw.split("\n\n")
    assert frames[-1] == ""
    assert frames[-2] == "event: done\ndata: [DONE]"
    for frame in frames[:-2]:
        name, data = frame.split("\n")
        assert name.startswith("event: thread.")
        assert data.startswith("data: ")
        payload = json.loads(data.removeprefix("data: "))
        assert isinstance(payload, dict)
    delta = next(f for f in frames if f.startswith("event: thread.message.delta\n"))
    payload = json.loads(delta.split("\n")[1].removeprefix("data: "))
    assert payload["object"] == "thread.message.delta"
    assert payload["delta"]["content"][0]["type"] == "text"
    assert payload["delta"]["content"][0]["index"] == 0
    assert payload["delta"]["content"][0]["text"]["annotations"] == []


async def test_a_client_that_leaves_mid_stream_does_not_stop_the_run(
    api_server: ApiServer, client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    fake_model.script = lambda request: Reply(text="A long answer that streams slowly.", chunk_delay=0.02)
    helper = await assistant(client_a)
    on = await thread(client_a)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{api_server.base_url}/threads/{on.id}/runs",
            json={"assistant_id": helper.id, "stream": True},
            headers={"Authorization": f"Bearer {API_KEY_A}"},
        ) as response,
    ):
        async for line in response.content:
            if line.startswith(b"event: thread.message.delta"):
                break  # leave after the first words
        response.close()
    [run] = (await client_a.beta.threads.runs.list(on.id)).data
    done = await client_a.beta.threads.runs.poll(run.id, thread_id=on.id, poll_interval_ms=POLL)
    assert done.status == "completed"
    [answer] = (await client_a.beta.threads.messages.list(on.id, run_id=run.id)).data
    assert texts(answer) == ["A long answer that streams slowly."]


async def test_cancelling_a_run_mid_stream_ends_the_stream_with_thread_run_cancelled(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    fake_model.script = lambda request: Reply(text="Words that keep coming for a while.", chunk_delay=0.05)
    helper = await assistant(client_a)
    on = await thread(client_a)
    writing = asyncio.Event()

    class Canceller(Recorder):
        async def on_text_delta(self, delta: TextDelta, snapshot: Text) -> None:
            await super().on_text_delta(delta, snapshot)
            writing.set()

    recorder = Canceller()

    async def follow() -> None:
        async with client_a.beta.threads.runs.stream(
            thread_id=on.id, assistant_id=helper.id, event_handler=recorder
        ) as stream:
            await stream.until_done()

    streaming = asyncio.create_task(follow())
    async with asyncio.timeout(5):
        await writing.wait()
    [run] = (await client_a.beta.threads.runs.list(on.id)).data
    await client_a.beta.threads.runs.cancel(run.id, thread_id=on.id)
    async with asyncio.timeout(5):
        await streaming
    assert recorder.events[-3:] == ["thread.message.incomplete", "thread.run.step.cancelled", "thread.run.cancelled"]
    [partial] = recorder.done
    assert partial.status == "incomplete"
    assert partial.incomplete_details is not None
    assert partial.incomplete_details.reason == "run_cancelled"
    assert texts(partial) == ["".join(recorder.deltas)]
    assert recorder.current_run is not None
    assert recorder.current_run.status == "cancelled"


async def test_a_graceful_stop_mid_stream_ends_the_stream_with_the_run_queued_again(
    open_service: Any, fake_model: FakeOpenAI
) -> None:
    """Threadline stops while a run streams (no tool yet): the run is left queued for the next start, and the
    stream says so (``thread.run.queued``) rather than that it failed."""
    fake_model.script = lambda request: Reply(text="Once upon a time", stall=True)
    service = await open_service(shutdown_grace_seconds=0.1)
    server = await ApiServer.start(service, ApiSettings(keys=(API_KEY_A,), port=0, host="127.0.0.1"))
    writing = asyncio.Event()

    class Watcher(Recorder):
        async def on_text_delta(self, delta: TextDelta, snapshot: Text) -> None:
            await super().on_text_delta(delta, snapshot)
            writing.set()

    recorder = Watcher()
    try:
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key=API_KEY_A, max_retries=0) as client:
            helper = await assistant(client)
            on = await thread(client)

            async def follow() -> None:
                async with client.beta.threads.runs.stream(
                    thread_id=on.id, assistant_id=helper.id, event_handler=recorder
                ) as stream:
                    await stream.until_done()

            streaming = asyncio.create_task(follow())
            async with asyncio.timeout(5):
                await writing.wait()
            await service.close()
            async with asyncio.timeout(5):
                await streaming
    finally:
        await server.stop()
    assert recorder.events[-1] == "thread.run.queued"
    assert "thread.run.failed" not in recorder.events
    assert recorder.current_run is not None
    assert recorder.current_run.status == "queued"
