"""The door of Slack's HTTP mode: what reaches Bolt at ``/slack/events`` is signed, fresh, and readable.

Bolt reads a request's body before it checks the signature, and answers 500 when it cannot: a
timestamp that is not a number, a signed body that is not a JSON object (``[]``, ``"x"``, a form
``payload`` that is not an object, JSON that does not parse), text that is not UTF-8. It also logs
every request it refuses for its signature whole, at INFO: anyone can write up to a megabyte of text
into the log. :class:`RequestGuard` is an aiohttp middleware in front of Bolt's handler that checks
these first, answers each with a 4xx and a short ``{"error": ...}`` (the shape of Bolt's own 401),
and logs one line without the body: why, and the size.

Bolt's own signature check still runs after this one (a second lock, in case the guard is ever left
out). It must never be the one to refuse, or it would log the body: so the guard takes requests up to
five minutes old less :data:`FRESHNESS_MARGIN`, and Bolt, a moment later, finds each of them fresh.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

__all__ = ["FRESHNESS_MARGIN", "MAX_AGE", "RequestGuard"]

_log = logging.getLogger(__name__)

MAX_AGE = 5 * 60  # seconds: Slack's rule, and Bolt's, for how old a request's timestamp may be
FRESHNESS_MARGIN = 5  # seconds the guard is stricter than Bolt, which checks the same timestamp just after
_TIMESTAMP = "X-Slack-Request-Timestamp"
_SIGNATURE = "X-Slack-Signature"
_NOT_A_PAYLOAD = "the body is not a Slack payload (a JSON object, or a form whose payload field is one)"


class _Refusal(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class RequestGuard:
    """Checks POSTs to ``path`` before Bolt sees them; other routes (``/healthz``...) pass untouched."""

    def __init__(self, signing_secret: str, path: str, *, clock: Callable[[], float] = time.time) -> None:
        self._verifier = SignatureVerifier(signing_secret) if signing_secret.strip() else None
        self._path = path
        self._clock = clock

    def add_to(self, app: web.Application) -> None:
        """Put the guard in front of every handler of ``app`` (Bolt's ``web_app()``), before it starts."""
        app.middlewares.append(self.middleware())

    def middleware(self) -> Middleware:
        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.method != "POST" or request.path != self._path:
                return await handler(request)
            try:
                await self._check(request)
            except _Refusal as refusal:
                size = "size unknown" if request.content_length is None else f"{request.content_length:,} bytes"
                _log.info("refused a request to %s from %s: %s (%s)", self._path, request.remote, refusal.reason, size)
                return web.json_response({"error": refusal.reason}, status=refusal.status)
            return await handler(request)

        return guard

    async def _check(self, request: web.Request) -> None:
        if self._verifier is None:
            raise _Refusal(401, "this server has no signing secret (SLACK_SIGNING_SECRET) to check requests with")
        timestamps, signatures = request.headers.getall(_TIMESTAMP, []), request.headers.getall(_SIGNATURE, [])
        if len(timestamps) != 1 or len(signatures) != 1:
            raise _Refusal(401, f"{_TIMESTAMP} and {_SIGNATURE} must each be sent once")
        timestamp, signature = timestamps[0], signatures[0]  # as Bolt will read them: its check must agree
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            raise _Refusal(401, f"{_TIMESTAMP} is not a time in seconds")
        if not (signature.isascii() and signature.startswith("v0=")):
            raise _Refusal(401, f"{_SIGNATURE} is not a v0= signature")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _Refusal(413, "the body is larger than a request from Slack can be") from None
        if abs(self._clock() - int(timestamp)) > MAX_AGE - FRESHNESS_MARGIN:
            raise _Refusal(401, "the request is more than five minutes old (or from the future): a replay")
        text = await _text(request, raw)  # slack_sdk's signature check itself takes only UTF-8
        if not self._verifier.is_valid(raw, timestamp, signature):
            raise _Refusal(401, "the signature does not match (is SLACK_SIGNING_SECRET this app's?)")
        # Signed by Slack from here on; a request Bolt could not read is still refused, not a 500.
        _check_readable(request, text)


async def _text(request: web.Request, raw: bytes) -> str:
    """The body as Bolt's handler reads it (in its declared charset), which must be ``raw`` as UTF-8: Bolt checks
    the signature over the text encoded as UTF-8 again."""
    try:
        text = await request.text()
        if text.encode("utf-8") == raw:
            return text
    except (UnicodeError, LookupError):
        pass
    raise _Refusal(400, "the body is not UTF-8 text")


def _check_readable(request: web.Request, text: str) -> None:
    """Refuse (400) a signed request that Bolt could not read as one from Slack."""
    try:
        body = AsyncBoltRequest(body=text, query=request.query_string, headers=dict(request.headers)).body
    except RecursionError:
        raise _Refusal(400, "the body nests JSON too deeply") from None
    except ValueError:  # not JSON at all, or a number with thousands of digits
        raise _Refusal(400, "the body is not valid JSON") from None
    except Exception:  # Bolt reads the fields of a Slack payload out of it: a list, a string, a field of a wrong type
        raise _Refusal(400, _NOT_A_PAYLOAD) from None
    if not isinstance(body, dict):
        raise _Refusal(400, _NOT_A_PAYLOAD)
