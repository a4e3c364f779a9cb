"""How the files an API run's code wrote show in the run's messages, as the old API showed them.

- An image becomes an ``image_file`` part of the first message the assistant wrote after the call
  that made it (the run's last message when none came after), ahead of its text: migrating code
  reads ``message.content[0].image_file``. A run's stream shows it at the same place.
- Any file becomes a ``file_path`` annotation wherever a message names it as a sandbox link,
  ``sandbox:/mnt/data/NAME`` (``NAME`` as written or URL-encoded), so that clients can swap the link
  for a download of the file. A name resolves to the latest file of that path any run of the thread
  wrote.

Run when a run completes (core/run_plans.py ``ApiPlan.completed``), after its file citations.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from core.models import Run
from core.store.api_outputs import MessageFiles, OutputRecord, OutputStore, RunMessage
from core.store.api_threads import item_texts
from core.store.store import Store

__all__ = ["LINK_PREFIX", "RunOutputs", "file_paths", "images_by_message"]

LINK_PREFIX = "sandbox:/mnt/data/"
_NAME_CHAR = re.compile(r"[A-Za-z0-9_-]")


def images_by_message(messages: Sequence[RunMessage], outputs: Sequence[OutputRecord]) -> dict[int, list[str]]:
    """The image files each assistant message shows (by message row id): those of the calls before it since
    the previous assistant message; what no message follows goes to the last one."""
    by_call: dict[str | None, list[str]] = {}
    for output in outputs:
        if output.is_image:
            by_call.setdefault(output.call_id, []).append(output.file_id)
    answers = [m for m in messages if m.role == "assistant"]
    if not by_call or not answers:
        return {}
    shown: dict[int, list[str]] = {}
    pending: list[str] = list(by_call.pop(None, []))  # a call not named (none here): ahead of the first answer
    for message in messages:
        if message.role == "tool_result":
            pending += by_call.pop(str(message.item.get("call_id")), [])
        elif message.role == "assistant" and pending:
            shown[message.row_id] = pending
            pending = []
    left = pending + [file_id for files in by_call.values() for file_id in files]
    if left:
        shown.setdefault(answers[-1].row_id, []).extend(left)
    return shown


def file_paths(text: str, files: Mapping[str, str]) -> list[dict[str, Any]]:
    """``file_path`` annotations (as stored: core/citations.py's shape with a ``type``) for each sandbox link in
    ``text`` to one of ``files`` (file id by name in /mnt/data), in text order."""
    found: list[dict[str, Any]] = []
    taken: list[tuple[int, int]] = []
    for name in sorted(files, key=len, reverse=True):  # the longest name first: "a.csv.bak" before "a.csv"
        for written in dict.fromkeys((name, quote(name))):
            link = LINK_PREFIX + written
            start = text.find(link)
            while start != -1:
                end = start + len(link)
                if _ends_name(text, end) and not any(s < end and start < e for s, e in taken):
                    taken.append((start, end))
                    found.append(
                        {
                            "type": "file_path",
                            "text": link,
                            "start_index": start,
                            "end_index": end,
                            "file_id": files[name],
                        }
                    )
                start = text.find(link, end)
    return sorted(found, key=lambda a: int(a["start_index"]))


def _ends_name(text: str, end: int) -> bool:
    """Whether a link's name ends at ``end``: no name character follows (a full stop ends a sentence, not a name,
    unless a name character follows it)."""
    rest = text[end : end + 2]
    if rest[:1] == ".":
        rest = rest[1:]
    return not rest[:1] or _NAME_CHAR.match(rest[:1]) is None


class RunOutputs:
    def __init__(self, store: Store) -> None:
        self._outputs = OutputStore(store)

    async def of_run(self, run_id: str) -> list[OutputRecord]:
        """The files the run's code wrote (for its steps: the ``image`` outputs of its calls)."""
        return await self._outputs.of_run(run_id)

    async def show(self, run: Run) -> None:
        """Show the code's files in the messages the run wrote: images ahead of the text, sandbox links annotated."""
        mine = await self._outputs.of_run(run.id)
        messages = await self._outputs.run_messages(run.id)
        linking = any(m.role == "assistant" and any(LINK_PREFIX in t for t in item_texts(m.item)) for m in messages)
        if not mine and not linking:  # a run whose code wrote nothing may still link an earlier run's file
            return
        images = images_by_message(messages, mine)
        outputs = await self._outputs.of_thread(run.thread_id) if linking else mine
        named = {o.name: o.file_id for o in outputs}  # oldest first: the latest of a name wins
        shown: list[MessageFiles] = []
        for message in messages:
            if message.role != "assistant":
                continue
            texts = item_texts(message.item)
            paths = file_paths(texts[0], named) if len(texts) == 1 else []  # offsets are into the one text part
            if not paths and message.row_id not in images:
                continue
            kept = [a for a in message.annotations if a.get("type") != "file_path"]
            annotations = sorted([*kept, *paths], key=lambda a: int(a["start_index"]))
            shown.append(MessageFiles(message.row_id, tuple(images.get(message.row_id, [])), tuple(annotations)))
        await self._outputs.show(shown)
