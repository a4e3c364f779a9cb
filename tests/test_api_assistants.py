"""Assistants over the Assistants-compatible API, driven by the real openai SDK: CRUD, fields, pagination."""

from __future__ import annotations

import openai
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks the retired API deprecated

FUNCTION_TOOL = {
    "type": "function",
    "function": {
        "name": "lookup_ticket",
        "description": "Find a ticket by its number.",
        "parameters": {"type": "object", "properties": {"number": {"type": "integer"}}, "required": ["number"]},
        "strict": True,
    },
}
JSON_SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "answer", "schema": {"type": "object", "properties": {"text": {"type": "string"}}}},
}


async def test_create_retrieve_modify_delete_round_trip(client_a: openai.AsyncOpenAI) -> None:
    created = await client_a.beta.assistants.create(
        model="fake-model",
        name="Support",
        description="Answers support questions.",
        instructions="Be brief.",
        tools=[
            FUNCTION_TOOL,
            {"type": "file_search", "file_search": {"max_num_results": 5}},
            {"type": "code_interpreter"},
        ],
        tool_resources={"code_interpreter": {"file_ids": ["file-1"]}, "file_search": {"vector_store_ids": ["vs_1"]}},
        metadata={"team": "support"},
        temperature=0.2,
        top_p=0.9,
        response_format=JSON_SCHEMA_FORMAT,
    )

    assert created.id.startswith("asst_")
    assert created.object == "assistant"
    assert (created.name, created.description, created.instructions, created.model) == (
        "Support",
        "Answers support questions.",
        "Be brief.",
        "fake-model",
    )
    assert [tool.type for tool in created.tools] == ["function", "file_search", "code_interpreter"]
    function = created.tools[0]
    assert function.type == "function"
    assert function.function.name == "lookup_ticket"
    assert function.function.parameters == FUNCTION_TOOL["function"]["parameters"]  # type: ignore[index]
    assert function.function.strict is True
    assert created.tools[1].type == "file_search"
    assert created.tools[1].file_search is not None
    assert created.tools[1].file_search.max_num_results == 5
    assert created.tool_resources is not None
    assert created.tool_resources.code_interpreter is not None
    assert created.tool_resources.code_interpreter.file_ids == ["file-1"]
    assert created.metadata == {"team": "support"}
    assert (created.temperature, created.top_p) == (0.2, 0.9)
    assert created.response_format is not None
    assert created.response_format.type == "json_schema"  # type: ignore[union-attr]

    retrieved = await client_a.beta.assistants.retrieve(created.id)
    assert retrieved == created

    modified = await client_a.beta.assistants.update(
        created.id, name="Support bot", tools=[{"type": "code_interpreter"}], metadata={"team": "ops"}
    )
    assert modified.name == "Support bot"
    assert [tool.type for tool in modified.tools] == ["code_interpreter"]
    assert modified.metadata == {"team": "ops"}
    # What was not sent is kept.
    assert (modified.instructions, modified.temperature, modified.created_at) == (
        "Be brief.",
        0.2,
        created.created_at,
    )
    assert await client_a.beta.assistants.retrieve(created.id) == modified

    deleted = await client_a.beta.assistants.delete(created.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "assistant.deleted", True)
    with pytest.raises(openai.NotFoundError) as raised:
        await client_a.beta.assistants.retrieve(created.id)
    assert raised.value.body == {
        "message": f"No assistant found with id '{created.id}'.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    with pytest.raises(openai.NotFoundError):
        await client_a.beta.assistants.delete(created.id)


async def test_the_wire_format_is_the_old_apis(client_a: openai.AsyncOpenAI) -> None:
    raw = await client_a.beta.assistants.with_raw_response.create(
        model="fake-model", response_format=JSON_SCHEMA_FORMAT
    )
    body = raw.http_response.json()

    assert set(body) == {
        "id",
        "object",
        "created_at",
        "name",
        "description",
        "model",
        "instructions",
        "tools",
        "tool_resources",
        "metadata",
        "temperature",
        "top_p",
        "response_format",
    }
    assert isinstance(body["created_at"], int)
    assert (body["tools"], body["metadata"], body["name"]) == ([], {}, None)
    assert body["response_format"]["json_schema"]["schema"] == JSON_SCHEMA_FORMAT["json_schema"]["schema"]  # type: ignore[index]


async def test_modify_can_clear_a_field_but_not_the_model(client_a: openai.AsyncOpenAI) -> None:
    created = await client_a.beta.assistants.create(model="fake-model", description="old", response_format="auto")
    assert created.response_format == "auto"

    cleared = await client_a.beta.assistants.update(created.id, description=None, response_format=None)
    assert (cleared.description, cleared.response_format, cleared.model) == (None, None, "fake-model")

    with pytest.raises(openai.BadRequestError) as raised:
        await client_a.beta.assistants.update(created.id, model=None)  # type: ignore[arg-type]
    assert raised.value.param == "model"
    assert (await client_a.beta.assistants.retrieve(created.id)).model == "fake-model"


async def test_pagination_with_after_before_order_and_has_more(client_a: openai.AsyncOpenAI) -> None:
    ids = [(await client_a.beta.assistants.create(model="fake-model", name=f"a{n}")).id for n in range(5)]

    first = await client_a.beta.assistants.list(limit=2)
    assert [a.id for a in first.data] == [ids[4], ids[3]]  # newest first by default
    assert first.has_more is True
    second = await client_a.beta.assistants.list(limit=2, after=ids[3])
    assert [a.id for a in second.data] == [ids[2], ids[1]]
    last = await client_a.beta.assistants.list(limit=2, after=ids[1])
    assert [a.id for a in last.data] == [ids[0]]
    assert last.has_more is False

    ascending = await client_a.beta.assistants.list(order="asc", limit=3)
    assert [a.id for a in ascending.data] == ids[:3]
    assert ascending.has_more is True
    assert [a.id for a in (await client_a.beta.assistants.list(order="asc", after=ids[2])).data] == ids[3:]

    # before pages back: the objects just before the cursor, still in the order asked for.
    back = await client_a.beta.assistants.list(order="asc", before=ids[4], limit=2)
    assert [a.id for a in back.data] == [ids[2], ids[3]]
    assert back.has_more is True
    assert [a.id for a in (await client_a.beta.assistants.list(before=ids[1])).data] == [ids[4], ids[3], ids[2]]
    between = await client_a.beta.assistants.list(order="asc", after=ids[0], before=ids[4])
    assert [a.id for a in between.data] == ids[1:4]

    # The SDK's auto-pagination follows after=<last id> until has_more is false.
    assert [a.id async for a in client_a.beta.assistants.list(limit=2)] == ids[::-1]

    raw = await client_a.beta.assistants.with_raw_response.list(limit=2, order="asc")
    envelope = raw.http_response.json()
    assert (envelope["object"], envelope["first_id"], envelope["last_id"], envelope["has_more"]) == (
        "list",
        ids[0],
        ids[1],
        True,
    )
    empty = (await client_a.beta.assistants.with_raw_response.list(after=ids[0])).http_response.json()
    assert empty == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"order": "newest"}, "order"),
        ({"after": "asst_unknown"}, "after"),
        ({"before": "asst_unknown"}, "before"),
    ],
)
async def test_bad_list_parameters_are_400s_naming_the_parameter(
    client_a: openai.AsyncOpenAI, query: dict[str, object], param: str
) -> None:
    await client_a.beta.assistants.create(model="fake-model")
    with pytest.raises(openai.BadRequestError) as raised:
        await client_a.get("/assistants", cast_to=object, options={"params": query})
    assert raised.value.param == param
    assert raised.value.body["type"] == "invalid_request_error"  # type: ignore[index]


async def test_the_largest_page_is_100(client_a: openai.AsyncOpenAI) -> None:
    page = await client_a.beta.assistants.list(limit=100)
    assert page.data == []
    assert page.has_more is False
