"""The API server's settings, read once from the environment at start."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from bots.api.auth import named_owner_id, owner_id
from core.errors import ConfigError

__all__ = ["LOOPBACK", "ApiSettings"]

LOOPBACK = "127.0.0.1"
MIN_KEY_LENGTH = 16
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
DEFAULT_MAX_BODY_KB = 2048


@dataclass(frozen=True)
class ApiSettings:
    keys: tuple[str, ...] = field(default=(), repr=False)
    owners: tuple[str, ...] = ()  # the owner id of each key, in the same order
    port: int = 3000
    host: str = "0.0.0.0"  # where to listen when there are keys; without keys, loopback only
    max_body_bytes: int = DEFAULT_MAX_BODY_KB * 1024

    @property
    def bind_host(self) -> str:
        return self.host if self.keys else LOOPBACK

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiSettings:
        env = os.environ if env is None else env

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        entries = [k.strip() for k in (text("THREADLINE_API_KEYS") or "").split(",") if k.strip()]
        named: dict[str, str] = {}  # key -> owner id
        for entry in entries:
            name, colon, rest = entry.partition(":")
            if colon and _NAME.fullmatch(name) and rest:  # name:key, the owner is the name's
                named.setdefault(rest, named_owner_id(name))
            else:
                named.setdefault(entry, owner_id(entry))
        keys = tuple(named)
        for position, key in enumerate(keys, start=1):
            if len(key) < MIN_KEY_LENGTH:
                raise ConfigError(
                    f"THREADLINE_API_KEYS: key #{position} has {len(key)} characters; use keys of at least "
                    f"{MIN_KEY_LENGTH} random characters, e.g. from: python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))'."
                )
        port = text("PORT") or "3000"
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"PORT={port!r} is not a port number.")
        max_body = text("THREADLINE_API_MAX_BODY_KB") or str(DEFAULT_MAX_BODY_KB)
        if not max_body.isdigit() or int(max_body) < 1:
            raise ConfigError(
                f"THREADLINE_API_MAX_BODY_KB={max_body!r} must be a whole number of kilobytes, 1 or more."
            )
        return cls(
            keys=keys,
            owners=tuple(named.values()),
            port=int(port),
            host=text("THREADLINE_HTTP_HOST") or "0.0.0.0",
            max_body_bytes=int(max_body) * 1024,
        )
