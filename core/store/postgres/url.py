"""THREADLINE_DATABASE_URL, read: a PostgreSQL URL's connection parameters, checked once for everyone.

The bot (core/settings.py) and ``migrate-to-postgres`` (core/store/postgres/copy.py) refuse a wrong URL
with the same words, which name the variable and never the password the URL may hold.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from core.errors import ConfigError

__all__ = ["PostgresUrl", "redact"]

VARIABLE = "THREADLINE_DATABASE_URL"


def redact(text: str, password: str | None) -> str:
    return text.replace(password, "***") if password else text


class PostgresUrl:
    """A PostgreSQL URL's connection parameters and password (to keep out of what is said)."""

    def __init__(self, params: dict[str, Any], password: str | None) -> None:
        self.params = params
        self.password = password

    @classmethod
    def parse(cls, url: str, variable: str = VARIABLE) -> PostgresUrl:
        """ConfigError, naming ``variable`` and never the password, when ``url`` is not a PostgreSQL URL."""
        hint = f"Set {variable} to postgresql://USER:PASSWORD@HOST:PORT/DATABASE, or unset it to use SQLite."
        found = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@?#]*?:([^@/?#]*)@", url)
        password = unquote(found.group(1)) if found else None
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"{variable} is not a PostgreSQL URL. {hint}")
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as exc:
            reason = redact((str(exc).strip().splitlines() or [type(exc).__name__])[0], password)
            raise ConfigError(f"{variable} is not a valid PostgreSQL URL ({reason}). {hint}") from None
        ports = str(params.get("port") or "5432").split(",")
        if not all(port.strip().isdigit() for port in ports):
            raise ConfigError(f"{variable} has a port that is not a number. {hint}")
        given = params.get("password")
        return cls(params, str(given) if given else password)
