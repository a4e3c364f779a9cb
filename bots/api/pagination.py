"""List parameters and the list envelope of the old API.

``limit`` (1 to 100, default 20), ``order`` (``asc`` or ``desc``, default ``desc``), ``after``
and ``before`` (ids of listed objects); the answer is
``{"object": "list", "data": [...], "first_id", "last_id", "has_more"}``. The store applies the
cursors (core/store/paging.py says how ``before`` pages back).
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web

from bots.api.errors import ApiError, echo, invalid
from core.errors import UnknownCursor
from core.models import PageQuery

__all__ = ["list_body", "page_query", "unknown_cursor"]

MAX_LIMIT = 100


def page_query(request: web.Request, *, default_limit: int = 20, max_limit: int = MAX_LIMIT) -> PageQuery:
    """The list parameters of a request's query string, or a 400 naming the one at fault.

    ``default_limit`` and ``max_limit`` are for the lists the old API bounded otherwise (files: 10,000).
    """
    query = request.query
    raw_limit = query.get("limit", str(default_limit))
    try:
        limit = int(raw_limit)
    except ValueError:
        raise invalid(
            f"Invalid type for 'limit': expected an integer, but got {echo(raw_limit)!r} instead.",
            "limit",
            code="invalid_type",
        ) from None
    if not 1 <= limit <= max_limit:
        raise invalid(
            f"Invalid 'limit': expected a value from 1 to {max_limit}, but got {limit} instead.",
            "limit",
            code="integer_above_max_value" if limit > max_limit else "integer_below_min_value",
        )
    raw_order = query.get("order", "desc")
    if raw_order not in ("asc", "desc"):
        raise invalid(f"Invalid value for 'order': expected 'asc' or 'desc', but got {echo(raw_order)!r}.", "order")
    order: Literal["asc", "desc"] = "asc" if raw_order == "asc" else "desc"
    return PageQuery(limit=limit, order=order, after=query.get("after") or None, before=query.get("before") or None)


def unknown_cursor(exc: UnknownCursor) -> ApiError:
    return invalid(f"Invalid '{exc.param}': {echo(exc.value)!r} is not the id of an object in this list.", exc.param)


def list_body(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }
