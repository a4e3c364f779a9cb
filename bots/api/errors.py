"""Errors in the old Assistants API's shape: ``{"error": {"message", "type", "param", "code"}}``.

Handlers raise :class:`ApiError`; the middleware turns it, aiohttp's own HTTP errors (unknown
route, wrong method, body too large) and anything unexpected into that shape with the old
status codes. Messages are for the client's developer; details of server faults go to the log.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler
from pydantic import BaseModel

__all__ = [
    "MAX_BODY",
    "ApiError",
    "ErrorBody",
    "ErrorDetail",
    "ServerLog",
    "echo",
    "error_middleware",
    "invalid",
    "not_found",
    "too_large",
]

_log = logging.getLogger(__name__)

MAX_BODY = web.AppKey("max_body", int)  # bytes a request body may have


class ErrorDetail(BaseModel):
    """What went wrong: a message for the client's developer, its kind, the parameter at fault, a code."""

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    """Every error response's body (the OpenAPI document's error schema is this model's)."""

    error: ErrorDetail


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        detail = ErrorDetail(message=self.message, type=self.type, param=self.param, code=self.code)
        return ErrorBody(error=detail).model_dump(mode="json")

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status, headers=self.headers)


def invalid(message: str, param: str | None = None, *, code: str | None = None) -> ApiError:
    """400: the request is wrong; ``param`` names the parameter at fault."""
    return ApiError(400, message, param=param, code=code)


def echo(value: str, limit: int = 64) -> str:
    """A value from the request, as an error message repeats it: cut short, so that the message stays short."""
    return value if len(value) <= limit else f"{value[:limit]}..."


def not_found(kind: str, object_id: str) -> ApiError:
    """404, as the old API said it; also for another key's objects, which must look exactly the same."""
    return ApiError(404, f"No {kind} found with id '{echo(object_id)}'.")


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"The request body is larger than this server accepts ({limit:,} bytes). Send a smaller request.",
        code="request_too_large",
    )


def _from_http(request: web.Request, exc: web.HTTPException) -> ApiError:
    route = f"{request.method} {echo(request.path, 120)}"
    if exc.status == 404:
        return ApiError(404, f"Invalid URL ({route}).", code="unknown_url")
    if exc.status == 405:
        allowed = sorted(getattr(exc, "allowed_methods", ()) or ())
        path = echo(request.path, 120)
        return ApiError(
            405,
            f"Method {request.method} is not allowed on {path}; use {', '.join(allowed) or 'another URL'}.",
            code="method_not_allowed",
            headers={"Allow": ", ".join(allowed)},
        )
    if exc.status == 413:
        return too_large(request.app[MAX_BODY])
    return ApiError(exc.status, f"{exc.reason} ({route}).")


class ServerLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server log, for ``handler_args={"logger": ...}``: a request that is not valid HTTP (aiohttp
    answers it with a 400 before any middleware) is one short line at INFO, not a traceback at ERROR. Anything
    else aiohttp logs is logged as it would be."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger("aiohttp.server"))

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            remote = args[0] if args else "?"
            line = "refused a request from %s that is not valid HTTP: %s"
            _log.log(min(level, logging.INFO), line, remote, str(exc.message)[:120])  # aiohttp's DEBUG stays DEBUG
            return
        super().log(level, msg, *args, **kwargs)


def _route(request: web.Request) -> str:
    """The route a request reached, as its pattern (``/v1/threads/{thread_id}``): short, and nothing the client
    chose but the route."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "(no route)"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _from_http(request, exc).response()
    except UnicodeError as exc:  # text from the request that is not UTF-8, met where no reader refused it first
        reason = getattr(exc, "reason", "")  # never the text itself: it may be part of a key
        _log.warning("%s %s refused: text in the request is not UTF-8 (%s)", request.method, _route(request), reason)
        return invalid(
            "The request has text that is not valid UTF-8 (in a header, the URL, a form field or the body). Send "
            "UTF-8 text."
        ).response()
    except Exception:
        _log.exception("%s %s failed", request.method, request.path)
        return ApiError(
            500,
            "The server had an error while processing your request; its log has the details. Retry, or tell "
            "whoever runs this Threadline.",
            type="server_error",
        ).response()
