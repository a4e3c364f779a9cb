"""Counting tokens for the context window.

tiktoken is exact for OpenAI models and close enough for others. Its encoding
file is fetched once (and cached) by tiktoken itself; a machine that cannot
fetch it, or a deployment that says ``THREADLINE_TOKENIZER=estimate``, falls
back to a byte-based estimate (about four bytes a token, rounded up), which
overcounts slightly for English and so keeps requests inside the budget.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

from core.images import IMAGE_TOKENS

__all__ = ["TokenCounter", "load_token_counter"]

_log = logging.getLogger(__name__)

MESSAGE_OVERHEAD = 4  # role and separators around every message


class _Encoding(Protocol):
    def encode(self, text: str, *, disallowed_special: Any = ...) -> list[int]: ...


class TokenCounter:
    def __init__(self, encoding: _Encoding | None = None) -> None:
        self._encoding = encoding

    @property
    def exact(self) -> bool:
        return self._encoding is not None

    def count(self, text: str) -> int:
        if not text:
            return 0
        if self._encoding is not None:
            return len(self._encoding.encode(text, disallowed_special=()))
        return (len(text.encode("utf-8")) + 3) // 4

    def windows(self, text: str, size: int, overlap: int) -> list[tuple[str, int]]:
        """``text`` cut into pieces of at most ``size`` tokens, each overlapping the previous by ``overlap``.

        Returns (piece, tokens). With an exact encoding the cuts fall on token boundaries; by estimate
        they fall on whitespace near every ``4 * size`` characters.
        """
        step = max(size - overlap, 1)
        if self._encoding is not None:
            encoding: Any = self._encoding
            ids = encoding.encode(text, disallowed_special=())
            if len(ids) <= size:
                return [(text, len(ids))] if ids else []
            pieces = []
            for start in range(0, len(ids), step):
                window = ids[start : start + size]
                pieces.append((encoding.decode(window), len(window)))
                if start + size >= len(ids):
                    break
            return pieces
        return _estimated_windows(text, size * 4, step * 4, self.count)

    def count_item(self, item: dict[str, Any]) -> int:
        """Tokens one model input item costs (a message, a tool call or a tool result).

        An image part costs ``IMAGE_TOKENS`` (core/images.py), however it is given (a stored reference, a
        ``data:`` URL, a link): its base64 text is never counted as words."""
        kind = item.get("type")
        images = 0
        if kind == "function_call":
            text = f"{item.get('name', '')} {item.get('arguments', '')}"
        elif kind == "function_call_output":
            output = item.get("output", "")
            text = output if isinstance(output, str) else json.dumps(output)
        else:
            content = item.get("content", "")
            if isinstance(content, list):
                parts = [part for part in content if isinstance(part, dict)]
                text = "".join(str(part.get("text", "")) for part in parts)
                images = sum(1 for part in parts if part.get("type") in ("input_image", "image_url"))
            else:
                text = str(content)
        return self.count(text) + images * IMAGE_TOKENS + MESSAGE_OVERHEAD


def _estimated_windows(text: str, width: int, step: int, count: Callable[[str], int]) -> list[tuple[str, int]]:
    """Character windows of about ``width`` characters every ``step``, moved back to whitespace."""
    if len(text) <= width:
        return [(text, count(text))] if text.strip() else []
    pieces = []
    start = 0
    while start < len(text):
        end = min(start + width, len(text))
        if end < len(text):
            cut = text.rfind(" ", start + width // 2, end)
            newline = text.rfind("\n", start + width // 2, end)
            end = max(cut, newline) if max(cut, newline) > 0 else end
        piece = text[start:end].strip()
        if piece:
            pieces.append((piece, count(piece)))
        if end >= len(text):
            break
        next_start = start + step
        space = text.find(" ", next_start, next_start + 40)
        start = space + 1 if space > 0 else next_start
    return pieces


async def load_token_counter(mode: str, encoding_name: str = "o200k_base") -> TokenCounter:
    """A counter for ``mode`` (``tiktoken`` or ``estimate``); tiktoken loads off the event loop."""
    if mode == "estimate":
        return TokenCounter()
    try:
        import tiktoken

        encoding = await asyncio.wait_for(asyncio.to_thread(tiktoken.get_encoding, encoding_name), timeout=20)
    except Exception as exc:  # network down, no cache: estimate instead
        _log.warning(
            "tiktoken could not load %s (%s); counting tokens by estimate instead. "
            "Set THREADLINE_TOKENIZER=estimate to skip this attempt.",
            encoding_name,
            type(exc).__name__,
        )
        return TokenCounter()
    return TokenCounter(encoding)
