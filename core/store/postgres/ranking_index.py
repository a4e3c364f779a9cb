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

So it is not a migration (a database's numbered schema is the same on every server). Each start, after
the migrations (:func:`ensure`): the extension is created if it can be; and if the index is missing, or
left unfinished by a process that stopped building it, one process builds it in the background with
``CREATE INDEX CONCURRENTLY`` (about 20 s at 100k chunks, 230 s at a million: BENCHMARKS.md 4.4): the bot starts at
once, chunks are added and removed meanwhile, and searches rank as without it until the index is valid
(:data:`present_sql`, asked within each search's own statement). It is two indexes, one for each half of
the column (:data:`HALVES`). A process that stops mid-build leaves an invalid index, which the next start
drops and builds again. Without the extension, searches rank every
matching chunk; the start says which, once.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg
from psycopg import errors

__all__ = ["BUILD_LOCK", "HALVES", "INDEX_NAMES", "ensure", "present_sql"]

_log = logging.getLogger(__name__)

# The column's two halves (core/store/keywords.py: English chunks searched in the english configuration, the
# others in simple), each with an index of its own, partial, so a half's search finds only its own chunks: with
# one index over both, the simple half of a question whose words the english configuration leaves unstemmed
# found every chunk the english half had found, and read each one from the table only to leave it out (half
# of such a search: 21 of 45 ms at 100k chunks).
HALVES = {"english": "stemming = 'english'", "simple": "stemming IS DISTINCT FROM 'english'"}
INDEX_NAMES = {config: f"chunks_search_rum_{config}" for config in HALVES}
# The one index over both halves that came before; dropped once the two are built.
_FORMER = "chunks_search_rum"
# The advisory lock the process building the index holds (session-wide: a concurrent build is no
# transaction): the bytes of "thrdrank". Another process that finds it taken leaves the build to that one.
BUILD_LOCK = 0x7468726472616E6B
# What a search asks (within its own statement): whether both indexes are there and finished.
present_sql = (
    "((SELECT count(*) FROM pg_index WHERE indisvalid AND indexrelid IN ("
    + ", ".join(f"to_regclass('{name}')" for name in INDEX_NAMES.values())
    + f")) = {len(INDEX_NAMES)})"
)


def _create(config: str) -> str:
    return (
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX_NAMES[config]} ON chunks"
        f" USING rum (search_vector rum_tsvector_ops) WHERE {HALVES[config]}"
    )


def ensure(conn: psycopg.Connection[Any], url: str) -> threading.Thread | None:
    """Create the extension where it can be, and start building the index in the background if it is not
    built yet: the thread building it (joined by tests and benchmarks), or None when there is nothing to
    build. ``conn`` is an autocommit connection (the migrations') to ``url``; the build opens one of its own."""
    if conn.execute(f"SELECT {present_sql}").fetchone() == (True,):
        return None
    if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'rum'").fetchone() is None:
        _log.info(
            "keyword search ranks every chunk that matches: the rum extension is not installed on the"
            " PostgreSQL server (install it, e.g. postgresql-15-rum, and restart: big channels search faster)"
        )
        return None
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS rum")
    except errors.UniqueViolation:  # another process created it at the same moment
        pass
    except errors.InsufficientPrivilege:
        _log.warning(
            "keyword search ranks every chunk that matches: creating the rum extension needs a superuser;"
            " run as one in this database: CREATE EXTENSION rum; %s",
            "; ".join(_create(config) for config in HALVES),
        )
        return None
    build = threading.Thread(target=_build, args=(url,), daemon=True, name="threadline-ranking-index")
    build.start()
    return build


def _build(url: str) -> None:
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            if conn.execute("SELECT pg_try_advisory_lock(%s)", [BUILD_LOCK]).fetchone() != (True,):
                return  # another process is building it
            if conn.execute(f"SELECT {present_sql}").fetchone() == (True,):
                return
            chunks = conn.execute("SELECT reltuples FROM pg_class WHERE relname = 'chunks'").fetchone()
            start = time.monotonic()
            for config, name in INDEX_NAMES.items():
                valid = conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", [name])
                if valid.fetchone() == (True,):
                    continue
                # An index there but not valid: a build that stopped (a concurrent build leaves it behind).
                conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
                conn.execute(_create(config))
            conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_FORMER}")
            _log.info(
                "built the keyword ranking index (rum) over about %d chunks in %.1f s",
                max(0, int(chunks[0])) if chunks else 0,
                time.monotonic() - start,
            )
    except psycopg.Error as exc:  # the server went away, or the database was dropped: the next start builds it
        _log.warning("could not build the keyword ranking index (rum): %s", str(exc).splitlines()[0])
