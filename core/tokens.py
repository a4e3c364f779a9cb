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
from typing import Any, Protocol

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

    def count_item(self, item: dict[str, Any]) -> int:
        """Tokens one model input item costs (a message, a tool call or a tool result)."""
        kind = item.get("type")
        if kind == "function_call":
            text = f"{item.get('name', '')} {item.get('arguments', '')}"
        elif kind == "function_call_output":
            output = item.get("output", "")
            text = output if isinstance(output, str) else json.dumps(output)
        else:
            content = item.get("content", "")
            if isinstance(content, list):
                text = "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
            else:
                text = str(content)
        return self.count(text) + MESSAGE_OVERHEAD


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
