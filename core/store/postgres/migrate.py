"""Numbered migrations for PostgreSQL, applied as sqlite-utils applies SQLite's: in order, each once, recorded.

A :class:`Migrations` set is a list of functions registered in order (``@MIGRATIONS()`` above ``def
m001_...(conn)``). :meth:`Migrations.apply` runs the pending ones over a psycopg (3, sync) connection, each
in a transaction of its own together with its row in ``_migrations`` (PostgreSQL's DDL is transactional,
so a migration that fails leaves nothing behind and stays pending). Every transaction first takes one
advisory lock, ``pg_advisory_xact_lock(LOCK_KEY)``, so processes starting together on one database take
turns: the second finds the migration applied once the first has committed, and skips it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import psycopg

__all__ = ["LOCK_KEY", "MIGRATIONS_TABLE", "Migrations"]

MIGRATIONS_TABLE = "_migrations"
# The advisory lock (a number of the application's choosing; it locks nothing else) that migrating takes,
# per database: the bytes of "threadln".
LOCK_KEY = 0x7468726561646C6E


class MigrationFunction(Protocol):
    __name__: str

    def __call__(self, conn: psycopg.Connection[Any], /) -> None: ...


F = TypeVar("F", bound=MigrationFunction)


@dataclass(frozen=True)
class Migration:
    name: str
    fn: MigrationFunction


class Migrations:
    """An ordered set of named migrations (``name`` tells sets apart in the ``_migrations`` table)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._migrations: list[Migration] = []

    def __call__(self) -> Callable[[F], F]:
        """Register the decorated function as the next migration, named after it."""

        def register(fn: F) -> F:
            if fn.__name__ in self.names:
                raise ValueError(f"migration {fn.__name__} is already registered in set {self.name!r}")
            self._migrations.append(Migration(fn.__name__, fn))
            return fn

        return register

    @property
    def names(self) -> list[str]:
        """Every migration's name, in the order they apply."""
        return [migration.name for migration in self._migrations]

    def applied(self, conn: psycopg.Connection[Any]) -> list[str]:
        """The names of the migrations applied to the database, in the order they were (a read)."""
        found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [MIGRATIONS_TABLE]).fetchone()
        if not (found and found[0]):
            return []
        rows = conn.execute(
            f"SELECT name FROM {MIGRATIONS_TABLE} WHERE migration_set = %s ORDER BY id", [self.name]
        ).fetchall()
        return [row[0] for row in rows]

    def apply(self, conn: psycopg.Connection[Any], *, stop_before: str | None = None) -> list[str]:
        """Apply the pending migrations, up to but not including ``stop_before`` (tests build an older
        schema with it); the names of those this call applied. ``conn`` must not be inside a transaction:
        each migration commits on its own (inside the caller's transaction it would commit only with it,
        holding the lock all the while).

        :raises ValueError: ``stop_before`` names a migration already applied (as sqlite-utils does).
        """
        if conn.info.transaction_status.name != "IDLE":
            raise ValueError("apply migrations on a connection that is not inside a transaction")
        with conn.transaction():
            _lock(conn)
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                " migration_set text NOT NULL, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),"
                " UNIQUE (migration_set, name))"
            )
            if stop_before is not None and stop_before in self.applied(conn):
                raise ValueError(f"cannot stop before migration {stop_before}: it has been applied already")
        done: list[str] = []
        for migration in self._migrations:
            if migration.name == stop_before:
                break
            with conn.transaction():
                _lock(conn)
                if self._is_applied(conn, migration.name):
                    continue
                migration.fn(conn)
                conn.execute(
                    f"INSERT INTO {MIGRATIONS_TABLE} (migration_set, name) VALUES (%s, %s)", [self.name, migration.name]
                )
            done.append(migration.name)
        return done

    def _is_applied(self, conn: psycopg.Connection[Any], name: str) -> bool:
        row = conn.execute(
            f"SELECT 1 FROM {MIGRATIONS_TABLE} WHERE migration_set = %s AND name = %s", [self.name, name]
        ).fetchone()
        return row is not None


def _lock(conn: psycopg.Connection[Any]) -> None:
    """Wait for the migration lock; the transaction holds it until it ends."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
