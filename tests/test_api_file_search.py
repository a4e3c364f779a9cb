"""File search across vector stores: a run whose context names ``collections`` searches those knowledge bases.

Vector stores are filled over the API with the real openai SDK; the search goes through the
core's own ``file_search`` tool, as a run calls it.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from agents.tool_context import ToolContext

from bots.api.auth import owner_id
from core.api_objects import api_channel
from core.knowledge.base import Upload
from core.knowledge.tool import make_file_search_tool, run_context
from core.service import Threadline
from tests.conftest import ServiceFactory
from tests.helpers import API_KEY_A

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks the retired API deprecated

HANDBOOK = b"# Handbook\n\n## Holidays\nEvery employee has 27 days of paid holiday a year.\n"
ONBOARDING = b"# Onboarding\n\n## First week\nNew starters book their holiday days with the office manager.\n"
UNRELATED = b"# Kitchen\n\nThe dishwasher runs at six; holiday rota for the kitchen is on the fridge.\n"


async def file_search(service: Threadline, context: dict[str, Any], query: str) -> str:
    """Call the file_search tool as a run does, with the run's context."""
    tool = make_file_search_tool(service.knowledge)
    raw = json.dumps({"query": query})
    call = ToolContext(context=context, tool_name=tool.name, tool_call_id="call_1", tool_arguments=raw)
    result = await tool.on_invoke_tool(call, raw)
    assert isinstance(result, str)
    return result


async def store_with(client: openai.AsyncOpenAI, name: str, data: bytes) -> str:
    store = await client.vector_stores.create(name=name)
    file = await client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=(name, data))
    assert file.status == "completed"
    return store.id


async def test_a_run_with_collections_finds_passages_in_two_vector_stores(
    client_a: openai.AsyncOpenAI, service: Threadline
) -> None:
    handbook = await store_with(client_a, "handbook.md", HANDBOOK)
    onboarding = await store_with(client_a, "onboarding.md", ONBOARDING)
    kitchen = await store_with(client_a, "kitchen.md", UNRELATED)
    owner = owner_id(API_KEY_A)
    thread_channel = api_channel(owner, "thread_x")
    context = run_context(thread_channel, "run_1") | {
        "collections": [api_channel(owner, handbook), api_channel(owner, onboarding)]
    }

    result = await file_search(service, context, "holiday days")
    assert "handbook.md" in result
    assert "onboarding.md" in result
    assert "kitchen.md" not in result  # a vector store the run was not given
    assert {s["file_name"] for s in context["sources"]} == {"handbook.md", "onboarding.md"}
    assert [s["number"] for s in context["sources"]] == [1, 2]

    # Only the kitchen's store: only its passage.
    only = run_context(thread_channel, "run_2") | {"collections": [api_channel(owner, kitchen)]}
    assert "kitchen.md" in await file_search(service, only, "holiday rota")
    assert "handbook.md" not in await file_search(service, only, "holiday days")


async def test_collections_replace_the_channel_and_the_chat_path_is_unchanged(
    client_a: openai.AsyncOpenAI, service: Threadline
) -> None:
    channel = "slack:T1:CHAT"
    await service.knowledge.add(channel, Upload(name="chat.md", data=UNRELATED))
    handbook = await store_with(client_a, "handbook.md", HANDBOOK)

    chat = await file_search(service, run_context(channel, "run_1"), "holiday")
    assert "chat.md" in chat
    assert "handbook.md" not in chat

    collections = run_context(channel, "run_2") | {"collections": [api_channel(owner_id(API_KEY_A), handbook)]}
    searched = await file_search(service, collections, "holiday")
    assert "handbook.md" in searched
    assert "chat.md" not in searched  # the channel is not searched when the run names its collections

    none = run_context(channel, "run_3") | {"collections": []}
    assert "not available" in await file_search(service, none, "holiday")
    missing = run_context(channel, "run_4") | {"collections": [api_channel(owner_id(API_KEY_A), handbook)]}
    assert "No passage in the attached files" in await file_search(service, missing, "zebra")


async def test_search_many_ranks_across_knowledge_bases_by_score(open_service: ServiceFactory) -> None:
    for embedding_model in (None, "fake-embedding"):
        service = await open_service(assistants_file=None, embedding_model=embedding_model)
        strong = "api:o:vs_strong"
        weak = "api:o:vs_weak"
        await service.knowledge.add(weak, Upload(name="weak.txt", data=b"Holiday is mentioned once here, among cats."))
        await service.knowledge.add(
            strong, Upload(name="strong.txt", data=b"Unused holiday days expire at the end of March each year.")
        )
        # The second time round the files are there already, without embeddings: embedded in the background.
        await service.knowledge.settle()
        hits = await service.knowledge.search_many([weak, strong], "when do unused holiday days expire?")
        assert [h.file_name for h in hits] == ["strong.txt", "weak.txt"], embedding_model
        assert await service.knowledge.search_many([], "holiday") == []
        assert await service.knowledge.searchable([weak, "api:o:vs_empty"])
        assert not await service.knowledge.searchable(["api:o:vs_empty"])
        await service.close()


async def test_document_qa_over_the_api_answers_with_a_file_citation(
    client_a: openai.AsyncOpenAI, fake_model: Any
) -> None:
    """The old API's document Q&A flow: upload, vector store, assistant with file_search, ask, cited answer."""
    from tests.fakes.openai_server import Reply, ToolCall, tool_results

    def script(request: dict[str, Any]) -> Reply:
        if results := tool_results(request):
            assert "27 days" in results[0]["content"]
            return Reply(text="Everyone has 27 days of holiday a year [1].")
        return Reply(tool_calls=(ToolCall("file_search", {"query": "holiday days"}),))

    fake_model.script = script
    upload = await client_a.files.create(file=("handbook.md", HANDBOOK), purpose="assistants")
    store = await client_a.vector_stores.create(name="Handbook")
    attached = await client_a.vector_stores.files.create_and_poll(vector_store_id=store.id, file_id=upload.id)
    assert attached.status == "completed"
    helper = await client_a.beta.assistants.create(
        model="fake-model",
        instructions="Answer from the handbook.",
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
    )
    thread = await client_a.beta.threads.create(messages=[{"role": "user", "content": "How many holiday days?"}])
    run = await client_a.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=50
    )
    assert run.status == "completed"
    answer = (await client_a.beta.threads.messages.list(thread.id, limit=1)).data[0]
    text = answer.content[0].text  # type: ignore[union-attr]
    assert text.value == "Everyone has 27 days of holiday a year [1]."
    (citation,) = text.annotations
    assert citation.type == "file_citation"
    assert citation.file_citation.file_id == upload.id  # type: ignore[union-attr]
    assert text.value[citation.start_index : citation.end_index] == citation.text == "[1]"


# -- vector_stores.search and vector_stores.files.content -------------------------------------------------


async def _attach(client: openai.AsyncOpenAI, store: str, name: str, data: bytes, **attributes: Any) -> str:
    upload = await client.files.create(file=(name, data), purpose="assistants")
    done = await client.vector_stores.files.create_and_poll(
        vector_store_id=store, file_id=upload.id, attributes=attributes or None
    )
    assert done.status == "completed"
    return upload.id


async def test_a_vector_store_is_searched_with_scores_attributes_and_filters(client_a: openai.AsyncOpenAI) -> None:
    store = (await client_a.vector_stores.create(name="policies")).id
    handbook = await _attach(client_a, store, "handbook.md", HANDBOOK, team="people", year=2026)
    onboarding = await _attach(client_a, store, "onboarding.md", ONBOARDING, team="office", year=2025)
    await _attach(client_a, store, "kitchen.md", UNRELATED, team="office", year=2024)

    page = await client_a.vector_stores.search(store, query="paid holiday days", max_num_results=2)
    results = page.data
    assert len(results) == 2
    assert results[0].file_id == handbook
    assert results[0].filename == "handbook.md"
    assert results[0].attributes == {"team": "people", "year": 2026}
    assert "27 days of paid holiday" in results[0].content[0].text
    assert 0 < results[1].score <= results[0].score <= 1

    filtered = await client_a.vector_stores.search(
        store,
        query="holiday",
        filters={
            "type": "and",
            "filters": [
                {"type": "eq", "key": "team", "value": "office"},
                {"type": "gte", "key": "year", "value": 2025},
            ],
        },
    )
    assert [r.file_id for r in filtered.data] == [onboarding]
    listed = await client_a.vector_stores.search(
        store, query=["holiday"], filters={"type": "in", "key": "year", "value": [2024, 2026]}
    )
    assert {r.filename for r in listed.data} == {"handbook.md", "kitchen.md"}
    strict = await client_a.vector_stores.search(store, query="holiday", ranking_options={"score_threshold": 1.0})
    assert [r.filename for r in strict.data] == ["handbook.md"]  # only first place in every ranking scores 1


async def test_a_search_that_cannot_be_answered_is_a_clear_4xx(
    client_a: openai.AsyncOpenAI, client_b: openai.AsyncOpenAI
) -> None:
    store = (await client_a.vector_stores.create(name="mine")).id
    with pytest.raises(openai.NotFoundError):
        await client_b.vector_stores.search(store, query="anything")  # another key's store
    with pytest.raises(openai.BadRequestError) as caught:
        await client_a.vector_stores.search(store, query="x", filters={"type": "in", "key": "k", "value": "one"})
    assert "list of values" in caught.value.message
    with pytest.raises(openai.BadRequestError):
        await client_a.vector_stores.search(store, query="x", max_num_results=51)
    with pytest.raises(openai.BadRequestError) as empty:
        await client_a.vector_stores.search(store, query="   ")
    assert "must not be empty" in empty.value.message


async def test_a_vector_store_files_parsed_text_is_read_back(client_a: openai.AsyncOpenAI) -> None:
    store = (await client_a.vector_stores.create(name="one")).id
    file_id = await _attach(client_a, store, "handbook.md", HANDBOOK)
    page = await client_a.vector_stores.files.content(file_id, vector_store_id=store)
    text = "".join(part.text or "" for part in page.data)
    assert "27 days of paid holiday" in text
    assert all(part.type == "text" for part in page.data)
    with pytest.raises(openai.NotFoundError):
        await client_a.vector_stores.files.content("file_nope", vector_store_id=store)
