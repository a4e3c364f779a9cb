"""Request bodies of vector stores, their files and file batches, validated as strictly as the others.

They follow the old API's parameters (the openai SDK's ``vector_store_*_params`` and
``vector_stores/file*_params``), with its limits. ``chunking_strategy`` is accepted as ``auto``;
Threadline chunks every file the same way (its own settings), so a ``static`` strategy is a 400
that says so rather than a setting silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from bots.api.errors import invalid
from bots.api.requests import ChunkingStrategy, Metadata, check_chunking, metadata_limits
from core.vector_stores import FileAttachment

__all__ = [
    "FileBatchCreate",
    "VectorStoreCreate",
    "VectorStoreFileCreate",
    "VectorStoreFileUpdate",
    "VectorStoreSearch",
    "VectorStoreUpdate",
]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


def _attributes(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) > 16:
        raise ValueError(f"at most 16 key-value pairs are allowed, not {len(value)}")
    for key, item in value.items():
        if len(key) > 64:
            raise ValueError(f"keys may have at most 64 characters; {key[:20]!r}... has {len(key)}")
        if isinstance(item, str) and len(item) > 512:
            raise ValueError(f"values may have at most 512 characters; the value of {key!r} has {len(item)}")
    return value


Attributes = Annotated[
    dict[str, str | bool | int | float], AfterValidator(_attributes), Field(json_schema_extra=metadata_limits)
]
FileId = Annotated[str, Field(min_length=1, max_length=64)]


class ExpiresAfter(_Body):
    anchor: Literal["last_active_at"]
    days: Annotated[int, Field(ge=1, le=365)]


class VectorStoreUpdate(_Body):
    name: Annotated[str, Field(max_length=256)] | None = None
    metadata: Metadata | None = None
    expires_after: ExpiresAfter | None = None

    def fields(self) -> dict[str, Any]:
        """The fields the client sent, as stored: null metadata is empty metadata."""
        fields = self.model_dump(exclude_unset=True, exclude={"file_ids", "chunking_strategy"})
        if "metadata" in fields and fields["metadata"] is None:
            fields["metadata"] = {}
        return fields


class VectorStoreCreate(VectorStoreUpdate):
    description: Annotated[str, Field(max_length=512)] | None = None
    file_ids: Annotated[list[FileId], Field(max_length=500)] | None = None
    chunking_strategy: ChunkingStrategy | None = None

    def attachments(self) -> list[FileAttachment]:
        check_chunking(self.chunking_strategy, "chunking_strategy")
        return [(file_id, None) for file_id in dict.fromkeys(self.file_ids or [])]


class VectorStoreFileCreate(_Body):
    file_id: FileId
    attributes: Attributes | None = None
    chunking_strategy: ChunkingStrategy | None = None

    def attachment(self) -> FileAttachment:
        check_chunking(self.chunking_strategy, "chunking_strategy")
        return self.file_id, self.attributes


class VectorStoreFileUpdate(_Body):
    attributes: Attributes | None


class BatchFile(_Body):
    file_id: FileId
    attributes: Attributes | None = None
    chunking_strategy: ChunkingStrategy | None = None


class FileBatchCreate(_Body):
    file_ids: Annotated[list[FileId], Field(max_length=2000)] | None = None
    files: Annotated[list[BatchFile], Field(max_length=2000)] | None = None
    attributes: Attributes | None = None
    chunking_strategy: ChunkingStrategy | None = None

    def attachments(self) -> list[FileAttachment]:
        """(file id, attributes) of each file, once each; a 400 unless exactly one of file_ids and files is given."""
        if self.file_ids and self.files:
            raise invalid("Send either 'file_ids' or 'files', not both.", "files", code="invalid_value")
        if self.files:
            for index, file in enumerate(self.files):
                check_chunking(file.chunking_strategy, f"files[{index}].chunking_strategy")
            attachments = [(file.file_id, file.attributes) for file in self.files]
        elif self.file_ids:
            check_chunking(self.chunking_strategy, "chunking_strategy")
            attachments = [(file_id, self.attributes) for file_id in self.file_ids]
        else:
            raise invalid(
                "Missing required parameter: 'file_ids' (or 'files'): name at least one file.",
                "file_ids",
                code="missing_required_parameter",
            )
        return list({file_id: (file_id, attributes) for file_id, attributes in attachments}.values())


# -- search ------------------------------------------------------------------------------------------

Scalar = str | bool | int | float


class ComparisonFilter(_Body):
    type: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"]
    key: str
    value: Scalar | list[str | int | float]

    @model_validator(mode="after")
    def _lists_for_in(self) -> ComparisonFilter:
        if (self.type in ("in", "nin")) != isinstance(self.value, list):
            wanted = "a list of values" if self.type in ("in", "nin") else "one value, not a list"
            raise ValueError(f"a {self.type!r} filter compares with {wanted}")
        return self


class CompoundFilter(_Body):
    type: Literal["and", "or"]
    filters: Annotated[list[ComparisonFilter | CompoundFilter], Field(min_length=1)]


class RankingOptions(_Body):
    ranker: Literal["none", "auto", "default-2024-11-15"] | None = None  # one ranking here: accepted, the same
    score_threshold: Annotated[float, Field(ge=0, le=1)] | None = None


class VectorStoreSearch(_Body):
    query: str | Annotated[list[str], Field(min_length=1)]
    max_num_results: Annotated[int, Field(ge=1, le=50)] = 10
    filters: ComparisonFilter | CompoundFilter | None = None
    ranking_options: RankingOptions | None = None
    rewrite_query: bool | None = None  # accepted; the query is searched as written

    def queries(self) -> list[str]:
        queries = [self.query] if isinstance(self.query, str) else self.query
        if not " ".join(queries).strip():
            raise invalid("The search query must not be empty.", "query")
        return queries

    def filter(self) -> dict[str, Any] | None:
        return None if self.filters is None else self.filters.model_dump()
