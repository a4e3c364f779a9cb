"""Files and vector stores over the Assistants-compatible API, driven by the real openai SDK.

Uploads, vector stores and their files and batches, statuses that follow the real indexing,
the old API's errors, pagination, and one key never reaching another's files or stores.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from bots.api.app import ApiServer
from bots.api.config import ApiSettings
from bots.api.uploads import clean_filename
from core.service import Threadline
from tests.conftest import ServiceFactory
from tests.helpers import API_KEY_A

HANDBOOK = b"""# Handbook

## Expenses
Travel expenses are reimbursed within 30 days when the receipt is uploaded to the finance portal.

## Holidays
Every employee has 27 days of paid holiday a year; unused days expire on 31 March.
"""
PLANTS = b"The office plants need water on Fridays; the ficus in the lobby also needs light."
GARBLED = bytes(range(256)) * 10  # not text, whatever its name says
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100  # an image: a kind Threadline does not read
BIG = "\n\n".join(f"Paragraph {n}: " + "lorem ipsum dolor sit amet " * 40 for n in range(3000)).encode()


async def upload(client: openai.AsyncOpenAI, name: str, data: bytes) -> str:
    return (await client.files.create(file=(name, data), purpose="assistants")).id


async def raw(server: ApiServer, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of a plain HTTP request with key A: for what the SDK cannot send."""
    headers = {"Authorization": f"Bearer {API_KEY_A}", **kwargs.pop("headers", {})}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, server.base_url + path, headers=headers, **kwargs) as response,
    ):
        return response.status, await response.json()


# -- files ------------------------------------------------------------------------------------------


async def test_upload_retrieve_download_list_and_delete_a_file(client_a: openai.AsyncOpenAI) -> None:
    created = await client_a.files.create(file=("handbook.md", HANDBOOK, "text/markdown"), purpose="assistants")
    assert created.id.startswith("file-")
    assert (created.object, created.filename, created.bytes, created.purpose) == (
        "file",
        "handbook.md",
        len(HANDBOOK),
        "assistants",
    )
    assert await client_a.files.retrieve(created.id) == created
    assert (await client_a.files.content(created.id)).content == HANDBOOK
    other = await upload(client_a, "plants.txt", PLANTS)

    listed = await client_a.files.list()
    assert [f.id for f in listed.data] == [other, created.id]  # newest first, as the old API listed them
    assert [f.id for f in (await client_a.files.list(purpose="assistants")).data] == [other, created.id]
    assert (await client_a.files.list(purpose="batch")).data == []
    first = await client_a.files.list(limit=1, order="asc")
    assert ([f.id for f in first.data], first.has_more) == ([created.id], True)
    assert [f.id async for f in client_a.files.list(limit=1, order="asc")] == [created.id, other]  # auto-paging

    deleted = await client_a.files.delete(created.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (created.id, True, "file")
    with pytest.raises(openai.NotFoundError) as raised:
        await client_a.files.retrieve(created.id)
    assert f"No file found with id '{created.id}'." in raised.value.message
    with pytest.raises(openai.NotFoundError):
        await client_a.files.content(created.id)
    with pytest.raises(openai.NotFoundError):
        await client_a.files.delete(created.id)


async def test_a_purpose_other_than_assistants_is_the_old_400(client_a: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await client_a.files.create(file=("train.jsonl", b"{}\n"), purpose="fine-tune")
    assert raised.value.param == "purpose"
    assert "'assistants'" in raised.value.message
    assert (await client_a.files.list()).data == []


async def test_malformed_uploads_are_400s_that_say_what_to_send(api_server: ApiServer) -> None:
    status, body = await raw(api_server, "POST", "/files", json={"purpose": "assistants"})
    assert status == 400
    assert "multipart/form-data" in body["error"]["message"]

    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("purpose", "assistants")
    status, body = await raw(api_server, "POST", "/files", data=form)
    assert (status, body["error"]["param"], body["error"]["code"]) == (400, "file", "missing_required_parameter")

    form = aiohttp.FormData()
    form.add_field("file", b"hello", filename="a.txt")
    status, body = await raw(api_server, "POST", "/files", data=form)
    assert (status, body["error"]["param"]) == (400, "purpose")

    form = aiohttp.FormData()
    form.add_field("purpose", "assistants")
    form.add_field("colour", "blue")
    form.add_field("file", b"hello", filename="a.txt")
    status, body = await raw(api_server, "POST", "/files", data=form)
    assert (status, body["error"]["code"]) == (400, "unknown_parameter")


async def test_a_filename_keeps_no_folders_or_control_characters(client_a: openai.AsyncOpenAI) -> None:
    created = await client_a.files.create(file=("../../etc/passwd", b"root"), purpose="assistants")
    assert created.filename == "passwd"
    assert clean_filename("..\\reports\\q1.txt") == "q1.txt"
    assert clean_filename("bell\x07.txt\x00") == "bell.txt"
    assert clean_filename("/") == "upload"
    long = clean_filename("x" * 300 + ".pdf")
    assert (len(long), long[-4:]) == (255, ".pdf")


@pytest.fixture
async def small_limit_server(open_service: ServiceFactory) -> AsyncIterator[ApiServer]:
    """The API over a service whose files may have at most 0.01 MB (THREADLINE_MAX_FILE_MB)."""
    service = await open_service(max_file_mb=0.01)
    server = await ApiServer.start(service, ApiSettings(keys=(API_KEY_A,), port=0, host="127.0.0.1"))
    yield server
    await server.stop()


async def test_an_upload_over_the_file_limit_is_413_and_nothing_is_kept(small_limit_server: ApiServer) -> None:
    async with openai.AsyncOpenAI(base_url=small_limit_server.base_url, api_key=API_KEY_A, max_retries=0) as client:
        with pytest.raises(openai.APIStatusError) as raised:
            await client.files.create(file=("big.txt", b"word " * 5000), purpose="assistants")
        assert raised.value.status_code == 413
        assert raised.value.code == "file_too_large"
        assert "big.txt" in raised.value.message
        assert "0.01 MB limit" in raised.value.message
        assert "THREADLINE_MAX_FILE_MB" in raised.value.message
        assert (await client.files.list()).data == []
        # Just under the limit is fine, and the server answers on.
        assert (await client.files.create(file=("ok.txt", b"word " * 2000), purpose="assistants")).bytes == 10_000


async def test_uploads_are_bounded_by_the_file_limit_not_the_json_body_limit(client_a: openai.AsyncOpenAI) -> None:
    data = b"0123456789abcdef" * (3 * 1024 * 1024 // 16)  # 3 MB: over the 2 MB JSON body limit, under 50 MB
    created = await client_a.files.create(file=("large.txt", data), purpose="assistants")
    assert created.bytes == len(data)
    assert (await client_a.files.content(created.id)).content == data


async def test_the_bytes_are_kept_once_and_go_with_the_last_file_that_has_them(
    client_a: openai.AsyncOpenAI, service: Threadline
) -> None:
    first = await upload(client_a, "a.txt", PLANTS)
    second = await upload(client_a, "b.txt", PLANTS)

    def stored() -> int:
        with sqlite3.connect(service.settings.db_path) as conn:
            return int(conn.execute("SELECT count(*) FROM file_contents").fetchone()[0])

    assert stored() == 1
    await client_a.files.delete(first)
    assert (await client_a.files.content(second)).content == PLANTS
    await client_a.files.delete(second)
    assert stored() == 0


# -- vector stores and their files ---------------------------------------------------------------------


async def test_upload_and_poll_indexes_the_file_and_counts_it(client_a: openai.AsyncOpenAI) -> None:
    store = await client_a.vector_stores.create(name="Handbook", metadata={"team": "hr"})
    assert store.id.startswith("vs_")
    assert (store.object, store.name, store.status, store.metadata) == (
        "vector_store",
        "Handbook",
        "completed",
        {"team": "hr"},
    )
    assert store.file_counts.total == 0

    file = await client_a.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("handbook.md", HANDBOOK))
    assert (file.object, file.status, file.last_error, file.vector_store_id) == (
        "vector_store.file",
        "completed",
        None,
        store.id,
    )
    assert file.usage_bytes == len(HANDBOOK)
    assert (await client_a.files.retrieve(file.id)).filename == "handbook.md"

    store = await client_a.vector_stores.retrieve(store.id)
    assert store.status == "completed"
    counts = store.file_counts
    assert (counts.completed, counts.in_progress, counts.failed, counts.cancelled, counts.total) == (1, 0, 0, 0, 1)
    assert store.usage_bytes == len(HANDBOOK)


async def test_a_file_starts_in_progress_and_polling_is_hinted(client_a: openai.AsyncOpenAI) -> None:
    store = await client_a.vector_stores.create(name="Big")
    file_id = await upload(client_a, "big.txt", BIG)
    response = await client_a.vector_stores.files.with_raw_response.create(vector_store_id=store.id, file_id=file_id)
    created = response.parse()
    assert created.status == "in_progress"
    assert response.headers["openai-poll-after-ms"] == "500"
    assert (await client_a.vector_stores.retrieve(store.id)).status == "in_progress"
    done = await client_a.vector_stores.files.poll(file_id, vector_store_id=store.id)
    assert done.status == "completed"
    assert (await client_a.vector_stores.retrieve(store.id)).file_counts.completed == 1


async def test_a_file_that_cannot_be_read_fails_with_the_old_last_error(client_a: openai.AsyncOpenAI) -> None:
    store = await client_a.vector_stores.create(name="Mixed")
    garbled = await client_a.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("notes.txt", GARBLED))
    assert garbled.status == "failed"
    assert garbled.last_error is not None
    assert garbled.last_error.code == "invalid_file"
    assert "notes.txt" in garbled.last_error.message
    assert garbled.usage_bytes == 0
    image = await client_a.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("photo.png", PNG))
    assert image.status == "failed"
    assert image.last_error is not None
    assert image.last_error.code == "unsupported_file"
    assert "PDF" in image.last_error.message  # names what is supported

    counts = (await client_a.vector_stores.retrieve(store.id)).file_counts
    assert (counts.failed, counts.completed, counts.total) == (2, 0, 2)
    failed = await client_a.vector_stores.files.list(vector_store_id=store.id, filter="failed")
    assert {f.id for f in failed.data} == {garbled.id, image.id}
    assert (await client_a.vector_stores.files.list(vector_store_id=store.id, filter="completed")).data == []


async def test_create_with_file_ids_and_create_and_poll(client_a: openai.AsyncOpenAI) -> None:
    handbook = await upload(client_a, "handbook.md", HANDBOOK)
    plants = await upload(client_a, "plants.txt", PLANTS)
    store = await client_a.vector_stores.create(name="Both", file_ids=[handbook])
    assert store.file_counts.total == 1
    attached = await client_a.vector_stores.files.create_and_poll(
        file_id=plants, vector_store_id=store.id, attributes={"kind": "office", "floor": 2, "public": True}
    )
    assert attached.status == "completed"
    assert attached.attributes == {"kind": "office", "floor": 2, "public": True}
    done = await client_a.vector_stores.files.poll(handbook, vector_store_id=store.id)
    assert done.status == "completed"
    # Attaching the same file again changes nothing.
    again = await client_a.vector_stores.files.create(vector_store_id=store.id, file_id=handbook)
    assert (again.id, again.status) == (handbook, "completed")
    assert (await client_a.vector_stores.retrieve(store.id)).file_counts.total == 2

    updated = await client_a.vector_stores.files.update(plants, vector_store_id=store.id, attributes={"kind": "x"})
    assert updated.attributes == {"kind": "x"}
    assert (await client_a.vector_stores.files.retrieve(plants, vector_store_id=store.id)).attributes == {"kind": "x"}


async def test_same_name_and_same_content_are_each_kept_in_a_vector_store(client_a: openai.AsyncOpenAI) -> None:
    store = await client_a.vector_stores.create(name="Versions")
    first = await client_a.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("notes.txt", PLANTS))
    second = await client_a.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("notes.txt", HANDBOOK))
    copy = await client_a.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("copy.txt", PLANTS))
    assert [f.status for f in (first, second, copy)] == ["completed"] * 3
    listed = await client_a.vector_stores.files.list(vector_store_id=store.id, order="asc")
    assert [f.id for f in listed.data] == [first.id, second.id, copy.id]


async def test_a_static_chunking_strategy_is_refused_with_a_reason(client_a: openai.AsyncOpenAI) -> None:
    file_id = await upload(client_a, "plants.txt", PLANTS)
    static = {"type": "static", "static": {"max_chunk_size_tokens": 400, "chunk_overlap_tokens": 100}}
    with pytest.raises(openai.BadRequestError) as raised:
        await client_a.vector_stores.create(name="s", file_ids=[file_id], chunking_strategy=static)  # type: ignore[arg-type]
    assert raised.value.param == "chunking_strategy"
    assert "THREADLINE_CHUNK_TOKENS" in raised.value.message
    store = await client_a.vector_stores.create(name="auto", file_ids=[file_id], chunking_strategy={"type": "auto"})
    assert store.file_counts.total == 1


async def test_unknown_ids_and_bad_values_are_the_old_errors(client_a: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        await client_a.vector_stores.create(name="x", file_ids=["file-nope"])
    assert "No file found with id 'file-nope'." in raised.value.message
    assert (await client_a.vector_stores.list()).data == []  # nothing half-made
    with pytest.raises(openai.NotFoundError) as raised:
        await client_a.vector_stores.retrieve("vs_nope")
    assert "No vector store found with id 'vs_nope'." in raised.value.message
    store = await client_a.vector_stores.create(name="x")
    with pytest.raises(openai.NotFoundError):
        await client_a.vector_stores.files.create(vector_store_id=store.id, file_id="file-nope")
    with pytest.raises(openai.NotFoundError) as raised:
        await client_a.vector_stores.files.retrieve("file-nope", vector_store_id=store.id)
    assert "in vector store" in raised.value.message
    with pytest.raises(openai.BadRequestError) as raised:
        await client_a.vector_stores.files.list(vector_store_id=store.id, filter="done")  # type: ignore[arg-type]
    assert raised.value.param == "filter"
    with pytest.raises(openai.BadRequestError) as raised:
        await client_a.vector_stores.create(name="x", expires_after={"anchor": "created_at", "days": 1})  # type: ignore[typeddict-item]
    assert raised.value.param == "expires_after.anchor"
    with pytest.raises(openai.BadRequestError) as raised:
        await client_a.vector_stores.file_batches.create(vector_store_id=store.id)
    assert raised.value.param == "file_ids"


async def test_vector_stores_modify_expire_list_and_delete(client_a: openai.AsyncOpenAI) -> None:
    ids = [(await client_a.vector_stores.create(name=f"store {n}")).id for n in range(3)]
    page = await client_a.vector_stores.list(limit=2)
    assert ([s.id for s in page.data], page.has_more) == ([ids[2], ids[1]], True)
    rest = await client_a.vector_stores.list(limit=2, after=ids[1])
    assert ([s.id for s in rest.data], rest.has_more) == ([ids[0]], False)
    before = await client_a.vector_stores.list(order="asc", before=ids[2])
    assert [s.id for s in before.data] == ids[:2]
    assert [s.id async for s in client_a.vector_stores.list(limit=1, order="asc")] == ids
    with pytest.raises(openai.BadRequestError) as raised:
        await client_a.vector_stores.list(after="vs_nope")
    assert raised.value.param == "after"

    modified = await client_a.vector_stores.update(
        ids[0], name="renamed", metadata={"k": "v"}, expires_after={"anchor": "last_active_at", "days": 7}
    )
    assert (modified.name, modified.metadata) == ("renamed", {"k": "v"})
    assert modified.expires_after is not None
    assert modified.expires_after.days == 7
    assert modified.expires_at == (modified.last_active_at or 0) + 7 * 86400
    cleared = await client_a.vector_stores.update(ids[0], expires_after=None)
    assert (cleared.expires_after, cleared.expires_at, cleared.name) == (None, None, "renamed")

    deleted = await client_a.vector_stores.delete(ids[1])
    assert (deleted.id, deleted.deleted, deleted.object) == (ids[1], True, "vector_store.deleted")
    with pytest.raises(openai.NotFoundError):
        await client_a.vector_stores.retrieve(ids[1])
    assert [s.id for s in (await client_a.vector_stores.list()).data] == [ids[2], ids[0]]


async def test_deleting_a_vector_store_removes_its_knowledge_base(
    client_a: openai.AsyncOpenAI, service: Threadline
) -> None:
    store = await client_a.vector_stores.create(name="Gone")
    file = await client_a.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("plants.txt", PLANTS))
    await client_a.vector_stores.delete(store.id)
    with sqlite3.connect(service.settings.db_path) as conn:
        assert conn.execute("SELECT count(*) FROM chunks").fetchone() == (0,)
    assert (await client_a.files.content(file.id)).content == PLANTS  # the upload stays


async def test_vector_store_files_paginate_in_attach_order(client_a: openai.AsyncOpenAI) -> None:
    store = await client_a.vector_stores.create(name="Many")
    ids = [await upload(client_a, f"note{n}.txt", f"Note number {n} about plants.".encode()) for n in range(3)]
    for file_id in ids:
        await client_a.vector_stores.files.create(vector_store_id=store.id, file_id=file_id)
    page = await client_a.vector_stores.files.list(vector_store_id=store.id, limit=2)
    assert ([f.id for f in page.data], page.has_more) == ([ids[2], ids[1]], True)
    assert [f.id async for f in client_a.vector_stores.files.list(vector_store_id=store.id, limit=1)] == ids[::-1]


async def test_detaching_or_deleting_a_file_takes_it_out_of_search(
    client_a: openai.AsyncOpenAI, service: Threadline
) -> None:
    first = await client_a.vector_stores.create(name="One")
    second = await client_a.vector_stores.create(name="Two")
    file = await client_a.vector_stores.files.upload_and_poll(vector_store_id=first.id, file=("plants.txt", PLANTS))
    await client_a.vector_stores.files.create_and_poll(file_id=file.id, vector_store_id=second.id)
    keys = await _keys(service, [first.id, second.id])
    assert len(await service.knowledge.search_many(keys, "ficus lobby")) == 2

    detached = await client_a.vector_stores.files.delete(file.id, vector_store_id=first.id)
    assert (detached.id, detached.deleted, detached.object) == (file.id, True, "vector_store.file.deleted")
    assert (await client_a.vector_stores.retrieve(first.id)).file_counts.total == 0
    assert await service.knowledge.search(keys[0], "ficus lobby") == []
    assert (await client_a.files.retrieve(file.id)).id == file.id  # the upload stays
    with pytest.raises(openai.NotFoundError):
        await client_a.vector_stores.files.delete(file.id, vector_store_id=first.id)

    await client_a.files.delete(file.id)  # removes it from every vector store, as the old API did
    assert (await client_a.vector_stores.retrieve(second.id)).file_counts.total == 0
    assert (await client_a.vector_stores.files.list(vector_store_id=second.id)).data == []
    assert await service.knowledge.search_many(keys, "ficus lobby") == []


async def _keys(service: Threadline, vector_store_ids: list[str]) -> list[str]:
    from bots.api.auth import owner_id
    from core.api_objects import api_channel

    return [api_channel(owner_id(API_KEY_A), vector_store_id) for vector_store_id in vector_store_ids]


# -- batches ---------------------------------------------------------------------------------------------


async def test_a_batch_upload_and_poll_counts_completed_and_failed(client_a: openai.AsyncOpenAI) -> None:
    store = await client_a.vector_stores.create(name="Batch")
    earlier = await upload(client_a, "plants.txt", PLANTS)
    batch = await client_a.vector_stores.file_batches.upload_and_poll(
        store.id, files=[("handbook.md", HANDBOOK), ("notes.txt", GARBLED)], file_ids=[earlier]
    )
    assert batch.id.startswith("vsfb_")
    assert (batch.object, batch.status, batch.vector_store_id) == ("vector_store.files_batch", "completed", store.id)
    counts = batch.file_counts
    assert (counts.completed, counts.failed, counts.in_progress, counts.total) == (2, 1, 0, 3)
    assert await client_a.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id) == batch

    files = await client_a.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id)
    assert len(files.data) == 3
    assert earlier in {f.id for f in files.data}
    failed = await client_a.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id, filter="failed")
    [bad] = failed.data
    assert bad.last_error is not None
    assert bad.last_error.code == "invalid_file"
    # A file attached outside the batch is not one of its files.
    await client_a.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("more.txt", b"More plants."))
    assert len((await client_a.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id)).data) == 3
    assert (await client_a.vector_stores.retrieve(store.id)).file_counts.total == 4


async def test_cancelling_a_batch_stops_indexing_its_files(client_a: openai.AsyncOpenAI) -> None:
    store = await client_a.vector_stores.create(name="Cancel")
    file_id = await upload(client_a, "big.txt", BIG)
    batch = await client_a.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=[file_id])
    assert batch.status == "in_progress"
    cancelled = await client_a.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id)
    assert cancelled.status == "cancelled"
    assert (cancelled.file_counts.cancelled, cancelled.file_counts.in_progress) == (1, 0)
    file = await client_a.vector_stores.files.retrieve(file_id, vector_store_id=store.id)
    assert (file.status, file.last_error) == ("cancelled", None)
    listed = await client_a.vector_stores.files.list(vector_store_id=store.id, filter="cancelled")
    assert [f.id for f in listed.data] == [file_id]
    assert (await client_a.vector_stores.retrieve(store.id)).file_counts.cancelled == 1
    # Cancelling again, or a finished batch, changes nothing.
    assert (await client_a.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id)).status == "cancelled"
    with pytest.raises(openai.NotFoundError):
        await client_a.vector_stores.file_batches.cancel("vsfb_nope", vector_store_id=store.id)


# -- one key never reaches another's ----------------------------------------------------------------


async def test_a_key_cannot_reach_another_keys_files_or_vector_stores(
    client_a: openai.AsyncOpenAI, client_b: openai.AsyncOpenAI
) -> None:
    store = await client_a.vector_stores.create(name="A's")
    file = await client_a.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("plants.txt", PLANTS))
    batch = await client_a.vector_stores.file_batches.create_and_poll(vector_store_id=store.id, file_ids=[file.id])

    assert (await client_b.files.list()).data == []
    assert (await client_b.vector_stores.list()).data == []
    attempts = [
        client_b.files.retrieve(file.id),
        client_b.files.content(file.id),
        client_b.files.delete(file.id),
        client_b.vector_stores.retrieve(store.id),
        client_b.vector_stores.update(store.id, name="mine"),
        client_b.vector_stores.delete(store.id),
        client_b.vector_stores.files.list(vector_store_id=store.id),
        client_b.vector_stores.files.retrieve(file.id, vector_store_id=store.id),
        client_b.vector_stores.files.create(vector_store_id=store.id, file_id=file.id),
        client_b.vector_stores.files.delete(file.id, vector_store_id=store.id),
        client_b.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id),
        client_b.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id),
        client_b.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id),
        client_b.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=[file.id]),
    ]
    for attempt in attempts:
        with pytest.raises(openai.NotFoundError):
            await attempt

    # B cannot put A's file into a store of its own either.
    own = await client_b.vector_stores.create(name="B's")
    with pytest.raises(openai.NotFoundError) as raised:
        await client_b.vector_stores.files.create(vector_store_id=own.id, file_id=file.id)
    assert f"No file found with id '{file.id}'." in raised.value.message
    with pytest.raises(openai.NotFoundError):
        await client_b.vector_stores.file_batches.create(vector_store_id=own.id, file_ids=[file.id])
    with pytest.raises(openai.NotFoundError):
        await client_b.vector_stores.create(name="B's too", file_ids=[file.id])
    assert (await client_b.vector_stores.retrieve(own.id)).file_counts.total == 0
    # A batch id of A's under B's store is not found either.
    with pytest.raises(openai.NotFoundError):
        await client_b.vector_stores.file_batches.retrieve(batch.id, vector_store_id=own.id)

    # A's objects are untouched.
    assert (await client_a.files.content(file.id)).content == PLANTS
    kept = await client_a.vector_stores.retrieve(store.id)
    assert (kept.name, kept.file_counts.completed) == ("A's", 1)


async def test_a_vector_store_file_under_another_store_of_the_same_key_is_not_found(
    client_a: openai.AsyncOpenAI,
) -> None:
    first = await client_a.vector_stores.create(name="First")
    second = await client_a.vector_stores.create(name="Second")
    file = await client_a.vector_stores.files.upload_and_poll(vector_store_id=first.id, file=("plants.txt", PLANTS))
    batch = await client_a.vector_stores.file_batches.create_and_poll(vector_store_id=first.id, file_ids=[file.id])
    with pytest.raises(openai.NotFoundError):
        await client_a.vector_stores.files.retrieve(file.id, vector_store_id=second.id)
    with pytest.raises(openai.NotFoundError):
        await client_a.vector_stores.file_batches.retrieve(batch.id, vector_store_id=second.id)


# -- restarts and upgrades ----------------------------------------------------------------------------


async def test_a_file_being_indexed_at_a_stop_is_failed_with_a_server_error(
    open_service: ServiceFactory,
) -> None:
    first = await open_service()
    server = await ApiServer.start(first, ApiSettings(keys=(API_KEY_A,), port=0, host="127.0.0.1"))
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key=API_KEY_A, max_retries=0) as client:
        store = await client.vector_stores.create(name="Restart")
        file_id = await upload(client, "big.txt", BIG)
        created = await client.vector_stores.files.create(vector_store_id=store.id, file_id=file_id)
        assert created.status == "in_progress"
    await server.stop()
    await first.close()

    second = await open_service()
    server = await ApiServer.start(second, ApiSettings(keys=(API_KEY_A,), port=0, host="127.0.0.1"))
    try:
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key=API_KEY_A, max_retries=0) as client:
            file = await client.vector_stores.files.retrieve(file_id, vector_store_id=store.id)
            assert file.status == "failed"
            assert file.last_error is not None
            assert file.last_error.code == "server_error"
            assert "interrupted" in file.last_error.message
    finally:
        await server.stop()


async def test_upgrade_to_api_files_keeps_the_knowledge_bases(tmp_path: Any) -> None:
    from core.store import Store
    from core.store.files import FileStore

    path = tmp_path / "old.db"
    old = await Store.open(path, stop_before="m007_api_files_and_vector_stores")
    await old.close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO files (id, channel, name, size, sha256, status, created_at)"
            " VALUES ('file_1', 'slack:T1:C1', 'a.txt', 3, 'abc', 'completed', 0)"
        )
        conn.execute("INSERT INTO file_contents (sha256, data) VALUES ('abc', x'616263')")

    new = await Store.open(path)
    try:
        assert "m007_api_files_and_vector_stores" in await new.applied_migrations()
        failed = await FileStore(new).fail("file_1", "unreadable", code="invalid_file")
        assert (failed.id, failed.status) == ("file_1", "failed")
        await FileStore(new).remove("slack:T1:C1")  # the last file with those bytes: they go too
    finally:
        await new.close()
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"api_files", "vector_stores", "vector_store_file_batches", "vector_store_batch_files"} <= tables
        assert conn.execute("SELECT count(*) FROM file_contents").fetchone() == (0,)


async def test_many_uploads_at_once_are_all_kept(client_a: openai.AsyncOpenAI) -> None:
    ids = await asyncio.gather(*(upload(client_a, f"n{n}.txt", f"note {n}".encode()) for n in range(20)))
    assert len(set(ids)) == 20
    assert {f.id for f in (await client_a.files.list()).data} == set(ids)


def test_statuses_follow_the_old_api() -> None:
    from core.file_records import FileCounts, batch_status, vector_store_status

    assert vector_store_status(FileCounts(in_progress=1), None, now=10) == "in_progress"
    assert vector_store_status(FileCounts(completed=2, failed=1), None, now=10) == "completed"
    assert vector_store_status(FileCounts(in_progress=1), expires_at=10, now=10) == "expired"
    assert vector_store_status(FileCounts(), expires_at=11, now=10) == "completed"
    assert batch_status(FileCounts(in_progress=1, completed=1), cancelled=False) == "in_progress"
    assert batch_status(FileCounts(completed=1, failed=1), cancelled=False) == "completed"
    assert batch_status(FileCounts(failed=2), cancelled=False) == "failed"
    assert batch_status(FileCounts(completed=1, cancelled=1), cancelled=True) == "cancelled"
