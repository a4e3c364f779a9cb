"""A run's context window with its images: stored image parts made into what the model is shown.

A chat image (core/images.py) is shown, as a ``data:`` URL, to the run that answers the message it came
with; every other run gets its placeholder. An API image file is shown to every run of its thread while
its owner keeps the file; an API image URL goes as the client gave it. Whatever cannot be shown (bytes
gone, a file deleted or no longer an image) becomes a placeholder too, so a run never fails on an image.
Encoding runs off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from core.conversation_items import model_input
from core.images import KINDS, data_url, image_parts, not_shown_placeholder, seen_placeholder, sniff
from core.models import StoredMessage
from core.store import Store
from core.store.images import ImageStore

__all__ = ["ImageInputs"]

_log = logging.getLogger(__name__)


class ImageInputs:
    def __init__(self, store: Store, max_bytes: int) -> None:
        self._images = ImageStore(store)
        self._max_bytes = max_bytes

    async def model_items(
        self, thread_id: str, messages: Sequence[StoredMessage], turn: int | None
    ) -> list[dict[str, Any]]:
        """The messages (oldest first) as model input for a run answering turn ``turn``."""
        items = [model_input(m.item, m.id) for m in messages]
        if not any(image_parts(m.item) for m in messages):
            return items
        fresh: list[str] = []
        files: list[str] = []
        for message in messages:
            for part in image_parts(message.item):
                if "image_id" in part and message.turn_id == turn:
                    fresh.append(str(part["image_id"]))
                elif "file_id" in part:
                    files.append(str(part["file_id"]))
        chat = await self._images.chat_images(fresh)
        uploaded = await self._images.api_files(thread_id, files)
        shown: dict[str, tuple[str, bytes]] = dict(chat)
        for file_id, file in uploaded.items():
            kind = sniff(file.data[:16])
            if kind is None or len(file.data) > self._max_bytes:
                why = "not a PNG, JPEG, GIF or WebP" if kind is None else "over THREADLINE_MAX_IMAGE_MB"
                _log.info("file %s of thread %s is not shown as an image: %s", file_id, thread_id, why)
                continue
            shown[file_id] = (KINDS[kind], file.data)
        urls = await asyncio.to_thread(lambda: {key: data_url(mime, data) for key, (mime, data) in shown.items()})
        return [
            _resolved(item, urls, fresh=message.turn_id == turn) if image_parts(message.item) else item
            for item, message in zip(items, messages, strict=True)
        ]


def _resolved(item: dict[str, Any], urls: dict[str, str], *, fresh: bool) -> dict[str, Any]:
    content = []
    for part in item["content"]:
        if not isinstance(part, dict) or part.get("type") != "input_image":
            content.append(part)
        elif "image_id" in part:  # a chat image: shown in the run answering its message only
            name = str(part.get("name") or "image")
            url = urls.get(str(part["image_id"]))
            if not fresh:
                content.append(_text(seen_placeholder(name)))
            else:
                content.append(_image(url, "auto") if url else _text(not_shown_placeholder(name)))
        elif "file_id" in part:
            url = urls.get(str(part["file_id"]))
            detail = str(part.get("detail") or "auto")
            content.append(_image(url, detail) if url else _text(not_shown_placeholder(str(part["file_id"]))))
        else:  # an image URL, as the client gave it
            content.append(_image(str(part["image_url"]), str(part.get("detail") or "auto")))
    return {**item, "content": content}


def _image(url: str, detail: str) -> dict[str, Any]:
    return {"type": "input_image", "image_url": url, "detail": detail}


def _text(text: str) -> dict[str, Any]:
    return {"type": "input_text", "text": text}
