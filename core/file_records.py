"""Records of the Assistants-compatible API's files and vector stores, as the store returns them.

Statuses follow the old API. A vector store file's status is its knowledge-base file's
(``in_progress``, ``completed``, ``failed``, or ``cancelled`` when a batch was cancelled); a
vector store is ``in_progress`` while any of its files is, ``expired`` past its ``expires_at``,
and ``completed`` otherwise; a batch is ``cancelled`` once cancelled, ``in_progress`` while any
of its files is, ``failed`` when every one of its files failed, and ``completed`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ApiFileRecord",
    "FileBatchRecord",
    "FileCounts",
    "VectorStoreFileRecord",
    "VectorStoreRecord",
    "batch_status",
    "vector_store_status",
]

FileStatus = Literal["in_progress", "completed", "failed", "cancelled"]
FILE_STATUSES: tuple[FileStatus, ...] = ("in_progress", "completed", "failed", "cancelled")


@dataclass(frozen=True)
class ApiFileRecord:
    """A file uploaded over the API (its bytes are in the store, by SHA-256)."""

    id: str
    owner: str
    filename: str
    bytes: int
    sha256: str
    purpose: str
    created_at: float
    mime: str | None = None


@dataclass(frozen=True)
class FileCounts:
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def total(self) -> int:
        return self.in_progress + self.completed + self.failed + self.cancelled

    @classmethod
    def from_statuses(cls, counts: dict[str, Any]) -> FileCounts:
        return cls(**{status: int(counts.get(status) or 0) for status in FILE_STATUSES})


@dataclass(frozen=True)
class VectorStoreRecord:
    id: str
    owner: str
    knowledge_key: str  # the knowledge base's key: api:<owner>:<id>
    name: str | None
    created_at: float
    last_active_at: float
    metadata: dict[str, str] = field(default_factory=dict)
    expires_after: dict[str, Any] | None = None  # {"anchor": "last_active_at", "days": n}
    file_counts: FileCounts = FileCounts()
    usage_bytes: int = 0
    description: str | None = None

    @property
    def expires_at(self) -> float | None:
        if not self.expires_after:
            return None
        return self.last_active_at + float(self.expires_after["days"]) * 86400

    def status(self, now: float) -> Literal["expired", "in_progress", "completed"]:
        return vector_store_status(self.file_counts, self.expires_at, now)


@dataclass(frozen=True)
class VectorStoreFileRecord:
    id: str  # the uploaded file's id
    vector_store_id: str
    knowledge_file_id: str  # the knowledge base's row for it
    status: FileStatus
    created_at: float
    size: int
    error: str | None = None
    error_code: str | None = None
    attributes: dict[str, str | float | bool] | None = None


@dataclass(frozen=True)
class FileBatchRecord:
    id: str
    vector_store_id: str
    created_at: float
    file_counts: FileCounts
    cancelled: bool = False

    @property
    def status(self) -> FileStatus:
        return batch_status(self.file_counts, self.cancelled)


def vector_store_status(
    counts: FileCounts, expires_at: float | None, now: float
) -> Literal["expired", "in_progress", "completed"]:
    if expires_at is not None and now >= expires_at:
        return "expired"
    return "in_progress" if counts.in_progress else "completed"


def batch_status(counts: FileCounts, cancelled: bool) -> FileStatus:
    if cancelled:
        return "cancelled"
    if counts.in_progress:
        return "in_progress"
    return "failed" if counts.total and counts.failed == counts.total else "completed"
