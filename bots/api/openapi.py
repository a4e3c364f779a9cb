"""The API's OpenAPI 3.1 document, built from the code that serves it, at ``GET /openapi.json``.

One table, :data:`OPERATIONS`, names every route: method, path, operationId, the request body
(a pydantic request model, or the multipart upload), query parameters, the response (an openai
SDK type, a list of them, a stream or bytes) and the error statuses it can answer with. The
schemas are the models' own (``model_json_schema``): request bodies from bots/api/requests.py and
its siblings, responses from the SDK types the serializers validate with, errors from
bots/api/errors.py. A test checks the table against the routes the app registers, so a route
added without a row here fails it, and schemathesis checks the server against the document.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

from openai.types import FileDeleted, FileObject, VectorStore, VectorStoreDeleted, VectorStoreSearchResponse
from openai.types.beta import Assistant, AssistantDeleted, Thread, ThreadDeleted
from openai.types.beta.threads import Message, MessageDeleted, Run
from openai.types.beta.threads.runs import RunStep
from openai.types.vector_stores import (
    FileContentResponse,
    VectorStoreFile,
    VectorStoreFileBatch,
    VectorStoreFileDeleted,
)
from pydantic import BaseModel, create_model
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from bots.api.errors import ErrorBody
from bots.api.file_requests import (
    FileBatchCreate,
    VectorStoreCreate,
    VectorStoreFileCreate,
    VectorStoreFileUpdate,
    VectorStoreSearch,
    VectorStoreUpdate,
)
from bots.api.files import MAX_LIST_LIMIT
from bots.api.pagination import MAX_LIMIT
from bots.api.requests import (
    AssistantCreate,
    AssistantUpdate,
    MessageCreate,
    MessageUpdate,
    ThreadCreate,
    ThreadUpdate,
)
from bots.api.run_requests import RunCreate, RunUpdate, ThreadAndRunCreate, ToolOutputsSubmit
from bots.api.serialize_runs import FILE_SEARCH_CONTENT, STREAM_EVENTS
from core.api_files import PURPOSES
from core.file_records import FILE_STATUSES

__all__ = ["OPERATIONS", "Operation", "document"]

OPENAPI_VERSION = "3.1.0"
_DEFS = "#/$defs/"
_SCHEMAS = "#/components/schemas/"
_PATH_PARAM = re.compile(r"{(\w+)}")


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    """``/readyz``: each check (database, platform, model) is ``ok`` or says what is wrong."""

    status: Literal["ready", "unavailable"]
    checks: dict[str, str]
    failed: list[str] | None = None


class _Page(BaseModel):
    """The old API's list envelope; ``data`` is typed by each list (see :func:`_list_of`)."""

    object: Literal["list"]
    first_id: str | None
    last_id: str | None
    has_more: bool


class VectorStoreSearchPage(BaseModel):
    """``vector_stores.search``: one page of results, best first."""

    object: Literal["vector_store.search_results.page"]
    search_query: list[str]
    data: list[VectorStoreSearchResponse]
    has_more: bool
    next_page: str | None


class VectorStoreFileContentPage(BaseModel):
    """``vector_stores.files.content``: the file's parsed text, chunk by chunk."""

    object: Literal["vector_store.file_content.page"]
    data: list[FileContentResponse]
    has_more: bool
    next_page: str | None


def _list_of(item: type[BaseModel]) -> type[BaseModel]:
    """The list envelope of ``item``: ``AssistantList`` for Assistant."""
    data = (list[item], ...)  # type: ignore[valid-type]
    model: type[BaseModel] = create_model(f"{item.__name__}List", __base__=_Page, data=data)
    return model


@dataclass(frozen=True)
class Query:
    """A query parameter and its JSON schema."""

    name: str
    schema: Mapping[str, Any]
    description: str


def _page(max_limit: int = MAX_LIMIT, default_limit: int = 20) -> tuple[Query, ...]:
    """The list parameters bots/api/pagination.py reads."""
    return (
        Query(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": max_limit, "default": default_limit},
            f"How many objects to return, 1 to {max_limit:,}.",
        ),
        Query("order", {"type": "string", "enum": ["asc", "desc"], "default": "desc"}, "By creation time."),
        Query("after", {"type": "string"}, "The id of a listed object: the page after it."),
        Query("before", {"type": "string"}, "The id of a listed object: the page before it."),
    )


_STATUS_FILTER = Query("filter", {"type": "string", "enum": list(FILE_STATUSES)}, "Only files with this status.")
_INCLUDE = Query(
    "include[]",
    {"type": "array", "items": {"type": "string", "enum": [FILE_SEARCH_CONTENT]}},
    "Steps' file search results carry their passages' text.",
)

Multipart = Literal["multipart"]
Stream = Literal["stream"]  # a Run, or with ``stream: true`` the run's server-sent events
Binary = Literal["binary"]
Document = Literal["openapi"]
Metrics = Literal["metrics"]  # Prometheus' text format


@dataclass(frozen=True)
class Operation:
    method: Literal["get", "post", "delete"]
    path: str
    operation_id: str
    summary: str
    response: type[BaseModel] | Stream | Binary | Document | Metrics
    body: type[BaseModel] | Multipart | None = None
    query: tuple[Query, ...] = ()
    errors: tuple[int, ...] = ()  # besides 401 for a missing or wrong key, on every /v1 operation
    list_of: bool = False  # the response is a list envelope of ``response``
    unavailable: bool = False  # may answer 503 with the same body (not ready)

    @property
    def authenticated(self) -> bool:
        return self.path.startswith("/v1/")


def _op(
    method: Literal["get", "post", "delete"],
    path: str,
    operation_id: str,
    summary: str,
    response: type[BaseModel] | Stream | Binary | Document | Metrics,
    **options: Any,
) -> Operation:
    return Operation(method, path, operation_id, summary, response, **options)


_ASSISTANT = "/v1/assistants/{assistant_id}"
_THREAD = "/v1/threads/{thread_id}"
_MESSAGE = _THREAD + "/messages/{message_id}"
_RUN = _THREAD + "/runs/{run_id}"
_FILE = "/v1/files/{file_id}"
_STORE = "/v1/vector_stores/{vector_store_id}"
_STORE_FILE = _STORE + "/files/{file_id}"
_BATCH = _STORE + "/file_batches/{batch_id}"

# 400: a bad body or query; 404: an id the key cannot reach; 413: a body over the server's limit.
_CREATE = (400, 413)
_UPDATE = (400, 404, 413)
_LIST = (400,)
_LIST_IN = (400, 404)
_ONE = (404,)

OPERATIONS: tuple[Operation, ...] = (
    _op("get", "/healthz", "healthz", "Whether the server is up", Health),
    _op("get", "/readyz", "readyz", "Whether the database, the model endpoint and the server are ready "
        "(loopback clients only unless THREADLINE_METRICS_HOST is set)", Readiness, unavailable=True),
    _op("get", "/metrics", "metrics", "Prometheus metrics (loopback clients only unless THREADLINE_METRICS_HOST "
        "is set)", "metrics"),
    _op("get", "/openapi.json", "openapi", "This document", "openapi"),
    # assistants
    _op("post", "/v1/assistants", "createAssistant", "Create an assistant", Assistant, body=AssistantCreate,
        errors=_CREATE),
    _op("get", "/v1/assistants", "listAssistants", "List assistants", Assistant, list_of=True, query=_page(),
        errors=_LIST),
    _op("get", _ASSISTANT, "getAssistant", "Retrieve an assistant", Assistant, errors=_ONE),
    _op("post", _ASSISTANT, "modifyAssistant", "Modify an assistant", Assistant, body=AssistantUpdate,
        errors=_UPDATE),
    _op("delete", _ASSISTANT, "deleteAssistant", "Delete an assistant", AssistantDeleted, errors=_ONE),
    # threads
    _op("post", "/v1/threads", "createThread", "Create a thread", Thread, body=ThreadCreate, errors=_CREATE),
    _op("get", _THREAD, "getThread", "Retrieve a thread", Thread, errors=_ONE),
    _op("post", _THREAD, "modifyThread", "Modify a thread", Thread, body=ThreadUpdate, errors=_UPDATE),
    _op("delete", _THREAD, "deleteThread", "Delete a thread (cancels its active run)", ThreadDeleted, errors=_ONE),
    # messages
    _op("post", _THREAD + "/messages", "createMessage", "Add a message to a thread", Message, body=MessageCreate,
        errors=_UPDATE),
    _op("get", _THREAD + "/messages", "listMessages", "List a thread's messages", Message, list_of=True,
        query=(*_page(), Query("run_id", {"type": "string"}, "Only the messages this run wrote.")),
        errors=_LIST_IN),
    _op("get", _MESSAGE, "getMessage", "Retrieve a message", Message, errors=_ONE),
    _op("post", _MESSAGE, "modifyMessage", "Modify a message's metadata", Message, body=MessageUpdate,
        errors=_UPDATE),
    _op("delete", _MESSAGE, "deleteMessage", "Delete a message", MessageDeleted, errors=_ONE),
    # runs and their steps
    _op("post", "/v1/threads/runs", "createThreadAndRun", "Create a thread and run it", "stream",
        body=ThreadAndRunCreate, errors=_UPDATE),
    _op("post", _THREAD + "/runs", "createRun", "Run an assistant on a thread", "stream", body=RunCreate,
        query=(_INCLUDE,), errors=_UPDATE),
    _op("get", _THREAD + "/runs", "listRuns", "List a thread's runs", Run, list_of=True, query=_page(),
        errors=_LIST_IN),
    _op("get", _RUN, "getRun", "Retrieve a run", Run, errors=_ONE),
    _op("post", _RUN, "modifyRun", "Modify a run's metadata", Run, body=RunUpdate, errors=_UPDATE),
    _op("post", _RUN + "/cancel", "cancelRun", "Cancel a run", Run, errors=(400, 404)),
    _op("post", _RUN + "/submit_tool_outputs", "submitToolOutputsToRun", "Submit the outputs of function calls",
        "stream", body=ToolOutputsSubmit, errors=_UPDATE),
    _op("get", _RUN + "/steps", "listRunSteps", "List a run's steps", RunStep, list_of=True,
        query=(*_page(), _INCLUDE), errors=_LIST_IN),
    _op("get", _RUN + "/steps/{step_id}", "getRunStep", "Retrieve a run step", RunStep, query=(_INCLUDE,),
        errors=(400, 404)),
    # files
    _op("post", "/v1/files", "createFile", "Upload a file", FileObject, body="multipart", errors=_CREATE),
    _op("get", "/v1/files", "listFiles", "List files", FileObject, list_of=True,
        query=(*_page(MAX_LIST_LIMIT, MAX_LIST_LIMIT), Query("purpose", {"type": "string"}, "Only these files.")),
        errors=_LIST),
    _op("get", _FILE, "retrieveFile", "Retrieve a file", FileObject, errors=_ONE),
    _op("delete", _FILE, "deleteFile", "Delete a file", FileDeleted, errors=_ONE),
    _op("get", _FILE + "/content", "downloadFile", "Download a file's bytes", "binary", errors=_ONE),
    # vector stores, their files and file batches
    _op("post", "/v1/vector_stores", "createVectorStore", "Create a vector store", VectorStore,
        body=VectorStoreCreate, errors=_UPDATE),
    _op("get", "/v1/vector_stores", "listVectorStores", "List vector stores", VectorStore, list_of=True,
        query=_page(), errors=_LIST),
    _op("get", _STORE, "getVectorStore", "Retrieve a vector store", VectorStore, errors=_ONE),
    _op("post", _STORE, "modifyVectorStore", "Modify a vector store", VectorStore, body=VectorStoreUpdate,
        errors=_UPDATE),
    _op("delete", _STORE, "deleteVectorStore", "Delete a vector store", VectorStoreDeleted, errors=_ONE),
    _op("post", _STORE + "/search", "searchVectorStore", "Search a vector store's files", VectorStoreSearchPage,
        body=VectorStoreSearch, errors=_UPDATE),
    _op("post", _STORE + "/files", "createVectorStoreFile", "Add a file to a vector store", VectorStoreFile,
        body=VectorStoreFileCreate, errors=_UPDATE),
    _op("get", _STORE + "/files", "listVectorStoreFiles", "List a vector store's files", VectorStoreFile,
        list_of=True, query=(*_page(), _STATUS_FILTER), errors=_LIST_IN),
    _op("get", _STORE_FILE, "getVectorStoreFile", "Retrieve a vector store file", VectorStoreFile, errors=_ONE),
    _op("get", _STORE_FILE + "/content", "retrieveVectorStoreFileContent", "A vector store file's parsed text",
        VectorStoreFileContentPage, errors=_ONE),
    _op("post", _STORE_FILE, "updateVectorStoreFileAttributes", "Set a vector store file's attributes",
        VectorStoreFile, body=VectorStoreFileUpdate, errors=_UPDATE),
    _op("delete", _STORE_FILE, "deleteVectorStoreFile", "Remove a file from a vector store",
        VectorStoreFileDeleted, errors=_ONE),
    _op("post", _STORE + "/file_batches", "createVectorStoreFileBatch", "Add files to a vector store",
        VectorStoreFileBatch, body=FileBatchCreate, errors=_UPDATE),
    _op("get", _BATCH, "getVectorStoreFileBatch", "Retrieve a file batch", VectorStoreFileBatch, errors=_ONE),
    _op("post", _BATCH + "/cancel", "cancelVectorStoreFileBatch", "Cancel a file batch", VectorStoreFileBatch,
        errors=_ONE),
    _op("get", _BATCH + "/files", "listFilesInVectorStoreBatch", "List a file batch's files", VectorStoreFile,
        list_of=True, query=(*_page(), _STATUS_FILTER), errors=_LIST_IN),
)  # fmt: skip

_REASONS = {
    400: "The request is invalid; `error.param` names the parameter at fault.",
    401: "The API key is missing or wrong.",
    404: "No such object, or it belongs to another key.",
    413: "The request body is larger than the server accepts.",
}
_ERROR_NAMES = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 413: "PayloadTooLarge"}
_STREAM_EVENT = "RunStreamEvent"  # the schema of one server-sent event of a streamed run


# -- schemas ----------------------------------------------------------------------------------------


class _Schemas:
    """The components' schemas: each model's once, under a readable name, and a reference to it."""

    def __init__(self, requests: Sequence[type[BaseModel]], responses: Sequence[type[BaseModel]]) -> None:
        self.components: dict[str, Any] = {}
        self._refs: dict[type[BaseModel], dict[str, Any]] = {}
        taken: set[str] = set()
        # Requests and responses each in one pass, so that pydantic names each model once; a request model
        # whose name a response's already has gets the SDK's suffix for request types, "Param".
        self._add(responses, "serialization", "", taken)
        self._add(requests, "validation", "Param", taken)

    def _add(self, models: Sequence[type[BaseModel]], mode: JsonSchemaMode, suffix: str, taken: set[str]) -> None:
        refs, defs = models_json_schema([(m, mode) for m in models], ref_template=_DEFS + "{model}")
        names: dict[str, str] = {}
        for name in defs.get("$defs", {}):
            candidates = [*_readable(name), *(n + suffix for n in _readable(name))]
            readable = next((n for n in candidates if n not in taken), name)
            taken.add(readable)
            names[name] = readable
        rename = _renamer(names)
        for name, schema in defs.get("$defs", {}).items():
            self.components[names[name]] = rename(schema)
        for model in models:
            self._refs[model] = rename(refs[model, mode])

    def ref(self, model: type[BaseModel]) -> dict[str, Any]:
        return dict(self._refs[model])


def _readable(name: str) -> tuple[str, ...]:
    """Names for a model, best first. Pydantic names a model whose short name two models have by its module too
    (``openai__types__beta__threads__run__LastError``); here that is the module's name and its own
    (``RunLastError``), or the short name alone where it begins with the module's (``RunStepDeltaEvent``)."""
    if "__" not in name:
        return (name,)
    *modules, short = name.split("__")
    prefix = "".join(part.capitalize() for part in modules[-1].split("_"))
    return (short, prefix + short) if short.startswith(prefix) else (prefix + short,)


def _renamer(names: Mapping[str, str]) -> Callable[[Any], Any]:
    def rename(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: rename(item) for key, item in value.items()}
        if isinstance(value, list):
            return [rename(item) for item in value]
        if isinstance(value, str) and value.startswith(_DEFS):
            return _SCHEMAS + names[value.removeprefix(_DEFS)]
        return value

    return rename


# -- the document -----------------------------------------------------------------------------------


def _json(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": dict(schema)}}


def _data_model(event: type[BaseModel]) -> type[BaseModel]:
    """The SDK's type of a stream event's ``data``."""
    data = event.model_fields["data"].annotation
    if not (isinstance(data, type) and issubclass(data, BaseModel)):
        raise TypeError(f"{event.__name__}.data is not a model")
    return data


def _event_data(name: str, schemas: _Schemas) -> dict[str, Any]:
    """The schema of one stream event's ``data`` (JSON): the SDK's type of that event's data."""
    data = _data_model(STREAM_EVENTS[name])
    if name == "error":  # the old API's error object, under "error" as in its error bodies (serialize_runs)
        return {"type": "object", "properties": {"error": schemas.ref(data)}, "required": ["error"]}
    return schemas.ref(data)


def _event_stream(schemas: _Schemas) -> dict[str, Any]:
    """Each server-sent event of a streamed run: its name, and its data as the SDK's type for that event."""
    events: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {
                "event": {"const": name},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": _event_data(name, schemas),
                },
            },
            "required": ["event", "data"],
        }
        for name in sorted(STREAM_EVENTS)
    ]
    events.append(
        {
            "type": "object",
            "properties": {"event": {"const": "done"}, "data": {"const": "[DONE]"}},
            "required": ["event", "data"],
        }
    )
    return {
        "description": "With `stream: true`: the run's server-sent events, each `event: NAME` and `data: JSON` "
        "(this schema describes one event), ending with `event: done`, `data: [DONE]`.",
        "oneOf": events,
    }


def _error_responses(schemas: _Schemas) -> dict[str, Any]:
    return {
        _ERROR_NAMES[status]: {"description": reason, "content": _json(schemas.ref(ErrorBody))}
        for status, reason in _REASONS.items()
    }


def _responses(op: Operation, schemas: _Schemas, response: type[BaseModel] | None) -> dict[str, Any]:
    content: dict[str, Any]
    if op.response == "stream":
        stream = {"$ref": _SCHEMAS + _STREAM_EVENT}
        content = {**_json(schemas.ref(Run)), "text/event-stream": {"schema": stream}}
    elif op.response == "binary":
        content = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    elif op.response == "openapi":
        content = _json({"type": "object", "description": "An OpenAPI 3.1 document."})
    elif op.response == "metrics":
        content = {"text/plain": {"schema": {"type": "string", "description": "Prometheus' text format."}}}
    else:
        assert response is not None
        content = _json(schemas.ref(response))
    out: dict[str, Any] = {"200": {"description": "OK", "content": content}}
    if op.unavailable:
        out["503"] = {"description": "Not ready: `failed` names the checks that failed.", "content": content}
    for status in sorted({*op.errors, *((401,) if op.authenticated else ())}):
        out[str(status)] = {"$ref": f"#/components/responses/{_ERROR_NAMES[status]}"}
    return out


def _request_body(body: type[BaseModel] | Multipart, schemas: _Schemas) -> dict[str, Any]:
    if body == "multipart":
        form = {
            "type": "object",
            "properties": {
                "file": {"type": "string", "format": "binary", "description": "The file's bytes, with its name."},
                "purpose": {"type": "string", "enum": list(PURPOSES)},
            },
            "required": ["file", "purpose"],
            "additionalProperties": False,
        }
        return {"required": True, "content": {"multipart/form-data": {"schema": form}}}
    required = any(field.is_required() for field in body.model_fields.values())
    return {"required": required, "content": _json(schemas.ref(body))}


def _parameters(op: Operation) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in _PATH_PARAM.findall(op.path)
    ]
    parameters += [
        {"name": q.name, "in": "query", "required": False, "description": q.description, "schema": dict(q.schema)}
        for q in op.query
    ]
    return parameters


def _version() -> str:
    try:
        return metadata.version("threadline")
    except metadata.PackageNotFoundError:
        return "0"


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route build_app registers."""
    lists = {op.response: _list_of(op.response) for op in OPERATIONS if op.list_of and isinstance(op.response, type)}
    responses: list[type[BaseModel]] = [ErrorBody, Run]
    responses += [_data_model(event) for event in STREAM_EVENTS.values()]
    for op in OPERATIONS:
        if isinstance(op.response, type):
            responses.append(lists[op.response] if op.list_of else op.response)
    requests = [op.body for op in OPERATIONS if isinstance(op.body, type)]
    schemas = _Schemas(list(dict.fromkeys(requests)), list(dict.fromkeys(responses)))
    schemas.components[_STREAM_EVENT] = _event_stream(schemas)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        response = lists[op.response] if op.list_of and isinstance(op.response, type) else None
        if response is None and isinstance(op.response, type):
            response = op.response
        operation: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.path.split("/")[2] if op.authenticated else "server"],
            "responses": _responses(op, schemas, response),
        }
        if parameters := _parameters(op):
            operation["parameters"] = parameters
        if op.body is not None:
            operation["requestBody"] = _request_body(op.body, schemas)
        if not op.authenticated:
            operation["security"] = []
        paths.setdefault(op.path, {})[op.method] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Threadline Assistants-compatible API",
            "version": _version(),
            "description": "OpenAI's retired Assistants API, self-hosted: point the openai SDK's `base_url` at "
            "`http://HOST:PORT/v1`. Each bearer key sees only its own objects.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "responses": _error_responses(schemas),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One of the server's THREADLINE_API_KEYS (any value when it has none).",
                }
            },
        },
        "security": [{"bearerAuth": []}],
    }
