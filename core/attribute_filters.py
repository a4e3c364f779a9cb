"""Filters on the attributes of a vector store's files (``vector_stores.search``, file search), as the old
API defined them: a comparison ``{"type": "eq" | "ne" | "gt" | "gte" | "lt" | "lte" | "in" | "nin",
"key": ..., "value": ...}``, or ``{"type": "and" | "or", "filters": [...]}`` of them. The API validates
their shape (bots/api/file_requests.py); this module decides whether a file's attributes pass.

A file without the key fails every comparison but ``ne`` and ``nin``. Ordering compares numbers with
numbers and strings with strings; across kinds it fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["passes"]

Attributes = Mapping[str, str | float | bool] | None


def passes(condition: Mapping[str, Any], attributes: Attributes) -> bool:
    kind = condition["type"]
    if kind in ("and", "or"):
        results = (passes(part, attributes) for part in condition["filters"])
        return all(results) if kind == "and" else any(results)
    values = attributes or {}
    key, wanted = condition["key"], condition["value"]
    if key not in values:
        return kind in ("ne", "nin")
    have = values[key]
    if kind == "eq":
        return _same(have, wanted)
    if kind == "ne":
        return not _same(have, wanted)
    if kind in ("in", "nin"):
        found = any(_same(have, item) for item in wanted)
        return found if kind == "in" else not found
    if _number(have) and _number(wanted):
        a, b = float(have), float(wanted)
    elif isinstance(have, str) and isinstance(wanted, str):
        a, b = have, wanted  # type: ignore[assignment]
    else:
        return False
    return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[kind]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    if _number(a) and _number(b):
        return float(a) == float(b)
    return type(a) is type(b) and a == b
