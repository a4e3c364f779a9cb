"""Schemathesis against the live API: every operation of the OpenAPI document, with generated requests.

The real server runs on loopback (its own event loop, in a thread: schemathesis's pytest
integration is synchronous) with a temporary database, one key, and the scripted model server
behind it. For each operation schemathesis sends its coverage cases (boundary values, missing
and wrong-typed fields) and a bounded number of generated requests, valid and invalid,
reproducibly (derandomized), and checks each answer: no 5xx, a documented status code and
content type, a body that matches the documented schema (a streamed run: each event's data, as
the SDK's type of that event), and that a request the document calls invalid is refused.

Generated ids name nothing (a 404); so that the success paths are exercised too, about half of
the cases are pointed at real objects made at the start (an assistant, a run and its steps, a
file in a vector store, ...). Deletes and cancel get objects of their own, so the others stay.

Left out, and why:
- security parameters: the test sends its key with every request; keys are test_api_security.py's.
- positive_data_acceptance (valid requests get a 2xx): a valid request may rightly get a 400 that
  the document lists: an ``after`` cursor that names no object in the list, a run already active
  on the thread, a run in a status that takes no tool outputs, and the parts of the old wire
  format Threadline refuses with a reason (an image_file that names no image of the key, a static chunking
  strategy).
"""

from __future__ import annotations

import asyncio
import json
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from bots.api.app import ApiServer
from bots.api.config import ApiSettings
from bots.api.openapi import document
from core.service import Threadline
from core.settings import Settings
from tests.fakes.openai_server import (
    Answer,
    FakeOpenAI,
    Reply,
    ToolCall,
    last_user_text,
    offered_tools,
    tool_results,
)
from tests.helpers import API_KEY_A

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks the retired API deprecated

MAX_EXAMPLES = 25  # generated requests per operation, besides the coverage cases: well under two minutes in all
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,  # invalid requests (by the document) are refused with a 4xx
]
AUTH = {"Authorization": f"Bearer {API_KEY_A}"}


LOOKUP = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}},
}


def _script(request: dict[str, Any]) -> Answer:
    """Echo; call the client's ``lookup`` function when asked to, and answer with its output."""
    if results := tool_results(request):
        return Reply(text=f"lookup said: {results[-1]['content']}")
    if "lookup" in offered_tools(request) and "call lookup" in last_user_text(request):
        return Reply(tool_calls=(ToolCall("lookup", {"q": "vpn"}),))
    return Reply(text=f"echo: {last_user_text(request)}")


@dataclass
class LiveApi:
    """The API and the scripted model server, served from a thread of their own."""

    root: Path
    origin: str = ""
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _failed: BaseException | None = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), name="live-api", daemon=True)
        self._thread.start()
        if not self._ready.wait(60) or self._failed is not None:
            raise RuntimeError("the API did not start") from self._failed

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(30)

    async def _serve(self) -> None:
        try:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            async with FakeOpenAI(_script) as fake:
                settings = Settings(
                    openai_api_key="sk-test-not-a-real-key",
                    openai_base_url=fake.base_url,
                    model="fake-model",
                    db_path=self.root / "threadline.db",
                    open_meteo_url="http://127.0.0.1:9/v1",
                    open_meteo_geocoding_url="http://127.0.0.1:9/v1",
                    model_timeout=5.0,
                    model_max_retries=0,
                    tokenizer="estimate",
                    code_interpreter=False,
                )
                service = await Threadline.open(settings)
                try:
                    server = await ApiServer.start(service, ApiSettings(keys=(API_KEY_A,), port=0, host="127.0.0.1"))
                    try:
                        self.origin = f"http://{server.host}:{server.port}"
                        self._ready.set()
                        await self._stop.wait()
                    finally:
                        await server.stop()
                finally:
                    await service.close()
        except BaseException as exc:
            self._failed = exc
            self._ready.set()
            raise


def _seed(client: openai.OpenAI) -> dict[str, str]:
    """Objects of every kind, by the name of the path parameter that takes their id."""
    assistant = client.beta.assistants.create(model="fake-model", name="seed", instructions="Be brief.")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run
    step = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data[0]
    message = client.beta.threads.messages.list(thread.id).data[0]
    upload = client.files.create(file=("notes.txt", b"The VPN is up again.\n"), purpose="assistants")
    store = client.vector_stores.create(name="seed", file_ids=[upload.id])
    other = client.files.create(file=("more.txt", b"The printer is down.\n"), purpose="assistants")
    batch = client.vector_stores.file_batches.create_and_poll(vector_store_id=store.id, file_ids=[other.id])
    return {
        "assistant_id": assistant.id,
        "thread_id": thread.id,
        "message_id": message.id,
        "run_id": run.id,
        "step_id": step.id,
        "file_id": upload.id,
        "vector_store_id": store.id,
        "batch_id": batch.id,
    }


def _seed_consumed(client: openai.OpenAI, ids: dict[str, str]) -> dict[tuple[str, str], dict[str, str]]:
    """Objects for the operations that end them (deletes, cancel), so that the seeded ones stay for the others:
    by (method, path), the ids to use instead of the seeded ones."""
    assistant = client.beta.assistants.create(model="fake-model", name="doomed")
    thread = client.beta.threads.create()
    message = client.beta.threads.messages.create(ids["thread_id"], role="user", content="delete me")
    upload = client.files.create(file=("doomed.txt", b"Delete me.\n"), purpose="assistants")
    store = client.vector_stores.create(name="doomed")
    attached = client.files.create(file=("detach.txt", b"Detach me.\n"), purpose="assistants")
    holder = client.vector_stores.create(name="holder", file_ids=[attached.id])
    waiting = client.beta.threads.create(messages=[{"role": "user", "content": "please call lookup"}])
    paused = client.beta.threads.runs.create_and_poll(
        thread_id=waiting.id, assistant_id=ids["assistant_id"], tools=[LOOKUP]
    )
    assert paused.status == "requires_action", paused
    return {
        ("DELETE", "/v1/assistants/{assistant_id}"): {"assistant_id": assistant.id},
        ("DELETE", "/v1/threads/{thread_id}"): {"thread_id": thread.id},
        ("DELETE", "/v1/threads/{thread_id}/messages/{message_id}"): {"message_id": message.id},
        ("DELETE", "/v1/files/{file_id}"): {"file_id": upload.id},
        ("DELETE", "/v1/vector_stores/{vector_store_id}"): {"vector_store_id": store.id},
        ("DELETE", "/v1/vector_stores/{vector_store_id}/files/{file_id}"): {
            "vector_store_id": holder.id,
            "file_id": attached.id,
        },
        ("POST", "/v1/threads/{thread_id}/runs/{run_id}/cancel"): {"thread_id": waiting.id, "run_id": paused.id},
    }


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    api = LiveApi(tmp_path_factory.mktemp("schemathesis"))
    api.start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def seeded(live_api: LiveApi) -> Seeded:
    with _client(live_api) as client:
        ids = _seed(client)
        return Seeded(ids, _seed_consumed(client, ids))


@dataclass(frozen=True)
class Seeded:
    ids: dict[str, str]
    consumed: dict[tuple[str, str], dict[str, str]]

    def path_parameters(self, operation: schemathesis.APIOperation, generated: dict[str, Any]) -> dict[str, Any]:
        """The seeded objects' ids for the generated ones (for a delete or cancel: objects of its own)."""
        real = {**self.ids, **self.consumed.get((operation.method.upper(), operation.path), {})}
        return {name: real.get(name, value) for name, value in generated.items()}

    def use(self, case: schemathesis.Case) -> None:
        """Point the case at seeded objects: the ids in its path, and those its body names.

        New containers are assigned (not edited in place) so that schemathesis sees the change and judges again
        whether the request is still invalid, where it was generated to be.
        """
        if case.path_parameters:
            case.path_parameters = self.path_parameters(case.operation, case.path_parameters)
        if not isinstance(case.body, dict):
            return
        body = dict(case.body)
        for name in ("assistant_id", "file_id"):
            if isinstance(body.get(name), str):
                body[name] = self.ids[name]
        if isinstance(body.get("file_ids"), list):
            body["file_ids"] = [self.ids["file_id"] if isinstance(i, str) else i for i in body["file_ids"]]
        if body != case.body:
            case.body = body


# The document as the code builds it; test_the_document_schemathesis_tests_is_the_served_one checks it is the one
# the server serves. (Loaded here, not from a fixture: schemathesis.pytest.from_fixture does not work with pytest 9.2.)
schema = schemathesis.openapi.from_dict(document())
schema.config.update(request_timeout=30)
# The key is the test's to send (AUTH, on every request); keys themselves are tested in test_api_security.py.
# Query parameters the API does not know are ignored, as the old API ignored them: a request with one is not
# "schema-violating data" to refuse (schemathesis counted it so for runs.create once it declared include[]).
schema.config.generation.update(with_security_parameters=False, allow_extra_parameters=False)


def test_the_document_schemathesis_tests_is_the_served_one(live_api: LiveApi) -> None:
    served = schemathesis.openapi.from_url(f"{live_api.origin}/openapi.json")

    assert served.raw_schema == schema.raw_schema


def _half(case: schemathesis.Case) -> bool:
    """True for about half of the cases, the same ones each run (a hash of what was generated)."""
    generated = json.dumps([case.path_parameters, case.query, repr(case.body)], sort_keys=True, default=repr)
    return zlib.crc32(generated.encode()) % 2 == 0


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],  # a timing: it would make the run depend on the machine's load
)
def test_the_api_keeps_its_openapi_document(case: schemathesis.Case, live_api: LiveApi, seeded: Seeded) -> None:
    if _half(case):
        seeded.use(case)
    case.call_and_validate(base_url=live_api.origin, headers=AUTH, checks=CHECKS)


# -- streamed runs, which generated requests seldom reach (a valid body, a real assistant, and stream: true) -------
# Each makes its own assistant: the fuzzing above may have given the seeded one any tools and settings.


def _client(live_api: LiveApi) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_api.origin}/v1", api_key=API_KEY_A, max_retries=0)


def _call(live_api: LiveApi, path: str, body: dict[str, Any], **path_parameters: str) -> schemathesis.Response:
    case = schema[path]["POST"].Case(body=body, path_parameters=path_parameters, media_type="application/json")
    return case.call_and_validate(base_url=live_api.origin, headers=AUTH, checks=CHECKS)


def _events(response: schemathesis.Response) -> list[str]:
    return [line.removeprefix("event: ") for line in response.text.splitlines() if line.startswith("event: ")]


@pytest.mark.parametrize("stream", [False, True], ids=["polled", "streamed"])
def test_a_thread_and_run_matches_the_document(live_api: LiveApi, stream: bool) -> None:
    with _client(live_api) as client:
        assistant = client.beta.assistants.create(model="fake-model")
    body = {
        "assistant_id": assistant.id,
        "thread": {"messages": [{"role": "user", "content": "hello"}]},
        "stream": stream,
    }

    response = _call(live_api, "/v1/threads/runs", body)

    if stream:
        events = _events(response)
        assert events[0] == "thread.created"
        assert events[-2:] == ["thread.run.completed", "done"]
        assert "thread.message.delta" in events


def test_the_function_calling_loop_streamed_matches_the_document(live_api: LiveApi) -> None:
    with _client(live_api) as client:
        assistant = client.beta.assistants.create(model="fake-model")
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "please call lookup"}])
    body = {"assistant_id": assistant.id, "tools": [LOOKUP], "stream": True}

    paused = _call(live_api, "/v1/threads/{thread_id}/runs", body, thread_id=thread.id)

    assert _events(paused)[-2:] == ["thread.run.requires_action", "done"]
    with _client(live_api) as client:
        run = client.beta.threads.runs.list(thread.id).data[0]
    assert run.required_action is not None
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    outputs = {"tool_outputs": [{"tool_call_id": call.id, "output": "it is up"}], "stream": True}
    resumed = _call(
        live_api,
        "/v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs",
        outputs,
        thread_id=thread.id,
        run_id=run.id,
    )
    assert _events(resumed)[-2:] == ["thread.run.completed", "done"]
