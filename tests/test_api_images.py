"""Image content parts over the Assistants-compatible API, through the real openai SDK: ``image_file`` (an
upload of the same key) and ``image_url`` are stored with their message, listed as the SDK's content blocks,
and shown to the model by every run of the thread."""

from __future__ import annotations

import base64
from typing import Any

import openai
import pytest
from openai.types.beta.threads import ImageFileContentBlock, ImageURLContentBlock, TextContentBlock

from tests.fakes.files import png_image
from tests.fakes.openai_server import FakeOpenAI, Reply, image_urls

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks the retired API deprecated

POLL = 20
PNG = png_image(6, 4)
LINK = "https://images.example.com/diagram.png"


def seeing(request: dict[str, Any]) -> Reply:
    return Reply(text=f"{len(image_urls(request, last=False))} images")


async def upload(client: openai.AsyncOpenAI, name: str = "diagram.png", data: bytes = PNG) -> str:
    return (await client.files.create(file=(name, data), purpose="vision")).id


async def test_image_parts_are_stored_listed_as_the_sdk_types_and_shown_to_every_run(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    fake_model.script = seeing
    file_id = await upload(client_a)
    content: Any = [
        {"type": "text", "text": "Compare these two."},
        {"type": "image_file", "image_file": {"file_id": file_id, "detail": "high"}},
        {"type": "image_url", "image_url": {"url": LINK}},
    ]
    thread = await client_a.beta.threads.create(messages=[{"role": "user", "content": content}])
    [message] = (await client_a.beta.threads.messages.list(thread.id)).data
    text, image_file, image_url = message.content
    assert isinstance(text, TextContentBlock)
    assert text.text.value == "Compare these two."
    assert isinstance(image_file, ImageFileContentBlock)
    assert (image_file.image_file.file_id, image_file.image_file.detail) == (file_id, "high")
    assert isinstance(image_url, ImageURLContentBlock)
    assert (image_url.image_url.url, image_url.image_url.detail) == (LINK, None)

    helper = await client_a.beta.assistants.create(model="fake-model", instructions="Look closely.")
    run = await client_a.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=POLL
    )
    assert run.status == "completed"
    [request] = fake_model.chat_requests
    [user] = [m for m in request["messages"] if m["role"] == "user"]
    assert user["content"][0] == {"type": "text", "text": "Compare these two."}
    assert user["content"][1]["image_url"] == {
        "url": f"data:image/png;base64,{base64.b64encode(PNG).decode()}",
        "detail": "high",
    }
    assert user["content"][2]["image_url"] == {"url": LINK, "detail": "auto"}

    # A later run of the thread is shown them again, as the old API's threads were; here with a new one.
    await client_a.beta.threads.messages.create(
        thread.id, role="user", content=[{"type": "image_url", "image_url": {"url": LINK, "detail": "low"}}]
    )
    again = await client_a.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=POLL
    )
    assert again.status == "completed"
    assert len(image_urls(fake_model.chat_requests[-1], last=False)) == 3
    listed = (await client_a.beta.threads.messages.list(thread.id, order="asc")).data
    assert [block.type for block in listed[-1].content] == ["text"]  # the answer: "3 images"
    assert [block.type for block in listed[-2].content] == ["image_url"]


async def test_additional_messages_of_a_run_carry_images_too(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    fake_model.script = seeing
    file_id = await upload(client_a)
    helper = await client_a.beta.assistants.create(model="fake-model")
    thread = await client_a.beta.threads.create()
    run = await client_a.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=helper.id,
        additional_messages=[{"role": "user", "content": [{"type": "image_file", "image_file": {"file_id": file_id}}]}],
        poll_interval_ms=POLL,
    )
    assert run.status == "completed"
    assert image_urls(fake_model.chat_requests[-1]) == [f"data:image/png;base64,{base64.b64encode(PNG).decode()}"]


async def test_an_image_file_another_key_uploaded_or_that_is_no_image_is_a_400(
    client_a: openai.AsyncOpenAI, client_b: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    theirs = await upload(client_b)
    notes = await upload(client_a, "notes.txt", b"not a picture")
    thread = await client_a.beta.threads.create()
    for file_id, words in ((theirs, f"No file found with id '{theirs}'"), (notes, "notes.txt")):
        part: Any = {"type": "image_file", "image_file": {"file_id": file_id}}
        with pytest.raises(openai.BadRequestError) as raised:
            await client_a.beta.threads.messages.create(
                thread.id, role="user", content=[{"type": "text", "text": "x"}, part]
            )
        assert raised.value.param == "content[1].image_file.file_id"
        assert words in raised.value.message
    helper = await client_a.beta.assistants.create(model="fake-model")
    with pytest.raises(openai.BadRequestError) as raised:
        await client_a.beta.threads.create_and_run(
            assistant_id=helper.id,
            thread={"messages": [{"role": "user", "content": [part]}]},
        )
    assert raised.value.param == "thread.messages[0].content[0].image_file.file_id"
    assert (await client_a.beta.threads.messages.list(thread.id)).data == []
    assert fake_model.chat_requests == []


async def test_an_image_file_deleted_after_its_message_becomes_a_placeholder(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    fake_model.script = seeing
    file_id = await upload(client_a)
    part: Any = {"type": "image_file", "image_file": {"file_id": file_id}}
    thread = await client_a.beta.threads.create(messages=[{"role": "user", "content": [part]}])
    await client_a.files.delete(file_id)
    helper = await client_a.beta.assistants.create(model="fake-model")
    run = await client_a.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=POLL
    )
    assert run.status == "completed"
    [user] = [m for m in fake_model.chat_requests[-1]["messages"] if m["role"] == "user"]
    assert user["content"] == [{"type": "text", "text": f"[image {file_id}: not shown to you]"}]
