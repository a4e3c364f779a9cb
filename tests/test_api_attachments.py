"""Message attachments and vector stores made inline, over the Assistants-compatible API with the real openai
SDK: file_search attachments land in the thread's vector store (made on demand), which the thread's runs
search, and ``tool_resources.file_search.vector_stores`` makes the store it names."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, tool_results
from tests.test_api_file_search import HANDBOOK, ONBOARDING
from tests.test_api_runs import POLL

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks the retired API deprecated


def searcher(request: dict[str, Any]) -> Reply:
    """Searches for holidays, then answers citing the first passage."""
    if tool_results(request):
        return Reply(text="That is in the handbook [1].")
    return Reply(tool_calls=(ToolCall("file_search", {"query": "holiday days"}),))


async def search_assistant(client: openai.AsyncOpenAI, **fields: Any) -> openai.types.beta.Assistant:
    return await client.beta.assistants.create(
        model="fake-model", instructions="Answer from the files.", tools=[{"type": "file_search"}], **fields
    )


async def upload(client: openai.AsyncOpenAI, name: str, data: bytes) -> str:
    return (await client.files.create(file=(name, data), purpose="assistants")).id


def for_search(file_id: str) -> list[dict[str, Any]]:
    return [{"file_id": file_id, "tools": [{"type": "file_search"}]}]


async def test_a_file_attached_for_file_search_goes_into_the_threads_vector_store_and_its_run_finds_it(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    fake_model.script = searcher
    handbook = await upload(client_a, "handbook.md", HANDBOOK)
    thread = await client_a.beta.threads.create()
    assert thread.tool_resources is None or thread.tool_resources.file_search is None
    message = await client_a.beta.threads.messages.create(
        thread.id, role="user", content="How many holiday days?", attachments=for_search(handbook)
    )
    assert [(a.file_id, [t.type for t in a.tools or []]) for a in message.attachments or []] == [
        (handbook, ["file_search"])
    ]
    thread = await client_a.beta.threads.retrieve(thread.id)
    assert thread.tool_resources is not None
    assert thread.tool_resources.file_search is not None
    [store] = thread.tool_resources.file_search.vector_store_ids or []  # made on demand, as the old API did
    assert [f.id for f in (await client_a.vector_stores.files.list(store)).data] == [handbook]

    # The run starts at once: it waits for the store's indexing itself, as the old API held runs back.
    run = await client_a.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=(await search_assistant(client_a)).id, poll_interval_ms=POLL
    )
    assert run.status == "completed", run.last_error
    assert "27 days" in tool_results(fake_model.chat_requests[-1])[0]["content"]
    question, answer = (await client_a.beta.threads.messages.list(thread.id, order="asc")).data
    assert question.attachments == message.attachments  # listed back with its message
    [part] = answer.content
    assert part.type == "text"
    [citation] = part.text.annotations
    assert citation.type == "file_citation"
    assert citation.file_citation.file_id == handbook  # type: ignore[union-attr]

    # A second attachment joins the same store; so does one sent with a run's additional messages.
    onboarding = await upload(client_a, "onboarding.md", ONBOARDING)
    run = await client_a.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=run.assistant_id,
        additional_messages=[{"role": "user", "content": "And new starters?", "attachments": for_search(onboarding)}],
        poll_interval_ms=POLL,
    )
    assert run.status == "completed", run.last_error
    thread = await client_a.beta.threads.retrieve(thread.id)
    assert thread.tool_resources is not None
    assert thread.tool_resources.file_search is not None
    assert thread.tool_resources.file_search.vector_store_ids == [store]
    assert {f.id for f in (await client_a.vector_stores.files.list(store)).data} == {handbook, onboarding}
    assert "office manager" in tool_results(fake_model.chat_requests[-1])[0]["content"]


async def test_attachments_in_create_and_run_are_searched_by_that_run(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    fake_model.script = searcher
    handbook = await upload(client_a, "handbook.md", HANDBOOK)
    helper = await search_assistant(client_a)
    run = await client_a.beta.threads.create_and_run_poll(
        assistant_id=helper.id,
        thread={"messages": [{"role": "user", "content": "Holidays?", "attachments": for_search(handbook)}]},
        poll_interval_ms=POLL,
    )
    assert run.status == "completed", run.last_error
    assert "27 days" in tool_results(fake_model.chat_requests[-1])[0]["content"]


async def test_the_inline_vector_stores_form_makes_the_store_for_a_thread_and_an_assistant(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    fake_model.script = searcher
    handbook = await upload(client_a, "handbook.md", HANDBOOK)
    onboarding = await upload(client_a, "onboarding.md", ONBOARDING)
    helper = await search_assistant(
        client_a, tool_resources={"file_search": {"vector_stores": [{"file_ids": [onboarding]}]}}
    )
    assert helper.tool_resources is not None
    assert helper.tool_resources.file_search is not None
    [for_assistant] = helper.tool_resources.file_search.vector_store_ids or []
    thread = await client_a.beta.threads.create(
        messages=[{"role": "user", "content": "Holidays?"}],
        tool_resources={
            "file_search": {
                "vector_stores": [
                    {"file_ids": [handbook], "metadata": {"team": "hr"}, "chunking_strategy": {"type": "auto"}}
                ]
            }
        },
    )
    assert thread.tool_resources is not None
    assert thread.tool_resources.file_search is not None
    [for_thread] = thread.tool_resources.file_search.vector_store_ids or []
    made = await client_a.vector_stores.retrieve(for_thread)
    assert made.metadata == {"team": "hr"}
    assert [f.id for f in (await client_a.vector_stores.files.list(for_thread)).data] == [handbook]
    assert (await client_a.beta.assistants.retrieve(helper.id)).tool_resources == helper.tool_resources

    run = await client_a.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=POLL
    )
    assert run.status == "completed", run.last_error
    found = tool_results(fake_model.chat_requests[-1])[0]["content"]
    assert "27 days" in found  # the thread's store
    assert "office manager" in found  # and the assistant's
    assert for_assistant != for_thread


@pytest.mark.parametrize(
    ("resources", "param", "words"),
    [
        (
            {"file_search": {"vector_store_ids": ["vs_1"], "vector_stores": [{"file_ids": []}]}},
            "tool_resources.file_search",
            "not both",
        ),
        (
            {"file_search": {"vector_stores": [{"file_ids": [], "chunking_strategy": {"type": "static"}}]}},
            "tool_resources.file_search.vector_stores[0].chunking_strategy",
            "static chunking strategy is not supported",
        ),
        (
            {"file_search": {"vector_stores": [{"file_ids": []}, {"file_ids": []}]}},
            "tool_resources.file_search.vector_stores",
            "at most 1",
        ),
    ],
)
async def test_bad_inline_vector_stores_are_400s_naming_the_parameter(
    client_a: openai.AsyncOpenAI, resources: dict[str, Any], param: str, words: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await client_a.beta.threads.create(tool_resources=resources)  # type: ignore[arg-type]
    assert raised.value.param == param
    assert words in raised.value.message
    assert (await client_a.vector_stores.list()).data == []  # nothing made


async def test_another_keys_file_is_refused_as_an_attachment_and_in_an_inline_store(
    client_a: openai.AsyncOpenAI, client_b: openai.AsyncOpenAI
) -> None:
    theirs = await upload(client_a, "handbook.md", HANDBOOK)
    thread = await client_b.beta.threads.create()
    with pytest.raises(openai.BadRequestError) as refused:
        await client_b.beta.threads.messages.create(
            thread.id, role="user", content="mine now", attachments=for_search(theirs)
        )
    assert refused.value.param == "attachments[0].file_id"
    assert f"No file found with id '{theirs}'" in refused.value.message
    assert (await client_b.beta.threads.messages.list(thread.id)).data == []  # nothing added
    assert (await client_b.beta.threads.retrieve(thread.id)).tool_resources is None

    with pytest.raises(openai.BadRequestError) as inline:
        await client_b.beta.threads.create(tool_resources={"file_search": {"vector_stores": [{"file_ids": [theirs]}]}})
    assert inline.value.param == "tool_resources.file_search.vector_stores[0].file_ids[0]"
    with pytest.raises(openai.BadRequestError) as in_run:
        await client_b.beta.threads.create_and_run(
            assistant_id=(await search_assistant(client_b)).id,
            thread={"tool_resources": {"file_search": {"vector_stores": [{"file_ids": [theirs]}]}}},
        )
    assert in_run.value.param == "thread.tool_resources.file_search.vector_stores[0].file_ids[0]"
    with pytest.raises(openai.BadRequestError) as for_assistant:
        await search_assistant(client_b, tool_resources={"file_search": {"vector_stores": [{"file_ids": [theirs]}]}})
    assert for_assistant.value.param == "tool_resources.file_search.vector_stores[0].file_ids[0]"
    assert (await client_b.vector_stores.list()).data == []
