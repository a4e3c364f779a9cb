"""JSON request bodies, parsed with limits: what Python's json module takes but nothing else should keep.

Python's parser recurses once per level of nesting (a deep enough body raises RecursionError), turns
an integer literal into an int of any size (past 4,300 digits it raises ValueError), accepts ``NaN``
and ``Infinity``, reads ``1e400`` as infinity, and keeps a ``\\ud800`` escape as a lone surrogate,
which no UTF-8 encoder (SQLite's, the response's) takes. A value nested hundreds of levels deep is
even kept, and fails only later, when it is serialised for every list that shows it. :func:`loads`
refuses all of these with a :class:`JsonRefused` that says which limit the body broke.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_NUMBER_CHARS", "JsonRefused", "loads"]

MAX_DEPTH = 64  # arrays and objects inside each other; a tool's JSON schema needs a fraction of this
MAX_NUMBER_CHARS = 100  # characters of one number literal: a double's shortest form has at most 24

# A \u escape in the surrogate range: only with one can a parsed string hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class JsonRefused(ValueError):
    """The body is JSON that this server does not take; the message says why, for the client's developer."""


def loads(text: str) -> Any:
    """``text`` parsed as JSON within the limits above; :class:`json.JSONDecodeError` when it is not JSON."""
    try:
        value = json.loads(text, parse_int=_integer, parse_float=_number, parse_constant=_constant)
    except RecursionError:
        raise _too_deep() from None
    _check_depth(value)
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise JsonRefused(
                "The request body has a \\u escape of a lone UTF-16 surrogate (\\ud800 to \\udfff without its "
                "pair), which stands for no character. Send text only."
            ) from None
    return value


def _integer(text: str) -> int:
    _check_length(text)
    return int(text)


def _number(text: str) -> int | float:
    """A JSON number without a fraction (``30.0``) is an integer, as JSON Schema counts it (strict models take
    only ints for integer fields, and an int for a float one)."""
    _check_length(text)
    value = float(text)
    if not math.isfinite(value):
        raise JsonRefused(f"A number in the request body is out of range ({text[:20]}...); send a smaller one.")
    return int(value) if value.is_integer() else value


def _constant(text: str) -> Any:
    raise JsonRefused(f"The request body is not valid JSON: {text} is not a JSON number.")


def _check_length(text: str) -> None:
    if len(text) > MAX_NUMBER_CHARS:
        raise JsonRefused(
            f"A number in the request body has {len(text):,} characters; numbers may have at most {MAX_NUMBER_CHARS}."
        )


def _check_depth(value: Any) -> None:
    """Arrays and objects nested at most MAX_DEPTH levels deep (without recursing: the limit is the point)."""
    level: list[Any] = [value]
    for _ in range(MAX_DEPTH):
        level = [
            child
            for item in level
            for child in (item.values() if type(item) is dict else item if type(item) is list else ())
            if type(child) is dict or type(child) is list
        ]
        if not level:
            return
    raise _too_deep()


def _too_deep() -> JsonRefused:
    return JsonRefused(f"The request body nests arrays and objects more than {MAX_DEPTH} levels deep.")
