"""THREADLINE_DATABASE_URL, read: a PostgreSQL URL's connection parameters, checked once for everyone.

The bot (core/settings.py, core/store/store.py) and ``migrate-to-postgres`` (core/store/postgres/copy.py)
refuse a wrong URL, and say that the server cannot be reached, in the same words, which name the variable
and never the password the URL may hold.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from core.errors import ConfigError

__all__ = ["DatabaseUnreachable", "PostgresUrl", "first_line", "reason", "redact", "shorten"]

_log = logging.getLogger(__name__)

VARIABLE = "THREADLINE_DATABASE_URL"
CONNECT_SECONDS = 10


class DatabaseUnreachable(ConfigError):
    """No connection to the server the URL names (said in one line, without the password)."""


def redact(text: str, password: str | None) -> str:
    return text.replace(password, "***") if password else text


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def shorten(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def reason(exc: psycopg.Error) -> str:
    """The server's or libpq's own words, the cause of a connection failure without who failed."""
    text = first_line(exc)
    if isinstance(exc, psycopg.OperationalError) and "failed:" in text:
        text = text.rsplit("failed:", 1)[1]
    text = re.sub(r"^\s*(?:FATAL|ERROR):\s*", "", text)
    return shorten(re.sub(r"\s+", " ", text).strip())


@dataclass(frozen=True)
class PostgresUrl:
    """A PostgreSQL URL, read: its connection parameters and how to name it without its password."""

    params: dict[str, Any]
    password: str | None

    @classmethod
    def parse(cls, url: str) -> Self:
        """ConfigError, naming THREADLINE_DATABASE_URL and never the password, when ``url`` is not a PostgreSQL URL."""
        hint = f"Set {VARIABLE} to postgresql://USER:PASSWORD@HOST:PORT/DATABASE, or unset it to use SQLite."
        found = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@?#]*?:([^@/?#]*)@", url)
        password = unquote(found.group(1)) if found else None
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"{VARIABLE} is not a PostgreSQL URL. {hint}")
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise ConfigError(
                f"{VARIABLE} is not a valid PostgreSQL URL ({redact(first_line(exc), password)}). {hint}"
            ) from None
        ports = str(params.get("port") or "5432").split(",")
        if not all(port.strip().isdigit() for port in ports):
            raise ConfigError(f"{VARIABLE} has a port that is not a number. {hint}")
        given = params.get("password")
        return cls(params, str(given) if given else password)

    @property
    def display(self) -> str:
        """``database on host:port`` (as much as the URL says)."""
        host = str(self.params.get("host") or "localhost")
        if "port" in self.params:
            host = f"{host}:{self.params['port']}"
        database = self.params.get("dbname") or self.params.get("user") or "the default database"
        return f"{database} on {host}"

    def redact(self, text: str) -> str:
        return redact(text, self.password)

    def connect(self) -> psycopg.Connection[Any]:
        """An autocommit connection; DatabaseUnreachable, in one line without the password, when there is none."""
        try:
            return psycopg.connect(**({"connect_timeout": CONNECT_SECONDS} | self.params), autocommit=True)
        except psycopg.Error as exc:
            _log.info("could not connect to PostgreSQL at %s: %s", self.display, self.redact(str(exc)))
            raise DatabaseUnreachable(
                f"Could not connect to PostgreSQL ({self.display}): {self.redact(reason(exc))}. Check "
                f"{VARIABLE} and that the server runs."
            ) from None
