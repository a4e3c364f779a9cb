"""The OpenAPI document: valid OpenAPI 3.1, served without a key, and in step with the routes the app registers."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from openai.types.beta import Assistant
from openapi_spec_validator import OpenAPIV31SpecValidator

from bots.api.app import ApiServer
from bots.api.openapi import OPERATIONS, Operation, document
from bots.api.requests import AssistantCreate
from bots.api.serialize_runs import STREAM_EVENTS


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return document()


def _routes(server: ApiServer) -> set[tuple[str, str]]:
    """(method, path) of every route the app answers; HEAD is aiohttp's own twin of each GET."""
    return {
        (route.method.lower(), route.resource.canonical)
        for route in server.app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


def _documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in doc["paths"].items() for method in item}


def _refs(value: Any) -> set[str]:
    if isinstance(value, dict):
        return {ref for item in value.values() for ref in _refs(item)} | (
            {value["$ref"]} if isinstance(value.get("$ref"), str) else set()
        )
    if isinstance(value, list):
        return {ref for item in value for ref in _refs(item)}
    return set()


def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    OpenAPIV31SpecValidator(doc).validate()  # raises with the first error
    assert doc["openapi"].startswith("3.1")
    json.dumps(doc)  # plain JSON, as served


def test_every_reference_resolves_and_no_pydantic_defs_are_left(doc: dict[str, Any]) -> None:
    refs = _refs(doc)
    assert refs
    for ref in refs:
        section, _, name = ref.removeprefix("#/components/").partition("/")
        assert name in doc["components"][section], ref
    assert "$defs" not in json.dumps(doc)


async def test_every_route_is_documented_and_every_documented_route_exists(
    api_server: ApiServer, doc: dict[str, Any]
) -> None:
    assert _routes(api_server) == _documented(doc)
    ids = [op.operation_id for op in OPERATIONS]
    assert len(ids) == len(set(ids))


def test_schemas_are_the_models_own(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    create = doc["paths"]["/v1/assistants"]["post"]

    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/AssistantCreate"}
    assert set(schemas["AssistantCreate"]["properties"]) == set(AssistantCreate.model_fields)
    assert create["requestBody"]["required"] is True
    assert doc["paths"]["/v1/threads"]["post"]["requestBody"]["required"] is False  # an empty body is a thread
    answer = create["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/Assistant"}
    assert set(schemas["Assistant"]["properties"]) == set(Assistant.model_fields)
    assert set(schemas["ErrorDetail"]["properties"]) == {"message", "type", "param", "code"}
    assert create["responses"]["401"] == {"$ref": "#/components/responses/Unauthorized"}
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"],
    }


def test_streamed_runs_document_each_event_the_stream_sends(doc: dict[str, Any]) -> None:
    stream = doc["paths"]["/v1/threads/{thread_id}/runs"]["post"]["responses"]["200"]["content"]["text/event-stream"]

    assert stream["schema"] == {"$ref": "#/components/schemas/RunStreamEvent"}
    one_event = doc["components"]["schemas"]["RunStreamEvent"]
    events = {event["properties"]["event"]["const"] for event in one_event["oneOf"]}
    assert events == {*STREAM_EVENTS, "done"}


async def test_the_document_is_served_without_a_key(api_server: ApiServer, doc: dict[str, Any]) -> None:
    origin = api_server.base_url.removesuffix("/v1")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{origin}/openapi.json") as response:
            assert response.status == 200
            assert response.content_type == "application/json"
            served = await response.json()
        async with session.get(f"{origin}/v1/assistants") as response:
            assert response.status == 401  # the API itself still needs one

    assert served == doc


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: op.operation_id)
def test_every_operation_says_what_it_can_answer(op: Operation, doc: dict[str, Any]) -> None:
    operation = doc["paths"][op.path][op.method]

    assert "200" in operation["responses"]
    assert operation["summary"]
    if op.authenticated:
        assert "401" in operation["responses"]
        assert "security" not in operation  # the document's bearer scheme applies
    else:
        assert operation["security"] == []
