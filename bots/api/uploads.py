"""Reading a file upload: ``multipart/form-data`` with a ``file`` and a ``purpose``, as the openai SDK sends it.

The body is read as it arrives and given up on as soon as the file passes the size limit (413),
so an oversize upload never sits in memory; aiohttp drains what the client still sends.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from bots.api.errors import ApiError, invalid

__all__ = ["ReceivedFile", "clean_filename", "read_upload"]

MAX_FIELD_BYTES = 1024  # a form field other than the file (purpose)
ENVELOPE_BYTES = 64 * 1024  # multipart boundaries and part headers, on top of the file
MAX_FILENAME = 255
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
_EXPECTED = "Send the file as multipart/form-data with a 'file' part and a 'purpose' field (purpose=assistants)."


@dataclass(frozen=True)
class ReceivedFile:
    filename: str
    mime: str | None
    data: bytes
    purpose: str


def clean_filename(raw: str | None) -> str:
    """The name without folders or control characters, at most 255 characters; ``upload`` when nothing is left."""
    text = (raw or "").encode("utf-8", "replace").decode("utf-8")  # bytes that were not UTF-8 become "?"
    name = PurePosixPath(unicodedata.normalize("NFC", text).replace("\\", "/")).name
    name = _UNSAFE.sub("", name).strip()
    if len(name) > MAX_FILENAME:
        stem, dot, suffix = name.rpartition(".")
        keep_suffix = dot and len(suffix) < 16
        name = stem[: MAX_FILENAME - len(suffix) - 1] + dot + suffix if keep_suffix else name[:MAX_FILENAME]
    return name or "upload"


async def read_upload(request: web.Request, max_bytes: int, too_large: Callable[[str, int], ApiError]) -> ReceivedFile:
    """The upload's file and purpose; a 400 naming what is wrong, or ``too_large(name, size)`` past ``max_bytes``."""
    if request.content_type != "multipart/form-data":
        raise invalid(f"Expected a multipart/form-data body, not {request.content_type or 'no body'}. {_EXPECTED}")
    if request.content_length is not None and request.content_length > max_bytes + ENVELOPE_BYTES:
        raise too_large("The upload", request.content_length)
    try:
        reader = await request.multipart()
        file: tuple[str, str | None, bytes] | None = None
        purpose: str | None = None
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise invalid(f"Nested multipart bodies are not accepted. {_EXPECTED}")
            if part.name == "file":
                name = clean_filename(part.filename)
                mime = part.headers.get("Content-Type")
                mime = mime if mime and mime.isascii() else None  # a media type is ASCII; anything else is none
                file = (name, mime, await _read_file(part, name, max_bytes, too_large))
            elif part.name == "purpose":
                purpose = (await _read_field(part)).strip()
            else:
                message = f"Unrecognized request argument supplied: {part.name}"
                raise invalid(message, part.name, code="unknown_parameter")
    except ValueError as exc:  # aiohttp's word for a malformed multipart body
        raise invalid(f"The multipart/form-data body could not be read ({exc}). {_EXPECTED}") from None
    except HttpProcessingError as exc:  # ... and for a part's malformed headers
        raise invalid(f"The multipart/form-data body could not be read ({exc.message}). {_EXPECTED}") from None
    if file is None:
        raise invalid("Missing required parameter: 'file'.", "file", code="missing_required_parameter")
    if not purpose:
        raise invalid("Missing required parameter: 'purpose'.", "purpose", code="missing_required_parameter")
    name, mime, data = file
    return ReceivedFile(filename=name, mime=mime, data=data, purpose=purpose)


async def _read_file(
    part: BodyPartReader, name: str, max_bytes: int, too_large: Callable[[str, int], ApiError]
) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk():
        data += chunk
        if len(data) > max_bytes:
            raise too_large(name, len(data))
    return bytes(data)


async def _read_field(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(MAX_FIELD_BYTES):
        data += chunk
        if len(data) > MAX_FIELD_BYTES:
            raise invalid(f"The form field '{part.name}' is too long.", part.name)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid(f"The form field '{part.name}' is not UTF-8 text.", part.name) from None
