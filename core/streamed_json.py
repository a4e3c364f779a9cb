"""One string field of a JSON object, decoded while the object's text is still streaming.

A model writes a tool call's arguments as JSON, a few characters at a time. To show what it is
writing as it writes it (the code of a ``code_interpreter`` call, which the old API streamed as
``code_interpreter.input``), :class:`StreamedString` reads the fragments in order and returns, for
each, the newly decoded characters of one top-level string field: escapes undone, even when split
across fragments.
"""

from __future__ import annotations

__all__ = ["StreamedString"]

_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class StreamedString:
    """The value of the top-level string field ``name``, decoded from the object's text fragment by fragment."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._depth = 0
        self._in_string = False
        self._escape: str | None = None  # an escape sequence begun and not yet complete
        self._high: str | None = None  # the first half of a surrogate pair
        self._expect_key = False
        self._key: list[str] | None = None  # the key being read, at the top level
        self._last_key = ""
        self._reading = False  # inside the field's value
        self._done = False
        self._out: list[str] = []

    def feed(self, fragment: str) -> str:
        """The field's characters that ``fragment`` completes ("" when none)."""
        for char in fragment:
            if self._in_string:
                self._string(char)
            else:
                self._structure(char)
        out, self._out = "".join(self._out), []
        return out

    def _structure(self, char: str) -> None:
        if char == '"':
            self._in_string = True
            if self._depth == 1 and self._expect_key:
                self._key = []
            elif self._depth == 1 and self._last_key == self._name and not self._done:
                self._reading = True
        elif char in "{[":
            self._depth += 1
            self._expect_key = self._depth == 1 and char == "{"
        elif char in "}]":
            self._depth -= 1
        elif self._depth == 1 and char == ",":
            self._expect_key = True
        elif self._depth == 1 and char == ":":
            self._expect_key = False

    def _string(self, char: str) -> None:
        if self._escape is not None:
            self._escape += char
            decoded = self._unescape(self._escape)
            if decoded is not None:
                self._escape = None
                self._char(decoded)
        elif char == "\\":
            self._escape = "\\"
        elif char == '"':
            self._in_string = False
            if self._key is not None:
                self._last_key, self._key = "".join(self._key), None
            elif self._reading:
                self._reading, self._done = False, True
        else:
            self._char(char)

    def _unescape(self, escape: str) -> str | None:
        """The character of a complete escape, None while incomplete ("" for half a surrogate pair)."""
        if escape[1] != "u":
            return _ESCAPES.get(escape[1], escape[1])
        if len(escape) < 6:
            return None
        try:
            unit = chr(int(escape[2:6], 16))
        except ValueError:
            return escape
        if "\ud800" <= unit <= "\udbff":
            self._high = unit
            return ""
        if "\udc00" <= unit <= "\udfff" and self._high is not None:
            high, self._high = self._high, None
            return chr(0x10000 + ((ord(high) - 0xD800) << 10) + (ord(unit) - 0xDC00))
        return unit

    def _char(self, char: str) -> None:
        if self._key is not None:
            self._key.append(char)
        elif self._reading:
            self._out.append(char)
