"""Run steps as the old API showed them, read with the real openai SDK against the scripted model.

The tool calls of one model response are one step, indexed 0, 1, ...; ``code_interpreter`` and
``file_search`` calls are typed (code and logs; results, with their passages when ``include[]``
asks); arguments and code stream as the model writes them; citations reach the text deltas as
they are written. The SDK's own streaming example with the code interpreter runs against it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from openai.lib.streaming import AsyncAssistantEventHandler
from openai.types.beta.threads import Text, TextDelta
from openai.types.beta.threads.runs import RunStep, RunStepDelta, ToolCall, ToolCallDelta

from bots.api.app import ApiServer
from bots.api.config import ApiSettings
from tests.conftest import ServiceFactory
from tests.fakes.openai_server import FakeOpenAI, Reply, last_user_text, tool_results
from tests.fakes.openai_server import ToolCall as ScriptedCall
from tests.helpers import API_KEY_A
from tests.sdk_examples import assistant_stream_helpers
from tests.test_api_runs import WEATHER, assistant, thread
from tests.test_code_interpreter import SANDBOX_PYTHON

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks the retired API deprecated

CONTENT = "step_details.tool_calls[*].file_search.results[*].content"
HANDBOOK = b"# Handbook\n\n## Holidays\nEvery employee has 27 days of paid holiday a year.\n"
CODE = "numbers = [6, 7]\nprint(numbers[0] * numbers[1])\nprint('done')"


class Calls(AsyncAssistantEventHandler):
    """What the SDK's tool-call and step callbacks saw."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []
        self.created: list[ToolCall] = []
        self.deltas: list[ToolCallDelta] = []
        self.step_deltas: list[ToolCallDelta] = []  # every call delta of every step delta, the first ones included
        self.done: list[ToolCall] = []
        self.steps_created: list[RunStep] = []
        self.steps_done: list[RunStep] = []
        self.text_deltas: list[TextDelta] = []

    async def on_event(self, event: Any) -> None:
        self.events.append(event.event)

    async def on_tool_call_created(self, tool_call: ToolCall) -> None:
        self.created.append(tool_call)

    async def on_tool_call_delta(self, delta: ToolCallDelta, snapshot: ToolCall) -> None:
        self.deltas.append(delta)

    async def on_tool_call_done(self, tool_call: ToolCall) -> None:
        self.done.append(tool_call)

    async def on_run_step_delta(self, delta: RunStepDelta, snapshot: RunStep) -> None:
        if delta.step_details is not None and delta.step_details.type == "tool_calls":
            self.step_deltas += delta.step_details.tool_calls or []

    async def on_run_step_created(self, run_step: RunStep) -> None:
        self.steps_created.append(run_step)

    async def on_run_step_done(self, run_step: RunStep) -> None:
        self.steps_done.append(run_step)

    async def on_text_delta(self, delta: TextDelta, snapshot: Text) -> None:
        self.text_deltas.append(delta)


async def stream(client: openai.AsyncOpenAI, thread_id: str, assistant_id: str, **options: Any) -> Calls:
    handler = Calls()
    async with client.beta.threads.runs.stream(
        thread_id=thread_id, assistant_id=assistant_id, event_handler=handler, **options
    ) as running:
        await running.until_done()
    return handler


# -- parallel calls and streamed arguments ------------------------------------------------------------


def two_cities(request: dict[str, Any]) -> Reply:
    if results := tool_results(request):
        return Reply(text=" and ".join(str(r["content"]) for r in results) + ".")
    calls = (ScriptedCall("get_weather", {"city": "Oslo"}), ScriptedCall("get_weather", {"city": "Lisbon, Portugal"}))
    return Reply(tool_calls=calls)


async def test_parallel_calls_are_one_step_and_each_fires_on_tool_call_created(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    fake_model.script = two_cities
    helper = await assistant(client_a, tools=[WEATHER])
    on = await thread(client_a, "Weather in Oslo and Lisbon?")
    first = await stream(client_a, on.id, helper.id)
    assert first.events[-1] == "thread.run.requires_action"

    [step] = first.steps_created
    assert step.type == "tool_calls"
    assert [(c.type, c.index) for c in first.step_deltas if c.id] == [("function", 0), ("function", 1)]
    assert [c.id for c in first.step_deltas if c.id] == [c.id for c in first.created]  # each one's callback fired
    # Each call's arguments arrive in pieces as the model writes them, and add up to what it wrote.
    for index, city in enumerate(["Oslo", "Lisbon, Portugal"]):
        pieces = [d.function.arguments for d in first.step_deltas if d.index == index and d.function and not d.id]
        assert len(pieces) > 1
        assert json.loads("".join(p or "" for p in pieces)) == {"city": city}
    assert [json.loads(c.function.arguments) for c in first.done] == [  # type: ignore[union-attr]
        {"city": "Oslo"},
        {"city": "Lisbon, Portugal"},
    ]

    run = await client_a.beta.threads.runs.retrieve(first.current_run.id, thread_id=on.id)  # type: ignore[union-attr]
    required = run.required_action.submit_tool_outputs.tool_calls  # type: ignore[union-attr]
    assert [c.id for c in required] == [c.id for c in first.created]
    [waiting] = (await client_a.beta.threads.runs.steps.list(run.id, thread_id=on.id)).data
    assert (waiting.id, waiting.status) == (step.id, "in_progress")
    assert [c.id for c in waiting.step_details.tool_calls] == [c.id for c in required]  # type: ignore[union-attr]

    second = Calls()
    async with client_a.beta.threads.runs.submit_tool_outputs_stream(
        thread_id=on.id,
        run_id=run.id,
        tool_outputs=[
            {"tool_call_id": required[0].id, "output": "sunny"},
            {"tool_call_id": required[1].id, "output": "rain"},
        ],
        event_handler=second,
    ) as submitted:
        await submitted.until_done()
    assert second.events[-1] == "thread.run.completed"
    tool_step = second.steps_done[0]
    assert tool_step.id == step.id
    assert [c.function.output for c in tool_step.step_details.tool_calls] == ["sunny", "rain"]  # type: ignore[union-attr]

    steps = (await client_a.beta.threads.runs.steps.list(run.id, thread_id=on.id, order="asc")).data
    assert [(s.id, s.type, s.status) for s in steps] == [
        (step.id, "tool_calls", "completed"),
        (steps[1].id, "message_creation", "completed"),
    ]
    assert steps[0] == tool_step
    assert await client_a.beta.threads.runs.steps.retrieve(step.id, thread_id=on.id, run_id=run.id) == tool_step
    page = await client_a.beta.threads.runs.steps.list(run.id, thread_id=on.id, order="asc", limit=1)
    assert ([s.id for s in page.data], page.has_more) == ([step.id], True)
    [answer] = (await client_a.beta.threads.messages.list(on.id, run_id=run.id)).data
    assert answer.content[0].text.value == "sunny and rain."  # type: ignore[union-attr]


async def test_an_unknown_include_is_a_400_naming_it(client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI) -> None:
    helper = await assistant(client_a)
    on = await thread(client_a)
    run = await client_a.beta.threads.runs.create_and_poll(thread_id=on.id, assistant_id=helper.id, poll_interval_ms=20)
    with pytest.raises(openai.BadRequestError, match="include") as raised:
        await client_a.beta.threads.runs.steps.list(run.id, thread_id=on.id, include=["step_details.nope"])  # type: ignore[list-item]
    assert raised.value.param == "include"  # type: ignore[attr-defined]


# -- file search results and citations ----------------------------------------------------------------


def cited(request: dict[str, Any]) -> Reply:
    """Searches, then answers citing the passage twice: once across two streamed pieces ("ays[" "1] a")."""
    if results := tool_results(request):
        assert "27 days" in results[0]["content"]
        return Reply(text="27 days[1] and more [1].")
    return Reply(tool_calls=(ScriptedCall("file_search", {"query": "holiday days"}),))


async def handbook_assistant(client: openai.AsyncOpenAI) -> tuple[str, str]:
    """(the uploaded handbook's file id, an assistant searching it)."""
    upload = await client.files.create(file=("handbook.md", HANDBOOK), purpose="assistants")
    store = await client.vector_stores.create(name="Handbook")
    attached = await client.vector_stores.files.create_and_poll(vector_store_id=store.id, file_id=upload.id)
    assert attached.status == "completed"
    helper = await client.beta.assistants.create(
        model="fake-model",
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
    )
    return upload.id, helper.id


async def test_file_search_steps_show_their_results_and_passages_when_included(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    fake_model.script = cited
    file_id, helper = await handbook_assistant(client_a)
    on = await thread(client_a, "How many holiday days?")
    run = await client_a.beta.threads.runs.create_and_poll(thread_id=on.id, assistant_id=helper, poll_interval_ms=20)
    assert run.status == "completed"

    search, _ = (await client_a.beta.threads.runs.steps.list(run.id, thread_id=on.id, order="asc")).data
    [call] = search.step_details.tool_calls  # type: ignore[union-attr]
    assert call.type == "file_search"
    assert call.file_search.ranking_options is not None
    assert call.file_search.ranking_options.ranker == "default_2024_08_21"
    [result] = call.file_search.results or []
    assert (result.file_id, result.file_name, result.content) == (file_id, "handbook.md", None)
    assert 0 < result.score <= 1

    for included in (
        (await client_a.beta.threads.runs.steps.list(run.id, thread_id=on.id, order="asc", include=[CONTENT])).data[0],
        await client_a.beta.threads.runs.steps.retrieve(search.id, thread_id=on.id, run_id=run.id, include=[CONTENT]),
    ):
        [call] = included.step_details.tool_calls  # type: ignore[union-attr]
        [result] = call.file_search.results or []  # type: ignore[union-attr]
        assert result.file_id == file_id
        [content] = result.content or []
        assert content.type == "text"
        assert "27 days of paid holiday" in (content.text or "")


async def test_citations_reach_the_text_deltas_as_they_are_written(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    fake_model.script = cited
    file_id, helper = await handbook_assistant(client_a)
    on = await thread(client_a, "How many holiday days?")
    handler = await stream(client_a, on.id, helper, include=[CONTENT])

    text = "".join(d.value or "" for d in handler.text_deltas)
    assert text == "27 days[1] and more [1]."
    streamed = [(d.value, a) for d in handler.text_deltas for a in d.annotations or []]
    assert [(value, a.index, a.type, a.text) for value, a in streamed] == [
        ("1] a", 0, "file_citation", "[1]"),  # the delta that completes the marker carries it
        ("[1].", 1, "file_citation", "[1]"),
    ]
    for _, annotation in streamed:
        assert annotation.file_citation is not None
        assert annotation.file_citation.file_id == file_id
        assert text[annotation.start_index : annotation.end_index] == "[1]"  # type: ignore[misc]

    [answer] = (await client_a.beta.threads.messages.list(on.id, limit=1)).data
    final = answer.content[0].text.annotations  # type: ignore[union-attr]
    assert [(a.start_index, a.end_index, a.file_citation.file_id) for a in final] == [  # type: ignore[union-attr]
        (a.start_index, a.end_index, file_id) for _, a in streamed
    ]
    # include[] on runs.create: the streamed step carries the passages
    [search] = [s for s in handler.steps_done if s.type == "tool_calls"]
    [call] = search.step_details.tool_calls  # type: ignore[union-attr]
    [result] = call.file_search.results or []  # type: ignore[union-attr]
    assert "27 days" in ((result.content or [])[0].text or "")


# -- the code interpreter -----------------------------------------------------------------------------


def runs_code(request: dict[str, Any]) -> Reply:
    if results := tool_results(request):
        return Reply(text=f"It printed: {results[-1]['content']}")
    if "3x + 11 = 14" in last_user_text(request):  # the SDK's example
        return Reply(tool_calls=(ScriptedCall("code_interpreter", {"code": "x = (14 - 11) / 3\nprint(x)"}),))
    return Reply(tool_calls=(ScriptedCall("code_interpreter", {"code": CODE}),))


@pytest.fixture
async def interpreter_client(open_service: ServiceFactory, fake_model: FakeOpenAI) -> AsyncIterator[ApiServer]:
    """The API in front of a service whose code interpreter runs in the real sandbox."""
    assert SANDBOX_PYTHON.exists(), "the sandbox's Python is missing: run `make sandbox` (make test does)"
    fake_model.script = runs_code
    service = await open_service(code_interpreter=True, sandbox_python=SANDBOX_PYTHON, sandbox_call_seconds=10)
    assert service._sessions is not None, "no sandbox works on this machine; see the start-up warning"
    server = await ApiServer.start(service, ApiSettings(keys=(API_KEY_A,), port=0, host="127.0.0.1"))
    yield server
    await server.stop()


async def test_code_interpreter_calls_stream_their_code_and_end_with_their_logs(interpreter_client: ApiServer) -> None:
    async with openai.AsyncOpenAI(base_url=interpreter_client.base_url, api_key=API_KEY_A, max_retries=0) as client:
        helper = await assistant(client, tools=[{"type": "code_interpreter"}])
        on = await thread(client, "Multiply six by seven.")
        handler = await stream(client, on.id, helper.id)
        assert handler.events[-1] == "thread.run.completed"

        [created] = handler.created
        assert created.type == "code_interpreter"
        assert (created.code_interpreter.input, created.code_interpreter.outputs) == ("", [])
        inputs = [
            d.code_interpreter.input for d in handler.deltas if d.type == "code_interpreter" and d.code_interpreter
        ]
        code = [piece for piece in inputs if piece]
        assert len(code) > 1  # as the model writes it, decoded from its JSON arguments
        assert "".join(code) == CODE
        done = handler.done[0]  # (the SDK's handler tells it again as the run completes)
        assert done.type == "code_interpreter"
        assert done.code_interpreter.input == CODE
        assert [(o.type, o.logs) for o in done.code_interpreter.outputs] == [("logs", "42\ndone")]  # type: ignore[union-attr]

        run_id = handler.current_run.id  # type: ignore[union-attr]
        tool_step, _ = (await client.beta.threads.runs.steps.list(run_id, thread_id=on.id, order="asc")).data
        assert tool_step == handler.steps_done[0]
        [call] = tool_step.step_details.tool_calls  # type: ignore[union-attr]
        assert call.type == "code_interpreter"
        assert call.id == created.id
        assert call.code_interpreter.input == CODE
        assert [(o.type, o.logs) for o in call.code_interpreter.outputs] == [("logs", "42\ndone")]  # type: ignore[union-attr]


async def test_the_sdks_streaming_example_prints_the_code_and_executing_code(
    interpreter_client: ApiServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with openai.OpenAI(base_url=interpreter_client.base_url, api_key=API_KEY_A, max_retries=0) as client:
        await asyncio.to_thread(assistant_stream_helpers.main, client)  # the sync SDK, off the event loop
    printed = capsys.readouterr().out
    assert "Generating code to interpret:\n\n```py\nx = (14 - 11) / 3\nprint(x)\n```\nExecuting code..." in printed
    assert "Response:\n\nIt printed: Output:\n1.0" in printed
