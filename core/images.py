"""Images people share with the assistant: which ones the model is shown, and how a thread keeps them.

An image is never a document: a picture shared in a chat is not indexed into the channel's files
(:func:`is_picture` tells adapters which uploads to keep out of the knowledge base). A picture in a
message to the bot goes to the model as an image part when the conversation's assistant has
``vision = true`` in the assistants file; otherwise the person is told once that this assistant
cannot see images (core/image_intake.py decides, and says why an image was left out).

The model is shown PNG, JPEG, GIF and WebP images (what OpenAI-compatible endpoints take), judged by
their first bytes, of at most ``THREADLINE_MAX_IMAGE_MB`` each.

What a thread keeps of a chat image: the image is shown to the model in the run that answers the
message it came with, and nowhere else. Later runs of the thread get a short placeholder in its
place (:func:`seen_placeholder`), so that one screenshot does not cost its tokens again with every
later question of a long, shared channel conversation, and the bytes (in the ``images`` table) go
once that run has ended: the answer written then keeps, in words, what the model saw. A person who
wants the model to look again shares the image again.

Images of the Assistants-compatible API (``image_url`` and ``image_file`` content parts) are the
client's: stored as parts of the message, returned by ``messages.list``, and shown to every run of
the thread, as the old API did (an ``image_file``'s bytes stay in the API's file store).

Stored forms of image parts, inside a message item's ``content`` list:

- a chat image: ``{"type": "input_image", "image_id": "img_...", "name": "chart.png"}``
- an API image file: ``{"type": "input_image", "file_id": "file-...", "detail": "auto"}``
- an API image URL: ``{"type": "input_image", "image_url": "https://...", "detail": "auto"}``

The model gets each as Chat Completions' ``{"type": "image_url", "image_url": {"url": ...}}``
(core/image_inputs.py turns stored parts into model input).
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "IMAGE_TOKENS",
    "KINDS",
    "KIND_NAMES",
    "ReadyImage",
    "SharedImage",
    "chat_image_part",
    "data_url",
    "declared_kind",
    "described",
    "image_parts",
    "is_picture",
    "not_shown_placeholder",
    "seen_placeholder",
    "sniff",
    "user_message",
]

# What one image costs in the context window. OpenAI counts a 1024 x 1024 image at high detail as
# 765 tokens (85 + 170 per 512-pixel tile); most screenshots and photos land near it once scaled,
# and other models' counts vary around it. An estimate, as tiktoken is for other models' text.
IMAGE_TOKENS = 765

KINDS: Mapping[str, str] = {"png": "image/png", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}
KIND_NAMES = "PNG, JPEG, GIF and WebP"

_EXTENSIONS = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "jpe": "jpeg", "gif": "gif", "webp": "webp"}
# Pictures the model is not shown, but that are no documents either.
_OTHER_PICTURES = frozenset({"heic", "heif", "avif", "bmp", "tif", "tiff", "ico", "svg", "jxl", "jfif"})


@dataclass(frozen=True)
class SharedImage:
    """An image someone shared in a message to the bot, as the adapter received it.

    Its bytes are ``data``, or come from ``download`` (called with the largest size accepted, in bytes;
    it may return one more to show the image is larger, and raises ``DownloadFailed`` with a message for
    people): it is called only for an image the model is going to be shown.
    """

    name: str
    mime: str | None = None
    size: int | None = None  # as the platform declares it, before any download
    data: bytes = b""
    download: Callable[[int], Awaitable[bytes]] | None = None


@dataclass(frozen=True)
class ReadyImage:
    """An image checked and fetched, to be stored with its message and shown to the model."""

    id: str  # img_...
    name: str
    mime: str  # as its bytes say
    data: bytes


def _extension(name: str) -> str:
    stem, dot, extension = name.rpartition("/")[2].rpartition(".")
    return extension.lower() if dot and stem else ""


def _essence(mime: str | None) -> str:
    return (mime or "").split(";", 1)[0].strip().lower()


def is_picture(name: str, mime: str | None) -> bool:
    """An image of any kind (by its MIME type or its name): never indexed as a document."""
    extension = _extension(name)
    return _essence(mime).startswith("image/") or extension in _EXTENSIONS or extension in _OTHER_PICTURES


def declared_kind(name: str, mime: str | None) -> str | None:
    """The kind the platform says an image is (``png``, ``jpeg``, ``gif``, ``webp``), or None for another kind."""
    essence = _essence(mime)
    for kind, kind_mime in KINDS.items():
        if essence == kind_mime:
            return kind
    if essence in ("image/jpg", "image/pjpeg"):
        return "jpeg"
    if essence.startswith("image/"):  # HEIC, SVG, TIFF...
        return None
    return _EXTENSIONS.get(_extension(name))  # no MIME type, or a generic one: the name says


def sniff(data: bytes) -> str | None:
    """The kind the bytes are (``png``, ``jpeg``, ``gif``, ``webp``), from their first bytes; None otherwise."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if len(data) >= 12 and data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "webp"
    return None


def data_url(mime: str, data: bytes) -> str:
    """The image as a ``data:`` URL (base64: run it off the event loop for anything but a small image)."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def chat_image_part(image: ReadyImage) -> dict[str, Any]:
    """How a message item stores a chat image: a reference to its bytes in the ``images`` table."""
    return {"type": "input_image", "image_id": image.id, "name": image.name}


def seen_placeholder(name: str) -> str:
    """What later runs get in place of a chat image the model was shown when it was shared."""
    return f"[image {name}: shown to you with this message, not shown again]"


def not_shown_placeholder(name: str) -> str:
    """What the model gets for an image that came with a message but was never shown to it."""
    return f"[image {name}: not shown to you]"


def described(content: Any) -> str:
    """A stored message's content as text alone: its texts, and a placeholder for each chat image (what a
    conversation that continues it, such as a Slack thread under it, is told of the images)."""
    if not isinstance(content, list):
        return str(content or "")
    lines = []
    for part in content:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            lines.append(part["text"])
        elif isinstance(part, dict) and part.get("type") == "input_image" and "image_id" in part:
            lines.append(seen_placeholder(str(part.get("name") or "image")))
    return "\n".join(lines)


def image_parts(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The image parts of a stored message item (none for a string content)."""
    content = item.get("content")
    if not isinstance(content, list):
        return []
    return [p for p in content if isinstance(p, dict) and p.get("type") == "input_image"]


def user_message(
    speaker: str, text: str, shown: Sequence[ReadyImage] = (), left_out: Sequence[str] = ()
) -> tuple[str, dict[str, Any]]:
    """A person's message as the thread stores it: its text (what summaries and exports read) and its
    model input item, ``speaker: text`` followed by the images shown (as references) and a placeholder
    for each one left out. Without images: the plain text item every model back end takes."""
    if not shown and not left_out:
        return text, {"role": "user", "content": f"{speaker}: {text}" if speaker else text}
    notes = [not_shown_placeholder(name) for name in left_out]
    said = "\n".join(line for line in [text, *notes] if line)
    content = (f"{speaker}: {said}" if speaker else said).rstrip()
    stored = "\n".join(line for line in [text, *(f"[image {image.name}]" for image in shown), *notes] if line)
    if not shown:
        return stored, {"role": "user", "content": content}
    parts = [{"type": "input_text", "text": content}, *(chat_image_part(image) for image in shown)]
    return stored, {"role": "user", "content": parts}
