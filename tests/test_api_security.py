"""The Assistants-compatible API's guard rails: keys, per-key isolation, error shapes, body limits, binding."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from bots.api.app import ApiServer
from bots.api.auth import owner_id
from bots.api.config import ApiSettings
from core.errors import ConfigError
from core.models import Author, Incoming
from core.service import Threadline
from tests.helpers import API_KEY_A, API_KEY_B

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks the retired API deprecated

ERROR_KEYS = {"message", "type", "param", "code"}


async def raw(
    server: ApiServer, method: str, path: str, *, key: str | None = API_KEY_A, data: object = None
) -> tuple[int, dict[str, object], dict[str, str]]:
    """(status, JSON body, headers) of a plain HTTP request: for what the SDK cannot send."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if isinstance(data, str | bytes):
        headers["Content-Type"] = "application/json"
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, server.base_url + path, headers=headers, data=data) as response,
    ):
        return response.status, await response.json(), dict(response.headers)


# -- keys ---------------------------------------------------------------------------------------------


async def test_a_missing_or_wrong_key_is_401_in_the_old_shape(
    api_server: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    status, body, headers = await raw(api_server, "GET", "/assistants", key=None)
    assert status == 401
    assert set(body["error"]) == ERROR_KEYS  # type: ignore[arg-type]
    assert body["error"]["code"] == "invalid_api_key"  # type: ignore[index]
    assert "Authorization" in body["error"]["message"]  # type: ignore[index]
    assert headers["WWW-Authenticate"] == "Bearer"

    wrong = "tl-wrong-key-0123456789abcdef"
    async with openai.AsyncOpenAI(base_url=api_server.base_url, api_key=wrong, max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError) as raised:
            await client.beta.assistants.list()
    assert raised.value.status_code == 401
    assert raised.value.code == "invalid_api_key"
    assert wrong not in raised.value.message  # a wrong key is not echoed back
    for key in (wrong, API_KEY_A, API_KEY_B):
        assert key not in caplog.text

    status, body, _ = await raw(api_server, "GET", "/assistants", key=API_KEY_B)
    assert status == 200


async def test_a_key_owns_its_objects_by_a_hash_never_the_key(
    client_a: openai.AsyncOpenAI, service: Threadline
) -> None:
    assistant = await client_a.beta.assistants.create(model="fake-model")
    thread = await client_a.beta.threads.create(messages=[{"role": "user", "content": "hi"}])

    def dump(db: Any) -> str:
        return "\n".join(db.conn.iterdump())

    everything = await service.store.call(dump)
    assert API_KEY_A not in everything
    assert f"'{owner_id(API_KEY_A)}'" in everything
    assert assistant.id in everything
    assert thread.id in everything
    assert len(owner_id(API_KEY_A)) == 16
    assert owner_id(API_KEY_A) != owner_id(API_KEY_B)


# -- isolation -------------------------------------------------------------------------------------------


async def test_one_key_cannot_reach_another_keys_objects(
    client_a: openai.AsyncOpenAI, client_b: openai.AsyncOpenAI
) -> None:
    assistant = await client_a.beta.assistants.create(model="fake-model", name="A's")
    thread = await client_a.beta.threads.create(messages=[{"role": "user", "content": "A's secret"}])
    message = (await client_a.beta.threads.messages.list(thread.id)).data[0]
    b_thread = await client_b.beta.threads.create()

    attempts = [
        client_b.beta.assistants.retrieve(assistant.id),
        client_b.beta.assistants.update(assistant.id, name="B was here"),
        client_b.beta.assistants.delete(assistant.id),
        client_b.beta.threads.retrieve(thread.id),
        client_b.beta.threads.update(thread.id, metadata={"b": "was here"}),
        client_b.beta.threads.delete(thread.id),
        client_b.beta.threads.messages.create(thread.id, role="user", content="B was here"),
        client_b.beta.threads.messages.list(thread.id),
        client_b.beta.threads.messages.retrieve(message.id, thread_id=thread.id),
        client_b.beta.threads.messages.update(message.id, thread_id=thread.id, metadata={"b": "x"}),
        client_b.beta.threads.messages.delete(message.id, thread_id=thread.id),
        # A's message id through B's own thread is not found either.
        client_b.beta.threads.messages.retrieve(message.id, thread_id=b_thread.id),
        client_b.beta.threads.messages.delete(message.id, thread_id=b_thread.id),
    ]
    for attempt in attempts:
        with pytest.raises(openai.NotFoundError):
            await attempt

    assert (await client_b.beta.assistants.list()).data == []
    with pytest.raises(openai.BadRequestError):  # A's id is no cursor in B's list
        await client_b.beta.assistants.list(after=assistant.id)

    # A's objects are untouched.
    assert (await client_a.beta.assistants.retrieve(assistant.id)).name == "A's"
    assert (await client_a.beta.threads.retrieve(thread.id)).metadata == {}
    messages = (await client_a.beta.threads.messages.list(thread.id)).data
    assert [(m.id, m.metadata) for m in messages] == [(message.id, {})]
    assert [a.id for a in (await client_a.beta.assistants.list()).data] == [assistant.id]


async def test_chat_channels_threads_are_not_api_threads(client_a: openai.AsyncOpenAI, service: Threadline) -> None:
    handle = await service.post(Incoming("slack:T1:C1", Author("U1", "alice"), "a Slack message"))
    assert handle is not None
    await handle.result()
    slack_thread = await service.store.current_thread("slack:T1:C1")
    with pytest.raises(openai.NotFoundError):
        await client_a.beta.threads.retrieve(slack_thread)
    with pytest.raises(openai.NotFoundError):
        await client_a.beta.threads.messages.list(slack_thread)
    with pytest.raises(openai.NotFoundError):
        await client_a.beta.threads.delete(slack_thread)
    assert await service.store.current_thread("slack:T1:C1") == slack_thread


# -- malformed requests ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ('{"model": "fake-model",', "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        (b"\xff\xfe", "UTF-8"),
    ],
)
async def test_a_body_that_is_not_a_json_object_is_a_clear_400(api_server: ApiServer, data: object, words: str) -> None:
    status, body, _ = await raw(api_server, "POST", "/assistants", data=data)
    assert status == 400
    assert set(body["error"]) == ERROR_KEYS  # type: ignore[arg-type]
    assert words in body["error"]["message"]  # type: ignore[index]


async def http_bytes(server: ApiServer, head: bytes, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of a request written byte for byte: header values that are not UTF-8, which no HTTP
    client library sends. ``head``: the request line and headers (the Host, length and close headers are added)."""
    status, payload = await http_exchange(server, head, body)
    return status, json.loads(payload)


async def http_exchange(server: ApiServer, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """(status, raw body) of a request written byte for byte."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        extra = f"Host: {server.host}\r\nConnection: close\r\nContent-Length: {len(body)}\r\n".encode()
        writer.write(head.rstrip(b"\r\n") + b"\r\n" + extra + b"\r\n" + body)
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, rest = response.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), payload


def problems_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Records a bad request may not cause: errors, tracebacks, and lines longer than a short one."""
    return [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info or len(r.getMessage()) > 200]


@pytest.mark.parametrize(
    "authorization",
    [b"Bearer \xe9t\xe9", b"Bearer " + API_KEY_A.encode() + b"\xff", b"\xe9\xe9 key"],
    ids=["latin-1", "a-key-and-a-stray-byte", "latin-1-scheme"],
)
async def test_an_authorization_header_that_is_not_utf8_is_401(
    api_server: ApiServer, caplog: pytest.LogCaptureFixture, authorization: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    status, body = await http_bytes(api_server, b"GET /v1/assistants HTTP/1.1\r\nAuthorization: " + authorization)
    assert status == 401
    assert set(body["error"]) == ERROR_KEYS
    assert body["error"]["code"] == "invalid_api_key"
    assert problems_logged(caplog) == []
    assert (await raw(api_server, "GET", "/assistants"))[0] == 200  # and it serves on


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (b"Content-Type", b"application/json; charset=\xe9"),
        (b"Content-Type", b"\xe9\xe9/\xff"),
        (b"Accept", b"\xe9"),
        (b"OpenAI-Beta", b"assistants=\xff"),
        (b"User-Agent", b"\xc3("),
        (b"X-Stainless-Retry-Count", b"\xe9"),
    ],
)
async def test_other_headers_that_are_not_utf8_never_make_a_500(
    api_server: ApiServer, caplog: pytest.LogCaptureFixture, header: bytes, value: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    auth = b"Authorization: Bearer " + API_KEY_A.encode()
    json_type = b"Content-Type: application/json" if header != b"Content-Type" else b""
    for head, body in [
        (b"GET /v1/assistants HTTP/1.1", b""),
        (b"POST /v1/assistants HTTP/1.1\r\n" + json_type, b'{"model": "fake-model"}'),
    ]:
        lines = [head.rstrip(b"\r\n"), auth, header + b": " + value]
        status, answer = await http_bytes(api_server, b"\r\n".join(lines), body)
        assert status < 500, answer
        if status >= 400:
            assert set(answer["error"]) == ERROR_KEYS
    assert problems_logged(caplog) == []


@pytest.mark.parametrize(
    "head",
    [
        b"POST /v1/assistants HTTP/1.1\r\nContent-Type: application/json\r\nContent-Type: text/plain",
        b"GET /v1/assistants HTTP/1.1\r\nX-Odd: a\x01b",
        b"GET /v1/assistants HTTP/1.1\r\nX-Long: " + b"x" * 9000,
        b"GET /v1/\xff HTTP/1.1",
    ],
    ids=["duplicate-content-type", "control-character", "header-too-long", "raw-byte-in-path"],
)
async def test_a_request_that_is_not_valid_http_is_400_in_one_line_of_log(
    api_server: ApiServer, caplog: pytest.LogCaptureFixture, head: bytes
) -> None:
    """aiohttp answers these itself, before any middleware; by default it logs each with a traceback, at ERROR."""
    caplog.set_level(logging.DEBUG)
    status, _ = await http_exchange(api_server, head + b"\r\nAuthorization: Bearer " + API_KEY_A.encode())
    assert 400 <= status < 500
    assert problems_logged(caplog) == []
    assert len([r for r in caplog.records if r.name.startswith(("aiohttp", "bots"))]) <= 1
    assert (await raw(api_server, "GET", "/assistants"))[0] == 200


NESTED = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ('{"model": "fake-model", "metadata": ' + NESTED + "}", "more than 64 levels deep"),
        (NESTED, "more than 64 levels deep"),
        ('{"model": "fake-model", "temperature": ' + "1" * 5000 + "}", "5,000 characters"),
        ('{"model": "fake-model", "temperature": 0.' + "1" * 5000 + "}", "5,002 characters"),
        ('{"model": "fake-model", "temperature": NaN}', "NaN is not a JSON number"),
        ('{"model": "fake-model", "temperature": -Infinity}', "-Infinity is not a JSON number"),
        ('{"model": "fake-model", "temperature": 1e400}', "out of range"),
        ('{"model": "fake-model", "name": "\\ud800"}', "lone UTF-16 surrogate"),
    ],
    ids=["deep-field", "deep-body", "long-integer", "long-fraction", "nan", "infinity", "overflow", "surrogate"],
)
async def test_json_past_the_parsers_limits_is_a_clear_400(
    api_server: ApiServer, caplog: pytest.LogCaptureFixture, data: str, words: str
) -> None:
    caplog.set_level(logging.DEBUG)
    status, body, _ = await raw(api_server, "POST", "/assistants", data=data)
    assert status == 400
    assert set(body["error"]) == ERROR_KEYS  # type: ignore[arg-type]
    assert words in body["error"]["message"]  # type: ignore[index]
    assert len(body["error"]["message"]) < 200  # type: ignore[index]
    assert problems_logged(caplog) == []
    assert (await raw(api_server, "GET", "/assistants"))[1]["data"] == []


async def test_values_that_could_not_be_stored_or_shown_are_refused_where_they_enter(
    client_a: openai.AsyncOpenAI, api_server: ApiServer
) -> None:
    """What would fail only later, and then on every read: a tool schema nested 900 levels deep (kept, then never
    listed again), a message with a lone surrogate (which SQLite cannot store), numbers JSON cannot carry back."""
    deep_schema = '{"type": "object", "properties": {"x": ' + "[" * 900 + "]" * 900 + "}}"
    thread = await client_a.beta.threads.create()
    for path, data in [
        ("/assistants", '{"model": "m", "tools": [{"type": "function", "function": {"name": "f", "parameters": '
         + deep_schema + "}}]}"),
        (f"/threads/{thread.id}/messages", '{"role": "user", "content": "hi \\udfff"}'),
        ("/assistants", '{"model": "m", "tools": [{"type": "function", "function": {"name": "f", "parameters": '
         '{"maximum": 1e999}}}]}'),
        ("/assistants", '{"model": "m", "tools": [{"type": "function", "function": {"name": "f", "parameters": '
         '{"maximum": NaN}}}]}'),
    ]:  # fmt: skip
        status, body, _ = await raw(api_server, "POST", path, data=data)
        assert status == 400, body
    assert (await client_a.beta.assistants.list()).data == []
    assert (await client_a.beta.threads.messages.list(thread.id)).data == []
    # Within the limits, the same shapes are kept.
    schema = {"type": "object", "properties": {"x": {"type": "number", "maximum": 1e300}}}
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    created = await client_a.beta.assistants.create(model="m", tools=[tool])  # type: ignore[list-item]
    assert created.tools[0].function.parameters == schema  # type: ignore[union-attr]
    assert [a.id for a in (await client_a.beta.assistants.list()).data] == [created.id]


async def test_an_upload_whose_names_are_not_utf8_is_kept_with_the_bytes_replaced(api_server: ApiServer) -> None:
    body = (
        b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="caf\xe9.txt"\r\n'
        b"Content-Type: text/\xe9\r\n\r\nThe menu has coffee.\r\n--b--\r\n"
    )
    head = b"POST /v1/files HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=b\r\nAuthorization: Bearer "
    status, created = await http_bytes(api_server, head + API_KEY_A.encode(), body)
    assert status == 200, created
    assert created["filename"] == "caf?.txt"
    assert created["bytes"] == len(b"The menu has coffee.")


async def test_an_error_repeats_a_long_value_from_the_request_cut_short(api_server: ApiServer) -> None:
    long_values = ["/assistants?limit=" + "9" * 5000, "/assistants?order=" + "x" * 5000]
    for path in [*long_values, "/assistants/" + "a" * 5000, "/no/" + "b" * 5000]:
        status, body, _ = await raw(api_server, "GET", path)
        assert 400 <= status < 500
        assert len(body["error"]["message"]) < 200, path  # type: ignore[index]


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({}, "model", "Missing required parameter: 'model'"),
        ({"model": 5}, "model", "expected a string, but got an integer"),
        ({"name": ["a"]}, "name", "expected a string, but got an array"),
        ({"temperature": "hot"}, "temperature", "expected a number, but got a string"),
        ({"temperature": 3}, "temperature", "less than or equal to 2"),
        ({"top_p": True}, "top_p", "expected a number, but got a boolean"),
        ({"metadata": []}, "metadata", "expected an object"),
        ({"tools": {"type": "code_interpreter"}}, "tools", "expected an array"),
        ({"tools": [{"type": "browser"}]}, "tools[0].type", "'browser' is not one of"),
        ({"tools": [{}]}, "tools[0].type", "Missing required parameter"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name", "Missing required parameter"),
        ({"tools": [{"type": "function", "function": {"name": "no spaces"}}]}, "tools[0].function.name", "letters"),
        (
            {"tools": [{"type": "file_search", "file_search": {"max_num_results": 99}}]},
            "tools[0].file_search.max_num_results",
            "50",
        ),
        ({"response_format": "xml"}, "response_format", "expected 'auto' or an object"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema", "Missing required parameter"),
        (
            {"tool_resources": {"file_search": {"vector_store_ids": ["a", "b"]}}},
            "tool_resources.file_search.vector_store_ids",
            "at most 1",
        ),
        ({"colour": "blue"}, "colour", "Unrecognized request argument supplied: colour"),
    ],
)  # fmt: skip
async def test_wrong_fields_are_400s_naming_the_parameter(
    client_a: openai.AsyncOpenAI, fields: dict[str, object], param: str, words: str
) -> None:
    body = {"model": "fake-model", **fields} if param != "model" else fields
    with pytest.raises(openai.BadRequestError) as raised:
        await client_a.post("/assistants", body=body, cast_to=object)
    assert raised.value.param == param
    assert words in raised.value.message
    assert (await client_a.beta.assistants.list()).data == []


async def test_unknown_routes_and_methods_answer_in_json(api_server: ApiServer) -> None:
    status, body, _ = await raw(api_server, "GET", "/nothing/here")
    assert status == 404
    assert body["error"]["message"] == "Invalid URL (GET /v1/nothing/here)."  # type: ignore[index]
    status, body, headers = await raw(api_server, "PUT", "/assistants", data="{}")
    assert status == 405
    assert set(body["error"]) == ERROR_KEYS  # type: ignore[arg-type]
    assert "PUT" in body["error"]["message"]  # type: ignore[index]
    assert set(headers["Allow"].split(", ")) == {"GET", "HEAD", "POST"}


# -- body size ---------------------------------------------------------------------------------------------


@pytest.fixture
async def small_server(service: Threadline) -> AsyncIterator[ApiServer]:
    server = await ApiServer.start(
        service, ApiSettings(keys=(API_KEY_A,), port=0, host="127.0.0.1", max_body_bytes=64 * 1024)
    )
    yield server
    await server.stop()


async def test_an_oversize_body_is_413(small_server: ApiServer) -> None:
    async with openai.AsyncOpenAI(base_url=small_server.base_url, api_key=API_KEY_A, max_retries=0) as client:
        with pytest.raises(openai.APIStatusError) as raised:
            await client.beta.assistants.create(model="fake-model", instructions="x" * 100_000)
        assert raised.value.status_code == 413
        assert raised.value.code == "request_too_large"
        assert "65,536 bytes" in raised.value.message
        # Just under the limit is fine, and the server still answers on.
        created = await client.beta.assistants.create(model="fake-model", instructions="x" * 60_000)
        assert len(created.instructions or "") == 60_000


async def test_an_oversize_body_without_a_length_is_413_too(small_server: ApiServer) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"model": "fake-model", "instructions": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    status, body, _ = await raw(small_server, "POST", "/assistants", data=chunks())
    assert status == 413
    assert set(body["error"]) == ERROR_KEYS  # type: ignore[arg-type]


# -- binding -------------------------------------------------------------------------------------------------


async def test_without_keys_it_listens_on_loopback_only_and_says_so(
    service: Threadline, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bots.api.app")
    server = await ApiServer.start(service, ApiSettings(keys=(), port=0, host="0.0.0.0"))
    try:
        assert server.host == "127.0.0.1"
        assert [address[0] for address in server._runner.addresses] == ["127.0.0.1"]
        assert "listens on 127.0.0.1 only" in caplog.text
        # Any key (or none) is the one local owner.
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key="anything", max_retries=0) as client:
            created = await client.beta.assistants.create(model="fake-model")
        status, body, _ = await raw(server, "GET", f"/assistants/{created.id}", key=None)
        assert (status, body["id"]) == (200, created.id)
    finally:
        await server.stop()


async def test_with_keys_it_listens_where_it_is_told(service: Threadline) -> None:
    server = await ApiServer.start(service, ApiSettings(keys=(API_KEY_A,), port=0, host="0.0.0.0"))
    try:
        assert [address[0] for address in server._runner.addresses] == ["0.0.0.0"]
    finally:
        await server.stop()


def test_settings_from_the_environment() -> None:
    settings = ApiSettings.from_env(
        {"THREADLINE_API_KEYS": f" {API_KEY_A}, {API_KEY_B},,{API_KEY_A}", "PORT": "8080", "THREADLINE_HTTP_HOST": "::"}
    )
    assert settings.keys == (API_KEY_A, API_KEY_B)
    assert (settings.port, settings.bind_host, settings.max_body_bytes) == (8080, "::", 2048 * 1024)
    assert API_KEY_A not in repr(settings)
    assert ApiSettings.from_env({"THREADLINE_HTTP_HOST": "0.0.0.0"}).bind_host == "127.0.0.1"
    with pytest.raises(ConfigError, match="key #2 has 5 characters"):
        ApiSettings.from_env({"THREADLINE_API_KEYS": f"{API_KEY_A},short"})
    with pytest.raises(ConfigError, match="PORT"):
        ApiSettings.from_env({"PORT": "http"})
    assert ApiSettings.from_env({"THREADLINE_API_MAX_BODY_KB": "64"}).max_body_bytes == 64 * 1024


# -- the event loop ----------------------------------------------------------------------------------------------


async def test_sqlite_runs_on_the_store_thread_not_the_event_loop(
    client_a: openai.AsyncOpenAI, service: Threadline
) -> None:
    seen: list[str] = []
    service.store._db.conn.set_trace_callback(lambda sql: seen.append(threading.current_thread().name))
    try:
        assistant = await client_a.beta.assistants.create(model="fake-model")
        await client_a.beta.assistants.list()
        thread = await client_a.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
        await client_a.beta.threads.messages.list(thread.id)
        await client_a.beta.assistants.delete(assistant.id)
    finally:
        service.store._db.conn.set_trace_callback(None)
    assert seen
    assert all(name.startswith("threadline-db") for name in seen)


async def test_named_keys_share_their_owners_objects_so_a_key_can_be_rotated(service: Threadline) -> None:
    old, new, other = "rotated-old-key-0123456789", "rotated-new-key-0123456789", "someone-else-key-012345"
    settings = ApiSettings.from_env({"THREADLINE_API_KEYS": f"team-a:{old},team-a:{new},{other}"})
    assert settings.keys == (old, new, other)
    server = await ApiServer.start(service, replace(settings, port=0, host="127.0.0.1"))
    clients = {
        key: openai.AsyncOpenAI(base_url=server.base_url, api_key=key, max_retries=0) for key in (old, new, other)
    }
    try:
        created = await clients[old].beta.assistants.create(model="fake-model", name="Kept across rotation")
        seen = await clients[new].beta.assistants.retrieve(created.id)
        assert seen.name == "Kept across rotation"
        with pytest.raises(openai.NotFoundError):
            await clients[other].beta.assistants.retrieve(created.id)
        with pytest.raises(openai.AuthenticationError):  # "team-a" itself is a name, not a key
            await openai.AsyncOpenAI(base_url=server.base_url, api_key="team-a", max_retries=0).models.list()
    finally:
        for client in clients.values():
            await client.close()
        await server.stop()


async def test_the_entry_point_stops_cleanly_on_sigterm(tmp_path: Any, fake_model: Any) -> None:
    """``python -m bots.api`` as a process manager runs it: serving until SIGTERM, then exit 0."""
    import signal
    import socket
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        "PATH": "/usr/bin:/bin",
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "OPENAI_BASE_URL": fake_model.base_url,
        "THREADLINE_DB": str(tmp_path / "api.db"),
        "THREADLINE_TOKENIZER": "estimate",
        "THREADLINE_CODE_INTERPRETER": "off",
        "PORT": str(port),
    }
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bots.api", env=env, cwd=str(ROOT))
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("python -m bots.api did not serve /healthz")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
