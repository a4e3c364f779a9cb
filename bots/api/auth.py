"""Bearer keys and who owns what.

Each key in ``THREADLINE_API_KEYS`` is an owner: its owner id is a truncated SHA-256 of the key
(never the key itself), and every object a request creates or reaches is scoped by it. A key
given as ``name:key`` belongs to the owner ``name`` instead (its id a hash of the name), so keys
can be rotated: list ``name:new`` beside ``name:old``, move clients over, drop the old one. Keys are
compared by their digests, so a wrong key's timing tells nothing, and no key is ever logged.
With no keys configured the server listens on loopback only and every request is the one owner
``local``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from bots.api.errors import ApiError

__all__ = ["LOCAL_OWNER", "OWNER", "ApiKeys", "named_owner_id", "owner_id"]

LOCAL_OWNER = "local"
OWNER = web.RequestKey("owner", str)  # the owner id of the request's key

_MISSING = (
    "You didn't provide an API key. Send it in an Authorization header using Bearer auth "
    "(Authorization: Bearer YOUR_KEY), e.g. OpenAI(base_url=..., api_key=YOUR_KEY)."
)
_WRONG = "Incorrect API key provided. Use one of the keys in this server's THREADLINE_API_KEYS."


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def owner_id(key: str) -> str:
    """The owner id stored with a key's objects: 16 hex digits of the key's SHA-256."""
    return _digest(key).hex()[:16]


def named_owner_id(name: str) -> str:
    """The owner id of the keys listed as ``name:key``: 16 hex digits of the name's SHA-256."""
    return hashlib.sha256(f"name:{name}".encode()).hexdigest()[:16]


class ApiKeys:
    def __init__(self, keys: Iterable[str], owners: Iterable[str] | None = None) -> None:
        """``owners``: each key's owner id, in order (default: the key's own)."""
        keys = list(keys)
        owned = list(owners) if owners is not None else [owner_id(key) for key in keys]
        self._owners = {_digest(key): owner for key, owner in zip(keys, owned, strict=True)}

    @property
    def open(self) -> bool:
        """No keys: anyone who can connect (on loopback) may use the API."""
        return not self._owners

    def owner(self, authorization: str | None) -> str:
        """The owner id for an ``Authorization`` header, or a 401."""
        if self.open:
            return LOCAL_OWNER
        scheme, _, key = (authorization or "").strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise ApiError(401, _MISSING, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        try:
            digest = _digest(key)
        except UnicodeEncodeError:  # bytes that are not UTF-8 (aiohttp keeps them as surrogates): no key of ours
            digest = b""
        owner = self._owners.get(digest)
        if owner is None:
            raise ApiError(401, _WRONG, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        return owner

    def middleware(self) -> Middleware:
        @web.middleware
        async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path.startswith("/v1/") or request.path == "/v1":
                request[OWNER] = self.owner(request.headers.get("Authorization"))
            return await handler(request)

        return authenticate
