"""The keyword ranking index on PostgreSQL: the ``rum`` extension's index over ``chunks.search_vector``,
where the server has the extension.

A GIN index (m026) finds the chunks holding a search's words, but ranking them means reading each one's
``tsvector`` (kilobytes, kept out of line) and scoring it: about 10 µs a chunk, so a question of common
words matching 5,000 of a channel's 100,000 chunks takes 60–90 ms. A ``rum`` index keeps each word's
positions in the index itself and hands the chunks out best first (``ORDER BY search_vector <=> query``)
without reading them, so only the best few hundred are read and scored (core/store/keywords.py). rum is
PostgreSQL's own (Postgres Professional's), packaged by Debian and the PGDG (``postgresql-15-rum``) and
offered by several managed services; it is an extension, so it may be missing, and creating it takes a
superuser (it is not a trusted extension).

So it is not a migration (a database's numbered schema is the same on every server): each start, after the
migrations and under their lock (:func:`ensure`), the index is created when the extension can be and the
index is not there yet: the first start after rum is installed builds it (about 20 s at 100k chunks; the
chunks table takes no writes meanwhile). Without it, searches rank every matching chunk, as before; the
start says which, once.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg
from psycopg import errors

from core.store.postgres.migrate import lock_migrations

__all__ = ["INDEX_NAME", "ensure", "present_sql"]

_log = logging.getLogger(__name__)

INDEX_NAME = "chunks_search_rum"
_CREATE = f"CREATE INDEX IF NOT EXISTS {INDEX_NAME} ON chunks USING rum (search_vector rum_tsvector_ops)"
# What a search asks (within its own statement): whether the index is there.
present_sql = f"to_regclass('{INDEX_NAME}') IS NOT NULL"


def ensure(conn: psycopg.Connection[Any]) -> bool:
    """Create the ranking index if the server can and it is missing; whether the database has it now.

    ``conn`` is outside a transaction (as for migrating). Said once, at info level: that it was built (and
    how long it took), or why keyword ranking goes without it."""
    with conn.transaction():
        lock_migrations(conn)
        if conn.execute(f"SELECT {present_sql}").fetchone() == (True,):
            return True
        available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'rum'").fetchone()
        if available is None:
            _log.info(
                "keyword search ranks every chunk that matches: the rum extension is not installed on the"
                " PostgreSQL server (install it, e.g. postgresql-15-rum, and restart: big channels search faster)"
            )
            return False
        chunks = conn.execute("SELECT reltuples FROM pg_class WHERE relname = 'chunks'").fetchone()
        start = time.monotonic()
        try:
            with conn.transaction():
                conn.execute("CREATE EXTENSION IF NOT EXISTS rum")
                conn.execute(_CREATE)
        except errors.InsufficientPrivilege:
            _log.warning(
                "keyword search ranks every chunk that matches: creating the rum extension needs a superuser;"
                " run as one in this database: CREATE EXTENSION rum; %s",
                _CREATE,
            )
            return False
        _log.info(
            "built the keyword ranking index (rum) over about %d chunks in %.1f s",
            max(0, int(chunks[0])) if chunks else 0,
            time.monotonic() - start,
        )
        return True
