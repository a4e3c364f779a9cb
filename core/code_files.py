"""An API run's files in its code sessions: what its code finds in /mnt/data, and what it leaves there.

In: the ``code_interpreter`` files of the run's thread and assistant (``tool_resources``, the
thread's first, then the assistant's; files attached to the thread's messages for the code
interpreter are among the thread's), looked up when the code runs. Each is copied under its file
name, made safe (core/sandbox/inputs.py); when two files would get the same name, the later one's
path carries its id as well (``/mnt/data/file-abc123-data.csv``): the old API kept every file under
its id alone (``/mnt/data/file-abc123``), which left the model guessing which file was which. The
model is told each path with its file's id and name (:meth:`CodeFiles.note`, in the run's
instructions). A file the run's key does not own is not there.

Out: each file the code writes becomes a file of purpose ``assistants_output`` owned by the run's
key, named by its path (``/mnt/data/chart.png``, as the old API named them), with the run and the
tool call that wrote it (core/code_outputs.py shows them in the run's messages).

The run's context (core/knowledge/tool.py ``run_context``) carries the owner and the file ids
(:data:`OWNER`, :data:`CODE_FILES`), so a run paused and resumed elsewhere has them back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import mimetypes
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.api_files import new_file_id
from core.file_records import ApiFileRecord
from core.sandbox.inputs import InputFile, safe_name
from core.sandbox.process import OutputFile
from core.store.api_files import ApiFileStore

__all__ = ["CODE_FILES", "OUTPUT_PURPOSE", "OWNER", "CodeFiles", "PlacedFile", "code_file_ids", "place"]

_log = logging.getLogger(__name__)

CODE_FILES = "code_files"  # in a run's context: the ids of the files its code finds in /mnt/data
OWNER = "owner"  # in a run's context: the owner id of its API key
OUTPUT_PURPOSE = "assistants_output"
WORKDIR = "/mnt/data"


def code_file_ids(*resources: Mapping[str, Any] | None) -> tuple[str, ...]:
    """``tool_resources.code_interpreter.file_ids`` of each, merged in order without repeats."""
    found: list[str] = []
    for resource in resources:
        interpreter = (resource or {}).get("code_interpreter") or {}
        for file_id in interpreter.get("file_ids") or ():
            if isinstance(file_id, str) and file_id not in found:
                found.append(file_id)
    return tuple(found)


@dataclass(frozen=True)
class PlacedFile:
    record: ApiFileRecord
    name: str  # in /mnt/data

    @property
    def path(self) -> str:
        return f"{WORKDIR}/{self.name}"


def place(records: Sequence[ApiFileRecord]) -> list[PlacedFile]:
    """Each file's name in /mnt/data: its own name, or, once that is taken, its id and its name."""
    taken: set[str] = set()
    placed: list[PlacedFile] = []
    for record in records:
        name = safe_name(record.filename)
        if name in taken:
            name = safe_name(f"{record.id}-{name}")
        taken.add(name)
        placed.append(PlacedFile(record, name))
    return placed


class CodeFiles:
    """The :class:`~core.tools.code_interpreter.RunFiles` of API runs, on the API's uploads."""

    def __init__(self, uploads: ApiFileStore) -> None:
        self._uploads = uploads

    async def placed(self, owner: str, file_ids: Sequence[str]) -> list[PlacedFile]:
        """The owner's files among ``file_ids``, in order, with their names in /mnt/data."""
        records = await self._uploads.many(owner, file_ids)
        missing = [file_id for file_id in file_ids if file_id not in records]
        if missing:
            _log.info("code interpreter files not found for their run's key (left out): %s", ", ".join(missing))
        return place([records[file_id] for file_id in file_ids if file_id in records])

    async def note(self, owner: str, file_ids: Sequence[str]) -> str:
        """What a run's instructions say of its code's files ("" when it has none)."""
        placed = await self.placed(owner, file_ids)
        if not placed:
            return ""
        lines = [f"- {p.path} (file {p.record.id}, uploaded as {p.record.filename})" for p in placed]
        return "Files the code interpreter finds in /mnt/data:\n" + "\n".join(lines)

    async def inputs(self, context: Mapping[str, Any]) -> list[InputFile]:
        owner, file_ids = context.get(OWNER), context.get(CODE_FILES)
        if not isinstance(owner, str) or not isinstance(file_ids, list):
            return []
        placed = await self.placed(owner, [str(file_id) for file_id in file_ids])
        return [InputFile(p.name, p.record.sha256, p.record.bytes, self._loader(owner, p.record.id)) for p in placed]

    def _loader(self, owner: str, file_id: str) -> Callable[[], Awaitable[bytes | None]]:
        async def load() -> bytes | None:
            found = await self._uploads.content(owner, file_id)
            return found[1] if found is not None else None

        return load

    async def keep(self, context: Mapping[str, Any], call_id: str, output: OutputFile) -> str | None:
        owner, run_id = context.get(OWNER), context.get("run_id")
        if not isinstance(owner, str) or not isinstance(run_id, str):
            return None
        sha256 = await asyncio.to_thread(lambda: hashlib.sha256(output.data).hexdigest())
        record = await self._uploads.create(
            owner,
            new_file_id(),
            filename=f"{WORKDIR}/{output.name}",
            mime=mimetypes.guess_type(output.name)[0],
            purpose=OUTPUT_PURPOSE,
            data=output.data,
            sha256=sha256,
            run_id=run_id,
            call_id=call_id or None,
        )
        return record.id
