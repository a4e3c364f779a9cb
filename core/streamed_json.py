"""One string field of a JSON object, decoded while the object's text is still streaming.

A model writes a tool call's arguments as JSON, a few characters at a time. To show what it is
writing as it writes it (the code of a ``code_interpreter`` call, which the old API streamed as
``code_interpreter.input``), :class:`StreamedString` reads the fragments in order and returns, for
each, the newly decoded characters of one top-level string field. jiter (openai's own JSON parser)
decodes the text so far in its partial mode, which completes a trailing string and leaves out an
escape still cut in half; the arguments of one call are a few kilobytes, so reading them again per
fragment costs little.
"""

from __future__ import annotations

import jiter

__all__ = ["StreamedString"]


class StreamedString:
    """The value of the top-level string field ``name``, decoded from the object's text fragment by fragment."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._text = bytearray()
        self._sent = 0  # characters of the value already returned

    def feed(self, fragment: str) -> str:
        """The field's characters that ``fragment`` completes ("" when none, or when the text is not JSON)."""
        self._text += fragment.encode()
        try:
            parsed = jiter.from_json(bytes(self._text), partial_mode="trailing-strings")
        except ValueError:
            return ""
        value = parsed.get(self._name) if isinstance(parsed, dict) else None
        if not isinstance(value, str) or len(value) <= self._sent:
            return ""
        new, self._sent = value[self._sent :], len(value)
        return new
