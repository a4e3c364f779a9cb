"""Request bodies, validated strictly: a wrong type, an unknown field or a bad value is a 400 naming the parameter.

The models follow the old Assistants API's request parameters (the openai SDK's ``*_params``
TypedDicts), with its limits: 16 metadata pairs, 128 tools, names of 256 characters and so on.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Annotated, Any, Literal, TypeVar

from aiohttp import web
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
)
from pydantic_core import ErrorDetails

from bots.api import json_body
from bots.api.errors import MAX_BODY, ApiError, invalid, too_large
from core.api_objects import Attachment, ImageFile, ImageUrl, MessagePart, NewMessage

__all__ = [
    "AssistantCreate",
    "AssistantUpdate",
    "ChunkingStrategy",
    "MessageCreate",
    "MessageUpdate",
    "ThreadCreate",
    "ThreadUpdate",
    "ToolResourcesCreate",
    "check_chunking",
    "read_body",
]

M = TypeVar("M", bound=BaseModel)

_INLINE_PARSE = 64 * 1024  # bytes of a body parsed on the event loop; a larger one is parsed in a thread

# Union members are tagged "~<tag>", so that their tags can be left out of the parameter names in errors.
_TAG = "~"


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


def _metadata(value: dict[str, str]) -> dict[str, str]:
    if len(value) > 16:
        raise ValueError(f"at most 16 key-value pairs are allowed, not {len(value)}")
    for key, item in value.items():
        if len(key) > 64:
            raise ValueError(f"keys may have at most 64 characters; {key[:20]!r}... has {len(key)}")
        if len(item) > 512:
            raise ValueError(f"values may have at most 512 characters; the value of {key!r} has {len(item)}")
    return value


def metadata_limits(schema: dict[str, Any]) -> None:
    """The limits _metadata checks (in its own words), stated in the JSON schema for the OpenAPI document."""
    schema.update(maxProperties=16, propertyNames={"maxLength": 64})
    if schema.get("additionalProperties") == {"type": "string"}:
        schema["additionalProperties"] = {"type": "string", "maxLength": 512}


Metadata = Annotated[dict[str, str], AfterValidator(_metadata), Field(json_schema_extra=metadata_limits)]


def _type_tag(value: Any) -> str | None:
    """A union member's tag from its ``type``: of the JSON object when validating, of the model when dumping."""
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return _TAG + kind if isinstance(kind, str) else None


# -- tools ------------------------------------------------------------------------------------


class FunctionDefinition(_Body):
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionTool(_Body):
    type: Literal["function"]
    function: FunctionDefinition


class RankingOptions(_Body):
    score_threshold: Annotated[float, Field(ge=0, le=1)]
    ranker: Literal["auto", "default_2024_08_21"] | None = None


class FileSearchOptions(_Body):
    max_num_results: Annotated[int, Field(ge=1, le=50)] | None = None
    ranking_options: RankingOptions | None = None


class FileSearchTool(_Body):
    type: Literal["file_search"]
    file_search: FileSearchOptions | None = None


class CodeInterpreterTool(_Body):
    type: Literal["code_interpreter"]


Tool = Annotated[
    Annotated[FunctionTool, Tag(_TAG + "function")]
    | Annotated[FileSearchTool, Tag(_TAG + "file_search")]
    | Annotated[CodeInterpreterTool, Tag(_TAG + "code_interpreter")],
    Discriminator(_type_tag),
]


class CodeInterpreterResources(_Body):
    file_ids: Annotated[list[str], Field(max_length=20)] | None = None


class FileSearchResources(_Body):
    vector_store_ids: Annotated[list[str], Field(max_length=1)] | None = None


class ToolResources(_Body):
    code_interpreter: CodeInterpreterResources | None = None
    file_search: FileSearchResources | None = None


# -- chunking (vector stores, and those made inline) ---------------------------------------------------


class StaticChunking(_Body):
    max_chunk_size_tokens: Annotated[int, Field(ge=100, le=4096)]
    chunk_overlap_tokens: Annotated[int, Field(ge=0)]


class ChunkingStrategy(_Body):
    type: Literal["auto", "static"]
    static: StaticChunking | None = None


def check_chunking(strategy: ChunkingStrategy | None, param: str) -> None:
    """A 400 for a static chunking strategy: Threadline chunks every file the same way."""
    if strategy is not None and strategy.type != "auto":
        raise invalid(
            "Threadline chunks every file the same way (THREADLINE_CHUNK_TOKENS and THREADLINE_CHUNK_OVERLAP on "
            "the server), so a static chunking strategy is not supported. Leave chunking_strategy out, or send "
            '{"type": "auto"}.',
            param,
            code="invalid_value",
        )


# -- tool_resources of a new assistant or thread: vector stores made inline ----------------------------


class InlineVectorStore(_Body):
    file_ids: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=10_000)] | None = (
        None
    )
    chunking_strategy: ChunkingStrategy | None = None
    metadata: Metadata | None = None


class FileSearchResourcesCreate(FileSearchResources):
    vector_stores: Annotated[list[InlineVectorStore], Field(max_length=1)] | None = None


class ToolResourcesCreate(ToolResources):
    file_search: FileSearchResourcesCreate | None = None

    def stored(self, param: str = "tool_resources") -> dict[str, Any]:
        """The resources as sent (their inline vector stores are made by the core); a 400 for an inline vector
        store beside named ones, or one chunked otherwise than ``auto``."""
        search = self.file_search
        if search is not None and search.vector_stores:
            if search.vector_store_ids:
                raise invalid(
                    "Give either vector_store_ids or vector_stores, not both: there can be one vector store at most.",
                    f"{param}.file_search",
                )
            for index, store in enumerate(search.vector_stores):
                check_chunking(store.chunking_strategy, f"{param}.file_search.vector_stores[{index}].chunking_strategy")
        return self.model_dump(exclude_unset=True)


# -- response_format ----------------------------------------------------------------------------


class TextFormat(_Body):
    type: Literal["text"]


class JsonObjectFormat(_Body):
    type: Literal["json_object"]


class JsonSchema(_Body):
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class JsonSchemaFormat(_Body):
    type: Literal["json_schema"]
    json_schema: JsonSchema


def _format_tag(value: Any) -> str | None:
    return _TAG + "auto" if value == "auto" else _type_tag(value)


ResponseFormat = Annotated[
    Annotated[Literal["auto"], Tag(_TAG + "auto")]
    | Annotated[TextFormat, Tag(_TAG + "text")]
    | Annotated[JsonObjectFormat, Tag(_TAG + "json_object")]
    | Annotated[JsonSchemaFormat, Tag(_TAG + "json_schema")],
    Discriminator(_format_tag),
]

# The old API's values; passed to the model (dropped for an endpoint that refuses it: core/reasoning.py).
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]

# -- assistants -----------------------------------------------------------------------------------


class AssistantUpdate(_Body):
    model: Annotated[str, Field(min_length=1)] | None = None
    name: Annotated[str, Field(max_length=256)] | None = None
    description: Annotated[str, Field(max_length=512)] | None = None
    instructions: Annotated[str, Field(max_length=256_000)] | None = None
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None
    tool_resources: ToolResources | None = None
    metadata: Metadata | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: ReasoningEffort | None = None

    def fields(self) -> dict[str, Any]:
        """The fields the client sent, as stored: a null list of tools or metadata is an empty one."""
        if "model" in self.model_fields_set and self.model is None:
            raise invalid("'model' cannot be null: name the model the assistant uses.", "model")
        fields = self.model_dump(exclude_unset=True, by_alias=True)
        for name, empty in (("tools", []), ("metadata", {})):
            if name in fields and fields[name] is None:
                fields[name] = empty
        return fields


class AssistantCreate(AssistantUpdate):
    model: Annotated[str, Field(min_length=1)]
    tool_resources: ToolResourcesCreate | None = None  # and vector stores made inline


# -- threads and messages ------------------------------------------------------------------------------


class TextPart(_Body):
    type: Literal["text"]
    text: str


Detail = Literal["auto", "low", "high"]
_IMAGE_URL = r"^(https?://|data:image/(png|jpeg|gif|webp);base64,)"


def _image_url(url: str) -> str:
    if not re.match(_IMAGE_URL, url):
        raise ValueError("give an http:// or https:// URL, or a data:image/...;base64, URL of a PNG, JPEG, GIF or WebP")
    return url


class ImageFileRef(_Body):
    file_id: Annotated[str, Field(min_length=1)]
    detail: Detail | None = None


class ImageFilePart(_Body):
    """An image the client uploaded to /v1/files (any purpose), shown to the model."""

    type: Literal["image_file"]
    image_file: ImageFileRef


class ImageUrlRef(_Body):
    url: Annotated[str, AfterValidator(_image_url), Field(json_schema_extra={"pattern": _IMAGE_URL})]
    detail: Detail | None = None


class ImageUrlPart(_Body):
    """An image the model endpoint fetches from its URL (or a data: URL), shown to the model."""

    type: Literal["image_url"]
    image_url: ImageUrlRef


def _content_tag(value: Any) -> str | None:
    if isinstance(value, str):
        return _TAG + "string"
    return _TAG + "parts" if isinstance(value, list) else None


ContentPart = Annotated[
    Annotated[TextPart, Tag(_TAG + "text")]
    | Annotated[ImageFilePart, Tag(_TAG + "image_file")]
    | Annotated[ImageUrlPart, Tag(_TAG + "image_url")],
    Discriminator(_type_tag),
]
# What new_message() refuses is stated in the schema too (for the OpenAPI document), its wording kept: a
# string with no visible character, attachments.
TextContent = Annotated[str, Field(json_schema_extra={"pattern": r"\S"})]
Content = Annotated[
    Annotated[TextContent, Tag(_TAG + "string")] | Annotated[list[ContentPart], Tag(_TAG + "parts")],
    Discriminator(_content_tag),
]


class AttachmentFileSearch(_Body):
    type: Literal["file_search"]


AttachmentTool = Annotated[
    Annotated[CodeInterpreterTool, Tag(_TAG + "code_interpreter")]
    | Annotated[AttachmentFileSearch, Tag(_TAG + "file_search")],
    Discriminator(_type_tag),
]


class MessageAttachment(_Body):
    """A file the key uploaded, for the thread's file search, its code interpreter, or both."""

    file_id: Annotated[str, Field(min_length=1, max_length=64)]
    tools: Annotated[list[AttachmentTool], Field(max_length=8)] | None = None


class MessageCreate(_Body):
    role: Literal["user", "assistant"]
    content: Content
    attachments: Annotated[list[MessageAttachment], Field(max_length=20)] | None = None
    metadata: Metadata | None = None

    def new_message(self, param: str = "") -> NewMessage:
        """The message to add; a 400 for empty content and images in an assistant's message (image files and
        attachments are checked against the key's uploads when the message is added)."""
        attachments = tuple(
            Attachment(a.file_id, tuple(dict.fromkeys(tool.type for tool in a.tools or ())))
            for a in self.attachments or ()
        )
        if isinstance(self.content, str):
            content: tuple[MessagePart, ...] = (self.content,)
        else:
            parts: list[MessagePart] = []
            for index, part in enumerate(self.content):
                if isinstance(part, TextPart):
                    parts.append(part.text)
                    continue
                if self.role != "user":
                    raise invalid(
                        f"Only a user's message can carry images ({part.type}); send text in an assistant's message.",
                        f"{param}content[{index}]",
                    )
                if isinstance(part, ImageFilePart):
                    parts.append(ImageFile(part.image_file.file_id, part.image_file.detail))
                else:
                    parts.append(ImageUrl(part.image_url.url, part.image_url.detail))
            content = tuple(parts)
        texts = [part for part in content if isinstance(part, str)]
        if len(texts) == len(content) and not "".join(texts).strip():
            raise invalid("Message content must not be empty.", f"{param}content")
        return NewMessage(role=self.role, content=content, metadata=self.metadata or {}, attachments=attachments)


class MessageUpdate(_Body):
    metadata: Metadata | None = None


class ThreadUpdate(_Body):
    metadata: Metadata | None = None
    tool_resources: ToolResources | None = None


class ThreadCreate(ThreadUpdate):
    messages: list[MessageCreate] | None = None
    tool_resources: ToolResourcesCreate | None = None  # and vector stores made inline

    def stored_resources(self, param: str = "tool_resources") -> dict[str, Any] | None:
        return self.tool_resources.stored(param) if self.tool_resources is not None else None


# -- reading and validating a body ---------------------------------------------------------------


async def read_body(request: web.Request, model: type[M]) -> M:
    """The request's JSON body as ``model``, or a 400 (413 when too large) written for the client."""
    limit = request.app[MAX_BODY]
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    raw = await request.read()  # aiohttp enforces the same limit on bodies sent without a length
    data: Any = {}
    if raw.strip():
        try:
            text = raw.decode("utf-8")
            # A large body's parse and checks would hold up every other request: they run off the event loop.
            data = await asyncio.to_thread(json_body.loads, text) if len(raw) > _INLINE_PARSE else json_body.loads(text)
        except UnicodeDecodeError:
            raise invalid("The request body is not UTF-8 text; send JSON encoded as UTF-8.") from None
        except json_body.JsonRefused as exc:
            raise invalid(str(exc)) from None
        except json.JSONDecodeError as exc:
            raise invalid(
                f"The request body is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}). "
                "Send a JSON object with Content-Type: application/json."
            ) from None
    if not isinstance(data, dict):
        raise invalid(f"The request body must be a JSON object, not {_json_type(data)}.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _from_validation(exc.errors()[0]) from None


def _param(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not part.startswith(_TAG):
            out += f".{part}" if out else part
    return out


_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def _from_validation(error: ErrorDetails) -> ApiError:
    """The first validation error as the old API worded such errors, with the parameter's path."""
    kind = error["type"]
    param = _param(tuple(error["loc"]))
    value = error.get("input")
    if kind == "missing":
        return invalid(f"Missing required parameter: '{param}'.", param, code="missing_required_parameter")
    if kind == "extra_forbidden":
        return invalid(f"Unrecognized request argument supplied: {param}", param, code="unknown_parameter")
    if kind in _EXPECTED:
        return invalid(
            f"Invalid type for '{param}': expected {_EXPECTED[kind]}, but got {_json_type(value)} instead.",
            param,
            code="invalid_type",
        )
    if kind == "union_tag_not_found":
        if isinstance(value, dict) and "type" in value:
            return invalid(
                f"Invalid type for '{param}.type': expected a string, but got {_json_type(value['type'])} instead.",
                f"{param}.type",
                code="invalid_type",
            )
        if isinstance(value, dict):
            return invalid(
                f"Missing required parameter: '{param}.type'.", f"{param}.type", code="missing_required_parameter"
            )
        expected = "a string or an array of content parts" if param.endswith("content") else "an object"
        if param.endswith("response_format"):
            expected = "'auto' or an object"
        return invalid(
            f"Invalid type for '{param}': expected {expected}, but got {_json_type(value)} instead.",
            param,
            code="invalid_type",
        )
    if kind == "union_tag_invalid":
        context = error.get("ctx") or {}
        expected = str(context.get("expected_tags", "")).replace(_TAG, "")
        tag = str(context.get("tag", "")).removeprefix(_TAG)
        return invalid(
            f"Invalid value for '{param}.type': {tag!r} is not one of {expected}.",
            f"{param}.type",
            code="invalid_value",
        )
    if kind == "string_pattern_mismatch":  # only names have patterns
        return invalid(
            f"Invalid value for '{param}': use 1 to 64 letters, digits, underscores or dashes, not {value!r}.",
            param,
            code="invalid_value",
        )
    message = error["msg"].removeprefix("Value error, ")
    return invalid(f"Invalid value for '{param}': {message[:1].lower()}{message[1:]}.", param, code="invalid_value")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
