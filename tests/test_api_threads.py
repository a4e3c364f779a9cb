"""Threads and messages over the Assistants-compatible API, driven by the real openai SDK.

An API thread is a channel like any other: the core answers in it, with its messages as history.
"""

from __future__ import annotations

import openai
import pytest

from bots.api.auth import owner_id
from core.api_objects import api_channel
from core.events import RunCompleted
from core.models import Author, Incoming
from core.service import Threadline
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers import API_KEY_A

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks the retired API deprecated


def texts(message: openai.types.beta.threads.Message) -> list[str]:
    return [part.text.value for part in message.content if part.type == "text"]


async def test_thread_create_with_messages_retrieve_modify_delete(client_a: openai.AsyncOpenAI) -> None:
    thread = await client_a.beta.threads.create(
        messages=[
            {"role": "user", "content": "What is our deploy day?", "metadata": {"source": "faq"}},
            {"role": "assistant", "content": [{"type": "text", "text": "Tuesday."}, {"type": "text", "text": "Why?"}]},
        ],
        metadata={"customer": "acme"},
        tool_resources={"file_search": {"vector_store_ids": ["vs_1"]}},
    )
    assert thread.id.startswith("thread_")
    assert thread.object == "thread"
    assert thread.metadata == {"customer": "acme"}
    assert thread.tool_resources is not None
    assert thread.tool_resources.file_search is not None
    assert thread.tool_resources.file_search.vector_store_ids == ["vs_1"]
    assert await client_a.beta.threads.retrieve(thread.id) == thread

    messages = (await client_a.beta.threads.messages.list(thread.id, order="asc")).data
    assert [(m.role, texts(m)) for m in messages] == [
        ("user", ["What is our deploy day?"]),
        ("assistant", ["Tuesday.", "Why?"]),
    ]
    assert messages[0].metadata == {"source": "faq"}
    assert all(m.thread_id == thread.id and m.status == "completed" and m.run_id is None for m in messages)
    assert messages[0].content[0].type == "text"
    assert messages[0].content[0].text.annotations == []

    modified = await client_a.beta.threads.update(thread.id, metadata={"customer": "globex"})
    assert modified.metadata == {"customer": "globex"}
    assert modified.tool_resources == thread.tool_resources  # not sent: kept

    deleted = await client_a.beta.threads.delete(thread.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (thread.id, "thread.deleted", True)
    for call in (
        client_a.beta.threads.retrieve(thread.id),
        client_a.beta.threads.messages.list(thread.id),
        client_a.beta.threads.messages.retrieve(messages[0].id, thread_id=thread.id),
        client_a.beta.threads.delete(thread.id),
    ):
        with pytest.raises(openai.NotFoundError):
            await call


async def test_an_empty_thread(client_a: openai.AsyncOpenAI) -> None:
    thread = await client_a.beta.threads.create()
    assert (thread.metadata, thread.tool_resources) == ({}, None)
    page = await client_a.beta.threads.messages.list(thread.id)
    assert (page.data, page.has_more) == ([], False)


async def test_message_create_retrieve_modify_delete(client_a: openai.AsyncOpenAI) -> None:
    thread = await client_a.beta.threads.create()
    message = await client_a.beta.threads.messages.create(
        thread.id, role="user", content="Is the VPN down?", metadata={"ticket": "42"}
    )
    assert message.id.startswith("msg_")
    assert (message.object, message.role, message.thread_id, message.metadata) == (
        "thread.message",
        "user",
        thread.id,
        {"ticket": "42"},
    )
    assert texts(message) == ["Is the VPN down?"]
    assert (message.assistant_id, message.run_id, message.attachments) == (None, None, [])
    assert await client_a.beta.threads.messages.retrieve(message.id, thread_id=thread.id) == message

    modified = await client_a.beta.threads.messages.update(message.id, thread_id=thread.id, metadata={"ticket": "43"})
    assert modified.metadata == {"ticket": "43"}
    assert texts(modified) == ["Is the VPN down?"]
    unchanged = await client_a.beta.threads.messages.update(message.id, thread_id=thread.id)
    assert unchanged.metadata == {"ticket": "43"}

    deleted = await client_a.beta.threads.messages.delete(message.id, thread_id=thread.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (message.id, "thread.message.deleted", True)
    with pytest.raises(openai.NotFoundError) as raised:
        await client_a.beta.threads.messages.retrieve(message.id, thread_id=thread.id)
    assert raised.value.body["message"] == f"No message found with id '{message.id}'."  # type: ignore[index]
    assert (await client_a.beta.threads.messages.list(thread.id)).data == []


async def test_messages_to_an_unknown_thread_are_404s(client_a: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        await client_a.beta.threads.messages.create("thread_nope", role="user", content="hi")
    assert raised.value.body["message"] == "No thread found with id 'thread_nope'."  # type: ignore[index]


async def test_message_pagination(client_a: openai.AsyncOpenAI) -> None:
    thread = await client_a.beta.threads.create()
    ids = [(await client_a.beta.threads.messages.create(thread.id, role="user", content=f"m{n}")).id for n in range(5)]

    newest = await client_a.beta.threads.messages.list(thread.id, limit=2)
    assert [m.id for m in newest.data] == [ids[4], ids[3]]
    assert newest.has_more is True
    assert [m.id for m in (await client_a.beta.threads.messages.list(thread.id, after=ids[3])).data] == ids[2::-1]
    oldest = await client_a.beta.threads.messages.list(thread.id, order="asc", limit=3, after=ids[0])
    assert [m.id for m in oldest.data] == ids[1:4]
    assert oldest.has_more is True
    back = await client_a.beta.threads.messages.list(thread.id, order="asc", before=ids[2])
    assert [m.id for m in back.data] == ids[:2]
    assert back.has_more is False
    assert [m.id async for m in client_a.beta.threads.messages.list(thread.id, limit=2, order="asc")] == ids

    other = await client_a.beta.threads.create(messages=[{"role": "user", "content": "elsewhere"}])
    other_id = (await client_a.beta.threads.messages.list(other.id)).data[0].id
    with pytest.raises(openai.BadRequestError) as raised:
        await client_a.beta.threads.messages.list(thread.id, after=other_id)  # a cursor from another list
    assert raised.value.param == "after"


async def test_an_api_thread_is_a_channel_the_core_answers_in(
    client_a: openai.AsyncOpenAI, service: Threadline, fake_model: FakeOpenAI
) -> None:
    thread = await client_a.beta.threads.create(
        messages=[
            {"role": "user", "content": "Remember the number 42."},
            {"role": "assistant", "content": "Noted: 42."},
        ]
    )
    await client_a.beta.threads.messages.create(
        thread.id, role="user", content=[{"type": "text", "text": "Part one."}, {"type": "text", "text": "Part two."}]
    )

    channel = api_channel(owner_id(API_KEY_A), thread.id)
    assert await service.store.current_thread(channel) == thread.id
    handle = await service.post(Incoming(channel, Author("U1", ""), "What was the number?"))
    assert handle is not None
    result = await handle.result()
    assert isinstance(result, RunCompleted)

    history = fake_model.chat_requests[-1]["messages"][1:]
    assert [(m["role"], m["content"]) for m in history[:2]] == [
        ("user", "Remember the number 42."),
        ("assistant", "Noted: 42."),
    ]
    assert "Part one." in str(history[2]["content"])
    assert "Part two." in str(history[2]["content"])
    assert history[-1] == {"role": "user", "content": "What was the number?"}

    listed = (await client_a.beta.threads.messages.list(thread.id, order="asc")).data
    assert [m.role for m in listed] == ["user", "assistant", "user", "user", "assistant"]
    answer = listed[-1]
    assert texts(answer) == [result.text]
    assert answer.run_id == handle.run_id
    # run_id filters the list to what that run wrote.
    by_run = (await client_a.beta.threads.messages.list(thread.id, run_id=handle.run_id)).data
    assert [m.id for m in by_run] == [answer.id]
    assert (await client_a.beta.threads.messages.list(thread.id, run_id="run_other")).data == []


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"role": "user", "content": ""}, "content", "must not be empty"),
        ({"role": "user", "content": 5}, "content", "expected a string or an array"),
        ({"role": "system", "content": "hi"}, "role", "'user' or 'assistant'"),
        ({"content": "hi"}, "role", "Missing required parameter"),
        (
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]},
            "content[0].image_url.url",
            "https:// URL",
        ),
        (
            {"role": "user", "content": [{"type": "image_file", "image_file": {"file_id": "file-none"}}]},
            "content[0].image_file.file_id",
            "No file found with id 'file-none'",
        ),
        (
            {"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
            "content[0]",
            "Only a user's message can carry images",
        ),
        ({"role": "user", "content": [{"type": "text"}]}, "content[0].text", "Missing required parameter"),
        (
            {"role": "user", "content": "hi", "attachments": [{"file_id": "file-1"}]},
            "attachments[0].file_id",
            "No file found with id 'file-1'",
        ),
        (
            {"role": "user", "content": "hi", "attachments": [{"file_id": "file-1", "tools": [{"type": "web"}]}]},
            "attachments[0].tools[0].type",
            "is not one of",
        ),
        ({"role": "user", "content": "hi", "metadata": {"k": 1}}, "metadata.k", "expected a string"),
        ({"role": "user", "content": "hi", "metadata": {f"k{n}": "v" for n in range(17)}}, "metadata", "16"),
    ],
)
async def test_bad_messages_are_400s_naming_the_parameter(
    client_a: openai.AsyncOpenAI, body: dict[str, object], param: str, words: str
) -> None:
    thread = await client_a.beta.threads.create()
    with pytest.raises(openai.BadRequestError) as raised:
        await client_a.post(f"/threads/{thread.id}/messages", body=body, cast_to=object)
    assert raised.value.param == param
    assert words in raised.value.message
    with pytest.raises(openai.BadRequestError) as raised:
        await client_a.post("/threads", body={"messages": [body]}, cast_to=object)
    assert raised.value.param == f"messages[0].{param}"
    assert (await client_a.beta.threads.messages.list(thread.id)).data == []
