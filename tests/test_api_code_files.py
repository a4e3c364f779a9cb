"""The code interpreter's files over the Assistants-compatible API, with the real openai SDK, the scripted
model and the real sandbox: files in /mnt/data from the thread, its messages and the assistant; what the
code writes kept as ``assistants_output`` files and shown in the answer as the old API showed them."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai.lib.streaming import AsyncAssistantEventHandler
from openai.types.beta.threads import ImageFile, Message

from core.service import Threadline
from tests.conftest import ServiceFactory
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, last_user_text, tool_results
from tests.test_api_runs import POLL
from tests.test_code_interpreter import SALES, SANDBOX_PYTHON

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks the retired API deprecated

PNG = b"\x89PNG\r\n\x1a\n"
ANALYSE = """
import pandas as pd
import matplotlib.pyplot as plt
df = pd.read_csv('/mnt/data/sales.csv')
print('total', df.revenue.sum())
df.plot(x='month', y='revenue')
plt.savefig('revenue.png')
plt.close('all')
df.describe().to_csv('summary.csv')
"""
ANSWER = "Revenue totals 400. The summary is in [summary.csv](sandbox:/mnt/data/summary.csv)."


def analyst(request: dict[str, Any]) -> Reply:
    """Runs the code the question names (its last word: a key of CODE, or Python after 'run:'), then answers
    with the tool's result, or ANSWER when asked to analyse."""
    if results := tool_results(request):
        content = results[-1]["content"]
        return Reply(text=ANSWER if "total 400" in content else f"Result: {content}")
    question = last_user_text(request)
    code = ANALYSE if question.endswith("analyse") else question.split("run:", 1)[-1]
    return Reply(tool_calls=(ToolCall("code_interpreter", {"code": code}),))


@pytest.fixture
async def service(open_service: ServiceFactory, fake_model: FakeOpenAI) -> Threadline:
    """The API's service with the code interpreter on (the API fixtures stand in front of it)."""
    assert SANDBOX_PYTHON.exists(), "the sandbox's Python is missing: run `make sandbox` (make test does)"
    fake_model.script = analyst
    opened = await open_service(code_interpreter=True, sandbox_python=SANDBOX_PYTHON, sandbox_call_seconds=10)
    assert opened._sessions is not None, "no sandbox works on this machine; see the start-up warning"
    return opened


async def analyst_assistant(client: openai.AsyncOpenAI, **fields: Any) -> openai.types.beta.Assistant:
    return await client.beta.assistants.create(
        model="fake-model", instructions="You analyse data.", tools=[{"type": "code_interpreter"}], **fields
    )


async def upload(client: openai.AsyncOpenAI, name: str, data: bytes) -> str:
    return (await client.files.create(file=(name, data), purpose="assistants")).id


def text_of(message: Message) -> Any:
    [text] = [part.text for part in message.content if part.type == "text"]
    return text


async def test_a_csv_attached_for_the_code_interpreter_is_read_and_its_chart_and_summary_come_back(
    client_a: openai.AsyncOpenAI, client_b: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    sales = await upload(client_a, "sales.csv", SALES)
    helper = await analyst_assistant(client_a)
    thread = await client_a.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": "Plot my sales: analyse",
                "attachments": [{"file_id": sales, "tools": [{"type": "code_interpreter"}]}],
            }
        ]
    )
    assert thread.tool_resources is not None
    assert thread.tool_resources.code_interpreter is not None
    assert thread.tool_resources.code_interpreter.file_ids == [sales]  # where the old API kept it
    run = await client_a.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=POLL
    )
    assert run.status == "completed", run.last_error

    system = fake_model.chat_requests[0]["messages"][0]["content"]
    assert f"/mnt/data/sales.csv (file {sales}, uploaded as sales.csv)" in system  # the model is told where it is
    assert "total 400" in tool_results(fake_model.chat_requests[-1])[0]["content"]  # the code read it

    question, answer = (await client_a.beta.threads.messages.list(thread.id, order="asc")).data
    assert [(a.file_id, [t.type for t in a.tools or []]) for a in question.attachments or []] == [
        (sales, ["code_interpreter"])
    ]
    assert [part.type for part in answer.content] == ["image_file", "text"]  # as the old API: the image first
    chart = answer.content[0].image_file.file_id  # type: ignore[union-attr]
    text = text_of(answer)
    assert text.value == ANSWER
    [link] = text.annotations
    assert link.type == "file_path"
    assert text.value[link.start_index : link.end_index] == link.text == "sandbox:/mnt/data/summary.csv"
    summary = link.file_path.file_id  # type: ignore[union-attr]

    image = await client_a.files.content(chart)
    assert image.content.startswith(PNG)
    steps = (await client_a.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc")).data
    [call] = [c for s in steps if s.step_details.type == "tool_calls" for c in s.step_details.tool_calls]
    assert call.type == "code_interpreter"  # its step shows the image the code made, after its logs
    assert [o.type for o in call.code_interpreter.outputs] == ["logs", "image"]
    assert call.code_interpreter.outputs[1].image.file_id == chart  # type: ignore[union-attr]
    info = await client_a.files.retrieve(chart)
    assert (info.purpose, info.filename) == ("assistants_output", "/mnt/data/revenue.png")
    assert b"revenue" in (await client_a.files.content(summary)).content
    outputs = (await client_a.files.list(purpose="assistants_output")).data
    assert {f.id for f in outputs} == {chart, summary}
    assert {f.filename for f in outputs} == {"/mnt/data/revenue.png", "/mnt/data/summary.csv"}

    # Another key sees none of it.
    assert (await client_b.files.list(purpose="assistants_output")).data == []
    with pytest.raises(openai.NotFoundError):
        await client_b.files.content(chart)


class ImageRecorder(AsyncAssistantEventHandler):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[ImageFile] = []
        self.texts: list[str] = []
        self.done: list[Message] = []

    async def on_image_file_done(self, image_file: ImageFile) -> None:
        self.images.append(image_file)

    async def on_text_done(self, text: Any) -> None:
        self.texts.append(text.value)

    async def on_message_done(self, message: Message) -> None:
        self.done.append(message)


async def test_a_streamed_run_shows_the_chart_as_an_image_file_of_its_answer(client_a: openai.AsyncOpenAI) -> None:
    sales = await upload(client_a, "sales.csv", SALES)
    helper = await analyst_assistant(client_a, tool_resources={"code_interpreter": {"file_ids": [sales]}})
    thread = await client_a.beta.threads.create(messages=[{"role": "user", "content": "Plot it: analyse"}])
    recorder = ImageRecorder()
    async with client_a.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=helper.id, event_handler=recorder
    ) as stream:
        await stream.until_done()
        run = await stream.get_final_run()
    assert run.status == "completed", run.last_error
    [answer] = (await client_a.beta.threads.messages.list(thread.id, run_id=run.id)).data
    chart = answer.content[0].image_file.file_id  # type: ignore[union-attr]
    assert [image.file_id for image in recorder.images] == [chart]  # the SDK's callback fired for it
    assert recorder.texts == [ANSWER]
    assert recorder.done == [answer]  # the streamed message is the stored one, image first
    assert (await client_a.files.content(chart)).content.startswith(PNG)


async def test_files_keep_their_names_and_a_clash_puts_the_file_id_in_the_path(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    first = await upload(client_a, "data.csv", b"from the thread\n")
    second = await upload(client_a, "data.csv", b"from the assistant\n")
    helper = await analyst_assistant(client_a, tool_resources={"code_interpreter": {"file_ids": [second]}})
    code = f"print(open('data.csv').read(), open('{second}-data.csv').read())"
    thread = await client_a.beta.threads.create(
        messages=[{"role": "user", "content": f"run:{code}"}],
        tool_resources={"code_interpreter": {"file_ids": [first]}},
    )
    run = await client_a.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=POLL
    )
    assert run.status == "completed", run.last_error
    assert "from the thread\n from the assistant" in tool_results(fake_model.chat_requests[-1])[0]["content"]
    system = fake_model.chat_requests[0]["messages"][0]["content"]
    assert f"/mnt/data/data.csv (file {first}, uploaded as data.csv)" in system
    assert f"/mnt/data/{second}-data.csv (file {second}, uploaded as data.csv)" in system


async def test_a_file_attached_later_reaches_the_running_session_and_what_the_code_changed_stays(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    helper = await analyst_assistant(client_a)
    notes = await upload(client_a, "notes.txt", b"first\n")
    attached = [{"file_id": notes, "tools": [{"type": "code_interpreter"}]}]
    thread = await client_a.beta.threads.create(
        messages=[{"role": "user", "content": "run:open('notes.txt', 'a').write('edited\\n')", "attachments": attached}]
    )
    run = await client_a.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=POLL
    )
    assert run.status == "completed", run.last_error

    later = await upload(client_a, "later.txt", b"second\n")
    run = await client_a.beta.threads.runs.create_and_poll(  # the attachment comes with the run's own message
        thread_id=thread.id,
        assistant_id=helper.id,
        additional_messages=[
            {
                "role": "user",
                "content": "run:print(open('notes.txt').read() + open('later.txt').read())",
                "attachments": [{"file_id": later, "tools": [{"type": "code_interpreter"}]}],
            }
        ],
        poll_interval_ms=POLL,
    )
    assert run.status == "completed", run.last_error
    result = tool_results(fake_model.chat_requests[-1])[0]["content"]
    assert "first\nedited\nsecond" in result  # the edit kept (not copied over again), the new file there
    assert "previous session ended" not in result  # the same session
    thread_now = await client_a.beta.threads.retrieve(thread.id)
    assert thread_now.tool_resources is not None
    assert thread_now.tool_resources.code_interpreter is not None
    assert thread_now.tool_resources.code_interpreter.file_ids == [notes, later]


async def test_another_keys_file_never_reaches_the_code(
    client_a: openai.AsyncOpenAI, client_b: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    theirs = await upload(client_a, "sales.csv", SALES)
    with pytest.raises(openai.BadRequestError) as refused:
        await client_b.beta.threads.create(
            messages=[
                {
                    "role": "user",
                    "content": "mine now",
                    "attachments": [{"file_id": theirs, "tools": [{"type": "code_interpreter"}]}],
                }
            ]
        )
    assert refused.value.param == "messages[0].attachments[0].file_id"
    assert f"No file found with id '{theirs}'" in refused.value.message

    # Named in tool_resources (which, as before, are kept as given), it is still not there.
    helper = await analyst_assistant(client_b, tool_resources={"code_interpreter": {"file_ids": [theirs]}})
    thread = await client_b.beta.threads.create(
        messages=[{"role": "user", "content": "run:import os\nprint(sorted(os.listdir('.')))"}]
    )
    run = await client_b.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=POLL
    )
    assert run.status == "completed", run.last_error
    assert "Output:\n[]" in tool_results(fake_model.chat_requests[-1])[0]["content"]
    assert theirs not in json.dumps(fake_model.chat_requests[0]["messages"][0])
