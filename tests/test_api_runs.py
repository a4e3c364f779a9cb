"""Runs over the Assistants-compatible API, polled, driven by the real openai SDK against the scripted model.

Streaming is in test_api_streaming.py; how the core runs them, in test_api_runs_core.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import openai
import pytest

from core.service import Threadline
from tests.fakes.openai_server import Error, FakeOpenAI, Hang, Raw, Reply, ToolCall, tool_results

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks the retired API deprecated

POLL = 20  # ms between the SDK's polls
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def weather_script(request: dict[str, Any]) -> Reply:
    if results := tool_results(request):
        return Reply(text=f"It is {results[0]['content']}.")
    return Reply(tool_calls=(ToolCall("get_weather", {"city": "Oslo"}),))


def texts(message: openai.types.beta.threads.Message) -> list[str]:
    return [part.text.value for part in message.content if part.type == "text"]


async def assistant(client: openai.AsyncOpenAI, **fields: Any) -> openai.types.beta.Assistant:
    fields = {"model": "fake-model", "name": "Forecaster", "instructions": "You forecast.", **fields}
    return await client.beta.assistants.create(**fields)


async def thread(client: openai.AsyncOpenAI, text: str = "Weather in Oslo?") -> openai.types.beta.Thread:
    return await client.beta.threads.create(messages=[{"role": "user", "content": text}])


async def paused_run(client: openai.AsyncOpenAI) -> openai.types.beta.threads.Run:
    """A run waiting in requires_action for get_weather's output."""
    helper = await assistant(client, tools=[WEATHER])
    on = await thread(client)
    run = await client.beta.threads.runs.create_and_poll(thread_id=on.id, assistant_id=helper.id, poll_interval_ms=POLL)
    assert run.status == "requires_action"
    return run


async def wait_for(client: openai.AsyncOpenAI, run: openai.types.beta.threads.Run, status: str) -> Any:
    """Poll the run (the API's own way to wait) until it reaches ``status``."""
    async with asyncio.timeout(10):
        while (current := await client.beta.threads.runs.retrieve(run.id, thread_id=run.thread_id)).status != status:
            await asyncio.sleep(POLL / 1000)
    return current


async def test_create_and_poll_completes_and_the_answer_is_a_message_of_the_run(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    helper = await assistant(client_a)
    on = await thread(client_a, "Hello there")
    run = await client_a.beta.threads.runs.create_and_poll(
        thread_id=on.id, assistant_id=helper.id, metadata={"ticket": "7"}, poll_interval_ms=POLL
    )
    assert run.status == "completed"
    assert (run.object, run.thread_id, run.assistant_id, run.model) == ("thread.run", on.id, helper.id, "fake-model")
    assert run.instructions == "You forecast."
    assert (run.tool_choice, run.parallel_tool_calls, run.tools, run.metadata) == ("auto", True, [], {"ticket": "7"})
    assert run.truncation_strategy is not None
    assert run.truncation_strategy.type == "auto"
    assert run.usage is not None
    assert (run.usage.prompt_tokens, run.usage.completion_tokens, run.usage.total_tokens) == (11, 7, 18)
    assert run.started_at is not None
    assert run.completed_at is not None
    assert run.created_at <= run.started_at <= run.completed_at
    assert (run.expires_at, run.failed_at, run.cancelled_at, run.last_error, run.required_action) == (
        None,
        None,
        None,
        None,
        None,
    )

    messages = (await client_a.beta.threads.messages.list(on.id, order="asc")).data
    assert [(m.role, texts(m), m.run_id, m.assistant_id) for m in messages] == [
        ("user", ["Hello there"], None, None),
        ("assistant", ["echo: Hello there"], run.id, helper.id),
    ]
    assert (await client_a.beta.threads.messages.list(on.id, run_id=run.id)).data == messages[1:]
    assert await client_a.beta.threads.messages.retrieve(messages[1].id, thread_id=on.id) == messages[1]
    assert fake_model.chat_requests[-1]["messages"][0] == {"role": "system", "content": "You forecast."}


async def test_the_function_calling_loop_requires_action_then_takes_the_outputs(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    fake_model.script = weather_script
    run = await paused_run(client_a)
    assert run.required_action is not None
    assert run.required_action.type == "submit_tool_outputs"
    [call] = run.required_action.submit_tool_outputs.tool_calls
    assert (call.type, call.function.name, json.loads(call.function.arguments)) == (
        "function",
        "get_weather",
        {"city": "Oslo"},
    )
    assert run.expires_at is not None
    assert run.expires_at > run.created_at
    assert run.usage is None  # not ended

    done = await client_a.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id,
        thread_id=run.thread_id,
        tool_outputs=[{"tool_call_id": call.id, "output": "sunny, 21 C"}],
        poll_interval_ms=POLL,
    )
    assert done.status == "completed"
    assert (done.required_action, done.expires_at) == (None, None)
    sent = fake_model.chat_requests[-1]["messages"]
    assert sent[-1] == {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}
    [answer] = (await client_a.beta.threads.messages.list(run.thread_id, run_id=run.id)).data
    assert texts(answer) == ["It is sunny, 21 C."]

    with pytest.raises(openai.BadRequestError, match="Runs in status completed do not accept tool outputs"):
        await client_a.beta.threads.runs.submit_tool_outputs(
            run_id=run.id, thread_id=run.thread_id, tool_outputs=[{"tool_call_id": call.id, "output": "x"}]
        )


async def test_outputs_for_the_wrong_calls_are_a_400_and_the_run_still_waits(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    fake_model.script = weather_script
    run = await paused_run(client_a)
    with pytest.raises(openai.BadRequestError, match="Expected tool outputs for call_ids"):
        await client_a.beta.threads.runs.submit_tool_outputs(
            run_id=run.id, thread_id=run.thread_id, tool_outputs=[{"tool_call_id": "call_nope", "output": "x"}]
        )
    still = await client_a.beta.threads.runs.retrieve(run.id, thread_id=run.thread_id)
    assert still.status == "requires_action"
    assert still.required_action == run.required_action


async def test_create_thread_and_run_poll(client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI) -> None:
    helper = await assistant(client_a)
    run = await client_a.beta.threads.create_and_run_poll(
        assistant_id=helper.id,
        thread={"messages": [{"role": "user", "content": "Hi"}], "metadata": {"from": "test"}},
        instructions="Be brief.",
        temperature=0.5,
        poll_interval_ms=POLL,
    )
    assert run.status == "completed"
    assert (run.instructions, run.temperature) == ("Be brief.", 0.5)
    made = await client_a.beta.threads.retrieve(run.thread_id)
    assert made.metadata == {"from": "test"}
    messages = (await client_a.beta.threads.messages.list(run.thread_id, order="asc")).data
    assert [texts(m) for m in messages] == [["Hi"], ["echo: Hi"]]
    assert fake_model.chat_requests[-1]["temperature"] == 0.5


async def test_runs_list_pages_like_the_other_lists(client_a: openai.AsyncOpenAI) -> None:
    helper = await assistant(client_a)
    on = await thread(client_a)
    made = []
    for _ in range(3):
        run = await client_a.beta.threads.runs.create_and_poll(
            thread_id=on.id, assistant_id=helper.id, poll_interval_ms=POLL
        )
        made.append(run.id)
    first = await client_a.beta.threads.runs.list(on.id, limit=2, order="asc")
    assert ([r.id for r in first.data], first.has_more) == (made[:2], True)
    rest = await client_a.beta.threads.runs.list(on.id, limit=2, order="asc", after=first.data[-1].id)
    assert ([r.id for r in rest.data], rest.has_more) == (made[2:], False)
    newest = await client_a.beta.threads.runs.list(on.id)
    assert [r.id for r in newest.data] == made[::-1]
    assert all(r.status == "completed" for r in newest.data)
    every = [r.id async for r in client_a.beta.threads.runs.list(on.id, limit=1, order="asc")]
    assert every == made
    with pytest.raises(openai.BadRequestError, match="'after'"):
        await client_a.beta.threads.runs.list(on.id, after="run_unknown")


async def test_cancel_a_paused_run_then_it_cannot_be_cancelled_again(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    fake_model.script = weather_script
    run = await paused_run(client_a)
    cancelled = await client_a.beta.threads.runs.cancel(run.id, thread_id=run.thread_id)
    assert cancelled.status == "cancelled"
    assert cancelled.cancelled_at is not None
    assert (cancelled.required_action, cancelled.expires_at, cancelled.completed_at) == (None, None, None)
    with pytest.raises(openai.BadRequestError, match=r"Cannot cancel run with status 'cancelled'\."):
        await client_a.beta.threads.runs.cancel(run.id, thread_id=run.thread_id)
    steps = (await client_a.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id)).data
    assert [(s.type, s.status) for s in steps] == [("tool_calls", "cancelled")]
    assert steps[0].cancelled_at is not None


async def test_cancel_a_completed_run_is_a_400_in_the_old_words(client_a: openai.AsyncOpenAI) -> None:
    helper = await assistant(client_a)
    on = await thread(client_a)
    run = await client_a.beta.threads.runs.create_and_poll(
        thread_id=on.id, assistant_id=helper.id, poll_interval_ms=POLL
    )
    with pytest.raises(openai.BadRequestError) as caught:
        await client_a.beta.threads.runs.cancel(run.id, thread_id=on.id)
    assert caught.value.status_code == 400
    assert caught.value.body["message"] == "Cannot cancel run with status 'completed'."


async def test_cancel_a_run_in_progress(client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI) -> None:
    fake_model.script = lambda request: Hang()
    helper = await assistant(client_a)
    on = await thread(client_a)
    run = await client_a.beta.threads.runs.create(thread_id=on.id, assistant_id=helper.id)
    await wait_for(client_a, run, "in_progress")
    cancelling = await client_a.beta.threads.runs.cancel(run.id, thread_id=on.id)
    assert cancelling.status in ("cancelling", "cancelled")
    ended = await client_a.beta.threads.runs.poll(run.id, thread_id=on.id, poll_interval_ms=POLL)
    assert ended.status == "cancelled"


async def test_a_cancel_right_after_create_is_never_followed_by_an_answer(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    """Whatever moment the cancel lands at (queued, being claimed, streaming), a run answered ``cancelling`` or
    ``cancelled`` ends cancelled and adds no message; one that had ended already answers the old 400."""
    fake_model.script = lambda request: Reply(text="an answer", chunk_delay=0.001)
    helper = await assistant(client_a)
    outcomes: list[str] = []
    for attempt in range(30):
        on = await thread(client_a)
        run = await client_a.beta.threads.runs.create(thread_id=on.id, assistant_id=helper.id)
        if attempt % 3:  # let the run get a little further before the cancel, at varying moments
            await asyncio.sleep(0)
        try:
            answered = await client_a.beta.threads.runs.cancel(run.id, thread_id=on.id)
        except openai.BadRequestError as exc:
            outcomes.append(str(exc.body["message"]))  # it had ended: the old 400, checked below
            continue
        assert answered.status in ("cancelling", "cancelled")
        ended = await client_a.beta.threads.runs.poll(run.id, thread_id=on.id, poll_interval_ms=POLL)
        assert ended.status == "cancelled", f"attempt {attempt}: answered {answered.status}, then {ended.status}"
        listed = await client_a.beta.threads.messages.list(on.id)
        assert [m.role for m in listed.data] == ["user"], f"attempt {attempt}: an answer after the cancel"
        outcomes.append(answered.status)
    assert set(outcomes) <= {"cancelled", "cancelling", "Cannot cancel run with status 'completed'."}
    assert "cancelled" in outcomes or "cancelling" in outcomes


async def test_outputs_never_submitted_expire_the_run(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("core.run_plans.CLIENT_OUTPUT_SECONDS", 0.3)
    fake_model.script = weather_script
    run = await paused_run(client_a)
    assert run.expires_at is not None
    expired = await wait_for(client_a, run, "expired")
    assert (expired.expires_at, expired.last_error, expired.required_action) == (None, None, None)
    assert expired.usage is not None
    with pytest.raises(openai.BadRequestError, match="status expired"):
        await client_a.beta.threads.runs.submit_tool_outputs(
            run_id=run.id,
            thread_id=run.thread_id,
            tool_outputs=[{"tool_call_id": run.required_action.submit_tool_outputs.tool_calls[0].id, "output": "x"}],  # type: ignore[union-attr]
        )


async def test_a_thread_takes_no_second_run_and_no_message_while_a_run_is_active(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    fake_model.script = weather_script
    run = await paused_run(client_a)
    with pytest.raises(openai.BadRequestError) as second:
        await client_a.beta.threads.runs.create(thread_id=run.thread_id, assistant_id=run.assistant_id)
    assert second.value.body["message"] == f"Thread {run.thread_id} already has an active run {run.id}."
    with pytest.raises(openai.BadRequestError) as message:
        await client_a.beta.threads.messages.create(run.thread_id, role="user", content="And tomorrow?")
    assert message.value.body["message"] == f"Can't add messages to {run.thread_id} while a run {run.id} is active."
    assert len((await client_a.beta.threads.messages.list(run.thread_id)).data) == 1

    await client_a.beta.threads.runs.cancel(run.id, thread_id=run.thread_id)
    await client_a.beta.threads.messages.create(run.thread_id, role="user", content="And tomorrow?")
    again = await client_a.beta.threads.runs.create(thread_id=run.thread_id, assistant_id=run.assistant_id)
    assert again.status == "queued"


async def test_steps_list_and_retrieve_with_their_details(client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI) -> None:
    fake_model.script = weather_script
    run = await paused_run(client_a)
    [call] = run.required_action.submit_tool_outputs.tool_calls  # type: ignore[union-attr]
    waiting = (await client_a.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id)).data
    assert [(s.type, s.status) for s in waiting] == [("tool_calls", "in_progress")]
    await client_a.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id,
        thread_id=run.thread_id,
        tool_outputs=[{"tool_call_id": call.id, "output": "rain"}],
        poll_interval_ms=POLL,
    )
    steps = (await client_a.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id, order="asc")).data
    assert [(s.type, s.status, s.run_id, s.thread_id, s.assistant_id) for s in steps] == [
        ("tool_calls", "completed", run.id, run.thread_id, run.assistant_id),
        ("message_creation", "completed", run.id, run.thread_id, run.assistant_id),
    ]
    tool, creation = steps
    assert tool.step_details.type == "tool_calls"
    [tool_call] = tool.step_details.tool_calls
    assert tool_call.type == "function"
    assert (tool_call.id, tool_call.function.name, tool_call.function.output) == (call.id, "get_weather", "rain")
    assert json.loads(tool_call.function.arguments) == {"city": "Oslo"}
    assert tool.completed_at is not None
    [answer] = (await client_a.beta.threads.messages.list(run.thread_id, run_id=run.id)).data
    assert creation.step_details.type == "message_creation"
    assert creation.step_details.message_creation.message_id == answer.id
    for step in steps:
        assert await client_a.beta.threads.runs.steps.retrieve(step.id, thread_id=run.thread_id, run_id=run.id) == step
    with pytest.raises(openai.NotFoundError, match="No run step found with id 'step_nope'"):
        await client_a.beta.threads.runs.steps.retrieve("step_nope", thread_id=run.thread_id, run_id=run.id)


async def test_modify_a_runs_metadata(client_a: openai.AsyncOpenAI) -> None:
    helper = await assistant(client_a)
    on = await thread(client_a)
    run = await client_a.beta.threads.runs.create_and_poll(
        thread_id=on.id, assistant_id=helper.id, poll_interval_ms=POLL
    )
    modified = await client_a.beta.threads.runs.update(run.id, thread_id=on.id, metadata={"reviewed": "yes"})
    assert modified.metadata == {"reviewed": "yes"}
    assert (await client_a.beta.threads.runs.retrieve(run.id, thread_id=on.id)).metadata == {"reviewed": "yes"}


@pytest.mark.parametrize(
    ("answer", "code", "words"),
    [
        (Error(429, "slow down: internal detail", retry_after_ms=1), "rate_limit_exceeded", "rate-limiting"),
        (Error(400, "context_length_exceeded: internal detail"), "invalid_prompt", "rejected the request"),
        (Error(500, "internal detail", retry_after_ms=1), "server_error", "returned an error"),
        (Raw(b"<html>internal detail</html>"), "server_error", "check OPENAI_BASE_URL"),
    ],
)
async def test_a_failed_run_says_why_for_people_in_the_old_codes(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI, answer: Error | Raw, code: str, words: str
) -> None:
    fake_model.script = lambda request: answer
    helper = await assistant(client_a)
    on = await thread(client_a)
    run = await client_a.beta.threads.runs.create_and_poll(
        thread_id=on.id, assistant_id=helper.id, poll_interval_ms=POLL
    )
    assert run.status == "failed"
    assert run.failed_at is not None
    assert run.completed_at is None
    assert run.last_error is not None
    assert run.last_error.code == code
    assert words in run.last_error.message
    assert "internal detail" not in run.last_error.message
    assert "Error" not in run.last_error.message  # no exception names


async def test_an_unknown_model_fails_the_run_naming_the_model(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    fake_model.script = lambda request: Error(404, "The model does not exist")
    helper = await assistant(client_a)
    on = await thread(client_a)
    run = await client_a.beta.threads.runs.create_and_poll(
        thread_id=on.id, assistant_id=helper.id, model="gpt-4-turbo", poll_interval_ms=POLL
    )
    assert run.last_error is not None
    assert (run.last_error.code, run.model) == ("invalid_prompt", "gpt-4-turbo")
    assert "'gpt-4-turbo'" in run.last_error.message


async def test_unknown_ids_are_404s(client_a: openai.AsyncOpenAI) -> None:
    helper = await assistant(client_a)
    on = await thread(client_a)
    with pytest.raises(openai.NotFoundError, match="No thread found with id 'thread_nope'"):
        await client_a.beta.threads.runs.create(thread_id="thread_nope", assistant_id=helper.id)
    with pytest.raises(openai.NotFoundError, match="No assistant found with id 'asst_nope'"):
        await client_a.beta.threads.runs.create(thread_id=on.id, assistant_id="asst_nope")
    with pytest.raises(openai.NotFoundError, match="No assistant found with id 'asst_nope'"):
        await client_a.beta.threads.create_and_run(assistant_id="asst_nope", thread={"messages": []})
    assert (await client_a.beta.threads.runs.list(on.id)).data == []
    for call in (
        client_a.beta.threads.runs.retrieve("run_nope", thread_id=on.id),
        client_a.beta.threads.runs.cancel("run_nope", thread_id=on.id),
        client_a.beta.threads.runs.update("run_nope", thread_id=on.id, metadata={}),
        client_a.beta.threads.runs.steps.list("run_nope", thread_id=on.id),
        client_a.beta.threads.runs.list("thread_nope"),
    ):
        with pytest.raises(openai.NotFoundError):
            await call


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": 3}, "temperature"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"tool_choice": {"type": "function", "function": {"name": "bad name"}}}, "tool_choice.function.name"),
        ({"truncation_strategy": {"type": "last_messages", "last_messages": 0}}, "truncation_strategy.last_messages"),
        ({"max_completion_tokens": 5}, "max_completion_tokens"),
        ({"additional_messages": [{"role": "user", "content": ""}]}, "additional_messages[0].content"),
        ({"tools": [{"type": "browser"}]}, "tools[0].type"),
    ],
)
async def test_invalid_run_fields_are_400s_naming_the_parameter(
    client_a: openai.AsyncOpenAI, fields: dict[str, Any], param: str
) -> None:
    helper = await assistant(client_a)
    on = await thread(client_a)
    with pytest.raises(openai.BadRequestError) as caught:
        await client_a.beta.threads.runs.create(thread_id=on.id, assistant_id=helper.id, extra_body=fields)
    assert caught.value.param == param
    assert (await client_a.beta.threads.runs.list(on.id)).data == []


async def test_deleting_a_thread_cancels_its_run_first(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI, service: Threadline, caplog: pytest.LogCaptureFixture
) -> None:
    fake_model.script = lambda request: Hang()
    helper = await assistant(client_a)
    on = await thread(client_a)
    run = await client_a.beta.threads.runs.create(thread_id=on.id, assistant_id=helper.id)
    await wait_for(client_a, run, "in_progress")
    with caplog.at_level(logging.WARNING):
        deleted = await client_a.beta.threads.delete(on.id)
        assert deleted.deleted
        async with asyncio.timeout(3):  # the run stopped: its model call is not left to time out (5 s)
            await service.wait_idle()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with pytest.raises(openai.NotFoundError):
        await client_a.beta.threads.runs.retrieve(run.id, thread_id=on.id)


async def test_another_key_reaches_none_of_the_runs(
    client_a: openai.AsyncOpenAI, client_b: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    fake_model.script = weather_script
    run = await paused_run(client_a)
    [call] = run.required_action.submit_tool_outputs.tool_calls  # type: ignore[union-attr]
    runs_b = client_b.beta.threads.runs
    for attempt in (
        runs_b.retrieve(run.id, thread_id=run.thread_id),
        runs_b.cancel(run.id, thread_id=run.thread_id),
        runs_b.update(run.id, thread_id=run.thread_id, metadata={"x": "y"}),
        runs_b.submit_tool_outputs(
            run_id=run.id, thread_id=run.thread_id, tool_outputs=[{"tool_call_id": call.id, "output": "stolen"}]
        ),
        runs_b.list(run.thread_id),
        runs_b.steps.list(run.id, thread_id=run.thread_id),
        runs_b.create(thread_id=run.thread_id, assistant_id=run.assistant_id),
        client_b.beta.threads.messages.create(run.thread_id, role="user", content="hi"),
        client_b.beta.threads.delete(run.thread_id),
    ):
        with pytest.raises(openai.NotFoundError):
            await attempt

    own_thread = await thread(client_b)
    with pytest.raises(openai.NotFoundError, match="No assistant found"):  # A's assistant, on B's thread
        await runs_b.create(thread_id=own_thread.id, assistant_id=run.assistant_id)
    with pytest.raises(openai.NotFoundError, match="No assistant found"):
        await client_b.beta.threads.create_and_run(assistant_id=run.assistant_id)
    own_assistant = await assistant(client_b)
    with pytest.raises(openai.NotFoundError, match="No thread found"):  # B's assistant, on A's thread
        await runs_b.create(thread_id=run.thread_id, assistant_id=own_assistant.id)

    still = await client_a.beta.threads.runs.retrieve(run.id, thread_id=run.thread_id)
    assert (still.status, still.metadata) == ("requires_action", {})


async def test_a_run_still_going_tells_the_sdks_poll_helper_when_to_ask_again(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    fake_model.script = lambda request: Reply(text="Later.", delay=1.0)
    helper = await assistant(client_a)
    on = await thread(client_a)
    run = await client_a.beta.threads.runs.create(thread_id=on.id, assistant_id=helper.id)
    going = await client_a.beta.threads.runs.with_raw_response.retrieve(thread_id=on.id, run_id=run.id)
    assert going.parse().status in ("queued", "in_progress")
    assert going.headers["openai-poll-after-ms"] == "100"
    done = await client_a.beta.threads.runs.poll(thread_id=on.id, run_id=run.id)  # no interval given: the header's
    assert done.status == "completed"
    ended = await client_a.beta.threads.runs.with_raw_response.retrieve(thread_id=on.id, run_id=run.id)
    assert "openai-poll-after-ms" not in ended.headers


async def test_reasoning_effort_reaches_the_model_and_is_dropped_where_the_endpoint_refuses_it(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    refuse = {"on": False}

    def script(request: dict[str, Any]) -> Reply | Error:
        if refuse["on"] and "reasoning_effort" in request:
            return Error(400, "Unrecognized request argument supplied: reasoning_effort")
        return Reply(text="thought about it")

    fake_model.script = script
    helper = await assistant(client_a, reasoning_effort="low")
    assert (await client_a.beta.assistants.retrieve(helper.id)).model_dump().get("reasoning_effort") == "low"
    on = await thread(client_a)
    run = await client_a.beta.threads.runs.create_and_poll(
        thread_id=on.id, assistant_id=helper.id, poll_interval_ms=POLL
    )
    assert run.status == "completed"
    assert fake_model.chat_requests[-1]["reasoning_effort"] == "low"
    run = await client_a.beta.threads.runs.create_and_poll(
        thread_id=on.id, assistant_id=helper.id, reasoning_effort="high", poll_interval_ms=POLL
    )
    assert fake_model.chat_requests[-1]["reasoning_effort"] == "high"

    refuse["on"] = True  # an endpoint that does not take it: asked again without it, and not sent it again
    asked = len(fake_model.chat_requests)
    run = await client_a.beta.threads.runs.create_and_poll(
        thread_id=on.id, assistant_id=helper.id, poll_interval_ms=POLL
    )
    assert run.status == "completed"
    sent = fake_model.chat_requests[asked:]
    assert ["reasoning_effort" in r for r in sent] == [True, False]
    await client_a.beta.threads.runs.create_and_poll(thread_id=on.id, assistant_id=helper.id, poll_interval_ms=POLL)
    assert "reasoning_effort" not in fake_model.chat_requests[-1]
    with pytest.raises(openai.BadRequestError):
        await client_a.beta.assistants.create(model="fake-model", reasoning_effort="extreme")  # type: ignore[arg-type]
