"""Files a client hands to an API thread's tools: message attachments, and vector stores made inline.

As the old API did it:

- an attachment for ``file_search`` goes into the thread's vector store: the one named in the
  thread's ``tool_resources.file_search.vector_store_ids``, or, when it names none (or one the key
  does not have), a new one, made there and then and named there;
- an attachment for ``code_interpreter`` joins the thread's
  ``tool_resources.code_interpreter.file_ids``, so the thread's runs find it in /mnt/data
  (core/code_files.py);
- ``tool_resources.file_search.vector_stores`` (``[{"file_ids": [...], "metadata": {...}}]``), the
  inline form on a new assistant or thread, makes that vector store and names it in
  ``vector_store_ids`` instead.

Every file must be the key's own: :meth:`ThreadFiles.missing` says which are not, before anything is
changed. A vector store indexes in the background; a run waits for what its vector stores are still
indexing before it starts (core/run_plans.py). Unlike the old API's, a vector store made for a thread
does not expire 7 days after its last use: Threadline keeps it until it is deleted.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from core.api_objects import Attachment
from core.errors import ThreadlineError
from core.knowledge.tool import FILE_SEARCH
from core.models import ThreadRecord
from core.store.api_files import ApiFileStore
from core.store.api_threads import ThreadStore
from core.tools.code_interpreter import CODE_INTERPRETER

if TYPE_CHECKING:
    from core.vector_stores import VectorStores

__all__ = ["ResourcesRefused", "ThreadFiles"]


class ResourcesRefused(ThreadlineError):
    """An inline vector store naming a file the key does not have; ``param`` is the parameter at fault, inside
    ``tool_resources``. The message is for the client's developer."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


class ThreadFiles:
    def __init__(self, uploads: ApiFileStore, vector_stores: VectorStores, threads: ThreadStore) -> None:
        self._uploads = uploads
        self._vector_stores = vector_stores
        self._threads = threads
        # A thread's tool_resources are read, changed and written back: one change at a time, so that two
        # messages with attachments make one vector store for their thread, not two.
        self._lock = asyncio.Lock()

    async def missing(self, owner: str, file_ids: Sequence[str]) -> list[str]:
        """Those of ``file_ids`` the owner has no file of, in order."""
        found = await self._uploads.many(owner, file_ids)
        return [file_id for file_id in dict.fromkeys(file_ids) if file_id not in found]

    async def inline(self, owner: str, tool_resources: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """``tool_resources`` with its inline vector stores made, and named in ``vector_store_ids``.

        ResourcesRefused when one names a file the owner does not have (then nothing is made)."""
        if tool_resources is None:
            return None
        resources = copy.deepcopy(dict(tool_resources))
        search = resources.get(FILE_SEARCH)
        inline = search.pop("vector_stores", None) if isinstance(search, dict) else None
        if not inline:
            return resources
        assert isinstance(search, dict)
        for index, store in enumerate(inline):
            file_ids = [str(file_id) for file_id in store.get("file_ids") or ()]
            for missing in await self.missing(owner, file_ids):
                at = file_ids.index(missing)
                raise ResourcesRefused(
                    f"No file found with id '{missing}'.",
                    f"tool_resources.file_search.vector_stores[{index}].file_ids[{at}]",
                )
        ids = list(search.get("vector_store_ids") or [])
        for store in inline:
            fields = {"metadata": dict(store["metadata"])} if store.get("metadata") else {}
            made = await self._vector_stores.create(
                owner, fields, [(str(f), None) for f in store.get("file_ids") or ()]
            )
            ids.append(made.id)
        search["vector_store_ids"] = ids
        return resources

    async def attach(self, owner: str, thread: ThreadRecord, attachments: Sequence[Attachment]) -> ThreadRecord:
        """Give each attachment's file to the thread's tools (the owner's files: check with :meth:`missing`);
        returns the thread as it is then."""
        searched = list(dict.fromkeys(a.file_id for a in attachments if FILE_SEARCH in a.tools))
        coded = list(dict.fromkeys(a.file_id for a in attachments if CODE_INTERPRETER in a.tools))
        if not searched and not coded:
            return thread
        async with self._lock:
            current = await self._threads.get(thread.id, thread.channel) or thread
            resources = copy.deepcopy(current.tool_resources or {})
            if searched:
                store_id = await self._thread_store(owner, resources)
                for file_id in searched:
                    await self._vector_stores.attach(owner, store_id, file_id)
            if coded:
                interpreter = resources.setdefault(CODE_INTERPRETER, {})
                file_ids = list(interpreter.get("file_ids") or [])
                interpreter["file_ids"] = file_ids + [f for f in coded if f not in file_ids]
            updated = await self._threads.update(thread.id, thread.channel, {"tool_resources": resources})
        return updated or current

    async def _thread_store(self, owner: str, resources: dict[str, Any]) -> str:
        """The thread's vector store (made, and named in ``resources``, when it has none the owner has)."""
        search = resources.setdefault(FILE_SEARCH, {})
        for store_id in search.get("vector_store_ids") or ():
            if await self._vector_stores.get(owner, str(store_id)) is not None:
                return str(store_id)
        made = await self._vector_stores.create(owner, {})
        search["vector_store_ids"] = [made.id]  # a thread has one vector store at most
        return made.id
